//! Keyword lists and the question tokeniser: lower-casing, splitting into
//! tokens, typo-tolerant keyword matching and edit distance.

use super::MAX_QUESTION_CHARS;

// ---------------------------------------------------------------- keywords

pub(super) const INCIDENT: &[&str] = &[
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
pub(super) const OPEN: &[&str] = &[
    "open",
    "active",
    "ongoing",
    "current",
    "currently",
    "unresolved",
    "firing",
];
pub(super) const RECENT: &[&str] = &["recent", "recently", "latest", "lately", "past", "closed"];
pub(super) const CHANGE: &[&str] = &["changed", "change", "changes", "happened", "different"];
pub(super) const FAIL: &[&str] = &[
    "fail", "fails", "failed", "failing", "failure", "failures", "broke", "broken", "breaking",
    "breaks", "red", "crashed", "errored",
];
pub(super) const CAUSE: &[&str] = &[
    "why", "cause", "caused", "reason", "broke", "what", "when", "happened",
];
pub(super) const LAST: &[&str] = &["last", "latest", "previous", "recent", "lst"];
pub(super) const RATE: &[&str] = &["rate", "often", "many", "percent", "percentage", "ratio"];
pub(super) const RANK_WORDS: &[&str] = &[
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
pub(super) const SLOWED: &[&str] = &[
    "slower",
    "slowed",
    "slowing",
    "slowdown",
    "regressed",
    "regression",
    "regressions",
];
pub(super) const SLOW: &[&str] = &["slowest", "slow", "longest", "sluggish", "slowst"];
pub(super) const FLAKY: &[&str] = &[
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
pub(super) const STOP: &[&str] = &[
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
pub(super) const ABBREVIATIONS: &[(&str, &str)] = &[
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

pub(super) struct Question {
    /// Lower-cased text with punctuation turned into spaces.
    pub(super) text: String,
    pub(super) tokens: Vec<String>,
}

impl Question {
    pub(super) fn new(raw: &str) -> Self {
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
    pub(super) fn any(&self, words: &[&str]) -> bool {
        self.tokens
            .iter()
            .any(|t| words.iter().any(|w| keyword_match(t, w)))
    }

    /// The words appear one after the other.
    pub(super) fn has_phrase(&self, words: &[&str]) -> bool {
        self.tokens
            .windows(words.len())
            .any(|w| w.iter().zip(words).all(|(a, b)| a == b))
    }
}

pub(super) fn keyword_match(token: &str, word: &str) -> bool {
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
