//! One random cut tree over the points its sampler holds, stored in index
//! arenas: internal nodes (cut, children, mass; 12 bytes) and leaves (a
//! point of the forest's [`PointStore`] and its multiplicity; 6 bytes)
//! live in two vectors, linked by two-byte references; free entries form
//! a list through their own fields rather than a vector of their own.
//! Nodes keep no parent: a walk that goes back up (scoring, deletion)
//! keeps the [`Path`] it came down, and a stored point's leaf is found by
//! descending with the point's own coordinates, which lead to it.
//! Bounding boxes are a bounded cache, as in AWS's rcflib: only nodes
//! holding at least [`cache_mass`] points keep theirs (in one flat
//! `f32` pool of slots, each with its range sum and found by searching
//! the slots' few owners); a smaller node's box is
//! recomputed from its few points when a walk needs it. Boxes are exact
//! unions either way, so cached or not, every score is bit for bit the
//! same. The tree owns structure and boxes; it never owns point
//! coordinates and never decides what is sampled.
//!
//! Cuts follow Guha et al. (2016): a dimension is chosen with probability
//! proportional to the box's extent in it, the cut uniformly within that
//! extent. A point `x` goes left when `x[dim] <= cut`.
//!
//! The file is long (about 900 lines) on purpose: insertion, deletion,
//! scoring, attribution and imputation all walk the same arenas and keep
//! the same box invariants, and splitting them would spread one data
//! structure's invariants over several files.

use serde::{Deserialize, Serialize};

use super::memory::MemoryParts;
use super::rng::Rng;
use super::store::PointStore;

#[cfg(test)]
mod tests;
mod wire;

pub use wire::{reading_parent_references, ref_from_wire, ref_to_wire};

/// Where [`Tree::insert`] put a point: the point the tree now refers to
/// and the leaf holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Index in the forest's point store.
    pub point: u32,
    /// The leaf holding the point.
    pub leaf: NodeRef,
}

/// A reference to an internal node (its index) or a leaf (its index with
/// [`LEAF`] set). Two bytes: a tree holds at most [`MAX_TREE_POINTS`]
/// distinct points, so both arenas stay below 2^15 entries.
pub type NodeRef = u16;

/// Marks a child reference as a leaf index.
const LEAF: NodeRef = 1 << 15;
/// No node.
const NIL: NodeRef = NodeRef::MAX;

/// Distinct points a tree can hold: leaf and node indices must stay below
/// [`LEAF`], and `LEAF | 0x7fff` is [`NIL`].
pub const MAX_TREE_POINTS: usize = (LEAF - 1) as usize;

#[inline]
fn is_leaf(c: NodeRef) -> bool {
    c != NIL && c & LEAF != 0
}

#[inline]
fn leaf_idx(c: NodeRef) -> usize {
    (c & !LEAF) as usize
}

/// Score of a point that duplicates a leaf of `mass` at `depth`.
#[inline]
pub fn score_seen(depth: usize, mass: u32) -> f64 {
    1.0 / (depth as f64 + (1.0 + mass as f64).log2())
}

/// Score of a point separated from the tree at `depth`.
#[inline]
pub fn score_unseen(depth: usize) -> f64 {
    1.0 / (depth as f64 + 1.0)
}

/// Discount of a duplicate's score by how much of the tree it fills.
#[inline]
pub fn damp(mass: u32, total: u32) -> f64 {
    1.0 - mass as f64 / (2.0 * total as f64)
}

/// Factor that makes a typical point score about 1.
#[inline]
pub fn normalizer(total: u32) -> f64 {
    (1.0 + total as f64).log2()
}

/// The largest `f32` strictly below `v` (for finite `v`).
fn just_below(v: f32) -> f32 {
    if v == 0.0 {
        -f32::from_bits(1)
    } else if v > 0.0 {
        f32::from_bits(v.to_bits() - 1)
    } else {
        f32::from_bits(v.to_bits() + 1)
    }
}

/// Nodes holding at least this many points (with multiplicity) keep their
/// bounding box; the boxes of smaller nodes are recomputed from their
/// points. In a random cut tree of n points about 2n / `CACHE_MASS` nodes
/// are that large, so the boxes take an eighth of the memory they took
/// when every node kept one, while a recomputed box never needs more than
/// `CACHE_MASS - 1` points.
pub const CACHE_MASS: u32 = 16;

/// The mass from which a node of a tree over points of `dim` coordinates,
/// holding up to `capacity` points, keeps its box: [`CACHE_MASS`], or
/// `2 × dim` when that is more. A box costs `8 × dim + 4` bytes, a point
/// of the tree about 24 (its node, leaf and sampler entry), and about
/// `2n / m` of a tree's nodes hold `m` points or more, so at `m = 2 × dim`
/// the boxes cost at most about a third of the tree whatever its width
/// (every 16 points, a tree of 24-coordinate points spent more on boxes
/// than on itself). A recomputed box never spans more than `m - 1`
/// points.
///
/// When that mass reaches half the capacity, the nodes that large lie on
/// one path down from the root (only one child can hold more than half,
/// or both exactly half), each box differing from the root's by a few
/// points, so only the full tree's root keeps its box (`m` = `capacity`,
/// at least [`CACHE_MASS`]): a pipeline model's 64-point trees of
/// 24-coordinate points kept four boxes each, a sixth of the model, for
/// little saved work, and its trees of 16 coordinates (two constant
/// metrics left out) would keep two or three. A capacity of 0 (unknown)
/// keeps the first rule.
pub fn cache_mass(dim: usize, capacity: usize) -> u32 {
    let m = CACHE_MASS.max(u32::try_from(2 * dim).unwrap_or(u32::MAX));
    let capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
    if capacity == 0 || m < capacity / 2 {
        // (Trees saved before capacities were saved have capacity 0.)
        m
    } else {
        capacity.max(CACHE_MASS)
    }
}

/// Box coordinates (2 × dimensions) recomputed on the stack; larger boxes
/// use a heap buffer.
const STACK_BOX: usize = 128;

/// Trees walked together by [`Tree::score_group`].
pub const GROUP: usize = 8;

/// Lanes of the unrolled sums below (vectorisable without fast-math).
const LANES: usize = 8;

/// Sum of the box's extents, `Σ (hi - lo)`.
#[inline]
fn span_sum(lo: &[f32], hi: &[f32]) -> f64 {
    let mut acc = [0.0f32; LANES];
    let lc = lo.chunks_exact(LANES);
    let hc = hi.chunks_exact(LANES);
    let (lr, hr) = (lc.remainder(), hc.remainder());
    for (l, h) in lc.zip(hc) {
        for i in 0..LANES {
            acc[i] += h[i] - l[i];
        }
    }
    for (i, (l, h)) in lr.iter().zip(hr).enumerate() {
        acc[i] += h - l;
    }
    f64::from(acc.iter().sum::<f32>())
}

