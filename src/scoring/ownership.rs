//! One owner per pipeline across replicas (PostgreSQL): whichever replica
//! receives a run, the run is scored by its pipeline's owner, in order, on
//! the owner's one model, so several replicas give the verdicts one process
//! would give.
//!
//! - A replica that receives a final run queues it in the store
//!   (`scoring_queue`, `NOTIFY pipemedic_scoring`) and waits for its
//!   verdict: the owner answers through `NOTIFY pipemedic_verdicts`, and a
//!   poll every third of the lease catches a notification that was missed.
//! - The owner holds the pipeline's lease, renewed every third of
//!   `store.lease_seconds`. It claims queued runs in run order
//!   (`FOR UPDATE SKIP LOCKED`), scores them on its detection shards and
//!   dequeues them; each verdict is written under a fence (the lease row
//!   locked `FOR SHARE`, see `score_batch`), so a replica whose lease lapsed
//!   cannot write one, and a run with a verdict is never scored again.
//! - A pipeline whose lease is free or lapsed, with runs queued, is taken
//!   by the first replica that looks (on a wake-up or a heartbeat): it drops
//!   any model it had cached, then loads the stored one, which catches up
//!   on the stored runs (see [`super::bank`]), and scores the queue.
//!
//! Not used on SQLite, where one process owns every pipeline. This module
//! owns the policy; the SQL is in `store::leases`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::service::{DetectionError, DetectionService};
use crate::config::StoreConfig;
use crate::domain::{Run, Verdict};
use crate::metrics::Metrics;
use crate::store::{
    parse_verdict_payload, LeaseGrant, QueuedRun, Store, StoreError, SCORING_CHANNEL,
    VERDICT_CHANNEL,
};

/// Queued runs claimed at once. Each claim is a round of statements and
/// commits whatever its size (claim, read the runs, score, dequeue):
/// claims of 1,024 rather than 256 took in 1.24× the runs posted 100 per
/// request (`cargo bench --bench ingest`, PostgreSQL).
const CLAIM_BATCH: i64 = 1024;
/// Pipelines without a live lease looked at per pass.
const ORPHANS_PER_PASS: i64 = 100;
/// How often a drain busy with its own queue still looks for orphaned
/// pipelines, so that taking over a stopped replica's pipelines never
/// waits for this replica's queue to empty.
const ORPHANS_EVERY: Duration = Duration::from_secs(1);
/// Pause after a failed pass or a lost listener connection.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How this replica takes part in pipeline ownership.
#[derive(Clone)]
pub struct OwnershipSettings {
    /// This replica's name in the leases (unique among replicas).
    pub replica: String,
    /// How long a lease lasts unless renewed; renewed every third of it.
    pub lease: Duration,
    /// The PostgreSQL URL, for `LISTEN`.
    pub database_url: String,
}

impl std::fmt::Debug for OwnershipSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnershipSettings")
            .field("replica", &self.replica)
            .field("lease", &self.lease)
            .field(
                "database_url",
                &crate::config::redact_url(&self.database_url),
            )
            .finish()
    }
}

impl OwnershipSettings {
    /// From `[store]`: `lease_seconds`, `replica_id` (or a generated name)
    /// and `url`.
    pub fn from_config(store: &StoreConfig) -> Self {
        Self {
            replica: if store.replica_id.is_empty() {
                generated_replica_id()
            } else {
                store.replica_id.clone()
            },
            lease: Duration::from_secs(u64::from(store.lease_seconds)),
            database_url: store.url.clone(),
        }
    }

    fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Host name, process id and start time: unique per process start, so a
/// restarted replica never mistakes its predecessor's leases for its own.
fn generated_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pipemedic".into());
    let started = chrono::Utc::now().timestamp_millis();
    format!("{host}:{}:{started}", std::process::id())
}

/// How a received run's verdict came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// This replica owns the pipeline and scored it.
    Local,
    /// The owner is another replica.
    Handoff,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Local => "local",
            Path::Handoff => "handoff",
        }
    }
}

type Reply = oneshot::Sender<Result<Verdict, String>>;

/// Callers waiting for the verdict of a run this replica received.
struct Waiter {
    since: Instant,
    replies: Vec<Reply>,
}

