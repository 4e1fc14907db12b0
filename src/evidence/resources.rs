//! The wait before a finished CodeBuild run is scored, so that the detector
//! learns its CPU and memory without the pipeline posting them.
//!
//! A run of CodePipeline (from its EventBridge events, whose link is the
//! build's CloudWatch Logs deep link, or polled, whose link is the build's
//! page in the CodeBuild console) that became final with a CodeBuild build
//! ([`super::codebuild_of`]) and no CPU or memory is
//! stored as usual but not scored at once: it is held here. Every
//! `evidence.resource_poll_s`, ONE batched `GetMetricData` call
//! (`cloudwatch::usage`; one per [`BUILDS_PER_CALL`] builds, each bounded
//! by `evidence.timeout_s`) asks CloudWatch for the peak
//! `CPUUtilizedPercent` and `MemoryUtilized` of every held build. A
//! run whose figures arrived gets them stored on it (its body, as the
//! evidence of abnormal runs is stored) and is then scored with them; the
//! evidence fetched after scoring skips figures a run already has.
//!
//! - **Bounds.** A run waits at most `evidence.resource_wait_s` (CloudWatch
//!   publishes build metrics a minute or more after the build ends) and is
//!   then scored without them; at most `evidence.resource_max_held` runs
//!   wait, beyond which a run is scored at once. Both are counted in
//!   `pipemedic_resource_waits_total{outcome}`.
//! - **Order.** Runs of one pipeline are scored in the order they became
//!   final (the forest is order-sensitive): a later run of a pipeline with
//!   a held run waits behind it, whatever it reported, and the runs of a
//!   pipeline are handed to detection in order, under the lock that new
//!   runs pass through.
//! - **Errors.** A refused, throttled or failed call never drops a run:
//!   the runs it asked about are scored without their figures. Each call is
//!   counted in `pipemedic_evidence_fetches_total{source="cloudwatch"}`; a
//!   problem is logged as a warning when it starts (and again after calls
//!   succeeded), not at every poll.
//! - **Restarts.** A held run is stored, final, without a verdict and not
//!   in the scoring queue. At start ([`ResourceHold::recover`]) the runs of
//!   the last day in that state, from the CodePipeline sources, of
//!   pipelines with such a CodeBuild run, are held again (with the time
//!   they already waited counted from when they were stored) or scored.
//! - **Replicas (PostgreSQL).** The replica that stored a run holds it and
//!   then queues it for its pipeline's owner as any run
//!   ([`DetectionService::submit`]). If that replica dies, the recovery of
//!   whichever replica starts next picks the run up; a run held twice (a
//!   replica starting while another still holds it) is scored once, since
//!   the scoring queue and the verdict fence score a run only once.
//!
//! This module owns the hold and its policy; detection scores, and the
//! CloudWatch call itself is `cloudwatch::usage`'s.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::codebuild::{self, CodeBuildRef, Window};
use super::{codebuild_of, FetchError, Source};
use crate::aws::AwsSettings;
use crate::clock::Clock;
use crate::config::EvidenceConfig;
use crate::domain::{ResourceMetrics, Run, RunSource};
use crate::metrics::Metrics;
use crate::scoring::DetectionService;
use crate::store::{Store, StoreError};

/// The sources whose runs wait for their build's figures: CodePipeline
/// executions (and the CodeBuild builds that arrive with them).
pub const HELD_SOURCES: [RunSource; 2] = [RunSource::Aws, RunSource::CodepipelinePoll];

/// Builds asked about per `GetMetricData` call, as
/// `cloudwatch::BUILDS_PER_CALL` (two queries each; the call takes 500).
pub const BUILDS_PER_CALL: usize = 50;

/// How far back (by the runs' event time) start-up looks for runs that
/// were waiting when the last process stopped.
pub const RECOVER_HORIZON: chrono::Duration = chrono::Duration::days(1);

