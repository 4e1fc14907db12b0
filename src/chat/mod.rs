//! The chat port: what pipemedic says in chat and what people say back.
//!
//! This module owns the platform-neutral vocabulary — an outbound
//! [`ChatMessage`], a [`MessageRef`] to a posted message, typed inbound
//! [`ChatEvent`]s, the [`ChatPlatform`] trait every adapter implements and
//! the [`ChatEventSink`] that inbound routes hand events to. The adapters
//! ([`slack`], [`discord`], [`console`]) only translate between this
//! vocabulary and their platform's wire format; what to post, when to retry
//! and what an approval means are decided by the services built on top
//! (`chatops` carries out commands and stores decisions). Here, [`cards`]
//! formats incidents, [`routing`] says which channel a pipeline's alerts go
//! to, and [`outbox`] delivers every queued message durably and in order.
//! This module must not import the services above it (incidents, healing,
//! ask, chatops, http).
//!
//! ```text
//! services --ChatMessage--> Arc<dyn ChatPlatform> --> Slack Web API / Discord REST / console
//! Slack Events API / Socket Mode / Discord interactions / gateway / console lines
//!          --(verify, parse)--> ChatEvent --> Arc<dyn ChatEventSink> --> services
//! ```

pub mod cards;
pub mod console;
pub mod discord;
pub mod emoji;
mod identity;
pub mod links;
pub mod markup;
pub mod outbox;
pub mod routing;
pub mod slack;

pub use identity::{Identity, IdentityLookup, IDENTITY_TTL};

/// The adapters' cut for titles, fields and ids.
pub(crate) use crate::domain::truncate;
use crate::domain::{Choice, MessageRef, Platform};

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{Config, Secrets};

/// How alarming a message is; adapters turn it into a colour and an icon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Success,
    Warning,
    Critical,
}

impl Severity {
    /// RGB colour (Discord embed colour, Slack attachment bar).
    pub fn colour(self) -> u32 {
        match self {
            Self::Info => 0x439FE0,
            Self::Success => 0x2EB67D,
            Self::Warning => 0xECB22E,
            Self::Critical => 0xE01E5A,
        }
    }

    /// A leading icon for titles.
    pub fn icon(self) -> &'static str {
        match self {
            Self::Info => "ℹ️",
            Self::Success => "✅",
            Self::Warning => "⚠️",
            Self::Critical => "🚨",
        }
    }
}

/// The `action_id` pipemedic gives its Approve / Reject buttons.
pub fn action_id(choice: Choice) -> &'static str {
    match choice {
        Choice::Approve => "pipemedic_approve",
        Choice::Reject => "pipemedic_reject",
    }
}

/// The choice a button's `action_id` stands for.
pub fn choice_from_action_id(action_id: &str) -> Option<Choice> {
    [Choice::Approve, Choice::Reject]
        .into_iter()
        .find(|c| self::action_id(*c) == action_id)
}

/// The choice a reaction stands for: ✅ / ✔️ approve, ❌ rejects.
/// Accepts Slack names (`white_check_mark`, `heavy_check_mark`, `x`,
/// with or without colons) and the Unicode characters Discord sends.
pub fn choice_from_emoji(emoji: &str) -> Option<Choice> {
    let name = emoji::to_name(emoji.trim_matches(':'));
    match name.as_str() {
        "white_check_mark" | "heavy_check_mark" => Some(Choice::Approve),
        "x" => Some(Choice::Reject),
        _ => None,
    }
}

/// A button under a message: Approve or Reject, carrying an opaque value
/// (for example a plan id) that comes back in [`ChatEvent::Button`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatButton {
    pub decision: Choice,
    pub value: String,
}

/// A link under a message (a dashboard, a runbook): a URL button on Slack,
/// a link button on Discord, a line on the console. Only pipemedic's own
/// configuration and playbooks make these ([`links`]), never a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLink {
    pub label: String,
    /// An absolute http(s) URL.
    pub url: String,
}

