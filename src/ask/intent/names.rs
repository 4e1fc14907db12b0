//! Pipeline name matching: a known name written out, or its tokens matched
//! exactly, by abbreviation, by prefix or within a small edit distance.

use super::keywords::{
    edit_distance, keyword_match, Question, ABBREVIATIONS, CAUSE, CHANGE, FAIL, FLAKY, INCIDENT,
    LAST, OPEN, RANK_WORDS, RATE, RECENT, SLOW, SLOWED, STOP,
};

// ---------------------------------------------------------------- pipelines

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Named {
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

pub(super) fn match_pipeline(q: &Question, known: &[String]) -> Named {
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
