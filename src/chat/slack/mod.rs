//! Slack adapter: [`SlackChat`] implements [`ChatPlatform`] with the
//! `slack-morphism` Web API client, pointed at `slack.api_url`; [`verify`],
//! [`events`] turn Events API, slash command and interaction
//! requests into [`ChatEvent`](super::ChatEvent)s; [`socket`] receives the
//! same events over Socket Mode.
//!
//! It only translates: [`ChatMessage`] → Block Kit, Slack errors →
//! [`ChatError`] (429 with `Retry-After` → rate limited, 5xx and network →
//! unavailable, `ok:false` codes → rejected). It never retries on its own.

pub mod events;
pub mod socket;
pub mod verify;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::markup::{self, LinkPolicy};
use super::{emoji, truncate, BotIdentity, ChatError, ChatMessage, ChatPlatform};
use crate::config::{Secret, SlackConfig};
use crate::domain::{Choice, MessageRef, Platform};

/// The slack-morphism client type pipemedic uses (HTTPS, or plain HTTP for
/// a local stand-in).
pub type SlackHttpClient = SlackClient<SlackClientHyperHttpsConnector>;

/// `ok:false` codes that mean Slack itself failed, not the request.
const TRANSIENT_CODES: [&str; 4] = [
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// When Slack says `ratelimited` without a `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Longest wait for one Web API call before it counts as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn timed_out() -> ChatError {
    ChatError::unavailable(format!(
        "slack did not answer within {} s",
        CALL_TIMEOUT.as_secs()
    ))
}

/// Runs one Web API call with the timeout and classifies its failure.
async fn call<T>(
    request: impl std::future::Future<Output = slack_morphism::ClientResult<T>>,
) -> Result<T, ChatError> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(timed_out()),
    }
}

/// Why the Slack client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SlackSetupError {
    #[error("slack.api_url {0:?} is not a URL")]
    BadApiUrl(String),
}

/// Slack through the Web API, as the bot user.
#[derive(Clone)]
pub struct SlackChat {
    client: Arc<SlackHttpClient>,
    token: SlackApiToken,
    links: LinkPolicy,
}

impl fmt::Debug for SlackChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackChat").finish_non_exhaustive()
    }
}

/// A slack-morphism client whose base URL is `api_url` (HTTPS or HTTP).
pub fn http_client(api_url: &str) -> Result<SlackHttpClient, SlackSetupError> {
    let base = api_url.trim_end_matches('/');
    if url_is_invalid(base) {
        return Err(SlackSetupError::BadApiUrl(api_url.to_string()));
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let connector = SlackClientHyperConnector::from(https).with_slack_api_url(base);
    Ok(SlackClient::new(connector))
}

fn url_is_invalid(url: &str) -> bool {
    !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(' ')
}

impl SlackChat {
    /// A client for `config.api_url` acting with the bot token.
    pub fn new(config: &SlackConfig, bot_token: &Secret) -> Result<Self, SlackSetupError> {
        Ok(Self {
            client: Arc::new(http_client(&config.api_url)?),
            token: SlackApiToken::new(SlackApiTokenValue(bot_token.expose().to_string())),
            links: LinkPolicy::default(),
        })
    }

    /// The same client making live links only to what `links` allows.
    pub fn with_links(mut self, links: LinkPolicy) -> Self {
        self.links = links;
        self
    }

    /// The underlying client (Socket Mode shares it).
    pub fn client(&self) -> Arc<SlackHttpClient> {
        self.client.clone()
    }

    fn session(&self) -> SlackClientSession<'_, SlackClientHyperHttpsConnector> {
        self.client.open_session(&self.token)
    }
}

