//! One owner per pipeline across replicas: two real `pipemedic serve`
//! processes on one PostgreSQL database, given one pipeline's runs
//! alternately, grade every run exactly as one process does (a third
//! process on SQLite, fed the same runs in the same order); and when the
//! owner is killed (`SIGKILL`) mid-stream, the other replica takes the
//! pipeline over within the lease, and every run is scored once.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row;

use crate::detection::run_json;
use crate::helpers::{Db, TestDb};
use crate::replicas::{free_port, Server};

const TOKEN: &str = "replica-scoring-token";
const PIPELINE: &str = "checkout-service";
/// Short, so that the takeover test stays quick.
const LEASE_SECONDS: u64 = 2;

/// The runs fed to every process: a steady pipeline with a few abnormal
/// stretches (slow, with many failed tests) after the warm-up.
fn runs(n: u32) -> Vec<Value> {
    (0..n)
        .map(|i| {
            if matches!(i, 100 | 101 | 112 | 120 | 121 | 122) {
                run_json(PIPELINE, i, 1300.0 + f64::from(i), 150 + u64::from(i))
            } else {
                run_json(PIPELINE, i, 420.0, u64::from(i % 3))
            }
        })
        .collect()
}

fn config(port: u16, url: &str, replica: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nurl = \"{url}\"\nmax_connections = 4\n\
         lease_seconds = {LEASE_SECONDS}\nreplica_id = \"{replica}\"\n"
    )
}

fn start(dir: &std::path::Path, name: &str, url: &str) -> Server {
    let port = free_port();
    Server::start_with(dir, name, port, &config(port, url, name), |c| {
        c.env("PIPEMEDIC_INGEST_TOKEN", TOKEN);
    })
}

/// Replicas `replica-a` and `replica-b` on one database, ready.
async fn two_replicas(
    dir: &std::path::Path,
    url: &str,
    http: &reqwest::Client,
) -> (Server, Server) {
    let mut a = start(dir, "replica-a", url);
    let mut b = start(dir, "replica-b", url);
    a.wait_ready(http).await;
    b.wait_ready(http).await;
    (a, b)
}

/// Posts one run and returns its verdict's `(grade, score)` and how long
/// the answer took.
async fn post(http: &reqwest::Client, server: &Server, run: &Value) -> ((f64, f64), Duration) {
    let started = Instant::now();
    let res = http
        .post(format!("{}/v1/runs", server.base))
        .bearer_auth(TOKEN)
        .json(run)
        .send()
        .await
        .expect("request sent");
    let elapsed = started.elapsed();
    assert_eq!(res.status(), 200, "{}", server.base);
    let body: Value = res.json().await.unwrap();
    let verdict = &body["runs"][0]["verdict"];
    let grade = verdict["grade"].as_f64();
    let score = verdict["score"].as_f64();
    match (grade, score) {
        (Some(g), Some(s)) => ((g, s), elapsed),
        _ => panic!("no verdict from {} for {run}: {body}", server.base),
    }
}

/// What the store says about every run of the pipeline, in run order:
/// `(run_id, grade, times a verdict was written, replica that wrote it)`.
async fn scored(url: &str) -> Vec<(String, Option<f64>, i64, Option<String>)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows = sqlx::query(
        "SELECT run_id, grade, scored_times, scored_by FROM runs WHERE pipeline = $1 ORDER BY id",
    )
    .bind(PIPELINE)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn queued(url: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM scoring_queue")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    pool.close().await;
    n
}

