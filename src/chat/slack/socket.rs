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
use crate::chat::{ChatError, ChatState};
use crate::config::Secret;
use crate::domain::Platform;

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
            SlackMessageContent::new()
                .with_text(crate::chat::markup::to_slack(&reply.text, &state.links)),
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

#[cfg(test)]
mod tests {
    //! Socket Mode hands slack-morphism's typed events; they must reach the
    //! same translation as the HTTP routes with nothing lost.

    use super::*;
    use crate::chat::ChatEvent;
    use crate::domain::Choice;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/slack/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn push_events_translate_like_the_events_api() {
        for name in [
            "app_mention.json",
            "message_im.json",
            "reaction_added.json",
            "reaction_removed.json",
        ] {
            let body = fixture(name);
            // Slack's app_mention example shows `event_time` in microseconds;
            // live deliveries (and slack-morphism) use seconds.
            let mut value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if let Some(t) = value["event_time"].as_i64().filter(|t| *t > 10_000_000_000) {
                value["event_time"] = (t / 1_000_000).into();
            }
            let typed: SlackPushEvent = serde_json::from_value(value).unwrap();
            let SlackPushEvent::EventCallback(callback) = typed else {
                panic!("{name} is not an event_callback");
            };
            let inner = serde_json::to_value(&callback.event).unwrap();
            let via_socket = events::event_from_callback(&callback.event_id.0, &inner, None);
            let via_http = match events::parse_events_api(&body, None).unwrap() {
                events::EventsApiRequest::Event(event) => event.map(|e| *e),
                other => panic!("{other:?}"),
            };
            assert!(via_socket.is_some(), "{name}");
            assert_eq!(via_socket, via_http, "{name}");
        }
    }

    #[test]
    fn commands_and_block_actions_translate_like_the_http_routes() {
        let form = fixture("slash_command.form");
        let typed: SlackCommandEvent = serde_urlencoded::from_bytes(&form).unwrap();
        let via_socket: events::SlashCommand =
            serde_json::from_value(serde_json::to_value(&typed).unwrap()).unwrap();
        assert_eq!(
            via_socket.into_event(),
            events::parse_slash_command(&form).unwrap()
        );

        let payload: serde_json::Value =
            serde_json::from_slice(&fixture("block_actions.json")).unwrap();
        let typed: SlackInteractionEvent = serde_json::from_value(payload.clone()).unwrap();
        let via_socket =
            events::interaction_events(&serde_json::to_value(&typed).unwrap()).unwrap();
        let via_http = events::interaction_events(&payload).unwrap();
        assert_eq!(via_socket, via_http);
        assert!(matches!(via_socket.as_slice(), [ChatEvent::Button { .. }]));
        assert_eq!(via_socket[0].decision(), Some(Choice::Approve));
    }
}
