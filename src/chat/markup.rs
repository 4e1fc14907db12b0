//! The markup of [`ChatMessage`](super::ChatMessage) text and the one place
//! it becomes platform markup.
//!
//! Cards and messages are written in a small neutral markup: `**bold**`,
//! `_italic_`, `~strike~`, `` `code` ``, `[label](url)`, and `\x` for a
//! literal `x`. Renderers put every value that comes from outside (pipeline,
//! run, stage and job names, commit messages, URLs from payloads, a model's
//! words) through [`text`], or [`link`] for a URL, so it can only ever be
//! literal text. The adapters then turn markup into Slack `mrkdwn`
//! ([`to_slack`]), Discord markdown ([`to_discord`]) or plain text
//! ([`to_plain`]); each escapes every literal character for its platform
//! and neutralises mentions (`<!channel>`, `<@U…>`, `@everyone`, `@here`,
//! `<@&role>`, `<#channel>`) whatever reached it. A link is live only when
//! its URL is one pipemedic built or points at the CI system
//! ([`LinkPolicy`]); any other URL is shown as inert text.
//!
//! This module formats; it decides nothing about what is posted.

use reqwest::Url;

use crate::config::Config;

/// Word joiner placed after `@` so `@everyone` / `@here` / `@channel`
/// never read as a mention.
const JOINER: char = '\u{2060}';
/// Zero-width space placed in `://` so clients do not auto-link a URL
/// shown as text.
const NO_AUTOLINK: &str = ":\u{200B}//";

/// Characters [`text`] escapes: everything the neutral markup reads.
const MARKUP: [char; 9] = ['\\', '*', '_', '~', '`', '[', ']', '(', ')'];

/// `value` as literal text in neutral markup: every markup character
/// escaped, so it renders exactly as given on every platform.
pub fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if MARKUP.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Like [`text`], but backticks stay code spans: for sentences pipemedic
/// writes around outside values (answers that quote a `pipeline`). Code
/// spans cannot mention, link or format, so nothing else changes.
pub fn prose(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if c != '`' && MARKUP.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A link in neutral markup: the label as literal text, the URL with the
/// characters that would end it percent-encoded. Whether it is live is the
/// adapter's [`LinkPolicy`]'s decision.
pub fn link(label: &str, url: &str) -> String {
    let url: String = url
        .chars()
        .map(|c| match c {
            ')' => "%29".to_string(),
            '(' => "%28".to_string(),
            ' ' => "%20".to_string(),
            '<' => "%3C".to_string(),
            '>' => "%3E".to_string(),
            '|' => "%7C".to_string(),
            '\\' => "%5C".to_string(),
            c if c.is_control() => String::new(),
            c => c.to_string(),
        })
        .collect();
    format!("[{}]({url})", text(label))
}

/// Which URLs may be live links: pipemedic's own (`server.public_url`) and
/// the CI systems' (github.com, gitlab.com, the AWS console, the host of
/// `github.api_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPolicy {
    /// Exact hosts, or `*.domain` for its subdomains.
    hosts: Vec<String>,
}

impl Default for LinkPolicy {
    fn default() -> Self {
        Self {
            hosts: [
                "github.com",
                "gitlab.com",
                "console.aws.amazon.com",
                "*.console.aws.amazon.com",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl LinkPolicy {
    /// The default hosts plus pipemedic's public URL and the configured
    /// GitHub host (GitHub Enterprise).
    pub fn from_config(config: &Config) -> Self {
        let mut policy = Self::default();
        for url in [&config.server.public_url, &config.github.api_url] {
            policy = policy.with_host_of(url);
        }
        policy
    }

    /// The same policy also allowing the host of `url` (ignored when it is
    /// not a URL).
    pub fn with_host_of(mut self, url: &str) -> Self {
        if let Some(host) = Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        {
            let host = host.strip_prefix("api.").map_or(host.clone(), String::from);
            if !self.hosts.contains(&host) {
                self.hosts.push(host);
            }
        }
        self
    }

    /// Whether `url` may be a live link: http(s), no credentials, host on
    /// the policy.
    pub fn allows(&self, url: &str) -> bool {
        let Ok(parsed) = Url::parse(url) else {
            return false;
        };
        if !matches!(parsed.scheme(), "https" | "http")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return false;
        }
        let Some(host) = parsed.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        self.hosts
            .iter()
            .any(|entry| match entry.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                None => *entry == host,
            })
    }
}

/// One piece of parsed markup.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Literal text.
    Text(String),
    /// `**`: bold on or off.
    Bold,
    /// `_` or `~`, written by pipemedic: the same marker on every platform.
    Mark(char),
    /// A code span's literal content.
    Code(String),
    Link {
        label: String,
        url: String,
    },
}

/// Reads `\x` escapes up to the first unescaped `end` on the same line.
/// Returns the literal text and the bytes consumed including `end`.
fn literal_until(s: &str, end: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            if let Some((_, next)) = chars.next() {
                out.push(next);
            }
        } else if c == end {
            return Some((out, i + c.len_utf8()));
        } else if c == '\n' {
            // Code spans, labels and URLs never span lines.
            return None;
        } else {
            out.push(c);
        }
    }
    None
}

