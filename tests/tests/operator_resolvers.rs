//! Operator mode with the account resolvers that find account JWTs outside
//! the configuration: `resolver: URL(...)` fetching them over HTTP from a
//! small server in the test. Each scenario runs against rnats and, when it
//! is available, nats-server with the same JWTs; what the clients and the
//! HTTP server saw must match.

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_nats::ConnectOptions;
use bytes::Bytes;
use common::{next_message, within};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jwt::{connect_creds, exit_of, Trust};
use rnats_tests::ServerProcess;
use serde_json::json;

/// An HTTP server answering `GET <prefix><account key>` with the account's
/// JWT (404 for keys it does not hold), counting requests per path.
#[derive(Clone, Default)]
struct JwtServer {
    jwts: Arc<Mutex<BTreeMap<String, String>>>,
    requests: Arc<Mutex<Vec<String>>>,
    /// Whether the base URL answers `200`.
    home: Arc<std::sync::atomic::AtomicBool>,
}

impl JwtServer {
    /// Serve on an ephemeral loopback port; returns the port.
    async fn start(&self) -> u16 {
        self.start_with(None).await
    }

    /// Serve `https` with the certificate of `pki`; returns the port.
    async fn start_tls(&self, pki: &common::Pki) -> u16 {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&pki.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        self.start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
            .await
    }

    async fn start_with(&self, tls: Option<tokio_rustls::TlsAcceptor>) -> u16 {
        self.home.store(true, std::sync::atomic::Ordering::Relaxed);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let server = server.clone();
                        async move { Ok::<_, std::convert::Infallible>(server.answer(&request)) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            http.serve_connection(TokioIo::new(stream), service).await
                        }
                    };
                });
            }
        });
        port
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        self.requests
            .lock()
            .unwrap()
            .push(format!("{} {path}", request.method()));
        let key = path.rsplit('/').next().unwrap_or("");
        let home = self.home.load(std::sync::atomic::Ordering::Relaxed);
        match self.jwts.lock().unwrap().get(key) {
            // The base URL: the server's check that someone is home.
            None if home && path == "/jwt/v1/accounts/" => Response::new(Full::new(Bytes::new())),
            Some(jwt) if path.starts_with("/jwt/v1/accounts/") => {
                Response::new(Full::new(Bytes::from(jwt.clone())))
            }
            _ => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::from("not found")))
                .unwrap(),
        }
    }

    fn serve(&self, key: &str, jwt: &str) {
        self.jwts.lock().unwrap().insert(key.into(), jwt.into());
    }

    /// The requests so far, and forget them.
    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut self.requests.lock().unwrap())
    }
}

impl Trust {
    /// A fresh `jwt` directory for the full resolver holding the system
    /// account's JWT, and the config file `name` that uses it.
    fn full_resolver(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.join("jwt");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let system = self.system.public_key();
        std::fs::write(
            dir.join(format!("{system}.jwt")),
            jwt::account(&self.operator, &self.system, json!({})),
        )
        .unwrap();
        let config = self.dir.join(name);
        std::fs::write(
            &config,
            format!(
                "operator: {}\nsystem_account: {system}\nresolver: {{ type: full, dir: {:?} }}\n",
                self.operator_file().display(),
                dir.display().to_string()
            ),
        )
        .unwrap();
        (dir, config)
    }

