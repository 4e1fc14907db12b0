//! The assembly of one CodePipeline execution from its events
//! ([`ExecutionAssembly`]): serialisable state keyed by pipeline +
//! execution id that derives the same [`Run`] whatever the order the
//! events arrived in. Pure.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{looks_like_commit, short_build_id, *};
use crate::domain::{Run, RunStatus, StageTiming};
use crate::ingest::payload::sort_stages;

/// Why an event cannot be applied to an [`ExecutionAssembly`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssemblyError {
    /// The event belongs to another pipeline execution.
    #[error("event is for {pipeline}/{execution_id}, not this execution")]
    OtherExecution {
        /// The event's pipeline.
        pipeline: String,
        /// The event's execution id.
        execution_id: String,
    },
    /// The CodeBuild build was not started by this pipeline.
    #[error("build {build_id} was not started by this pipeline")]
    OtherBuild {
        /// The build's id (`project:uuid`).
        build_id: String,
    },
}

/// One state change at one time, as recorded by an assembly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Transition {
    state: PipelineState,
    time: DateTime<Utc>,
    event_id: String,
}

impl Transition {
    /// Chronological order; at the same second an end state comes after a
    /// start, so that timestamps of one-second resolution still order.
    fn order_key(&self) -> (DateTime<Utc>, bool, &str) {
        (self.time, self.state.is_final(), &self.event_id)
    }
}

/// What an assembly keeps of one action event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ActionRecord {
    stage: String,
    action: String,
    #[serde(flatten)]
    transition: Transition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_execution_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_execution_summary: Option<String>,
}

/// The events of one CodePipeline execution gathered so far, in any order,
/// and the [`Run`] they add up to.
///
/// Serialisable (JSON) so the store can keep it between events, keyed by
/// [`ExecutionAssembly::pipeline`] + [`ExecutionAssembly::execution_id`].
/// Applying the same events in any order, any number of times, gives the
/// same assembly output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionAssembly {
    /// The pipeline's name; the run's pipeline.
    pub pipeline: String,
    /// The execution id; the run's id.
    pub execution_id: String,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    execution: Vec<Transition>,
    #[serde(default)]
    stages: BTreeMap<String, Vec<Transition>>,
    #[serde(default)]
    actions: Vec<ActionRecord>,
    /// Latest event of each CodeBuild build of this pipeline, by build id.
    #[serde(default)]
    builds: BTreeMap<String, CodeBuildEvent>,
    /// Event ids applied so far.
    #[serde(default)]
    seen: BTreeSet<String>,
}

impl ExecutionAssembly {
    /// An empty assembly for one execution.
    pub fn new(pipeline: impl Into<String>, execution_id: impl Into<String>) -> Self {
        Self {
            pipeline: pipeline.into(),
            execution_id: execution_id.into(),
            attempt: None,
            execution: Vec::new(),
            stages: BTreeMap::new(),
            actions: Vec::new(),
            builds: BTreeMap::new(),
            seen: BTreeSet::new(),
        }
    }

    /// The free text from CI it keeps (action summaries, which carry commit
    /// messages and errors, and links), so that secrets can be hidden
    /// before the assembly is kept between events. Names and ids, which
    /// events are matched on, are left out.
    pub fn free_text_mut(&mut self) -> Vec<&mut String> {
        let mut out = Vec::new();
        for action in &mut self.actions {
            out.extend(action.external_execution_summary.as_mut());
            out.extend(action.external_execution_url.as_mut());
        }
        for build in self.builds.values_mut() {
            out.extend(build.log_url.as_mut());
        }
        out
    }

    /// An empty assembly for the execution a CodePipeline event belongs to.
    pub fn for_event(event: &AwsEvent) -> Option<Self> {
        event
            .execution_key()
            .map(|(pipeline, execution_id)| Self::new(pipeline, execution_id))
    }

    fn check(&self, pipeline: &str, execution_id: &str) -> Result<(), AssemblyError> {
        if pipeline == self.pipeline && execution_id == self.execution_id {
            Ok(())
        } else {
            Err(AssemblyError::OtherExecution {
                pipeline: pipeline.to_string(),
                execution_id: execution_id.to_string(),
            })
        }
    }

    fn note_attempt(&mut self, attempt: Option<u32>) {
        if let Some(a) = attempt {
            self.attempt = Some(self.attempt.map_or(a, |seen| seen.max(a)));
        }
    }

