//! Slack Socket Mode: receives events, slash commands and interactions over
//! slack-morphism's WebSocket listener with the app token
//! (`SLACK_APP_TOKEN`), so no public URL is needed. Each delivery goes
//! through the same translation as the HTTP routes ([`super::events`]) and
//! on to the same [`ChatState`] sink.

use std::sync::Arc;

use slack_morphism::prelude::*;
use tokio_util::sync::CancellationToken;

use super::events;
use super::{classify, SlackChat, SlackHttpClient};
use crate::chat::{ChatError, ChatState, Platform};
use crate::config::Secret;

type Client = Arc<SlackHttpClient>;
type CallbackResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn chat_state(states: &SlackClientEventsUserState) -> Option<ChatState> {
    states.read().await.get_user_state::<ChatState>().cloned()
}

async fn on_push_event(
    event: SlackPushEventCallback,
    _client: Client,
    states: SlackClientEventsUserState,
) -> CallbackResult<()> {
    let Some(state) = chat_state(&states).await else {
        return Ok(());
    };
    let inner = serde_json::to_value(&event.event)?;
    let bot = state.bot(Platform::Slack);
    if let Some(chat_event) = events::event_from_callback(&event.event_id.0, &inner, bot.as_ref()) {
        state.dispatch_in_background(chat_event);
    }
    Ok(())
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Client,
    states: SlackClientEventsUserState,
) -> CallbackResult<SlackCommandEventResponse> {
    let empty = SlackCommandEventResponse::new(SlackMessageContent::new());
    let Some(state) = chat_state(&states).await else {
        return Ok(empty);
    };
    let command: events::SlashCommand = serde_json::from_value(serde_json::to_value(&event)?)?;
    Ok(match state.dispatch(command.into_event()).await {
        Some(reply) => SlackCommandEventResponse::new(
            SlackMessageContent::new().with_text(crate::chat::markdown_to_mrkdwn(&reply.text)),
        )
        .with_response_type(if reply.ephemeral {
            SlackMessageResponseType::Ephemeral
        } else {
            SlackMessageResponseType::InChannel
        }),
        None => empty,
    })
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Client,
    states: SlackClientEventsUserState,
) -> CallbackResult<()> {
    let Some(state) = chat_state(&states).await else {
        return Ok(());
    };
    let payload = serde_json::to_value(&event)?;
    for chat_event in events::interaction_events(&payload)? {
        state.dispatch_in_background(chat_event);
    }
    Ok(())
}

/// Listens on Socket Mode until `shutdown` is cancelled, handing events to
/// `state`'s sink. Reconnection is slack-morphism's; an error here means
/// the app token was refused or Slack could not be reached at all.
pub async fn run(
    chat: &SlackChat,
    app_token: &Secret,
    state: ChatState,
    shutdown: CancellationToken,
) -> Result<(), ChatError> {
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_push_events(on_push_event)
        .with_command_events(on_command)
        .with_interaction_events(on_interaction);
    let environment =
        Arc::new(SlackClientEventsListenerEnvironment::new(chat.client()).with_user_state(state));
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new(),
        environment,
        callbacks,
    );
    let token = SlackApiToken::new(SlackApiTokenValue(app_token.expose().to_string()));
    listener.listen_for(&token).await.map_err(classify)?;
    listener.start().await;
    tracing::info!(platform = "slack", "Socket Mode connected.");
    shutdown.cancelled().await;
    listener.shutdown().await;
    Ok(())
}
