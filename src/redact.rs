//! Secret redaction for everything that leaves pipemedic for a model: log
//! excerpts, URLs, the rendered prompt.
//!
//! Built-in patterns cover AWS access key ids and secret keys, GitHub,
//! Slack and Discord tokens, bearer and basic credentials, passwords in
//! URLs, private-key blocks, JWTs and `password=`-style assignments; the
//! configuration adds its own patterns. Redaction errs on the side of
//! hiding: a false positive costs a little context, a miss leaks a secret.
//! This module only rewrites text; it never logs or stores what it hides.

use std::borrow::Cow;

use regex::{Captures, Regex, RegexBuilder};

/// What a redacted secret is replaced with (followed by `:<kind>]`).
pub const REDACTED: &str = "[REDACTED";

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error(
        "redaction pattern {index} (`{pattern}`) is not a valid regular expression: {message}"
    )]
    Pattern {
        index: usize,
        pattern: String,
        message: String,
    },
}

/// How a pattern's match is replaced.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// Replace the whole match.
    Nothing,
    /// Keep capture group 1 (a prefix such as `Bearer ` or `user:`) and the
    /// group named `after` (a suffix such as the `@` of a URL), replace the
    /// rest of the match.
    Prefix,
    /// Like `Prefix`, but only when the rest looks like a token (has a digit
    /// or is at least 20 characters), so "bearer authentication" stays.
    PrefixIfTokenLike,
}

#[derive(Debug, Clone)]
struct Rule {
    kind: &'static str,
    re: Regex,
    keep: Keep,
}

/// Built-in patterns, most specific first (a private-key block before the
/// generic ones that could cut it in pieces).
const BUILTIN: [(&str, &str, Keep); 17] = [
    (
        "private_key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?s:.*?)(-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
        Keep::Nothing,
    ),
    (
        "private_key",
        // The tail of a block whose BEGIN line was cut off.
        r"\A(?s:.*?)-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----",
        Keep::Nothing,
    ),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        Keep::Nothing,
    ),
    (
        "aws_access_key_id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b",
        Keep::Nothing,
    ),
    (
        "aws_secret_access_key",
        r#"(?i)((?:aws_?)?secret_?access_?key["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{40}"#,
        Keep::Prefix,
    ),
    (
        "github_token",
        r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b",
        Keep::Nothing,
    ),
    (
        "github_token",
        r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
        Keep::Nothing,
    ),
    (
        "slack_token",
        r"\bxox[abposre]-[A-Za-z0-9-]{10,}",
        Keep::Nothing,
    ),
    ("slack_token", r"\bxapp-\d-[A-Za-z0-9-]{10,}", Keep::Nothing),
    (
        "slack_webhook",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]+",
        Keep::Nothing,
    ),
    (
        "discord_webhook",
        r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/(?:v\d+/)?webhooks/\d+/[A-Za-z0-9_-]+",
        Keep::Nothing,
    ),
    (
        "discord_token",
        r"\b[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}\b",
        Keep::Nothing,
    ),
    (
        "bearer_token",
        r"(?i)(\bbearer\s+|\bauthorization:\s*token\s+)[A-Za-z0-9\-._~+/]{8,}=*",
        Keep::PrefixIfTokenLike,
    ),
    (
        "basic_auth",
        r"(?i)(\bauthorization:\s*basic\s+)[A-Za-z0-9+/]{8,}=*",
        Keep::Prefix,
    ),
    (
        "url_password",
        r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?P<after>@)",
        Keep::Prefix,
    ),
    (
        "password",
        r#"(?i)((?:password|passwd|secret|token|api[_-]?key|access[_-]?token|auth[_-]?token|private[_-]?token)["']?\s*[:=]\s*["']?)[^\s"',;\[][^\s"',;]{3,}"#,
        Keep::Prefix,
    ),
    (
        "password",
        r"(?im)((?:^|\s)--?(?:password|passwd|secret|token|api-key|access-token)(?:=|\s+))[^\s\[-]\S*",
        Keep::Prefix,
    ),
];

/// Rewrites secrets in text to `[REDACTED:<kind>]`.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// A bare 40-character AWS secret key candidate; confirmed by
    /// [`looks_like_aws_secret`].
    bare_secret: Regex,
}

