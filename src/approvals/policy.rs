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
//!   neither approve nor reject.
//! - Any reject from an allowed person rejects the request.
//! - `approval: none` runs without anyone only when
//!   `approvals.auto_remediation` is on and every step is low risk;
//!   otherwise it needs one approver.
//! - Expired and stale requests take no more votes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::ApprovalsConfig;
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
    pub expires_at: DateTime<Utc>,
}

impl From<&crate::store::StoredRequest> for RequestView {
    fn from(request: &crate::store::StoredRequest) -> Self {
        Self {
            status: request.status,
            steps: request.steps.clone(),
            commit_author: request.commit_author.clone(),
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

/// Whether `approver` wrote the commit: the author matches the user id,
/// `platform:user` or one of the person's aliases, ignoring case.
fn is_commit_author(author: Option<&str>, approver: &Approver) -> bool {
    author.map(str::trim).is_some_and(|a| {
        !a.is_empty()
            && (a.eq_ignore_ascii_case(&approver.user)
                || a.eq_ignore_ascii_case(&approver.key())
                || approver
                    .aliases
                    .iter()
                    .any(|x| a.eq_ignore_ascii_case(x.trim())))
    })
}

/// Why `approver` may not decide on this request, if they may not.
pub fn not_allowed_reason(
    request: &RequestView,
    approver: &Approver,
    settings: &ApprovalSettings,
) -> Option<String> {
    if !settings.commit_author_may_approve
        && is_commit_author(request.commit_author.as_deref(), approver)
    {
        return Some("the author of the commit cannot approve or reject its remediation.".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn now() -> DateTime<Utc> {
        t("2026-11-25T10:00:00Z")
    }

    fn settings() -> ApprovalSettings {
        let mut s = ApprovalSettings::default();
        s.groups.insert(
            "sre".into(),
            vec![
                "slack:U1".into(),
                "slack:U2".into(),
                "discord:456".into(),
                "slack-group:S0SRE".into(),
                "discord-role:R9".into(),
            ],
        );
        s.groups.insert("dba".into(), vec!["slack:U7".into()]);
        s
    }

    fn step(no: u32, risk: Risk, approval: ApprovalPolicy) -> StepPolicy {
        StepPolicy {
            step_no: no,
            kind: "codepipeline.retry_stage".into(),
            risk,
            approval,
            delay_s: None,
        }
    }

    fn from(required: u32, from: &[&str]) -> ApprovalPolicy {
        ApprovalPolicy::Required {
            required,
            from: from.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    fn request(steps: Vec<StepPolicy>) -> RequestView {
        RequestView {
            status: RequestStatus::Pending,
            steps,
            commit_author: Some("alice".into()),
            expires_at: now() + Duration::minutes(30),
        }
    }

    fn vote(platform: &str, user: &str, choice: Choice) -> Vote {
        Vote {
            approver: Approver::new(platform, user),
            event_id: format!("ev-{platform}-{user}"),
            choice,
            via: Via::Reaction,
            at: now(),
        }
    }

    fn approve(user: &str) -> Vote {
        vote("slack", user, Choice::Approve)
    }

    #[test]
    fn candidate_groups_are_the_platforms_groups_the_policy_could_accept() {
        let r = request(vec![
            step(1, Risk::Low, from(1, &["group:sre", "user:U5"])),
            step(2, Risk::Low, from(1, &["group:S0ADHOC", "group:dba"])),
        ]);
        let s = settings();
        assert_eq!(candidate_groups(&r, &s, "slack"), ["S0ADHOC", "S0SRE"]);
        assert_eq!(candidate_groups(&r, &s, "discord"), ["R9", "S0ADHOC"]);
        let only_users = request(vec![step(1, Risk::Low, from(1, &["user:U5"]))]);
        assert!(candidate_groups(&only_users, &s, "slack").is_empty());
    }

    #[test]
    fn a_member_of_the_group_approves_a_low_risk_step() {
        let r = request(vec![step(1, Risk::Low, from(1, &["group:sre"]))]);
        assert_eq!(
            decide(&settings(), &r, &[], &approve("U1"), now()),
            Ruling::Approved
        );
    }

    #[test]
    fn someone_outside_the_group_is_not_allowed_and_told_why() {
        let r = request(vec![step(1, Risk::Low, from(1, &["group:sre"]))]);
        match decide(&settings(), &r, &[], &approve("U99"), now()) {
            Ruling::NotAllowed { reason } => assert!(reason.contains("group:sre"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A reject from someone not allowed has no effect either.
        assert!(matches!(
            decide(
                &settings(),
                &r,
                &[],
                &vote("slack", "U99", Choice::Reject),
                now()
            ),
            Ruling::NotAllowed { .. }
        ));
    }

    #[test]
    fn platform_groups_and_roles_count_through_the_configured_group() {
        let r = request(vec![step(1, Risk::Low, from(1, &["group:sre"]))]);
        let mut v = approve("U55");
        v.approver.groups = vec!["S0SRE".into()];
        assert_eq!(decide(&settings(), &r, &[], &v, now()), Ruling::Approved);
        let mut v = vote("discord", "777", Choice::Approve);
        v.approver.groups = vec!["R9".into()];
        assert_eq!(decide(&settings(), &r, &[], &v, now()), Ruling::Approved);
        // A Slack group id does not make a Discord member of the role.
        let mut v = vote("discord", "777", Choice::Approve);
        v.approver.groups = vec!["S0SRE".into()];
        assert!(matches!(
            decide(&settings(), &r, &[], &v, now()),
            Ruling::NotAllowed { .. }
        ));
        // Discord user ids by platform.
        assert_eq!(
            decide(
                &settings(),
                &r,
                &[],
                &vote("discord", "456", Choice::Approve),
                now()
            ),
            Ruling::Approved
        );
    }

    #[test]
    fn a_group_the_adapter_resolved_counts_directly() {
        let r = request(vec![step(1, Risk::Low, from(1, &["group:oncall"]))]);
        let mut v = approve("U55");
        v.approver.groups = vec!["oncall".into()];
        assert_eq!(decide(&settings(), &r, &[], &v, now()), Ruling::Approved);
    }

    #[test]
    fn users_are_named_by_id_or_platform_and_id() {
        let r = request(vec![step(1, Risk::Low, from(1, &["user:U3"]))]);
        assert_eq!(
            decide(&settings(), &r, &[], &approve("U3"), now()),
            Ruling::Approved
        );
        let r = request(vec![step(1, Risk::Low, from(1, &["user:discord:42"]))]);
        assert_eq!(
            decide(
                &settings(),
                &r,
                &[],
                &vote("discord", "42", Choice::Approve),
                now()
            ),
            Ruling::Approved
        );
        assert!(matches!(
            decide(&settings(), &r, &[], &approve("42"), now()),
            Ruling::NotAllowed { .. }
        ));
    }

    #[test]
    fn high_risk_defaults_to_two_distinct_people() {
        let r = request(vec![step(
            1,
            Risk::High,
            ApprovalPolicy::for_risk(Risk::High),
        )]);
        let first = approve("U1");
        assert_eq!(
            decide(&settings(), &r, &[], &first, now()),
            Ruling::Counted {
                approved_so_far: 1,
                required: 2
            }
        );
        // The same person again (a double click, or the other button) counts once.
        let mut again = approve("U1");
        again.event_id = "ev-2".into();
        assert_eq!(
            decide(&settings(), &r, std::slice::from_ref(&first), &again, now()),
            Ruling::Counted {
                approved_so_far: 1,
                required: 2
            }
        );
        assert_eq!(
            decide(&settings(), &r, &[first], &approve("U2"), now()),
            Ruling::Approved
        );
    }

    #[test]
    fn low_risk_defaults_to_one_person_from_anyone_or_the_default_group() {
        let r = request(vec![step(
            1,
            Risk::Low,
            ApprovalPolicy::for_risk(Risk::Low),
        )]);
        assert_eq!(
            decide(&settings(), &r, &[], &approve("U99"), now()),
            Ruling::Approved
        );
        let mut s = settings();
        s.default_from = vec!["group:sre".into()];
        assert!(matches!(
            decide(&s, &r, &[], &approve("U99"), now()),
            Ruling::NotAllowed { .. }
        ));
        assert_eq!(decide(&s, &r, &[], &approve("U2"), now()), Ruling::Approved);
    }

    #[test]
    fn every_step_must_be_satisfied_so_the_strictest_decides() {
        let r = request(vec![
            step(1, Risk::Low, from(1, &["group:sre"])),
            step(2, Risk::High, from(2, &["group:sre", "group:dba"])),
            step(3, Risk::Low, from(1, &["group:dba"])),
        ]);
        let s = settings();
        let u1 = approve("U1");
        assert_eq!(
            decide(&s, &r, &[], &u1, now()),
            Ruling::Counted {
                approved_so_far: 1,
                required: 2
            },
            "steps 2 and 3 each miss one; the first is reported"
        );
        let u2 = approve("U2");
        assert_eq!(
            decide(&s, &r, std::slice::from_ref(&u1), &u2, now()),
            Ruling::Counted {
                approved_so_far: 0,
                required: 1
            },
            "step 2 is met; step 3 still has none of its group"
        );
        assert_eq!(
            decide(&s, &r, std::slice::from_ref(&u1), &approve("U7"), now()),
            Ruling::Approved,
            "U1 (sre) + U7 (dba): step 1 has 1, step 2 has 2, step 3 has 1"
        );
    }

    #[test]
    fn the_commit_author_cannot_approve_unless_configured() {
        let r = request(vec![step(1, Risk::Low, from(1, &["group:sre"]))]);
        let mut s = settings();
        s.groups.get_mut("sre").unwrap().push("slack:alice".into());
        match decide(&s, &r, &[], &approve("alice"), now()) {
            Ruling::NotAllowed { reason } => assert!(reason.contains("author"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Case does not matter; platform:user is recognised too.
        let mut r2 = r.clone();
        r2.commit_author = Some("Slack:Alice".into());
        assert!(matches!(
            decide(&s, &r2, &[], &approve("alice"), now()),
            Ruling::NotAllowed { .. }
        ));
        // An alias the adapter resolved (the profile's email) is recognised.
        let mut r3 = r.clone();
        r3.commit_author = Some("alice@example.com".into());
        let mut v = approve("U1");
        v.approver = v.approver.with_aliases(&["Alice@Example.com"]);
        assert!(matches!(
            decide(&s, &r3, &[], &v, now()),
            Ruling::NotAllowed { .. }
        ));
        s.commit_author_may_approve = true;
        assert_eq!(
            decide(&s, &r, &[], &approve("alice"), now()),
            Ruling::Approved
        );
    }

    #[test]
    fn an_earlier_vote_by_the_author_does_not_count() {
        let r = request(vec![step(1, Risk::High, from(2, &[]))]);
        let counted = vec![approve("alice")];
        assert_eq!(
            decide(&settings(), &r, &counted, &approve("U1"), now()),
            Ruling::Counted {
                approved_so_far: 1,
                required: 2
            }
        );
    }

    #[test]
    fn any_reject_from_an_allowed_person_rejects() {
        let r = request(vec![step(1, Risk::High, from(2, &["group:sre"]))]);
        let counted = vec![approve("U1")];
        assert_eq!(
            decide(
                &settings(),
                &r,
                &counted,
                &vote("slack", "U2", Choice::Reject),
                now()
            ),
            Ruling::Rejected
        );
        // Changing one's mind: the person's latest choice is what counts.
        assert_eq!(
            decide(
                &settings(),
                &r,
                &counted,
                &vote("slack", "U1", Choice::Reject),
                now()
            ),
            Ruling::Rejected
        );
    }

    #[test]
    fn expired_requests_take_no_votes() {
        let r = request(vec![step(1, Risk::Low, from(1, &["group:sre"]))]);
        let at_expiry = r.expires_at;
        assert_eq!(
            decide(&settings(), &r, &[], &approve("U1"), at_expiry),
            Ruling::Expired
        );
        assert_eq!(
            decide(
                &settings(),
                &r,
                &[],
                &approve("U1"),
                at_expiry - Duration::seconds(1)
            ),
            Ruling::Approved
        );
        let mut marked = r.clone();
        marked.status = RequestStatus::Expired;
        assert_eq!(
            decide(&settings(), &marked, &[], &approve("U1"), now()),
            Ruling::Expired
        );
    }

    #[test]
    fn stale_requests_cannot_be_approved() {
        let mut r = request(vec![step(1, Risk::Low, from(1, &["group:sre"]))]);
        r.status = RequestStatus::Stale;
        assert_eq!(
            decide(&settings(), &r, &[], &approve("U1"), now()),
            Ruling::Stale
        );
    }

    #[test]
    fn decided_requests_take_no_more_votes() {
        for status in [
            RequestStatus::Approved,
            RequestStatus::Rejected,
            RequestStatus::Executing,
            RequestStatus::Done,
            RequestStatus::Failed,
        ] {
            let mut r = request(vec![step(1, Risk::Low, from(1, &["group:sre"]))]);
            r.status = status;
            assert_eq!(
                decide(&settings(), &r, &[], &approve("U1"), now()),
                Ruling::AlreadyDecided { status }
            );
        }
    }

    #[test]
    fn approval_none_is_automatic_only_when_enabled_and_all_low_risk() {
        let none_low = step(1, Risk::Low, ApprovalPolicy::None);
        let mut s = settings();
        assert!(!is_automatic(std::slice::from_ref(&none_low), &s));
        // Without automatic remediation it needs one approver (anyone here).
        let r = request(vec![none_low.clone()]);
        assert_eq!(
            decide(&s, &r, &[], &approve("U99"), now()),
            Ruling::Approved
        );

        s.auto_remediation = true;
        assert!(is_automatic(std::slice::from_ref(&none_low), &s));
        assert_eq!(
            requirement(&none_low, std::slice::from_ref(&none_low), &s),
            Requirement::Automatic
        );
        // One step that needs people makes the whole plan need people.
        let mixed = vec![
            none_low.clone(),
            step(2, Risk::Low, from(1, &["group:sre"])),
        ];
        assert!(!is_automatic(&mixed, &s));
        assert_eq!(
            requirement(&mixed[0], &mixed, &s),
            Requirement::People {
                required: 1,
                from: vec![]
            }
        );
        // A high-risk step is never automatic.
        let high = vec![step(1, Risk::High, ApprovalPolicy::None)];
        assert!(!is_automatic(&high, &s));
        assert!(!is_automatic(&[], &s));
    }

    #[test]
    fn statuses_and_choices_round_trip() {
        for s in [
            "pending",
            "approved",
            "rejected",
            "expired",
            "stale",
            "executing",
            "done",
            "failed",
        ] {
            assert_eq!(RequestStatus::parse(s).map(RequestStatus::as_str), Some(s));
        }
        assert_eq!(RequestStatus::parse("open"), None);
        assert_eq!(Choice::parse("approve"), Some(Choice::Approve));
        assert_eq!(Via::parse("button"), Some(Via::Button));
        assert_eq!(Via::parse("emoji"), None);
    }

    #[test]
    fn decisions_explain_themselves() {
        assert_eq!(
            Ruling::Counted {
                approved_so_far: 1,
                required: 2
            }
            .explain(),
            "Approval counted (1 of 2)."
        );
        assert!(Ruling::NotAllowed {
            reason: "only group:sre may decide on this plan.".into()
        }
        .explain()
        .contains("group:sre"));
        assert_eq!(
            serde_json::to_value(Ruling::Counted {
                approved_so_far: 1,
                required: 2
            })
            .unwrap(),
            serde_json::json!({"decision": "counted", "approved_so_far": 1, "required": 2})
        );
    }

    #[test]
    fn settings_come_from_the_configuration() {
        let s = ApprovalSettings::default();
        assert_eq!(s.expiry, Duration::minutes(30));
        assert!(!s.commit_author_may_approve);
        assert!(!s.auto_remediation);
    }
}
