//! HTTP handlers of the provider webhooks: GitHub (`X-Hub-Signature-256`),
//! GitLab (`X-Gitlab-Token`) and AWS EventBridge API destinations (shared
//! secret in `X-Pipemedic-Secret`). Each verifies its credential in
//! constant time before reading the payload, parses with its pure adapter,
//! and stores through the ingest service. Redeliveries are answered like the
//! first delivery and store nothing; unknown event types are acknowledged
//! and counted. All three take JSON only (415 for another Content-Type; a
//! GitHub hook must be set to `application/json`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};

use crate::domain::RunSource;
use crate::http::extract::{body_or_413, require_json, require_token};
use crate::http::{ApiError, AppState, ErrorCode};
use crate::ingest::{aws, delivery_id, github, gitlab, signature, IngestReport};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks/github", post(github_webhook))
        .route("/v1/webhooks/gitlab", post(gitlab_webhook))
        .route("/v1/webhooks/aws", post(aws_webhook))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn answer(report: IngestReport) -> impl IntoResponse {
    let status = if report.duplicate_delivery {
        "duplicate"
    } else if report.runs.is_empty() {
        "ignored"
    } else {
        "stored"
    };
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": status, "runs": report.runs})),
    )
}

/// `POST /v1/webhooks/github`: `workflow_run` and `workflow_job` events.
async fn github_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require_json(&headers)?;
    let body = body_or_413(body)?;
    if let Some(secret) = &state.secrets.github_webhook_secret {
        signature::verify_github_signature(
            secret.expose().as_bytes(),
            &body,
            header(&headers, "x-hub-signature-256"),
        )
        .map_err(|e| ApiError::new(ErrorCode::BadSignature, format!("X-Hub-Signature-256 {e}")))?;
    }
    let event_name = header(&headers, "x-github-event").unwrap_or_default();
    let event = github::parse_github(event_name, &body)?;
    let delivery = delivery_id("X-GitHub-Delivery", header(&headers, "x-github-delivery"))?;
    let Some(update) = event.into_run() else {
        state.metrics.event_ignored("github", event_name);
        return Ok(answer(IngestReport {
            duplicate_delivery: false,
            runs: Vec::new(),
        }));
    };
    let report = state
        .ingest
        .accept_updates(RunSource::Github, delivery, vec![update])
        .await?;
    Ok(answer(report))
}

/// `POST /v1/webhooks/gitlab`: pipeline and job hooks.
async fn gitlab_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require_token(
        state.secrets.gitlab_token.as_ref(),
        header(&headers, "x-gitlab-token"),
        "X-Gitlab-Token",
    )?;
    require_json(&headers)?;
    let body = body_or_413(body)?;
    let event = gitlab::parse_gitlab(&body)?;
    let delivery = match header(&headers, "x-gitlab-event-uuid") {
        Some(uuid) => delivery_id("X-Gitlab-Event-UUID", Some(uuid))?,
        None => delivery_id("Idempotency-Key", header(&headers, "idempotency-key"))?,
    };
    let Some(update) = event.into_run() else {
        state.metrics.event_ignored(
            "gitlab",
            header(&headers, "x-gitlab-event").unwrap_or("unknown"),
        );
        return Ok(answer(IngestReport {
            duplicate_delivery: false,
            runs: Vec::new(),
        }));
    };
    let report = state
        .ingest
        .accept_updates(RunSource::Gitlab, delivery, vec![update])
        .await?;
    Ok(answer(report))
}

/// `POST /v1/webhooks/aws`: CodePipeline and CodeBuild EventBridge events.
async fn aws_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require_token(
        state.secrets.aws_webhook_secret.as_ref(),
        header(&headers, "x-pipemedic-secret"),
        "X-Pipemedic-Secret",
    )?;
    require_json(&headers)?;
    let body = body_or_413(body)?;
    let event = aws::parse_eventbridge(&body)?;
    let report = state.ingest.accept_aws_event(&event).await?;
    Ok(answer(report))
}
