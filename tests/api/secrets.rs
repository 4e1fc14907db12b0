//! Secrets never leave: CI text is redacted where runs are stored, so the
//! offline `ask` answer, the store and every model request carry none of
//! the secret forms a careless CI job prints; the redactions are counted
//! in `/metrics`.

use pipemedic::clock::Clock;
use pipemedic::config::{AskBackend, Config};
use pipemedic::domain::{Run, RunSource};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::ask::ask_http;
use crate::fakes::bedrock::FakeBedrock;
use crate::helpers::{spawn_app, spawn_app_with, Db, TestApp};
use crate::on_both_databases;

/// Made-up secrets of every form the attack run sent, each with the line
/// of a CI log that carries it. The first part is what must not be seen.
fn forms() -> Vec<(String, String)> {
    let aws_secret = "Zq4XbD7cVnZ8rL2mK7pW9sYhJ3fG6aE1uI5oN8bC";
    let azure = format!(
        "{}==",
        "Ab3dEf6hIj9kLm2oPq5sTu8wXy1zAb4dEf7hIj0kLm3oPq6sTu9wXy2zAb5dEf8hIj1kLm4oPq7sTu0wXy3zAb"
    );
    vec![
        (
            "ghp_Xr7dK2mQ9vB4nT6wY1zC8fH3jL5pS0aE7gU2".to_string(),
            "push with ghp_Xr7dK2mQ9vB4nT6wY1zC8fH3jL5pS0aE7gU2".into(),
        ),
        (
            "AKIAQX7RZ2M4KD9WT6BN".to_string(),
            "using key AKIAQX7RZ2M4KD9WT6BN".into(),
        ),
        (
            "glpat-Hq8zN3vK6mR1xT4wB9cY".to_string(),
            "CI token glpat-Hq8zN3vK6mR1xT4wB9cY".into(),
        ),
        (
            "npm_Kf4Lq9Zx2Vb7Nm3Pw8Rt5Yh1Jd6Gs0Ca4Ue2".to_string(),
            "//registry.npmjs.org/:_authToken=npm_Kf4Lq9Zx2Vb7Nm3Pw8Rt5Yh1Jd6Gs0Ca4Ue2".into(),
        ),
        (
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc".to_string(),
            "charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc".into(),
        ),
        (
            "AIzaSyB3x7Qk9Lm2Vn5Pr8Tw1Zc4Fh6Jd0Gs3Ue".to_string(),
            "maps key AIzaSyB3x7Qk9Lm2Vn5Pr8Tw1Zc4Fh6Jd0Gs3Ue".into(),
        ),
        (
            "9c1f4e7a2b8d5c3f6e0a9b1c4d7e2f5a".to_string(),
            "DD_API_KEY=9c1f4e7a2b8d5c3f6e0a9b1c4d7e2f5a".into(),
        ),
        (
            "s3ss10nV4lu3Qx9Zk2Lm7".to_string(),
            "> Cookie: session=s3ss10nV4lu3Qx9Zk2Lm7".into(),
        ),
        (
            "Pa55-db-Qz8".to_string(),
            "DB_PASS=Pa55-db-Qz8 ./migrate".into(),
        ),
        (
            "my5ql-Rw9x".to_string(),
            "MYSQL_PWD=my5ql-Rw9x mysql -u root".into(),
        ),
        (
            "correct horse battery staple".to_string(),
            "password: \"correct horse battery staple\"".into(),
        ),
        (
            "p@ss-w0rd".to_string(),
            "postgres://app:p@ss-w0rd@db.internal:5432/orders".into(),
        ),
        (
            "s3c/r3t".to_string(),
            "mysql://root:s3c/r3t@mysql:3306/app".into(),
        ),
        (aws_secret.to_string(), format!("creds/{aws_secret}")),
        (
            "xoxb-2048-4096-Qx9Zk2Lm7Vn4".to_string(),
            "SLACK_BOT_TOKEN=xoxb-2048-4096-Qx9Zk2Lm7Vn4".into(),
        ),
        (
            "xapp-1-A0123456789-1234567890123-abcdef0123456789".to_string(),
            "app token xapp-1-A0123456789-1234567890123-abcdef0123456789".into(),
        ),
        (
            "xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAxMjM".to_string(),
            "refresh xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAxMjM".into(),
        ),
        (
            azure.clone(),
            format!("AccountName=ci;AccountKey={azure};EndpointSuffix=core.windows.net"),
        ),
        (
            "Vx8Qk2Lm7Zn4Rt9Wb3Yc6".to_string(),
            "Authorization: Bearer Vx8Qk2Lm7Zn4Rt9Wb3Yc6".into(),
        ),
        (
            "sid=Qk2Lm7Zn4Rt9Wb3Yc6Vx8".to_string(),
            "< Set-Cookie: sid=Qk2Lm7Zn4Rt9Wb3Yc6Vx8; HttpOnly".into(),
        ),
        (
            "hunter2hunter".to_string(),
            "postgres://app@db/pm?password=hunter2hunter".into(),
        ),
    ]
}

fn leaky_run(log: &str) -> Value {
    json!({"pipeline": "leaky-service", "run_id": "7", "status": "failed",
        "started_at": "2026-11-25T10:00:00Z", "finished_at": "2026-11-25T10:07:12Z",
        "stage": "Deploy", "commit": "3f786850e387550fdab836ed7e6dc881de23001b",
        "commit_message": "rotate keys (old DB_PASS=Pa55-db-Qz8)",
        "log_excerpt": log})
}

