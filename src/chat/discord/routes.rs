//! Discord's HTTP interactions endpoint.

use axum::Router;

use crate::config::DiscordConfig;
use crate::http::AppState;

#[derive(Debug, thiserror::Error)]
#[error("bad key")]
pub struct DiscordKeyError;

#[derive(Clone)]
pub struct DiscordInbound;

impl DiscordInbound {
    pub fn new(_key: &str, _config: &DiscordConfig) -> Result<Self, DiscordKeyError> {
        Ok(Self)
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
}
