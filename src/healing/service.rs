//! The healing service's life: construction from its parts, the task that
//! consumes handled runs and decisions in order (with the periodic sweep),
//! and the two ways it speaks (a line in the incident's thread, a status
//! change). It owns no decision of its own.

use super::*;

impl HealingService {
    pub fn new(parts: HealingParts) -> Self {
        let HealingParts {
            store,
            clock,
            metrics,
            incidents,
            planner,
            approvals,
            plan_incidents,
            groups,
            identities,
            decisions,
            paging,
            evidence,
        } = parts;
        let (ran, ran_rx) = mpsc::channel(QUEUE);
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                metrics,
                incidents,
                planner,
                approvals,
                plan_incidents,
                groups,
                identities,
                decisions,
                running: std::sync::Mutex::default(),
                ran,
                ran_rx: std::sync::Mutex::new(Some(ran_rx)),
                tracker: std::sync::OnceLock::new(),
                paging,
                evidence,
            }),
        }
    }

    pub fn approvals(&self) -> &Arc<ApprovalService> {
        &self.inner.approvals
    }

    /// The paging service (started with the healing task's siblings).
    pub fn paging(&self) -> &PagingService {
        &self.inner.paging
    }

    /// Hands a stored chat decision to the healing task.
    pub async fn decided(&self, event: DecisionEvent) {
        if self.inner.decisions.send(event).await.is_err() {
            tracing::warn!("The healing task has stopped; a decision was not acted on.");
        }
    }

    /// Runs the healing task until `shutdown` (call once): first sweeps
    /// (which recovers what a stopped process left), then handles runs,
    /// decisions and the reports of execution tasks in order and sweeps
    /// again every [`SWEEP_EVERY`]. Execution tasks are tracked by
    /// `tracker`.
    pub fn start(
        &self,
        mut runs: mpsc::Receiver<HandledRun>,
        mut decisions: mpsc::Receiver<DecisionEvent>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        let service = self.clone();
        let shutdown = shutdown.clone();
        let _ = self.inner.tracker.set(tracker.clone());
        let mut ran = match self.inner.ran_rx.lock() {
            Ok(mut rx) => rx.take(),
            Err(_) => None,
        };
        tracker.spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is now: sweep (recovery included) before any
            // run or decision.
            sweep.tick().await;
            if let Err(e) = service.sweep().await {
                service.failed("sweep", &e);
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(run) = runs.recv() => {
                        if let Err(e) = service.on_run(&run).await {
                            service.failed("run", &e);
                        }
                    }
                    Some(event) = decisions.recv() => {
                        if let Err(e) = service.handle_decision(&event).await {
                            service.failed("decision", &e);
                        }
                    }
                    Some(done) = async { match ran.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    } } => {
                        if let Err(e) = service.on_steps_ran(done).await {
                            service.failed("steps", &e);
                        }
                    }
                    _ = sweep.tick() => {
                        if let Err(e) = service.sweep().await {
                            service.failed("sweep", &e);
                        }
                    }
                }
            }
        });
    }

    pub(super) fn failed(&self, what: &str, e: &HealingError) {
        self.inner.metrics.background_error("healing");
        tracing::error!(step = what, error = %e, "Healing step failed.");
    }

    pub(super) async fn say(
        &self,
        incident_id: i64,
        title: &str,
        severity: Severity,
        text: String,
    ) {
        let message = ChatMessage::new(title, severity, text);
        if let Err(e) = self
            .inner
            .incidents
            .post_in_thread(incident_id, message)
            .await
        {
            tracing::warn!(incident_id, error = %e, "Cannot queue a thread message.");
        }
    }

    pub(super) async fn status(
        &self,
        incident_id: i64,
        status: IncidentStatus,
        note: Option<&str>,
    ) -> Result<Incident, HealingError> {
        let incident = self
            .inner
            .incidents
            .set_status(incident_id, status, note, ACTOR)
            .await?;
        if matches!(status, IncidentStatus::Resolved | IncidentStatus::Dismissed) {
            self.unpage(incident_id, status).await;
        }
        Ok(incident)
    }
}
