//! The forest: configuration, the internal shingle, the shared point store
//! and the trees with their samplers. Owns the raw score, attribution and
//! imputation over all trees; owns no thresholds.
//!
//! **Values that never vary are not stored.** An input value that every
//! input so far has had (a metric a pipeline does not report, held at one
//! value) is kept once, in [`Forest`]'s `constant_values`, not in every
//! stored input, and the trees cut and box only the other coordinates: a
//! coordinate with one value has no extent, so no cut falls on it and it
//! adds nothing to a box's extent or to a point's distance from a box.
//! Only the order of the floating-point sums changes, so scores agree with
//! a forest that stores every value up to rounding. The first value of
//! the first input is always stored. When an input brings another value
//! in a constant place, that place is stored from then on in every input
//! ([`PointStore::insert_value`], [`Tree::relayout`]); a point scored with
//! such a value is scored by a widened copy, so it scores as far from the
//! data as it is. A forest saved before values were left out is converted
//! on load: each value every input it holds has alike is left out then.
//! [`Forest::store_every_value`] keeps the earlier layout, for comparisons.

use serde::{Deserialize, Serialize};

use super::memory::MemoryParts;
use super::rng::{splitmix64, Rng};
use super::sampler::{Admission, EntryWire, Sampler, SamplerWire};
use super::store::{PointStore, StoreWire};
use super::tree::{ref_from_wire, ref_to_wire, Attribution, Tree, GROUP, MAX_TREE_POINTS};
use crate::detect::bits;

/// Shingled points up to this many coordinates are converted to `f32` on
/// the stack; longer ones use a heap buffer.
const STACK_DIM: usize = 64;

/// Settings of a [`Forest`]. Defaults follow AWS's RCF: 50 trees of 256
/// points with time decay 0.1 / 256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForestConfig {
    /// Values per input point (metrics per observation).
    pub dimensions: usize,
    /// Consecutive input points joined into one forest point.
    pub shingle_size: usize,
    /// Number of trees.
    pub trees: usize,
    /// Points each tree samples (at most [`MAX_TREE_POINTS`]).
    pub sample_size: usize,
    /// Rate at which old points lose priority in the samples (per point).
    pub time_decay: f64,
    /// Seed of every random choice; same seed and input, same model.
    pub seed: u64,
}

impl Default for ForestConfig {
    fn default() -> Self {
        Self {
            dimensions: 1,
            shingle_size: 8,
            trees: 50,
            sample_size: 256,
            time_decay: 0.1 / 256.0,
            seed: 0,
        }
    }
}

/// One tree with its sampler and random stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "UnitWire", try_from = "UnitWire")]
struct Unit {
    tree: Tree,
    sampler: Sampler,
    rng: Rng,
}

/// The saved form of a [`Unit`]: the sampler's entries carry their points
/// (the layout of earlier releases), which the sampler itself leaves to
/// the tree's leaves.
#[derive(Serialize, Deserialize)]
struct UnitWire {
    tree: Tree,
    sampler: SamplerWire,
    rng: Rng,
}

impl From<Unit> for UnitWire {
    fn from(u: Unit) -> Self {
        let entries = u
            .sampler
            .leaves()
            .map(|leaf| EntryWire {
                point: u.tree.leaf_point(leaf),
                leaf: ref_to_wire(leaf),
            })
            .collect();
        UnitWire {
            sampler: u.sampler.to_wire(entries),
            tree: u.tree,
            rng: u.rng,
        }
    }
}

impl TryFrom<UnitWire> for Unit {
    type Error = String;

