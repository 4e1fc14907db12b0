//! Approvals: who may approve a remediation plan, and running each
//! approved step exactly once.
//!
//! [`policy`] holds the pure rules ([`decide`]); it never touches the store,
//! the clock or chat. Chat adapters translate reactions and buttons into a
//! [`Vote`] and show the [`Decision`]; they decide nothing themselves.

pub mod policy;

pub use policy::{
    decide, is_automatic, not_allowed_reason, requirement, ApprovalSettings, Approver, Choice,
    Decision, RequestStatus, RequestView, Requirement, StepPolicy, Via, Vote,
};
