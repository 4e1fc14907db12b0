//! The approval policy, as pure decisions: who may approve a remediation
//! request, how many distinct people it takes, and what one more vote does
//! to it ([`decide`]).
//!
//! This module owns the rules and what a vote does ([`Ruling`]); the
//! vocabulary ([`Approver`], [`Vote`], [`RequestStatus`], [`StepPolicy`])
//! is shared and lives in [`crate::domain`]. It must
//! not read the store, the clock or chat: callers hand it the request, the
//! votes already counted, the new vote and the time.
//!
//! The rules:
//!
//! - Each step of a plan carries its playbook's policy (`required` distinct
//!   people from `from`, or `none`); a request is approved when every
//!   step's policy is met, so the strictest step decides.
//! - `from` lists `user:ID` and `group:NAME`. A group is a group of the
//!   configuration (`[approvals.groups]`, whose members are
//!   `slack:USER`, `discord:USER`, `console:NAME`, `slack-group:ID`,
//!   `discord-role:ID`), or else a Slack user group or Discord role id the
//!   approver belongs to. An empty `from` means `approvals.default_from`,
//!   and when that is empty too, anyone who can see the plan.
//! - A person is `platform:user`; voting twice counts once.
//! - Unless `approvals.commit_author_may_approve`, the commit's author may
//!   neither approve nor reject. The author is known by the run's commit
//!   email and CI login ([`RequestView::author_ids`]); the voter by the
//!   emails and logins the chat lookup found ([`Approver::aliases`]: the
//!   Slack profile's email, `approvals.identities`). They match ignoring
//!   case. When the run names an email or login and the voter's identity
//!   is unknown, the vote is refused unless `approvals.unknown_identity`
//!   is `allow` ([`author_exclusion`]).
//! - Any reject from an allowed person rejects the request.
//! - `approval: none` runs without anyone only when
//!   `approvals.auto_remediation` is on and every step is low risk;
//!   otherwise it needs one approver.
//! - Expired and stale requests take no more votes.
//! - Decisions through the admin API (`pipemedic approve`, `via` cli or
//!   api) come from one token: however many names they give, they count
//!   as one person ([`admin_token_counted`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::{ApprovalsConfig, UnknownIdentity};
pub use crate::domain::{
    ApprovalPolicy, Approver, Choice, RequestStatus, Risk, StepPolicy, Via, Vote,
};

/// The approval settings of the configuration, in the form decisions use.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalSettings {
    /// Named groups and their members (`slack:U123`, `slack-group:S0SRE` ...).
    pub groups: BTreeMap<String, Vec<String>>,
    /// Who may approve a step whose policy names no one.
    pub default_from: Vec<String>,
    /// How long a request waits for approval.
    pub expiry: Duration,
    pub commit_author_may_approve: bool,
    pub auto_remediation: bool,
    /// What a vote of someone whose identity is unknown does when authors
    /// are excluded.
    pub unknown_identity: UnknownIdentity,
}

impl ApprovalSettings {
    pub fn from_config(config: &ApprovalsConfig) -> Self {
        let minutes = i64::try_from(config.expiry_minutes).unwrap_or(i64::MAX / 60_000);
        Self {
            groups: config.groups.clone(),
            default_from: config.default_from.clone(),
            expiry: Duration::minutes(minutes),
            commit_author_may_approve: config.commit_author_may_approve,
            auto_remediation: config.auto_remediation,
            unknown_identity: config.unknown_identity,
        }
    }
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self::from_config(&ApprovalsConfig::default())
    }
}

/// What [`decide`] needs to know about a request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestView {
    pub status: RequestStatus,
    pub steps: Vec<StepPolicy>,
    /// The author of the commit the run built, as the CI system named them.
    pub commit_author: Option<String>,
    /// Who the author is, to match voters against: the commit's email and
    /// the CI login of the person who pushed or started the run, as the run
    /// recorded them (empty when the payload had neither).
    pub author_ids: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

impl RequestView {
    /// The same view knowing the author by these emails and logins.
    pub fn with_author_ids(mut self, ids: Vec<String>) -> Self {
        self.author_ids = ids;
        self
    }
}

impl From<&crate::store::StoredRequest> for RequestView {
    fn from(request: &crate::store::StoredRequest) -> Self {
        Self {
            status: request.status,
            steps: request.steps.clone(),
            commit_author: request.commit_author.clone(),
            author_ids: Vec::new(),
            expires_at: request.expires_at,
        }
    }
}

/// What one step needs before it may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Nobody: automatic remediation is on and the whole plan is low risk.
    Automatic,
    /// `required` distinct people, each matching an entry of `from`
    /// (empty: anyone).
    People { required: u32, from: Vec<String> },
}

