//! The web console without a browser: sign-in and the session cookie's
//! flags, refusals (wrong token, ingest token, tampered or expired cookie,
//! another site's form), the security headers on every answer, each page
//! signed in with the expected content, the trusted-proxy mode, and that
//! text from CI shows up only escaped.

use chrono::Duration;
use pipemedic::approvals::{Approver, Choice, RequestStatus, StepPolicy, Via, Vote};
use pipemedic::domain::{
    Direction, MetricDeviation, Run, RunSource, RunStatus, TestCounts, Verdict,
};
use pipemedic::playbooks::{ApprovalPolicy, Risk};
use pipemedic::store::{ExecutionState, NewApprovalRequest, NewExecution, NewIncident, NewPlan};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app_with, Db, TestApp, ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN};
use crate::on_both_databases;

pub const PIPELINE: &str = "checkout";
pub const HOSTILE_LOG: &str = "step 3 failed\n<script>alert(1)</script>\ndone";
/// Runs the seed stores, each with a duration.
pub const SEEDED_RUNS: usize = 12;
pub const APPROVER: &str = "U0ALICE";

const PAGES: [&str; 6] = [
    "/ui",
    "/ui/pipelines/checkout",
    "/ui/incidents",
    "/ui/incidents/1",
    "/ui/audit",
    "/ui/audit.jsonl",
];

/// A client that does not follow redirects, so 303s can be checked.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn verdict(grade: f64, anomaly_id: Option<i64>) -> Verdict {
    Verdict {
        score: if grade > 0.0 { 2.5 } else { 0.9 },
        grade,
        warming_up: false,
        deviations: if grade > 0.0 {
            vec![MetricDeviation {
                metric: "duration_s".into(),
                observed: 900.0,
                expected: 420.0,
                direction: Direction::Up,
                attribution: 1.0,
                dismissed: None,
            }]
        } else {
            Vec::new()
        },
        anomaly_id,
        ..Default::default()
    }
}

