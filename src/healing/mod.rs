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
//! Everything happens on one task, in arrival order, so a decision and a
//! verifying run never race each other in this process; the store's claims
//! keep steps exactly-once across processes. This module decides nothing
//! about who may approve (that is [`crate::approvals::policy`]) and never
//! calls a chat platform (it queues through [`IncidentService`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::approvals::{
    candidate_groups, not_allowed_reason, ApprovalError, ApprovalService, Approver, Choice,
    RequestContext, RequestStatus, RequestView, Ruling, StepReport, Via, Vote,
};
use crate::chat::{self, ChatMessage, GroupLookup, Platform, Severity};
use crate::clock::Clock;
use crate::domain::{Incident, IncidentStatus, RunStatus, ScoredRun};
use crate::incidents::{Handled, HandledRun, IncidentError, IncidentService};
use crate::metrics::Metrics;
use crate::plan::{render_for_chat, PlanOutcome, PlanService, PlanServiceError};
use crate::store::{ExecutionState, Store, StoreError};

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
    decisions: mpsc::Sender<DecisionEvent>,
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
    /// Where stored chat decisions are queued for the healing task.
    pub decisions: mpsc::Sender<DecisionEvent>,
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

/// The value of the Approve / Reject buttons under a plan.
fn button_value(request_id: i64) -> String {
    format!("request:{request_id}")
}

fn request_of_value(value: &str) -> Option<i64> {
    value.strip_prefix("request:")?.parse().ok()
}

fn mention(platform: Platform, user: &str) -> String {
    match platform {
        Platform::Slack => format!("<@{user}>"),
        Platform::Discord => format!("<@{user}>"),
        _ => user.to_string(),
    }
}

