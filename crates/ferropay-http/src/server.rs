//! The accept loop: each connection served by hyper's HTTP/1 server with a header-read timeout
//! (which is the idle timeout too: it runs from the connection's opening or the end of its last
//! answer), at most [`ServerLimits::max_connections`] at once. A connection past the cap gets one
//! answer on a short timeout (`/healthz` as usual, anything else 503 with `Retry-After`) and is
//! closed; past [`overflow_slots`] more it is closed at once. A failed accept (out of file descriptors)
//! pauses the loop briefly instead of spinning. On shutdown no connection is accepted any more,
//! idle ones are closed, and requests in flight finish.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::limits::ServerLimits;

/// How long a connection past the cap may take to send its one request.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The pause after a failed accept (EMFILE, ENFILE, ECONNABORTED …).
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

/// Connections the kernel queues for `accept` (it caps this at `net.core.somaxconn`): a burst
/// of connections waits there instead of being half-open, which the client believes accepted
/// while the server never sees it.
pub const LISTEN_BACKLOG: u32 = 4_096;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connections past the cap that still get an answer: a tenth of the cap, 8 to 256.
pub fn overflow_slots(max_connections: usize) -> usize {
    (max_connections / 10).clamp(8, 256)
}

/// Serves `app` (and `overflow`, for connections past the cap) on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    app: Router,
    overflow: Router,
    limits: &ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let overflow_connections = Arc::new(Semaphore::new(overflow_slots(limits.max_connections)));
    let mut served = http1::Builder::new();
    served
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    let mut refused = http1::Builder::new();
    refused
        .timer(TokioTimer::new())
        .header_read_timeout(OVERFLOW_HEADER_TIMEOUT)
        .keep_alive(false);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; pausing");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let (permit, connection) = if let Ok(permit) = connections.clone().try_acquire_owned() {
            let service = TowerToHyperService::new(app.clone());
            (permit, graceful.watch(served.serve_connection(io, service)))
        } else if let Ok(permit) = overflow_connections.clone().try_acquire_owned() {
            metrics::counter!("ferropay_http_connections_over_cap_total").increment(1);
            let service = TowerToHyperService::new(overflow.clone());
            (
                permit,
                graceful.watch(refused.serve_connection(io, service)),
            )
        } else {
            metrics::counter!("ferropay_http_connections_dropped_total").increment(1);
            continue;
        };
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
