//! Evidence from where CI keeps it, fetched for abnormal runs only (cost
//! and rate limits): the failing CodeBuild build's log from CloudWatch Logs
//! and its CPU and memory from CloudWatch, and the failing job's log of a
//! GitHub Actions run or a GitLab pipeline from their REST APIs
//! ([`ci`], [`github`], [`gitlab`]; retried on 429 and 5xx within the same
//! time bound, read with a cap).
//!
//! [`EvidenceService::gather`] is called by the healing loop when a run
//! opens or extends an incident, before the plan is drafted. It finds the
//! build from the run's log link (the CloudWatch deep link CodeBuild's
//! state-change event carries in `additional-information.logs`, which
//! names the log group and stream; no `BatchGetBuilds` call is needed),
//! reads the tail of its log (one `GetLogEvents`, at most 10,000 events or
//! 1 MB), hides the secrets in the whole of it, keeps a bounded excerpt
//! (the lines around errors and the tail, [`crate::domain::bounded_excerpt`])
//! and stores it on the run, so the plan prompt, the alert thread, `ask`
//! and the web console see it. When the run reported no CPU or memory,
//! the build's peak `CPUUtilizedPercent` and `MemoryUtilized` are read with
//! one `GetMetricData` call ([`cloudwatch::usage`] batches many builds
//! into one call) and stored as its resources. A CodePipeline run usually
//! has them already: [`resources`] holds it before scoring until they
//! arrive, and what a run has is not fetched again.
//!
//! Every fetch is bounded in time (`evidence.timeout_s`), retried by the
//! SDK's own retry policy, and counted in
//! `pipemedic_evidence_fetches_total{source, outcome}`. A missing
//! permission or a deleted log is said once per incident in its thread
//! (the returned notes; that it was said is kept in the audit log as
//! `evidence.unavailable`, so a restart or another replica does not say it
//! again) and never fails the incident; other failures are logged and
//! counted.
//!
//! This module does not decide what is abnormal, does not plan and does
//! not post: the caller says the notes.

pub mod ci;
pub mod ci_http;
#[cfg(feature = "ci-evidence")]
pub mod cloudwatch;
pub mod codebuild;
pub mod github;
pub mod gitlab;
pub mod resources;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aws::iam::{ArnForm, IamGrant};
use crate::aws::AwsSettings;
use crate::config::EvidenceConfig;
use crate::domain::{bounded_excerpt, ResourceMetrics, Run};
use crate::metrics::Metrics;
use crate::redact::{Redactor, Tally};
use crate::store::{Store, StoreError};

pub use ci::CiLogSettings;
pub use codebuild::{codebuild_of, CodeBuildRef};

/// What the evidence calls need: reading a build's log events from its log
/// group, and reading metric data (which IAM does not scope to a resource).
pub const IAM: [IamGrant; 2] = [
    IamGrant::new("logs:GetLogEvents", ArnForm::LogGroup),
    IamGrant::new("cloudwatch:GetMetricData", ArnForm::Any),
];

/// Where a piece of evidence comes from (a label of the fetch metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A CodeBuild build's log in CloudWatch Logs.
    CloudWatchLogs,
    /// A CodeBuild build's resource usage in CloudWatch.
    CloudWatch,
    /// A GitHub Actions job's log.
    GithubActions,
    /// A GitLab job's trace.
    Gitlab,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudWatchLogs => "cloudwatch_logs",
            Self::CloudWatch => "cloudwatch",
            Self::GithubActions => "github_actions",
            Self::Gitlab => "gitlab",
        }
    }
}

/// Why a piece of evidence could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The credentials lack the permission (`AccessDenied*`, HTTP 403).
    #[error("access denied: {0}")]
    Denied(String),
    /// The log (or its group) no longer exists (`ResourceNotFoundException`, HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The service kept throttling through every retry.
    #[error("throttled, after retries: {0}")]
    Throttled(String),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Failed(String),
}

