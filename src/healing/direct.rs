//! Decisions that do not come from chat: `pipemedic approve|reject PLAN`
//! and `POST /v1/plans/{id}/approve|reject` with the admin token, for when
//! chat is down. The plan's request gets a vote from `cli:NAME` (the
//! operator's name) through the same approval rules as a chat vote
//! (quorum, allowed approvers, expiry, exactly once); the thread hears of
//! it as it would of a chat decision.

use super::*;
use serde_json::json;

/// Why a plan cannot be decided on.
#[derive(Debug, thiserror::Error)]
pub enum DirectDecisionError {
    #[error("no plan {0}")]
    UnknownPlan(i64),
    #[error("plan {0} was never offered for approval (it was invalid, had no steps, or its incident had no alert)")]
    NotOffered(i64),
    #[error(transparent)]
    Healing(#[from] HealingError),
}

impl From<StoreError> for DirectDecisionError {
    fn from(e: StoreError) -> Self {
        Self::Healing(HealingError::Store(e))
    }
}

/// A decision on a plan from outside chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectDecision {
    pub plan_id: i64,
    pub choice: Choice,
    /// The operator's name (`--as NAME`, else `$USER`); the vote is by `cli:NAME`.
    pub operator: String,
    /// [`Via::Cli`] or [`Via::Api`].
    pub via: Via,
    /// Why (shown in the thread and audited), mostly for rejections.
    pub reason: Option<String>,
}

/// What a direct decision did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DirectOutcome {
    pub plan_id: i64,
    pub incident_id: i64,
    pub request_id: i64,
    /// The person the vote counts as.
    pub voter: String,
    pub via: &'static str,
    pub ruling: Ruling,
    /// [`Ruling::explain`].
    pub explanation: String,
    pub steps: Vec<StepReport>,
}

/// A fresh id for one decision through the admin API: each call is its own
/// event (a repeated vote of one person still counts once).
fn direct_event_id(via: Via, request_id: i64, operator: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}:{request_id}:{operator}:{nanos}:{}:{}",
        via.as_str(),
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The platform name of votes through the admin API.
pub const DIRECT_PLATFORM: &str = "cli";

impl HealingService {
    /// Records `decision` as a vote on the newest request of its plan and
    /// acts on the ruling as for a chat decision (the approval that
    /// completes the quorum starts the plan, once, in a task of its own and
    /// returns with its steps still to run; a rejection reopens the
    /// incident). Not idempotent by itself, but a person's repeated vote
    /// counts once and a decided request takes no more votes.
    #[tracing::instrument(name = "healing.direct_decision", skip_all, fields(plan = decision.plan_id, via = decision.via.as_str()))]
    pub async fn decide_plan(
        &self,
        decision: &DirectDecision,
    ) -> Result<DirectOutcome, DirectDecisionError> {
        let store = &self.inner.store;
        let plan = store
            .plan(decision.plan_id)
            .await?
            .ok_or(DirectDecisionError::UnknownPlan(decision.plan_id))?;
        let incident_id = plan
            .incident_id
            .ok_or(DirectDecisionError::NotOffered(decision.plan_id))?;
        let plan_ref = decision.plan_id.to_string();
        let request = store
            .approval_requests_for_incident(&incident_id.to_string())
            .await?
            .into_iter()
            .filter(|r| r.plan_ref.as_deref() == Some(plan_ref.as_str()))
            .max_by_key(|r| r.id)
            .ok_or(DirectDecisionError::NotOffered(decision.plan_id))?;
        let now = self.inner.clock.now();
        let approver = Approver::new(DIRECT_PLATFORM, &decision.operator);
        let vote = Vote {
            event_id: direct_event_id(decision.via, request.id, &decision.operator),
            approver,
            choice: decision.choice,
            via: decision.via,
            at: now,
        };
        let outcome = self
            .inner
            .approvals
            .decide_vote(request.id, &vote)
            .await
            .map_err(HealingError::from)?;
        let voter = vote.approver.key();
        if let Some(reason) = decision.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            let mut tx = store.begin_write().await?;
            if decision.choice == Choice::Reject {
                tx.record_rejection_reason(request.id, reason.trim())
                    .await?;
            }
            tx.commit_audited(
                now,
                "approval.reason",
                &format!("approval_request:{}", request.id),
                &voter,
                &json!({"via": decision.via.as_str(), "reason": reason, "event_id": vote.event_id}),
            )
            .await?;
        }
        let because = decision
            .reason
            .as_deref()
            .map(|r| format!(" ({})", r.trim()))
            .unwrap_or_default();
        match &outcome.decision {
            Ruling::Counted { .. } | Ruling::Rejected | Ruling::Approved => {
                let rejected = format!(
                    "plan rejected by {voter} via {}{because}",
                    decision.via.as_str()
                );
                self.act_on_ruling(
                    incident_id,
                    request.id,
                    &outcome.decision,
                    &format!("{voter} approved through the admin API"),
                    &rejected,
                )
                .await
                .map_err(DirectDecisionError::from)?;
            }
            Ruling::NotAllowed { .. }
            | Ruling::Expired
            | Ruling::Stale
            | Ruling::AlreadyDecided { .. }
            | Ruling::Duplicate => {
                self.inner.metrics.healing("vote_refused");
            }
        }
        Ok(DirectOutcome {
            plan_id: decision.plan_id,
            incident_id,
            request_id: request.id,
            voter,
            via: decision.via.as_str(),
            explanation: outcome.decision.explain(),
            ruling: outcome.decision,
            steps: outcome.steps,
        })
    }
}
