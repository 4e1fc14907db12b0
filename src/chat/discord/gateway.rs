//! The Discord gateway: a serenity [`Client`] with only the intents
//! pipemedic needs, whose event handler translates messages that mention
//! the bot, direct messages, reactions and interactions into
//! [`ChatEvent`]s for the same [`ChatState`] sink as the HTTP route.
//!
//! Intents: `GUILDS` (the servers and channels the bot is in),
//! `GUILD_MESSAGES` (mentions), `GUILD_MESSAGE_REACTIONS` (✅ / ❌
//! approvals), `DIRECT_MESSAGES` and `DIRECT_MESSAGE_REACTIONS`. The
//! privileged `MESSAGE_CONTENT` intent is not requested: Discord includes
//! the content of messages that mention the bot and of direct messages
//! without it.

use async_trait::async_trait;
use serenity::all::{
    ClientBuilder, Context, CreateInteractionResponse, CreateInteractionResponseMessage,
    EventHandler, GatewayIntents, Interaction, Message, Reaction, ReactionType, Ready,
};
use serenity::Client;
use tokio_util::sync::CancellationToken;

use super::interactions::{self, InteractionRequest};
use super::DiscordSetupError;
use crate::chat::{BotIdentity, ChatEvent, ChatReply, ChatState};
use crate::config::{DiscordConfig, Secret};
use crate::domain::{MessageRef, Platform};

/// The gateway intents pipemedic asks for.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::GUILD_MESSAGE_REACTIONS
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::DIRECT_MESSAGE_REACTIONS
}

/// Translates gateway events and hands them to the sink.
pub struct Handler {
    state: ChatState,
    api_url: String,
}

impl Handler {
    pub fn new(state: ChatState, config: &DiscordConfig) -> Self {
        Self {
            state,
            api_url: config.api_url.clone(),
        }
    }

    fn bot_id(&self) -> Option<String> {
        self.state.bot(Platform::Discord).map(|b| b.user_id)
    }
}

