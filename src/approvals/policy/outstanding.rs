//! What a pending request still lacks: for each step short of its
//! requirement, how many more approvals it needs and from whom. Pure, like
//! the rest of the policy; reminders say it in the thread.

use std::collections::BTreeMap;

use super::{
    is_member, not_allowed_reason, requirement, ApprovalSettings, Approver, Choice, RequestView,
    Requirement, Vote,
};

/// Approvals one requirement still needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outstanding {
    /// How many more distinct people must approve.
    pub missing: u32,
    /// Who may give them (`group:sre`, `user:U1`); empty: anyone who can
    /// see the plan.
    pub from: Vec<String>,
}

/// The approvals `request` still needs, given the votes counted so far
/// (one per person, the latest): one entry per distinct requirement not yet
/// met, the one furthest from being met first. Empty when nothing more is
/// needed.
pub fn outstanding(
    settings: &ApprovalSettings,
    request: &RequestView,
    counted: &[Vote],
) -> Vec<Outstanding> {
    let mut latest: BTreeMap<String, (&Approver, Choice)> = BTreeMap::new();
    for v in counted {
        latest.insert(v.approver.key(), (&v.approver, v.choice));
    }
    let approvers: Vec<&Approver> = latest
        .values()
        .filter(|(a, c)| {
            *c == Choice::Approve && not_allowed_reason(request, a, settings).is_none()
        })
        .map(|(a, _)| *a)
        .collect();
    let mut out: Vec<Outstanding> = Vec::new();
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
        if have >= required {
            continue;
        }
        let missing = required - have;
        match out.iter_mut().find(|o| o.from == from) {
            Some(o) => o.missing = o.missing.max(missing),
            None => out.push(Outstanding { missing, from }),
        }
    }
    out.sort_by_key(|o| std::cmp::Reverse(o.missing));
    out
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::*;
    use crate::domain::{ApprovalPolicy, RequestStatus, Risk, StepPolicy, Via};

    fn step(required: u32, from: &[&str]) -> StepPolicy {
        StepPolicy {
            step_no: 1,
            kind: "codepipeline.retry_stage".into(),
            risk: Risk::High,
            approval: ApprovalPolicy::Required {
                required,
                from: from.iter().map(|s| s.to_string()).collect(),
            },
            delay_s: None,
        }
    }

    fn vote(user: &str) -> Vote {
        Vote {
            approver: Approver::new("slack", user),
            event_id: format!("ev-{user}"),
            choice: Choice::Approve,
            via: Via::Reaction,
            at: Utc::now(),
        }
    }

    #[test]
    fn counts_what_is_missing_and_from_whom() {
        let mut settings = ApprovalSettings::default();
        settings
            .groups
            .insert("sre".into(), vec!["slack:U1".into(), "slack:U2".into()]);
        let request = RequestView {
            status: RequestStatus::Pending,
            steps: vec![step(2, &["group:sre"])],
            commit_author: None,
            author_ids: Vec::new(),
            expires_at: Utc::now() + Duration::minutes(30),
        };
        let none = outstanding(&settings, &request, &[]);
        assert_eq!(
            none,
            [Outstanding {
                missing: 2,
                from: vec!["group:sre".into()]
            }]
        );
        // Someone outside the group does not count; a member does.
        let one = outstanding(&settings, &request, &[vote("U9"), vote("U1")]);
        assert_eq!(one[0].missing, 1);
        let done = outstanding(&settings, &request, &[vote("U1"), vote("U2")]);
        assert!(done.is_empty());
    }
}