/// What a vote did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Ruling {
    /// Counted; more approvals are needed.
    Counted { approved_so_far: u32, required: u32 },
    /// This vote completed the approvals: the plan may run.
    Approved,
    /// An allowed person rejected the plan.
    Rejected,
    /// The vote has no effect; the reason is shown to the person.
    NotAllowed { reason: String },
    /// The request expired before this vote.
    Expired,
    /// A newer run superseded the request.
    Stale,
    /// The request was already decided (approved, rejected, running or done).
    AlreadyDecided { status: RequestStatus },
    /// The same event was delivered before; nothing changed.
    Duplicate,
}

impl Ruling {
    /// One line for chat.
    pub fn explain(&self) -> String {
        match self {
            Self::Counted {
                approved_so_far,
                required,
            } => format!("Approval counted ({approved_so_far} of {required})."),
            Self::Approved => "Approved; running the plan.".to_string(),
            Self::Rejected => "Rejected; nothing will run.".to_string(),
            Self::NotAllowed { reason } => format!("Your decision has no effect: {reason}"),
            Self::Expired => "This plan expired; nothing will run. Ask for a new plan.".to_string(),
            Self::Stale => {
                "A newer run superseded this plan; it can no longer be approved.".to_string()
            }
            Self::AlreadyDecided { status } => format!("This plan is already {status}."),
            Self::Duplicate => "Already recorded.".to_string(),
        }
    }
}

/// Whether a plan with these steps runs without anyone: automatic
/// remediation is on, every step says `approval: none` and is low risk.
pub fn is_automatic(steps: &[StepPolicy], settings: &ApprovalSettings) -> bool {
    settings.auto_remediation
        && !steps.is_empty()
        && steps
            .iter()
            .all(|s| s.approval == ApprovalPolicy::None && s.risk == Risk::Low)
}

/// What one step of a plan with `steps` needs.
pub fn requirement(
    step: &StepPolicy,
    steps: &[StepPolicy],
    settings: &ApprovalSettings,
) -> Requirement {
    if is_automatic(steps, settings) {
        return Requirement::Automatic;
    }
    match &step.approval {
        ApprovalPolicy::None => Requirement::People {
            required: 1,
            from: settings.default_from.clone(),
        },
        ApprovalPolicy::Required { required, from } => Requirement::People {
            required: (*required).max(1),
            from: if from.is_empty() {
                settings.default_from.clone()
            } else {
                from.clone()
            },
        },
    }
}

/// Whether `approver` matches one entry of a policy's `from`.
fn matches_entry(entry: &str, approver: &Approver, settings: &ApprovalSettings) -> bool {
    if let Some(id) = entry.strip_prefix("user:") {
        return id == approver.user || id == approver.key();
    }
    let Some(name) = entry.strip_prefix("group:") else {
        return false;
    };
    if approver.groups.iter().any(|g| g == name) {
        return true;
    }
    let Some(members) = settings.groups.get(name) else {
        return false;
    };
    let key = approver.key();
    let prefix = approver.group_member_prefix();
    members.iter().any(|m| {
        *m == key
            || m.strip_prefix(prefix.as_str())
                .is_some_and(|g| approver.groups.iter().any(|own| own == g))
    })
}

/// The platform group ids (Slack user groups, Discord roles) whose
/// membership could let someone on `platform` decide on `request`: those
/// named through configured groups (`slack-group:…`, `discord-role:…`) and
/// `group:NAME` entries no configured group defines. The chat adapter
/// checks which of them a person belongs to.
pub fn candidate_groups(
    request: &RequestView,
    settings: &ApprovalSettings,
    platform: &str,
) -> Vec<String> {
    let prefix = Approver::new(platform, "").group_member_prefix();
    let mut found = BTreeSet::new();
    for step in &request.steps {
        let Requirement::People { from, .. } = requirement(step, &request.steps, settings) else {
            continue;
        };
        for name in from.iter().filter_map(|e| e.strip_prefix("group:")) {
            match settings.groups.get(name) {
                Some(members) => found.extend(
                    members
                        .iter()
                        .filter_map(|m| m.strip_prefix(prefix.as_str()))
                        .map(str::to_string),
                ),
                None => {
                    found.insert(name.to_string());
                }
            }
        }
    }
    found.into_iter().collect()
}

fn is_member(from: &[String], approver: &Approver, settings: &ApprovalSettings) -> bool {
    from.is_empty() || from.iter().any(|e| matches_entry(e, approver, settings))
}

/// Whether `approver` wrote the commit: one of the author's names (the
/// CI's name, email, login) matches the user id, `platform:user` or one of
/// the person's emails and logins, ignoring case.
fn is_commit_author(request: &RequestView, approver: &Approver) -> bool {
    let own = [approver.user.clone(), approver.key()];
    request
        .commit_author
        .iter()
        .chain(&request.author_ids)
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .any(|a| {
            own.iter()
                .chain(&approver.aliases)
                .any(|x| a.eq_ignore_ascii_case(x.trim()))
        })
}

