//! Reading RFC 3339 timestamps quickly: the one shape CI systems and
//! exports write (`2026-09-08T17:00:13.872339660Z`, or with a `+02:00`
//! offset) is read by hand; anything else goes to chrono's parser, so the
//! accepted strings, the instants and the errors are exactly chrono's.
//! A backfill reads ten timestamps per run, twice; chrono's general
//! format parser was the largest part of reading a run.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, Utc};

/// The instant `s` names, as chrono's `DateTime<FixedOffset>` parser reads
/// it (the serde form of `DateTime<Utc>`).
pub fn parse(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_plain(s.as_bytes()) {
        Some(t) => Ok(t),
        None => s
            .parse::<DateTime<FixedOffset>>()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS`, an optional fraction of 1–9 digits, then `Z` or
/// `±HH:MM`, nothing around it, a real date and a second below 60; `None`
/// for anything else (left to chrono).
fn parse_plain(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let (month, day) = (digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some((b'.', fraction)) = rest.split_first() {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(&fraction[..n])? * 10u32.pow(9 - n as u32);
        rest = &fraction[n..];
    }
    let offset_minutes: i64 = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = i64::from(h * 60 + m);
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    if second > 59 {
        return None;
    }
    let local = NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)?;
    Some((local - TimeDelta::minutes(offset_minutes)).and_utc())
}

/// The number the ASCII digits spell; `None` if one is not a digit.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// `deserialize_with` for `Option<DateTime<Utc>>` fields: what the derived
/// form reads (a string, or null for none), through [`parse`].
pub fn deserialize_option<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Instant(DateTime<Utc>);

    impl<'de> serde::Deserialize<'de> for Instant {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(Visitor)
        }
    }

    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = Instant;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            // chrono's words, so that errors read as before.
            f.write_str("an RFC 3339 formatted date and time string")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Instant, E> {
            parse(v).map(Instant).map_err(E::custom)
        }
    }

    let value: Option<Instant> = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.map(|i| i.0))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn chrono(s: &str) -> Result<DateTime<Utc>, String> {
        s.parse::<DateTime<FixedOffset>>()
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| e.to_string())
    }

    fn ours(s: &str) -> Result<DateTime<Utc>, String> {
        parse(s).map_err(|e| e.to_string())
    }

    #[test]
    fn the_plain_shape_is_read_by_hand_and_as_chrono_reads_it() {
        for s in [
            "2026-09-08T17:00:13.872339660Z",
            "2026-09-08T17:00:13Z",
            "2026-09-08T17:00:13.5Z",
            "2024-02-29T23:59:59.999999999+23:59",
            "2026-01-01T00:00:00-05:30",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59Z",
        ] {
            assert!(parse_plain(s.as_bytes()).is_some(), "{s}");
            assert_eq!(ours(s), chrono(s), "{s}");
        }
    }

    #[test]
    fn other_shapes_and_bad_values_are_chrono_s_to_judge() {
        for s in [
            "2026-09-08t17:00:13z",
            "2026-09-08 17:00:13Z",
            "2026-09-08T17:00:13UTC",
            "2026-09-08T17:00:13+0200",
            "2026-09-08T17:00:13.1234567891Z",
            "2026-09-08T17:00:60Z",
            "2026-12-31T23:59:60.5Z",
            "2026-02-30T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-09-08T24:00:00Z",
            "2026-09-08T17:00:13+24:00",
            "2026-09-08T17:00:13+05:60",
            "2026-09-08T17:00:13.Z",
            "2026-09-08T17:00:13Z ",
            "2026-09-08T17:00:13",
            "+2026-09-08T17:00:13Z",
            "20260-09-08T17:00:13Z",
            "2026-09-08T1a:00:13Z",
            "",
            "not a time",
        ] {
            assert!(parse_plain(s.as_bytes()).is_none(), "{s}");
            assert_eq!(ours(s), chrono(s), "{s}");
        }
    }

    #[test]
    fn a_run_reads_its_times_as_before() {
        let line = r#"{"pipeline":"p","run_id":"1","status":"succeeded",
            "started_at":"2026-09-08T17:00:13.872339660Z","finished_at":"2026-09-08 19:00:13+02:00",
            "stages":[{"name":"Build","status":"succeeded","started_at":"2026-09-08T17:00:14Z","finished_at":null}]}"#;
        let run: crate::domain::Run = serde_json::from_str(line).unwrap();
        assert_eq!(
            run.started_at,
            Some(chrono("2026-09-08T17:00:13.872339660Z").unwrap())
        );
        assert_eq!(
            run.finished_at,
            Some(chrono("2026-09-08T17:00:13Z").unwrap())
        );
        assert_eq!(run.stages[0].finished_at, None);
        let bad = line.replace("2026-09-08T17:00:14Z", "2026-02-30T00:00:00Z");
        let err = serde_json::from_str::<crate::domain::Run>(&bad).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        let bad = line.replace("\"2026-09-08T17:00:14Z\"", "5");
        let err = serde_json::from_str::<crate::domain::Run>(&bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected an RFC 3339 formatted date and time string"),
            "{err}"
        );
    }

    proptest! {
        /// Strings near the plain shape, digits and separators varied.
        #[test]
        fn any_string_near_the_shape_reads_as_chrono_reads_it(
            year in 0u32..10_000, month in 0u32..14, day in 0u32..33,
            hour in 0u32..26, minute in 0u32..62, second in 0u32..62,
            fraction in proptest::option::of("[0-9]{0,11}"),
            offset in prop_oneof![
                Just("Z".to_string()), Just("z".to_string()), Just("".to_string()),
                (0u32..26, 0u32..62, any::<bool>()).prop_map(|(h, m, neg)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
            ],
            separator in prop_oneof![Just('T'), Just('t'), Just(' ')],
        ) {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let s = format!("{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}{fraction}{offset}");
            prop_assert_eq!(ours(&s), chrono(&s), "{}", s);
        }

        /// Any short string at all.
        #[test]
        fn any_string_at_all_reads_as_chrono_reads_it(s in "[0-9TZ:+. -]{0,32}") {
            prop_assert_eq!(ours(&s), chrono(&s), "{}", s);
        }
    }
}
