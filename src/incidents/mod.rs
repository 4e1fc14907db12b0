//! Incidents: turns abnormal runs into incidents and incidents into chat.
//!
//! [`IncidentService`] receives every [`ScoredRun`] detection produced
//! (through [`IncidentService::sender`]). An abnormal run of a pipeline
//! whose incident is still ongoing and was updated within
//! `incidents.group_window_h` joins that incident (the alert is edited and
//! a line goes to its thread); otherwise it opens a new incident, whose
//! alert is queued for the pipeline's routed channel with a PNG chart of
//! the metric that is most off (queued just after the alert, so drawing
//! never delays it). A silenced pipeline's incident is recorded but not
//! posted. Status changes ([`IncidentService::set_status`]) edit the alert
//! and say so in its thread. Messages are queued in the durable chat outbox
//! in the same transaction as the incident change, and audited.
//!
//! This module never calls a chat platform itself and does not plan,
//! remediate or resolve: it passes every run it handled on (the
//! `handled` channel start-up gives it) to the work that does
//! ([`crate::healing`]), which speaks in the incident's thread through
//! [`IncidentService::post_in_thread`] and moves it with
//! [`IncidentService::set_status`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::charts::{self, HistoryChart};
use crate::chat::outbox::{self, OutboxPayload, OutboxSignal};
use crate::chat::{cards, ChatMessage};
use crate::clock::Clock;
use crate::config::{Config, IncidentsConfig};
use crate::domain::Platform;
use crate::domain::{Incident, IncidentStatus, ScoredRun};
use crate::metrics::Metrics;
use crate::store::{NewIncident, OutboxKind, Store, StoreError, WriteTx};

pub use crate::chat::routing::{Route, Routes};

/// How many scored runs may wait for the incident service.
pub const QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("no incident #{0}")]
    NotFound(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A scored run and what the incident service did with it.
#[derive(Debug, Clone)]
pub struct HandledRun {
    pub scored: ScoredRun,
    pub handled: Handled,
}

/// What handling one scored run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// A normal run (or one already handled): nothing to do here.
    Ignored,
    Opened(i64),
    Updated(i64),
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    config: IncidentsConfig,
    /// `server.public_url`, for links to the web console on alert cards.
    public_url: String,
    routes: Routes,
    /// Platforms with a configured adapter; routes to others are not posted.
    platforms: Vec<Platform>,
    signal: OutboxSignal,
    sender: mpsc::Sender<ScoredRun>,
    /// Where handled runs go on to (healing).
    next: mpsc::Sender<HandledRun>,
    unrouted: Mutex<HashSet<String>>,
}

/// The incident service; cheap to clone.
#[derive(Clone)]
pub struct IncidentService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IncidentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncidentService").finish_non_exhaustive()
    }
}

/// The channel ends the incident service sends on; start-up makes both
/// channels and hands the receiving ends to [`IncidentService::start`] and
/// to healing.
#[derive(Debug, Clone)]
pub struct IncidentChannels {
    /// Scored runs from detection (this service receives them itself).
    pub scored: mpsc::Sender<ScoredRun>,
    /// Every run handled, in order, on to healing.
    pub handled: mpsc::Sender<HandledRun>,
}

impl IncidentService {
    /// A service posting to the `platforms` that have an adapter.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        config: &Config,
        platforms: Vec<Platform>,
        signal: OutboxSignal,
        channels: IncidentChannels,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                metrics,
                config: config.incidents.clone(),
                public_url: config.server.public_url.clone(),
                routes: Routes::from_config(&config.chat),
                platforms,
                signal,
                sender: channels.scored,
                next: channels.handled,
                unrouted: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Where detection hands every scored run, in scoring order:
    /// `incidents.sender().send(scored).await`.
    pub fn sender(&self) -> mpsc::Sender<ScoredRun> {
        self.inner.sender.clone()
    }

    /// The outbox signal this service wakes after queueing.
    pub fn signal(&self) -> &OutboxSignal {
        &self.inner.signal
    }