fn parse(markup: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = markup;
    let flush = |literal: &mut String, pieces: &mut Vec<Piece>| {
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(literal)));
        }
    };
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        match c {
            '\\' => match after.chars().next() {
                Some(next) => {
                    literal.push(next);
                    rest = &after[next.len_utf8()..];
                }
                None => {
                    literal.push('\\');
                    rest = after;
                }
            },
            '*' if after.starts_with('*') => {
                flush(&mut literal, &mut pieces);
                pieces.push(Piece::Bold);
                rest = &after[1..];
            }
            '_' | '~' => {
                flush(&mut literal, &mut pieces);
                pieces.push(Piece::Mark(c));
                rest = after;
            }
            '`' => match literal_until(after, '`') {
                Some((code, used)) => {
                    flush(&mut literal, &mut pieces);
                    pieces.push(Piece::Code(code));
                    rest = &after[used..];
                }
                None => {
                    literal.push(c);
                    rest = after;
                }
            },
            '[' => {
                let parsed = literal_until(after, ']').and_then(|(label, used)| {
                    let tail = after[used..].strip_prefix('(')?;
                    let (url, url_used) = literal_until(tail, ')')?;
                    (!url.is_empty() && !url.contains(char::is_whitespace)).then_some((
                        label,
                        url,
                        used + 1 + url_used,
                    ))
                });
                match parsed {
                    Some((label, url, used)) => {
                        flush(&mut literal, &mut pieces);
                        pieces.push(Piece::Link { label, url });
                        rest = &after[used..];
                    }
                    None => {
                        literal.push(c);
                        rest = after;
                    }
                }
            }
            c => {
                literal.push(c);
                rest = after;
            }
        }
    }
    flush(&mut literal, &mut pieces);
    pieces
}

/// `@everyone`, `@here` and `@channel` with a joiner after the `@`, and
/// `://` broken so the text is not auto-linked.
fn defuse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let word = rest.get(..8).unwrap_or(rest).to_ascii_lowercase();
        if ["everyone", "here", "channel"]
            .iter()
            .any(|w| word.starts_with(w))
        {
            out.push(JOINER);
        }
    }
    out.push_str(rest);
    out.replace("://", NO_AUTOLINK)
}

