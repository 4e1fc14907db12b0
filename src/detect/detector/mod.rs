//! [`Detector`]: one thresholded Random Cut Forest over one stream of
//! points, answering each point with a [`Verdict`] (score, grade, what
//! normal would have been, which value drove it) and then learning it.
//!
//! Beyond the forest and the threshold it owns three decisions:
//!
//! * **Warm-up**: no point is graded before the forest has learned
//!   `warm_up` shingled points.
//! * **No alert storm after one anomaly**: while the shingle still holds an
//!   anomalous entry, the point is judged on a corrected shingle in which
//!   that entry is replaced by its expected value. A single spike is
//!   therefore reported once, not once per shingle position.
//! * **Level shifts end**: when anomalies keep coming for `shift_limit`
//!   points in a row (each within a shingle of the last), or when
//!   [`Detector::accept_baseline`] is called, the detector *relearns*: it
//!   grades nothing while the forest absorbs the new level, until scores
//!   have stayed under the threshold held when relearning began for a
//!   shingle's worth of points, and for at most `relearn_limit` points. A lasting shift thus alerts for at most
//!   `shift_limit` points before the new level is taken as normal.
//!
//! It performs no I/O and keeps no clock: a point's position in the stream
//! is the only notion of time.

use serde::{Deserialize, Serialize};

use super::rcf::{Forest, ForestConfig, MemoryParts};
use super::threshold::{ThresholdConfig, Thresholder};
use crate::detect::bits;

/// Settings of a [`Detector`]. Defaults: one value per point, shingles of
/// 8, 50 trees of 256 points, time decay 0.1 / 256, sensitivity 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectorConfig {
    /// Values per input point.
    pub dimensions: usize,
    /// Consecutive points the forest sees together.
    pub shingle_size: usize,
    /// Trees in the forest.
    pub trees: usize,
    /// Points each tree samples.
    pub sample_size: usize,
    /// Rate at which old points fade from the samples.
    pub time_decay: f64,
    /// Seed of all randomness: same seed and points, same verdicts.
    pub seed: u64,
    /// Higher finds more anomalies; 1.0 is the default balance.
    pub sensitivity: f64,
    /// Shingled points learned before any grade can be above zero.
    pub warm_up: u64,
    /// Points of continuing anomaly after which a shift is taken as the
    /// new normal.
    pub shift_limit: u64,
    /// Longest relearning (points graded zero) after a shift or
    /// [`Detector::accept_baseline`].
    pub relearn_limit: u64,
    /// A point whose every value lies within this many running deviations
    /// (of that value's stream) of its expected value is not reported,
    /// however high its score: the forest found the pattern unusual, but
    /// the value is what the context predicts. 0 disables the check.
    pub near_expected: f64,
    /// Threshold settings other than sensitivity.
    pub threshold: ThresholdConfig,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            dimensions: 1,
            shingle_size: 8,
            trees: 50,
            sample_size: 256,
            time_decay: 0.1 / 256.0,
            seed: 0x5eed,
            sensitivity: 1.0,
            warm_up: 32,
            shift_limit: 24,
            relearn_limit: 256,
            near_expected: 0.0,
            threshold: ThresholdConfig::default(),
        }
    }
}

/// The detector's answer for one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Raw forest score of the point (about 1 for typical points; 0 while
    /// the shingle is incomplete).
    pub score: f64,
    /// Anomaly grade in [0, 1]; above zero means anomalous.
    pub grade: f64,
    /// How many deviations the judged score (corrected for a recent
    /// anomaly still in the shingle) lies above the running mean of scores;
    /// 0 during warm-up and relearning.
    pub deviation: f64,
    /// What each value of the point would have been if normal (only for
    /// anomalous points).
    pub expected: Option<Vec<f64>>,
    /// Share of the score each input value drove, summed over shingle
    /// positions (length `dimensions`; all zero for normal points).
    pub attribution: Vec<f64>,
}

