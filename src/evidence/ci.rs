//! The failing job's log of an abnormal run that came from a GitHub
//! Actions or GitLab webhook: which job failed (pure, from the run's
//! stages; a run whose stages name none has its jobs listed by
//! [`super::github`] or [`super::gitlab`]), which of the two APIs to ask,
//! and the settings both need.
//!
//! A source without its token is off: [`CiLogSettings::describe_off`]
//! names it once at start, and its runs are skipped without a request.
//! The requests live in [`super::github`] and [`super::gitlab`]; this
//! module holds the CI half of [`EvidenceService::gather`]: one bounded
//! fetch per abnormal run, counted under `github_actions` or `gitlab`, the
//! excerpt kept as for CodeBuild, and a missing permission or a deleted or
//! expired log said once per incident.

use std::time::Duration;

use tokio::time::Instant;

use super::ci_http::CiLimits;
use super::github::GithubLogs;
use super::gitlab::GitlabLogs;
use super::{EvidenceService, FetchError, Source};
use crate::config::{Config, Secrets};
use crate::domain::{Run, RunSource, RunStatus};
use crate::store::StoreError;

/// One job of a CI run, by the CI system's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiJob {
    pub id: String,
    pub name: String,
}

/// The failed job the run's stages name with an id (pure): the run's
/// failed stage, else the failed stage that finished first.
pub fn failed_job_of(run: &Run) -> Option<CiJob> {
    let mut failed: Vec<_> = run
        .stages
        .iter()
        .filter(|s| s.status == Some(RunStatus::Failed))
        .filter_map(|s| Some((s, s.job_id.as_deref()?)))
        .collect();
    failed.sort_by_key(|(s, _)| {
        (
            run.stage.as_deref() != Some(s.name.as_str()),
            s.finished_at.is_none(),
            s.finished_at,
        )
    });
    failed.first().map(|(s, id)| CiJob {
        id: id.to_string(),
        name: s.name.clone(),
    })
}

/// Where and how the GitHub Actions and GitLab logs are read; a source is
/// `None` when its token is not set.
#[derive(Clone, Default)]
pub struct CiLogSettings {
    pub github: Option<GithubLogs>,
    pub gitlab: Option<GitlabLogs>,
    /// Time allowed to connect to either API.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for CiLogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CiLogSettings")
            .field("github", &self.github.as_ref().map(|g| &g.api_url))
            .field("gitlab", &self.gitlab.as_ref().map(|g| &g.api_url))
            .finish_non_exhaustive()
    }
}

impl CiLogSettings {
    /// `github.api_url` with `GITHUB_TOKEN`, `gitlab.api_url` with
    /// `PIPEMEDIC_GITLAB_API_TOKEN`, and the default read limits.
    pub fn from_config(config: &Config, secrets: &Secrets) -> Self {
        let limits = CiLimits::default();
        Self {
            github: secrets.github_token.clone().map(|token| GithubLogs {
                api_url: config.github.api_url.clone(),
                token,
                limits,
            }),
            gitlab: secrets.gitlab_api_token.clone().map(|token| GitlabLogs {
                api_url: config.gitlab.api_url.clone(),
                token,
                limits,
            }),
            connect_timeout: Duration::from_secs(config.evidence.timeout_s.clamp(1, 10)),
        }
    }

    /// What is off for want of a token, to say once at start.
    pub fn describe_off(&self) -> Vec<&'static str> {
        let mut off = Vec::new();
        if self.github.is_none() {
            off.push("GitHub Actions job logs are not fetched: GITHUB_TOKEN is not set (it needs actions: read).");
        }
        if self.gitlab.is_none() {
            off.push("GitLab job traces are not fetched: PIPEMEDIC_GITLAB_API_TOKEN is not set (it needs read_api).");
        }
        off
    }

    /// The HTTP client both sources use: no redirects followed on its own
    /// (GitHub's download URL is followed by hand, without the token).
    pub fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pipemedic/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout.max(Duration::from_secs(1)))
            .build()
    }
}