/// Literal text for Slack `mrkdwn`: `&`, `<`, `>` as entities (so no
/// `<!channel>`, `<@U…>` or `<url|label>` can form), and formatting
/// characters as look-alikes that Slack does not format.
fn slack_text(text: &str) -> String {
    let chars: Vec<char> = defuse(text).chars().collect();
    let mut out = String::with_capacity(chars.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' => out.push('\u{2217}'),
            '~' => out.push('\u{223C}'),
            '`' => out.push('\u{02CB}'),
            '_' => {
                // Inside a word (`duration_s`) an underscore never formats.
                let word = |j: Option<usize>| {
                    j.and_then(|j| chars.get(j))
                        .is_some_and(|c| c.is_alphanumeric())
                };
                if word(i.checked_sub(1)) && word(Some(i + 1)) {
                    out.push('_');
                } else {
                    out.push('\u{FF3F}');
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Code span content for Slack: entities escaped, no closing backtick.
fn slack_code(code: &str) -> String {
    defuse(code)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "\u{02CB}")
}

/// Neutral markup as Slack `mrkdwn`, with links checked against `links`.
pub fn to_slack(markup: &str, links: &LinkPolicy) -> String {
    let mut out = String::with_capacity(markup.len() + 16);
    for piece in parse(markup) {
        match piece {
            Piece::Text(t) => out.push_str(&slack_text(&t)),
            Piece::Bold => out.push('*'),
            Piece::Mark(c) => out.push(c),
            Piece::Code(code) => {
                out.push('`');
                out.push_str(&slack_code(&code));
                out.push('`');
            }
            Piece::Link { label, url } if links.allows(&url) => {
                let url = url
                    .replace('&', "&amp;")
                    .replace('<', "%3C")
                    .replace('>', "%3E")
                    .replace('|', "%7C");
                out.push_str(&format!("<{url}|{}>", slack_text(&label.replace('|', "/"))));
            }
            Piece::Link { label, url } => {
                out.push_str(&slack_text(&format!("{label} ({url})")));
            }
        }
    }
    out
}

/// Literal text for Discord markdown: markdown characters and `<`
/// backslash-escaped (`\<@123>` shows the raw text, never a mention).
fn discord_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in defuse(text).chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '#' | '[' | ']' | '(' | ')'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Code span content for Discord: no closing backtick, no mention form.
fn discord_code(code: &str) -> String {
    defuse(code)
        .replace('`', "\u{02CB}")
        .replace('<', "<\u{2060}")
}

/// Neutral markup as Discord markdown, with links checked against `links`.
pub fn to_discord(markup: &str, links: &LinkPolicy) -> String {
    let mut out = String::with_capacity(markup.len() + 16);
    for piece in parse(markup) {
        match piece {
            Piece::Text(t) => out.push_str(&discord_text(&t)),
            Piece::Bold => out.push_str("**"),
            Piece::Mark(c) => out.push(c),
            Piece::Code(code) => {
                out.push('`');
                out.push_str(&discord_code(&code));
                out.push('`');
            }
            Piece::Link { label, url } if links.allows(&url) => {
                let url = url.replace('(', "%28").replace(')', "%29");
                out.push_str(&format!("[{}]({url})", discord_text(&label)));
            }
            Piece::Link { label, url } => {
                out.push_str(&discord_text(&format!("{label} ({url})")));
            }
        }
    }
    out
}

/// Neutral markup as plain text (Slack `plain_text`, the console, logs):
/// markers dropped, escapes resolved, mentions still defused.
pub fn to_plain(markup: &str) -> String {
    let mut out = String::with_capacity(markup.len());
    for piece in parse(markup) {
        match piece {
            Piece::Text(t) | Piece::Code(t) => out.push_str(&t),
            Piece::Bold => {}
            Piece::Mark(c) => out.push(c),
            Piece::Link { label, url } => out.push_str(&format!("{label} ({url})")),
        }
    }
    defuse(&out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Values a hostile CI payload may carry.
    pub(crate) const HOSTILE: [&str; 14] = [
        "<!channel>",
        "<!here>",
        "<@U123>",
        "@everyone",
        "@here",
        "<@&987654321>",
        "<@!123456789>",
        "<#C123>",
        "[click](http://evil.example)",
        "*bold* _it_ ~s~ `code`",
        "&lt;!channel&gt;",
        "<http://evil.example|docs>",
        "<\u{200B}!channel> <\u{2060}@U1> @\u{200D}everyone",
        "＜!channel＞ \\<!here\\>",
    ];

    /// The only live links the hostile cases may show: the CI system's.
    const TRUSTED: &str = "https://github.com/";

    /// No live mention, and no live link but to [`TRUSTED`], in Slack
    /// `mrkdwn`.
    pub(crate) fn assert_inert_slack(out: &str) {
        for bad in [
            "<!",
            "<@",
            "<#",
            "|click>",
            "@everyone",
            "@here",
            "@channel",
        ] {
            assert!(!out.contains(bad), "{bad:?} in {out:?}");
        }
        for (i, _) in out.match_indices("<http") {
            assert!(out[i + 1..].starts_with(TRUSTED), "live link in {out:?}");
        }
        assert!(!out.contains("http://evil"), "auto-linkable URL in {out:?}");
    }

    /// No live mention, and no live link but to [`TRUSTED`], in Discord
    /// markdown.
    pub(crate) fn assert_inert_discord(out: &str) {
        for bad in ["@everyone", "@here"] {
            assert!(!out.contains(bad), "{bad:?} in {out:?}");
        }
        for (i, _) in out.match_indices("](http") {
            let url = &out[i + 2..];
            if url.starts_with("http://") || url.starts_with("https://") {
                assert!(url.starts_with(TRUSTED), "live link in {out:?}");
            }
        }
        for pattern in ["<@", "<#", "<!", "<http"] {
            for (i, _) in out.match_indices(pattern) {
                assert!(
                    i > 0 && out.as_bytes()[i - 1] == b'\\',
                    "live {pattern:?} in {out:?}"
                );
            }
        }
        assert!(!out.contains("http://evil"), "auto-linkable URL in {out:?}");
    }

    #[test]
    fn outside_text_is_inert_on_every_platform() {
        let links = LinkPolicy::default();
        for value in HOSTILE {
            let markup = format!("**Pipeline** {} and `{}`", text(value), text(value));
            assert_inert_slack(&to_slack(&markup, &links));
            assert_inert_discord(&to_discord(&markup, &links));
            assert!(!to_plain(&markup).contains("@everyone"));
            let answer = prose(&format!("{value} in `{value}`"));
            assert_inert_slack(&to_slack(&answer, &links));
            assert_inert_discord(&to_discord(&answer, &links));
        }
    }

    #[test]
    fn escaped_text_reads_as_written() {
        let links = LinkPolicy::default();
        let markup = text("duration_s *x* a&lt;b");
        assert_eq!(
            to_slack(&markup, &links),
            "duration_s \u{2217}x\u{2217} a&amp;lt;b"
        );
        assert_eq!(to_discord(&markup, &links), "duration\\_s \\*x\\* a&lt;b");
        assert_eq!(to_plain(&markup), "duration_s *x* a&lt;b");
        assert_eq!(
            to_slack(&format!("`{}`", text("a`b<c>")), &links),
            "`a\u{02CB}b&lt;c&gt;`"
        );
    }

    #[test]
    fn only_ci_and_own_links_are_live() {
        let links = LinkPolicy::default().with_host_of("https://medic.example.com/");
        let own = link("incident", "https://medic.example.com/incidents/4");
        assert_eq!(
            to_slack(&own, &links),
            "<https://medic.example.com/incidents/4|incident>"
        );
        assert_eq!(
            to_discord(&own, &links),
            "[incident](https://medic.example.com/incidents/4)"
        );
        let gh = link("run", "https://github.com/o/r/actions/runs/1");
        assert_eq!(
            to_slack(&gh, &links),
            "<https://github.com/o/r/actions/runs/1|run>"
        );
        let console = link(
            "run",
            "https://us-east-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/p/view",
        );
        assert!(to_slack(&console, &links).starts_with("<https://us-east-1.console"));
        for url in [
            "http://evil.example/x",
            "https://github.com.evil.example/",
            "https://user:pw@github.com/",
            "javascript:alert(1)",
        ] {
            let l = link("logs", url);
            let slack = to_slack(&l, &links);
            let discord = to_discord(&l, &links);
            assert!(!slack.contains('<'), "{slack}");
            assert!(!discord.contains("]("), "{discord}");
            assert!(slack.starts_with("logs ("), "{slack}");
        }
        // A link written by pipemedic with a hostile label stays a link
        // whose label is text.
        let l = link(
            "<!channel> [x](http://evil.example)",
            "https://github.com/o/r",
        );
        let slack = to_slack(&l, &links);
        assert!(
            slack.starts_with("<https://github.com/o/r|&lt;!channel&gt;"),
            "{slack}"
        );
        let discord = to_discord(&l, &links);
        assert!(discord.starts_with("[\\<!channel\\> \\[x\\]"), "{discord}");
        assert!(discord.ends_with("](https://github.com/o/r)"), "{discord}");
        assert!(!discord.contains("http://evil"), "{discord}");
    }

    #[test]
    fn ids_survive_with_only_neutral_changes() {
        let links = LinkPolicy::default();
        let markup = format!("Run {} of {}", text("8f1c-2"), text("octo-org/octo-repo"));
        assert_eq!(
            to_slack(&markup, &links),
            "Run 8f1c-2 of octo-org/octo-repo"
        );
        assert_eq!(to_plain(&markup), "Run 8f1c-2 of octo-org/octo-repo");
    }
}
