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
//!   has no trace to read.
//! - `GET /api/v4/projects/{project}/jobs/{job_id}/trace` answers the log
//!   as plain text, read keeping only its tail
//!   ([`super::ci_http::read_tail`]).
//!
//! A 401 or 403 is a missing permission; a 404 a deleted job or erased
//! trace (GitLab also answers 404 for a project the token cannot see).
//! This module never logs or returns the token.

use tokio::time::Instant;

use super::ci::{failed_job_of, CiJob};
use super::ci_http::{self, CiLimits};
use super::FetchError;
use crate::config::Secret;
use crate::domain::Run;

/// The project and failed job of a GitLab run (pure); `None` when the run
/// names no failed job with an id or the pipeline is no project path.
pub fn job_ref(run: &Run) -> Option<(String, CiJob)> {
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
    if !valid {
        return None;
    }
    let job = failed_job_of(run)?;
    job.id
        .chars()
        .all(|c| c.is_ascii_digit())
        .then(|| (urlencoding::encode(path).into_owned(), job))
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
        let response = ci_http::send(&what, deadline, || {
            client
                .get(&url)
                .header("PRIVATE-TOKEN", self.token.expose())
        })
        .await?;
        if !response.status().is_success() {
            return Err(ci_http::failure(&what, response).await);
        }
        ci_http::read_tail(response, self.limits).await
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
        assert_eq!(job_ref(&run), None, "a space is no project path");
        run.pipeline = "gitlab-org/subgroup/gitlab-test".into();
        let (project, job) = job_ref(&run).unwrap();
        assert_eq!(project, "gitlab-org%2Fsubgroup%2Fgitlab-test");
        assert_eq!((job.id.as_str(), job.name.as_str()), ("378", "test-build"));
        run.pipeline = "gitlab-org/../x".into();
        assert_eq!(job_ref(&run), None);
        run.pipeline = "gitlab-org/gitlab-test".into();
        run.stages[0].job_id = Some("abc".into());
        assert_eq!(job_ref(&run), None, "GitLab job ids are numbers");
    }
}
