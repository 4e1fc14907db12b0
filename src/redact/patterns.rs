//! The built-in secret patterns and the judgements behind the ones that
//! need more than a regular expression: which assignment names hold a
//! secret, and which values only look like one.
//!
//! This module owns no state and does no replacing; [`super::Redactor`]
//! compiles the patterns and rewrites text.

/// How a pattern's match is replaced.
#[derive(Debug, Clone, Copy)]
pub(super) enum Keep {
    /// Replace the whole match.
    Nothing,
    /// Keep capture group 1 (a prefix such as `Bearer ` or `user:`) and the
    /// group named `after` (a suffix such as the `@` of a URL), replace the
    /// rest of the match.
    Prefix,
    /// Like `Prefix`, but only when the rest looks like a token (has a digit
    /// or is at least 20 characters), so "bearer authentication" stays.
    PrefixIfTokenLike,
    /// Keep the group named `pre` and the quotes around the value; replace
    /// the value (group `dq`, `sq` or `bare`) when the group named `name`
    /// is a secret's name ([`is_secret_name`]) and the value is not empty
    /// or a placeholder.
    Assignment,
    /// Keep the group named `pre`; replace the group named `value` unless
    /// it is already redacted.
    Value,
    /// Keep the group named `pre`; replace the group named `value` when it
    /// is shaped like a credential ([`credential_shaped`]) in the context
    /// the group named `ctx` gives.
    Shaped,
}

/// A value of a secret-named assignment: double-quoted (spaces allowed),
/// single-quoted, or one bare word.
const VALUE: &str = r#"(?:"(?P<dq>[^"\r\n]*)"|'(?P<sq>[^'\r\n]*)'|(?P<bare>[^\s"'&,;]+))"#;

/// Built-in patterns, most specific first (a private-key block before the
/// generic ones that could cut it in pieces; vendor tokens before the
/// assignments that would otherwise name them `password`).
pub(super) fn builtin() -> Vec<(&'static str, String, Keep)> {
    let s = |kind: &'static str, pattern: &str, keep: Keep| (kind, pattern.to_string(), keep);
    vec![
        s(
            "private_key",
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?s:.*?)(-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
            Keep::Nothing,
        ),
        s(
            "private_key",
            // The tail of a block whose BEGIN line was cut off.
            r"\A(?s:.*?)-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----",
            Keep::Nothing,
        ),
        s(
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
            Keep::Nothing,
        ),
        s(
            "aws_access_key_id",
            r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b",
            Keep::Nothing,
        ),
        s(
            "aws_secret_access_key",
            r#"(?i)((?:aws_?)?secret_?access_?key["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{40}"#,
            Keep::Prefix,
        ),
        s(
            "github_token",
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b",
            Keep::Nothing,
        ),
        s(
            "github_token",
            r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
            Keep::Nothing,
        ),
        s(
            "gitlab_token",
            r"\bgl(?:pat|dt|rt|ptt|cbt|oas|soat|ft|imt|agent|ffct)-[A-Za-z0-9_-]{20,}",
            Keep::Nothing,
        ),
        s(
            "gitlab_token",
            r"\bGR1348941[A-Za-z0-9_-]{20,}",
            Keep::Nothing,
        ),
        s("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b", Keep::Nothing),
        s("pypi_token", r"\bpypi-AgE[A-Za-z0-9_-]{50,}", Keep::Nothing),
        s(
            "docker_token",
            r"\bdckr_pat_[A-Za-z0-9_-]{20,}",
            Keep::Nothing,
        ),
        s(
            "stripe_key",
            r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}\b",
            Keep::Nothing,
        ),
        s("stripe_key", r"\bwhsec_[A-Za-z0-9]{20,}", Keep::Nothing),
        s("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}", Keep::Nothing),
        s(
            "google_oauth_token",
            r"\bya29\.[0-9A-Za-z_-]{20,}",
            Keep::Nothing,
        ),
        s(
            "api_key",
            // OpenAI- and Anthropic-style keys, SendGrid, HashiCorp Vault.
            r"\bsk-(?:proj-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{20,}|\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}|\bhv[sbr]\.[A-Za-z0-9_-]{20,}",
            Keep::Nothing,
        ),
        s(
            "slack_token",
            r"\bxox[abposre]-[A-Za-z0-9-]{10,}|\bxoxe\.xox[bp]-[A-Za-z0-9-]{10,}",
            Keep::Nothing,
        ),
        s("slack_token", r"\bxapp-\d-[A-Za-z0-9-]{10,}", Keep::Nothing),
        s(
            "slack_webhook",
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]+",
            Keep::Nothing,
        ),
        s(
            "discord_webhook",
            r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/(?:v\d+/)?webhooks/\d+/[A-Za-z0-9_-]+",
            Keep::Nothing,
        ),
        s(
            "discord_token",
            r"\b[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}\b",
            Keep::Nothing,
        ),
        s(
            "azure_storage_key",
            r#"(?i)(?P<pre>\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*)(?P<value>[^;\s"']+)"#,
            Keep::Value,
        ),
        s(
            "azure_storage_key",
            // A bare storage account key: 64 bytes in base64.
            r"(?P<pre>^|[^A-Za-z0-9+/])(?P<value>[A-Za-z0-9+/]{86}==)",
            Keep::Value,
        ),
        s(
            "authorization",
            r#"(?im)(?P<pre>\b(?:proxy-)?authorization["']?\s*:\s*["']?(?:(?:bearer|basic|token|digest|negotiate|ntlm|apikey|sso-key|aws4-hmac-sha256)\s+)?)(?P<value>[^\s"'][^"'\r\n]*)"#,
            Keep::Value,
        ),
        s(
            "cookie",
            r#"(?im)(?P<pre>\b(?:set-)?cookie["']?\s*:\s*["']?)(?P<value>[^\s"'][^"'\r\n]*)"#,
            Keep::Value,
        ),
        s(
            "bearer_token",
            r"(?i)(\bbearer\s+|\bauthorization:\s*token\s+)[A-Za-z0-9\-._~+/]{8,}=*",
            Keep::PrefixIfTokenLike,
        ),
        s(
            "basic_auth",
            r"(?i)(\bauthorization:\s*basic\s+)[A-Za-z0-9+/]{8,}=*",
            Keep::Prefix,
        ),
        s(
            "password",
            &format!(r#"(?P<pre>(?P<name>\b[A-Za-z_][A-Za-z0-9_.-]*)["']?\s*[:=]\s*){VALUE}"#),
            Keep::Assignment,
        ),
        s(
            "password",
            r"(?im)((?:^|\s)--?(?:password|passwd|secret|token|api-key|access-token|auth-token)(?:=|\s+))[^\s\[-]\S*",
            Keep::Prefix,
        ),
        s(
            "password",
            // mysql -uroot -pS3cret
            r"(?i)(\bmysql(?:dump|admin|sh)?\b[^\r\n]*?\s-p)[^\s\[]+",
            Keep::Prefix,
        ),
        s(
            "high_entropy",
            r#"(?i)(?P<pre>(?P<ctx>\b(?:(?:api|access|secret|private|license|master|auth|deploy|signing)[ _-]+)?[a-z0-9_.-]*(?:key|secret|token|passw(?:or)?d|passphrase|pwd|credentials?|auth|apikey))\b["']?\s*(?:[:=]|\bis\b|\bwas\b|\bof\b|\bfor\b|\bwith\b|\bset\s+to\b)?\s*["']?)(?P<value>[A-Za-z0-9+=_~-][A-Za-z0-9+/=_.~-]{15,})"#,
            Keep::Shaped,
        ),
    ]
}

