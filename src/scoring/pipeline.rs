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
//! Each metric is normalised with a slowly moving mean and deviation (with a
//! per-metric floor, so a metric that is almost always 0, like the test
//! failure rate, does not turn one failed test into a huge score). A metric
//! a run does not report keeps its last value, so pipelines that never report
//! CPU simply have a constant dimension that the forest never cuts.
//! Accepting a new baseline re-centres the normalisation on the current
//! values, so the forest's learned "normal" is the new level at once.
//!
//! A run can also be scored elsewhere (a SageMaker RCF endpoint): the model
//! hands out the shingled row ([`PipelineModel::shingled_point`]) and grades
//! the returned score with its own threshold
//! ([`PipelineModel::observe_with_external_score`]), learning the run either
//! way. This module does no I/O.

use serde::{Deserialize, Serialize};

use crate::detect::{Detector, DetectorConfig};
use crate::domain::{Direction, MetricDeviation, Run, Verdict, BUILTIN_METRICS};

/// Format version of the serialised model; bump when the layout changes.
pub const MODEL_VERSION: i64 = 1;

/// Runs a pipeline needs before its verdicts can be abnormal.
pub const WARM_UP_RUNS: u64 = 16;

/// Shingle size of pipeline models: the last four runs form one point.
pub const PIPELINE_SHINGLE: usize = 4;

/// Smallest share of the score a metric must drive to be listed as "off".
const MIN_ATTRIBUTION_SHARE: f64 = 0.1;

/// Slowest adaptation of the normalisation (an exponential window of about
/// this many runs).
const SCALER_WINDOW: f64 = 128.0;

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

    fn normalise(&self, metric: usize, x: f64) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (x - self.mean) / self.scale(metric)
        }
    }

    fn denormalise(&self, metric: usize, z: f64) -> f64 {
        self.mean + z * self.scale(metric)
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

/// A pipeline's learned normal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineModel {
    detector: Detector,
    scalers: Vec<Scaler>,
    last: Vec<Option<f64>>,
    runs_seen: u64,
    /// Row id of the last run this model learned (for catching up on load).
    pub last_run_pk: i64,
}

