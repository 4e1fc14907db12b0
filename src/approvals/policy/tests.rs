//! Tests of the approval policy: who may approve, how many, exclusions,
//! expiry and risk, decided on plain values.

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
        author_ids: Vec::new(),
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

/// A request about a run whose payload named its author as GitHub does:
/// "Mona Lisa" <mona@example.com>, pushed by `octocat`.
fn github_request() -> RequestView {
    let mut r = request(vec![step(1, Risk::Low, from(1, &[]))]);
    r.commit_author = Some("Mona Lisa".into());
    r.author_ids = vec!["mona@example.com".into(), "octocat".into()];
    r
}

fn known(user: &str, ids: &[&str]) -> Vote {
    let mut v = approve(user);
    v.approver = v.approver.with_aliases(ids);
    v
}

#[test]
fn the_author_is_recognised_by_email_or_login_not_by_display_name() {
    let r = github_request();
    let s = ApprovalSettings::default();
    // The Slack user id never equals the display name; the email does.
    for own in [
        &["MONA@example.com"][..],
        &["octocat"],
        &["mona@work.example", "OctoCat"],
    ] {
        match decide(&s, &r, &[], &known("U0MONA", own), now()) {
            Ruling::NotAllowed { reason } => assert!(reason.contains("author"), "{reason}"),
            other => panic!("{own:?}: {other:?}"),
        }
    }
    assert_eq!(
        decide(&s, &r, &[], &known("U0DANA", &["dana@example.com"]), now()),
        Ruling::Approved
    );
    assert!(author_exclusion(&r, &known("U0DANA", &["dana@example.com"]).approver, &s).is_none());
}

#[test]
fn an_unknown_voter_is_refused_when_the_author_is_known_unless_allowed() {
    let r = github_request();
    let mut s = ApprovalSettings::default();
    match decide(&s, &r, &[], &approve("U0NOBODY"), now()) {
        Ruling::NotAllowed { reason } => {
            assert!(
                reason.contains("could not tell who slack:U0NOBODY is"),
                "{reason}"
            );
            assert!(reason.contains("approvals.identities"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // An earlier vote of someone unknown does not count either.
    assert_eq!(
        decide(
            &s,
            &request(vec![step(1, Risk::High, from(2, &[]))]).with_author_ids(r.author_ids.clone()),
            &[approve("U0NOBODY")],
            &known("U0DANA", &["dana@example.com"]),
            now()
        ),
        Ruling::Counted {
            approved_so_far: 1,
            required: 2
        }
    );
    // A run that names no email or login: nobody needs to be known.
    let mut no_ids = r.clone();
    no_ids.author_ids.clear();
    assert_eq!(
        decide(&s, &no_ids, &[], &approve("U0NOBODY"), now()),
        Ruling::Approved
    );
    // The switch lets unknown voters count; the author is still refused.
    s.unknown_identity = UnknownIdentity::Allow;
    assert_eq!(
        decide(&s, &r, &[], &approve("U0NOBODY"), now()),
        Ruling::Approved
    );
    assert!(matches!(
        decide(&s, &r, &[], &known("U0MONA", &["mona@example.com"]), now()),
        Ruling::NotAllowed { .. }
    ));
    // Authors allowed: identities do not matter.
    s.unknown_identity = UnknownIdentity::Refuse;
    s.commit_author_may_approve = true;
    assert_eq!(
        decide(&s, &r, &[], &approve("U0NOBODY"), now()),
        Ruling::Approved
    );
}
