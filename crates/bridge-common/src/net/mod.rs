//! Serving axum routers on TCP, plain or TLS, with graceful shutdown, limits
//! that keep a slow or hostile client from holding the server (TLS
//! handshake, header and request deadlines, a connection cap), and, for
//! the sandboxes only, the ability to drop a connection on purpose (fault
//! injection).
//!
//! Why not axum-server or another kept crate's server: the operator serves a
//! listener it bound itself (tests and `--listen :0` read the address back),
//! resolves its certificate per handshake (`ResolvesServerCert`, reloaded
//! from files or a Secret), and needs a connection cap; none of the kept
//! servers caps connections, so the cap would be ours anyway, and the rest
//! is hyper-util's own connection builder, configured here.

pub mod tls;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// Errors of the serving layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A TLS certificate or key could not be made or loaded.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Put into every request's extensions when [`ServeConfig::fault_hooks`] is
/// on (the sandboxes): lets a handler close the connection the request came
/// on without answering, as a crashed or restarted server would.
#[derive(Clone, Debug)]
pub struct ConnectionDropper(Arc<Notify>);

impl ConnectionDropper {
    /// Drops the connection; the handler should then never answer.
    pub fn drop_connection(&self) {
        self.0.notify_one();
    }
}

/// How a server protects itself, and whether it carries fault hooks.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Connections served at once; one more is closed at once (with a
    /// warning) instead of waiting for a free slot.
    pub max_connections: usize,
    /// Time for a TLS client to finish its handshake.
    pub handshake_timeout: Duration,
    /// Time for a client to send a request's headers (HTTP/1); an idle
    /// keep-alive connection is closed after it too (hyper's own default,
    /// long enough that clients rarely reuse a connection as it closes).
    pub header_read_timeout: Duration,
    /// Time for one request, its body read and its answer: a client that
    /// trickles a body gets 408.
    pub request_timeout: Duration,
    /// Put a [`ConnectionDropper`] into every request (sandboxes only).
    pub fault_hooks: bool,
}

impl Default for ServeConfig {
    /// What the operator's webhook and admin servers use: the apiserver
    /// calls a webhook with a deadline of at most 30 s, and never holds
    /// thousands of connections to one replica.
    fn default() -> Self {
        Self {
            max_connections: 2048,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            fault_hooks: false,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    tls: bool,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Drop for ServerHandle {
    /// A dropped handle stops the server (its connections end with it).
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://addr` or `https://addr`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Stops accepting, lets open requests finish (at most `grace`), then
    /// closes every connection.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let Some(task) = self.task.take() else { return };
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
        }
    }
}

/// Binds `addr` and serves `router` on it, with TLS when `tls` is given,
/// under the default [`ServeConfig`].
pub async fn serve(
    addr: &str,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
) -> Result<ServerHandle, NetError> {
    serve_with(addr, tls, router, ServeConfig::default()).await
}

/// Binds `addr` and serves `router` on it under `config`.
pub async fn serve_with(
    addr: &str,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    config: ServeConfig,
) -> Result<ServerHandle, NetError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| NetError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    serve_listener_with(listener, tls, router, config)
}

/// Serves `router` on an already bound listener, under the default
/// [`ServeConfig`].
pub fn serve_listener(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
) -> Result<ServerHandle, NetError> {
    serve_listener_with(listener, tls, router, ServeConfig::default())
}