    /// Where `pipeline`'s alerts go, if it is routed to a platform that is
    /// configured.
    pub fn route(&self, pipeline: &str) -> Option<Route> {
        let route = self.inner.routes.route(pipeline)?;
        let available = self
            .inner
            .platforms
            .iter()
            .any(|p| p.as_str() == route.platform);
        if available {
            Some(route.clone())
        } else {
            self.log_unrouted(pipeline, Some(&route.platform));
            None
        }
    }

    fn log_unrouted(&self, pipeline: &str, platform: Option<&str>) {
        let mut seen = self
            .inner
            .unrouted
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.insert(pipeline.to_string()) {
            match platform {
                Some(platform) => tracing::warn!(pipeline, platform, "Pipeline is routed to a chat platform that is not configured; its alerts are not posted."),
                None => tracing::warn!(pipeline, "No chat route matches this pipeline; its alerts are not posted (see [[chat.routes]])."),
            }
        }
    }

    /// Consumes scored runs until `shutdown` (call once).
    pub fn start(
        &self,
        mut receiver: mpsc::Receiver<ScoredRun>,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: &CancellationToken,
    ) {
        let service = self.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            loop {
                let scored = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = receiver.recv() => match next {
                        Some(scored) => scored,
                        None => break,
                    },
                };
                let (pipeline, run_id) = (scored.run.pipeline.clone(), scored.run.run_id.clone());
                match service.handle(scored.clone()).await {
                    Ok(handled) => service.forward(HandledRun { scored, handled }).await,
                    Err(e) => {
                        service.inner.metrics.background_error("incidents");
                        tracing::error!(pipeline = %pipeline, run_id = %run_id, error = %e, "Cannot record the incident of an abnormal run.");
                    }
                }
            }
        });
    }

    /// Handles one scored run: opens or updates its pipeline's incident when
    /// the run is abnormal. Idempotent per run.
    #[tracing::instrument(skip_all, fields(pipeline = %scored.run.pipeline, run_id = %scored.run.run_id))]
    pub async fn handle(&self, scored: ScoredRun) -> Result<Handled, IncidentError> {
        if !scored.verdict.is_anomalous() {
            return Ok(Handled::Ignored);
        }
        let inner = &self.inner;
        let now = inner.clock.now();
        let pipeline = scored.run.pipeline.clone();
        let silences = inner.store.active_silences(now).await?;
        let silenced = crate::chat::routing::silenced_by(&silences, &pipeline).is_some();
        let route = if silenced {
            None
        } else {
            let route = self.route(&pipeline);
            if route.is_none() && inner.routes.route(&pipeline).is_none() {
                self.log_unrouted(&pipeline, None);
            }
            route
        };
        let mut tx = inner.store.begin_write().await?;
        let window = Duration::hours(i64::try_from(inner.config.group_window_h).unwrap_or(6));
        if let Some(current) = tx.latest_active_incident(&pipeline).await? {
            if current.last_run_pk == scored.run_pk || current.first_run_pk == scored.run_pk {
                return Ok(Handled::Ignored);
            }
            if now - current.updated_at <= window {
                tx.extend_incident(current.id, scored.run_pk, &scored.run, &scored.verdict, now)
                    .await?;
                let incident = tx
                    .incident(current.id)
                    .await?
                    .ok_or(IncidentError::NotFound(current.id))?;
                if !incident.silenced {
                    if let Some((platform, channel)) = &incident.route {
                        let card = OutboxPayload::message(self.card(&incident), None);
                        outbox::queue(
                            &mut tx,
                            Some(incident.id),
                            platform,
                            channel,
                            OutboxKind::Update,
                            &card,
                            now,
                        )
                        .await?;
                        let line = OutboxPayload::message(cards::repeat_line(&incident), None);
                        outbox::queue(
                            &mut tx,
                            Some(incident.id),
                            platform,
                            channel,
                            OutboxKind::ThreadReply,
                            &line,
                            now,
                        )
                        .await?;
                    }
                }
                tx.commit_audited(
                    now,
                    "incident.updated",
                    &format!("incident/{}", incident.id),
                    "pipemedic",
                    &json!({"pipeline": pipeline, "run_id": scored.run.run_id, "run_pk": scored.run_pk,
                            "grade": scored.verdict.grade, "run_count": incident.run_count}),
                )
.await?;
                inner.signal.notify();
                tracing::info!(
                    incident_id = incident.id,
                    run_count = incident.run_count,
                    "Abnormal run joined its incident."
                );
                return Ok(Handled::Updated(incident.id));
            }
        }
        let id = tx
            .insert_incident(
                &NewIncident {
                    pipeline: &pipeline,
                    run_pk: scored.run_pk,
                    run: &scored.run,
                    verdict: &scored.verdict,
                    route: route
                        .as_ref()
                        .map(|r| (r.platform.as_str(), r.channel.as_str())),
                    silenced,
                },
                now,
            )
            .await?;
        if let Some(route) = &route {
            let incident = tx.incident(id).await?.ok_or(IncidentError::NotFound(id))?;
            let card = OutboxPayload::message(self.card(&incident), None);
            outbox::queue(
                &mut tx,
                Some(id),
                &route.platform,
                &route.channel,
                OutboxKind::Post,
                &card,
                now,
            )
            .await?;
        }
        tx.commit_audited(
            now,
            "incident.opened",
            &format!("incident/{id}"),
            "pipemedic",
            &json!({"pipeline": pipeline, "run_id": scored.run.run_id, "run_pk": scored.run_pk,
                    "grade": scored.verdict.grade, "anomaly_id": scored.verdict.anomaly_id,
                    "silenced": silenced,
                    "route": route.as_ref().map(|r| json!({"platform": r.platform, "channel": r.channel}))}),
        )
.await?;
        inner.signal.notify();
        tracing::info!(
            incident_id = id,
            silenced,
            routed = route.is_some(),
            "Incident opened."
        );
        // The chart follows the alert: drawing it never delays the alert.
        if let Some(route) = &route {
            if let Err(e) = self.queue_chart(id, route, &scored).await {
                tracing::warn!(incident_id = id, error = %e, "Cannot queue the incident's chart.");
            }
        }
        Ok(Handled::Opened(id))
    }

    /// Hands a handled run to healing without waiting: when its queue is
    /// full the hand-off is dropped and counted
    /// (`pipemedic_handoffs_dropped_total{queue="handled"}`), so healing
    /// never holds up incidents, scoring or ingest.
    async fn forward(&self, handled: HandledRun) {
        match self.inner.next.try_send(handled) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(handled)) => {
                self.inner.metrics.handoff_dropped("handled");
                tracing::warn!(pipeline = %handled.scored.run.pipeline, run_id = %handled.scored.run.run_id, "The healing queue is full; handled run not handed on.");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("Nobody receives handled runs any more.");
            }
        }
    }

    /// Queues `message` in the thread of incident `id`'s alert (nothing
    /// when the incident is silenced or not routed). Returns whether it was
    /// queued.
    pub async fn post_in_thread(
        &self,
        id: i64,
        message: ChatMessage,
    ) -> Result<bool, IncidentError> {
        let now = self.inner.clock.now();
        let mut tx = self.inner.store.begin_write().await?;
        let incident = tx.incident(id).await?.ok_or(IncidentError::NotFound(id))?;
        let Some((platform, channel)) = incident.route.as_ref().filter(|_| !incident.silenced)
        else {
            return Ok(false);
        };
        outbox::queue(
            &mut tx,
            Some(id),
            platform,
            channel,
            OutboxKind::ThreadReply,
            &OutboxPayload::message(message, None),
            now,
        )
        .await?;
        tx.commit().await?;
        self.inner.signal.notify();
        Ok(true)
    }

    /// Shows `text` only to `user` in `channel` of `platform` (a Slack
    /// ephemeral message; on platforms without them, the adapter's nearest
    /// private equivalent).
    pub async fn tell(
        &self,
        incident_id: Option<i64>,
        platform: &str,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), StoreError> {
        self.queue_one(
            incident_id,
            platform,
            channel,
            OutboxKind::Ephemeral,
            &OutboxPayload::ephemeral(user, text),
        )
        .await
    }

    /// Queues one message in its own transaction and wakes the outbox.
    async fn queue_one(
        &self,
        incident_id: Option<i64>,
        platform: &str,
        channel: &str,
        kind: OutboxKind,
        payload: &OutboxPayload,
    ) -> Result<(), StoreError> {
        let now = self.inner.clock.now();
        let mut tx = self.inner.store.begin_write().await?;
        outbox::queue(&mut tx, incident_id, platform, channel, kind, payload, now).await?;
        tx.commit().await?;
        self.inner.signal.notify();
        Ok(())
    }

    /// Queues the chart of a new incident into its alert's thread.
    async fn queue_chart(
        &self,
        id: i64,
        route: &Route,
        scored: &ScoredRun,
    ) -> Result<(), StoreError> {
        let Some((metric, png, band)) = self.chart(scored).await else {
            return Ok(());
        };
        let pipeline = &scored.run.pipeline;
        let upload = OutboxPayload::png(
            &format!("{}-{metric}.png", sanitize(pipeline)),
            &format!(
                "{pipeline}: {metric}, recent history; shaded: {}",
                band.describe()
            ),
            &png,
            None,
        );
        self.queue_one(
            Some(id),
            &route.platform,
            &route.channel,
            OutboxKind::Upload,
            &upload,
        )
        .await
    }

    /// The alert card of `incident`, with the links of its route, and a
    /// link to its console page when `server.public_url` is set.
    fn card(&self, incident: &Incident) -> ChatMessage {
        let links = self.inner.routes.links(&incident.pipeline);
        cards::with_console_link(
            cards::incident_card(incident).links(crate::chat::links::render(links, incident)),
            &self.inner.public_url,
            incident.id,
        )
    }

    /// `server.public_url` (empty when not set).
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The incident settings (grouping window, chart history).
    pub fn config(&self) -> &IncidentsConfig {
        &self.inner.config
    }

    /// Moves an incident to `status`: edits its alert and adds a line to
    /// its thread (with `note`), audited as done by `actor`.
    #[tracing::instrument(skip(self, note))]
    pub async fn set_status(
        &self,
        id: i64,
        status: IncidentStatus,
        note: Option<&str>,
        actor: &str,
    ) -> Result<Incident, IncidentError> {
        let now = self.inner.clock.now();
        let mut tx = self.inner.store.begin_write().await?;
        let before = tx.incident(id).await?.ok_or(IncidentError::NotFound(id))?;
        tx.set_incident_status(id, status, now).await?;
        let incident = tx.incident(id).await?.ok_or(IncidentError::NotFound(id))?;
        if before.status != status {
            self.queue_status(&mut tx, &incident, note, now).await?;
        }
        tx.commit_audited(
            now,
            "incident.status",
            &format!("incident/{id}"),
            actor,
            &json!({"from": before.status.as_str(), "to": status.as_str(), "note": note}),
        )
        .await?;
        self.inner.signal.notify();
        Ok(incident)
    }

    async fn queue_status(
        &self,
        tx: &mut WriteTx,
        incident: &Incident,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if incident.silenced {
            return Ok(());
        }
        let Some((platform, channel)) = &incident.route else {
            return Ok(());
        };
        let card = OutboxPayload::message(self.card(incident), None);
        outbox::queue(
            tx,
            Some(incident.id),
            platform,
            channel,
            OutboxKind::Update,
            &card,
            now,
        )
        .await?;
        let line =
            OutboxPayload::message(cards::status_line(incident.id, incident.status, note), None);
        outbox::queue(
            tx,
            Some(incident.id),
            platform,
            channel,
            OutboxKind::ThreadReply,
            &line,
            now,
        )
        .await?;
        Ok(())
    }

    /// The chart of the run's most deviating metric (duration without
    /// deviations): `(metric, PNG, what its band is)`, or `None` without
    /// history. The band is the range detection expected of this run
    /// when the verdict kept one.
    async fn chart(&self, scored: &ScoredRun) -> Option<(String, Vec<u8>, ChartBand)> {
        let top = scored.verdict.deviations.first();
        let metric = top.map_or("duration_s".to_string(), |d| d.metric.clone());
        let at = scored
            .run
            .event_time()
            .unwrap_or_else(|| self.inner.clock.now());
        let observed = top.map(|d| d.observed);
        let title = format!("{} {metric}", scored.run.pipeline);
        let expected = scored.verdict.expectation(&metric).map(|e| (e.low, e.high));
        chart_png(
            &self.inner.store,
            &scored.run.pipeline,
            &metric,
            at,
            observed,
            expected,
            &title,
            &self.inner.config,
        )
        .await
        .map(|(png, band)| (metric, png, band))
    }
}

