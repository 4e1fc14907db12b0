//! The number check of model answers: every number a model states must
//! come from what its tools returned (or from the tool arguments it chose,
//! such as the 7 of "last 7 days").
//!
//! [`claims`] reads the numbers of a text: integers, decimals, thousands
//! with commas, percentages, and the parts of dates and times (2026-11-25
//! is 2026, 11 and 25). Digits that belong to a word (`p95`, `a1b2c3d`,
//! `v2`), version-like dotted runs (`1.2.3`), ordinals (`3rd`) and list
//! markers at the start of a line (`1.`) are not claims. [`Support`] holds
//! every number found in tool results: JSON numbers, and the digit runs
//! inside strings (run ids, dates, commit hashes). A claim is supported
//! when a result rounds to it at the claim's precision (95.238 supports
//! "95.2" and "95"); a percentage is also supported by a fraction (0.952
//! supports "95.2%"). Signs are ignored ("-3.2%" and 3.2% are the same
//! claim).
//!
//! Pure computation.

use serde_json::Value;

/// One number stated in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// As written (`95.2%`, `1,204`, `480`).
    pub raw: String,
    pub value: f64,
    /// Digits after the decimal point.
    pub decimals: u32,
    /// Followed by `%` or the word "percent".
    pub percent: bool,
}

/// Units that may follow a number directly (`480s`, `7d`, `2.5x`).
const UNITS: [&str; 11] = [
    "s", "ms", "m", "min", "mins", "h", "hr", "hrs", "d", "w", "x",
];

/// Ordinal suffixes: `1st`, `2nd`, `3rd`, `4th` are ranks, not data.
const ORDINALS: [&str; 4] = ["st", "nd", "rd", "th"];

/// The numbers stated in `text`.
pub fn claims(text: &str) -> Vec<Claim> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        // Digits glued to a word (`p95`, `sha256`, `a1b2`) are not claims.
        let glued_before =
            start > 0 && (chars[start - 1].is_alphabetic() || chars[start - 1] == '_');
        let mut j = i;
        let mut int = String::new();
        while j < chars.len() && chars[j].is_ascii_digit() {
            int.push(chars[j]);
            j += 1;
        }
        // Thousands: 1,234,567 (a first group of at most three digits, then
        // exactly three digits after each comma).
        if int.len() <= 3 {
            while chars.get(j) == Some(&',')
                && chars
                    .get(j + 1..j + 4)
                    .is_some_and(|d| d.iter().all(char::is_ascii_digit))
                && !chars.get(j + 4).is_some_and(char::is_ascii_digit)
            {
                int.push(',');
                int.extend(&chars[j + 1..j + 4]);
                j += 4;
            }
        }
        let mut frac = String::new();
        if j + 1 < chars.len() && chars[j] == '.' && chars[j + 1].is_ascii_digit() {
            let mut k = j + 1;
            while k < chars.len() && chars[k].is_ascii_digit() {
                frac.push(chars[k]);
                k += 1;
            }
            j = k;
        }
        // A dotted run such as 1.2.3 is a version, not a number.
        let dotted = j + 1 < chars.len()
            && chars[j] == '.'
            && chars[j + 1].is_ascii_digit()
            && !frac.is_empty();
        if dotted {
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            i = j;
            continue;
        }
        // What follows: a unit, a percent sign, an ordinal, or a word.
        let mut k = j;
        let mut suffix = String::new();
        while k < chars.len() && (chars[k].is_alphanumeric() || chars[k] == '_') {
            suffix.push(chars[k]);
            k += 1;
        }
        let suffix_lower = suffix.to_lowercase();
        let raw_end;
        let mut percent = false;
        if suffix.is_empty() {
            raw_end = j;
            if chars.get(j) == Some(&'%') {
                percent = true;
            } else {
                let rest: String = chars[j..chars.len().min(j + 9)].iter().collect();
                let rest = rest.trim_start().to_lowercase();
                percent = rest.starts_with("percent");
            }
        } else if UNITS.contains(&suffix_lower.as_str()) {
            raw_end = j;
        } else if ORDINALS.contains(&suffix_lower.as_str()) && frac.is_empty() {
            i = k;
            continue;
        } else {
            // Glued to a word after (`3xl`, `5f2a`): part of an identifier.
            i = k;
            continue;
        }
        if glued_before {
            i = k.max(j);
            continue;
        }
        // A list marker: digits alone at the start of a line, then `.` or `)`
        // and a space.
        let line_start = chars[..start]
            .iter()
            .rev()
            .take_while(|c| **c != '\n')
            .all(|c| c.is_whitespace() || *c == '-' || *c == '*');
        let marker = frac.is_empty()
            && line_start
            && matches!(chars.get(j), Some('.') | Some(')'))
            && chars.get(j + 1).is_none_or(|c| c.is_whitespace());
        if marker {
            i = j + 1;
            continue;
        }
        let digits = int.replace(',', "");
        let number = if frac.is_empty() {
            digits.clone()
        } else {
            format!("{digits}.{frac}")
        };
        if let Ok(value) = number.parse::<f64>() {
            let mut raw: String = chars[start..raw_end].iter().collect();
            if percent && chars.get(j) == Some(&'%') {
                raw.push('%');
            }
            out.push(Claim {
                raw,
                value,
                decimals: frac.len() as u32,
                percent,
            });
        }
        i = k.max(j + 1);
    }
    out
}