/// How the hold waits.
#[derive(Debug, Clone)]
pub struct HoldSettings {
    /// Longest a run waits for its figures.
    pub wait: chrono::Duration,
    /// How often the figures of the waiting runs are asked for.
    pub poll: Duration,
    /// Most runs held at once.
    pub max_held: usize,
    /// Time allowed for one round of `GetMetricData` calls.
    pub timeout: Duration,
}

impl HoldSettings {
    /// From `[evidence]`; `None` when runs are scored at once
    /// (`codebuild_usage = false` or `resource_wait_s = 0`).
    pub fn from_config(config: &EvidenceConfig) -> Option<Self> {
        (config.codebuild_usage && config.resource_wait_s > 0).then(|| Self {
            wait: chrono::Duration::seconds(
                i64::try_from(config.resource_wait_s.min(86_400)).unwrap_or(86_400),
            ),
            poll: Duration::from_secs(config.resource_poll_s.max(1)),
            max_held: config.resource_max_held.max(1),
            timeout: Duration::from_secs(config.timeout_s.max(1)),
        })
    }
}

/// The build whose figures a run waits for: the run is final, from a
/// CodePipeline source, has a CodeBuild build and reported neither CPU nor
/// memory.
pub fn waits_for_figures(source: RunSource, run: &Run) -> Option<CodeBuildRef> {
    if !HELD_SOURCES.contains(&source) || !run.status.is_final() {
        return None;
    }
    let reported = run
        .resources
        .is_some_and(|r| r.cpu_peak_pct.is_some() || r.mem_peak_mb.is_some());
    if reported {
        return None;
    }
    codebuild_of(run)
}

/// Why a held run may be scored now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// Its figures arrived and are stored on it.
    Metrics,
    /// It waited `resource_wait_s`.
    WaitedOut,
    /// CloudWatch refused or failed.
    Failed,
    /// Too many runs wait.
    Full,
    /// It waited only for the earlier runs of its pipeline.
    Turn,
}

impl Done {
    /// The outcome counted in `pipemedic_resource_waits_total`.
    fn outcome(self) -> Option<&'static str> {
        match self {
            Self::Metrics => Some("metrics"),
            Self::WaitedOut => Some("waited_out"),
            Self::Failed => Some("failed"),
            Self::Full => Some("full"),
            Self::Turn => None,
        }
    }
}

/// One stored run waiting to be scored.
struct Held {
    pk: i64,
    run: Run,
    /// The build whose figures it waits for; `None` when it waits only
    /// behind an earlier run of its pipeline.
    build: Option<CodeBuildRef>,
    deadline: DateTime<Utc>,
    /// Set when it may be scored (once the runs before it may too).
    done: Option<Done>,
}

/// The held runs, by pipeline, in the order they are to be scored.
#[derive(Default)]
struct State {
    pipelines: HashMap<String, VecDeque<Held>>,
    held: usize,
}

impl State {
    fn push(&mut self, held: Held) {
        self.pipelines
            .entry(held.run.pipeline.clone())
            .or_default()
            .push_back(held);
        self.held += 1;
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Held> {
        self.pipelines.values_mut().flat_map(|q| q.iter_mut())
    }
}

struct Inner {
    settings: HoldSettings,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    detection: DetectionService,
    #[cfg(feature = "ci-evidence")]
    cloudwatch: crate::aws::LazyClient<aws_sdk_cloudwatch::Client>,
    state: Mutex<State>,
    /// Wakes the worker to score what may go now (without asking CloudWatch).
    wake: Notify,
    /// The outcome of the last failed call, until a call succeeds (a
    /// problem is warned of once, not at every poll).
    problem: std::sync::Mutex<Option<&'static str>>,
}

/// Holds finished CodeBuild runs until their figures arrive; cheap to
/// clone. Its worker stops when the last handle is dropped; the runs held
/// then are stored and found again at the next start.
#[derive(Clone)]
pub struct ResourceHold {
    inner: Arc<Inner>,
    _stop: Arc<DropGuard>,
}

impl std::fmt::Debug for ResourceHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceHold")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl ResourceHold {
    /// The hold `[evidence]` asks for, started; `None` when runs are to be
    /// scored at once, or when this build has no CloudWatch client
    /// (feature `ci-evidence`).
    pub fn from_config(
        config: &EvidenceConfig,
        aws: &AwsSettings,
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        detection: DetectionService,
    ) -> Option<Self> {
        if !cfg!(feature = "ci-evidence") {
            return None;
        }
        let settings = HoldSettings::from_config(config)?;
        Some(Self::start(settings, aws, store, metrics, clock, detection))
    }

