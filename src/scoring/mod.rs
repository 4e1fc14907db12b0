//! Scoring: what pipemedic does with the detector for every pipeline. One
//! [`PipelineModel`] per pipeline (the unit of learning and why), the
//! [`bank`] that keeps models in an LRU cache and in the store, and the
//! [`DetectionService`] that scores every finished run in order, stores the
//! verdict and opens or closes anomaly records.
//!
//! With `detector.backend = "sagemaker"`, [`sagemaker`] scores the same
//! shingled rows with a SageMaker RCF endpoint and the pipeline model
//! thresholds its scores; the embedded forest keeps learning and takes over
//! when the endpoint fails.
//!
//! [`export`] writes each pipeline's history as the rows such an endpoint
//! is trained on, normalised and shingled by the same model code.
//!
//! The detector itself (forest, threshold, grading) is [`crate::detect`],
//! which is pure computation; this module does the I/O around it.

pub mod bank;
pub mod export;
pub mod filter;
pub mod ownership;
pub mod pipeline;
pub mod sagemaker;
pub mod service;
pub mod train;

pub use pipeline::PipelineModel;
pub use sagemaker::{SagemakerError, SagemakerScorer, ScorerSettings};
pub use service::{DetectionError, DetectionService, DetectionSettings};
