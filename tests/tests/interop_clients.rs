//! Interop: the official Python (nats-py) and JavaScript (nats.js) clients against
//! the server under test.
//!
//! Each test starts a server with the harness and runs one client script from
//! `tests/interop/` against it: `py_client.py` with `python3`, `js_client.mjs` with
//! `node`. A script runs its checks (connect, literal and wildcard pub/sub, a queue
//! group of three, request/reply, no responders, headers, auto-unsubscribe, drain
//! and close), prints one line per check and exits 0 only when all passed. Given a
//! user and password after the URL, the same script instead runs the authentication
//! checks against a server started with `--user`/`--pass`. The test asserts the exit
//! code and shows the script's output and the server's log when it is not 0.
//!
//! The client libraries come from `scripts/install-interop-deps`. When one is
//! missing (the interpreter is absent, or the script exits 77 because the import
//! failed) the test prints a NOTICE and passes without checking anything, unless
//! `RNATS_REQUIRE_INTEROP_CLIENTS=1` is set, which turns the NOTICE into a failure.
//! Given `--jetstream`, a script runs its JetStream checks (nats-py's
//! `nc.jetstream()`, nats.js's `@nats-io/jetstream`: create a stream, publish
//! with acks and a duplicate msg id, stream info, get messages back, delete)
//! against a server started with `-js -sd <fresh dir>`. Given `--consumers`, a
//! script runs its consumer, KV and object-store checks (nats-py: `pull_subscribe` + `fetch`
//! with ack/ack_sync/nak and the redelivery, a push `subscribe`, KV
//! put/get/create/update/delete/history/keys/watch; nats.js:
//! `consumers.get` + `fetch`/`consume`, `@nats-io/kv` the same; both: an
//! object store put/get of 1 MiB in chunks with its digest, list, delete),
//! asserting what a user sees: data, sequences, delivery counts, pending
//! counts, revisions.
//! Given `--creds GOOD BAD`, a script logs in to a server in operator mode
//! with a user's `.creds` file (nats-py `user_credentials`, nats.js
//! `credsAuthenticator`) and is refused with one of an unknown account.
//! Over WebSocket the same messaging and authentication checks run with a
//! `ws://` (and `wss://`, with a generated certificate) URL against a server
//! with a `websocket { }` block: nats.js through nats-core's `wsconnect` (Node
//! with a global WebSocket), nats-py through its aiohttp transport.
//! Validate the scripts against the reference with
//! `RNATS_TEST_SERVER_BIN=nats-server cargo test -p rnats-tests --test interop_clients`.

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rnats_tests::ServerProcess;

/// Upper bound on one script run. Each check inside a script has its own timeout
/// (10 s), so this only catches a script that hangs outside its checks.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The exit code a script uses to say its client library is not installed.
const EXIT_CODE_SKIPPED: i32 = 77;

/// How often a running script is polled for its exit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The user and password of the servers started for the authentication checks.
const USER: &str = "interop";
const PASSWORD: &str = "s3cret-pass";

const NATS_PY: Client = Client {
    library: "nats-py",
    program: "python3",
    program_args: &[],
    script: "py_client.py",
    installed_marker: None,
};

const NATS_JS: Client = Client {
    library: "nats.js",
    program: "node",
    program_args: &[],
    script: "js_client.mjs",
    installed_marker: Some("js/node_modules/@nats-io/transport-node/package.json"),
};

/// nats.js over WebSocket: nats-core's `wsconnect` needs a global WebSocket,
/// which Node 20 has behind this flag (later versions accept it too).
const NATS_JS_WS: Client = Client {
    library: "nats.js (@nats-io/nats-core wsconnect)",
    program_args: &["--experimental-websocket"],
    installed_marker: Some("js/node_modules/@nats-io/nats-core/package.json"),
    ..NATS_JS
};