/// Serves `router` on an already bound listener under `config`.
pub fn serve_listener_with(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    config: ServeConfig,
) -> Result<ServerHandle, NetError> {
    let local_addr = listener.local_addr().map_err(|source| NetError::Bind {
        addr: "listener".into(),
        source,
    })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let is_tls = tls.is_some();
    let acceptor = tls.map(|mut config| {
        if config.alpn_protocols.is_empty() {
            let c = Arc::make_mut(&mut config);
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        tokio_rustls::TlsAcceptor::from(config)
    });
    let task = tokio::spawn(accept_loop(
        listener,
        acceptor,
        router,
        Arc::new(config),
        shutdown_rx,
    ));
    Ok(ServerHandle {
        local_addr,
        tls: is_tls,
        shutdown,
        task: Some(task),
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    config: Arc<ServeConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, max = config.max_connections, "connection limit reached; closing the new connection");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let acceptor = acceptor.clone();
                let shutdown = shutdown.clone();
                let config = config.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    match acceptor {
                        None => {
                            let io = FirstByte::new(stream, config.header_read_timeout);
                            serve_connection(TokioIo::new(io), router, &config, shutdown).await;
                        }
                        Some(acceptor) => {
                            match tokio::time::timeout(config.handshake_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    let io = FirstByte::new(tls, config.header_read_timeout);
                                    serve_connection(TokioIo::new(io), router, &config, shutdown).await;
                                }
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection<I>(
    io: I,
    router: Router,
    config: &ServeConfig,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let dropper = config
        .fault_hooks
        .then(|| ConnectionDropper(Arc::new(Notify::new())));
    let service_dropper = dropper.clone();
    let request_timeout = config.request_timeout;
    let service = tower::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
        if let Some(d) = &service_dropper {
            request.extensions_mut().insert(d.clone());
        }
        let answer = router.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            match tokio::time::timeout(request_timeout, answer).await {
                Ok(result) => result,
                Err(_) => Ok(timed_out()),
            }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    tokio::pin!(connection);
    let dropped = async {
        match &dropper {
            Some(d) => d.0.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(dropped);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut dropped => return, // drops the connection unanswered
            changed = shutdown.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A connection that must bring its first byte within a deadline: hyper
/// reads a new connection's first bytes to tell HTTP/1 from HTTP/2 with no
/// deadline of its own, so a client that connects and sends nothing would
/// hold its connection for good. Once a byte came, hyper's own header
/// deadline (HTTP/1) takes over.
struct FirstByte<S> {
    inner: S,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> FirstByte<S> {
    fn new(inner: S, within: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstByte<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        let this = self.get_mut();
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstByte<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The answer to a request that took longer than the server allows.
fn timed_out() -> axum::response::Response {
    let mut r = axum::response::Response::new(axum::body::Body::from(
        "the request was not received and answered in time\n",
    ));
    *r.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
    r
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives
/// between the two (a process told to stop right after it said it was
/// listening) is caught instead of killing the process silently. Call it
/// in a Tokio runtime, before announcing anything.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(term) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A SIGTERM that arrives after `shutdown_signal()` is called but
    /// before its future is polled is caught (before, it killed the
    /// process: the handler was installed on the first poll).
    #[cfg(unix)]
    #[tokio::test]
    async fn a_stop_before_the_first_poll_is_caught() {
        let shutdown = shutdown_signal();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(10), shutdown)
            .await
            .expect("the signal resolves the future");
    }

    fn router() -> Router {
        Router::new().route(
            "/",
            axum::routing::post(|body: axum::body::Bytes| async move { format!("{}", body.len()) }),
        )
    }

    fn quick() -> ServeConfig {
        ServeConfig {
            max_connections: 3,
            header_read_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
            ..ServeConfig::default()
        }
    }

    async fn start(config: ServeConfig) -> ServerHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        serve_listener_with(listener, None, router(), config).unwrap()
    }

    /// Reads until the server closes the connection; what it sent.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_client_that_never_sends_its_headers_is_closed() {
        let server = start(quick()).await;
        let mut idle = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        // The server closes it (a 408 or nothing): read_to_end returns.
        let answer = until_closed(&mut idle).await;
        assert!(answer.is_empty() || answer.contains("408"), "{answer}");
    }

    #[tokio::test]
    async fn a_body_that_never_comes_is_answered_408() {
        let server = start(quick()).await;
        let mut slow = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        slow.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let answer = until_closed(&mut slow).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_at_once_and_the_others_served() {
        let server = start(ServeConfig {
            header_read_timeout: Duration::from_secs(30),
            ..quick()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                tokio::net::TcpStream::connect(server.local_addr())
                    .await
                    .unwrap(),
            );
        }
        // The cap is reached once the server accepted the three.
        let mut extra = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        assert_eq!(until_closed(&mut extra).await, "", "closed unanswered");
        // A held connection is still served.
        held[0]
            .write_all(
                b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
            )
            .await
            .unwrap();
        let answer = until_closed(&mut held[0]).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("2"),
            "{answer}"
        );
    }
}
