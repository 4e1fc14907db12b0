//! What makes a pipeline run a *problem*, beyond being unusual: the
//! materiality rules of `[detector]` (per metric, optionally per pipeline),
//! the new-normal rule and the weekly rhythm settings.
//!
//! The forest says whether a run is unusual; these rules say whether the
//! difference matters in practice. A metric's deviation is material when it
//! goes in a problem direction (slower builds, more failed tests, higher
//! CPU, memory, error rate and latency, by default) by at least
//! `min_ratio` of the usual value and at least `min_delta` in the metric's
//! own unit. An alert needs both: the forest's score above its threshold
//! and at least one material deviation.
//!
//! ```toml
//! [detector.metrics.duration_s]
//! direction = "up"      # "up", "down" or "both"
//! min_ratio = 0.2       # 20% slower than usual
//! min_delta = 15.0      # and at least 15 s
//!
//! [detector.pipelines."nightly-e2e".metrics.duration_s]
//! min_ratio = 0.5       # this pipeline's duration is noisy
//! ```
//!
//! This module owns the shape, the built-in defaults and the resolution of
//! per-pipeline overrides; applying the rules is the scoring module's work.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Direction, BUILTIN_METRICS};

/// Which way a metric must move to be a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemDirection {
    /// Higher is a problem (slower, more failures, more memory).
    Up,
    /// Lower is a problem (for example a throughput metric).
    Down,
    /// Either way is a problem.
    Both,
}

impl ProblemDirection {
    /// True when a move in `direction` is a problem.
    pub fn includes(self, direction: Direction) -> bool {
        matches!(
            (self, direction),
            (Self::Both, _) | (Self::Up, Direction::Up) | (Self::Down, Direction::Down)
        )
    }
}

/// One metric's rule as written in the config; unset fields come from the
/// level below (pipeline → `[detector.metrics]` → built-in).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricRuleConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<ProblemDirection>,
    /// Smallest change relative to the usual value (0.2 = 20%).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ratio: Option<f64>,
    /// Smallest change in the metric's own unit (seconds, share of tests,
    /// percentage points, MB, share of requests, milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_delta: Option<f64>,
}

/// Overrides for one pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineRulesConfig {
    /// Per metric, keyed by metric name.
    pub metrics: BTreeMap<String, MetricRuleConfig>,
    /// Overrides `[detector] new_normal_after` for this pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_normal_after: Option<u32>,
}

/// A resolved materiality rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricRule {
    pub direction: ProblemDirection,
    pub min_ratio: f64,
    pub min_delta: f64,
}

impl MetricRule {
    /// Whether `observed` differs from `usual` enough, and in a problem
    /// direction, to matter. Returns the direction of the change either way.
    pub fn judge(&self, observed: f64, usual: f64) -> (Direction, bool) {
        let direction = if observed >= usual {
            Direction::Up
        } else {
            Direction::Down
        };
        let delta = (observed - usual).abs();
        let ratio_ok = usual.abs() < f64::EPSILON || delta >= self.min_ratio * usual.abs();
        let material = self.direction.includes(direction) && delta >= self.min_delta && ratio_ok;
        (direction, material)
    }
}

/// The built-in rule of each modelled metric, in [`BUILTIN_METRICS`] order.
/// Counts and rates have no relative floor (0 → 2% failed tests is a
/// change of any ratio), durations and sizes have both.
pub const DEFAULT_RULES: [MetricRule; 6] = [
    // duration_s: 20% slower and at least 15 s.
    MetricRule {
        direction: ProblemDirection::Up,
        min_ratio: 0.2,
        min_delta: 15.0,
    },
    // test_failure_rate: at least 1% more of the tests failing.
    MetricRule {
        direction: ProblemDirection::Up,
        min_ratio: 0.0,
        min_delta: 0.01,
    },
    // cpu_peak_pct: 20% higher and at least 10 percentage points.
    MetricRule {
        direction: ProblemDirection::Up,
        min_ratio: 0.2,
        min_delta: 10.0,
    },
    // mem_peak_mb: 20% higher and at least 64 MB.
    MetricRule {
        direction: ProblemDirection::Up,
        min_ratio: 0.2,
        min_delta: 64.0,
    },
    // error_rate: at least 0.5% more of the requests failing.
    MetricRule {
        direction: ProblemDirection::Up,
        min_ratio: 0.0,
        min_delta: 0.005,
    },
    // latency_p95_ms: 20% slower and at least 20 ms.
    MetricRule {
        direction: ProblemDirection::Up,
        min_ratio: 0.2,
        min_delta: 20.0,
    },
];