/// A platform-neutral message card.
///
/// Every text (title, text, field names and values, footer) is the
/// neutral [`markup`]: `**bold**`, `_italic_`, `` `code` ``, `[label](url)`,
/// `- ` bullets and `\x` escapes. Values from outside go in through
/// [`markup::text`] / [`markup::link`]; adapters convert it to the
/// platform's dialect, escaping and neutralising mentions as they do.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    pub title: String,
    pub severity: Severity,
    pub text: String,
    /// Short name/value pairs shown side by side.
    pub fields: Vec<(String, String)>,
    /// A public image URL shown in the card (charts are uploaded with
    /// [`ChatPlatform::upload_png`] instead).
    pub image_url: Option<String>,
    pub buttons: Vec<ChatButton>,
    pub footer: Option<String>,
    /// Links shown under the card.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<ChatLink>,
}

impl ChatMessage {
    pub fn new(title: impl Into<String>, severity: Severity, text: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            severity,
            text: text.into(),
            ..Self::default()
        }
    }

    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    pub fn button(mut self, decision: Choice, value: impl Into<String>) -> Self {
        self.buttons.push(ChatButton {
            decision,
            value: value.into(),
        });
        self
    }

    pub fn footer(mut self, footer: impl Into<String>) -> Self {
        self.footer = Some(footer.into());
        self
    }

    /// The same card with `links` under it.
    pub fn links(mut self, links: impl IntoIterator<Item = ChatLink>) -> Self {
        self.links.extend(links);
        self
    }

    pub fn image_url(mut self, url: impl Into<String>) -> Self {
        self.image_url = Some(url.into());
        self
    }

    /// A plain-text rendering (notification fallback, console, logs).
    pub fn plain_text(&self) -> String {
        let mut out = format!("{} {}", self.severity.icon(), self.title);
        if !self.text.is_empty() {
            out.push('\n');
            out.push_str(&self.text);
        }
        for (name, value) in &self.fields {
            out.push_str(&format!("\n{name}: {value}"));
        }
        out
    }
}

/// Who the bot is on a platform, so its own events can be ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotIdentity {
    pub platform: Platform,
    /// The bot's user id (`U…` on Slack, the application user on Discord).
    pub user_id: String,
    /// Slack's `bot_id` (`B…`), which bot messages carry instead of a user.
    pub bot_id: Option<String>,
    pub name: String,
}

/// Why a chat call failed, classified so a durable outbox retries right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The platform throttled us (HTTP 429); retry after the given time.
    #[error("rate limited by the chat platform; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// The platform could not be reached or failed (5xx, network, timeout);
    /// retry with backoff.
    #[error("chat platform unavailable: {reason}")]
    Unavailable { reason: String },
    /// The platform refused the request (4xx or an `ok:false` error code);
    /// retrying the same request will fail the same way.
    #[error("chat platform rejected the request: {code}")]
    Rejected { code: String },
}

impl ChatError {
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
        }
    }

    pub fn rejected(code: impl Into<String>) -> Self {
        Self::Rejected { code: code.into() }
    }

    /// Whether a later retry of the same call may succeed.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }

    /// The wait the platform asked for, if it named one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Outbound chat: the narrow capability the services need.
///
/// Adapters never retry on their own (the platform client's built-in
/// retries are off): every failure comes back classified as a
/// [`ChatError`], and the caller — a durable outbox — decides whether and
/// when to try again. Methods that are not idempotent say so; the outbox
/// records a [`MessageRef`] once a post succeeded so it never posts twice.
#[async_trait]
pub trait ChatPlatform: Send + Sync {
    /// Which platform this adapter speaks.
    fn platform(&self) -> Platform;

    /// Posts `message` to `channel`, inside the thread of `thread` when
    /// given. **Not idempotent**: each success is a new message; record the
    /// returned reference before retrying anything else.
    async fn post(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        message: &ChatMessage,
    ) -> Result<MessageRef, ChatError>;

    /// Replaces the whole content of a posted message, buttons included (a
    /// card without buttons removes them). Idempotent: repeating it leaves
    /// the same content.
    async fn update(&self, message: &MessageRef, content: &ChatMessage) -> Result<(), ChatError>;