/// Why the commit's author rule keeps `approver` from deciding, if it
/// does: they are the author, or the run names the author by email or
/// login, the voter's identity is unknown (no alias) and
/// `approvals.unknown_identity` is `refuse`. None when authors may approve.
pub fn author_exclusion(
    request: &RequestView,
    approver: &Approver,
    settings: &ApprovalSettings,
) -> Option<String> {
    if settings.commit_author_may_approve {
        return None;
    }
    if is_commit_author(request, approver) {
        return Some("the author of the commit cannot approve or reject its remediation.".into());
    }
    let author_known = request.author_ids.iter().any(|a| !a.trim().is_empty());
    let voter_unknown = approver.aliases.iter().all(|a| a.trim().is_empty());
    if author_known && voter_unknown && settings.unknown_identity == UnknownIdentity::Refuse {
        return Some(format!(
            "pipemedic could not tell who {} is (no email from {} and no approvals.identities entry), so it cannot rule out that they wrote the commit; the decision was not counted.",
            approver.key(),
            approver.platform
        ));
    }
    None
}

/// Why `approver` may not decide on this request, if they may not.
pub fn not_allowed_reason(
    request: &RequestView,
    approver: &Approver,
    settings: &ApprovalSettings,
) -> Option<String> {
    if let Some(reason) = author_exclusion(request, approver, settings) {
        return Some(reason);
    }
    let mut wanted = BTreeSet::new();
    for step in &request.steps {
        match requirement(step, &request.steps, settings) {
            Requirement::Automatic => return None,
            Requirement::People { from, .. } => {
                if is_member(&from, approver, settings) {
                    return None;
                }
                wanted.extend(from);
            }
        }
    }
    let who: Vec<String> = wanted.into_iter().collect();
    Some(format!(
        "only {} may decide on this plan.",
        if who.is_empty() {
            "approvers".to_string()
        } else {
            who.join(", ")
        }
    ))
}

/// What `vote` does to `request`, given the votes already counted (one per
/// person, the latest; the new vote is not among them) at time `now`.
pub fn decide(
    settings: &ApprovalSettings,
    request: &RequestView,
    counted: &[Vote],
    vote: &Vote,
    now: DateTime<Utc>,
) -> Ruling {
    match request.status {
        RequestStatus::Pending => {}
        RequestStatus::Expired => return Ruling::Expired,
        RequestStatus::Stale => return Ruling::Stale,
        status => return Ruling::AlreadyDecided { status },
    }
    if now >= request.expires_at {
        return Ruling::Expired;
    }
    if let Some(reason) = not_allowed_reason(request, &vote.approver, settings) {
        return Ruling::NotAllowed { reason };
    }
    if vote.choice == Choice::Reject {
        return Ruling::Rejected;
    }
    // The latest choice of each person, this vote included.
    let mut latest: BTreeMap<String, (&Approver, Choice)> = BTreeMap::new();
    for v in counted.iter().chain(std::iter::once(vote)) {
        latest.insert(v.approver.key(), (&v.approver, v.choice));
    }
    let approvers: Vec<&Approver> = latest
        .values()
        .filter(|(a, c)| {
            *c == Choice::Approve && not_allowed_reason(request, a, settings).is_none()
        })
        .map(|(a, _)| *a)
        .collect();
    // The step furthest from its requirement decides what is reported.
    let mut shortest: Option<(u32, u32)> = None;
    for step in &request.steps {
        let Requirement::People { required, from } = requirement(step, &request.steps, settings)
        else {
            continue;
        };
        let have = approvers
            .iter()
            .filter(|a| is_member(&from, a, settings))
            .count();
        let have = u32::try_from(have).unwrap_or(u32::MAX);
        if have < required {
            let missing = required - have;
            if shortest.is_none_or(|(h, r)| r - h < missing) {
                shortest = Some((have, required));
            }
        }
    }
    match shortest {
        None => Ruling::Approved,
        Some((approved_so_far, required)) => Ruling::Counted {
            approved_so_far,
            required,
        },
    }
}

/// Decisions through the admin API (`via` cli or api) all come from one
/// credential, whatever name the operator gives: they count as one person.
/// An approval through it when another name's approval through it already
/// counts has no effect (the first name's vote stands); otherwise `None`
/// and [`decide`] rules as for anyone.
pub fn admin_token_counted(counted: &[Vote], vote: &Vote) -> Option<Ruling> {
    let by_token = |v: &Vote| matches!(v.via, Via::Cli | Via::Api);
    if !by_token(vote) || vote.choice != Choice::Approve {
        return None;
    }
    counted
        .iter()
        .find(|v| by_token(v) && v.choice == Choice::Approve && v.approver.user != vote.approver.user)
        .map(|earlier| Ruling::NotAllowed {
            reason: format!(
                "the admin token already approved this plan (as {}); it counts once, so another approval must come from chat.",
                earlier.approver.key()
            ),
        })
}

mod outstanding;

pub use outstanding::{outstanding, Outstanding};

#[cfg(test)]
mod tests;
