//! The adaptive threshold: turns the forest's raw score stream into an
//! anomaly grade in [0, 1], in the manner of AWS's thresholded RCF.
//!
//! It keeps an exponentially weighted mean and deviation of the scores it
//! is shown. A score is anomalous when it clears both a lower absolute floor
//! (raw RCF scores of typical points sit near 1) and the running mean plus
//! `z_factor` deviations; `sensitivity` divides both margins, so higher
//! sensitivity finds more. The grade grows with how far the score clears
//! the threshold, reaching 1 at twice the threshold's margin.
//!
//! This module owns only statistics over scores; which points it is shown,
//! and what is suppressed, is the detector's business.

use serde::{Deserialize, Serialize};

use crate::detect::bits;

/// Settings of a [`Thresholder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThresholdConfig {
    /// Deviations above the running mean a score must reach (at sensitivity 1).
    pub z_factor: f64,
    /// Smallest raw score that can be anomalous (at sensitivity 1).
    pub lower_threshold: f64,
    /// Higher finds more anomalies: divides `z_factor` and the margin of
    /// `lower_threshold` above 1. Must be positive; 1.0 is the default.
    pub sensitivity: f64,
    /// Scores remembered by the running statistics (exponential window).
    pub window: f64,
    /// Smallest deviation assumed, relative to the mean, so that a very
    /// steady score stream does not make every wobble anomalous.
    pub min_relative_deviation: f64,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self {
            z_factor: 3.0,
            lower_threshold: 1.5,
            sensitivity: 1.0,
            window: 512.0,
            min_relative_deviation: 0.05,
        }
    }
}

/// Running statistics of scores and the threshold they imply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholder {
    config: ThresholdConfig,
    #[serde(with = "bits::one_f64")]
    mean: f64,
    #[serde(with = "bits::one_f64")]
    var: f64,
    count: u64,
}

impl Thresholder {
    /// A thresholder with no scores seen.
    pub fn new(config: ThresholdConfig) -> Self {
        Self {
            config,
            mean: 0.0,
            var: 0.0,
            count: 0,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &ThresholdConfig {
        &self.config
    }

    /// Scores seen since creation or the last [`Thresholder::reset`].
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Running mean of the scores.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Running deviation of the scores, never below the configured floor.
    pub fn deviation(&self) -> f64 {
        self.var
            .sqrt()
            .max(self.config.min_relative_deviation * self.mean.abs())
    }

    fn sensitivity(&self) -> f64 {
        if self.config.sensitivity > 0.0 {
            self.config.sensitivity
        } else {
            1.0
        }
    }

    /// The score at and above which a point is anomalous now.
    pub fn threshold(&self) -> f64 {
        let s = self.sensitivity();
        let floor = 1.0 + (self.config.lower_threshold - 1.0) / s;
        let adaptive = self.mean + self.config.z_factor / s * self.deviation();
        floor.max(adaptive)
    }

    /// How many deviations `score` lies above the running mean.
    pub fn z(&self, score: f64) -> f64 {
        let dev = self.deviation();
        if dev > 0.0 {
            (score - self.mean) / dev
        } else {
            0.0
        }
    }

    /// Anomaly grade of `score`: 0 below the threshold, else in (0, 1],
    /// growing linearly to 1 at the threshold plus its margin over the mean.
    pub fn grade(&self, score: f64) -> f64 {
        let t = self.threshold();
        if score.is_nan() || score <= t {
            return 0.0;
        }
        let margin = (t - self.mean).max(self.deviation()).max(1e-9);
        ((score - t) / margin).clamp(1e-6, 1.0)
    }

    /// Folds `score` into the running statistics.
    pub fn update(&mut self, score: f64) {
        if !score.is_finite() {
            return;
        }
        self.count += 1;
        if self.count == 1 {
            self.mean = score;
            self.var = 0.0;
            return;
        }
        let alpha = (1.0 / self.count as f64).max(1.0 / self.config.window.max(1.0));
        let delta = score - self.mean;
        self.mean += alpha * delta;
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta);
    }

    /// Forgets the statistics (the next scores start them afresh).
    pub fn reset(&mut self) {
        self.mean = 0.0;
        self.var = 0.0;
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calm_scores_grade_zero_and_outliers_grade_positive() {
        let mut t = Thresholder::new(ThresholdConfig::default());
        for i in 0..500 {
            t.update(1.0 + 0.05 * ((i % 7) as f64 - 3.0) / 3.0);
        }
        assert!((t.mean() - 1.0).abs() < 0.02);
        assert_eq!(t.grade(1.05), 0.0);
        assert!(t.threshold() >= 1.5);
        let g = t.grade(1.8);
        assert!(g > 0.0 && g <= 1.0, "{g}");
        assert_eq!(t.grade(10.0), 1.0);
        assert!(t.grade(1.6) < g);
    }

    #[test]
    fn sensitivity_lowers_the_threshold() {
        let mut lo = Thresholder::new(ThresholdConfig::default());
        let mut hi = Thresholder::new(ThresholdConfig {
            sensitivity: 2.0,
            ..ThresholdConfig::default()
        });
        for i in 0..300 {
            let s = 1.0 + 0.2 * ((i % 5) as f64 - 2.0) / 2.0;
            lo.update(s);
            hi.update(s);
        }
        assert!(hi.threshold() < lo.threshold());
        lo.reset();
        assert_eq!(lo.count(), 0);
    }
}
