//! The Random Cut Forest (Guha et al. 2016, scored as AWS's open-source
//! `rcflib` scores): an ensemble of random cut trees, each over a
//! time-decayed reservoir sample of the recent shingled points.
//!
//! This module owns the model itself: sampling, tree maintenance, the raw
//! anomaly score, per-dimension attribution and imputation of the newest
//! shingle entry. It knows nothing of thresholds, grades or pipelines
//! (those live in [`crate::detect::threshold`] and
//! [`crate::detect::detector`]), and it never allocates per point on the
//! score-and-update path (aside from the point store's occasional
//! compaction, from a value that every input had so far meeting
//! another, see [`Forest`], and from a walk down a tree deeper than the
//! path a walk keeps on the stack).

mod forest;
mod memory;
mod rng;
mod sampler;
mod store;
mod tree;

pub use forest::{reading_every_value_stored, Forest, ForestConfig};
pub use memory::{MemoryPart, MemoryParts};
pub use rng::{splitmix64, Rng};
pub use store::reading_whole_points;
pub use tree::reading_parent_references;

/// Runs `f` with the thread-local `flag` set, and puts it back as it was
/// afterwards, even if `f` panics: how a reader of saved models tells the
/// forest's deserialisers which earlier layout they are reading.
fn with_flag_set<R>(
    flag: &'static std::thread::LocalKey<std::cell::Cell<bool>>,
    f: impl FnOnce() -> R,
) -> R {
    struct Reset(&'static std::thread::LocalKey<std::cell::Cell<bool>>, bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            self.0.with(|w| w.set(self.1));
        }
    }
    let _reset = Reset(flag, flag.with(|w| w.replace(true)));
    f()
}
