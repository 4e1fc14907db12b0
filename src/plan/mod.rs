//! Planning: turning an incident into a remediation plan that people can
//! approve.
//!
//! This module owns the [`Plan`] a model returns (and its JSON schema for a
//! Bedrock tool), its validation against the playbooks
//! ([`Plan::validate`], pure), the list of actions a plan may use
//! ([`allowed_actions`]), secret redaction of everything sent to a model
//! ([`Redactor`]), the handlebars prompts ([`PromptSet`]) and the
//! deterministic rule-based planner ([`offline_plan`]), the Bedrock
//! planner ([`BedrockPlanner`], Converse with one forced tool), the
//! [`PlanService`] that drafts, stores and audits plans for an anomaly, and
//! the text of a plan in chat ([`render_for_chat`]) and on the command line.
//!
//! Only `bedrock` (the model) and `service` (the store) do I/O; the rest is
//! pure. Nothing here runs actions or records approvals: the approval flow
//! receives a [`ValidatedPlan`]. A plan that fails validation is reported
//! and never offered for approval.
//!
//! ```text
//! IncidentFacts + Catalog --matching--> playbooks + allowed actions
//!     --PromptSet (redacted log, untrusted framing)--> prompt --model--> Plan
//!     --Plan::validate--> ValidatedPlan (or the list of PlanErrors)
//! no model configured: offline_plan --> ValidatedPlan (rule-based)
//! invalid answer --feedback, retried up to planner.max_attempts--> PlanOutcome::Invalid
//! PlanService: store --> IncidentFacts --> planner --> plans table + audit log
//! ```

mod bedrock;
mod offline;
mod prompt;
mod render;
mod service;
mod types;
mod validate;

pub use crate::redact::{RedactError, Redactor, REDACTED};
pub use bedrock::{Attempt, BedrockPlanner, BedrockSettings, ModelDraft, PlanOutcome};
pub use offline::{offline_plan, OfflinePlan};
pub use prompt::{AskPrompt, PlanPrompt, PromptError, PromptSet, LOG_TAIL_BYTES, PLAN_TOOL_NAME};
pub use render::{render_for_chat, render_report};
pub use service::{DraftedPlan, PlanService, PlanServiceError, PlannerChoice};
pub use types::{
    plan_json_schema, IncidentFacts, LastNormalRun, Plan, PlanError, PlanStep, StepTarget,
    ValidatedPlan, ValidatedStep, MAX_STEPS,
};
pub use validate::{allowed_actions, plan_tool_schema, AllowedAction, AllowedParam};

#[cfg(test)]
mod tests;
