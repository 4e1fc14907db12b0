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

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
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

// ---------------------------------------------------------------- keywords

const INCIDENT: &[&str] = &[
    "incident",
    "incidents",
    "anomaly",
    "anomalies",
    "anomalous",
    "alert",
    "alerts",
    "outage",
    "outages",
    "inc",
    "incs",
    "fire",
];
const OPEN: &[&str] = &[
    "open",
    "active",
    "ongoing",
    "current",
    "currently",
    "unresolved",
    "firing",
];
const RECENT: &[&str] = &["recent", "recently", "latest", "lately", "past", "closed"];
const CHANGE: &[&str] = &["changed", "change", "changes", "happened", "different"];
const FAIL: &[&str] = &[
    "fail", "fails", "failed", "failing", "failure", "failures", "broke", "broken", "breaking",
    "breaks", "red", "crashed", "errored",
];
const CAUSE: &[&str] = &[
    "why", "cause", "caused", "reason", "broke", "what", "when", "happened",
];
const LAST: &[&str] = &["last", "latest", "previous", "recent", "lst"];
const RATE: &[&str] = &["rate", "often", "many", "percent", "percentage", "ratio"];
const RANK_WORDS: &[&str] = &[
    "which",
    "top",
    "most",
    "worst",
    "rank",
    "ranking",
    "pipelines",
    "piplines",
    "all",
    "list",
    "ones",
    "any",
];
const SLOWED: &[&str] = &[
    "slower",
    "slowed",
    "slowing",
    "slowdown",
    "regressed",
    "regression",
    "regressions",
];
const SLOW: &[&str] = &["slowest", "slow", "longest", "sluggish", "slowst"];
const FLAKY: &[&str] = &[
    "flaky",
    "flakey",
    "flakiest",
    "flakyest",
    "flakiness",
    "flake",
    "flakes",
    "flaking",
    "unstable",
    "intermittent",
];

/// Words that never name a pipeline (question words, keywords, dates).
const STOP: &[&str] = &[
    "a",
    "an",
    "the",
    "of",
    "for",
    "on",
    "in",
    "to",
    "at",
    "by",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "do",
    "does",
    "did",
    "doing",
    "done",
    "how",
    "hows",
    "what",
    "whats",
    "which",
    "why",
    "when",
    "where",
    "who",
    "it",
    "its",
    "my",
    "our",
    "we",
    "us",
    "me",
    "i",
    "and",
    "or",
    "with",
    "this",
    "that",
    "these",
    "those",
    "last",
    "past",
    "previous",
    "week",
    "weeks",
    "wk",
    "wks",
    "day",
    "days",
    "today",
    "yesterday",
    "night",
    "tonight",
    "overnight",
    "since",
    "month",
    "months",
    "hour",
    "hours",
    "hr",
    "hrs",
    "show",
    "tell",
    "give",
    "about",
    "any",
    "there",
    "has",
    "have",
    "had",
    "so",
    "far",
    "pipeline",
    "pipelines",
    "pipline",
    "piplines",
    "pipe",
    "build",
    "builds",
    "run",
    "runs",
    "job",
    "jobs",
    "ci",
    "please",
    "pls",
    "plz",
    "hey",
    "hi",
    "now",
    "right",
    "lately",
    "recent",
    "recently",
    "latest",
    "most",
    "top",
    "over",
    "than",
    "vs",
    "from",
    "health",
    "healthy",
    "helth",
    "status",
    "stats",
    "going",
    "look",
    "looking",
    "looks",
    "ok",
    "okay",
    "success",
    "rate",
    "p50",
    "p95",
    "p90",
    "median",
    "duration",
    "durations",
    "long",
    "take",
    "takes",
    "taking",
    "time",
    "times",
    "got",
    "get",
    "gotten",
    "become",
    "became",
    "doing",
    "performing",
    "summary",
    "can",
    "you",
    "could",
    "would",
    "should",
    "much",
    "many",
    "often",
    "lot",
    "all",
    "list",
    "ones",
    "any",
    "some",
    "new",
    "open",
    "still",
    "yet",
    "up",
    "down",
    "out",
    "not",
    "no",
    "yes",
    "whole",
    "overall",
    "currently",
    "current",
    "state",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thur",
    "thurs",
    "fri",
    "sat",
    "sun",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "couple",
    "few",
    "number",
    "compared",
    "before",
    "after",
    "between",
    "per",
    "into",
    "like",
    "been",
    "deploy",
    "deploys",
];

