//! Shared pieces of the chat tests: a sink that records what the routes
//! hand it, and fixture loading.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pipemedic::chat::{ChatEvent, ChatEventSink, ChatReply};

/// Records every event and answers commands with a fixed reply.
#[derive(Default)]
pub struct RecordingSink {
    events: Mutex<Vec<ChatEvent>>,
    pub reply: Option<ChatReply>,
}

impl RecordingSink {
    pub fn replying(reply: ChatReply) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new(Vec::new()),
            reply: Some(reply),
        })
    }

    pub fn events(&self) -> Vec<ChatEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (up to two seconds) until `n` events arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<ChatEvent> {
        for _ in 0..200 {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} chat events, got {:?}", self.events());
    }
}

#[async_trait]
impl ChatEventSink for RecordingSink {
    async fn handle(&self, event: ChatEvent) -> Option<ChatReply> {
        let is_command = matches!(event, ChatEvent::Command { .. });
        self.events.lock().unwrap().push(event);
        if is_command {
            self.reply.clone()
        } else {
            None
        }
    }
}

/// The bytes of `tests/fixtures/{path}`.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}
