//! Running approved steps off the healing task: each approved request runs
//! in a task of its own (tracked for shutdown), at most one task per
//! request in this process, and reports back to the healing task, which
//! says how it went in the thread and moves the incident on. The store's
//! claim of each step (committed before its call) keeps a step
//! exactly-once however many tasks or processes reach it.

use super::*;

impl HealingService {
    /// Runs the approved request's due steps in a task of its own; returns
    /// at once. Does nothing when a task of this process already runs it.
    pub(super) fn spawn_execution(
        &self,
        incident_id: i64,
        request_id: i64,
        report_unfinished: bool,
    ) {
        let fresh = match self.inner.running.lock() {
            Ok(mut running) => running.insert(request_id),
            Err(_) => false,
        };
        if !fresh {
            return;
        }
        let service = self.clone();
        let work = async move {
            let steps = service.inner.approvals.execute(request_id).await;
            if let Ok(mut running) = service.inner.running.lock() {
                running.remove(&request_id);
            }
            let done = StepsRan {
                incident_id,
                request_id,
                steps,
                report_unfinished,
            };
            if service.inner.ran.send(done).await.is_err() {
                tracing::warn!(
                    request_id,
                    "The healing task has stopped; a step report is not said in chat."
                );
            }
        };
        match self.inner.tracker.get() {
            Some(tracker) => {
                tracker.spawn(work);
            }
            None => {
                tokio::spawn(work);
            }
        }
    }

    /// Whether a task of this process is running `request_id`'s steps.
    pub(super) fn is_running(&self, request_id: i64) -> bool {
        self.inner
            .running
            .lock()
            .map(|r| r.contains(&request_id))
            .unwrap_or(false)
    }

    /// An execution task ended: say how the steps went and move the
    /// incident on.
    pub(super) async fn on_steps_ran(&self, done: StepsRan) -> Result<(), HealingError> {
        let steps = done.steps?;
        if done.report_unfinished {
            return self
                .report_steps(done.incident_id, done.request_id, &steps)
                .await;
        }
        let finished = self
            .inner
            .store
            .approval_request(done.request_id)
            .await?
            .is_some_and(|r| matches!(r.status, RequestStatus::Done | RequestStatus::Failed));
        if finished {
            self.report_finished(done.incident_id, done.request_id, &steps)
                .await?;
        }
        Ok(())
    }
}
