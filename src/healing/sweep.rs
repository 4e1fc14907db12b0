//! The sweep: expiry of plans nobody approved in time, delayed steps that
//! are due, and recovery of what a stopped process left (steps in flight,
//! decisions not acted on, incidents stuck between two steps).

use super::*;

impl HealingService {
    /// Reminds about plans unapproved at half their expiry, expires plans
    /// nobody approved in time (paging the on-call when configured) and
    /// starts delayed steps that are due (in tasks of their own), saying so
    /// in their threads.
    pub async fn sweep(&self) -> Result<(), HealingError> {
        self.recover().await?;
        self.remind_due().await?;
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
            self.page_on_expiry(incident_id).await?;
        }
        // Paged incidents people closed in chat or through the API.
        self.inner.paging.resolve_closed().await?;
        // Delayed steps that are due, and requests approved just before
        // their process stopped: each in a task of its own.
        for id in self.inner.store.approved_request_ids().await? {
            if self.is_running(id) {
                continue;
            }
            let Some(incident_id) = self.incident_of_request(id).await? else {
                continue;
            };
            self.spawn_execution(incident_id, id, false);
        }
        self.reconcile().await
    }

    /// Reports a finished request's steps in its incident's thread and
    /// moves the incident on, if it is still waiting on that request
    /// (remediating, or awaiting approval when its process stopped between
    /// the approving vote and saying so).
    pub(super) async fn report_finished(
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
    pub(super) async fn reconcile(&self) -> Result<(), HealingError> {
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