/// Whether an assignment's name (`DB_PASS`, `apiKey`, `password`,
/// `X-Auth-Token`) says its value is a secret. Counts and lists
/// (`max_tokens`, `tests_passed`), paths and ids of secrets
/// (`TOKEN_FILE`, `key_id`), shell's `PWD`, test results (`PASS`) and the
/// keys of caches and tables (`key`, `cache_key`) do not.
pub(super) fn is_secret_name(name: &str) -> bool {
    let segments = segments(name);
    let Some(last) = segments.last() else {
        return false;
    };
    const NOT_SECRET_LAST: [&str; 30] = [
        "count",
        "len",
        "length",
        "ttl",
        "type",
        "name",
        "id",
        "ids",
        "file",
        "path",
        "url",
        "uri",
        "endpoint",
        "expiry",
        "expires",
        "expiration",
        "at",
        "seconds",
        "secs",
        "ms",
        "size",
        "limit",
        "max",
        "min",
        "used",
        "usage",
        "env",
        "var",
        "prefix",
        "header",
    ];
    if segments.len() > 1 && NOT_SECRET_LAST.contains(&last.as_str()) {
        return false;
    }
    const NOT_SECRET_KEYS: [&str; 12] = [
        "cache",
        "sort",
        "primary",
        "partition",
        "foreign",
        "object",
        "idempotency",
        "s3",
        "restore",
        "lookup",
        "map",
        "hash",
    ];
    let n = segments.len();
    segments.iter().enumerate().any(|(i, seg)| {
        let seg = seg.as_str();
        let only = n == 1;
        let first = i == 0;
        let is_last = i + 1 == n;
        match seg {
            "tokens" | "keys" | "secrets" | "passwords" | "passed" | "passes" | "passing"
            | "bypass" | "tokenizer" => false,
            "pwd" | "pass" => !first && !only,
            "key" => {
                is_last && !only && i > 0 && !NOT_SECRET_KEYS.contains(&segments[i - 1].as_str())
            }
            "auth" => is_last,
            _ => {
                seg.contains("password")
                    || seg.contains("passwd")
                    || seg.contains("passphrase")
                    || seg.contains("secret")
                    || seg.starts_with("credential")
                    || seg.ends_with("token")
                    || seg.starts_with("pass") && !first
                    || [
                        "apikey",
                        "accesskey",
                        "secretkey",
                        "privatekey",
                        "masterkey",
                        "licensekey",
                        "signingkey",
                        "encryptionkey",
                        "authkey",
                        "pgpass",
                    ]
                    .contains(&seg)
            }
        }
    })
}

