//! The last transition of an outcome: the run after a fix decides whether
//! it healed the pipeline. The incident's executed steps become healed
//! (with the minutes from the failure to the normal run) or not healed, in
//! one transaction with their audit entry.
//!
//! A not-healed outcome revokes the autonomy of a fix that had earned it
//! (or had just run on it): the revocation is audited
//! (`autonomy.revoked`) and said in the thread; the fix then waits for
//! approval until it earns autonomy again ([`crate::domain::autonomy`]
//! counts heals since the latest not-healed outcome).
//!
//! The earlier transitions (offered, approved, rejected, expired,
//! superseded, executed, failed) are recorded by the approval service in
//! the transaction that changes the request ([`crate::approvals`]).

use serde_json::json;

use super::*;
use crate::domain::autonomy;

impl HealingService {
    /// Records what the next run said of the incident's fix: `healed`
    /// (`minutes` from the failure) or not. Idempotent: only executed steps
    /// move, so a second verdict on the same incident changes nothing.
    pub(super) async fn record_verification(
        &self,
        incident: &Incident,
        run_id: &str,
        healed: bool,
        minutes: Option<i64>,
    ) -> Result<(), HealingError> {
        let store = &self.inner.store;
        // Which fixes had earned autonomy before this verdict.
        let mut had_autonomy = Vec::new();
        if !healed {
            let waiting = store
                .outcome_rows(Some(&incident.pipeline))
                .await?
                .into_iter()
                .filter(|r| {
                    r.incident_id == Some(incident.id) && r.fate == crate::domain::Fate::Executed
                });
            for row in waiting {
                let Some(rule) = self.auto_after_of(&row.playbook, &row.action) else {
                    continue;
                };
                let before = store
                    .track_record(&row.pipeline, &row.playbook, &row.action)
                    .await?;
                if row.automatic || autonomy(before.as_ref(), &rule).is_earned() {
                    had_autonomy.push((row, rule));
                }
            }
        }
        let now = self.inner.clock.now();
        let mut tx = store.begin_write().await?;
        let moved = tx
            .record_verification(incident.id, healed, minutes, now)
            .await?;
        if moved.is_empty() {
            return Ok(());
        }
        tx.audit(
            now,
            if healed {
                "outcome.healed"
            } else {
                "outcome.not_healed"
            },
            &format!("incident/{}", incident.id),
            ACTOR,
            &json!({
                "pipeline": incident.pipeline, "run_id": run_id, "minutes_to_heal": minutes,
                "fixes": moved.iter().map(|r| json!({
                    "request_id": r.request_id, "step": r.step_no,
                    "playbook": r.playbook, "action": r.action,
                    "signature": r.signature, "automatic": r.automatic,
                })).collect::<Vec<_>>(),
            }),
        )
        .await?;
        let mut revoked = Vec::new();
        for (row, rule) in &had_autonomy {
            let why = format!(
                "{}/{} did not heal {} (run {run_id}); it waits for approval until it heals {} times in a row again",
                row.playbook, row.action, incident.pipeline, rule.healed
            );
            tx.audit(
                now,
                "autonomy.revoked",
                &format!("pipeline/{}", incident.pipeline),
                ACTOR,
                &json!({"playbook": row.playbook, "action": row.action,
                        "incident": incident.id, "why": why}),
            )
            .await?;
            revoked.push(why);
        }
        tx.commit().await?;
        for why in revoked {
            self.inner.metrics.healing("autonomy_revoked");
            self.say(
                incident.id,
                "Autonomy revoked",
                Severity::Warning,
                chat::cards::inert(&why),
            )
            .await;
        }
        Ok(())
    }

    /// The `auto_after` a playbook action declares, if it does.
    fn auto_after_of(&self, playbook: &str, action: &str) -> Option<crate::domain::AutoAfter> {
        self.inner
            .planner
            .catalog()
            .get(playbook)?
            .actions
            .iter()
            .find(|a| a.id == action)?
            .auto_after
    }
}
