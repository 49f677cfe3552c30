//! A real browser over WebSocket: headless Chromium (Debian's `chromium`)
//! loads a page from this test's own HTTP server; the page's script is
//! `tests/interop/browser_client.mjs` bundled by esbuild with the
//! npm-installed `@nats-io/nats-core` (both from `scripts/install-interop-deps`),
//! and it connects with `wsconnect` over `ws://`, publishes to itself with
//! headers, answers its own request, then takes three messages from an
//! async-nats client on TCP (one larger than a browser's 4 KiB frames) and
//! publishes what it got. The test asserts both what the page reports in the
//! DOM Chromium dumps and what it published.
//!
//! The page holds its load event with an image the HTTP server answers only
//! once the page has asked for `/done`, so `--dump-dom` dumps the finished
//! page. Chromium runs with a fresh profile and without its background
//! networking, so it talks to nothing but this machine's loopback.
//!
//! Without Chromium, esbuild or nats-core the test prints a NOTICE and skips;
//! in CI (`CI=true` or `RNATS_REQUIRE_REFERENCE=1`) that is a failure.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{connect_with, next_message, sync_with_server, within};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rnats_tests::ServerProcess;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Bounds Chromium's whole run (start, page, connection, exit).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the held image waits for the page's `/done` before giving up,
/// so that a broken page still lets Chromium dump what it has.
const HOLD_TIMEOUT: Duration = Duration::from_secs(30);

const PAGE: &str =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>rnats browser test</title></head>\
<body><pre id=\"result\">pending</pre><img src=\"/hold.gif\" alt=\"\">\
<script type=\"module\" src=\"/page.js\"></script></body></html>";

#[tokio::test]
async fn chromium_with_nats_js_over_ws_subscribes_publishes_and_receives() {
    let Some(chromium) = find_on_path("chromium") else {
        return skip("Debian's chromium is not installed");
    };
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop");
    let node_modules = interop.join("js/node_modules");
    let esbuild = node_modules.join(".bin/esbuild");
    if !esbuild.is_file() || !node_modules.join("@nats-io/nats-core").is_dir() {
        return skip("esbuild or @nats-io/nats-core is not installed in tests/interop/js");
    }
    let dir = std::env::temp_dir().join(format!("rnats-ws-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("page.js");
    let built = Command::new(&esbuild)
        .arg(interop.join("browser_client.mjs"))
        .args([
            "--bundle",
            "--format=esm",
            "--target=es2022",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", bundle.display()))
        // The page script lives beside js/, not in it.
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("run esbuild");
    assert!(
        built.status.success(),
        "esbuild failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let config = dir.join("server.conf");
    std::fs::write(
        &config,
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n",
    )
    .unwrap();
    let server = ServerProcess::start(&["-c", config.to_str().unwrap(), "-m", "-1"]);
    let ws_url = format!("ws://127.0.0.1:{}", server.websocket_port());
    let tcp = connect_with(&server.url(), async_nats::ConnectOptions::new()).await;
    let mut ready = tcp.subscribe("browser.ready").await.unwrap();
    let mut out = tcp.subscribe("browser.out").await.unwrap();
    sync_with_server(&tcp).await;

    let http_port = serve_page(std::fs::read(&bundle).unwrap()).await;
    let profile = dir.join("profile");
    let page_url = format!("http://127.0.0.1:{http_port}/?server={ws_url}");
    let browser = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&page_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let dumped = tokio::spawn(tokio::time::timeout(
        BROWSER_TIMEOUT,
        browser.wait_with_output(),
    ));

    // The page is connected and subscribed once it says it is ready.
    let hello = within("browser.ready from the page", next_message(&mut ready)).await;
    assert_eq!(hello.payload, Bytes::from("ready"));
    let big: String = (0..20_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut with_header = async_nats::HeaderMap::new();
    with_header.insert("X-Test", "from tcp");
    tcp.publish("browser.in", Bytes::from("first"))
        .await
        .unwrap();
    tcp.publish("browser.in", Bytes::from(big.clone()))
        .await
        .unwrap();
    tcp.publish_with_headers("browser.in", with_header, Bytes::from("third"))
        .await
        .unwrap();
    tcp.flush().await.unwrap();
    let echoed = within("browser.out from the page", next_message(&mut out)).await;
    let echoed: serde_json::Value = serde_json::from_slice(&echoed.payload).unwrap();
    let expected_received = serde_json::json!([
        {"subject": "browser.in", "length": 5, "head": "first", "header": null},
        {"subject": "browser.in", "length": 20_000, "head": &big[..16], "header": null},
        {"subject": "browser.in", "length": 5, "head": "third", "header": "from tcp"},
    ]);
    assert_eq!(echoed, expected_received, "what the page published");

    let output = dumped
        .await
        .unwrap()
        .expect("chromium ran longer than its bound")
        .expect("chromium's output");
    let dom = String::from_utf8_lossy(&output.stdout);
    let result = result_json(&dom).unwrap_or_else(|| {
        panic!(
            "no result in the dumped DOM:\n{dom}\n--- chromium stderr ---\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(result.get("error").is_none(), "the page failed: {result}");
    assert_eq!(
        result["self"],
        serde_json::json!({"data": "to myself", "header": "chromium"})
    );
    assert_eq!(result["reply"], "re: ping");
    assert_eq!(result["received"], expected_received);
    assert_eq!(result["closed"], true);
    let user_agent = result["userAgent"].as_str().unwrap_or_default();
    assert!(user_agent.starts_with("Mozilla/"), "{user_agent}");

    // The server saw a websocket client named by the page.
    let connz = rnats_tests::http_json(server.http_port(), "/connz?state=closed");
    let names: Vec<(&str, &str)> = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or(""),
                c["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        names.contains(&("websocket", "rnats-browser")),
        "closed connections: {names:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The JSON text of `<pre id="result">` in a dumped DOM.
fn result_json(dom: &str) -> Option<serde_json::Value> {
    let (_, rest) = dom.split_once("<pre id=\"result\">")?;
    let (text, _) = rest.split_once("</pre>")?;
    let text = text
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).ok()
}

/// Serves the page, its bundled script, the image that holds the load event
/// and `/done` on an ephemeral loopback port; returns the port.
async fn serve_page(bundle: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bundle = Bytes::from(bundle);
    let done = Arc::new(Notify::new());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let bundle = bundle.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let bundle = bundle.clone();
                    let done = done.clone();
                    async move { Ok::<_, Infallible>(answer(request.uri().path(), bundle, &done).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

async fn answer(path: &str, bundle: Bytes, done: &Notify) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from(PAGE),
        ),
        "/page.js" => (StatusCode::OK, "text/javascript", bundle),
        "/hold.gif" => {
            let _ = tokio::time::timeout(HOLD_TIMEOUT, done.notified()).await;
            (StatusCode::NOT_FOUND, "text/plain", Bytes::new())
        }
        "/done" => {
            // notify_one stores a permit when the image request is not yet waiting.
            done.notify_one();
            (StatusCode::NO_CONTENT, "text/plain", Bytes::new())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", Bytes::new()),
    };
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-store")
        .body(Full::new(body))
        .unwrap()
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A missing browser or bundler: a NOTICE here, a failure in CI.
fn skip(reason: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || rnats_tests::reference_required();
    let message = format!(
        "NOTICE: {reason}; run scripts/install-interop-deps. Skipping the browser websocket test."
    );
    assert!(!in_ci, "{message} (CI does not skip it)");
    eprintln!("{message}");
}
