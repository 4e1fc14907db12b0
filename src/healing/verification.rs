//! Verification: what each handled run means for its pipeline's incident.
//! An abnormal run opens the loop (a plan); the next run after a fix
//! decides between resolved (normal) and not healed (a new plan); a
//! successful normal run while nothing runs resolves the incident as
//! recovered.

use super::*;

impl HealingService {
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
        if let Handled::Opened(id) | Handled::Updated(id) = run.handled {
            self.gather_evidence(id, scored.run_pk).await;
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

    /// Fetches and stores the evidence of an abnormal run before it is
    /// planned for; says in the thread what could not be read (once per
    /// incident). Never fails the incident.
    async fn gather_evidence(&self, incident_id: i64, run_pk: i64) {
        let Some(evidence) = &self.inner.evidence else {
            return;
        };
        match evidence.gather(incident_id, run_pk).await {
            Ok(notes) => {
                for note in notes {
                    self.say(incident_id, "Evidence not read", Severity::Warning, note)
                        .await;
                }
            }
            Err(e) => {
                self.inner.metrics.background_error("evidence");
                tracing::warn!(incident_id, error = %e, "Cannot store the run's evidence.");
            }
        }
    }

    pub(super) async fn incident_of_request(
        &self,
        request_id: i64,
    ) -> Result<Option<i64>, HealingError> {
        Ok(self
            .inner
            .store
            .approval_request(request_id)
            .await?
            .and_then(|r| r.incident_ref.parse().ok()))
    }

    /// A run with a normal verdict: it verifies a fix, or shows the
    /// pipeline recovered while a plan waited.
    pub(super) async fn on_normal_run(&self, scored: &ScoredRun) -> Result<(), HealingError> {
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
                self.record_verification(&incident, run_id, true, Some(minutes))
                    .await?;
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
    pub(super) async fn recovery_minutes(
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
    pub(super) async fn not_healed(
        &self,
        incident: &Incident,
        scored: &ScoredRun,
        how: &str,
    ) -> Result<(), HealingError> {
        self.inner.metrics.healing("not_healed");
        self.record_verification(incident, &scored.run.run_id, false, None)
            .await?;
        let note = format!(
            "run {} {how} after the fix: it did not heal the pipeline",
            scored.run.run_id
        );
        self.status(incident.id, IncidentStatus::Open, Some(&note))
            .await?;
        self.page_if_not_healed(incident, &scored.run.run_id)
            .await?;
        self.plan(incident.id, Some(scored)).await
    }
}