/// The latest anomaly still inside the shingle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LastAnomaly {
    /// Stream position of the anomalous point.
    at: u64,
    /// Its expected values.
    #[serde(with = "bits::f64s")]
    expected: Vec<f64>,
}

/// Relearning after a shift: nothing is graded until scores have stayed
/// under `threshold` for a shingle's worth of points, or `until` is reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Relearn {
    #[serde(with = "bits::one_f64")]
    threshold: f64,
    until: u64,
    /// Consecutive points scored under the threshold so far.
    calm: u64,
}

/// A thresholded Random Cut Forest over one stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detector {
    config: DetectorConfig,
    forest: Forest,
    thresholder: Thresholder,
    /// Points processed.
    seen: u64,
    last_anomaly: Option<LastAnomaly>,
    /// First point of the current run of anomalies.
    streak_start: Option<u64>,
    relearn: Option<Relearn>,
    /// Running mean of each input value.
    #[serde(with = "bits::f64s")]
    value_mean: Vec<f64>,
    /// Running variance of each input value.
    #[serde(with = "bits::f64s")]
    value_var: Vec<f64>,
    #[serde(skip)]
    buf: Vec<f64>,
}

impl Detector {
    /// A detector that has seen nothing yet.
    pub fn new(config: DetectorConfig) -> Self {
        let forest = Forest::new(ForestConfig {
            dimensions: config.dimensions,
            shingle_size: config.shingle_size,
            trees: config.trees,
            sample_size: config.sample_size,
            time_decay: config.time_decay,
            seed: config.seed,
        });
        let thresholder = Thresholder::new(ThresholdConfig {
            sensitivity: config.sensitivity,
            ..config.threshold.clone()
        });
        Self {
            value_mean: vec![0.0; config.dimensions.max(1)],
            value_var: vec![0.0; config.dimensions.max(1)],
            config,
            forest,
            thresholder,
            seen: 0,
            last_anomaly: None,
            streak_start: None,
            relearn: None,
            buf: Vec::new(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Points processed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The score threshold in force for the next point.
    pub fn threshold(&self) -> f64 {
        self.thresholder.threshold()
    }

    /// The running score statistics.
    pub fn thresholder(&self) -> &Thresholder {
        &self.thresholder
    }

    /// The forest.
    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// Makes the forest store every input value, constant or not, as
    /// forests of earlier releases do (see [`Forest::store_every_value`]).
    pub fn store_every_value(&mut self) {
        self.forest.store_every_value();
    }

    /// True once grades can be above zero.
    pub fn is_warm(&self) -> bool {
        self.forest.updates() >= self.config.warm_up.max(1)
    }

    fn dims(&self) -> usize {
        self.forest.config().dimensions
    }

    /// Scores `point` and then learns it. `point` should have `dimensions`
    /// values; missing and non-finite values count as 0 and extra ones are
    /// ignored.
    pub fn process(&mut self, point: &[f64]) -> Verdict {
        let mut buf = std::mem::take(&mut self.buf);
        let (verdict, effects) = self.evaluate(point, &mut buf);
        self.buf = buf;
        self.apply(effects);
        self.learn_values(point);
        self.forest.update(point);
        self.seen += 1;
        verdict
    }

    /// Judges `point` without learning it: the verdict [`Detector::process`]
    /// would give, and what learning it would change. The caller decides
    /// afterwards what is learned: the point itself ([`Detector::learn`]) or,
    /// for a point it deems abnormal, a stand-in ([`Detector::learn_instead`]),
    /// so that an anomaly never teaches the forest that it is normal.
    pub fn judge(&mut self, point: &[f64]) -> (Verdict, Judgement) {
        let mut buf = std::mem::take(&mut self.buf);
        let (verdict, effects) = self.evaluate(point, &mut buf);
        self.buf = buf;
        (verdict, Judgement { effects })
    }

    /// Like [`Detector::judge`] with a score computed elsewhere (see
    /// [`Detector::grade_external`]).
    pub fn judge_external(
        &self,
        point: &[f64],
        score: f64,
        judged: Option<f64>,
    ) -> (Verdict, Judgement) {
        let (verdict, effects) = self.evaluate_external(point, score, judged);
        (verdict, Judgement { effects })
    }

    /// Learns the judged `point` exactly as [`Detector::process`] does.
    pub fn learn(&mut self, point: &[f64], judgement: Judgement) {
        self.apply(judgement.effects);
        self.learn_values(point);
        self.forest.update(point);
        self.seen += 1;
    }

    /// Learns `stand_in` in place of a judged point the caller deems
    /// abnormal: the forest and the value statistics see the stand-in (what
    /// normal would have been), and neither the point's score nor the
    /// anomaly enters the running statistics, so the same anomaly later is
    /// judged as unusual as this one was.
    pub fn learn_instead(&mut self, stand_in: &[f64], judgement: Judgement) {
        let Judgement { effects } = judgement;
        self.apply(Effects {
            learn_score: None,
            anomaly: None,
            below_relearn: effects.below_relearn,
        });
        self.learn_values(stand_in);
        self.forest.update(stand_in);
        self.seen += 1;
    }

    /// Folds `point` into the running statistics of each input value.
    fn learn_values(&mut self, point: &[f64]) {
        let alpha = (1.0 / (self.seen + 1) as f64).max(1.0 / self.config.threshold.window.max(1.0));
        for (k, (m, v)) in self
            .value_mean
            .iter_mut()
            .zip(&mut self.value_var)
            .enumerate()
        {
            let x = point.get(k).copied().unwrap_or(0.0);
            let x = if x.is_finite() { x } else { 0.0 };
            if self.seen == 0 {
                *m = x;
                continue;
            }
            let delta = x - *m;
            *m += alpha * delta;
            *v = (1.0 - alpha) * (*v + alpha * delta * delta);
        }
    }

    /// The full shingled point that `point` would complete (what the
    /// forest would score), or `None` while too few points have been seen
    /// to fill a shingle. Changes nothing.
    pub fn shingle_of(&self, point: &[f64]) -> Option<Vec<f64>> {
        let mut out = Vec::with_capacity(self.forest.point_dim());
        self.forest.next_shingle(point, &mut out).then_some(out)
    }

    /// The shingle [`Detector::process`] would judge `point` on while a
    /// recent anomaly is still inside it: [`Detector::shingle_of`] with that
    /// entry replaced by what was expected there. `None` when no correction
    /// applies. Changes nothing.
    pub fn corrected_shingle_of(&self, point: &[f64]) -> Option<Vec<f64>> {
        let mut shingle = self.shingle_of(point)?;
        let last = self.last_anomaly.as_ref()?;
        let size = self.config.shingle_size as u64;
        let age = self.seen - last.at;
        let dims = self.dims();
        if age == 0 || age >= size || last.expected.len() != dims {
            return None;
        }
        let pos = (size - 1 - age) as usize;
        shingle[pos * dims..(pos + 1) * dims].copy_from_slice(&last.expected);
        Some(shingle)
    }

    /// Grades `point` with a `score` computed elsewhere (for instance by a
    /// remote Random Cut Forest over [`Detector::shingle_of`]) and then
    /// learns the point exactly as [`Detector::process`] does, so the
    /// forest stays ready to score on its own. `judged` is the score of
    /// [`Detector::corrected_shingle_of`] when there is one: the grade is
    /// taken from it, so one anomaly is reported once, not once per
    /// shingle position; without it `score` is judged as given.
    ///
    /// The same warm-up, threshold, relearning and shift limit apply. The
    /// verdict carries no `expected` values and zero attribution (a score
    /// alone says nothing about them); the caller derives those if needed.
    pub fn grade_external(&mut self, point: &[f64], score: f64, judged: Option<f64>) -> Verdict {
        let (verdict, effects) = self.evaluate_external(point, score, judged);
        self.apply(effects);
        self.learn_values(point);
        self.forest.update(point);
        self.seen += 1;
        verdict
    }

    /// Judges `point` by an external `score` without changing any state.
    fn evaluate_external(
        &self,
        point: &[f64],
        score: f64,
        judged: Option<f64>,
    ) -> (Verdict, Effects) {
        let clean = |s: f64| if s.is_finite() { s } else { 0.0 };
        let score = clean(score);
        let judged = judged.map_or(score, clean);
        let dims = self.dims();
        let quiet = Verdict {
            score,
            grade: 0.0,
            deviation: 0.0,
            expected: None,
            attribution: vec![0.0; dims],
        };
        let mut effects = Effects {
            learn_score: Some(judged),
            anomaly: None,
            below_relearn: false,
        };
        let verdict = if self.shingle_of(point).is_none() {
            effects.learn_score = None;
            Verdict {
                score: 0.0,
                ..quiet
            }
        } else if !self.is_warm() {
            quiet
        } else if let Some(r) = &self.relearn {
            effects.below_relearn = judged < r.threshold.max(self.thresholder.threshold());
            quiet
        } else {
            let grade = self.thresholder.grade(judged);
            let deviation = self.thresholder.z(judged);
            if grade > 0.0 {
                // Nothing better is known: the running mean of each value
                // stands in for what was expected.
                effects.anomaly = Some(self.value_mean.clone());
            }
            Verdict {
                grade,
                deviation,
                ..quiet
            }
        };
        (verdict, effects)
    }

    /// Scores `point` as [`Detector::process`] would, without learning it
    /// or changing any state.
    pub fn score_only(&self, point: &[f64]) -> Verdict {
        let mut buf = Vec::with_capacity(self.forest.point_dim());
        self.evaluate(point, &mut buf).0
    }

    fn apply(&mut self, e: Effects) {
        if let Some(score) = e.learn_score {
            self.thresholder.update(score);
        }
        let at = self.seen;
        let shingle = self.config.shingle_size.max(1) as u64;
        if let Some(r) = &mut self.relearn {
            r.calm = if e.below_relearn { r.calm + 1 } else { 0 };
            if r.calm >= shingle || at >= r.until {
                self.relearn = None;
            }
        }
        match e.anomaly {
            Some(expected) => {
                let start = match (self.streak_start, &self.last_anomaly) {
                    (Some(s), Some(last)) if at - last.at < self.config.shingle_size as u64 => s,
                    _ => at,
                };
                self.streak_start = Some(start);
                self.last_anomaly = Some(LastAnomaly { at, expected });
                if at + 1 - start >= self.config.shift_limit.max(1) {
                    self.start_relearning();
                }
            }
            None => {
                let stale = self
                    .last_anomaly
                    .as_ref()
                    .is_some_and(|l| at - l.at >= self.config.shingle_size as u64);
                if stale {
                    self.last_anomaly = None;
                    self.streak_start = None;
                }
            }
        }
    }

    fn start_relearning(&mut self) {
        self.relearn = Some(Relearn {
            threshold: self.thresholder.threshold(),
            until: self.seen + self.config.relearn_limit,
            calm: 0,
        });
        self.last_anomaly = None;
        self.streak_start = None;
    }

    /// Takes the current level as the new normal: grades stay zero while
    /// the forest learns it, that is until scores have stayed under the
    /// threshold in force now for `shingle_size` points in a row, and for
    /// at most `relearn_limit` points.
    /// The score statistics are kept, so "back under the threshold" means
    /// normal by the standard held before the change.
    pub fn accept_baseline(&mut self) {
        self.start_relearning();
    }

    /// The heap bytes of [`Detector::memory_bytes`], part by part.
    pub fn memory_parts(&self) -> MemoryParts {
        let mut parts = self.forest.memory_parts();
        let fixed = std::mem::size_of::<Self>();
        parts.add("detector (fixed fields)", fixed, fixed);
        parts.add_vec("detector buffers", &self.buf);
        parts.add_vec("detector value statistics", &self.value_mean);
        parts.add_vec("detector value statistics", &self.value_var);
        if let Some(l) = &self.last_anomaly {
            parts.add_vec("detector buffers", &l.expected);
        }
        parts
    }

    /// Estimated heap bytes of this detector (forest, samplers, point
    /// store, statistics), from allocated capacities.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.forest.memory_bytes()
            + self.buf.capacity() * 8
            + (self.value_mean.capacity() + self.value_var.capacity()) * 8
            + self
                .last_anomaly
                .as_ref()
                .map_or(0, |l| l.expected.capacity() * 8)
    }
}

/// A point judged by [`Detector::judge`], not yet learned: hand it back to
/// [`Detector::learn`] or [`Detector::learn_instead`].
#[derive(Debug)]
#[must_use = "a judged point is learned with Detector::learn or Detector::learn_instead"]
pub struct Judgement {
    effects: Effects,
}

/// What judging a point changes once it is learned.
#[derive(Debug)]
struct Effects {
    learn_score: Option<f64>,
    anomaly: Option<Vec<f64>>,
    below_relearn: bool,
}

impl Detector {
    /// Judges `point` against the current state without changing it.
    fn evaluate(&self, point: &[f64], buf: &mut Vec<f64>) -> (Verdict, Effects) {
        let d = self;
        let dims = d.dims();
        let quiet = |score: f64| Verdict {
            score,
            grade: 0.0,
            deviation: 0.0,
            expected: None,
            attribution: vec![0.0; dims],
        };
        if !d.forest.next_shingle(point, buf) {
            let e = Effects {
                learn_score: None,
                anomaly: None,
                below_relearn: false,
            };
            return (quiet(0.0), e);
        }
        let score = d.forest.score_point(buf);
        if !d.is_warm() {
            let e = Effects {
                learn_score: Some(score),
                anomaly: None,
                below_relearn: false,
            };
            return (quiet(score), e);
        }
        // Judge on a shingle whose recent anomalous entry is replaced by
        // what was expected there.
        let shingle = d.forest.config().shingle_size as u64;
        let mut judged = score;
        if let Some(last) = &d.last_anomaly {
            let age = d.seen - last.at;
            if age < shingle && age > 0 {
                let pos = (shingle - 1 - age) as usize;
                let mut corrected = buf.clone();
                corrected[pos * dims..(pos + 1) * dims].copy_from_slice(&last.expected);
                judged = d.forest.score_point(&corrected);
            }
        }
        let threshold = d.thresholder.threshold();
        if let Some(r) = &d.relearn {
            let below = judged < r.threshold.max(threshold);
            let e = Effects {
                learn_score: Some(judged),
                anomaly: None,
                below_relearn: below,
            };
            return (quiet(score), e);
        }
        let grade = d.thresholder.grade(judged);
        let deviation = d.thresholder.z(judged);
        if grade <= 0.0 {
            let e = Effects {
                learn_score: Some(judged),
                anomaly: None,
                below_relearn: false,
            };
            return (
                Verdict {
                    deviation,
                    ..quiet(score)
                },
                e,
            );
        }
        let expected = d
            .forest
            .impute_newest(buf)
            .unwrap_or_else(|| buf[buf.len() - dims..].to_vec());
        let newest = &buf[buf.len() - dims..];
        let near = d.config.near_expected;
        if near > 0.0
            && newest
                .iter()
                .zip(&expected)
                .zip(&d.value_var)
                .all(|((x, e), var)| (x - e).abs() <= near * var.sqrt())
        {
            let e = Effects {
                learn_score: Some(judged),
                anomaly: None,
                below_relearn: false,
            };
            return (
                Verdict {
                    deviation,
                    ..quiet(score)
                },
                e,
            );
        }
        let per_coordinate = d.forest.attribution_point(buf);
        let mut attribution = vec![0.0; dims];
        for (i, a) in per_coordinate.iter().enumerate() {
            attribution[i % dims] += a;
        }
        let e = Effects {
            learn_score: Some(judged),
            anomaly: Some(expected.clone()),
            below_relearn: false,
        };
        let v = Verdict {
            score,
            grade,
            deviation,
            expected: Some(expected),
            attribution,
        };
        (v, e)
    }
}

#[cfg(test)]
mod tests;