    /// Uploads a PNG into `channel` (inside `thread` when given) with a
    /// title. **Not idempotent**: a retry after an unclear failure may show
    /// the image twice.
    async fn upload_png(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        filename: &str,
        bytes: Vec<u8>,
        title: &str,
    ) -> Result<(), ChatError>;

    /// Adds the bot's reaction to a message. `emoji` is a Slack-style name
    /// (`white_check_mark`) or the Unicode character; adapters translate.
    /// Idempotent: an existing reaction counts as success.
    async fn react(&self, message: &MessageRef, emoji: &str) -> Result<(), ChatError>;

    /// Shows `text` to `user` only (Slack ephemeral message; a direct
    /// message on Discord). Not idempotent; losing one is harmless.
    async fn post_ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), ChatError>;

    /// Who the bot is. Read-only; safe to retry.
    async fn whoami(&self) -> Result<BotIdentity, ChatError>;

    /// Which of `candidates` (Slack user group ids, Discord role ids) `user`
    /// belongs to, as the platform says now; `channel` is where they acted
    /// (a Discord role belongs to the channel's server). Read-only. Platforms
    /// without groups answer none.
    async fn member_groups(
        &self,
        _channel: &str,
        _user: &str,
        _candidates: &[String],
    ) -> Result<Vec<String>, ChatError> {
        Ok(Vec::new())
    }

    /// The emails the platform knows `user` by (a Slack profile's email,
    /// through `users.info`; needs the `users:read.email` scope). Read-only;
    /// safe to retry. Platforms without emails (Discord) answer none.
    async fn user_emails(&self, _user: &str) -> Result<Vec<String>, ChatError> {
        Ok(Vec::new())
    }
}

/// The narrow port for "which of these groups is this person in?": the
/// configured adapters answer through [`ChatPlatform::member_groups`];
/// callers see only this lookup, never the platforms. Cheap to clone.
#[derive(Clone, Default)]
pub struct GroupLookup {
    platforms: Vec<Arc<dyn ChatPlatform>>,
}

impl fmt::Debug for GroupLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<Platform> = self.platforms.iter().map(|p| p.platform()).collect();
        f.debug_struct("GroupLookup")
            .field("platforms", &names)
            .finish()
    }
}

impl GroupLookup {
    pub fn new(platforms: Vec<Arc<dyn ChatPlatform>>) -> Self {
        Self { platforms }
    }

    /// Which of `candidates` `user` belongs to on `platform`, as the
    /// platform says now (none when no adapter for it is configured).
    /// Read-only; safe to retry.
    pub async fn member_groups(
        &self,
        platform: Platform,
        channel: &str,
        user: &str,
        candidates: &[String],
    ) -> Result<Vec<String>, ChatError> {
        match self.platforms.iter().find(|p| p.platform() == platform) {
            Some(adapter) => adapter.member_groups(channel, user, candidates).await,
            None => Ok(Vec::new()),
        }
    }
}

