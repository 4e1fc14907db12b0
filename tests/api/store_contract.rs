//! The store contract: the same bodies on SQLite and PostgreSQL.

use pipemedic::domain::{Run, RunSource, RunStatus, StageTiming, TestCounts};
use pipemedic::store::RunOutcome;

use crate::helpers::{t, Db, TestDb};

fn run(id: &str, status: RunStatus, start: &str, end: &str) -> Run {
    let mut r = Run::new("checkout-service", id, status);
    r.started_at = Some(t(start));
    r.finished_at = Some(t(end));
    r.tests = Some(TestCounts {
        total: 100,
        failed: 5,
        skipped: 0,
    });
    r
}

async fn upsert_is_idempotent_and_updates_on_change(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let r = run(
        "1",
        RunStatus::Running,
        "2026-11-25T10:00:00Z",
        "2026-11-25T10:05:00Z",
    );

    let mut tx = store.begin_write().await.unwrap();
    let first = tx.upsert_run(&r, RunSource::Generic, now).await.unwrap();
    let again = tx.upsert_run(&r, RunSource::Generic, now).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first.outcome, RunOutcome::Inserted);
    assert!(!first.became_final);
    assert_eq!(again.outcome, RunOutcome::Duplicate);
    assert_eq!(first.pk, again.pk);

    let mut done = r.clone();
    done.status = RunStatus::Failed;
    let mut tx = store.begin_write().await.unwrap();
    let up = tx.upsert_run(&done, RunSource::Generic, now).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(up.outcome, RunOutcome::Updated);
    assert!(up.became_final);
    assert_eq!(store.count_runs().await.unwrap(), 1);

    let stored = store
        .get_run("checkout-service", "1", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.run, done);
    let samples = store
        .samples(
            "checkout-service",
            "duration_s",
            t("2026-11-01T00:00:00Z"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(samples, vec![(t("2026-11-25T10:05:00Z"), 300.0)]);
    let rates = store
        .samples(
            "checkout-service",
            "test_failure_rate",
            t("2026-11-01T00:00:00Z"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        rates.len(),
        1,
        "samples are replaced, not duplicated, on update"
    );
}

async fn attempts_are_distinct_runs(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let a1 = run(
        "7",
        RunStatus::Failed,
        "2026-11-25T10:00:00Z",
        "2026-11-25T10:05:00Z",
    );
    let mut a2 = a1.clone();
    a2.attempt = 2;
    a2.status = RunStatus::Succeeded;
    let mut tx = store.begin_write().await.unwrap();
    tx.upsert_run(&a1, RunSource::Generic, now).await.unwrap();
    tx.upsert_run(&a2, RunSource::Generic, now).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.count_runs().await.unwrap(), 2);
    assert_eq!(
        store
            .get_run("checkout-service", "7", 2)
            .await
            .unwrap()
            .unwrap()
            .run
            .status,
        RunStatus::Succeeded
    );
}

async fn runs_with_and_without_duration_share_statements(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let mut no_duration = Run::new("p", "1", RunStatus::Failed);
    no_duration.finished_at = Some(now);
    let timed = run(
        "2",
        RunStatus::Failed,
        "2026-11-25T10:00:00Z",
        "2026-11-25T10:00:30Z",
    );
    let mut tx = store.begin_write().await.unwrap();
    tx.upsert_run(&no_duration, RunSource::Generic, now)
        .await
        .unwrap();
    tx.upsert_run(&timed, RunSource::Generic, now)
        .await
        .unwrap();
    let mut later = no_duration.clone();
    later.started_at = Some(t("2026-11-25T11:59:00Z"));
    tx.upsert_run(&later, RunSource::Generic, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let all = store
        .run_summaries(
            "p",
            t("2026-11-01T00:00:00Z"),
            now + chrono::Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].duration_s, Some(60.0));
}

async fn claimed_events_are_claimed_once(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.claim_event("github", "delivery-1", now).await.unwrap());
    assert!(!tx.claim_event("github", "delivery-1", now).await.unwrap());
    assert!(tx.claim_event("gitlab", "delivery-1", now).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert!(!tx.claim_event("github", "delivery-1", now).await.unwrap());
}

async fn old_processed_events_are_pruned(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let old = t("2026-10-01T12:00:00Z");
    let recent = t("2026-11-20T12:00:00Z");
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.claim_event("github", "old-1", old).await.unwrap());
    assert!(tx.claim_event("aws", "old-2", old).await.unwrap());
    assert!(tx.claim_event("github", "recent", recent).await.unwrap());
    tx.commit().await.unwrap();

    let cutoff = t("2026-11-25T12:00:00Z") - chrono::Duration::days(30);
    assert_eq!(store.prune_processed_events(cutoff).await.unwrap(), 2);
    // Pruning again finds nothing more.
    assert_eq!(store.prune_processed_events(cutoff).await.unwrap(), 0);
    let mut tx = store.begin_write().await.unwrap();
    assert!(
        tx.claim_event("github", "old-1", recent).await.unwrap(),
        "a pruned id is forgotten"
    );
    assert!(
        !tx.claim_event("github", "recent", recent).await.unwrap(),
        "a recent id is kept"
    );
}

