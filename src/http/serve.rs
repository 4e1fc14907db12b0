//! The accept loop: serves the router over HTTP/1 with hyper, one task per
//! connection, under a cap on open connections that stays below the
//! open-file limit, with a header read timeout on every connection (which
//! also closes idle kept-alive ones), and a graceful stop.
//!
//! When the cap is reached the loop stops accepting until a connection
//! ends; new clients wait in the listen backlog instead of failing, and the
//! header timeout makes sure held-open connections end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::config::ServerConfig;

/// Open files kept for everything but client connections: the store, the
/// logs, outbound HTTP to chat, CI and AWS.
pub const FILE_RESERVE: u64 = 64;

/// How long the loop waits before accepting again after an accept error
/// (out of files, for example).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What each connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time allowed for a request's headers, and for an idle connection.
    pub header_timeout: Duration,
}

impl ConnectionLimits {
    /// Raises the soft open-file limit to the hard one and caps
    /// connections below it (`server.max_connections`, lowered to the file
    /// limit minus [`FILE_RESERVE`] and the store's pool). Logs both.
    pub fn at_start(server: &ServerConfig, store_pool: u32) -> Self {
        let files = raise_file_limit();
        let reserve = FILE_RESERVE + u64::from(store_pool);
        let max_connections = match files {
            Some(files) => {
                let room = usize::try_from(files.saturating_sub(reserve)).unwrap_or(usize::MAX);
                server.max_connections.min(room).max(1)
            }
            None => server.max_connections,
        };
        tracing::info!(
            open_file_limit = files,
            max_connections,
            "Connection cap set."
        );
        Self {
            max_connections,
            header_timeout: Duration::try_from_secs_f64(server.header_timeout_s)
                .unwrap_or(Duration::from_secs(10)),
        }
    }
}

/// The soft `RLIMIT_NOFILE` after raising it to the hard limit, or `None`
/// where it cannot be read.
fn raise_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot raise the open-file limit.");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets every connection finish the request it is in, and
/// returns when all have closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, app, limits, stop).await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One connection, until the client leaves, a timeout closes it, or the
/// server stops (after the request in progress).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().call(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %peer, "Connection ended with an error.");
    }
}
