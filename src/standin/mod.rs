//! Local stand-ins for outside services that `pipemedic demo` needs on a
//! machine with no credentials, each speaking the service's documented wire
//! format on 127.0.0.1 so the real client crate talks to it over real HTTP.
//! Tests use them too. Never used by `serve`.

#[cfg(feature = "ci-evidence")]
pub mod cloudwatch;
pub mod codepipeline;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

/// Serves `app` on a free port of 127.0.0.1 until the returned token is
/// cancelled. Panics if no port can be bound: stand-ins are for the demo and
/// tests, where that is a broken machine.
pub async fn serve_on_loopback(app: axum::Router, what: &str) -> (SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{what} stand-in cannot bind 127.0.0.1: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{what} stand-in has no address: {e}"));
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
    });
    (addr, stop)
}