    /// Starts the worker (needs a Tokio runtime). CloudWatch is loaded on
    /// the first call, with `aws`'s settings (`aws.endpoints.cloudwatch`).
    pub fn start(
        settings: HoldSettings,
        aws: &AwsSettings,
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        detection: DetectionService,
    ) -> Self {
        #[cfg(not(feature = "ci-evidence"))]
        let _ = aws;
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            settings,
            store,
            metrics,
            clock,
            detection,
            #[cfg(feature = "ci-evidence")]
            cloudwatch: crate::aws::LazyClient::new(aws, crate::aws::AwsClients::cloudwatch),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            problem: std::sync::Mutex::new(None),
        });
        tokio::spawn(work(inner.clone(), stop.clone()));
        Self {
            inner,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// Takes stored run `run_pk`, which just became final, when it is to
    /// wait: its build's figures are missing, or an earlier run of its
    /// pipeline is held. Returns whether it was taken; a run not taken is
    /// the caller's to score now (then nothing of its pipeline is held, so
    /// it is not scored ahead of one).
    pub async fn offer(&self, source: RunSource, run_pk: i64, run: &Run) -> bool {
        let build = waits_for_figures(source, run);
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        let queued = state.pipelines.contains_key(&run.pipeline);
        if build.is_none() && !queued {
            return false;
        }
        if !queued && state.held >= inner.settings.max_held {
            inner.metrics.resource_wait("full");
            tracing::debug!(pipeline = %run.pipeline, run_id = %run.run_id, "Too many runs wait for their CodeBuild figures; scored at once.");
            return false;
        }
        state.push(Held {
            pk: run_pk,
            run: run.clone(),
            done: build.is_none().then_some(Done::Turn),
            build,
            deadline: inner.clock.now() + inner.settings.wait,
        });
        if state.held > inner.settings.max_held {
            // The run had to queue behind its pipeline's: they all go now.
            if let Some(queue) = state.pipelines.get_mut(&run.pipeline) {
                for held in queue.iter_mut().filter(|h| h.done.is_none()) {
                    held.done = Some(Done::Full);
                }
            }
            inner.wake.notify_one();
        }
        tracing::debug!(pipeline = %run.pipeline, run_id = %run.run_id, "Run held until its CodeBuild figures arrive.");
        true
    }

    /// Holds again (or scores) the runs that were waiting when the last
    /// process stopped: stored final runs of the last day, from the
    /// CodePipeline sources, without a verdict and not queued for scoring,
    /// of the pipelines that have such a CodeBuild run without figures.
    /// Call before runs are ingested; returns how many were taken.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let since = inner.clock.now() - RECOVER_HORIZON;
        let sources: Vec<&str> = HELD_SOURCES.iter().map(|s| s.as_str()).collect();
        let limit = i64::try_from(inner.settings.max_held).unwrap_or(i64::MAX);
        let stored = inner
            .store
            .unscored_final_runs(since, &sources, limit)
            .await?;
        let source_of = |raw: &str| RunSource::parse(raw).unwrap_or(RunSource::Generic);
        let waiting: HashSet<String> = stored
            .iter()
            .filter(|s| waits_for_figures(source_of(&s.source), &s.run).is_some())
            .map(|s| s.run.pipeline.clone())
            .collect();
        let mut state = inner.state.lock().await;
        let known: HashSet<i64> = state.iter_mut().map(|h| h.pk).collect();
        let mut taken = 0;
        for s in stored {
            if !waiting.contains(&s.run.pipeline) || known.contains(&s.pk) {
                continue;
            }
            if state.held >= inner.settings.max_held {
                break;
            }
            let build = waits_for_figures(source_of(&s.source), &s.run);
            if build.is_some() {
                inner.metrics.resource_wait("recovered");
            }
            state.push(Held {
                pk: s.pk,
                done: build.is_none().then_some(Done::Turn),
                build,
                deadline: s.ingested_at + inner.settings.wait,
                run: s.run,
            });
            taken += 1;
        }
        drop(state);
        if taken > 0 {
            tracing::info!(
                runs = taken,
                "Runs stored before the restart wait again for their CodeBuild figures."
            );
            inner.wake.notify_one();
        }
        Ok(taken)
    }

    /// Asks now for the figures of every waiting run and scores what may
    /// go: what the worker does at every poll.
    pub async fn poll_now(&self) {
        self.inner.fetch_waiting().await;
        self.inner.release_ready().await;
    }

    /// How many runs are held now.
    pub async fn held(&self) -> usize {
        self.inner.state.lock().await.held
    }
}

