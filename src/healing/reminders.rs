//! Reminders: a plan still unapproved at half its approval window gets one
//! line in its thread saying who can still approve, how many approvals are
//! missing and when it expires, with the Approve / Reject buttons again.
//! The reminder is claimed in the store (`approval_reminders`) in the same
//! transaction that queues it in the chat outbox, so it goes out exactly
//! once however many replicas sweep, and is audited
//! (`approval.reminder`).

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;
use crate::approvals::{outstanding, Outstanding};
use crate::chat::outbox::{self, OutboxPayload};
use crate::store::OutboxKind;

impl HealingService {
    /// Sends the reminder of every pending plan past the middle of its
    /// window that has had none. Returns how many were sent.
    pub async fn remind_due(&self) -> Result<usize, HealingError> {
        let now = self.inner.clock.now();
        let mut sent = 0;
        for request in self.inner.store.requests_due_for_reminder(now).await? {
            let Ok(incident_id) = request.incident_ref.parse::<i64>() else {
                continue;
            };
            let counted: Vec<Vote> = self
                .inner
                .store
                .approval_votes(request.id)
                .await?
                .into_iter()
                .filter(|v| v.effective)
                .map(|v| v.vote)
                .collect();
            let missing = outstanding(
                self.inner.approvals.settings(),
                &RequestView::from(&request),
                &counted,
            );
            let text = reminder_text(&missing, request.expires_at, now);
            let value = messages::button_value(request.id);
            let message = ChatMessage::new(
                format!("Reminder: the plan for incident #{incident_id} awaits approval"),
                Severity::Warning,
                text,
            )
            .button(Choice::Approve, value.clone())
            .button(Choice::Reject, value);

            let mut tx = self.inner.store.begin_write().await?;
            if !tx.claim_reminder(request.id, now).await? {
                // Another replica reminded first.
                continue;
            }
            let mut queued = false;
            if let Some(incident) = tx.incident(incident_id).await? {
                if let Some((platform, channel)) =
                    incident.route.as_ref().filter(|_| !incident.silenced)
                {
                    outbox::queue(
                        &mut tx,
                        Some(incident_id),
                        platform,
                        channel,
                        OutboxKind::ThreadReply,
                        &OutboxPayload::message(message, None),
                        now,
                    )
                    .await?;
                    queued = true;
                }
            }
            tx.commit_audited(
                now,
                "approval.reminder",
                &format!("approval_request:{}", request.id),
                ACTOR,
                &json!({
                    "incident": incident_id, "expires_at": request.expires_at,
                    "missing": missing.iter().map(|o| json!({"approvals": o.missing, "from": o.from})).collect::<Vec<_>>(),
                    "posted": queued,
                }),
            )
            .await?;
            if queued {
                self.inner.incidents.signal().notify();
            }
            self.inner.metrics.healing("reminded");
            tracing::info!(
                request_id = request.id,
                incident_id,
                "Plan still unapproved at half its expiry; reminded."
            );
            sent += 1;
        }
        Ok(sent)
    }
}

/// The reminder's words: what is missing, from whom, and when the plan
/// expires.
pub(super) fn reminder_text(
    missing: &[Outstanding],
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    let needs = if missing.is_empty() {
        "It has the approvals it needs and is about to run.".to_string()
    } else {
        let parts: Vec<String> = missing
            .iter()
            .map(|o| {
                let who = if o.from.is_empty() {
                    "anyone who can see it".to_string()
                } else {
                    o.from
                        .iter()
                        .map(|f| format!("`{}`", chat::cards::inert(f)))
                        .collect::<Vec<_>>()
                        .join(" or ")
                };
                format!(
                    "**{}** more approval{} from {who}",
                    o.missing,
                    if o.missing == 1 { "" } else { "s" }
                )
            })
            .collect();
        format!("It still needs {}.", parts.join(", and "))
    };
    let left = (expires_at - now).num_minutes().max(0);
    format!(
        "This plan has waited half of its approval window. {needs}\nIt expires at {} (in {left} min); after that nothing runs.",
        expires_at.format("%Y-%m-%d %H:%M UTC")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reminder_says_who_how_many_and_when() {
        let now: DateTime<Utc> = "2026-11-25T12:15:00Z".parse().unwrap();
        let expires: DateTime<Utc> = "2026-11-25T12:30:00Z".parse().unwrap();
        let text = reminder_text(
            &[Outstanding {
                missing: 2,
                from: vec!["group:sre".into(), "user:U1".into()],
            }],
            expires,
            now,
        );
        assert!(
            text.contains("**2** more approvals from `group:sre` or `user:U1`"),
            "{text}"
        );
        assert!(text.contains("2026-11-25 12:30 UTC (in 15 min)"), "{text}");
        let anyone = reminder_text(
            &[Outstanding {
                missing: 1,
                from: Vec::new(),
            }],
            expires,
            now,
        );
        assert!(
            anyone.contains("**1** more approval from anyone"),
            "{anyone}"
        );
    }
}