    /// Records one event. Returns `Ok(true)` when the event was new and
    /// `Ok(false)` when it was already applied or carries nothing for an
    /// assembly ([`AwsEvent::Ignored`]). Events of another execution, and
    /// builds another pipeline started, are refused.
    pub fn apply(&mut self, event: &AwsEvent) -> Result<bool, AssemblyError> {
        match event {
            AwsEvent::Ignored { .. } => return Ok(false),
            AwsEvent::PipelineExecution(e) => self.check(&e.pipeline, &e.execution_id)?,
            AwsEvent::Stage(e) => self.check(&e.pipeline, &e.execution_id)?,
            AwsEvent::Action(e) => self.check(&e.pipeline, &e.execution_id)?,
            AwsEvent::CodeBuild(e) => {
                if e.initiating_pipeline() != Some(self.pipeline.as_str()) {
                    return Err(AssemblyError::OtherBuild {
                        build_id: e.build_id.clone(),
                    });
                }
            }
        }
        if !self.seen.insert(event.event_id().to_string()) {
            return Ok(false);
        }
        match event {
            AwsEvent::PipelineExecution(e) => {
                self.note_attempt(e.attempt);
                self.execution.push(Transition {
                    state: e.state,
                    time: e.time,
                    event_id: e.event_id.clone(),
                });
            }
            AwsEvent::Stage(e) => {
                self.note_attempt(e.attempt);
                self.stages
                    .entry(e.stage.clone())
                    .or_default()
                    .push(Transition {
                        state: e.state,
                        time: e.time,
                        event_id: e.event_id.clone(),
                    });
            }
            AwsEvent::Action(e) => {
                self.note_attempt(e.attempt);
                self.actions.push(ActionRecord {
                    stage: e.stage.clone(),
                    action: e.action.clone(),
                    transition: Transition {
                        state: e.state,
                        time: e.time,
                        event_id: e.event_id.clone(),
                    },
                    category: e.category.clone(),
                    external_execution_id: e.external_execution_id.clone(),
                    external_execution_url: e.external_execution_url.clone(),
                    external_execution_summary: e.external_execution_summary.clone(),
                });
            }
            AwsEvent::CodeBuild(e) => {
                let newer = self.builds.get(&e.build_id).is_none_or(|old| {
                    (e.complete, e.time, &e.event_id) > (old.complete, old.time, &old.event_id)
                });
                if newer {
                    self.builds.insert(e.build_id.clone(), e.clone());
                }
            }
            AwsEvent::Ignored { .. } => {}
        }
        Ok(true)
    }

    /// One of this execution's actions ran the CodeBuild build `build_id`
    /// (`project:uuid` or the build ARN).
    pub fn claims_build(&self, build_id: &str) -> bool {
        let id = short_build_id(build_id);
        self.actions
            .iter()
            .any(|a| a.external_execution_id.as_deref() == Some(id))
    }

    /// The latest execution state, by event time.
    pub fn state(&self) -> Option<PipelineState> {
        latest(&self.execution).map(|t| t.state)
    }

    /// The execution reached an end state (SUCCEEDED, FAILED, STOPPED,
    /// CANCELED, SUPERSEDED).
    pub fn is_final(&self) -> bool {
        self.state().is_some_and(PipelineState::is_final)
    }

    /// The final run, once the execution has ended; `None` while it runs.
    pub fn to_run(&self) -> Option<Run> {
        self.is_final().then(|| self.snapshot())
    }

    /// The run as far as it is known: `running` until the execution's end
    /// event has arrived.
    pub fn snapshot(&self) -> Run {
        let state = self.state();
        let status = state.map_or(RunStatus::Running, PipelineState::status);
        let mut run = Run::new(&self.pipeline, &self.execution_id, status);
        run.attempt = self.attempt.unwrap_or(1);
        let end = latest(&self.execution).filter(|t| t.state.is_final());
        run.finished_at = end.map(|t| t.time);
        run.started_at = self.started_at(end.map(|t| t.time));

        let mut failed: Vec<(DateTime<Utc>, String)> = Vec::new();
        for (name, transitions) in &self.stages {
            let Some(timing) = stage_timing(name, transitions, run.finished_at.is_some()) else {
                continue;
            };
            let started_at = timing
                .started_at
                .or_else(|| self.first_action_time(name))
                .filter(|start| timing.finished_at.is_none_or(|end| *start <= end));
            let timing = StageTiming {
                job_id: None,
                started_at,
                ..timing
            };
            if run.attempt > 1 {
                // A retried execution counts only the stages this attempt ran.
                if let (Some(start), Some(run_start)) = (timing.started_at, run.started_at) {
                    if start < run_start {
                        continue;
                    }
                }
            }
            if timing.status == Some(RunStatus::Failed) {
                if let Some(at) = timing.finished_at {
                    failed.push((at, name.clone()));
                }
            }
            run.stages.push(timing);
        }
        sort_stages(&mut run.stages);
        if status == RunStatus::Failed {
            failed.sort();
            run.stage = failed.into_iter().next().map(|(_, name)| name).or_else(|| {
                self.latest_actions()
                    .into_iter()
                    .find(|a| a.transition.state == PipelineState::Failed)
                    .map(|a| a.stage.clone())
            });
        }

        let actions = self.latest_actions();
        if let Some(source) = actions.iter().find(|a| {
            a.category.as_deref() == Some("Source")
                && a.external_execution_id
                    .as_deref()
                    .is_some_and(looks_like_commit)
        }) {
            run.commit = source.external_execution_id.clone();
            run.commit_message = source
                .external_execution_summary
                .as_deref()
                .and_then(commit_message);
        }

        for action in &actions {
            let Some(build) = action
                .external_execution_id
                .as_deref()
                .and_then(|id| self.builds.get(id))
            else {
                continue;
            };
            for phase in &build.phases {
                let seconds = phase.duration_s.or_else(|| {
                    let (s, e) = (phase.started_at?, phase.finished_at?);
                    let ms = (e - s).num_milliseconds();
                    (ms >= 0).then(|| ms as f64 / 1000.0)
                });
                // Phase timings stop at the per-run cap of custom metrics
                // (the earliest actions keep theirs).
                let room = run.metrics.len() < crate::domain::MAX_CUSTOM_METRICS;
                if let Some(seconds) = seconds.filter(|_| phase.phase != "COMPLETED" && room) {
                    run.metrics.insert(
                        format!(
                            "codebuild.{}.{}_s",
                            action.action,
                            phase.phase.to_ascii_lowercase()
                        ),
                        seconds,
                    );
                }
            }
            if action.transition.state == PipelineState::Failed && run.log_url.is_none() {
                run.log_url = build.log_url.clone();
            }
        }
        if run.log_url.is_none() {
            run.log_url = actions
                .iter()
                .find(|a| a.transition.state == PipelineState::Failed)
                .and_then(|a| a.external_execution_url.clone());
        }
        if run.log_url.is_none() {
            // No failed action: the last CodeBuild build's log, whose CPU
            // and memory stand for the run's (`evidence::resources`).
            run.log_url = actions
                .iter()
                .rev()
                .filter_map(|a| self.builds.get(a.external_execution_id.as_deref()?))
                .find_map(|build| build.log_url.clone());
        }
        run
    }

