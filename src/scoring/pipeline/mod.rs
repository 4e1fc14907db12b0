//! The unit of learning: one [`PipelineModel`] per pipeline.
//!
//! Why one multivariate model per pipeline (and not one per metric): the
//! six built-in metrics of a run move together (a build that runs out of
//! memory is also slow; a flaky test run is short and red), and a joint model
//! sees a run whose *combination* is unusual even when each metric alone is
//! within its range. Attribution then says which metric drove the score. It
//! is also six times fewer models to keep in memory and in the store.
//! Per-stage durations and custom metrics are stored and charted but not
//! modelled: their set changes as pipelines change, and a model's
//! dimensions must not.
//!
//! Each metric is normalised with a slowly moving mean and deviation of the
//! runs judged normal (with a per-metric floor, so a metric that is almost
//! always 0, like the test failure rate, does not turn one failed test into
//! a huge score). A metric a run does not report keeps its last value, so
//! pipelines that never report CPU simply have a constant dimension that
//! the forest never cuts.
//!
//! ## How a run is judged
//!
//! 1. **Unusual?** The forest scores the run's normalised metrics in the
//!    context of the runs before it; the score must clear the adaptive
//!    threshold.
//! 2. **Does it matter?** Each metric that drove the score is compared with
//!    its usual value under its [`MetricRule`]: a problem direction (slower
//!    builds, more failed tests, higher CPU, memory, error rate, latency),
//!    a minimum relative change and a minimum absolute change, and at least
//!    [`MIN_SIGNIFICANCE`] deviations from the usual. A run is abnormal only
//!    when both hold; unusual metrics that do not matter are reported as
//!    `dismissed`, with the reason.
//! 3. **Anomalies are not learned.** An abnormal run teaches the model
//!    nothing: the forest learns a stand-in in which the off metrics are at
//!    their usual values, and the normalisation skips them. The second hung
//!    build is as abnormal as the first.
//! 4. **New normal.** When the same metrics stay off in the same direction
//!    for `new_normal_after` runs in a row (default 5), their level becomes
//!    the new normal: the normalisation is re-centred on the mean of those
//!    runs, the run that completes the streak is normal and carries
//!    `new_normal`, and the incident thread is told.
//! 5. **Weekly rhythm.** Every run falls in one of four slots of the week
//!    (weekday or weekend × working hours or night, in the team's local
//!    time). Each metric has a level, and each slot learns how it differs
//!    from that level: a factor for durations, memory and latency (nightly
//!    builds take 3× as long), a difference for rates and percentages. Once
//!    the pipeline has `seasonality_after_days` of history (default 21) and
//!    a slot has [`MIN_SLOT_RUNS`] runs, a run's usual value is the level
//!    adjusted by its slot, so a legitimately longer nightly or weekend
//!    build is normal; and because the slots follow the level, a change
//!    learned on weekdays is expected at the weekend too. Until then
//!    verdicts say `seasonal: false`.
//!
//! A run can also be scored elsewhere (a SageMaker RCF endpoint): the model
//! hands out the shingled row ([`PipelineModel::shingled_point`]) and grades
//! the returned score with its own threshold
//! ([`PipelineModel::observe_with_external_scores`]), learning the run by the
//! same rules either way. This module does no I/O.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

pub mod codec;
mod streak;

use streak::Streak;

use crate::config::{MetricRule, PipelineRules};
use crate::detect::rcf::MemoryParts;
use crate::detect::{Detector, DetectorConfig};
use crate::domain::{
    Direction, Dismissal, Expectation, MetricDeviation, Run, Verdict, BUILTIN_METRICS,
};

/// `models.version` of a model saved now (the binary format of
/// [`codec`]; models saved as JSON, version 1, are converted on load).
pub const MODEL_VERSION: i64 = codec::BINARY_VERSION;

/// Runs a pipeline needs before its verdicts can be abnormal.
pub const WARM_UP_RUNS: u64 = 16;

