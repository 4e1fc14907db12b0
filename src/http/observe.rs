//! What the edge records about every request, and `GET /metrics`.
//!
//! [`observe`] wraps every route: it counts and times each request by
//! method, matched route template and status, counts refusals by reason,
//! and writes one access log line. Requests that matched no route are
//! labelled `unmatched`, so pipeline names, ids and probes of unknown paths
//! never become label values.
//!
//! The access log line (target `pipemedic::access`) carries the method, the
//! route template, the status and the time taken in milliseconds, and
//! nothing else: never the raw path, the query string, a header or a body,
//! so neither tokens nor pipeline data reach the logs through it. Probes
//! (`/healthz`, `/readyz`, `/metrics`) are logged at debug, every other
//! route at info.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppState, ErrorCode};
use crate::metrics::{method_label, UNMATCHED_ROUTE};

/// The target of the access log lines, for filtering
/// (`RUST_LOG=info,pipemedic::access=warn` turns them off).
pub const ACCESS_LOG_TARGET: &str = "pipemedic::access";

/// Routes that orchestrators and scrapers call on a schedule.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Counts, times and logs one request (see the module header).
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method().as_str());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let route = route.as_ref().map_or(UNMATCHED_ROUTE, |r| r.as_str());
    let status = response.status().as_u16();
    state
        .metrics
        .http_request(method, route, status, elapsed.as_secs_f64());
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        state.metrics.request_rejected(route, code.as_str());
    }
    access_log(method, route, status, elapsed);
    response
}

/// Writes the access log line of one request.
fn access_log(method: &str, route: &str, status: u16, elapsed: Duration) {
    let ms = elapsed.as_micros() as f64 / 1000.0;
    if PROBES.contains(&route) {
        tracing::debug!(target: ACCESS_LOG_TARGET, method = %method, route = %route, status, ms, "Request answered.");
    } else {
        tracing::info!(target: ACCESS_LOG_TARGET, method = %method, route = %route, status, ms, "Request answered.");
    }
}

/// `GET /metrics`: reads the store gauges (bounded, see
/// `metrics::store_gauges`), then answers the exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .refresh_store_gauges(&state.store, state.clock.now())
        .await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
}
