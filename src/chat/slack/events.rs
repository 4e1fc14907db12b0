//! Slack inbound payloads → [`ChatEvent`]s: Events API envelopes
//! (`url_verification`, `event_callback` with `app_mention`, direct
//! `message`s, `reaction_added` / `reaction_removed`), slash command forms
//! and `block_actions` interactions. Pure translation on the documented wire
//! format; HTTP routes and Socket Mode both use it. The bot's own messages
//! and reactions are dropped here so no service ever sees them.

use serde::Deserialize;
use serde_json::Value;

use crate::chat::{BotIdentity, ChatEvent};

use crate::domain::{MessageRef, Platform};

#[derive(Debug, thiserror::Error)]
pub enum SlackPayloadError {
    #[error("body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("form body is malformed: {0}")]
    Form(#[from] serde_urlencoded::de::Error),
    #[error("not a Slack payload pipemedic understands: {0}")]
    Shape(String),
}

/// What an Events API request asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsApiRequest {
    /// Answer with the challenge (the endpoint is being set up).
    UrlVerification { challenge: String },
    /// An event; `None` when it is not one pipemedic acts on.
    Event(Option<Box<ChatEvent>>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Envelope {
    UrlVerification {
        challenge: String,
    },
    EventCallback {
        event_id: String,
        event: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct InnerEvent {
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    user: Option<String>,
    bot_id: Option<String>,
    channel: Option<String>,
    channel_type: Option<String>,
    #[serde(default)]
    text: String,
    ts: Option<String>,
    thread_ts: Option<String>,
    reaction: Option<String>,
    item: Option<ReactionItem>,
}

#[derive(Deserialize)]
struct ReactionItem {
    #[serde(rename = "type")]
    kind: String,
    channel: Option<String>,
    ts: Option<String>,
}

/// Parses an Events API request body.
pub fn parse_events_api(
    body: &[u8],
    bot: Option<&BotIdentity>,
) -> Result<EventsApiRequest, SlackPayloadError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            SlackPayloadError::Shape(e.to_string())
        } else {
            SlackPayloadError::Json(e)
        }
    })?;
    Ok(match envelope {
        Envelope::UrlVerification { challenge } => EventsApiRequest::UrlVerification { challenge },
        Envelope::EventCallback { event_id, event } => {
            EventsApiRequest::Event(event_from_callback(&event_id, &event, bot).map(Box::new))
        }
        Envelope::Other => EventsApiRequest::Event(None),
    })
}

/// Translates the inner `event` of an `event_callback` (also what Socket
/// Mode delivers). `None` for events pipemedic ignores, including the
/// bot's own.
pub fn event_from_callback(
    event_id: &str,
    event: &Value,
    bot: Option<&BotIdentity>,
) -> Option<ChatEvent> {
    let inner: InnerEvent = match serde_json::from_value(event.clone()) {
        Ok(inner) => inner,
        Err(e) => {
            tracing::debug!(event_id, error = %e, "Slack event with an unexpected shape ignored.");
            return None;
        }
    };
    if is_own(bot, inner.user.as_deref(), inner.bot_id.as_deref()) {
        return None;
    }
    let platform = Platform::Slack;
    let event_id = event_id.to_string();
    match inner.kind.as_str() {
        "app_mention" => {
            let channel = inner.channel?;
            let ts = inner.ts?;
            Some(ChatEvent::Mention {
                platform,
                event_id,
                user: inner.user?,
                text: strip_mentions(&inner.text, bot),
                thread: Some(MessageRef {
                    platform,
                    channel: channel.clone(),
                    ts_or_id: ts,
                    thread: inner.thread_ts,
                }),
                channel,
            })
        }
        "message"
            if inner.channel_type.as_deref() == Some("im")
                && inner.subtype.is_none()
                && inner.bot_id.is_none() =>
        {
            let channel = inner.channel?;
            Some(ChatEvent::DirectMessage {
                platform,
                event_id,
                user: inner.user?,
                text: strip_mentions(&inner.text, bot),
                thread: inner.thread_ts.map(|root| MessageRef {
                    platform,
                    channel: channel.clone(),
                    ts_or_id: root.clone(),
                    thread: Some(root),
                }),
                channel,
            })
        }
        kind @ ("reaction_added" | "reaction_removed") => {
            let item = inner.item?;
            if item.kind != "message" {
                return None;
            }
            Some(ChatEvent::Reaction {
                platform,
                event_id,
                channel: item.channel?,
                message_ts: item.ts?,
                user: inner.user?,
                emoji: inner.reaction?,
                added: kind == "reaction_added",
            })
        }
        _ => None,
    }
}

fn is_own(bot: Option<&BotIdentity>, user: Option<&str>, bot_id: Option<&str>) -> bool {
    let Some(bot) = bot else { return false };
    user == Some(bot.user_id.as_str()) || (bot_id.is_some() && bot_id == bot.bot_id.as_deref())
}

