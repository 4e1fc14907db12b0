//! Planning: turning an incident into a remediation plan that people can
//! approve.
//!
//! This module owns the [`Plan`] a model returns (and its JSON schema for a
//! Bedrock tool), its validation against the playbooks
//! ([`Plan::validate`], pure), the list of actions a plan may use
//! ([`allowed_actions`]), secret redaction of everything sent to a model
//! ([`Redactor`]), the handlebars prompts ([`PromptSet`]) and the
//! deterministic rule-based planner ([`offline_plan`]).
//!
//! It must not call Bedrock, run actions, record approvals or touch the
//! store: callers build [`IncidentFacts`] from the store, send the rendered
//! prompt, and hand the [`ValidatedPlan`] to the approval flow. A plan that
//! fails validation is reported and never offered for approval.
//!
//! ```text
//! IncidentFacts + Catalog --matching--> playbooks + allowed actions
//!     --PromptSet (redacted log, untrusted framing)--> prompt --model--> Plan
//!     --Plan::validate--> ValidatedPlan (or the list of PlanErrors)
//! no model configured: offline_plan --> ValidatedPlan (rule-based)
//! ```

mod offline;
mod prompt;
mod redact;
mod types;
mod validate;

pub use offline::{offline_plan, OfflinePlan};
pub use prompt::{PlanPrompt, PromptError, PromptSet, LOG_TAIL_BYTES, PLAN_TOOL_NAME};
pub use redact::{RedactError, Redactor, REDACTED};
pub use types::{
    plan_json_schema, IncidentFacts, LastNormalRun, Plan, PlanError, PlanStep, StepTarget,
    ValidatedPlan, ValidatedStep, MAX_STEPS,
};
pub use validate::{allowed_actions, plan_tool_schema, AllowedAction, AllowedParam};

#[cfg(test)]
mod tests;
