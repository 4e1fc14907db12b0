//! The forest: configuration, the internal shingle, the shared point store
//! and the trees with their samplers. Owns the raw score, attribution and
//! imputation over all trees; owns no thresholds.

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
            .iter()
            .map(|&leaf| EntryWire {
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
    #[serde(skip)]
    scratch: Vec<f32>,
    /// Working space of the trees (two boxes).
    #[serde(skip)]
    box_scratch: Vec<f32>,
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
}

impl TryFrom<ForestState> for Forest {
    type Error = String;

    fn try_from(s: ForestState) -> Result<Self, String> {
        let dim = s.config.dimensions * s.config.shingle_size;
        let store = s.store.into_store(dim, s.config.dimensions)?;
        let mut f = Forest {
            scratch: vec![0.0; dim],
            config: s.config,
            store,
            units: s.units,
            shingle: s.shingle,
            filled: s.filled,
            seq: s.seq,
            box_scratch: Vec::new(),
        };
        for u in &mut f.units {
            u.tree.rebuild_boxes(&f.store, &mut f.box_scratch);
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

/// Runs `f` on `s` converted to `f32`, without allocating for short points.
fn with_f32<R>(s: &[f64], f: impl FnOnce(&[f32]) -> R) -> R {
    if s.len() <= STACK_DIM {
        let mut buf = [0.0f32; STACK_DIM];
        for (b, v) in buf.iter_mut().zip(s) {
            *b = *v as f32;
        }
        f(&buf[..s.len()])
    } else {
        let v: Vec<f32> = s.iter().map(|v| *v as f32).collect();
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
            scratch: vec![0.0; dim],
            box_scratch: Vec::new(),
            config,
        }
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
        with_f32(point, |x| {
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
    pub fn attribution_point(&self, point: &[f64]) -> Vec<f64> {
        let dim = self.point_dim();
        let mut low = vec![0.0; dim];
        let mut high = vec![0.0; dim];
        if self.seq == 0 {
            return low;
        }
        with_f32(point, |x| {
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
        low.iter().zip(&high).map(|(l, h)| (l + h) / n).collect()
    }

    /// What the newest input of a shingled point would have been if it
    /// were normal given the older entries: per value, the median over
    /// trees of each tree's most normal completion. None before any point
    /// was learned.
    pub fn impute_newest(&self, point: &[f64]) -> Option<Vec<f64>> {
        let d = self.config.dimensions;
        let dim = self.point_dim();
        let missing = dim - d..dim;
        let leaves: Vec<u32> = with_f32(point, |x| {
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
        for k in missing {
            vals.clear();
            vals.extend(leaves.iter().map(|&p| f64::from(self.store.get(p)[k])));
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
        self.filled = (self.filled + 1).min(self.config.shingle_size);
        if self.filled < self.config.shingle_size {
            return;
        }
        let mut pt = std::mem::take(&mut self.scratch);
        pt.clear();
        pt.extend(self.shingle.iter().map(|v| *v as f32));
        let seq = self.seq;
        let mut added: Option<u32> = None;
        for u in &mut self.units {
            let Admission::Accepted { weight, evicted } = u.sampler.offer(seq, &mut u.rng) else {
                continue;
            };
            if let Some(leaf) = evicted {
                let point = u.tree.leaf_point(leaf);
                u.tree.delete_leaf(leaf, &self.store, &mut self.box_scratch);
                self.store.dec(point);
            }
            let idx = *added.get_or_insert_with(|| self.store.add(&pt));
            let entry = u
                .tree
                .insert(&pt, idx, &self.store, &mut u.rng, &mut self.box_scratch);
            u.sampler.push(weight, entry.leaf);
            self.store.inc(entry.point);
        }
        match added {
            Some(idx) => self.store.release_if_unused(idx),
            None => self.store.follow(&pt),
        }
        self.scratch = pt;
        self.seq += 1;
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
        parts.add_vec("shingle and scratch", &self.shingle);
        parts.add_vec("shingle and scratch", &self.scratch);
        parts.add_vec("shingle and scratch", &self.box_scratch);
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
            + (self.scratch.capacity() + self.box_scratch.capacity()) * 4
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
            let mut sampled: Vec<u32> = u
                .sampler
                .leaves()
                .iter()
                .map(|&l| u.tree.leaf_point(l))
                .collect();
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
        let held = f.units[0].tree.leaf_point(f.units[0].sampler.leaves()[0]);
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