    fn try_from(w: UnitWire) -> Result<Self, String> {
        let leaves = w
            .sampler
            .points
            .iter()
            .map(|e| {
                let leaf = ref_from_wire(e.leaf)?;
                if w.tree.holds_leaf(leaf, e.point) {
                    Ok(leaf)
                } else {
                    Err(format!(
                        "saved sampler refers to leaf {} of point {}, which its tree does not hold",
                        e.leaf, e.point
                    ))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Unit {
            sampler: Sampler::from_wire(w.sampler, leaves)?,
            tree: w.tree,
            rng: w.rng,
        })
    }
}

/// A streaming Random Cut Forest with internal shingling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ForestState")]
pub struct Forest {
    config: ForestConfig,
    store: PointStore,
    units: Vec<Unit>,
    /// The latest `shingle_size` inputs, oldest first.
    #[serde(with = "bits::f64s")]
    shingle: Vec<f64>,
    /// Inputs seen, saturating at `shingle_size`.
    filled: usize,
    /// Shingled points offered to the samplers so far.
    seq: u64,
    /// Per input value, `Some(v)` while every input so far had `v` there
    /// and the store keeps it nowhere; empty in a new forest until its
    /// first input.
    #[serde(with = "constant_values")]
    constant_values: Vec<Option<f32>>,
}

thread_local! {
    /// Working space of [`Forest::update`] (the point being learned) and of
    /// the trees (two boxes), one per thread rather than one per forest:
    /// a process holds thousands of forests but works on one at a time
    /// per thread.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's working space: the point buffer and the
/// trees' box buffer (fresh ones if the thread's are in use).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => {
            let (point, boxes) = &mut *s;
            f(point, boxes)
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// The serialised form of a [`Forest`]; boxes are rebuilt on restore.
#[derive(Deserialize)]
struct ForestState {
    config: ForestConfig,
    store: StoreWire,
    units: Vec<Unit>,
    #[serde(with = "bits::f64s")]
    shingle: Vec<f64>,
    filled: usize,
    seq: u64,
    #[serde(default, with = "constant_values")]
    constant_values: Vec<Option<f32>>,
}

thread_local! {
    /// Set while a binary forest of a format before constant values were
    /// left out is read (see [`reading_every_value_stored`]).
    static EVERY_VALUE_STORED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, in which binary (non-self-describing) deserialisation reads
/// forests saved before constant values were left out: they have no
/// `constant_values` field, and every value is stored. Self-describing
/// formats (JSON) lack the field and read it as empty.
pub fn reading_every_value_stored<R>(f: impl FnOnce() -> R) -> R {
    super::with_flag_set(&EVERY_VALUE_STORED, f)
}

/// The saved form of [`Forest`]'s `constant_values`: each as its bit
/// pattern, or none.
mod constant_values {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Option<f32>], s: S) -> Result<S::Ok, S::Error> {
        let bits: Vec<Option<u32>> = v.iter().map(|c| c.map(f32::to_bits)).collect();
        bits.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<f32>>, D::Error> {
        if !d.is_human_readable() && super::EVERY_VALUE_STORED.with(std::cell::Cell::get) {
            // Saved before the field existed: nothing of it to read.
            return Ok(Vec::new());
        }
        let bits = Vec::<Option<u32>>::deserialize(d)?;
        Ok(bits.into_iter().map(|b| b.map(f32::from_bits)).collect())
    }
}

impl TryFrom<ForestState> for Forest {
    type Error = String;

    fn try_from(s: ForestState) -> Result<Self, String> {
        let d = s.config.dimensions;
        let full = d * s.config.shingle_size;
        if !s.constant_values.is_empty() {
            if s.constant_values.len() != d {
                return Err(format!(
                    "saved forest has {} constant values for inputs of {d}",
                    s.constant_values.len()
                ));
            }
            if s.constant_values[0].is_some() {
                return Err(
                    "saved forest leaves out its first value, which is always stored".into(),
                );
            }
            if s.constant_values.iter().flatten().any(|v| !v.is_finite()) {
                return Err("saved forest has a constant value that is not finite".into());
            }
            if s.shingle.len() == full {
                for (i, v) in s.shingle.iter().enumerate() {
                    if let Some(c) = s.constant_values[i % d] {
                        if (*v as f32).to_bits() != c.to_bits() && i >= full - s.filled * d {
                            return Err(format!(
                                "saved forest's shingle has {v} where every input had {c}"
                            ));
                        }
                    }
                }
            }
        }
        let kept = if s.constant_values.is_empty() {
            d
        } else {
            s.constant_values.iter().filter(|c| c.is_none()).count()
        };
        let dim = kept * s.config.shingle_size;
        let store = s.store.into_store(dim, kept)?;
        let mut f = Forest {
            config: s.config,
            store,
            units: s.units,
            shingle: s.shingle,
            filled: s.filled,
            seq: s.seq,
            constant_values: s.constant_values,
        };
        for (i, u) in f.units.iter_mut().enumerate() {
            if u.tree.dim() != dim {
                return Err(format!(
                    "saved tree has points of {} coordinates, its forest stores {dim}",
                    u.tree.dim()
                ));
            }
            u.tree
                .validate(&f.store)
                .map_err(|e| format!("saved tree {i} is inconsistent: {e}"))?;
            with_scratch(|_, boxes| u.tree.rebuild_boxes(&f.store, boxes));
        }
        // Each stored point is referred to once per sampler entry holding
        // it; a wrong count would free a point still sampled, or keep one
        // forever.
        let refs = f.store.all_refs();
        let mut held = vec![0u32; refs.len()];
        for u in &f.units {
            for leaf in u.sampler.leaves() {
                let point = u.tree.leaf_point(leaf) as usize;
                match held.get_mut(point) {
                    Some(h) => *h += 1,
                    None => {
                        return Err(format!(
                            "a saved sampler holds point {point}, beyond the store"
                        ))
                    }
                }
            }
        }
        if let Some((i, (r, h))) = refs
            .into_iter()
            .zip(held)
            .enumerate()
            .find(|(_, (r, h))| r != h)
        {
            return Err(format!(
                "saved point store counts {r} references to point {i}, its samplers hold it {h} times"
            ));
        }
        if f.constant_values.is_empty() {
            f.leave_out_what_never_varied();
        }
        Ok(f)
    }
}

/// Largest magnitude an input value keeps; larger ones are clamped so that
/// box extents stay finite in `f32`.
const MAX_VALUE: f64 = 1e30;

/// The value the forest uses for input `v`: non-finite values count as 0,
/// huge ones are clamped to ±[`MAX_VALUE`].
fn clean(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(-MAX_VALUE, MAX_VALUE)
    } else {
        0.0
    }
}

/// Runs `f` on the values of `s` that `keep` keeps (by position),
/// converted to `f32`, without allocating for short points.
fn with_f32<R>(s: &[f64], keep: impl Fn(usize) -> bool, f: impl FnOnce(&[f32]) -> R) -> R {
    let kept = s
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, v)| *v as f32);
    if s.len() <= STACK_DIM {
        let mut buf = [0.0f32; STACK_DIM];
        let mut n = 0;
        for v in kept {
            buf[n] = v;
            n += 1;
        }
        f(&buf[..n])
    } else {
        let v: Vec<f32> = kept.collect();
        f(&v)
    }
}

