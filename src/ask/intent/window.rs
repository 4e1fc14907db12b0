//! Time windows: reading phrases such as "this week", "since Monday",
//! "since 2026-11-01" or "last 30 days" into a [`Window`].

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};

use super::keywords::{keyword_match, Question};
use super::Window;

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

pub(super) fn parse_window(tokens: &[String], now: DateTime<Utc>) -> Option<Window> {
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