/// A pipeline with [`SEEDED_RUNS`] runs an hour apart before `now`, the
/// last one abnormal with a hostile log excerpt; the incident it opened
/// (#1) with a plan, an approval request, a vote, an execution and audit
/// entries. Returns the incident id.
pub async fn seed(app: &TestApp) -> i64 {
    let now = pipemedic::clock::Clock::now(app.clock.as_ref());
    let mut tx = app.store.begin_write().await.unwrap();
    let mut last = None;
    for i in 0..SEEDED_RUNS {
        let abnormal = i + 1 == SEEDED_RUNS;
        let finished = now - Duration::hours((SEEDED_RUNS - i) as i64);
        let mut run = Run::new(
            PIPELINE,
            format!("r-{i}"),
            if abnormal {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            },
        );
        let secs = if abnormal { 900 } else { 400 + 4 * i as i64 };
        run.started_at = Some(finished - Duration::seconds(secs));
        run.finished_at = Some(finished);
        run.stage = Some("Test".into());
        run.tests = Some(TestCounts {
            total: 100,
            failed: if abnormal { 30 } else { 1 },
            skipped: 0,
        });
        if abnormal {
            run.log_excerpt = Some(HOSTILE_LOG.into());
            run.commit_author = Some("<b>mallory</b>".into());
        }
        let pk = tx
            .upsert_run(&run, RunSource::Generic, finished)
            .await
            .unwrap()
            .pk;
        if abnormal {
            let anomaly = tx
                .open_or_extend_anomaly(PIPELINE, pk, &verdict(0.8, None), finished)
                .await
                .unwrap();
            let v = verdict(0.8, Some(anomaly));
            tx.set_verdict(pk, &v).await.unwrap();
            last = Some((pk, run, v, anomaly, finished));
        } else {
            tx.set_verdict(pk, &verdict(0.0, None)).await.unwrap();
        }
    }
    let (pk, run, v, anomaly, at) = last.unwrap();
    let id = tx
        .insert_incident(
            &NewIncident {
                pipeline: PIPELINE,
                run_pk: pk,
                run: &run,
                verdict: &v,
                route: None,
                silenced: false,
            },
            at,
        )
        .await
        .unwrap();
    tx.audit(
        at,
        "incident_opened",
        &format!("incident/{id}"),
        "pipemedic",
        &json!({"note": "<img src=x onerror=alert(2)>"}),
    )
    .await
    .unwrap();
    let plan_id = tx
        .insert_plan(
            &NewPlan {
                anomaly_id: anomaly,
                incident_id: Some(id),
                backend: "offline".into(),
                plan: None,
                validated: Some(json!({
                    "incident_id": id.to_string(),
                    "summary": "Retry the Test stage",
                    "suspected_cause": "a flaky integration test",
                    "confidence": 0.7,
                    "steps": [{
                        "playbook": "flaky-tests",
                        "playbook_title": "Flaky tests",
                        "action": "retry",
                        "kind": "codepipeline.retry_stage",
                        "target": {"pipeline": PIPELINE},
                        "params": {"stage": "IntegrationTest"},
                        "risk": "low",
                        "why": "the failure looks flaky"
                    }],
                    "risk": "low",
                    "stated_risk": "low",
                    "rule_based": true
                })),
                errors: Vec::new(),
                input_tokens: 0,
                output_tokens: 0,
            },
            at,
        )
        .await
        .unwrap();
    let request = tx
        .create_approval_request(
            &NewApprovalRequest {
                plan_ref: Some(format!("plan {plan_id}")),
                incident_ref: id.to_string(),
                pipeline: PIPELINE.into(),
                run_id: run.run_id.clone(),
                commit_author: None,
                steps: vec![StepPolicy {
                    step_no: 1,
                    kind: "codepipeline.retry_stage".into(),
                    risk: Risk::Low,
                    approval: ApprovalPolicy::for_risk(Risk::Low),
                    delay_s: None,
                }],
                created_at: at,
                expires_at: at + Duration::minutes(30),
                status: RequestStatus::Pending,
            },
            &[NewExecution {
                step_no: 1,
                kind: "codepipeline.retry_stage".into(),
                call: json!({"kind": "codepipeline.retry_stage", "pipeline": PIPELINE, "params": {"stage": "IntegrationTest"}}),
                dry_run: "would retry stage IntegrationTest".into(),
            }],
        )
        .await
        .unwrap();
    tx.record_vote(
        request,
        &Vote {
            approver: Approver::new("slack", APPROVER),
            event_id: "ev-1".into(),
            choice: Choice::Approve,
            via: Via::Reaction,
            at: at + Duration::minutes(3),
        },
        true,
        "approved",
    )
    .await
    .unwrap();
    let execution = tx
        .claim_execution(request, 1, "proc-1", at + Duration::minutes(4))
        .await
        .unwrap()
        .expect("the step is claimed");
    tx.finish_execution(
        execution.id,
        "proc-1",
        ExecutionState::Succeeded,
        Some(&json!({"pipelineExecutionId": "exec-retried-7"})),
        None,
        at + Duration::minutes(5),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

/// Signs in with `token`; the answer as it came.
pub async fn sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    client()
        .post(app.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", urlencoding::encode(token)))
        .send()
        .await
        .unwrap()
}

/// The `name=value` part of the session cookie an answer set.
pub fn session_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_string()
}

async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = client().get(app.url(path));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"))
        .to_str()
        .unwrap();
    for directive in [
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp:?} lacks {directive}"
        );
    }
    assert!(!csp.contains("script-src"), "{what}: no script is allowed");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
}