    fn started_at(&self, end: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let mut ordered: Vec<&Transition> = self.execution.iter().collect();
        ordered.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let resumed = ordered
            .iter()
            .rfind(|t| t.state == PipelineState::Resumed && end.is_none_or(|e| t.time <= e));
        let started = ordered.iter().find(|t| t.state == PipelineState::Started);
        let chosen = if self.attempt.unwrap_or(1) > 1 {
            resumed.or(started)
        } else {
            started
        };
        chosen.map(|t| t.time).or_else(|| {
            // No start event seen: the earliest thing that happened.
            self.stages
                .values()
                .flatten()
                .chain(self.actions.iter().map(|a| &a.transition))
                .map(|t| t.time)
                .min()
        })
    }

    fn first_action_time(&self, stage: &str) -> Option<DateTime<Utc>> {
        self.actions
            .iter()
            .filter(|a| a.stage == stage && a.transition.state.is_start())
            .map(|a| a.transition.time)
            .min()
    }

    /// The latest record of each action, ordered by stage start then time.
    fn latest_actions(&self) -> Vec<&ActionRecord> {
        let mut by_name: BTreeMap<(&str, &str), &ActionRecord> = BTreeMap::new();
        for a in &self.actions {
            let key = (a.stage.as_str(), a.action.as_str());
            let newer = by_name.get(&key).is_none_or(|old| {
                // A result-bearing record wins over a bare one at the same time.
                (a.transition.order_key(), a.external_execution_id.is_some())
                    > (
                        old.transition.order_key(),
                        old.external_execution_id.is_some(),
                    )
            });
            if newer {
                by_name.insert(key, a);
            }
        }
        let mut out: Vec<&ActionRecord> = by_name.into_values().collect();
        out.sort_by(|a, b| {
            a.transition
                .order_key()
                .cmp(&b.transition.order_key())
                .then_with(|| a.stage.cmp(&b.stage))
                .then_with(|| a.action.cmp(&b.action))
        });
        out
    }
}

fn latest(transitions: &[Transition]) -> Option<&Transition> {
    transitions
        .iter()
        .max_by(|a, b| a.order_key().cmp(&b.order_key()))
}

/// The timing of one stage from its transitions: it ends at its latest
/// end state and starts at the latest start before that (a retried stage
/// counts its last try). A stage with no end yet is running, or of unknown
/// outcome once the execution has ended.
fn stage_timing(name: &str, transitions: &[Transition], run_ended: bool) -> Option<StageTiming> {
    let last = latest(transitions)?;
    let mut timing = StageTiming {
        job_id: None,
        name: name.to_string(),
        status: None,
        started_at: None,
        finished_at: None,
    };
    let latest_start_before = |limit: Option<DateTime<Utc>>| {
        transitions
            .iter()
            .filter(|t| t.state.is_start() && limit.is_none_or(|l| t.time <= l))
            .max_by(|a, b| a.order_key().cmp(&b.order_key()))
            .map(|t| t.time)
    };
    if last.state.is_final() {
        timing.status = Some(last.state.status());
        timing.finished_at = Some(last.time);
        timing.started_at = latest_start_before(Some(last.time));
    } else {
        timing.status = (!run_ended).then_some(RunStatus::Running);
        timing.started_at = latest_start_before(None);
    }
    Some(timing)
}

/// The commit message in a source action's summary, without trailing
/// white space; `None` when there is none.
pub(super) fn commit_message(summary: &str) -> Option<String> {
    let message = crate::ingest::payload::revision_commit_message(summary)?;
    let message = message.trim_end().to_string();
    (!message.is_empty()).then_some(message)
}
