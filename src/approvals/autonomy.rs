//! Earned autonomy: whether a plan offered on a pipeline may run without
//! waiting for votes because its fixes proved themselves there.
//!
//! A plan runs on its own when `approvals.auto_remediation` is on, nobody
//! stopped automatic runs on the pipeline, and every step is low risk and
//! either needs no approval (`approval: none`) or declares `auto_after`
//! and its record on the pipeline meets it ([`crate::domain::autonomy`]).
//! A fix that did not heal twice for the failure at hand never runs on its
//! own, whatever else its record says. The answer carries the reason in
//! words, for the thread and the audit log.
//!
//! This module only reads the store; the approval service acts on the
//! answer (inside the transaction that opens the request), and the stop is
//! stored by whoever received it ([`crate::store::WriteTx::stop_autonomy`]).

use crate::domain::{autonomy, ApprovalPolicy, Risk, Signature};
use crate::plan::ValidatedPlan;
use crate::store::{Store, StoreError};

/// Why a plan may run without a person, when it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarnedAutonomy {
    /// One clause per step that earned it.
    pub why: String,
}

/// Whether `plan`, offered on `pipeline` for the failure `signature`, has
/// earned the right to run without votes. `None` when any step has not
/// (or when automatic remediation is off, or stopped on the pipeline), and
/// when no step declares `auto_after` (that is plain automatic
/// remediation, decided by the policy).
pub async fn earned_autonomy(
    store: &Store,
    auto_remediation: bool,
    plan: &ValidatedPlan,
    pipeline: &str,
    signature: &Signature,
) -> Result<Option<EarnedAutonomy>, StoreError> {
    if !auto_remediation || plan.steps.is_empty() {
        return Ok(None);
    }
    if !plan.steps.iter().any(|s| s.auto_after.is_some()) {
        return Ok(None);
    }
    if store.autonomy_stop(pipeline).await?.is_some() {
        return Ok(None);
    }
    let mut reasons = Vec::new();
    for step in &plan.steps {
        if step.risk != Risk::Low {
            return Ok(None);
        }
        let Some(rule) = step.auto_after else {
            if step.approval == ApprovalPolicy::None {
                continue;
            }
            return Ok(None);
        };
        let record = store
            .track_record(pipeline, &step.playbook, &step.action)
            .await?;
        if record
            .as_ref()
            .is_some_and(|r| r.not_healed_for(signature) >= 2)
        {
            return Ok(None);
        }
        let verdict = autonomy(record.as_ref(), &rule);
        if !verdict.is_earned() {
            return Ok(None);
        }
        reasons.push(verdict.why().to_string());
    }
    Ok(Some(EarnedAutonomy {
        why: reasons.join("; "),
    }))
}
