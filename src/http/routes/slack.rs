//! Slack's HTTP endpoints (Events API mode): `POST /slack/events`,
//! `/slack/commands` and `/slack/interactions`. Each limits the body (413),
//! verifies the signing secret within the five-minute window (401), answers
//! the `url_verification` challenge, acknowledges quickly and hands typed
//! events to the [`ChatEventSink`](crate::chat::ChatEventSink). Without a
//! signing secret the routes answer 503 and accept nothing.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::chat::markup::LinkPolicy;
use crate::chat::slack::events::{self, EventsApiRequest};
use crate::chat::{ChatReply, ChatState};
use crate::domain::Platform;
use crate::http::extract::body_or_413;
use crate::http::{ApiError, ErrorCode};

pub fn router() -> Router<ChatState> {
    Router::new()
        .route("/slack/events", post(events_api))
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
}

/// Reads the body and verifies it; the shared first half of every route.
fn authenticate(
    state: &ChatState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    let body = body_or_413(body)?;
    let inbound = state.slack.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "Slack is not configured (SLACK_SIGNING_SECRET)",
        )
    })?;
    inbound
        .verify(
            |name| headers.get(name).and_then(|v| v.to_str().ok()),
            &body,
            state.clock.now(),
        )
        .map_err(|e| {
            tracing::warn!(reason = %e, "Slack request refused.");
            ApiError::new(ErrorCode::BadSignature, format!("slack signature: {e}"))
        })?;
    Ok(body)
}

/// `POST /slack/events`: the Events API.
async fn events_api(
    State(state): State<ChatState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = authenticate(&state, &headers, body)?;
    let bot = state.bot(Platform::Slack);
    match events::parse_events_api(&body, bot.as_ref())? {
        EventsApiRequest::UrlVerification { challenge } => {
            Ok(Json(json!({ "challenge": challenge })).into_response())
        }
        EventsApiRequest::Event(Some(event)) => {
            tracing::debug!(event_id = event.event_id(), "Slack event accepted.");
            state.dispatch_in_background(*event);
            Ok(StatusCode::OK.into_response())
        }
        EventsApiRequest::Event(None) => Ok(StatusCode::OK.into_response()),
    }
}

/// `POST /slack/commands`: slash commands, answered with the sink's reply.
async fn commands(
    State(state): State<ChatState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = authenticate(&state, &headers, body)?;
    let event = events::parse_slash_command(&body)?;
    Ok(match state.dispatch(event).await {
        Some(reply) => Json(command_response(&reply, &state.links)).into_response(),
        None => StatusCode::OK.into_response(),
    })
}

/// The JSON body Slack shows as a slash command's answer.
pub fn command_response(reply: &ChatReply, links: &LinkPolicy) -> serde_json::Value {
    json!({
        "response_type": if reply.ephemeral { "ephemeral" } else { "in_channel" },
        "text": crate::chat::markup::to_slack(&reply.text, links),
    })
}

/// `POST /slack/interactions`: button presses.
async fn interactions(
    State(state): State<ChatState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = authenticate(&state, &headers, body)?;
    for event in events::parse_interaction(&body)? {
        state.dispatch_in_background(event);
    }
    Ok(StatusCode::OK.into_response())
}