impl Forest {
    /// A forest with no points yet. Zero sizes are raised to 1, sample
    /// sizes beyond [`MAX_TREE_POINTS`] lowered to it.
    pub fn new(mut config: ForestConfig) -> Self {
        config.dimensions = config.dimensions.max(1);
        config.shingle_size = config.shingle_size.max(1);
        config.trees = config.trees.max(1);
        config.sample_size = config.sample_size.clamp(1, MAX_TREE_POINTS);
        let dim = config.dimensions * config.shingle_size;
        let mut seeder = config.seed;
        let units = (0..config.trees)
            .map(|_| Unit {
                tree: Tree::new(dim, config.sample_size),
                sampler: Sampler::new(config.sample_size, config.time_decay),
                rng: Rng::new(splitmix64(&mut seeder)),
            })
            .collect();
        Self {
            store: PointStore::new(dim, config.dimensions),
            units,
            shingle: vec![0.0; dim],
            filled: 0,
            seq: 0,
            constant_values: Vec::new(),
            config,
        }
    }

    /// Whether input value `k` is stored (not a constant left out).
    #[inline]
    fn stores(&self, k: usize) -> bool {
        self.constant_values.get(k).is_none_or(Option::is_none)
    }

    /// Values of each input the store keeps: all of them but the
    /// constants left out.
    pub fn stored_values(&self) -> usize {
        (0..self.config.dimensions)
            .filter(|&k| self.stores(k))
            .count()
    }

    /// Coordinates of the points the store and the trees hold: the stored
    /// values of each input × shingle size.
    fn stored_dim(&self) -> usize {
        self.stored_values() * self.config.shingle_size
    }

    /// Whether position `i` of a full shingled point is stored.
    #[inline]
    fn stores_position(&self, i: usize) -> bool {
        self.stores(i % self.config.dimensions)
    }

    /// Runs `f` on the stored coordinates of the full shingled `point`, as
    /// `f32`.
    fn with_stored<R>(&self, point: &[f64], f: impl FnOnce(&[f32]) -> R) -> R {
        with_f32(point, |i| self.stores_position(i), f)
    }

    /// A copy of the forest that also stores each constant value `point`
    /// (a full shingled point, or its older inputs) departs from, or None
    /// when it departs from none.
    fn widened_for(&self, point: &[f64]) -> Option<Forest> {
        let d = self.config.dimensions;
        let departs = |k: usize| match self.constant_values.get(k) {
            Some(Some(c)) => point
                .iter()
                .skip(k)
                .step_by(d)
                .any(|v| (*v as f32).to_bits() != c.to_bits()),
            _ => false,
        };
        let values: Vec<usize> = (0..d).filter(|&k| departs(k)).collect();
        if values.is_empty() {
            return None;
        }
        let mut wider = self.clone();
        for k in values {
            wider.store_value(k);
        }
        Some(wider)
    }

    /// Stores input value `k` from now on, in every input already stored
    /// too (at the constant it had); the trees' cut dimensions move up to
    /// make room for it.
    fn store_value(&mut self, k: usize) {
        let Some(value) = self.constant_values.get_mut(k).and_then(Option::take) else {
            return;
        };
        let at = (0..k).filter(|&j| self.stores(j)).count();
        let wider = self.stored_values();
        let narrower = wider - 1;
        self.store.insert_value(at, value);
        let dim = wider * self.config.shingle_size;
        let place = |c: usize| {
            let (input, j) = (c / narrower, c % narrower);
            input * wider + j + usize::from(j >= at)
        };
        with_scratch(|_, boxes| {
            for u in &mut self.units {
                u.tree.relayout(dim, place, &self.store, boxes);
            }
        });
    }

    /// Stores every input value from now on, constants too, in the points
    /// already stored as well: the layout of forests saved before values
    /// were left out. Called before the first input, no value is ever left
    /// out and the forest scores bit for bit as those forests did; called
    /// later, it keeps what it learned in the other layout.
    pub fn store_every_value(&mut self) {
        if self.constant_values.is_empty() {
            self.constant_values = vec![None; self.config.dimensions];
        }
        for k in 0..self.config.dimensions {
            self.store_value(k);
        }
    }

