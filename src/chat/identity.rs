//! Who a person deciding in chat is, for recognising a commit's author:
//! the emails the platform knows them by ([`ChatPlatform::user_emails`]:
//! the Slack profile's email; Discord has none) plus the emails and CI
//! logins `approvals.identities` lists for `platform:user`.
//!
//! [`IdentityLookup`] is the narrow port the approval flow uses; it never
//! decides anything about approvals. Answers from a platform are cached for
//! [`IDENTITY_TTL`] so a burst of votes makes one call per person; a failed
//! call is not cached.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ChatPlatform;
use crate::domain::Platform;

/// How long a platform's answer about a person is reused.
pub const IDENTITY_TTL: Duration = Duration::from_secs(300);

/// What is known about a person: their emails and logins (empty when
/// nothing is known) and, when the platform could not be asked, why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub ids: Vec<String>,
    /// The platform's lookup failed (its error, for the log); `ids` then
    /// holds only what the configuration says.
    pub lookup_failed: Option<String>,
}

type Cache = HashMap<String, (Instant, Vec<String>)>;

/// The identity lookup: configured identities plus the platforms' answers,
/// briefly cached. Cheap to clone.
#[derive(Clone, Default)]
pub struct IdentityLookup {
    platforms: Vec<Arc<dyn ChatPlatform>>,
    /// `platform:user` → emails and logins (`approvals.identities`).
    configured: Arc<BTreeMap<String, Vec<String>>>,
    cache: Arc<Mutex<Cache>>,
    ttl: Duration,
}

impl fmt::Debug for IdentityLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<Platform> = self.platforms.iter().map(|p| p.platform()).collect();
        f.debug_struct("IdentityLookup")
            .field("platforms", &names)
            .field("configured", &self.configured.len())
            .finish()
    }
}

impl IdentityLookup {
    /// `configured` is `approvals.identities` (`platform:user` → emails and
    /// logins).
    pub fn new(
        platforms: Vec<Arc<dyn ChatPlatform>>,
        configured: BTreeMap<String, Vec<String>>,
    ) -> Self {
        Self {
            platforms,
            configured: Arc::new(configured),
            cache: Arc::default(),
            ttl: IDENTITY_TTL,
        }
    }

    /// Who `user` on `platform` is: the configured emails and logins, then
    /// the platform's, without repeats (compared ignoring case).
    pub async fn identity(&self, platform: Platform, user: &str) -> Identity {
        let key = format!("{}:{user}", platform.as_str());
        let mut ids: Vec<String> = self
            .configured
            .get(&key)
            .into_iter()
            .flatten()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .collect();
        let mut lookup_failed = None;
        match self.ask_platform(platform, user, &key).await {
            Ok(found) => ids.extend(found),
            Err(e) => lookup_failed = Some(e),
        }
        let mut seen = std::collections::BTreeSet::new();
        ids.retain(|id| seen.insert(id.to_ascii_lowercase()));
        Identity { ids, lookup_failed }
    }

    async fn ask_platform(
        &self,
        platform: Platform,
        user: &str,
        key: &str,
    ) -> Result<Vec<String>, String> {
        let Some(adapter) = self.platforms.iter().find(|p| p.platform() == platform) else {
            return Ok(Vec::new());
        };
        if let Some(hit) = self.cached(key) {
            return Ok(hit);
        }
        let found = adapter.user_emails(user).await.map_err(|e| e.to_string())?;
        if let Ok(mut cache) = self.cache.lock() {
            let now = Instant::now();
            cache.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            cache.insert(key.to_string(), (now, found.clone()));
        }
        Ok(found)
    }

    fn cached(&self, key: &str) -> Option<Vec<String>> {
        let cache = self.cache.lock().ok()?;
        let (at, ids) = cache.get(key)?;
        (at.elapsed() < self.ttl).then(|| ids.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn configured_identities_are_known_without_a_platform() {
        let mut configured = BTreeMap::new();
        configured.insert(
            "discord:123456".to_string(),
            vec![
                "mona@example.com".to_string(),
                "octocat".to_string(),
                "Mona@Example.com".to_string(),
            ],
        );
        let lookup = IdentityLookup::new(Vec::new(), configured);
        let found = lookup.identity(Platform::Discord, "123456").await;
        assert_eq!(found.ids, ["mona@example.com", "octocat"]);
        assert_eq!(found.lookup_failed, None);
        let unknown = lookup.identity(Platform::Discord, "999").await;
        assert!(unknown.ids.is_empty());
        // The same user id on another platform is another person.
        assert!(lookup
            .identity(Platform::Slack, "123456")
            .await
            .ids
            .is_empty());
    }
}
