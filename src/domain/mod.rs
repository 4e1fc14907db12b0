//! Shared vocabulary of pipemedic: runs, metric samples and the names of the
//! metric streams. Pure data and pure derivations; nothing here does I/O.

mod run;

pub use run::{
    DeployMetrics, FieldError, MetricSample, ResourceMetrics, Run, RunSource, RunStatus,
    StageTiming, TestCounts, BUILTIN_METRICS,
};