/// How far `x` lies outside the box, `Σ max(lo - x, 0) + max(x - hi, 0)`.
#[inline(always)]
fn gap_sum(lo: &[f32], hi: &[f32], x: &[f32]) -> f64 {
    let mut acc = [0.0f32; LANES];
    let lc = lo.chunks_exact(LANES);
    let hc = hi.chunks_exact(LANES);
    let xc = x.chunks_exact(LANES);
    let (lr, hr, xr) = (lc.remainder(), hc.remainder(), xc.remainder());
    for ((l, h), x) in lc.zip(hc).zip(xc) {
        for i in 0..LANES {
            acc[i] += positive(l[i] - x[i]) + positive(x[i] - h[i]);
        }
    }
    for (i, ((l, h), x)) in lr.iter().zip(hr).zip(xr).enumerate() {
        acc[i] += positive(l - x) + positive(x - h);
    }
    f64::from(acc.iter().sum::<f32>())
}

/// Lowers `lo` to `p` where `p` is lower. For the finite coordinates a
/// store holds this is `f32::min`, written as a comparison so that it
/// compiles to packed minimum instructions (`f32::min` must also handle
/// NaN, which costs a compare and a blend per lane).
#[inline(always)]
fn widen_lo(lo: &mut [f32], p: &[f32]) {
    for (l, &v) in lo.iter_mut().zip(p) {
        *l = if v < *l { v } else { *l };
    }
}

/// Raises `hi` to `p` where `p` is higher (see [`widen_lo`]).
#[inline(always)]
fn widen_hi(hi: &mut [f32], p: &[f32]) {
    for (h, &v) in hi.iter_mut().zip(p) {
        *h = if v > *h { v } else { *h };
    }
}

/// Widens the box `lo`/`hi` to hold point `p`.
#[inline(always)]
fn widen(lo: &mut [f32], hi: &mut [f32], p: &[f32]) {
    widen_lo(lo, p);
    widen_hi(hi, p);
}

/// `v` where it is positive, else 0: `v.max(0.0)` for the finite values
/// of boxes and points, as a comparison that vectorises (see
/// [`widen_lo`]).
#[inline(always)]
fn positive(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

/// An internal node: 12 bytes (packed to two-byte alignment, the cut
/// read unaligned). Its mass is at most the tree's capacity, below 2^15.
#[repr(C, packed(2))]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Internal {
    left: NodeRef,
    right: NodeRef,
    cut_dim: u16,
    mass: u16,
    cut: f32,
}

/// A leaf: 6 bytes (packed like [`Internal`]). Its mass (the point's
/// multiplicity) is at most the tree's capacity, below 2^15.
#[repr(C, packed(2))]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Leaf {
    point: u32,
    mass: u16,
}

/// Internal nodes a [`Path`] keeps on the stack; a deeper walk (a tree
/// that deep is near degenerate: random cut trees of n points are about
/// 2 ln n deep) keeps the rest on the heap.
const PATH_NEAR: usize = 48;

/// The internal nodes of a walk down from the root, the deepest last, so
/// that the walk can go back up without parent references.
struct Path {
    near: [NodeRef; PATH_NEAR],
    len: usize,
    far: Vec<NodeRef>,
}

impl Path {
    fn new() -> Self {
        Self {
            near: [NIL; PATH_NEAR],
            len: 0,
            far: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, n: NodeRef) {
        if self.len < PATH_NEAR {
            self.near[self.len] = n;
        } else {
            self.far.push(n);
        }
        self.len += 1;
    }

    /// The deepest node, removed; `NIL` once the walk is back above the
    /// root.
    #[inline]
    fn pop(&mut self) -> NodeRef {
        if self.len == 0 {
            return NIL;
        }
        self.len -= 1;
        if self.len < PATH_NEAR {
            self.near[self.len]
        } else {
            self.far.pop().unwrap_or(NIL)
        }
    }

    /// The deepest node, or `NIL` for an empty path.
    #[inline]
    fn last(&self) -> NodeRef {
        match self.len {
            0 => NIL,
            n if n <= PATH_NEAR => self.near[n - 1],
            _ => self.far.last().copied().unwrap_or(NIL),
        }
    }
}

/// A random cut tree. Saved in the wire form of [`wire::TreeWire`] (the
/// layout of earlier releases); bounding boxes are not saved: they are
/// exact unions of the points below each node and [`Tree::rebuild_boxes`]
/// recomputes the cached ones bit for bit after a restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "wire::TreeWire", try_from = "wire::TreeWire")]
pub struct Tree {
    nodes: Vec<Internal>,
    leaves: Vec<Leaf>,
    /// Per box slot, the internal node whose box it holds, or `NIL` when
    /// the slot is free. Exactly the nodes of at least `cache_mass` points
    /// hold one; they are few, so a node's slot is found by search.
    owners: Vec<NodeRef>,
    /// Box slots of [`Tree::slot_len`] values: lower then upper corner,
    /// `dim` values each, then the range sum `Σ (hi - lo)` (a sum of
    /// `f32`, so exact as an `f32`).
    boxes: Vec<f32>,
    /// Coordinates of the points.
    dim: u32,
    /// Nodes holding at least this many points keep their box (see
    /// [`cache_mass`]).
    cache_mass: u32,
    /// Distinct points the tree is expected to hold at most (its
    /// sampler's capacity, at most [`MAX_TREE_POINTS`]); arenas grow
    /// geometrically up to exactly this.
    capacity: u16,
    root: NodeRef,
    /// The free internal nodes, a list through their `left` (newest
    /// first; a free node has mass 0).
    free_node: NodeRef,
    /// The free leaves, a list through their `point` (newest first; a
    /// free leaf has mass 0).
    free_leaf: NodeRef,
}

/// A tree's per-dimension share of a point's score, split by direction.
pub struct Attribution<'a> {
    /// Share from the point lying below the data, per dimension.
    pub low: &'a mut [f64],
    /// Share from the point lying above the data, per dimension.
    pub high: &'a mut [f64],
}

impl Tree {
    /// An empty tree over points with `dim` coordinates that will hold
    /// about `capacity` distinct points at most. Memory grows with the
    /// points held (doubling, then exactly up to `capacity`), so a young
    /// model is small.
    ///
    /// `dim` is at most 2^16 (cut dimensions are two bytes) and
    /// `capacity` at most [`MAX_TREE_POINTS`] (larger ones are lowered to
    /// it).
    pub fn new(dim: usize, capacity: usize) -> Self {
        debug_assert!(dim <= usize::from(u16::MAX) + 1);
        let capacity = capacity.min(MAX_TREE_POINTS);
        Self {
            nodes: Vec::new(),
            leaves: Vec::new(),
            owners: Vec::new(),
            boxes: Vec::new(),
            dim: dim as u32,
            cache_mass: cache_mass(dim, capacity),
            capacity: capacity as u16,
            root: NIL,
            free_node: NIL,
            free_leaf: NIL,
        }
    }

    /// Coordinates of the points the tree holds.
    #[inline]
    pub fn dim(&self) -> usize {
        self.dim as usize
    }

