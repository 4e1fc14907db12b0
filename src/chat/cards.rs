//! Cards: what incidents look like in chat, as platform-neutral
//! [`ChatMessage`]s, and the shared text helpers (numbers, inert text). Pure formatting; what to post and
//! when is the services' decision, and the adapters turn cards into Block
//! Kit or embeds. Every value from a run (pipeline, run id, status, stage,
//! commit, metric names, URLs) enters a card through [`inert`] or
//! [`markup::link`], so it reads as literal text on every platform.

use crate::chat::markup::{self, text as inert_text};
use crate::chat::{ChatMessage, Severity};
use crate::domain::{
    times, Direction, Incident, IncidentSeverity, IncidentStatus, MetricDeviation, Signature,
    TrackRecord,
};

/// The chat severity of an incident: its grade while it is ongoing, green
/// once resolved, neutral once dismissed.
pub fn severity(incident: &Incident) -> Severity {
    match incident.status {
        IncidentStatus::Resolved => Severity::Success,
        IncidentStatus::Dismissed => Severity::Info,
        _ => match incident.severity {
            IncidentSeverity::Critical => Severity::Critical,
            IncidentSeverity::Major | IncidentSeverity::Minor => Severity::Warning,
        },
    }
}

/// A number as people read it: no trailing zeros, at most 4 significant
/// decimals for small values.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// One metric that is off: `observed vs expected (↑, 72%)`.
pub fn deviation_line(d: &MetricDeviation) -> String {
    let arrow = match d.direction {
        Direction::Up => "↑",
        Direction::Down => "↓",
    };
    format!(
        "{} vs {} expected ({arrow}, {:.0}%)",
        number(d.observed),
        number(d.expected),
        d.attribution * 100.0
    )
}

/// The alert card of an incident, as it stands (edited as it moves).
pub fn incident_card(incident: &Incident) -> ChatMessage {
    let run = &incident.latest_run;
    let verdict = &incident.verdict;
    let title = format!(
        "[{}] {}: abnormal run (incident #{})",
        incident.status.label().to_uppercase(),
        inert_text(&incident.pipeline),
        incident.id
    );
    let mut text = match verdict.deviations.first() {
        Some(top) => format!(
            "**{}** is off: {}",
            inert_text(&top.metric),
            inert_text(&top.describe())
        ),
        None => "The run does not look like this pipeline's normal.".to_string(),
    };
    for d in verdict.deviations.iter().skip(1) {
        text.push_str(&format!("\nAlso: {}", inert_text(&d.describe())));
    }
    if !verdict.seasonal {
        text.push_str("\n_Weekly rhythm not learned yet: expected values are the same for every hour and day._");
    }
    if incident.run_count > 1 {
        text.push_str(&format!(
            "\n{} abnormal runs in a row so far.",
            incident.run_count
        ));
    }
    let mut links = Vec::new();
    if let Some(url) = &run.url {
        links.push(markup::link("run", url));
    }
    if let Some(url) = &run.log_url {
        links.push(markup::link("logs", url));
    }
    if !links.is_empty() {
        text.push_str(&format!("\n{}", links.join(" · ")));
    }
    let mut card = ChatMessage::new(title, severity(incident), text)
        .field(
            "Run",
            inert_text(&format!("{} ({})", run.run_id, run.status)),
        )
        .field(
            "Commit",
            run.commit
                .as_deref()
                .map(|c| inert_text(&c.chars().take(12).collect::<String>()))
                .unwrap_or_else(|| "-".into()),
        )
        .field(
            "Grade",
            format!("{:.2} ({})", verdict.grade, incident.severity.as_str()),
        )
        .field("Status", incident.status.label().to_string());
    if let Some(stage) = &run.stage {
        card = card.field("Stage", inert_text(stage));
    }
    for d in &verdict.deviations {
        card = card.field(inert_text(&d.metric), deviation_line(d));
    }
    card.footer(format!(
        "pipemedic · incident #{} · opened {}",
        incident.id,
        incident.opened_at.format("%Y-%m-%d %H:%M UTC")
    ))
}

/// The web console's page of incident `incident_id` under `public_url`
/// (`server.public_url`); `None` when it is not set.
pub fn console_url(public_url: &str, incident_id: i64) -> Option<String> {
    let base = public_url.trim().trim_end_matches('/');
    (!base.is_empty()).then(|| format!("{base}/ui/incidents/{incident_id}"))
}

/// `card` with a link to the incident's console page at the end of its
/// text, when `public_url` is set (the link is pipemedic's own, so it
/// stays live under the chat link policy).
pub fn with_console_link(mut card: ChatMessage, public_url: &str, incident_id: i64) -> ChatMessage {
    if let Some(url) = console_url(public_url, incident_id) {
        card.text
            .push_str(&format!("\n{}", markup::link("incident page", &url)));
    }
    card
}