/// Shingle size of pipeline models: the last four runs form one point.
pub const PIPELINE_SHINGLE: usize = 4;

/// Smallest share of the score a metric must drive to be examined as "off"
/// (a metric far from its usual value is examined whatever its share).
const MIN_ATTRIBUTION_SHARE: f64 = 0.1;

/// Deviations from the usual value beyond which a metric is examined as
/// "off" whatever its share of the score.
const EXAMINE_DEVIATIONS: f64 = 3.0;

/// Deviations from the usual value a metric must reach, beyond its
/// materiality rule, to count: a change within the metric's own noise is
/// not a problem however large it is in relative terms.
pub const MIN_SIGNIFICANCE: f64 = 2.0;

/// Runs a slot of the week needs before its own usual values are used.
pub const MIN_SLOT_RUNS: u64 = 10;

/// Slowest adaptation of the normalisation (an exponential window of about
/// this many runs).
pub const SCALER_WINDOW: f64 = 128.0;

/// Smallest deviation used to normalise each metric: absolute floor and a
/// fraction of the mean.
const FLOORS: [(f64, f64); 6] = [
    (1.0, 0.02),    // duration_s
    (0.005, 0.0),   // test_failure_rate
    (1.0, 0.0),     // cpu_peak_pct
    (16.0, 0.02),   // mem_peak_mb
    (0.0005, 0.05), // error_rate
    (2.0, 0.02),    // latency_p95_ms
];

/// Position of a modelled metric in [`BUILTIN_METRICS`].
fn metric_index(metric: &str) -> Option<usize> {
    BUILTIN_METRICS.iter().position(|m| *m == metric)
}

/// Slots of the week: weekday or weekend × working hours or night.
const SLOTS: usize = 4;

/// Whether metric `i` varies by a factor (durations, memory, latency: its
/// seasonal part is a ratio) rather than by a difference (rates and
/// percentages).
fn scales(i: usize) -> bool {
    matches!(
        BUILTIN_METRICS.get(i),
        Some(&"duration_s" | &"mem_peak_mb" | &"latency_p95_ms")
    )
}

/// Running mean and deviation of one metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Scaler {
    mean: f64,
    var: f64,
    n: u64,
}

impl Scaler {
    fn scale(&self, metric: usize) -> f64 {
        let (abs, rel) = FLOORS[metric];
        self.var.sqrt().max(abs).max(rel * self.mean.abs())
    }

    fn learn(&mut self, x: f64) {
        self.n += 1;
        if self.n == 1 {
            self.mean = x;
            self.var = 0.0;
            return;
        }
        let alpha = (1.0 / self.n as f64).max(1.0 / SCALER_WINDOW);
        let delta = x - self.mean;
        self.mean += alpha * delta;
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta);
    }
}

/// How one modelled metric is normalised: a value `x` becomes
/// `(x - mean) / deviation`, where `deviation` is the running deviation
/// raised to its floors (`floor_abs`, `floor_rel` × |mean|).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricScale {
    pub metric: &'static str,
    pub mean: f64,
    pub deviation: f64,
    pub floor_abs: f64,
    pub floor_rel: f64,
    /// Runs that taught it.
    pub runs: u64,
}

/// The slot of the week a run started in (0: weekday working hours,
/// 1: weekday night, 2: weekend day, 3: weekend night), in local time.
fn slot_of(at: DateTime<Utc>, utc_offset_minutes: i32) -> usize {
    let local = at + chrono::Duration::minutes(i64::from(utc_offset_minutes));
    let weekend = local.weekday().number_from_monday() >= 6;
    let night = !(7..19).contains(&local.hour());
    usize::from(weekend) * 2 + usize::from(night)
}

