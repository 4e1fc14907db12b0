//! A strict reader of the Prometheus text exposition format (version
//! 0.0.4), the format `/metrics` serves. It checks what a scraper relies on:
//! every family has one `# HELP` and one `# TYPE` before its samples, every
//! sample belongs to the family just declared (a counter's own name; a
//! histogram's `_bucket`, `_sum` and `_count`), a family is declared once,
//! names and labels are well formed, no series appears twice, and a
//! histogram's buckets are cumulative up to a `+Inf` bucket equal to its
//! count.
//!
//! It reads text; it never changes metrics. [`super::Metrics::counter`]
//! uses it to read one value back, and the tests use it to check the whole
//! exposition.

use std::collections::{BTreeMap, BTreeSet};

/// The type a family declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl Kind {
    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" => Self::Untyped,
            _ => return None,
        })
    }

    /// The sample names a family of this kind may have.
    fn admits(self, family: &str, sample: &str) -> bool {
        let Some(suffix) = sample.strip_prefix(family) else {
            return false;
        };
        match self {
            Self::Counter | Self::Gauge | Self::Untyped => suffix.is_empty(),
            Self::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count"),
            Self::Summary => matches!(suffix, "" | "_sum" | "_count"),
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One declared family with its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// Why a text is not a valid exposition, and on which line (1-based; 0
/// when the problem is with a whole family, as a histogram's buckets).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ExpositionError {
    pub line: usize,
    pub problem: String,
}

fn fail<T>(line: usize, problem: impl Into<String>) -> Result<T, ExpositionError> {
    Err(ExpositionError {
        line,
        problem: problem.into(),
    })
}

/// Reads a whole exposition, checking it as the module header says.
pub fn parse(text: &str) -> Result<Vec<Family>, ExpositionError> {
    let mut families: Vec<Family> = Vec::new();
    let mut declared: BTreeSet<String> = BTreeSet::new();
    // A family whose HELP was read and whose TYPE is awaited.
    let mut pending_help: Option<(String, String)> = None;
    let mut last_line = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        last_line = n;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            check_metric_name(n, name)?;
            if let Some((open, _)) = &pending_help {
                return fail(n, format!("family {open} has HELP but no TYPE"));
            }
            if declared.contains(name) {
                return fail(n, format!("family {name} is declared twice"));
            }
            pending_help = Some((name.to_string(), unescape_help(help)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let Some((help_name, help)) = pending_help.take() else {
                return fail(n, format!("TYPE of {name} without a HELP before it"));
            };
            if help_name != name {
                return fail(n, format!("TYPE of {name} follows the HELP of {help_name}"));
            }
            let Some(kind) = Kind::parse(kind) else {
                return fail(n, format!("unknown type {kind:?}"));
            };
            declared.insert(name.to_string());
            families.push(Family {
                name: name.to_string(),
                help,
                kind,
                samples: Vec::new(),
            });
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some((open, _)) = &pending_help {
            return fail(n, format!("family {open} has HELP but no TYPE"));
        }
        let sample = parse_sample(n, line)?;
        let Some(family) = families.last_mut() else {
            return fail(n, format!("sample {} before any family", sample.name));
        };
        if !family.kind.admits(&family.name, &sample.name) {
            return fail(
                n,
                format!(
                    "sample {} does not belong to family {}, the one declared last",
                    sample.name, family.name
                ),
            );
        }
        if family.kind == Kind::Histogram
            && sample.name.ends_with("_bucket")
            && sample.label("le").is_none()
        {
            return fail(n, format!("histogram bucket {} without le", sample.name));
        }
        if family
            .samples
            .iter()
            .any(|s| s.name == sample.name && s.labels == sample.labels)
        {
            return fail(n, format!("series {} appears twice", sample.name));
        }
        family.samples.push(sample);
    }
    if let Some((open, _)) = pending_help {
        return fail(last_line, format!("family {open} has HELP but no TYPE"));
    }
    for family in &families {
        if family.kind == Kind::Histogram {
            check_histogram(family)?;
        }
    }
    Ok(families)
}

/// A histogram series: its labels other than `le`.
type SeriesKey = Vec<(String, String)>;

/// Buckets cumulative, ending in `+Inf`, which equals `_count`, per series.
fn check_histogram(family: &Family) -> Result<(), ExpositionError> {
    let problem = |p: String| fail(0, format!("histogram {}: {p}", family.name));
    let series_key = |s: &Sample| -> SeriesKey {
        s.labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect()
    };
    let mut buckets: BTreeMap<SeriesKey, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<SeriesKey, f64> = BTreeMap::new();
    for s in &family.samples {
        if s.name.ends_with("_bucket") {
            let le = s.label("le").unwrap_or_default();
            let Some(bound) = parse_value(le) else {
                return problem(format!("bucket bound {le:?} is not a number"));
            };
            buckets
                .entry(series_key(s))
                .or_default()
                .push((bound, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(series_key(s), s.value);
        }
    }
    for (key, mut series) in buckets {
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        if series.windows(2).any(|w| w[1].1 < w[0].1) {
            return problem(format!("buckets of {key:?} are not cumulative"));
        }
        let Some(&(last_bound, last_value)) = series.last() else {
            continue;
        };
        if last_bound != f64::INFINITY {
            return problem(format!("series {key:?} has no +Inf bucket"));
        }
        if counts.get(&key) != Some(&last_value) {
            return problem(format!("series {key:?}: +Inf bucket differs from _count"));
        }
    }
    Ok(())
}

fn check_metric_name(line: usize, name: &str) -> Result<(), ExpositionError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        fail(line, format!("bad metric name {name:?}"))
    }
}

fn check_label_name(line: usize, name: &str) -> Result<(), ExpositionError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        fail(line, format!("bad label name {name:?}"))
    }
}