async fn signed_out_pages_redirect_to_sign_in(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    for path in PAGES {
        let response = get(&app, path, None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()[LOCATION], "/ui/login", "{path}");
        assert_security_headers(response.headers(), path);
    }
    // A forged cookie is no better than none.
    let forged = get(&app, "/ui", Some("pipemedic_console=v1.99999999999.61.00")).await;
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
    let form = get(&app, "/ui/login", None).await;
    assert_eq!(form.status(), StatusCode::OK);
    assert_security_headers(form.headers(), "/ui/login");
    let html = form.text().await.unwrap();
    assert!(html.contains("<form method=\"post\" action=\"/ui/login\""));
    assert!(!html.contains("<script"), "no script on any page");
    let css = get(&app, "/ui/static/console.css", None).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_security_headers(css.headers(), "stylesheet");
    assert!(css
        .text()
        .await
        .unwrap()
        .contains("prefers-color-scheme: dark"));
}

async fn the_read_token_signs_in_and_nothing_else_does(db: Db) {
    let Some(app) =
        spawn_app_with(db, |c| c.server.public_url = "http://pm.local:8080".into()).await
    else {
        return;
    };
    let ok = sign_in(&app, READ_TOKEN).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()[LOCATION], "/ui");
    assert_security_headers(ok.headers(), "POST /ui/login");
    let set = ok.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(set.contains(flag), "{set:?} lacks {flag}");
    }
    assert!(!set.contains("Secure"), "plain http: {set:?}");
    assert!(
        !set.contains(READ_TOKEN),
        "the token itself is never the cookie"
    );
    let cookie = session_cookie(&ok);
    let page = get(&app, "/ui", Some(&cookie)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Signed in as"));

    for (token, what) in [
        ("not-the-token", "a wrong token"),
        (INGEST_TOKEN, "the ingest token"),
        (ADMIN_TOKEN, "the admin token"),
        ("", "no token"),
    ] {
        let refused = sign_in(&app, token).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(refused.headers().get(SET_COOKIE).is_none(), "{what}");
        assert_security_headers(refused.headers(), what);
        let html = refused.text().await.unwrap();
        assert!(
            html.contains("That is not the read token."),
            "{what}: {html}"
        );
    }

    // Another site's form is refused, even with the right token.
    let cross = client()
        .post(app.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(format!("token={READ_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(cross.headers().get(SET_COOKIE).is_none());
    // The configured public origin is this site.
    let same = client()
        .post(app.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://pm.local:8080")
        .body(format!("token={READ_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::SEE_OTHER);

    // Signing out clears the cookie.
    let out = client()
        .post(app.url("/ui/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()[LOCATION], "/ui/login");
    let cleared = out.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("pipemedic_console=;") && cleared.contains("Max-Age=0"));
}

async fn an_https_public_url_makes_the_cookie_secure(db: Db) {
    let Some(app) = spawn_app_with(db, |c| {
        c.server.public_url = "https://pipemedic.example.com".into()
    })
    .await
    else {
        return;
    };
    let ok = sign_in(&app, READ_TOKEN).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let set = ok.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set:?}");
}

async fn tampered_and_expired_cookies_are_refused(db: Db) {
    let Some(app) = spawn_app_with(db, |c| c.console.session_hours = 2).await else {
        return;
    };
    let cookie = session_cookie(&sign_in(&app, READ_TOKEN).await);
    assert_eq!(
        get(&app, "/ui", Some(&cookie)).await.status(),
        StatusCode::OK
    );
    // Move the expiry a year on: the signature no longer matches.
    let (name_and_version, rest) = cookie.split_once('.').unwrap();
    let (expires, tail) = rest.split_once('.').unwrap();
    let later: i64 = expires.parse::<i64>().unwrap() + 365 * 24 * 3600;
    let tampered = format!("{name_and_version}.{later}.{tail}");
    assert_eq!(
        get(&app, "/ui", Some(&tampered)).await.status(),
        StatusCode::SEE_OTHER
    );
    // A flipped signature character.
    let mut flipped = cookie.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    assert_eq!(
        get(&app, "/ui", Some(&flipped)).await.status(),
        StatusCode::SEE_OTHER
    );
    // Past its lifetime the genuine cookie is refused too.
    app.clock_advance_minutes(119);
    assert_eq!(
        get(&app, "/ui", Some(&cookie)).await.status(),
        StatusCode::OK
    );
    app.clock_advance_minutes(2);
    let expired = get(&app, "/ui", Some(&cookie)).await;
    assert_eq!(expired.status(), StatusCode::SEE_OTHER);
    assert_eq!(expired.headers()[LOCATION], "/ui/login");
}

async fn every_page_renders_signed_in(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let id = seed(&app).await;
    assert_eq!(id, 1, "PAGES names incident 1");
    let cookie = session_cookie(&sign_in(&app, READ_TOKEN).await);
    let mut bodies = std::collections::BTreeMap::new();
    for path in PAGES {
        let response = get(&app, path, Some(&cookie)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_security_headers(response.headers(), path);
        let body = response.text().await.unwrap();
        assert!(body.len() < 100_000, "{path} is {} bytes", body.len());
        // The JSON Lines download is data (an attachment, `nosniff`), not a page.
        if !path.ends_with(".jsonl") {
            assert!(!body.contains("<script"), "{path} has a script tag: {body}");
            assert!(!body.contains("<img"), "{path} has an unescaped img tag");
        }
        bodies.insert(path, body);
    }

    let overview = &bodies["/ui"];
    let open = overview
        .find("Open incidents (1)")
        .expect("open incidents listed");
    let pipelines = overview.find("Pipelines (1)").expect("pipelines listed");
    assert!(open < pipelines, "open incidents come first");
    assert!(overview.contains("href=\"/ui/incidents/1\""));
    assert!(overview.contains("href=\"/ui/pipelines/checkout\""));
    assert!(overview.contains("<svg class=\"spark\""));

    let pipeline = &bodies["/ui/pipelines/checkout"];
    assert_eq!(
        pipeline.matches("<svg class=\"chart\"").count(),
        2,
        "duration and failed tests"
    );
    let duration_chart = &pipeline[pipeline.find("<svg class=\"chart\"").unwrap()..];
    let duration_chart = &duration_chart[..duration_chart.find("</svg>").unwrap()];
    assert_eq!(
        duration_chart.matches("<circle").count(),
        SEEDED_RUNS,
        "one point per run shown"
    );
    assert_eq!(duration_chart.matches("point abnormal").count(), 1);
    assert!(
        duration_chart.contains("class=\"band usual\""),
        "the usual range is drawn"
    );
    assert!(pipeline.contains("&lt;script&gt;alert(1)&lt;"));
    assert!(pipeline.contains("Runs (12 in all)"));

    let incident = &bodies["/ui/incidents/1"];
    for expected in [
        "Incident #1",
        "2.1× the usual",
        APPROVER,
        "reaction",
        "Approve",
        "Flaky tests → retry",
        "IntegrationTest",
        "would retry stage IntegrationTest",
        "exec-retried-7",
        "incident_opened",
        "Retry the Test stage",
        "&lt;b&gt;mallory&lt;/b&gt;",
        "&lt;script&gt;alert(1)&lt;",
        "<svg class=\"chart\"",
    ] {
        assert!(
            incident.contains(expected),
            "incident page lacks {expected:?}"
        );
    }
    assert!(incident.contains("&lt;img src"));

    let listing = &bodies["/ui/incidents"];
    assert!(listing.contains("href=\"/ui/incidents/1\""));
    let resolved = get(&app, "/ui/incidents?status=resolved", Some(&cookie)).await;
    let resolved = resolved.text().await.unwrap();
    assert!(resolved.contains("No incidents match.") && !resolved.contains("/ui/incidents/1\""));
    let other = get(&app, "/ui/incidents?pipeline=elsewhere", Some(&cookie)).await;
    assert!(other.text().await.unwrap().contains("0 matching."));
    let bad = get(&app, "/ui/incidents?status=%3Cnope%3E", Some(&cookie)).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let audit = &bodies["/ui/audit"];
    assert!(audit.contains("incident_opened") && audit.contains("incident/1"));
    let lines: Vec<serde_json::Value> = bodies["/ui/audit.jsonl"]
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().any(|l| l["kind"] == "incident_opened"));
    let filtered = get(&app, "/ui/audit.jsonl?kind=no_such_kind", Some(&cookie)).await;
    assert_eq!(filtered.text().await.unwrap(), "");

    let missing = get(&app, "/ui/incidents/999", Some(&cookie)).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let unknown = get(&app, "/ui/pipelines/nope", Some(&cookie)).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

async fn a_trusted_proxy_names_the_viewer(db: Db) {
    let Some(app) = spawn_app_with(db, |c| {
        c.console.trusted_proxy_header = "X-Forwarded-User".into();
        c.console.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await
    else {
        return;
    };
    let page = client()
        .get(app.url("/ui"))
        .header("x-forwarded-user", "alice@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("alice@example.com"));

    // From an address that is not a proxy, the header means nothing.
    let Some(elsewhere) = spawn_app_with(db, |c| {
        c.console.trusted_proxy_header = "X-Forwarded-User".into();
        c.console.trusted_proxies = vec!["10.0.0.0/8".into()];
    })
    .await
    else {
        return;
    };
    let refused = client()
        .get(elsewhere.url("/ui"))
        .header("x-forwarded-user", "alice@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
}

#[test]
fn console_settings_are_validated() {
    let mut config = pipemedic::config::Config::default();
    config.console.session_hours = 0;
    config.console.trusted_proxy_header = "X-Forwarded-User".into();
    config.console.trusted_proxies = vec!["not-an-address".into()];
    let problems = config.validate();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"console.session_hours"), "{keys:?}");
    assert!(keys.contains(&"console.trusted_proxies[0]"), "{keys:?}");
    config.console.trusted_proxies.clear();
    let keys: Vec<String> = config.validate().into_iter().map(|p| p.key).collect();
    assert!(
        keys.contains(&"console.trusted_proxies".to_string()),
        "{keys:?}"
    );
}

/// Runs and the charts are paginated: 50 a page, newest first, one chart
/// point per run on the page.
async fn runs_are_paginated(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let now = pipemedic::clock::Clock::now(app.clock.as_ref());
    let mut tx = app.store.begin_write().await.unwrap();
    for i in 0..55 {
        let finished = now - Duration::minutes(60 * (55 - i));
        let mut run = Run::new("long", format!("L-{i:02}"), RunStatus::Succeeded);
        run.started_at = Some(finished - Duration::seconds(300 + i));
        run.finished_at = Some(finished);
        // The worst case for the page's size: long logs that escaping inflates.
        run.log_excerpt = Some("<\"&".repeat(2_000));
        tx.upsert_run(&run, RunSource::Generic, finished)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let cookie = session_cookie(&sign_in(&app, READ_TOKEN).await);
    // Attribute values come back with `=` written as `&#x3D;`.
    let first = get(&app, "/ui/pipelines/long", Some(&cookie))
        .await
        .text()
        .await
        .unwrap()
        .replace("&#x3D;", "=");
    let chart = |page: &str| {
        let from = page.find("<svg class=\"chart\"").expect("a chart");
        let to = from + page[from..].find("</svg>").unwrap();
        page[from..to].matches("<circle").count()
    };
    assert_eq!(chart(&first), 50);
    assert!(first.len() < 100_000, "the page is {} bytes", first.len());
    assert!(first.contains("L-54") && !first.contains(">L-04<"));
    assert!(first.contains("href=\"/ui/pipelines/long?page=2\""));
    let second = get(&app, "/ui/pipelines/long?page=2", Some(&cookie))
        .await
        .text()
        .await
        .unwrap()
        .replace("&#x3D;", "=");
    assert_eq!(chart(&second), 5);
    assert!(second.contains(">L-00<") && !second.contains("?page=3"));
    assert!(second.contains("href=\"/ui/pipelines/long?page=1\""));
}

/// `since` and `until` bound when listed incidents were opened, written
/// like the CLI's `--since`; the form keeps them, and a value that does not
/// parse answers 400 naming the field, the form still filled in.
async fn incidents_filter_by_time(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let id = seed(&app).await;
    let cookie = session_cookie(&sign_in(&app, READ_TOKEN).await);
    let page = |query: &'static str| {
        let (app, cookie) = (&app, cookie.clone());
        async move {
            let res = get(app, &format!("/ui/incidents?{query}"), Some(&cookie)).await;
            let status = res.status();
            (status, res.text().await.unwrap().replace("&#x3D;", "="))
        }
    };
    let link = format!("href=\"/ui/incidents/{id}\"");
    // The incident was opened an hour before now.
    for (query, listed) in [
        ("since=2h", true),
        ("since=30m", false),
        ("until=30m", true),
        ("until=2h", false),
        ("since=1d&until=30m", true),
        ("since=2000-01-01&until=2000-01-02", false),
        ("since=2000-01-01T00:00:00Z", true),
    ] {
        let (status, body) = page(query).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert_eq!(body.contains(&link), listed, "{query}");
        assert!(
            body.contains(if listed { "1 matching." } else { "0 matching." }),
            "{query}"
        );
    }
    let (_, kept) = page("since=1d&until=30m&status=active").await;
    assert!(kept.contains("name=\"since\" value=\"1d\""), "{kept}");
    assert!(kept.contains("name=\"until\" value=\"30m\""));
    assert!(kept.contains("value=\"active\" selected"));

    for (query, field, value) in [
        ("since=soon", "since", "soon"),
        ("since=1d&until=5y", "until", "5y"),
        ("until=99999999999999d", "until", "99999999999999d"),
    ] {
        let (status, body) = page(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body.contains(&format!("Cannot filter: {field} &quot;{value}&quot;")),
            "{query}: {body}"
        );
        assert!(
            body.contains(&format!("name=\"{field}\" value=\"{value}\"")),
            "{query}: the form keeps the value"
        );
        assert!(!body.contains(&link), "{query}: nothing listed");
    }
    let (status, body) = page("since=30m&until=2h").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("until &quot;2h&quot; is not after since &quot;30m&quot;"));
}

/// A custom template that does not compile stops start-up with its file
/// and line, and `pipemedic config check` reports the same.
#[tokio::test]
async fn a_broken_custom_template_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    let file = templates.join("incidents.hbs");
    std::fs::write(
        &file,
        "<h1>Incidents</h1>\n{{#each incidents}}\n<p>{{id}}</p>\n{{/if}}\n",
    )
    .unwrap();
    let env = pipemedic::config::Env::new();
    let mut config = pipemedic::config::from_sources(None, None, &env).unwrap();
    config.server.listen = "127.0.0.1:0".into();
    config.store.url = format!("sqlite://{}", dir.path().join("store.db").display());
    config.console.templates_dir = templates.display().to_string();
    let loaded = pipemedic::config::Loaded {
        config,
        secrets: pipemedic::config::Secrets::default(),
        source: None,
    };
    let Err(e) = pipemedic::startup::Application::build(loaded).await else {
        panic!("start-up accepted a broken template");
    };
    let text = e.to_string();
    let at = format!("console.templates_dir: {}:4:", file.display());
    assert!(text.starts_with(&at), "{text}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"))
        .args(["config", "check"])
        .current_dir(dir.path())
        .env_remove("PIPEMEDIC_CONFIG")
        .env("PIPEMEDIC_CONSOLE__TEMPLATES_DIR", &templates)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "config check exits 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&at), "{stderr}");

    std::fs::write(&file, "<h1>Incidents</h1>\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"))
        .args(["config", "check"])
        .current_dir(dir.path())
        .env_remove("PIPEMEDIC_CONFIG")
        .env("PIPEMEDIC_CONSOLE__TEMPLATES_DIR", &templates)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pipeline page's band is what detection expected of each run, read
/// from the stored verdicts, not the spread of the runs shown: runs of
/// about 400 s whose stored expected range is 900 to 1,100 s get a band
/// at 900 to 1,100 s.
async fn the_chart_band_is_the_stored_expectation(db: Db) {
    use pipemedic::domain::Expectation;
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let now = pipemedic::clock::Clock::now(app.clock.as_ref());
    let mut tx = app.store.begin_write().await.unwrap();
    for i in 0..10i64 {
        let finished = now - Duration::hours(10 - i);
        let mut run = Run::new("banded", format!("b-{i}"), RunStatus::Succeeded);
        run.started_at = Some(finished - Duration::seconds(400 + 4 * i));
        run.finished_at = Some(finished);
        let pk = tx
            .upsert_run(&run, RunSource::Generic, finished)
            .await
            .unwrap()
            .pk;
        let v = Verdict {
            expected: vec![Expectation {
                metric: "duration_s".into(),
                usual: 1000.0,
                low: 900.0,
                high: 1100.0,
            }],
            ..verdict(0.0, None)
        };
        tx.set_verdict(pk, &v).await.unwrap();
    }
    tx.commit().await.unwrap();
    let cookie = session_cookie(&sign_in(&app, READ_TOKEN).await);
    let page = get(&app, "/ui/pipelines/banded", Some(&cookie))
        .await
        .text()
        .await
        .unwrap()
        .replace("&#x3D;", "=");
    // The y axis runs from 0 to 1,100 × 1.05 over 184 px from y = 12; the
    // ten points from x = 64 to x = 708.
    let py = |y: f64| format!("{:.1}", 12.0 + 184.0 - y / 1155.0 * 184.0);
    let (hi, lo) = (py(1100.0), py(900.0));
    let highs: Vec<String> = (0..10)
        .map(|i| format!("{:.1},{hi}", 64.0 + 644.0 * f64::from(i) / 9.0))
        .collect();
    let mut outline = highs.clone();
    outline.extend(
        (0..10)
            .rev()
            .map(|i| format!("{:.1},{lo}", 64.0 + 644.0 * f64::from(i) / 9.0)),
    );
    let polygon = format!(
        "<polygon class=\"band expected\" points=\"{} \"/>",
        outline.join(" ")
    );
    assert!(
        page.contains(&polygon),
        "no band at 900 to 1,100 s in {page}"
    );
    assert!(page.contains("Shaded: the range detection expected at each run<"));
    assert!(!page.contains("band usual"), "no percentile band");

    // The seeded pipeline's verdicts kept no expectation: the percentiles
    // of its runs are drawn, and the chart says so.
    seed(&app).await;
    let old = get(&app, "/ui/pipelines/checkout", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(old.contains("class=\"band usual\""));
    assert!(old.contains("5th to 95th percentile of these runs (detection kept no expected range"));
    assert!(!old.contains("band expected"));
}

/// Every page stays under 100 KB with each of its lists full and text that
/// escaping inflates: 60 pipelines of 55 runs in the last week (a full
/// overview page of sparklines), 50 runs on a pipeline's page with long
/// logs of `<"&`, 30 incidents, and 150 audit entries about one incident.
async fn full_pages_stay_under_100_kb(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let now = pipemedic::clock::Clock::now(app.clock.as_ref());
    let hostile = "<\"&".repeat(1_000);
    let mut tx = app.store.begin_write().await.unwrap();
    let mut last = Vec::new();
    for p in 0..60 {
        let name = format!("pipeline-with-a-fairly-long-name-{p:03}");
        for i in 0..55i64 {
            let finished = now - Duration::hours(3 * (55 - i));
            let failed = i % 9 == 8;
            let mut run = Run::new(
                name.as_str(),
                format!("run-{i:03}"),
                if failed {
                    RunStatus::Failed
                } else {
                    RunStatus::Succeeded
                },
            );
            run.started_at = Some(finished - Duration::seconds(400 + (i * 7) % 50));
            run.finished_at = Some(finished);
            run.stage = Some("IntegrationTest".into());
            run.commit = Some(format!("{:040x}", p * 100 + i));
            run.tests = Some(TestCounts {
                total: 800,
                failed: u64::from(failed) * 30,
                skipped: 0,
            });
            run.log_excerpt = Some(hostile.clone());
            let pk = tx
                .upsert_run(&run, RunSource::Generic, finished)
                .await
                .unwrap()
                .pk;
            tx.set_verdict(pk, &verdict(if failed { 0.7 } else { 0.0 }, None))
                .await
                .unwrap();
            if i == 54 && p < 30 {
                last.push((name.clone(), pk, run, finished));
            }
        }
    }
    for (name, pk, run, at) in &last {
        let v = verdict(0.7, None);
        tx.insert_incident(
            &NewIncident {
                pipeline: name,
                run_pk: *pk,
                run,
                verdict: &v,
                route: None,
                silenced: false,
            },
            *at,
        )
        .await
        .unwrap();
    }
    for k in 0..150 {
        tx.audit(
            now - Duration::minutes(150 - k),
            "incident_note",
            "incident/1",
            "U0ALICE",
            &json!({"note": hostile}),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let cookie = session_cookie(&sign_in(&app, READ_TOKEN).await);
    for (path, full) in [
        (
            "/ui",
            "/ui/pipelines/pipeline-with-a-fairly-long-name-049\"",
        ),
        (
            "/ui/pipelines/pipeline-with-a-fairly-long-name-007",
            ">run-005<",
        ),
        ("/ui/incidents", "/ui/incidents/6\""),
        ("/ui/incidents/1", "incident_note"),
        ("/ui/audit", "incident_note"),
    ] {
        let res = get(&app, path, Some(&cookie)).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let body = res.text().await.unwrap().replace("&#x3D;", "=");
        assert!(body.contains(full), "{path} is not full: lacks {full:?}");
        assert!(
            body.len() < 100 * 1024,
            "{path} is {} bytes, over 100 KB",
            body.len()
        );
    }
    // The overview's 60 pipelines are 50 on the first page, 10 on the next.
    let overview = get(&app, "/ui", Some(&cookie)).await.text().await.unwrap();
    assert_eq!(overview.matches("<svg class=\"spark\"").count(), 50);
    let second = get(&app, "/ui?page=2", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(second.matches("<svg class=\"spark\"").count(), 10);
}

on_both_databases!(
    the_chart_band_is_the_stored_expectation,
    full_pages_stay_under_100_kb,
    incidents_filter_by_time,
    signed_out_pages_redirect_to_sign_in,
    the_read_token_signs_in_and_nothing_else_does,
    an_https_public_url_makes_the_cookie_secure,
    tampered_and_expired_cookies_are_refused,
    every_page_renders_signed_in,
    a_trusted_proxy_names_the_viewer,
    alerts_link_to_the_incident_page,
    runs_are_paginated,
);

/// With `server.public_url` set, the alert posted to chat links to the
/// incident's console page (as a live link: the host is pipemedic's own).
async fn alerts_link_to_the_incident_page(db: Db) {
    use crate::incidents::{abnormal, chat_app_with, history, send, wait_until, SLACK_CHANNEL};
    let Some(h) = chat_app_with(db, |c| {
        c.server.public_url = "https://pipemedic.example.com/".into();
    })
    .await
    else {
        return;
    };
    let pipeline = crate::incidents::PIPELINE;
    history(&h.app, pipeline).await;
    send(&h.app, abnormal(&h.app, pipeline, "r1").await).await;
    wait_until("the slack alert", || {
        !h.slack.messages(SLACK_CHANNEL).is_empty()
    })
    .await;
    let alert = &h.slack.messages(SLACK_CHANNEL)[0];
    let blocks = alert.blocks.to_string();
    let id = h.app.store.incidents(false, None, 1).await.unwrap()[0].id;
    assert!(
        blocks.contains(&format!(
            "<https://pipemedic.example.com/ui/incidents/{id}|incident page>"
        )),
        "{blocks}"
    );
}
