//! The API's own HTTP/1.1 server (hyper under axum's router), because `axum::serve` has no
//! limits a node exposed to slow or hostile clients needs:
//!
//! - **a connection cap**, per listener: TCP clients beyond it get `503` and are closed at
//!   once; the local Unix socket has a cap of its own, so the operator's CLI always finds a
//!   slot (the reserve). Both caps shrink to fit the open-file limit: whatever clients do,
//!   the node keeps descriptors for its personas, its store and its lease file;
//! - **a header-read timeout**: a request's head must arrive within it from its first byte;
//! - **an idle timeout**: a connection with no request under way is closed after it;
//! - **a body deadline and limit** on every route: the body must arrive within
//!   `body_read_timeout_ms` of its head and be at most `max_body_bytes`;
//! - **a bounded shutdown**: idle and half-sent connections are dropped at once, bodies being
//!   read fail at once, and requests under way get `shutdown_grace_ms`, then are dropped.
//!
//! Each connection is one task that watches its phase (idle, reading a head, busy with a
//! request) through the bytes its socket reads and its requests' start and end.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::Request;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a request reached the node: put on every request as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    /// The local Unix socket, from a process of this user (or root).
    Local {
        uid: u32,
    },
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_tcp: usize,
    pub max_local: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
}

impl Limits {
    pub fn from_config(c: &mindmesh_core::config::ApiConfig) -> Limits {
        Limits {
            max_tcp: c.max_connections,
            max_local: c.max_local_connections,
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            body_read_timeout: Duration::from_millis(c.body_read_timeout_ms),
            max_body_bytes: c.max_body_bytes,
            shutdown_grace: Duration::from_millis(c.shutdown_grace_ms),
        }
    }

    /// The caps, shrunk to what the open-file limit leaves: at most half of the free
    /// descriptors for TCP clients and an eighth for the local socket, the rest (at least
    /// three eighths) for the node's own work — spawning and watching personas, probes, the
    /// gateway's upstream connections, the mesh.
    pub fn fitted_to_fd_limit(mut self) -> Limits {
        let Some(free) = free_fds() else { return self };
        let tcp = (free / 2).max(1);
        let local = (free / 8).max(1);
        if tcp < self.max_tcp || local < self.max_local {
            tracing::info!(
                free_fds = free,
                max_tcp = tcp.min(self.max_tcp),
                max_local = local.min(self.max_local),
                "API connection caps lowered to fit the open-file limit"
            );
        }
        if tcp < 16 {
            tracing::warn!(
                free_fds = free,
                "very few file descriptors are free: raise the open-file limit (LimitNOFILE)"
            );
        }
        self.max_tcp = self.max_tcp.min(tcp);
        self.max_local = self.max_local.min(local);
        self
    }
}

/// Descriptors this process may still open: the soft limit minus those open now.
fn free_fds() -> Option<usize> {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some((soft as usize).saturating_sub(open))
}

/// What an over-cap client is told before its connection is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 90\r\nConnection: close\r\n\r\n{\"error\":{\"type\":\"server_error\",\"code\":\"busy\",\"message\":\"too many connections; retry\"}}\n";
/// Time between complaints about a full listener or a lack of descriptors.
const COMPLAIN_EVERY: Duration = Duration::from_secs(10);

