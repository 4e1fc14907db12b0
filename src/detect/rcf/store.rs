//! The forest's point store: every shingled point some tree still samples,
//! referred to by a stable index (trees share points by index), with a
//! count of the sampler entries that refer to it. Freed indices are
//! reused, so memory stays bounded by trees × sample size.
//!
//! A shingled point is `shingle` consecutive inputs of `input_len` values,
//! and the point learned after it shares all but one of them. So the store
//! keeps inputs, not points: a sequence of inputs in which a point is the
//! window of `shingle` consecutive inputs starting at its oldest one. A
//! point whose older inputs are the newest inputs stored (the next point of
//! the stream) costs one input; any other point is stored whole. The
//! forest keeps every point of the stream as the newest inputs, sampled
//! or not ([`PointStore::follow`]), so that each point chains. Every
//! point's coordinates stay one contiguous slice. Inputs no live point
//! covers are dropped by a compaction when the buffer is full (the newest
//! `shingle - 1` inputs are always kept, so that the stream keeps
//! chaining).
//!
//! Saved as the inputs, each index's start and reference count and the free
//! list. Stores saved by earlier releases (every point whole) are read as
//! [`StoreWire::Whole`] and converted by [`StoreWire::into_store`], which
//! finds the chains of consecutive points again.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Deserializer, Serialize};

use super::memory::MemoryParts;
use crate::detect::bits;

/// Start of a free index.
const FREE: u32 = u32::MAX;

/// A reference count of two bytes at this value means "this many or
/// more": the count is then kept in [`PointStore`]'s `many_refs`. Only a
/// forest of more than 65,534 sampled points (trees × sample size) can
/// refer to one point that often.
const MANY: u16 = u16::MAX;

/// Inputs of room kept after a compaction, at least (and a sixteenth of the
/// inputs kept, when that is more).
const MIN_ROOM: usize = 8;

/// Shingled points of `dim` coordinates over inputs of `input_len`
/// values, stored as `f32`, reference counted. Saved compacted (see
/// [`SharedWire`]), so that the saved form does not depend on when the
/// buffer was last compacted.
#[derive(Debug, Clone, PartialEq)]
pub struct PointStore {
    dim: usize,
    input_len: usize,
    /// The inputs, `input_len` values each; a point is `dim` consecutive
    /// values starting at an input boundary.
    data: Vec<f32>,
    /// Per index, the input its point starts at, or [`FREE`].
    starts: Vec<u32>,
    /// Per index, the sampler entries referring to it, or [`MANY`].
    refs: Vec<u16>,
    /// The counts of the indices whose `refs` is [`MANY`], by index.
    many_refs: Vec<(u32, u32)>,
    free: Vec<u32>,
}

