//! The route port and route dialing: the I/O half of `core/src/server/routes.rs`.
//!
//! The machine decides what to dial (`Server::poll_dial`, drained after
//! every step into `Runner::dials`); `dial_loop` connects each on a task of
//! its own and reports the outcome in one lock (`handle_dialed` or
//! `handle_dial_failed`); retries are the machine's timers. Route
//! connections then run the same reader and writer tasks as clients.
//!
//! With `cluster { tls }` a route is TLS from its first byte both ways, as
//! nats-server: the accepting side checks the dialer's certificate against
//! the CA when `verify` is set, the dialing side always checks the peer's
//! (named by the route URL's host) and shows its own certificate.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rnats_core::runtime::{ConnId, ListenerKind};
use rnats_core::server::{DialRequest, RouteTls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::RootCertStore;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::Runner;

/// The cluster's TLS, ready: both ends of every route use it.
#[derive(Clone)]
pub struct RouteTlsIo {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    timeout: Duration,
}

impl RouteTlsIo {
    pub fn new(settings: &RouteTls) -> Result<RouteTlsIo, String> {
        use std::path::Path;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = crate::tls::read_certs(Path::new(&settings.cert_file))?;
        let key = || {
            PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|error| {
                format!(
                    "error parsing X509 certificate/key pair: {}: {error}",
                    settings.key_file
                )
            })
        };
        let roots = Arc::new(match &settings.ca_file {
            Some(ca_file) => crate::tls::read_roots(ca_file)?,
            None => RootCertStore::empty(),
        });
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(|error| error.to_string())?;
        let server = if settings.verify {
            if settings.ca_file.is_none() {
                return Err(String::from(
                    "cluster tls: verify requires a ca_file in the TLS configuration",
                ));
            }
            let verifier = crate::tls::client_verifier(roots.clone(), provider.clone())?;
            server.with_client_cert_verifier(verifier)
        } else {
            server.with_no_client_auth()
        };
        let server = server
            .with_single_cert(certs.clone(), key()?)
            .map_err(|error| format!("error parsing X509 certificate/key pair: {error}"))?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key()?)
            .map_err(|error| format!("error parsing X509 certificate/key pair: {error}"))?;
        Ok(RouteTlsIo {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            timeout: settings.timeout,
        })
    }
}

/// How long one route dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

impl Runner {
    /// Accept routes on `listener` (until the task is aborted) and carry
    /// out the machine's dials.
    pub async fn serve_routes(self: Arc<Self>, listener: TcpListener, tls: Option<RouteTlsIo>) {
        // The explicit routes were queued when the machine was built: a
        // step hands them over.
        self.with_server(|_, _| ());
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    if self.lame_duck.load(Ordering::Acquire) {
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    match &tls {
                        None => {
                            let (conn, io) = self.open_from(peer, ListenerKind::Route, None, None);
                            let (reader, writer) = stream.into_split();
                            self.clone()
                                .run_io(conn, io, Box::new(reader), Box::new(writer));
                        }
                        Some(tls) => {
                            tokio::spawn(self.clone().accept_tls_route(stream, peer, tls.clone()));
                        }
                    }
                }
                Err(error) => {
                    tracing::error!("Error accepting route connection: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// A route accepted on a TLS cluster: the handshake first (within the
    /// timeout), then the route as usual over it.
    async fn accept_tls_route(
        self: Arc<Self>,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        tls: RouteTlsIo,
    ) {
        let handshake = tokio::time::timeout(tls.timeout, tls.acceptor.accept(stream)).await;
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::error!("{peer} - rid:0 - TLS route handshake error: {error}");
                return;
            }
            Err(_) => {
                tracing::error!("{peer} - rid:0 - TLS route handshake timeout");
                return;
            }
        };
        let (conn, io) = self.open_from(peer, ListenerKind::Route, None, None);
        let (reader, writer) = tokio::io::split(stream);
        self.run_io(conn, io, Box::new(reader), Box::new(writer));
    }

    /// Carry out the machine's route dials until the process ends.
    pub async fn dial_loop(self: Arc<Self>, tls: Option<RouteTlsIo>) {
        let Some(mut queue) = self
            .dial_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        while let Some(request) = queue.recv().await {
            tokio::spawn(self.clone().dial(request, tls.clone()));
        }
    }

    async fn dial(self: Arc<Self>, request: DialRequest, tls: Option<RouteTlsIo>) {
        tracing::debug!(
            "Trying to connect to route on {} ({})",
            request.address,
            request.address
        );
        let connected =
            tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&request.address)).await;
        let stream = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                return self.dial_failed(
                    request.id,
                    &format!("dial tcp {}: {error}", request.address),
                )
            }
            Err(_) => {
                return self.dial_failed(
                    request.id,
                    &format!("dial tcp {}: i/o timeout", request.address),
                )
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            return self.dial_failed(request.id, "connection lost");
        };
        let _ = stream.set_nodelay(true);
        let (reader, writer): (super::Reader, super::Writer) = match tls {
            None => {
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            Some(tls) => {
                let host = request
                    .address
                    .rsplit_once(':')
                    .map_or(request.address.as_str(), |(host, _)| host)
                    .trim_matches(['[', ']'])
                    .to_string();
                let Ok(name) = ServerName::try_from(host) else {
                    return self.dial_failed(request.id, "invalid TLS server name");
                };
                let handshake =
                    tokio::time::timeout(tls.timeout, tls.connector.connect(name, stream)).await;
                match handshake {
                    Ok(Ok(stream)) => {
                        let (reader, writer) = tokio::io::split(stream);
                        (Box::new(reader), Box::new(writer))
                    }
                    Ok(Err(error)) => {
                        tracing::error!("{peer} - rid:0 - TLS route handshake error: {error}");
                        return self.dial_failed(request.id, &format!("tls: {error}"));
                    }
                    Err(_) => {
                        tracing::error!("{peer} - rid:0 - TLS route handshake timeout");
                        return self.dial_failed(request.id, "tls: handshake timeout");
                    }
                }
            }
        };
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let io = Self::new_io(None, true);
        {
            let mut state = self.lock();
            state.conns.insert(conn, io.clone());
            #[cfg(debug_assertions)]
            state.contract.accepted(conn);
            state
                .server
                .handle_dialed(self.clock.now(), request.id, conn, peer);
            self.finish_step(state);
        }
        self.run_io(conn, io, reader, writer);
    }

    fn dial_failed(&self, dial: u64, error: &str) {
        let mut state = self.lock();
        state
            .server
            .handle_dial_failed(self.clock.now(), dial, error);
        self.finish_step(state);
    }
}
