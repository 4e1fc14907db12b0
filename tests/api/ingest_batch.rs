//! The batched write path (group commit of concurrent calls, multi-row
//! inserts): one call refused by the database fails alone and leaves
//! nothing half-written, duplicates stay idempotent when calls race, and a
//! run answered 200 survives `kill -9` of the server right after.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pipemedic::domain::{Run, RunSource, RunStatus, TestCounts};
use pipemedic::ingest::{IngestError, IngestService};
use pipemedic::store::{Backend, RunOutcome, Store};
use sqlx::Row;

use crate::helpers::{Db, TestDb, INGEST_TOKEN};
use crate::replicas::{free_port, Server};

/// The duration and test failure rate values stored (columns of the run).
const SAMPLES: &str = "SELECT COUNT(sample_duration_s) + COUNT(sample_test_failure_rate) FROM runs";

fn run(pipeline: &str, run_id: &str) -> Run {
    let finished: chrono::DateTime<chrono::Utc> = "2026-11-20T10:07:12Z".parse().unwrap();
    let mut run = Run::new(pipeline, run_id, RunStatus::Succeeded);
    run.started_at = Some(finished - chrono::Duration::minutes(7));
    run.finished_at = Some(finished);
    run.tests = Some(TestCounts {
        total: 100,
        failed: 1,
        skipped: 0,
    });
    run
}

fn service(store: &Store) -> Arc<IngestService> {
    Arc::new(IngestService::new(
        store.clone(),
        Arc::new(pipemedic::metrics::Metrics::new()),
        Arc::new(pipemedic::clock::SystemClock),
    ))
}

async fn pool(db: &TestDb) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&db.url).await.unwrap()
}

async fn count(pool: &sqlx::AnyPool, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(pool).await.unwrap().get(0)
}

