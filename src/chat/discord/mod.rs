//! Discord adapter: [`DiscordChat`] implements [`ChatPlatform`] with
//! serenity's HTTP client (routes, request builder, multipart uploads,
//! message builders and models), pointed at `discord.api_url`;
//! [`verify`] and [`interactions`] turn signed HTTP
//! interactions into [`ChatEvent`](super::ChatEvent)s; [`gateway`] receives
//! messages, reactions and interactions over the gateway.
//!
//! It only translates: [`ChatMessage`] → an embed with Approve/Reject
//! buttons, HTTP statuses → [`ChatError`] (429 → rate limited with Discord's
//! `retry_after`, 5xx and network → unavailable, other 4xx → rejected).
//!
//! serenity's own rate limiter is off: it sleeps and retries inside the
//! call, and it sends to discord.com regardless of the configured base URL.
//! Requests are therefore built with serenity's [`Request`] and sent here,
//! so that a 429 reaches the caller with its `retry_after` and the durable
//! outbox decides when to try again.

pub mod gateway;
pub mod interactions;
pub mod verify;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serenity::all::{
    ButtonStyle, ChannelId, CreateActionRow, CreateAllowedMentions, CreateAttachment, CreateButton,
    CreateEmbed, CreateEmbedFooter, CreateMessage, EditMessage, GuildId, MessageId, ReactionType,
    UserId,
};
use serenity::http::{HttpBuilder, LightMethod, Multipart, MultipartUpload, Request, Route};
use serenity::model::channel::Message;
use serenity::model::user::CurrentUser;

use super::markup::{self, LinkPolicy};
use super::{emoji, truncate, BotIdentity, ChatError, ChatMessage, ChatPlatform};
use crate::config::{DiscordConfig, Secret};
use crate::domain::{MessageRef, Platform};

/// The API version serenity's routes speak.
const API_PATH: &str = "/api/v10";

/// Longest `custom_id` Discord accepts on a button.
const MAX_CUSTOM_ID: usize = 100;

