//! Escalation: when the loop needs a person who is not watching chat, the
//! on-call is paged ([`crate::paging`]): a plan expired without enough
//! approvals (`paging.on_expiry`), or fixes did not heal the incident
//! `paging.not_healed_times` times. The page is resolved when the incident
//! is resolved or dismissed (by healing at once, and by the sweep for
//! incidents people closed). This file decides when; the paging service
//! queues, delivers and says it in the thread.

use serde_json::json;

use super::*;

impl HealingService {
    /// A plan of `incident_id` expired without enough approvals.
    pub(super) async fn page_on_expiry(&self, incident_id: i64) -> Result<(), HealingError> {
        if !self.inner.paging.settings().on_expiry {
            return Ok(());
        }
        let Some(incident) = self.inner.store.incident(incident_id).await? else {
            return Ok(());
        };
        if matches!(
            incident.status,
            IncidentStatus::Resolved | IncidentStatus::Dismissed
        ) {
            return Ok(());
        }
        self.inner
            .paging
            .trigger(
                &incident,
                "the remediation plan expired without enough approvals",
            )
            .await?;
        Ok(())
    }

    /// A fix did not heal `incident` (shown by `run_id`): recorded in the
    /// audit log, and the on-call is paged once that has happened
    /// `paging.not_healed_times` times for the incident.
    pub(super) async fn page_if_not_healed(
        &self,
        incident: &Incident,
        run_id: &str,
    ) -> Result<(), HealingError> {
        let now = self.inner.clock.now();
        let subject = format!("incident/{}", incident.id);
        let tx = self.inner.store.begin_write().await?;
        tx.commit_audited(
            now,
            "healing.not_healed",
            &subject,
            ACTOR,
            &json!({"run_id": run_id}),
        )
        .await?;
        let times = self.inner.paging.settings().not_healed_times;
        if times == 0 {
            return Ok(());
        }
        let seen = self
            .inner
            .store
            .audit_for(&[subject])
            .await?
            .iter()
            .filter(|e| e.kind == "healing.not_healed")
            .count();
        if seen >= usize::try_from(times).unwrap_or(usize::MAX) {
            let reason = format!("fixes did not heal the pipeline {seen} times");
            self.inner.paging.trigger(incident, &reason).await?;
        }
        Ok(())
    }

    /// The incident closed: resolve its page, if it was paged.
    pub(super) async fn unpage(&self, incident_id: i64, status: IncidentStatus) {
        let reason = match status {
            IncidentStatus::Resolved => "the incident is resolved",
            _ => "the incident was dismissed",
        };
        if let Err(e) = self.inner.paging.resolve(incident_id, reason).await {
            tracing::warn!(incident_id, error = %e, "Cannot queue the resolve of the page; the next sweep retries.");
        }
    }
}