/// Which range a chart shades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartBand {
    /// The range detection expected of the marked run (its verdict's
    /// expectation: the usual value give or take the metric's margin).
    Expected,
    /// The 5th to 95th percentile of the runs before it (no expectation
    /// kept: warming up, a question without a run, or an older verdict).
    Percentiles,
    /// Too little history for either.
    None,
}

impl ChartBand {
    /// What the shading is, for the chart's caption.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Expected => "the range detection expected of this run",
            Self::Percentiles => "5th to 95th percentile of the earlier runs",
            Self::None => "nothing (too little history for a normal range)",
        }
    }
}

/// Renders the recent history of one metric (the last `chart_days` days,
/// at most `chart_runs` points up to `at`), marking the point at `at`, and
/// shades `expected` (what detection expected of that run) or, without
/// it, the percentile band of the earlier points. `None` when there is
/// nothing to draw.
#[allow(clippy::too_many_arguments)]
pub async fn chart_png(
    store: &Store,
    pipeline: &str,
    metric: &str,
    at: DateTime<Utc>,
    observed: Option<f64>,
    expected: Option<(f64, f64)>,
    title: &str,
    config: &IncidentsConfig,
) -> Option<(Vec<u8>, ChartBand)> {
    let days = i64::try_from(config.chart_days).unwrap_or(30);
    let from = at - Duration::days(days);
    let mut points = match store
        .samples(pipeline, metric, from, at + Duration::milliseconds(1))
        .await
    {
        Ok(points) => points,
        Err(e) => {
            tracing::warn!(pipeline, metric, error = %e, "Cannot read history for a chart.");
            return None;
        }
    };
    if points.len() > config.chart_runs {
        points.drain(..points.len() - config.chart_runs);
    }
    let marked = observed
        .map(|v| (at, v))
        .or_else(|| points.iter().rev().find(|p| p.0 == at).copied());
    if let Some(m) = marked {
        if !points.iter().any(|p| p.0 == m.0) {
            points.push(m);
            points.sort_by_key(|p| p.0);
        }
    }
    if points.is_empty() {
        return None;
    }
    let (band, shown) = match expected.filter(|(low, high)| low.is_finite() && high.is_finite()) {
        Some(range) => (Some(range), ChartBand::Expected),
        None => match charts::normal_band(&points, at) {
            Some(range) => (Some(range), ChartBand::Percentiles),
            None => (None, ChartBand::None),
        },
    };
    let title = title.to_string();
    let rendered = tokio::task::spawn_blocking(move || {
        charts::render_png(&HistoryChart {
            title: &title,
            points: &points,
            band,
            marked,
        })
    })
    .await;
    match rendered {
        Ok(Ok(png)) => Some((png, shown)),
        Ok(Err(e)) => {
            tracing::warn!(pipeline, metric, error = %e, "Cannot draw a chart.");
            None
        }
        Err(e) => {
            tracing::warn!(pipeline, metric, error = %e, "Chart rendering panicked.");
            None
        }
    }
}

/// A pipeline name usable in a file name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
