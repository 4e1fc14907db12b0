//! The console adapter: a [`ChatPlatform`] that writes readable cards to a
//! writer (stdout in `pipemedic demo`, a [`SharedBuffer`] in tests), keeps
//! its messages in memory, and turns typed lines back into
//! [`ChatEvent`]s — `approve 3`, `reject`, `/medic health checkout`, or a
//! plain question. Like the other adapters it only translates; the services
//! decide what an approval means.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::{emoji, BotIdentity, ChatError, ChatEvent, ChatEventSink, ChatMessage, ChatPlatform};
use crate::domain::{Choice, MessageRef, Platform};

/// A cloneable in-memory writer, for tests.
#[derive(Debug, Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Everything written so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Chat on a terminal.
pub struct ConsoleChat {
    out: Mutex<Box<dyn Write + Send>>,
    messages: Mutex<Vec<(MessageRef, ChatMessage)>>,
    next_id: AtomicU64,
    next_event: AtomicU64,
}

impl std::fmt::Debug for ConsoleChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleChat").finish_non_exhaustive()
    }
}

impl ConsoleChat {
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self {
            out: Mutex::new(Box::new(out)),
            messages: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            next_event: AtomicU64::new(1),
        }
    }

    /// A console writing to standard output.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }

    /// A console writing to a buffer the caller can read.
    pub fn buffered() -> (Self, SharedBuffer) {
        let buffer = SharedBuffer::default();
        (Self::new(buffer.clone()), buffer)
    }

    /// Posted messages with their latest content, oldest first.
    pub fn messages(&self) -> Vec<(MessageRef, ChatMessage)> {
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn write(&self, text: &str) -> Result<(), ChatError> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| ChatError::unavailable(format!("console: {e}")))
    }

    /// Translates one typed line from `user` into an event:
    ///
    /// - `approve [N]` / `reject [N]` (or `y` / `n`): presses that button on
    ///   message `#N`, or on the latest message with buttons;
    /// - `/command text`: a slash command;
    /// - anything else: a direct message to the bot.
    pub fn parse_line(&self, line: &str, user: &str) -> Option<ChatEvent> {
        let line = line.trim();
        if line.is_empty() {
            return None;
        }
        let event_id = format!(
            "console-{}",
            self.next_event.fetch_add(1, Ordering::Relaxed)
        );
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default().to_ascii_lowercase();
        let decision = match first.as_str() {
            "approve" | "y" | "yes" => Some(Choice::Approve),
            "reject" | "n" | "no" => Some(Choice::Reject),
            other => super::choice_from_emoji(other),
        };
        if let Some(decision) = decision {
            let target = words.next().map(|w| w.trim_start_matches('#').to_string());
            if let Some(event) = self.press(decision, target.as_deref(), user, &event_id) {
                return Some(event);
            }
        }
        if let Some(command) = line.strip_prefix('/') {
            let (name, text) = command.split_once(' ').unwrap_or((command, ""));
            return Some(ChatEvent::Command {
                platform: Platform::Console,
                event_id,
                channel: "console".into(),
                user: user.into(),
                command: format!("/{name}"),
                text: text.trim().into(),
                thread: None,
                response_url: None,
            });
        }
        Some(ChatEvent::DirectMessage {
            platform: Platform::Console,
            event_id,
            channel: "console".into(),
            user: user.into(),
            text: line.into(),
            thread: None,
        })
    }

    fn press(
        &self,
        decision: Choice,
        target: Option<&str>,
        user: &str,
        event_id: &str,
    ) -> Option<ChatEvent> {
        let messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        let (message, content) = messages.iter().rev().find(|(r, m)| {
            target.is_none_or(|t| r.ts_or_id == t)
                && m.buttons.iter().any(|b| b.decision == decision)
        })?;
        let button = content.buttons.iter().find(|b| b.decision == decision)?;
        Some(ChatEvent::Button {
            platform: Platform::Console,
            event_id: event_id.to_string(),
            channel: message.channel.clone(),
            message: message.clone(),
            user: user.into(),
            action_id: super::action_id(decision).into(),
            value: button.value.clone(),
        })
    }

    /// Reads lines until the end of `input`, hands each event to `sink` and
    /// prints its reply (the demo's "approve by typing").
    pub async fn feed_lines<R: AsyncBufRead + Unpin>(
        &self,
        input: R,
        user: &str,
        sink: &dyn ChatEventSink,
    ) -> std::io::Result<()> {
        let mut lines = input.lines();
        while let Some(line) = lines.next_line().await? {
            let Some(event) = self.parse_line(&line, user) else {
                continue;
            };
            if let Some(reply) = sink.handle(event).await {
                let _ = self.write(&format!("  ↳ {}\n", plain(&reply.text)));
            }
        }
        Ok(())
    }
}

