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
use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use super::interactions::{self, InteractionError, InteractionRequest};
use super::verify::{self, BadPublicKey};
use crate::config::DiscordConfig;
use crate::http::{ApiError, AppState, ErrorCode};
use crate::ingest::routes::body_or_413;

/// What the Discord route needs to authenticate and translate requests.
#[derive(Clone)]
pub struct DiscordInbound {
    key: VerifyingKey,
    api_url: String,
}

impl DiscordInbound {
    /// `public_key_hex` is the application's public key as Discord shows it.
    pub fn new(public_key_hex: &str, config: &DiscordConfig) -> Result<Self, BadPublicKey> {
        Ok(Self {
            key: verify::public_key(public_key_hex)?,
            api_url: config.api_url.clone(),
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/discord/interactions", post(interactions_route))
}

async fn interactions_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body_or_413(body)?;
    let inbound = state.chat.discord.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "Discord is not configured (DISCORD_PUBLIC_KEY)",
        )
    })?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verify::verify(
        &inbound.key,
        header("x-signature-timestamp"),
        header("x-signature-ed25519"),
        &body,
        state.chat.clock.now(),
    )
    .map_err(|e| {
        tracing::warn!(reason = %e, "Discord interaction refused.");
        ApiError::new(ErrorCode::BadSignature, format!("discord signature: {e}"))
    })?;
    let request = interactions::parse(&body, &inbound.api_url).map_err(|e| match e {
        InteractionError::Json(e) => ApiError::malformed(&e),
        InteractionError::Shape(m) => ApiError::new(ErrorCode::InvalidShape, m),
    })?;
    Ok(Json(match request {
        InteractionRequest::Ping => interactions::pong(),
        InteractionRequest::Command(event) => {
            let reply = state.chat.dispatch(*event).await;
            interactions::command_response(reply.as_ref())
        }
        InteractionRequest::Component(event) => {
            let reply = state.chat.dispatch(*event).await;
            interactions::component_response(reply.as_ref())
        }
        InteractionRequest::Other => interactions::component_response(None),
    }))
}