/// Every number tool results contain.
#[derive(Debug, Clone, Default)]
pub struct Support {
    values: Vec<f64>,
}

impl Support {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the numbers of a JSON value: numbers, and the digit runs of
    /// strings and object keys.
    pub fn add_json(&mut self, value: &Value) {
        match value {
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    self.values.push(f.abs());
                }
            }
            Value::String(s) => self.add_text(s),
            Value::Array(items) => items.iter().for_each(|v| self.add_json(v)),
            Value::Object(map) => {
                for (k, v) in map {
                    self.add_text(k);
                    self.add_json(v);
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// Adds every number in free text, generously: digit runs anywhere,
    /// with their decimals, and the claims of [`claims`].
    pub fn add_text(&mut self, text: &str) {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if !chars[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let int: String = chars[i..j].iter().collect();
            if let Ok(v) = int.parse::<f64>() {
                self.values.push(v);
            }
            if j + 1 < chars.len() && chars[j] == '.' && chars[j + 1].is_ascii_digit() {
                let mut k = j + 1;
                while k < chars.len() && chars[k].is_ascii_digit() {
                    k += 1;
                }
                let with: String = chars[i..k].iter().collect();
                if let Ok(v) = with.parse::<f64>() {
                    self.values.push(v);
                }
            }
            i = j;
        }
        for c in claims(text) {
            self.values.push(c.value);
        }
    }

    /// Whether some result supports the claim.
    pub fn supports(&self, claim: &Claim) -> bool {
        let tolerance = 0.5 * 10f64.powi(-(claim.decimals as i32)) + 1e-9;
        let close = |v: f64| (v - claim.value).abs() <= tolerance;
        self.values
            .iter()
            .any(|v| close(*v) || (claim.percent && close(*v * 100.0)))
    }
}

/// The numbers of `text` that nothing in `support` backs, as written,
/// without repeats.
pub fn unsupported(text: &str, support: &Support) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for claim in claims(text) {
        if !support.supports(&claim) && !out.contains(&claim.raw) {
            out.push(claim.raw);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raws(text: &str) -> Vec<String> {
        claims(text).into_iter().map(|c| c.raw).collect()
    }

    #[test]
    fn numbers_are_read_with_their_precision() {
        let c = claims("success 95.2% over 1,204 runs, p95 602.5s");
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].value, c[0].decimals, c[0].percent), (95.2, 1, true));
        assert_eq!(c[0].raw, "95.2%");
        assert_eq!((c[1].value, c[1].decimals), (1204.0, 0));
        assert_eq!(c[2].value, 602.5);
        assert!(claims("12 percent")[0].percent);
    }

    #[test]
    fn identifiers_ordinals_versions_and_list_markers_are_not_claims() {
        assert_eq!(raws("p95 and p50 of a1b2c3d on v2"), Vec::<String>::new());
        assert_eq!(raws("the 3rd and 21st run"), Vec::<String>::new());
        assert_eq!(raws("upgraded to 1.2.3 today"), Vec::<String>::new());
        assert_eq!(raws("1. search-indexer 1530s\n2) payments"), ["1530"]);
        assert_eq!(raws("- 3. x"), Vec::<String>::new());
        assert_eq!(raws("took 7d, 480s, 2.5x"), ["7", "480", "2.5"]);
    }

    #[test]
    fn dates_times_and_ids_are_their_parts() {
        assert_eq!(
            raws("incident #3 opened 2026-11-25 11:30 UTC"),
            ["3", "2026", "11", "25", "11", "30"]
        );
    }

    #[test]
    fn rounding_and_percentages_are_allowed() {
        let mut s = Support::new();
        s.add_json(&json!({"success_rate": 0.952, "p95": 95.238, "change": -0.125}));
        for ok in [
            "95.2%", "95%", "95.2", "95", "95.24", "12.5%", "-12.5%", "13%",
        ] {
            assert!(unsupported(ok, &s).is_empty(), "{ok}");
        }
        for bad in ["96", "95.3", "0.96", "94%"] {
            assert_eq!(unsupported(bad, &s), [bad], "{bad}");
        }
    }

    #[test]
    fn strings_in_results_support_dates_and_ids() {
        let mut s = Support::new();
        s.add_json(
            &json!([{"run_id": "240", "finished_at": "2026-11-25T11:30:00Z",
                             "commit": "ch00237"}]),
        );
        assert!(unsupported("run 240 finished 2026-11-25 at 11:30", &s).is_empty());
        assert_eq!(unsupported("run 241 finished at 11:31", &s), ["241", "31"]);
    }

    #[test]
    fn repeats_are_named_once() {
        let s = Support::new();
        assert_eq!(unsupported("42 and 42 and 7%", &s), ["42", "7%"]);
    }
}
