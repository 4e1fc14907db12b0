//! The plan service: drafts a plan for an anomaly (later, an incident) with
//! the configured backend, stores it and audits it.
//!
//! It builds [`IncidentFacts`] from the store (the anomaly's latest run, its
//! verdict, the pipeline's last normal run), renders the prompt, asks the
//! [`BedrockPlanner`] or runs the [`offline_plan`]ner, and writes the plan
//! (valid or not) with an audit record in one transaction. It never offers
//! a plan for approval and never runs a step: an invalid plan is stored
//! with its errors so it can be reported, and that is all.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::bedrock::{Attempt, BedrockPlanner, BedrockSettings, PlanOutcome};
use super::offline::offline_plan;
use super::prompt::{PromptError, PromptSet};
use super::types::{IncidentFacts, LastNormalRun};
use crate::bedrock::{BedrockError, TokenUsage};
use crate::clock::Clock;
use crate::config::{Config, PlannerBackend};
use crate::domain::{Incident, RunSource};
use crate::metrics::Metrics;
use crate::playbooks::{Catalog, CiSystem, LoadOptions, PlaybookError};
use crate::redact::{RedactError, Redactor};
use crate::store::{NewPlan, Store, StoreError};

/// Why no plan could be drafted or stored.
#[derive(Debug, thiserror::Error)]
pub enum PlanServiceError {
    #[error("no anomaly {0}")]
    UnknownAnomaly(i64),
    #[error("incident #{0} has no anomaly to plan for")]
    NoAnomaly(i64),
    #[error("the playbooks are invalid:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Playbooks(Vec<PlaybookError>),
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    Redact(#[from] RedactError),
    #[error(transparent)]
    Model(#[from] BedrockError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which planner drafts plans.
#[derive(Debug, Clone)]
pub enum PlannerChoice {
    /// Rule-based, no model.
    Offline,
    Bedrock(BedrockPlanner),
}

impl PlannerChoice {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Bedrock(_) => "bedrock",
        }
    }
}

/// A drafted plan, stored or not.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftedPlan {
    /// The stored plan's id (`None` for a dry run).
    pub id: Option<i64>,
    pub anomaly_id: i64,
    /// `offline` or `bedrock`.
    pub backend: &'static str,
    pub facts: IncidentFacts,
    pub outcome: PlanOutcome,
    pub usage: TokenUsage,
    pub attempts: Vec<Attempt>,
}

/// What a plan's audit entries are about: its incident, else its anomaly.
fn subject(anomaly_id: i64, incident_id: Option<i64>) -> String {
    match incident_id {
        Some(id) => format!("incident/{id}"),
        None => format!("anomaly/{anomaly_id}"),
    }
}

/// Drafts, stores and audits plans.
#[derive(Clone)]
pub struct PlanService {
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    catalog: Arc<Catalog>,
    prompts: Arc<PromptSet>,
    redactor: Arc<Redactor>,
    planner: PlannerChoice,
    generic_ci: CiSystem,
    /// `planner.offline_fallback`.
    offline_fallback: bool,
}

impl std::fmt::Debug for PlanService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanService")
            .field("planner", &self.planner)
            .field("playbooks", &self.catalog.len())
            .finish()
    }
}

/// A configured directory (relative to the working directory); empty
/// means none.
fn configured_dir(raw: &str) -> Option<PathBuf> {
    Some(raw.trim())
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
}