/// A short thread line: a status change, with an optional note.
pub fn status_line(incident_id: i64, status: IncidentStatus, note: Option<&str>) -> ChatMessage {
    let text = match note {
        Some(note) if !note.is_empty() => {
            format!("Status: **{}**. {}", status.label(), inert_text(note))
        }
        _ => format!("Status: **{}**.", status.label()),
    };
    ChatMessage::new(
        format!("Incident #{incident_id}: {}", status.label()),
        Severity::Info,
        text,
    )
}

/// A short thread line: another abnormal run joined the incident.
pub fn repeat_line(incident: &Incident) -> ChatMessage {
    let run = &incident.latest_run;
    let top = incident
        .verdict
        .deviations
        .first()
        .map(|d| format!(": {} {}", inert_text(&d.metric), deviation_line(d)))
        .unwrap_or_default();
    ChatMessage::new(
        format!("Incident #{}: still abnormal", incident.id),
        Severity::Info,
        format!(
            "Run {} is still abnormal (grade {:.2}){top}.",
            inert_text(&run.run_id),
            incident.verdict.grade
        ),
    )
}

/// Text from outside (an answer quoting commit messages or log lines, a
/// model's words, a name from a payload) as literal text in a card: it
/// cannot format, link or mention anything on any platform (see
/// [`markup::text`]; the adapters also neutralise every mention).
pub fn inert(text: &str) -> String {
    inert_text(text)
}

/// One line per incident, for `/medic incidents`.
pub fn incident_list(incidents: &[Incident]) -> String {
    if incidents.is_empty() {
        return "No open incidents.".into();
    }
    let mut out = String::from("**Open incidents**");
    for i in incidents {
        let top = i
            .verdict
            .deviations
            .first()
            .map(|d| format!(", {} {}", inert_text(&d.metric), deviation_line(d)))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n- #{} {} — {} ({}), {} run{}{top}",
            i.id,
            inert_text(&i.pipeline),
            i.status.label(),
            i.severity.as_str(),
            i.run_count,
            if i.run_count == 1 { "" } else { "s" }
        ));
    }
    out
}

/// The details of one incident, for `/medic incident ID`.
pub fn incident_detail(i: &Incident) -> String {
    let mut out = format!(
        "**Incident #{}** {} — {} ({}, grade {:.2})\nruns: {} (latest {}), opened {}, updated {}",
        i.id,
        inert_text(&i.pipeline),
        i.status.label(),
        i.severity.as_str(),
        i.max_grade,
        i.run_count,
        inert_text(&i.latest_run.run_id),
        i.opened_at.format("%Y-%m-%d %H:%M UTC"),
        i.updated_at.format("%Y-%m-%d %H:%M UTC"),
    );
    for d in &i.verdict.deviations {
        out.push_str(&format!(
            "\n- {}: {} — {}",
            inert_text(&d.metric),
            deviation_line(d),
            inert_text(&d.describe())
        ));
    }
    if i.silenced {
        out.push_str("\n(silenced: not posted)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_cannot_mention_anyone() {
        let links = markup::LinkPolicy::default();
        let shown = inert("<!channel> hi @everyone and @here <https://x|y>");
        markup::tests::assert_inert_slack(&markup::to_slack(&shown, &links));
        markup::tests::assert_inert_discord(&markup::to_discord(&shown, &links));
    }

    /// A run whose every free field carries something hostile.
    pub(crate) fn hostile_incident() -> Incident {
        let hostile = markup::tests::HOSTILE.join(" ");
        let run: crate::domain::Run = serde_json::from_value(serde_json::json!({
            "pipeline": format!("svc <!channel> {hostile}"),
            "run_id": "<@U123> [click](http://evil.example)",
            "status": "failed",
            "stage": "@everyone *bold* `code` &lt;",
            "commit": "<!here>abcdef",
            "commit_message": hostile,
            "url": "http://evil.example/run",
            "log_url": "https://github.com/o/r/actions/runs/1",
        }))
        .unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        Incident {
            id: 7,
            pipeline: run.pipeline.clone(),
            status: IncidentStatus::Open,
            severity: IncidentSeverity::Critical,
            max_grade: 0.9,
            anomaly_id: None,
            first_run_pk: 1,
            last_run_pk: 1,
            run_count: 2,
            opened_at: at,
            updated_at: at,
            resolved_at: None,
            route: None,
            root_ref: None,
            verdict: crate::domain::Verdict {
                grade: 0.9,
                deviations: vec![MetricDeviation {
                    metric: "<!channel>_[x](http://evil.example)".into(),
                    observed: 2.0,
                    expected: 1.0,
                    direction: Direction::Up,
                    attribution: 1.0,
                    dismissed: None,
                }],
                ..Default::default()
            },
            latest_run: run,
            silenced: false,
        }
    }

    /// Every text of a card as each platform shows it.
    fn rendered(card: &ChatMessage) -> (String, String) {
        let links = markup::LinkPolicy::default();
        let slack = serde_json::to_string(&crate::chat::slack::content(card, &links)).unwrap();
        let discord = serde_json::to_string(&crate::chat::discord::embed(card, &links)).unwrap();
        (slack, discord)
    }

    #[test]
    fn hostile_run_fields_render_inert_on_slack_and_discord() {
        let incident = hostile_incident();
        for card in [
            incident_card(&incident),
            repeat_line(&incident),
            status_line(
                7,
                IncidentStatus::Open,
                Some("<!channel> [x](http://evil.example)"),
            ),
            ChatMessage::new(
                "list",
                Severity::Info,
                incident_list(std::slice::from_ref(&incident)),
            ),
            ChatMessage::new("detail", Severity::Info, incident_detail(&incident)),
        ] {
            let (slack, discord) = rendered(&card);
            // JSON escapes `<` as itself and `\` as `\\`; read the values.
            let slack_texts = json_strings(&slack);
            let discord_texts = json_strings(&discord);
            for t in &slack_texts {
                markup::tests::assert_inert_slack(t);
            }
            for t in &discord_texts {
                markup::tests::assert_inert_discord(t);
            }
        }
        // The CI system's own link stays live; the payload's other URL does not.
        let (slack, discord) = rendered(&incident_card(&incident));
        assert!(
            slack.contains("<https://github.com/o/r/actions/runs/1|logs>"),
            "{slack}"
        );
        assert!(
            discord.contains("[logs](https://github.com/o/r/actions/runs/1)"),
            "{discord}"
        );
        // Entities written by the payload stay text: `&lt;` shows as `&lt;`.
        assert!(slack.contains("&amp;lt;"), "{slack}");
    }

    fn json_strings(json: &str) -> Vec<String> {
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) => out.push(s.clone()),
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&serde_json::from_str(json).unwrap(), &mut out);
        out
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(910.0), "910");
        assert_eq!(number(431.25), "431.2");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(0.0456), "0.0456");
        assert_eq!(number(0.0), "0");
        let d = MetricDeviation {
            metric: "duration_s".into(),
            observed: 910.0,
            expected: 431.0,
            direction: Direction::Up,
            attribution: 0.72,
            dismissed: None,
        };
        assert_eq!(deviation_line(&d), "910 vs 431 expected (↑, 72%)");
    }

    #[test]
    fn cards_link_to_the_console_only_with_a_public_url() {
        let card = ChatMessage::new("t", Severity::Info, "body");
        let linked = with_console_link(card.clone(), "https://pm.example.com/", 7);
        assert!(linked
            .text
            .contains("https://pm.example.com/ui/incidents/7"));
        assert_eq!(with_console_link(card, "  ", 7).text, "body");
    }
}