/// Every poll: asks for the figures of the waiting runs, then scores what
/// may go; when woken, only the latter.
async fn work(inner: Arc<Inner>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(inner.settings.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ask = tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => true,
            _ = inner.wake.notified() => false,
        };
        if ask {
            inner.fetch_waiting().await;
        }
        inner.release_ready().await;
    }
}

impl Inner {
    /// One round of `GetMetricData` for every held run still waiting, one
    /// call per [`BUILDS_PER_CALL`] builds (builds close in time share a
    /// call, so each call's window stays short), each bounded by
    /// `evidence.timeout_s`. Marks the runs whose figures arrived (stored
    /// on them) and those a failed call asked about; after a failure the
    /// rest wait for the next poll.
    async fn fetch_waiting(&self) {
        let mut waiting: Vec<(i64, CodeBuildRef, Window)> = {
            let mut state = self.state.lock().await;
            state
                .iter_mut()
                .filter(|h| h.done.is_none())
                .filter_map(|h| Some((h.pk, h.build.clone()?, codebuild::window_of(&h.run))))
                .collect()
        };
        if waiting.is_empty() {
            return;
        }
        waiting.sort_by_key(|(pk, _, window)| (window.start, *pk));
        let mut builds: Vec<(CodeBuildRef, Window)> = Vec::with_capacity(waiting.len());
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (_, build, window) in &waiting {
            match index.get(build.build_id.as_str()) {
                Some(&i) => {
                    builds[i].1 = union([builds[i].1, *window].into_iter()).unwrap_or(*window)
                }
                None => {
                    index.insert(build.build_id.as_str(), builds.len());
                    builds.push((build.clone(), *window));
                }
            }
        }
        let mut usage: HashMap<String, ResourceMetrics> = HashMap::new();
        let mut failed: HashSet<String> = HashSet::new();
        let deadline = self.settings.timeout;
        for chunk in builds.chunks(BUILDS_PER_CALL) {
            let Some(window) = union(chunk.iter().map(|(_, w)| *w)) else {
                continue;
            };
            let asked: Vec<CodeBuildRef> = chunk.iter().map(|(b, _)| b.clone()).collect();
            let result = tokio::time::timeout(deadline, self.fetch(&asked, window))
                .await
                .unwrap_or(Err(FetchError::TimedOut(deadline)));
            let outcome = match &result {
                Ok(found) if found.is_empty() => "empty",
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            };
            self.metrics
                .evidence_fetch(Source::CloudWatch.as_str(), outcome);
            match result {
                Ok(found) => {
                    self.note_problem(None, asked.len());
                    usage.extend(found);
                }
                Err(e) => {
                    self.note_problem(Some(&e), asked.len());
                    failed.extend(asked.into_iter().map(|b| b.build_id));
                    break;
                }
            }
        }
        let mut arrived: HashMap<i64, Run> = HashMap::new();
        for (pk, build, _) in &waiting {
            let Some(figures) = usage.get(&build.build_id) else {
                continue;
            };
            match self.store_figures(*pk, *figures).await {
                Ok(Some(run)) => {
                    arrived.insert(*pk, run);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(run_pk = pk, error = %e, "Cannot store the build's CPU and memory on the run; asked again at the next poll.");
                }
            }
        }
        let refused: HashSet<i64> = waiting
            .iter()
            .filter(|(_, build, _)| failed.contains(&build.build_id))
            .map(|(pk, _, _)| *pk)
            .collect();
        let mut state = self.state.lock().await;
        for held in state.iter_mut() {
            if let Some(run) = arrived.remove(&held.pk) {
                held.run = run;
                held.done = Some(Done::Metrics);
            } else if held.done.is_none() && refused.contains(&held.pk) {
                held.done = Some(Done::Failed);
            }
        }
    }

