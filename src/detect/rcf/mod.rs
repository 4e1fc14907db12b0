//! The Random Cut Forest (Guha et al. 2016, scored as AWS's open-source
//! `rcflib` scores): an ensemble of random cut trees, each over a
//! time-decayed reservoir sample of the recent shingled points.
//!
//! This module owns the model itself: sampling, tree maintenance, the raw
//! anomaly score, per-dimension attribution and imputation of the newest
//! shingle entry. It knows nothing of thresholds, grades or pipelines
//! (those live in [`crate::detect::threshold`] and
//! [`crate::detect::detector`]), and it never allocates per point on the
//! score-and-update path (the point store's occasional compaction aside).

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
