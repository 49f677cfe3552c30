//! Black-box tests of the rnats-server process: flags, files it writes, log
//! lines and signals.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rnats_tests::{rnats_server_binary, ServerProcess};

fn rnats(args: &[&str]) -> std::process::Output {
    Command::new(rnats_server_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rnats-server")
}

/// Runs rnats-server expecting it to exit: (exit code, stderr). A process
/// still running after `limit` is killed and reported with no exit code.
fn rnats_exit(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = Command::new(rnats_server_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rnats-server");
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for rnats-server") {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (code, stderr)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `check` every 20 ms for up to 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn version_and_help() {
    let out = rnats(&["-v"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("rnats-server: v"), "{text}");
    let out = rnats(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--ports_file_dir"));
}

#[test]
fn unknown_and_unsupported_flags() {
    let out = rnats(&["-bogus"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("flag provided but not defined: -bogus"));
    let out = rnats(&["-s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flag -s is not supported yet"));
}

#[test]
fn config_check_reports_valid_and_invalid_files() {
    let dir = temp_dir("check");
    let good = dir.join("good.conf");
    std::fs::write(&good, "port: 4333\nmax_payload: 1KB\n").unwrap();
    let out = rnats(&["-c", good.to_str().unwrap(), "-t"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("is valid (sha256:"), "{text}");
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "port: 4333\nfoo: 1\n").unwrap();
    let out = rnats(&["-c", bad.to_str().unwrap(), "-t"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("unknown field \"foo\""), "{text}");
    // A warning at start is a failed check, as in the reference.
    let warned = dir.join("warned.conf");
    std::fs::write(&warned, "ping_interval: 5\n").unwrap();
    let out = rnats(&["-c", warned.to_str().unwrap(), "-t"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("invalid use of field \"ping_interval\": ping_interval should be converted to a duration"),
        "{text}"
    );
}

#[test]
fn contradicting_limits_pass_the_check_but_refuse_to_start() {
    let dir = temp_dir("limits");
    let file = dir.join("limits.conf");
    std::fs::write(&file, "max_pending: 100\n").unwrap();
    // As the reference: `-t` calls the file valid, starting refuses it.
    assert!(rnats(&["-c", file.to_str().unwrap(), "-t"])
        .status
        .success());
    let out = rnats(&["-c", file.to_str().unwrap(), "-p", "-1"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("max_payload (1048576) cannot be higher than max_pending (100)"),
        "{text}"
    );
}

#[tokio::test]
async fn config_file_limits_apply_and_flags_override_it() {
    let dir = temp_dir("limits");
    let conf = dir.join("limits.conf");
    std::fs::write(&conf, "max_payload: 64\nserver_name: from_file\n").unwrap();
    let server = ServerProcess::start(&["-c", conf.to_str().unwrap(), "-n", "from_flag"]);
    let client = async_nats::connect(server.url()).await.unwrap();
    assert_eq!(client.server_info().max_payload, 64);
    assert_eq!(client.server_info().server_name, "from_flag");
}

#[test]
fn pid_ports_and_log_files_then_clean_stop_on_sigterm() {
    let dir = temp_dir("files");
    let pid_file = dir.join("server.pid");
    let log_file = dir.join("server.log");
    let mut child = Command::new(rnats_server_binary())
        .args(["-a", "127.0.0.1", "-p", "-1", "-P"])
        .arg(&pid_file)
        .arg("--ports_file_dir")
        .arg(&dir)
        .arg("-l")
        .arg(&log_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let ports_file = dir.join(format!("rnats-server_{pid}.ports"));
    eventually("the ports file", || ports_file.exists());
    let ports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ports_file).unwrap()).unwrap();
    let url = ports["nats"][0].as_str().unwrap().to_string();
    assert!(url.starts_with("nats://127.0.0.1:"), "{ports}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    eventually("Server is ready in the log", || {
        std::fs::read_to_string(&log_file).is_ok_and(|log| log.contains("[INF] Server is ready"))
    });
    let log = std::fs::read_to_string(&log_file).unwrap();
    let port = url.rsplit(':').next().unwrap();
    assert!(
        log.contains(&format!(
            "Listening for client connections on 127.0.0.1:{port}"
        )),
        "{log}"
    );
    assert!(log.contains("[INF] Starting nats-server"), "{log}");

    // `-sl term=<pid file>` stops it cleanly and it removes its ports file.
    let out = rnats(&["-sl", &format!("term={}", pid_file.display())]);
    assert!(out.status.success(), "{out:?}");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!ports_file.exists(), "ports file removed at shutdown");
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("Trapped \"terminated\" signal"), "{log}");
    assert!(log.contains("Server Exiting.."), "{log}");
}

// Multi-threaded: `eventually` blocks its thread while the client's tasks run.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_config_file() {
    let dir = temp_dir("reload");
    let conf = dir.join("reload.conf");
    std::fs::write(&conf, "authorization { user: a, password: b }\n").unwrap();
    let server = ServerProcess::start(&["-c", conf.to_str().unwrap()]);
    let old = async_nats::ConnectOptions::with_user_and_password("a".into(), "b".into())
        .max_reconnects(Some(1))
        .connect(server.url())
        .await
        .unwrap();
    assert_eq!(old.server_info().max_payload, 1024 * 1024);

    std::fs::write(
        &conf,
        "authorization { user: a, password: c }\nmax_payload: 100\n",
    )
    .unwrap();
    server.signal("HUP");
    eventually("the reload log line", || {
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("Reloaded server configuration (sha256:"))
    });
    let log = server.log_lines().join("\n");
    assert!(log.contains("Reloaded: max_payload = 100"), "{log}");
    assert!(log.contains("Reloaded: authorization password"), "{log}");
    assert!(!log.contains("password: c"), "secrets never logged");

    // The old credentials no longer pass: that connection is closed by the server.
    eventually("the old connection to drop", || {
        old.connection_state() != async_nats::connection::State::Connected
    });
    let refused = async_nats::ConnectOptions::with_user_and_password("a".into(), "b".into())
        .connect(server.url())
        .await;
    assert!(refused.is_err(), "old password refused after reload");
    let new = async_nats::ConnectOptions::with_user_and_password("a".into(), "c".into())
        .connect(server.url())
        .await
        .unwrap();
    assert_eq!(new.server_info().max_payload, 100);
}

/// A key of a feature rnats lacks (or a security setting it does not enforce)
/// refuses start-up by name, and `-t` reports the same error: running
/// without `operator` would accept clients without JWTs.
#[test]
fn unsupported_config_keys_refuse_start_and_check() {
    let dir = temp_dir("unsupported");
    for (text, key) in [
        // Leaf nodes are not built.
        ("leafnodes { port: -1 }\n", "\"leafnodes\""),
        // A key held in a TPM is not honoured.
        ("jetstream { tpm { keys_file: x } }\n", "\"jetstream.tpm\""),
        ("cluster { port: -1, compression: s2_fast }\n", "\"cluster.compression\""),
        (
            "websocket { port: -1, tls { cert_file: c, key_file: k, pinned_certs: [] } }\n",
            "\"websocket.tls.pinned_certs\"",
        ),
        (
            "authorization { users: [ {user: a, password: b, allowed_connection_types: [STANDARD]} ] }\n",
            "\"authorization.users.allowed_connection_types\"",
        ),
    ] {
        let file = dir.join("unsupported.conf");
        std::fs::write(&file, format!("port: -1\n{text}")).unwrap();
        for check in [true, false] {
            let mut args = vec!["-c", file.to_str().unwrap()];
            if check {
                args.push("-t");
            }
            // Bounded: a server that wrongly starts is killed, not waited for.
            let (code, stderr) = rnats_exit(&args, Duration::from_secs(10));
            assert_eq!(code, Some(1), "{text} (-t: {check}): {stderr}");
            assert!(
                stderr.contains("unsupported.conf:2:")
                    && stderr.contains(&format!("configuration key {key} is not supported yet")),
                "{text} (-t: {check}): {stderr}"
            );
        }
    }
    // A harmless key, or one that turns its feature off, only warns.
    let file = dir.join("harmless.conf");
    std::fs::write(
        &file,
        "port: -1\ntrace_verbose: true\njetstream: disabled\n",
    )
    .unwrap();
    assert!(rnats(&["-c", file.to_str().unwrap(), "-t"])
        .status
        .success());
}

/// On SIGHUP a file that gained an unsupported key is refused like any
/// reload error: the server logs it and keeps its running configuration.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_refuses_a_newly_added_unsupported_key() {
    let dir = temp_dir("reload-unsupported");
    let conf = dir.join("reload.conf");
    std::fs::write(&conf, "authorization { user: a, password: b }\n").unwrap();
    let server = ServerProcess::start(&["-c", conf.to_str().unwrap()]);
    std::fs::write(
        &conf,
        "authorization { user: a, password: c }\nleafnodes { port: -1 }\n",
    )
    .unwrap();
    server.signal("HUP");
    eventually("the reload error", || {
        server.log_lines().iter().any(|l| {
            l.contains("Failed to reload server configuration:")
                && l.contains("configuration key \"leafnodes\" is not supported yet")
        })
    });
    let log = server.log_lines().join("\n");
    assert!(!log.contains("Reloaded server configuration"), "{log}");
    let old = async_nats::ConnectOptions::with_user_and_password("a".into(), "b".into())
        .connect(server.url())
        .await;
    assert!(old.is_ok(), "the old configuration still applies");
}

/// `write_deadline` from the config file bounds a write to a client that
/// stopped reading: well before the 10 s default, the connection is closed as
/// `Slow Consumer (Write Deadline)` and `/connz?state=closed` says so.
/// (`max_pending` is large so that the pending-bytes limit cannot fire first.)
#[test]
fn write_deadline_closes_a_subscriber_that_stopped_reading() {
    use std::io::{Read, Write};
    let dir = temp_dir("write-deadline");
    let conf = dir.join("deadline.conf");
    std::fs::write(&conf, "write_deadline: \"300ms\"\nmax_pending: 1GB\n").unwrap();
    let server = ServerProcess::start(&["-c", conf.to_str().unwrap(), "-m", "-1"]);
    let port = server.http_port();

    let mut subscriber = std::net::TcpStream::connect(server.addr()).unwrap();
    subscriber
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    subscriber
        .write_all(b"CONNECT {\"verbose\":false,\"name\":\"stalled\"}\r\nSUB flood 1\r\nPING\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("PONG\r\n") {
        let n = subscriber.read(&mut buf).unwrap();
        assert!(n > 0, "closed before PONG");
        seen.extend_from_slice(&buf[..n]);
    }
    // From here on the subscriber reads nothing.

    let mut publisher = std::net::TcpStream::connect(server.addr()).unwrap();
    publisher
        .write_all(b"CONNECT {\"verbose\":false}\r\n")
        .unwrap();
    let payload = vec![b'x'; 512 * 1024];
    let mut frame = b"PUB flood 524288\r\n".to_vec();
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(b"\r\n");
    // 64 MiB: far more than the socket buffers between server and subscriber.
    for _ in 0..128 {
        if publisher.write_all(&frame).is_err() {
            break;
        }
    }
    let published = Instant::now();
    let reason = loop {
        let closed = rnats_tests::http_json(port, "/connz?state=closed");
        let reason = closed["connections"].as_array().and_then(|conns| {
            conns
                .iter()
                .find(|c| c["name"] == "stalled")
                .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
        });
        if let Some(reason) = reason {
            break reason;
        }
        assert!(
            published.elapsed() < Duration::from_secs(6),
            "the stalled subscriber is still open 6 s after the flood (write_deadline 300ms)"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(reason, "Slow Consumer (Write Deadline)");
}

/// The lines from "Starting JetStream" to the closing dashes, without the
/// log prefix. The disk limit is measured live, so only its presence counts.
fn jetstream_lines(server: &ServerProcess) -> Vec<String> {
    let lines: Vec<String> = server
        .log_lines()
        .iter()
        .filter_map(|line| {
            let level = ["[INF]", "[WRN]", "[DBG]", "[ERR]"]
                .iter()
                .filter_map(|level| line.find(level))
                .min()?;
            Some(line[level..].to_string())
        })
        .map(|line| match line.find("Max Storage:") {
            Some(at) if line.contains("[INF]") => format!("{}<measured>", &line[..at]),
            _ => line,
        })
        .collect();
    let start = lines
        .iter()
        .position(|l| l.ends_with("Starting JetStream"))
        .expect("JetStream started");
    let end = lines
        .iter()
        .position(|l| l.ends_with("-------------------------------------------"))
        .expect("JetStream banner closed");
    lines[start..=end].to_vec()
}

/// `-js -sd` and a `jetstream {}` block log what the reference logs.
#[test]
fn jetstream_start_up_lines_match_the_reference() {
    let dir = temp_dir("js-banner");
    let conf = dir.join("js.conf");
    std::fs::write(
        &conf,
        format!(
            "jetstream {{ store_dir: \"{}\", max_mem: 1G, max_file: 1T, domain: hub, strict: false }}\n",
            dir.join("conf").display()
        ),
    )
    .unwrap();
    let flags_dir = dir.join("flags").display().to_string();
    let conf = conf.display().to_string();
    for args in [
        vec!["-js", "-sd", flags_dir.as_str()],
        vec!["-c", conf.as_str()],
    ] {
        let ours = jetstream_lines(&ServerProcess::start(&args));
        assert!(
            ours.iter().any(|l| l.contains("Store Directory: \"")),
            "{ours:?}"
        );
        let Some(reference) = ServerProcess::start_reference(&args) else {
            return;
        };
        assert_eq!(ours, jetstream_lines(&reference), "{args:?}");
    }
}