async fn dropped_transaction_writes_nothing(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    {
        let mut tx = store.begin_write().await.unwrap();
        tx.claim_event("generic", "x", now).await.unwrap();
        tx.upsert_run(
            &run(
                "1",
                RunStatus::Failed,
                "2026-11-25T10:00:00Z",
                "2026-11-25T10:01:00Z",
            ),
            RunSource::Generic,
            now,
        )
        .await
        .unwrap();
        tx.audit(now, "test", "s", "a", &serde_json::json!({}))
            .await
            .unwrap();
        // dropped without commit
    }
    assert_eq!(store.count_runs().await.unwrap(), 0);
    assert!(store
        .audit_since(t("2000-01-01T00:00:00Z"))
        .await
        .unwrap()
        .is_empty());
    let mut tx = store.begin_write().await.unwrap();
    assert!(
        tx.claim_event("generic", "x", now).await.unwrap(),
        "claim was rolled back"
    );
}

async fn runs_and_state_are_readable_inside_a_transaction(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let mut r = run(
        "42",
        RunStatus::Running,
        "2026-11-25T10:00:00Z",
        "2026-11-25T10:03:00Z",
    );
    r.pipeline = "o/r/ci".into();
    r.stages.push(StageTiming {
        // The job's id rides in the run's body (its log is fetched by it).
        job_id: Some("7512098341".into()),
        name: "build".into(),
        status: Some(RunStatus::Succeeded),
        started_at: Some(t("2026-11-25T10:00:00Z")),
        finished_at: Some(t("2026-11-25T10:03:00Z")),
    });
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.get_run("o/r/ci", "42", 1).await.unwrap(), None);
    tx.upsert_run(&r, RunSource::Github, now).await.unwrap();
    assert_eq!(
        tx.get_run("o/r/ci", "42", 1).await.unwrap(),
        Some(r.clone())
    );
    tx.put_state("aws_execution", "pipe-a/e1", "1", now)
        .await
        .unwrap();
    tx.put_state("aws_execution", "pipe-a/e2", "2", now)
        .await
        .unwrap();
    tx.put_state("aws_execution", "pipe-ab/e3", "3", now)
        .await
        .unwrap();
    let keys: Vec<_> = tx
        .states_with_prefix("aws_execution", "pipe-a/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    assert_eq!(
        keys,
        [
            ("pipe-a/e1".to_string(), "1".to_string()),
            ("pipe-a/e2".to_string(), "2".to_string())
        ]
    );
    tx.commit().await.unwrap();
    let stored = store.get_run("o/r/ci", "42", 1).await.unwrap().unwrap();
    assert_eq!(stored.run.stages[0].duration_s(), Some(180.0));
}

