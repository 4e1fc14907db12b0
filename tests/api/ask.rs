//! Asking pipemedic: every question of `tests/fixtures/questions.jsonl`
//! through the offline answerer against a seeded store (accuracy printed
//! and held at 90% or more), the CLI and `POST /v1/ask` giving the same
//! facts, and the health numbers matching `GET /v1/pipelines/{name}/health`.
//!
//! The seeded store, as of Wednesday 2026-11-25 12:00 UTC: runs finish at
//! `now - 30 min - k * interval` for k = 0, 1, ... over 60 days, run ids
//! count up to the newest.
//!
//! | pipeline | every | duration | fails when | other |
//! | --- | --- | --- | --- | --- |
//! | checkout-service | 6 h | 480 + 10·(k%5) s in the last week, 400 + 10·(k%5) s before | k%7 = 3, stage Test | |
//! | checkout-web | 8 h | 180 + 6·(k%3) s | k%20 = 5, stage Build | |
//! | payments | 12 h | 600 + 20·(k%4) s | k%3 = 0, stage Deploy | |
//! | search-indexer | 4 h | 1500 + 30·(k%6) s | k%10 = 2, stage Index | each failure retried green 20 min later |
//!
//! Anomalies: #1 checkout-service at k=200 (closed at k=199), #2
//! checkout-service at k=197 (closed at k=196), #3 payments at k=6 (closed),
//! #4 checkout-service at k=1 (open).
//!
//! Incidents (what chat and ask call "incident #N"; their ids differ from
//! the anomalies' on purpose): #1 checkout-service, anomalies 1 and 2 grouped
//! (resolved); #2 payments, anomaly 3 (resolved); #3 checkout-service,
//! anomaly 4 (open).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use pipemedic::domain::{
    Direction, IncidentStatus, MetricDeviation, Run, RunSource, RunStatus, TestCounts, Verdict,
};
use pipemedic::store::{NewIncident, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, t, Db, TestApp, READ_TOKEN};

pub const NOW: &str = "2026-11-25T12:00:00Z";

struct Spec {
    name: &'static str,
    every_h: i64,
    total: i64,
    duration: fn(i64) -> f64,
    fails: fn(i64) -> bool,
    stage: &'static str,
    log: &'static str,
    retried: bool,
}

fn specs() -> Vec<Spec> {
    vec![
        Spec {
            name: "checkout-service",
            every_h: 6,
            total: 240,
            duration: |k| if k <= 27 { 480.0 } else { 400.0 } + 10.0 * (k % 5) as f64,
            fails: |k| k % 7 == 3,
            stage: "Test",
            log: "running 812 tests\nFAILED cart::tests::applies_coupon\nerror: 3 tests failed\n",
            retried: false,
        },
        Spec {
            name: "checkout-web",
            every_h: 8,
            total: 180,
            duration: |k| 180.0 + 6.0 * (k % 3) as f64,
            fails: |k| k % 20 == 5,
            stage: "Build",
            log: "webpack compiled\nERROR in ./src/cart.tsx: Module not found\n",
            retried: false,
        },
        Spec {
            name: "payments",
            every_h: 12,
            total: 120,
            duration: |k| 600.0 + 20.0 * (k % 4) as f64,
            fails: |k| k % 3 == 0,
            stage: "Deploy",
            log: "deploying payments v2\nError: connection refused to payments-db:5432\nrolling back\n",
            retried: false,
        },
        Spec {
            name: "search-indexer",
            every_h: 4,
            total: 360,
            duration: |k| 1500.0 + 30.0 * (k % 6) as f64,
            fails: |k| k % 10 == 2,
            stage: "Index",
            log: "indexing shard 3\ntimeout: elasticsearch did not answer in 30s\n",
            retried: true,
        },
    ]
}

fn run_at(
    spec: &Spec,
    run_id: String,
    attempt: u32,
    finished: DateTime<Utc>,
    failed: bool,
    k: i64,
) -> Run {
    let mut run = Run::new(
        spec.name,
        run_id,
        if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        },
    );
    let ms = ((spec.duration)(k) * 1000.0) as i64;
    run.started_at = Some(finished - Duration::milliseconds(ms));
    run.finished_at = Some(finished);
    run.attempt = attempt;
    run.commit = Some(format!("{}{:05}", &spec.name[..2], spec.total - k));
    run.tests = Some(TestCounts {
        total: 200,
        failed: if failed { 12 } else { 0 },
        skipped: 0,
    });
    if failed {
        run.stage = Some(spec.stage.to_string());
        run.log_excerpt = Some(spec.log.to_string());
        run.commit_message = Some(format!("change {}", spec.total - k));
        run.url = Some(format!(
            "https://ci.example.com/{}/{}",
            spec.name,
            spec.total - k
        ));
    }
    run
}

