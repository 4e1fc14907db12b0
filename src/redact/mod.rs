//! Secret redaction of every free text that comes from CI (log excerpts,
//! commit messages, stage and job names, URLs) before it is stored, and
//! again of everything that leaves pipemedic for a model.
//!
//! Built-in patterns cover private-key blocks, JWTs, vendor tokens (AWS,
//! GitHub, GitLab, npm, PyPI, Docker Hub, Stripe, Google, Slack, Discord,
//! SendGrid, Vault, OpenAI-style `sk-`), Azure storage keys,
//! `Authorization:` and `Cookie:`/`Set-Cookie:` values, passwords and
//! secret query values in URLs ([`mask_url`]), secret-named assignments
//! (`DB_PASS=`, `MYSQL_PWD=`, `password: "..."`, `"client_secret": "..."`),
//! bare AWS secret keys, and long random-looking strings right after a
//! credential word. Commit SHAs, UUIDs, run ids, timestamps and numbers
//! are not secrets and stay. The configuration adds its own patterns.
//! Redaction errs on the side of hiding: a false positive costs a little
//! context, a miss leaks a secret. This module only rewrites text; it
//! never logs or stores what it hides.

mod patterns;
#[cfg(test)]
mod tests;
mod url;

use std::borrow::Cow;
use std::collections::BTreeMap;

use regex::{Captures, Regex, RegexBuilder};

use patterns::Keep;
pub use url::{is_secret_param, mask_url};

/// What a redacted secret is replaced with (followed by `:<kind>]`).
pub const REDACTED: &str = "[REDACTED";

/// The kind of every pattern from the configuration.
pub const CUSTOM_KIND: &str = "custom";

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

/// How many secrets of each kind redaction hid. The kinds come from a fixed
/// set (the built-in patterns' names and [`CUSTOM_KIND`]), never from the
/// text, so they are safe as metric labels.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally(BTreeMap<&'static str, u64>);

impl Tally {
    fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }

    /// Each kind with its count.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(k, n)| (*k, *n))
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Rule {
    kind: &'static str,
    re: Regex,
    keep: Keep,
}

/// Rewrites secrets in text to `[REDACTED:<kind>]`.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// A URL in free text (its credentials found by [`url::secret_spans`])
    /// and a run of base64 characters that may hold a bare AWS secret key
    /// ([`patterns::aws_secret_spans`]); `None` when the patterns did not
    /// compile and every text is hidden whole.
    scanners: Option<(Regex, Regex)>,
}

impl Redactor {
    /// The built-in patterns plus `extra` (regular expressions from the
    /// configuration; each whole match is replaced).
    pub fn new(extra: &[String]) -> Result<Self, RedactError> {
        let builtin_error = |pattern: &str, message| RedactError::Pattern {
            index: 0,
            pattern: pattern.to_string(),
            message,
        };
        let mut rules = Vec::new();
        for (kind, pattern, keep) in patterns::builtin() {
            rules.push(Rule {
                kind,
                re: compile(&pattern).map_err(|m| builtin_error(&pattern, m))?,
                keep,
            });
        }
        for (index, pattern) in extra.iter().enumerate() {
            rules.push(Rule {
                kind: CUSTOM_KIND,
                re: compile(pattern).map_err(|message| RedactError::Pattern {
                    index,
                    pattern: pattern.clone(),
                    message,
                })?,
                keep: Keep::Nothing,
            });
        }
        const URL: &str = r#"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>`]+"#;
        const BARE: &str = r"[A-Za-z0-9/+]{40,}";
        let url = compile(URL).map_err(|m| builtin_error(URL, m))?;
        let bare = compile(BARE).map_err(|m| builtin_error(BARE, m))?;
        Ok(Self {
            rules,
            scanners: Some((url, bare)),
        })
    }

    /// Only the built-in patterns.
    pub fn builtin() -> Result<Self, RedactError> {
        Self::new(&[])
    }

    /// The built-in patterns; should they ever fail to compile, a redactor
    /// that hides every non-empty text whole (fail closed).
    pub fn builtin_or_hide_all() -> Self {
        Self::builtin().unwrap_or_else(|e| {
            tracing::error!(error = %e, "Built-in redaction patterns do not compile; hiding all CI text.");
            Self {
                rules: Vec::new(),
                scanners: None,
            }
        })
    }

    /// `text` with every secret replaced; borrowed when nothing matched.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.redact_tally(text, &mut Tally::default())
    }

    /// Like [`Redactor::redact`], counting what was hidden into `tally`.
    pub fn redact_tally<'t>(&self, text: &'t str, tally: &mut Tally) -> Cow<'t, str> {
        let Some((url, bare)) = &self.scanners else {
            if text.is_empty() {
                return Cow::Borrowed(text);
            }
            tally.add("unavailable");
            return Cow::Owned(format!("{REDACTED}:unavailable]"));
        };
        let mut out: Cow<'t, str> = Cow::Borrowed(text);
        if let Some(masked) = mask_urls(url, &out, tally) {
            out = Cow::Owned(masked);
        }
        for rule in &self.rules {
            if let Some(replaced) = apply(rule, &out, tally) {
                out = Cow::Owned(replaced);
            }
        }
        if let Some(replaced) = bare_aws_secrets(bare, &out, tally) {
            out = Cow::Owned(replaced);
        }
        out
    }

    /// How many secrets `redact` would hide in `text` (for reporting).
    pub fn count(&self, text: &str) -> usize {
        let mut tally = Tally::default();
        self.redact_tally(text, &mut tally);
        usize::try_from(tally.total()).unwrap_or(usize::MAX)
    }
}

