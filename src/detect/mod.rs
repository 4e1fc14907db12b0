//! Anomaly detection: the per-pipeline thresholded Random Cut Forest.
//!
//! | module | owns |
//! | --- | --- |
//! | [`rcf`] | the forest: sampling, trees, raw score, attribution, imputation |
//! | [`threshold`] | turning the score stream into an anomaly grade in [0, 1] |
//! | [`detector`] | [`Detector`]: forest + threshold + suppression, one call per point |
//! | [`multiscale`] | [`MultiScale`]: a fine and a coarse (block-mean) detector over one stream, one alarm per episode |
//! | [`nab`] | the Numenta Anomaly Benchmark scorer used to evaluate the detector |
//!
//! Everything here is pure computation: no I/O, no clock, no logging.
//! Results depend only on the configuration (including its seed) and the
//! points seen.

mod bits;
pub mod detector;
pub mod multiscale;
pub mod nab;
pub mod rcf;
pub mod threshold;

pub use detector::{Detector, DetectorConfig, Verdict};
pub use multiscale::{MultiScale, MultiScaleConfig, MultiVerdict};