/// Removes the bot's `<@U…>` mention (or, when the bot is unknown, a leading
/// mention) and trims.
fn strip_mentions(text: &str, bot: Option<&BotIdentity>) -> String {
    let stripped = match bot {
        Some(bot) => text.replace(&format!("<@{}>", bot.user_id), ""),
        None => {
            let t = text.trim_start();
            match (t.starts_with("<@"), t.find('>')) {
                (true, Some(end)) => t[end + 1..].to_string(),
                _ => t.to_string(),
            }
        }
    };
    stripped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The fields of a slash command request pipemedic uses.
#[derive(Debug, Clone, Deserialize)]
pub struct SlashCommand {
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    pub channel_id: String,
    pub response_url: Option<String>,
    pub trigger_id: String,
}

impl SlashCommand {
    pub fn into_event(self) -> ChatEvent {
        ChatEvent::Command {
            platform: Platform::Slack,
            event_id: self.trigger_id,
            channel: self.channel_id,
            user: self.user_id,
            command: self.command,
            text: self.text.trim().to_string(),
            thread: None,
            response_url: self.response_url.filter(|u| !u.is_empty()),
        }
    }
}

/// Parses a slash command (`application/x-www-form-urlencoded`).
pub fn parse_slash_command(body: &[u8]) -> Result<ChatEvent, SlackPayloadError> {
    let command: SlashCommand = serde_urlencoded::from_bytes(body)?;
    Ok(command.into_event())
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

/// Parses an interaction request (a form with a JSON `payload`).
pub fn parse_interaction(body: &[u8]) -> Result<Vec<ChatEvent>, SlackPayloadError> {
    let form: InteractionForm = serde_urlencoded::from_bytes(body)?;
    let payload: Value = serde_json::from_str(&form.payload)?;
    interaction_events(&payload)
}

#[derive(Deserialize)]
struct BlockActions {
    user: IdOnly,
    trigger_id: Option<String>,
    container: Option<Container>,
    channel: Option<IdOnly>,
    message: Option<MessageTs>,
    #[serde(default)]
    actions: Vec<Action>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct Container {
    message_ts: Option<String>,
    channel_id: Option<String>,
    thread_ts: Option<String>,
}

#[derive(Deserialize)]
struct MessageTs {
    ts: Option<String>,
    thread_ts: Option<String>,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    value: Option<String>,
    action_ts: Option<String>,
}

/// Translates an interaction payload: one [`ChatEvent::Button`] per action
/// of a `block_actions` payload on a message; other interaction types give
/// no events.
pub fn interaction_events(payload: &Value) -> Result<Vec<ChatEvent>, SlackPayloadError> {
    let kind = payload.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "block_actions" {
        return Ok(Vec::new());
    }
    let actions: BlockActions = serde_json::from_value(payload.clone())
        .map_err(|e| SlackPayloadError::Shape(e.to_string()))?;
    let container = actions.container.as_ref();
    let channel = container
        .and_then(|c| c.channel_id.clone())
        .or_else(|| actions.channel.as_ref().map(|c| c.id.clone()))
        .ok_or_else(|| SlackPayloadError::Shape("block_actions without a channel".into()))?;
    let ts = container
        .and_then(|c| c.message_ts.clone())
        .or_else(|| actions.message.as_ref().and_then(|m| m.ts.clone()))
        .ok_or_else(|| SlackPayloadError::Shape("block_actions without a message".into()))?;
    let thread = container
        .and_then(|c| c.thread_ts.clone())
        .or_else(|| actions.message.as_ref().and_then(|m| m.thread_ts.clone()));
    let message = MessageRef {
        platform: Platform::Slack,
        channel: channel.clone(),
        ts_or_id: ts.clone(),
        thread,
    };
    Ok(actions
        .actions
        .iter()
        .map(|action| ChatEvent::Button {
            platform: Platform::Slack,
            event_id: format!(
                "{}:{}",
                actions.trigger_id.as_deref().unwrap_or(&ts),
                action.action_ts.as_deref().unwrap_or(&action.action_id)
            ),
            channel: channel.clone(),
            message: message.clone(),
            user: actions.user.id.clone(),
            action_id: action.action_id.clone(),
            value: action.value.clone().unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bot() -> BotIdentity {
        BotIdentity {
            platform: Platform::Slack,
            user_id: "U0LAN0Z89".into(),
            bot_id: Some("B0BOT".into()),
            name: "pipemedic".into(),
        }
    }

    #[test]
    fn own_messages_and_reactions_are_ignored() {
        let own_reaction = json!({"type": "reaction_added", "user": "U0LAN0Z89", "reaction": "white_check_mark",
            "item": {"type": "message", "channel": "C1", "ts": "1.2"}, "event_ts": "1.3"});
        assert_eq!(
            event_from_callback("Ev1", &own_reaction, Some(&bot())),
            None
        );
        let own_dm = json!({"type": "message", "channel": "D1", "channel_type": "im", "bot_id": "B0BOT",
            "text": "hi", "ts": "1.2"});
        assert_eq!(event_from_callback("Ev2", &own_dm, Some(&bot())), None);
        assert!(event_from_callback("Ev3", &own_reaction, None).is_some());
    }

    #[test]
    fn the_bot_mention_is_removed_from_the_text() {
        assert_eq!(
            strip_mentions("<@U0LAN0Z89>  health   checkout", Some(&bot())),
            "health checkout"
        );
        assert_eq!(strip_mentions("<@UX> health", None), "health");
    }
}