/// Serve `app` on both listeners until `stop`; returns when every connection is closed (at
/// most `shutdown_grace` after `stop`).
pub async fn serve(
    tcp: TcpListener,
    local: Option<UnixListener>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let limits = Arc::new(limits);
    let tracker = TaskTracker::new();
    let tcp_slots = Arc::new(Semaphore::new(limits.max_tcp));
    let local_slots = Arc::new(Semaphore::new(limits.max_local));
    let me = crate::local::euid();
    let mut full_said = Complaint::default();
    let mut fds_said = Complaint::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = tcp.accept() => match accepted {
                Ok((stream, addr)) => {
                    let Ok(permit) = Arc::clone(&tcp_slots).try_acquire_owned() else {
                        // no await: a client that does not read costs nothing
                        let _ = stream.try_write(BUSY);
                        full_said.say(|| tracing::warn!(max = limits.max_tcp, "API connection cap reached: new TCP clients are refused with 503"));
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tracker.spawn(connection(stream, Peer::Tcp(addr), app.clone(), Arc::clone(&limits), stop.clone(), permit));
                }
                Err(e) => accept_failed(&e, &mut fds_said).await,
            },
            accepted = accept_local(local.as_ref()) => match accepted {
                Ok(stream) => {
                    let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
                    if uid != me && uid != 0 {
                        tracing::warn!(uid, "refused a local connection from another user");
                        continue;
                    }
                    let Ok(permit) = Arc::clone(&local_slots).try_acquire_owned() else {
                        let _ = stream.try_write(BUSY);
                        full_said.say(|| tracing::warn!(max = limits.max_local, "the local socket's connection cap is reached"));
                        continue;
                    };
                    tracker.spawn(connection(stream, Peer::Local { uid }, app.clone(), Arc::clone(&limits), stop.clone(), permit));
                }
                Err(e) => accept_failed(&e, &mut fds_said).await,
            },
        }
    }
    drop(tcp);
    drop(local);
    tracker.close();
    // each connection ends itself within the grace; this is a backstop, never a wait on a client
    if tokio::time::timeout(limits.shutdown_grace + Duration::from_secs(1), tracker.wait()).await.is_err() {
        tracing::warn!(left = tracker.len(), "API connections left behind at shutdown");
    }
}