/// Why a chat adapter could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ChatSetupError {
    #[error(transparent)]
    Slack(#[from] slack::SlackSetupError),
    #[error(transparent)]
    Discord(#[from] discord::DiscordSetupError),
}

/// The outbound adapters whose tokens are set: Slack with `SLACK_BOT_TOKEN`
/// (at `slack.api_url`), Discord with `DISCORD_TOKEN` (at
/// `discord.api_url`). Building contacts no platform, so an unreachable one
/// never stops start-up.
pub fn configured_platforms(
    config: &Config,
    secrets: &Secrets,
) -> Result<Vec<Arc<dyn ChatPlatform>>, ChatSetupError> {
    let mut platforms: Vec<Arc<dyn ChatPlatform>> = Vec::new();
    let links = markup::LinkPolicy::from_config(config);
    if let Some(token) = &secrets.slack_bot_token {
        platforms.push(Arc::new(
            slack::SlackChat::new(&config.slack, token)?.with_links(links.clone()),
        ));
    }
    if let Some(token) = &secrets.discord_token {
        platforms.push(Arc::new(
            discord::DiscordChat::new(&config.discord, token)?.with_links(links.clone()),
        ));
    }
    Ok(platforms)
}

/// Something a person said or did in chat, already verified and typed.
///
/// `event_id` is the platform's own id for the delivery (Slack `event_id`
/// or `trigger_id`, Discord interaction or message id), for idempotent
/// handling of redeliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A slash command (`/medic health checkout`): `text` is what follows it.
    Command {
        platform: Platform,
        event_id: String,
        channel: String,
        user: String,
        command: String,
        text: String,
        thread: Option<MessageRef>,
        /// Where a delayed answer to this command may be sent.
        response_url: Option<String>,
    },
    /// The bot was mentioned in a channel; `text` has the mention removed.
    Mention {
        platform: Platform,
        event_id: String,
        channel: String,
        user: String,
        text: String,
        /// The thread to answer in (the mention's thread, or the mention).
        thread: Option<MessageRef>,
    },
    /// A direct message to the bot.
    DirectMessage {
        platform: Platform,
        event_id: String,
        channel: String,
        user: String,
        text: String,
        thread: Option<MessageRef>,
    },
    /// A reaction added to (or removed from) a message.
    Reaction {
        platform: Platform,
        event_id: String,
        channel: String,
        message_ts: String,
        user: String,
        /// Slack-style name (`white_check_mark`) or Unicode (`✅`).
        emoji: String,
        added: bool,
    },
    /// A button under a message was pressed.
    Button {
        platform: Platform,
        event_id: String,
        channel: String,
        message: MessageRef,
        user: String,
        action_id: String,
        value: String,
    },
}

impl ChatEvent {
    pub fn platform(&self) -> Platform {
        match self {
            Self::Command { platform, .. }
            | Self::Mention { platform, .. }
            | Self::DirectMessage { platform, .. }
            | Self::Reaction { platform, .. }
            | Self::Button { platform, .. } => *platform,
        }
    }

    pub fn event_id(&self) -> &str {
        match self {
            Self::Command { event_id, .. }
            | Self::Mention { event_id, .. }
            | Self::DirectMessage { event_id, .. }
            | Self::Reaction { event_id, .. }
            | Self::Button { event_id, .. } => event_id,
        }
    }

    pub fn user(&self) -> &str {
        match self {
            Self::Command { user, .. }
            | Self::Mention { user, .. }
            | Self::DirectMessage { user, .. }
            | Self::Reaction { user, .. }
            | Self::Button { user, .. } => user,
        }
    }

    /// The approval decision this event expresses, if any: an Approve /
    /// Reject button, or a ✅ / ❌ reaction. For reactions, check `added`:
    /// a removed ✅ is the same decision being withdrawn.
    pub fn decision(&self) -> Option<Choice> {
        match self {
            Self::Reaction { emoji, .. } => choice_from_emoji(emoji),
            Self::Button { action_id, .. } => choice_from_action_id(action_id),
            _ => None,
        }
    }
}

/// An immediate answer to an inbound event (a slash command's response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatReply {
    pub text: String,
    /// Only the person who asked sees it.
    pub ephemeral: bool,
}

impl ChatReply {
    pub fn ephemeral(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ephemeral: true,
        }
    }

    pub fn in_channel(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ephemeral: false,
        }
    }
}

/// Where inbound adapters deliver events. Implemented by the services.
///
/// Called at least once per platform delivery (platforms redeliver when an
/// acknowledgement is late): implementations must be idempotent on
/// [`ChatEvent::event_id`]. The returned reply, if any, is shown
/// immediately where the platform allows it (slash commands, Discord
/// interactions); routes wait for it only briefly.
#[async_trait]
pub trait ChatEventSink: Send + Sync {
    async fn handle(&self, event: ChatEvent) -> Option<ChatReply>;
}

/// How long an inbound route waits for a reply before acknowledging
/// without one (Slack and Discord both allow three seconds).
pub const REPLY_BUDGET: Duration = Duration::from_millis(2500);

/// What the chat routes need: the sink, the verification secrets, the
/// bot identities (to ignore the bot's own events) and the clock.
#[derive(Clone)]
pub struct ChatState {
    pub sink: Option<Arc<dyn ChatEventSink>>,
    pub slack: Option<slack::verify::SlackInbound>,
    pub discord: Option<discord::verify::DiscordInbound>,
    pub clock: Arc<dyn Clock>,
    /// Which URLs replies may link to.
    pub links: markup::LinkPolicy,
    bots: Arc<RwLock<Vec<BotIdentity>>>,
}

