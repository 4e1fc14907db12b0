//! The planner's vocabulary: what it knows about an incident
//! ([`IncidentFacts`]), what a model returns ([`Plan`]), what validation
//! yields ([`ValidatedPlan`]) and why a plan is rejected ([`PlanError`]).
//!
//! Pure data; no I/O and no validation logic beyond simple accessors.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::domain::{AutoAfter, MetricDeviation, RunSource, RunStatus, Signature, TrackRecord};
use crate::playbooks::{ActionKind, ApprovalPolicy, CiSystem, MatchSubject, Risk};

/// Most steps a plan may have.
pub const MAX_STEPS: usize = 5;

/// Longest summary, suspected cause or step reason accepted from a model.
pub(crate) const MAX_TEXT: usize = 2000;

/// The last run of the pipeline that detection judged normal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastNormalRun {
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// Everything the planner knows about one incident, built by the caller
/// from the store. The run is the incident's latest abnormal run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentFacts {
    /// The incident's id as shown in chat and the API.
    pub incident_id: String,
    pub pipeline: String,
    pub run_id: String,
    pub status: RunStatus,
    /// The stage that failed, hung or deviated, when known.
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub commit_author: Option<String>,
    pub attempt: u32,
    /// The id the CI system addresses this execution by: CodePipeline's
    /// `pipelineExecutionId`, the GitHub Actions run id, the GitLab
    /// pipeline id. Actions on one execution need it.
    #[serde(default)]
    pub execution_id: Option<String>,
    /// The CI system that runs the pipeline (from the run's source, or the
    /// configuration for generic and backfilled runs).
    pub ci: CiSystem,
    /// Where the run came from.
    pub source: RunSource,
    /// The metrics that are off, strongest first.
    #[serde(default)]
    pub metrics: Vec<MetricDeviation>,
    /// Anomaly grade in [0, 1].
    pub grade: f64,
    /// The run's log excerpt as stored (untrusted; redacted before use).
    #[serde(default)]
    pub log_excerpt: Option<String>,
    #[serde(default)]
    pub log_url: Option<String>,
    /// Link to the run in its CI system.
    #[serde(default)]
    pub run_url: Option<String>,
    /// The last normal run, for "what changed since".
    #[serde(default)]
    pub last_normal: Option<LastNormalRun>,
    /// What became of the fixes offered on this pipeline before, one record
    /// per playbook action (empty when none was ever offered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_record: Vec<TrackRecord>,
}

impl IncidentFacts {
    /// The failure this incident is: its stage and the metrics that are
    /// off, with their direction.
    pub fn signature(&self) -> Signature {
        Signature::new(self.stage.as_deref(), &self.metrics)
    }

    /// The record of one playbook action on this pipeline, if it has one.
    pub fn record_of(&self, playbook: &str, action: &str) -> Option<&TrackRecord> {
        self.track_record
            .iter()
            .find(|r| r.playbook == playbook && r.action == action)
    }

    /// What playbook matching looks at.
    pub fn match_subject(&self) -> MatchSubject<'_> {
        MatchSubject {
            pipeline: &self.pipeline,
            status: self.status,
            stage: self.stage.as_deref(),
            metrics: &self.metrics,
            log_excerpt: self.log_excerpt.as_deref(),
        }
    }

    /// The values playbook templates may use: exactly the names in
    /// [`crate::playbooks::TEMPLATE_FACTS`], each present only when known.
    pub fn template_context(&self) -> Value {
        let mut map = serde_json::Map::new();
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(v) = value {
                map.insert(name.to_string(), v);
            }
        };
        let s = |v: &Option<String>| {
            v.as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| Value::from(s.as_str()))
        };
        put("incident_id", Some(Value::from(self.incident_id.as_str())));
        put("pipeline", Some(Value::from(self.pipeline.as_str())));
        put("run_id", Some(Value::from(self.run_id.as_str())));
        put("status", Some(Value::from(self.status.as_str())));
        put("stage", s(&self.stage));
        put("commit", s(&self.commit));
        put("commit_author", s(&self.commit_author));
        put("attempt", Some(Value::from(self.attempt)));
        put("execution_id", s(&self.execution_id));
        put("log_url", s(&self.log_url));
        put("run_url", s(&self.run_url));
        if let Some(last) = &self.last_normal {
            put(
                "last_normal_run_id",
                Some(Value::from(last.run_id.as_str())),
            );
            put("last_normal_commit", s(&last.commit));
        }
        Value::Object(map)
    }
}

/// A remediation plan as a model returns it (the Bedrock tool's input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// One or two sentences for the chat card.
    pub summary: String,
    pub suspected_cause: String,
    /// In [0, 1].
    pub confidence: f64,
    #[serde(default)]
    pub steps: Vec<PlanStep>,
    /// The risk the model assigns; validation recomputes it from the steps.
    pub risk: Risk,
}

/// One step of a [`Plan`]: an action a matching playbook declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// Playbook id.
    pub playbook: String,
    /// Action id within the playbook.
    pub action: String,
    /// Parameter values the plan chooses; anything left out takes the
    /// playbook's value. `null` reads as none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub params: BTreeMap<String, Value>,
    pub why: String,
}

fn null_as_empty<'de, D>(deserializer: D) -> Result<BTreeMap<String, Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<BTreeMap<String, Value>>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// What a step acts on: always the incident's own pipeline and execution,
/// never something a plan names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTarget {
    pub ci: CiSystem,
    pub pipeline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
}

