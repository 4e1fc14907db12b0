//! Incidents: one ongoing problem of one pipeline, as people see it in chat,
//! and the statuses it moves through. Pure data; the incident service decides
//! when an incident opens, groups runs and changes status.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Run, Verdict};

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Planning,
    AwaitingApproval,
    Remediating,
    Verifying,
    Resolved,
    Dismissed,
}

impl IncidentStatus {
    pub const ALL: [Self; 7] = [
        Self::Open,
        Self::Planning,
        Self::AwaitingApproval,
        Self::Remediating,
        Self::Verifying,
        Self::Resolved,
        Self::Dismissed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Planning => "planning",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Remediating => "remediating",
            Self::Verifying => "verifying",
            Self::Resolved => "resolved",
            Self::Dismissed => "dismissed",
        }
    }

    /// A human label: `awaiting approval`.
    pub fn label(self) -> &'static str {
        match self {
            Self::AwaitingApproval => "awaiting approval",
            other => other.as_str(),
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Resolved and dismissed incidents are over; new abnormal runs open a
    /// new incident.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Resolved | Self::Dismissed)
    }
}

impl std::fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// How bad an incident is, from the anomaly grade of its worst run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentSeverity {
    Minor,
    Major,
    Critical,
}

impl IncidentSeverity {
    /// Grade below 0.5 is minor, below 0.8 major, else critical.
    pub fn from_grade(grade: f64) -> Self {
        if grade >= 0.8 {
            Self::Critical
        } else if grade >= 0.5 {
            Self::Major
        } else {
            Self::Minor
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minor => "minor",
            Self::Major => "major",
            Self::Critical => "critical",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Minor, Self::Major, Self::Critical]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: i64,
    pub pipeline: String,
    pub status: IncidentStatus,
    pub severity: IncidentSeverity,
    /// Highest anomaly grade of its runs.
    pub max_grade: f64,
    pub anomaly_id: Option<i64>,
    pub first_run_pk: i64,
    pub last_run_pk: i64,
    pub run_count: i64,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The chat platform and channel its alert goes to (none: not posted).
    pub route: Option<(String, String)>,
    /// The alert message, once posted.
    pub root_ref: Option<super::MessageRef>,
    /// The verdict of its latest abnormal run.
    pub verdict: Verdict,
    /// Its latest abnormal run.
    pub latest_run: Run,
    /// Recorded while the pipeline was silenced: nothing is posted.
    pub silenced: bool,
}