impl EvidenceService {
    /// The CI half of [`EvidenceService::gather`]: the failing job's log of
    /// a run from a GitHub or GitLab webhook (`source` is the stored run's).
    pub(super) async fn gather_ci(
        &self,
        incident_id: i64,
        run_pk: i64,
        source: &str,
        mut run: Run,
    ) -> Result<Vec<String>, StoreError> {
        let mut notes = Vec::new();
        let Some(client) = self.inner.ci_client.as_ref() else {
            return Ok(notes);
        };
        if !self.inner.config.fetch_logs || run.status == RunStatus::Succeeded {
            return Ok(notes);
        }
        let started = Instant::now();
        let deadline = self.deadline();
        let (label, result) = match RunSource::parse(source) {
            Some(RunSource::Github) => {
                let (Some(github), Some(target)) =
                    (self.inner.ci.github.as_ref(), super::github::run_ref(&run))
                else {
                    return Ok(notes);
                };
                let fetch = async {
                    let Some(job) = github
                        .failed_job(client, &run, &target, started + deadline)
                        .await?
                    else {
                        return Ok(None);
                    };
                    let log = github
                        .log_tail(client, &target, &job, started + deadline)
                        .await?;
                    Ok(Some((job, log)))
                };
                let result = tokio::time::timeout(deadline, fetch)
                    .await
                    .unwrap_or(Err(FetchError::TimedOut(deadline)));
                (Source::GithubActions, result)
            }
            Some(RunSource::Gitlab) => {
                let (Some(gitlab), Some(project)) = (
                    self.inner.ci.gitlab.as_ref(),
                    super::gitlab::project_of(&run),
                ) else {
                    return Ok(notes);
                };
                let fetch = async {
                    let Some(job) = gitlab
                        .failed_job(client, &run, &project, started + deadline)
                        .await?
                    else {
                        return Ok(None);
                    };
                    let log = gitlab
                        .trace_tail(client, &project, &job, started + deadline)
                        .await?;
                    Ok(Some((job, log)))
                };
                let result = tokio::time::timeout(deadline, fetch)
                    .await
                    .unwrap_or(Err(FetchError::TimedOut(deadline)));
                (Source::Gitlab, result)
            }
            _ => return Ok(notes),
        };
        let empty = result
            .as_ref()
            .is_ok_and(|found| found.as_ref().is_none_or(|(_, log)| log.trim().is_empty()));
        self.counted(label, &result, empty);
        match result {
            Ok(Some((job, log))) if !empty => {
                self.keep_log(&mut run, &log);
                run.normalise();
                self.inner.store.replace_run_body(run_pk, &run).await?;
                tracing::info!(incident_id, run_id = %run.run_id, job = %job.id, source = label.as_str(), "Evidence stored with the run.");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(incident_id, run_id = %run.run_id, source = label.as_str(), error = %e, "Cannot read the failing job's log.");
                if e.is_for_people() && self.first_report(incident_id, label).await {
                    let (system, grant) = match label {
                        Source::Gitlab => ("GitLab", "`read_api` for PIPEMEDIC_GITLAB_API_TOKEN"),
                        _ => ("GitHub Actions", "`actions: read` for GITHUB_TOKEN"),
                    };
                    notes.push(format!(
                        "The failing job's log of {system} run `{}` of `{}` could not be read: {e}. \
                         The incident goes on without it (a missing permission needs {grant}; \
                         an expired or deleted log cannot be read again).",
                        run.run_id, run.pipeline
                    ));
                }
            }
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StageTiming;

    fn stage(name: &str, status: RunStatus, job: Option<&str>, end: &str) -> StageTiming {
        StageTiming {
            name: name.into(),
            status: Some(status),
            started_at: None,
            finished_at: Some(end.parse().unwrap()),
            job_id: job.map(str::to_string),
        }
    }

    #[test]
    fn the_failed_stage_with_an_id_is_the_job() {
        let mut run = Run::new("o/r/w", "1", RunStatus::Failed);
        run.stages = vec![
            stage(
                "build",
                RunStatus::Succeeded,
                Some("10"),
                "2026-11-20T10:01:00Z",
            ),
            stage(
                "lint",
                RunStatus::Failed,
                Some("11"),
                "2026-11-20T10:02:00Z",
            ),
            stage(
                "unit",
                RunStatus::Failed,
                Some("12"),
                "2026-11-20T10:03:00Z",
            ),
            stage("e2e", RunStatus::Failed, None, "2026-11-20T10:00:30Z"),
        ];
        assert_eq!(failed_job_of(&run).unwrap().id, "11", "first to fail");
        run.stage = Some("unit".into());
        assert_eq!(
            failed_job_of(&run).unwrap().id,
            "12",
            "the run's failed stage"
        );
        run.stages
            .retain(|s| s.status != Some(RunStatus::Failed) || s.job_id.is_none());
        assert_eq!(failed_job_of(&run), None);
    }

    #[test]
    fn a_source_without_its_token_is_off_and_says_so() {
        let config = Config::default();
        let off = CiLogSettings::from_config(&config, &Secrets::default());
        assert!(off.github.is_none() && off.gitlab.is_none());
        assert_eq!(off.describe_off().len(), 2);
        let secrets = Secrets {
            github_token: Some(crate::config::Secret::new("ghs_example")),
            ..Secrets::default()
        };
        let on = CiLogSettings::from_config(&config, &secrets);
        assert_eq!(
            on.github.as_ref().unwrap().api_url,
            "https://api.github.com"
        );
        assert_eq!(on.describe_off(), [off.describe_off()[1]]);
        assert!(!format!("{on:?}").contains("ghs_example"));
    }
}