/// The lower-case words of a name: split at `_`, `-`, `.` and at a
/// lower-to-upper change (`apiKey` → `api`, `key`).
fn segments(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if matches!(c, '_' | '-' | '.') {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A value that stands for no secret: empty, a boolean, a placeholder or
/// something already redacted.
pub(super) fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    v.is_empty()
        || v.starts_with(super::REDACTED)
        || v.chars()
            .all(|c| c == '*' || c == 'x' || c == 'X' || c == '.')
        || matches!(
            v.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "none" | "nil" | "yes" | "no" | "-" | "~"
        )
}

/// Whether `value`, following the credential word `ctx` (`token`,
/// `DEPLOY_KEY`, `secret`), looks like a credential rather than an
/// identifier: hex digests only in a credential context proper (not a
/// `key`, which caches and tables have too) and only from 32 digits; UUIDs
/// and names made of words, numbers and hex never.
pub(super) fn credential_shaped(value: &str, ctx: &str) -> bool {
    let value = value.trim_end_matches('.');
    if value.len() < 16 || is_placeholder(value) {
        return false;
    }
    if value.bytes().all(|b| b.is_ascii_hexdigit()) {
        let ctx = ctx.to_ascii_lowercase();
        let plain_key = ctx.ends_with("key")
            && ![
                "api", "access", "secret", "private", "license", "master", "auth",
            ]
            .iter()
            .any(|w| ctx.contains(w));
        return value.len() >= 32 && !plain_key;
    }
    if is_uuid(value) {
        return false;
    }
    let segments_random = value
        .split(['-', '_', '.', '/', '~'])
        .any(|seg| seg.len() >= 10 && random_segment(seg));
    segments_random && entropy(value) >= 3.0
}

/// A word run of at least two character classes that is neither a number,
/// a word nor a hex digest.
fn random_segment(seg: &str) -> bool {
    let upper = seg.bytes().filter(u8::is_ascii_uppercase).count();
    let lower = seg.bytes().filter(u8::is_ascii_lowercase).count();
    let digit = seg.bytes().filter(u8::is_ascii_digit).count();
    let hex = seg.bytes().all(|b| b.is_ascii_hexdigit());
    let classes = usize::from(upper > 0) + usize::from(lower > 0) + usize::from(digit > 0);
    !hex && (classes == 3 || (classes == 2 && digit > 0 && seg.len() >= 16))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Shannon entropy in bits per character.
pub(super) fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Where 40-character AWS secret access keys sit in a run of base64
/// characters (`[A-Za-z0-9/+]`): the whole run, or a part of it that starts
/// after a `/` and ends before one (`creds/<key>`), which must also look
/// random (a path of words does not).
pub(super) fn aws_secret_spans(run: &str) -> Vec<std::ops::Range<usize>> {
    const LEN: usize = 40;
    let bytes = run.as_bytes();
    if bytes.len() == LEN {
        return if looks_like_aws_secret(run) {
            std::iter::once(0..LEN).collect()
        } else {
            Vec::new()
        };
    }
    let mut spans = Vec::new();
    let mut start = 0;
    while start + LEN <= bytes.len() {
        let at_start = start == 0 || bytes[start - 1] == b'/';
        let end = start + LEN;
        let at_end = end == bytes.len() || bytes[end] == b'/';
        if at_start && at_end {
            let candidate = &run[start..end];
            if looks_like_aws_secret(candidate) && entropy(candidate) >= 4.0 {
                spans.push(start..end);
                start = end;
                continue;
            }
        }
        start += 1;
    }
    spans
}

/// A token of exactly 40 base64 characters with upper case, lower case and
/// a digit: the shape of an AWS secret access key. Git hashes (lower-case
/// hex) and words do not qualify.
pub(super) fn looks_like_aws_secret(token: &str) -> bool {
    token.len() == 40
        && token.bytes().any(|b| b.is_ascii_uppercase())
        && token.bytes().any(|b| b.is_ascii_lowercase())
        && token.bytes().any(|b| b.is_ascii_digit())
}
