//! Which pipelines a place may see: everything for the CLI and HTTP (their
//! callers hold the store or the bearer token), and for a chat channel only
//! the pipelines routed to it (`[[chat.routes]]`, first match, then
//! `chat.default_route`), unless `chat.open_channels` lists the channel.
//! Direct messages see nothing unless `chat.open_channels` holds `"dm"`; the
//! local console (`pipemedic demo`) sees everything, like the CLI.
//!
//! Pure decisions over configuration; the query tools and the chat service
//! apply them.

use std::sync::Arc;

use crate::chat::routing::Routes;
use crate::config::ChatConfig;

/// The `chat.open_channels` entry that opens direct messages.
pub const DM_ENTRY: &str = "dm";

/// What a place may see.
#[derive(Debug, Clone, Default)]
pub enum Visibility {
    /// Every pipeline.
    #[default]
    All,
    /// Only the pipelines whose route is this platform and channel.
    Routed {
        routes: Arc<Routes>,
        platform: String,
        channel: String,
    },
    /// No pipeline (a direct message that is not opened).
    Nothing,
}

impl Visibility {
    /// What a chat channel sees. `direct` marks a direct message.
    pub fn for_chat(
        config: &ChatConfig,
        routes: Arc<Routes>,
        platform: &str,
        channel: &str,
        direct: bool,
    ) -> Self {
        let listed = |entry: &str| config.open_channels.iter().any(|c| c.trim() == entry);
        if platform == "console" {
            return Self::All;
        }
        if direct {
            return if listed(DM_ENTRY) {
                Self::All
            } else {
                Self::Nothing
            };
        }
        if listed(channel) {
            return Self::All;
        }
        Self::Routed {
            routes,
            platform: platform.to_string(),
            channel: channel.to_string(),
        }
    }

    /// Whether `pipeline` may be shown here.
    pub fn sees(&self, pipeline: &str) -> bool {
        match self {
            Self::All => true,
            Self::Nothing => false,
            Self::Routed {
                routes,
                platform,
                channel,
            } => routes
                .route(pipeline)
                .is_some_and(|r| &r.platform == platform && &r.channel == channel),
        }
    }

    /// Whether every pipeline is visible.
    pub fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }

    /// The refusal for a pipeline that is not visible here.
    pub fn refusal(pipeline: &str) -> String {
        format!(
            "`{}` is not visible here.",
            super::tools::clean_text(pipeline, 120)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChatRoute, DefaultRoute};

    fn config(open: &[&str]) -> ChatConfig {
        ChatConfig {
            routes: vec![ChatRoute {
                pipelines: "payments-*".into(),
                platform: "slack".into(),
                channel: "CPAY".into(),
                links: Vec::new(),
            }],
            default_route: DefaultRoute {
                platform: "slack".into(),
                channel: "CALL".into(),
                links: Vec::new(),
            },
            open_channels: open.iter().map(|s| s.to_string()).collect(),
            ..ChatConfig::default()
        }
    }

    #[test]
    fn channels_see_their_routes_unless_open() {
        let c = config(&["COPEN"]);
        let routes = Arc::new(Routes::from_config(&c));
        let pay = Visibility::for_chat(&c, routes.clone(), "slack", "CPAY", false);
        assert!(pay.sees("payments-api"));
        assert!(!pay.sees("checkout"));
        let all = Visibility::for_chat(&c, routes.clone(), "slack", "CALL", false);
        assert!(all.sees("checkout") && !all.sees("payments-api"));
        // Same channel id on another platform is another channel.
        let discord = Visibility::for_chat(&c, routes.clone(), "discord", "CPAY", false);
        assert!(!discord.sees("payments-api"));
        let open = Visibility::for_chat(&c, routes.clone(), "slack", "COPEN", false);
        assert!(open.sees("payments-api") && open.sees("checkout"));
        let dm = Visibility::for_chat(&c, routes.clone(), "slack", "D1", true);
        assert!(!dm.sees("checkout"));
        let console = Visibility::for_chat(&c, routes.clone(), "console", "x", false);
        assert!(console.is_all());
        let c = config(&["dm"]);
        let dm = Visibility::for_chat(&c, routes, "slack", "D1", true);
        assert!(dm.sees("payments-api"));
    }
}
