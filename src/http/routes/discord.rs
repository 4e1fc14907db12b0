//! Discord's HTTP interactions endpoint, `POST /discord/interactions`:
//! limits the body (413), verifies the Ed25519 signature (401), answers
//! PING with PONG, and hands commands and button presses to the
//! [`ChatEventSink`](crate::chat::ChatEventSink), answering with its reply
//! (or a deferral). Without `DISCORD_PUBLIC_KEY` the route answers 503.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use crate::chat::discord::interactions::{self, InteractionRequest};
use crate::chat::ChatState;
use crate::http::extract::{body_or_413, require_json};
use crate::http::{ApiError, ErrorCode};

pub fn router() -> Router<ChatState> {
    Router::new().route("/discord/interactions", post(interactions_route))
}

async fn interactions_route(
    State(state): State<ChatState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    require_json(&headers)?;
    let body = body_or_413(body)?;
    let inbound = state.discord.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "Discord is not configured (DISCORD_PUBLIC_KEY)",
        )
    })?;
    inbound
        .verify(
            |name| headers.get(name).and_then(|v| v.to_str().ok()),
            &body,
            state.clock.now(),
        )
        .map_err(|e| {
            tracing::warn!(reason = %e, "Discord interaction refused.");
            ApiError::new(ErrorCode::BadSignature, format!("discord signature: {e}"))
        })?;
    let request = interactions::parse(&body, inbound.api_url())?;
    Ok(Json(match request {
        InteractionRequest::Ping => interactions::pong(),
        InteractionRequest::Command(event) => {
            let reply = state.dispatch(*event).await;
            interactions::command_response(reply.as_ref(), &state.links)
        }
        InteractionRequest::Component(event) => {
            let reply = state.dispatch(*event).await;
            interactions::component_response(reply.as_ref(), &state.links)
        }
        InteractionRequest::Other => interactions::component_response(None, &state.links),
    }))
}