/// A pipeline's learned normal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineModel {
    detector: Detector,
    scalers: Vec<Scaler>,
    last: Vec<Option<f64>>,
    runs_seen: u64,
    /// Row id of the last run this model learned (for catching up on load).
    pub last_run_pk: i64,
    /// Usual values per slot of the week (see [`slot_of`]).
    #[serde(default)]
    slots: Vec<Vec<Scaler>>,
    /// Start of the first run seen (ms since the epoch).
    #[serde(default)]
    first_at_ms: Option<i64>,
    /// Start of the latest run seen.
    #[serde(default)]
    latest_at_ms: Option<i64>,
    /// Consecutive abnormal runs off the same way, if any.
    #[serde(default)]
    streak: Option<Streak>,
}

/// Trees of a pipeline model's forest. Pipelines give far fewer points
/// than the streams AWS's defaults (50 trees of 256) were made for: on the
/// CI corpus (seeds 1–3, `examples/forest_sweep.rs`) 30 trees of 64 points
/// find at least as many problems with no more false alarms, in a fifth of
/// the memory; 20 × 64, 30 × 32 and 40 × 32 raised false alarms, 30 × 128
/// and 20 × 128 lost recall.
pub const PIPELINE_TREES: usize = 30;

/// Points each tree of a pipeline model samples (see [`PIPELINE_TREES`]).
pub const PIPELINE_SAMPLE: usize = 64;

/// Time decay per point of pipeline models: 0.1 / [`PIPELINE_SAMPLE`], as
/// AWS's rcflib sets it from the sample size (1 / (10 × sample size)), so
/// that a tree's sample spans about 640 runs back rather than the 2,560 of
/// the 256-point samples the default 0.1 / 256 was made for. Fewer old,
/// scattered points stay sampled, so the point store stops growing sooner:
/// the median model of `examples/model_size.rs` holds about 1,030 distinct
/// points after 2,000 runs and 1,100 after 5,000 (1,230 and 1,520 with
/// 0.1 / 256), 6.5 KB and 42 KB less. On the
/// CI corpus (seeds 1–3, `examples/forest_sweep.rs`) recall and false
/// alarms are the same as with 0.1 / 256. Saved models keep the decay they
/// were built with (it is saved with them); new and rebuilt models get
/// this one.
pub const PIPELINE_TIME_DECAY: f64 = 0.1 / PIPELINE_SAMPLE as f64;

/// The time decay pipeline models had before it followed the sample size;
/// models saved then keep it. The tests of saved models replay it.
#[cfg(test)]
pub(crate) const EARLIER_PIPELINE_TIME_DECAY: f64 = 0.1 / 256.0;

/// The detector settings of pipeline models.
pub fn pipeline_detector_config(sensitivity: f64, seed: u64) -> DetectorConfig {
    DetectorConfig {
        dimensions: BUILTIN_METRICS.len(),
        shingle_size: PIPELINE_SHINGLE,
        trees: PIPELINE_TREES,
        sample_size: PIPELINE_SAMPLE,
        time_decay: PIPELINE_TIME_DECAY,
        sensitivity,
        seed,
        ..DetectorConfig::default()
    }
}

