//! What detection says about one run ([`Verdict`]) and the anomaly record an
//! abnormal stretch of runs opens ([`Anomaly`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which way a metric moved from its expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
}

/// One metric of a run compared with what the model expected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDeviation {
    pub metric: String,
    pub observed: f64,
    /// What normal would have looked like at this run.
    pub expected: f64,
    pub direction: Direction,
    /// Share of the anomaly score this metric drove, in [0, 1].
    pub attribution: f64,
}

/// The detector's answer for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Raw anomaly score of the forest (about 1 for typical points).
    pub score: f64,
    /// Anomaly grade in [0, 1]; above zero means abnormal.
    pub grade: f64,
    /// The model has seen too few runs of this pipeline to judge yet.
    pub warming_up: bool,
    /// The metrics that are off, strongest first (empty when normal).
    pub deviations: Vec<MetricDeviation>,
    /// The anomaly record this run opened or extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly_id: Option<i64>,
}

impl Verdict {
    pub fn is_anomalous(&self) -> bool {
        self.grade > 0.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyStatus {
    Open,
    Closed,
}

impl AnomalyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// An abnormal stretch of one pipeline's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub id: i64,
    pub pipeline: String,
    pub status: AnomalyStatus,
    pub first_run_id: String,
    pub last_run_id: String,
    pub run_count: i64,
    pub max_grade: f64,
    /// The verdict of the latest abnormal run.
    pub latest: Verdict,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

/// A run that detection has just judged: what the incident and chat work
/// receives for every scored run, normal or not, in the order runs of one
/// pipeline were scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredRun {
    /// Row id of the run in the store.
    pub run_pk: i64,
    pub run: crate::domain::Run,
    pub verdict: Verdict,
}
