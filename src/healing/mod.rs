//! Healing: carries an incident from its alert to verified recovery.
//!
//! [`HealingService`] receives every run the incident service handled, in
//! order, and every approve / reject decision chat stored, and does the
//! rest of the loop:
//!
//! 1. **Plan.** A new incident is drafted a plan ([`PlanService`]); a
//!    valid plan with steps is offered for approval ([`ApprovalService`])
//!    and posted in the alert's thread with its exact calls and Approve /
//!    Reject buttons (incident: planning → awaiting approval). An invalid
//!    plan, a plan without steps or a planner failure is said in the
//!    thread and nothing is offered.
//! 2. **Decide.** A ✅ / ❌ or button on the plan (or the alert) is a vote
//!    on that plan's request. A vote that does not count (not an
//!    approver, the commit's author, expired, stale, already decided) is
//!    explained to its author only. The vote that completes the approvals
//!    runs the plan exactly once (awaiting approval → remediating), and
//!    each step's outcome goes to the thread.
//! 3. **Verify.** After the steps succeed the incident is verifying; the
//!    pipeline's next run decides: normal → resolved with the time to
//!    recovery; abnormal or failed → the thread says the fix did not heal
//!    it and a new plan is drafted and offered.
//!
//! Every newer run of a pipeline makes its pending plans about older runs
//! stale (said in their threads); a successful normal run while a plan
//! waits (or after none could be offered) resolves the incident as
//! recovered without remediation. With `planner.plan_incidents` off
//! (alerts only) nothing is planned and only people close incidents. A sweep every
//! [`SWEEP_EVERY`] expires plans nobody approved in time and runs delayed
//! steps that are due; at start and on every sweep, steps a stopped process
//! left in flight (heartbeat quiet for [`crate::approvals::STEP_LEASE`])
//! are reported as unknown, never re-run, chat decisions it stored but never
//! acted on are acted on, and incidents it left between two steps of the
//! loop are moved on ([`PLANNING_STUCK`]).
//!
//! Runs, decisions and sweeps are handled on one task, in arrival order,
//! so a decision and a verifying run never race each other in this
//! process. Approved steps run in tasks of their own (a 300 s `shell`
//! step never holds up the next run or decision); when they end, their
//! report comes back to the healing task, which says it in the thread and
//! moves the incident on. A request runs in at most one task of this
//! process at a time, and the store's claims (`planned` → `running`,
//! committed before the call) keep each step exactly-once across tasks
//! and processes. Handled runs arrive through a bounded queue the
//! incident service never waits on ([`crate::incidents`]).
//!
//! Before a vote on a plan whose run names its author by email or login,
//! the voter's identity is looked up ([`IdentityLookup`]: the Slack
//! profile's email, `approvals.identities`); a vote the author rule
//! refuses (the author, or someone unknown while
//! `approvals.unknown_identity = "refuse"`) is explained in the thread. This module decides nothing
//! about who may approve (that is [`crate::approvals::policy`]) and never
//! calls a chat platform (it queues through [`IncidentService`]).
//!
//! By role: `service` (construction, the task, speaking), `verification`
//! (what a run means), `offer` (plan → request → thread), `decisions`
//! (votes from chat), `direct` (votes through the admin API: `pipemedic
//! approve|reject`), `execution` (approved steps in their own tasks),
//! `sweep` (expiry, due steps, recovery), `reminders` (one reminder at
//! half a plan's expiry), `escalation` (when to page the on-call, and
//! resolving the page), `record` (healed or not healed: the last
//! transition of a plan's outcome, and the autonomy it revokes) and
//! `messages` (text).

mod decisions;
mod direct;
mod escalation;
mod execution;
mod messages;
mod offer;
mod record;
mod reminders;
mod service;
mod sweep;
mod verification;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use direct::{DirectDecision, DirectDecisionError, DirectOutcome, DIRECT_PLATFORM};