impl fmt::Debug for ChatState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatState")
            .field("sink", &self.sink.is_some())
            .field("slack", &self.slack.is_some())
            .field("discord", &self.discord.is_some())
            .finish()
    }
}

impl ChatState {
    /// Chat inbound from the configuration: a platform's routes verify
    /// requests only when its secret is set (otherwise they answer 503).
    pub fn from_config(config: &Config, secrets: &Secrets, clock: Arc<dyn Clock>) -> Self {
        let slack = secrets
            .slack_signing_secret
            .clone()
            .map(|secret| slack::verify::SlackInbound::new(secret, &config.slack));
        let discord = secrets.discord_public_key.as_ref().and_then(|key| {
            match discord::verify::DiscordInbound::new(key.expose(), &config.discord) {
                Ok(inbound) => Some(inbound),
                Err(e) => {
                    tracing::error!(error = %e, "DISCORD_PUBLIC_KEY is not a valid Ed25519 key; Discord interactions are off.");
                    None
                }
            }
        });
        Self {
            sink: None,
            slack,
            discord,
            clock,
            links: markup::LinkPolicy::from_config(config),
            bots: Arc::new(RwLock::new(Vec::new())),
        }
    }

    /// The same state handing events to `sink`.
    pub fn with_sink(mut self, sink: Arc<dyn ChatEventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Records who the bot is on a platform (from [`ChatPlatform::whoami`]),
    /// so its own messages and reactions are ignored.
    pub fn set_bot(&self, identity: BotIdentity) {
        let mut bots = self.bots.write().unwrap_or_else(|p| p.into_inner());
        bots.retain(|b| b.platform != identity.platform);
        bots.push(identity);
    }

    /// The bot's identity on `platform`, when known.
    pub fn bot(&self, platform: Platform) -> Option<BotIdentity> {
        self.bots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|b| b.platform == platform)
            .cloned()
    }

    /// Hands `event` to the sink and waits up to [`REPLY_BUDGET`] for a reply;
    /// the handling continues in the background past the budget.
    pub async fn dispatch(&self, event: ChatEvent) -> Option<ChatReply> {
        self.dispatch_within(event, REPLY_BUDGET).await
    }