/// Classifies a slack-morphism error for the outbox.
pub fn classify(error: SlackClientError) -> ChatError {
    match error {
        SlackClientError::RateLimitError(e) => ChatError::RateLimited {
            retry_after: e.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        },
        SlackClientError::ApiError(e) if e.code == "ratelimited" => ChatError::RateLimited {
            retry_after: DEFAULT_RETRY_AFTER,
        },
        SlackClientError::ApiError(e) if TRANSIENT_CODES.contains(&e.code.as_str()) => {
            ChatError::unavailable(format!("slack answered {}", e.code))
        }
        SlackClientError::ApiError(e) => ChatError::rejected(e.code),
        SlackClientError::HttpError(e) if e.status_code.is_server_error() => {
            ChatError::unavailable(format!("slack answered HTTP {}", e.status_code.as_u16()))
        }
        SlackClientError::HttpError(e) if e.status_code.as_u16() == 429 => ChatError::RateLimited {
            retry_after: DEFAULT_RETRY_AFTER,
        },
        SlackClientError::HttpError(e) => {
            ChatError::rejected(format!("http_{}", e.status_code.as_u16()))
        }
        SlackClientError::ProtocolError(e) => {
            ChatError::unavailable(format!("unreadable answer from slack: {}", e.json_error))
        }
        other => ChatError::unavailable(format!("cannot reach slack: {}", short(&other))),
    }
}

/// The first line of an error, without response bodies.
fn short(error: &SlackClientError) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Renders a [`ChatMessage`] as Block Kit: header, text section, fields,
/// image, Approve/Reject actions and a context footer. Every piece of text
/// goes through [`markup::to_slack`] (or [`markup::to_plain`] for plain
/// text), so nothing in it can mention anyone or link off `links`.
pub fn blocks(message: &ChatMessage, links: &LinkPolicy) -> Vec<SlackBlock> {
    let mut blocks: Vec<SlackBlock> = Vec::new();
    let header = format!("{} {}", message.severity.icon(), plain(&message.title));
    blocks.push(
        SlackHeaderBlock::new(SlackBlockPlainText::new(truncate(&header, 150)).into()).into(),
    );
    if !message.text.is_empty() {
        blocks.push(
            SlackSectionBlock::new()
                .with_text(md(&truncate(&markup::to_slack(&message.text, links), 3000)))
                .into(),
        );
    }
    for chunk in message.fields.chunks(10) {
        let fields = chunk
            .iter()
            .map(|(name, value)| {
                md(&truncate(
                    &format!(
                        "*{}*\n{}",
                        markup::to_slack(name, links),
                        markup::to_slack(value, links)
                    ),
                    2000,
                ))
            })
            .collect();
        blocks.push(SlackSectionBlock::new().with_fields(fields).into());
    }
    if let Some(url) = message
        .image_url
        .as_deref()
        .filter(|u| links.allows(u))
        .and_then(|u| u.parse().ok())
    {
        blocks.push(
            SlackImageBlock::new(
                SlackImageUrlOrFile::ImageUrl { image_url: url },
                plain(&message.title),
            )
            .into(),
        );
    }
    if !message.buttons.is_empty() {
        let elements = message
            .buttons
            .iter()
            .map(|b| {
                let style = match b.decision {
                    Choice::Approve => SlackBlockButtonStyle::Primary,
                    Choice::Reject => SlackBlockButtonStyle::Danger,
                };
                SlackBlockButtonElement::new(
                    SlackBlockPlainText::new(b.decision.label().to_string()).into(),
                )
                .with_action_id(SlackActionId(super::action_id(b.decision).to_string()))
                .with_value(b.value.clone())
                .with_style(style)
                .into()
            })
            .collect();
        blocks.push(
            SlackActionsBlock::new(elements)
                .with_block_id(SlackBlockId("pipemedic_decision".into()))
                .into(),
        );
    }
    let link_buttons: Vec<SlackActionBlockElement> = message
        .links
        .iter()
        .filter_map(|l| Some((l, l.url.parse().ok()?)))
        .take(25)
        .enumerate()
        .map(|(i, (l, url))| {
            SlackBlockButtonElement::new(
                SlackBlockPlainText::new(truncate(&plain(&l.label), 75)).into(),
            )
            .with_action_id(SlackActionId(format!("pipemedic_link_{i}")))
            .with_url(url)
            .into()
        })
        .collect();
    if !link_buttons.is_empty() {
        blocks.push(
            SlackActionsBlock::new(link_buttons)
                .with_block_id(SlackBlockId("pipemedic_links".into()))
                .into(),
        );
    }
    if let Some(footer) = &message.footer {
        blocks.push(
            SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
                SlackBlockMarkDownText::new(truncate(&markup::to_slack(footer, links), 2000)),
            )])
            .into(),
        );
    }
    blocks
}