/// Removes user mentions (`<@id>`, `<@!id>`) of `bot` and tidies spaces.
fn strip_mention(text: &str, bot: &str) -> String {
    text.replace(&format!("<@{bot}>"), "")
        .replace(&format!("<@!{bot}>"), "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A created message → a mention or a direct message (or nothing).
pub fn message_event(message: &Message, bot: Option<&str>) -> Option<ChatEvent> {
    if message.author.bot || Some(message.author.id.to_string().as_str()) == bot {
        return None;
    }
    let channel = message.channel_id.to_string();
    let text = match bot {
        Some(bot) => strip_mention(&message.content, bot),
        None => message.content.trim().to_string(),
    };
    let here = MessageRef {
        platform: Platform::Discord,
        channel: channel.clone(),
        ts_or_id: message.id.to_string(),
        thread: None,
    };
    let event_id = message.id.to_string();
    let user = message.author.id.to_string();
    if message.guild_id.is_none() {
        return Some(ChatEvent::DirectMessage {
            platform: Platform::Discord,
            event_id,
            channel,
            user,
            text,
            thread: Some(here),
        });
    }
    let bot = bot?;
    if !message.mentions.iter().any(|u| u.id.to_string() == bot) {
        return None;
    }
    Some(ChatEvent::Mention {
        platform: Platform::Discord,
        event_id,
        channel,
        user,
        text,
        thread: Some(here),
    })
}

/// A reaction added or removed → [`ChatEvent::Reaction`] (not the bot's own).
pub fn reaction_event(reaction: &Reaction, added: bool, bot: Option<&str>) -> Option<ChatEvent> {
    let user = reaction.user_id?.to_string();
    if Some(user.as_str()) == bot {
        return None;
    }
    let emoji = match &reaction.emoji {
        ReactionType::Unicode(s) => s.clone(),
        ReactionType::Custom { name, id, .. } => name.clone().unwrap_or_else(|| id.to_string()),
        _ => return None,
    };
    let message_ts = reaction.message_id.to_string();
    Some(ChatEvent::Reaction {
        platform: Platform::Discord,
        event_id: format!(
            "{message_ts}:{user}:{emoji}:{}",
            if added { "add" } else { "remove" }
        ),
        channel: reaction.channel_id.to_string(),
        message_ts,
        user,
        emoji,
        added,
    })
}

fn response(reply: Option<&ChatReply>, command: bool) -> CreateInteractionResponse {
    match (reply, command) {
        (Some(reply), _) => CreateInteractionResponse::Message(
            CreateInteractionResponseMessage::new()
                .content(reply.text.clone())
                .ephemeral(reply.ephemeral),
        ),
        (None, true) => CreateInteractionResponse::Defer(
            CreateInteractionResponseMessage::new().ephemeral(true),
        ),
        (None, false) => CreateInteractionResponse::Acknowledge,
    }
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(platform = "discord", user_id = %ready.user.id, "Gateway ready.");
        self.state.set_bot(BotIdentity {
            platform: Platform::Discord,
            user_id: ready.user.id.to_string(),
            bot_id: None,
            name: ready.user.name.clone(),
        });
    }

    async fn message(&self, _ctx: Context, message: Message) {
        if let Some(event) = message_event(&message, self.bot_id().as_deref()) {
            self.state.dispatch_in_background(event);
        }
    }

    async fn reaction_add(&self, _ctx: Context, reaction: Reaction) {
        if let Some(event) = reaction_event(&reaction, true, self.bot_id().as_deref()) {
            self.state.dispatch_in_background(event);
        }
    }

    async fn reaction_remove(&self, _ctx: Context, reaction: Reaction) {
        if let Some(event) = reaction_event(&reaction, false, self.bot_id().as_deref()) {
            self.state.dispatch_in_background(event);
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let result = match (
            interactions::from_interaction(&interaction, &self.api_url),
            &interaction,
        ) {
            (InteractionRequest::Command(event), Interaction::Command(command)) => {
                let reply = self.state.dispatch(*event).await;
                command
                    .create_response(&ctx.http, response(reply.as_ref(), true))
                    .await
            }
            (InteractionRequest::Component(event), Interaction::Component(component)) => {
                let reply = self.state.dispatch(*event).await;
                component
                    .create_response(&ctx.http, response(reply.as_ref(), false))
                    .await
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(platform = "discord", error = %e, "Cannot answer an interaction.");
        }
    }
}

/// Builds the gateway client for `config`, with the handler wired to `state`.
pub async fn client(
    config: &DiscordConfig,
    token: &Secret,
    state: ChatState,
) -> Result<Client, DiscordSetupError> {
    let http = super::http(config, token, reqwest::Client::new())?;
    ClientBuilder::new_with_http(http, intents())
        .event_handler(Handler::new(state, config))
        .await
        .map_err(|e| DiscordSetupError::Client(e.to_string()))
}

/// Runs the gateway until `shutdown` is cancelled. Reconnection is
/// serenity's; an error means the token was refused or Discord is out of
/// reach.
pub async fn run(
    config: &DiscordConfig,
    token: &Secret,
    state: ChatState,
    shutdown: CancellationToken,
) -> Result<(), DiscordSetupError> {
    let mut client = client(config, token, state).await?;
    let shards = client.shard_manager.clone();
    tokio::select! {
        result = client.start() => result.map_err(|e| DiscordSetupError::Client(e.to_string())),
        _ = shutdown.cancelled() => {
            shards.shutdown_all().await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Choice;
    use serde_json::json;

    const BOT: &str = "775799577604522054";

    #[test]
    fn intents_are_the_documented_ones_and_none_privileged() {
        let i = intents();
        for needed in [
            GatewayIntents::GUILDS,
            GatewayIntents::GUILD_MESSAGES,
            GatewayIntents::GUILD_MESSAGE_REACTIONS,
            GatewayIntents::DIRECT_MESSAGES,
        ] {
            assert!(i.contains(needed), "{needed:?}");
        }
        assert!(!i.is_privileged());
    }

    fn message(guild: Option<&str>, content: &str, mentions: &[&str], bot_author: bool) -> Message {
        let users: Vec<_> = mentions
            .iter()
            .map(|id| json!({"id": id, "username": "pipemedic", "discriminator": "0", "avatar": null, "bot": true}))
            .collect();
        let mut value = json!({
            "id": "1300000000000000001", "channel_id": "772908445358620702", "type": 0,
            "author": {"id": "53908232506183680", "username": "mason", "discriminator": "0",
                       "avatar": null, "bot": bot_author},
            "content": content, "timestamp": "2026-11-25T12:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false,
            "mentions": users, "mention_roles": [], "attachments": [], "embeds": [],
            "pinned": false
        });
        if let Some(guild) = guild {
            value["guild_id"] = json!(guild);
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn mentions_and_direct_messages_become_events() {
        let mention = message(
            Some("290926798626357250"),
            &format!("<@{BOT}> why is checkout slow?"),
            &[BOT],
            false,
        );
        match message_event(&mention, Some(BOT)).unwrap() {
            ChatEvent::Mention { text, thread, .. } => {
                assert_eq!(text, "why is checkout slow?");
                assert_eq!(thread.unwrap().ts_or_id, "1300000000000000001");
            }
            other => panic!("{other:?}"),
        }
        let chatter = message(Some("290926798626357250"), "lunch?", &[], false);
        assert_eq!(message_event(&chatter, Some(BOT)), None);
        let dm = message(None, "health checkout", &[], false);
        assert!(matches!(
            message_event(&dm, Some(BOT)),
            Some(ChatEvent::DirectMessage { .. })
        ));
        let from_a_bot = message(None, "hello", &[], true);
        assert_eq!(message_event(&from_a_bot, Some(BOT)), None);
    }

    #[test]
    fn reactions_become_decisions_but_not_the_bots_own() {
        let reaction = |user: &str, name: &str| -> Reaction {
            serde_json::from_value(json!({
                "user_id": user, "channel_id": "772908445358620702",
                "message_id": "844397162624450620", "guild_id": "290926798626357250",
                "emoji": {"id": null, "name": name}, "burst": false, "type": 0
            }))
            .unwrap()
        };
        let approve =
            reaction_event(&reaction("53908232506183680", "✅"), true, Some(BOT)).unwrap();
        assert_eq!(approve.decision(), Some(Choice::Approve));
        assert!(matches!(
            &approve,
            ChatEvent::Reaction { message_ts, added: true, .. } if message_ts == "844397162624450620"
        ));
        let withdrawn =
            reaction_event(&reaction("53908232506183680", "❌"), false, Some(BOT)).unwrap();
        assert_eq!(withdrawn.decision(), Some(Choice::Reject));
        assert_ne!(approve.event_id(), withdrawn.event_id());
        assert_eq!(reaction_event(&reaction(BOT, "✅"), true, Some(BOT)), None);
    }
}
