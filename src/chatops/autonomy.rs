//! Stopping automatic runs from chat: the Stop automatic runs button under
//! a plan that ran on earned autonomy, and `/medic stop-auto PIPELINE`
//! (the console's way too). Either stores the stop for the pipeline
//! (audited as `autonomy.stopped`, with who and how) so that no fix runs
//! there again without approval, and says so in the plan's thread when it
//! came from a plan. Anyone who can see the pipeline may stop it: it only
//! ever makes pipemedic ask before acting. `/medic resume-auto PIPELINE`
//! lifts the stop; it needs `chat.admins` like the other commands that
//! change what pipemedic does on its own.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::service::ChatService;
use crate::chat::{ChatEvent, ChatMessage, ChatReply, Severity};
use crate::store::{Store, StoreError};

/// Stores that `pipeline` runs no fix without approval any more; false
/// when it already was stopped (nothing written then).
pub async fn stop_automatic(
    store: &Store,
    pipeline: &str,
    actor: &str,
    via: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = store.begin_write().await?;
    if !tx.stop_autonomy(pipeline, actor, via, now).await? {
        return Ok(false);
    }
    tx.commit_audited(
        now,
        "autonomy.stopped",
        &format!("pipeline/{pipeline}"),
        actor,
        &json!({"pipeline": pipeline, "via": via,
                "effect": "fixes on this pipeline wait for approval again, whatever their record"}),
    )
    .await?;
    Ok(true)
}

/// Lets fixes that earned autonomy run on `pipeline` on their own again
/// (audited as `autonomy.resumed`); false when it was not stopped.
pub async fn resume_automatic(
    store: &Store,
    pipeline: &str,
    actor: &str,
    via: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = store.begin_write().await?;
    if !tx.resume_autonomy(pipeline).await? {
        return Ok(false);
    }
    tx.commit_audited(
        now,
        "autonomy.resumed",
        &format!("pipeline/{pipeline}"),
        actor,
        &json!({"pipeline": pipeline, "via": via}),
    )
    .await?;
    Ok(true)
}

/// What the thread and the person hear after a stop.
pub fn stopped_text(pipeline: &str, who: &str, fresh: bool) -> String {
    let pipeline = crate::chat::cards::inert(pipeline);
    if fresh {
        format!(
            "{} stopped automatic runs on {pipeline}: every fix there waits for approval again.",
            crate::chat::cards::inert(who)
        )
    } else {
        format!("Automatic runs on {pipeline} were already stopped.")
    }
}

impl ChatService {
    /// The Stop automatic runs button (value `request:ID` of the plan that
    /// ran on its own): stops the plan's pipeline and says so in its
    /// thread.
    pub(super) async fn stop_button(
        &self,
        event: &ChatEvent,
        value: &str,
    ) -> Result<Option<ChatReply>, StoreError> {
        let Some(request_id) = value
            .strip_prefix("request:")
            .and_then(|v| v.parse::<i64>().ok())
        else {
            return Ok(Some(ChatReply::ephemeral(
                "That button names no plan; nothing changed.",
            )));
        };
        let Some(request) = self.store().approval_request(request_id).await? else {
            return Ok(Some(ChatReply::ephemeral(
                "That plan is no longer stored; nothing changed.",
            )));
        };
        let platform = event.platform();
        let actor = format!("{platform}:{}", event.user());
        let now = self.now();
        let fresh = stop_automatic(
            self.store(),
            &request.pipeline,
            &actor,
            &format!("{platform} button"),
            now,
        )
        .await?;
        let text = stopped_text(&request.pipeline, event.user(), fresh);
        if fresh {
            if let Ok(incident_id) = request.incident_ref.parse::<i64>() {
                let line = ChatMessage::new("Automatic runs stopped", Severity::Info, text.clone());
                if let Err(e) = self.incidents().post_in_thread(incident_id, line).await {
                    tracing::warn!(incident_id, error = %e, "Cannot queue a thread message.");
                }
            }
        }
        Ok(Some(ChatReply::ephemeral(text)))
    }
}
