//! Discord interactions → [`ChatEvent`]s, with serenity's own model types:
//! PING (type 1), APPLICATION_COMMAND (type 2, `/medic` and its options →
//! [`ChatEvent::Command`]) and MESSAGE_COMPONENT (type 3, a button →
//! [`ChatEvent::Button`]); and the interaction responses Discord expects.
//! Pure translation, shared by the HTTP route and the gateway.

use serde_json::{json, Value};
use serenity::all::{
    CommandDataOption, CommandDataOptionValue, CommandInteraction, ComponentInteraction,
};
use serenity::model::application::Interaction;

use super::split_custom_id;
use crate::chat::markup::{self, LinkPolicy};
use crate::chat::{ChatEvent, ChatReply};
use crate::domain::{MessageRef, Platform};

/// Interaction response types (Discord's `InteractionCallbackType`).
const PONG: u8 = 1;
const CHANNEL_MESSAGE_WITH_SOURCE: u8 = 4;
const DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: u8 = 5;
const DEFERRED_UPDATE_MESSAGE: u8 = 6;
/// Message flag: only the invoking user sees it.
const EPHEMERAL: u64 = 1 << 6;

#[derive(Debug, thiserror::Error)]
pub enum InteractionError {
    #[error("body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a Discord interaction pipemedic understands: {0}")]
    Shape(String),
}

/// What an interaction request is.
#[derive(Debug, Clone, PartialEq)]
pub enum InteractionRequest {
    Ping,
    /// A slash command; answer with [`command_response`].
    Command(Box<ChatEvent>),
    /// A button; answer with [`component_response`].
    Component(Box<ChatEvent>),
    /// Autocomplete, modals and future types: acknowledged, not handled.
    Other,
}

/// Parses a signed interaction body. `api_url` is the REST base, used to
/// give commands a `response_url` for follow-ups.
pub fn parse(body: &[u8], api_url: &str) -> Result<InteractionRequest, InteractionError> {
    let value: Value = serde_json::from_slice(body)?;
    if value.get("type").and_then(Value::as_u64) == Some(1) {
        return Ok(InteractionRequest::Ping);
    }
    check_image_hashes(&value, &mut String::new())?;
    let interaction: Interaction =
        serde_json::from_value(value).map_err(|e| InteractionError::Shape(e.to_string()))?;
    Ok(from_interaction(&interaction, api_url))
}

/// The fields Discord fills with an image hash (32 hex digits, or `a_` and
/// 32 for an animated image).
const IMAGE_HASH_FIELDS: &[&str] = &[
    "asset",
    "avatar",
    "badge",
    "banner",
    "cover_image",
    "discovery_splash",
    "icon",
    "icon_hash",
    "image",
    "splash",
];

