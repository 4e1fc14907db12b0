//! The offline question parser: plain-language text in, an [`Intent`] out.
//!
//! Pure computation: no I/O, no clock (the caller passes `now`), no store.
//! Questions are untrusted text; they are only lower-cased, split into
//! tokens and compared with fixed keyword lists and the known pipeline
//! names, never evaluated or echoed into queries.
//!
//! Names are forgiving: a known pipeline name anywhere in the question wins;
//! otherwise its tokens are matched exactly, by abbreviation, by prefix or
//! within a small edit distance, and a tie between pipelines comes back as
//! [`Parsed::Ambiguous`]. Windows are read from phrases such as "this week"
//! (since Monday 00:00 UTC), "since Monday", "since 2026-11-01",
//! "last 30 days", "past 2 weeks" or "in the last 24h"; without one the
//! window is the last 7 days, the same as `pipemedic health`.
//!
//! This module holds the [`Intent`] types and [`parse`]; the keyword lists
//! and tokeniser live in `keywords`, pipeline name matching in `names`,
//! time windows in `window`.

mod keywords;
mod names;
mod window;

#[cfg(test)]
mod tests;

pub use keywords::edit_distance;
pub use window::parse_window_text;

use keywords::{
    keyword_match, Question, CAUSE, CHANGE, FAIL, FLAKY, INCIDENT, LAST, OPEN, RANK_WORDS, RATE,
    RECENT, SLOW, SLOWED,
};
use names::{match_pipeline, Named};
use window::parse_window;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// A stretch of time a question is about. Both ends are included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// How people say it: "this week", "last 7 days", "since 2026-11-01".
    pub label: String,
}

impl Window {
    /// The rolling window of `days` days ending at `now`.
    pub fn last_days(days: i64, now: DateTime<Utc>) -> Self {
        Self {
            from: now - Duration::days(days),
            to: now,
            label: format!("last {days} days"),
        }
    }

    /// The window of the same length just before this one.
    pub fn previous(&self) -> Self {
        let len = self.to - self.from;
        Self {
            from: self.from - len,
            to: self.from,
            label: format!("the {} before", self.length_words()),
        }
    }

    /// Whether this is the rolling 7-day window of `pipemedic health`.
    pub fn is_health_week(&self, now: DateTime<Utc>) -> bool {
        self.to == now && now - self.from == Duration::days(7)
    }

    fn length_words(&self) -> String {
        let hours = (self.to - self.from).num_hours().max(1);
        if hours % 24 != 0 || hours < 48 {
            format!("{hours} hours")
        } else {
            format!("{} days", hours / 24)
        }
    }
}

/// How pipelines are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Highest median duration.
    Slowest,
    /// Most failed runs whose retry succeeded, then highest test failure rate.
    Flakiest,
    /// Most failed runs.
    MostFailing,
    /// Largest rise of the median duration against the window before.
    SlowedDown,
}

impl RankBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slowest => "slowest",
            Self::Flakiest => "flakiest",
            Self::MostFailing => "most_failing",
            Self::SlowedDown => "slowed_down",
        }
    }
}

/// What a question asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "intent", rename_all = "snake_case")]
pub enum Intent {
    /// Runs, success rate and durations of one pipeline.
    PipelineHealth { pipeline: String, window: Window },
    /// Every pipeline ranked by one measure.
    Ranking { by: RankBy, window: Window },
    /// What is different in the window (from its start until now) against
    /// the window of the same length before it.
    ChangesSince {
        window: Window,
        pipeline: Option<String>,
    },
    /// Anomalies and incidents: every open one, or those opened in the window.
    Incidents {
        open_only: bool,
        window: Window,
        pipeline: Option<String>,
    },
    /// One incident by its id.
    IncidentDetail { id: i64 },
    /// The latest failed run of a pipeline and what is known of its cause.
    LastFailure { pipeline: String },
    /// Not a question the parser understands.
    Unknown,
}

impl Intent {
    /// The intent's name as it appears in JSON (`pipeline_health`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::PipelineHealth { .. } => "pipeline_health",
            Self::Ranking { .. } => "ranking",
            Self::ChangesSince { .. } => "changes_since",
            Self::Incidents { .. } => "incidents",
            Self::IncidentDetail { .. } => "incident_detail",
            Self::LastFailure { .. } => "last_failure",
            Self::Unknown => "unknown",
        }
    }

    /// The pipeline the question is about, when it names one.
    pub fn pipeline(&self) -> Option<&str> {
        match self {
            Self::PipelineHealth { pipeline, .. } | Self::LastFailure { pipeline } => {
                Some(pipeline)
            }
            Self::ChangesSince { pipeline, .. } | Self::Incidents { pipeline, .. } => {
                pipeline.as_deref()
            }
            _ => None,
        }
    }
}