/// Chat markup as terminal text: emphasis dropped, escapes resolved.
fn plain(text: &str) -> String {
    super::markup::to_plain(text)
}

/// A card as text.
pub fn render(message: &ChatMessage, reference: &MessageRef) -> String {
    let mut out = format!(
        "┌─ #{} {} {}\n",
        reference.ts_or_id,
        message.severity.icon(),
        plain(&message.title)
    );
    if let Some(thread) = &reference.thread {
        out.push_str(&format!("│ (in reply to #{thread})\n"));
    }
    for line in message.text.lines() {
        out.push_str(&format!("│ {}\n", plain(line)));
    }
    for (name, value) in &message.fields {
        out.push_str(&format!("│ {}: {}\n", plain(name), plain(value)));
    }
    if let Some(url) = &message.image_url {
        out.push_str(&format!("│ image: {url}\n"));
    }
    if !message.buttons.is_empty() {
        let buttons: Vec<String> = message
            .buttons
            .iter()
            .map(|b| format!("[{}]", b.decision.label()))
            .collect();
        out.push_str(&format!(
            "│ {}  type `approve {id}` or `reject {id}`\n",
            buttons.join(" "),
            id = reference.ts_or_id
        ));
    }
    for link in &message.links {
        out.push_str(&format!("│ 🔗 {}: {}\n", plain(&link.label), link.url));
    }
    match &message.footer {
        Some(footer) => out.push_str(&format!("└─ {}\n", plain(footer))),
        None => out.push_str("└─\n"),
    }
    out
}

#[async_trait]
impl ChatPlatform for ConsoleChat {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    async fn post(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        message: &ChatMessage,
    ) -> Result<MessageRef, ChatError> {
        let reference = MessageRef {
            platform: Platform::Console,
            channel: channel.to_string(),
            ts_or_id: self.next_id.fetch_add(1, Ordering::Relaxed).to_string(),
            thread: thread.map(|t| t.thread_root().to_string()),
        };
        self.write(&render(message, &reference))?;
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((reference.clone(), message.clone()));
        Ok(reference)
    }

    async fn update(&self, message: &MessageRef, content: &ChatMessage) -> Result<(), ChatError> {
        {
            let mut messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
            let Some(slot) = messages
                .iter_mut()
                .find(|(r, _)| r.ts_or_id == message.ts_or_id)
            else {
                return Err(ChatError::rejected("message_not_found"));
            };
            slot.1 = content.clone();
        }
        self.write(&format!(
            "✎ #{} updated\n{}",
            message.ts_or_id,
            render(content, message)
        ))
    }

    async fn upload_png(
        &self,
        _channel: &str,
        thread: Option<&MessageRef>,
        filename: &str,
        bytes: Vec<u8>,
        title: &str,
    ) -> Result<(), ChatError> {
        let place = thread
            .map(|t| format!(" (in reply to #{})", t.thread_root()))
            .unwrap_or_default();
        self.write(&format!(
            "🖼  {title}: {filename}, {} bytes{place}\n",
            bytes.len()
        ))
    }

    async fn react(&self, message: &MessageRef, emoji_: &str) -> Result<(), ChatError> {
        self.write(&format!(
            "   #{} {}\n",
            message.ts_or_id,
            emoji::to_unicode(emoji_)
        ))
    }

    async fn post_ephemeral(
        &self,
        _channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), ChatError> {
        self.write(&format!("  (only {user}) {}\n", plain(text)))
    }