async fn store_leaky_run(app: &TestApp) -> Vec<(String, String)> {
    let forms = forms();
    assert_eq!(forms.len(), 21);
    let log: String = forms.iter().map(|(_, line)| format!("{line}\n")).collect();
    let res = app.post_runs(leaky_run(&log).to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    forms
}

fn assert_hidden(forms: &[(String, String)], text: &str, what: &str) {
    let leaked: Vec<&str> = forms
        .iter()
        .map(|(s, _)| s.as_str())
        .filter(|s| text.contains(s))
        .collect();
    assert!(leaked.is_empty(), "{what} shows {leaked:?}: {text}");
}

async fn offline_ask_never_shows_a_secret_from_a_stored_log(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let forms = store_leaky_run(&app).await;
    let res = ask_http(&app, r#"{"question": "why did leaky-service fail?"}"#).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.text().await.unwrap();
    assert_hidden(&forms, &body, "the offline answer");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["backend"], "offline", "{answer}");
    // The facts around the secrets are still cited.
    assert!(body.contains("Deploy"), "{body}");
    assert!(body.contains("[REDACTED:"), "{body}");
    // The store itself holds none of them.
    let stored = app
        .store
        .get_run("leaky-service", "7", 1)
        .await
        .unwrap()
        .unwrap();
    let stored = serde_json::to_string(&stored.run).unwrap();
    assert_hidden(&forms, &stored, "the stored run");
    assert!(stored.contains("3f786850e387550fdab836ed7e6dc881de23001b"));
    // Every one was counted, by kind.
    let metrics = app.metrics_text().await;
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("pipemedic_redactions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(counted >= 22, "{counted} redactions counted:\n{metrics}");
    assert!(
        metrics.contains("pipemedic_redactions_total{kind=\"github_token\"} 1"),
        "{metrics}"
    );
}

async fn no_secret_form_reaches_the_model(db: Db) {
    let fake = FakeBedrock::start().await;
    let url = fake.url();
    let Some(app) = spawn_app_with(db, |c: &mut Config| {
        c.ask.backend = AskBackend::Bedrock;
        c.ask.model_id = "test-model".into();
        c.aws.endpoints.bedrock = url;
        c.planner.timeout_s = 10;
    })
    .await
    else {
        return;
    };
    let forms = store_leaky_run(&app).await;
    fake.reply_with_tools(&[("last_failure", json!({"pipeline": "leaky-service"}))])
        .reply_with_text("leaky-service failed in stage Deploy.");
    // A secret pasted into the question itself is redacted at prompt time.
    let question = "why did leaky-service fail? it printed DB_PASS=Pa55-db-Qz8";
    let res = ask_http(&app, &json!({ "question": question }).to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["backend"], "bedrock", "{answer}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for (n, r) in requests.iter().enumerate() {
        assert_hidden(&forms, &r.raw, &format!("model request {n}"));
    }
    let result = &fake.tool_results_sent(1)[0].2;
    assert!(result.contains("[REDACTED:"), "{result}");
    assert!(result.contains("Deploy"), "{result}");
}

/// A run stored before ingest redacted (written straight to the store)
/// is still answered without its secrets.
async fn answers_hide_secrets_of_rows_stored_unredacted(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let forms = forms();
    let log: String = forms.iter().map(|(_, line)| format!("{line}\n")).collect();
    let run: Run = serde_json::from_value(leaky_run(&log)).unwrap();
    let now = app.clock.now();
    let mut tx = app.store.begin_write().await.unwrap();
    tx.upsert_run(&run, RunSource::Backfill, now).await.unwrap();
    tx.commit().await.unwrap();
    let res = ask_http(&app, r#"{"question": "why did leaky-service fail?"}"#).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.text().await.unwrap();
    assert_hidden(&forms, &body, "the offline answer");
    assert!(body.contains("[REDACTED:"), "{body}");
}

/// A CodePipeline execution still being assembled from EventBridge events
/// is kept in the ingest state between events; a secret in an action's
/// summary or link is hidden before it is kept, not only once the run is
/// stored.
async fn an_execution_in_assembly_is_kept_without_secrets(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let events: Vec<Value> = serde_json::from_str(include_str!(
        "../fixtures/aws/codepipeline-failed-execution.json"
    ))
    .unwrap();
    let (token, line) = forms().remove(0);
    let mut source_done = events[3].clone();
    source_done["detail"]["execution-result"] = json!({
        "external-execution-summary": line,
        "external-execution-url": format!("https://ci.example.com/run?access_token={token}"),
    });
    // The execution is still running after these: nothing is stored as a run yet.
    for event in [&events[0], &events[1], &events[2], &source_done] {
        let res = crate::webhooks::aws(&app, event, crate::helpers::AWS_SECRET).await;
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    }
    let execution = events[0]["detail"]["execution-id"].as_str().unwrap();
    let kept = app
        .store
        .get_state("aws_execution", &format!("checkout-service/{execution}"))
        .await
        .unwrap()
        .expect("the execution is being assembled");
    assert!(!kept.contains(&token), "{kept}");
    assert!(kept.contains("[REDACTED"), "{kept}");
    assert!(kept.contains(execution), "ids stay: {kept}");
}

on_both_databases!(
    an_execution_in_assembly_is_kept_without_secrets,
    offline_ask_never_shows_a_secret_from_a_stored_log,
    answers_hide_secrets_of_rows_stored_unredacted,
    no_secret_form_reaches_the_model,
);