    /// Leaves out each value but the first that every input the forest
    /// holds (its stored points and its shingle) has alike, as if it had
    /// left them out from the start: for a new forest once its first input
    /// is in the shingle, and for a forest saved before values were left
    /// out (every value stored) when it loads. Nothing when it holds no
    /// input yet.
    fn leave_out_what_never_varied(&mut self) {
        let d = self.config.dimensions;
        if d < 2 || self.filled == 0 {
            return;
        }
        let n = self.shingle.len();
        let held = &self.shingle[n - self.filled * d..];
        let constant = |k: usize| -> Option<f32> {
            let c = held[k] as f32;
            let in_shingle = held
                .iter()
                .skip(k)
                .step_by(d)
                .all(|v| (*v as f32).to_bits() == c.to_bits());
            let in_store = self.store.live() == 0
                || self
                    .store
                    .common_value(k)
                    .is_some_and(|v| v.to_bits() == c.to_bits());
            (in_shingle && in_store).then_some(c)
        };
        let constants: Vec<Option<f32>> = (0..d)
            .map(|k| if k == 0 { None } else { constant(k) })
            .collect();
        // From the last value to the second, so that each value's place
        // in the stored inputs is still its index.
        for k in (1..d).rev() {
            if constants[k].is_none() {
                continue;
            }
            let wider = d - (k + 1..d).filter(|&j| constants[j].is_some()).count();
            let narrower = wider - 1;
            self.store.remove_value(k);
            let dim = narrower * self.config.shingle_size;
            let place = |c: usize| {
                let (input, j) = (c / wider, c % wider);
                // No node cuts on `k` (every point holds one value there,
                // and free nodes are not mapped); `k` itself maps anywhere.
                let j = if j > k { j - 1 } else { j.min(narrower - 1) };
                input * narrower + j
            };
            with_scratch(|_, boxes| {
                for u in &mut self.units {
                    u.tree.relayout(dim, place, &self.store, boxes);
                }
            });
        }
        self.constant_values = constants;
    }

    /// The forest's settings.
    pub fn config(&self) -> &ForestConfig {
        &self.config
    }

    /// Coordinates of a shingled point: dimensions × shingle size.
    pub fn point_dim(&self) -> usize {
        self.config.dimensions * self.config.shingle_size
    }

    /// Shingled points the forest has learned from.
    pub fn updates(&self) -> u64 {
        self.seq
    }

    /// Distinct shingled points held by the trees.
    pub fn points_held(&self) -> usize {
        self.store.live()
    }

    /// Points in the smallest tree sample.
    pub fn min_sample(&self) -> usize {
        self.units
            .iter()
            .map(|u| u.sampler.len())
            .min()
            .unwrap_or(0)
    }

    /// The current shingle (oldest input first); complete only once
    /// `shingle_size` inputs were seen.
    pub fn shingle(&self) -> &[f64] {
        &self.shingle
    }

    /// Writes into `out` the shingle that input `x` would complete, and
    /// says whether it is complete (enough inputs seen). Missing and
    /// non-finite values of `x` count as 0; extra values are ignored.
    pub fn next_shingle(&self, x: &[f64], out: &mut Vec<f64>) -> bool {
        let d = self.config.dimensions;
        out.clear();
        out.extend_from_slice(&self.shingle[d..]);
        out.extend((0..d).map(|k| clean(x.get(k).copied().unwrap_or(0.0))));
        self.filled + 1 >= self.config.shingle_size
    }

    /// Raw anomaly score of a full shingled point: the mean over trees of
    /// rcflib's normalised tree score (about 1 for typical points, larger
    /// for anomalies; 0 before any point was learned).
    pub fn score_point(&self, point: &[f64]) -> f64 {
        if self.seq == 0 {
            return 0.0;
        }
        if let Some(wider) = self.widened_for(point) {
            return wider.score_point(point);
        }
        self.with_stored(point, |x| {
            let mut sum = 0.0;
            for chunk in self.units.chunks(GROUP) {
                let mut trees = [&chunk[0].tree; GROUP];
                for (t, u) in trees.iter_mut().zip(chunk) {
                    *t = &u.tree;
                }
                sum += Tree::score_group(&trees[..chunk.len()], x, &self.store);
            }
            sum / self.units.len() as f64
        })
    }

