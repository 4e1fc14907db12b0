//! A streak of abnormal runs with the same metrics off the same way: its
//! recent values, its level, and whether it is still moving (a ramp) or has
//! settled (a step that may become the new normal).

use serde::{Deserialize, Serialize};

use crate::domain::Direction;

/// Metrics off the same way in consecutive abnormal runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Streak {
    /// `(metric, direction)` off in every run of the streak.
    pub(super) keys: Vec<(usize, Direction)>,
    pub(super) runs: u32,
    /// Every metric's observed values in the latest runs of the streak
    /// (at most twice `new_normal_after` runs, oldest first).
    #[serde(default)]
    pub(super) recent: Vec<Vec<f64>>,
}

impl Streak {
    /// Mean of metric `i` over the latest `k` runs.
    pub(super) fn level(&self, i: usize, k: usize) -> Option<f64> {
        let skip = self.recent.len().saturating_sub(k);
        let values: Vec<f64> = self.recent[skip..]
            .iter()
            .filter_map(|r| r.get(i).copied())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    /// Whether metric `i` is still moving across the recent runs (up to
    /// twice `new_normal_after`): the slope of its least-squares line is
    /// clearly not zero (its t statistic beyond [`MOVING_T`]). A step
    /// settles at once, give or take noise; a ramp (a memory leak on its
    /// way to an out-of-memory run) keeps going, and a noisy top of a ramp
    /// is still seen with the climb that led to it.
    pub(super) fn moving(&self, i: usize) -> bool {
        let ys: Vec<f64> = self
            .recent
            .iter()
            .filter_map(|r| r.get(i).copied())
            .collect();
        if ys.len() < 3 {
            return false;
        }
        let n = ys.len() as f64;
        let mean_x = (n - 1.0) / 2.0;
        let mean_y = ys.iter().sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (x, y) in ys.iter().enumerate() {
            let dx = x as f64 - mean_x;
            sxy += dx * (y - mean_y);
            sxx += dx * dx;
        }
        let slope = sxy / sxx;
        let sse: f64 = ys
            .iter()
            .enumerate()
            .map(|(x, y)| {
                let fit = mean_y + slope * (x as f64 - mean_x);
                (y - fit) * (y - fit)
            })
            .sum();
        let se = (sse / (n - 2.0) / sxx).sqrt();
        if se <= f64::EPSILON * mean_y.abs().max(1.0) {
            return slope.abs() > f64::EPSILON * mean_y.abs().max(1.0);
        }
        (slope / se).abs() > MOVING_T
    }
}

/// |t| of a streak's slope beyond which its level is still moving (about
/// the 90% two-sided point of Student's t with 3 degrees of freedom, the
/// fewest runs it is computed on by default; stricter with more runs).
const MOVING_T: f64 = 2.35;
