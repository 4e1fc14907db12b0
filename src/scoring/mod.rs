//! Scoring: what pipemedic does with the detector for every pipeline. One
//! [`PipelineModel`] per pipeline (the unit of learning and why), the
//! [`bank`] that keeps models in an LRU cache and in the store, and the
//! [`DetectionService`] that scores every finished run in order, stores the
//! verdict and opens or closes anomaly records.
//!
//! The detector itself (forest, threshold, grading) is [`crate::detect`],
//! which is pure computation; this module does the I/O around it.

pub mod bank;
pub mod filter;
pub mod pipeline;
pub mod service;
pub mod train;

pub use pipeline::PipelineModel;
pub use service::{DetectionError, DetectionService, DetectionSettings};
