//! Sends labelled histories through a running pipemedic's `POST /v1/runs`,
//! one run per request as a CI system would, and collects the verdicts.
//! Histories of different pipelines go concurrently; the runs of one
//! pipeline go strictly in order. This module only speaks HTTP: starting
//! the application is the caller's business.

use futures::future::try_join_all;
use serde::Deserialize;

use super::corpus::History;
use crate::domain::{Run, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("posting run {run_id} of {pipeline}: {source}")]
    Http {
        pipeline: String,
        run_id: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("run {run_id} of {pipeline} was refused with {status}: {body}")]
    Refused {
        pipeline: String,
        run_id: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("run {run_id} of {pipeline}: the answer has {runs} runs, expected 1")]
    Shape {
        pipeline: String,
        run_id: String,
        runs: usize,
    },
}

impl DriveError {
    /// Worth another try: the server was busy or the connection dropped.
    fn is_transient(&self) -> bool {
        match self {
            Self::Http { source, .. } => source.is_connect() || source.is_timeout(),
            Self::Refused { status, .. } => {
                *status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || *status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Shape { .. } => false,
        }
    }
}

/// Tries per run before a busy server's answer counts as a refusal.
const POST_ATTEMPTS: u32 = 4;
/// The pause before the second try; it grows by this much each time.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Deserialize)]
struct Answer {
    runs: Vec<AnsweredRun>,
}

#[derive(Deserialize)]
struct AnsweredRun {
    #[serde(default)]
    verdict: Option<Verdict>,
}

/// Where to post runs, and with which ingest token.
#[derive(Debug, Clone)]
pub struct Driver {
    http: reqwest::Client,
    runs_url: String,
    token: String,
}

impl Driver {
    /// `base` is the server's root, e.g. `http://127.0.0.1:8080`.
    pub fn new(http: reqwest::Client, base: &str, token: &str) -> Self {
        Self {
            http,
            runs_url: format!("{}/v1/runs", base.trim_end_matches('/')),
            token: token.to_string(),
        }
    }

    /// Posts one run; its verdict, or `None` when the server stored it
    /// without one (it did not come in time). A busy server (429, 503) or a
    /// dropped connection is retried a few times after a short pause, as a
    /// CI system's webhook delivery would: posting a run again is
    /// idempotent, the store keys runs by pipeline and run id.
    pub async fn post_run(&self, run: &Run) -> Result<Option<Verdict>, DriveError> {
        let mut attempt = 1;
        loop {
            match self.post_once(run).await {
                Err(e) if attempt < POST_ATTEMPTS && e.is_transient() => {
                    tokio::time::sleep(RETRY_PAUSE * attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn post_once(&self, run: &Run) -> Result<Option<Verdict>, DriveError> {
        let ids = || (run.pipeline.clone(), run.run_id.clone());
        let res = self
            .http
            .post(&self.runs_url)
            .bearer_auth(&self.token)
            .json(run)
            .send()
            .await
            .map_err(|source| {
                let (pipeline, run_id) = ids();
                DriveError::Http {
                    pipeline,
                    run_id,
                    source,
                }
            })?;
        let status = res.status();
        if !status.is_success() {
            let body = res.text().await.unwrap_or_default();
            let (pipeline, run_id) = ids();
            return Err(DriveError::Refused {
                pipeline,
                run_id,
                status,
                body,
            });
        }
        let answer: Answer = res.json().await.map_err(|source| {
            let (pipeline, run_id) = ids();
            DriveError::Http {
                pipeline,
                run_id,
                source,
            }
        })?;
        match <[AnsweredRun; 1]>::try_from(answer.runs) {
            Ok([one]) => Ok(one.verdict),
            Err(runs) => {
                let (pipeline, run_id) = ids();
                Err(DriveError::Shape {
                    pipeline,
                    run_id,
                    runs: runs.len(),
                })
            }
        }
    }

    /// Posts a history's runs in order; their verdicts, in the same order.
    pub async fn grade_history(
        &self,
        history: &History,
    ) -> Result<Vec<Option<Verdict>>, DriveError> {
        let mut verdicts = Vec::with_capacity(history.runs.len());
        for labelled in &history.runs {
            verdicts.push(self.post_run(&labelled.run).await?);
        }
        Ok(verdicts)
    }

    /// Grades every history (pipelines concurrently); one list of verdicts
    /// per history, in the order given.
    pub async fn grade_all(
        &self,
        histories: &[History],
    ) -> Result<Vec<Vec<Option<Verdict>>>, DriveError> {
        try_join_all(histories.iter().map(|h| self.grade_history(h))).await
    }
}

/// The grade of each verdict (0 for a missing one), for
/// [`super::score::score_history`].
pub fn grades(verdicts: &[Option<Verdict>]) -> Vec<f64> {
    verdicts
        .iter()
        .map(|v| v.as_ref().map_or(0.0, |v| v.grade))
        .collect()
}
