//! Serving the router over TCP: plain HTTP/1.1, or HTTP/1.1 over TLS 1.2/1.3 (rustls, ring);
//! per-connection time limits and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::{router, PortalError, ServeOptions, TlsFiles};

#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read: Duration,
    max_age: Duration,
    grace: Duration,
}

/// A bound listener, ready to [`run`](Server::run). Binding first lets the caller print the
/// address (port 0 picks a free one) before serving.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
}

/// Checks the configuration (EVN folder, certificate and key) and binds `listen`.
pub async fn bind(listen: SocketAddr, opts: &ServeOptions) -> Result<Server, PortalError> {
    let app = router(opts)?;
    let tls = opts.tls.as_ref().map(tls_acceptor).transpose()?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|cause| PortalError::Bind {
            addr: listen,
            cause,
        })?;
    let local_addr = listener.local_addr().map_err(|cause| PortalError::Bind {
        addr: listen,
        cause,
    })?;
    Ok(Server {
        listener,
        local_addr,
        tls,
        app,
        limits: Limits {
            header_read: opts.header_read_timeout,
            max_age: opts.max_connection_age,
            grace: opts.shutdown_grace,
        },
    })
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `https://ADDR` or `http://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open responses finish for
    /// up to the grace period and closes what is left.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            tls,
            app,
            limits,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        connections.spawn(connection(
                            stream,
                            peer,
                            tls.clone(),
                            app.clone(),
                            stop_rx.clone(),
                            limits,
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::info!(
            open_connections = connections.len(),
            "shutting down: finishing open responses"
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(limits.grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open_connections = connections.len(),
                "grace period over; closing the remaining connections"
            );
            connections.abort_all();
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    stop: watch::Receiver<bool>,
    limits: Limits,
) {
    match tls {
        None => drive(TokioIo::new(stream), peer, app, stop, limits).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.header_read, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => drive(TokioIo::new(tls), peer, app, stop, limits).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn drive<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => {}
        // A client that stops reading would otherwise hold its download slot for ever.
        () = tokio::time::sleep(limits.max_age) => {
            tracing::debug!(%peer, "connection reached its maximum age");
        }
    }
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(limits.grace, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        Err(_) => {
            tracing::warn!(%peer, "response still running after the grace period; connection closed")
        }
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, PortalError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = ReloadingCert::load(files, provider.clone())?;
    // rustls has no TLS 1.0/1.1 at all; naming the two versions keeps it that way explicitly.
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| PortalError::Tls {
            path: files.cert.clone(),
            detail: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How often a handshake may look at the certificate files.
const TLS_RECHECK: Duration = Duration::from_secs(2);

/// The certificate the files hold now. cert-manager renews the Secret behind `--tls-cert` and
/// `--tls-key` in place, and a pod living longer than a certificate (90 days) must not go on
/// serving the expired one. At most every [`TLS_RECHECK`] a handshake compares the files'
/// identity (inode, size, mtime, through Kubernetes' symlinks) with the loaded pair's and loads
/// them again when they changed; a pair that does not load (half-written, key and certificate
/// not matching yet) leaves the last good one in force and says so.
#[derive(Debug)]
struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<rustls::crypto::CryptoProvider>,
    state: std::sync::Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    key: Arc<rustls::sign::CertifiedKey>,
    stamp: Option<FileStamps>,
    checked: std::time::Instant,
}

type FileStamps = [(u64, u64, std::time::SystemTime); 2];

impl ReloadingCert {
    fn load(
        files: &TlsFiles,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, PortalError> {
        let stamp = stamps(files);
        let key = certified_key(files, &provider)?;
        Ok(ReloadingCert {
            files: files.clone(),
            provider,
            state: std::sync::Mutex::new(CertState {
                key: Arc::new(key),
                stamp,
                checked: std::time::Instant::now(),
            }),
        })
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.checked.elapsed() >= TLS_RECHECK {
            s.checked = std::time::Instant::now();
            let stamp = stamps(&self.files);
            if stamp != s.stamp {
                s.stamp = stamp;
                match certified_key(&self.files, &self.provider) {
                    Ok(key) => {
                        s.key = Arc::new(key);
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "the TLS certificate files changed but do not load; the previous certificate stays in use"
                    ),
                }
            }
        }
        Some(s.key.clone())
    }
}

fn stamps(files: &TlsFiles) -> Option<FileStamps> {
    use std::os::unix::fs::MetadataExt;
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.ino(), m.len(), m.modified().ok()?))
    };
    Some([stamp(&files.cert)?, stamp(&files.key)?])
}

fn certified_key(
    files: &TlsFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<rustls::sign::CertifiedKey, PortalError> {
    let err = |path: &Path, detail: String| PortalError::Tls {
        path: path.to_owned(),
        detail,
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| err(path, e.to_string()));
    let cert_pem = read(&files.cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&files.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(err(
            &files.cert,
            "no `BEGIN CERTIFICATE` block: expected the PEM certificate chain, leaf first".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| {
        err(
            &files.key,
            format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    rustls::sign::CertifiedKey::from_der(certs, key, provider).map_err(|e| {
        err(
            &files.key,
            format!("does not fit the certificate or cannot be used: {e}"),
        )
    })
}