impl PlanService {
    /// Builds the service from the configuration: playbooks and prompts from
    /// their directories (the bundled ones where absent), the redaction
    /// patterns, and the backend. `bedrock` is needed only when
    /// `planner.backend = "bedrock"`.
    pub fn from_config(
        config: &Config,
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        bedrock: Option<aws_sdk_bedrockruntime::Client>,
    ) -> Result<Self, PlanServiceError> {
        let planner_config = &config.planner;
        let catalog = Catalog::load_or_bundled(
            configured_dir(&planner_config.playbooks_dir).as_deref(),
            &LoadOptions {
                http_allowed_hosts: config.remediate.http_allowlist.clone(),
            },
        )
        .map_err(PlanServiceError::Playbooks)?;
        let prompts = PromptSet::load(configured_dir(&planner_config.prompts_dir).as_deref())?;
        let redactor = Redactor::new(&planner_config.redact_patterns)?;
        let planner = match (planner_config.backend, bedrock) {
            (PlannerBackend::Bedrock, Some(client)) => PlannerChoice::Bedrock(BedrockPlanner::new(
                client,
                BedrockSettings::from_config(planner_config),
                metrics.clone(),
            )),
            _ => PlannerChoice::Offline,
        };
        Ok(Self {
            store,
            metrics,
            clock,
            catalog: Arc::new(catalog),
            prompts: Arc::new(prompts),
            redactor: Arc::new(redactor),
            planner,
            generic_ci: planner_config.generic_ci,
            offline_fallback: planner_config.offline_fallback,
        })
    }

