//! Which chat channel a pipeline's alerts go to (`[[chat.routes]]`, first
//! match wins, then `chat.default_route`), which links its alerts show, and
//! whether a silence covers it.
//! Pure matching over configuration and stored silences.

use globset::{Glob, GlobMatcher};

use crate::config::ChatConfig;
use crate::domain::LinkTemplate;
use crate::store::Silence;

/// A platform and channel to post to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub platform: String,
    pub channel: String,
}

/// The compiled routes.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<(GlobMatcher, Route)>,
    default: Option<Route>,
    /// The link templates of each route (same order), then the default's.
    links: Vec<Vec<LinkTemplate>>,
    default_links: Vec<LinkTemplate>,
}

impl Routes {
    /// Compiles the configured routes (validation already refused bad globs;
    /// any left are skipped).
    pub fn from_config(config: &ChatConfig) -> Self {
        let (routes, links) = config
            .routes
            .iter()
            .filter_map(|r| {
                let glob = Glob::new(&r.pipelines).ok()?.compile_matcher();
                Some((
                    (
                        glob,
                        Route {
                            platform: r.platform.clone(),
                            channel: r.channel.clone(),
                        },
                    ),
                    r.links.clone(),
                ))
            })
            .unzip();
        let d = &config.default_route;
        let default = (!d.platform.is_empty() && !d.channel.is_empty()).then(|| Route {
            platform: d.platform.clone(),
            channel: d.channel.clone(),
        });
        Self {
            routes,
            default,
            links,
            default_links: d.links.clone(),
        }
    }

    /// The link templates of the route `pipeline`'s alerts take (none when
    /// no route takes them).
    pub fn links(&self, pipeline: &str) -> &[LinkTemplate] {
        match self
            .routes
            .iter()
            .position(|(glob, _)| glob.is_match(pipeline))
        {
            Some(i) => self.links.get(i).map_or(&[], Vec::as_slice),
            None if self.default.is_some() => &self.default_links,
            None => &[],
        }
    }

    /// Where `pipeline`'s alerts go, if anywhere.
    pub fn route(&self, pipeline: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|(glob, _)| glob.is_match(pipeline))
            .map(|(_, route)| route)
            .or(self.default.as_ref())
    }
}

/// The silence among `silences` that covers `pipeline`, if any (a silence's
/// pipeline is a glob; an invalid glob matches only itself).
pub fn silenced_by<'a>(silences: &'a [Silence], pipeline: &str) -> Option<&'a Silence> {
    silences.iter().find(|s| {
        s.pipeline == pipeline
            || Glob::new(&s.pipeline)
                .map(|g| g.compile_matcher().is_match(pipeline))
                .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChatRoute, DefaultRoute};

    #[test]
    fn first_matching_route_wins_then_the_default() {
        let config = ChatConfig {
            routes: vec![
                ChatRoute {
                    pipelines: "payments-*".into(),
                    platform: "slack".into(),
                    channel: "C1".into(),
                    links: Vec::new(),
                },
                ChatRoute {
                    pipelines: "*".into(),
                    platform: "discord".into(),
                    channel: "42".into(),
                    links: Vec::new(),
                },
            ],
            ..ChatConfig::default()
        };
        let routes = Routes::from_config(&config);
        assert_eq!(routes.route("payments-api").unwrap().channel, "C1");
        assert_eq!(routes.route("checkout").unwrap().platform, "discord");
        let none = Routes::from_config(&ChatConfig::default());
        assert_eq!(none.route("checkout"), None);
        let fallback = Routes::from_config(&ChatConfig {
            default_route: DefaultRoute {
                platform: "slack".into(),
                channel: "C9".into(),
                links: Vec::new(),
            },
            ..ChatConfig::default()
        });
        assert_eq!(fallback.route("x").unwrap().channel, "C9");
    }

    #[test]
    fn silences_match_globs() {
        let at = chrono::Utc::now();
        let s = |p: &str| Silence {
            id: 1,
            pipeline: p.into(),
            until: at,
            by: "U1".into(),
            at,
        };
        let silences = [s("payments-*"), s("exact")];
        assert!(silenced_by(&silences, "payments-api").is_some());
        assert!(silenced_by(&silences, "exact").is_some());
        assert!(silenced_by(&silences, "checkout").is_none());
    }
}
