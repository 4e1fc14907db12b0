//! A breakdown of a model's heap bytes by part (tree nodes, cached boxes,
//! samplers, point store, …), with the bytes in use next to the bytes
//! allocated, so that the size of a model can be read part by part.

/// One part of a model's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPart {
    /// What the bytes hold.
    pub name: &'static str,
    /// Bytes of the elements present (lengths).
    pub used: usize,
    /// Bytes allocated (capacities); what the model costs.
    pub held: usize,
}

/// Parts of a model's memory in the order first added; adding to a name
/// already present sums into it (the parts of all trees add up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryParts(Vec<MemoryPart>);

impl MemoryParts {
    /// Adds `used` and `held` bytes to the part `name`.
    pub fn add(&mut self, name: &'static str, used: usize, held: usize) {
        if let Some(p) = self.0.iter_mut().find(|p| p.name == name) {
            p.used += used;
            p.held += held;
        } else {
            self.0.push(MemoryPart { name, used, held });
        }
    }

    /// Adds the elements and capacity of `v` to the part `name`.
    pub fn add_vec<T>(&mut self, name: &'static str, v: &Vec<T>) {
        let size = std::mem::size_of::<T>();
        self.add(name, v.len() * size, v.capacity() * size);
    }

    /// The parts, in the order first added.
    pub fn parts(&self) -> &[MemoryPart] {
        &self.0
    }

    /// Bytes allocated over all parts.
    pub fn held(&self) -> usize {
        self.0.iter().map(|p| p.held).sum()
    }

    /// Bytes in use over all parts.
    pub fn used(&self) -> usize {
        self.0.iter().map(|p| p.used).sum()
    }
}