/// Abbreviations people use inside pipeline names.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("svc", "service"),
    ("srv", "service"),
    ("serv", "service"),
    ("idx", "indexer"),
    ("pay", "payments"),
    ("pmts", "payments"),
    ("fe", "web"),
    ("frontend", "web"),
    ("api", "service"),
];

// ---------------------------------------------------------------- tokens

struct Question {
    /// Lower-cased text with punctuation turned into spaces.
    text: String,
    tokens: Vec<String>,
}

impl Question {
    fn new(raw: &str) -> Self {
        let lowered: String = raw
            .chars()
            .take(MAX_QUESTION_CHARS)
            .flat_map(char::to_lowercase)
            .filter(|c| *c != '\'' && *c != '’')
            .map(|c| {
                if c.is_alphanumeric() || "-_/.#:".contains(c) {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        let tokens: Vec<String> = lowered
            .split_whitespace()
            .map(|t| t.trim_matches(|c| ".:/-_".contains(c)).to_string())
            .filter(|t| !t.is_empty())
            .collect();
        Self {
            text: format!(" {} ", tokens.join(" ")),
            tokens,
        }
    }

    /// Some token is one of `words`, allowing a typo in longer words.
    fn any(&self, words: &[&str]) -> bool {
        self.tokens
            .iter()
            .any(|t| words.iter().any(|w| keyword_match(t, w)))
    }

    /// The words appear one after the other.
    fn has_phrase(&self, words: &[&str]) -> bool {
        self.tokens
            .windows(words.len())
            .any(|w| w.iter().zip(words).all(|(a, b)| a == b))
    }
}

fn keyword_match(token: &str, word: &str) -> bool {
    if token == word {
        return true;
    }
    let len = word.chars().count();
    let allowed = match len {
        0..=4 => 0,
        5..=7 => 1,
        _ => 2,
    };
    allowed > 0
        && token.chars().count() + allowed >= len
        && edit_distance(token, word, allowed) <= allowed
}

/// Levenshtein distance, giving up (returning `limit + 1`) once it exceeds `limit`.
pub fn edit_distance(a: &str, b: &str, limit: usize) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return limit + 1;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        let mut row_min = cur[0];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            row_min = row_min.min(cur[j + 1]);
        }
        if row_min > limit {
            return limit + 1;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
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

// ---------------------------------------------------------------- pipelines

#[derive(Debug, Clone, PartialEq)]
enum Named {
    None,
    One(String),
    Many(Vec<String>),
}

fn split_name(name: &str) -> Vec<String> {
    name.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// How well one question token fits one token of a pipeline name (0 = not).
fn token_fit(q: &str, n: &str) -> f64 {
    if q == n {
        return 1.0;
    }
    if ABBREVIATIONS.iter().any(|(a, full)| *a == q && *full == n) {
        return 0.9;
    }
    let (ql, nl) = (q.chars().count(), n.chars().count());
    if ql >= 4 && nl > ql && n.starts_with(q) {
        return 0.8;
    }
    let allowed = match nl {
        0..=3 => 0,
        4..=5 => 1,
        _ => 2,
    };
    if allowed > 0 && ql >= 3 {
        let d = edit_distance(q, n, allowed);
        if d <= allowed {
            return 0.85 - 0.05 * d as f64;
        }
    }
    0.0
}

fn is_keyword(word: &str) -> bool {
    [
        INCIDENT, OPEN, RECENT, CHANGE, FAIL, CAUSE, LAST, RATE, RANK_WORDS, SLOWED, SLOW, FLAKY,
    ]
    .iter()
    .any(|list| list.iter().any(|k| keyword_match(word, k)))
}

fn match_pipeline(q: &Question, known: &[String]) -> Named {
    // A known name written out (with its separators or with spaces) wins;
    // the longest one when several fit ("checkout-service-canary").
    let spaced_text = q.text.replace(['-', '_', '/', '.'], " ");
    let mut exact: Vec<&String> = known
        .iter()
        .filter(|name| {
            let lower = name.to_lowercase();
            let spaced = split_name(name).join(" ");
            q.text.contains(&format!(" {lower} ")) || spaced_text.contains(&format!(" {spaced} "))
        })
        .collect();
    exact.sort_by_key(|n| std::cmp::Reverse(n.len()));
    if let Some(first) = exact.first() {
        return Named::One((*first).clone());
    }
    // Otherwise score each pipeline by how many of its name tokens the
    // question's content tokens fit, exactly or loosely.
    let words: Vec<String> = q
        .tokens
        .iter()
        .flat_map(|t| split_name(t))
        .filter(|t| !STOP.contains(&t.as_str()) && !t.chars().all(|c| c.is_ascii_digit()))
        .collect();
    if words.is_empty() {
        return Named::None;
    }
    let mut scored: Vec<(f64, &String)> = known
        .iter()
        .filter_map(|name| {
            let parts = split_name(name);
            let mut score = 0.0;
            for part in &parts {
                let best = words
                    .iter()
                    .map(|w| {
                        let fit = token_fit(w, part);
                        // A keyword names a pipeline only when spelled exactly.
                        if fit < 1.0 && is_keyword(w) {
                            0.0
                        } else {
                            fit
                        }
                    })
                    .fold(0.0, f64::max);
                score += best;
            }
            // The whole name typed without separators, or with a typo.
            let joined = parts.concat();
            for w in &words {
                let whole = w.replace(['-', '_', '/', '.'], "");
                if whole.len() >= 6 && edit_distance(&whole, &joined, 2) <= 2 {
                    score = f64::max(score, parts.len() as f64 * 0.9);
                }
            }
            (score > 0.0).then_some((score, name))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let Some(&(best, _)) = scored.first() else {
        return Named::None;
    };
    let top: Vec<String> = scored
        .iter()
        .filter(|(s, _)| (best - s).abs() < 1e-9)
        .map(|(_, n)| (*n).clone())
        .collect();
    if top.len() == 1 {
        Named::One(top[0].clone())
    } else {
        Named::Many(top)
    }
}

// ---------------------------------------------------------------- windows

fn start_of_day(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.from_utc_datetime(&t.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn start_of_week(now: DateTime<Utc>) -> DateTime<Utc> {
    start_of_day(now) - Duration::days(i64::from(now.weekday().num_days_from_monday()))
}

fn weekday(token: &str) -> Option<Weekday> {
    Some(match token {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" | "thur" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn month(token: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    if token.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| token.starts_with(m))
        .map(|i| i as u32 + 1)
}

fn day_number(token: &str) -> Option<u32> {
    let digits = token.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &token[digits.len()..];
    if !matches!(suffix, "" | "st" | "nd" | "rd" | "th") {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

fn number(token: &str) -> Option<i64> {
    if let Ok(n) = token.parse::<i64>() {
        return (n > 0 && n <= 3650).then_some(n);
    }
    Some(match token {
        "a" | "an" | "one" => 1,
        "two" | "couple" => 2,
        "three" | "few" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "fourteen" => 14,
        "thirty" => 30,
        "ninety" => 90,
        _ => return None,
    })
}

/// A span length from a unit word.
fn unit(token: &str) -> Option<(Duration, &'static str)> {
    Some(match token {
        "h" | "hr" | "hrs" | "hour" | "hours" => (Duration::hours(1), "hours"),
        "d" | "day" | "days" => (Duration::days(1), "days"),
        "w" | "wk" | "wks" | "week" | "weeks" => (Duration::weeks(1), "weeks"),
        "m" | "mo" | "month" | "months" => (Duration::days(30), "months"),
        _ => return None,
    })
}

/// `30d`, `24h`, `2w` in one token.
fn compact_span(token: &str) -> Option<(i64, Duration, &'static str)> {
    let digits: String = token.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let n = number(&digits)?;
    let (len, name) = unit(&token[digits.len()..])?;
    Some((n, len, name))
}

fn rolling(n: i64, len: Duration, unit_name: &str, now: DateTime<Utc>) -> Window {
    let span = len * i32::try_from(n).unwrap_or(1);
    let label = match (unit_name, n) {
        ("weeks", 1) => "last 7 days".to_string(),
        ("weeks", n) => format!("last {} days", n * 7),
        ("months", n) => format!("last {} days", n * 30),
        ("days", n) => format!("last {n} days"),
        ("hours", n) => format!("last {n} hours"),
        (u, n) => format!("last {n} {u}"),
    };
    Window {
        from: now - span,
        to: now,
        label,
    }
}

/// A date after "since": a weekday, yesterday, an ISO date, "nov 1", "1 nov".
fn since_point(rest: &[String], now: DateTime<Utc>) -> Option<(DateTime<Utc>, String)> {
    let first = rest.first()?;
    let midnight =
        |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
    if let Some(day) = weekday(first) {
        let back = (7 + now.weekday().num_days_from_monday() - day.num_days_from_monday()) % 7;
        let from = start_of_day(now) - Duration::days(i64::from(back));
        let label = match day {
            Weekday::Mon => "Monday",
            Weekday::Tue => "Tuesday",
            Weekday::Wed => "Wednesday",
            Weekday::Thu => "Thursday",
            Weekday::Fri => "Friday",
            Weekday::Sat => "Saturday",
            Weekday::Sun => "Sunday",
        };
        return Some((from, format!("since {label}")));
    }
    match first.as_str() {
        "yesterday" => {
            return Some((
                start_of_day(now) - Duration::days(1),
                "since yesterday".into(),
            ))
        }
        "today" | "this" if first == "today" || rest.get(1).is_some_and(|t| t == "morning") => {
            return Some((start_of_day(now), "today".into()))
        }
        "last"
            if rest
                .get(1)
                .is_some_and(|t| unit(t).is_some_and(|u| u.1 == "weeks")) =>
        {
            return Some((
                start_of_week(now) - Duration::weeks(1),
                "since last week".into(),
            ))
        }
        _ => {}
    }
    for fmt in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(first, fmt) {
            return Some((midnight(d), format!("since {}", d.format("%Y-%m-%d"))));
        }
    }
    // "nov 1", "november 1st", "1 nov", "the 1st of november"
    let words: Vec<&str> = rest
        .iter()
        .take(4)
        .map(String::as_str)
        .filter(|w| !matches!(*w, "the" | "of"))
        .collect();
    let (m, d) = match words.as_slice() {
        [a, b, ..] if month(a).is_some() && day_number(b).is_some() => (month(a)?, day_number(b)?),
        [a, b, ..] if day_number(a).is_some() && month(b).is_some() => (month(b)?, day_number(a)?),
        _ => return None,
    };
    let mut year = now.year();
    let mut date = NaiveDate::from_ymd_opt(year, m, d)?;
    if midnight(date) > now {
        year -= 1;
        date = NaiveDate::from_ymd_opt(year, m, d)?;
    }
    Some((midnight(date), format!("since {}", date.format("%Y-%m-%d"))))
}

/// Reads the first time phrase of the question; `None` when there is none.
pub fn parse_window_text(question: &str, now: DateTime<Utc>) -> Option<Window> {
    parse_window(&Question::new(question).tokens, now)
}

/// Time words with their common misspellings and short forms.
fn normalise_time_word(token: &str) -> String {
    const SHORT: [(&str, &str); 12] = [
        ("wek", "week"),
        ("weel", "week"),
        ("weks", "weeks"),
        ("tody", "today"),
        ("tdy", "today"),
        ("2day", "today"),
        ("yday", "yesterday"),
        ("ytd", "yesterday"),
        ("snce", "since"),
        ("sice", "since"),
        ("mnth", "month"),
        ("24hrs", "24h"),
    ];
    const LONG: [&str; 11] = [
        "yesterday",
        "today",
        "since",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "month",
    ];
    if let Some((_, full)) = SHORT.iter().find(|(short, _)| *short == token) {
        return (*full).to_string();
    }
    LONG.iter()
        .find(|w| token.len() >= w.len() - 1 && keyword_match(token, w))
        .map_or_else(|| token.to_string(), |w| (*w).to_string())
}

fn parse_window(tokens: &[String], now: DateTime<Utc>) -> Option<Window> {
    let tokens: Vec<String> = tokens.iter().map(|t| normalise_time_word(t)).collect();
    let tokens = tokens.as_slice();
    let at = |i: usize| tokens.get(i).map(String::as_str).unwrap_or("");
    for i in 0..tokens.len() {
        let t = at(i);
        if t == "since" {
            if let Some((from, label)) = since_point(&tokens[i + 1..], now) {
                return Some(Window {
                    from,
                    to: now,
                    label,
                });
            }
            continue;
        }
        if let Some((n, len, name)) = compact_span(t) {
            return Some(rolling(n, len, name, now));
        }
        if matches!(t, "last" | "past" | "previous" | "lst" | "prev") {
            // "last 30 days", "past 2 weeks", "last 24h", "past week", "last week"
            let next = at(i + 1);
            if let Some((n, len, name)) = compact_span(next) {
                return Some(rolling(n, len, name, now));
            }
            if let (Some(n), Some((len, name))) = (number(next), unit(at(i + 2))) {
                return Some(rolling(n, len, name, now));
            }
            if next == "night" || next == "nights" {
                let today = start_of_day(now);
                return Some(Window {
                    from: today - Duration::hours(6),
                    to: today + Duration::hours(6),
                    label: "last night".into(),
                });
            }
            if let Some((len, name)) = unit(next) {
                // "in the last week" / "past week" roll; "last week" is the
                // calendar week before this one.
                let rolling_phrase =
                    t == "past" || (i >= 1 && at(i - 1) == "the") || name == "hours";
                if name == "weeks" && !rolling_phrase {
                    let this_week = start_of_week(now);
                    return Some(Window {
                        from: this_week - Duration::weeks(1),
                        to: this_week,
                        label: "last week".into(),
                    });
                }
                return Some(rolling(1, len, name, now));
            }
        }
        if t == "this" {
            match at(i + 1) {
                "week" | "wk" => {
                    return Some(Window {
                        from: start_of_week(now),
                        to: now,
                        label: "this week".into(),
                    })
                }
                "month" => {
                    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1)
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|d| Utc.from_utc_datetime(&d))
                        .unwrap_or(now);
                    return Some(Window {
                        from: first,
                        to: now,
                        label: "this month".into(),
                    });
                }
                "morning" => {
                    return Some(Window {
                        from: start_of_day(now),
                        to: now,
                        label: "today".into(),
                    })
                }
                _ => {}
            }
        }
        match t {
            "today" | "tonight" => {
                return Some(Window {
                    from: start_of_day(now),
                    to: now,
                    label: "today".into(),
                })
            }
            "yesterday" => {
                let today = start_of_day(now);
                return Some(Window {
                    from: today - Duration::days(1),
                    to: today,
                    label: "yesterday".into(),
                });
            }
            "overnight" => {
                let today = start_of_day(now);
                return Some(Window {
                    from: today - Duration::hours(6),
                    to: today + Duration::hours(6),
                    label: "last night".into(),
                });
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        // A Wednesday.
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn known() -> Vec<String> {
        [
            "checkout-service",
            "checkout-web",
            "payments",
            "search-indexer",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn intent(q: &str) -> Intent {
        match parse(q, &known(), now()) {
            Parsed::Intent(i) => i,
            other => panic!("{q}: {other:?}"),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn health_questions_name_their_pipeline() {
        for q in [
            "how is checkout-service doing this week?",
            "helth of checkout-service",
            "how's chekout-service?",
            "checkout svc status",
            "checkout service p95",
            "CHECKOUT-SERVICE",
        ] {
            match intent(q) {
                Intent::PipelineHealth { pipeline, .. } => {
                    assert_eq!(pipeline, "checkout-service", "{q}")
                }
                other => panic!("{q}: {other:?}"),
            }
        }
        assert_eq!(
            intent("how is search doing").pipeline(),
            Some("search-indexer")
        );
        assert_eq!(intent("paymnets health").pipeline(), Some("payments"));
        assert_eq!(
            intent("status of the web pipline").pipeline(),
            Some("checkout-web")
        );
    }

    #[test]
    fn names_with_slashes() {
        let known = vec![
            "octo-org/octo-repo/test".to_string(),
            "octo-org/octo-repo/deploy-prod".to_string(),
            "group/project".to_string(),
        ];
        let pipeline = |q: &str| match parse(q, &known, now()) {
            Parsed::Intent(i) => i.pipeline().map(str::to_string),
            Parsed::Ambiguous { .. } => Some("ambiguous".to_string()),
        };
        assert_eq!(
            pipeline("how is octo-org/octo-repo/test doing?").as_deref(),
            Some("octo-org/octo-repo/test")
        );
        assert_eq!(
            pipeline("Octo-Org/Octo-Repo/Test health").as_deref(),
            Some("octo-org/octo-repo/test")
        );
        assert_eq!(
            pipeline("why did group/project fail").as_deref(),
            Some("group/project")
        );
        assert_eq!(
            pipeline("how is octo-repo doing").as_deref(),
            Some("ambiguous")
        );
    }

    #[test]
    fn keywords_do_not_loosely_name_pipelines() {
        let known = vec!["alerts-router".to_string(), "failover-drill".to_string()];
        // "alert" is one letter from the "alerts" of alerts-router.
        assert!(matches!(
            parse("any open alert?", &known, now()),
            Parsed::Intent(Intent::Incidents { pipeline: None, .. })
        ));
        assert!(matches!(
            parse("how is alerts-router doing", &known, now()),
            Parsed::Intent(Intent::PipelineHealth { .. })
        ));
        assert!(matches!(
            parse("which pipelines failed most", &known, now()),
            Parsed::Intent(Intent::Ranking { .. })
        ));
    }

    #[test]
    fn an_ambiguous_name_gets_a_choice() {
        assert_eq!(
            parse("how is checkout doing?", &known(), now()),
            Parsed::Ambiguous {
                candidates: vec!["checkout-service".into(), "checkout-web".into()]
            }
        );
        // With one checkout pipeline, "checkout" finds it.
        let only = vec!["checkout-service".to_string(), "payments".to_string()];
        assert_eq!(
            parse("how is checkout doing?", &only, now()),
            Parsed::Intent(Intent::PipelineHealth {
                pipeline: "checkout-service".into(),
                window: Window::last_days(7, now()),
            })
        );
    }

    #[test]
    fn windows() {
        let w = |q: &str| parse_window_text(q, now()).unwrap();
        assert_eq!(w("this week").from, t("2026-11-23T00:00:00Z"));
        assert_eq!(w("this week").label, "this week");
        assert_eq!(w("last week").from, t("2026-11-16T00:00:00Z"));
        assert_eq!(w("last week").to, t("2026-11-23T00:00:00Z"));
        assert_eq!(w("in the last week").from, t("2026-11-18T12:00:00Z"));
        assert_eq!(w("today").from, t("2026-11-25T00:00:00Z"));
        assert_eq!(w("yesterday").to, t("2026-11-25T00:00:00Z"));
        assert_eq!(w("last night").from, t("2026-11-24T18:00:00Z"));
        assert_eq!(w("since Monday").from, t("2026-11-23T00:00:00Z"));
        assert_eq!(w("since mon").label, "since Monday");
        assert_eq!(w("since friday").from, t("2026-11-20T00:00:00Z"));
        assert_eq!(w("since 2026-11-01").from, t("2026-11-01T00:00:00Z"));
        assert_eq!(w("since nov 1st").from, t("2026-11-01T00:00:00Z"));
        assert_eq!(w("since 3 oct").from, t("2026-10-03T00:00:00Z"));
        assert_eq!(w("last 30 days").from, t("2026-10-26T12:00:00Z"));
        assert_eq!(w("last 30 days").label, "last 30 days");
        assert_eq!(w("past 2 weeks").from, t("2026-11-11T12:00:00Z"));
        assert_eq!(w("past two weeks").label, "last 14 days");
        assert_eq!(w("in the last 24h").from, t("2026-11-24T12:00:00Z"));
        assert_eq!(w("last 24 hours").label, "last 24 hours");
        assert_eq!(w("over 30d").label, "last 30 days");
        assert!(parse_window_text("how is payments", now()).is_none());
        assert_eq!(w("this wek").label, "this week");
        assert_eq!(w("yesterdy").label, "yesterday");
        assert_eq!(w("sinse tuesdy").label, "since Tuesday");
    }

    #[test]
    fn the_default_window_is_the_health_week() {
        match intent("payments health") {
            Intent::PipelineHealth { window, .. } => assert!(window.is_health_week(now())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rankings() {
        let by = |q: &str| match intent(q) {
            Intent::Ranking { by, .. } => by,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(by("which pipeline is the slowest?"), RankBy::Slowest);
        assert_eq!(by("slowest pipelines this week"), RankBy::Slowest);
        assert_eq!(by("what got slower?"), RankBy::SlowedDown);
        assert_eq!(
            by("which builds slowed down since monday"),
            RankBy::SlowedDown
        );
        assert_eq!(by("flakiest pipeline"), RankBy::Flakiest);
        assert_eq!(by("which ones are flakey"), RankBy::Flakiest);
        assert_eq!(by("what fails the most?"), RankBy::MostFailing);
        assert_eq!(
            by("most failing pipelines last 30 days"),
            RankBy::MostFailing
        );
        assert_eq!(by("what broke most this week"), RankBy::MostFailing);
    }

    #[test]
    fn incidents_changes_and_failures() {
        assert!(matches!(
            intent("any open incidents?"),
            Intent::Incidents {
                open_only: true,
                ..
            }
        ));
        assert!(matches!(
            intent("recent incdents"),
            Intent::Incidents {
                open_only: false,
                ..
            }
        ));
        assert_eq!(
            intent("show incident #12"),
            Intent::IncidentDetail { id: 12 }
        );
        assert_eq!(intent("anomaly 7?"), Intent::IncidentDetail { id: 7 });
        assert!(matches!(
            intent("what changed since monday"),
            Intent::ChangesSince { pipeline: None, .. }
        ));
        assert_eq!(
            intent("why did payments fail?"),
            Intent::LastFailure {
                pipeline: "payments".into()
            }
        );
        assert_eq!(
            intent("last failure of search-indexer"),
            Intent::LastFailure {
                pipeline: "search-indexer".into()
            }
        );
        assert!(matches!(
            intent("what is the failure rate of payments"),
            Intent::PipelineHealth { .. }
        ));
        assert_eq!(intent("what's the weather like"), Intent::Unknown);
        assert_eq!(intent(""), Intent::Unknown);
    }

    #[test]
    fn edit_distance_bounds() {
        assert_eq!(edit_distance("helth", "health", 2), 1);
        assert_eq!(edit_distance("abc", "abc", 0), 0);
        assert!(edit_distance("payments", "search", 2) > 2);
    }
}