    /// Puts leaf `i` on the free list.
    fn free_leaf_at(&mut self, i: NodeRef) {
        self.leaves[usize::from(i)] = Leaf {
            point: u32::from(self.free_leaf),
            mass: 0,
        };
        self.free_leaf = i;
    }

    /// Puts internal node `i` on the free list.
    fn free_node_at(&mut self, i: NodeRef) {
        self.nodes[usize::from(i)] = Internal {
            left: self.free_node,
            right: NIL,
            cut_dim: 0,
            mass: 0,
            cut: 0.0,
        };
        self.free_node = i;
    }

    /// The free leaves' indices, in the order they were freed.
    fn free_leaves(&self) -> Vec<NodeRef> {
        let mut out = Vec::new();
        let mut i = self.free_leaf;
        while let Some(leaf) = self.leaves.get(usize::from(i)) {
            if out.len() == self.leaves.len() {
                break;
            }
            out.push(i);
            i = leaf.point as NodeRef;
        }
        out.reverse();
        out
    }

    /// The free internal nodes' indices, in the order they were freed.
    fn free_nodes(&self) -> Vec<NodeRef> {
        let mut out = Vec::new();
        let mut i = self.free_node;
        while let Some(node) = self.nodes.get(usize::from(i)) {
            if out.len() == self.nodes.len() {
                break;
            }
            out.push(i);
            i = node.left;
        }
        out.reverse();
        out
    }

    /// Values per box slot: two corners and the range sum.
    #[inline]
    fn slot_len(&self) -> usize {
        2 * self.dim() + 1
    }

    /// The box slot of internal node `n`, if it has one (searched).
    #[inline]
    fn find_slot(&self, n: NodeRef) -> Option<usize> {
        self.owners.iter().position(|&o| o == n)
    }

    /// The box slot of internal node `n`, while the tree keeps exactly the
    /// boxes of the nodes of at least `cache_mass` points (between
    /// updates, and during one for the nodes it has not touched).
    #[inline]
    fn slot_of(&self, n: NodeRef) -> Option<usize> {
        if u32::from(self.nodes[n as usize].mass) < self.cache_mass {
            None
        } else {
            self.find_slot(n)
        }
    }

    /// Internal node `n`'s cached box, if it has one: lower corner, upper
    /// corner and range sum (see [`Tree::slot_of`]).
    #[inline]
    fn cached_box(&self, n: NodeRef) -> Option<(&[f32], &[f32], f32)> {
        let s = self.slot_of(n)?;
        let d = self.dim();
        let slot = &self.boxes[s * self.slot_len()..(s + 1) * self.slot_len()];
        let (lo, rest) = slot.split_at(d);
        let (hi, range) = rest.split_at(d);
        Some((lo, hi, range[0]))
    }

    /// Room for `len + 1` items in an arena of `per_item` values each:
    /// doubling while small, never beyond `target` items unless needed.
    fn grow<T>(v: &mut Vec<T>, len: usize, per_item: usize, target: usize) {
        if v.capacity() >= (len + 1) * per_item {
            return;
        }
        let items = (len * 2).max(8);
        let items = if target > len {
            items.min(target)
        } else {
            items
        };
        v.reserve_exact(items * per_item - v.len());
    }

    /// Total number of points (with multiplicity) in the tree.
    pub fn mass(&self) -> u32 {
        if self.root == NIL {
            0
        } else {
            self.mass_of(self.root)
        }
    }

    #[inline]
    fn mass_of(&self, c: NodeRef) -> u32 {
        if is_leaf(c) {
            u32::from(self.leaves[leaf_idx(c)].mass)
        } else {
            u32::from(self.nodes[c as usize].mass)
        }
    }

    /// The child of internal node `n` on `x`'s side of its cut.
    #[inline]
    fn toward(&self, n: NodeRef, x: &[f32]) -> NodeRef {
        let n = &self.nodes[n as usize];
        if x[n.cut_dim as usize] <= n.cut {
            n.left
        } else {
            n.right
        }
    }

    /// Writes `c`'s box into `out` (lower then upper corner; a leaf's box
    /// is its point): from the cache, or from the points below `c`.
    fn write_box(&self, c: NodeRef, store: &PointStore, out: &mut [f32]) {
        let d = self.dim();
        if is_leaf(c) {
            let p = store.get(self.leaves[leaf_idx(c)].point);
            out[..d].copy_from_slice(p);
            out[d..2 * d].copy_from_slice(p);
            return;
        }
        if let Some((lo, hi, _)) = self.cached_box(c) {
            out[..d].copy_from_slice(lo);
            out[d..2 * d].copy_from_slice(hi);
            return;
        }
        let (lo, hi) = out[..2 * d].split_at_mut(d);
        lo.fill(f32::INFINITY);
        hi.fill(f32::NEG_INFINITY);
        self.union_below(c, store, lo, hi);
    }

    /// Widens `lo`/`hi` by every point below `c`.
    fn union_below(&self, c: NodeRef, store: &PointStore, lo: &mut [f32], hi: &mut [f32]) {
        if is_leaf(c) {
            widen(lo, hi, store.get(self.leaves[leaf_idx(c)].point));
        } else {
            let n = &self.nodes[c as usize];
            self.union_below(n.left, store, lo, hi);
            self.union_below(n.right, store, lo, hi);
        }
    }

    /// Widens `lo`/`hi` by `c`'s box: its point, its cached box, or every
    /// point below it.
    fn widen_by_box(&self, c: NodeRef, store: &PointStore, lo: &mut [f32], hi: &mut [f32]) {
        if !is_leaf(c) {
            if let Some((clo, chi, _)) = self.cached_box(c) {
                widen_lo(lo, clo);
                widen_hi(hi, chi);
                return;
            }
        }
        self.union_below(c, store, lo, hi);
    }

    /// Writes node `n`'s box into `out` (from the cache, or the union of
    /// the points below it) and returns whether `x` lies in it: exactly
    /// when the box's gap to `x` is 0 (a sum of non-negative `f32`s is 0
    /// only when each is). The union runs over every point in a tight,
    /// vectorisable loop; stopping early once `x` was seen to be inside
    /// (tested per point and dimension) made a release build 2× slower
    /// per run.
    fn box_and_whether_inside(
        &self,
        n: NodeRef,
        x: &[f32],
        store: &PointStore,
        out: &mut [f32],
    ) -> bool {
        let d = self.dim();
        self.write_box(n, store, out);
        let (lo, hi) = out[..2 * d].split_at(d);
        gap_sum(lo, hi, x) == 0.0
    }

