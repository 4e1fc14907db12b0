//! Approvals: who may approve a remediation plan, and running each
//! approved step exactly once.
//!
//! [`policy`] holds the pure rules ([`decide`]); it never touches the store,
//! the clock or chat. [`service::ApprovalService`] records votes, decides
//! them, expires and supersedes requests and runs approved steps exactly
//! once through the executor registry; the store
//! (`crate::store::WriteTx::claim_execution`) makes the claims. Chat
//! adapters translate reactions and buttons into a [`Vote`] and show the
//! [`Ruling`] and [`StepReport`]s; they decide nothing themselves.
//!
//! ```text
//! ValidatedPlan + RequestContext --open_request--> request (pending, dry runs stored)
//! Vote --decide_vote--> decide(policy) --Approved--> (caller's own task) execute: claim step -> registry -> outcome
//! clock --expire_due--> expired        newer run --supersede--> stale
//! start / sweep --recover_in_flight--> running steps whose heartbeat went quiet -> unknown (reported)
//! ```

pub mod policy;
mod report;
pub mod service;

pub use policy::{
    author_exclusion, candidate_groups, decide, is_automatic, not_allowed_reason, outstanding,
    requirement, ApprovalSettings, Approver, Choice, Outstanding, RequestStatus, RequestView,
    Requirement, Ruling, StepPolicy, Via, Vote,
};
pub use service::{
    ApprovalError, ApprovalService, OpenedRequest, RequestContext, StepReport, VoteOutcome,
    STEP_LEASE,
};