/// The value of a counter series in a replica's `/metrics`.
async fn counter(http: &reqwest::Client, server: &Server, series: &str) -> f64 {
    let text = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The reference: one process (SQLite) given every run in order.
async fn one_process(
    http: &reqwest::Client,
    dir: &std::path::Path,
    runs: &[Value],
) -> Vec<(f64, f64)> {
    let db = TestDb::new(Db::Sqlite).await.unwrap();
    let mut single = start(dir, "single", &db.url);
    single.wait_ready(http).await;
    let mut verdicts = Vec::with_capacity(runs.len());
    let mut waits = Vec::with_capacity(runs.len());
    for run in runs {
        let (verdict, took) = post(http, &single, run).await;
        verdicts.push(verdict);
        waits.push(took);
    }
    eprintln!(
        "one process (SQLite): POST /v1/runs median {:.1} ms",
        median_ms(waits)
    );
    assert!(
        verdicts.iter().any(|(grade, _)| *grade > 0.0),
        "the reference flagged nothing: {verdicts:?}"
    );
    verdicts
}

fn assert_same(reference: &[(f64, f64)], got: &[(f64, f64)]) {
    assert_eq!(reference.len(), got.len());
    let differ: Vec<String> = reference
        .iter()
        .zip(got)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("r{i}: one process {a:?}, replicas {b:?}"))
        .collect();
    assert!(
        differ.is_empty(),
        "{} run(s) graded differently: {differ:#?}",
        differ.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fed_alternately_grade_every_run_as_one_process_does() {
    let Some(db) = TestDb::new(Db::Postgres).await else {
        eprintln!("PIPEMEDIC_TEST_POSTGRES_URL not set; skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let runs = runs(130);
    let reference = one_process(&http, dir.path(), &runs).await;

    let (a, b) = two_replicas(dir.path(), &db.url, &http).await;
    let mut got = Vec::with_capacity(runs.len());
    let mut waits: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for (i, run) in runs.iter().enumerate() {
        let server = if i % 2 == 0 { &a } else { &b };
        let (verdict, took) = post(&http, server, run).await;
        got.push(verdict);
        waits[i % 2].push(took);
    }
    assert_same(&reference, &got);

    // One replica scored every run, once; the other handed its runs over.
    let stored = scored(&db.url).await;
    assert_eq!(stored.len(), runs.len());
    let owner = stored[0].3.clone().expect("scored_by recorded");
    for (run_id, grade, times, by) in &stored {
        assert!(grade.is_some(), "{run_id} has no verdict");
        assert_eq!(*times, 1, "{run_id} scored {times} times");
        assert_eq!(by.as_deref(), Some(owner.as_str()), "{run_id}");
    }
    assert_eq!(queued(&db.url).await, 0);
    let (owner_server, other_server, owner_i) = if owner == "replica-a" {
        (&a, &b, 0)
    } else {
        (&b, &a, 1)
    };
    let half = (runs.len() / 2) as f64;
    assert_eq!(
        counter(
            &http,
            other_server,
            "pipemedic_scoring_handoffs_total{role=\"handed_off\"}"
        )
        .await,
        half
    );
    assert_eq!(
        counter(
            &http,
            owner_server,
            "pipemedic_scoring_handoffs_total{role=\"for_peer\"}"
        )
        .await,
        half
    );
    assert_eq!(
        counter(&http, owner_server, "pipemedic_scoring_leases_held").await,
        1.0
    );
    let owner_ms = median_ms(waits[owner_i].clone());
    let other_ms = median_ms(waits[1 - owner_i].clone());
    eprintln!(
        "replica scoring: {} runs, {} differences; POST /v1/runs median {owner_ms:.1} ms at the owner, \
         {other_ms:.1} ms handed off ({:.2}x)",
        runs.len(),
        0,
        other_ms / owner_ms.max(0.001)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_owner_hands_its_pipeline_to_the_other_replica_within_the_lease() {
    let Some(db) = TestDb::new(Db::Postgres).await else {
        eprintln!("PIPEMEDIC_TEST_POSTGRES_URL not set; skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let runs = runs(130);
    let reference = one_process(&http, dir.path(), &runs).await;

    let (a, b) = two_replicas(dir.path(), &db.url, &http).await;
    let killed_at = 104;
    let mut got = Vec::with_capacity(runs.len());
    for (i, run) in runs[..killed_at].iter().enumerate() {
        got.push(post(&http, if i % 2 == 0 { &a } else { &b }, run).await.0);
    }
    let stored = scored(&db.url).await;
    let owner = stored[killed_at - 1].3.clone().expect("scored_by recorded");
    let (mut owner_server, survivor) = if owner == "replica-a" { (a, b) } else { (b, a) };
    let survivor_name = if owner == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };

    // The next run goes to the survivor while the owner dies.
    let next = runs[killed_at].clone();
    let client = http.clone();
    let base = survivor.base.clone();
    let in_flight = tokio::spawn(async move {
        client
            .post(format!("{base}/v1/runs"))
            .bearer_auth(TOKEN)
            .json(&next)
            .send()
            .await
            .expect("request sent")
            .json::<Value>()
            .await
            .unwrap()
    });
    owner_server.child.kill().expect("SIGKILL");
    let killed = Instant::now();
    owner_server.child.wait().unwrap();
    let body = in_flight.await.unwrap();
    let takeover = killed.elapsed();
    let verdict = &body["runs"][0]["verdict"];
    got.push((
        verdict["grade"]
            .as_f64()
            .unwrap_or_else(|| panic!("no verdict after the kill: {body}")),
        verdict["score"].as_f64().unwrap(),
    ));
    for run in &runs[killed_at + 1..] {
        got.push(post(&http, &survivor, run).await.0);
    }
    assert_same(&reference, &got);

    let lease = Duration::from_secs(LEASE_SECONDS);
    // A lease lapses at most `lease` after its last renewal; the survivor
    // looks every third of it; allow two seconds for a busy machine.
    assert!(
        takeover <= lease + lease / 3 + Duration::from_secs(2),
        "took {takeover:?} to take over"
    );
    let stored = scored(&db.url).await;
    assert_eq!(stored.len(), runs.len());
    for (i, (run_id, grade, times, by)) in stored.iter().enumerate() {
        assert!(grade.is_some(), "{run_id} unscored");
        assert_eq!(*times, 1, "{run_id} scored {times} times");
        if i > killed_at {
            assert_eq!(by.as_deref(), Some(survivor_name), "{run_id}");
        }
    }
    assert_eq!(queued(&db.url).await, 0);
    assert_eq!(
        counter(
            &http,
            &survivor,
            "pipemedic_scoring_leases_total{event=\"taken_over\"}"
        )
        .await,
        1.0
    );
    eprintln!(
        "replica takeover: owner killed after {killed_at} runs; its run in flight answered by the \
         survivor after {:.2} s (lease {LEASE_SECONDS} s, {:.2}x the lease); {} runs, each scored once",
        takeover.as_secs_f64(),
        takeover.as_secs_f64() / lease.as_secs_f64(),
        runs.len()
    );
}

/// A replica stores a run and queues it for scoring in one transaction:
/// should it die straight after the commit, the run is still queued and the
/// replica that takes the pipeline over scores it; a transaction that never
/// commits leaves neither the run nor its queue entry behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_queued_by_a_replica_that_died_after_storing_it_is_scored_by_another() {
    let Some(db) = TestDb::new(Db::Postgres).await else {
        eprintln!("PIPEMEDIC_TEST_POSTGRES_URL not set; skipped");
        return;
    };
    let store = db.store().await;
    let now = chrono::Utc::now();
    let parse = |i: u32| {
        pipemedic::ingest::generic::parse_one(run_json(PIPELINE, i, 420.0, 1), "", now)
            .expect("valid run")
    };

    // Never committed: nothing stays.
    let (lost, kept) = (parse(0), parse(1));
    let mut tx = store.begin_write().await.unwrap();
    let up = tx
        .upsert_runs(&[&lost], pipemedic::domain::RunSource::Generic, now)
        .await
        .unwrap();
    tx.enqueue_scoring(&[(up[0].pk, PIPELINE)], "replica-gone")
        .await
        .unwrap();
    drop(tx);
    assert!(scored(&db.url).await.is_empty());
    assert_eq!(queued(&db.url).await, 0);

    // Committed by a replica that then vanished without handing it on.
    let mut tx = store.begin_write().await.unwrap();
    let up = tx
        .upsert_runs(&[&kept], pipemedic::domain::RunSource::Generic, now)
        .await
        .unwrap();
    tx.enqueue_scoring(&[(up[0].pk, PIPELINE)], "replica-gone")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    assert_eq!(queued(&db.url).await, 1);

    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut survivor = start(dir.path(), "replica-b", &db.url);
    survivor.wait_ready(&http).await;
    let deadline = Instant::now() + Duration::from_secs(LEASE_SECONDS * 5);
    let mut stored = scored(&db.url).await;
    while stored.first().is_some_and(|r| r.1.is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = scored(&db.url).await;
    }
    assert_eq!(stored.len(), 1);
    let (run_id, grade, times, by) = &stored[0];
    assert_eq!(run_id, "r1");
    assert!(grade.is_some(), "the orphaned run was never scored");
    assert_eq!(*times, 1);
    assert_eq!(by.as_deref(), Some("replica-b"));
    assert_eq!(queued(&db.url).await, 0);
}