fn verdict(metric: &str, observed: f64, expected: f64) -> Verdict {
    Verdict {
        score: 2.4,
        grade: 0.8,
        warming_up: false,
        deviations: vec![MetricDeviation {
            metric: metric.into(),
            observed,
            expected,
            direction: Direction::Up,
            attribution: 0.9,
            dismissed: None,
        }],
        anomaly_id: None,
        ..Default::default()
    }
}

/// Writes the store described in the module docs.
pub async fn seed(store: &Store) {
    let now = t(NOW);
    let mut tx = store.begin_write().await.unwrap();
    let mut pks: HashMap<(&str, i64), (i64, DateTime<Utc>, Run)> = HashMap::new();
    for spec in specs() {
        for k in 0..spec.total {
            let finished = now - Duration::minutes(30) - Duration::hours(k * spec.every_h);
            let failed = (spec.fails)(k);
            let run_id = (spec.total - k).to_string();
            let run = run_at(&spec, run_id.clone(), 1, finished, failed, k);
            let up = tx.upsert_run(&run, RunSource::Backfill, now).await.unwrap();
            pks.insert((spec.name, k), (up.pk, finished, run));
            if failed && spec.retried {
                let retry = run_at(&spec, run_id, 2, finished + Duration::minutes(20), false, k);
                tx.upsert_run(&retry, RunSource::Backfill, now)
                    .await
                    .unwrap();
            }
        }
    }
    // (pipeline, k, closed at k, verdict, joins the previous incident)
    let anomalies = [
        (
            "checkout-service",
            200,
            Some(199),
            verdict("duration_s", 700.0, 420.0),
            false,
        ),
        (
            "checkout-service",
            197,
            Some(196),
            verdict("duration_s", 690.0, 420.0),
            true,
        ),
        (
            "payments",
            6,
            Some(5),
            verdict("error_rate", 0.12, 0.002),
            false,
        ),
        (
            "checkout-service",
            1,
            None,
            verdict("duration_s", 490.0, 420.0),
            false,
        ),
    ];
    let mut incident = 0;
    for (pipeline, k, closed_by, v, joins) in anomalies {
        let (pk, at, run) = &pks[&(pipeline, k)];
        let id = tx
            .open_or_extend_anomaly(pipeline, *pk, &v, *at)
            .await
            .unwrap();
        let mut stored = v.clone();
        stored.anomaly_id = Some(id);
        tx.set_verdict(*pk, &stored).await.unwrap();
        if joins {
            tx.extend_incident(incident, *pk, run, &stored, *at)
                .await
                .unwrap();
        } else {
            incident = tx
                .insert_incident(
                    &NewIncident {
                        pipeline,
                        run_pk: *pk,
                        run,
                        verdict: &stored,
                        route: None,
                        silenced: false,
                    },
                    *at,
                )
                .await
                .unwrap();
        }
        if let Some(next) = closed_by {
            let at = pks[&(pipeline, next)].1;
            tx.close_anomaly(pipeline, at).await.unwrap();
            tx.set_incident_status(incident, IncidentStatus::Resolved, at)
                .await
                .unwrap();
        }
    }
    tx.commit().await.unwrap();
}

