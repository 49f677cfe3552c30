//! The HTTP monitoring listener (`-m`, `http_port`, `http: host:port`),
//! served with hyper.
//!
//! Role: decode the path and query, take the server lock once to build the
//! answer with `rnats_core::monitor`, and serialize it outside the lock.
//! Bodies, status codes and headers follow nats-server v2.15.1: JSON
//! pretty-printed with two spaces (`/healthz` compact), `Content-Type:
//! application/json` with `Access-Control-Allow-Origin: *`, query errors as
//! 400 with the reference's text, unknown paths as Go's `404 page not found`.
//!
//! Invariant: work under the lock is bounded by the request (a connz page
//! is at most `limit` rows; counters are read, never recomputed from
//! traffic), so monitoring never stalls message traffic for long.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rnats_core::monitor::{self, ConnzOptions, Healthz, RoutezOptions, SubszOptions};
use rnats_core::runtime::ConnId;
use rnats_core::server::Server;
use rnats_core::time::Instant;
use tokio::net::TcpListener;

use crate::runner::Runner;

/// The endpoints, by path below the base path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Index,
    Varz,
    Connz,
    Subsz,
    Routez,
    Gatewayz,
    Leafz,
    Accountz,
    Accstatz,
    Healthz,
    Jsz,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/" => Endpoint::Index,
            "/varz" => Endpoint::Varz,
            "/connz" => Endpoint::Connz,
            "/subsz" | "/subscriptionsz" => Endpoint::Subsz,
            "/routez" => Endpoint::Routez,
            "/gatewayz" => Endpoint::Gatewayz,
            "/leafz" => Endpoint::Leafz,
            "/accountz" => Endpoint::Accountz,
            "/accstatz" => Endpoint::Accstatz,
            "/healthz" => Endpoint::Healthz,
            "/jsz" => Endpoint::Jsz,
            _ => return None,
        })
    }
}