/// When Discord answers 429 without saying how long to wait.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DiscordSetupError {
    #[error("discord.api_url {0:?} is not an http(s) URL")]
    BadApiUrl(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The scheme and host serenity's proxy setting wants: `discord.api_url`
/// without its `/api/v10` suffix.
pub fn proxy_base(api_url: &str) -> Result<String, DiscordSetupError> {
    let trimmed = api_url.trim_end_matches('/');
    if !(trimmed.starts_with("https://") || trimmed.starts_with("http://")) {
        return Err(DiscordSetupError::BadApiUrl(api_url.to_string()));
    }
    Ok(trimmed
        .strip_suffix(API_PATH)
        .unwrap_or(trimmed)
        .to_string())
}

/// Builds serenity's [`serenity::http::Http`] for `config`: the bot token,
/// requests sent to `discord.api_url`, serenity's in-process rate limiter
/// off (retries belong to the caller).
pub fn http(
    config: &DiscordConfig,
    token: &Secret,
    client: reqwest::Client,
) -> Result<serenity::http::Http, DiscordSetupError> {
    Ok(HttpBuilder::new(token.expose())
        .client(client)
        .proxy(proxy_base(&config.api_url)?)
        .ratelimiter_disabled(true)
        .build())
}

/// Discord through its REST API, as the bot.
pub struct DiscordChat {
    http: serenity::http::Http,
    client: reqwest::Client,
    links: LinkPolicy,
}

impl fmt::Debug for DiscordChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordChat")
            .field("base", &self.http.proxy)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct DiscordErrorBody {
    code: Option<i64>,
    retry_after: Option<f64>,
}

impl DiscordChat {
    pub fn new(config: &DiscordConfig, token: &Secret) -> Result<Self, DiscordSetupError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| DiscordSetupError::Client(e.to_string()))?;
        Ok(Self {
            http: http(config, token, client.clone())?,
            client,
            links: LinkPolicy::default(),
        })
    }

    /// The same client making live links only to what `links` allows.
    pub fn with_links(mut self, links: LinkPolicy) -> Self {
        self.links = links;
        self
    }

    /// serenity's client (the gateway shares its settings).
    pub fn http(&self) -> &serenity::http::Http {
        &self.http
    }

    /// Sends a serenity request to the configured base and classifies the answer.
    async fn send(&self, request: Request<'_>) -> Result<reqwest::Response, ChatError> {
        let builder = request
            .build(&self.client, self.http.token(), self.http.proxy.as_deref())
            .map_err(|e| ChatError::rejected(format!("request_build: {e}")))?;
        let response = builder.send().await.map_err(|e| {
            ChatError::unavailable(format!("cannot reach discord: {}", e.without_url()))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let header_retry = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let body: Option<DiscordErrorBody> = response.json().await.ok();
        if status.as_u16() == 429 {
            let secs = body
                .as_ref()
                .and_then(|b| b.retry_after)
                .or(header_retry)
                .filter(|s| s.is_finite() && *s >= 0.0);
            return Err(ChatError::RateLimited {
                retry_after: secs
                    .map(Duration::from_secs_f64)
                    .unwrap_or(DEFAULT_RETRY_AFTER),
            });
        }
        if status.is_server_error() {
            return Err(ChatError::unavailable(format!(
                "discord answered HTTP {}",
                status.as_u16()
            )));
        }
        Err(ChatError::rejected(
            match body.and_then(|b| b.code).filter(|c| *c != 0) {
                Some(code) => format!("discord_{code}"),
                None => format!("http_{}", status.as_u16()),
            },
        ))
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        request: Request<'_>,
    ) -> Result<T, ChatError> {
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| ChatError::unavailable(format!("unreadable answer from discord: {e}")))
    }

    async fn create_message(
        &self,
        channel: ChannelId,
        message: CreateMessage,
        files: Vec<CreateAttachment>,
    ) -> Result<Message, ChatError> {
        let route = Route::ChannelMessages {
            channel_id: channel,
        };
        let request = if files.is_empty() {
            Request::new(route, LightMethod::Post).body(Some(to_json(&message)?))
        } else {
            Request::new(route, LightMethod::Post).multipart(Some(Multipart {
                upload: MultipartUpload::Attachments(files),
                fields: Vec::new(),
                payload_json: Some(String::from_utf8_lossy(&to_json(&message)?).into_owned()),
            }))
        };
        self.send_json(request).await
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, ChatError> {
    serde_json::to_vec(value).map_err(|e| ChatError::rejected(format!("serialize: {e}")))
}

fn snowflake(kind: &str, id: &str) -> Result<u64, ChatError> {
    id.trim()
        .parse::<u64>()
        .ok()
        .filter(|v| *v != 0)
        .ok_or_else(|| ChatError::rejected(format!("invalid_{kind}_id")))
}

/// The `custom_id` of a button: `{action_id}:{value}`.
pub fn custom_id(action_id: &str, value: &str) -> String {
    truncate(&format!("{action_id}:{value}"), MAX_CUSTOM_ID)
}

/// Splits a `custom_id` back into `(action_id, value)`.
pub fn split_custom_id(custom_id: &str) -> (String, String) {
    match custom_id.split_once(':') {
        Some((action, value)) => (action.to_string(), value.to_string()),
        None => (custom_id.to_string(), String::new()),
    }
}

/// Renders a [`ChatMessage`] as a Discord embed (limits applied). Every
/// piece of text goes through [`markup::to_discord`] (the footer, which
/// Discord does not format, through [`markup::to_plain`]), so nothing in it
/// can mention anyone or link off `links`.
pub fn embed(message: &ChatMessage, links: &LinkPolicy) -> CreateEmbed {
    let mut embed = CreateEmbed::new()
        .title(truncate(
            &format!(
                "{} {}",
                message.severity.icon(),
                markup::to_discord(&message.title, links)
            ),
            256,
        ))
        .colour(message.severity.colour());
    if !message.text.is_empty() {
        embed = embed.description(truncate(&markup::to_discord(&message.text, links), 4096));
    }
    for (name, value) in message.fields.iter().take(25) {
        embed = embed.field(
            truncate(&markup::to_discord(name, links), 256),
            truncate(&markup::to_discord(value, links), 1024),
            true,
        );
    }
    if let Some(url) = message.image_url.as_deref().filter(|u| links.allows(u)) {
        embed = embed.image(url);
    }
    if let Some(footer) = &message.footer {
        embed = embed.footer(CreateEmbedFooter::new(truncate(
            &markup::to_plain(footer),
            2048,
        )));
    }
    embed
}

/// No mention in a message the bot posts notifies anyone
/// (`allowed_mentions: {parse: []}`), whatever its text.
fn no_mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
}

/// The Approve / Reject buttons of a message as one action row, and its
/// links as link buttons in another.
pub fn components(message: &ChatMessage) -> Vec<CreateActionRow> {
    let mut rows = decision_row(message);
    let links: Vec<CreateButton> = message
        .links
        .iter()
        .filter(|l| l.url.starts_with("https://") || l.url.starts_with("http://"))
        .take(5)
        .map(|l| CreateButton::new_link(&l.url).label(truncate(&markup::to_plain(&l.label), 80)))
        .collect();
    if !links.is_empty() {
        rows.push(CreateActionRow::Buttons(links));
    }
    rows
}

/// The Approve / Reject buttons of a message, as one action row.
fn decision_row(message: &ChatMessage) -> Vec<CreateActionRow> {
    if message.buttons.is_empty() {
        return Vec::new();
    }
    let buttons = message
        .buttons
        .iter()
        .take(5)
        .map(|b| {
            let style = match b.decision {
                crate::domain::Choice::Approve => ButtonStyle::Success,
                crate::domain::Choice::Reject => ButtonStyle::Danger,
            };
            CreateButton::new(custom_id(super::action_id(b.decision), &b.value))
                .label(b.decision.label())
                .style(style)
        })
        .collect();
    vec![CreateActionRow::Buttons(buttons)]
}

fn reply_to(
    channel: ChannelId,
    thread: Option<&MessageRef>,
) -> Result<Option<(ChannelId, MessageId)>, ChatError> {
    thread
        .map(|t| {
            Ok((
                channel,
                MessageId::new(snowflake("message", t.thread_root())?),
            ))
        })
        .transpose()
}

#[derive(Deserialize)]
struct DmChannel {
    id: String,
}

/// The parts of a channel and a guild member that role checks need.
#[derive(Debug, Deserialize)]
struct ChannelGuild {
    guild_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GuildMember {
    #[serde(default)]
    roles: Vec<String>,
}

#[async_trait]
impl ChatPlatform for DiscordChat {
    fn platform(&self) -> Platform {
        Platform::Discord
    }

    /// With `thread`, the message is a reply to the thread's root message.
    #[tracing::instrument(skip_all, fields(platform = "discord", channel = %channel))]
    async fn post(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        message: &ChatMessage,
    ) -> Result<MessageRef, ChatError> {
        let channel_id = ChannelId::new(snowflake("channel", channel)?);
        let mut create = CreateMessage::new()
            .embed(embed(message, &self.links))
            .components(components(message))
            .allowed_mentions(no_mentions());
        if let Some(reference) = reply_to(channel_id, thread)? {
            create = create.reference_message(reference);
        }
        let posted = self.create_message(channel_id, create, Vec::new()).await?;
        Ok(MessageRef {
            platform: Platform::Discord,
            channel: posted.channel_id.to_string(),
            ts_or_id: posted.id.to_string(),
            thread: thread.map(|t| t.thread_root().to_string()),
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "discord", channel = %message.channel))]
    async fn update(&self, message: &MessageRef, content: &ChatMessage) -> Result<(), ChatError> {
        let route = Route::ChannelMessage {
            channel_id: ChannelId::new(snowflake("channel", &message.channel)?),
            message_id: MessageId::new(snowflake("message", &message.ts_or_id)?),
        };
        let edit = EditMessage::new()
            .embed(embed(content, &self.links))
            .components(components(content))
            .allowed_mentions(no_mentions());
        let _: Message = self
            .send_json(Request::new(route, LightMethod::Patch).body(Some(to_json(&edit)?)))
            .await?;
        Ok(())
    }

    /// The image is posted as a message with an embed showing the attachment.
    #[tracing::instrument(skip_all, fields(platform = "discord", channel = %channel, bytes = bytes.len()))]
    async fn upload_png(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        filename: &str,
        bytes: Vec<u8>,
        title: &str,
    ) -> Result<(), ChatError> {
        let channel_id = ChannelId::new(snowflake("channel", channel)?);
        let mut create = CreateMessage::new()
            .embed(
                CreateEmbed::new()
                    .title(truncate(&markup::to_discord(title, &self.links), 256))
                    .attachment(filename),
            )
            .allowed_mentions(no_mentions());
        if let Some(reference) = reply_to(channel_id, thread)? {
            create = create.reference_message(reference);
        }
        let file = CreateAttachment::bytes(bytes, filename);
        self.create_message(channel_id, create.add_file(file.clone()), vec![file])
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(platform = "discord", channel = %message.channel, emoji = %emoji_))]
    async fn react(&self, message: &MessageRef, emoji_: &str) -> Result<(), ChatError> {
        let reaction = ReactionType::Unicode(emoji::to_unicode(emoji_)).as_data();
        let route = Route::ChannelMessageReactionMe {
            channel_id: ChannelId::new(snowflake("channel", &message.channel)?),
            message_id: MessageId::new(snowflake("message", &message.ts_or_id)?),
            reaction: &reaction,
        };
        self.send(Request::new(route, LightMethod::Put)).await?;
        Ok(())
    }

    /// Discord has no ephemeral messages outside interactions: the text
    /// goes to the user as a direct message (`channel` is not used).
    #[tracing::instrument(skip_all, fields(platform = "discord", user = %user))]
    async fn post_ephemeral(
        &self,
        _channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), ChatError> {
        let body = serde_json::json!({ "recipient_id": snowflake("user", user)?.to_string() });
        let dm: DmChannel = self
            .send_json(
                Request::new(Route::UserMeDmChannels, LightMethod::Post)
                    .body(Some(to_json(&body)?)),
            )
            .await?;
        let channel_id = ChannelId::new(snowflake("channel", &dm.id)?);
        let create = CreateMessage::new()
            .content(truncate(&markup::to_discord(text, &self.links), 2000))
            .allowed_mentions(no_mentions());
        self.create_message(channel_id, create, Vec::new()).await?;
        Ok(())
    }

    /// The member's roles in the server of `channel` (two reads: the
    /// channel's server, then the member).
    #[tracing::instrument(skip_all, fields(platform = "discord", candidates = candidates.len()))]
    async fn member_groups(
        &self,
        channel: &str,
        user: &str,
        candidates: &[String],
    ) -> Result<Vec<String>, ChatError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let channel_id = ChannelId::new(snowflake("channel", channel)?);
        let found: ChannelGuild = self
            .send_json(Request::new(
                Route::Channel { channel_id },
                LightMethod::Get,
            ))
            .await?;
        let Some(guild) = found.guild_id else {
            return Ok(Vec::new());
        };
        let route = Route::GuildMember {
            guild_id: GuildId::new(snowflake("guild", &guild)?),
            user_id: UserId::new(snowflake("user", user)?),
        };
        let member: GuildMember = self
            .send_json(Request::new(route, LightMethod::Get))
            .await?;
        Ok(candidates
            .iter()
            .filter(|c| member.roles.contains(c))
            .cloned()
            .collect())
    }

    #[tracing::instrument(skip_all, fields(platform = "discord"))]
    async fn whoami(&self) -> Result<BotIdentity, ChatError> {
        let me: CurrentUser = self
            .send_json(Request::new(Route::UserMe, LightMethod::Get))
            .await?;
        Ok(BotIdentity {
            platform: Platform::Discord,
            user_id: me.id.to_string(),
            bot_id: None,
            name: me.name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Severity;
    use crate::domain::Choice;

    #[test]
    fn proxy_base_drops_the_api_path() {
        assert_eq!(
            proxy_base("https://discord.com/api/v10").unwrap(),
            "https://discord.com"
        );
        assert_eq!(
            proxy_base("http://127.0.0.1:4000/api/v10/").unwrap(),
            "http://127.0.0.1:4000"
        );
        assert_eq!(
            proxy_base("http://127.0.0.1:4000").unwrap(),
            "http://127.0.0.1:4000"
        );
        assert!(proxy_base("discord.com").is_err());
    }

    #[test]
    fn links_are_link_buttons_in_their_own_row() {
        let message = ChatMessage::new("t", Severity::Info, "x")
            .button(Choice::Approve, "request:1")
            .links([crate::chat::ChatLink {
                label: "Dashboard".into(),
                url: "https://grafana.example/d/ci?from=1&to=2".into(),
            }]);
        let rows = serde_json::to_value(components(&message)).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 2);
        let link = &rows[1]["components"][0];
        assert_eq!(link["style"], 5);
        assert_eq!(link["url"], "https://grafana.example/d/ci?from=1&to=2");
        assert_eq!(link["label"], "Dashboard");
        assert!(link.get("custom_id").is_none());
    }

    #[test]
    fn cards_render_as_embeds_with_buttons() {
        let message = ChatMessage::new("checkout-service", Severity::Warning, "**slow**")
            .field("p95", "602 s")
            .button(Choice::Approve, "plan-9")
            .button(Choice::Reject, "plan-9")
            .footer("pipemedic");
        let embed = serde_json::to_value(embed(&message, &LinkPolicy::default())).unwrap();
        assert_eq!(embed["color"], Severity::Warning.colour());
        assert_eq!(embed["description"], "**slow**");
        assert_eq!(embed["fields"][0]["name"], "p95");
        assert_eq!(embed["footer"]["text"], "pipemedic");
        let rows = serde_json::to_value(components(&message)).unwrap();
        assert_eq!(rows[0]["type"], 1);
        assert_eq!(
            rows[0]["components"][0]["custom_id"],
            "pipemedic_approve:plan-9"
        );
        assert_eq!(rows[0]["components"][1]["style"], 4);
        assert_eq!(
            split_custom_id("pipemedic_reject:plan-9"),
            ("pipemedic_reject".to_string(), "plan-9".to_string())
        );
    }
}