struct Inner {
    store: Store,
    metrics: Arc<Metrics>,
    settings: OwnershipSettings,
    /// Pipelines this replica holds leases on, as far as it knows.
    held: Mutex<HashSet<String>>,
    /// Received runs waiting for their verdicts, by row id.
    waiters: Mutex<HashMap<i64, Waiter>>,
    /// Wakes the drain: a run was queued, or the heartbeat ticked.
    wake: Notify,
}

/// Locks a mutex; a panic elsewhere while it was held leaves plain data
/// that is still consistent (sets and maps updated in single calls).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handle on this replica's part in pipeline ownership; cheap to clone.
/// Its tasks stop when the last handle is dropped.
#[derive(Clone)]
pub struct Ownership {
    inner: Arc<Inner>,
    _stop: Arc<DropGuard>,
}

impl Ownership {
    /// Starts the heartbeat, the drain of the scoring queue and the
    /// listener (needs a Tokio runtime). `local` scores on this replica's
    /// shards.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        settings: OwnershipSettings,
        local: DetectionService,
    ) -> Self {
        let stop = CancellationToken::new();
        tracing::info!(
            replica = %settings.replica,
            lease_s = settings.lease.as_secs_f64(),
            "Scoring pipelines under leases shared with the other replicas."
        );
        let inner = Arc::new(Inner {
            store,
            metrics,
            settings,
            held: Mutex::new(HashSet::new()),
            waiters: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        });
        tokio::spawn(drain(inner.clone(), local.clone(), stop.clone()));
        tokio::spawn(heartbeat(inner.clone(), local, stop.clone()));
        tokio::spawn(listen(inner.clone(), stop.clone()));
        Self {
            inner,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// This replica's name, as it queues runs.
    pub fn replica(&self) -> &str {
        self.inner.me()
    }

    /// Waits for the owner's verdict on a run already queued (by the
    /// transaction that stored it, see `WriteTx::enqueue_scoring`).
    pub fn await_queued(&self, run_pk: i64) -> oneshot::Receiver<Result<Verdict, String>> {
        let answer = self.inner.wait_for(run_pk);
        self.inner.wake.notify_one();
        answer
    }

    /// Queues a stored run for its pipeline's owner (this replica or
    /// another); the receiver gets the owner's verdict.
    pub async fn submit(
        &self,
        run_pk: i64,
        run: &Run,
    ) -> Result<oneshot::Receiver<Result<Verdict, String>>, DetectionError> {
        let answer = self.inner.wait_for(run_pk);
        let queued = self
            .inner
            .store
            .enqueue_scoring(run_pk, &run.pipeline, &self.inner.settings.replica)
            .await;
        if let Err(e) = queued {
            lock(&self.inner.waiters).remove(&run_pk);
            return Err(DetectionError::Failed(e.to_string()));
        }
        self.inner.wake.notify_one();
        Ok(answer)
    }
}

impl Inner {
    fn me(&self) -> &str {
        &self.settings.replica
    }

    /// Registers a wait for the verdict on `run_pk`.
    fn wait_for(&self, run_pk: i64) -> oneshot::Receiver<Result<Verdict, String>> {
        let (reply, answer) = oneshot::channel();
        lock(&self.waiters)
            .entry(run_pk)
            .or_insert_with(|| Waiter {
                since: Instant::now(),
                replies: Vec::new(),
            })
            .replies
            .push(reply);
        answer
    }

    fn is_waiting_for(&self, run_pk: i64) -> bool {
        lock(&self.waiters).contains_key(&run_pk)
    }

    /// Answers everyone waiting for `run_pk`.
    fn complete(&self, run_pk: i64, verdict: &Verdict, path: Path) {
        let Some(waiter) = lock(&self.waiters).remove(&run_pk) else {
            return;
        };
        self.metrics
            .scoring_verdict_wait(path.label(), waiter.since.elapsed().as_secs_f64());
        if path == Path::Handoff {
            self.metrics.scoring_handoff("handed_off");
        }
        for reply in waiter.replies {
            let _ = reply.send(Ok(verdict.clone()));
        }
    }

    /// Records a lease granted by the store. A pipeline this replica did
    /// not already hold has its cached model dropped first: another
    /// replica may have scored its runs meanwhile.
    async fn granted(&self, pipeline: &str, grant: LeaseGrant, local: &DetectionService) {
        let mine_before = grant.previous.as_deref() == Some(self.me());
        let known = lock(&self.held).contains(pipeline);
        if known && mine_before {
            return;
        }
        if local.forget(pipeline).await.is_err() {
            return;
        }
        let held = {
            let mut held = lock(&self.held);
            held.insert(pipeline.to_string());
            held.len()
        };
        self.metrics.scoring_leases_held(held);
        match grant.previous.as_deref() {
            Some(previous) if previous != self.me() => {
                self.metrics.scoring_lease("taken_over");
                tracing::info!(
                    pipeline,
                    previous,
                    "Pipeline taken over; its previous owner let its lease lapse."
                );
            }
            _ => {
                self.metrics.scoring_lease("acquired");
                tracing::info!(pipeline, "Pipeline owned by this replica.");
            }
        }
    }

    /// Takes the pipelines with queued runs and no live lease; returns how
    /// many it took.
    async fn take_orphans(&self, local: &DetectionService) -> Result<usize, StoreError> {
        let mut taken = 0;
        for pipeline in self.store.orphaned_pipelines(ORPHANS_PER_PASS).await? {
            let grant = self
                .store
                .acquire_lease(&pipeline, self.me(), self.settings.lease_ms())
                .await?;
            if let Some(grant) = grant {
                self.granted(&pipeline, grant, local).await;
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Scores the queued runs of the pipelines this replica owns until none
    /// is left; a run that fails stays queued for the next pass.
    async fn drain_once(&self, local: &DetectionService) -> Result<(), StoreError> {
        self.take_orphans(local).await?;
        let mut orphans_looked = Instant::now();
        loop {
            // Orphans are looked for again when this replica's own queue
            // is empty, or a while after the last look: not before every
            // claim.
            if orphans_looked.elapsed() >= ORPHANS_EVERY {
                self.take_orphans(local).await?;
                orphans_looked = Instant::now();
            }
            let claim = self.store.claim_scoring(self.me(), CLAIM_BATCH).await?;
            if claim.runs.is_empty() {
                if self.take_orphans(local).await? == 0 {
                    return Ok(());
                }
                orphans_looked = Instant::now();
                continue;
            }
            let mut scored = Vec::with_capacity(claim.runs.len());
            let mut pending = Vec::with_capacity(claim.runs.len());
            let pks: Vec<i64> = claim.runs.iter().map(|(pk, _)| *pk).collect();
            let mut queued = self.store.queued_runs(&pks).await?;
            for (run_pk, enqueued_by) in &claim.runs {
                let Some(QueuedRun { stored, verdict }) = queued.remove(run_pk) else {
                    scored.push(*run_pk);
                    continue;
                };
                if let Some(verdict) = verdict {
                    // Scored before its owner could dequeue it.
                    scored.push(*run_pk);
                    self.complete(*run_pk, &verdict, Path::Local);
                    continue;
                }
                match local.submit_here(*run_pk, stored.run).await {
                    Ok(answer) => pending.push((*run_pk, enqueued_by.as_str(), answer)),
                    Err(e) => {
                        tracing::warn!(error = %e, "The detection shards have stopped.");
                        break;
                    }
                }
            }
            let mut failures = 0;
            for (run_pk, enqueued_by, answer) in pending {
                match answer.await {
                    Ok(Ok(verdict)) => {
                        scored.push(run_pk);
                        self.metrics.scoring_handoff(if enqueued_by == self.me() {
                            "local"
                        } else {
                            "for_peer"
                        });
                        self.complete(run_pk, &verdict, Path::Local);
                    }
                    Ok(Err(e)) => {
                        failures += 1;
                        tracing::warn!(run_pk, error = %e, "Queued run not scored; it stays queued.");
                    }
                    Err(_) => failures += 1,
                }
            }
            claim.finish(&scored).await?;
            if failures > 0 {
                return Err(StoreError::Corrupt {
                    what: "scoring queue".into(),
                    detail: format!("{failures} queued run(s) could not be scored"),
                });
            }
        }
    }

    /// Renews this replica's leases; a pipeline another replica took over
    /// is forgotten here.
    async fn renew(&self, local: &DetectionService) -> Result<(), StoreError> {
        let before: HashSet<String> = lock(&self.held).clone();
        let kept: HashSet<String> = self
            .store
            .renew_leases(self.me(), self.settings.lease_ms())
            .await?
            .into_iter()
            .collect();
        let lost: Vec<String> = before.difference(&kept).cloned().collect();
        let held = {
            let mut held = lock(&self.held);
            for pipeline in &lost {
                held.remove(pipeline);
            }
            held.len()
        };
        self.metrics.scoring_leases_held(held);
        for pipeline in lost {
            self.metrics.scoring_lease("lost");
            tracing::warn!(pipeline = %pipeline, "Lease lost to another replica; it scores this pipeline now.");
            let _ = local.forget(&pipeline).await;
        }
        Ok(())
    }

    /// Answers waiters whose verdict is stored (its notification was
    /// missed) and forgets those nobody waits for any more.
    async fn poll_waiters(&self) -> Result<(), StoreError> {
        let due: Vec<i64> = {
            let mut waiters = lock(&self.waiters);
            let before = waiters.len();
            waiters.retain(|_, w| w.replies.iter().any(|r| !r.is_closed()));
            for _ in waiters.len()..before {
                self.metrics.scoring_handoff("timed_out");
            }
            let age = self.settings.renew_every();
            waiters
                .iter()
                .filter(|(_, w)| w.since.elapsed() >= age)
                .map(|(pk, _)| *pk)
                .collect()
        };
        for run_pk in due {
            if let Some(verdict) = self.store.verdict_of(run_pk).await? {
                self.complete(run_pk, &verdict, Path::Handoff);
            }
        }
        Ok(())
    }
}

/// Scores queued runs whenever woken; at shutdown saves the models and
/// gives up the leases so another replica takes over at once.
async fn drain(inner: Arc<Inner>, local: DetectionService, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = inner.wake.notified() => {}
        }
        if let Err(e) = inner.drain_once(&local).await {
            inner.metrics.background_error("scoring_queue");
            tracing::warn!(error = %e, "Scoring queued runs failed; retrying.");
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(RETRY_PAUSE) => inner.wake.notify_one(),
            }
        }
    }
    if let Err(e) = local.flush().await {
        tracing::warn!(error = %e, "Saving models before giving up the leases failed.");
    }
    match inner.store.release_leases(inner.me()).await {
        Ok(released) => {
            for _ in 0..released {
                inner.metrics.scoring_lease("released");
            }
            inner.metrics.scoring_leases_held(0);
        }
        Err(e) => tracing::warn!(error = %e, "Leases not released; they lapse instead."),
    }
}

/// Every third of the lease: renews the leases, answers waiters whose
/// notification was missed and wakes the drain (which takes over the
/// pipelines whose owner stopped).
async fn heartbeat(inner: Arc<Inner>, local: DetectionService, stop: CancellationToken) {
    let mut tick = tokio::time::interval(inner.settings.renew_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = inner.renew(&local).await {
            inner.metrics.background_error("scoring_leases");
            tracing::warn!(error = %e, "Renewing pipeline leases failed.");
        }
        if let Err(e) = inner.poll_waiters().await {
            tracing::warn!(error = %e, "Looking up awaited verdicts failed.");
        }
        inner.wake.notify_one();
    }
}

/// Listens for queued runs (wakes the drain) and for verdicts of runs this
/// replica waits for; reconnects when the connection drops.
async fn listen(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        match listen_once(&inner, &stop).await {
            Ok(()) => return,
            Err(e) => {
                inner.metrics.background_error("scoring_listen");
                tracing::warn!(error = %e, "Listening for scoring notifications failed; reconnecting.");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }
}

/// One listener connection, until `stop` (Ok) or a failure (Err).
async fn listen_once(inner: &Inner, stop: &CancellationToken) -> Result<(), StoreError> {
    let mut listener = sqlx::postgres::PgListener::connect(&inner.settings.database_url).await?;
    listener
        .listen_all([SCORING_CHANNEL, VERDICT_CHANNEL])
        .await?;
    // Whatever was queued or scored before the listener was up.
    inner.wake.notify_one();
    loop {
        let notification = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            n = listener.recv() => n?,
        };
        if notification.channel() == SCORING_CHANNEL {
            inner.wake.notify_one();
            continue;
        }
        for run_pk in parse_verdict_payload(notification.payload()) {
            if inner.is_waiting_for(run_pk) {
                if let Some(verdict) = inner.store.verdict_of(run_pk).await? {
                    inner.complete(run_pk, &verdict, Path::Handoff);
                }
            }
        }
    }
}
