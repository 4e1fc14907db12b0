//! The chat service: the [`ChatEventSink`] that carries out what people say
//! and do in chat. Commands (slash commands, mentions, direct messages) are
//! answered with the same numbers as the CLI; approve / reject reactions
//! and buttons on an incident's messages are stored once per platform event
//! and tied to the incident. Every stored action is audited. Answers that
//! are not immediate replies go through the durable outbox.
//!
//! Questions (`/medic ask …`, and mentions or direct messages that are no
//! command) are answered by the shared [`Asker`] in the thread they were
//! asked in (slash commands: in the channel), as a card. A channel sees
//! only the pipelines routed to it unless `chat.open_channels` lists it
//! ([`Visibility`]); `health`, `incidents` and `incident ID` apply the same
//! filter.
//!
//! It decides what a request means; it does not act on approvals: stored
//! decisions are handed to [`crate::healing`], which does. It never calls a
//! platform directly.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::admin::{self, AdminCheck, ChatAdmins};
use super::answers;
use super::commands::{self, Command};
use crate::ask::{Asker, Visibility};
use crate::chat::outbox::{self, OutboxPayload};
use crate::chat::routing::Routes;
use crate::chat::{cards, ChatEvent, ChatEventSink, ChatMessage, ChatReply, ChatState};
use crate::clock::Clock;
use crate::config::ChatConfig;
use crate::domain::Via;
use crate::domain::{MessageRef, Platform};
use crate::healing::{DecisionEvent, HealingService};
use crate::incidents::IncidentService;
use crate::store::{OutboxKind, Store, StoreError};

/// Carries out chat requests; install it with `ChatState::with_sink`.
pub struct ChatService {
    store: Store,
    clock: Arc<dyn Clock>,
    incidents: IncidentService,
    chat: ChatState,
    asker: Arc<Asker>,
    routes: Arc<Routes>,
    chat_config: ChatConfig,
    healing: Option<HealingService>,
    /// Who may change alerting from chat.
    admins: ChatAdmins,
}

/// What a command answers: text, and a card where the answer has one.
#[derive(Debug, Clone)]
pub struct CommandAnswer {
    pub text: String,
    pub card: Option<ChatMessage>,
}

impl From<String> for CommandAnswer {
    fn from(text: String) -> Self {
        Self { text, card: None }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub platform: Platform,
    pub channel: &'a str,
    pub user: &'a str,
    pub thread: Option<&'a MessageRef>,
    /// A direct message (or a slash command in one).
    pub direct: bool,
}

impl ChatService {
    /// `chat` supplies the bot identities (its own sink is not used);
    /// `asker` answers questions; `chat_config` holds the routes and open
    /// channels that decide what each channel sees; every stored approve /
    /// reject decision is handed to `healing`, when there is one.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        incidents: IncidentService,
        chat: ChatState,
        asker: Arc<Asker>,
        chat_config: &ChatConfig,
        healing: Option<HealingService>,
    ) -> Self {
        Self {
            store,
            clock,
            incidents,
            chat,
            asker,
            routes: Arc::new(Routes::from_config(chat_config)),
            chat_config: chat_config.clone(),
            healing,
            admins: ChatAdmins::new(
                &chat_config.admins,
                &std::collections::BTreeMap::new(),
                crate::chat::GroupLookup::default(),
            ),
        }
    }