/// Consecutive abnormal runs, off the same way, after which their level is
/// the new normal.
pub const DEFAULT_NEW_NORMAL_AFTER: u32 = 5;

/// Days of history after which expected values follow the weekly rhythm.
pub const DEFAULT_SEASONALITY_AFTER_DAYS: u32 = 21;

/// Everything scoring needs to judge one pipeline's runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRules {
    /// One per modelled metric, in [`BUILTIN_METRICS`] order.
    pub metrics: [MetricRule; 6],
    pub new_normal_after: u32,
    pub seasonality_after_days: u32,
    /// Offset of the team's local time from UTC, for working hours and
    /// weekends.
    pub utc_offset_minutes: i32,
}

impl Default for PipelineRules {
    fn default() -> Self {
        Self {
            metrics: DEFAULT_RULES,
            new_normal_after: DEFAULT_NEW_NORMAL_AFTER,
            seasonality_after_days: DEFAULT_SEASONALITY_AFTER_DAYS,
            utc_offset_minutes: 0,
        }
    }
}

fn overlay(rule: &mut MetricRule, with: &MetricRuleConfig) {
    if let Some(d) = with.direction {
        rule.direction = d;
    }
    if let Some(r) = with.min_ratio {
        rule.min_ratio = r;
    }
    if let Some(d) = with.min_delta {
        rule.min_delta = d;
    }
}

impl super::DetectorConfig {
    /// The rules for `pipeline`: built-in defaults, then `[detector.metrics]`,
    /// then `[detector.pipelines."<pipeline>"]`.
    pub fn rules_for(&self, pipeline: &str) -> PipelineRules {
        let mut rules = PipelineRules {
            new_normal_after: self.new_normal_after,
            seasonality_after_days: self.seasonality_after_days,
            utc_offset_minutes: self.utc_offset_minutes,
            ..PipelineRules::default()
        };
        let own = self.pipelines.get(pipeline);
        for (i, name) in BUILTIN_METRICS.iter().enumerate() {
            if let Some(c) = self.metrics.get(*name) {
                overlay(&mut rules.metrics[i], c);
            }
            if let Some(c) = own.and_then(|p| p.metrics.get(*name)) {
                overlay(&mut rules.metrics[i], c);
            }
        }
        if let Some(k) = own.and_then(|p| p.new_normal_after) {
            rules.new_normal_after = k;
        }
        rules
    }

