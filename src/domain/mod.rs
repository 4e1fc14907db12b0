//! Shared vocabulary of pipemedic: runs, metric samples, the names of the
//! metric streams, verdicts and anomalies, incidents, approvals (choice,
//! via, approver, vote, request status, step policy) and where a chat
//! message lives, what became of offered plans (outcomes, track records,
//! earned autonomy), and cutting text to a size. Pure data and pure derivations; nothing here does I/O,
//! and nothing here imports another module of the crate.

mod allowlist;
mod approval;
mod excerpt;
mod incident;
mod links;
mod message;
mod outcome;
pub mod rfc3339;
mod run;
mod run_limits;
mod text;
mod verdict;

pub use allowlist::{check_allowlist_entry, restricted_address, HttpAllowlist};
pub use approval::{ApprovalPolicy, Approver, Choice, RequestStatus, Risk, StepPolicy, Via, Vote};
pub use excerpt::{bounded_excerpt, most_relevant_line};
pub use incident::{Incident, IncidentSeverity, IncidentStatus};
pub use links::{
    check_link_template, render_link, sample_link_facts, LinkError, LinkFacts, LinkTemplate,
    LINK_FACTS,
};
pub use message::{MessageRef, Platform};
pub use outcome::{
    autonomy, times, AutoAfter, Autonomy, Fate, OutcomeRow, Signature, SignatureRecord, TrackRecord,
};
pub use run::{
    DeployMetrics, FieldError, MetricSample, ResourceMetrics, Run, RunSource, RunStatus,
    StageTiming, TestCounts, BUILTIN_METRICS, MAX_LOG_EXCERPT,
};
pub use run_limits::{MAX_CUSTOM_METRICS, MAX_NAME_CHARS, MAX_STAGES};
pub use text::truncate;
pub use verdict::{
    amount, metric_label, Anomaly, AnomalyStatus, Direction, Dismissal, Expectation,
    MetricDeviation, ScoredRun, Verdict,
};