    async fn whoami(&self) -> Result<BotIdentity, ChatError> {
        Ok(BotIdentity {
            platform: Platform::Console,
            user_id: "pipemedic".into(),
            bot_id: None,
            name: "pipemedic".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ChatReply, Severity};

    #[test]
    fn links_are_lines() {
        let message = ChatMessage::new("t", Severity::Info, "x").links([crate::chat::ChatLink {
            label: "Dashboard".into(),
            url: "https://grafana.example/d/ci".into(),
        }]);
        let reference = MessageRef {
            platform: Platform::Console,
            channel: "c".into(),
            ts_or_id: "1".into(),
            thread: None,
        };
        assert!(
            render(&message, &reference).contains("│ 🔗 Dashboard: https://grafana.example/d/ci\n")
        );
    }

    fn alert() -> ChatMessage {
        ChatMessage::new(
            "checkout-service: plan ready",
            Severity::Warning,
            "**Retry** the Test stage",
        )
        .field("Risk", "low")
        .field(crate::chat::cards::inert("test_failure_rate"), "0.04")
        .button(Choice::Approve, "plan-7")
        .button(Choice::Reject, "plan-7")
        .footer("pipemedic")
    }

    #[tokio::test]
    async fn cards_are_written_readably_and_updated_in_place() {
        let (console, out) = ConsoleChat::buffered();
        let posted = console.post("ops", None, &alert()).await.unwrap();
        assert_eq!(posted.ts_or_id, "1");
        let text = out.contents();
        assert!(
            text.contains("┌─ #1 ⚠️ checkout-service: plan ready"),
            "{text}"
        );
        assert!(text.contains("│ Retry the Test stage"), "{text}");
        assert!(text.contains("│ Risk: low"), "{text}");
        // Field names are chat markup too: escapes resolved.
        assert!(text.contains("│ test_failure_rate: 0.04"), "{text}");
        assert!(
            text.contains("[Approve] [Reject]  type `approve 1` or `reject 1`"),
            "{text}"
        );

        let healed = ChatMessage::new("checkout-service: healed", Severity::Success, "");
        console.update(&posted, &healed).await.unwrap();
        assert_eq!(console.messages()[0].1, healed);
        console.react(&posted, "white_check_mark").await.unwrap();
        console
            .upload_png(
                "ops",
                Some(&posted),
                "chart.png",
                vec![1, 2, 3],
                "Failure rate",
            )
            .await
            .unwrap();
        let text = out.contents();
        assert!(text.contains("✎ #1 updated"), "{text}");
        assert!(text.contains("#1 ✅"), "{text}");
        assert!(
            text.contains("Failure rate: chart.png, 3 bytes (in reply to #1)"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn typed_lines_become_events() {
        let (console, _out) = ConsoleChat::buffered();
        console.post("ops", None, &alert()).await.unwrap();
        let approve = console.parse_line("approve 1", "demo").unwrap();
        assert_eq!(approve.decision(), Some(Choice::Approve));
        match &approve {
            ChatEvent::Button { value, message, .. } => {
                assert_eq!(value, "plan-7");
                assert_eq!(message.ts_or_id, "1");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            console.parse_line("reject", "demo").unwrap().decision(),
            Some(Choice::Reject)
        );
        match console
            .parse_line("/medic health checkout", "demo")
            .unwrap()
        {
            ChatEvent::Command { command, text, .. } => {
                assert_eq!(command, "/medic");
                assert_eq!(text, "health checkout");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            console.parse_line("why is it slow?", "demo"),
            Some(ChatEvent::DirectMessage { .. })
        ));
        assert_eq!(console.parse_line("   ", "demo"), None);
        // No message #9: the word is just text.
        assert!(matches!(
            console.parse_line("approve 9", "demo"),
            Some(ChatEvent::DirectMessage { .. })
        ));
    }

    struct Echo;

    #[async_trait]
    impl ChatEventSink for Echo {
        async fn handle(&self, event: ChatEvent) -> Option<ChatReply> {
            event
                .decision()
                .map(|d| ChatReply::ephemeral(format!("**{d:?}** recorded")))
        }
    }

    #[tokio::test]
    async fn fed_lines_reach_the_sink_and_replies_are_printed() {
        let (console, out) = ConsoleChat::buffered();
        console.post("ops", None, &alert()).await.unwrap();
        console
            .feed_lines(&b"\napprove 1\nhello\n"[..], "demo", &Echo)
            .await
            .unwrap();
        assert!(
            out.contents().contains("↳ Approve recorded"),
            "{}",
            out.contents()
        );
    }
}