async fn accept_local(local: Option<&UnixListener>) -> std::io::Result<tokio::net::UnixStream> {
    match local {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// Out of descriptors (or another accept error): say so now and then, and give the node a
/// moment rather than spinning on a full table.
async fn accept_failed(e: &std::io::Error, said: &mut Complaint) {
    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    if out_of_fds {
        said.say(|| tracing::error!(error = %e, "the API cannot accept connections: out of file descriptors"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    } else {
        tracing::debug!(error = %e, "accept failed");
    }
}

#[derive(Default)]
struct Complaint(Option<Instant>);

impl Complaint {
    fn say(&mut self, f: impl FnOnce()) {
        if self.0.is_none_or(|t| t.elapsed() >= COMPLAIN_EVERY) {
            self.0 = Some(Instant::now());
            f();
        }
    }
}

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY_PHASE: u8 = 2;

/// Where a connection is: idle, reading a request's head, or busy with a request — and since
/// when (ms after `base`).
struct Phase {
    base: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
    /// Wakes the connection's watch on every change: it sleeps until the current phase's
    /// deadline, and a head that starts on an idle connection has an earlier one (without
    /// this, a half-sent head was held until the idle timeout, not the header-read timeout).
    changed: tokio::sync::Notify,
}

impl Phase {
    fn new() -> Arc<Phase> {
        Arc::new(Phase {
            base: Instant::now(),
            phase: AtomicU8::new(IDLE),
            since_ms: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        })
    }

    fn set(&self, phase: u8) {
        self.since_ms.store(self.base.elapsed().as_millis() as u64, Ordering::SeqCst);
        self.phase.store(phase, Ordering::SeqCst);
        // a stored permit if the watch is not waiting right now: it looks again at once
        self.changed.notify_one();
    }

    /// Bytes arrived: an idle connection starts a head.
    fn read_some(&self) {
        if self.phase.load(Ordering::SeqCst) == IDLE {
            self.set(HEAD);
        }
    }

    /// When the current phase runs out (None while busy), and what that means.
    fn deadline(&self, l: &Limits) -> Option<(Instant, &'static str)> {
        let since = self.base + Duration::from_millis(self.since_ms.load(Ordering::SeqCst));
        match self.phase.load(Ordering::SeqCst) {
            IDLE => Some((since + l.idle_timeout, "idle")),
            HEAD => Some((since + l.header_read_timeout, "request head not received in time")),
            _ => None,
        }
    }
}

/// The socket, telling its connection's [`Phase`] when bytes arrive.
struct Watched<T> {
    io: T,
    phase: Arc<Phase>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.read_some();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// How often a busy connection looks at its phase again, should a change go unnoticed.
const BUSY_RECHECK: Duration = Duration::from_millis(500);

async fn connection<T>(
    io: T,
    peer: Peer,
    app: Router,
    limits: Arc<Limits>,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let phase = Phase::new();
    let io = TokioIo::new(Watched { io, phase: Arc::clone(&phase) });
    let svc = {
        let phase = Arc::clone(&phase);
        let limits = Arc::clone(&limits);
        let stop = stop.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            phase.set(BUSY_PHASE);
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(peer);
            let body = Body::new(DeadlineBody::new(body, &limits, stop.clone()));
            let mut app = app.clone();
            let phase = Arc::clone(&phase);
            async move {
                let resp = tower_service::Service::call(&mut app, Request::from_parts(parts, body)).await?;
                Ok::<_, Infallible>(resp.map(|b| Body::new(Finished { inner: b, phase: Some(phase) })))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, svc);
    tokio::pin!(conn);
    let mut closing_at: Option<tokio::time::Instant> = None;
    loop {
        let now = Instant::now();
        let (wake, why) = match phase.deadline(&limits) {
            Some((at, why)) => (at, why),
            None => (now + BUSY_RECHECK, ""),
        };
        let wake = match closing_at {
            Some(c) => tokio::time::Instant::from_std(wake).min(c),
            None => tokio::time::Instant::from_std(wake),
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(?peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.cancelled(), if closing_at.is_none() => {
                if phase.deadline(&limits).is_some() {
                    // idle or half-sent: nothing to finish
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing_at = Some(tokio::time::Instant::now() + limits.shutdown_grace);
            }
            () = phase.changed.notified() => {}
            _ = tokio::time::sleep_until(wake) => {
                if closing_at.is_some_and(|c| tokio::time::Instant::now() >= c) {
                    tracing::debug!(?peer, "connection dropped at the end of the shutdown grace");
                    return;
                }
                if let Some((at, _)) = phase.deadline(&limits)
                    && Instant::now() >= at
                {
                    tracing::debug!(?peer, why, "connection closed");
                    return;
                }
            }
        }
    }
}

/// A request's body, held to the body deadline and limit, and cut when the node stops.
struct DeadlineBody {
    inner: http_body_util::Limited<Incoming>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    stop: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limits: &Limits, stop: CancellationToken) -> DeadlineBody {
        DeadlineBody {
            inner: http_body_util::Limited::new(inner, limits.max_body_bytes),
            deadline: Box::pin(tokio::time::sleep(limits.body_read_timeout)),
            timeout: limits.body_read_timeout,
            stop: Box::pin(stop.cancelled_owned()),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(r);
        }
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err("the node is shutting down".into())));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let ms = self.timeout.as_millis();
            return Poll::Ready(Some(Err(format!("the request body did not arrive within {ms} ms").into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future;

/// A response's body, telling the connection when it is done: the connection is idle again.
struct Finished {
    inner: Body,
    phase: Option<Arc<Phase>>,
}

impl Finished {
    fn done(&mut self) {
        if let Some(p) = self.phase.take() {
            p.set(IDLE);
        }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.done();
    }
}

impl http_body::Body for Finished {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Bind the local socket at `path` (a stale one from an earlier run is replaced), private to
/// this user.
pub fn bind_local(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is not a socket"));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    // peers are checked on accept too: this only narrows who may try
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_time_out_as_configured() {
        let limits = Limits {
            max_tcp: 1,
            max_local: 1,
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1000),
            body_read_timeout: Duration::from_millis(100),
            max_body_bytes: 1024,
            shutdown_grace: Duration::from_millis(100),
        };
        let p = Phase::new();
        let (at, why) = p.deadline(&limits).unwrap();
        assert_eq!(why, "idle");
        assert!(at >= p.base + Duration::from_millis(1000));
        p.read_some();
        assert_eq!(p.deadline(&limits).unwrap().1, "request head not received in time");
        p.set(BUSY_PHASE);
        assert!(p.deadline(&limits).is_none(), "a request under way is not timed here");
        p.read_some();
        assert!(p.deadline(&limits).is_none(), "pipelined bytes do not end a busy phase");
        p.set(IDLE);
        assert_eq!(p.deadline(&limits).unwrap().1, "idle");
    }
}