    fn config(&self, name: &str, resolver: &str) -> PathBuf {
        let path = self.dir.join(name);
        let text = format!(
            "operator: {}\nresolver: {resolver}\n",
            self.operator_file().display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The servers to run a scenario against: rnats, then the reference.
fn binaries() -> Vec<PathBuf> {
    let mut binaries = vec![rnats_tests::server_under_test()];
    binaries.extend(rnats_tests::reference_server());
    binaries
}

/// A log line's message after its level tag (`[WRN] ...`).
fn messages(server: &ServerProcess, containing: &str) -> Vec<String> {
    server
        .log_lines()
        .iter()
        .filter(|line| line.contains(containing))
        .filter_map(|line| line.split_once("] ").map(|(_, m)| m.to_string()))
        .map(|m| {
            m.split_once("] ")
                .map_or(m.clone(), |(_, rest)| rest.to_string())
        })
        .collect()
}

/// `lines` with each key replaced by its name (keys are drawn anew for
/// each server: named, the lines compare).
fn named(lines: &[String], names: &[(String, &str)]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            names.iter().fold(line.clone(), |line, (key, name)| {
                line.replace(key.as_str(), name)
            })
        })
        .collect()
}

/// rnats's run (the first) has a line containing `marker`, and the
/// reference's run, when there is one, is the same.
fn assert_same_runs(results: &[Vec<String>], marker: &str) {
    let ours = &results[0];
    assert!(ours.iter().any(|line| line.contains(marker)), "{ours:#?}");
    if let Some(theirs) = results.get(1) {
        assert_eq!(ours, theirs);
    }
}

/// What one server did with the URL resolver scenario, to compare.
async fn url_resolver_scenario(binary: &Path) -> Vec<String> {
    let trust = Trust::new(&format!(
        "url-{}",
        binary.file_name().unwrap().to_string_lossy()
    ));
    let http = JwtServer::default();
    let port = http.start().await;
    let system = trust.system.public_key();
    let account = trust.account.public_key();
    http.serve(
        &system,
        &jwt::account(&trust.operator, &trust.system, json!({})),
    );
    http.serve(
        &account,
        &jwt::account(&trust.operator, &trust.account, json!({})),
    );
    let config = trust.config(
        "url.conf",
        &format!("URL(\"http://127.0.0.1:{port}/jwt/v1/accounts/\")"),
    );
    let mut seen = Vec::new();
    let server =
        ServerProcess::start_binary(binary.to_path_buf(), &["-c", config.to_str().unwrap()]);
    // The system account was fetched at start.
    seen.push(format!("start: {:?}", http.take_requests()));
    let url = server.url();

    // A user of the served account: fetched once, then held.
    let creds = trust.user_creds("a.creds", &trust.account);
    let client = connect_creds(&url, &creds).await.unwrap();
    let mut sub = client.subscribe("greet").await.unwrap();
    client.flush().await.unwrap();
    client.publish("greet", Bytes::from("hi")).await.unwrap();
    assert_eq!(next_message(&mut sub).await.payload, "hi");
    let again = connect_creds(&url, &trust.user_creds("a2.creds", &trust.account))
        .await
        .unwrap();
    again.flush().await.unwrap();
    seen.push(format!("account A: {:?}", http.take_requests()));

    // An account the HTTP server does not hold: refused, and asked again
    // at the next login (a failure is not remembered).
    let stranger = nkeys::KeyPair::new_account();
    let stranger_creds = trust.user_creds("s.creds", &stranger);
    for attempt in 0..2 {
        let refused = connect_creds(&url, &stranger_creds).await.unwrap_err();
        seen.push(format!("stranger {attempt}: {}", refused.to_lowercase()));
    }
    seen.push(format!("stranger: {:?}", http.take_requests()));

    // An account JWT signed by an untrusted operator: fetched, not used.
    let rogue = nkeys::KeyPair::new_account();
    http.serve(
        &rogue.public_key(),
        &jwt::account(&nkeys::KeyPair::new_operator(), &rogue, json!({})),
    );
    let refused = connect_creds(&url, &trust.user_creds("r.creds", &rogue))
        .await
        .unwrap_err();
    seen.push(format!("rogue: {}", refused.to_lowercase()));
    seen.push(format!("rogue: {:?}", http.take_requests()));

    // Claims updates reach accounts the resolver fetched (the URL
    // resolver tracks no updates itself), as with `MEMORY`.
    let system_client = connect_creds(&url, &trust.user_creds("sys.creds", &trust.system))
        .await
        .unwrap();
    let updated = jwt::account(
        &trust.operator,
        &trust.account,
        json!({"mappings": {"foo": [{"subject": "greet", "weight": 100}]}}),
    );
    let reply = within(
        "a claims update",
        system_client.request(
            format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.UPDATE"),
            updated.into(),
        ),
    )
    .await
    .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    seen.push(format!("update: {}", reply["data"]));
    client.publish("foo", Bytes::from("mapped")).await.unwrap();
    let message = next_message(&mut sub).await;
    seen.push(format!("mapped: {} {:?}", message.subject, message.payload));
    seen.push(format!("after update: {:?}", http.take_requests()));

    let fetch_warnings = messages(&server, "Account fetch failed");
    seen.push(format!("warnings: {}", fetch_warnings.len()));
    for warning in fetch_warnings {
        seen.push(warning.replace(&port.to_string(), "PORT"));
    }
    // The keys are drawn anew for each server: named, they compare.
    let names = [
        (system, "SYS"),
        (account.clone(), "A"),
        (stranger.public_key(), "STRANGER"),
        (rogue.public_key(), "ROGUE"),
    ];
    named(&seen, &names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_resolver_fetches_accounts_over_http() {
    let mut results = Vec::new();
    for binary in binaries() {
        results.push(url_resolver_scenario(&binary).await);
    }
    assert_same_runs(&results, "404 Not Found");
}

/// With a URL resolver the server checks at start that the base URL
/// answers (it does not start otherwise), then fetches the system account;
/// without it the system account runs without claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_resolver_start_up() {
    let trust = Trust::new("url-start");
    let http = JwtServer::default();
    let port = http.start().await;
    let config = trust.config(
        "start.conf",
        &format!("URL(\"http://127.0.0.1:{port}/jwt/v1/accounts/\")"),
    );
    let mut results = Vec::new();
    for binary in binaries() {
        let mut seen = Vec::new();
        // No system account JWT: a system user still logs in, nothing
        // more is fetched for it.
        let server = ServerProcess::start_binary(binary.clone(), &["-c", config.to_str().unwrap()]);
        seen.push(format!("start: {:?}", http.take_requests()));
        let system =
            connect_creds(&server.url(), &trust.user_creds("sys.creds", &trust.system)).await;
        seen.push(format!("system user: {:?}", system.map(|_| ())));
        seen.push(format!("login: {:?}", http.take_requests()));
        drop(server);

        http.home.store(false, std::sync::atomic::Ordering::Relaxed);
        let binary_for_thread = binary.clone();
        let config_for_thread = config.clone();
        let (code, output) =
            tokio::task::spawn_blocking(move || exit_of(&binary_for_thread, &config_for_thread))
                .await
                .unwrap();
        http.home.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(code, Some(1), "{}: {output}", binary.display());
        let first = output.trim().lines().next().unwrap_or("").to_string();
        seen.push(
            first
                .split_once(": ")
                .map_or(first.clone(), |(_, message)| message.to_string())
                .replace(&port.to_string(), "PORT"),
        );
        seen.push(format!("refused start: {:?}", http.take_requests()));
        results.push(seen);
    }
    let ours = &results[0];
    assert!(
        ours.iter().any(|line| line.contains(
            "could not fetch <\"http://127.0.0.1:PORT/jwt/v1/accounts/\">: 404 Not Found"
        )),
        "{ours:#?}"
    );
    if let Some(theirs) = results.get(1) {
        assert_eq!(ours, theirs);
    }
}

/// `trusted_keys` names operator keys without their JWTs: accounts signed
/// by one of them are trusted, others not; the start-up checks and their
/// texts are the reference's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_keys_stand_in_for_operator_jwts() {
    let trust = Trust::new("trusted-keys");
    let operator = trust.operator.public_key();
    let system = trust.system.public_key();
    let account = trust.account.public_key();
    let rogue = nkeys::KeyPair::new_account();
    let preload = format!(
        "resolver: MEMORY\nresolver_preload: {{\n  {system}: {}\n  {account}: {}\n  {}: {}\n}}\n",
        jwt::account(&trust.operator, &trust.system, json!({})),
        jwt::account(&trust.operator, &trust.account, json!({})),
        rogue.public_key(),
        jwt::account(&nkeys::KeyPair::new_operator(), &rogue, json!({})),
    );
    let good = trust.dir.join("trusted.conf");
    std::fs::write(
        &good,
        format!("trusted_keys: [{operator}]\nsystem_account: {system}\n{preload}"),
    )
    .unwrap();
    let a_creds = trust.user_creds("a.creds", &trust.account);
    let rogue_creds = trust.user_creds("rogue.creds", &rogue);
    let mut results = Vec::new();
    for binary in binaries() {
        let server = ServerProcess::start_binary(binary.clone(), &["-c", good.to_str().unwrap()]);
        let mut seen = Vec::new();
        let client = connect_creds(&server.url(), &a_creds).await;
        seen.push(format!("account user: {:?}", client.as_ref().map(|_| ())));
        if let Ok(client) = client {
            let mut sub = client.subscribe("x").await.unwrap();
            client.flush().await.unwrap();
            client.publish("x", Bytes::from("1")).await.unwrap();
            seen.push(format!("{:?}", next_message(&mut sub).await.payload));
        }
        let rogue = connect_creds(&server.url(), &rogue_creds).await;
        seen.push(format!(
            "rogue: {:?}",
            rogue.map(|_| ()).map_err(|e| e.to_lowercase())
        ));
        let anonymous = within(
            "a connect without creds",
            ConnectOptions::new()
                .max_reconnects(Some(1))
                .connect(server.url()),
        )
        .await;
        seen.push(format!("anonymous: {}", anonymous.is_err()));
        seen.push(format!(
            "trusted operators lines: {}",
            messages(&server, "Trusted Operators").len()
        ));
        results.push(seen);
    }
    let ours = &results[0];
    assert_eq!(ours[0], "account user: Ok(())", "{ours:#?}");
    if let Some(theirs) = results.get(1) {
        assert_eq!(ours, theirs);
    }

    // Refusals at start, compared by their message.
    let operator_file = trust.operator_file();
    let variants = [
        (
            "conflict.conf",
            format!(
                "operator: {}\ntrusted_keys: [{operator}]\n{preload}",
                operator_file.display()
            ),
        ),
        // Not on line 1, where the reference counts columns from 0.
        (
            "badkey.conf",
            format!("# a key of the wrong kind\ntrusted_keys: [{operator}, {account}]\n"),
        ),
        (
            "badtype.conf",
            String::from("# not a string\ntrusted_keys: 1\n"),
        ),
        (
            "badresolver.conf",
            format!("# no such resolver\ntrusted_keys: [{operator}]\nresolver: nothing\n"),
        ),
    ];
    for (name, text) in variants {
        let path = trust.dir.join(name);
        std::fs::write(&path, text).unwrap();
        let mut messages = Vec::new();
        for binary in binaries() {
            let binary_for_thread = binary.clone();
            let path = path.clone();
            let (code, output) =
                tokio::task::spawn_blocking(move || exit_of(&binary_for_thread, &path))
                    .await
                    .unwrap();
            assert_eq!(code, Some(1), "{name} {}: {output}", binary.display());
            let first = output.trim().lines().next().unwrap_or("").to_string();
            messages.push(
                first
                    .split_once(": ")
                    .map_or(first.clone(), |(_, message)| message.to_string()),
            );
        }
        if messages.len() == 2 {
            assert_eq!(messages[0], messages[1], "{name}");
        }
    }
}

/// A user JWT's `times`: `HH:MM:SS` ranges in `times_location`, the
/// connection admitted only inside one and closed at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_connect_times() {
    let trust = Trust::new("times");
    let system = trust.system.public_key();
    let account = trust.account.public_key();
    let config = trust.dir.join("times.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {}\nresolver: MEMORY\nresolver_preload: {{\n  {system}: {}\n  {account}: {}\n}}\n",
            trust.operator_file().display(),
            jwt::account(&trust.operator, &trust.system, json!({})),
            jwt::account(&trust.operator, &trust.account, json!({})),
        ),
    )
    .unwrap();
    // Times of day (UTC) `offset` seconds from now.
    let clock = |offset: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let of_day = (now + offset).rem_euclid(86_400);
        format!(
            "{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    };
    let user = |file: &str, times: serde_json::Value, location: &str| {
        let key = nkeys::KeyPair::new_user();
        let token = jwt::user(
            &trust.account,
            &key,
            json!({"times": times, "times_location": location}),
            json!({}),
        );
        let path = trust.dir.join(file);
        std::fs::write(&path, jwt::creds(&token, &key)).unwrap();
        path
    };
    let mut results = Vec::new();
    for binary in binaries() {
        let server = ServerProcess::start_binary(binary.clone(), &["-c", config.to_str().unwrap()]);
        let url = server.url();
        let mut seen = Vec::new();
        let inside = user(
            "inside.creds",
            json!([{"start": clock(-3600), "end": clock(3600)}]),
            "UTC",
        );
        // The same window in another zone is another window.
        let elsewhere = user(
            "elsewhere.creds",
            json!([{"start": clock(-3600), "end": clock(3600)}]),
            "Asia/Kolkata",
        );
        let outside = user(
            "outside.creds",
            json!([{"start": clock(3600), "end": clock(7200)}]),
            "",
        );
        let unknown = user(
            "unknown.creds",
            json!([{"start": clock(-3600), "end": clock(3600)}]),
            "Mars/Olympus_Mons",
        );
        for (name, creds) in [
            ("inside", &inside),
            ("elsewhere", &elsewhere),
            ("outside", &outside),
            ("unknown zone", &unknown),
        ] {
            let result = connect_creds(&url, creds).await;
            seen.push(format!(
                "{name}: {:?}",
                result.map(|_| ()).map_err(|e| e.to_lowercase())
            ));
        }
        // A range ending in 3 seconds: admitted, then closed at its end.
        let ending = user(
            "ending.creds",
            json!([{"start": clock(-60), "end": clock(3)}]),
            "",
        );
        let (options, mut errors) = common::forward_errors(
            ConnectOptions::with_credentials_file(&ending)
                .await
                .unwrap(),
        );
        let _client = within("the ending user's connect", options.connect(&url))
            .await
            .unwrap();
        let error = within("the end of the range", errors.recv()).await;
        seen.push(format!("at the end: {error:?}"));
        results.push(seen);
    }
    let ours = &results[0];
    assert_eq!(ours[0], "inside: Ok(())", "{ours:#?}");
    assert!(ours[2].starts_with("outside: Err"), "{ours:#?}");
    if let Some(theirs) = results.get(1) {
        assert_eq!(ours, theirs);
    }
}