fn parse_value(raw: &str) -> Option<f64> {
    match raw {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

fn unescape_help(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `name{k="v",...} value [timestamp]`
fn parse_sample(line: usize, text: &str) -> Result<Sample, ExpositionError> {
    let name_end = text.find(['{', ' ']).unwrap_or(text.len());
    let name = &text[..name_end];
    check_metric_name(line, name)?;
    let mut rest = &text[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut seen = BTreeSet::new();
        loop {
            // A label name up to '=', or the closing brace.
            let Some(&(start, c)) = chars.peek() else {
                return fail(line, "unclosed label set");
            };
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let Some(eq) = eq else {
                return fail(line, "label without '='");
            };
            let key = &body[start..eq];
            check_label_name(line, key)?;
            if !seen.insert(key.to_string()) {
                return fail(line, format!("label {key} twice"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return fail(line, format!("value of label {key} is not quoted"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return fail(line, format!("bad escape {other:?} in label {key}")),
                    },
                    '\n' => return fail(line, "newline inside a label value"),
                    c => value.push(c),
                }
            }
            if !closed {
                return fail(line, format!("unterminated value of label {key}"));
            }
            labels.push((key.to_string(), value));
            match chars.peek().map(|&(_, c)| c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => return fail(line, "expected ',' or '}' after a label"),
            }
        }
    }
    let mut parts = rest.split_whitespace();
    let Some(raw_value) = parts.next() else {
        return fail(line, format!("sample {name} without a value"));
    };
    let Some(value) = parse_value(raw_value) else {
        return fail(
            line,
            format!("value {raw_value:?} of {name} is not a number"),
        );
    };
    if let Some(ts) = parts.next() {
        if ts.parse::<i64>().is_err() {
            return fail(
                line,
                format!("timestamp {ts:?} of {name} is not an integer"),
            );
        }
    }
    if parts.next().is_some() {
        return fail(line, format!("trailing text after the sample {name}"));
    }
    if !rest.starts_with(' ') {
        return fail(line, format!("no space before the value of {name}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# HELP a_total Things.
# TYPE a_total counter
a_total{k=\"x\\\"y\",j=\"1\"} 3
a_total 1
# HELP h Latency.
# TYPE h histogram
h_bucket{r=\"/\",le=\"0.1\"} 1
h_bucket{r=\"/\",le=\"+Inf\"} 2
h_sum{r=\"/\"} 0.3
h_count{r=\"/\"} 2
# HELP g A gauge with no samples.
# TYPE g gauge
";

    #[test]
    fn reads_a_valid_exposition() {
        let families = parse(GOOD).unwrap();
        assert_eq!(families.len(), 3);
        assert_eq!(families[0].kind, Kind::Counter);
        assert_eq!(families[0].samples[0].label("k"), Some("x\"y"));
        assert_eq!(families[0].samples[0].value, 3.0);
        assert_eq!(families[1].samples.len(), 4);
        assert!(families[2].samples.is_empty());
    }

    fn problem(text: &str) -> String {
        parse(text).unwrap_err().problem
    }

    #[test]
    fn refuses_what_a_scraper_would_refuse() {
        assert!(problem("a 1\n").contains("before any family"));
        assert!(problem("# TYPE a counter\na 1\n").contains("without a HELP"));
        assert!(problem("# HELP a x\na 1\n").contains("HELP but no TYPE"));
        assert!(
            problem("# HELP a x\n# TYPE a gauge\n# HELP a x\n# TYPE a gauge\n")
                .contains("declared twice")
        );
        assert!(problem("# HELP a x\n# TYPE a gauge\nb 1\n").contains("does not belong"));
        assert!(problem("# HELP a x\n# TYPE a gauge\na 1\na 2\n").contains("appears twice"));
        assert!(problem("# HELP a x\n# TYPE a gauge\na{1k=\"v\"} 1\n").contains("bad label"));
        assert!(problem("# HELP a x\n# TYPE a gauge\na{k=v} 1\n").contains("not quoted"));
        assert!(problem("# HELP a x\n# TYPE a gauge\na{k=\"v} 1\n").contains("unterminated"));
        assert!(problem("# HELP a x\n# TYPE a gauge\na one\n").contains("not a number"));
        assert!(problem("# HELP a x\n# TYPE a wobble\n").contains("unknown type"));
        let not_cumulative = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n\
             h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
        assert!(problem(not_cumulative).contains("not cumulative"));
        let count_differs = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\n\
             h_sum 1\nh_count 3\n";
        assert!(problem(count_differs).contains("differs from _count"));
    }
}