    pub fn planner(&self) -> &PlannerChoice {
        &self.planner
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The CI system of a run from `source`.
    fn ci_of(&self, source: RunSource) -> CiSystem {
        match source {
            RunSource::Aws | RunSource::CodepipelinePoll => CiSystem::Codepipeline,
            RunSource::Github => CiSystem::GithubActions,
            RunSource::Gitlab => CiSystem::Gitlab,
            RunSource::Generic | RunSource::Backfill => self.generic_ci,
        }
    }

    /// What the planner knows about an anomaly: its latest run, that run's
    /// verdict, and the pipeline's last normal run before it.
    pub async fn facts_for_anomaly(
        &self,
        anomaly_id: i64,
    ) -> Result<IncidentFacts, PlanServiceError> {
        let anomaly = self
            .store
            .anomaly(anomaly_id)
            .await?
            .ok_or(PlanServiceError::UnknownAnomaly(anomaly_id))?;
        let stored = self
            .store
            .anomaly_last_run(anomaly_id)
            .await?
            .ok_or(PlanServiceError::UnknownAnomaly(anomaly_id))?;
        let verdict = self
            .store
            .verdict_of(stored.pk)
            .await?
            .unwrap_or_else(|| anomaly.latest.clone());
        self.facts_for_run(anomaly_id.to_string(), stored, verdict, anomaly.opened_at)
            .await
    }

    /// What the planner knows about one stored run and its verdict, in
    /// the name of `incident_id`; `fallback_time` stands in for a run
    /// without times.
    async fn facts_for_run(
        &self,
        incident_id: String,
        stored: crate::store::StoredRun,
        verdict: crate::domain::Verdict,
        fallback_time: chrono::DateTime<chrono::Utc>,
    ) -> Result<IncidentFacts, PlanServiceError> {
        let run = stored.run;
        let source = RunSource::parse(&stored.source).unwrap_or(RunSource::Generic);
        let ci = self.ci_of(source);
        let before = run.event_time().unwrap_or(fallback_time);
        let last_normal = self
            .store
            .last_normal_run(&run.pipeline, before)
            .await?
            .map(|s| LastNormalRun {
                run_id: s.run.run_id.clone(),
                commit: s.run.commit.clone(),
                finished_at: s.run.finished_at,
            });
        // CodePipeline and GitHub Actions address an execution by the id
        // pipemedic stores as the run id; so does GitLab's pipeline id.
        let execution_id = (ci != CiSystem::Other).then(|| run.run_id.clone());
        Ok(IncidentFacts {
            incident_id,
            pipeline: run.pipeline.clone(),
            run_id: run.run_id.clone(),
            status: run.status,
            stage: run.stage.clone(),
            commit: run.commit.clone(),
            commit_author: run.commit_author.clone(),
            attempt: run.attempt,
            execution_id,
            ci,
            source,
            metrics: verdict.deviations.clone(),
            grade: verdict.grade,
            log_excerpt: run.log_excerpt.clone(),
            log_url: run.log_url.clone(),
            run_url: run.url.clone(),
            last_normal,
            track_record: self.store.track_records(Some(&run.pipeline)).await?,
        })
    }

    /// Drafts a plan for an anomaly with the configured backend. With
    /// `store`, the plan (valid or invalid) is written with an audit record
    /// (`plan.drafted` or `plan.invalid`); a dry run writes nothing. Each
    /// call drafts anew (a redraft adds a plan; earlier ones stay).
    #[tracing::instrument(name = "plan.draft", skip(self), fields(backend = self.planner.name()))]
    pub async fn draft_for_anomaly(
        &self,
        anomaly_id: i64,
        store: bool,
    ) -> Result<DraftedPlan, PlanServiceError> {
        let facts = self.facts_for_anomaly(anomaly_id).await?;
        self.draft(facts, anomaly_id, None, store).await
    }

    /// Drafts and stores a plan for an incident about one of its runs
    /// (`run_pk`, judged `verdict`: its latest abnormal run, or the run
    /// that showed a fix did not heal); the plan speaks of the incident's
    /// number and, with `store`, is stored and audited under it (a dry run
    /// writes nothing).
    #[tracing::instrument(name = "plan.draft_incident", skip_all, fields(incident = incident.id, run_pk, backend = self.planner.name()))]
    pub async fn draft_for_incident(
        &self,
        incident: &Incident,
        run_pk: i64,
        verdict: &crate::domain::Verdict,
        store: bool,
    ) -> Result<DraftedPlan, PlanServiceError> {
        let anomaly_id = incident
            .anomaly_id
            .ok_or(PlanServiceError::NoAnomaly(incident.id))?;
        let stored = self
            .store
            .run_by_pk(run_pk)
            .await?
            .ok_or(PlanServiceError::NoAnomaly(incident.id))?;
        let facts = self
            .facts_for_run(
                incident.id.to_string(),
                stored,
                verdict.clone(),
                incident.updated_at,
            )
            .await?;
        self.draft(facts, anomaly_id, Some(incident.id), store)
            .await
    }

    async fn draft(
        &self,
        facts: IncidentFacts,
        anomaly_id: i64,
        incident_id: Option<i64>,
        store: bool,
    ) -> Result<DraftedPlan, PlanServiceError> {
        let mut backend = self.planner.name();
        let drafted = match &self.planner {
            PlannerChoice::Offline => self.offline_draft(&facts),
            PlannerChoice::Bedrock(planner) => {
                let prompt = self
                    .prompts
                    .render_plan(&facts, &self.catalog, &self.redactor)?;
                match planner
                    .draft(&prompt, &self.catalog, &facts, &self.redactor)
                    .await
                {
                    Ok(draft) if draft.outcome.is_valid() || !self.offline_fallback => {
                        (draft.outcome, draft.usage, draft.attempts)
                    }
                    Ok(draft) => {
                        // The invalid answer stays on record; the plan
                        // offered is the rule-based one.
                        self.metrics.plan_drafted(backend, "invalid");
                        if store {
                            self.save(
                                anomaly_id,
                                incident_id,
                                backend,
                                &draft.outcome,
                                draft.usage,
                            )
                            .await?;
                        }
                        tracing::warn!(anomaly_id, "The model's plan stayed invalid; drafting with the rule-based planner (planner.offline_fallback).");
                        backend = PlannerChoice::Offline.name();
                        self.offline_draft(&facts)
                    }
                    Err(e) => {
                        self.metrics.plan_drafted(backend, "error");
                        if store {
                            self.audit_failure(anomaly_id, incident_id, &e).await?;
                        }
                        if !self.offline_fallback {
                            return Err(e.into());
                        }
                        tracing::warn!(anomaly_id, error = %e, "Bedrock could not draft a plan; drafting with the rule-based planner (planner.offline_fallback).");
                        backend = PlannerChoice::Offline.name();
                        self.offline_draft(&facts)
                    }
                }
            }
        };
        let (outcome, usage, attempts) = drafted;
        self.metrics.plan_drafted(
            backend,
            if outcome.is_valid() {
                "valid"
            } else {
                "invalid"
            },
        );
        let id = if store {
            Some(
                self.save(anomaly_id, incident_id, backend, &outcome, usage)
                    .await?,
            )
        } else {
            None
        };
        Ok(DraftedPlan {
            id,
            anomaly_id,
            backend,
            facts,
            outcome,
            usage,
            attempts,
        })
    }

    /// The rule-based planner's draft for `facts`.
    fn offline_draft(&self, facts: &IncidentFacts) -> (PlanOutcome, TokenUsage, Vec<Attempt>) {
        match offline_plan(&self.catalog, facts) {
            Ok(offline) => (
                PlanOutcome::Valid {
                    plan: offline.plan,
                    validated: offline.validated,
                },
                TokenUsage::default(),
                vec![Attempt {
                    usage: TokenUsage::default(),
                    errors: Vec::new(),
                }],
            ),
            Err(errors) => {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                (
                    PlanOutcome::Invalid {
                        errors: errors.clone(),
                        raw: None,
                    },
                    TokenUsage::default(),
                    vec![Attempt {
                        usage: TokenUsage::default(),
                        errors,
                    }],
                )
            }
        }
    }

    async fn save(
        &self,
        anomaly_id: i64,
        incident_id: Option<i64>,
        backend: &'static str,
        outcome: &PlanOutcome,
        usage: TokenUsage,
    ) -> Result<i64, PlanServiceError> {
        let new = match outcome {
            PlanOutcome::Valid { plan, validated } => NewPlan {
                anomaly_id,
                incident_id,
                backend: backend.to_string(),
                plan: serde_json::to_value(plan).ok(),
                validated: serde_json::to_value(validated).ok(),
                errors: Vec::new(),
                input_tokens: usage.input,
                output_tokens: usage.output,
            },
            PlanOutcome::Invalid { errors, raw } => NewPlan {
                anomaly_id,
                incident_id,
                backend: backend.to_string(),
                plan: raw.clone(),
                validated: None,
                errors: errors.clone(),
                input_tokens: usage.input,
                output_tokens: usage.output,
            },
        };
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let id = tx.insert_plan(&new, now).await?;
        let (kind, detail) = match outcome {
            PlanOutcome::Valid { validated, .. } => (
                "plan.drafted",
                json!({
                    "plan_id": id, "anomaly_id": anomaly_id, "backend": backend,
                    "steps": validated.steps.iter()
                        .map(|s| format!("{}/{}", s.playbook, s.action)).collect::<Vec<_>>(),
                    "risk": validated.risk, "rule_based": validated.rule_based,
                    "input_tokens": usage.input, "output_tokens": usage.output,
                }),
            ),
            PlanOutcome::Invalid { errors, .. } => (
                "plan.invalid",
                json!({
                    "plan_id": id, "anomaly_id": anomaly_id, "backend": backend,
                    "errors": errors,
                    "input_tokens": usage.input, "output_tokens": usage.output,
                }),
            ),
        };
        tx.commit_audited(
            now,
            kind,
            &subject(anomaly_id, incident_id),
            "pipemedic",
            &detail,
        )
        .await?;
        tracing::info!(plan = id, anomaly = anomaly_id, kind, "Plan stored.");
        Ok(id)
    }

    async fn audit_failure(
        &self,
        anomaly_id: i64,
        incident_id: Option<i64>,
        e: &BedrockError,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        tx.audit(
            now,
            "plan.failed",
            &subject(anomaly_id, incident_id),
            "pipemedic",
            &json!({"anomaly_id": anomaly_id, "backend": self.planner.name(),
                    "error": e.to_string(), "retryable": e.is_retryable()}),
        )
        .await?;
        tx.commit().await
    }
}
