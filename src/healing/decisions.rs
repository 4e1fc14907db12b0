//! Decisions: a stored approve / reject from chat becomes a vote on the
//! plan's request; a vote that does not count is explained to its author
//! only (a vote the commit-author rule refuses is said in the thread too),
//! the one that completes the approvals starts the plan in a task of its own.
//! Decisions stored but never acted on are replayed by the sweep.

use super::*;

impl HealingService {
    /// Which request a decision on `event`'s message is about: the
    /// button's, the plan posted as that message, else the incident's
    /// newest.
    pub(super) async fn request_for(
        &self,
        event: &DecisionEvent,
    ) -> Result<Option<i64>, HealingError> {
        if let Some(id) = event.button_value.as_deref().and_then(request_of_value) {
            return Ok(Some(id));
        }
        let posted = self
            .inner
            .store
            .posted_payload(event.platform.as_str(), &event.channel, &event.message_ts)
            .await?;
        let from_message = posted.as_ref().and_then(|p| {
            p.pointer("/message/buttons")
                .and_then(Value::as_array)
                .and_then(|b| b.first())
                .and_then(|b| b.get("value"))
                .and_then(Value::as_str)
                .and_then(request_of_value)
        });
        if from_message.is_some() {
            return Ok(from_message);
        }
        Ok(self
            .inner
            .store
            .approval_requests_for_incident(&event.incident_id.to_string())
            .await?
            .last()
            .map(|r| r.id))
    }