pub async fn ask_http(app: &TestApp, body: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/ask"))
        .bearer_auth(READ_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn same_value(expected: &Value, actual: &Value) -> bool {
    match (expected.as_f64(), actual.as_f64()) {
        (Some(e), Some(a)) => (e - a).abs() < 1e-4,
        _ => expected == actual,
    }
}

/// What is wrong with one answer against one fixture line (empty: right).
fn check(case: &Value, answer: &pipemedic::ask::Answer) -> Vec<String> {
    let mut wrong = Vec::new();
    let want_intent = case["intent"].as_str().unwrap_or("");
    if answer.intent != want_intent {
        wrong.push(format!("intent {} (want {want_intent})", answer.intent));
    }
    if let Some(p) = case["pipeline"].as_str() {
        if answer.pipeline.as_deref() != Some(p) {
            wrong.push(format!("pipeline {:?} (want {p})", answer.pipeline));
        }
    }
    if let Some(w) = case["window"].as_str() {
        let got = answer.window.as_ref().map(|w| w.label.as_str());
        if got != Some(w) {
            wrong.push(format!("window {got:?} (want {w})"));
        }
    }
    if let Some(by) = case.get("by") {
        if answer.fact("ranked_by", None) != Some(by) {
            wrong.push(format!(
                "ranked by {:?} (want {by})",
                answer.fact("ranked_by", None)
            ));
        }
    }
    if let Some(c) = case.get("candidates") {
        if answer.fact("candidates", None) != Some(c) {
            wrong.push(format!("candidates {:?}", answer.fact("candidates", None)));
        }
    }
    if let Some(facts) = case["facts"].as_object() {
        for (key, want) in facts {
            let (name, pipeline) = match key.split_once('@') {
                Some((n, p)) => (n, Some(p)),
                None => (key.as_str(), None),
            };
            match answer.fact(name, pipeline) {
                Some(got) if same_value(want, got) => {}
                got => wrong.push(format!("{key} = {got:?} (want {want})")),
            }
        }
    }
    wrong
}

async fn the_question_set_is_answered_accurately(db: Db) {
    let app = spawn_app(db).await.unwrap();
    seed(&app.store).await;
    let text = include_str!("../fixtures/questions.jsonl");
    let cases: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect();
    assert!(cases.len() >= 40, "only {} questions", cases.len());
    let mut right = 0;
    for case in &cases {
        let question = case["question"].as_str().unwrap();
        let answer = pipemedic::ask::answer_question(&app.store, question, t(NOW))
            .await
            .unwrap();
        let wrong = check(case, &answer);
        if wrong.is_empty() {
            right += 1;
        } else {
            eprintln!("MISS {question:?}: {}\n{}", wrong.join("; "), answer.answer);
        }
    }
    let pct = 100.0 * right as f64 / cases.len() as f64;
    println!("ask accuracy: {right}/{} ({pct:.1}%)", cases.len());
    assert!(pct >= 90.0, "ask accuracy {pct:.1}% is below 90%");
}

/// Runs `pipemedic ask` against the app's database: stdout, stderr, exit code.
pub async fn ask_cli(app: &TestApp, question: &str, json: bool) -> (String, String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        format!("[store]\nurl = {}\n", toml_string(&app._db.url)),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"));
    command
        .arg("--config")
        .arg(&config)
        .args(["ask", question, "--at", NOW]);
    if json {
        command.arg("--json");
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    drop(dir);
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code(),
    )
}

fn toml_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

async fn cli_http_and_health_agree(db: Db) {
    let app = spawn_app(db).await.unwrap();
    seed(&app.store).await;
    let health: Value = app.get_json("/v1/pipelines/checkout-service/health").await;
    for question in [
        "how is checkout-service doing this week?",
        "how's checkout-service been in the last 7 days",
    ] {
        let res = ask_http(&app, &json!({ "question": question }).to_string()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let http: Value = res.json().await.unwrap();
        let (out, err, code) = ask_cli(&app, question, true).await;
        assert_eq!(code, Some(0), "{out}{err}");
        let cli: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(cli["facts"], http["facts"], "{question}");
        assert_eq!(cli["sources"], http["sources"]);
        assert_eq!(cli["answer"], http["answer"]);
        let fact = |name: &str| {
            http["facts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .map(|f| f["value"].clone())
                .unwrap()
        };
        // The numbers of `pipemedic health`, on every answer about health.
        assert_eq!(fact("success_rate_7d"), health["success_rate_7d"]);
        assert_eq!(fact("duration_p95_s_7d"), health["duration_p95_s_7d"]);
        assert_eq!(fact("duration_p50_s_7d"), health["duration_p50_s_7d"]);
        assert_eq!(fact("runs_7d"), health["runs_7d"]);
        if http["window"]["label"] == "last 7 days" {
            assert_eq!(fact("success_rate"), health["success_rate_7d"]);
            assert_eq!(fact("duration_p95_s"), health["duration_p95_s_7d"]);
            assert_eq!(fact("duration_trend"), health["duration_trend"]);
        }
    }
    // The terminal text states the same numbers as `pipemedic health`'s table.
    let (text, err, code) = ask_cli(&app, "how is checkout-service doing this week?", false).await;
    assert_eq!(code, Some(0), "{text}{err}");
    let pct = format!(
        "{:.1}%",
        health["success_rate_7d"].as_f64().unwrap() * 100.0
    );
    let p95 = format!("{:.1}s", health["duration_p95_s_7d"].as_f64().unwrap());
    assert!(text.contains(&pct) && text.contains(&p95), "{text}");
    assert!(text.contains("this week"), "{text}");
    // Cited runs link to their page in the CI system; incidents by number.
    let res = ask_http(&app, r#"{"question": "what happened in incident 3?"}"#).await;
    let cited: Value = res.json().await.unwrap();
    let sources = cited["sources"].as_array().unwrap();
    assert!(
        sources
            .iter()
            .any(|s| s["kind"] == "incident" && s["id"] == "3"),
        "{cited}"
    );
    let res = ask_http(&app, r#"{"question": "why did checkout-service fail?"}"#).await;
    let cited: Value = res.json().await.unwrap();
    let runs: Vec<&Value> = cited["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "run")
        .collect();
    assert!(!runs.is_empty(), "{cited}");
    for run in runs {
        assert_eq!(
            run["url"],
            format!(
                "https://ci.example.com/checkout-service/{}",
                run["id"].as_str().unwrap()
            ),
            "{cited}"
        );
    }
    // An ambiguous name offers a choice; an unknown question lists what works.
    let (text, _, _) = ask_cli(&app, "how is checkout doing", false).await;
    assert!(
        text.contains("Did you mean: checkout-service, checkout-web?"),
        "{text}"
    );
    let (text, _, code) = ask_cli(&app, "tell me a joke", false).await;
    assert_eq!(code, Some(0));
    assert!(text.contains("I can answer"), "{text}");
    let (_, err, code) = ask_cli(&app, "  ", false).await;
    assert!(err.contains("the question is empty"), "{err}");
    assert_eq!(code, Some(2));
}

async fn ask_route_refuses_bad_requests(db: Db) {
    let app = spawn_app(db).await.unwrap();
    seed(&app.store).await;
    let res = app
        .http
        .post(app.url("/v1/ask"))
        .json(&json!({"question": "how is payments?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = ask_http(&app, "{\"question\": ").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "malformed_json");
    for bad in [r#"{}"#, r#"{"question": ""}"#, r#"{"question": 7}"#] {
        let res = ask_http(&app, bad).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "invalid_shape");
        assert_eq!(body["details"][0]["field"], "question");
    }
    let long = "a".repeat(3000);
    let res = ask_http(&app, &json!({ "question": long }).to_string()).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A question is never run or stored: asking changes nothing.
    let before = app.store.count_runs().await.unwrap();
    let res = ask_http(
        &app,
        &json!({"question": "why did payments fail?'; DROP TABLE runs; --"}).to_string(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["intent"], "last_failure");
    assert_eq!(app.store.count_runs().await.unwrap(), before);
}

async fn tools_answer_by_name(db: Db) {
    use pipemedic::ask::{QueryTools, ToolError, TOOLS};
    let app = spawn_app(db).await.unwrap();
    seed(&app.store).await;
    let tools = QueryTools::new(app.store.clone());
    let now = t(NOW);
    let before = app.store.count_runs().await.unwrap();
    let health = tools
        .call(
            "pipeline_health",
            &json!({"pipeline": "checkout-service"}),
            now,
        )
        .await
        .unwrap();
    assert_eq!(health["success_rate_7d"], 0.8571);
    assert_eq!(health["duration_p95_s_7d"], 520.0);
    assert_eq!(health["open_incidents"], 1);
    let ranked = tools
        .call(
            "rank_pipelines",
            &json!({"by": "slowest", "window": "this week"}),
            now,
        )
        .await
        .unwrap();
    assert_eq!(ranked[0]["pipeline"], "search-indexer");
    let failed = tools
        .call(
            "list_runs",
            &json!({"pipeline": "payments", "window": "last 7 days", "status": "failed"}),
            now,
        )
        .await
        .unwrap();
    assert_eq!(failed.as_array().unwrap().len(), 5);
    let open = tools
        .call("list_incidents", &json!({"open_only": true}), now)
        .await
        .unwrap();
    assert_eq!(open.as_array().unwrap().len(), 1);
    let failure = tools
        .call("last_failure", &json!({"pipeline": "payments"}), now)
        .await
        .unwrap();
    assert_eq!(failure["stage"], "Deploy");
    for (name, _) in TOOLS {
        // Every listed tool exists (bad arguments, never "unknown tool").
        let result = tools
            .call(name, &json!({"pipeline": 1, "by": "x"}), now)
            .await;
        assert!(!matches!(result, Err(ToolError::UnknownTool(_))), "{name}");
    }
    assert!(matches!(
        tools.call("delete_runs", &json!({}), now).await,
        Err(ToolError::UnknownTool(_))
    ));
    assert!(matches!(
        tools.call("get_incident", &json!({}), now).await,
        Err(ToolError::BadArguments { .. })
    ));
    assert_eq!(app.store.count_runs().await.unwrap(), before);
}

crate::on_both_databases!(
    the_question_set_is_answered_accurately,
    tools_answer_by_name,
    cli_http_and_health_agree,
    ask_route_refuses_bad_requests,
);
