//! The failing job's trace of a GitLab pipeline, through the REST API
//! (`{gitlab.api_url}/api/v4`) with the `PIPEMEDIC_GITLAB_API_TOKEN`
//! secret in `PRIVATE-TOKEN` (a token with `read_api` on the project; not
//! the webhook token).
//!
//! - The project is the pipeline's name (`group/project`, URL-encoded as
//!   GitLab accepts in place of the numeric id).
//! - The job is the pipeline's failed stage: the Pipeline Hook's `builds`
//!   carry every job's id and status, kept on the run's stages
//!   ([`crate::domain::StageTiming::job_id`]). A run with no failed job id
//!   (a hook without `builds`) has its pipeline's failed jobs listed
//!   instead, the pipeline being the run's id:
//!   `GET /api/v4/projects/{project}/pipelines/{pipeline_id}/jobs?scope[]=failed&per_page=100`
//!   (GitLab leaves retried tries out unless asked, so each job appears
//!   with its latest try). The job picked ([`pick_failed`]) is the one
//!   named by the run's failed stage, else the one that finished first
//!   (as from the stages: the first failure is the likeliest cause, later
//!   ones often follow from it), never one allowed to fail. No failed job
//!   in the list: no trace to read, and nothing is said.
//! - `GET /api/v4/projects/{project}/jobs/{job_id}/trace` answers the log
//!   as plain text, read keeping only its tail
//!   ([`super::ci_http::read_tail`]).
//!
//! A 401 or 403 is a missing permission; a 404 a deleted pipeline, job or
//! erased trace (GitLab also answers 404 for a project the token cannot
//! see).
//! This module never logs or returns the token.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use super::ci::{failed_job_of, CiJob};
use super::ci_http::{self, CiLimits};
use super::FetchError;
use crate::config::Secret;
use crate::domain::Run;

/// The URL-encoded project path of a GitLab run (pure); `None` when the
/// pipeline is no project path.
pub fn project_of(run: &Run) -> Option<String> {
    let path = run.pipeline.trim_matches('/');
    let valid = !path.is_empty()
        && path.contains('/')
        && path.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    valid.then(|| urlencoding::encode(path).into_owned())
}

/// GitLab's job and pipeline ids are numbers.
fn is_numeric_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_digit())
}

/// The failed job the run's stages name with an id (pure).
pub fn staged_failed_job(run: &Run) -> Option<CiJob> {
    failed_job_of(run).filter(|job| is_numeric_id(&job.id))
}

#[derive(Deserialize)]
struct ListedJob {
    id: u64,
    name: String,
    status: String,
    #[serde(default)]
    allow_failure: bool,
    #[serde(default)]
    finished_at: Option<String>,
}