/// One fix of a plan with what the record says about it, for
/// [`track_record_text`].
#[derive(Debug, Clone, Copy)]
pub struct FixOnCard<'a> {
    pub playbook: &'a str,
    pub action: &'a str,
    /// Its record on the pipeline (`None`: never offered there before).
    pub record: Option<&'a TrackRecord>,
}

/// The track record part of a plan card: one line per fix ("healed 4 of 5
/// times on checkout-service, median 22 min; rejected once: 'not
/// flaky'"), and a warning for a fix that did not heal the pipeline twice
/// or more for this same failure (`signature`). Every value is inert.
pub fn track_record_text(pipeline: &str, signature: &Signature, fixes: &[FixOnCard<'_>]) -> String {
    let mut out = String::from("**Track record:**\n");
    for fix in fixes {
        let name = inert_text(&format!("{}/{}", fix.playbook, fix.action));
        let said = match fix.record {
            Some(record) => inert_text(&record.sentence()),
            None => format!("never offered on {} before", inert_text(pipeline)),
        };
        out.push_str(&format!("- `{name}`: {said}\n"));
    }
    for fix in fixes {
        let Some(record) = fix.record else { continue };
        let failed = record.not_healed_for(signature);
        if failed >= 2 {
            out.push_str(&format!(
                "⚠️ **Warning:** `{}` did not heal {} {} before for this same failure ({}). Approve it again only if something changed.\n",
                inert_text(&format!("{}/{}", fix.playbook, fix.action)),
                inert_text(pipeline),
                times(failed),
                inert_text(&signature.describe())
            ));
        }
    }
    out
}

/// The line under a plan that runs without waiting for votes because its
/// fixes earned it (`why`, from the record), with how to stop that.
pub fn earned_autonomy_text(pipeline: &str, why: &str) -> String {
    format!(
        "🤖 **Running without waiting for approval** (earned autonomy): {}.\nTo stop automatic runs on {}, press **Stop automatic runs** or send `/medic stop-auto {}`.\n",
        inert_text(why),
        inert_text(pipeline),
        inert_text(pipeline)
    )
}