/// `resolver: URL("https://...")`: the account server's certificate is
/// checked against `resolver_tls { ca_file }`; without it (the system's
/// roots do not hold the test's CA) the start-up check of the URL fails.
/// Both servers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_resolver_urls_use_resolver_tls() {
    let trust = Trust::new("url-https");
    let pki = common::generated_server_certificate(&trust.dir);
    let http = JwtServer::default();
    let port = http.start_tls(&pki).await;
    http.serve(
        &trust.account.public_key(),
        &jwt::account(&trust.operator, &trust.account, json!({})),
    );
    let url = format!("URL(\"https://localhost:{port}/jwt/v1/accounts/\")");
    let trusted = trust.config("https.conf", &url);
    let text = std::fs::read_to_string(&trusted).unwrap();
    std::fs::write(
        &trusted,
        format!(
            "{text}resolver_tls {{ ca_file: {:?} }}\n",
            pki.ca.display().to_string()
        ),
    )
    .unwrap();
    let untrusted = trust.config("https-untrusted.conf", &url);
    for binary in binaries() {
        let server =
            ServerProcess::start_binary(binary.clone(), &["-c", trusted.to_str().unwrap()]);
        let creds = trust.user_creds("a.creds", &trust.account);
        let client = connect_creds(&server.url(), &creds)
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", binary.display()));
        let mut sub = client.subscribe("greet").await.unwrap();
        client.flush().await.unwrap();
        client.publish("greet", Bytes::from("hi")).await.unwrap();
        assert_eq!(next_message(&mut sub).await.payload, "hi");
        drop(server);

        let (code, output) = exit_of(&binary, &untrusted);
        assert_eq!(code, Some(1), "{}: {output}", binary.display());
        assert!(
            output.contains(&format!(
                "could not fetch <\"https://localhost:{port}/jwt/v1/accounts/\">: Get"
            )),
            "{}: {output}",
            binary.display()
        );
    }
}

