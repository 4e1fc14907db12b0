//! Cards: what incidents look like in chat, as platform-neutral
//! [`ChatMessage`]s, and the shared text helpers (numbers, inert text). Pure formatting; what to post and
//! when is the services' decision, and the adapters turn cards into Block
//! Kit or embeds.

use crate::chat::{ChatMessage, Severity};
use crate::domain::{Direction, Incident, IncidentSeverity, IncidentStatus, MetricDeviation};

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
        incident.pipeline,
        incident.id
    );
    let mut text = match verdict.deviations.first() {
        Some(top) => format!("**{}** is off: {}", top.metric, top.describe()),
        None => "The run does not look like this pipeline's normal.".to_string(),
    };
    for d in verdict.deviations.iter().skip(1) {
        text.push_str(&format!("\nAlso: {}", d.describe()));
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
        links.push(format!("[run]({url})"));
    }
    if let Some(url) = &run.log_url {
        links.push(format!("[logs]({url})"));
    }
    if !links.is_empty() {
        text.push_str(&format!("\n{}", links.join(" · ")));
    }
    let mut card = ChatMessage::new(title, severity(incident), text)
        .field("Run", format!("{} ({})", run.run_id, run.status))
        .field(
            "Commit",
            run.commit
                .as_deref()
                .map(|c| c.chars().take(12).collect::<String>())
                .unwrap_or_else(|| "-".into()),
        )
        .field(
            "Grade",
            format!("{:.2} ({})", verdict.grade, incident.severity.as_str()),
        )
        .field("Status", incident.status.label().to_string());
    if let Some(stage) = &run.stage {
        card = card.field("Stage", stage.clone());
    }
    for d in &verdict.deviations {
        card = card.field(d.metric.clone(), deviation_line(d));
    }
    card.footer(format!(
        "pipemedic · incident #{} · opened {}",
        incident.id,
        incident.opened_at.format("%Y-%m-%d %H:%M UTC")
    ))
}

/// A short thread line: a status change, with an optional note.
pub fn status_line(incident_id: i64, status: IncidentStatus, note: Option<&str>) -> ChatMessage {
    let text = match note {
        Some(note) if !note.is_empty() => format!("Status: **{}**. {note}", status.label()),
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
        .map(|d| format!(": {} {}", d.metric, deviation_line(d)))
        .unwrap_or_default();
    ChatMessage::new(
        format!("Incident #{}: still abnormal", incident.id),
        Severity::Info,
        format!(
            "Run {} is still abnormal (grade {:.2}){top}.",
            run.run_id, incident.verdict.grade
        ),
    )
}

/// Text from outside (an answer quoting commit messages or log lines, a
/// model's words) made inert in chat: no `<!channel>`-style Slack
/// mentions or links, no Discord `@everyone` / `@here`.
pub fn inert(text: &str) -> String {
    text.replace('<', "‹")
        .replace('>', "›")
        .replace("@everyone", "@\u{200b}everyone")
        .replace("@here", "@\u{200b}here")
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
            .map(|d| format!(", {} {}", d.metric, deviation_line(d)))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n- #{} {} — {} ({}), {} run{}{top}",
            i.id,
            i.pipeline,
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
        i.pipeline,
        i.status.label(),
        i.severity.as_str(),
        i.max_grade,
        i.run_count,
        i.latest_run.run_id,
        i.opened_at.format("%Y-%m-%d %H:%M UTC"),
        i.updated_at.format("%Y-%m-%d %H:%M UTC"),
    );
    for d in &i.verdict.deviations {
        out.push_str(&format!(
            "\n- {}: {} — {}",
            d.metric,
            deviation_line(d),
            d.describe()
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
        assert_eq!(
            inert("<!channel> hi @everyone and @here <https://x|y>"),
            "‹!channel› hi @\u{200b}everyone and @\u{200b}here ‹https://x|y›"
        );
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
}
