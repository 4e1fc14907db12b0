//! Link templates: a URL with incident facts filled in (`{{pipeline}}`,
//! `{{incident}}`, `{{stage}}`, `{{run_id}}`, `{{commit}}`, and a time
//! window around the run as epoch milliseconds, `{{from_ms}}` and
//! `{{to_ms}}`, the form Grafana's `from` / `to` take). Each value is
//! percent-encoded where it goes, and no placeholder may stand in the
//! scheme or host, so a fact can never send the link elsewhere. Pure; the
//! configuration and playbooks check templates with
//! [`check_link_template`], chat cards render them with [`render_link`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A link to show with an incident: its label and URL template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTemplate {
    /// What the link is called on the card (a button's text).
    pub label: String,
    /// An absolute http(s) URL with `{{fact}}` placeholders.
    pub url: String,
}

/// The facts a template may name.
pub const LINK_FACTS: [&str; 7] = [
    "pipeline", "incident", "stage", "run_id", "commit", "from_ms", "to_ms",
];

/// Facts of one incident, by name.
pub type LinkFacts = BTreeMap<&'static str, String>;

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("unknown placeholder `{{{{{0}}}}}` (known: {known})", known = LINK_FACTS.join(", "))]
    UnknownFact(String),
    #[error("a `{{{{` is not closed by `}}}}`")]
    Unclosed,
    #[error("a placeholder may not stand in the scheme or host: the link must keep its own site")]
    PlaceholderInHost,
    #[error("{0:?} is not an absolute http:// or https:// URL")]
    NotHttp(String),
    #[error("the label is empty")]
    EmptyLabel,
}

/// Sample facts, for checking templates before any incident exists.
pub fn sample_link_facts() -> LinkFacts {
    [
        ("pipeline", "octo-org/octo-repo/test"),
        ("incident", "42"),
        ("stage", "Unit tests"),
        ("run_id", "8f1c"),
        ("commit", "a1b2c3d"),
        ("from_ms", "1763632800000"),
        ("to_ms", "1763637300000"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// The end of the scheme and authority of `url` (where the path starts);
/// 0 when it has none (it is then no absolute URL at all).
fn authority_end(url: &str) -> usize {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return 0;
    };
    url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i)
}

/// `template` with `facts` filled in, each value percent-encoded, checked
/// to be an absolute http(s) URL.
pub fn render_link(template: &str, facts: &LinkFacts) -> Result<String, LinkError> {
    if template[..authority_end(template)].contains("{{") {
        return Err(LinkError::PlaceholderInHost);
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or(LinkError::Unclosed)?;
        let name = after[..close].trim();
        let known = LINK_FACTS
            .iter()
            .find(|f| **f == name)
            .ok_or_else(|| LinkError::UnknownFact(name.to_string()))?;
        let value = facts.get(known).map(String::as_str).unwrap_or_default();
        out.push_str(&urlencoding::encode(value));
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    let parsed = url::Url::parse(&out).map_err(|_| LinkError::NotHttp(out.clone()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(LinkError::NotHttp(out));
    }
    Ok(parsed.into())
}

/// Checks a template as configured: a label, and an absolute http(s) URL
/// once sample facts are filled in.
pub fn check_link_template(link: &LinkTemplate) -> Result<(), (&'static str, LinkError)> {
    if link.label.trim().is_empty() {
        return Err(("label", LinkError::EmptyLabel));
    }
    render_link(&link.url, &sample_link_facts())
        .map(|_| ())
        .map_err(|e| ("url", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_filled_in_and_encoded() {
        let url = render_link(
            "https://grafana.example/d/ci?var-pipeline={{pipeline}}&from={{from_ms}}&to={{ to_ms }}&var-stage={{stage}}",
            &sample_link_facts(),
        )
        .unwrap();
        assert_eq!(
            url,
            "https://grafana.example/d/ci?var-pipeline=octo-org%2Focto-repo%2Ftest&from=1763632800000&to=1763637300000&var-stage=Unit%20tests"
        );
        // A value cannot break out of its place.
        let mut facts = sample_link_facts();
        facts.insert("pipeline", "a&admin=1#x".into());
        let url = render_link("https://ci.example/p/{{pipeline}}?x=1", &facts).unwrap();
        assert_eq!(url, "https://ci.example/p/a%26admin%3D1%23x?x=1");
    }

    #[test]
    fn bad_templates_say_why() {
        let facts = sample_link_facts();
        assert_eq!(
            render_link("https://{{pipeline}}.example/", &facts),
            Err(LinkError::PlaceholderInHost)
        );
        assert_eq!(
            render_link("https://x.example/{{nope}}", &facts),
            Err(LinkError::UnknownFact("nope".into()))
        );
        assert_eq!(
            render_link("https://x.example/{{pipeline", &facts),
            Err(LinkError::Unclosed)
        );
        assert!(matches!(
            render_link("/runbooks/{{pipeline}}", &facts),
            Err(LinkError::NotHttp(_))
        ));
        assert!(matches!(
            render_link("javascript:alert(1)", &facts),
            Err(LinkError::NotHttp(_))
        ));
        let unlabeled = LinkTemplate {
            label: " ".into(),
            url: "https://x.example/".into(),
        };
        assert_eq!(
            check_link_template(&unlabeled),
            Err(("label", LinkError::EmptyLabel))
        );
    }
}