    /// Logs a failed call as a warning when the problem starts (debug
    /// while it lasts); `None` after a call that succeeded.
    fn note_problem(&self, error: Option<&FetchError>, builds: usize) {
        let mut problem = self
            .problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match error {
            None => *problem = None,
            Some(e) if *problem == Some(e.outcome()) => {
                tracing::debug!(builds, error = %e, "CodeBuild figures still unavailable from CloudWatch; the runs are scored without them.");
            }
            Some(e) => {
                *problem = Some(e.outcome());
                tracing::warn!(builds, error = %e, "Cannot read CodeBuild CPU and memory from CloudWatch; the runs are scored without them (said once while it lasts).");
            }
        }
    }

    /// Stores `figures` on stored run `pk` (read again: a late event may
    /// have changed it) unless it has its own; the run as stored.
    async fn store_figures(
        &self,
        pk: i64,
        figures: ResourceMetrics,
    ) -> Result<Option<Run>, StoreError> {
        let Some(stored) = self.store.run_by_pk(pk).await? else {
            return Ok(None);
        };
        let mut run = stored.run;
        let reported = run
            .resources
            .is_some_and(|r| r.cpu_peak_pct.is_some() || r.mem_peak_mb.is_some());
        if !reported {
            run.resources = Some(figures);
            run.normalise();
            self.store.replace_run_body(pk, &run).await?;
            tracing::debug!(pipeline = %run.pipeline, run_id = %run.run_id, "CodeBuild CPU and memory stored with the run before scoring.");
        }
        Ok(Some(run))
    }

    /// Scores, in order, the runs at the head of each pipeline's queue that
    /// may go (their figures arrived, or they waited long enough), under
    /// the lock new runs pass through, so none is scored ahead of them.
    async fn release_ready(&self) {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        let mut going = Vec::new();
        state.pipelines.retain(|_, queue| {
            for held in queue.iter_mut() {
                if held.done.is_none() && held.deadline <= now {
                    held.done = Some(Done::WaitedOut);
                }
            }
            while queue.front().is_some_and(|h| h.done.is_some()) {
                going.extend(queue.pop_front());
            }
            !queue.is_empty()
        });
        state.held -= going.len();
        for held in going {
            if let Some(outcome) = held.done.and_then(Done::outcome) {
                self.metrics.resource_wait(outcome);
            }
            let (pipeline, run_id) = (held.run.pipeline.clone(), held.run.run_id.clone());
            // Nobody waits for this verdict here: it is stored, and the
            // incident flow hears of it.
            if let Err(e) = self.detection.submit(held.pk, held.run).await {
                tracing::error!(pipeline = %pipeline, run_id = %run_id, error = %e, "Run stored but not handed to detection after its wait.");
            }
        }
    }

    #[cfg(feature = "ci-evidence")]
    async fn fetch(
        &self,
        builds: &[CodeBuildRef],
        window: Window,
    ) -> Result<HashMap<String, ResourceMetrics>, FetchError> {
        super::cloudwatch::usage(&self.cloudwatch.get().await, builds, window).await
    }