    /// Turns `below`, the box of `n`'s child `child`, into `n`'s box (from
    /// the cache, or widened by the other child's box) and returns how far
    /// `x` lies outside it, with its range sum. The same values as
    /// [`Tree::with_box`]: a box is the exact union of its points, in
    /// whatever order they are taken.
    #[inline]
    fn widen_to_parent(
        &self,
        n: NodeRef,
        child: NodeRef,
        store: &PointStore,
        below: &mut [f32; STACK_BOX],
        x: &[f32],
    ) -> (f64, f64) {
        let d = self.dim();
        let range = if let Some((lo, hi, range)) = self.cached_box(n) {
            below[..d].copy_from_slice(lo);
            below[d..2 * d].copy_from_slice(hi);
            f64::from(range)
        } else {
            let node = &self.nodes[n as usize];
            let other = if node.left == child {
                node.right
            } else {
                node.left
            };
            let (lo, hi) = below[..2 * d].split_at_mut(d);
            self.widen_by_box(other, store, lo, hi);
            span_sum(lo, hi)
        };
        let (lo, hi) = below[..2 * d].split_at(d);
        (gap_sum(lo, hi, x), range)
    }

    /// Runs `f` on internal node `n`'s box (lower corner, upper corner,
    /// range sum), cached or recomputed.
    #[inline]
    fn with_box<R>(
        &self,
        n: NodeRef,
        store: &PointStore,
        f: impl FnOnce(&[f32], &[f32], f64) -> R,
    ) -> R {
        if let Some((lo, hi, range)) = self.cached_box(n) {
            return f(lo, hi, f64::from(range));
        }
        let d = self.dim();
        if 2 * d <= STACK_BOX {
            let mut buf = [0.0f32; STACK_BOX];
            self.write_box(n, store, &mut buf);
            let (lo, hi) = buf[..2 * d].split_at(d);
            f(lo, hi, span_sum(lo, hi))
        } else {
            let mut buf = vec![0.0f32; 2 * d];
            self.write_box(n, store, &mut buf);
            let (lo, hi) = buf.split_at(d);
            f(lo, hi, span_sum(lo, hi))
        }
    }

    /// A free box slot, now held by internal node `n`.
    fn alloc_slot(&mut self, n: NodeRef) -> usize {
        if let Some(s) = self.find_slot(NIL) {
            self.owners[s] = n;
            return s;
        }
        // One slot at a time: a tree keeps few boxes.
        let len = self.slot_len();
        self.boxes.reserve_exact(len);
        self.boxes.resize(self.boxes.len() + len, 0.0);
        self.owners.reserve_exact(1);
        self.owners.push(n);
        self.owners.len() - 1
    }

    /// Sets the range sum of box slot `s`; every range sum is a sum of
    /// `f32` values, so the slot keeps it exactly.
    fn set_range(&mut self, s: usize, range: f64) {
        debug_assert_eq!(f64::from(range as f32), range, "range sum exact in f32");
        let at = s * self.slot_len() + 2 * self.dim();
        self.boxes[at] = range as f32;
    }

    /// Gives internal node `n` a cached box, computed from its points.
    fn cache_box(&mut self, n: NodeRef, store: &PointStore) {
        let d = self.dim();
        let s = self.alloc_slot(n);
        let start = s * self.slot_len();
        let mut boxes = std::mem::take(&mut self.boxes);
        let range = {
            let (lo, hi) = boxes[start..start + 2 * d].split_at_mut(d);
            lo.fill(f32::INFINITY);
            hi.fill(f32::NEG_INFINITY);
            self.union_below(n, store, lo, hi);
            span_sum(lo, hi)
        };
        self.boxes = boxes;
        self.set_range(s, range);
    }

    /// Gives internal node `n` the cached box `b` with range sum `range`.
    fn cache_box_as(&mut self, n: NodeRef, b: &[f32], range: f64) {
        let d = self.dim();
        let s = self.alloc_slot(n);
        let start = s * self.slot_len();
        self.boxes[start..start + 2 * d].copy_from_slice(b);
        self.set_range(s, range);
    }

    /// Drops internal node `n`'s cached box, if it has one.
    fn uncache(&mut self, n: NodeRef) {
        if let Some(s) = self.find_slot(n) {
            self.owners[s] = NIL;
        }
    }

    fn replace_child(&mut self, parent: NodeRef, old: NodeRef, new: NodeRef) {
        if parent == NIL {
            self.root = new;
        } else {
            let n = &mut self.nodes[parent as usize];
            if n.left == old {
                n.left = new;
            } else {
                n.right = new;
            }
        }
    }

    fn new_leaf(&mut self, point: u32) -> NodeRef {
        let leaf = Leaf { point, mass: 1 };
        let idx = if self.free_leaf != NIL {
            let i = self.free_leaf;
            self.free_leaf = self.leaves[usize::from(i)].point as NodeRef;
            self.leaves[usize::from(i)] = leaf;
            i
        } else {
            let n = self.leaves.len();
            Self::grow(&mut self.leaves, n, 1, usize::from(self.capacity));
            self.leaves.push(leaf);
            (self.leaves.len() - 1) as NodeRef
        };
        idx | LEAF
    }

    fn new_node(&mut self, node: Internal) -> NodeRef {
        if self.free_node != NIL {
            let i = self.free_node;
            self.free_node = self.nodes[usize::from(i)].left;
            self.nodes[usize::from(i)] = node;
            i
        } else {
            let n = self.nodes.len();
            let target = usize::from(self.capacity).saturating_sub(1);
            Self::grow(&mut self.nodes, n, 1, target);
            self.nodes.push(node);
            (self.nodes.len() - 1) as NodeRef
        }
    }

