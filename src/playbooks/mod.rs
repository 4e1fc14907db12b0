//! Playbooks: the team's runbooks in `playbooks/*.md`, each a Markdown text
//! for humans (and for the model, as context) with YAML front matter that
//! says when it applies and which actions it allows.
//!
//! This module owns loading and validating playbooks ([`load_dir`],
//! [`check_dir`]), the action vocabulary and its parameter schemas
//! ([`ActionKind`], [`ParamSpec`]), approval policies, and matching
//! playbooks to an incident ([`Catalog::matching`]). It is pure apart from
//! reading the playbook directory: it never runs an action, never talks to
//! a model and never decides approvals.
//!
//! ## Front matter
//!
//! ```yaml
//! id: flaky-tests                       # unique, [a-z0-9-]
//! title: Rerun tests in a clean environment
//! when: { metric: test_failure_rate, direction: up }
//! # or a list of alternatives, any of which may match:
//! # when:
//! #   - { status: failed, stage: "Test*", log: "(?i)flaky" }
//! #   - { metric: test_failure_rate, direction: up, pipeline: "checkout-*" }
//! actions:
//!   - id: rerun-tests-clean
//!     uses: codepipeline.retry_stage
//!     with: { stage: "{{stage}}", mode: ALL_ACTIONS }
//!     risk: low                          # low | high
//!     approval: { required: 1, from: ["group:sre"] }   # or `none` (low risk only)
//!     delay: 10m                          # optional: do not run before this long
//! approval: { required: 1, from: ["group:sre"] }     # default for every action
//! ```
//!
//! A `when` condition holds when all of its fields hold: `metric` (a glob
//! over the deviating metric names) with an optional `direction`, `status`,
//! `stage` (glob), `pipeline` (glob) and `log` (a regular expression over the
//! log excerpt). Template values in `with:` may only name incident facts
//! ([`TEMPLATE_FACTS`]).

mod load;
mod locate;
mod matcher;
mod model;

pub use load::{check_dir, load_dir, parse_playbook, CheckReport, LoadOptions, PlaybookError};
pub(crate) use matcher::fmt_num;
pub use matcher::{MatchSubject, PlaybookMatch};
pub use model::{
    escape_for, fact_flag_refusal, leading_fact, render_template, render_template_escaped,
    sample_template_context, ActionDecl, ActionKind, ApprovalPolicy, Catalog, CiSystem, Condition,
    ParamDefault, ParamSetter, ParamSpec, ParamType, Playbook, Risk, TemplateEscape,
    TEMPLATE_FACTS,
};

#[cfg(test)]
mod tests;