/// Seconds since the epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A client of `creds` whose server errors and connection events are
/// collected (lower case), reconnecting at most once.
async fn watched_client(url: &str, creds: &Path) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let options = ConnectOptions::with_credentials_file(creds)
        .await
        .unwrap()
        .max_reconnects(Some(1))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move { seen.lock().unwrap().push(event.to_string().to_lowercase()) }
        });
    let client = within("a connect", options.connect(url)).await.unwrap();
    (client, events)
}

/// The reasons of the connections closed so far but the clients' own
/// (the harness's probes), once `at_least` of them are `reason`.
async fn closed_reasons(server: &ServerProcess, reason: &str, at_least: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + common::WAIT_TIMEOUT;
    loop {
        let connz = rnats_tests::http_json(server.http_port(), "/connz?state=closed");
        let reasons: Vec<String> = connz["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|conn| conn["reason"].as_str().unwrap_or_default().to_string())
            .filter(|closed| closed != "Client Closed")
            .collect();
        if reasons.iter().filter(|closed| *closed == reason).count() >= at_least {
            return reasons;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waiting for {reason} among the closed connections: {reasons:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What one server did when the JWT of an account the URL resolver
/// fetched expired: its client is closed (`Account Authentication
/// Expired`), and the client's next login fetches the account again,
/// getting the renewed JWT the HTTP server holds by then.
async fn url_expired_account_scenario(binary: &Path) -> Vec<String> {
    let name = binary.file_name().unwrap().to_string_lossy().into_owned();
    let trust = Trust::new(&format!("url-exp-{name}"));
    let http = JwtServer::default();
    let port = http.start().await;
    let system = trust.system.public_key();
    let account = trust.account.public_key();
    http.serve(
        &system,
        &jwt::account(&trust.operator, &trust.system, json!({})),
    );
    let expiring = jwt::account_with(
        &trust.operator,
        &trust.account,
        json!({}),
        json!({"exp": unix_now() + 3}),
    );
    http.serve(&account, &expiring);
    let config = trust.config(
        "url-exp.conf",
        &format!("URL(\"http://127.0.0.1:{port}/jwt/v1/accounts/\")"),
    );
    let server = ServerProcess::start_binary(
        binary.to_path_buf(),
        &["-m", "-1", "-c", config.to_str().unwrap()],
    );
    http.take_requests();
    let mut seen = Vec::new();
    let creds = trust.user_creds("a.creds", &trust.account);
    let (client, events) = watched_client(&server.url(), &creds).await;
    seen.push(format!("login: {:?}", http.take_requests()));
    // Renewed (no expiry) before the old one runs out.
    http.serve(
        &account,
        &jwt::account(&trust.operator, &trust.account, json!({})),
    );
    seen.push(format!(
        "closed: {:?}",
        closed_reasons(&server, "Authentication Expired", 1).await
    ));
    // The client logs in again: the expired account is fetched again.
    within("the client to log in again", async {
        while !events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event.contains("connected"))
            .any(|event| !event.contains("disconnected"))
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    let mut sub = client.subscribe("greet").await.unwrap();
    client.flush().await.unwrap();
    client
        .publish("greet", Bytes::from("renewed"))
        .await
        .unwrap();
    seen.push(format!(
        "message: {:?}",
        next_message(&mut sub).await.payload
    ));
    seen.push(format!("refetch: {:?}", http.take_requests()));
    seen.push(format!("events: {:?}", events.lock().unwrap()));
    let names = [(system, "SYS"), (account, "A")];
    named(&seen, &names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_resolver_fetches_expired_accounts_again() {
    let mut results = Vec::new();
    for binary in binaries() {
        results.push(url_expired_account_scenario(&binary).await);
    }
    assert_same_runs(&results, "account authentication expired");
}

/// What one server's full resolver did with an account JWT that expired:
/// its client closed, a new login refused (the expired file is what the
/// directory holds), the account left out of `CLAIMS.LIST` at once, and
/// its file removed at the tracker's first tick after the expiry (a
/// minute after start).
async fn dir_expired_account_scenario(binary: &Path) -> Vec<String> {
    let name = binary.file_name().unwrap().to_string_lossy().into_owned();
    let trust = Trust::new(&format!("dir-exp-{name}"));
    let (dir, config) = trust.full_resolver("dir-exp.conf");
    let system_key = trust.system.public_key();
    let account_key = trust.account.public_key();
    let (system, account) = (&system_key, &account_key);
    let file = dir.join(format!("{account}.jwt"));
    let expires = unix_now() + 3;
    let expiring = jwt::account_with(
        &trust.operator,
        &trust.account,
        json!({}),
        json!({"exp": expires}),
    );
    std::fs::write(&file, expiring).unwrap();
    let started = std::time::Instant::now();
    let server = ServerProcess::start_binary(
        binary.to_path_buf(),
        &["-m", "-1", "-c", config.to_str().unwrap()],
    );
    let mut seen = Vec::new();
    let system_client = connect_creds(&server.url(), &trust.user_creds("sys.creds", &trust.system))
        .await
        .unwrap();
    let list = |client: async_nats::Client| async move {
        let reply = within(
            "a list",
            client.request("$SYS.REQ.CLAIMS.LIST", Bytes::new()),
        )
        .await
        .unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        let mut keys: Vec<String> = reply["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key.as_str().unwrap().to_string())
            .map(|key| {
                key.replace(system.as_str(), "SYS")
                    .replace(account.as_str(), "A")
            })
            .collect();
        keys.sort();
        keys
    };
    seen.push(format!("list: {:?}", list(system_client.clone()).await));
    let creds = trust.user_creds("a.creds", &trust.account);
    let (_client, events) = watched_client(&server.url(), &creds).await;
    seen.push(format!(
        "closed: {:?}",
        closed_reasons(&server, "Authentication Failure", 1).await
    ));
    // A JWT is left out of lists once its `exp` second is over.
    while unix_now() <= expires {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    seen.push(format!("list: {:?}", list(system_client.clone()).await));
    let refused = connect_creds(&server.url(), &creds).await.unwrap_err();
    seen.push(format!("login: {}", refused.to_lowercase()));
    seen.push(format!("file kept: {}", file.exists()));
    tokio::time::timeout(std::time::Duration::from_secs(75), async {
        while file.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the expired JWT's file to go");
    let after = started.elapsed().as_secs();
    seen.push(format!(
        "file gone within a tick: {}",
        (55..70).contains(&after)
    ));
    seen.push(format!(
        "expiry error: {}",
        events
            .lock()
            .unwrap()
            .iter()
            .any(|event| event.contains("account authentication expired"))
    ));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_resolver_expired_account_jwts() {
    let binaries = binaries();
    let mut runs = Vec::new();
    for binary in &binaries {
        runs.push(dir_expired_account_scenario(binary));
    }
    // A minute each: run side by side.
    let results = futures::future::join_all(runs).await;
    let ours = &results[0];
    assert!(
        ours.iter().any(|line| line == "expiry error: true"),
        "{ours:#?}"
    );
    if let Some(theirs) = results.get(1) {
        assert_eq!(ours, theirs);
    }
}

/// The warnings one server logs at start for preloaded account JWTs that
/// do not validate (expired, not yet valid, breaking their own limits),
/// the keys named.
fn preload_warnings(binary: &Path) -> Vec<String> {
    let name = binary.file_name().unwrap().to_string_lossy().into_owned();
    let trust = Trust::new(&format!("preload-{name}"));
    let system = trust.system.public_key();
    let system_jwt = jwt::account(&trust.operator, &trust.system, json!({}));
    let expired = jwt::account_with(
        &trust.operator,
        &trust.account,
        json!({}),
        json!({"exp": 1_600_000_000}),
    );
    let later = nkeys::KeyPair::new_account();
    let later_jwt = jwt::account_with(
        &trust.operator,
        &later,
        json!({}),
        json!({"nbf": 4_000_000_000i64}),
    );
    // Expired and over its own imports limit: every issue listed.
    let both = nkeys::KeyPair::new_account();
    let both_jwt = jwt::account_with(
        &trust.operator,
        &both,
        json!({
            "limits": {"subs": -1, "data": -1, "payload": -1, "imports": 0, "exports": -1,
                       "wildcards": true, "conn": -1, "leaf": -1},
            "imports": [{"name": "i", "subject": "x", "account": system, "type": "stream"}],
        }),
        json!({"exp": 1_600_000_000}),
    );
    // Over its exports limit, with a wildcard export it may not have.
    let exports = nkeys::KeyPair::new_account();
    let exports_jwt = jwt::account(
        &trust.operator,
        &exports,
        json!({
            "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": 0,
                       "wildcards": false, "conn": -1, "leaf": -1},
            "exports": [{"name": "e", "subject": "e.*", "type": "stream"}],
        }),
    );
    let config = trust.dir.join("preload.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {}\nsystem_account: {system}\nresolver: MEMORY\nresolver_preload: {{\n  \
             {system}: {system_jwt}\n  {}: {expired}\n  {}: {later_jwt}\n  {}: {both_jwt}\n  \
             {}: {exports_jwt}\n}}\n",
            trust.operator_file().display(),
            trust.account.public_key(),
            later.public_key(),
            both.public_key(),
            exports.public_key(),
        ),
    )
    .unwrap();
    let server =
        ServerProcess::start_binary(binary.to_path_buf(), &["-c", config.to_str().unwrap()]);
    // Logged as the server starts; rnats may log them just after ready.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let names = [
        (trust.account.public_key(), "EXPIRED"),
        (later.public_key(), "LATER"),
        (both.public_key(), "BOTH"),
        (exports.public_key(), "EXPORTS"),
    ];
    let warnings: Vec<String> = server
        .log_lines()
        .iter()
        .filter_map(|line| line.split_once("[WRN] ").map(|(_, m)| m.to_string()))
        .collect();
    let mut lines = named(&warnings, &names);
    // The accounts come in the preload's (map) order, which differs.
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for line in lines.drain(..) {
        match blocks.last_mut() {
            Some(block) if line.starts_with("  - ") => block.push(line),
            _ => blocks.push(vec![line]),
        }
    }
    blocks.sort();
    blocks.concat()
}

#[test]
fn preloaded_account_jwts_are_validated_at_start() {
    // (The reference's validation finds too many imports twice.)
    let results: Vec<Vec<String>> = binaries().iter().map(|b| preload_warnings(b)).collect();
    let ours = &results[0];
    assert_eq!(
        ours,
        &[
            "Account [BOTH] has validation issues:",
            "  - claim is expired",
            "  - the account contains more imports than allowed by the operator",
            "  - the account contains more imports than allowed by the operator",
            "Account [EXPIRED] has validation issues:",
            "  - claim is expired",
            "Account [EXPORTS] has validation issues:",
            "  - the account contains more exports than allowed by the operator",
            "  - the account contains wildcard exports that are not allowed by the operator",
            "Account [LATER] has validation issues:",
            "  - claim is not yet valid",
        ],
        "{ours:#?}"
    );
    if let Some(theirs) = results.get(1) {
        assert_eq!(ours, theirs);
    }
}

/// What one server answered to account JWTs that break the JWT library's
/// rules, pushed to the full resolver (each on the general subject and on
/// its account's), and to logins with user JWTs that break them; keys
/// named.
async fn invalid_claims_scenario(binary: &Path) -> Vec<String> {
    let name = binary.file_name().unwrap().to_string_lossy().into_owned();
    let trust = Trust::new(&format!("invalid-claims-{name}"));
    let (dir, config) = trust.full_resolver("invalid-claims.conf");
    let exporter = trust.account.public_key();
    std::fs::write(
        dir.join(format!("{exporter}.jwt")),
        jwt::account(&trust.operator, &trust.account, json!({})),
    )
    .unwrap();
    let server = ServerProcess::start_binary(
        binary.to_path_buf(),
        &["-p", "-1", "-m", "-1", "-c", config.to_str().unwrap()],
    );
    let system_client = connect_creds(&server.url(), &trust.user_creds("sys.creds", &trust.system))
        .await
        .unwrap();
    let unlimited = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                           "wildcards": true, "conn": -1, "leaf": -1});
    let cases = [
        json!({"limits": unlimited, "imports": [
            {"subject": "a..b", "account": exporter},
            {"subject": "c", "account": "", "type": "service", "allow_trace": true},
            {"subject": "d.*", "account": exporter, "type": "stream", "share": true,
             "local_subject": "e.$2"}]}),
        json!({"limits": unlimited, "exports": [{"subject": "x", "type": "bogus"}]}),
        json!({"limits": unlimited, "imports": [
            {"subject": "svc.>", "account": exporter, "type": "service"},
            {"subject": "svc.a", "account": exporter, "type": "service"}]}),
        json!({"limits": unlimited, "exports": [
            {"subject": "foo.*", "type": "service"},
            {"subject": "foo.bar", "type": "service", "response_type": "Bogus"},
            {"subject": "s.x", "type": "stream", "response_type": "Stream",
             "response_threshold": 5, "account_token_position": 1},
            {"subject": "t.*.u", "type": "stream", "account_token_position": 3}]}),
        json!({"limits": unlimited, "mappings": {"m.>": [
            {"subject": "n.>", "weight": 60}, {"subject": "o.>", "weight": 60}]}}),
        json!({"limits": unlimited, "default_permissions": {
            "pub": {"allow": ["a b"]}, "sub": {"deny": ["x y z"]}}}),
        json!({"limits": unlimited, "signing_keys": ["NOTAKEY"], "info_url": "nope",
               "cluster_traffic": "bogus", "description": "d"}),
        json!({"limits": unlimited, "trace": {"dest": "t.*", "sampling": 200}}),
        json!({"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                          "wildcards": true, "conn": -1, "leaf": -1, "mem_storage": 1,
                          "tiered_limits": {"": {"mem_storage": 1}}}}),
        json!({"limits": {"subs": -1, "data": -1, "payload": -1, "imports": 0, "exports": -1,
                          "wildcards": true, "conn": -1, "leaf": -1},
               "imports": [{"subject": "i", "account": exporter, "type": "stream"}]}),
    ];
    let mut seen = Vec::new();
    let mut names = vec![(exporter.clone(), "EXPORTER".to_string())];
    for (index, nats) in cases.iter().enumerate() {
        let account = nkeys::KeyPair::new_account();
        names.push((account.public_key(), format!("CASE{index}")));
        let token = jwt::account(&trust.operator, &account, nats.clone());
        for subject in [
            "$SYS.REQ.CLAIMS.UPDATE".to_string(),
            format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", account.public_key()),
        ] {
            let reply = within(
                "a claims push",
                system_client.request(subject, token.clone().into()),
            )
            .await
            .unwrap();
            seen.push(String::from_utf8_lossy(&reply.payload).into_owned());
        }
        let stored = dir.join(format!("{}.jwt", account.public_key())).exists();
        seen.push(format!("case {index} stored: {stored}"));
    }
    // Users whose own claims break the rules are refused at login.
    for (index, nats) in [
        json!({}),
        json!({"src": ["10.0.0.1"]}),
        json!({"src": ["127.0.0.0/8", "not a network"]}),
        json!({"pub": {"allow": ["a b"]}}),
        json!({"times": [{"start": "8:00:00", "end": "25:00:00"}]}),
        json!({"times": [{"start": "00:00:00", "end": "23:59:59"}],
               "times_location": "Nowhere/Special"}),
    ]
    .into_iter()
    .enumerate()
    {
        let user = nkeys::KeyPair::new_user();
        let token = jwt::user(&trust.account, &user, nats, json!({}));
        let path = trust.dir.join(format!("user{index}.creds"));
        std::fs::write(&path, jwt::creds(&token, &user)).unwrap();
        let login = connect_creds(&server.url(), &path).await;
        seen.push(format!("user {index} logs in: {}", login.is_ok()));
    }
    // Server names and ids differ between the servers.
    let seen: Vec<String> = seen
        .into_iter()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(mut reply) => {
                    reply.as_object_mut().unwrap().remove("server");
                    reply.to_string()
                }
                Err(_) => line,
            },
        )
        .collect();
    let names: Vec<(String, &str)> = names.iter().map(|(k, n)| (k.clone(), n.as_str())).collect();
    named(&seen, &names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_resolver_refuses_claims_that_do_not_validate() {
    let binaries = binaries();
    // Refused logins take seconds each: run side by side.
    let results =
        futures::future::join_all(binaries.iter().map(|b| invalid_claims_scenario(b))).await;
    let ours = &results[0];
    assert!(
        ours.iter()
            .any(|line| line.contains("jwt validation failed - validation errors: [")),
        "{ours:#?}"
    );
    assert!(
        ours.iter().all(|line| !line.ends_with("stored: true")),
        "{ours:#?}"
    );
    assert!(
        ours.contains(&"user 0 logs in: true".to_string()),
        "{ours:#?}"
    );
    if let Some(theirs) = results.get(1) {
        for (line, (mine, reference)) in ours.iter().zip(theirs).enumerate() {
            assert_eq!(mine, reference, "line {line}");
        }
        assert_eq!(ours.len(), theirs.len());
    }
}