/// The detector settings of pipeline models.
pub fn pipeline_detector_config(sensitivity: f64, seed: u64) -> DetectorConfig {
    DetectorConfig {
        dimensions: BUILTIN_METRICS.len(),
        shingle_size: PIPELINE_SHINGLE,
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

impl PipelineModel {
    pub fn new(pipeline: &str, sensitivity: f64) -> Self {
        Self {
            detector: Detector::new(pipeline_detector_config(sensitivity, seed_for(pipeline))),
            scalers: vec![Scaler::default(); BUILTIN_METRICS.len()],
            last: vec![None; BUILTIN_METRICS.len()],
            runs_seen: 0,
            last_run_pk: 0,
        }
    }

    pub fn runs_seen(&self) -> u64 {
        self.runs_seen
    }

    /// The normalised point of a run (a metric it does not report keeps
    /// its last value), or `None` when it reports none of the modelled
    /// metrics.
    fn normalised(&self, observed: &[Option<f64>]) -> Option<Vec<f64>> {
        if observed.iter().all(Option::is_none) {
            return None;
        }
        Some(
            observed
                .iter()
                .enumerate()
                .map(|(i, v)| match v.or(self.last[i]) {
                    Some(x) => self.scalers[i].normalise(i, x),
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
    pub fn shingled_point(&self, run: &Run) -> Option<Vec<f64>> {
        let point = self.normalised(&metric_values(run))?;
        self.detector.shingle_of(&point)
    }

    /// While a recent anomaly is still in the shingle: the row of
    /// [`PipelineModel::shingled_point`] with that run replaced by what was
    /// expected of it. Its score is what the run is judged on, so one
    /// abnormal run is reported once. `None` otherwise. Changes nothing.
    pub fn corrected_point(&self, run: &Run) -> Option<Vec<f64>> {
        let point = self.normalised(&metric_values(run))?;
        self.detector.corrected_shingle_of(&point)
    }

    /// Scores a finished run against what this pipeline learned, then learns
    /// it. Runs with none of the modelled metrics are judged normal and not
    /// learned.
    pub fn observe(&mut self, run: &Run) -> Verdict {
        self.observe_inner(run, None)
    }

    /// Like [`PipelineModel::observe`], with the run's score computed
    /// elsewhere (a remote Random Cut Forest over
    /// [`PipelineModel::shingled_point`]). The same threshold, warm-up and
    /// shift handling grade it, and the run is learned as usual, so the
    /// embedded forest can take over at any time.
    ///
    /// An external score comes without expected values or attribution, so
    /// for an abnormal run each metric's expected value is its running
    /// normalisation mean, and its share of the blame is proportional to
    /// how many deviations it lies from that mean.
    pub fn observe_with_external_score(&mut self, run: &Run, score: f64) -> Verdict {
        self.observe_inner(run, Some((score, None)))
    }

    /// Like [`PipelineModel::observe_with_external_score`], also given the
    /// score of [`PipelineModel::corrected_point`] when there is one; the
    /// run is graded on that score.
    pub fn observe_with_external_scores(
        &mut self,
        run: &Run,
        score: f64,
        corrected: Option<f64>,
    ) -> Verdict {
        self.observe_inner(run, Some((score, corrected)))
    }

    fn observe_inner(&mut self, run: &Run, external: Option<(f64, Option<f64>)>) -> Verdict {
        let observed = metric_values(run);
        let Some(point) = self.normalised(&observed) else {
            return Verdict {
                score: 0.0,
                grade: 0.0,
                warming_up: self.runs_seen < WARM_UP_RUNS,
                deviations: Vec::new(),
                anomaly_id: None,
            };
        };
        let mut result = match external {
            None => self.detector.process(&point),
            Some((score, judged)) => self.detector.grade_external(&point, score, judged),
        };
        if external.is_some() {
            result.attribution = point.iter().map(|z| z.abs()).collect();
        }
        let warming_up = self.runs_seen < WARM_UP_RUNS;
        let grade = if warming_up { 0.0 } else { result.grade };
        let mut deviations = Vec::new();
        if grade > 0.0 {
            let total: f64 = result.attribution.iter().map(|a| a.max(0.0)).sum();
            for (i, value) in observed.iter().enumerate() {
                let Some(x) = *value else { continue };
                let share = if total > 0.0 {
                    result.attribution.get(i).copied().unwrap_or(0.0).max(0.0) / total
                } else {
                    0.0
                };
                if share < MIN_ATTRIBUTION_SHARE {
                    continue;
                }
                let expected = match &result.expected {
                    Some(e) => self.scalers[i].denormalise(i, e[i]),
                    None => self.scalers[i].mean,
                };
                deviations.push(MetricDeviation {
                    metric: BUILTIN_METRICS[i].to_string(),
                    observed: x,
                    expected,
                    direction: if x >= expected {
                        Direction::Up
                    } else {
                        Direction::Down
                    },
                    attribution: share,
                });
            }
            deviations.sort_by(|a, b| b.attribution.total_cmp(&a.attribution));
        }
        for (i, value) in observed.iter().enumerate() {
            if let Some(x) = *value {
                self.scalers[i].learn(x);
                self.last[i] = Some(x);
            }
        }
        self.runs_seen += 1;
        Verdict {
            score: result.score,
            grade,
            warming_up,
            deviations,
            anomaly_id: None,
        }
    }

    /// A person said the current level is the new normal (of one metric, or
    /// of all): re-centre the normalisation on the latest values and let
    /// the threshold start afresh.
    pub fn accept_baseline(&mut self, metric: Option<&str>) {
        for (i, name) in BUILTIN_METRICS.iter().enumerate() {
            if metric.is_some_and(|m| m != *name) {
                continue;
            }
            if let Some(x) = self.last[i] {
                self.scalers[i].mean = x;
            }
        }
        self.detector.accept_baseline();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ResourceMetrics, RunStatus, TestCounts};

    /// A deterministic "normal" run number `i` of a pipeline.
    fn normal_run(i: u32, duration: f64, failed: u64) -> Run {
        let start: chrono::DateTime<chrono::Utc> = "2026-09-01T00:00:00Z".parse().unwrap();
        let start = start + chrono::Duration::hours(i64::from(i) * 3);
        let jitter = ((i * 7919) % 31) as f64 - 15.0;
        let mut run = Run::new("checkout-service", i.to_string(), RunStatus::Succeeded);
        run.started_at = Some(start);
        run.finished_at =
            Some(start + chrono::Duration::milliseconds(((duration + jitter) * 1000.0) as i64));
        run.tests = Some(TestCounts {
            total: 800,
            failed,
            skipped: 0,
        });
        run.resources = Some(ResourceMetrics {
            cpu_peak_pct: Some(60.0 + jitter / 3.0),
            mem_peak_mb: Some(2000.0 + jitter * 4.0),
        });
        run
    }

    #[test]
    fn learns_normal_flags_a_slow_flaky_run_and_names_the_metrics() {
        let mut model = PipelineModel::new("checkout-service", 1.0);
        let mut flagged = 0;
        for i in 0..120 {
            let v = model.observe(&normal_run(i, 420.0, (i % 3) as u64));
            if v.is_anomalous() {
                flagged += 1;
            }
        }
        assert!(flagged <= 2, "{flagged} of 120 normal runs flagged");
        let v = model.observe(&normal_run(120, 1300.0, 200));
        assert!(v.is_anomalous(), "{v:?}");
        let metrics: Vec<_> = v.deviations.iter().map(|d| d.metric.as_str()).collect();
        assert!(
            metrics.contains(&"duration_s") || metrics.contains(&"test_failure_rate"),
            "{metrics:?}"
        );
        let duration = v.deviations.iter().find(|d| d.metric == "duration_s");
        if let Some(d) = duration {
            assert_eq!(d.direction, Direction::Up);
            assert!(d.expected < 600.0, "expected about 420, got {}", d.expected);
        }
    }

    #[test]
    fn external_scores_are_thresholded_and_blame_the_metric_that_moved() {
        let mut model = PipelineModel::new("checkout-service", 1.0);
        // A stand-in scorer: distance of the newest duration from normal.
        let score = |row: &[f64]| 1.0 + 0.1 * row[row.len() - BUILTIN_METRICS.len()].abs();
        let mut flagged = 0;
        for i in 0..60 {
            let run = normal_run(i, 420.0, 0);
            let row = model.shingled_point(&run);
            if i < PIPELINE_SHINGLE as u32 - 1 {
                assert!(row.is_none(), "run {i}");
            }
            let v = match row {
                Some(row) => {
                    assert_eq!(row.len(), PIPELINE_SHINGLE * BUILTIN_METRICS.len());
                    model.observe_with_external_score(&run, score(&row))
                }
                None => model.observe(&run),
            };
            flagged += usize::from(v.is_anomalous());
        }
        assert_eq!(flagged, 0);
        let spike = normal_run(60, 1500.0, 0);
        let row = model.shingled_point(&spike).unwrap();
        let v = model.observe_with_external_score(&spike, score(&row));
        assert!(v.is_anomalous(), "{v:?}");
        assert_eq!(v.score, score(&row));
        assert_eq!(v.deviations[0].metric, "duration_s");
        assert_eq!(v.deviations[0].direction, Direction::Up);
        assert!((v.deviations[0].expected - 420.0).abs() < 30.0, "{v:?}");
        // The embedded forest learned every run and can take over.
        assert_eq!(model.runs_seen(), 61);
        assert!(!model.observe(&normal_run(61, 420.0, 0)).is_anomalous());
    }

    #[test]
    fn a_restored_model_scores_exactly_like_the_original() {
        let mut model = PipelineModel::new("p", 1.0);
        for i in 0..60 {
            model.observe(&normal_run(i, 300.0, 1));
        }
        let saved = serde_json::to_string(&model).unwrap();
        let mut restored: PipelineModel = serde_json::from_str(&saved).unwrap();
        for i in 60..90 {
            let run = normal_run(i, if i == 75 { 900.0 } else { 300.0 }, 1);
            assert_eq!(model.observe(&run), restored.observe(&run), "run {i}");
        }
    }

    #[test]
    fn accepting_a_baseline_stops_alerts_for_the_new_level() {
        let mut model = PipelineModel::new("p", 1.0);
        for i in 0..80 {
            model.observe(&normal_run(i, 400.0, 0));
        }
        let first = model.observe(&normal_run(80, 560.0, 0));
        assert!(
            first.is_anomalous(),
            "a 40% slower build is abnormal at first: {first:?}"
        );
        model.accept_baseline(Some("duration_s"));
        let later: Vec<bool> = (81..90)
            .map(|i| model.observe(&normal_run(i, 560.0, 0)).is_anomalous())
            .collect();
        assert!(later.iter().all(|a| !a), "{later:?}");
    }

    #[test]
    fn a_lasting_shift_stops_alerting_on_its_own() {
        let mut model = PipelineModel::new("p", 1.0);
        for i in 0..80 {
            model.observe(&normal_run(i, 400.0, 0));
        }
        let flags: Vec<bool> = (80..160)
            .map(|i| model.observe(&normal_run(i, 520.0, 0)).is_anomalous())
            .collect();
        let last_alert = flags.iter().rposition(|f| *f).unwrap_or(0);
        assert!(flags[0], "the shift is noticed");
        assert!(
            last_alert < 40,
            "still alerting {last_alert} runs after a 30% shift: {flags:?}"
        );
    }
}
