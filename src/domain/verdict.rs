//! What detection says about one run ([`Verdict`]) and the anomaly record an
//! abnormal stretch of runs opens ([`Anomaly`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which way a metric moved from its expected value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Up,
    Down,
}

/// One metric of a run compared with what the model expected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricDeviation {
    pub metric: String,
    pub observed: f64,
    /// What normal would have looked like at this run.
    pub expected: f64,
    pub direction: Direction,
    /// Share of the anomaly score this metric drove, in [0, 1].
    pub attribution: f64,
    /// Set on a deviation that did not count: why it does not matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dismissed: Option<Dismissal>,
}

/// What detection expected of one metric at a run, before judging it: the
/// usual value and the range within which a change would not count (the
/// larger of the significance floor and the metric's materiality rule on
/// either side). Charts draw it as the expected band.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    pub metric: String,
    pub usual: f64,
    pub low: f64,
    pub high: f64,
}

/// Why an unusual metric does not make a run abnormal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dismissal {
    /// It moved in a direction that is not a problem (a faster build).
    Direction,
    /// The change is below the metric's minimum (relative or absolute).
    Small,
}

/// The detector's answer for one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Raw anomaly score of the forest (about 1 for typical points).
    pub score: f64,
    /// Anomaly grade in [0, 1]; above zero means abnormal.
    pub grade: f64,
    /// The model has seen too few runs of this pipeline to judge yet.
    pub warming_up: bool,
    /// The metrics that are off, strongest first (empty when normal).
    pub deviations: Vec<MetricDeviation>,
    /// The anomaly record this run opened or extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly_id: Option<i64>,
    /// Metrics the forest found unusual that do not matter: too small a
    /// change, or in a direction that is not a problem (a faster build).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dismissed: Vec<MetricDeviation>,
    /// Metrics whose level this run made the new normal (observed: the new
    /// level; expected: the old one), after staying off the same way for
    /// several runs in a row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_normal: Vec<MetricDeviation>,
    /// Whether expected values follow the weekly rhythm (weekday or weekend,
    /// working hours or night); false until enough history exists.
    #[serde(default)]
    pub seasonal: bool,
    /// What was expected of each modelled metric the run reported (empty
    /// while warming up, and on runs scored before expectations were kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<Expectation>,
}

impl Verdict {
    /// The expectation for `metric`, when one was kept.
    pub fn expectation(&self, metric: &str) -> Option<&Expectation> {
        self.expected.iter().find(|e| e.metric == metric)
    }
}

#[cfg(test)]
impl Verdict {
    /// Whether `other` judges the run as this verdict does but for the
    /// rounding of the score: the same anomalous flag and the same metrics
    /// off, in order, and the scores within `tolerance` of each other
    /// (relative to this score, at least 1). How tests compare models that
    /// sum the same terms in another order.
    pub(crate) fn agrees_within(&self, other: &Verdict, tolerance: f64) -> bool {
        let metrics = |v: &Verdict| -> Vec<String> {
            v.deviations.iter().map(|d| d.metric.clone()).collect()
        };
        self.is_anomalous() == other.is_anomalous()
            && metrics(self) == metrics(other)
            && (self.score - other.score).abs() <= tolerance * self.score.max(1.0)
    }
}

impl Verdict {
    pub fn is_anomalous(&self) -> bool {
        self.grade > 0.0
    }

    /// Why, in words: one clause per metric that is off (or, for a normal
    /// run, that was unusual but does not matter, or became the new normal).
    pub fn why(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .deviations
            .iter()
            .map(MetricDeviation::describe)
            .collect();
        out.extend(self.dismissed.iter().map(MetricDeviation::describe));
        out.extend(self.new_normal.iter().map(|d| {
            format!(
                "{} has stayed at about {} (was {}): taken as the new normal",
                metric_label(&d.metric),
                amount(&d.metric, d.observed),
                amount(&d.metric, d.expected)
            )
        }));
        out
    }
}

/// What a metric is called in sentences.
pub fn metric_label(metric: &str) -> &str {
    match metric {
        "duration_s" => "duration",
        "test_failure_rate" => "failed tests",
        "cpu_peak_pct" => "CPU peak",
        "mem_peak_mb" => "memory peak",
        "error_rate" => "error rate",
        "latency_p95_ms" => "p95 latency",
        other => other,
    }
}

/// "slower builds", "fewer failed tests": a move of `metric` in `direction`.
fn movement(metric: &str, direction: Direction) -> String {
    let up = direction == Direction::Up;
    let pick = |a: &str, b: &str| if up { a.to_string() } else { b.to_string() };
    match metric {
        "duration_s" => pick("slower builds", "faster builds"),
        "test_failure_rate" => pick("more failed tests", "fewer failed tests"),
        "cpu_peak_pct" => pick("higher CPU", "lower CPU"),
        "mem_peak_mb" => pick("more memory", "less memory"),
        "error_rate" => pick("more errors", "fewer errors"),
        "latency_p95_ms" => pick("slower responses", "faster responses"),
        other => pick(&format!("higher {other}"), &format!("lower {other}")),
    }
}