    /// Adds `x` (stored at `point` in `store`) and returns the point the
    /// tree now refers to, with its leaf: `point` itself in a new leaf, or
    /// an existing leaf's point when `x` duplicates it (the leaf's mass
    /// grows instead).
    /// `scratch` is working space (two boxes), shared by the forest's
    /// trees so that each does not hold its own.
    pub fn insert(
        &mut self,
        x: &[f32],
        point: u32,
        store: &PointStore,
        rng: &mut Rng,
        scratch: &mut Vec<f32>,
    ) -> Entry {
        let d = self.dim();
        if self.root == NIL {
            self.root = self.new_leaf(point);
            return Entry {
                point,
                leaf: self.root,
            };
        }
        // The merged box, then `cur`'s box.
        let buf = scratch;
        buf.resize(4 * d, 0.0);
        let mut cur = self.root;
        let mut parent = NIL;
        loop {
            let (merged, cur_box) = buf.split_at_mut(2 * d);
            let inside = if is_leaf(cur) {
                self.write_box(cur, store, cur_box);
                false
            } else {
                self.box_and_whether_inside(cur, x, store, cur_box)
            };
            if inside {
                // `x` lies in this box: no cut drawn in it can separate
                // `x`, and the box stays as it is.
                let n = &mut self.nodes[cur as usize];
                n.mass += 1;
                let (mass, next) = (
                    u32::from(n.mass),
                    if x[n.cut_dim as usize] <= n.cut {
                        n.left
                    } else {
                        n.right
                    },
                );
                if mass >= self.cache_mass && self.find_slot(cur).is_none() {
                    self.cache_box(cur, store);
                }
                parent = cur;
                cur = next;
                continue;
            }
            let (lo, hi) = cur_box[..2 * d].split_at(d);
            {
                let (mlo, mhi) = merged.split_at_mut(d);
                mlo.copy_from_slice(lo);
                mhi.copy_from_slice(hi);
                widen(mlo, mhi, x);
            }
            let (mlo, mhi) = merged.split_at(d);
            let total = span_sum(mlo, mhi);
            if total == 0.0 {
                // Only a leaf has an empty box: `x` duplicates it.
                let li = leaf_idx(cur);
                self.leaves[li].mass += 1;
                return Entry {
                    point: self.leaves[li].point,
                    leaf: cur,
                };
            }
            let r = rng.next_f64() * total;
            let mut acc = 0.0f64;
            let mut cut_dim = usize::MAX;
            let mut cut = 0.0f32;
            for k in 0..d {
                let w = f64::from(mhi[k]) - f64::from(mlo[k]);
                if w <= 0.0 {
                    continue;
                }
                cut_dim = k;
                cut = (f64::from(mlo[k]) + (r - acc)) as f32;
                if cut >= mhi[k] {
                    cut = just_below(mhi[k]);
                }
                if cut < mlo[k] {
                    cut = mlo[k];
                }
                if r < acc + w {
                    break;
                }
                acc += w;
            }
            let k = cut_dim;
            if cut < lo[k] || cut >= hi[k] {
                // The cut separates `x` from everything below `cur`.
                let mass = self.mass_of(cur) + 1;
                let node = self.new_node(Internal {
                    left: NIL,
                    right: NIL,
                    cut_dim: k as u16,
                    mass: mass as u16,
                    cut,
                });
                let leaf = self.new_leaf(point);
                let (l, r) = if x[k] <= cut {
                    (leaf, cur)
                } else {
                    (cur, leaf)
                };
                self.nodes[node as usize].left = l;
                self.nodes[node as usize].right = r;
                self.replace_child(parent, cur, node);
                // The new node's box is the old box widened by `x`.
                if mass >= self.cache_mass {
                    self.cache_box_as(node, &buf[..2 * d], total);
                }
                return Entry { point, leaf };
            }
            // No separation here: widen this node's box and go down.
            let ni = cur as usize;
            let s = self.slot_of(cur);
            if let Some(s) = s {
                let start = s * self.slot_len();
                self.boxes[start..start + 2 * d].copy_from_slice(&buf[..2 * d]);
                self.set_range(s, total);
            }
            let n = &mut self.nodes[ni];
            n.mass += 1;
            let (mass, next) = (
                u32::from(n.mass),
                if x[n.cut_dim as usize] <= n.cut {
                    n.left
                } else {
                    n.right
                },
            );
            if mass >= self.cache_mass && s.is_none() {
                self.cache_box_as(cur, &buf[..2 * d], total);
            }
            parent = cur;
            cur = next;
        }
    }

    /// Removes one copy of `x`, which must be in the tree and stored at
    /// `point`. Returns false (and changes nothing) if it is not there.
    #[cfg(test)]
    pub fn delete(
        &mut self,
        x: &[f32],
        point: u32,
        store: &PointStore,
        scratch: &mut Vec<f32>,
    ) -> bool {
        if self.root == NIL {
            return false;
        }
        let mut cur = self.root;
        while !is_leaf(cur) {
            let n = &self.nodes[cur as usize];
            cur = if x[n.cut_dim as usize] <= n.cut {
                n.left
            } else {
                n.right
            };
        }
        let li = leaf_idx(cur);
        if self.leaves[li].point != point && store.get(self.leaves[li].point) != x {
            return false;
        }
        self.delete_leaf(cur, store, scratch);
        true
    }

    /// Removes one copy of the point held by leaf `leaf` (a reference
    /// returned by [`Tree::insert`] and still live). The leaf's ancestors
    /// are the nodes its point's coordinates lead through.
    pub fn delete_leaf(&mut self, leaf: NodeRef, store: &PointStore, scratch: &mut Vec<f32>) {
        let li = leaf_idx(leaf);
        let x = store.get(self.leaves[li].point);
        let mut path = Path::new();
        let mut cur = self.root;
        while cur != NIL && !is_leaf(cur) {
            path.push(cur);
            cur = self.toward(cur, x);
        }
        debug_assert_eq!(cur, leaf, "a stored point's coordinates lead to its leaf");
        if self.leaves[li].mass > 1 {
            self.leaves[li].mass -= 1;
            loop {
                let p = path.pop();
                if p == NIL {
                    break;
                }
                self.nodes[p as usize].mass -= 1;
                if u32::from(self.nodes[p as usize].mass) < self.cache_mass {
                    self.uncache(p);
                }
            }
            return;
        }
        self.free_leaf_at(li as NodeRef);
        let parent = path.pop();
        if parent == NIL {
            self.root = NIL;
            return;
        }
        let pn = &self.nodes[parent as usize];
        let sibling = if pn.left == leaf { pn.right } else { pn.left };
        self.replace_child(path.last(), parent, sibling);
        self.free_node_at(parent);
        self.uncache(parent);
        let mut changing = true;
        loop {
            let g = path.pop();
            if g == NIL {
                break;
            }
            self.nodes[g as usize].mass -= 1;
            if u32::from(self.nodes[g as usize].mass) < self.cache_mass {
                // Too small to keep a box (smaller nodes lie below, so
                // boxes further up may still change).
                self.uncache(g);
            } else if changing {
                // A box strictly containing the removed point keeps its
                // extent; only a point on the boundary can shrink it.
                changing = !self.strictly_inside(g, x) && self.recompute_box(g, store, scratch);
            }
        }
    }

    /// Sets cached node `n`'s box to the union of its children's; true if
    /// it changed.
    fn recompute_box(&mut self, n: NodeRef, store: &PointStore, scratch: &mut Vec<f32>) -> bool {
        let d = self.dim();
        let (l, r) = {
            let node = &self.nodes[n as usize];
            (node.left, node.right)
        };
        let buf = scratch;
        buf.resize(2 * d, 0.0);
        {
            let merged = &mut buf[..2 * d];
            self.write_box(l, store, merged);
            let (lo, hi) = merged.split_at_mut(d);
            self.widen_by_box(r, store, lo, hi);
        }
        let Some(s) = self.find_slot(n) else {
            unreachable!("node {n} has a cached box");
        };
        let start = s * self.slot_len();
        let slot = &mut self.boxes[start..start + 2 * d];
        let changed = slot != &buf[..2 * d];
        slot.copy_from_slice(&buf[..2 * d]);
        let (mlo, mhi) = buf[..2 * d].split_at(d);
        let range = span_sum(mlo, mhi);
        self.set_range(s, range);
        changed
    }

