//! The SageMaker backend of detection: [`SagemakerScorer`] scores shingled
//! rows with a SageMaker built-in Random Cut Forest endpoint through
//! `InvokeEndpoint` (`text/csv` rows in, `{"scores":[{"score":…}]}` out).
//!
//! It owns the call and its failure policy: bounded exponential backoff on
//! throttling, 5xx and timeouts (classified by [`crate::aws::classify`]; the
//! SDK's own retries are turned off so there is one policy), a per-call
//! timeout, and a circuit: after `detector.sagemaker_max_failures` failed
//! calls in a row, [`SagemakerScorer::available`] says "no" for
//! `detector.sagemaker_retry_after_s`, then one call is tried again. The
//! circuit logs a warning when it opens and a note when it closes.
//!
//! It only produces scores. Thresholding, learning and the fall back to the
//! embedded forest belong to the caller ([`super::service`]); this module
//! must not grade runs or touch the store.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sagemakerruntime::config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::primitives::Blob;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::aws::iam::{ArnForm, IamGrant};
use crate::aws::{classify, describe, ErrorClass};
use crate::clock::Clock;
use crate::config::DetectorConfig;

/// What scoring needs from IAM: `InvokeEndpoint` on the configured
/// endpoint (`detector.sagemaker_endpoint`).
pub const IAM: &[IamGrant] = &[IamGrant::new(
    "sagemaker:InvokeEndpoint",
    ArnForm::SageMakerEndpoint,
)];

/// Why scoring through SageMaker failed.
#[derive(Debug, thiserror::Error)]
pub enum SagemakerError {
    /// The service (or the model behind it) answered with an error, or the
    /// request never got an answer.
    #[error("SageMaker InvokeEndpoint failed ({}): {message}", class.as_str())]
    Call { class: ErrorClass, message: String },
    /// One attempt took longer than the per-call timeout.
    #[error("SageMaker InvokeEndpoint timed out after {0:?}")]
    Timeout(Duration),
    /// The endpoint answered 200 with a body that is not one score per row.
    #[error("SageMaker answered with an unusable body: {0}")]
    Malformed(String),
}

impl SagemakerError {
    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Call { class, .. } => class.is_retryable(),
            Self::Timeout(_) => true,
            Self::Malformed(_) => false,
        }
    }
}

/// How the scorer calls its endpoint and when it gives up on it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorerSettings {
    /// Endpoint name (`detector.sagemaker_endpoint`).
    pub endpoint: String,
    /// Failed calls in a row that open the circuit.
    pub max_failures: u32,
    /// How long the circuit stays open.
    pub retry_after: Duration,
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Longest one attempt may take.
    pub call_timeout: Duration,
}

impl ScorerSettings {
    /// Settings from `[detector]`; the first retry waits `initial_backoff`.
    pub fn from_config(config: &DetectorConfig, initial_backoff: Duration) -> Self {
        Self {
            endpoint: config.sagemaker_endpoint.clone(),
            max_failures: config.sagemaker_max_failures.max(1),
            retry_after: Duration::from_secs(config.sagemaker_retry_after_s),
            attempts: 3,
            initial_backoff,
            max_backoff: Duration::from_secs(5),
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// Consecutive failures and, once they reach the limit, until when the
/// endpoint is rested.
#[derive(Debug, Default)]
struct Circuit {
    failures: u32,
    open_until: Option<DateTime<Utc>>,
}

/// Scores shingled rows with a SageMaker RCF endpoint; shared by every
/// detection shard.
pub struct SagemakerScorer {
    client: aws_sdk_sagemakerruntime::Client,
    settings: ScorerSettings,
    clock: Arc<dyn Clock>,
    circuit: Mutex<Circuit>,
}

impl fmt::Debug for SagemakerScorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagemakerScorer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One CSV line per row, values in full precision; non-finite values are
/// sent as 0 (as the embedded forest reads them).
pub fn csv_rows(rows: &[Vec<f64>]) -> String {
    let mut out = String::new();
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let v = if v.is_finite() { *v } else { 0.0 };
            out.push_str(&v.to_string());
        }
        out.push('\n');
    }
    out
}

#[derive(Deserialize)]
struct ScoresBody {
    scores: Vec<ScoreEntry>,
}

#[derive(Deserialize)]
struct ScoreEntry {
    score: f64,
}

/// Reads an RCF `application/json` answer: exactly `expected` finite scores.
pub fn parse_scores(body: &[u8], expected: usize) -> Result<Vec<f64>, SagemakerError> {
    let parsed: ScoresBody = serde_json::from_slice(body)
        .map_err(|e| SagemakerError::Malformed(format!("not an RCF JSON answer: {e}")))?;
    if parsed.scores.len() != expected {
        return Err(SagemakerError::Malformed(format!(
            "{} scores for {expected} rows",
            parsed.scores.len()
        )));
    }
    let scores: Vec<f64> = parsed.scores.into_iter().map(|s| s.score).collect();
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(SagemakerError::Malformed("a score is not finite".into()));
    }
    Ok(scores)
}

