//! The offer: a plan drafted for an incident, opened for approval and
//! posted in the thread with its Approve / Reject buttons; the steps'
//! outcomes reported back to the thread.

use super::*;

impl HealingService {
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
                    invalid_plan_text(drafted.backend, errors),
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
        let card = plan_card(incident_id, &validated, &opened)
            .links(self.playbook_links(&incident, &validated));
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
            self.spawn_execution(incident_id, opened.id, true);
        } else {
            self.status(incident_id, IncidentStatus::AwaitingApproval, None)
                .await?;
        }
        Ok(())
    }

    /// The links of the playbooks the plan's steps come from, each
    /// playbook once, rendered with the incident's facts.
    fn playbook_links(
        &self,
        incident: &Incident,
        validated: &crate::plan::ValidatedPlan,
    ) -> Vec<chat::ChatLink> {
        let catalog = self.inner.planner.catalog();
        let mut seen = std::collections::BTreeSet::new();
        validated
            .steps
            .iter()
            .filter(|step| seen.insert(step.playbook.clone()))
            .filter_map(|step| catalog.get(&step.playbook))
            .flat_map(|playbook| chat::links::render(&playbook.links, incident))
            .collect()
    }

    pub(super) async fn no_plan(
        &self,
        incident_id: i64,
        e: &PlanServiceError,
    ) -> Result<(), HealingError> {
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
    pub(super) async fn report_steps(
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
}
