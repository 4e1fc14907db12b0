//! The redaction corpus (`tests/fixtures/redaction/corpus.txt`) and the
//! behaviours a one-line case cannot show.

use super::*;

/// One failing corpus case, as the report prints it.
fn failure(n: usize, what: &str, out: &str) -> String {
    format!("line {n}: {what}: {out}")
}

/// The corpus: `redact:` lines hold a secret between `⟦` and `⟧` that must
/// disappear while the text around it stays; `keep:` lines must come out
/// unchanged. Every failing line is reported, not just the first.
#[test]
fn corpus_secrets_are_hidden_and_look_alikes_kept() {
    let corpus = include_str!("../../tests/fixtures/redaction/corpus.txt");
    let redactor = Redactor::builtin().expect("built-in patterns compile");
    let (mut secrets, mut keeps) = (0, 0);
    let mut failures = Vec::new();
    for (n, line) in corpus.lines().enumerate() {
        let n = n + 1;
        if let Some(case) = line.strip_prefix("redact: ") {
            let (before, rest) = case.split_once('⟦').expect("secret start");
            let (secret, after) = rest.split_once('⟧').expect("secret end");
            let input = format!("{before}{secret}{after}");
            let out = redactor.redact(&input);
            secrets += 1;
            if redactor.redact(&out) != out {
                failures.push(failure(n, "a second pass changed it", &out));
            }
            if out.contains(secret) {
                failures.push(failure(n, "secret survived", &out));
                continue;
            }
            if !out.contains(REDACTED) {
                failures.push(failure(n, "no marker", &out));
            }
            let tail: String = after.chars().take_while(|c| !c.is_whitespace()).collect();
            if (after.starts_with('@') || after.starts_with(' ')) && !out.contains(&tail) {
                failures.push(failure(n, "context after the secret lost", &out));
            }
            let head = before.trim_end_matches(|c: char| c.is_ascii_alphanumeric());
            if !out.starts_with(head) {
                failures.push(failure(n, "context before the secret lost", &out));
            }
        } else if let Some(case) = line.strip_prefix("keep: ") {
            keeps += 1;
            let out = redactor.redact(case);
            if out != case {
                failures.push(failure(n, "false positive", &out));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        secrets + keeps,
        failures.join("\n")
    );
    assert!(secrets >= 120, "too few secrets in the corpus: {secrets}");
    assert!(keeps >= 80, "too few look-alikes in the corpus: {keeps}");
}

#[test]
fn private_key_block_spanning_lines_is_removed_whole() {
    let text = "start\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----\nend";
    let out = Redactor::builtin()
        .expect("compiles")
        .redact(text)
        .into_owned();
    assert_eq!(out, "start\n[REDACTED:private_key]\nend");
}

#[test]
fn a_block_cut_off_at_either_end_is_still_removed() {
    let r = Redactor::builtin().expect("compiles");
    let head = "log\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA";
    assert_eq!(r.redact(head), "log\n[REDACTED:private_key]");
    let tail = "b3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\nnext";
    assert_eq!(r.redact(tail), "[REDACTED:private_key]\nnext");
}

#[test]
fn configured_patterns_apply_and_bad_ones_are_reported() {
    let r = Redactor::new(&[r"ACME-[0-9]{6}".to_string()]).expect("compiles");
    assert_eq!(
        r.redact("key ACME-123456 used"),
        "key [REDACTED:custom] used"
    );
    let err = Redactor::new(&["ok".to_string(), "(unclosed".to_string()]).unwrap_err();
    assert!(err.to_string().contains("pattern 1"), "{err}");
}

#[test]
fn text_without_secrets_is_borrowed() {
    let r = Redactor::builtin().expect("compiles");
    assert!(matches!(r.redact("all good"), Cow::Borrowed(_)));
    assert_eq!(r.count("token=abcdef123 and AKIAIOSFODNN7EXAMPLE"), 2);
}

#[test]
fn the_tally_counts_each_kind_from_the_fixed_set() {
    let r = Redactor::builtin().expect("compiles");
    let mut tally = Tally::default();
    let text = "AKIAIOSFODNN7EXAMPLE then DB_PASS=hunter2 and MYSQL_PWD=x1 and [REDACTED:evil]";
    let out = r.redact_tally(text, &mut tally);
    assert!(!out.contains("hunter2"), "{out}");
    let kinds: Vec<_> = tally.iter().collect();
    assert_eq!(kinds, [("aws_access_key_id", 1), ("password", 2)]);
    assert_eq!(tally.total(), 3);
}

#[test]
fn a_secret_inside_a_declined_match_is_still_found() {
    let r = Redactor::builtin().expect("compiles");
    // `env:` is no secret's name, but the value holds an assignment that is.
    let out = r.redact("env: DB_PASS=s3cr3t-value");
    assert_eq!(out, "env: DB_PASS=[REDACTED:password]");
}

#[test]
fn quoted_values_are_hidden_whole_and_keep_their_quotes() {
    let r = Redactor::builtin().expect("compiles");
    assert_eq!(
        r.redact(r#"password: "correct horse battery staple" # yaml"#),
        r#"password: "[REDACTED:password]" # yaml"#
    );
    assert_eq!(
        r.redact("DB_PASSWORD='a b c' ./migrate"),
        "DB_PASSWORD='[REDACTED:password]' ./migrate"
    );
}
