//! The failing job's log of a GitHub Actions run, through the REST API
//! (`github.api_url`, version 2022-11-28) with the `GITHUB_TOKEN` secret
//! (a token with `actions: read` on the repository).
//!
//! - The repository comes from the pipeline's name (`owner/repo/workflow`),
//!   the workflow run from the run's id.
//! - The job is the run's failed stage when a `workflow_job` delivery gave
//!   its id ([`crate::domain::StageTiming::job_id`]); otherwise the run's
//!   jobs are listed (`GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=latest&per_page=100`)
//!   and the failed one picked (the run's failed stage by name, else the
//!   first that failed).
//! - `GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs` answers 302
//!   with a short-lived download URL; it is followed without the token
//!   (it is pre-signed and may be on another host) and read as plain text,
//!   keeping only the tail ([`super::ci_http::read_tail`]).
//!
//! A 403 is a missing permission, a 404 a deleted run or job, a 410 a log
//! past its retention. This module never logs or returns the token or the
//! download URL.

use serde::Deserialize;
use tokio::time::Instant;

use super::ci::{failed_job_of, CiJob};
use super::ci_http::{self, CiLimits};
use super::FetchError;
use crate::config::Secret;
use crate::domain::Run;

/// The REST API version spoken.
pub const API_VERSION: &str = "2022-11-28";
const ACCEPT: &str = "application/vnd.github+json";

/// The run a log is fetched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubRunRef {
    pub owner: String,
    pub repo: String,
    pub run_id: String,
}

fn is_github_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}

/// The repository and workflow run of a GitHub Actions run (pure); `None`
/// when the pipeline is not `owner/repo/...` or the run id not a number.
pub fn run_ref(run: &Run) -> Option<GithubRunRef> {
    let mut parts = run.pipeline.splitn(3, '/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    let numeric = !run.run_id.is_empty() && run.run_id.chars().all(|c| c.is_ascii_digit());
    (is_github_name(owner) && is_github_name(repo) && numeric).then(|| GithubRunRef {
        owner: owner.to_string(),
        repo: repo.to_string(),
        run_id: run.run_id.clone(),
    })
}

#[derive(Deserialize)]
struct JobList {
    jobs: Vec<ListedJob>,
}

#[derive(Deserialize)]
struct ListedJob {
    id: u64,
    name: String,
    #[serde(default)]
    conclusion: Option<String>,
}

/// The failed job of a `List jobs for a workflow run` answer (pure): the
/// one named `preferred`, else the first that failed or timed out.
pub fn pick_failed(body: &[u8], preferred: Option<&str>) -> Result<Option<CiJob>, FetchError> {
    let list: JobList = serde_json::from_slice(body).map_err(|e| {
        FetchError::Failed(format!("the run's job list is not GitHub's shape: {e}"))
    })?;
    let failed: Vec<&ListedJob> = list
        .jobs
        .iter()
        .filter(|j| matches!(j.conclusion.as_deref(), Some("failure" | "timed_out")))
        .collect();
    let chosen = failed
        .iter()
        .find(|j| Some(j.name.as_str()) == preferred)
        .or(failed.first());
    Ok(chosen.map(|j| CiJob {
        id: j.id.to_string(),
        name: j.name.clone(),
    }))
}

/// Reads failing job logs from one GitHub API.
#[derive(Clone)]
pub struct GithubLogs {
    pub api_url: String,
    pub token: Secret,
    pub limits: CiLimits,
}

impl GithubLogs {
    fn api(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        client
            .get(format!("{}{path}", self.api_url.trim_end_matches('/')))
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header("X-GitHub-Api-Version", API_VERSION)
    }

    /// The failed job of the run: from its stages, else from GitHub's list
    /// of the run's latest jobs. `None` when no job failed.
    pub async fn failed_job(
        &self,
        client: &reqwest::Client,
        run: &Run,
        target: &GithubRunRef,
        deadline: Instant,
    ) -> Result<Option<CiJob>, FetchError> {
        if let Some(job) = failed_job_of(run) {
            return Ok(Some(job));
        }
        let path = format!(
            "/repos/{}/{}/actions/runs/{}/jobs?filter=latest&per_page=100",
            target.owner, target.repo, target.run_id
        );
        let what = format!(
            "the jobs of run {} of {}/{}",
            target.run_id, target.owner, target.repo
        );
        let response = ci_http::send(&what, deadline, || self.api(client, &path)).await?;
        if !response.status().is_success() {
            return Err(ci_http::failure(&what, response).await);
        }
        let body = ci_http::read_capped(response, self.limits.max_json_bytes).await?;
        pick_failed(&body, run.stage.as_deref())
    }

    /// The tail of job `job`'s log.
    pub async fn log_tail(
        &self,
        client: &reqwest::Client,
        target: &GithubRunRef,
        job: &CiJob,
        deadline: Instant,
    ) -> Result<String, FetchError> {
        let path = format!(
            "/repos/{}/{}/actions/jobs/{}/logs",
            target.owner, target.repo, job.id
        );
        let what = format!("the log of job {} ({})", job.id, job.name);
        let response = ci_http::send(&what, deadline, || self.api(client, &path)).await?;
        let status = response.status();
        if status.is_success() {
            return ci_http::read_tail(response, self.limits).await;
        }
        if !status.is_redirection() {
            return Err(ci_http::failure(&what, response).await);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| FetchError::Failed(format!("{what}: a redirect without a Location")))?;
        let download = reqwest::Url::parse(&location)
            .or_else(|_| response.url().join(&location))
            .map_err(|_| FetchError::Failed(format!("{what}: the download URL is not a URL")))?;
        drop(response);
        let response = ci_http::send(&what, deadline, || client.get(download.clone())).await?;
        if !response.status().is_success() {
            return Err(ci_http::failure(&what, response).await);
        }
        ci_http::read_tail(response, self.limits).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunStatus;

    #[test]
    fn the_run_names_its_repository_and_numeric_run() {
        let run = Run::new(
            "octo-org/octo-repo/CI / test",
            "289782451",
            RunStatus::Failed,
        );
        assert_eq!(
            run_ref(&run),
            Some(GithubRunRef {
                owner: "octo-org".into(),
                repo: "octo-repo".into(),
                run_id: "289782451".into()
            })
        );
        assert_eq!(
            run_ref(&Run::new("checkout-service", "1", RunStatus::Failed)),
            None
        );
        assert_eq!(run_ref(&Run::new("a/b/c", "../1", RunStatus::Failed)), None);
        assert_eq!(run_ref(&Run::new("../b/c", "1", RunStatus::Failed)), None);
    }

    #[test]
    fn the_failed_job_is_picked_from_the_list() {
        let body = br#"{"total_count": 3, "jobs": [
            {"id": 1, "run_id": 5, "name": "build", "status": "completed", "conclusion": "success"},
            {"id": 2, "run_id": 5, "name": "lint", "status": "completed", "conclusion": "failure"},
            {"id": 3, "run_id": 5, "name": "test", "status": "completed", "conclusion": "timed_out"}
        ]}"#;
        assert_eq!(pick_failed(body, None).unwrap().unwrap().id, "2");
        assert_eq!(pick_failed(body, Some("test")).unwrap().unwrap().id, "3");
        let none =
            br#"{"total_count": 1, "jobs": [{"id": 1, "name": "b", "conclusion": "success"}]}"#;
        assert_eq!(pick_failed(none, None).unwrap(), None);
        let err = pick_failed(b"{\"jobs\": 3}", None).unwrap_err();
        assert!(err.to_string().contains("job list"), "{err}");
    }
}