/// The database refuses any run of pipeline `poison` (as a constraint
/// would), so the call holding one fails inside the group commit.
async fn refuse_poison(pool: &sqlx::AnyPool, backend: Backend) {
    let statements: &[&str] = match backend {
        Backend::Sqlite => &["CREATE TRIGGER refuse_poison BEFORE INSERT ON runs \
             WHEN NEW.pipeline = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END"],
        Backend::Postgres => &[
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.pipeline = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON runs FOR EACH ROW \
             EXECUTE FUNCTION refuse_poison()",
        ],
    };
    for sql in statements {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
}

async fn a_call_refused_by_the_database_fails_alone(db: Db) {
    let Some(db) = TestDb::new(db).await else {
        return;
    };
    let store = db.store().await;
    let pool = pool(&db).await;
    refuse_poison(&pool, store.backend()).await;
    let ingest = service(&store);
    let calls: Vec<Vec<Run>> = (0..24)
        .map(|k| {
            let mut runs: Vec<Run> = (0..5)
                .map(|i| run(&format!("svc-{k}"), &format!("{i}")))
                .collect();
            if k == 11 {
                runs.insert(2, run("poison", "p1"));
            }
            runs
        })
        .collect();
    // All calls at once, so the writer commits them in groups.
    let mut tasks = Vec::new();
    for runs in calls {
        let ingest = ingest.clone();
        tasks.push(tokio::spawn(async move {
            ingest
                .accept_runs(RunSource::Generic, None, &runs, false)
                .await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    for (k, result) in results.iter().enumerate() {
        if k == 11 {
            let err = result.as_ref().unwrap_err();
            assert!(matches!(err, IngestError::Store(_)), "{err:?}");
            assert!(err.to_string().contains("poison refused"), "{err}");
        } else {
            let report = result.as_ref().unwrap();
            assert_eq!(report.runs.len(), 5);
            assert!(report
                .runs
                .iter()
                .all(|a| a.outcome == RunOutcome::Inserted));
        }
    }
    // Nothing of the refused call, not even its good runs or their samples.
    assert_eq!(store.count_runs().await.unwrap(), 23 * 5);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM runs WHERE pipeline = 'svc-11'").await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(sample_duration_s) + COUNT(sample_test_failure_rate) FROM runs WHERE pipeline = 'svc-11'"
        )
        .await,
        0
    );
    // Every stored run has its two samples (duration, test failure rate).
    assert_eq!(count(&pool, SAMPLES).await, 23 * 5 * 2);
    pool.close().await;
    store.close().await;
}

async fn racing_duplicates_are_stored_once(db: Db) {
    let Some(db) = TestDb::new(db).await else {
        return;
    };
    let store = db.store().await;
    let pool = pool(&db).await;
    let ingest = service(&store);
    let same: Vec<Run> = (0..20).map(|i| run("web", &format!("{i}"))).collect();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (ingest, runs) = (ingest.clone(), same.clone());
        tasks.push(tokio::spawn(async move {
            ingest
                .accept_runs(RunSource::Generic, None, &runs, false)
                .await
                .unwrap()
        }));
    }
    let mut outcomes: BTreeMap<String, Vec<RunOutcome>> = BTreeMap::new();
    let mut pks: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for t in tasks {
        for a in t.await.unwrap().runs {
            outcomes
                .entry(a.run_id.clone())
                .or_default()
                .push(a.outcome);
            pks.entry(a.run_id).or_default().push(a.pk);
        }
    }
    assert_eq!(outcomes.len(), 20);
    for (run_id, seen) in &outcomes {
        let inserted = seen.iter().filter(|o| **o == RunOutcome::Inserted).count();
        let duplicate = seen.iter().filter(|o| **o == RunOutcome::Duplicate).count();
        assert_eq!((inserted, duplicate), (1, 15), "run {run_id}: {seen:?}");
        let ids = &pks[run_id];
        assert!(ids.iter().all(|pk| *pk == ids[0]), "run {run_id}: {ids:?}");
    }
    assert_eq!(store.count_runs().await.unwrap(), 20);
    assert_eq!(count(&pool, SAMPLES).await, 20 * 2);

    // Racing redeliveries of one delivery id: one call stores, the others
    // are told it was a redelivery, whatever runs they carry.
    let mut tasks = Vec::new();
    for k in 0..8 {
        let ingest = ingest.clone();
        tasks.push(tokio::spawn(async move {
            let runs = vec![run("api", &format!("d{k}"))];
            ingest
                .accept_runs(RunSource::Generic, Some("delivery-1"), &runs, false)
                .await
                .unwrap()
        }));
    }
    let mut fresh = 0;
    for t in tasks {
        if !t.await.unwrap().duplicate_delivery {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM runs WHERE pipeline = 'api'").await,
        1
    );

    // One call repeating a key: stored in turn, as if one at a time.
    let first = run("lib", "7");
    let mut changed = first.clone();
    changed.status = RunStatus::Failed;
    let fresh_a = run("lib", "8");
    let fresh_b = run("lib", "9");
    let report = ingest
        .accept_runs(
            RunSource::Generic,
            None,
            &[first.clone(), fresh_a, changed, first, fresh_b],
            false,
        )
        .await
        .unwrap();
    let got: Vec<_> = report.runs.iter().map(|a| a.outcome).collect();
    assert_eq!(
        got,
        [
            RunOutcome::Inserted,
            RunOutcome::Inserted,
            RunOutcome::Updated,
            RunOutcome::Updated,
            RunOutcome::Inserted
        ]
    );
    let pk = |i: usize| report.runs[i].pk;
    assert_eq!((pk(2), pk(3)), (pk(0), pk(0)));
    // Runs new to the store get row ids in the order they came.
    assert!(pk(0) < pk(1) && pk(1) < pk(4), "{:?}", report.runs);
    let mut tx = store.begin_write().await.unwrap();
    let stored = tx.get_run("lib", "7", 1).await.unwrap().unwrap();
    drop(tx);
    assert_eq!(stored.status, RunStatus::Succeeded);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(sample_duration_s) + COUNT(sample_test_failure_rate) FROM runs WHERE pipeline = 'lib'"
        )
        .await,
        3 * 2
    );
    pool.close().await;
    store.close().await;
}

/// Posts runs from 8 clients until `kill -9`, then checks every run that
/// was answered 200 is in the store: an answer means a durable commit.
async fn an_answered_run_survives_kill_9(db: Db) {
    let Some(db) = TestDb::new(db).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nurl = \"{}\"\nmax_connections = 4\n",
        db.url
    );
    let mut server = Server::start_with(dir.path(), "crash", port, &config, |c| {
        c.env("PIPEMEDIC_INGEST_TOKEN", INGEST_TOKEN);
    });
    let http = reqwest::Client::new();
    server.wait_ready(&http).await;
    let answered = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (http, base) = (http.clone(), server.base.clone());
        let (answered, stop) = (answered.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<serde_json::Value> = (0..10)
                    .map(|i| {
                        serde_json::json!({"pipeline": format!("svc-{c}"), "run_id": format!("{n}-{i}"),
                            "status": "succeeded", "started_at": "2026-11-20T10:00:00Z",
                            "finished_at": "2026-11-20T10:07:12Z"})
                    })
                    .collect();
                let res = http
                    .post(format!("{base}/v1/runs"))
                    .bearer_auth(INGEST_TOKEN)
                    .json(&batch)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        let mut seen = answered.lock().unwrap();
                        seen.extend((0..10).map(|i| format!("svc-{c}/{n}-{i}")));
                    }
                    _ => break,
                }
                n += 1;
            }
        }));
    }
    // Let some requests be answered, then kill while others are in flight.
    for _ in 0..100 {
        if answered.lock().unwrap().len() >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= 200, "only {} answered", answered.len());
    let store = db.store().await;
    let mut tx = store.begin_write().await.unwrap();
    for key in &answered {
        let (pipeline, run_id) = key.split_once('/').unwrap();
        assert!(
            tx.get_run(pipeline, run_id, 1).await.unwrap().is_some(),
            "run {key} was answered 200 but is not stored ({} answered)",
            answered.len()
        );
    }
    drop(tx);
    store.close().await;
}

crate::on_both_databases!(
    a_call_refused_by_the_database_fails_alone,
    racing_duplicates_are_stored_once,
    an_answered_run_survives_kill_9,
);
