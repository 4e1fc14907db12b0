//! Shared vocabulary of pipemedic: runs, metric samples, the names of the
//! metric streams, verdicts and anomalies. Pure data and pure derivations; nothing here does I/O.

mod incident;
mod run;
mod verdict;

pub use incident::{Incident, IncidentSeverity, IncidentStatus};
pub use run::{
    DeployMetrics, FieldError, MetricSample, ResourceMetrics, Run, RunSource, RunStatus,
    StageTiming, TestCounts, BUILTIN_METRICS,
};
pub use verdict::{
    amount, metric_label, Anomaly, AnomalyStatus, Direction, Dismissal, MetricDeviation, ScoredRun,
    Verdict,
};
