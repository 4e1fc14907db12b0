//! The approval service: opens a request for a validated plan, records
//! votes and decides them with [`decide`], expires and supersedes
//! requests, and runs each approved step exactly once through the
//! [`ExecutorRegistry`].
//!
//! Exactly once rests on the store: a vote is stored once per platform
//! event id while the request's row is locked, so concurrent votes are
//! decided one after another and only one of them approves; each step is
//! claimed (`planned` → `running`) by one process in its own committed
//! transaction before the call is made, so a double click, a redelivery,
//! two approvals at the same moment or two processes on one PostgreSQL
//! make one call. A step that was `running` when its process stopped is
//! turned `unknown` once its heartbeat has been quiet for [`STEP_LEASE`]
//! ([`ApprovalService::recover_in_flight`], at start and on every sweep)
//! and reported, never re-run; a live process refreshes the heartbeat of
//! the step it is running, so another replica never gives it up. A
//! failed call is reported with its class and never retried automatically.
//!
//! Every decision (who, how, when), execution (call, result) and state
//! change is appended to the audit log. This module must not talk to chat:
//! callers show the [`Ruling`] and the [`StepReport`]s it returns.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::autonomy::earned_autonomy;
use super::policy::{
    admin_token_counted, decide, is_automatic, ApprovalSettings, RequestStatus, RequestView,
    Ruling, StepPolicy, Vote,
};
use super::report::{error_detail, report};
use crate::clock::Clock;
use crate::domain::Signature;
use crate::plan::ValidatedPlan;
use crate::remediate::{
    ActionCall, ExecError, ExecutionOutcome, ExecutionStatus, ExecutorRegistry,
};
use crate::store::Store;
use crate::store::{
    ExecutionState, NewApprovalRequest, NewExecution, NewOutcome, OfferedPlan, StoreError, WriteTx,
};

/// Actor of the audit entries pipemedic writes on its own behalf.
const SYSTEM_ACTOR: &str = "pipemedic";

/// How often the claimant of a running step refreshes its heartbeat.
pub const STEP_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a running step's heartbeat may be quiet before another
/// process gives it up as unknown: several missed heartbeats, so a busy
/// but live process keeps its steps.
pub const STEP_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no approval request {0}")]
    UnknownRequest(i64),
    #[error("the plan has no steps; there is nothing to approve")]
    EmptyPlan,
    /// A step cannot be offered: its dry run or preparation failed.
    #[error("step {step} ({kind}) cannot be offered for approval: {source}")]
    Step {
        step: u32,
        kind: String,
        #[source]
        source: ExecError,
    },
}

/// What the plan is about, beyond the plan itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestContext {
    /// The stored plan's id, once plans are stored.
    pub plan_ref: Option<String>,
    /// The incident's id.
    pub incident_ref: String,
    pub pipeline: String,
    /// The run the plan is about; a newer run makes the request stale.
    pub run_id: String,
    /// The author of the commit the run built.
    pub commit_author: Option<String>,
    /// The failure the plan is offered for ([`crate::domain::Signature::key`]),
    /// kept with each step's outcome.
    pub signature: String,
}

/// One step as chat shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The approval request the step belongs to.
    pub request_id: i64,
    pub step_no: u32,
    pub kind: String,
    /// The exact call (the dry run until it ran, then the call made).
    pub call: String,
    pub status: ExecutionState,
    /// One line for chat.
    pub summary: String,
}

/// A request just opened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenedRequest {
    pub id: i64,
    /// No approval is needed (automatic remediation of a low-risk plan):
    /// the request is already approved and the caller should
    /// [`ApprovalService::execute`] it.
    pub automatic: bool,
    pub expires_at: DateTime<Utc>,
    /// Each step's dry run.
    pub steps: Vec<StepReport>,
    /// Why it runs without votes when that is earned autonomy (its fixes'
    /// record on the pipeline); `None` otherwise.
    pub earned: Option<String>,
}

/// What recording a vote did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VoteOutcome {
    pub request_id: i64,
    pub decision: Ruling,
    /// The steps as they stand after the vote; run when this vote approved
    /// the request.
    pub steps: Vec<StepReport>,
}