use crate::approvals::{
    author_exclusion, candidate_groups, not_allowed_reason, ApprovalError, ApprovalService,
    Approver, Choice, RequestContext, RequestStatus, RequestView, Ruling, StepReport, Via, Vote,
};
use crate::chat::{self, ChatMessage, GroupLookup, IdentityLookup, Severity};
use crate::clock::Clock;
use crate::domain::Platform;
use crate::domain::{Incident, IncidentStatus, RunStatus, ScoredRun};
use crate::incidents::{Handled, HandledRun, IncidentError, IncidentService};
use crate::metrics::Metrics;
use crate::paging::PagingService;
use crate::plan::{render_for_chat, PlanOutcome, PlanService, PlanServiceError};
use crate::store::{ExecutionState, Store, StoreError};
use messages::{invalid_plan_text, mention, plan_card, request_of_value, steps_text};

/// How often pending plans are checked for expiry and delayed steps for
/// their time.
pub const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// How old an unhandled chat decision must be before a sweep acts on it
/// (younger ones may still be on their way through the in-memory queue).
pub const DECISION_GRACE: Duration = Duration::from_secs(30);

/// How long an incident may stay `planning` before a sweep takes its
/// process for stopped and plans again (well above the planner's time).
pub const PLANNING_STUCK: Duration = Duration::from_secs(15 * 60);

/// How many runs or decisions may wait for the healing task.
pub const QUEUE: usize = 1024;

/// Who pipemedic's own audit entries are by.
const ACTOR: &str = "pipemedic";

#[derive(Debug, thiserror::Error)]
pub enum HealingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Incident(#[from] IncidentError),
    #[error(transparent)]
    Approval(#[from] ApprovalError),
}

/// A stored approve / reject decision from chat, for the healing task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionEvent {
    pub incident_id: i64,
    pub platform: Platform,
    /// Where the decision was made (for an explanation to its author).
    pub channel: String,
    /// The message decided on.
    pub message_ts: String,
    pub user: String,
    /// The platform's event id (a redelivery carries the same).
    pub event_id: String,
    pub choice: Choice,
    pub via: Via,
    /// The pressed button's value (`request:ID`), when a button.
    pub button_value: Option<String>,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    incidents: IncidentService,
    planner: PlanService,
    approvals: Arc<ApprovalService>,
    /// `planner.plan_incidents`.
    plan_incidents: bool,
    /// Who belongs to which chat group, as the adapters say.
    groups: GroupLookup,
    /// Who a person deciding is (emails, logins).
    identities: IdentityLookup,
    decisions: mpsc::Sender<DecisionEvent>,
    /// Requests whose steps a task of this process is running.
    running: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// Where those tasks report back to the healing task.
    ran: mpsc::Sender<StepsRan>,
    ran_rx: std::sync::Mutex<Option<mpsc::Receiver<StepsRan>>>,
    /// Where execution tasks are tracked (set by `start`).
    tracker: std::sync::OnceLock<TaskTracker>,
    /// Pages the on-call person (a no-op without `[paging]`).
    paging: PagingService,
    /// Fetches the failing build's log and usage of abnormal runs.
    evidence: Option<crate::evidence::EvidenceService>,
}

/// An execution task's report to the healing task.
#[derive(Debug)]
struct StepsRan {
    incident_id: i64,
    request_id: i64,
    steps: Result<Vec<StepReport>, ApprovalError>,
    /// Say how the steps stand even when some still wait for their delay
    /// (after a decision or an automatic offer); a sweep's run reports only
    /// a finished request.
    report_unfinished: bool,
}

/// What the healing service is built from. Start-up makes the channels:
/// the sending end of `decisions` is here, the receiving ends of handled
/// runs and decisions go to [`HealingService::start`].
pub struct HealingParts {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub incidents: IncidentService,
    pub planner: PlanService,
    pub approvals: Arc<ApprovalService>,
    /// `planner.plan_incidents`.
    pub plan_incidents: bool,
    /// Asked which groups a person deciding belongs to.
    pub groups: GroupLookup,
    /// Asked who a person deciding is (emails and logins), to recognise the
    /// commit's author.
    pub identities: IdentityLookup,
    /// Where stored chat decisions are queued for the healing task.
    pub decisions: mpsc::Sender<DecisionEvent>,
    /// Pages the on-call person when a plan expires or fixes keep failing.
    pub paging: PagingService,
    /// Fetches evidence (log, resource usage) of each run that opens or
    /// extends an incident, before its plan; `None` fetches nothing.
    pub evidence: Option<crate::evidence::EvidenceService>,
}

/// The healing loop; cheap to clone.
#[derive(Clone)]
pub struct HealingService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HealingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealingService").finish_non_exhaustive()
    }
}