    /// The same service checking `chat.admins` with these (group names
    /// from `[approvals.groups]`, group membership from the platforms).
    pub fn with_admins(mut self, admins: ChatAdmins) -> Self {
        self.admins = admins;
        self
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn incidents(&self) -> &IncidentService {
        &self.incidents
    }

    pub(super) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// What `origin` may see.
    pub fn visibility(&self, origin: &Origin<'_>) -> Visibility {
        // Slack direct-message channel ids start with D.
        let direct = origin.direct
            || (origin.platform == Platform::Slack && origin.channel.starts_with('D'));
        Visibility::for_chat(
            &self.chat_config,
            self.routes.clone(),
            origin.platform.as_str(),
            origin.channel,
            direct,
        )
    }

    /// Passes a stored decision on to the healing loop (a removed reaction
    /// is not a vote).
    async fn hand_on(&self, event: &ChatEvent, incident_id: i64) {
        let Some(healing) = &self.healing else {
            return;
        };
        let Some(choice) = event.decision() else {
            return;
        };
        let (channel, message_ts, via, button_value) = match event {
            ChatEvent::Reaction {
                channel,
                message_ts,
                added: true,
                ..
            } => (channel.clone(), message_ts.clone(), Via::Reaction, None),
            ChatEvent::Button {
                channel,
                message,
                value,
                ..
            } => (
                channel.clone(),
                message.ts_or_id.clone(),
                Via::Button,
                Some(value.clone()),
            ),
            _ => return,
        };
        healing
            .decided(DecisionEvent {
                incident_id,
                platform: event.platform(),
                channel,
                message_ts,
                user: event.user().to_string(),
                event_id: event.event_id().to_string(),
                choice,
                via,
                button_value,
            })
            .await;
    }

    fn is_bot(&self, platform: Platform, user: &str) -> bool {
        self.chat
            .bot(platform)
            .is_some_and(|b| b.user_id == user || b.bot_id.as_deref() == Some(user))
    }

    /// Carries out a command from `origin`; returns the answer.
    pub async fn run_command(
        &self,
        origin: &Origin<'_>,
        command: Command,
    ) -> Result<CommandAnswer, StoreError> {
        let now = self.clock.now();
        let (platform, channel, user, thread) =
            (origin.platform, origin.channel, origin.user, origin.thread);
        let actor = format!("{platform}:{user}");
        let visibility = self.visibility(origin);
        if let Command::Silence { pipeline, .. }
        | Command::Unsilence(pipeline)
        | Command::AcceptBaseline { pipeline, .. }
        | Command::ResumeAuto(pipeline) = &command
        {
            if visibility.sees(pipeline) {
                if let Some(refusal) = self.admin_refusal(origin, pipeline).await? {
                    return Ok(refusal.into());
                }
            }
        }
        Ok(match command {
            Command::Help => commands::HELP.to_string().into(),
            Command::Unknown(why) => format!("{why}\n\n{}", commands::HELP).into(),
            Command::Ask(question) => match self.asker.ask(&question, now, visibility).await {
                Ok(answer) => CommandAnswer {
                    text: crate::chat::markup::prose(&answer.answer),
                    card: Some(answers::ask_card(&answer)),
                },
                Err(crate::ask::AskError::EmptyQuestion) => {
                    "Ask a question, e.g. `ask how is checkout-service doing?`"
                        .to_string()
                        .into()
                }
                Err(crate::ask::AskError::Store(e)) => return Err(e),
            },
            Command::Health(Some(pipeline)) if !visibility.sees(&pipeline) => {
                Visibility::refusal(&pipeline).into()
            }
            Command::Health(Some(pipeline)) => {
                let open = self.store.count_active_incidents(&pipeline).await?;
                match crate::health::pipeline_health(&self.store, &pipeline, now, open).await? {
                    None => format!("No runs stored for `{pipeline}`.").into(),
                    Some(health) => {
                        self.queue_health_chart(platform, channel, thread, &pipeline)
                            .await?;
                        answers::health_text(&health).into()
                    }
                }
            }
            Command::Health(None) => {
                let pipelines: Vec<String> = self
                    .store
                    .pipelines()
                    .await?
                    .into_iter()
                    .filter(|p| visibility.sees(p))
                    .collect();
                if pipelines.is_empty() {
                    if visibility.is_all() {
                        "No runs stored yet.".to_string().into()
                    } else {
                        "No pipelines are visible here.".to_string().into()
                    }
                } else {
                    let mut parts = Vec::new();
                    for p in pipelines.iter().take(20) {
                        let open = self.store.count_active_incidents(p).await?;
                        if let Some(h) =
                            crate::health::pipeline_health(&self.store, p, now, open).await?
                        {
                            parts.push(answers::health_text(&h));
                        }
                    }
                    parts.join("\n\n").into()
                }
            }
            Command::Incidents => {
                let visible: Vec<_> = self
                    .store
                    .incidents(true, None, 500)
                    .await?
                    .into_iter()
                    .filter(|i| visibility.sees(&i.pipeline))
                    .take(20)
                    .collect();
                cards::incident_list(&visible).into()
            }
            Command::Incident(id) => match self.store.incident(id).await? {
                Some(i) if visibility.sees(&i.pipeline) => cards::incident_detail(&i).into(),
                Some(_) => format!("Incident #{id} is not visible here.").into(),
                None => format!("No incident #{id}.").into(),
            },
            // Changing how another team's pipeline alerts is as much out
            // of bounds as reading it.
            Command::Silence { pipeline, .. }
            | Command::Unsilence(pipeline)
            | Command::AcceptBaseline { pipeline, .. }
            | Command::StopAuto(pipeline)
            | Command::ResumeAuto(pipeline)
                if !visibility.sees(&pipeline) =>
            {
                Visibility::refusal(&pipeline).into()
            }
            Command::Silence { pipeline, duration } => {
                let until = now + duration;
                admin::silence(&self.store, &pipeline, until, &actor, "chat", now).await?;
                format!(
                    "Silenced `{pipeline}` until {}: its alerts are recorded but not posted.",
                    until.format("%Y-%m-%d %H:%M UTC")
                )
                .into()
            }
            Command::StopAuto(pipeline) => {
                let fresh = super::autonomy::stop_automatic(
                    &self.store,
                    &pipeline,
                    &actor,
                    &format!("{platform} command"),
                    now,
                )
                .await?;
                super::autonomy::stopped_text(&pipeline, user, fresh).into()
            }
            Command::ResumeAuto(pipeline) => {
                let resumed = super::autonomy::resume_automatic(
                    &self.store,
                    &pipeline,
                    &actor,
                    &format!("{platform} command"),
                    now,
                )
                .await?;
                if resumed {
                    format!(
                        "Fixes that earned autonomy may run on `{pipeline}` on their own again."
                    )
                    .into()
                } else {
                    format!("Automatic runs on `{pipeline}` were not stopped.").into()
                }
            }
            Command::Unsilence(pipeline) => {
                let ended = admin::unsilence(&self.store, &pipeline, &actor, "chat", now).await?;
                if ended == 0 {
                    format!("`{pipeline}` was not silenced.").into()
                } else {
                    format!("`{pipeline}` is no longer silenced.").into()
                }
            }
            Command::AcceptBaseline { pipeline, metric } => {
                admin::accept_baseline(
                    &self.store,
                    &pipeline,
                    metric.as_deref(),
                    &actor,
                    "chat",
                    now,
                )
                .await?;
                match metric {
                    Some(m) => {
                        format!("Noted: `{m}` of `{pipeline}` has a new normal from now on.").into()
                    }
                    None => format!("Noted: `{pipeline}` has a new normal from now on.").into(),
                }
            }
        })
    }

    /// Why `origin` may not change how `pipeline` alerts, as the polite
    /// answer, or `None` when they may (`chat.admins`). A refusal is
    /// audited as `chat.refused`, with what was needed.
    async fn admin_refusal(
        &self,
        origin: &Origin<'_>,
        pipeline: &str,
    ) -> Result<Option<String>, StoreError> {
        let why = match self
            .admins
            .check(origin.platform, origin.channel, origin.user)
            .await
        {
            AdminCheck::Allowed => return Ok(None),
            AdminCheck::Refused(why) => why,
            AdminCheck::Unknown(e) => {
                format!("the platform could not say which groups you are in just now ({e}); please try again")
            }
        };
        let now = self.clock.now();
        let actor = format!("{}:{}", origin.platform, origin.user);
        let tx = self.store.begin_write().await?;
        tx.commit_audited(
            now,
            "chat.refused",
            &format!("pipeline/{pipeline}"),
            &actor,
            &json!({"channel": origin.channel, "needs": why}),
        )
        .await?;
        tracing::info!(platform = %origin.platform, user = %origin.user, pipeline, "Chat admin command refused.");
        Ok(Some(format!(
            "Sorry, only pipemedic admins may silence, unsilence, accept a baseline or resume automatic runs from chat: {why}. Please ask one of them."
        )))
    }

    /// Queues the duration chart of `pipeline` where the question was asked.
    async fn queue_health_chart(
        &self,
        platform: Platform,
        channel: &str,
        thread: Option<&MessageRef>,
        pipeline: &str,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let config = self.incidents.config().clone();
        let title = format!("{pipeline} duration_s");
        let Some((png, band)) = crate::incidents::chart_png(
            &self.store,
            pipeline,
            "duration_s",
            now,
            None,
            None,
            &title,
            &config,
        )
        .await
        else {
            return Ok(());
        };
        let payload = OutboxPayload::png(
            "health.png",
            &format!(
                "{pipeline}: duration, recent history; shaded: {}",
                band.describe()
            ),
            &png,
            thread.cloned(),
        );
        let mut tx = self.store.begin_write().await?;
        outbox::queue(
            &mut tx,
            None,
            platform.as_str(),
            channel,
            OutboxKind::Upload,
            &payload,
            now,
        )
        .await?;
        tx.commit().await?;
        self.incidents.signal().notify();
        Ok(())
    }

    /// A mention, direct message or `/medic ask`: answered through the
    /// outbox in its thread (or the channel), once per platform event.
    async fn answer_message(
        &self,
        event_id: &str,
        origin: &Origin<'_>,
        command: Command,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let platform = origin.platform;
        let mut tx = self.store.begin_write().await?;
        let fresh = tx
            .claim_event(&format!("chat:{platform}"), event_id, now)
            .await?;
        tx.commit().await?;
        if !fresh {
            return Ok(());
        }
        let answer = self.run_command(origin, command).await?;
        let message = answer.card.unwrap_or_else(|| {
            ChatMessage::new("pipemedic", crate::chat::Severity::Info, answer.text)
        });
        let mut tx = self.store.begin_write().await?;
        let kind = if origin.thread.is_some() {
            OutboxKind::ThreadReply
        } else {
            OutboxKind::Post
        };
        outbox::queue(
            &mut tx,
            None,
            platform.as_str(),
            origin.channel,
            kind,
            &OutboxPayload::message(message, origin.thread.cloned()),
            now,
        )
        .await?;
        tx.commit().await?;
        self.incidents.signal().notify();
        Ok(())
    }

    /// A reaction or button: stored once, tied to its incident. Returns the
    /// incident id when it was stored now.
    pub async fn record_decision(&self, event: &ChatEvent) -> Result<Option<i64>, StoreError> {
        let Some(decision) = event.decision() else {
            return Ok(None);
        };
        let platform = event.platform();
        if self.is_bot(platform, event.user()) {
            tracing::debug!(%platform, event_id = event.event_id(), "The bot's own reaction ignored.");
            return Ok(None);
        }
        let (message, via, added) = match event {
            ChatEvent::Reaction {
                channel,
                message_ts,
                added,
                ..
            } => (
                MessageRef {
                    platform,
                    channel: channel.clone(),
                    ts_or_id: message_ts.clone(),
                    thread: None,
                },
                Via::Reaction,
                *added,
            ),
            ChatEvent::Button { message, .. } => (message.clone(), Via::Button, true),
            _ => return Ok(None),
        };
        let Some(incident_id) = self
            .store
            .incident_by_message(platform.as_str(), &message.channel, &message.ts_or_id)
            .await?
        else {
            tracing::debug!(%platform, event_id = event.event_id(), "Decision on a message that is no incident's; ignored.");
            return Ok(None);
        };
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let stored = tx
            .record_decision(
                incident_id,
                platform.as_str(),
                event.event_id(),
                event.user(),
                decision,
                via,
                &message,
                added,
                now,
            )
            .await?;
        if !stored {
            return Ok(None);
        }
        tx.commit_audited(
            now,
            "chat.decision",
            &format!("incident/{incident_id}"),
            &format!("{platform}:{}", event.user()),
            &json!({"decision": decision, "via": via.as_str(), "added": added,
                    "event_id": event.event_id(), "message": message}),
        )
        .await?;
        tracing::info!(%platform, incident_id, decision = ?decision, added, "Chat decision recorded.");
        Ok(Some(incident_id))
    }

    async fn handle_inner(&self, event: ChatEvent) -> Result<Option<ChatReply>, StoreError> {
        match &event {
            ChatEvent::Command {
                platform,
                event_id,
                channel,
                user,
                text,
                thread,
                ..
            } => {
                let origin = Origin {
                    platform: *platform,
                    channel,
                    user,
                    thread: thread.as_ref(),
                    direct: false,
                };
                let command = commands::parse(text);
                if let Command::Ask(_) = &command {
                    // A model may take longer than a slash command may wait:
                    // the answer is posted in the channel through the outbox.
                    self.answer_message(event_id, &origin, command).await?;
                    return Ok(Some(ChatReply::ephemeral(
                        "Looking into it; the answer will be posted here.",
                    )));
                }
                // Help is for the one who asked; answers are for the channel.
                let ephemeral = matches!(command, Command::Help | Command::Unknown(_));
                let answer = self.run_command(&origin, command).await?;
                Ok(Some(if ephemeral {
                    ChatReply::ephemeral(answer.text)
                } else {
                    ChatReply::in_channel(answer.text)
                }))
            }
            ChatEvent::Mention {
                platform,
                event_id,
                channel,
                user,
                text,
                thread,
            }
            | ChatEvent::DirectMessage {
                platform,
                event_id,
                channel,
                user,
                text,
                thread,
            } => {
                if self.is_bot(*platform, user) {
                    return Ok(None);
                }
                let origin = Origin {
                    platform: *platform,
                    channel,
                    user,
                    thread: thread.as_ref(),
                    direct: matches!(event, ChatEvent::DirectMessage { .. }),
                };
                self.answer_message(event_id, &origin, commands::parse_message(text))
                    .await?;
                Ok(None)
            }
            ChatEvent::Reaction { .. } => {
                if let Some(id) = self.record_decision(&event).await? {
                    self.hand_on(&event, id).await;
                }
                Ok(None)
            }
            ChatEvent::Button {
                action_id, value, ..
            } if action_id == crate::chat::STOP_AUTOMATIC_ACTION_ID => {
                self.stop_button(&event, value).await
            }
            ChatEvent::Button { .. } => {
                let Some(id) = self.record_decision(&event).await? else {
                    return Ok(None);
                };
                self.hand_on(&event, id).await;
                Ok(Some(ChatReply::ephemeral(format!(
                    "Recorded for incident #{id}."
                ))))
            }
        }
    }
}

#[async_trait]
impl ChatEventSink for ChatService {
    async fn handle(&self, event: ChatEvent) -> Option<ChatReply> {
        let platform = event.platform();
        let event_id = event.event_id().to_string();
        match self.handle_inner(event).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::error!(%platform, event_id, error = %e, "Cannot handle a chat event.");
                Some(ChatReply::ephemeral(
                    "Sorry, pipemedic could not do that just now; please try again.",
                ))
            }
        }
    }
}