    /// Lays the tree out for points of `dim` coordinates, the store having
    /// widened or narrowed every point the same way: each cut's dimension
    /// `k` becomes `place(k)`. The coordinates added or removed hold one
    /// value in every point, so no live node cuts on them and no cut and
    /// no mass changes; the cached boxes are rebuilt (and the mass that
    /// keeps a box follows the new width).
    pub fn relayout(
        &mut self,
        dim: usize,
        place: impl Fn(usize) -> usize,
        store: &PointStore,
        scratch: &mut Vec<f32>,
    ) {
        for n in self.nodes.iter_mut().filter(|n| n.mass > 0) {
            let k = place(usize::from(n.cut_dim));
            debug_assert!(k < dim);
            n.cut_dim = k as u16;
        }
        self.dim = dim as u32;
        self.cache_mass = cache_mass(dim, usize::from(self.capacity));
        self.rebuild_boxes(store, scratch);
    }

    /// Recomputes the cached bounding boxes from the points (after a
    /// restore).
    pub fn rebuild_boxes(&mut self, store: &PointStore, scratch: &mut Vec<f32>) {
        self.owners = Vec::new();
        self.boxes = Vec::new();
        if self.root != NIL && !is_leaf(self.root) {
            self.rebuild_below(self.root, store, scratch);
        }
    }

    fn rebuild_below(&mut self, n: NodeRef, store: &PointStore, scratch: &mut Vec<f32>) {
        let (l, r) = {
            let node = &self.nodes[n as usize];
            (node.left, node.right)
        };
        if !is_leaf(l) {
            self.rebuild_below(l, store, scratch);
        }
        if !is_leaf(r) {
            self.rebuild_below(r, store, scratch);
        }
        if u32::from(self.nodes[n as usize].mass) >= self.cache_mass {
            self.alloc_slot(n);
            self.recompute_box(n, store, scratch);
        }
    }

    /// The anomaly score of `x` in this tree, normalised so that a typical
    /// point scores about 1 (0 for an empty tree). The plain recursive form
    /// of [`Tree::score_group`], kept as its reference in tests.
    #[cfg(test)]
    pub fn score(&self, x: &[f32], store: &PointStore) -> f64 {
        if self.root == NIL {
            return 0.0;
        }
        let total = self.mass();
        self.score_below(self.root, 0, x, store, total).0 * normalizer(total)
    }

    /// The sum of [`Tree::score`] over `trees`, with the root-to-leaf walks
    /// of the trees interleaved so that their memory accesses overlap
    /// (the walks are chains of dependent loads; one tree at a time would
    /// wait on each in turn).
    pub fn score_group(trees: &[&Tree], x: &[f32], store: &PointStore) -> f64 {
        debug_assert!(trees.len() <= GROUP);
        let k = trees.len();
        let mut cur = [NIL; GROUP];
        let mut paths: [Path; GROUP] = std::array::from_fn(|_| Path::new());
        let mut walking = 0usize;
        let mut touch = 0.0f32;
        for j in 0..k {
            cur[j] = trees[j].root;
            if cur[j] != NIL && !is_leaf(cur[j]) {
                walking += 1;
            }
        }
        while walking > 0 {
            for j in 0..k {
                let c = cur[j];
                if c == NIL || is_leaf(c) {
                    continue;
                }
                let t = trees[j];
                let n = &t.nodes[c as usize];
                // Touch a cached box now, while the walk waits on the next
                // node, so that it is in cache for the way back up.
                if let Some(s) = t.slot_of(c) {
                    let b = s * t.slot_len();
                    touch += t.boxes[b] + t.boxes[b + 2 * t.dim()];
                }
                paths[j].push(c);
                let next = if x[n.cut_dim as usize] <= n.cut {
                    n.left
                } else {
                    n.right
                };
                cur[j] = next;
                if is_leaf(next) {
                    walking -= 1;
                }
            }
        }
        let mut sum = 0.0;
        // Trees mostly hold the same mass; compute its normaliser once.
        let mut norm = (0u32, 0.0f64);
        for j in 0..k {
            let t = trees[j];
            if t.root == NIL {
                continue;
            }
            let total = t.mass();
            if norm.0 != total {
                norm = (total, normalizer(total));
            }
            let leaf = t.leaves[leaf_idx(cur[j])];
            let path = &mut paths[j];
            let mut level = path.len;
            let s = if store.get(leaf.point) == x {
                damp(u32::from(leaf.mass), total) * score_seen(level, u32::from(leaf.mass))
            } else {
                let mut s = score_unseen(level);
                let mut n = path.pop();
                // The box of the node below `n` on the way up (at first
                // the leaf's point): an uncached box of `n` is that box
                // widened by the other child's, not rebuilt from all of
                // `n`'s points.
                let narrow = 2 * t.dim() <= STACK_BOX;
                let mut below = [0.0f32; STACK_BOX];
                let mut child = cur[j];
                if narrow {
                    t.write_box(child, store, &mut below);
                }
                while n != NIL {
                    level -= 1;
                    let (gap, range) = if narrow {
                        t.widen_to_parent(n, child, store, &mut below, x)
                    } else {
                        t.with_box(n, store, |lo, hi, range| (gap_sum(lo, hi, x), range))
                    };
                    if gap == 0.0 {
                        break;
                    }
                    let p = gap / (range + gap);
                    s = p * score_unseen(level) + (1.0 - p) * s;
                    child = n;
                    n = path.pop();
                }
                s
            };
            sum += s * norm.1;
        }
        std::hint::black_box(touch);
        sum
    }

    /// Score below `c` at `depth`, and whether `x` lies in `c`'s box.
    #[cfg(test)]
    fn score_below(
        &self,
        c: NodeRef,
        depth: usize,
        x: &[f32],
        store: &PointStore,
        total: u32,
    ) -> (f64, bool) {
        if is_leaf(c) {
            let leaf = &self.leaves[leaf_idx(c)];
            return if store.get(leaf.point) == x {
                (
                    damp(u32::from(leaf.mass), total) * score_seen(depth, u32::from(leaf.mass)),
                    true,
                )
            } else {
                (score_unseen(depth), false)
            };
        }
        let n = &self.nodes[c as usize];
        let child = if x[n.cut_dim as usize] <= n.cut {
            n.left
        } else {
            n.right
        };
        let (s, inside) = self.score_below(child, depth + 1, x, store, total);
        if inside {
            return (s, true);
        }
        let (gap, range) = self.with_box(c, store, |lo, hi, range| (gap_sum(lo, hi, x), range));
        if gap == 0.0 {
            return (s, true);
        }
        let p = gap / (range + gap);
        (p * score_unseen(depth) + (1.0 - p) * s, false)
    }

    /// True when `x` lies strictly inside cached node `n`'s box in every
    /// dimension.
    fn strictly_inside(&self, n: NodeRef, x: &[f32]) -> bool {
        let Some((lo, hi, _)) = self.cached_box(n) else {
            unreachable!("node {n} has a cached box");
        };
        lo.iter().zip(hi).zip(x).all(|((l, h), v)| l < v && v < h)
    }