/// Refuses an image hash that is not ASCII before serenity reads it: its
/// parser slices the text two bytes at a time and panics inside a
/// multi-byte character. Discord sends only hex digits there, so such a
/// body is malformed. `at` is the JSON path so far, for the error.
fn check_image_hashes(value: &Value, at: &mut String) -> Result<(), InteractionError> {
    let len = at.len();
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                at.push('.');
                at.push_str(key);
                if let Value::String(text) = inner {
                    if !text.is_ascii() && IMAGE_HASH_FIELDS.contains(&key.as_str()) {
                        return Err(InteractionError::Shape(format!(
                            "`{}` is not an image hash (only hex digits are)",
                            at.trim_start_matches('.')
                        )));
                    }
                }
                check_image_hashes(inner, at)?;
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                at.push_str(&format!("[{i}]"));
                check_image_hashes(inner, at)?;
                at.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Translates a serenity interaction (also what the gateway delivers).
pub fn from_interaction(interaction: &Interaction, api_url: &str) -> InteractionRequest {
    match interaction {
        Interaction::Ping(_) => InteractionRequest::Ping,
        Interaction::Command(command) => {
            InteractionRequest::Command(Box::new(command_event(command, api_url)))
        }
        Interaction::Component(component) => {
            InteractionRequest::Component(Box::new(component_event(component)))
        }
        _ => InteractionRequest::Other,
    }
}

/// `/medic health checkout` arrives as options; the event's text joins
/// subcommand names and option values in order (`health checkout`), the
/// same text a Slack slash command carries.
pub fn command_event(command: &CommandInteraction, api_url: &str) -> ChatEvent {
    let mut words = Vec::new();
    options_text(&command.data.options, &mut words);
    ChatEvent::Command {
        platform: Platform::Discord,
        event_id: command.id.to_string(),
        channel: command.channel_id.to_string(),
        user: command.user.id.to_string(),
        command: format!("/{}", command.data.name),
        text: words.join(" "),
        thread: None,
        response_url: Some(format!(
            "{}/webhooks/{}/{}",
            api_url.trim_end_matches('/'),
            command.application_id,
            command.token
        )),
    }
}

fn options_text(options: &[CommandDataOption], words: &mut Vec<String>) {
    for option in options {
        match &option.value {
            CommandDataOptionValue::SubCommand(inner)
            | CommandDataOptionValue::SubCommandGroup(inner) => {
                words.push(option.name.clone());
                options_text(inner, words);
            }
            CommandDataOptionValue::String(s) => words.push(s.clone()),
            CommandDataOptionValue::Integer(i) => words.push(i.to_string()),
            CommandDataOptionValue::Number(n) => words.push(n.to_string()),
            CommandDataOptionValue::Boolean(b) => words.push(format!("{}={b}", option.name)),
            CommandDataOptionValue::User(id) => words.push(format!("<@{id}>")),
            CommandDataOptionValue::Channel(id) => words.push(format!("<#{id}>")),
            CommandDataOptionValue::Role(id) => words.push(format!("<@&{id}>")),
            _ => {}
        }
    }
}

/// A button press: `custom_id` is `{action_id}:{value}`.
pub fn component_event(component: &ComponentInteraction) -> ChatEvent {
    let (action_id, value) = split_custom_id(&component.data.custom_id);
    let channel = component.channel_id.to_string();
    ChatEvent::Button {
        platform: Platform::Discord,
        event_id: component.id.to_string(),
        message: MessageRef {
            platform: Platform::Discord,
            channel: channel.clone(),
            ts_or_id: component.message.id.to_string(),
            thread: None,
        },
        channel,
        user: component.user.id.to_string(),
        action_id,
        value,
    }
}

/// The PING answer.
pub fn pong() -> Value {
    json!({ "type": PONG })
}

fn message(reply: &ChatReply, links: &LinkPolicy) -> Value {
    let content = crate::chat::truncate(&markup::to_discord(&reply.text, links), 2000);
    let mut data = json!({ "content": content, "allowed_mentions": { "parse": [] } });
    if reply.ephemeral {
        data["flags"] = json!(EPHEMERAL);
    }
    json!({ "type": CHANNEL_MESSAGE_WITH_SOURCE, "data": data })
}

/// The answer to a command: the reply, or "thinking…" (deferred,
/// ephemeral) so the answer can follow through the `response_url`.
pub fn command_response(reply: Option<&ChatReply>, links: &LinkPolicy) -> Value {
    match reply {
        Some(reply) => message(reply, links),
        None => {
            json!({ "type": DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, "data": { "flags": EPHEMERAL } })
        }
    }
}

/// The answer to a button: the reply as a new message, or a silent
/// acknowledgement.
pub fn component_response(reply: Option<&ChatReply>, links: &LinkPolicy) -> Value {
    match reply {
        Some(reply) => message(reply, links),
        None => json!({ "type": DEFERRED_UPDATE_MESSAGE }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The button press fixture, with the presser's `avatar` set.
    fn button_press(avatar: &str) -> Vec<u8> {
        let mut body: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/discord/message_component.json"
        ))
        .unwrap();
        body["member"]["user"]["avatar"] = avatar.into();
        serde_json::to_vec(&body).unwrap()
    }

    #[test]
    fn a_button_press_with_a_hex_avatar_is_a_component() {
        let body = button_press("a_d5efa99b3eeaa7dd4ecca82f5692432a");
        let parsed = parse(&body, "http://127.0.0.1:9/api/v10").unwrap();
        assert!(
            matches!(parsed, InteractionRequest::Component(_)),
            "{parsed:?}"
        );
    }

    #[test]
    fn a_multibyte_image_hash_is_refused_not_a_panic() {
        // 34 bytes, with a two-byte character across an even offset.
        let avatar = "a_d5efa99b3eeaa7dd4\u{29e}cca82f5692432";
        assert_eq!(avatar.len(), 34);
        let err = parse(&button_press(avatar), "http://127.0.0.1:9/api/v10").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a Discord interaction pipemedic understands: `member.user.avatar` is not an image hash (only hex digits are)"
        );
    }
}