    /// Every problem of the detection rules, as `(key, message)`.
    pub(super) fn rule_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut check_metrics = |prefix: &str, metrics: &BTreeMap<String, MetricRuleConfig>| {
            for (name, rule) in metrics {
                let key = format!("{prefix}.{name}");
                if !BUILTIN_METRICS.contains(&name.as_str()) {
                    out.push((
                        key,
                        format!(
                            "is not a modelled metric (one of {})",
                            BUILTIN_METRICS.join(", ")
                        ),
                    ));
                    continue;
                }
                if rule.min_ratio.is_some_and(|r| !(r.is_finite() && r >= 0.0)) {
                    out.push((format!("{key}.min_ratio"), "must be a number ≥ 0".into()));
                }
                if rule.min_delta.is_some_and(|d| !(d.is_finite() && d >= 0.0)) {
                    out.push((format!("{key}.min_delta"), "must be a number ≥ 0".into()));
                }
            }
        };
        check_metrics("detector.metrics", &self.metrics);
        for (pipeline, p) in &self.pipelines {
            check_metrics(
                &format!("detector.pipelines.\"{pipeline}\".metrics"),
                &p.metrics,
            );
        }
        let k_ok = |k: u32| (2..=100).contains(&k);
        if !k_ok(self.new_normal_after) {
            out.push((
                "detector.new_normal_after".into(),
                "must be between 2 and 100 runs".into(),
            ));
        }
        for (pipeline, p) in &self.pipelines {
            if p.new_normal_after.is_some_and(|k| !k_ok(k)) {
                out.push((
                    format!("detector.pipelines.\"{pipeline}\".new_normal_after"),
                    "must be between 2 and 100 runs".into(),
                ));
            }
        }
        if !(7..=365).contains(&self.seasonality_after_days) {
            out.push((
                "detector.seasonality_after_days".into(),
                "must be between 7 and 365 days".into(),
            ));
        }
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_minutes) {
            out.push((
                "detector.utc_offset_minutes".into(),
                "must be between -840 and 840".into(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::DetectorConfig;
    use super::*;

    #[test]
    fn slower_is_material_faster_is_not_and_small_changes_are_not() {
        let duration = DEFAULT_RULES[0];
        assert_eq!(duration.judge(600.0, 420.0), (Direction::Up, true));
        assert_eq!(duration.judge(300.0, 420.0), (Direction::Down, false));
        // 7% slower: below the 20% floor.
        assert_eq!(duration.judge(450.0, 420.0), (Direction::Up, false));
        // 50% slower but only 10 s: below the 15 s floor.
        assert_eq!(duration.judge(30.0, 20.0), (Direction::Up, false));
        let failures = DEFAULT_RULES[1];
        assert!(failures.judge(0.05, 0.0).1, "0 → 5% failed is material");
        assert!(
            !failures.judge(0.004, 0.0).1,
            "one flaky test of 800 is not"
        );
    }

    #[test]
    fn pipeline_overrides_layer_on_global_ones() {
        let text = r#"
            new_normal_after = 7
            [metrics.duration_s]
            min_ratio = 0.3
            [pipelines."nightly".metrics.duration_s]
            direction = "both"
            [pipelines."nightly"]
            new_normal_after = 3
        "#;
        let c: DetectorConfig = toml::from_str(text).expect("parses");
        assert!(c.rule_problems().is_empty(), "{:?}", c.rule_problems());
        let other = c.rules_for("web");
        assert_eq!(other.metrics[0].min_ratio, 0.3);
        assert_eq!(other.metrics[0].direction, ProblemDirection::Up);
        assert_eq!(other.new_normal_after, 7);
        let nightly = c.rules_for("nightly");
        assert_eq!(nightly.metrics[0].min_ratio, 0.3);
        assert_eq!(nightly.metrics[0].min_delta, 15.0);
        assert_eq!(nightly.metrics[0].direction, ProblemDirection::Both);
        assert_eq!(nightly.new_normal_after, 3);
        assert_eq!(nightly.metrics[1], DEFAULT_RULES[1]);
    }

    #[test]
    fn bad_rules_are_all_reported_with_their_keys() {
        let text = r#"
            new_normal_after = 1
            [metrics.build_size]
            min_ratio = 0.1
            [pipelines."a".metrics.duration_s]
            min_ratio = -1.0
            min_delta = -2.0
        "#;
        let c: DetectorConfig = toml::from_str(text).expect("parses");
        let keys: Vec<String> = c.rule_problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "detector.metrics.build_size",
                "detector.pipelines.\"a\".metrics.duration_s.min_ratio",
                "detector.pipelines.\"a\".metrics.duration_s.min_delta",
                "detector.new_normal_after",
            ]
        );
    }
}