fn mask_urls(re: &Regex, text: &str, tally: &mut Tally) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let mut spans = Vec::new();
    for m in re.find_iter(text) {
        for (span, kind) in url::secret_spans(m.as_str()) {
            spans.push((m.start() + span.start..m.start() + span.end, kind));
        }
    }
    splice(text, spans, tally)
}

fn bare_aws_secrets(re: &Regex, text: &str, tally: &mut Tally) -> Option<String> {
    let mut spans = Vec::new();
    for m in re.find_iter(text) {
        for span in patterns::aws_secret_spans(m.as_str()) {
            spans.push((
                m.start() + span.start..m.start() + span.end,
                "aws_secret_access_key",
            ));
        }
    }
    splice(text, spans, tally)
}

/// `text` with each span (in order, not overlapping) replaced by its
/// marker; `None` when there are none.
fn splice(
    text: &str,
    spans: Vec<(std::ops::Range<usize>, &'static str)>,
    tally: &mut Tally,
) -> Option<String> {
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (span, kind) in spans {
        out.push_str(&text[last..span.start]);
        out.push_str(&format!("{REDACTED}:{kind}]"));
        tally.add(kind);
        last = span.end;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// Applies one rule to `text`; `None` when it hid nothing. A match the
/// rule declines (a name that is no secret's, a value that is no
/// credential) is skipped past its prefix only, so a secret inside it is
/// still found.
fn apply(rule: &Rule, text: &str, tally: &mut Tally) -> Option<String> {
    if !rule.re.is_match(text) {
        return None;
    }
    let mut out = String::new();
    let mut last = 0;
    let mut pos = 0;
    let mut changed = false;
    while pos <= text.len() {
        let Some(caps) = rule.re.captures_at(text, pos) else {
            break;
        };
        let Some(all) = caps.get(0) else {
            break;
        };
        match replacement(rule, &caps) {
            Some(rep) => {
                out.push_str(&text[last..all.start()]);
                out.push_str(&rep);
                last = all.end();
                tally.add(rule.kind);
                changed = true;
                pos = if all.end() > all.start() {
                    all.end()
                } else {
                    next_char(text, all.end())
                };
            }
            None => {
                let pre_end = caps.name("pre").map_or(0, |m| m.end());
                pos = if pre_end > all.start() {
                    pre_end
                } else {
                    next_char(text, all.start())
                };
            }
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&text[last..]);
    Some(out)
}

fn next_char(text: &str, at: usize) -> usize {
    text[at..]
        .chars()
        .next()
        .map_or(text.len() + 1, |c| at + c.len_utf8())
}

/// What replaces one match of `rule`, or `None` to leave it.
fn replacement(rule: &Rule, caps: &Captures<'_>) -> Option<String> {
    let marker = format!("{REDACTED}:{}]", rule.kind);
    let group = |name: &str| caps.name(name).map_or("", |m| m.as_str());
    let all = caps.get(0).map_or("", |m| m.as_str());
    match rule.keep {
        Keep::Nothing => Some(marker),
        Keep::Prefix => {
            let prefix = caps.get(1).map_or("", |m| m.as_str());
            Some(format!("{prefix}{marker}{}", group("after")))
        }
        Keep::PrefixIfTokenLike => {
            let prefix = caps.get(1).map_or("", |m| m.as_str());
            let rest = &all[prefix.len()..];
            (rest.len() >= 20 || rest.bytes().any(|b| b.is_ascii_digit()))
                .then(|| format!("{prefix}{marker}"))
        }
        Keep::Assignment => {
            let (value, quote) = if let Some(v) = caps.name("dq") {
                (v.as_str(), "\"")
            } else if let Some(v) = caps.name("sq") {
                (v.as_str(), "'")
            } else {
                (group("bare"), "")
            };
            // `name:value` with no space is a path or an ARN (`secret:prod/db`),
            // not YAML; a quoted value after it still counts.
            let glued = quote.is_empty() && group("pre").ends_with(':');
            (!glued && patterns::is_secret_name(group("name")) && !patterns::is_placeholder(value))
                .then(|| format!("{}{quote}{marker}{quote}", group("pre")))
        }
        Keep::Value => {
            (!patterns::is_placeholder(group("value"))).then(|| format!("{}{marker}", group("pre")))
        }
        Keep::Shaped => {
            let value = group("value");
            let trimmed = value.trim_end_matches('.');
            patterns::credential_shaped(value, group("ctx"))
                .then(|| format!("{}{marker}{}", group("pre"), &value[trimmed.len()..]))
        }
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