/// Markup as Slack `plain_text` (headers, alt text): no markers, and no
/// angle brackets that could read as a mention or link.
fn plain(markup: &str) -> String {
    markup::to_plain(markup)
        .replace('<', "\u{2039}")
        .replace('>', "\u{203A}")
}

fn md(text: &str) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text.to_string()))
}

/// The message's blocks, with its `text` (notifications, which Slack
/// also reads as `mrkdwn`) escaped the same way.
pub fn content(message: &ChatMessage, links: &LinkPolicy) -> SlackMessageContent {
    SlackMessageContent::new()
        .with_text(truncate(
            &markup::to_slack(&message.plain_text(), links),
            3000,
        ))
        .with_blocks(blocks(message, links))
}

fn thread_ts(thread: Option<&MessageRef>) -> Option<SlackTs> {
    thread.map(|t| SlackTs(t.thread_root().to_string()))
}

#[async_trait]
impl ChatPlatform for SlackChat {
    fn platform(&self) -> Platform {
        Platform::Slack
    }

    #[tracing::instrument(skip_all, fields(platform = "slack", channel = %channel))]
    async fn post(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        message: &ChatMessage,
    ) -> Result<MessageRef, ChatError> {
        let request = SlackApiChatPostMessageRequest::new(
            SlackChannelId(channel.into()),
            content(message, &self.links),
        )
        .opt_thread_ts(thread_ts(thread));
        let response = call(self.session().chat_post_message(&request)).await?;
        Ok(MessageRef {
            platform: Platform::Slack,
            channel: response.channel.0,
            ts_or_id: response.ts.0,
            thread: thread.map(|t| t.thread_root().to_string()),
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "slack", channel = %message.channel))]
    async fn update(&self, message: &MessageRef, content_: &ChatMessage) -> Result<(), ChatError> {
        let request = SlackApiChatUpdateRequest::new(
            SlackChannelId(message.channel.clone()),
            content(content_, &self.links),
            SlackTs(message.ts_or_id.clone()),
        );
        call(self.session().chat_update(&request)).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(platform = "slack", channel = %channel, bytes = bytes.len()))]
    async fn upload_png(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        filename: &str,
        bytes: Vec<u8>,
        title: &str,
    ) -> Result<(), ChatError> {
        let title = plain(title);
        let session = self.session();
        let target = call(
            session.get_upload_url_external(
                &SlackApiFilesGetUploadUrlExternalRequest::new(filename.to_string(), bytes.len())
                    .with_alt_txt(title.clone()),
            ),
        )
        .await?;
        call(
            session.files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
                target.upload_url,
                bytes,
                "image/png".to_string(),
            )),
        )
        .await?;
        let complete =
            SlackApiFilesCompleteUploadExternalRequest::new(vec![SlackApiFilesComplete::new(
                target.file_id,
            )
            .with_title(title)])
            .with_channel_id(SlackChannelId(channel.to_string()))
            .opt_thread_ts(thread_ts(thread));
        call(session.files_complete_upload_external(&complete)).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(platform = "slack", channel = %message.channel, emoji = %emoji_))]
    async fn react(&self, message: &MessageRef, emoji_: &str) -> Result<(), ChatError> {
        let request = SlackApiReactionsAddRequest::new(
            SlackChannelId(message.channel.clone()),
            SlackReactionName(emoji::to_name(emoji_)),
            SlackTs(message.ts_or_id.clone()),
        );
        match tokio::time::timeout(CALL_TIMEOUT, self.session().reactions_add(&request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(SlackClientError::ApiError(e))) if e.code == "already_reacted" => Ok(()),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(timed_out()),
        }
    }

    #[tracing::instrument(skip_all, fields(platform = "slack", channel = %channel, user = %user))]
    async fn post_ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), ChatError> {
        let request = SlackApiChatPostEphemeralRequest::new(
            SlackChannelId(channel.to_string()),
            SlackUserId(user.to_string()),
            SlackMessageContent::new().with_text(markup::to_slack(text, &self.links)),
        );
        call(self.session().chat_post_ephemeral(&request)).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(platform = "slack"))]
    async fn whoami(&self) -> Result<BotIdentity, ChatError> {
        let me = call(self.session().auth_test()).await?;
        Ok(BotIdentity {
            platform: Platform::Slack,
            user_id: me.user_id.0,
            bot_id: me.bot_id.map(|b| b.0),
            name: me.user.unwrap_or_default(),
        })
    }

    /// One `usergroups.users.list` call per candidate user group.
    #[tracing::instrument(skip_all, fields(platform = "slack", candidates = candidates.len()))]
    async fn member_groups(
        &self,
        _channel: &str,
        user: &str,
        candidates: &[String],
    ) -> Result<Vec<String>, ChatError> {
        let mut groups = Vec::new();
        for group in candidates {
            let request = SlackApiUserGroupsUsersListRequest::new(SlackUserGroupId(group.clone()));
            match call(self.session().usergroups_users_list(&request)).await {
                Ok(members) if members.users.iter().any(|u| u.0 == user) => {
                    groups.push(group.clone());
                }
                Ok(_) => {}
                // A group id Slack does not know (a configuration mistake)
                // has no members; the others still count.
                Err(ChatError::Rejected { code }) => {
                    tracing::warn!(group = %group, code = %code, "Slack refused to list a user group's members.");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(groups)
    }

    /// `users.info`: the profile's email, when the person has one and the
    /// app may read it (`users:read.email`).
    #[tracing::instrument(skip_all, fields(platform = "slack", user = %user))]
    async fn user_emails(&self, user: &str) -> Result<Vec<String>, ChatError> {
        let request = SlackApiUsersInfoRequest::new(SlackUserId(user.to_string()));
        let info = call(self.session().users_info(&request)).await?;
        Ok(info
            .user
            .profile
            .and_then(|p| p.email)
            .map(|e| e.0.trim().to_string())
            .filter(|e| !e.is_empty())
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Severity;

    #[test]
    fn links_are_url_buttons() {
        let message = ChatMessage::new("t", Severity::Info, "x").links([crate::chat::ChatLink {
            label: "Runbook".into(),
            url: "https://wiki.example/runbooks/checkout?a=1".into(),
        }]);
        let json = serde_json::to_value(blocks(&message, &LinkPolicy::default())).unwrap();
        let actions = json
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["block_id"] == "pipemedic_links")
            .unwrap();
        let button = &actions["elements"][0];
        assert_eq!(button["url"], "https://wiki.example/runbooks/checkout?a=1");
        assert_eq!(button["text"]["text"], "Runbook");
        assert_eq!(button["action_id"], "pipemedic_link_0");
    }

    #[test]
    fn cards_render_as_block_kit() {
        let message = ChatMessage::new(
            "checkout-service: test failures up",
            Severity::Critical,
            "**37** of 812 tests failed, see [run](https://github.com/o/r/actions/runs/8)",
        )
        .field("Pipeline", "checkout-service")
        .field("Stage", "Test")
        .button(Choice::Approve, "plan-7")
        .button(Choice::Reject, "plan-7")
        .footer("pipemedic");
        let json = serde_json::to_value(blocks(&message, &LinkPolicy::default())).unwrap();
        let types: Vec<&str> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["header", "section", "section", "actions", "context"]
        );
        assert_eq!(json[0]["text"]["type"], "plain_text");
        assert_eq!(
            json[1]["text"]["text"],
            "*37* of 812 tests failed, see <https://github.com/o/r/actions/runs/8|run>"
        );
        assert_eq!(json[2]["fields"][1]["text"], "*Stage*\nTest");
        assert_eq!(json[3]["elements"][0]["action_id"], "pipemedic_approve");
        assert_eq!(json[3]["elements"][0]["value"], "plan-7");
        assert_eq!(json[3]["elements"][0]["style"], "primary");
        assert_eq!(json[3]["elements"][1]["style"], "danger");
    }
}