/// A stable seed per pipeline, so a rebuilt model is the same model.
pub fn seed_for(pipeline: &str) -> u64 {
    // FNV-1a: stable across versions and platforms.
    pipeline.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The run's value for each modelled metric (None when not reported).
pub fn metric_values(run: &Run) -> Vec<Option<f64>> {
    let samples = run.metric_samples();
    BUILTIN_METRICS
        .iter()
        .map(|m| samples.iter().find(|s| s.metric == *m).map(|s| s.value))
        .collect()
}

/// Where a run stands: its slot of the week and whether the slot's own
/// usual values apply.
#[derive(Debug, Clone, Copy)]
struct Context {
    slot: Option<usize>,
    seasonal: bool,
}

impl PipelineModel {
    pub fn new(pipeline: &str, sensitivity: f64) -> Self {
        Self::with_detector(pipeline_detector_config(sensitivity, seed_for(pipeline)))
    }

    /// A model whose forest has other settings than the product's (for
    /// evaluating forest sizes); `config` as [`pipeline_detector_config`]
    /// makes it.
    pub fn with_detector(config: DetectorConfig) -> Self {
        Self {
            detector: Detector::new(config),
            scalers: vec![Scaler::default(); BUILTIN_METRICS.len()],
            last: vec![None; BUILTIN_METRICS.len()],
            runs_seen: 0,
            last_run_pk: 0,
            slots: vec![vec![Scaler::default(); BUILTIN_METRICS.len()]; SLOTS],
            first_at_ms: None,
            latest_at_ms: None,
            streak: None,
        }
    }

    pub fn runs_seen(&self) -> u64 {
        self.runs_seen
    }

    /// How each modelled metric is normalised now (the pipeline's level,
    /// before any weekly-rhythm adjustment), in [`BUILTIN_METRICS`] order.
    pub fn normalisation(&self) -> Vec<MetricScale> {
        BUILTIN_METRICS
            .iter()
            .zip(&self.scalers)
            .enumerate()
            .map(|(i, (metric, s))| MetricScale {
                metric,
                mean: s.mean,
                deviation: s.scale(i),
                floor_abs: FLOORS[i].0,
                floor_rel: FLOORS[i].1,
                runs: s.n,
            })
            .collect()
    }

    /// Whether the weekly rhythm is learned: the history spans
    /// `seasonality_after_days`.
    pub fn seasonality_learned(&self, rules: &PipelineRules) -> bool {
        match (self.first_at_ms, self.latest_at_ms) {
            (Some(first), Some(latest)) => {
                latest - first >= i64::from(rules.seasonality_after_days) * 86_400_000
            }
            _ => false,
        }
    }

    fn context(&self, run: &Run, rules: &PipelineRules) -> Context {
        let slot = run
            .started_at
            .or_else(|| run.event_time())
            .map(|at| slot_of(at, rules.utc_offset_minutes));
        let seasonal = slot.is_some() && self.seasonality_learned(rules);
        Context { slot, seasonal }
    }

    /// The seasonal factor of metric `i` for a run in `ctx`: how its slot
    /// of the week differs from the pipeline's level (a ratio for
    /// durations, memory and latency, a difference for the others), once
    /// the weekly rhythm is learned and the slot has [`MIN_SLOT_RUNS`] runs.
    fn season(&self, ctx: Context, i: usize) -> Option<f64> {
        if !ctx.seasonal {
            return None;
        }
        let slot = self.slots.get(ctx.slot?)?.get(i)?;
        let usable = slot.n >= MIN_SLOT_RUNS && (!scales(i) || slot.mean > 0.0);
        usable.then_some(slot.mean)
    }

    /// Metric `i`'s usual value for a run in `ctx`: the pipeline's level,
    /// adjusted by the slot's seasonal factor. The slots follow the level,
    /// so a change learned on weekdays is expected at weekends too.
    fn expected(&self, ctx: Context, i: usize) -> f64 {
        let level = self.scalers[i].mean;
        match self.season(ctx, i) {
            Some(f) if scales(i) => level * f,
            Some(f) => level + f,
            None => level,
        }
    }

    /// `x` without its slot's seasonal part: what the level learns.
    fn deseasoned(&self, ctx: Context, i: usize, x: f64) -> f64 {
        match self.season(ctx, i) {
            Some(f) if scales(i) => x / f,
            Some(f) => x - f,
            None => x,
        }
    }

    /// How many of metric `i`'s usual deviations `x` lies from its usual
    /// value for a run in `ctx` (0 before the metric has been seen). With
    /// the weekly rhythm learned, the deviation is the slot's own (how much
    /// its runs vary around the level), so a slot of steady runs is not
    /// judged by the spread of a noisier one.
    fn deviations_of(&self, ctx: Context, i: usize, x: f64) -> f64 {
        let level = &self.scalers[i];
        if level.n == 0 {
            return 0.0;
        }
        (x - self.expected(ctx, i)) / self.spread(ctx, i)
    }

    /// One usual deviation of metric `i` for a run in `ctx`: with the
    /// weekly rhythm learned, the slot's own (how much its runs vary around
    /// the level), else the level's.
    fn spread(&self, ctx: Context, i: usize) -> f64 {
        let level = &self.scalers[i];
        match (
            self.season(ctx, i),
            ctx.slot.and_then(|s| self.slots.get(s)),
        ) {
            (Some(_), Some(slot)) => {
                let var = slot.get(i).map_or(0.0, |s| s.var);
                let (abs, rel) = FLOORS[i];
                let own = if scales(i) {
                    level.mean.abs() * var.sqrt()
                } else {
                    var.sqrt()
                };
                own.max(abs).max(rel * self.expected(ctx, i).abs())
            }
            _ => level.scale(i),
        }
    }

    /// What is expected of each metric the run reports, before it is
    /// judged: the usual value and, on either side, the smallest change
    /// that could count (at least [`MIN_SIGNIFICANCE`] deviations and the
    /// metric's materiality rule). Built-in metrics are never negative.
    fn expectations(
        &self,
        observed: &[Option<f64>],
        ctx: Context,
        rules: &PipelineRules,
    ) -> Vec<Expectation> {
        observed
            .iter()
            .enumerate()
            .filter(|(i, v)| v.is_some() && self.scalers[*i].n > 0)
            .map(|(i, _)| {
                let usual = self.expected(ctx, i);
                let rule: &MetricRule = &rules.metrics[i];
                let margin = (MIN_SIGNIFICANCE * self.spread(ctx, i))
                    .max(rule.min_delta)
                    .max(rule.min_ratio * usual.abs());
                Expectation {
                    metric: BUILTIN_METRICS[i].to_string(),
                    usual,
                    low: (usual - margin).max(0.0),
                    high: usual + margin,
                }
            })
            .collect()
    }

    /// The usual value of `metric` for a run like `run` (its slot of the
    /// week once the weekly rhythm is learned), or `None` for a metric that
    /// is not modelled or not seen yet. What an alert calls "the usual".
    pub fn usual(&self, metric: &str, run: &Run, rules: &PipelineRules) -> Option<f64> {
        let i = metric_index(metric)?;
        (self.scalers[i].n > 0).then(|| self.expected(self.context(run, rules), i))
    }

    /// The normalised point of a run (a metric it does not report keeps
    /// its last value), or `None` when it reports none of the modelled
    /// metrics.
    fn normalised(&self, observed: &[Option<f64>], ctx: Context) -> Option<Vec<f64>> {
        if observed.iter().all(Option::is_none) {
            return None;
        }
        Some(
            observed
                .iter()
                .enumerate()
                .map(|(i, v)| match v.or(self.last[i]) {
                    Some(x) => self.deviations_of(ctx, i, x),
                    None => 0.0,
                })
                .collect(),
        )
    }

    /// The normalised, shingled row the forest would score for this run
    /// (`PIPELINE_SHINGLE` points of six values, oldest first), or `None`
    /// when there is nothing to score yet: the run reports none of the
    /// modelled metrics, or fewer runs than a shingle have been seen.
    /// Changes nothing.
    pub fn shingled_point(&self, run: &Run, rules: &PipelineRules) -> Option<Vec<f64>> {
        let point = self.normalised(&metric_values(run), self.context(run, rules))?;
        self.detector.shingle_of(&point)
    }

    /// While a recent anomaly is still in the shingle: the row of
    /// [`PipelineModel::shingled_point`] with that run replaced by what was
    /// expected of it. Its score is what the run is judged on, so one
    /// abnormal run is reported once. `None` otherwise. Changes nothing.
    pub fn corrected_point(&self, run: &Run, rules: &PipelineRules) -> Option<Vec<f64>> {
        let point = self.normalised(&metric_values(run), self.context(run, rules))?;
        self.detector.corrected_shingle_of(&point)
    }

    /// The thresholded forest behind the verdicts.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Makes the model's forest store every metric, constant or not, as
    /// models of earlier releases do: the layout to compare with (sizes,
    /// scores) or to keep a model's scores those of an earlier release.
    pub fn store_every_value(&mut self) {
        self.detector.store_every_value();
    }

    /// The heap bytes of [`PipelineModel::memory_bytes`], part by part.
    pub fn memory_parts(&self) -> MemoryParts {
        let mut parts = self.detector.memory_parts();
        // The detector's own fixed fields are in its parts already.
        let fixed = std::mem::size_of::<Self>() - std::mem::size_of::<Detector>();
        parts.add("model (fixed fields)", fixed, fixed);
        parts.add_vec("scalers", &self.scalers);
        parts.add_vec("scalers", &self.slots);
        for s in &self.slots {
            parts.add_vec("scalers", s);
        }
        parts.add_vec("scalers", &self.last);
        parts
    }

    /// Estimated heap bytes of the model: its detector (forest, samplers,
    /// point store) and its per-metric statistics.
    pub fn memory_bytes(&self) -> usize {
        let scalers = std::mem::size_of::<Scaler>()
            * (self.scalers.capacity() + self.slots.iter().map(Vec::capacity).sum::<usize>());
        // `detector.memory_bytes()` counts the detector's fixed fields,
        // which lie within this model's.
        std::mem::size_of::<Self>() - std::mem::size_of::<Detector>()
            + self.detector.memory_bytes()
            + scalers
            + self.slots.capacity() * std::mem::size_of::<Vec<Scaler>>()
            + self.last.capacity() * std::mem::size_of::<Option<f64>>()
    }

    /// Judges a finished run against what this pipeline learned (see the
    /// module header), then learns it unless it is abnormal. Runs with none
    /// of the modelled metrics are judged normal and not learned.
    pub fn observe(&mut self, run: &Run, rules: &PipelineRules) -> Verdict {
        self.observe_inner(run, rules, None)
    }

    /// Like [`PipelineModel::observe`], with the run's score computed
    /// elsewhere (a remote Random Cut Forest over
    /// [`PipelineModel::shingled_point`]), and the score of
    /// [`PipelineModel::corrected_point`] when there is one (the run is
    /// graded on that score). The same threshold, warm-up, rules and
    /// learning apply, so the embedded forest can take over at any time.
    ///
    /// An external score comes without attribution, so each metric's share
    /// of the blame is proportional to how many deviations it lies from its
    /// usual value.
    pub fn observe_with_external_scores(
        &mut self,
        run: &Run,
        rules: &PipelineRules,
        score: f64,
        corrected: Option<f64>,
    ) -> Verdict {
        self.observe_inner(run, rules, Some((score, corrected)))
    }

    fn observe_inner(
        &mut self,
        run: &Run,
        rules: &PipelineRules,
        external: Option<(f64, Option<f64>)>,
    ) -> Verdict {
        let observed = metric_values(run);
        let ctx = self.context(run, rules);
        let warming_up = self.runs_seen < WARM_UP_RUNS;
        let expected = if warming_up {
            Vec::new()
        } else {
            self.expectations(&observed, ctx, rules)
        };
        let Some(point) = self.normalised(&observed, ctx) else {
            return Verdict {
                warming_up,
                seasonal: ctx.seasonal,
                ..Verdict::default()
            };
        };
        let (mut result, judgement) = match external {
            None => self.detector.judge(&point),
            Some((score, judged)) => self.detector.judge_external(&point, score, judged),
        };
        if external.is_some() {
            result.attribution = point.iter().map(|z| z.abs()).collect();
        }
        let unusual = !warming_up && result.grade > 0.0;
        let mut deviations = Vec::new();
        let mut dismissed = Vec::new();
        if unusual {
            let total: f64 = result.attribution.iter().map(|a| a.max(0.0)).sum();
            for (i, value) in observed.iter().enumerate() {
                let Some(x) = *value else { continue };
                let share = if total > 0.0 {
                    result.attribution.get(i).copied().unwrap_or(0.0).max(0.0) / total
                } else {
                    0.0
                };
                let z = point[i];
                if share < MIN_ATTRIBUTION_SHARE && z.abs() < EXAMINE_DEVIATIONS {
                    continue;
                }
                let usual = self.expected(ctx, i);
                let rule: &MetricRule = &rules.metrics[i];
                let (direction, material) = rule.judge(x, usual);
                let dismissal = if !rule.direction.includes(direction) {
                    Some(Dismissal::Direction)
                } else if !material || z.abs() < MIN_SIGNIFICANCE {
                    Some(Dismissal::Small)
                } else {
                    None
                };
                let deviation = MetricDeviation {
                    metric: BUILTIN_METRICS[i].to_string(),
                    observed: x,
                    expected: usual,
                    direction,
                    attribution: share,
                    dismissed: dismissal,
                };
                if dismissal.is_some() {
                    dismissed.push(deviation);
                } else {
                    deviations.push(deviation);
                }
            }
            deviations.sort_by(|a, b| b.attribution.total_cmp(&a.attribution));
            dismissed.sort_by(|a, b| b.attribution.total_cmp(&a.attribution));
        }
        let abnormal = !deviations.is_empty();
        let mut verdict = Verdict {
            score: result.score,
            grade: if abnormal { result.grade } else { 0.0 },
            warming_up,
            seasonal: ctx.seasonal,
            dismissed,
            expected,
            ..Verdict::default()
        };
        if abnormal {
            let off: Vec<usize> = deviations
                .iter()
                .filter_map(|d| metric_index(&d.metric))
                .collect();
            if let Some(new_normal) = self.extend_streak(&deviations, &observed, ctx, rules) {
                // The streak is long enough: its level is the new normal,
                // and this run is judged against it.
                verdict.grade = 0.0;
                verdict.new_normal = new_normal;
                let point = self
                    .normalised(&observed, ctx)
                    .unwrap_or_else(|| point.clone());
                self.detector.learn_instead(&point, judgement);
                self.learn_values(&observed, ctx, &[]);
            } else {
                verdict.deviations = deviations;
                let mut stand_in = point;
                for i in &off {
                    stand_in[*i] = 0.0;
                }
                self.detector.learn_instead(&stand_in, judgement);
                self.learn_values(&observed, ctx, &off);
            }
        } else {
            if !warming_up {
                self.streak = None;
            }
            self.detector.learn(&point, judgement);
            self.learn_values(&observed, ctx, &[]);
        }
        if let Some(at) = run.started_at.or_else(|| run.event_time()) {
            let ms = at.timestamp_millis();
            self.first_at_ms = Some(self.first_at_ms.map_or(ms, |f| f.min(ms)));
            self.latest_at_ms = Some(self.latest_at_ms.map_or(ms, |l| l.max(ms)));
        }
        self.runs_seen += 1;
        verdict
    }

    /// Folds the observed values into the usual values, except for the
    /// metrics in `skip`: the level learns the value without its slot's
    /// seasonal part, and the slot learns how the value differs from the
    /// level (ratio or difference).
    fn learn_values(&mut self, observed: &[Option<f64>], ctx: Context, skip: &[usize]) {
        if self.slots.len() != SLOTS {
            self.slots = vec![vec![Scaler::default(); BUILTIN_METRICS.len()]; SLOTS];
        }
        for (i, value) in observed.iter().enumerate() {
            let Some(x) = *value else { continue };
            if skip.contains(&i) {
                continue;
            }
            let level = self.scalers[i].mean;
            if let Some(slot) = ctx.slot {
                if self.scalers[i].n > 0 {
                    if !scales(i) {
                        self.slots[slot][i].learn(x - level);
                    } else if level > 0.0 {
                        self.slots[slot][i].learn(x / level);
                    }
                }
            }
            let plain = self.deseasoned(ctx, i, x);
            self.scalers[i].learn(plain);
            self.last[i] = Some(x);
        }
    }

    /// Adds an abnormal run to the streak of runs off the same way. When
    /// the streak reaches `new_normal_after` runs and its level has settled
    /// (no metric is still moving across those runs, see
    /// [`Streak::moving`]), that level becomes the new normal: returns the metrics
    /// re-centred (observed: the streak's mean level; expected: the usual
    /// value before). A streak that is still moving goes on, judged run by
    /// run.
    fn extend_streak(
        &mut self,
        deviations: &[MetricDeviation],
        observed: &[Option<f64>],
        ctx: Context,
        rules: &PipelineRules,
    ) -> Option<Vec<MetricDeviation>> {
        let keys: Vec<(usize, Direction)> = deviations
            .iter()
            .filter_map(|d| {
                let i = metric_index(&d.metric)?;
                Some((i, d.direction))
            })
            .collect();
        let values: Vec<f64> = observed
            .iter()
            .enumerate()
            .map(|(i, v)| v.map_or(0.0, |x| self.deseasoned(ctx, i, x)))
            .collect();
        let streak = match self.streak.take() {
            Some(mut s) => {
                s.keys.retain(|k| keys.contains(k));
                if s.keys.is_empty() {
                    None
                } else {
                    s.runs += 1;
                    s.recent.push(values.clone());
                    Some(s)
                }
            }
            None => None,
        };
        let mut streak = streak.unwrap_or(Streak {
            keys,
            runs: 1,
            recent: vec![values],
        });
        let k = rules.new_normal_after.max(2);
        let excess = streak.recent.len().saturating_sub(2 * k as usize);
        streak.recent.drain(..excess);
        let settled = streak.keys.iter().all(|(i, _)| !streak.moving(*i));
        if streak.runs < k || !settled {
            self.streak = Some(streak);
            return None;
        }
        let mut changed = Vec::new();
        for (i, direction) in &streak.keys {
            let level = streak
                .level(*i, k as usize)
                .unwrap_or(self.scalers[*i].mean);
            let before = self.scalers[*i].mean;
            self.recentre(*i, level);
            changed.push(MetricDeviation {
                metric: BUILTIN_METRICS[*i].to_string(),
                observed: level,
                expected: before,
                direction: *direction,
                attribution: 0.0,
                dismissed: None,
            });
        }
        Some(changed)
    }

    /// Moves metric `i`'s level to `level` (the slots follow). Durations,
    /// memory and latency move their spread by the same factor (a build
    /// 1.5× slower varies 1.5× as much).
    fn recentre(&mut self, i: usize, level: f64) {
        let scaler = &mut self.scalers[i];
        if scales(i) && scaler.mean > 0.0 && level > 0.0 {
            let f = level / scaler.mean;
            scaler.var *= f * f;
        }
        scaler.mean = level;
    }

    /// A person said the current level is the new normal (of one metric, or
    /// of all): re-centre the normalisation on the latest values and let
    /// the threshold start afresh.
    pub fn accept_baseline(&mut self, metric: Option<&str>) {
        for (i, name) in BUILTIN_METRICS.iter().enumerate() {
            if metric.is_some_and(|m| m != *name) {
                continue;
            }
            if let Some(x) = self.last_observed(i) {
                self.recentre(i, x);
            }
        }
        self.streak = None;
        self.detector.accept_baseline();
    }

    /// The latest value of metric `i`: that of the current streak when one
    /// is running (abnormal runs are not learned), else the last learned.
    fn last_observed(&self, i: usize) -> Option<f64> {
        match &self.streak {
            Some(s) if s.keys.iter().any(|(k, _)| *k == i) => s.level(i, 1).or(self.last[i]),
            _ => self.last[i],
        }
    }
}

#[cfg(test)]
mod tests;