/// Decides approvals and runs approved steps exactly once.
pub struct ApprovalService {
    store: Store,
    clock: Arc<dyn Clock>,
    settings: ApprovalSettings,
    registry: Arc<ExecutorRegistry>,
    process_id: String,
    heartbeat_every: std::time::Duration,
}

impl std::fmt::Debug for ApprovalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalService")
            .field("process_id", &self.process_id)
            .field("registry", &self.registry)
            .finish()
    }
}

/// An id for this process, distinct across restarts and hosts.
fn new_process_id(now: DateTime<Utc>) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_string());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        now.timestamp_nanos_opt()
            .unwrap_or_else(|| now.timestamp_millis())
    )
}

fn subject(request_id: i64) -> String {
    format!("approval_request:{request_id}")
}

impl ApprovalService {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        settings: ApprovalSettings,
        registry: Arc<ExecutorRegistry>,
    ) -> Self {
        let process_id = new_process_id(Utc::now());
        Self {
            store,
            clock,
            settings,
            registry,
            process_id,
            heartbeat_every: STEP_HEARTBEAT,
        }
    }

    /// The same service refreshing a running step's heartbeat this often
    /// (default [`STEP_HEARTBEAT`]; keep it well under [`STEP_LEASE`]).
    pub fn with_heartbeat_every(mut self, every: std::time::Duration) -> Self {
        self.heartbeat_every = every;
        self
    }

    /// The same service under another process id (what claims are made as).
    pub fn with_process_id(mut self, process_id: impl Into<String>) -> Self {
        self.process_id = process_id.into();
        self
    }

    pub fn process_id(&self) -> &str {
        &self.process_id
    }

    pub fn settings(&self) -> &ApprovalSettings {
        &self.settings
    }

    /// The steps of a request as chat shows them.
    pub async fn steps(&self, request_id: i64) -> Result<Vec<StepReport>, ApprovalError> {
        Ok(self
            .store
            .executions(request_id)
            .await?
            .iter()
            .map(report)
            .collect())
    }

    /// Offers a validated plan for approval: stores the request, each
    /// step's policy and its exact call and dry run (prepared with
    /// read-only look-ups). Not idempotent: each call opens a new request.
    #[tracing::instrument(name = "approvals.open", skip_all, fields(pipeline = %ctx.pipeline, run_id = %ctx.run_id, incident = %ctx.incident_ref))]
    pub async fn open_request(
        &self,
        plan: &ValidatedPlan,
        ctx: &RequestContext,
    ) -> Result<OpenedRequest, ApprovalError> {
        if plan.steps.is_empty() {
            return Err(ApprovalError::EmptyPlan);
        }
        let mut policies = Vec::new();
        let mut executions = Vec::new();
        for (i, step) in plan.steps.iter().enumerate() {
            let step_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let kind_name = step.kind.as_str().to_string();
            let fail = |source| ApprovalError::Step {
                step: step_no,
                kind: kind_name.clone(),
                source,
            };
            let kind = step.kind;
            let run_id = step
                .target
                .execution_id
                .clone()
                .unwrap_or_else(|| ctx.run_id.clone());
            let params = step
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<serde_json::Map<_, _>>();
            let call = ActionCall::new(kind, &step.target.pipeline, &run_id, Value::Object(params));
            let call = self.registry.prepare(&call).await.map_err(fail)?;
            let dry_run = self.registry.describe(&call).map_err(fail)?;
            policies.push(StepPolicy {
                step_no,
                kind: kind_name.clone(),
                risk: step.risk,
                approval: step.approval.clone(),
                delay_s: step.delay_s,
            });
            executions.push(NewExecution {
                step_no,
                kind: kind_name.clone(),
                call: serde_json::to_value(&call).map_err(|e| StoreError::Corrupt {
                    what: "action call".into(),
                    detail: e.to_string(),
                })?,
                dry_run,
            });
        }
        let earned = if is_automatic(&policies, &self.settings) {
            None
        } else {
            earned_autonomy(
                &self.store,
                self.settings.auto_remediation,
                plan,
                &ctx.pipeline,
                &Signature::parse(&ctx.signature),
            )
            .await?
        };
        let automatic = is_automatic(&policies, &self.settings) || earned.is_some();
        let now = self.clock.now();
        let expires_at = now + self.settings.expiry;
        let new = NewApprovalRequest {
            plan_ref: ctx.plan_ref.clone(),
            incident_ref: ctx.incident_ref.clone(),
            pipeline: ctx.pipeline.clone(),
            run_id: ctx.run_id.clone(),
            commit_author: ctx.commit_author.clone(),
            steps: policies.clone(),
            created_at: now,
            expires_at,
            status: if automatic {
                RequestStatus::Approved
            } else {
                RequestStatus::Pending
            },
        };
        let mut tx = self.store.begin_write().await?;
        let id = tx.create_approval_request(&new, &executions).await?;
        let offered = OfferedPlan {
            request_id: id,
            incident_id: ctx.incident_ref.parse().ok(),
            plan_id: ctx.plan_ref.as_deref().and_then(|p| p.parse().ok()),
            pipeline: ctx.pipeline.clone(),
            signature: ctx.signature.clone(),
            automatic,
        };
        let outcome_steps: Vec<NewOutcome> = plan
            .steps
            .iter()
            .zip(&policies)
            .map(|(step, policy)| NewOutcome {
                step_no: policy.step_no,
                playbook: step.playbook.clone(),
                action: step.action.clone(),
            })
            .collect();
        tx.record_offered(&offered, &outcome_steps, now).await?;
        tx.audit(
            now,
            "approval.requested",
            &subject(id),
            SYSTEM_ACTOR,
            &json!({
                "plan_ref": ctx.plan_ref, "incident": ctx.incident_ref,
                "pipeline": ctx.pipeline, "run_id": ctx.run_id,
                "expires_at": expires_at, "steps": policies,
                "dry_runs": executions.iter().map(|e| &e.dry_run).collect::<Vec<_>>(),
            }),
        )
        .await?;
        if let Some(earned) = &earned {
            tx.audit(
                now,
                "approval.decision",
                &subject(id),
                SYSTEM_ACTOR,
                &json!({"decision": "approved", "via": "earned_autonomy",
                        "why": format!("approvals.auto_remediation is on, every step is low risk, and the record earned it: {}", earned.why),
                        "pipeline": ctx.pipeline}),
            )
            .await?;
        } else if automatic {
            tx.audit(
                now,
                "approval.decision",
                &subject(id),
                SYSTEM_ACTOR,
                &json!({"decision": "approved", "via": "automatic",
                        "why": "approvals.auto_remediation is on and every step is low risk with approval: none"}),
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(request_id = id, automatic, "Approval requested.");
        Ok(OpenedRequest {
            id,
            automatic,
            expires_at,
            steps: self.steps(id).await?,
            earned: earned.map(|e| e.why),
        })
    }

    /// Records one decision event, decides it and, when it completes the
    /// approvals, runs the plan before returning ([`Self::decide_vote`] then
    /// [`Self::execute`]). A redelivered event (same platform and event id)
    /// is a no-op ([`Ruling::Duplicate`]). Safe to call concurrently, from
    /// several processes.
    pub async fn record_vote(
        &self,
        request_id: i64,
        vote: &Vote,
    ) -> Result<VoteOutcome, ApprovalError> {
        let mut outcome = self.decide_vote(request_id, vote).await?;
        if outcome.decision == Ruling::Approved {
            outcome.steps = self.execute(request_id).await?;
        }
        Ok(outcome)
    }

    /// The emails and logins the commit's author of `request` is known by:
    /// what the run the request is about recorded (its latest attempt).
    /// Empty when the run named neither or is no longer stored.
    pub async fn author_ids(
        &self,
        request: &crate::store::StoredRequest,
    ) -> Result<Vec<String>, ApprovalError> {
        let run = self
            .store
            .latest_attempt(&request.pipeline, &request.run_id)
            .await?;
        Ok(run
            .map(|r| {
                [r.run.commit_author_email, r.run.commit_author_login]
                    .into_iter()
                    .flatten()
                    .map(|id| id.trim().to_string())
                    .filter(|id| !id.is_empty())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Records one decision event and decides it, without running anything:
    /// when the vote completes the approvals the request is `approved` and
    /// the caller runs it with [`Self::execute`] (in a task of its own, so
    /// a long step never holds up whoever handles decisions). A redelivered
    /// event (same platform and event id) is a no-op ([`Ruling::Duplicate`]).
    /// Safe to call concurrently, from several processes.
    #[tracing::instrument(name = "approvals.vote", skip_all, fields(request_id = request_id, platform = %vote.approver.platform, user = %vote.approver.user, via = vote.via.as_str()))]
    pub async fn decide_vote(
        &self,
        request_id: i64,
        vote: &Vote,
    ) -> Result<VoteOutcome, ApprovalError> {
        let author_ids = match self.store.approval_request(request_id).await? {
            Some(request) => self.author_ids(&request).await?,
            None => Vec::new(),
        };
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let request = tx
            .lock_approval_request(request_id)
            .await?
            .ok_or(ApprovalError::UnknownRequest(request_id))?;
        if tx
            .vote_seen(&vote.approver.platform, &vote.event_id)
            .await?
        {
            drop(tx);
            tracing::info!(event_id = %vote.event_id, "Redelivered decision ignored.");
            return Ok(VoteOutcome {
                request_id,
                decision: Ruling::Duplicate,
                steps: self.steps(request_id).await?,
            });
        }
        let counted = tx.effective_votes(request_id).await?;
        let decision = admin_token_counted(&counted, vote).unwrap_or_else(|| {
            decide(
                &self.settings,
                &RequestView::from(&request).with_author_ids(author_ids),
                &counted,
                vote,
                now,
            )
        });
        let effective = matches!(
            decision,
            Ruling::Counted { .. } | Ruling::Approved | Ruling::Rejected
        );
        let label = serde_json::to_value(&decision)
            .ok()
            .and_then(|v| {
                v.get("decision")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        if !tx.record_vote(request_id, vote, effective, &label).await? {
            drop(tx);
            return Ok(VoteOutcome {
                request_id,
                decision: Ruling::Duplicate,
                steps: self.steps(request_id).await?,
            });
        }
        tx.audit(
            now,
            "approval.decision",
            &subject(request_id),
            &vote.approver.key(),
            &json!({
                "event_id": vote.event_id, "choice": vote.choice.as_str(),
                "via": vote.via.as_str(), "at": vote.at, "groups": vote.approver.groups,
                "result": decision,
            }),
        )
        .await?;
        let new_status = match &decision {
            Ruling::Approved => Some(RequestStatus::Approved),
            Ruling::Rejected => Some(RequestStatus::Rejected),
            Ruling::Expired if request.status == RequestStatus::Pending => {
                Some(RequestStatus::Expired)
            }
            _ => None,
        };
        if let Some(to) = new_status {
            self.change_status(&mut tx, request_id, &[RequestStatus::Pending], to, now)
                .await?;
            if to != RequestStatus::Approved {
                tx.skip_planned_executions(request_id, now).await?;
            }
        }
        tx.commit().await?;
        tracing::info!(decision = %label, "Ruling recorded.");
        Ok(VoteOutcome {
            request_id,
            decision,
            steps: self.steps(request_id).await?,
        })
    }

    async fn change_status(
        &self,
        tx: &mut WriteTx,
        request_id: i64,
        from: &[RequestStatus],
        to: RequestStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, ApprovalError> {
        let moved = tx.set_request_status(request_id, from, to, now).await?;
        if moved {
            // The steps' outcomes follow the request, in the same transaction.
            tx.outcomes_follow_status(request_id, to, now).await?;
            tx.audit(
                now,
                "approval.status",
                &subject(request_id),
                SYSTEM_ACTOR,
                &json!({"to": to.as_str(), "from": from.iter().map(|s| s.as_str()).collect::<Vec<_>>()}),
            )
            .await?;
        }
        Ok(moved)
    }

    /// Runs the steps of an approved request in order, each claimed
    /// exactly once; stops at the first failure (reported, not retried).
    /// Idempotent: steps already claimed, by this or another process, are
    /// not run again, and a request that is not approved runs nothing.
    #[tracing::instrument(name = "approvals.execute", skip(self))]
    pub async fn execute(&self, request_id: i64) -> Result<Vec<StepReport>, ApprovalError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let request = tx
            .lock_approval_request(request_id)
            .await?
            .ok_or(ApprovalError::UnknownRequest(request_id))?;
        let approved_at = request.approved_at.unwrap_or(now);
        let delays: std::collections::BTreeMap<u32, u64> = request
            .steps
            .iter()
            .filter_map(|s| s.delay_s.map(|d| (s.step_no, d)))
            .collect();
        match request.status {
            RequestStatus::Approved => {
                self.change_status(
                    &mut tx,
                    request_id,
                    &[RequestStatus::Approved],
                    RequestStatus::Executing,
                    now,
                )
                .await?;
            }
            RequestStatus::Executing => {}
            _ => {
                drop(tx);
                return self.steps(request_id).await;
            }
        }
        tx.commit().await?;

        let mut all_succeeded = true;
        for step in self.store.executions(request_id).await? {
            match step.status {
                ExecutionState::Succeeded => continue,
                ExecutionState::Planned => {}
                _ => {
                    all_succeeded = false;
                    break;
                }
            }
            let now = self.clock.now();
            if let Some(delay) = delays.get(&step.step_no) {
                let due = approved_at
                    + chrono::Duration::seconds(i64::try_from(*delay).unwrap_or(i64::MAX / 1000));
                if now < due {
                    // Not yet: `resume_due` runs it when its time comes.
                    all_succeeded = false;
                    break;
                }
            }
            let mut tx = self.store.begin_write().await?;
            let Some(claimed) = tx
                .claim_execution(request_id, step.step_no, &self.process_id, now)
                .await?
            else {
                // Another caller holds this step; it reports its own result.
                drop(tx);
                all_succeeded = false;
                break;
            };
            tx.commit_audited(
                now,
                "execution.started",
                &subject(request_id),
                &self.process_id,
                &json!({"step": claimed.step_no, "kind": claimed.kind, "call": claimed.dry_run,
                        "attempt": claimed.attempts}),
            )
            .await?;

            let result = match serde_json::from_value::<ActionCall>(claimed.call.clone()) {
                Ok(call) => self.execute_with_heartbeat(claimed.id, &call).await,
                Err(e) => Err(ExecError::bad("call", e.to_string())),
            };
            let now = self.clock.now();
            let (state, outcome, error) = match &result {
                Ok(o) => {
                    let state = match o.status {
                        ExecutionStatus::Succeeded => ExecutionState::Succeeded,
                        ExecutionStatus::Failed => ExecutionState::Failed,
                    };
                    let outcome = serde_json::to_value(o).unwrap_or(Value::Null);
                    (state, outcome, None)
                }
                Err(e) => (ExecutionState::Failed, error_detail(e), Some(e.to_string())),
            };
            let mut tx = self.store.begin_write().await?;
            tx.finish_execution(
                claimed.id,
                &self.process_id,
                state,
                Some(&outcome),
                error.as_deref(),
                now,
            )
            .await?;
            tx.audit(
                now,
                "execution.finished",
                &subject(request_id),
                &self.process_id,
                &json!({"step": claimed.step_no, "kind": claimed.kind, "status": state.as_str(),
                        "result": outcome}),
            )
            .await?;
            if state != ExecutionState::Succeeded {
                tx.skip_planned_executions(request_id, now).await?;
                self.change_status(
                    &mut tx,
                    request_id,
                    &[RequestStatus::Executing],
                    RequestStatus::Failed,
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            if let Some(e) = result.as_ref().err() {
                tracing::warn!(step = claimed.step_no, error = %e, retryable = e.retryable(), "Approved step failed; reported, not retried.");
            }
            if state != ExecutionState::Succeeded {
                all_succeeded = false;
                break;
            }
        }
        if all_succeeded {
            let now = self.clock.now();
            let mut tx = self.store.begin_write().await?;
            self.change_status(
                &mut tx,
                request_id,
                &[RequestStatus::Executing],
                RequestStatus::Done,
                now,
            )
            .await?;
            tx.commit().await?;
        }
        self.steps(request_id).await
    }

    /// Makes the call while refreshing the step's heartbeat every
    /// `heartbeat_every` ([`STEP_HEARTBEAT`]), so no other process takes it for abandoned. A
    /// heartbeat that cannot be written is logged; the call goes on.
    async fn execute_with_heartbeat(
        &self,
        execution_id: i64,
        call: &ActionCall,
    ) -> Result<ExecutionOutcome, ExecError> {
        let run = self.registry.execute(call);
        tokio::pin!(run);
        let mut beat = tokio::time::interval(self.heartbeat_every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        loop {
            tokio::select! {
                result = &mut run => return result,
                _ = beat.tick() => {
                    if let Err(e) = self.heartbeat(execution_id).await {
                        tracing::warn!(execution_id, error = %e, "Cannot refresh a running step's heartbeat.");
                    }
                }
            }
        }
    }

    async fn heartbeat(&self, execution_id: i64) -> Result<(), StoreError> {
        let mut tx = self.store.begin_write().await?;
        tx.touch_execution(execution_id, &self.process_id, self.clock.now())
            .await?;
        tx.commit().await
    }

    /// Runs what approved requests still have to run: steps whose delay
    /// has passed, and requests approved just before their process
    /// stopped. Steps already claimed are never run again. Returns the ids
    /// of the requests looked at.
    pub async fn resume_due(&self) -> Result<Vec<i64>, ApprovalError> {
        let ids = self.store.approved_request_ids().await?;
        for id in &ids {
            self.execute(*id).await?;
        }
        Ok(ids)
    }

    /// Expires every pending request whose time is up; returns their ids.
    pub async fn expire_due(&self) -> Result<Vec<i64>, ApprovalError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let ids = tx.expire_due(now).await?;
        for id in &ids {
            tx.skip_planned_executions(*id, now).await?;
            tx.outcomes_follow_status(*id, RequestStatus::Expired, now)
                .await?;
            tx.audit(
                now,
                "approval.status",
                &subject(*id),
                SYSTEM_ACTOR,
                &json!({"to": "expired", "from": ["pending"]}),
            )
            .await?;
        }
        tx.commit().await?;
        if !ids.is_empty() {
            tracing::info!(count = ids.len(), "Approval requests expired.");
        }
        Ok(ids)
    }

    /// A newer run of `pipeline` arrived: its pending requests about older
    /// runs become stale and can no longer be approved. Returns their ids.
    pub async fn supersede(
        &self,
        pipeline: &str,
        newer_run_id: &str,
    ) -> Result<Vec<i64>, ApprovalError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let ids = tx.supersede(pipeline, newer_run_id, now).await?;
        for id in &ids {
            tx.skip_planned_executions(*id, now).await?;
            tx.outcomes_follow_status(*id, RequestStatus::Stale, now)
                .await?;
            tx.audit(
                now,
                "approval.status",
                &subject(*id),
                SYSTEM_ACTOR,
                &json!({"to": "stale", "from": ["pending"], "newer_run_id": newer_run_id}),
            )
            .await?;
        }
        tx.commit().await?;
        if !ids.is_empty() {
            tracing::info!(
                pipeline,
                newer_run_id,
                count = ids.len(),
                "Approval requests superseded."
            );
        }
        Ok(ids)
    }

    /// Steps left `running` by another process whose heartbeat has been
    /// quiet for longer than [`STEP_LEASE`] become `unknown` (their call
    /// may or may not have taken effect), their requests `failed`; they
    /// are reported, never re-run. Returns them. Run at start and on every
    /// sweep, so a replica that died mid-step is noticed by the others
    /// while a live replica's long step is left alone.
    pub async fn recover_in_flight(&self) -> Result<Vec<StepReport>, ApprovalError> {
        let now = self.clock.now();
        let quiet_since = now - chrono::Duration::from_std(STEP_LEASE).unwrap_or_default();
        let mut tx = self.store.begin_write().await?;
        let found = tx
            .mark_in_flight_unknown(&self.process_id, quiet_since, now)
            .await?;
        for e in &found {
            tx.audit(
                now,
                "execution.unknown",
                &subject(e.request_id),
                SYSTEM_ACTOR,
                &json!({"step": e.step_no, "kind": e.kind, "call": e.dry_run,
                        "claimed_by": e.claimed_by, "started_at": e.started_at}),
            )
            .await?;
            tx.skip_planned_executions(e.request_id, now).await?;
            self.change_status(
                &mut tx,
                e.request_id,
                &[RequestStatus::Executing, RequestStatus::Approved],
                RequestStatus::Failed,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        for e in &found {
            tracing::warn!(request_id = e.request_id, step = e.step_no, kind = %e.kind, "Step was in flight when its process stopped; marked unknown, not re-run.");
        }
        Ok(found.iter().map(report).collect())
    }
}