impl PointStore {
    /// An empty store of points with `dim` coordinates, shingles of inputs
    /// of `input_len` values (`dim` is a multiple of `input_len`).
    pub fn new(dim: usize, input_len: usize) -> Self {
        debug_assert!(input_len > 0 && dim % input_len == 0);
        Self {
            dim,
            input_len,
            data: Vec::new(),
            starts: Vec::new(),
            refs: Vec::new(),
            many_refs: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Sampler entries referring to `idx`.
    #[inline]
    fn refs_of(&self, idx: u32) -> u32 {
        match self.refs[idx as usize] {
            MANY => self
                .many_refs
                .iter()
                .find(|e| e.0 == idx)
                .map_or(u32::from(MANY), |e| e.1),
            r => u32::from(r),
        }
    }

    /// Sets the sampler entries referring to `idx` to `n`.
    #[inline]
    fn set_refs(&mut self, idx: u32, n: u32) {
        let slot = &mut self.refs[idx as usize];
        let was_many = *slot == MANY;
        if n >= u32::from(MANY) {
            *slot = MANY;
            match self.many_refs.iter_mut().find(|e| e.0 == idx) {
                Some(e) => e.1 = n,
                None => self.many_refs.push((idx, n)),
            }
        } else {
            *slot = n as u16;
            if was_many {
                self.many_refs.retain(|e| e.0 != idx);
            }
        }
    }

    /// Coordinates of the point at `idx`.
    #[inline]
    pub fn get(&self, idx: u32) -> &[f32] {
        let start = self.starts[idx as usize] as usize * self.input_len;
        &self.data[start..start + self.dim]
    }

    /// True when `idx` is a live point of the store.
    pub fn holds(&self, idx: u32) -> bool {
        self.starts.get(idx as usize).is_some_and(|&s| s != FREE)
    }

    /// Values the newest stored inputs share with the next point of the
    /// stream.
    fn overlap(&self) -> usize {
        self.dim - self.input_len
    }

    /// Stores `point` with no references yet and returns its index.
    pub fn add(&mut self, point: &[f32]) -> u32 {
        debug_assert_eq!(point.len(), self.dim);
        self.make_room(self.dim);
        let start = self.append(point);
        if let Some(idx) = self.free.pop() {
            self.refs[idx as usize] = 0;
            self.starts[idx as usize] = start;
            idx
        } else {
            if self.refs.len() == self.refs.capacity() {
                // Grow by an eighth (at least 8 points), not by doubling.
                let more = (self.refs.len() / 8).max(8);
                self.refs.reserve_exact(more);
                self.starts.reserve_exact(more);
            }
            self.refs.push(0);
            self.starts.push(start);
            (self.refs.len() - 1) as u32
        }
    }

    /// Keeps `point`, which no tree sampled, as the newest inputs without
    /// an index, so that the stream's next point still chains (costs one
    /// input) instead of being stored whole, repeating inputs already
    /// stored. A compaction drops these inputs once no live point covers
    /// them.
    pub fn follow(&mut self, point: &[f32]) {
        debug_assert_eq!(point.len(), self.dim);
        self.make_room(self.dim);
        self.append(point);
    }

    /// Appends `point`'s inputs (only its newest when the older ones are
    /// the newest stored) and returns the input it starts at.
    fn append(&mut self, point: &[f32]) -> u32 {
        let overlap = self.overlap();
        let n = self.data.len();
        let chained = n >= overlap
            && self.data[n - overlap..]
                .iter()
                .zip(&point[..overlap])
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if chained {
            self.data.extend_from_slice(&point[overlap..]);
        } else {
            self.data.extend_from_slice(point);
        }
        ((self.data.len() - self.dim) / self.input_len) as u32
    }

    /// Room for `values` more values: compacts when the buffer is full and
    /// keeps a sixteenth of the inputs kept (at least [`MIN_ROOM`] inputs)
    /// free after it.
    fn make_room(&mut self, values: usize) {
        if self.data.len() + values <= self.data.capacity() {
            return;
        }
        self.compact();
        let room = (self.data.len() / 16)
            .max(MIN_ROOM * self.input_len)
            .max(values);
        if self.data.capacity() > self.data.len() + 2 * room {
            self.data.shrink_to(self.data.len() + room);
        } else if self.data.capacity() < self.data.len() + room {
            self.data.reserve_exact(room);
        }
    }

    /// Drops the inputs no live point covers (keeping the newest
    /// `shingle - 1`) and moves the rest together, in order.
    fn compact(&mut self) {
        let il = self.input_len;
        let inputs = self.data.len() / il;
        let per_point = (self.dim / il) as u32;
        // Per input: NOT_KEPT, or (after the second pass) its new position.
        const NOT_KEPT: u32 = u32::MAX;
        let mut place = vec![NOT_KEPT; inputs];
        for &s in self.starts.iter().filter(|&&s| s != FREE) {
            place[s as usize..(s + per_point) as usize].fill(0);
        }
        let tail = self.overlap() / il;
        place[inputs.saturating_sub(tail)..].fill(0);
        let mut next = 0usize;
        for (i, p) in place.iter_mut().enumerate() {
            if *p == NOT_KEPT {
                continue;
            }
            if next != i {
                self.data.copy_within(i * il..(i + 1) * il, next * il);
            }
            *p = next as u32;
            next += 1;
        }
        self.data.truncate(next * il);
        for s in self.starts.iter_mut().filter(|s| **s != FREE) {
            *s = place[*s as usize];
        }
    }

    /// Widens every stored input by one value, `value`, placed at `at`
    /// (0 ..= the input's length): what the forest does when a value it
    /// did not store because every input had it (see
    /// [`super::forest::Forest`]) starts to vary. Indices and starts stay
    /// as they are, so the trees' references still hold.
    pub fn insert_value(&mut self, at: usize, value: f32) {
        let il = self.input_len;
        debug_assert!(at <= il);
        let inputs = self.data.len() / il;
        let shingle = self.dim / il;
        let mut wider = Vec::with_capacity(self.data.capacity() / il * (il + 1));
        for input in self.data.chunks_exact(il) {
            wider.extend_from_slice(&input[..at]);
            wider.push(value);
            wider.extend_from_slice(&input[at..]);
        }
        debug_assert_eq!(wider.len(), inputs * (il + 1));
        self.data = wider;
        self.input_len = il + 1;
        self.dim = shingle * (il + 1);
    }

    /// Narrows every stored input by its value at `at` (below the input's
    /// length): undoes [`PointStore::insert_value`], for a value every
    /// stored input holds alike.
    pub fn remove_value(&mut self, at: usize) {
        let il = self.input_len;
        debug_assert!(at < il && il > 1);
        let shingle = self.dim / il;
        let mut narrower = Vec::with_capacity(self.data.capacity() / il * (il - 1));
        for input in self.data.chunks_exact(il) {
            narrower.extend_from_slice(&input[..at]);
            narrower.extend_from_slice(&input[at + 1..]);
        }
        self.data = narrower;
        self.input_len = il - 1;
        self.dim = shingle * (il - 1);
    }

    /// The value at `at` if every stored input holds the same one there
    /// (bit for bit); None when they differ or nothing is stored.
    pub fn common_value(&self, at: usize) -> Option<f32> {
        let mut values = self.data.iter().skip(at).step_by(self.input_len);
        let first = *values.next()?;
        values
            .all(|v| v.to_bits() == first.to_bits())
            .then_some(first)
    }

    /// One more sampler entry refers to `idx`.
    pub fn inc(&mut self, idx: u32) {
        let r = self.refs_of(idx);
        self.set_refs(idx, r + 1);
    }

    /// One sampler entry fewer refers to `idx`; the index is freed at zero.
    pub fn dec(&mut self, idx: u32) {
        let r = self.refs_of(idx);
        debug_assert!(r > 0, "point {idx} released more often than held");
        let r = r.saturating_sub(1);
        self.set_refs(idx, r);
        if r == 0 {
            self.free_index(idx);
        }
    }

    /// Frees `idx` if nothing refers to it (a point no tree accepted).
    pub fn release_if_unused(&mut self, idx: u32) {
        if self.refs[idx as usize] == 0 {
            self.free_index(idx);
        }
    }

    fn free_index(&mut self, idx: u32) {
        self.starts[idx as usize] = FREE;
        self.free.push(idx);
    }

    /// Sampler entries referring to `idx`.
    #[cfg(test)]
    pub fn refs(&self, idx: u32) -> u32 {
        self.refs_of(idx)
    }

    /// The reference count of every index (0 for a free one).
    pub fn all_refs(&self) -> Vec<u32> {
        (0..self.refs.len() as u32)
            .map(|i| self.refs_of(i))
            .collect()
    }

    /// Inputs stored (live or not yet compacted away).
    #[cfg(test)]
    pub fn inputs(&self) -> usize {
        self.data.len() / self.input_len
    }

    /// Points currently held.
    pub fn live(&self) -> usize {
        self.refs.len() - self.free.len()
    }

    /// Adds the store's heap bytes, part by part, to `parts`.
    pub fn memory_parts(&self, parts: &mut MemoryParts) {
        parts.add_vec("store inputs", &self.data);
        parts.add_vec("store starts", &self.starts);
        parts.add_vec("store refs", &self.refs);
        parts.add_vec("store refs", &self.many_refs);
        parts.add_vec("store free list", &self.free);
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        (self.data.capacity() + self.starts.capacity() + self.free.capacity()) * 4
            + self.refs.capacity() * 2
            + self.many_refs.capacity() * std::mem::size_of::<(u32, u32)>()
    }
}

thread_local! {
    /// Set while a binary model of the format before inputs were shared is
    /// read (see [`reading_whole_points`]).
    static WHOLE_POINTS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, in which binary (non-self-describing) deserialisation reads
/// point stores in the layout of earlier releases, every point whole.
/// Self-describing formats (JSON) tell the layouts apart by their fields.
pub fn reading_whole_points<R>(f: impl FnOnce() -> R) -> R {
    super::with_flag_set(&WHOLE_POINTS, f)
}

impl Serialize for PointStore {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut compact = self.clone();
        compact.compact();
        let refs = compact.all_refs();
        SharedWire {
            dim: compact.dim,
            input_len: compact.input_len,
            data: compact.data,
            refs,
            starts: compact.starts,
            free: compact.free,
        }
        .serialize(s)
    }
}

/// The saved form of a store whose points share inputs: the inputs some
/// live point covers (and the newest `shingle - 1`), in order.
#[derive(Serialize, Deserialize)]
pub struct SharedWire {
    dim: usize,
    input_len: usize,
    #[serde(with = "bits::f32s")]
    data: Vec<f32>,
    starts: Vec<u32>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

/// The saved form of a store of earlier releases: every point whole.
#[derive(Deserialize)]
pub struct WholeWire {
    dim: usize,
    #[serde(with = "bits::f32s")]
    data: Vec<f32>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

/// A saved store in either layout; self-describing formats are told apart
/// by their fields.
#[derive(Deserialize)]
#[serde(untagged)]
enum AnyWire {
    Shared(SharedWire),
    Whole(WholeWire),
}

/// A saved point store, in the current layout or that of earlier releases.
pub enum StoreWire {
    Shared(SharedWire),
    Whole(WholeWire),
}

impl<'de> Deserialize<'de> for StoreWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            return Ok(match AnyWire::deserialize(d)? {
                AnyWire::Shared(w) => StoreWire::Shared(w),
                AnyWire::Whole(w) => StoreWire::Whole(w),
            });
        }
        if WHOLE_POINTS.with(Cell::get) {
            WholeWire::deserialize(d).map(StoreWire::Whole)
        } else {
            SharedWire::deserialize(d).map(StoreWire::Shared)
        }
    }
}

/// Bit patterns of `values`, to compare and hash inputs exactly.
fn key(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

impl PointStore {
    /// Sets every index's reference count, from the saved counts.
    fn set_all_refs(&mut self, refs: &[u32]) {
        self.refs = vec![0; refs.len()];
        for (i, &r) in refs.iter().enumerate() {
            self.set_refs(i as u32, r);
        }
    }
}

impl StoreWire {
    /// The store saved, checked: points of `dim` coordinates over inputs
    /// of `input_len` values (from the forest's settings). A store saved
    /// whole is converted: its points are laid out along the chains of
    /// consecutive points they form, so that each costs one input.
    pub fn into_store(self, dim: usize, input_len: usize) -> Result<PointStore, String> {
        if input_len == 0 || dim % input_len != 0 {
            return Err(format!(
                "forest settings give points of {dim} values over inputs of {input_len}"
            ));
        }
        match self {
            StoreWire::Shared(w) => Self::shared(w, dim, input_len),
            StoreWire::Whole(w) => Self::whole(w, dim, input_len),
        }
    }

    fn shared(w: SharedWire, dim: usize, input_len: usize) -> Result<PointStore, String> {
        if w.dim != dim || w.input_len != input_len {
            return Err(format!(
                "saved point store has points of {} values over inputs of {}; the forest's settings say {dim} over {input_len}",
                w.dim, w.input_len
            ));
        }
        if w.data.len() % input_len != 0 {
            return Err(format!(
                "saved point store has {} values, not a whole number of {input_len}-value inputs",
                w.data.len()
            ));
        }
        if w.starts.len() != w.refs.len() {
            return Err(format!(
                "saved point store has {} starts for {} reference counts",
                w.starts.len(),
                w.refs.len()
            ));
        }
        let inputs = w.data.len() / input_len;
        let per_point = dim / input_len;
        if let Some(s) = w
            .starts
            .iter()
            .find(|&&s| s != FREE && s as usize + per_point > inputs)
        {
            return Err(format!(
                "saved point store has a point starting at input {s}, beyond its {inputs} inputs"
            ));
        }
        if let Some(f) = w
            .free
            .iter()
            .find(|&&f| w.starts.get(f as usize) != Some(&FREE))
        {
            return Err(format!(
                "saved point store lists index {f} as free, which is out of range or in use"
            ));
        }
        let mut store = PointStore {
            dim,
            input_len,
            data: w.data,
            starts: w.starts,
            refs: Vec::new(),
            many_refs: Vec::new(),
            free: w.free,
        };
        store.set_all_refs(&w.refs);
        Ok(store)
    }

    fn whole(w: WholeWire, dim: usize, input_len: usize) -> Result<PointStore, String> {
        if w.dim != dim || w.data.len() != w.refs.len() * dim {
            return Err(format!(
                "saved point store has {} values of points of {}, for {} points of {dim}",
                w.data.len(),
                w.dim,
                w.refs.len()
            ));
        }
        let n = w.refs.len();
        let mut live = vec![true; n];
        for &f in &w.free {
            match live.get_mut(f as usize) {
                Some(l) => *l = false,
                None => {
                    return Err(format!(
                        "saved point store lists index {f} as free, beyond its {n} points"
                    ))
                }
            }
        }
        let point = |h: usize| &w.data[h * dim..(h + 1) * dim];
        let overlap = dim - input_len;
        // Live points by their older inputs (lowest index last, popped
        // first), and the newer inputs of all live points.
        let mut by_older: HashMap<Vec<u32>, Vec<usize>> = HashMap::new();
        for h in (0..n).rev().filter(|&h| live[h]) {
            by_older
                .entry(key(&point(h)[..overlap]))
                .or_default()
                .push(h);
        }
        let newer: HashSet<Vec<u32>> = (0..n)
            .filter(|&h| live[h])
            .map(|h| key(&point(h)[input_len..]))
            .collect();
        // Chains start at points no live point precedes; points left over
        // (in cycles of equal values) start chains of their own.
        let heads = (0..n)
            .filter(|&h| live[h] && !newer.contains(&key(&point(h)[..overlap])))
            .chain((0..n).filter(|&h| live[h]));
        let mut store = PointStore {
            dim,
            input_len,
            data: Vec::new(),
            starts: vec![FREE; n],
            refs: Vec::new(),
            many_refs: Vec::new(),
            free: w.free.clone(),
        };
        store.set_all_refs(&w.refs);
        for head in heads {
            let mut cur = head;
            while store.starts[cur] == FREE {
                store.starts[cur] = store.append(point(cur));
                let next = by_older
                    .get_mut(&key(&point(cur)[input_len..]))
                    .and_then(|hs| {
                        while let Some(h) = hs.pop() {
                            if store.starts[h] == FREE {
                                return Some(h);
                            }
                        }
                        None
                    });
                match next {
                    Some(h) => cur = h,
                    None => break,
                }
            }
        }
        store.data.shrink_to_fit();
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point of a stream of one-value inputs `0, 1, 2, …` ending at
    /// input `i`, shingles of 3.
    fn window(i: usize) -> Vec<f32> {
        (i - 2..=i).map(|v| v as f32).collect()
    }

    #[test]
    fn slots_are_reused_after_release() {
        let mut s = PointStore::new(2, 2);
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

    /// Counts are two bytes each; a point referred to 65,535 times or more
    /// (a forest of more sampled points than that) keeps its count aside,
    /// and saving and restoring keeps it.
    #[test]
    fn reference_counts_beyond_two_bytes_are_kept_aside_and_saved() {
        let mut s = PointStore::new(2, 2);
        let a = s.add(&[1.0, 2.0]);
        let b = s.add(&[3.0, 4.0]);
        s.inc(b);
        for _ in 0..70_000 {
            s.inc(a);
        }
        assert_eq!(s.refs(a), 70_000);
        assert_eq!(s.refs(b), 1);
        assert_eq!(s.many_refs, vec![(a, 70_000)]);
        let json = serde_json::to_string(&s).unwrap();
        let wire: StoreWire = serde_json::from_str(&json).unwrap();
        let restored = wire.into_store(2, 2).unwrap();
        assert_eq!(restored, s);
        assert_eq!(restored.all_refs(), vec![70_000, 1]);
        for _ in 0..70_000 - 65_534 {
            s.dec(a);
        }
        assert_eq!(s.refs(a), 65_534);
        assert!(
            s.many_refs.is_empty(),
            "below the mark, the count is back in two bytes"
        );
        for _ in 0..65_534 {
            s.dec(a);
        }
        assert_eq!(s.live(), 1, "freed at zero");
        assert_eq!(s.all_refs(), vec![0, 1]);
    }

    #[test]
    fn consecutive_points_share_inputs_and_others_are_stored_whole() {
        let mut s = PointStore::new(3, 1);
        let pts: Vec<u32> = (2..50).map(|i| s.add(&window(i))).collect();
        for (k, &p) in pts.iter().enumerate() {
            s.inc(p);
            assert_eq!(s.get(p), &window(k + 2)[..]);
        }
        assert_eq!(s.data.len(), 50, "one input per point after the first");
        let odd = s.add(&[7.0, 7.0, 7.0]);
        assert_eq!(s.data.len(), 53, "a point off the stream is stored whole");
        assert_eq!(s.get(odd), &[7.0, 7.0, 7.0]);
        let zero = s.add(&[-0.0, 7.0, 7.0]);
        assert_eq!(s.get(zero)[0].to_bits(), (-0.0f32).to_bits());
        assert_eq!(s.get(pts[10]), &window(12)[..]);
    }

    #[test]
    fn points_no_tree_sampled_keep_the_stream_chained() {
        let mut s = PointStore::new(3, 1);
        let mut held = Vec::new();
        for i in 2..100 {
            if i % 3 == 0 {
                s.follow(&window(i));
            } else {
                let p = s.add(&window(i));
                s.inc(p);
                held.push((p, i));
            }
        }
        assert_eq!(s.data.len(), 100, "one input per point after the first");
        for &(p, i) in &held {
            assert_eq!(s.get(p), &window(i)[..]);
        }
        assert_eq!(s.live(), held.len());
    }

    #[test]
    fn compaction_keeps_every_live_point_and_bounds_the_inputs() {
        let mut s = PointStore::new(3, 1);
        // (index, input the point ends at, still held)
        let mut held: Vec<(u32, usize, bool)> = Vec::new();
        for i in 2..5000 {
            let p = s.add(&window(i));
            // Keep every 97th point, and the 20 latest.
            s.inc(p);
            held.push((p, i, true));
            if held.len() > 20 {
                let k = held.len() - 21;
                if held[k].1 % 97 != 0 {
                    s.dec(held[k].0);
                    held[k].2 = false;
                }
            }
            if i % 250 == 0 {
                for &(p, at, _) in held.iter().filter(|h| h.2) {
                    assert_eq!(s.get(p), &window(at)[..], "point of input {at}");
                }
            }
        }
        let live = s.live();
        assert_eq!(live, held.iter().filter(|h| h.2).count());
        assert_eq!(live, 20 + (2..4980).filter(|i| i % 97 == 0).count());
        assert!(
            s.data.capacity() <= 3 * (3 * live + 22),
            "{} values for {live} points",
            s.data.capacity()
        );
    }

    #[test]
    fn a_store_saved_whole_converts_to_chains_with_the_same_points() {
        // Points of the stream, in shuffled indices, with one freed and
        // one off the stream.
        let order = [5usize, 0, 3, 7, 1, 6, 2, 4];
        let mut data = Vec::new();
        for &k in &order {
            data.extend(window(k + 10));
        }
        data.extend([9.0, 9.0, 9.0]);
        let wire = WholeWire {
            dim: 3,
            data,
            refs: vec![1, 2, 1, 0, 1, 1, 3, 1, 1],
            free: vec![3],
        };
        let s = StoreWire::Whole(wire).into_store(3, 1).unwrap();
        for (h, &k) in order.iter().enumerate() {
            if h != 3 {
                assert_eq!(s.get(h as u32), &window(k + 10)[..]);
            }
        }
        assert_eq!(s.get(8), &[9.0, 9.0, 9.0]);
        assert_eq!(s.refs(6), 3);
        assert_eq!(s.live(), 8);
        // One chain (inputs 8 to 16; the point ending at 17 was freed)
        // and the odd point: 9 + 3 inputs.
        assert_eq!(s.data.len(), 12, "{:?}", s.data);
        assert!(StoreWire::Whole(WholeWire {
            dim: 3,
            data: vec![1.0; 5],
            refs: vec![1, 1],
            free: vec![],
        })
        .into_store(3, 1)
        .is_err());
    }
}
