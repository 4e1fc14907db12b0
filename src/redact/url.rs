//! Credentials in URLs: the password of `scheme://user:password@host` and
//! the values of query parameters named like a secret (`password`, `pwd`,
//! `token`, `key`, `sig`, `sslpassword`, ...).
//!
//! A password may hold `@` and `/` unencoded (people paste them so); the
//! userinfo then runs to the last `@` before the query, provided what
//! follows is a host (checked with the `url` crate's host parser) and what
//! precedes the first `/` is not a port. This module only finds and masks;
//! it never logs what it hides.

use std::borrow::Cow;
use std::ops::Range;

/// `url` with its password and secret query values replaced by `mask`;
/// borrowed when there was nothing to hide. For one URL, as in the
/// configuration; free text goes through [`super::Redactor`].
pub fn mask_url<'u>(url: &'u str, mask: &str) -> Cow<'u, str> {
    let spans = secret_spans(url);
    if spans.is_empty() {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    let mut last = 0;
    for (span, _) in spans {
        out.push_str(&url[last..span.start]);
        out.push_str(mask);
        last = span.end;
    }
    out.push_str(&url[last..]);
    Cow::Owned(out)
}

/// The byte ranges of `url` to hide (the password, then secret query
/// values), in order.
pub(super) fn secret_spans(url: &str) -> Vec<(Range<usize>, &'static str)> {
    let mut spans = Vec::new();
    let Some(scheme_end) = url.find("://") else {
        return spans;
    };
    let scheme = &url[..scheme_end];
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
    {
        return spans;
    }
    let base = scheme_end + 3;
    let rest = &url[base..];
    let mut query_from = 0;
    if let Some(pw) = password_range(rest) {
        query_from = pw.end;
        if !url[base + pw.start..base + pw.end].starts_with(super::REDACTED) {
            spans.push((base + pw.start..base + pw.end, "url_password"));
        }
    }
    let after = &rest[query_from..];
    if let Some(q) = after.find('?') {
        let q_start = base + query_from + q + 1;
        let q_end = url[q_start..].find('#').map_or(url.len(), |h| q_start + h);
        let mut at = q_start;
        for pair in url[q_start..q_end].split(['&', ';']) {
            if let Some(eq) = pair.find('=') {
                let value = &pair[eq + 1..];
                if is_secret_param(&pair[..eq])
                    && !value.is_empty()
                    && !value.starts_with(super::REDACTED)
                {
                    spans.push((at + eq + 1..at + pair.len(), "url_secret"));
                }
            }
            at += pair.len() + 1;
        }
    }
    spans
}

/// The password in `rest` (a URL after its `scheme://`), as a byte range.
fn password_range(rest: &str) -> Option<Range<usize>> {
    let query = rest.find(['?', '#']).unwrap_or(rest.len());
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let colon = rest.find(':')?;
    let user = &rest[..colon];
    if user.contains(['/', '?', '#']) {
        return None;
    }
    let at = rest[..query].rfind('@')?;
    if at < colon {
        return None;
    }
    let password = &rest[colon + 1..at];
    if at > authority_end {
        // The `@` is past the first `/`: a password holding `/`, unless
        // the colon was a port's (`host:443/pkg@1.2`).
        let before_slash = password.split('/').next().unwrap_or_default();
        if !before_slash.is_empty() && before_slash.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let host = &rest[at + 1..];
    let host_end = host.find(['/', '?', '#']).unwrap_or(host.len());
    let host = strip_port(&host[..host_end]);
    if host.is_empty() || url::Host::parse(host).is_err() {
        return None;
    }
    (!password.is_empty()).then_some(colon + 1..at)
}

fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host.ends_with(']') && host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            &host[..i]
        }
        _ => host,
    }
}

/// Whether a query parameter's name (percent-decoded, any case) names a
/// secret: password, pass, pwd, secret, token, key, sig, signature,
/// credential, auth, sslpassword and names ending in them
/// (`access_token`, `X-Amz-Signature`, `api-key`).
pub fn is_secret_param(raw_name: &str) -> bool {
    let name: String = url::form_urlencoded::parse(raw_name.as_bytes())
        .next()
        .map(|(k, _)| k.to_ascii_lowercase())
        .unwrap_or_else(|| raw_name.to_ascii_lowercase());
    const ENDINGS: [&str; 14] = [
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "apikey",
        "sig",
        "signature",
        "credential",
        "credentials",
        "auth",
        "passphrase",
    ];
    ENDINGS.iter().any(|e| name.ends_with(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_with_at_and_slash_are_masked_whole() {
        let cases = [
            (
                "postgres://app:s3cret@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            ("postgres://app:p@ss@db/pm", "postgres://app:***@db/pm"),
            ("postgres://app:ab/cd@db/pm", "postgres://app:***@db/pm"),
            ("redis://:pw/x@y@cache:6379/0", "redis://:***@cache:6379/0"),
            (
                "postgres://app@db/pm?password=hunter2",
                "postgres://app@db/pm?password=***",
            ),
            (
                "postgres://db/pm?user=a&sslpassword=x1&sslmode=require",
                "postgres://db/pm?user=a&sslpassword=***&sslmode=require",
            ),
            (
                "https://x.blob.core.windows.net/c?sv=2021&sig=abc%2Bdef",
                "https://x.blob.core.windows.net/c?sv=2021&sig=***",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(mask_url(raw, "***"), want, "{raw}");
        }
    }

    #[test]
    fn urls_without_credentials_stay_borrowed() {
        for raw in [
            "sqlite://pipemedic.db",
            "https://github.com:443/octo-org/octo-repo.git",
            "https://registry.example.com:8443/pkg@1.2.3",
            "ssh://git@github.com:22/org/repo",
            "https://example.com/search?q=1&page=2&author=mona",
            "https://registry.npmjs.org/@types/node",
        ] {
            assert!(matches!(mask_url(raw, "***"), Cow::Borrowed(_)), "{raw}");
        }
    }
}
