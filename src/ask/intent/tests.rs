//! Unit tests for the question parser.

use super::*;

fn now() -> DateTime<Utc> {
    // A Wednesday.
    "2026-11-25T12:00:00Z".parse().unwrap()
}

fn known() -> Vec<String> {
    [
        "checkout-service",
        "checkout-web",
        "payments",
        "search-indexer",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn intent(q: &str) -> Intent {
    match parse(q, &known(), now()) {
        Parsed::Intent(i) => i,
        other => panic!("{q}: {other:?}"),
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn health_questions_name_their_pipeline() {
    for q in [
        "how is checkout-service doing this week?",
        "helth of checkout-service",
        "how's chekout-service?",
        "checkout svc status",
        "checkout service p95",
        "CHECKOUT-SERVICE",
    ] {
        match intent(q) {
            Intent::PipelineHealth { pipeline, .. } => {
                assert_eq!(pipeline, "checkout-service", "{q}")
            }
            other => panic!("{q}: {other:?}"),
        }
    }
    assert_eq!(
        intent("how is search doing").pipeline(),
        Some("search-indexer")
    );
    assert_eq!(intent("paymnets health").pipeline(), Some("payments"));
    assert_eq!(
        intent("status of the web pipline").pipeline(),
        Some("checkout-web")
    );
}

#[test]
fn names_with_slashes() {
    let known = vec![
        "octo-org/octo-repo/test".to_string(),
        "octo-org/octo-repo/deploy-prod".to_string(),
        "group/project".to_string(),
    ];
    let pipeline = |q: &str| match parse(q, &known, now()) {
        Parsed::Intent(i) => i.pipeline().map(str::to_string),
        Parsed::Ambiguous { .. } => Some("ambiguous".to_string()),
    };
    assert_eq!(
        pipeline("how is octo-org/octo-repo/test doing?").as_deref(),
        Some("octo-org/octo-repo/test")
    );
    assert_eq!(
        pipeline("Octo-Org/Octo-Repo/Test health").as_deref(),
        Some("octo-org/octo-repo/test")
    );
    assert_eq!(
        pipeline("why did group/project fail").as_deref(),
        Some("group/project")
    );
    assert_eq!(
        pipeline("how is octo-repo doing").as_deref(),
        Some("ambiguous")
    );
}

#[test]
fn keywords_do_not_loosely_name_pipelines() {
    let known = vec!["alerts-router".to_string(), "failover-drill".to_string()];
    // "alert" is one letter from the "alerts" of alerts-router.
    assert!(matches!(
        parse("any open alert?", &known, now()),
        Parsed::Intent(Intent::Incidents { pipeline: None, .. })
    ));
    assert!(matches!(
        parse("how is alerts-router doing", &known, now()),
        Parsed::Intent(Intent::PipelineHealth { .. })
    ));
    assert!(matches!(
        parse("which pipelines failed most", &known, now()),
        Parsed::Intent(Intent::Ranking { .. })
    ));
}

#[test]
fn an_ambiguous_name_gets_a_choice() {
    assert_eq!(
        parse("how is checkout doing?", &known(), now()),
        Parsed::Ambiguous {
            candidates: vec!["checkout-service".into(), "checkout-web".into()]
        }
    );
    // With one checkout pipeline, "checkout" finds it.
    let only = vec!["checkout-service".to_string(), "payments".to_string()];
    assert_eq!(
        parse("how is checkout doing?", &only, now()),
        Parsed::Intent(Intent::PipelineHealth {
            pipeline: "checkout-service".into(),
            window: Window::last_days(7, now()),
        })
    );
}

#[test]
fn windows() {
    let w = |q: &str| parse_window_text(q, now()).unwrap();
    assert_eq!(w("this week").from, t("2026-11-23T00:00:00Z"));
    assert_eq!(w("this week").label, "this week");
    assert_eq!(w("last week").from, t("2026-11-16T00:00:00Z"));
    assert_eq!(w("last week").to, t("2026-11-23T00:00:00Z"));
    assert_eq!(w("in the last week").from, t("2026-11-18T12:00:00Z"));
    assert_eq!(w("today").from, t("2026-11-25T00:00:00Z"));
    assert_eq!(w("yesterday").to, t("2026-11-25T00:00:00Z"));
    assert_eq!(w("last night").from, t("2026-11-24T18:00:00Z"));
    assert_eq!(w("since Monday").from, t("2026-11-23T00:00:00Z"));
    assert_eq!(w("since mon").label, "since Monday");
    assert_eq!(w("since friday").from, t("2026-11-20T00:00:00Z"));
    assert_eq!(w("since 2026-11-01").from, t("2026-11-01T00:00:00Z"));
    assert_eq!(w("since nov 1st").from, t("2026-11-01T00:00:00Z"));
    assert_eq!(w("since 3 oct").from, t("2026-10-03T00:00:00Z"));
    assert_eq!(w("last 30 days").from, t("2026-10-26T12:00:00Z"));
    assert_eq!(w("last 30 days").label, "last 30 days");
    assert_eq!(w("past 2 weeks").from, t("2026-11-11T12:00:00Z"));
    assert_eq!(w("past two weeks").label, "last 14 days");
    assert_eq!(w("in the last 24h").from, t("2026-11-24T12:00:00Z"));
    assert_eq!(w("last 24 hours").label, "last 24 hours");
    assert_eq!(w("over 30d").label, "last 30 days");
    assert!(parse_window_text("how is payments", now()).is_none());
    assert_eq!(w("this wek").label, "this week");
    assert_eq!(w("yesterdy").label, "yesterday");
    assert_eq!(w("sinse tuesdy").label, "since Tuesday");
}

#[test]
fn the_default_window_is_the_health_week() {
    match intent("payments health") {
        Intent::PipelineHealth { window, .. } => assert!(window.is_health_week(now())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rankings() {
    let by = |q: &str| match intent(q) {
        Intent::Ranking { by, .. } => by,
        other => panic!("{q}: {other:?}"),
    };
    assert_eq!(by("which pipeline is the slowest?"), RankBy::Slowest);
    assert_eq!(by("slowest pipelines this week"), RankBy::Slowest);
    assert_eq!(by("what got slower?"), RankBy::SlowedDown);
    assert_eq!(
        by("which builds slowed down since monday"),
        RankBy::SlowedDown
    );
    assert_eq!(by("flakiest pipeline"), RankBy::Flakiest);
    assert_eq!(by("which ones are flakey"), RankBy::Flakiest);
    assert_eq!(by("what fails the most?"), RankBy::MostFailing);
    assert_eq!(
        by("most failing pipelines last 30 days"),
        RankBy::MostFailing
    );
    assert_eq!(by("what broke most this week"), RankBy::MostFailing);
}

#[test]
fn incidents_changes_and_failures() {
    assert!(matches!(
        intent("any open incidents?"),
        Intent::Incidents {
            open_only: true,
            ..
        }
    ));
    assert!(matches!(
        intent("recent incdents"),
        Intent::Incidents {
            open_only: false,
            ..
        }
    ));
    assert_eq!(
        intent("show incident #12"),
        Intent::IncidentDetail { id: 12 }
    );
    assert_eq!(intent("anomaly 7?"), Intent::IncidentDetail { id: 7 });
    assert!(matches!(
        intent("what changed since monday"),
        Intent::ChangesSince { pipeline: None, .. }
    ));
    assert_eq!(
        intent("why did payments fail?"),
        Intent::LastFailure {
            pipeline: "payments".into()
        }
    );
    assert_eq!(
        intent("last failure of search-indexer"),
        Intent::LastFailure {
            pipeline: "search-indexer".into()
        }
    );
    assert!(matches!(
        intent("what is the failure rate of payments"),
        Intent::PipelineHealth { .. }
    ));
    assert_eq!(intent("what's the weather like"), Intent::Unknown);
    assert_eq!(intent(""), Intent::Unknown);
}

#[test]
fn edit_distance_bounds() {
    assert_eq!(edit_distance("helth", "health", 2), 1);
    assert_eq!(edit_distance("abc", "abc", 0), 0);
    assert!(edit_distance("payments", "search", 2) > 2);
}