impl SagemakerScorer {
    /// A scorer over `client` (its endpoint override and credentials are
    /// kept; its own retries are replaced by this scorer's policy).
    pub fn new(
        client: &aws_sdk_sagemakerruntime::Client,
        settings: ScorerSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let config = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            client: aws_sdk_sagemakerruntime::Client::from_conf(config),
            settings,
            clock,
            circuit: Mutex::new(Circuit::default()),
        }
    }

    pub fn settings(&self) -> &ScorerSettings {
        &self.settings
    }

    fn circuit(&self) -> std::sync::MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False while the circuit is open (the caller should score with the
    /// embedded forest); true again once the cool-down has passed.
    pub fn available(&self) -> bool {
        match self.circuit().open_until {
            Some(until) => self.clock.now() >= until,
            None => true,
        }
    }

    /// Scores `rows` (one score per row, in order), retrying throttling and
    /// transient failures with backoff. Every call that ends in an error
    /// counts towards opening the circuit; a success closes it. Calls are
    /// read-only on the endpoint, so retrying is always safe.
    #[tracing::instrument(skip_all, fields(endpoint = %self.settings.endpoint, rows = rows.len()))]
    pub async fn score(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, SagemakerError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.score_with_retries(rows).await;
        match &result {
            Ok(_) => self.record_success(),
            Err(e) => self.record_failure(e),
        }
        result
    }

    async fn score_with_retries(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, SagemakerError> {
        let body = csv_rows(rows);
        let mut delay = self.settings.initial_backoff;
        let mut attempt = 1;
        loop {
            match self.invoke(&body, rows.len()).await {
                Ok(scores) => return Ok(scores),
                Err(e) if e.is_retryable() && attempt < self.settings.attempts.max(1) => {
                    tracing::debug!(attempt, error = %e, "SageMaker call failed; retrying.");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.settings.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn invoke(&self, body: &str, rows: usize) -> Result<Vec<f64>, SagemakerError> {
        let call = self
            .client
            .invoke_endpoint()
            .endpoint_name(&self.settings.endpoint)
            .content_type("text/csv")
            .accept("application/json")
            .body(Blob::new(body.as_bytes().to_vec()))
            .send();
        let output = match tokio::time::timeout(self.settings.call_timeout, call).await {
            Err(_) => return Err(SagemakerError::Timeout(self.settings.call_timeout)),
            Ok(Err(e)) => {
                return Err(SagemakerError::Call {
                    class: classify(&e),
                    message: describe(&e),
                })
            }
            Ok(Ok(output)) => output,
        };
        let answer = output.body().map(|b| b.as_ref()).unwrap_or_default();
        parse_scores(answer, rows)
    }

    fn record_success(&self) {
        let mut circuit = self.circuit();
        if circuit.open_until.take().is_some() {
            tracing::info!(
                endpoint = %self.settings.endpoint,
                "SageMaker answers again; scoring with it."
            );
        }
        circuit.failures = 0;
    }

    fn record_failure(&self, error: &SagemakerError) {
        let now = self.clock.now();
        let mut circuit = self.circuit();
        circuit.failures = circuit.failures.saturating_add(1);
        if circuit.failures < self.settings.max_failures {
            return;
        }
        let was_open = circuit.open_until.is_some();
        let retry_after = chrono::Duration::from_std(self.settings.retry_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(300));
        circuit.open_until = Some(now + retry_after);
        if !was_open {
            tracing::warn!(
                endpoint = %self.settings.endpoint,
                failures = circuit.failures,
                retry_after_s = self.settings.retry_after.as_secs(),
                error = %error,
                "SageMaker keeps failing; scoring with the embedded forest until it is tried again."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_one_csv_line_each() {
        let csv = csv_rows(&[vec![1.0, -0.25, 3.5e-7], vec![0.0, f64::NAN, 12.0]]);
        assert_eq!(csv, "1,-0.25,0.00000035\n0,0,12\n");
        let back: Vec<f64> = csv
            .lines()
            .next()
            .unwrap()
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(back, [1.0, -0.25, 3.5e-7]);
        assert_eq!(csv_rows(&[]), "");
    }

    #[test]
    fn rcf_json_answers_are_read_and_checked() {
        let body = br#"{"scores":[{"score":0.02},{"score":3.25}]}"#;
        assert_eq!(parse_scores(body, 2).unwrap(), [0.02, 3.25]);
        for (bad, rows) in [
            (&br#"{"scores":[{"score":0.02}]}"#[..], 2),
            (br#"{"scores":[{"score":1.0}"#, 1),
            (br#"{"scores":[{"score":"high"}]}"#, 1),
            (br#"{"predictions":[{"score":1.0}]}"#, 1),
            (b"1.0\n", 1),
            (b"", 1),
        ] {
            let e = parse_scores(bad, rows).unwrap_err();
            assert!(matches!(e, SagemakerError::Malformed(_)), "{e}");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn throttling_and_timeouts_are_retried_model_errors_are_not() {
        let throttled = SagemakerError::Call {
            class: ErrorClass::Throttling,
            message: "ThrottlingException (HTTP 400)".into(),
        };
        assert!(throttled.is_retryable());
        assert!(SagemakerError::Timeout(Duration::from_secs(5)).is_retryable());
        let model = SagemakerError::Call {
            class: ErrorClass::Permanent,
            message: "ModelError (HTTP 424)".into(),
        };
        assert!(!model.is_retryable());
    }

    #[test]
    fn settings_come_from_the_detector_config() {
        let config = DetectorConfig {
            sagemaker_endpoint: "rcf".into(),
            sagemaker_retry_after_s: 7,
            ..DetectorConfig::default()
        };
        let s = ScorerSettings::from_config(&config, Duration::from_millis(10));
        assert_eq!(s.endpoint, "rcf");
        assert_eq!(s.max_failures, 3);
        assert_eq!(s.retry_after, Duration::from_secs(7));
        assert_eq!(s.initial_backoff, Duration::from_millis(10));
    }
}