/// nats.js's JetStream checks need `@nats-io/jetstream` besides the transport.
const NATS_JS_JETSTREAM: Client = Client {
    library: "nats.js (@nats-io/jetstream)",
    installed_marker: Some("js/node_modules/@nats-io/jetstream/package.json"),
    ..NATS_JS
};

/// nats.js's consumer, KV and object-store checks also need `@nats-io/kv`
/// and `@nats-io/obj` (installed together from the lockfile).
const NATS_JS_KV: Client = Client {
    library: "nats.js (@nats-io/jetstream, @nats-io/kv, @nats-io/obj)",
    installed_marker: Some("js/node_modules/@nats-io/obj/package.json"),
    ..NATS_JS
};

#[test]
fn nats_py_passes_every_check() {
    run_client(&NATS_PY, &[], &[]);
}

#[test]
fn nats_py_authenticates_with_user_and_password() {
    run_client(
        &NATS_PY,
        &["--user", USER, "--pass", PASSWORD],
        &[USER, PASSWORD],
    );
}

#[test]
fn nats_py_authenticates_with_a_creds_file() {
    run_creds_client(&NATS_PY, "py");
}

#[test]
fn nats_js_authenticates_with_a_creds_file() {
    run_creds_client(&NATS_JS, "js");
}

#[test]
fn nats_js_passes_every_check() {
    run_client(&NATS_JS, &[], &[]);
}

#[test]
fn nats_js_authenticates_with_user_and_password() {
    run_client(
        &NATS_JS,
        &["--user", USER, "--pass", PASSWORD],
        &[USER, PASSWORD],
    );
}

#[test]
fn nats_py_jetstream_stream_lifecycle() {
    run_jetstream_client(&NATS_PY, "py");
}

#[test]
fn nats_js_jetstream_stream_lifecycle() {
    run_jetstream_client(&NATS_JS_JETSTREAM, "js");
}

#[test]
fn nats_py_consumers_and_key_value() {
    run_jetstream_checks(&NATS_PY, "py-consumers", "--consumers");
}

#[test]
fn nats_js_consumers_and_key_value() {
    run_jetstream_checks(&NATS_JS_KV, "js-consumers", "--consumers");
}

#[test]
fn nats_py_over_websocket_passes_every_check() {
    run_over_websocket(&NATS_PY, Tls::Off, &[], &[]);
}

#[test]
fn nats_js_over_websocket_passes_every_check() {
    run_over_websocket(&NATS_JS_WS, Tls::Off, &[], &[]);
}

#[test]
fn nats_py_over_websocket_authenticates_with_user_and_password() {
    run_over_websocket(
        &NATS_PY,
        Tls::Off,
        &["--user", USER, "--pass", PASSWORD],
        &[USER, PASSWORD],
    );
}

#[test]
fn nats_js_over_websocket_authenticates_with_user_and_password() {
    run_over_websocket(
        &NATS_JS_WS,
        Tls::Off,
        &["--user", USER, "--pass", PASSWORD],
        &[USER, PASSWORD],
    );
}

#[test]
fn nats_py_over_wss_passes_every_check() {
    run_over_websocket(&NATS_PY, Tls::Generated, &[], &[]);
}

#[test]
fn nats_js_over_wss_passes_every_check() {
    run_over_websocket(&NATS_JS_WS, Tls::Generated, &[], &[]);
}

/// Whether the websocket listener has TLS.
#[derive(Clone, Copy)]
enum Tls {
    Off,
    /// A certificate generated for the test; the client trusts its CA through
    /// the environment (`SSL_CERT_FILE` for Python, `NODE_EXTRA_CA_CERTS`).
    Generated,
}