/// A step that passed validation, ready for approval and execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatedStep {
    pub playbook: String,
    pub playbook_title: String,
    pub action: String,
    pub kind: ActionKind,
    pub target: StepTarget,
    /// Every parameter of the action kind, rendered and type-checked.
    pub params: BTreeMap<String, Value>,
    pub risk: Risk,
    pub approval: ApprovalPolicy,
    /// Seconds to wait after approval before running ("retry later").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_s: Option<u64>,
    /// When the action may run without a person (the playbook's
    /// `auto_after`), once its record on the pipeline earned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_after: Option<AutoAfter>,
    pub why: String,
}

/// A plan that passed validation: only this is offered for approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatedPlan {
    pub incident_id: String,
    pub summary: String,
    pub suspected_cause: String,
    pub confidence: f64,
    pub steps: Vec<ValidatedStep>,
    /// The highest risk of the steps (low when there are none).
    pub risk: Risk,
    /// The risk the plan itself claimed.
    pub stated_risk: Risk,
    /// Drafted by the rule-based planner rather than a model.
    pub rule_based: bool,
}

/// Why a plan (or one of its steps) is rejected. Step numbers are 1-based.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{field} must be 1 to {max} characters")]
    Text { field: String, max: usize },
    #[error("confidence must be a number in [0, 1], got {0}")]
    Confidence(f64),
    #[error("a plan has at most {max} steps, got {got}")]
    TooManySteps { max: usize, got: usize },
    #[error("step {step}: no playbook `{playbook}`")]
    UnknownPlaybook { step: usize, playbook: String },
    #[error("step {step}: playbook `{playbook}` does not match this incident")]
    PlaybookNotMatched { step: usize, playbook: String },
    #[error("step {step}: playbook `{playbook}` declares no action `{action}`")]
    UnknownAction {
        step: usize,
        playbook: String,
        action: String,
    },
    #[error("step {step}: action `{action}` ({kind}) cannot act on a {ci} pipeline")]
    NotApplicable {
        step: usize,
        action: String,
        kind: ActionKind,
        ci: CiSystem,
    },
    #[error("step {step}: action `{action}` needs the incident's execution id, which is unknown")]
    MissingExecutionId { step: usize, action: String },
    #[error("step {step}: the same action `{playbook}/{action}` appears twice")]
    DuplicateStep {
        step: usize,
        playbook: String,
        action: String,
    },
    #[error("step {step}: `{kind}` has no parameter `{param}`")]
    UnknownParam {
        step: usize,
        kind: ActionKind,
        param: String,
    },
    #[error("step {step}: parameter `{param}` is written in the playbook; a plan may not set it")]
    ParamNotSettable { step: usize, param: String },
    #[error("step {step}: parameter `{param}` may not be {value}; allowed: {allowed}")]
    ParamNotAllowed {
        step: usize,
        param: String,
        value: String,
        allowed: String,
    },
    #[error("step {step}: parameter `{param}`: {message}")]
    ParamInvalid {
        step: usize,
        param: String,
        message: String,
    },
    #[error("step {step}: the reason is empty")]
    EmptyWhy { step: usize },
}

impl PlanError {
    /// The 1-based step the error is about, if any.
    pub fn step(&self) -> Option<usize> {
        match self {
            Self::Text { .. } | Self::Confidence(_) | Self::TooManySteps { .. } => None,
            Self::UnknownPlaybook { step, .. }
            | Self::PlaybookNotMatched { step, .. }
            | Self::UnknownAction { step, .. }
            | Self::NotApplicable { step, .. }
            | Self::MissingExecutionId { step, .. }
            | Self::DuplicateStep { step, .. }
            | Self::UnknownParam { step, .. }
            | Self::ParamNotSettable { step, .. }
            | Self::ParamNotAllowed { step, .. }
            | Self::ParamInvalid { step, .. }
            | Self::EmptyWhy { step } => Some(*step),
        }
    }
}

/// JSON schema of a [`Plan`], for a Bedrock tool definition
/// (`toolSpec.inputSchema.json`). [`crate::plan::plan_tool_schema`] narrows
/// it to the actions one incident allows.
pub fn plan_json_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["summary", "suspected_cause", "confidence", "steps", "risk"],
        "properties": {
            "summary": {"type": "string", "maxLength": MAX_TEXT,
                "description": "One or two sentences for the team: what happened and what the plan does."},
            "suspected_cause": {"type": "string", "maxLength": MAX_TEXT,
                "description": "The most likely cause, citing the facts that point to it."},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                "description": "How sure you are of the suspected cause."},
            "steps": {
                "type": "array", "maxItems": MAX_STEPS,
                "description": "Actions to run in order; empty when no allowed action fits.",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["playbook", "action", "params", "why"],
                    "properties": {
                        "playbook": {"type": "string", "description": "Id of a matching playbook."},
                        "action": {"type": "string", "description": "Id of an action that playbook declares."},
                        "params": {"type": "object",
                            "description": "Only parameters the action lets a plan choose; omit the rest."},
                        "why": {"type": "string", "maxLength": MAX_TEXT}
                    }
                }
            },
            "risk": {"type": "string", "enum": ["low", "high"]}
        }
    })
}