/// The bound monitoring socket: plain HTTP, or HTTPS with the server's
/// certificate (no client certificates asked, as the reference).
pub struct MonitorListener {
    pub listener: TcpListener,
    /// The host it was bound for (`/varz` `http_host`).
    pub host: String,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl MonitorListener {
    pub fn address(&self) -> std::net::SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// What the monitoring listener shares between connections.
pub struct MonitorHttp {
    runner: Arc<Runner>,
    /// `http_base_path`, normalized to `""` or `/segment...` without a trailing `/`.
    base_path: String,
}

impl MonitorHttp {
    pub fn new(runner: Arc<Runner>, base_path: &str) -> Arc<Self> {
        Arc::new(MonitorHttp {
            runner,
            base_path: normalize_base_path(base_path),
        })
    }

    /// Accept and serve monitoring connections until the task is dropped.
    pub async fn serve(self: Arc<Self>, monitor: MonitorListener) {
        loop {
            let Ok((stream, _)) = monitor.listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let this = self.clone();
            let tls = monitor.tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => this.serve_connection(stream).await,
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            std::time::Duration::from_secs(2),
                            acceptor.accept(stream),
                        );
                        if let Ok(Ok(stream)) = handshake.await {
                            this.serve_connection(stream).await;
                        }
                    }
                }
            });
        }
    }

    async fn serve_connection<S>(self: Arc<Self>, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = service_fn(move |request| {
            let this = self.clone();
            async move { Ok::<_, Infallible>(this.respond(&request).await) }
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    async fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let uri = request.uri();
        let endpoint = uri
            .path()
            .strip_prefix(self.base_path.as_str())
            .and_then(|rest| Endpoint::from_path(if rest.is_empty() { "/" } else { rest }));
        let Some(endpoint) = endpoint else {
            return plain(StatusCode::NOT_FOUND, "404 page not found\n");
        };
        let query = uri.query().unwrap_or("");
        let path = if endpoint == Endpoint::Index {
            "/"
        } else {
            uri.path()
                .strip_prefix(self.base_path.as_str())
                .unwrap_or("/")
        };
        let answer = match endpoint {
            Endpoint::Jsz | Endpoint::Varz => self.with_jetstream(endpoint, path, query).await,
            _ => self.runner.with_server(|server, now| {
                server.note_http_request(path);
                build(server, now, endpoint, query)
            }),
        };
        match answer {
            Ok(Answer::Html(page)) => {
                let mut response = Response::new(Full::new(Bytes::from(page)));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
            Ok(Answer::Json(body)) => json(StatusCode::OK, body),
            Err(text) => plain(StatusCode::BAD_REQUEST, &text),
        }
    }
}

impl MonitorHttp {
    /// The pages with a JetStream part: the server's part under its lock,
    /// JetStream's from its own machine (never under the server's lock).
    async fn with_jetstream(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &str,
    ) -> Result<Answer, String> {
        let (server_id, wall) = self.runner.with_server(|server, now| {
            server.note_http_request(path);
            (
                server.config().identity.server_id.clone(),
                server.clock(now).wall(now),
            )
        });
        if endpoint == Endpoint::Jsz {
            let options = rnats_core::jetstream::monitor::JszOptions::from_query(query);
            let id = server_id.clone();
            let page = self
                .runner
                .query_jetstream(move |js| js.jsz(&id, wall, &options))
                .await
                .unwrap_or_else(|| rnats_core::jetstream::monitor::Jsz::disabled(&server_id, wall));
            return Ok(Answer::Json(erased::Json::pretty(&page)));
        }
        let section = self
            .runner
            .query_jetstream(|js| js.varz_section())
            .await
            .unwrap_or_default();
        let mut varz = self
            .runner
            .with_server(|server, now| monitor::varz(&server.view(), server.clock(now)));
        varz.jetstream = section;
        Ok(Answer::Json(erased::Json::pretty(&varz)))
    }
}

enum Answer {
    Html(String),
    Json(Vec<u8>),
}

/// Builds the answer under the lock. Serializing here keeps the borrowed
/// rows simple; a page is bounded by its `limit`.
fn build(
    server: &mut Server,
    now: Instant,
    endpoint: Endpoint,
    query: &str,
) -> Result<Answer, String> {
    let clock = server.clock(now);
    let pretty = |value: &dyn erased::Json| Ok(Answer::Json(value.pretty()));
    match endpoint {
        Endpoint::Index => Ok(Answer::Html(index_page(server))),
        Endpoint::Varz | Endpoint::Jsz => {
            unreachable!("{endpoint:?} is built with JetStream's part")
        }
        Endpoint::Connz => {
            let opts = ConnzOptions::from_query(query).map_err(|e| e.to_string())?;
            let page = monitor::connz(&server.view(), &opts, clock);
            let answer = pretty(&page);
            server.measure_rtt(now, page.connections.iter().map(|row| ConnId(row.cid)));
            answer
        }
        Endpoint::Subsz => {
            let opts = SubszOptions::from_query(query).map_err(|e| e.to_string())?;
            pretty(&monitor::subsz(&server.view(), &opts, clock))
        }
        Endpoint::Routez => {
            let opts = RoutezOptions::from_query(query).map_err(|e| e.to_string())?;
            pretty(&monitor::routez(&server.view(), opts, clock))
        }
        Endpoint::Gatewayz => pretty(&monitor::gatewayz(&server.view(), clock)),
        Endpoint::Leafz => pretty(&monitor::leafz(&server.view(), clock)),
        Endpoint::Accountz => {
            let account = query_value(query, "acc");
            let page =
                monitor::accountz(&server.view(), &account, clock).map_err(|e| e.to_string())?;
            pretty(&page)
        }
        Endpoint::Accstatz => {
            let unused =
                monitor::query::decode_bool_param(query, "unused").map_err(|e| e.to_string())?;
            pretty(&monitor::accstatz(&server.view(), &[], unused, clock))
        }
        Endpoint::Healthz => Ok(Answer::Json(
            serde_json::to_vec(&Healthz::ok()).expect("healthz serializes"),
        )),
    }
}

/// Serialization behind a trait object, so `build` can treat every page alike.
mod erased {
    pub trait Json {
        fn pretty(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Json for T {
        fn pretty(&self) -> Vec<u8> {
            serde_json::to_vec_pretty(self).expect("monitoring pages serialize")
        }
    }
}

/// The first value of `key` in `query`, percent-decoded; empty when absent.
fn query_value(query: &str, key: &str) -> String {
    monitor::query::param(query, key)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `""`, or `/a/b` with one leading slash and no trailing one.
fn normalize_base_path(base: &str) -> String {
    let trimmed = base.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// A plain page linking every endpoint (relative links, so a base path works).
fn index_page(server: &Server) -> String {
    const LINKS: &[(&str, &str)] = &[
        ("varz", "General"),
        ("connz", "Connections"),
        ("accountz", "Accounts"),
        ("accstatz", "Account Stats"),
        ("subsz", "Subscriptions"),
        ("routez", "Routes"),
        ("leafz", "LeafNodes"),
        ("gatewayz", "Gateways"),
        ("jsz", "JetStream"),
        ("healthz", "Health Probe"),
    ];
    let mut page =
        String::from("<html lang=\"en\">\n<head><title>rnats monitoring</title></head>\n<body>\n");
    page.push_str(&format!(
        "<h1>rnats</h1>\n<p>NATS protocol {} &middot; server {}</p>\n",
        server.config().identity.version,
        server.config().effective_name()
    ));
    for (path, label) in LINKS {
        page.push_str(&format!(
            "<a href=./{path}>{label}<span class=\"endpoint\"> /{path}</span></a><br/>\n"
        ));
    }
    page.push_str("</body>\n</html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_normalized() {
        assert_eq!(normalize_base_path(""), "");
        assert_eq!(normalize_base_path("/"), "");
        assert_eq!(normalize_base_path("nats"), "/nats");
        assert_eq!(normalize_base_path("/nats/"), "/nats");
    }

    #[test]
    fn paths_name_endpoints() {
        assert_eq!(Endpoint::from_path("/varz"), Some(Endpoint::Varz));
        assert_eq!(
            Endpoint::from_path("/subscriptionsz"),
            Some(Endpoint::Subsz)
        );
        assert_eq!(Endpoint::from_path("/varz/"), None);
        assert_eq!(Endpoint::from_path("/nope"), None);
    }
}
