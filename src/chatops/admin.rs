//! Changes to how a pipeline alerts — silence, unsilence, accept-baseline —
//! carried out and audited the same way from chat and from the admin API,
//! and who may make them from chat ([`ChatAdmins`]: `chat.admins`).
//!
//! It owns the rule, not the transport: chat commands and HTTP handlers
//! call these functions; neither writes silences or baseline resets itself.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::chat::GroupLookup;

use crate::domain::Platform;
use crate::store::{Store, StoreError};

/// Silences `pipeline` (a glob) until `until`; audited as `{via}.silence`.
/// Not idempotent: each call adds a silence (they overlap harmlessly).
pub async fn silence(
    store: &Store,
    pipeline: &str,
    until: DateTime<Utc>,
    actor: &str,
    via: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let mut tx = store.begin_write().await?;
    let id = tx.add_silence(pipeline, until, actor, now).await?;
    tx.commit_audited(
        now,
        &format!("{via}.silence"),
        &format!("pipeline/{pipeline}"),
        actor,
        &json!({"silence_id": id, "until": until, "via": via}),
    )
    .await?;
    Ok(id)
}

/// Ends the silences of `pipeline`; how many were in force. Idempotent.
pub async fn unsilence(
    store: &Store,
    pipeline: &str,
    actor: &str,
    via: &str,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut tx = store.begin_write().await?;
    let ended = tx.end_silences(pipeline, now).await?;
    tx.commit_audited(
        now,
        &format!("{via}.unsilence"),
        &format!("pipeline/{pipeline}"),
        actor,
        &json!({"ended": ended, "via": via}),
    )
    .await?;
    Ok(ended)
}

/// Declares the current level of `pipeline` (one metric, or all) normal;
/// the detector applies it. Audited as `{via}.accept_baseline`.
pub async fn accept_baseline(
    store: &Store,
    pipeline: &str,
    metric: Option<&str>,
    actor: &str,
    via: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let mut tx = store.begin_write().await?;
    let id = tx
        .request_baseline_reset(pipeline, metric, actor, now)
        .await?;
    tx.commit_audited(
        now,
        &format!("{via}.accept_baseline"),
        &format!("pipeline/{pipeline}"),
        actor,
        &json!({"reset_id": id, "metric": metric, "via": via}),
    )
    .await?;
    Ok(id)
}

/// Whether a person in chat may change how pipelines alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCheck {
    Allowed,
    /// Not an admin; the text says who is.
    Refused(String),
    /// The platform could not say which groups the person is in.
    Unknown(String),
}

/// `chat.admins`: who may `silence`, `unsilence` and `accept-baseline`
/// from chat. Entries are `slack:USER`, `discord:USER`, `console:NAME`,
/// `slack-group:ID` (a Slack user group), `discord-role:ID`, or
/// `group:NAME` (a group of `[approvals.groups]`, expanded to its
/// members). Empty: nobody may, in chat (the admin API still can).
#[derive(Debug, Clone, Default)]
pub struct ChatAdmins {
    entries: Vec<String>,
    lookup: GroupLookup,
}

impl ChatAdmins {
    /// `entries` from `chat.admins`, `groups` from `[approvals.groups]`.
    pub fn new(
        entries: &[String],
        groups: &BTreeMap<String, Vec<String>>,
        lookup: GroupLookup,
    ) -> Self {
        let mut expanded = Vec::new();
        for entry in entries {
            match entry.strip_prefix("group:") {
                Some(name) => expanded.extend(groups.get(name).into_iter().flatten().cloned()),
                None => expanded.push(entry.clone()),
            }
        }
        expanded.sort();
        expanded.dedup();
        Self {
            entries: expanded,
            lookup,
        }
    }

    /// What the refusal names as needed.
    fn needed(&self) -> String {
        if self.entries.is_empty() {
            "nobody may change alerting from chat here until `chat.admins` names a group, role or person".to_string()
        } else {
            format!("it needs one of `chat.admins`: {}", self.entries.join(", "))
        }
    }

    /// Whether `user` on `platform` (acting in `channel`) is an admin:
    /// named as `platform:user`, or in one of the named Slack user groups
    /// or Discord roles as the platform says now. Read-only.
    pub async fn check(&self, platform: Platform, channel: &str, user: &str) -> AdminCheck {
        let key = format!("{platform}:{user}");
        if self.entries.contains(&key) {
            return AdminCheck::Allowed;
        }
        let prefix = match platform {
            Platform::Discord => "discord-role:".to_string(),
            other => format!("{other}-group:"),
        };
        let candidates: Vec<String> = self
            .entries
            .iter()
            .filter_map(|e| e.strip_prefix(prefix.as_str()))
            .map(str::to_string)
            .collect();
        if candidates.is_empty() {
            return AdminCheck::Refused(self.needed());
        }
        match self
            .lookup
            .member_groups(platform, channel, user, &candidates)
            .await
        {
            Ok(found) if !found.is_empty() => AdminCheck::Allowed,
            Ok(_) => AdminCheck::Refused(self.needed()),
            Err(e) => AdminCheck::Unknown(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn named_people_and_expanded_groups_are_admins() {
        let groups: BTreeMap<String, Vec<String>> =
            [("sre".to_string(), vec!["slack:U1".to_string()])].into();
        let admins = ChatAdmins::new(
            &["group:sre".to_string(), "discord:42".to_string()],
            &groups,
            GroupLookup::default(),
        );
        assert_eq!(
            admins.check(Platform::Slack, "C1", "U1").await,
            AdminCheck::Allowed
        );
        assert_eq!(
            admins.check(Platform::Discord, "C1", "42").await,
            AdminCheck::Allowed
        );
        let AdminCheck::Refused(why) = admins.check(Platform::Slack, "C1", "U2").await else {
            panic!("U2 is no admin");
        };
        assert!(why.contains("slack:U1"), "{why}");
        let none = ChatAdmins::new(&[], &groups, GroupLookup::default());
        let AdminCheck::Refused(why) = none.check(Platform::Slack, "C1", "U1").await else {
            panic!("empty chat.admins allows nobody");
        };
        assert!(why.contains("chat.admins"), "{why}");
    }
}
