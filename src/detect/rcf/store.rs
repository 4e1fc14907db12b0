//! The forest's point store: every shingled point some tree still samples,
//! held once (trees share points by index) with a count of the sampler
//! entries that refer to it. Freed slots are reused, so memory stays bounded
//! by trees × sample size.

use serde::{Deserialize, Serialize};

use super::memory::MemoryParts;
use crate::detect::bits;

/// Points of one dimension, stored as `f32`, reference counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointStore {
    dim: usize,
    #[serde(with = "bits::f32s")]
    data: Vec<f32>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl PointStore {
    /// An empty store of points with `dim` coordinates.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
            refs: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Coordinates of the point at `idx`.
    #[inline]
    pub fn get(&self, idx: u32) -> &[f32] {
        let start = idx as usize * self.dim;
        &self.data[start..start + self.dim]
    }

    /// Stores `point` with no references yet and returns its index.
    pub fn add(&mut self, point: &[f32]) -> u32 {
        debug_assert_eq!(point.len(), self.dim);
        if let Some(idx) = self.free.pop() {
            let start = idx as usize * self.dim;
            self.data[start..start + self.dim].copy_from_slice(point);
            self.refs[idx as usize] = 0;
            idx
        } else {
            let idx = self.refs.len() as u32;
            if self.data.len() + self.dim > self.data.capacity() {
                // Grow by a quarter (at least 8 points), not by doubling:
                // the store is the largest part of a small forest.
                let more = (self.refs.len() / 4).max(8);
                self.data.reserve_exact(more * self.dim);
                self.refs.reserve_exact(more);
            }
            self.data.extend_from_slice(point);
            self.refs.push(0);
            idx
        }
    }

    /// One more sampler entry refers to `idx`.
    pub fn inc(&mut self, idx: u32) {
        self.refs[idx as usize] += 1;
    }

    /// One sampler entry fewer refers to `idx`; the slot is freed at zero.
    pub fn dec(&mut self, idx: u32) {
        let r = &mut self.refs[idx as usize];
        debug_assert!(*r > 0, "point {idx} released more often than held");
        *r = r.saturating_sub(1);
        if *r == 0 {
            self.free.push(idx);
        }
    }

    /// Frees `idx` if nothing refers to it (a point no tree accepted).
    pub fn release_if_unused(&mut self, idx: u32) {
        if self.refs[idx as usize] == 0 {
            self.free.push(idx);
        }
    }

    /// Sampler entries referring to `idx`.
    #[cfg(test)]
    pub fn refs(&self, idx: u32) -> u32 {
        self.refs[idx as usize]
    }

    /// Points currently held.
    pub fn live(&self) -> usize {
        self.refs.len() - self.free.len()
    }

    /// Adds the store's heap bytes, part by part, to `parts`.
    pub fn memory_parts(&self, parts: &mut MemoryParts) {
        parts.add_vec("store data", &self.data);
        parts.add_vec("store refs", &self.refs);
        parts.add_vec("store free list", &self.free);
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.data.capacity() * 4 + self.refs.capacity() * 4 + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_after_release() {
        let mut s = PointStore::new(2);
        let a = s.add(&[1.0, 2.0]);
        s.inc(a);
        let b = s.add(&[3.0, 4.0]);
        s.release_if_unused(b);
        assert_eq!(s.live(), 1);
        let c = s.add(&[5.0, 6.0]);
        assert_eq!(c, b);
        assert_eq!(s.get(c), &[5.0, 6.0]);
        assert_eq!(s.get(a), &[1.0, 2.0]);
        s.dec(a);
        assert_eq!(s.live(), 1);
    }
}