/// The failed job of a `List pipeline jobs` answer (pure): of each job's
/// latest try (highest id), those that failed and were not allowed to; the
/// one named `preferred`, else the one that finished first (one without an
/// end last, ties by id).
pub fn pick_failed(body: &[u8], preferred: Option<&str>) -> Result<Option<CiJob>, FetchError> {
    let jobs: Vec<ListedJob> = serde_json::from_slice(body).map_err(|e| {
        FetchError::Failed(format!(
            "the pipeline's job list is not GitLab's shape: {e}"
        ))
    })?;
    let mut latest: std::collections::BTreeMap<&str, &ListedJob> = Default::default();
    for job in &jobs {
        let entry = latest.entry(job.name.as_str()).or_insert(job);
        if job.id > entry.id {
            *entry = job;
        }
    }
    let finished = |job: &ListedJob| -> Option<DateTime<Utc>> {
        let at = job.finished_at.as_deref()?;
        DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let chosen = latest
        .values()
        .filter(|job| job.status == "failed" && !job.allow_failure)
        .min_by_key(|job| {
            let end = finished(job);
            (
                Some(job.name.as_str()) != preferred,
                end.is_none(),
                end,
                job.id,
            )
        });
    Ok(chosen.map(|job| CiJob {
        id: job.id.to_string(),
        name: job.name.clone(),
    }))
}

/// Reads failing job traces from one GitLab instance.
#[derive(Clone)]
pub struct GitlabLogs {
    /// GitLab's base URL (`https://gitlab.com`); the API is under `/api/v4`.
    pub api_url: String,
    pub token: Secret,
    pub limits: CiLimits,
}

impl GitlabLogs {
    /// The failed job of the run: from its stages, else from GitLab's list
    /// of the pipeline's failed jobs. `None` when no job failed, or the run
    /// names neither a job nor a numeric pipeline.
    pub async fn failed_job(
        &self,
        client: &reqwest::Client,
        run: &Run,
        project: &str,
        deadline: Instant,
    ) -> Result<Option<CiJob>, FetchError> {
        if let Some(job) = staged_failed_job(run) {
            return Ok(Some(job));
        }
        if !is_numeric_id(&run.run_id) {
            return Ok(None);
        }
        let url = format!(
            "{}/api/v4/projects/{project}/pipelines/{}/jobs?scope[]=failed&per_page=100",
            self.api_url.trim_end_matches('/'),
            run.run_id
        );
        let what = format!(
            "the failed jobs of pipeline {} of {}",
            run.run_id, run.pipeline
        );
        let response = self.get(client, &url, &what, deadline).await?;
        let body = ci_http::read_capped(response, self.limits.max_json_bytes).await?;
        pick_failed(&body, run.stage.as_deref())
    }

    /// The tail of the job's trace; `project` is the URL-encoded path.
    pub async fn trace_tail(
        &self,
        client: &reqwest::Client,
        project: &str,
        job: &CiJob,
        deadline: Instant,
    ) -> Result<String, FetchError> {
        let url = format!(
            "{}/api/v4/projects/{project}/jobs/{}/trace",
            self.api_url.trim_end_matches('/'),
            job.id
        );
        let what = format!("the trace of job {} ({})", job.id, job.name);
        let response = self.get(client, &url, &what, deadline).await?;
        ci_http::read_tail(response, self.limits).await
    }

    /// GETs `url` with the API token (`what` names it in errors); a
    /// response that is not a success is the error it stands for.
    async fn get(
        &self,
        client: &reqwest::Client,
        url: &str,
        what: &str,
        deadline: Instant,
    ) -> Result<reqwest::Response, FetchError> {
        let response = ci_http::send(what, deadline, || {
            client.get(url).header("PRIVATE-TOKEN", self.token.expose())
        })
        .await?;
        if !response.status().is_success() {
            return Err(ci_http::failure(what, response).await);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RunStatus, StageTiming};

    #[test]
    fn the_project_path_is_encoded_and_the_failed_job_named() {
        let mut run = Run::new(
            "gitlab-org/sub group.x/gitlab-test",
            "31",
            RunStatus::Failed,
        );
        run.stage = Some("test-build".into());
        run.stages.push(StageTiming {
            name: "test-build".into(),
            status: Some(RunStatus::Failed),
            started_at: None,
            finished_at: None,
            job_id: Some("378".into()),
        });
        assert_eq!(project_of(&run), None, "a space is no project path");
        run.pipeline = "gitlab-org/subgroup/gitlab-test".into();
        assert_eq!(
            project_of(&run).as_deref(),
            Some("gitlab-org%2Fsubgroup%2Fgitlab-test")
        );
        let job = staged_failed_job(&run).unwrap();
        assert_eq!((job.id.as_str(), job.name.as_str()), ("378", "test-build"));
        run.pipeline = "gitlab-org/../x".into();
        assert_eq!(project_of(&run), None);
        run.stages[0].job_id = Some("abc".into());
        assert_eq!(staged_failed_job(&run), None, "GitLab job ids are numbers");
    }

    #[test]
    fn the_failed_job_is_picked_from_the_pipeline_list() {
        // Newest first, as GitLab lists them.
        let body = br#"[
            {"id": 14, "name": "e2e", "stage": "test", "status": "failed", "allow_failure": false,
             "finished_at": "2026-11-20T10:09:00.000Z"},
            {"id": 13, "name": "lint", "stage": "test", "status": "failed", "allow_failure": true,
             "finished_at": "2026-11-20T10:01:00.000Z"},
            {"id": 12, "name": "unit", "stage": "test", "status": "failed", "allow_failure": false,
             "finished_at": "2026-11-20T10:05:00.000Z"},
            {"id": 11, "name": "build", "stage": "build", "status": "success", "allow_failure": false,
             "finished_at": "2026-11-20T10:00:00.000Z"}
        ]"#;
        let picked = pick_failed(body, None).unwrap().unwrap();
        assert_eq!(
            (picked.id.as_str(), picked.name.as_str()),
            ("12", "unit"),
            "the first to finish of those not allowed to fail"
        );
        let picked = pick_failed(body, Some("e2e")).unwrap().unwrap();
        assert_eq!(picked.id, "14", "the run's failed stage");
        assert_eq!(
            pick_failed(body, Some("lint")).unwrap().unwrap().id,
            "12",
            "a job allowed to fail is never the one"
        );

        // A retried job: its latest try decides.
        let retried = br#"[
            {"id": 22, "name": "unit", "status": "success", "finished_at": null},
            {"id": 21, "name": "unit", "status": "failed", "finished_at": "2026-11-20T10:05:00Z"},
            {"id": 20, "name": "e2e", "status": "failed"}
        ]"#;
        assert_eq!(pick_failed(retried, None).unwrap().unwrap().id, "20");

        assert_eq!(pick_failed(b"[]", None).unwrap(), None);
        let err = pick_failed(br#"{"message": "x"}"#, None).unwrap_err();
        assert!(err.to_string().contains("job list"), "{err}");
    }
}