async fn state_and_audit_round_trip(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let mut tx = store.begin_write().await.unwrap();
    tx.put_state("cp_exec", "p/abc", "{\"a\":1}", now)
        .await
        .unwrap();
    tx.put_state("cp_exec", "p/abc", "{\"a\":2}", now)
        .await
        .unwrap();
    assert_eq!(
        tx.get_state("cp_exec", "p/abc").await.unwrap().as_deref(),
        Some("{\"a\":2}")
    );
    tx.audit(
        now,
        "run.ingested",
        "checkout-service/1",
        "github",
        &serde_json::json!({"n": 1}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store
            .get_state("cp_exec", "p/abc")
            .await
            .unwrap()
            .as_deref(),
        Some("{\"a\":2}")
    );
    let mut tx = store.begin_write().await.unwrap();
    tx.delete_state("cp_exec", "p/abc").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.get_state("cp_exec", "p/abc").await.unwrap(), None);
    let audit = store.audit_since(t("2026-11-25T00:00:00Z")).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].detail, serde_json::json!({"n": 1}));
    assert!(store
        .audit_since(t("2026-11-26T00:00:00Z"))
        .await
        .unwrap()
        .is_empty());
}

async fn summaries_are_windowed_and_ordered(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let mut tx = store.begin_write().await.unwrap();
    for (id, end) in [
        ("b", "2026-11-20T10:00:00Z"),
        ("a", "2026-11-10T10:00:00Z"),
        ("c", "2026-11-24T10:00:00Z"),
    ] {
        let mut r = run(id, RunStatus::Succeeded, "2026-11-01T00:00:00Z", end);
        r.started_at = Some(t(end) - chrono::Duration::seconds(60));
        tx.upsert_run(&r, RunSource::Generic, now).await.unwrap();
    }
    tx.commit().await.unwrap();
    let got = store
        .run_summaries("checkout-service", t("2026-11-15T00:00:00Z"), now)
        .await
        .unwrap();
    let ids: Vec<_> = got.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["b", "c"]);
    assert_eq!(got[0].duration_s, Some(60.0));
    assert_eq!(
        store
            .last_run("checkout-service")
            .await
            .unwrap()
            .unwrap()
            .run_id,
        "c"
    );
    assert_eq!(store.pipelines().await.unwrap(), ["checkout-service"]);
}

