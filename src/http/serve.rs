//! The HTTP endpoint's connections: a tokio accept loop, one task per
//! connection, hyper's HTTP/1 server on each. What it guards against is a
//! stranger who opens many connections and trickles bytes (slowloris):
//!
//! - A request's headers must arrive within [`HEADER_TIMEOUT`] of the
//!   connection starting to wait for them, however many bytes trickle in
//!   (hyper's header read timeout; a keep-alive connection waiting for its
//!   next request is held to the same deadline).
//! - At most [`MAX_CONNECTIONS`] connections at once. At the bound a new
//!   connection is not left waiting behind the others: the connection that
//!   has waited longest for a request (a slow or idle client) is closed to
//!   make room. Only when every connection has a request in progress does
//!   the new one wait, and those requests end within `REQUEST_TIMEOUT`.
//! - No byte moved for [`IDLE_TIMEOUT`] while waiting on the peer (a
//!   client that stopped reading its answer): the connection is closed.
//!
//! Connections closed for any of these reasons are counted
//! (`pqwatch_http_connections_dropped_total`) and logged at debug level
//! only: a stranger must not be able to flood the journal either. On stop
//! the loop stops accepting and connections finish their request in
//! progress.

use crate::metrics::Metrics;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// The longest a connection may take to send a request's headers.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection on which no byte moved for this long while it waited on
/// the peer is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The connections open now: which are waiting for a request (and since
/// when), and how to close each.
#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Slot>,
}

struct Slot {
    /// Since when the connection waits for (the rest of) a request; `None`
    /// while a handler works on one.
    waiting_since: Option<Instant>,
    close: CancellationToken,
}

type Shared = Arc<Mutex<Registry>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    fn add(&mut self) -> (u64, CancellationToken) {
        let id = self.next_id;
        self.next_id += 1;
        let close = CancellationToken::new();
        self.conns.insert(
            id,
            Slot {
                waiting_since: Some(Instant::now()),
                close: close.clone(),
            },
        );
        (id, close)
    }

    fn set_waiting(&mut self, id: u64, waiting: bool) {
        if let Some(s) = self.conns.get_mut(&id) {
            s.waiting_since = waiting.then(Instant::now);
        }
    }

    /// Close the connection that has waited longest for a request, if any
    /// waits at all. Returns whether one was closed.
    fn evict_oldest_waiting(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, s)| !s.close.is_cancelled())
            .filter_map(|(id, s)| s.waiting_since.map(|t| (t, *id)))
            .min();
        match victim {
            Some((_, id)) => {
                self.conns[&id].close.cancel();
                true
            }
            None => false,
        }
    }
}

/// Serve `app` on `listener` until `stop` fires; then let the requests in
/// progress finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let registry: Shared = Arc::default();
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait, don't spin.
                warn!(error = %e, "HTTP endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: make room by closing the longest-waiting connection,
                // so trickling strangers cannot keep a scrape out.
                if lock(&registry).evict_oldest_waiting() {
                    Metrics::inc(&metrics.http_connections_dropped);
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, close) = lock(&registry).add();
        tasks.spawn(connection(
            stream,
            app.clone(),
            Conn {
                id,
                close,
                registry: registry.clone(),
                metrics: metrics.clone(),
                _permit: permit,
            },
            stop.clone(),
        ));
    }
    tasks.close();
    tasks.wait().await;
}

/// One connection's place in the registry; leaves it when dropped.
struct Conn {
    id: u64,
    close: CancellationToken,
    registry: Shared,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Conn {
    fn drop(&mut self) {
        lock(&self.registry).conns.remove(&self.id);
    }
}

async fn connection(stream: TcpStream, app: Router, conn: Conn, stop: CancellationToken) {
    let io = TokioIo::new(IdleTimeout {
        stream,
        idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
    });
    let tower = hyper_util::service::TowerToHyperService::new(app);
    let (registry, id) = (conn.registry.clone(), conn.id);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        lock(&registry).set_waiting(id, false);
        let registry = registry.clone();
        let answer = hyper::service::Service::call(&tower, req);
        async move {
            let r = answer.await;
            lock(&registry).set_waiting(id, true);
            r
        }
    });
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(http);
    let r = tokio::select! {
        r = http.as_mut() => r,
        _ = conn.close.cancelled() => {
            debug!("HTTP endpoint: closed the longest-waiting connection to make room");
            return;
        }
        _ = stop.cancelled() => {
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    if let Err(e) = r {
        // Header deadline, idle peer, reset: a stranger's doing, counted.
        if e.is_timeout()
            || std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            Metrics::inc(&conn.metrics.http_connections_dropped);
        }
        debug!(error = %e, "HTTP endpoint: connection ended");
    }
}

/// A connection that fails with `TimedOut` once no byte moved for
/// [`IDLE_TIMEOUT`] while it waited for I/O. A handler at work is not
/// I/O-bound, so only waiting on the peer counts.
struct IdleTimeout {
    stream: TcpStream,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.idle.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.progress(cx, r)
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.progress(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.stream).poll_flush(cx);
        self.progress(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_longest_waiting_connection_is_closed_first_never_a_busy_one() {
        let mut r = Registry::default();
        let (a, ca) = r.add();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (_b, cb) = r.add();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (_c, cc) = r.add();
        r.set_waiting(a, false);
        assert!(r.evict_oldest_waiting());
        assert!(!ca.is_cancelled(), "busy with a request");
        assert!(cb.is_cancelled(), "waited longest");
        assert!(!cc.is_cancelled());
        assert!(r.evict_oldest_waiting());
        assert!(cc.is_cancelled());
        assert!(!r.evict_oldest_waiting(), "only a busy one left");
    }
}