    /// Per-coordinate attribution of a shingled point's score (low and
    /// high directions summed); the entries sum to [`Forest::score_point`].
    /// Constant values left out have no share: the point lies where every
    /// point has lain there.
    pub fn attribution_point(&self, point: &[f64]) -> Vec<f64> {
        if self.seq == 0 {
            return vec![0.0; self.point_dim()];
        }
        if let Some(wider) = self.widened_for(point) {
            return wider.attribution_point(point);
        }
        let dim = self.stored_dim();
        let mut low = vec![0.0; dim];
        let mut high = vec![0.0; dim];
        self.with_stored(point, |x| {
            for u in &self.units {
                u.tree.attribution(
                    x,
                    &self.store,
                    Attribution {
                        low: &mut low,
                        high: &mut high,
                    },
                );
            }
        });
        let n = self.units.len() as f64;
        let mut stored = low.iter().zip(&high).map(|(l, h)| (l + h) / n);
        (0..self.point_dim())
            .map(|i| {
                if self.stores_position(i) {
                    stored.next().unwrap_or(0.0)
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// What the newest input of a shingled point would have been if it
    /// were normal given the older entries: per value, the median over
    /// trees of each tree's most normal completion. None before any point
    /// was learned.
    pub fn impute_newest(&self, point: &[f64]) -> Option<Vec<f64>> {
        let d = self.config.dimensions;
        let older = &point[..point.len().saturating_sub(d)];
        if let Some(wider) = self.widened_for(older) {
            return wider.impute_newest(point);
        }
        let dim = self.stored_dim();
        let kept = dim / self.config.shingle_size;
        let missing = dim - kept..dim;
        let leaves: Vec<u32> = self.with_stored(point, |x| {
            self.units
                .iter()
                .filter_map(|u| u.tree.impute(x, missing.clone(), &self.store))
                .map(|(_, p)| p)
                .collect()
        });
        if leaves.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(d);
        let mut vals = Vec::with_capacity(leaves.len());
        let mut stored = missing;
        for k in 0..d {
            // A value left out is what every point holds.
            if let Some(Some(c)) = self.constant_values.get(k) {
                out.push(f64::from(*c));
                continue;
            }
            let Some(at) = stored.next() else { break };
            vals.clear();
            vals.extend(leaves.iter().map(|&p| f64::from(self.store.get(p)[at])));
            vals.sort_by(f64::total_cmp);
            let m = vals.len();
            out.push(if m % 2 == 1 {
                vals[m / 2]
            } else {
                0.5 * (vals[m / 2 - 1] + vals[m / 2])
            });
        }
        Some(out)
    }

    /// Raw score of input `x` against the current shingle (0 while the
    /// shingle is incomplete).
    pub fn score(&self, x: &[f64]) -> f64 {
        let mut s = Vec::with_capacity(self.point_dim());
        if self.next_shingle(x, &mut s) {
            self.score_point(&s)
        } else {
            0.0
        }
    }

    /// Learns input `x`: shifts it into the shingle and, once the shingle
    /// is complete, offers the shingled point to every tree's sampler.
    /// Missing and non-finite values count as 0, as in
    /// [`Forest::next_shingle`].
    pub fn update(&mut self, x: &[f64]) {
        let d = self.config.dimensions;
        self.shingle.copy_within(d.., 0);
        let n = self.shingle.len();
        for (k, slot) in self.shingle[n - d..].iter_mut().enumerate() {
            *slot = clean(x.get(k).copied().unwrap_or(0.0));
        }
        for k in 0..d {
            if let Some(Some(c)) = self.constant_values.get(k) {
                if (self.shingle[n - d + k] as f32).to_bits() != c.to_bits() {
                    self.store_value(k);
                }
            }
        }
        self.filled = (self.filled + 1).min(self.config.shingle_size);
        if self.seq == 0 && self.filled == 1 && self.constant_values.is_empty() {
            self.leave_out_what_never_varied();
        }
        if self.filled < self.config.shingle_size {
            return;
        }
        with_scratch(|pt, boxes| self.learn_shingle(pt, boxes));
        self.seq += 1;
    }

    /// Offers the full shingle, as a point, to every tree's sampler, and
    /// updates the trees and the store by what they decide. `pt` and
    /// `boxes` are working space.
    fn learn_shingle(&mut self, pt: &mut Vec<f32>, boxes: &mut Vec<f32>) {
        pt.clear();
        pt.extend(
            self.shingle
                .iter()
                .enumerate()
                .filter(|(i, _)| self.stores_position(*i))
                .map(|(_, v)| *v as f32),
        );
        let seq = self.seq;
        let mut added: Option<u32> = None;
        for u in &mut self.units {
            let Admission::Accepted { weight, evicted } = u.sampler.offer(seq, &mut u.rng) else {
                continue;
            };
            if let Some(leaf) = evicted {
                let point = u.tree.leaf_point(leaf);
                u.tree.delete_leaf(leaf, &self.store, boxes);
                self.store.dec(point);
            }
            let idx = *added.get_or_insert_with(|| self.store.add(pt));
            let entry = u.tree.insert(pt, idx, &self.store, &mut u.rng, boxes);
            u.sampler.push(weight, entry.leaf);
            self.store.inc(entry.point);
        }
        match added {
            Some(idx) => self.store.release_if_unused(idx),
            None => self.store.follow(pt),
        }
    }

    /// The heap bytes of [`Forest::memory_bytes`], part by part.
    pub fn memory_parts(&self) -> MemoryParts {
        let mut parts = MemoryParts::default();
        let fixed = self.units.len() * std::mem::size_of::<Unit>();
        parts.add("tree units (fixed fields)", fixed, fixed);
        for u in &self.units {
            u.tree.memory_parts(&mut parts);
            u.sampler.memory_parts(&mut parts);
        }
        self.store.memory_parts(&mut parts);
        parts.add_vec("store constant values", &self.constant_values);
        parts.add_vec("shingle", &self.shingle);
        parts
    }

    /// Estimated heap bytes of the model (trees, samplers, point store,
    /// shingle), from the capacities actually allocated.
    pub fn memory_bytes(&self) -> usize {
        let units: usize = self
            .units
            .iter()
            .map(|u| std::mem::size_of::<Unit>() + u.tree.memory_bytes() + u.sampler.memory_bytes())
            .sum();
        units
            + self.store.memory_bytes()
            + self.shingle.capacity() * 8
            + self.constant_values.capacity() * std::mem::size_of::<Option<f32>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(dimensions: usize, shingle_size: usize, seed: u64) -> Forest {
        Forest::new(ForestConfig {
            dimensions,
            shingle_size,
            trees: 10,
            sample_size: 64,
            time_decay: 0.1 / 64.0,
            seed,
        })
    }

    fn wave(i: usize) -> f64 {
        10.0 + 3.0 * (i as f64 * 0.3).sin() + 0.1 * ((i * 7919) % 13) as f64
    }

    fn check_all(f: &Forest) {
        let mut refs = vec![0u32; f.store.memory_bytes()];
        for u in &f.units {
            let mut in_tree = u.tree.check(&f.store);
            let mut sampled: Vec<u32> = u.sampler.leaves().map(|l| u.tree.leaf_point(l)).collect();
            sampled.sort_unstable();
            in_tree.sort_unstable();
            assert_eq!(in_tree, sampled, "tree holds exactly its sample");
            for p in sampled {
                refs[p as usize] += 1;
            }
        }
        for (i, r) in refs.iter().enumerate() {
            if *r > 0 {
                assert_eq!(f.store.refs(i as u32), *r, "reference count of point {i}");
            }
        }
    }

    #[test]
    fn boxes_contain_their_points_and_samples_stay_at_capacity() {
        let mut f = small(2, 3, 11);
        for i in 0..600 {
            f.update(&[wave(i), (i % 5) as f64]);
            if i % 97 == 0 {
                check_all(&f);
            }
        }
        check_all(&f);
        for u in &f.units {
            assert_eq!(u.sampler.len(), 64);
            assert_eq!(u.tree.mass(), 64);
        }
        assert!(f.store.live() <= 10 * 64);
        assert!(
            f.store.inputs() <= 600,
            "each input stored once at most: {} of 600",
            f.store.inputs()
        );
    }

    #[test]
    fn a_full_small_tree_of_wide_points_keeps_only_its_root_box() {
        use super::super::tree::cache_mass;
        assert_eq!(cache_mass(24, 64), 64, "2 × 24 is over half of 64");
        assert_eq!(cache_mass(8, 256), 16);
        assert_eq!(cache_mass(16, 64), 64, "2 × 16 is half of 64");
        assert_eq!(cache_mass(24, 0), 48, "unknown capacity");
        let mut f = small(6, 4, 13);
        for i in 0..300 {
            let x = [wave(i), wave(i + 1), (i % 3) as f64, wave(2 * i), 1.0, 0.0];
            f.update(&x);
            if i % 50 == 0 {
                check_all(&f);
            }
        }
        check_all(&f);
        for u in &f.units {
            assert_eq!(u.tree.mass(), 64);
            assert_eq!(u.tree.boxes_kept(), 1);
        }
    }

    #[test]
    fn delete_undoes_insert() {
        let mut f = small(1, 4, 3);
        for i in 0..200 {
            f.update(&[wave(i)]);
        }
        let before = f.units[0].tree.clone();
        let p = [55.0f32, 1.0, -3.0, 7.5];
        let idx = f.store.add(&p);
        let mut rng = Rng::new(5);
        let mut sc = Vec::new();
        let used = f.units[0]
            .tree
            .insert(&p, idx, &f.store, &mut rng, &mut sc)
            .point;
        assert_eq!(used, idx);
        assert_ne!(f.units[0].tree, before);
        f.units[0].tree.check(&f.store);
        assert!(f.units[0].tree.delete(&p, idx, &f.store, &mut sc));
        // Arena slots may differ, so compare the shape: cuts, masses and
        // boxes node by node, and the leaves' points.
        let after = &f.units[0].tree;
        assert_eq!(after.shape(&f.store), before.shape(&f.store));
        assert_eq!(after.check(&f.store), before.check(&f.store));
        assert_eq!(after.mass(), before.mass());
        for i in 0..50 {
            let q: Vec<f32> = (0..4).map(|k| wave(i + k) as f32).collect();
            assert_eq!(after.score(&q, &f.store), before.score(&q, &f.store));
        }
        // Points inside the data's range too, in every tree.
        for i in 0..20 {
            let q: Vec<f32> = (0..4).map(|k| (wave(3 * i + k) + 0.37) as f32).collect();
            let idx = f.store.add(&q);
            for t in 0..f.units.len() {
                let shape = f.units[t].tree.shape(&f.store);
                let u = &mut f.units[t];
                let e = u.tree.insert(&q, idx, &f.store, &mut rng, &mut sc);
                u.tree.check(&f.store);
                if t % 2 == 0 {
                    assert!(u.tree.delete(&q, e.point, &f.store, &mut sc));
                } else {
                    u.tree.delete_leaf(e.leaf, &f.store, &mut sc);
                }
                assert_eq!(u.tree.shape(&f.store), shape, "tree {t}, point {i}");
            }
            f.store.release_if_unused(idx);
        }
        // A duplicate raises a leaf's mass, and deleting it lowers it again.
        let held = f.units[0]
            .tree
            .leaf_point(f.units[0].sampler.leaves().next().unwrap());
        let q: Vec<f32> = f.store.get(held).to_vec();
        let extra = f.store.add(&q);
        let used = f.units[0]
            .tree
            .insert(&q, extra, &f.store, &mut rng, &mut sc)
            .point;
        assert_ne!(used, extra, "a duplicate maps to the existing point");
        assert_eq!(f.units[0].tree.mass(), before.mass() + 1);
        assert!(f.units[0].tree.delete(&q, used, &f.store, &mut sc));
        assert_eq!(f.units[0].tree.shape(&f.store), before.shape(&f.store));
        let _ = held;
    }

    #[test]
    fn outlier_scores_higher_than_typical_point() {
        let mut f = small(1, 4, 9);
        for i in 0..400 {
            f.update(&[wave(i)]);
        }
        let typical = f.score(&[wave(400)]);
        let outlier = f.score(&[40.0]);
        assert!(typical > 0.3 && typical < 1.6, "typical {typical}");
        assert!(
            outlier > 2.0 * typical,
            "outlier {outlier} typical {typical}"
        );
        let attr = f.attribution_point(&{
            let mut s = Vec::new();
            f.next_shingle(&[40.0], &mut s);
            s
        });
        let total: f64 = attr.iter().sum();
        assert!(
            (total - outlier).abs() < 1e-6 * outlier.max(1.0),
            "{total} vs {outlier}"
        );
        assert!(
            attr[3] > 0.5 * total,
            "the newest value drives the score: {attr:?}"
        );
    }

    #[test]
    fn grouped_scores_equal_single_tree_scores() {
        let mut f = small(2, 3, 4);
        for i in 0..300 {
            f.update(&[wave(i), wave(2 * i)]);
        }
        for i in 0..40 {
            let q: Vec<f32> = (0..6).map(|k| (wave(i + k) * 1.05) as f32).collect();
            let single: f64 = f.units.iter().map(|u| u.tree.score(&q, &f.store)).sum();
            let trees: Vec<&Tree> = f.units.iter().map(|u| &u.tree).collect();
            let grouped: f64 = trees
                .chunks(GROUP)
                .map(|c| Tree::score_group(c, &q, &f.store))
                .sum();
            assert!((single - grouped).abs() < 1e-9, "{single} vs {grouped}");
        }
    }

    #[test]
    fn short_and_non_finite_inputs_count_as_zero() {
        let mut f = small(2, 2, 5);
        let mut g = small(2, 2, 5);
        for i in 0..200 {
            let v = wave(i);
            if i % 10 == 0 {
                f.update(&[v, f64::NAN]);
                g.update(&[v]);
            } else {
                f.update(&[v, 1.0]);
                g.update(&[v, 1.0]);
            }
        }
        for u in &f.units {
            u.tree.check(&f.store);
        }
        assert_eq!(f.score(&[1.0, f64::INFINITY]), g.score(&[1.0, 0.0]));
        assert_eq!(f.shingle(), g.shingle());
    }

    /// Inputs of four values: two that vary, one constant for the first
    /// 300 inputs that varies after, one constant throughout.
    fn partly_constant(i: usize) -> [f64; 4] {
        let third = if i < 300 { 1.5 } else { wave(3 * i) };
        [wave(i), wave(2 * i + 1), third, -2.0]
    }

    /// `a` within rounding of `b`.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-5 * b.abs().max(1.0)
    }

    #[test]
    fn values_that_never_vary_are_left_out_and_scores_agree_within_rounding() {
        let mut lean = small(4, 3, 17);
        let mut every = small(4, 3, 17);
        every.store_every_value();
        for i in 0..600 {
            let x = partly_constant(i);
            let (a, b) = (lean.score(&x), every.score(&x));
            assert!(close(a, b), "input {i}: {a} vs {b}");
            lean.update(&x);
            every.update(&x);
            if i == 299 {
                assert_eq!(lean.stored_dim(), 2 * 3, "two of four values stored");
                assert!(lean.store.memory_bytes() < every.store.memory_bytes());
                check_all(&lean);
            }
        }
        assert_eq!(lean.stored_dim(), 3 * 3, "the third value varies now");
        assert_eq!(every.stored_dim(), 4 * 3);
        check_all(&lean);
        assert!(lean.memory_bytes() < every.memory_bytes());
        // The same trees: every cut and mass, on the values both store.
        for (l, e) in lean.units.iter().zip(&every.units) {
            assert_eq!(l.tree.mass(), e.tree.mass());
            assert_eq!(l.sampler.leaves().len(), e.sampler.leaves().len());
        }

        // A point that departs from the constant value scores as far from
        // the data as where that value is stored, and that value drives it.
        let mut odd = Vec::new();
        lean.next_shingle(&[wave(600), wave(1201), wave(1800), 9.0], &mut odd);
        let (a, b) = (lean.score_point(&odd), every.score_point(&odd));
        assert!(close(a, b), "{a} vs {b}");
        let usual = every.score(&partly_constant(600));
        assert!(a > 2.0 * usual, "departing {a}, usual {usual}");
        let (attr_lean, attr_every) = (lean.attribution_point(&odd), every.attribution_point(&odd));
        assert_eq!(attr_lean.len(), 12);
        for (k, (x, y)) in attr_lean.iter().zip(&attr_every).enumerate() {
            assert!(close(*x, *y), "coordinate {k}: {x} vs {y}");
        }
        assert!(
            attr_lean[11] > 0.5 * a,
            "the departing value drives the score"
        );
        // Scoring it widened a copy, not the forest.
        assert_eq!(lean.stored_dim(), 3 * 3);

        // The value left out is imputed as the constant every point holds.
        let next = lean.impute_newest(&odd).expect("learned");
        assert_eq!(next.len(), 4);
        assert_eq!(next[3], -2.0);
        assert_eq!(Some(next), every.impute_newest(&odd));

        // Once learned, the departing value is stored from then on.
        lean.update(&[wave(600), wave(1201), wave(1800), 9.0]);
        assert_eq!(lean.stored_dim(), 4 * 3);
        check_all(&lean);
    }

    #[test]
    fn a_forest_that_leaves_out_values_restores_identically() {
        let mut f = small(4, 2, 23);
        for i in 0..400 {
            f.update(&partly_constant(i));
        }
        assert_eq!(f.stored_dim(), 3 * 2);
        let json = serde_json::to_string(&f).expect("serialises");
        let mut g: Forest = serde_json::from_str(&json).expect("restores");
        assert_eq!(g.stored_dim(), 3 * 2);
        assert_eq!(serde_json::to_string(&g).expect("serialises"), json);
        let bytes = postcard::to_allocvec(&f).expect("encodes");
        let h: Forest = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(postcard::to_allocvec(&h).expect("encodes"), bytes);
        for i in 400..500 {
            let x = [
                wave(i),
                wave(i + 1),
                wave(i + 2),
                if i < 450 { -2.0 } else { 1.0 },
            ];
            assert_eq!(f.score(&x), g.score(&x));
            f.update(&x);
            g.update(&x);
        }
        assert_eq!(f.stored_dim(), 4 * 2);
        assert_eq!(
            serde_json::to_string(&f).expect("serialises"),
            serde_json::to_string(&g).expect("serialises")
        );
        // A saved forest whose constant contradicts its shingle, or that
        // leaves out its first value, is refused, saying why.
        let minus_two = (-2.0f32).to_bits().to_string();
        let saved = format!("\"constant_values\":[null,null,null,{minus_two}]");
        assert!(json.contains(&saved), "{json}");
        let one = 1.0f32.to_bits().to_string();
        let contradicts = json.replace(
            &saved,
            &format!("\"constant_values\":[null,null,null,{one}]"),
        );
        let err = serde_json::from_str::<Forest>(&contradicts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("where every input had 1"), "{err}");
        let first = json.replace(
            &saved,
            &format!("\"constant_values\":[{one},null,null,{minus_two}]"),
        );
        let err = serde_json::from_str::<Forest>(&first)
            .unwrap_err()
            .to_string();
        assert!(err.contains("leaves out its first value"), "{err}");
    }

    #[test]
    fn a_forest_saved_with_every_value_leaves_out_its_constants_on_load() {
        let mut every = small(4, 2, 29);
        every.store_every_value();
        for i in 0..400 {
            every.update(&partly_constant(i));
        }
        // As saved before the field existed.
        let json = serde_json::to_string(&every)
            .expect("serialises")
            .replace(",\"constant_values\":[null,null,null,null]", "");
        assert!(!json.contains("constant_values"));
        let mut loaded: Forest = serde_json::from_str(&json).expect("restores");
        assert_eq!(loaded.stored_values(), 3, "the fourth value never varied");
        assert_eq!(loaded.constant_values[3], Some(-2.0));
        check_all(&loaded);
        assert!(loaded.memory_bytes() < every.memory_bytes());
        for i in 400..500 {
            let x = [
                wave(i),
                wave(i + 1),
                wave(i + 2),
                if i < 450 { -2.0 } else { 4.0 },
            ];
            let (a, b) = (loaded.score(&x), every.score(&x));
            assert!(close(a, b), "input {i}: {a} vs {b}");
            loaded.update(&x);
            every.update(&x);
        }
        assert_eq!(loaded.stored_values(), 4);
        check_all(&loaded);
        // A forest that has not seen an input is left as it is.
        let empty = serde_json::to_string(&small(4, 2, 29))
            .expect("serialises")
            .replace(",\"constant_values\":[]", "");
        let empty: Forest = serde_json::from_str(&empty).expect("restores");
        assert!(empty.constant_values.is_empty());
    }

    #[test]
    fn a_saved_forest_whose_reference_counts_disagree_with_its_samplers_is_refused() {
        let mut f = small(1, 2, 8);
        for i in 0..200 {
            f.update(&[wave(i)]);
        }
        let mut saved = serde_json::to_value(&f).unwrap();
        let refs = &mut saved["store"]["refs"];
        let i = refs
            .as_array()
            .unwrap()
            .iter()
            .position(|r| r.as_u64() > Some(0))
            .unwrap();
        let r = refs[i].as_u64().unwrap();
        refs[i] = (r + 1).into();
        let err = serde_json::from_value::<Forest>(saved)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "counts {} references to point {i}, its samplers hold it {r} times",
                r + 1
            )),
            "{err}"
        );
    }

    #[test]
    fn restored_forest_is_identical() {
        let mut f = small(2, 2, 21);
        for i in 0..300 {
            f.update(&[wave(i), wave(i + 5)]);
        }
        let json = serde_json::to_string(&f).expect("serialises");
        let mut g: Forest = serde_json::from_str(&json).expect("restores");
        assert_eq!(serde_json::to_string(&g).expect("serialises"), json);
        for u in &g.units {
            u.tree.check(&g.store);
        }
        for i in 300..400 {
            let x = [wave(i) * 1.01, wave(i + 3)];
            assert_eq!(f.score(&x), g.score(&x));
            f.update(&x);
            g.update(&x);
        }
        assert_eq!(
            serde_json::to_string(&f).expect("serialises"),
            serde_json::to_string(&g).expect("serialises")
        );
    }
}
