//! Bounded log excerpts: what of a whole job log is kept with a run (the
//! lines around errors and the tail, within a byte budget), and the one
//! line that best says what went wrong. Pure; used by the evidence fetches
//! and by the rule-based planner.

/// Words that mark a line as an error (compared in lower case).
const ERROR_MARKERS: [&str; 14] = [
    "error",
    "fatal",
    "failed",
    "failure",
    "exception",
    "panicked",
    "traceback",
    "timed out",
    "timeout",
    "killed",
    "denied",
    "not found",
    "exit status",
    "exit code",
];

/// Lines kept before and after each error line.
const CONTEXT_LINES: usize = 2;

/// Longest line kept; longer lines keep their head and a `…`.
const MAX_LINE_CHARS: usize = 400;

/// Between the parts of an excerpt that are not next to each other in the log.
const GAP: &str = "[…]";

fn is_error_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ERROR_MARKERS.iter().any(|m| lower.contains(m))
}

/// How strongly a line says what failed: the number of distinct markers it
/// holds, with lines that say "error" or "fatal" at their start first.
fn error_weight(line: &str) -> usize {
    let lower = line.trim_start().to_ascii_lowercase();
    let markers = ERROR_MARKERS.iter().filter(|m| lower.contains(*m)).count();
    let leading = ["error", "fatal", "e   ", "failed"]
        .iter()
        .any(|p| lower.starts_with(p));
    markers + usize::from(leading) * 2
}

fn clip(line: &str) -> String {
    crate::domain::truncate(line.trim_end(), MAX_LINE_CHARS)
}

/// At most `max_bytes` of `log`: the lines around the first error lines
/// (with [`CONTEXT_LINES`] of context) and as much of the tail as fits,
/// in log order, with `[…]` where lines were left out. A log that fits is
/// returned whole. Never splits a character.
pub fn bounded_excerpt(log: &str, max_bytes: usize) -> String {
    if log.len() <= max_bytes {
        return log.trim_end().to_string();
    }
    let lines: Vec<&str> = log.lines().collect();
    let mut keep = vec![false; lines.len()];
    let mut used = 0usize;
    // Half the budget for the error lines and their context, first come
    // first served; the rest (and what they left) for the tail.
    let error_budget = max_bytes / 2;
    for (i, line) in lines.iter().enumerate() {
        if !is_error_line(line) {
            continue;
        }
        let from = i.saturating_sub(CONTEXT_LINES);
        let to = (i + CONTEXT_LINES + 1).min(lines.len());
        let cost: usize = (from..to)
            .filter(|j| !keep[*j])
            .map(|j| clip(lines[j]).len() + 1)
            .sum();
        if used + cost > error_budget {
            break;
        }
        used += cost;
        keep[from..to].iter_mut().for_each(|k| *k = true);
    }
    for j in (0..lines.len()).rev() {
        if keep[j] {
            continue;
        }
        let cost = clip(lines[j]).len() + 1 + GAP.len() + 1;
        if used + cost > max_bytes {
            break;
        }
        used += clip(lines[j]).len() + 1;
        keep[j] = true;
    }
    let mut out = String::with_capacity(max_bytes);
    let mut gap = false;
    for (j, line) in lines.iter().enumerate() {
        if keep[j] {
            if gap {
                out.push_str(GAP);
                out.push('\n');
            }
            gap = false;
            out.push_str(&clip(line));
            out.push('\n');
        } else {
            gap = true;
        }
    }
    if gap {
        out.push_str(GAP);
    }
    // The gap markers are not in the budget's arithmetic above for every
    // case; cut from the front, where the least useful lines are.
    while out.len() > max_bytes {
        match out.find('\n') {
            Some(cut) => {
                out.drain(..=cut);
            }
            None => {
                let mut cut = out.len() - max_bytes;
                while !out.is_char_boundary(cut) {
                    cut += 1;
                }
                out.drain(..cut);
            }
        }
    }
    out.trim_end().to_string()
}

/// The line of `text` that best says what failed: the error line with the
/// most markers, the last one on a tie (closest to where the job stopped);
/// `None` when no line looks like an error. Trimmed, at most 400 characters.
pub fn most_relevant_line(text: &str) -> Option<String> {
    text.lines()
        .filter(|l| is_error_line(l) && l.trim() != GAP)
        .enumerate()
        .max_by_key(|(i, l)| (error_weight(l), *i))
        .map(|(_, l)| clip(l.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_log_is_kept_whole() {
        assert_eq!(bounded_excerpt("a\nb\n", 100), "a\nb");
    }

    #[test]
    fn a_long_log_keeps_its_errors_and_tail_within_the_budget() {
        let mut log = String::new();
        for i in 0..5000 {
            log.push_str(&format!("step {i}: compiling module number {i}\n"));
            if i == 1200 {
                log.push_str("ERROR: cannot resolve dependency left-pad@9.9.9\n");
            }
        }
        log.push_str("Phase complete: BUILD State: FAILED\n");
        let excerpt = bounded_excerpt(&log, 4096);
        assert!(excerpt.len() <= 4096, "{}", excerpt.len());
        assert!(excerpt.contains("ERROR: cannot resolve dependency left-pad@9.9.9"));
        assert!(excerpt.contains("step 1199:"), "context before the error");
        assert!(excerpt.ends_with("Phase complete: BUILD State: FAILED"));
        assert!(excerpt.contains(GAP));
        assert!(!excerpt.contains("step 3000:"), "the middle is left out");
    }

    #[test]
    fn multibyte_text_and_one_huge_line_stay_within_the_budget() {
        let log = "é".repeat(10_000);
        let excerpt = bounded_excerpt(&log, 1000);
        assert!(excerpt.len() <= 1000);
        let many = "ü error ü\n".repeat(2000);
        let excerpt = bounded_excerpt(&many, 777);
        assert!(excerpt.len() <= 777 && !excerpt.is_empty());
    }

    #[test]
    fn the_most_relevant_line_is_the_strongest_error_and_the_latest_on_a_tie() {
        let log = "Running tests\nwarning: deprecated\nFAILED tests/test_cart.py::test_total - AssertionError\nerror: 3 tests failed, exit code 1\ndone";
        assert_eq!(
            most_relevant_line(log).as_deref(),
            Some("error: 3 tests failed, exit code 1")
        );
        assert_eq!(most_relevant_line("all good\nok"), None);
    }
}