    /// Like [`Self::dispatch`], waiting at most `budget` for the reply.
    pub async fn dispatch_within(&self, event: ChatEvent, budget: Duration) -> Option<ChatReply> {
        let Some(sink) = self.sink.clone() else {
            tracing::debug!(platform = %event.platform(), event_id = event.event_id(), "No chat sink; event dropped.");
            return None;
        };
        let handle = tokio::spawn(async move { sink.handle(event).await });
        match tokio::time::timeout(budget, handle).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Chat event handler panicked.");
                None
            }
            Err(_) => None,
        }
    }

    /// Hands `event` to the sink without waiting.
    pub fn dispatch_in_background(&self, event: ChatEvent) {
        if let Some(sink) = self.sink.clone() {
            tokio::spawn(async move {
                let _ = sink.handle(event).await;
            });
        } else {
            tracing::debug!(platform = %event.platform(), event_id = event.event_id(), "No chat sink; event dropped.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_and_buttons_map_to_decisions() {
        for approve in [
            "white_check_mark",
            ":white_check_mark:",
            "heavy_check_mark",
            "✅",
            "✔️",
        ] {
            assert_eq!(
                choice_from_emoji(approve),
                Some(Choice::Approve),
                "{approve}"
            );
        }
        for reject in ["x", ":x:", "❌"] {
            assert_eq!(choice_from_emoji(reject), Some(Choice::Reject), "{reject}");
        }
        assert_eq!(choice_from_emoji("thumbsup"), None);
        assert_eq!(
            choice_from_action_id("pipemedic_approve"),
            Some(Choice::Approve)
        );
        assert_eq!(
            choice_from_action_id("pipemedic_reject"),
            Some(Choice::Reject)
        );
        assert_eq!(choice_from_action_id("other"), None);
        let event = ChatEvent::Reaction {
            platform: Platform::Slack,
            event_id: "Ev1".into(),
            channel: "C1".into(),
            message_ts: "1.2".into(),
            user: "U1".into(),
            emoji: "x".into(),
            added: true,
        };
        assert_eq!(event.decision(), Some(Choice::Reject));
    }

    #[test]
    fn markdown_becomes_slack_mrkdwn() {
        assert_eq!(
            markup::to_slack(
                "**Run 8f1c** failed, see [logs](https://github.com/o/r/actions/runs/1) [x]",
                &markup::LinkPolicy::default()
            ),
            "*Run 8f1c* failed, see <https://github.com/o/r/actions/runs/1|logs> [x]"
        );
    }

    struct Slow;

    #[async_trait]
    impl ChatEventSink for Slow {
        async fn handle(&self, _event: ChatEvent) -> Option<ChatReply> {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Some(ChatReply::ephemeral("late"))
        }
    }

    fn command() -> ChatEvent {
        ChatEvent::Command {
            platform: Platform::Slack,
            event_id: "t1".into(),
            channel: "C1".into(),
            user: "U1".into(),
            command: "/medic".into(),
            text: "health".into(),
            thread: None,
            response_url: None,
        }
    }

    #[tokio::test]
    async fn a_slow_sink_does_not_hold_the_acknowledgement() {
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let state = ChatState::from_config(&Config::default(), &Secrets::default(), clock)
            .with_sink(Arc::new(Slow));
        let started = std::time::Instant::now();
        let budget = Duration::from_millis(50);
        assert_eq!(state.dispatch_within(command(), budget).await, None);
        assert!(started.elapsed() < Duration::from_secs(2));
        // Without a sink, events are dropped at once.
        let bare = ChatState::from_config(
            &Config::default(),
            &Secrets::default(),
            Arc::new(crate::clock::SystemClock),
        );
        assert_eq!(bare.dispatch(command()).await, None);
    }

    #[test]
    fn inbound_routes_need_their_secrets() {
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let none = ChatState::from_config(&Config::default(), &Secrets::default(), clock.clone());
        assert!(none.slack.is_none() && none.discord.is_none() && none.sink.is_none());
        let secrets = Secrets {
            slack_signing_secret: Some(crate::config::Secret::new("s")),
            discord_public_key: Some(crate::config::Secret::new("not hex")),
            ..Secrets::default()
        };
        let some = ChatState::from_config(&Config::default(), &secrets, clock);
        assert!(some.slack.is_some());
        assert!(some.discord.is_none(), "an invalid key turns Discord off");
        some.set_bot(BotIdentity {
            platform: Platform::Slack,
            user_id: "U1".into(),
            bot_id: None,
            name: "pipemedic".into(),
        });
        assert_eq!(some.bot(Platform::Slack).unwrap().user_id, "U1");
        assert!(some.bot(Platform::Discord).is_none());
    }

    #[test]
    fn platforms_are_built_for_the_tokens_that_are_set() {
        let none = configured_platforms(&Config::default(), &Secrets::default()).unwrap();
        assert!(none.is_empty());
        let secrets = Secrets {
            slack_bot_token: Some(crate::config::Secret::new("xoxb-1")),
            discord_token: Some(crate::config::Secret::new("d-1")),
            ..Secrets::default()
        };
        let both = configured_platforms(&Config::default(), &secrets).unwrap();
        let kinds: Vec<Platform> = both.iter().map(|p| p.platform()).collect();
        assert_eq!(kinds, [Platform::Slack, Platform::Discord]);
        let mut bad = Config::default();
        bad.discord.api_url = "discord.example".into();
        assert!(configured_platforms(&bad, &secrets).is_err());
    }

    #[test]
    fn only_rejections_are_permanent() {
        assert!(ChatError::RateLimited {
            retry_after: Duration::from_secs(3)
        }
        .is_retriable());
        assert!(ChatError::unavailable("502").is_retriable());
        assert!(!ChatError::rejected("channel_not_found").is_retriable());
    }
}
