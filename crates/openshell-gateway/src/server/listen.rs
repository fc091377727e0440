//! The gRPC API on TCP with mutual TLS: connections are accepted and their
//! handshakes done here (the client's certificate verified against the
//! gateway's CA and its revoked list, read again when the list changes), then
//! handed to tonic.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use openshell_gateway_api::grpc::v1::gateway_server::GatewayServer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Gateway, ServerError, grpc::Service};
use crate::tls::{TlsDir, server_config};

/// How long a client has for its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The server's TLS configuration, built again when the revoked list changes.
struct Config {
    dir: TlsDir,
    crl_modified: Option<SystemTime>,
    config: Arc<rustls::ServerConfig>,
}

impl Config {
    fn current(&mut self) -> Arc<rustls::ServerConfig> {
        let modified = std::fs::metadata(self.dir.crl()).and_then(|m| m.modified()).ok();
        if modified != self.crl_modified {
            match server_config(&self.dir) {
                Ok(config) => {
                    tracing::info!("the revoked client certificates changed; read again");
                    (self.config, self.crl_modified) = (config, modified);
                }
                // Keep refusing what was refused: the old list stays in force.
                Err(e) => tracing::error!(%e, "reading the revoked client certificates"),
            }
        }
        Arc::clone(&self.config)
    }
}

/// Serves the API on `addr` on a runtime of its own threads; returns once it
/// listens (a bind or TLS file error is returned, not logged).
pub(super) fn serve_tls(gateway: Arc<Gateway>, addr: SocketAddr, dir: TlsDir) -> Result<SocketAddr, ServerError> {
    let config = server_config(&dir).map_err(ServerError::Tls)?;
    let crl_modified = std::fs::metadata(dir.crl()).and_then(|m| m.modified()).ok();
    let config = Arc::new(Mutex::new(Config { dir, crl_modified, config }));
    let io = |source| ServerError::Listen { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(io)?;
    let bound = listener.local_addr().map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    let runtime = grpc_runtime().map_err(io)?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(%e, "listening for remote clients");
                    return;
                }
            };
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(accept(listener, config, tx));
            let service = GatewayServer::new(Service { gateway });
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(ReceiverStream::new(rx))
                .await
            {
                tracing::error!(%e, "serving remote clients");
            }
        });
    });
    tracing::info!(%bound, "gateway listening for remote clients (mutual TLS)");
    Ok(bound)
}

fn grpc_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("openshell-grpc").enable_all().build()
}

/// Serves the API over gRPC on the Unix socket `path` (0600; each call's
/// caller is the connection's peer, refused unless it is the gateway's uid).
pub(super) fn serve_unix(gateway: Arc<Gateway>, path: &Path) -> Result<(), ServerError> {
    let io = |source| ServerError::Io { path: path.to_path_buf(), source };
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    let runtime = grpc_runtime().map_err(io)?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::UnixListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!(%e, "the gRPC socket"),
            };
            let service = GatewayServer::new(Service { gateway });
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await
            {
                tracing::error!(%e, "serving the gRPC socket");
            }
        });
    });
    Ok(())
}

type Accepted = Result<tokio_rustls::server::TlsStream<TcpStream>, std::io::Error>;

async fn accept(listener: TcpListener, config: Arc<Mutex<Config>>, tx: mpsc::Sender<Accepted>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small messages (a run's events) go out at once: with Nagle's algorithm
        // each waited for the client's delayed ACK (about 40 ms a call).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(%peer, %e, "TCP_NODELAY");
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(config.lock().unwrap_or_else(|p| p.into_inner()).current());
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(tls)).await;
                }
                Ok(Err(e)) => tracing::warn!(%peer, %e, "refused a remote client"),
                Err(_) => tracing::warn!(%peer, "refused a remote client: no TLS handshake within 10 s"),
            }
        });
    }
}
