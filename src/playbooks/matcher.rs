//! Matching: which playbooks' `when` fits an incident, how well, and why.
//!
//! Pure and deterministic: the same incident and catalog always give the
//! same matches in the same order. It must not look at actions, approvals
//! or anything outside the [`MatchSubject`].

use std::cmp::Ordering;

use super::model::{Catalog, Condition, Playbook};
use crate::domain::{MetricDeviation, RunStatus};

/// What matching looks at in an incident.
#[derive(Debug, Clone, Copy)]
pub struct MatchSubject<'a> {
    pub pipeline: &'a str,
    pub status: RunStatus,
    pub stage: Option<&'a str>,
    pub metrics: &'a [MetricDeviation],
    pub log_excerpt: Option<&'a str>,
}

/// A playbook whose `when` fits, with its rank score and the reasons.
#[derive(Debug, Clone)]
pub struct PlaybookMatch<'c> {
    pub playbook: &'c Playbook,
    /// Higher is a better fit: one point per condition field that held, plus
    /// the matched metric's attribution, plus a bonus for log evidence.
    pub score: f64,
    /// Which condition fields held, for people and the prompt.
    pub reasons: Vec<String>,
}

/// Extra weight of a log match: direct evidence in the run's own output.
const LOG_BONUS: f64 = 0.5;

impl Condition {
    /// The score and reasons when every field of this condition holds.
    pub fn evaluate(&self, subject: &MatchSubject<'_>) -> Option<(f64, Vec<String>)> {
        let mut score = 0.0;
        let mut reasons = Vec::new();
        if let Some((pattern, glob)) = &self.metric {
            let best = subject
                .metrics
                .iter()
                .filter(|d| glob.is_match(&d.metric))
                .filter(|d| self.direction.is_none_or(|dir| dir == d.direction))
                .max_by(|a, b| {
                    a.attribution
                        .total_cmp(&b.attribution)
                        .then_with(|| b.metric.cmp(&a.metric))
                })?;
            score += 1.0 + best.attribution.clamp(0.0, 1.0);
            if self.direction.is_some() {
                score += 1.0;
            }
            let dir = match best.direction {
                crate::domain::Direction::Up => "up",
                crate::domain::Direction::Down => "down",
            };
            let shown = if pattern == &best.metric {
                best.metric.clone()
            } else {
                format!("{} (matches {pattern})", best.metric)
            };
            reasons.push(format!(
                "metric {shown} is {dir}: observed {}, expected {}",
                fmt_num(best.observed),
                fmt_num(best.expected)
            ));
        }
        if let Some(status) = self.status {
            if subject.status != status {
                return None;
            }
            score += 1.0;
            reasons.push(format!("run status is {status}"));
        }
        if let Some((pattern, glob)) = &self.stage {
            let stage = subject.stage.filter(|s| glob.is_match(s))?;
            score += 1.0;
            reasons.push(format!("stage {stage} matches {pattern}"));
        }
        if let Some((pattern, glob)) = &self.pipeline {
            if !glob.is_match(subject.pipeline) {
                return None;
            }
            score += 1.0;
            reasons.push(format!("pipeline matches {pattern}"));
        }
        if let Some(re) = &self.log {
            let found = re.find(subject.log_excerpt?)?;
            score += 1.0 + LOG_BONUS;
            let text: String = found.as_str().chars().take(60).collect();
            reasons.push(format!("log excerpt contains \"{}\"", text.trim()));
        }
        Some((score, reasons))
    }
}

impl Playbook {
    /// The score of the best alternative of `when` that holds, with the
    /// reasons of every alternative that holds; `None` when none does.
    pub fn evaluate(&self, subject: &MatchSubject<'_>) -> Option<(f64, Vec<String>)> {
        let mut best: Option<f64> = None;
        let mut reasons: Vec<String> = Vec::new();
        for (score, why) in self.when.iter().filter_map(|c| c.evaluate(subject)) {
            best = Some(best.map_or(score, |b| b.max(score)));
            for r in why {
                if !reasons.contains(&r) {
                    reasons.push(r);
                }
            }
        }
        best.map(|score| (score, reasons))
    }
}

impl Catalog {
    /// Playbooks whose `when` fits, best first (ties by id).
    pub fn matching(&self, subject: &MatchSubject<'_>) -> Vec<PlaybookMatch<'_>> {
        let mut matches: Vec<PlaybookMatch<'_>> = self
            .playbooks
            .iter()
            .filter_map(|p| {
                p.evaluate(subject).map(|(score, reasons)| PlaybookMatch {
                    playbook: p,
                    score,
                    reasons,
                })
            })
            .collect();
        matches.sort_by(|a, b| match b.score.total_cmp(&a.score) {
            Ordering::Equal => a.playbook.id.cmp(&b.playbook.id),
            other => other,
        });
        matches
    }
}

/// Numbers as people read them: up to three decimals, no trailing zeros.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}