/// A value of `metric` in its natural unit: "7 min", "4.6%", "3.1 GB".
pub fn amount(metric: &str, v: f64) -> String {
    // Two or three significant figures, without trailing zeros.
    let short = |x: f64| {
        let text = if x.abs() >= 100.0 {
            format!("{x:.0}")
        } else if x.abs() >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        };
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    };
    let coarse = |x: f64| short((x * 10.0).round() / 10.0);
    match metric {
        "duration_s" => {
            if v.abs() >= 5400.0 {
                format!("{} h", coarse(v / 3600.0))
            } else if v.abs() >= 120.0 {
                format!("{} min", coarse(v / 60.0))
            } else {
                format!("{} s", short(v))
            }
        }
        "test_failure_rate" | "error_rate" => format!("{}%", short(v * 100.0)),
        "cpu_peak_pct" => format!("{}%", short(v)),
        "mem_peak_mb" => {
            if v.abs() >= 1024.0 {
                format!("{} GB", short(v / 1024.0))
            } else {
                format!("{} MB", short(v))
            }
        }
        "latency_p95_ms" => format!("{} ms", short(v)),
        _ => short(v),
    }
}

impl MetricDeviation {
    /// The deviation in words, e.g. "duration 4.1× the usual 7 min (slower
    /// builds are problems)".
    pub fn describe(&self) -> String {
        let label = metric_label(&self.metric);
        let usual = amount(&self.metric, self.expected);
        let rate = matches!(self.metric.as_str(), "test_failure_rate" | "error_rate");
        let change = if rate || self.expected.abs() < f64::EPSILON {
            format!(
                "{} against the usual {usual}",
                amount(&self.metric, self.observed)
            )
        } else {
            let ratio = self.observed / self.expected;
            if ratio >= 2.0 {
                format!("{ratio:.1}× the usual {usual}")
            } else {
                let pct = ((ratio - 1.0) * 100.0).abs();
                let side = if ratio >= 1.0 { "above" } else { "below" };
                format!("{pct:.0}% {side} the usual {usual}")
            }
        };
        let moved = movement(&self.metric, self.direction);
        let verdict = match self.dismissed {
            None => format!("{moved} are problems"),
            Some(Dismissal::Direction) => format!("{moved} are not problems"),
            Some(Dismissal::Small) => "too small a change to be a problem".to_string(),
        };
        format!("{label} {change} ({verdict})")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyStatus {
    Open,
    Closed,
}

impl AnomalyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// An abnormal stretch of one pipeline's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub id: i64,
    pub pipeline: String,
    pub status: AnomalyStatus,
    pub first_run_id: String,
    pub last_run_id: String,
    pub run_count: i64,
    pub max_grade: f64,
    /// The verdict of the latest abnormal run.
    pub latest: Verdict,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

/// A run that detection has just judged: what the incident and chat work
/// receives for every scored run, normal or not, in the order runs of one
/// pipeline were scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredRun {
    /// Row id of the run in the store.
    pub run_pk: i64,
    pub run: crate::domain::Run,
    pub verdict: Verdict,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(
        metric: &str,
        observed: f64,
        expected: f64,
        dismissed: Option<Dismissal>,
    ) -> MetricDeviation {
        MetricDeviation {
            metric: metric.into(),
            observed,
            expected,
            direction: if observed >= expected {
                Direction::Up
            } else {
                Direction::Down
            },
            attribution: 1.0,
            dismissed,
        }
    }

    #[test]
    fn deviations_read_as_sentences_in_natural_units() {
        assert_eq!(
            dev("duration_s", 1722.0, 420.0, None).describe(),
            "duration 4.1× the usual 7 min (slower builds are problems)"
        );
        assert_eq!(
            dev("duration_s", 390.0, 420.0, Some(Dismissal::Direction)).describe(),
            "duration 7% below the usual 7 min (faster builds are not problems)"
        );
        assert_eq!(
            dev("test_failure_rate", 0.0456, 0.004, None).describe(),
            "failed tests 4.56% against the usual 0.4% (more failed tests are problems)"
        );
        assert_eq!(
            dev("mem_peak_mb", 2200.0, 2000.0, Some(Dismissal::Small)).describe(),
            "memory peak 10% above the usual 1.95 GB (too small a change to be a problem)"
        );
        assert_eq!(amount("duration_s", 4.0 * 3600.0), "4 h");
        assert_eq!(amount("duration_s", 45.0), "45 s");
        assert_eq!(amount("latency_p95_ms", 180.0), "180 ms");
    }

    #[test]
    fn why_covers_problems_dismissals_and_new_normals() {
        let v = Verdict {
            grade: 0.0,
            dismissed: vec![dev("duration_s", 390.0, 420.0, Some(Dismissal::Direction))],
            new_normal: vec![dev("duration_s", 600.0, 420.0, None)],
            ..Verdict::default()
        };
        let why = v.why();
        assert_eq!(why.len(), 2);
        assert_eq!(
            why[1],
            "duration has stayed at about 10 min (was 7 min): taken as the new normal"
        );
    }
}