/// The steps as thread lines: number, kind, status and what happened (what
/// an executor reported, from outside, is made inert).
fn steps_text(steps: &[StepReport]) -> String {
    steps
        .iter()
        .map(|s| {
            format!(
                "{}. `{}` **{}**: `{}`\n   {}",
                s.step_no,
                s.kind,
                s.status.as_str(),
                s.call,
                chat::cards::inert(&s.summary)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl HealingService {
    pub fn new(parts: HealingParts) -> Self {
        let HealingParts {
            store,
            clock,
            metrics,
            incidents,
            planner,
            approvals,
            plan_incidents,
            groups,
            decisions,
        } = parts;
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                metrics,
                incidents,
                planner,
                approvals,
                plan_incidents,
                groups,
                decisions,
            }),
        }
    }

    pub fn approvals(&self) -> &Arc<ApprovalService> {
        &self.inner.approvals
    }

    /// Hands a stored chat decision to the healing task.
    pub async fn decided(&self, event: DecisionEvent) {
        if self.inner.decisions.send(event).await.is_err() {
            tracing::warn!("The healing task has stopped; a decision was not acted on.");
        }
    }

    /// Runs the healing task until `shutdown` (call once): first sweeps
    /// (which recovers what a stopped process left), then handles runs and
    /// decisions in order and sweeps again every [`SWEEP_EVERY`].
    pub fn start(
        &self,
        mut runs: mpsc::Receiver<HandledRun>,
        mut decisions: mpsc::Receiver<DecisionEvent>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        let service = self.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is now: sweep (recovery included) before any
            // run or decision.
            sweep.tick().await;
            if let Err(e) = service.sweep().await {
                service.failed("sweep", &e);
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(run) = runs.recv() => {
                        if let Err(e) = service.on_run(&run).await {
                            service.failed("run", &e);
                        }
                    }
                    Some(event) = decisions.recv() => {
                        if let Err(e) = service.handle_decision(&event).await {
                            service.failed("decision", &e);
                        }
                    }
                    _ = sweep.tick() => {
                        if let Err(e) = service.sweep().await {
                            service.failed("sweep", &e);
                        }
                    }
                }
            }
        });
    }

    fn failed(&self, what: &str, e: &HealingError) {
        self.inner.metrics.background_error("healing");
        tracing::error!(step = what, error = %e, "Healing step failed.");
    }

    async fn say(&self, incident_id: i64, title: &str, severity: Severity, text: String) {
        let message = ChatMessage::new(title, severity, text);
        if let Err(e) = self
            .inner
            .incidents
            .post_in_thread(incident_id, message)
            .await
        {
            tracing::warn!(incident_id, error = %e, "Cannot queue a thread message.");
        }
    }

    async fn status(
        &self,
        incident_id: i64,
        status: IncidentStatus,
        note: Option<&str>,
    ) -> Result<Incident, HealingError> {
        Ok(self
            .inner
            .incidents
            .set_status(incident_id, status, note, ACTOR)
            .await?)
    }

    /// One run the incident service handled.
    pub async fn on_run(&self, run: &HandledRun) -> Result<(), HealingError> {
        let scored = &run.scored;
        let pipeline = &scored.run.pipeline;
        let older_pending = self
            .inner
            .store
            .approval_requests_with_status(pipeline, RequestStatus::Pending)
            .await?
            .iter()
            .any(|r| r.run_id != scored.run.run_id);
        let stale = if older_pending {
            self.inner
                .approvals
                .supersede(pipeline, &scored.run.run_id)
                .await?
        } else {
            Vec::new()
        };
        for id in stale {
            self.inner.metrics.healing("stale");
            if let Some(incident) = self.incident_of_request(id).await? {
                self.say(
                    incident,
                    "Plan superseded",
                    Severity::Info,
                    format!(
                        "Run `{}` is newer than the run this plan was for; the plan can no longer be approved.",
                        scored.run.run_id
                    ),
                )
                .await;
            }
        }
        match run.handled {
            Handled::Opened(id) => self.plan(id, None).await,
            Handled::Updated(id) => {
                let Some(incident) = self.inner.store.incident(id).await? else {
                    return Ok(());
                };
                match incident.status {
                    IncidentStatus::Verifying | IncidentStatus::Remediating => {
                        self.not_healed(&incident, scored, "is still abnormal")
                            .await
                    }
                    IncidentStatus::AwaitingApproval => {
                        // Its plan was about an older run: plan for this one.
                        self.plan(id, None).await
                    }
                    _ => Ok(()),
                }
            }
            Handled::Ignored if !scored.verdict.is_anomalous() => self.on_normal_run(scored).await,
            Handled::Ignored => Ok(()),
        }
    }

    async fn incident_of_request(&self, request_id: i64) -> Result<Option<i64>, HealingError> {
        Ok(self
            .inner
            .store
            .approval_request(request_id)
            .await?
            .and_then(|r| r.incident_ref.parse().ok()))
    }

    /// A run with a normal verdict: it verifies a fix, or shows the
    /// pipeline recovered while a plan waited.
    async fn on_normal_run(&self, scored: &ScoredRun) -> Result<(), HealingError> {
        let Some(incident) = self
            .inner
            .store
            .active_incident(&scored.run.pipeline)
            .await?
        else {
            return Ok(());
        };
        if incident.last_run_pk > scored.run_pk {
            // The incident is about a later run than this one.
            return Ok(());
        }
        let run_id = &scored.run.run_id;
        if !scored.verdict.new_normal.is_empty() && incident.status != IncidentStatus::Verifying {
            // The problem lasted: detection took its level as the new normal
            // (the automatic form of accept-baseline).
            let why: Vec<String> = scored.verdict.why();
            let note = format!(
                "new normal from run {run_id}: {}. Alerts now compare with this level",
                why.join("; ")
            );
            self.inner.metrics.healing("new_normal");
            self.status(incident.id, IncidentStatus::Resolved, Some(&note))
                .await?;
            tracing::info!(
                incident_id = incident.id,
                run_id,
                "Lasting change taken as the new normal; incident resolved."
            );
            return Ok(());
        }
        match incident.status {
            IncidentStatus::Verifying if scored.run.status == RunStatus::Failed => {
                self.not_healed(&incident, scored, "failed").await
            }
            IncidentStatus::Verifying => {
                let minutes = self.recovery_minutes(&incident, scored).await?;
                let note = format!("next run {run_id} is normal; recovered in {minutes} min");
                self.inner.metrics.healing("verified");
                self.status(incident.id, IncidentStatus::Resolved, Some(&note))
                    .await?;
                tracing::info!(
                    incident_id = incident.id,
                    run_id,
                    minutes,
                    "Fix verified; incident resolved."
                );
                Ok(())
            }
            // With planning off (alerts only) people close incidents.
            IncidentStatus::Open | IncidentStatus::AwaitingApproval
                if self.inner.plan_incidents && scored.run.status == RunStatus::Succeeded =>
            {
                let minutes = self.recovery_minutes(&incident, scored).await?;
                let note = format!(
                    "run {run_id} is normal again without remediation (after {minutes} min)"
                );
                self.inner.metrics.healing("recovered_alone");
                self.status(incident.id, IncidentStatus::Resolved, Some(&note))
                    .await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Minutes from the incident's first abnormal run to `healthy` (by the
    /// runs' own times; by pipemedic's clock when a run has none).
    async fn recovery_minutes(
        &self,
        incident: &Incident,
        healthy: &ScoredRun,
    ) -> Result<i64, HealingError> {
        let first = self.inner.store.run_by_pk(incident.first_run_pk).await?;
        let broken_at = first
            .and_then(|r| r.run.event_time())
            .unwrap_or(incident.opened_at);
        let healed_at = healthy
            .run
            .event_time()
            .unwrap_or_else(|| self.inner.clock.now());
        Ok((healed_at - broken_at).num_minutes().max(0))
    }

    /// The fix did not heal the pipeline: say so and offer the next plan.
    async fn not_healed(
        &self,
        incident: &Incident,
        scored: &ScoredRun,
        how: &str,
    ) -> Result<(), HealingError> {
        self.inner.metrics.healing("not_healed");
        let note = format!(
            "run {} {how} after the fix: it did not heal the pipeline",
            scored.run.run_id
        );
        self.status(incident.id, IncidentStatus::Open, Some(&note))
            .await?;
        self.plan(incident.id, Some(scored)).await
    }

    /// Drafts a plan for the incident and offers it for approval: about
    /// `run` when given (the run that showed a fix did not heal), else
    /// about the incident's latest abnormal run.
    pub async fn plan(
        &self,
        incident_id: i64,
        run: Option<&ScoredRun>,
    ) -> Result<(), HealingError> {
        if !self.inner.plan_incidents {
            return Ok(());
        }
        let Some(incident) = self.inner.store.incident(incident_id).await? else {
            return Ok(());
        };
        if incident.anomaly_id.is_none() {
            return Ok(());
        }
        self.status(incident_id, IncidentStatus::Planning, None)
            .await?;
        let (run_pk, verdict) = match run {
            Some(scored) => (scored.run_pk, &scored.verdict),
            None => (incident.last_run_pk, &incident.verdict),
        };
        let drafted = match self
            .inner
            .planner
            .draft_for_incident(&incident, run_pk, verdict, true)
            .await
        {
            Ok(drafted) => drafted,
            Err(e) => return self.no_plan(incident_id, &e).await,
        };
        let validated = match &drafted.outcome {
            PlanOutcome::Valid { validated, .. } => validated.clone(),
            PlanOutcome::Invalid { errors, .. } => {
                self.inner.metrics.healing("plan_invalid");
                self.say(
                    incident_id,
                    "No plan to offer",
                    Severity::Warning,
                    format!(
                        "The {} planner's plan was invalid, so nothing is offered for approval:\n{}",
                        drafted.backend,
                        errors
                            .iter()
                            .map(|e| format!("- {}", chat::cards::inert(e)))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                )
                .await;
                self.status(incident_id, IncidentStatus::Open, Some("no valid plan"))
                    .await?;
                return Ok(());
            }
        };
        if validated.steps.is_empty() {
            let expires = self.inner.clock.now();
            self.say(
                incident_id,
                "Plan",
                Severity::Info,
                render_for_chat(&validated, expires),
            )
            .await;
            self.status(
                incident_id,
                IncidentStatus::Open,
                Some("the plan has no action to approve"),
            )
            .await?;
            return Ok(());
        }
        let ctx = RequestContext {
            plan_ref: drafted.id.map(|id| id.to_string()),
            incident_ref: incident_id.to_string(),
            pipeline: drafted.facts.pipeline.clone(),
            run_id: drafted.facts.run_id.clone(),
            commit_author: drafted.facts.commit_author.clone(),
        };
        let opened = match self.inner.approvals.open_request(&validated, &ctx).await {
            Ok(opened) => opened,
            Err(ApprovalError::Step { step, kind, source }) => {
                self.say(
                    incident_id,
                    "Plan cannot be offered",
                    Severity::Warning,
                    format!("Step {step} (`{kind}`) cannot be prepared: {source}. Nothing is offered for approval."),
                )
                .await;
                self.status(
                    incident_id,
                    IncidentStatus::Open,
                    Some("plan cannot be prepared"),
                )
                .await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.inner.metrics.healing("plan_offered");
        let mut text = render_for_chat(&validated, opened.expires_at);
        text.push_str("\n**Exact calls:**\n");
        for step in &opened.steps {
            text.push_str(&format!("{}. `{}`\n", step.step_no, step.call));
        }
        let mut card = ChatMessage::new(
            format!("Plan for incident #{incident_id}"),
            Severity::Info,
            text,
        );
        if !opened.automatic {
            let value = button_value(opened.id);
            card = card
                .button(Choice::Approve, value.clone())
                .button(Choice::Reject, value);
        }
        if let Err(e) = self.inner.incidents.post_in_thread(incident_id, card).await {
            tracing::warn!(incident_id, error = %e, "Cannot queue the plan.");
        }
        if opened.automatic {
            self.status(
                incident_id,
                IncidentStatus::Remediating,
                Some("automatic remediation: every step is low risk and needs no approval"),
            )
            .await?;
            let steps = self.inner.approvals.execute(opened.id).await?;
            self.report_steps(incident_id, opened.id, &steps).await?;
        } else {
            self.status(incident_id, IncidentStatus::AwaitingApproval, None)
                .await?;
        }
        Ok(())
    }

    async fn no_plan(&self, incident_id: i64, e: &PlanServiceError) -> Result<(), HealingError> {
        self.inner.metrics.healing("plan_failed");
        tracing::warn!(incident_id, error = %e, "No plan could be drafted.");
        self.say(
            incident_id,
            "No plan",
            Severity::Warning,
            chat::cards::inert(&format!("pipemedic could not draft a plan: {e}")),
        )
        .await;
        self.status(
            incident_id,
            IncidentStatus::Open,
            Some("no plan could be drafted"),
        )
        .await?;
        Ok(())
    }

    /// Says in the thread how the steps went and moves the incident on:
    /// all succeeded → verifying; one failed or unknown → open; some still
    /// waiting for their delay → remediating.
    async fn report_steps(
        &self,
        incident_id: i64,
        request_id: i64,
        steps: &[StepReport],
    ) -> Result<(), HealingError> {
        let all_done = steps.iter().all(|s| s.status == ExecutionState::Succeeded);
        let broken = steps
            .iter()
            .any(|s| matches!(s.status, ExecutionState::Failed | ExecutionState::Unknown));
        let (title, severity) = if all_done {
            ("Remediation ran", Severity::Info)
        } else if broken {
            ("Remediation failed", Severity::Warning)
        } else {
            ("Remediation in progress", Severity::Info)
        };
        self.say(incident_id, title, severity, steps_text(steps))
            .await;
        if all_done {
            self.inner.metrics.healing("executed");
            self.status(
                incident_id,
                IncidentStatus::Verifying,
                Some("the fix ran; the next run decides whether it healed"),
            )
            .await?;
        } else if broken {
            self.inner.metrics.healing("execution_failed");
            self.status(
                incident_id,
                IncidentStatus::Open,
                Some(&format!(
                    "the plan (request {request_id}) did not complete; see the thread"
                )),
            )
            .await?;
        }
        Ok(())
    }

    /// Which request a decision on `event`'s message is about: the
    /// button's, the plan posted as that message, else the incident's
    /// newest.
    async fn request_for(&self, event: &DecisionEvent) -> Result<Option<i64>, HealingError> {
        if let Some(id) = event.button_value.as_deref().and_then(request_of_value) {
            return Ok(Some(id));
        }
        let posted = self
            .inner
            .store
            .posted_payload(event.platform.as_str(), &event.channel, &event.message_ts)
            .await?;
        let from_message = posted.as_ref().and_then(|p| {
            p.pointer("/message/buttons")
                .and_then(Value::as_array)
                .and_then(|b| b.first())
                .and_then(|b| b.get("value"))
                .and_then(Value::as_str)
                .and_then(request_of_value)
        });
        if from_message.is_some() {
            return Ok(from_message);
        }
        Ok(self
            .inner
            .store
            .approval_requests_for_incident(&event.incident_id.to_string())
            .await?
            .last()
            .map(|r| r.id))
    }

    /// Acts on a decision, then notes it handled so no sweep replays it.
    async fn handle_decision(&self, event: &DecisionEvent) -> Result<(), HealingError> {
        self.on_decision(event).await?;
        let mut tx = self.inner.store.begin_write().await?;
        tx.mark_decision_handled(
            event.platform.as_str(),
            &event.event_id,
            self.inner.clock.now(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Decisions stored more than [`DECISION_GRACE`] ago that no process
    /// acted on (it stopped between storing one and acting on it) are acted
    /// on now. A vote is stored once per platform event id, so a decision
    /// acted on twice still counts once.
    async fn replay_decisions(&self) -> Result<(), HealingError> {
        let before =
            self.inner.clock.now() - chrono::Duration::from_std(DECISION_GRACE).unwrap_or_default();
        for stored in self.inner.store.unhandled_decisions(before, 100).await? {
            // Another replica's sweep may be at the same decision.
            let mut tx = self.inner.store.begin_write().await?;
            let mine = tx
                .claim_decision_replay(stored.id, before, self.inner.clock.now())
                .await?;
            tx.commit().await?;
            if !mine {
                continue;
            }
            let Some(platform) = Platform::parse(&stored.platform) else {
                tracing::warn!(platform = %stored.platform, "A stored decision names an unknown platform; skipped.");
                continue;
            };
            let event = DecisionEvent {
                incident_id: stored.incident_id,
                platform,
                channel: stored.message.channel.clone(),
                message_ts: stored.message.ts_or_id.clone(),
                user: stored.user,
                event_id: stored.event_id,
                choice: stored.decision,
                via: stored.via,
                // The plan message the button was on names its request.
                button_value: None,
            };
            tracing::info!(incident_id = event.incident_id, event_id = %event.event_id, "Acting on a chat decision its process left unhandled.");
            self.inner.metrics.healing("decision_replayed");
            self.handle_decision(&event).await?;
        }
        Ok(())
    }

    /// One approve / reject decision from chat.
    pub async fn on_decision(&self, event: &DecisionEvent) -> Result<(), HealingError> {
        let incident_id = event.incident_id;
        let tell = |text: String| async move {
            if let Err(e) = self
                .inner
                .incidents
                .tell(
                    Some(incident_id),
                    event.platform.as_str(),
                    &event.channel,
                    &event.user,
                    &text,
                )
                .await
            {
                tracing::warn!(incident_id, error = %e, "Cannot queue an explanation.");
            }
        };
        let Some(request_id) = self.request_for(event).await? else {
            tell(format!(
                "No plan of incident #{incident_id} is waiting for a decision."
            ))
            .await;
            return Ok(());
        };
        let request = self.inner.store.approval_request(request_id).await?;
        if request.as_ref().map(|r| r.incident_ref.as_str()) != Some(&incident_id.to_string()) {
            tell(format!(
                "That plan does not belong to incident #{incident_id}; nothing changed."
            ))
            .await;
            return Ok(());
        }
        let mut approver = Approver::new(event.platform.as_str(), &event.user);
        // Groups matter only for someone not allowed as themselves.
        let needs_groups = request.as_ref().is_some_and(|r| {
            not_allowed_reason(
                &RequestView::from(r),
                &approver,
                self.inner.approvals.settings(),
            )
            .is_some()
        });
        if let Some(request) = request.as_ref().filter(|_| needs_groups) {
            let candidates = candidate_groups(
                &RequestView::from(request),
                self.inner.approvals.settings(),
                event.platform.as_str(),
            );
            if !candidates.is_empty() {
                match self
                    .inner
                    .groups
                    .member_groups(event.platform, &event.channel, &event.user, &candidates)
                    .await
                {
                    Ok(groups) => approver.groups = groups,
                    Err(e) => {
                        tracing::warn!(incident_id, error = %e, "Cannot read the person's chat groups; the decision is not counted.");
                        tell(format!(
                            "pipemedic could not check your {} groups just now, so your decision was not counted; please try again.",
                            event.platform
                        ))
                        .await;
                        return Ok(());
                    }
                }
            }
        }
        let vote = Vote {
            approver,
            event_id: event.event_id.clone(),
            choice: event.choice,
            via: event.via,
            at: self.inner.clock.now(),
        };
        let outcome = self.inner.approvals.record_vote(request_id, &vote).await?;
        let who = mention(event.platform, &event.user);
        match &outcome.decision {
            Ruling::Duplicate => {}
            Ruling::NotAllowed { .. }
            | Ruling::Expired
            | Ruling::Stale
            | Ruling::AlreadyDecided { .. } => {
                self.inner.metrics.healing("vote_refused");
                tell(outcome.decision.explain()).await;
            }
            Ruling::Counted {
                approved_so_far,
                required,
            } => {
                self.say(
                    incident_id,
                    "Approval counted",
                    Severity::Info,
                    format!("{who} approved: {approved_so_far} of {required} approvals. Nothing runs until all are in."),
                )
                .await;
            }
            Ruling::Rejected => {
                self.inner.metrics.healing("rejected");
                self.status(
                    incident_id,
                    IncidentStatus::Open,
                    Some(&format!("plan rejected by {}", vote.approver.key())),
                )
                .await?;
            }
            Ruling::Approved => {
                self.inner.metrics.healing("approved");
                let approvers: Vec<String> = self
                    .inner
                    .store
                    .approval_votes(request_id)
                    .await?
                    .into_iter()
                    .filter(|v| v.effective && v.vote.choice == Choice::Approve)
                    .map(|v| v.vote.approver.key())
                    .collect();
                self.status(
                    incident_id,
                    IncidentStatus::Remediating,
                    Some(&format!("approved by {}", approvers.join(", "))),
                )
                .await?;
                self.report_steps(incident_id, request_id, &outcome.steps)
                    .await?;
            }
        }
        Ok(())
    }

    /// Expires plans nobody approved in time and runs delayed steps that
    /// are due, saying so in their threads.
    pub async fn sweep(&self) -> Result<(), HealingError> {
        self.recover().await?;
        for id in self.inner.approvals.expire_due().await? {
            self.inner.metrics.healing("expired");
            let Some(incident_id) = self.incident_of_request(id).await? else {
                continue;
            };
            if let Some(incident) = self.inner.store.incident(incident_id).await? {
                if incident.status == IncidentStatus::AwaitingApproval {
                    self.status(
                        incident_id,
                        IncidentStatus::Open,
                        Some("the plan expired without enough approvals; nothing ran"),
                    )
                    .await?;
                }
            }
        }
        for id in self.inner.store.approved_request_ids().await? {
            let steps = self.inner.approvals.execute(id).await?;
            let finished = self
                .inner
                .store
                .approval_request(id)
                .await?
                .is_some_and(|r| matches!(r.status, RequestStatus::Done | RequestStatus::Failed));
            if !finished {
                continue;
            }
            let Some(incident_id) = self.incident_of_request(id).await? else {
                continue;
            };
            self.report_finished(incident_id, id, &steps).await?;
        }
        self.reconcile().await
    }

    /// Reports a finished request's steps in its incident's thread and
    /// moves the incident on, if it is still waiting on that request
    /// (remediating, or awaiting approval when its process stopped between
    /// the approving vote and saying so).
    async fn report_finished(
        &self,
        incident_id: i64,
        request_id: i64,
        steps: &[StepReport],
    ) -> Result<(), HealingError> {
        let Some(incident) = self.inner.store.incident(incident_id).await? else {
            return Ok(());
        };
        match incident.status {
            IncidentStatus::Remediating => {}
            IncidentStatus::AwaitingApproval => {
                self.status(
                    incident_id,
                    IncidentStatus::Remediating,
                    Some("the plan was approved"),
                )
                .await?;
            }
            _ => return Ok(()),
        }
        self.report_steps(incident_id, request_id, steps).await
    }

    /// Incidents a stopped process left between two steps of the loop: one
    /// still `planning` after [`PLANNING_STUCK`] is offered its open plan,
    /// or planned again; one whose newest plan finished running while it
    /// still awaits approval or remediation (quiet for
    /// [`crate::approvals::STEP_LEASE`]) gets the steps' report.
    async fn reconcile(&self) -> Result<(), HealingError> {
        let now = self.inner.clock.now();
        let lease = chrono::Duration::from_std(crate::approvals::STEP_LEASE).unwrap_or_default();
        let stuck = chrono::Duration::from_std(PLANNING_STUCK).unwrap_or_default();
        for incident in self.inner.store.incidents(true, None, 500).await? {
            let quiet = now - incident.updated_at;
            let waiting = matches!(
                incident.status,
                IncidentStatus::AwaitingApproval | IncidentStatus::Remediating
            );
            if !(waiting && quiet > lease
                || incident.status == IncidentStatus::Planning && quiet > stuck)
            {
                continue;
            }
            let requests = self
                .inner
                .store
                .approval_requests_for_incident(&incident.id.to_string())
                .await?;
            let newest = requests.last();
            let finished =
                newest.filter(|r| matches!(r.status, RequestStatus::Done | RequestStatus::Failed));
            if waiting && finished.is_none() {
                // Still waiting on people or on a delayed step.
                continue;
            }
            // One replica takes the incident on; the others see it updated.
            let mut tx = self.inner.store.begin_write().await?;
            let mine = tx
                .claim_incident(incident.id, incident.status, incident.updated_at, now)
                .await?;
            tx.commit().await?;
            if !mine {
                continue;
            }
            self.inner.metrics.healing("reconciled");
            if let Some(r) = finished.filter(|_| waiting) {
                let steps = self.inner.approvals.steps(r.id).await?;
                self.report_finished(incident.id, r.id, &steps).await?;
            } else if newest.is_some_and(|r| r.status == RequestStatus::Pending) {
                self.status(
                    incident.id,
                    IncidentStatus::AwaitingApproval,
                    Some("the plan in the thread awaits approval"),
                )
                .await?;
            } else {
                tracing::warn!(
                    incident_id = incident.id,
                    "Incident left in planning; planning again."
                );
                self.plan(incident.id, None).await?;
            }
        }
        Ok(())
    }

    /// At start and on every sweep: decisions a stopped process stored but
    /// never acted on are acted on; steps a stopped process left in flight
    /// are unknown: say so in their threads and reopen their incidents.
    pub async fn recover(&self) -> Result<(), HealingError> {
        self.replay_decisions().await?;
        let unknown = self.inner.approvals.recover_in_flight().await?;
        let mut by_request: std::collections::BTreeMap<i64, Vec<StepReport>> =
            std::collections::BTreeMap::new();
        for step in unknown {
            by_request.entry(step.request_id).or_default().push(step);
        }
        for (request_id, steps) in by_request {
            let Some(incident_id) = self.incident_of_request(request_id).await? else {
                continue;
            };
            self.report_steps(incident_id, request_id, &steps).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_values_name_their_request() {
        assert_eq!(request_of_value(&button_value(42)), Some(42));
        assert_eq!(request_of_value("request:x"), None);
        assert_eq!(request_of_value("42"), None);
    }
}
