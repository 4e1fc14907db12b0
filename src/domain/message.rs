//! Where a message lives: the chat [`Platform`]s pipemedic speaks and a
//! [`MessageRef`] to a posted message. Incidents, the store and the chat
//! adapters share them. Pure data.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The chat platforms pipemedic speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Slack,
    Discord,
    Console,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Console => "console",
        }
    }

    /// The platform [`Platform::as_str`] names.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Slack, Self::Discord, Self::Console]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a posted message lives. `ts_or_id` is Slack's `ts` or Discord's
/// message id; `thread` is the thread root (`thread_ts` on Slack) when the
/// message sits in a thread.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageRef {
    pub platform: Platform,
    pub channel: String,
    pub ts_or_id: String,
    pub thread: Option<String>,
}

impl MessageRef {
    /// The id replies should hang from: the thread root if any, else the
    /// message itself.
    pub fn thread_root(&self) -> &str {
        self.thread.as_deref().unwrap_or(&self.ts_or_id)
    }
}
