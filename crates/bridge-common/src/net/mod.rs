//! Serving axum routers on TCP, plain or TLS, with graceful shutdown and the
//! ability to drop a connection on purpose (for fault injection).

pub mod tls;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
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

/// Put into every request's extensions: lets a handler close the
/// connection the request came on without answering, as a crashed or
/// restarted server would.
#[derive(Clone, Debug)]
pub struct ConnectionDropper(Arc<Notify>);

impl ConnectionDropper {
    /// Drops the connection; the handler should then never answer.
    pub fn drop_connection(&self) {
        self.0.notify_one();
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

/// Binds `addr` and serves `router` on it, with TLS when `tls` is given.
pub async fn serve(
    addr: &str,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
) -> Result<ServerHandle, NetError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| NetError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    serve_listener(listener, tls, router)
}

/// Serves `router` on an already bound listener.
pub fn serve_listener(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
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
    let task = tokio::spawn(accept_loop(listener, acceptor, router, shutdown_rx));
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
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
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
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let acceptor = acceptor.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    match acceptor {
                        None => serve_connection(TokioIo::new(stream), router, shutdown).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_connection(TokioIo::new(tls), router, shutdown).await,
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

async fn serve_connection<I>(io: I, router: Router, mut shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let dropper = ConnectionDropper(Arc::new(Notify::new()));
    let service_dropper = dropper.clone();
    let service = tower::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(service_dropper.clone());
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = dropper.0.notified() => return, // drops the connection unanswered
            changed = shutdown.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
