//! Each tree's streaming sampler: weighted reservoir sampling with time
//! decay. A point arriving at sequence number `t` draws the priority
//! `-λ·t + ln(-ln u)` (u uniform in (0, 1)); the sampler keeps the
//! `capacity` smallest priorities, so recent points are favoured and old
//! ones fade out with rate λ (`time_decay`). With λ = 0 this is plain
//! reservoir sampling. The sampler only decides; the tree holds the points.

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use crate::detect::bits;

/// What the sampler decided for an offered point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// Not sampled.
    Rejected,
    /// Sampled; `evicted` is the point it replaces, if the sample was full.
    Accepted { weight: f64, evicted: Option<u32> },
}

/// A max-heap of (priority, point index) pairs of bounded size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampler {
    capacity: usize,
    #[serde(with = "bits::one_f64")]
    time_decay: f64,
    #[serde(with = "bits::f64s")]
    weights: Vec<f64>,
    points: Vec<u32>,
}

impl Sampler {
    /// An empty sampler keeping `capacity` points with decay `time_decay`.
    pub fn new(capacity: usize, time_decay: f64) -> Self {
        Self {
            capacity,
            time_decay,
            weights: Vec::new(),
            points: Vec::new(),
        }
    }

    /// Points currently sampled.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when the sample holds `capacity` points.
    pub fn is_full(&self) -> bool {
        self.points.len() >= self.capacity
    }

    /// Indices of the sampled points (heap order).
    #[cfg(test)]
    pub fn points(&self) -> &[u32] {
        &self.points
    }

    /// Decides whether the point arriving at `seq` enters the sample. On
    /// acceptance with a full sample, the evicted entry is removed at once;
    /// the caller must then [`Sampler::push`] the accepted point.
    pub fn offer(&mut self, seq: u64, rng: &mut Rng) -> Admission {
        let u = rng.next_open_f64();
        let weight = -self.time_decay * seq as f64 + (-u.ln()).ln();
        if !self.is_full() {
            return Admission::Accepted {
                weight,
                evicted: None,
            };
        }
        if weight >= self.weights[0] {
            return Admission::Rejected;
        }
        let evicted = self.points[0];
        self.pop_root();
        Admission::Accepted {
            weight,
            evicted: Some(evicted),
        }
    }

    /// Adds an accepted point with its weight.
    pub fn push(&mut self, weight: f64, point: u32) {
        if self.weights.len() == self.weights.capacity() {
            // Double while young, then exactly up to capacity.
            let want = (self.weights.len() * 2)
                .max(8)
                .min(self.capacity.max(self.weights.len() + 1));
            self.weights.reserve_exact(want - self.weights.len());
            self.points.reserve_exact(want - self.points.len());
        }
        self.weights.push(weight);
        self.points.push(point);
        let mut i = self.weights.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.weights[parent] >= self.weights[i] {
                break;
            }
            self.weights.swap(parent, i);
            self.points.swap(parent, i);
            i = parent;
        }
    }

    fn pop_root(&mut self) {
        let last = self.weights.len() - 1;
        self.weights.swap(0, last);
        self.points.swap(0, last);
        self.weights.pop();
        self.points.pop();
        let n = self.weights.len();
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            let r = l + 1;
            let mut largest = i;
            if l < n && self.weights[l] > self.weights[largest] {
                largest = l;
            }
            if r < n && self.weights[r] > self.weights[largest] {
                largest = r;
            }
            if largest == i {
                break;
            }
            self.weights.swap(i, largest);
            self.points.swap(i, largest);
            i = largest;
        }
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.weights.capacity() * 8 + self.points.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut Sampler, rng: &mut Rng, n: u64) -> Vec<u32> {
        let mut sampled_seq = Vec::new();
        for seq in 0..n {
            if let Admission::Accepted { weight, .. } = s.offer(seq, rng) {
                s.push(weight, seq as u32);
            }
        }
        sampled_seq.extend_from_slice(s.points());
        sampled_seq
    }

    #[test]
    fn holds_capacity_and_favours_recent_points() {
        let mut rng = Rng::new(1);
        let mut s = Sampler::new(64, 0.1 / 64.0);
        let pts = feed(&mut s, &mut rng, 5000);
        assert_eq!(s.len(), 64);
        assert!(s.is_full());
        let recent = pts.iter().filter(|&&p| p >= 5000 - 1000).count();
        assert!(recent > 40, "decay keeps mostly recent points: {recent}");
        let ancient = pts.iter().filter(|&&p| p < 2500).count();
        assert!(ancient < 3, "old points fade out: {ancient}");
        // The heap keeps its largest weight at the root.
        assert!(s.weights.iter().all(|&w| w <= s.weights[0]));
    }

    #[test]
    fn without_decay_sample_spreads_over_history() {
        let mut rng = Rng::new(2);
        let mut s = Sampler::new(64, 0.0);
        let pts = feed(&mut s, &mut rng, 5000);
        let old = pts.iter().filter(|&&p| p < 2500).count();
        assert!(old > 15, "uniform reservoir keeps old points: {old}");
    }
}