impl FetchError {
    /// The `outcome` label of the fetch metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Denied(_) => "denied",
            Self::NotFound(_) => "not_found",
            Self::Throttled(_) => "throttled",
            Self::TimedOut(_) => "timed_out",
            Self::Failed(_) => "failed",
        }
    }

    /// Whether people should hear of it (it will not fix itself).
    pub fn is_for_people(&self) -> bool {
        matches!(self, Self::Denied(_) | Self::NotFound(_))
    }

    /// Classifies from the HTTP status and the service's error code (pure).
    pub fn from_response(status: u16, code: Option<&str>, described: String) -> Self {
        let code = code.unwrap_or("");
        if status == 403 || code.starts_with("AccessDenied") || code == "UnauthorizedOperation" {
            Self::Denied(described)
        } else if status == 404 || code == "ResourceNotFoundException" {
            Self::NotFound(described)
        } else if crate::aws::classify_response(status, Some(code))
            == crate::aws::ErrorClass::Throttling
        {
            Self::Throttled(described)
        } else {
            Self::Failed(described)
        }
    }
}

/// Notes per incident this process remembers having said (the audit log
/// remembers them all).
const MAX_REMEMBERED: usize = 10_000;

/// The audit kind that records a piece of evidence said to be unavailable
/// in an incident's thread (detail: `{"source": …}`).
pub const UNAVAILABLE_KIND: &str = "evidence.unavailable";

/// Fetches and stores the evidence of abnormal runs; cheap to clone.
#[derive(Clone)]
pub struct EvidenceService {
    inner: Arc<Inner>,
}

struct Inner {
    config: EvidenceConfig,
    store: Store,
    metrics: Arc<Metrics>,
    redactor: Arc<Redactor>,
    #[cfg(feature = "ci-evidence")]
    logs: crate::aws::LazyClient<aws_sdk_cloudwatchlogs::Client>,
    #[cfg(feature = "ci-evidence")]
    cloudwatch: crate::aws::LazyClient<aws_sdk_cloudwatch::Client>,
    ci: CiLogSettings,
    /// `None` when no CI source is on (or the client could not be built).
    ci_client: Option<reqwest::Client>,
    reported: Mutex<HashSet<(i64, Source)>>,
}