/// Starts a server with a websocket listener (and `server_flags`) and runs
/// the client's script against its `ws://` or `wss://` URL.
fn run_over_websocket(client: &Client, tls: Tls, server_flags: &[&str], script_args: &[&str]) {
    if !installed(client) {
        return;
    }
    let tag = match tls {
        Tls::Off => "ws",
        Tls::Generated => "wss",
    };
    // Tests run in parallel in one process: each gets its own directory.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("rnats-interop-{tag}-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the config dir");
    let (block, env, scheme) = match tls {
        Tls::Off => ("no_tls: true".to_string(), Vec::new(), "ws"),
        Tls::Generated => {
            let pki = common::generated_server_certificate(&dir);
            let ca = pki.ca.to_str().expect("utf-8 temp dir").to_string();
            (
                format!(
                    "tls {{ cert_file: \"{}\", key_file: \"{}\" }}",
                    pki.cert.display(),
                    pki.key.display()
                ),
                vec![("SSL_CERT_FILE", ca.clone()), ("NODE_EXTRA_CA_CERTS", ca)],
                "wss",
            )
        }
    };
    let config = dir.join("server.conf");
    std::fs::write(
        &config,
        format!("websocket {{\n listen: \"127.0.0.1:-1\"\n {block}\n}}\n"),
    )
    .expect("write the config");
    let mut flags = vec!["-c", config.to_str().expect("utf-8 temp dir")];
    flags.extend_from_slice(server_flags);
    let server = ServerProcess::start(&flags);
    // The certificate names 127.0.0.1 and localhost; Node checks the name.
    let url = format!("{scheme}://127.0.0.1:{}", server.websocket_port());
    run_script(client, &server, &url, script_args, &env);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the client's `--jetstream` checks against a server with JetStream on
/// and a fresh store directory (removed afterwards).
fn run_jetstream_client(client: &Client, tag: &str) {
    run_jetstream_checks(client, tag, "--jetstream");
}

/// Runs the client's checks selected by `mode` against a server with
/// JetStream on and a fresh store directory (removed afterwards).
fn run_jetstream_checks(client: &Client, tag: &str, mode: &str) {
    let dir = std::env::temp_dir().join(format!("rnats-interop-js-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().expect("utf-8 temp dir").to_string();
    run_client(client, &["-js", "-sd", &dir_arg], &[mode]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One official client and the script that exercises it.
struct Client {
    library: &'static str,
    program: &'static str,
    /// Arguments for `program` before the script.
    program_args: &'static [&'static str],
    /// The script in `tests/interop/`.
    script: &'static str,
    /// A file under `tests/interop/` that exists once the library is installed,
    /// checked before a server is started; None when the script checks itself.
    installed_marker: Option<&'static str>,
}

/// What a finished script left behind.
struct ScriptRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Starts a server with `server_flags`, runs the client's script against it with
/// `script_args` after the URL, and asserts that every check passed.
fn run_client(client: &Client, server_flags: &[&str], script_args: &[&str]) {
    if !installed(client) {
        return;
    }
    let server = ServerProcess::start(server_flags);
    run_script(client, &server, &server.url(), script_args, &[]);
}

/// Operator mode: an operator, a system account and an account preloaded
/// into a `MEMORY` resolver; the script logs in with a user's `.creds` file
/// and is refused with one of an account the server does not know.
fn run_creds_client(client: &Client, tag: &str) {
    if !installed(client) {
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("rnats-interop-creds-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let operator = nkeys::KeyPair::new_operator();
    let system = nkeys::KeyPair::new_account();
    let account = nkeys::KeyPair::new_account();
    let operator_jwt = jwt::operator(
        &operator,
        serde_json::json!({"system_account": system.public_key()}),
    );
    let operator_path = dir.join("operator.jwt");
    std::fs::write(&operator_path, operator_jwt).unwrap();
    let config = dir.join("server.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {operator}\nsystem_account: {system}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n  {account}: {account_jwt}\n}}\n",
            operator = operator_path.display(),
            system = system.public_key(),
            account = account.public_key(),
            system_jwt = jwt::account(&operator, &system, serde_json::json!({})),
            account_jwt = jwt::account(&operator, &account, serde_json::json!({})),
        ),
    )
    .unwrap();
    let creds = |name: &str, issuer: &nkeys::KeyPair| {
        let user = nkeys::KeyPair::new_user();
        let token = jwt::user(issuer, &user, serde_json::json!({}), serde_json::json!({}));
        let path = dir.join(name);
        std::fs::write(&path, jwt::creds(&token, &user)).unwrap();
        path.display().to_string()
    };
    let good = creds("good.creds", &account);
    let bad = creds("bad.creds", &nkeys::KeyPair::new_account());
    let server = ServerProcess::start(&["-c", config.to_str().unwrap()]);
    run_script(
        client,
        &server,
        &server.url(),
        &["--creds", &good, &bad],
        &[],
    );
}

/// Whether the client's library is installed (a skip is reported when not).
fn installed(client: &Client) -> bool {
    if let Some(marker) = client.installed_marker {
        let marker = interop_dir().join(marker);
        if !marker.is_file() {
            skip(client.library, &format!("{} is missing", marker.display()));
            return false;
        }
    }
    true
}

/// Runs the client's script against `url` of `server` with `script_args`
/// after the URL and `env` added to its environment, and asserts that every
/// check passed.
fn run_script(
    client: &Client,
    server: &ServerProcess,
    url: &str,
    script_args: &[&str],
    env: &[(&str, String)],
) {
    let script = interop_dir().join(client.script);
    assert!(script.is_file(), "{} is missing", script.display());
    let mut command = Command::new(client.program);
    command
        .args(client.program_args)
        .arg(&script)
        .arg(url)
        .args(script_args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            skip(
                client.library,
                &format!("`{}` is not on PATH", client.program),
            );
            return;
        }
        Err(error) => panic!(
            "cannot start {} {}: {error}",
            client.program,
            script.display()
        ),
    };
    let started = Instant::now();
    let run = wait_bounded(child, SCRIPT_TIMEOUT);
    let elapsed = started.elapsed();
    if run.status.code() == Some(EXIT_CODE_SKIPPED) {
        print!("{}", run.stdout);
        skip(client.library, "the script could not load it");
        return;
    }
    assert!(
        run.status.success(),
        "{} failed against {} ({}):\n--- script stdout ---\n{}\n--- script stderr ---\n{}\n--- server log (last 40 lines) ---\n{}",
        client.library,
        url,
        run.status,
        run.stdout,
        run.stderr,
        last_lines(&server.log_lines(), 40),
    );
    assert!(
        run.stdout.contains("checks passed"),
        "{} exited 0 without its closing line:\n{}",
        client.library,
        run.stdout,
    );
    // Shown by `cargo test -- --nocapture`; a failure shows it in its message.
    print!("{}{}", run.stdout, run.stderr);
    println!(
        "({} script took {:.1} s)",
        client.library,
        elapsed.as_secs_f64()
    );
}

/// Waits for `child`, killing it after `timeout`. Its output is read on threads so
/// that a full pipe cannot stall it.
fn wait_bounded(mut child: Child, timeout: Duration) -> ScriptRun {
    let stdout = read_on_thread(child.stdout.take().expect("stdout is piped"));
    let stderr = read_on_thread(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the client script") {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("reap the client script");
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        !timed_out,
        "client script ran longer than {timeout:?} and was killed:\n{stdout}\n{stderr}"
    );
    ScriptRun {
        status,
        stdout,
        stderr,
    }
}

fn read_on_thread(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Reports a client that cannot run here; fails instead when clients are required.
fn skip(library: &str, reason: &str) {
    let message = format!(
        "NOTICE: {library} is not installed ({reason}); run scripts/install-interop-deps. Skipping its interop checks."
    );
    if std::env::var_os("RNATS_REQUIRE_INTEROP_CLIENTS").is_some_and(|v| v == "1") {
        panic!("{message} (RNATS_REQUIRE_INTEROP_CLIENTS=1 forbids skipping)");
    }
    // Written to the process's stderr, past the test harness's capture, so that a
    // skip shows in a plain `cargo test` run.
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

fn last_lines(lines: &[String], count: usize) -> String {
    lines[lines.len().saturating_sub(count)..].join("\n")
}
