//! What answers to people look like in chat: a pipeline's health and an
//! answer to a question, as text and as platform-neutral cards. Pure
//! formatting over the health and ask vocabularies; the chat port's own
//! cards (incidents) stay in `chat::cards`.

use crate::ask::{Answer, SourceKind};
use crate::chat::cards::inert;
use crate::chat::{ChatMessage, Severity};
use crate::health::PipelineHealth;

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
            inert(&l.run_id),
            l.status,
            l.finished_at.format("%Y-%m-%d %H:%M UTC")
        )
    });
    let mut text = format!(
        "**{}**\n- runs: {} in 7d, {} in 30d\n- success rate: {} (7d), {} (30d), {}\n\
         - duration: p50 {}, p95 {} (7d), {}\n- last run: {last}\n- open incidents: {}",
        inert(&h.pipeline),
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
        text.push_str(&format!("\n- last verdict: {}", inert(line)));
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
    ChatMessage::new(format!("Health of {}", inert(&h.pipeline)), severity, "")
        .field("Runs 7d / 30d", format!("{} / {}", h.runs_7d, h.runs_30d))
        .field("Success 7d", percent(h.success_rate_7d))
        .field("Success 30d", percent(h.success_rate_30d))
        .field("Duration p50 7d", seconds(h.duration_p50_s_7d))
        .field("Duration p95 7d", seconds(h.duration_p95_s_7d))
        .field("Open incidents", h.open_incidents.to_string())
}

/// An answer to a question as a card: the answer's text, its key numbers
/// as fields with their window and trend word, and its sources and backend
/// in the footer.
pub fn ask_card(answer: &Answer) -> ChatMessage {
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
    let mut card = ChatMessage::new(
        inert(&title),
        severity,
        crate::chat::markup::prose(&answer.answer),
    );
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
        .filter(|s| s.kind != SourceKind::Pipeline)
        .take(6)
        .map(|s| {
            let label = match s.kind {
                SourceKind::Incident => format!("incident #{}", s.id),
                _ => format!("run {}", s.id),
            };
            match &s.url {
                Some(url) => crate::chat::markup::link(&label, url),
                None => inert(&label),
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