/// The parser's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "parsed", rename_all = "snake_case")]
pub enum Parsed {
    Intent(Intent),
    /// The question names a pipeline that fits several known ones equally.
    Ambiguous {
        candidates: Vec<String>,
    },
}

/// Longest question the parser reads; the rest is ignored.
pub const MAX_QUESTION_CHARS: usize = 500;

/// Parses one question. `known_pipelines` are the names in the store;
/// `now` anchors relative dates.
pub fn parse(question: &str, known_pipelines: &[String], now: DateTime<Utc>) -> Parsed {
    let q = Question::new(question);
    let window = parse_window(&q.tokens, now);
    let named = match_pipeline(&q, known_pipelines);

    if let Some(id) = incident_id(&q.tokens) {
        return Parsed::Intent(Intent::IncidentDetail { id });
    }
    let pipeline_opt = |named: &Named| match named {
        Named::One(p) => Ok(Some(p.clone())),
        Named::None => Ok(None),
        Named::Many(c) => Err(Parsed::Ambiguous {
            candidates: c.clone(),
        }),
    };
    if q.any(INCIDENT) {
        let open_only =
            q.any(OPEN) || (!q.any(RECENT) && window.is_none() && !q.has_phrase(&["any"]));
        let window = window.unwrap_or_else(|| Window::last_days(7, now));
        return match pipeline_opt(&named) {
            Ok(pipeline) => Parsed::Intent(Intent::Incidents {
                open_only,
                window,
                pipeline,
            }),
            Err(ambiguous) => ambiguous,
        };
    }
    if q.any(CHANGE) || q.has_phrase(&["whats", "new"]) || q.has_phrase(&["what", "is", "new"]) {
        let window = window.unwrap_or_else(|| Window::last_days(7, now));
        return match pipeline_opt(&named) {
            Ok(pipeline) => Parsed::Intent(Intent::ChangesSince { window, pipeline }),
            Err(ambiguous) => ambiguous,
        };
    }
    let fails = q.any(FAIL);
    let asks_cause = q.any(CAUSE) || q.any(LAST);
    let asks_rate = q.any(RATE);
    let rank = rank_by(&q);
    let asks_ranking = q.any(RANK_WORDS) || matches!(named, Named::None);
    match (&named, rank) {
        (Named::One(_) | Named::Many(_), _) if fails && asks_cause && !asks_rate => {
            return match &named {
                Named::One(p) => Parsed::Intent(Intent::LastFailure {
                    pipeline: p.clone(),
                }),
                Named::Many(c) => Parsed::Ambiguous {
                    candidates: c.clone(),
                },
                Named::None => Parsed::Intent(Intent::Unknown),
            };
        }
        (_, Some(by)) if asks_ranking => {
            return Parsed::Intent(Intent::Ranking {
                by,
                window: window.unwrap_or_else(|| Window::last_days(7, now)),
            });
        }
        _ => {}
    }
    match named {
        Named::One(pipeline) => Parsed::Intent(Intent::PipelineHealth {
            pipeline,
            window: window.unwrap_or_else(|| Window::last_days(7, now)),
        }),
        Named::Many(candidates) => Parsed::Ambiguous { candidates },
        Named::None => Parsed::Intent(Intent::Unknown),
    }
}

fn incident_id(tokens: &[String]) -> Option<i64> {
    for (i, t) in tokens.iter().enumerate() {
        if let Some(n) = t.strip_prefix('#').and_then(|n| n.parse().ok()) {
            return Some(n);
        }
        let is_incident_word = INCIDENT.iter().any(|w| keyword_match(t, w));
        if is_incident_word {
            let next = tokens.get(i + 1).map(|n| n.trim_start_matches('#'));
            if let Some(n) = next.and_then(|n| n.parse().ok()) {
                return Some(n);
            }
            let next2 = tokens.get(i + 2).map(|n| n.trim_start_matches('#'));
            let via = tokens.get(i + 1).map(String::as_str);
            if matches!(via, Some("no" | "number" | "id" | "nr")) {
                if let Some(n) = next2.and_then(|n| n.parse().ok()) {
                    return Some(n);
                }
            }
        }
        if let Some(n) = t
            .strip_prefix("inc-")
            .or_else(|| t.strip_prefix("incident-"))
            .and_then(|n| n.parse().ok())
        {
            return Some(n);
        }
    }
    None
}

fn rank_by(q: &Question) -> Option<RankBy> {
    if q.any(SLOWED) {
        Some(RankBy::SlowedDown)
    } else if q.any(SLOW) {
        Some(RankBy::Slowest)
    } else if q.any(FLAKY) {
        Some(RankBy::Flakiest)
    } else if q.any(FAIL) || q.any(&["worst", "unreliable", "reliable"]) {
        Some(RankBy::MostFailing)
    } else {
        None
    }
}