    #[cfg(not(feature = "ci-evidence"))]
    async fn fetch(
        &self,
        _builds: &[CodeBuildRef],
        _window: Window,
    ) -> Result<HashMap<String, ResourceMetrics>, FetchError> {
        Err(FetchError::Failed(
            "this build of pipemedic has no CloudWatch client (feature `ci-evidence`)".into(),
        ))
    }
}

/// The smallest window that covers all of `windows`.
fn union(windows: impl Iterator<Item = Window>) -> Option<Window> {
    windows.reduce(|a, b| Window {
        start: a.start.min(b.start),
        end: a.end.max(b.end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunStatus;

    fn codebuild_run() -> Run {
        let mut run = Run::new("checkout-service", "e-1", RunStatus::Succeeded);
        run.log_url = Some("https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:group=/aws/codebuild/checkout-service-test;stream=5f1e7b9a".into());
        run
    }

    #[test]
    fn only_final_codepipeline_runs_of_a_build_without_figures_wait() {
        let run = codebuild_run();
        let build = waits_for_figures(RunSource::Aws, &run).expect("waits");
        assert_eq!(build.build_id, "checkout-service-test:5f1e7b9a");
        assert!(waits_for_figures(RunSource::CodepipelinePoll, &run).is_some());
        assert!(waits_for_figures(RunSource::Generic, &run).is_none());
        assert!(waits_for_figures(RunSource::Backfill, &run).is_none());
        let mut running = codebuild_run();
        running.status = RunStatus::Running;
        assert!(waits_for_figures(RunSource::Aws, &running).is_none());
        let mut reported = codebuild_run();
        reported.resources = Some(ResourceMetrics {
            cpu_peak_pct: None,
            mem_peak_mb: Some(512.0),
        });
        assert!(waits_for_figures(RunSource::Aws, &reported).is_none());
        let mut empty = codebuild_run();
        empty.resources = Some(ResourceMetrics::default());
        assert!(waits_for_figures(RunSource::Aws, &empty).is_some());
        let mut elsewhere = codebuild_run();
        elsewhere.log_url = Some("https://ci.example.com/1".into());
        assert!(waits_for_figures(RunSource::Aws, &elsewhere).is_none());
    }

    #[test]
    fn the_settings_follow_the_config() {
        let config = EvidenceConfig::default();
        let s = HoldSettings::from_config(&config).expect("on by default");
        assert_eq!(s.wait, chrono::Duration::seconds(300));
        assert_eq!(s.poll, Duration::from_secs(30));
        assert_eq!(s.max_held, 5000);
        let off = EvidenceConfig {
            resource_wait_s: 0,
            ..EvidenceConfig::default()
        };
        assert!(HoldSettings::from_config(&off).is_none());
        let no_usage = EvidenceConfig {
            codebuild_usage: false,
            ..EvidenceConfig::default()
        };
        assert!(HoldSettings::from_config(&no_usage).is_none());
    }

    #[cfg(feature = "ci-evidence")]
    #[test]
    fn a_call_asks_about_as_many_builds_as_cloudwatch_usage_batches() {
        assert_eq!(BUILDS_PER_CALL, super::super::cloudwatch::BUILDS_PER_CALL);
    }

    #[test]
    fn one_window_covers_every_build() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let w = |a: &str, b: &str| Window {
            start: t(a),
            end: t(b),
        };
        let all = union(
            [
                w("2026-11-20T10:00:00Z", "2026-11-20T10:10:00Z"),
                w("2026-11-20T09:00:00Z", "2026-11-20T09:30:00Z"),
                w("2026-11-20T10:05:00Z", "2026-11-20T11:00:00Z"),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(all, w("2026-11-20T09:00:00Z", "2026-11-20T11:00:00Z"));
        assert!(union(std::iter::empty()).is_none());
    }
}