    /// Adds this tree's directional attribution of `x`'s score (normalised
    /// like [`Tree::score`]) to `out`; the entries sum to the tree's score.
    pub fn attribution(&self, x: &[f32], store: &PointStore, out: Attribution<'_>) {
        if self.root == NIL {
            return;
        }
        let d = self.dim();
        let total = self.mass();
        let mut low = vec![0.0f64; d];
        let mut high = vec![0.0f64; d];
        self.attribution_below(self.root, 0, x, store, total, &mut low, &mut high);
        let norm = normalizer(total);
        for k in 0..d {
            out.low[k] += low[k] * norm;
            out.high[k] += high[k] * norm;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attribution_below(
        &self,
        c: NodeRef,
        depth: usize,
        x: &[f32],
        store: &PointStore,
        total: u32,
        low: &mut [f64],
        high: &mut [f64],
    ) -> bool {
        let d = self.dim();
        if is_leaf(c) {
            let leaf = &self.leaves[leaf_idx(c)];
            let p = store.get(leaf.point);
            if p == x {
                let s = damp(u32::from(leaf.mass), total) * score_seen(depth, u32::from(leaf.mass));
                let share = s / (2 * d) as f64;
                low.iter_mut()
                    .chain(high.iter_mut())
                    .for_each(|v| *v = share);
                return true;
            }
            let s = score_unseen(depth);
            let sum: f64 = (0..d).map(|k| f64::from((x[k] - p[k]).abs())).sum();
            for k in 0..d {
                let g = f64::from((x[k] - p[k]).abs()) / sum * s;
                if x[k] < p[k] {
                    low[k] = g;
                    high[k] = 0.0;
                } else {
                    low[k] = 0.0;
                    high[k] = g;
                }
            }
            return false;
        }
        let n = &self.nodes[c as usize];
        let child = if x[n.cut_dim as usize] <= n.cut {
            n.left
        } else {
            n.right
        };
        if self.attribution_below(child, depth + 1, x, store, total, low, high) {
            return true;
        }
        self.with_box(c, store, |lo, hi, range| {
            let gap = gap_sum(lo, hi, x);
            if gap == 0.0 {
                return true;
            }
            let denom = range + gap;
            let p = gap / denom;
            let u = score_unseen(depth);
            for k in 0..d {
                let gl = f64::from((lo[k] - x[k]).max(0.0));
                let gh = f64::from((x[k] - hi[k]).max(0.0));
                low[k] = (1.0 - p) * low[k] + u * gl / denom;
                high[k] = (1.0 - p) * high[k] + u * gh / denom;
            }
            false
        })
    }

    /// The completion of `x`'s coordinates `missing` that this tree finds
    /// most normal: the point of the leaf reached by following, at cuts on
    /// missing coordinates, whichever side scores lower. Returns the score
    /// of that completion and the leaf's point index.
    pub fn impute(
        &self,
        x: &[f32],
        missing: std::ops::Range<usize>,
        store: &PointStore,
    ) -> Option<(f64, u32)> {
        if self.root == NIL {
            return None;
        }
        let total = self.mass();
        let (s, p) = self.impute_below(self.root, 0, x, &missing, store, total);
        Some((s * normalizer(total), p))
    }

    fn impute_below(
        &self,
        c: NodeRef,
        depth: usize,
        x: &[f32],
        missing: &std::ops::Range<usize>,
        store: &PointStore,
        total: u32,
    ) -> (f64, u32) {
        let d = self.dim();
        if is_leaf(c) {
            let leaf = &self.leaves[leaf_idx(c)];
            let p = store.get(leaf.point);
            let same = (0..d).all(|k| missing.contains(&k) || p[k] == x[k]);
            let s = if same {
                damp(u32::from(leaf.mass), total) * score_seen(depth, u32::from(leaf.mass))
            } else {
                score_unseen(depth)
            };
            return (s, leaf.point);
        }
        let n = &self.nodes[c as usize];
        let k = n.cut_dim as usize;
        let (s, point) = if missing.contains(&k) {
            let a = self.impute_below(n.left, depth + 1, x, missing, store, total);
            let b = self.impute_below(n.right, depth + 1, x, missing, store, total);
            if b.0 < a.0 {
                b
            } else {
                a
            }
        } else {
            let child = if x[k] <= n.cut { n.left } else { n.right };
            self.impute_below(child, depth + 1, x, missing, store, total)
        };
        let (gap, range) = self.with_box(c, store, |lo, hi, range| {
            let mut gap = 0.0f64;
            for j in (0..d).filter(|j| !missing.contains(j)) {
                gap += f64::from((lo[j] - x[j]).max(0.0)) + f64::from((x[j] - hi[j]).max(0.0));
            }
            (gap, range)
        });
        if gap == 0.0 {
            return (s, point);
        }
        let p = gap / (range + gap);
        (p * score_unseen(depth) + (1.0 - p) * s, point)
    }

    /// True when `leaf` is a live leaf holding `point`.
    pub fn holds_leaf(&self, leaf: NodeRef, point: u32) -> bool {
        is_leaf(leaf)
            && self
                .leaves
                .get(leaf_idx(leaf))
                .is_some_and(|l| l.mass > 0 && l.point == point)
    }

    /// Checks a restored tree's structure against `store`: from the root,
    /// every reference is in its arena, live (not on a free list) and
    /// reached once; cuts are on a coordinate of the points; every leaf
    /// holds a live point of the store at least once; each node's mass is
    /// its children's sum; and every leaf's point leads, cut by cut, to
    /// that leaf (deletion finds a leaf that way). Boxes are not checked:
    /// they are rebuilt from the points.
    pub fn validate(&self, store: &PointStore) -> Result<(), String> {
        let mut node_seen = vec![false; self.nodes.len()];
        let mut leaf_seen = vec![false; self.leaves.len()];
        // Marks free entry `i` of `seen`, refusing one beyond the arena or
        // met twice (a list that loops).
        let mark = |seen: &mut [bool], i: NodeRef, what: &str| match seen.get_mut(usize::from(i)) {
            None => Err(format!(
                "free {what} {i} is beyond the {} {what} slots",
                seen.len()
            )),
            Some(true) => Err(format!("free {what} {i} is on the free list twice")),
            Some(s) => {
                *s = true;
                Ok(())
            }
        };
        let mut i = self.free_node;
        while i != NIL {
            mark(&mut node_seen, i, "node")?;
            i = self.nodes[usize::from(i)].left;
        }
        let mut i = self.free_leaf;
        while i != NIL {
            mark(&mut leaf_seen, i, "leaf")?;
            let next = self.leaves[usize::from(i)].point;
            i = NodeRef::try_from(next).unwrap_or(NIL - 1);
        }
        // Pre-order, so that children come after their parent: masses are
        // added up in reverse.
        let mut order = Vec::new();
        let mut stack = vec![self.root];
        while let Some(c) = stack.pop() {
            if c == NIL {
                if order.is_empty() && stack.is_empty() {
                    break; // an empty tree
                }
                return Err("an internal node lacks a child".into());
            }
            let (seen, what) = if is_leaf(c) {
                (leaf_seen.get_mut(leaf_idx(c)), "leaf")
            } else {
                (node_seen.get_mut(usize::from(c)), "node")
            };
            let index = c & !LEAF;
            match seen {
                None => return Err(format!("{what} {index} is beyond its arena")),
                Some(true) => {
                    return Err(format!("{what} {index} is free or reached twice"));
                }
                Some(s) => *s = true,
            }
            if is_leaf(c) {
                let Leaf { point, mass } = self.leaves[leaf_idx(c)];
                if mass == 0 || !store.holds(point) {
                    return Err(format!(
                        "leaf {index} holds point {point} {mass} times, which the store {}",
                        if store.holds(point) {
                            "holds"
                        } else {
                            "does not hold"
                        }
                    ));
                }
            } else {
                let n = self.nodes[c as usize];
                if usize::from(n.cut_dim) >= self.dim() {
                    return Err(format!(
                        "node {index} cuts coordinate {} of points of {}",
                        n.cut_dim,
                        self.dim()
                    ));
                }
                stack.push(n.right);
                stack.push(n.left);
            }
            order.push(c);
        }
        if let Some(i) = node_seen.iter().position(|s| !s) {
            return Err(format!("node {i} is neither free nor in the tree"));
        }
        if let Some(i) = leaf_seen.iter().position(|s| !s) {
            return Err(format!("leaf {i} is neither free nor in the tree"));
        }
        let mut mass = vec![0u32; self.nodes.len()];
        for &c in order.iter().rev() {
            if is_leaf(c) {
                continue;
            }
            let n = self.nodes[c as usize];
            let below = |r: NodeRef| {
                if is_leaf(r) {
                    u32::from(self.leaves[leaf_idx(r)].mass)
                } else {
                    mass[r as usize]
                }
            };
            let sum = below(n.left) + below(n.right);
            if sum != u32::from(n.mass) {
                return Err(format!(
                    "node {c} has mass {} but its children hold {sum}",
                    n.mass
                ));
            }
            mass[c as usize] = sum;
        }
        for &c in order.iter().filter(|&&c| is_leaf(c)) {
            let x = store.get(self.leaves[leaf_idx(c)].point);
            let mut cur = self.root;
            while !is_leaf(cur) {
                cur = self.toward(cur, x);
            }
            if cur != c {
                return Err(format!(
                    "the point of leaf {} leads to another leaf",
                    c & !LEAF
                ));
            }
        }
        Ok(())
    }

    /// The store index of the point held by leaf `leaf`.
    pub fn leaf_point(&self, leaf: NodeRef) -> u32 {
        self.leaves[leaf_idx(leaf)].point
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Internal>()
            + self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + self.owners.capacity() * 2
            + self.boxes.capacity() * 4
    }

    /// Adds this tree's heap bytes, part by part, to `parts`.
    pub fn memory_parts(&self, parts: &mut MemoryParts) {
        parts.add_vec("tree nodes", &self.nodes);
        parts.add_vec("tree leaves", &self.leaves);
        parts.add_vec("box slot owners", &self.owners);
        parts.add_vec("cached boxes", &self.boxes);
    }

    /// Cached boxes held.
    #[cfg(test)]
    pub fn boxes_kept(&self) -> usize {
        self.owners.iter().filter(|&&o| o != NIL).count()
    }

    /// Checks the tree's invariants: those [`Tree::validate`] checks,
    /// every box is the exact union of the points below it, and every
    /// point lies on the side of each cut its path took. Returns the
    /// tree's point indices with multiplicity.
    #[cfg(test)]
    pub fn check(&self, store: &PointStore) -> Vec<u32> {
        let mut out = Vec::new();
        if let Err(e) = self.validate(store) {
            panic!("invalid tree: {e}");
        }
        if self.root != NIL {
            self.check_below(self.root, store, &mut out);
        }
        out.sort_unstable();
        out
    }

    /// The tree's shape in pre-order, independent of arena slots: each
    /// internal node as (cut dimension, cut, mass, box) and each leaf as
    /// (point, mass).
    #[cfg(test)]
    pub fn shape(&self, store: &PointStore) -> Vec<(u32, f32, u32, Vec<f32>)> {
        let mut out = Vec::new();
        let mut stack = vec![self.root];
        while let Some(c) = stack.pop() {
            if c == NIL {
                continue;
            }
            if is_leaf(c) {
                let l = &self.leaves[leaf_idx(c)];
                out.push((u32::MAX, l.point as f32, u32::from(l.mass), Vec::new()));
            } else {
                let n = &self.nodes[c as usize];
                let mut bx = vec![0.0; 2 * self.dim()];
                self.write_box(c, store, &mut bx);
                out.push((u32::from(n.cut_dim), n.cut, u32::from(n.mass), bx));
                stack.push(n.right);
                stack.push(n.left);
            }
        }
        out
    }

    #[cfg(test)]
    fn check_below(
        &self,
        c: NodeRef,
        store: &PointStore,
        out: &mut Vec<u32>,
    ) -> (Vec<f32>, Vec<f32>, u32) {
        if is_leaf(c) {
            let leaf = &self.leaves[leaf_idx(c)];
            for _ in 0..leaf.mass {
                out.push(leaf.point);
            }
            let p = store.get(leaf.point).to_vec();
            return (p.clone(), p, u32::from(leaf.mass));
        }
        let n = self.nodes[c as usize];
        let (llo, lhi, lm) = self.check_below(n.left, store, out);
        let (rlo, rhi, rm) = self.check_below(n.right, store, out);
        let (k, cut, mass) = (n.cut_dim as usize, n.cut, u32::from(n.mass));
        assert!(lhi[k] <= cut, "left side lies at or below the cut");
        assert!(rlo[k] > cut, "right side lies above the cut");
        let lo: Vec<f32> = llo.iter().zip(&rlo).map(|(a, b)| a.min(*b)).collect();
        let hi: Vec<f32> = lhi.iter().zip(&rhi).map(|(a, b)| a.max(*b)).collect();
        let s = self.find_slot(c);
        assert_eq!(
            s.is_some(),
            mass >= self.cache_mass,
            "exactly the nodes of at least {} points keep a box",
            self.cache_mass
        );
        assert!(
            self.owners.iter().filter(|&&o| o == c).count() <= 1,
            "a node keeps one box"
        );
        let mut b = vec![0.0; 2 * self.dim()];
        self.write_box(c, store, &mut b);
        let (blo, bhi) = b.split_at(self.dim());
        assert_eq!(blo, &lo[..], "box minimum is the union of the children");
        assert_eq!(bhi, &hi[..], "box maximum is the union of the children");
        assert_eq!(mass, lm + rm, "mass adds up");
        if let Some(s) = s {
            let range = self.boxes[s * self.slot_len() + 2 * self.dim()];
            assert_eq!(f64::from(range), span_sum(&lo, &hi));
        }
        (lo, hi, mass)
    }
}
