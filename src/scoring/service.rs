//! The detection flow: every run that reaches a final status is scored by
//! its pipeline's model, the verdict is stored on the run, and an abnormal
//! run opens (or extends) its pipeline's anomaly record while a normal run
//! closes it.
//!
//! Work is split over shards by pipeline name; each shard is one task that
//! owns its part of the model bank and handles its jobs in order, so runs of
//! one pipeline always update its model in the order they were stored,
//! while different pipelines are scored in parallel.
//!
//! With the SageMaker backend the pipeline's model still normalises and
//! shingles each run; the shingled row is scored by the endpoint and the
//! model thresholds and learns it. When the endpoint fails, or is being
//! rested after repeated failures, the run is scored by the embedded forest
//! instead (counted in `pipemedic_detector_fallbacks_total`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::bank::ModelBank;
use super::ownership::{Ownership, OwnershipSettings};
use super::pipeline::PipelineModel;
use super::sagemaker::SagemakerScorer;
use crate::clock::Clock;
use crate::config::PipelineRules;
use crate::domain::{Run, ScoredRun, Verdict};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, VerdictRow};

/// Settings of the detection flow.
#[derive(Debug, Clone)]
pub struct DetectionSettings {
    pub shards: usize,
    /// Models kept in memory across all shards.
    pub cache_models: usize,
    /// Bytes the models kept in memory may take across all shards.
    pub model_cache_bytes: usize,
    /// Sensitivity and the rules of what is a problem (`[detector]`).
    pub detector: crate::config::DetectorConfig,
    /// Scores runs with a SageMaker endpoint when set (falling back to the
    /// embedded forest); the embedded forest alone when `None`.
    pub sagemaker: Option<Arc<SagemakerScorer>>,
    /// Several replicas on PostgreSQL: runs are scored by their pipeline's
    /// owner (see [`super::ownership`]). `None`: this process scores every
    /// run it receives (SQLite, one process).
    pub ownership: Option<OwnershipSettings>,
}

/// `mib` MiB in bytes, saturating.
pub fn mib_to_bytes(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self {
            shards: 2,
            cache_models: crate::config::DEFAULT_CACHE_MODELS,
            model_cache_bytes: mib_to_bytes(crate::config::DEFAULT_MODEL_CACHE_MIB),
            detector: crate::config::DetectorConfig::default(),
            sagemaker: None,
            ownership: None,
        }
    }
}