    /// Acts on a decision, then notes it handled so no sweep replays it.
    pub(super) async fn handle_decision(&self, event: &DecisionEvent) -> Result<(), HealingError> {
        self.on_decision(event).await?;
        let mut tx = self.inner.store.begin_write().await?;
        tx.mark_decision_handled(
            event.platform.as_str(),
            &event.event_id,
            self.inner.clock.now(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Decisions stored more than [`DECISION_GRACE`] ago that no process
    /// acted on (it stopped between storing one and acting on it) are acted
    /// on now. A vote is stored once per platform event id, so a decision
    /// acted on twice still counts once.
    pub(super) async fn replay_decisions(&self) -> Result<(), HealingError> {
        let before =
            self.inner.clock.now() - chrono::Duration::from_std(DECISION_GRACE).unwrap_or_default();
        for stored in self.inner.store.unhandled_decisions(before, 100).await? {
            // Another replica's sweep may be at the same decision.
            let mut tx = self.inner.store.begin_write().await?;
            let mine = tx
                .claim_decision_replay(stored.id, before, self.inner.clock.now())
                .await?;
            tx.commit().await?;
            if !mine {
                continue;
            }
            let Some(platform) = Platform::parse(&stored.platform) else {
                tracing::warn!(platform = %stored.platform, "A stored decision names an unknown platform; skipped.");
                continue;
            };
            let event = DecisionEvent {
                incident_id: stored.incident_id,
                platform,
                channel: stored.message.channel.clone(),
                message_ts: stored.message.ts_or_id.clone(),
                user: stored.user,
                event_id: stored.event_id,
                choice: stored.decision,
                via: stored.via,
                // The plan message the button was on names its request.
                button_value: None,
            };
            tracing::info!(incident_id = event.incident_id, event_id = %event.event_id, "Acting on a chat decision its process left unhandled.");
            self.inner.metrics.healing("decision_replayed");
            self.handle_decision(&event).await?;
        }
        Ok(())
    }

    /// One approve / reject decision from chat.
    pub async fn on_decision(&self, event: &DecisionEvent) -> Result<(), HealingError> {
        let incident_id = event.incident_id;
        let tell = |text: String| async move {
            if let Err(e) = self
                .inner
                .incidents
                .tell(
                    Some(incident_id),
                    event.platform.as_str(),
                    &event.channel,
                    &event.user,
                    &text,
                )
                .await
            {
                tracing::warn!(incident_id, error = %e, "Cannot queue an explanation.");
            }
        };
        let Some(request_id) = self.request_for(event).await? else {
            tell(format!(
                "No plan of incident #{incident_id} is waiting for a decision."
            ))
            .await;
            return Ok(());
        };
        let request = self.inner.store.approval_request(request_id).await?;
        if request.as_ref().map(|r| r.incident_ref.as_str()) != Some(&incident_id.to_string()) {
            tell(format!(
                "That plan does not belong to incident #{incident_id}; nothing changed."
            ))
            .await;
            return Ok(());
        }
        let settings = self.inner.approvals.settings();
        let mut approver = Approver::new(event.platform.as_str(), &event.user);
        let view = match request.as_ref() {
            Some(r) => Some(
                RequestView::from(r).with_author_ids(self.inner.approvals.author_ids(r).await?),
            ),
            None => None,
        };
        // Who the person is matters only when authors are excluded and the
        // run names its author.
        let author_named = view
            .as_ref()
            .is_some_and(|v| v.commit_author.is_some() || !v.author_ids.is_empty());
        if author_named && !settings.commit_author_may_approve {
            let identity = self
                .inner
                .identities
                .identity(event.platform, &event.user)
                .await;
            if let Some(e) = &identity.lookup_failed {
                tracing::warn!(incident_id, platform = %event.platform, error = %e, "Cannot look up who a person deciding is; only configured identities count.");
            }
            approver.aliases = identity.ids;
        }
        // Groups matter only for someone not allowed as themselves.
        let needs_groups = view
            .as_ref()
            .is_some_and(|v| not_allowed_reason(v, &approver, settings).is_some());
        if let Some(request) = request.as_ref().filter(|_| needs_groups) {
            let candidates = candidate_groups(
                &RequestView::from(request),
                self.inner.approvals.settings(),
                event.platform.as_str(),
            );
            if !candidates.is_empty() {
                match self
                    .inner
                    .groups
                    .member_groups(event.platform, &event.channel, &event.user, &candidates)
                    .await
                {
                    Ok(groups) => approver.groups = groups,
                    Err(e) => {
                        tracing::warn!(incident_id, error = %e, "Cannot read the person's chat groups; the decision is not counted.");
                        tell(format!(
                            "pipemedic could not check your {} groups just now, so your decision was not counted; please try again.",
                            event.platform
                        ))
                        .await;
                        return Ok(());
                    }
                }
            }
        }
        let vote = Vote {
            approver,
            event_id: event.event_id.clone(),
            choice: event.choice,
            via: event.via,
            at: self.inner.clock.now(),
        };
        let outcome = self.inner.approvals.decide_vote(request_id, &vote).await?;
        let who = mention(event.platform, &event.user);
        match &outcome.decision {
            Ruling::Duplicate => {}
            Ruling::NotAllowed { .. } => {
                self.inner.metrics.healing("vote_refused");
                // The author rule is said in the thread, for everyone to see.
                let excluded = view
                    .as_ref()
                    .and_then(|v| author_exclusion(v, &vote.approver, settings));
                if let Some(reason) = excluded {
                    self.say(
                        incident_id,
                        "Decision not counted",
                        Severity::Warning,
                        format!("{who}'s decision was not counted: {reason}"),
                    )
                    .await;
                }
                tell(outcome.decision.explain()).await;
            }
            Ruling::Expired | Ruling::Stale | Ruling::AlreadyDecided { .. } => {
                self.inner.metrics.healing("vote_refused");
                tell(outcome.decision.explain()).await;
            }
            Ruling::Counted { .. } | Ruling::Rejected | Ruling::Approved => {
                let rejected = format!("plan rejected by {}", vote.approver.key());
                self.act_on_ruling(
                    incident_id,
                    request_id,
                    &outcome.decision,
                    &format!("{who} approved"),
                    &rejected,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// What a ruling that counted does, wherever the vote came from: an
    /// approval short of the quorum is said in the thread (`approved` says
    /// who and how, e.g. "<@U1> approved"), a rejection
    /// reopens the incident with `rejected_note`, and the approval that
    /// completes the quorum moves the incident to remediating and starts
    /// the plan in a task of its own. Other rulings do nothing here.
    pub(super) async fn act_on_ruling(
        &self,
        incident_id: i64,
        request_id: i64,
        ruling: &Ruling,
        approved: &str,
        rejected_note: &str,
    ) -> Result<(), HealingError> {
        match ruling {
            Ruling::Counted {
                approved_so_far,
                required,
            } => {
                self.say(
                    incident_id,
                    "Approval counted",
                    Severity::Info,
                    format!("{approved}: {approved_so_far} of {required} approvals. Nothing runs until all are in."),
                )
                .await;
            }
            Ruling::Rejected => {
                self.inner.metrics.healing("rejected");
                self.status(incident_id, IncidentStatus::Open, Some(rejected_note))
                    .await?;
            }
            Ruling::Approved => {
                self.inner.metrics.healing("approved");
                let approvers: Vec<String> = self
                    .inner
                    .store
                    .approval_votes(request_id)
                    .await?
                    .into_iter()
                    .filter(|v| v.effective && v.vote.choice == Choice::Approve)
                    .map(|v| v.vote.approver.key())
                    .collect();
                self.status(
                    incident_id,
                    IncidentStatus::Remediating,
                    Some(&format!("approved by {}", approvers.join(", "))),
                )
                .await?;
                // The steps run in a task of their own; their report comes
                // back to the healing task.
                self.spawn_execution(incident_id, request_id, true);
            }
            _ => {}
        }
        Ok(())
    }
}
