//! The gauges of work in flight, which live in the store rather than in
//! this process: incidents not yet closed by status
//! (`pipemedic_incidents_open`), pending chat outbox rows and the age of
//! the oldest per platform (`pipemedic_chat_outbox_depth`,
//! `pipemedic_chat_outbox_oldest_age_seconds`) and approval requests
//! waiting for votes (`pipemedic_approvals_pending`).
//!
//! They are read when `/metrics` is scraped, not by a periodic refresher:
//! the numbers are as fresh as the scrape, nothing runs when nobody
//! scrapes, and there is no task to start, stop or keep alive in the CLI
//! and the tests. The read is three indexed counts, bounded so that a slow
//! or unreachable store cannot hang the scrape:
//!
//! - it gives up after [`REFRESH_TIMEOUT`], well inside Prometheus' default
//!   scrape timeout (10 s), and the scrape is answered with the values of
//!   the last read that succeeded (a failed or abandoned read counts in
//!   `pipemedic_background_errors_total{task="metrics_store_gauges"}`);
//! - one read at a time: a scrape that arrives while another is reading
//!   does not queue a second read, it answers with the values it has.
//!
//! Every replica on one PostgreSQL reads the same rows, so these gauges are
//! the same on each: aggregate them with `max`, not `sum`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{help, Fixed, Metrics};
use crate::store::{Store, WorkInFlight};

/// How long one read of the store gauges may take.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// The store gauges and the guard that keeps their reads one at a time.
pub(super) struct StoreGauges {
    incidents_open: Family<Fixed, Gauge>,
    outbox_depth: Family<Fixed, Gauge>,
    outbox_oldest_age: Family<Fixed, Gauge<f64, AtomicU64>>,
    approvals_pending: Gauge,
    reading: tokio::sync::Mutex<()>,
}

impl StoreGauges {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let incidents_open = Family::<Fixed, Gauge>::default();
        registry.register(
            "pipemedic_incidents_open",
            help("Incidents not yet resolved or dismissed, by status (open, planning, awaiting_approval, remediating, verifying); read from the store at each scrape."),
            incidents_open.clone(),
        );
        let outbox_depth = Family::<Fixed, Gauge>::default();
        registry.register(
            "pipemedic_chat_outbox_depth",
            help("Chat deliveries queued and not yet sent, by platform; read from the store at each scrape."),
            outbox_depth.clone(),
        );
        let outbox_oldest_age = Family::<Fixed, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "pipemedic_chat_outbox_oldest_age_seconds",
            help("Seconds since the oldest queued chat delivery was queued, by platform (0 when none is queued); read from the store at each scrape."),
            outbox_oldest_age.clone(),
        );
        let approvals_pending = Gauge::default();
        registry.register(
            "pipemedic_approvals_pending",
            help("Approval requests waiting for votes; read from the store at each scrape."),
            approvals_pending.clone(),
        );
        Self {
            incidents_open,
            outbox_depth,
            outbox_oldest_age,
            approvals_pending,
            reading: tokio::sync::Mutex::new(()),
        }
    }
}

impl Metrics {
    /// Reads the work in flight from `store` into the store gauges, within
    /// [`REFRESH_TIMEOUT`]; `now` dates the outbox ages. When another read
    /// is under way, or this one fails or times out, the gauges keep their
    /// last values.
    pub async fn refresh_store_gauges(&self, store: &Store, now: DateTime<Utc>) {
        let Ok(_reading) = self.store.reading.try_lock() else {
            return;
        };
        match tokio::time::timeout(REFRESH_TIMEOUT, store.work_in_flight()).await {
            Ok(Ok(work)) => self.set_store_gauges(&work, now),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Store gauges not read; the last values are served.");
                self.background_error("metrics_store_gauges");
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = REFRESH_TIMEOUT.as_millis() as u64,
                    "Store gauges not read in time; the last values are served."
                );
                self.background_error("metrics_store_gauges");
            }
        }
    }

    /// Sets the store gauges from one reading.
    pub fn set_store_gauges(&self, work: &WorkInFlight, now: DateTime<Utc>) {
        let g = &self.store;
        for (status, n) in &work.incidents {
            g.incidents_open
                .get_or_create(&[("status", status.as_str())])
                .set(*n);
        }
        for backlog in &work.outbox {
            let label = [("platform", backlog.platform.as_str())];
            g.outbox_depth.get_or_create(&label).set(backlog.pending);
            let age = backlog
                .oldest_queued_at
                .map(|t| ((now - t).num_milliseconds() as f64 / 1000.0).max(0.0))
                .unwrap_or(0.0);
            g.outbox_oldest_age.get_or_create(&label).set(age);
        }
        g.approvals_pending.set(work.approvals_pending);
    }
}