async fn models_verdicts_and_anomalies(db: Db) {
    use pipemedic::domain::{AnomalyStatus, Direction, MetricDeviation, Verdict};
    use pipemedic::store::StoredModel;
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let verdict = |grade: f64| Verdict {
        score: 2.5,
        grade,
        warming_up: false,
        deviations: vec![MetricDeviation {
            metric: "duration_s".into(),
            observed: 900.0,
            expected: 430.0,
            direction: Direction::Up,
            attribution: 0.9,
            dismissed: None,
        }],
        anomaly_id: None,
        ..Default::default()
    };
    let mut tx = store.begin_write().await.unwrap();
    let a = tx
        .upsert_run(
            &run(
                "1",
                RunStatus::Failed,
                "2026-11-25T10:00:00Z",
                "2026-11-25T10:15:00Z",
            ),
            RunSource::Generic,
            now,
        )
        .await
        .unwrap();
    let b = tx
        .upsert_run(
            &run(
                "2",
                RunStatus::Failed,
                "2026-11-25T11:00:00Z",
                "2026-11-25T11:15:00Z",
            ),
            RunSource::Generic,
            now,
        )
        .await
        .unwrap();
    tx.set_verdict(a.pk, &verdict(0.4)).await.unwrap();
    let id1 = tx
        .open_or_extend_anomaly("checkout-service", a.pk, &verdict(0.4), now)
        .await
        .unwrap();
    let id2 = tx
        .open_or_extend_anomaly("checkout-service", b.pk, &verdict(0.8), now)
        .await
        .unwrap();
    assert_eq!(id1, id2, "an open anomaly is extended, not duplicated");
    tx.save_model(
        "checkout-service",
        &StoredModel {
            version: 1,
            state: "{\"x\":1}".into(),
            last_run_pk: b.pk,
        },
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(store.verdict_of(a.pk).await.unwrap().unwrap().grade, 0.4);
    assert_eq!(store.verdict_of(b.pk).await.unwrap(), None);
    let anomaly = store.anomaly(id1).await.unwrap().unwrap();
    assert_eq!(anomaly.status, AnomalyStatus::Open);
    assert_eq!(
        (anomaly.first_run_id.as_str(), anomaly.last_run_id.as_str()),
        ("1", "2")
    );
    assert_eq!(anomaly.run_count, 2);
    assert_eq!(anomaly.max_grade, 0.8);
    assert_eq!(anomaly.latest.deviations[0].metric, "duration_s");
    let open = store
        .anomalies(t("2026-11-01T00:00:00Z"), Some("checkout-service"), true)
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert!(store
        .anomalies(t("2026-11-01T00:00:00Z"), Some("other"), false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .load_model("checkout-service")
            .await
            .unwrap()
            .unwrap()
            .last_run_pk,
        b.pk
    );
    assert_eq!(
        store
            .final_runs_after("checkout-service", a.pk, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let mut tx = store.begin_write().await.unwrap();
    // Which pipelines have an open anomaly, several at once.
    let open = tx
        .pipelines_with_open_anomaly(&["checkout-service", "other", "payments-api"])
        .await
        .unwrap();
    assert_eq!(
        open.into_iter().collect::<Vec<_>>(),
        vec!["checkout-service".to_string()]
    );
    assert_eq!(
        tx.close_anomaly("checkout-service", now).await.unwrap(),
        Some(id1)
    );
    assert!(tx
        .pipelines_with_open_anomaly(&["checkout-service"])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        tx.close_anomaly("checkout-service", now).await.unwrap(),
        None
    );
    let reset = tx
        .request_baseline_reset("checkout-service", Some("duration_s"), "alice", now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(store
        .anomalies(t("2026-11-01T00:00:00Z"), None, true)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .pending_baseline_resets("checkout-service")
            .await
            .unwrap(),
        vec![(reset, Some("duration_s".to_string()))]
    );
    // Several pipelines' pending resets in one read, in request order.
    let mut tx = store.begin_write().await.unwrap();
    let later = tx
        .request_baseline_reset("checkout-service", None, "bob", now)
        .await
        .unwrap();
    let other = tx
        .request_baseline_reset("payments-api", None, "bob", now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let pending = store
        .pending_baseline_resets_of(&["checkout-service", "payments-api", "quiet"])
        .await
        .unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert_eq!(
        pending["checkout-service"],
        vec![(reset, Some("duration_s".to_string())), (later, None)]
    );
    assert_eq!(pending["payments-api"], vec![(other, None)]);
    let mut tx = store.begin_write().await.unwrap();
    for id in [reset, later, other] {
        tx.mark_baseline_reset_applied(id).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert!(store
        .pending_baseline_resets_of(&["checkout-service", "payments-api"])
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .pending_baseline_resets("checkout-service")
        .await
        .unwrap()
        .is_empty());
}

/// A finished run with every built-in metric, two stages and a custom
/// metric.
fn full_run(id: &str) -> Run {
    use pipemedic::domain::{DeployMetrics, ResourceMetrics};
    let mut r = run(
        id,
        RunStatus::Succeeded,
        "2026-11-25T10:00:00Z",
        "2026-11-25T10:05:00Z",
    );
    r.resources = Some(ResourceMetrics {
        cpu_peak_pct: Some(71.5),
        mem_peak_mb: Some(2048.0),
    });
    r.deploy = Some(DeployMetrics {
        error_rate: Some(0.01),
        latency_p95_ms: Some(180.0),
    });
    r.stages = ["Build", "Test"]
        .iter()
        .enumerate()
        .map(|(i, name)| StageTiming {
            job_id: None,
            name: (*name).to_string(),
            status: Some(RunStatus::Succeeded),
            started_at: Some(t("2026-11-25T10:00:00Z")),
            finished_at: Some(t(&format!("2026-11-25T10:0{}:00Z", i + 1))),
        })
        .collect();
    r.metrics.insert("bundle_kb".into(), 512.0);
    r
}

async fn series(store: &pipemedic::store::Store, metric: &str) -> Vec<f64> {
    store
        .samples(
            "checkout-service",
            metric,
            t("2026-11-01T00:00:00Z"),
            t("2026-11-26T00:00:00Z"),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

async fn every_metric_of_a_run_is_a_series(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let done = full_run("1");
    let mut running = full_run("2");
    running.status = RunStatus::Running;
    let mut tx = store.begin_write().await.unwrap();
    tx.upsert_runs(&[&done, &running], RunSource::Generic, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let expected = [
        ("duration_s", 300.0),
        ("test_failure_rate", 0.05),
        ("cpu_peak_pct", 71.5),
        ("mem_peak_mb", 2048.0),
        ("error_rate", 0.01),
        ("latency_p95_ms", 180.0),
        ("stage.Build.duration_s", 60.0),
        ("stage.Test.duration_s", 120.0),
        ("bundle_kb", 512.0),
    ];
    for (metric, value) in expected {
        assert_eq!(
            series(&store, metric).await,
            [value],
            "{metric}: the finished run's value, nothing from the running one"
        );
    }

    // The running run finishes without CPU: its values follow the update.
    let mut finished = running.clone();
    finished.status = RunStatus::Failed;
    finished.resources = None;
    let mut tx = store.begin_write().await.unwrap();
    let up = tx
        .upsert_run(&finished, RunSource::Generic, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(up.outcome, RunOutcome::Updated);
    assert_eq!(series(&store, "cpu_peak_pct").await, [71.5]);
    assert_eq!(series(&store, "duration_s").await, [300.0, 300.0]);
    assert_eq!(series(&store, "bundle_kb").await, [512.0, 512.0]);
    assert!(series(&store, "no_such_metric").await.is_empty());

    // Resource usage read after the run was stored joins its series.
    finished.resources = Some(pipemedic::domain::ResourceMetrics {
        cpu_peak_pct: Some(88.0),
        mem_peak_mb: None,
    });
    store.replace_run_body(up.pk, &finished).await.unwrap();
    assert_eq!(series(&store, "cpu_peak_pct").await, [71.5, 88.0]);
    assert_eq!(series(&store, "mem_peak_mb").await, [2048.0]);
}

async fn samples_of_the_earlier_layout_move_to_the_run_on_migration(db: Db) {
    let is_sqlite = db == Db::Sqlite;
    let db = TestDb::new(db).await.unwrap();
    sqlx::any::install_default_drivers();
    // The schema as it was before the built-in metrics became columns.
    let dir = if is_sqlite {
        "src/store/migrations/sqlite"
    } else {
        "src/store/migrations/postgres"
    };
    let mut earlier = sqlx::migrate::Migrator::new(std::path::Path::new(dir))
        .await
        .unwrap();
    earlier.migrations = std::borrow::Cow::Owned(
        earlier
            .migrations
            .iter()
            .filter(|m| m.version < 11)
            .cloned()
            .collect(),
    );
    let url = if is_sqlite {
        format!("{}?mode=rwc", db.url)
    } else {
        db.url.clone()
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    earlier.run(&pool).await.unwrap();
    let mut stored = full_run("r1");
    stored.resources = None;
    sqlx::query(
        "INSERT INTO runs (id, pipeline, run_id, attempt, status, source, event_time_ms, body, \
         ingested_at_ms, updated_at_ms) VALUES (7, 'checkout-service', 'r1', 1, 'succeeded', \
         'generic', $1, $2, 0, 0)",
    )
    .bind(t("2026-11-25T10:05:00Z").timestamp_millis())
    .bind(serde_json::to_string(&stored).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    for (metric, value) in [
        ("duration_s", 300.0),
        ("cpu_peak_pct", 71.5),
        ("bundle_kb", 512.0),
    ] {
        sqlx::query(
            "INSERT INTO metric_samples (run_pk, pipeline, metric, value, ts_ms) \
             VALUES (7, 'checkout-service', $1, $2, $3)",
        )
        .bind(metric)
        .bind(value)
        .bind(t("2026-11-25T10:05:00Z").timestamp_millis())
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = db.store().await;
    assert_eq!(series(&store, "duration_s").await, [300.0]);
    assert_eq!(series(&store, "cpu_peak_pct").await, [71.5]);
    assert!(series(&store, "mem_peak_mb").await.is_empty());
    assert_eq!(series(&store, "bundle_kb").await, [512.0]);
    // The others come from the run's body; the table is gone.
    assert_eq!(series(&store, "stage.Test.duration_s").await, [120.0]);
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let gone = sqlx::query("SELECT COUNT(*) FROM metric_samples")
        .fetch_one(&pool)
        .await;
    assert!(gone.is_err(), "metric_samples is dropped");
    pool.close().await;
}

/// `scored_by` marks every run of a scored batch, and the lease fence of
/// a scoring transaction names a pipeline whose lease the replica does not
/// hold (another's, lapsed or never taken); SQLite has no leases and says
/// so.
async fn the_lease_fence_names_a_pipeline_not_held_and_marks_who_scored(db: Db) {
    let backend = db;
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let a = run(
        "1",
        RunStatus::Succeeded,
        "2026-11-25T10:00:00Z",
        "2026-11-25T10:05:00Z",
    );
    let b = run(
        "2",
        RunStatus::Succeeded,
        "2026-11-25T10:10:00Z",
        "2026-11-25T10:15:00Z",
    );
    let c = run(
        "3",
        RunStatus::Succeeded,
        "2026-11-25T10:20:00Z",
        "2026-11-25T10:25:00Z",
    );
    let mut tx = store.begin_write().await.unwrap();
    let stored = tx
        .upsert_runs(&[&a, &b, &c], RunSource::Generic, now)
        .await
        .unwrap();
    let pks: Vec<i64> = stored.iter().map(|s| s.pk).collect();
    tx.mark_scored_by(&pks[..2], "replica-1").await.unwrap();
    tx.commit().await.unwrap();
    let scored_by: Vec<Option<String>> = {
        use sqlx::Row;
        let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
        let rows = sqlx::query("SELECT scored_by FROM runs ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter().map(|r| r.get(0)).collect()
    };
    let one = Some("replica-1".to_string());
    assert_eq!(scored_by, vec![one.clone(), one, None]);

    let mut tx = store.begin_write().await.unwrap();
    if matches!(backend, Db::Sqlite) {
        let refused = tx.hold_leases(&["a"], "replica-1").await.unwrap_err();
        assert!(refused.to_string().contains("PostgreSQL"), "{refused}");
        return;
    }
    drop(tx);
    let minute = 60_000;
    for (pipeline, holder, ms) in [
        ("a", "replica-1", minute),
        ("b", "replica-1", minute),
        ("c", "replica-2", minute),
        // Lapsed at once.
        ("d", "replica-1", -1),
    ] {
        assert!(store
            .acquire_lease(pipeline, holder, ms)
            .await
            .unwrap()
            .is_some());
    }
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(
        tx.hold_leases(&["a", "b"], "replica-1").await.unwrap(),
        None
    );
    assert_eq!(
        tx.hold_leases(&["a", "c", "b"], "replica-1").await.unwrap(),
        Some("c".to_string())
    );
    assert_eq!(
        tx.hold_leases(&["d"], "replica-1").await.unwrap(),
        Some("d".to_string())
    );
    assert_eq!(
        tx.hold_leases(&["never-leased"], "replica-1")
            .await
            .unwrap(),
        Some("never-leased".to_string())
    );
}

crate::on_both_databases!(
    the_lease_fence_names_a_pipeline_not_held_and_marks_who_scored,
    old_processed_events_are_pruned,
    upsert_is_idempotent_and_updates_on_change,
    attempts_are_distinct_runs,
    runs_with_and_without_duration_share_statements,
    claimed_events_are_claimed_once,
    dropped_transaction_writes_nothing,
    runs_and_state_are_readable_inside_a_transaction,
    state_and_audit_round_trip,
    summaries_are_windowed_and_ordered,
    models_verdicts_and_anomalies,
    every_metric_of_a_run_is_a_series,
    samples_of_the_earlier_layout_move_to_the_run_on_migration,
);