enum Job {
    Score {
        run_pk: i64,
        run: Box<Run>,
        reply: Option<oneshot::Sender<Result<Verdict, String>>>,
    },
    AcceptBaseline {
        pipeline: String,
        metric: Option<String>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Replace {
        pipeline: String,
        model: Box<PipelineModel>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Flush {
        reply: oneshot::Sender<Result<usize, String>>,
    },
    Forget {
        pipeline: String,
        reply: oneshot::Sender<()>,
    },
}

/// Handle to the detection shards; cheap to clone.
#[derive(Clone)]
pub struct DetectionService {
    shards: Arc<Vec<mpsc::Sender<Job>>>,
    /// Routes runs to their pipeline's owner (several replicas).
    ownership: Option<Ownership>,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectionError {
    #[error("the detection service has stopped")]
    Stopped,
    #[error("detection failed: {0}")]
    Failed(String),
}

fn shard_of(pipeline: &str, shards: usize) -> usize {
    (super::pipeline::seed_for(pipeline) % shards as u64) as usize
}

impl DetectionService {
    /// Starts the shard tasks (needs a Tokio runtime). They stop when every
    /// handle is dropped, saving their models first.
    ///
    /// Every scored run is also handed to `scored` (the incident flow), in
    /// the order it was scored, without waiting: when that queue is full the
    /// hand-off is dropped and counted (`pipemedic_handoffs_dropped_total`),
    /// so a slow incident flow never holds up scoring or ingest.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        settings: DetectionSettings,
        scored: Option<mpsc::Sender<ScoredRun>>,
    ) -> Self {
        let shards = settings.shards.max(1);
        let per_shard = (settings.cache_models / shards).max(1);
        let per_shard_bytes = (settings.model_cache_bytes / shards).max(1);
        let detector = Arc::new(settings.detector.clone());
        let fence = settings.ownership.as_ref().map(|o| o.replica.clone());
        let senders = (0..shards)
            .map(|_| {
                let (tx, rx) = mpsc::channel(1024);
                let bank =
                    ModelBank::new(store.clone(), per_shard, detector.clone(), metrics.clone())
                        .with_byte_budget(per_shard_bytes);
                tokio::spawn(shard(
                    store.clone(),
                    bank,
                    metrics.clone(),
                    clock.clone(),
                    scored.clone(),
                    ShardScoring {
                        sagemaker: settings.sagemaker.clone(),
                        fence: fence.clone(),
                    },
                    rx,
                ));
                tx
            })
            .collect();
        let local = Self {
            shards: Arc::new(senders),
            ownership: None,
        };
        match settings.ownership {
            None => local,
            Some(ownership) => Self {
                shards: local.shards.clone(),
                ownership: Some(Ownership::start(store, metrics, ownership, local)),
            },
        }
    }

    fn sender(&self, pipeline: &str) -> &mpsc::Sender<Job> {
        &self.shards[shard_of(pipeline, self.shards.len())]
    }

    /// Queues a stored run for scoring; the receiver gets its verdict.
    /// With several replicas the run goes to its pipeline's owner, which
    /// may be another replica.
    pub async fn submit(
        &self,
        run_pk: i64,
        run: Run,
    ) -> Result<oneshot::Receiver<Result<Verdict, String>>, DetectionError> {
        match &self.ownership {
            Some(ownership) => ownership.submit(run_pk, &run).await,
            None => self.submit_here(run_pk, run).await,
        }
    }

    /// The replica name to queue runs under in the transaction that stores
    /// them, when pipelines are owned across replicas; `None` when this
    /// process scores every pipeline (then [`DetectionService::submit`]).
    pub fn queues_as(&self) -> Option<&str> {
        self.ownership.as_ref().map(Ownership::replica)
    }

    /// The verdict on a run the storing transaction queued under
    /// [`DetectionService::queues_as`].
    pub async fn submit_queued(
        &self,
        run_pk: i64,
        run: Run,
    ) -> Result<oneshot::Receiver<Result<Verdict, String>>, DetectionError> {
        match &self.ownership {
            Some(ownership) => Ok(ownership.await_queued(run_pk)),
            None => self.submit_here(run_pk, run).await,
        }
    }

    /// Scores a stored run on this replica's shards.
    pub(super) async fn submit_here(
        &self,
        run_pk: i64,
        run: Run,
    ) -> Result<oneshot::Receiver<Result<Verdict, String>>, DetectionError> {
        let (reply, answer) = oneshot::channel();
        self.sender(&run.pipeline.clone())
            .send(Job::Score {
                run_pk,
                run: Box::new(run),
                reply: Some(reply),
            })
            .await
            .map_err(|_| DetectionError::Stopped)?;
        Ok(answer)
    }

    /// Scores a stored run and waits for the verdict.
    pub async fn score(&self, run_pk: i64, run: Run) -> Result<Verdict, DetectionError> {
        self.submit(run_pk, run)
            .await?
            .await
            .map_err(|_| DetectionError::Stopped)?
            .map_err(DetectionError::Failed)
    }

    /// Fast-forwards a pipeline's model to its current level (a person said
    /// the change is expected).
    pub async fn accept_baseline(
        &self,
        pipeline: &str,
        metric: Option<&str>,
    ) -> Result<(), DetectionError> {
        let (reply, answer) = oneshot::channel();
        self.sender(pipeline)
            .send(Job::AcceptBaseline {
                pipeline: pipeline.to_string(),
                metric: metric.map(str::to_string),
                reply,
            })
            .await
            .map_err(|_| DetectionError::Stopped)?;
        answer
            .await
            .map_err(|_| DetectionError::Stopped)?
            .map_err(DetectionError::Failed)
    }

    /// Installs a rebuilt model (from `train`).
    pub async fn replace(
        &self,
        pipeline: &str,
        model: PipelineModel,
    ) -> Result<(), DetectionError> {
        let (reply, answer) = oneshot::channel();
        self.sender(pipeline)
            .send(Job::Replace {
                pipeline: pipeline.to_string(),
                model: Box::new(model),
                reply,
            })
            .await
            .map_err(|_| DetectionError::Stopped)?;
        answer
            .await
            .map_err(|_| DetectionError::Stopped)?
            .map_err(DetectionError::Failed)
    }

    /// Drops a pipeline's cached model without saving it (this replica
    /// took the pipeline over, or lost it).
    pub(super) async fn forget(&self, pipeline: &str) -> Result<(), DetectionError> {
        let (reply, answer) = oneshot::channel();
        self.sender(pipeline)
            .send(Job::Forget {
                pipeline: pipeline.to_string(),
                reply,
            })
            .await
            .map_err(|_| DetectionError::Stopped)?;
        answer.await.map_err(|_| DetectionError::Stopped)
    }

    /// Saves every model with unsaved updates; returns how many were saved.
    pub async fn flush(&self) -> Result<usize, DetectionError> {
        let mut total = 0;
        for shard in self.shards.iter() {
            let (reply, answer) = oneshot::channel();
            shard
                .send(Job::Flush { reply })
                .await
                .map_err(|_| DetectionError::Stopped)?;
            total += answer
                .await
                .map_err(|_| DetectionError::Stopped)?
                .map_err(DetectionError::Failed)?;
        }
        Ok(total)
    }
}

/// How a shard scores besides its model bank.
struct ShardScoring {
    sagemaker: Option<Arc<SagemakerScorer>>,
    /// This replica's id when verdicts are written under a pipeline lease.
    fence: Option<String>,
}

async fn shard(
    store: Store,
    mut bank: ModelBank,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    scored: Option<mpsc::Sender<ScoredRun>>,
    scoring: ShardScoring,
    mut rx: mpsc::Receiver<Job>,
) {
    let ShardScoring { sagemaker, fence } = scoring;
    let mut flush_timer = tokio::time::interval(Duration::from_secs(60));
    flush_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held: Option<Job> = None;
    loop {
        let job = if let Some(job) = held.take() {
            job
        } else {
            tokio::select! {
            job = rx.recv() => match job {
                Some(job) => job,
                None => break,
            },
            _ = flush_timer.tick() => {
                if let Err(e) = bank.flush().await {
                    metrics.background_error("model_flush");
                    tracing::error!(error = %e, "Saving models failed.");
                }
                continue;
            }
            }
        };
        match job {
            Job::Score { run_pk, run, reply } => {
                // Whatever else is already queued is scored with it and
                // stored in one transaction (group commit).
                let mut batch = vec![(run_pk, run, reply)];
                while batch.len() < SCORE_BATCH {
                    match rx.try_recv() {
                        Ok(Job::Score { run_pk, run, reply }) => batch.push((run_pk, run, reply)),
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let scorers = Scorers {
                    sagemaker: sagemaker.as_deref(),
                    metrics: &metrics,
                };
                let runs: Vec<(i64, &Run)> =
                    batch.iter().map(|(pk, run, _)| (*pk, &**run)).collect();
                let result = score_batch(
                    &store,
                    &mut bank,
                    clock.as_ref(),
                    &scorers,
                    &runs,
                    fence.as_deref(),
                )
                .await;
                match result {
                    Err(e) => {
                        if fence.is_some() {
                            // The models learned runs whose verdicts were
                            // not stored; the next run reloads them.
                            for (_, run, _) in &batch {
                                bank.forget(&run.pipeline);
                            }
                        }
                        metrics.background_error("detection");
                        tracing::error!(runs = batch.len(), error = %e, "Scoring failed.");
                        let message = e.to_string();
                        for (_, _, reply) in batch {
                            if let Some(reply) = reply {
                                let _ = reply.send(Err(message.clone()));
                            }
                        }
                    }
                    Ok(verdicts) => {
                        for ((run_pk, run, reply), verdict) in batch.into_iter().zip(verdicts) {
                            if let Some(scored) = &scored {
                                let event = ScoredRun {
                                    run_pk,
                                    run: (*run).clone(),
                                    verdict: verdict.clone(),
                                };
                                // Never waits: a full incident queue must not
                                // hold up scoring, and through it ingest.
                                match scored.try_send(event) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(event)) => {
                                        metrics.handoff_dropped("scored");
                                        tracing::warn!(pipeline = %event.run.pipeline, run_id = %event.run.run_id, "The incident queue is full; scored run not handed on (stored with its verdict).");
                                    }
                                    Err(mpsc::error::TrySendError::Closed(_)) => {
                                        tracing::warn!(
                                            "The incident flow has stopped; scored run not handed on."
                                        );
                                    }
                                }
                            }
                            if let Some(reply) = reply {
                                let _ = reply.send(Ok(verdict));
                            }
                        }
                    }
                }
            }
            Job::AcceptBaseline {
                pipeline,
                metric,
                reply,
            } => {
                let result = async {
                    let entry = bank.get(&pipeline, i64::MAX).await?;
                    entry.model.accept_baseline(metric.as_deref());
                    bank.save_now(&pipeline).await
                }
                .await;
                let _ = reply.send(result.map_err(|e| e.to_string()));
            }
            Job::Replace {
                pipeline,
                model,
                reply,
            } => {
                let result = bank.replace(&pipeline, *model).await;
                let _ = reply.send(result.map_err(|e| e.to_string()));
            }
            Job::Flush { reply } => {
                let _ = reply.send(bank.flush().await.map_err(|e| e.to_string()));
            }
            Job::Forget { pipeline, reply } => {
                bank.forget(&pipeline);
                let _ = reply.send(());
            }
        }
    }
    if let Err(e) = bank.flush().await {
        tracing::error!(error = %e, "Saving models at shutdown failed.");
    }
}

/// Runs scored together and stored in one transaction at most.
const SCORE_BATCH: usize = 256;

/// Scores runs in order (each with its pipeline's model), then stores every
/// verdict and the anomaly records they open, extend or close in one
/// transaction. Models are saved after the commit, never inside it.
///
/// With a `fence` (this replica's id, several replicas) the transaction
/// first makes sure the replica still holds each pipeline's lease and keeps
/// it from being taken over until the commit; otherwise nothing is stored
/// and [`StoreError::LeaseLost`] is returned.
async fn score_batch(
    store: &Store,
    bank: &mut ModelBank,
    clock: &dyn Clock,
    scorers: &Scorers<'_>,
    runs: &[(i64, &Run)],
    fence: Option<&str>,
) -> Result<Vec<Verdict>, StoreError> {
    // 1. Decide, in memory.
    let mut decided: Vec<(Option<(i64, &Run)>, Verdict)> = Vec::with_capacity(runs.len());
    let mut resets_applied = std::collections::BTreeSet::new();
    let mut to_save = std::collections::BTreeSet::new();
    // Pending baseline resets of every pipeline of the batch, read at once.
    let pending_resets = store
        .pending_baseline_resets_of(&distinct_pipelines(runs.iter().map(|(_, run)| *run)))
        .await?;
    for (run_pk, run) in runs {
        let resets = pending_resets
            .get(&run.pipeline)
            .cloned()
            .unwrap_or_default();
        let rules = bank.rules_for(&run.pipeline);
        let entry = bank.get(&run.pipeline, *run_pk).await?;
        for (id, metric) in &resets {
            if resets_applied.insert(*id) {
                entry.model.accept_baseline(metric.as_deref());
                entry.unsaved += 1;
                tracing::info!(
                    pipeline = %run.pipeline,
                    metric = metric.as_deref().unwrap_or("all"),
                    "Baseline accepted; the current level is the new normal."
                );
            }
        }
        if *run_pk <= entry.model.last_run_pk {
            // Already learned (a repeated job): answer with what was stored.
            if let Some(v) = store.verdict_of(*run_pk).await? {
                decided.push((None, v));
                continue;
            }
        }
        let verdict = match external_score(scorers, &entry.model, run, &rules).await {
            Some((score, corrected)) => entry
                .model
                .observe_with_external_scores(run, &rules, score, corrected),
            None => entry.model.observe(run, &rules),
        };
        entry.model.last_run_pk = entry.model.last_run_pk.max(*run_pk);
        entry.unsaved += 1;
        if entry.unsaved >= super::bank::SAVE_EVERY {
            to_save.insert(run.pipeline.clone());
        }
        decided.push((Some((*run_pk, run)), verdict));
    }

    let to_save: Vec<String> = to_save.into_iter().collect();

    // 2. Store, in one transaction.
    let written = distinct_pipelines(
        decided
            .iter()
            .filter_map(|(write, _)| write.map(|(_, run)| run)),
    );
    // Most batches only store verdicts: on a SQLite file, without a
    // `WriteTx`, unless one of their pipelines has an open anomaly.
    let quiet = fence.is_none()
        && resets_applied.is_empty()
        && decided.iter().all(|(write, verdict)| {
            write.is_none() || (!verdict.is_anomalous() && verdict.new_normal.is_empty())
        });
    if quiet {
        let rows = decided
            .iter()
            .filter_map(|(write, verdict)| {
                write.map(|(run_pk, _)| VerdictRow::new(run_pk, verdict))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pipelines = written.iter().map(|p| p.to_string()).collect();
        if store.store_quiet_verdicts(pipelines, rows).await? {
            bank.save_together(&to_save).await?;
            return Ok(decided.into_iter().map(|(_, verdict)| verdict).collect());
        }
    }
    let now = clock.now();
    let mut tx = store.begin_write().await?;
    if let Some(holder) = fence {
        if let Some(lost) = tx.hold_leases(&written, holder).await? {
            return Err(StoreError::LeaseLost(lost));
        }
    }
    for id in &resets_applied {
        tx.mark_baseline_reset_applied(*id).await?;
    }
    let mut verdicts = Vec::with_capacity(decided.len());
    // Which verdicts to store (all in one statement at the end), and the
    // pipelines with an open anomaly as this transaction goes (read once:
    // a normal run of a pipeline without one closes nothing).
    let mut to_store: Vec<(i64, usize)> = Vec::with_capacity(decided.len());
    let mut open = tx.pipelines_with_open_anomaly(&written).await?;
    for (write, mut verdict) in decided {
        if let Some((run_pk, run)) = write {
            if verdict.is_anomalous() {
                let id = tx
                    .open_or_extend_anomaly(&run.pipeline, run_pk, &verdict, now)
                    .await?;
                verdict.anomaly_id = Some(id);
                open.insert(run.pipeline.clone());
                tx.audit(
                    now,
                    "anomaly.detected",
                    &format!("anomaly/{id}"),
                    "detector",
                    &serde_json::json!({
                        "pipeline": run.pipeline, "run_id": run.run_id, "grade": verdict.grade,
                        "score": verdict.score, "deviations": verdict.deviations,
                    }),
                )
                .await?;
                tracing::info!(pipeline = %run.pipeline, run_id = %run.run_id, grade = verdict.grade, anomaly = id, "Abnormal run.");
            } else if !verdict.warming_up {
                if !verdict.new_normal.is_empty() {
                    tx.audit(
                        now,
                        "anomaly.new_normal",
                        &format!("pipeline/{}", run.pipeline),
                        "detector",
                        &serde_json::json!({"pipeline": run.pipeline, "run_id": run.run_id,
                                            "new_normal": verdict.new_normal, "why": verdict.why()}),
                    )
                    .await?;
                    tracing::info!(pipeline = %run.pipeline, run_id = %run.run_id, "A lasting change is the new normal.");
                }
                let closed = if open.remove(&run.pipeline) {
                    tx.close_anomaly(&run.pipeline, now).await?
                } else {
                    None
                };
                if let Some(id) = closed {
                    tx.audit(
                        now,
                        "anomaly.closed",
                        &format!("anomaly/{id}"),
                        "detector",
                        &serde_json::json!({"pipeline": run.pipeline, "normal_run_id": run.run_id}),
                    )
                    .await?;
                }
            }
            to_store.push((run_pk, verdicts.len()));
        }
        verdicts.push(verdict);
    }
    let rows: Vec<(i64, &Verdict)> = to_store
        .iter()
        .map(|&(run_pk, i)| (run_pk, &verdicts[i]))
        .collect();
    tx.set_verdicts(&rows).await?;
    if let Some(holder) = fence {
        let run_pks: Vec<i64> = to_store.iter().map(|&(run_pk, _)| run_pk).collect();
        tx.mark_scored_by(&run_pks, holder).await?;
    }
    tx.commit().await?;
    bank.save_together(&to_save).await?;
    Ok(verdicts)
}

/// The pipelines of `runs`, each once, sorted.
fn distinct_pipelines<'a>(runs: impl Iterator<Item = &'a Run>) -> Vec<&'a str> {
    let mut pipelines: Vec<&str> = runs.map(|run| run.pipeline.as_str()).collect();
    pipelines.sort_unstable();
    pipelines.dedup();
    pipelines
}

/// What scores runs besides the embedded forest.
struct Scorers<'a> {
    sagemaker: Option<&'a SagemakerScorer>,
    metrics: &'a Metrics,
}

/// The run's score from SageMaker (and that of its corrected row while a
/// recent anomaly is in the shingle; both in one call), or `None` when the
/// embedded forest should score it: no SageMaker backend, nothing to score
/// yet (no full shingle), the endpoint failed (a fallback), or it is being
/// rested.
async fn external_score(
    scorers: &Scorers<'_>,
    model: &PipelineModel,
    run: &Run,
    rules: &PipelineRules,
) -> Option<(f64, Option<f64>)> {
    let scorer = scorers.sagemaker?;
    let mut rows = vec![model.shingled_point(run, rules)?];
    rows.extend(model.corrected_point(run, rules));
    if !scorer.available() {
        scorers.metrics.detector_fallback("circuit_open");
        return None;
    }
    match scorer.score(&rows).await {
        Ok(scores) => Some((*scores.first()?, scores.get(1).copied())),
        Err(e) => {
            scorers.metrics.detector_fallback("error");
            tracing::debug!(error = %e, "SageMaker scoring failed; the embedded forest scores this run.");
            None
        }
    }
}
