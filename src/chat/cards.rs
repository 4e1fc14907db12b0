//! Cards: what incidents and health summaries look like in chat, as
//! platform-neutral [`ChatMessage`]s. Pure formatting; what to post and
//! when is the services' decision, and the adapters turn cards into Block
//! Kit or embeds.

use crate::chat::{ChatMessage, Severity};
use crate::domain::{Direction, Incident, IncidentSeverity, IncidentStatus, MetricDeviation};
use crate::health::PipelineHealth;

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

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn seconds(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}s"))
}

/// The health of a pipeline, the same numbers as `pipemedic health`.
pub fn health_text(h: &PipelineHealth) -> String {
    let last = h.last_run.as_ref().map_or("-".to_string(), |l| {
        format!(
            "{} {} at {}",
            l.run_id,
            l.status,
            l.finished_at.format("%Y-%m-%d %H:%M UTC")
        )
    });
    let mut text = format!(
        "**{}**\n- runs: {} in 7d, {} in 30d\n- success rate: {} (7d), {} (30d), {}\n\
         - duration: p50 {}, p95 {} (7d), {}\n- last run: {last}\n- open incidents: {}",
        h.pipeline,
        h.runs_7d,
        h.runs_30d,
        percent(h.success_rate_7d),
        percent(h.success_rate_30d),
        h.success_trend,
        seconds(h.duration_p50_s_7d),
        seconds(h.duration_p95_s_7d),
        h.duration_trend,
        h.open_incidents
    );
    for line in &h.last_verdict_why {
        text.push_str(&format!("\n- last verdict: {line}"));
    }
    if !h.weekly_rhythm_learned {
        text.push_str("\n- weekly rhythm: not learned yet");
    }
    text
}

/// The health of a pipeline as a card.
pub fn health_card(h: &PipelineHealth) -> ChatMessage {
    let severity = if h.open_incidents > 0 {
        Severity::Warning
    } else {
        Severity::Success
    };
    ChatMessage::new(format!("Health of {}", h.pipeline), severity, "")
        .field("Runs 7d / 30d", format!("{} / {}", h.runs_7d, h.runs_30d))
        .field("Success 7d", percent(h.success_rate_7d))
        .field("Success 30d", percent(h.success_rate_30d))
        .field("Duration p50 7d", seconds(h.duration_p50_s_7d))
        .field("Duration p95 7d", seconds(h.duration_p95_s_7d))
        .field("Open incidents", h.open_incidents.to_string())
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

/// An answer to a question as a card: the answer's text, its key numbers
/// as fields with their window and trend word, and its sources and backend
/// in the footer.
pub fn ask_card(answer: &crate::ask::Answer) -> ChatMessage {
    use serde_json::Value;
    let title = match (&answer.pipeline, &answer.window) {
        (Some(p), Some(w)) => format!("{p} · {}", w.label),
        (Some(p), None) => p.clone(),
        (None, Some(w)) => format!("pipemedic · {}", w.label),
        (None, None) => "pipemedic".to_string(),
    };
    let severity = if answer.is_refusal() || answer.fallback.is_some() {
        Severity::Warning
    } else {
        Severity::Info
    };
    let mut card = ChatMessage::new(inert(&title), severity, inert(&answer.answer));
    let fact = |name: &str| answer.fact(name, None).filter(|v| !v.is_null());
    let window_of = |name: &str| {
        answer
            .facts
            .iter()
            .find(|f| f.name == name && f.pipeline.is_none())
            .and_then(|f| f.window.clone())
            .unwrap_or_default()
    };
    let trend = |name: &str| fact(name).and_then(Value::as_str).unwrap_or("");
    let with_trend = |value: String, trend: &str| {
        if trend.is_empty() {
            value
        } else {
            format!("{value} ({trend})")
        }
    };
    if let Some(runs) = fact("runs").and_then(Value::as_u64) {
        card = card.field(format!("Runs ({})", window_of("runs")), runs.to_string());
    }
    if let Some(rate) = fact("success_rate").and_then(Value::as_f64) {
        card = card.field(
            format!("Success rate ({})", window_of("success_rate")),
            with_trend(percent(Some(rate)), trend("success_trend")),
        );
    }
    if let Some(p50) = fact("duration_p50_s").and_then(Value::as_f64) {
        card = card.field(
            format!("Duration p50 ({})", window_of("duration_p50_s")),
            with_trend(seconds(Some(p50)), trend("duration_trend")),
        );
    }
    if let Some(p95) = fact("duration_p95_s").and_then(Value::as_f64) {
        card = card.field(
            format!("Duration p95 ({})", window_of("duration_p95_s")),
            seconds(Some(p95)),
        );
    }
    let cited: Vec<String> = answer
        .sources
        .iter()
        .filter(|s| s.kind != crate::ask::SourceKind::Pipeline)
        .take(6)
        .map(|s| {
            let label = match s.kind {
                crate::ask::SourceKind::Incident => format!("incident #{}", s.id),
                _ => format!("run {}", s.id),
            };
            match &s.url {
                Some(url) if !url.contains(' ') && !url.contains(')') => {
                    format!("[{}]({url})", inert(&label))
                }
                _ => inert(&label),
            }
        })
        .collect();
    let by = match (answer.backend.as_str(), &answer.fallback) {
        (_, Some(_)) => "offline answer (the model could not answer)".to_string(),
        ("bedrock", None) => format!(
            "answered by Bedrock with {} tool call{}, numbers checked",
            answer.tools_used.len(),
            if answer.tools_used.len() == 1 {
                ""
            } else {
                "s"
            }
        ),
        _ => "answered offline".to_string(),
    };
    let footer = if cited.is_empty() {
        by
    } else {
        format!("Sources: {} · {by}", cited.join(", "))
    };
    card.footer(footer)
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