impl std::fmt::Debug for EvidenceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceService")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl EvidenceService {
    /// The service without the GitHub Actions and GitLab sources; AWS is
    /// loaded only when a CodeBuild build's evidence is first fetched.
    pub fn new(
        config: EvidenceConfig,
        aws: &AwsSettings,
        store: Store,
        metrics: Arc<Metrics>,
        redactor: Arc<Redactor>,
    ) -> Self {
        Self::with_ci_logs(
            config,
            aws,
            store,
            metrics,
            redactor,
            CiLogSettings::default(),
        )
    }

    /// The service with the GitHub Actions and GitLab log sources that
    /// `ci` has tokens for.
    pub fn with_ci_logs(
        config: EvidenceConfig,
        aws: &AwsSettings,
        store: Store,
        metrics: Arc<Metrics>,
        redactor: Arc<Redactor>,
        ci: CiLogSettings,
    ) -> Self {
        #[cfg(not(feature = "ci-evidence"))]
        let _ = aws;
        let ci_client = if ci.github.is_some() || ci.gitlab.is_some() {
            ci.client()
                .map_err(|e| tracing::warn!(error = %e, "No HTTP client for the CI log sources."))
                .ok()
        } else {
            None
        };
        Self {
            inner: Arc::new(Inner {
                config,
                store,
                metrics,
                redactor,
                #[cfg(feature = "ci-evidence")]
                logs: crate::aws::LazyClient::new(aws, crate::aws::AwsClients::logs),
                #[cfg(feature = "ci-evidence")]
                cloudwatch: crate::aws::LazyClient::new(aws, crate::aws::AwsClients::cloudwatch),
                ci,
                ci_client,
                reported: Mutex::default(),
            }),
        }
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs(self.inner.config.timeout_s.max(1))
    }

    /// Whether `source`'s problem is yet to be said for `incident_id`; if
    /// so, records that it is said. Kept in the audit log
    /// (`evidence.unavailable`, subject `incident/N`), so a restart or
    /// another replica does not say it again; this process also remembers
    /// it, to spare the store the question. A store failure says it (a
    /// note twice is better than none).
    async fn first_report(&self, incident_id: i64, source: Source) -> bool {
        if let Ok(reported) = self.inner.reported.lock() {
            if reported.contains(&(incident_id, source)) {
                return false;
            }
        }
        let remember = || {
            if let Ok(mut reported) = self.inner.reported.lock() {
                if reported.len() >= MAX_REMEMBERED {
                    reported.clear();
                }
                reported.insert((incident_id, source));
            }
        };
        let subject = format!("incident/{incident_id}");
        let said = match self
            .inner
            .store
            .audit_for(std::slice::from_ref(&subject))
            .await
        {
            Ok(entries) => entries
                .iter()
                .any(|e| e.kind == UNAVAILABLE_KIND && e.detail["source"] == source.as_str()),
            Err(e) => {
                tracing::warn!(incident_id, error = %e, "Cannot read whether the missing evidence was said.");
                false
            }
        };
        remember();
        if said {
            return false;
        }
        let recorded = async {
            let tx = self.inner.store.begin_write().await?;
            tx.commit_audited(
                chrono::Utc::now(),
                UNAVAILABLE_KIND,
                &subject,
                "pipemedic",
                &serde_json::json!({ "source": source.as_str() }),
            )
            .await
        };
        if let Err(e) = recorded.await {
            tracing::warn!(incident_id, error = %e, "Cannot record that the missing evidence was said.");
        }
        true
    }

    fn counted<T>(&self, source: Source, result: &Result<T, FetchError>, empty: bool) {
        let outcome = match result {
            Ok(_) if empty => "empty",
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.inner.metrics.evidence_fetch(source.as_str(), outcome);
    }

    /// Fetches the evidence of stored run `run_pk`, which opened or
    /// extended incident `incident_id`, and stores it on the run. Returns
    /// the notes to say in the incident's thread (a missing permission or
    /// a deleted log, once per incident). A run with neither a CodeBuild
    /// build nor a failed GitHub Actions or GitLab job (or whose source has
    /// no token) needs nothing and loads nothing. Errors only when the
    /// store fails.
    #[tracing::instrument(skip(self), fields(source))]
    pub async fn gather(&self, incident_id: i64, run_pk: i64) -> Result<Vec<String>, StoreError> {
        let Some(stored) = self.inner.store.run_by_pk(run_pk).await? else {
            return Ok(Vec::new());
        };
        let mut run = stored.run;
        let Some(build) = codebuild_of(&run) else {
            return self
                .gather_ci(incident_id, run_pk, &stored.source, run)
                .await;
        };
        let mut notes = Vec::new();
        let mut changed = false;
        if self.inner.config.fetch_logs {
            let deadline = self.deadline();
            let result = tokio::time::timeout(deadline, self.fetch_log(&build))
                .await
                .unwrap_or(Err(FetchError::TimedOut(deadline)));
            let empty = result.as_ref().is_ok_and(|l| l.trim().is_empty());
            self.counted(Source::CloudWatchLogs, &result, empty);
            match result {
                Ok(log) if !empty => {
                    self.keep_log(&mut run, &log);
                    changed = true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(incident_id, build = %build.build_id, error = %e, "Cannot read the build's log.");
                    if e.is_for_people()
                        && self.first_report(incident_id, Source::CloudWatchLogs).await
                    {
                        notes.push(format!(
                            "The log of CodeBuild build `{}` could not be read from CloudWatch Logs \
                             (group `{}`, stream `{}`): {e}. The incident goes on without it.",
                            build.build_id, build.log_group, build.log_stream
                        ));
                    }
                }
            }
        }
        let reported = run
            .resources
            .is_some_and(|r| r.cpu_peak_pct.is_some() || r.mem_peak_mb.is_some());
        if self.inner.config.codebuild_usage && !reported {
            let deadline = self.deadline();
            let window = codebuild::window_of(&run);
            let result = tokio::time::timeout(deadline, self.fetch_usage(&build, window))
                .await
                .unwrap_or(Err(FetchError::TimedOut(deadline)));
            let empty = result.as_ref().is_ok_and(|u| u.is_none());
            self.counted(Source::CloudWatch, &result, empty);
            match result {
                Ok(Some(usage)) => {
                    run.resources = Some(usage);
                    changed = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(incident_id, build = %build.build_id, error = %e, "Cannot read the build's resource usage.");
                    if e.is_for_people() && self.first_report(incident_id, Source::CloudWatch).await
                    {
                        notes.push(format!(
                            "The CPU and memory of CodeBuild build `{}` could not be read from CloudWatch: {e}. \
                             The incident goes on without them.",
                            build.build_id
                        ));
                    }
                }
            }
        }
        if changed {
            run.normalise();
            self.inner.store.replace_run_body(run_pk, &run).await?;
            tracing::info!(incident_id, run_id = %run.run_id, build = %build.build_id, "Evidence stored with the run.");
        }
        Ok(notes)
    }

    /// Hides the secrets in the whole of `log` and keeps its bounded
    /// excerpt on `run` (after the excerpt the run came with, if any).
    fn keep_log(&self, run: &mut Run, log: &str) {
        let mut tally = Tally::default();
        let hidden = self.inner.redactor.redact_tally(log, &mut tally);
        for (kind, n) in tally.iter() {
            self.inner.metrics.redactions(kind, n);
        }
        let excerpt = bounded_excerpt(&hidden, self.inner.config.max_excerpt_bytes);
        run.log_excerpt = Some(match run.log_excerpt.take() {
            Some(old) if !old.trim().is_empty() && !excerpt.contains(old.trim()) => {
                format!("{}\n{excerpt}", old.trim_end())
            }
            _ => excerpt,
        });
    }

    #[cfg(feature = "ci-evidence")]
    async fn fetch_log(&self, build: &CodeBuildRef) -> Result<String, FetchError> {
        cloudwatch::log_tail(&self.inner.logs.get().await, build).await
    }

    #[cfg(not(feature = "ci-evidence"))]
    async fn fetch_log(&self, _build: &CodeBuildRef) -> Result<String, FetchError> {
        Err(FetchError::Failed(
            "this build of pipemedic has no CloudWatch Logs client (feature `ci-evidence`)".into(),
        ))
    }

    #[cfg(feature = "ci-evidence")]
    async fn fetch_usage(
        &self,
        build: &CodeBuildRef,
        window: codebuild::Window,
    ) -> Result<Option<ResourceMetrics>, FetchError> {
        let mut usage = cloudwatch::usage(
            &self.inner.cloudwatch.get().await,
            std::slice::from_ref(build),
            window,
        )
        .await?;
        Ok(usage.remove(&build.build_id))
    }

    #[cfg(not(feature = "ci-evidence"))]
    async fn fetch_usage(
        &self,
        _build: &CodeBuildRef,
        _window: codebuild::Window,
    ) -> Result<Option<ResourceMetrics>, FetchError> {
        Err(FetchError::Failed(
            "this build of pipemedic has no CloudWatch client (feature `ci-evidence`)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_from_status_and_code() {
        let e = |s, c: &str| FetchError::from_response(s, Some(c), String::new());
        assert_eq!(e(400, "AccessDeniedException").outcome(), "denied");
        assert_eq!(e(403, "").outcome(), "denied");
        assert_eq!(e(400, "ResourceNotFoundException").outcome(), "not_found");
        assert_eq!(e(400, "ThrottlingException").outcome(), "throttled");
        assert_eq!(e(500, "InternalFailure").outcome(), "failed");
        assert!(e(403, "").is_for_people());
        assert!(!e(400, "ThrottlingException").is_for_people());
    }
}