impl Redactor {
    /// The built-in patterns plus `extra` (regular expressions from the
    /// configuration; each whole match is replaced).
    pub fn new(extra: &[String]) -> Result<Self, RedactError> {
        let mut rules = Vec::new();
        for (kind, pattern, keep) in BUILTIN {
            rules.push(Rule {
                kind,
                re: compile(pattern).map_err(|message| RedactError::Pattern {
                    index: 0,
                    pattern: pattern.to_string(),
                    message,
                })?,
                keep,
            });
        }
        for (index, pattern) in extra.iter().enumerate() {
            rules.push(Rule {
                kind: "custom",
                re: compile(pattern).map_err(|message| RedactError::Pattern {
                    index,
                    pattern: pattern.clone(),
                    message,
                })?,
                keep: Keep::Nothing,
            });
        }
        let bare_secret =
            compile(r"[A-Za-z0-9/+]{40,}").map_err(|message| RedactError::Pattern {
                index: 0,
                pattern: "bare secret".to_string(),
                message,
            })?;
        Ok(Self { rules, bare_secret })
    }

    /// Only the built-in patterns.
    pub fn builtin() -> Result<Self, RedactError> {
        Self::new(&[])
    }

    /// `text` with every secret replaced; borrowed when nothing matched.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out: Cow<'t, str> = Cow::Borrowed(text);
        for rule in &self.rules {
            if !rule.re.is_match(&out) {
                continue;
            }
            let replaced = rule
                .re
                .replace_all(&out, |caps: &Captures<'_>| match rule.keep {
                    Keep::Nothing => format!("{REDACTED}:{}]", rule.kind),
                    Keep::Prefix => format!(
                        "{}{REDACTED}:{}]{}",
                        caps.get(1).map_or("", |m| m.as_str()),
                        rule.kind,
                        caps.name("after").map_or("", |m| m.as_str()),
                    ),
                    Keep::PrefixIfTokenLike => {
                        let all = caps.get(0).map_or("", |m| m.as_str());
                        let prefix = caps.get(1).map_or("", |m| m.as_str());
                        let rest = &all[prefix.len()..];
                        if rest.len() >= 20 || rest.bytes().any(|b| b.is_ascii_digit()) {
                            format!("{prefix}{REDACTED}:{}]", rule.kind)
                        } else {
                            all.to_string()
                        }
                    }
                })
                .into_owned();
            out = Cow::Owned(replaced);
        }
        if self.bare_secret.is_match(&out) {
            let replaced = self
                .bare_secret
                .replace_all(&out, |caps: &Captures<'_>| {
                    let m = caps.get(0).map_or("", |m| m.as_str());
                    if looks_like_aws_secret(m) {
                        format!("{REDACTED}:aws_secret_access_key]")
                    } else {
                        m.to_string()
                    }
                })
                .into_owned();
            if replaced != *out {
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// How many secrets `redact` would hide in `text` (for reporting).
    pub fn count(&self, text: &str) -> usize {
        self.redact(text).matches(REDACTED).count()
    }
}

fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| {
            e.to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
}

/// A token of exactly 40 base64 characters with upper case, lower case and
/// a digit: the shape of an AWS secret access key. Git hashes (lower-case
/// hex) and words do not qualify.
fn looks_like_aws_secret(token: &str) -> bool {
    token.len() == 40
        && token.bytes().any(|b| b.is_ascii_uppercase())
        && token.bytes().any(|b| b.is_ascii_lowercase())
        && token.bytes().any(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The corpus: `redact:` lines hold a secret between `⟦` and `⟧` that
    /// must disappear while the rest of the line stays; `keep:` lines must
    /// come out unchanged.
    #[test]
    fn corpus_secrets_are_hidden_and_ordinary_lines_kept() {
        let corpus = include_str!("../tests/fixtures/redaction/corpus.txt");
        let redactor = Redactor::builtin().expect("built-in patterns compile");
        let mut checked = 0;
        for (n, line) in corpus.lines().enumerate() {
            let n = n + 1;
            if let Some(case) = line.strip_prefix("redact: ") {
                let (before, rest) = case.split_once('⟦').expect("secret start");
                let (secret, after) = rest.split_once('⟧').expect("secret end");
                let input = format!("{before}{secret}{after}");
                let out = redactor.redact(&input);
                assert!(!out.contains(secret), "line {n}: secret survived: {out}");
                assert!(out.contains(REDACTED), "line {n}: no marker: {out}");
                let tail: String = after.chars().take_while(|c| !c.is_whitespace()).collect();
                if after.starts_with('@') || after.starts_with(' ') {
                    assert!(
                        out.contains(&tail),
                        "line {n}: context after the secret lost: {out}"
                    );
                }
                assert!(
                    out.starts_with(before.trim_end_matches(|c: char| c.is_ascii_alphanumeric())),
                    "line {n}: context before the secret lost: {out}"
                );
                checked += 1;
            } else if let Some(case) = line.strip_prefix("keep: ") {
                assert_eq!(redactor.redact(case), case, "line {n}: false positive");
                checked += 1;
            }
        }
        assert!(checked >= 40, "corpus too small: {checked}");
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
}
