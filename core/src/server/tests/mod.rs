//! Unit tests of the server machine: feed events, assert the exact bytes and
//! actions that come out.

use super::*;
use crate::runtime::{Action, CloseReason, ConnId, ListenerKind};

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn t(ms: u64) -> Instant {
    Instant::from_nanos(ms * 1_000_000)
}

/// A server plus helpers to act as clients.
struct Harness {
    server: Server,
    now: Instant,
}

impl Harness {
    fn new(config: ServerConfig) -> Self {
        Harness {
            server: Server::new(config, 7),
            now: t(0),
        }
    }

    fn default() -> Self {
        Self::new(ServerConfig::default())
    }

    /// Accept `conn` and throw its INFO away.
    fn accept(&mut self, conn: u64) -> ConnId {
        let conn = ConnId(conn);
        self.server.handle_accept(
            self.now,
            conn,
            peer(40000 + conn.0 as u16),
            ListenerKind::Client,
        );
        let info = self.take(conn);
        assert!(info.starts_with("INFO {"), "got {info:?}");
        conn
    }

    fn send(&mut self, conn: ConnId, bytes: &str) {
        let mut buf = BytesMut::from(bytes.as_bytes());
        self.server.handle_read(self.now, conn, &mut buf);
    }

    /// Everything queued for `conn`, reported written at once.
    fn take(&mut self, conn: ConnId) -> String {
        match self.server.take_outbound(conn) {
            Some(bytes) => {
                self.server.handle_written(conn, bytes.len());
                String::from_utf8(bytes.to_vec()).expect("utf8 output")
            }
            None => String::new(),
        }
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.server.poll_action()).collect()
    }

    /// Accept and CONNECT with `json`, verbose and pedantic off unless it says
    /// otherwise (as real clients send them; the reference defaults both on).
    fn connect(&mut self, conn: u64, json: &str) -> ConnId {
        let conn = self.accept(conn);
        let mut options: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).unwrap();
        options.entry("verbose").or_insert(false.into());
        options.entry("pedantic").or_insert(false.into());
        let json = serde_json::Value::Object(options);
        self.send(conn, &format!("CONNECT {json}\r\n"));
        let _ = self.take(conn);
        conn
    }
}

#[test]
fn info_on_accept_carries_identity_and_limits() {
    let mut h = Harness::default();
    let conn = ConnId(1);
    h.server
        .handle_accept(h.now, conn, peer(5555), ListenerKind::Client);
    let out = h.take(conn);
    // The reference puts a space between the JSON and the CRLF.
    assert!(
        out.starts_with("INFO {") && out.ends_with("} \r\n"),
        "{out:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&out[5..out.len() - 3]).unwrap();
    assert_eq!(json["max_payload"], 1048576);
    assert_eq!(json["client_id"], 1);
    assert_eq!(json["client_ip"], "127.0.0.1");
    assert_eq!(json["headers"], true);
    assert_eq!(json["proto"], 1);
    assert!(json.get("auth_required").is_none());
    assert_eq!(h.actions(), vec![Action::Transmit(conn)]);
}

#[test]
fn pub_reaches_matching_subscriptions_only() {
    let mut h = Harness::default();
    let sub = h.connect(1, "{}");
    let publisher = h.connect(2, "{}");
    h.send(sub, "SUB foo.* 1\r\nSUB foo.> 2\r\nSUB bar 3\r\n");
    h.send(
        publisher,
        "PUB foo.x reply.1 5\r\nhello\r\nPUB foo.x.y 2\r\nhi\r\n",
    );
    assert_eq!(
        h.take(sub),
        // `foo.>` before `foo.*`: the reference's match order.
        "MSG foo.x 2 reply.1 5\r\nhello\r\nMSG foo.x 1 reply.1 5\r\nhello\r\nMSG foo.x.y 2 2\r\nhi\r\n"
    );
    assert_eq!(h.server.stats().in_msgs, 2);
    assert_eq!(h.server.stats().out_msgs, 3);
}

#[test]
fn one_transmit_per_connection_per_step() {
    let mut h = Harness::default();
    let sub = h.connect(1, "{}");
    let publisher = h.connect(2, "{}");
    h.send(sub, "SUB foo 1\r\n");
    let _ = h.actions();
    h.send(
        publisher,
        "PUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n",
    );
    assert_eq!(h.actions(), vec![Action::Transmit(sub)]);
}

#[test]
fn queue_group_gets_each_message_once() {
    let mut h = Harness::default();
    let members: Vec<ConnId> = (1..=3).map(|i| h.connect(i, "{}")).collect();
    for m in &members {
        h.send(*m, "SUB work workers 1\r\n");
    }
    let publisher = h.connect(9, "{}");
    for _ in 0..300 {
        h.send(publisher, "PUB work 1\r\nx\r\n");
    }
    let counts: Vec<usize> = members
        .iter()
        .map(|m| h.take(*m).matches("MSG work 1 1").count())
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 300, "{counts:?}");
    assert!(
        counts.iter().all(|c| *c > 50),
        "spread over members: {counts:?}"
    );
}

#[test]
fn unsub_with_max_auto_unsubscribes() {
    let mut h = Harness::default();
    let sub = h.connect(1, "{}");
    h.send(sub, "SUB foo 1\r\nUNSUB 1 2\r\n");
    h.send(
        sub,
        "PUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n",
    );
    assert_eq!(h.take(sub), "MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\n");
    assert_eq!(h.server.num_subscriptions(), 0);
}

#[test]
fn echo_false_skips_own_messages() {
    let mut h = Harness::default();
    let c = h.connect(1, r#"{"echo":false}"#);
    h.send(c, "SUB foo 1\r\nPUB foo 1\r\na\r\n");
    assert_eq!(h.take(c), "");
}

#[test]
fn verbose_acknowledges_each_operation() {
    let mut h = Harness::default();
    let c = h.accept(1);
    h.send(
        c,
        "CONNECT {\"verbose\":true}\r\nSUB foo 1\r\nPUB bar 0\r\n\r\nUNSUB 1\r\nPING\r\n",
    );
    assert_eq!(h.take(c), "+OK\r\n+OK\r\n+OK\r\n+OK\r\nPONG\r\n");
}

#[test]
fn no_responders_answers_requester_with_503() {
    let mut h = Harness::default();
    let c = h.connect(1, r#"{"headers":true,"no_responders":true}"#);
    h.send(c, "SUB _INBOX.abc 7\r\nPUB service _INBOX.abc 0\r\n\r\n");
    assert_eq!(
        h.take(c),
        "HMSG _INBOX.abc 7 39 39\r\nNATS/1.0 503\r\nNats-Subject: service\r\n\r\n\r\n"
    );
}

#[test]
fn headers_are_stripped_for_subscribers_without_header_support() {
    let mut h = Harness::default();
    let plain = h.connect(1, "{}");
    let with_headers = h.connect(2, r#"{"headers":true}"#);
    h.send(plain, "SUB foo 1\r\n");
    h.send(with_headers, "SUB foo 2\r\n");
    h.send(with_headers, "HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    assert_eq!(h.take(plain), "MSG foo 1 2\r\nhi\r\n");
    assert_eq!(
        h.take(with_headers),
        "HMSG foo 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
    );
}

#[test]
fn hpub_without_headers_in_connect_closes_silently() {
    let mut h = Harness::default();
    let c = h.connect(1, "{}");
    let _ = h.actions();
    h.send(c, "HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    assert_eq!(h.take(c), "");
    assert!(h.actions().contains(&Action::Close {
        conn: c,
        reason: CloseReason::ProtocolViolation
    }));
}

#[test]
fn connect_then_hpub_in_one_read_uses_new_capabilities() {
    let mut h = Harness::default();
    let c = h.accept(1);
    h.send(c, "CONNECT {\"headers\":true,\"verbose\":false}\r\nSUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    assert_eq!(h.take(c), "HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
}

#[test]
fn invalid_subject_is_refused_and_connection_stays() {
    let mut h = Harness::default();
    let c = h.connect(1, "{}");
    h.send(c, "SUB foo..bar 1\r\nPING\r\n");
    assert_eq!(h.take(c), "-ERR 'Invalid Subject'\r\nPONG\r\n");
    assert_eq!(h.server.num_subscriptions(), 0);
}

#[test]
fn auth_violation_before_connect_and_on_bad_credentials() {
    let config = ServerConfig {
        auth: AuthConfig::single_user("a", "b"),
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let c = h.accept(1);
    h.send(c, "PING\r\n");
    assert_eq!(h.take(c), "-ERR 'Authorization Violation'\r\n");
    let c2 = h.accept(2);
    h.send(c2, "CONNECT {\"user\":\"a\",\"pass\":\"x\"}\r\n");
    assert_eq!(h.take(c2), "-ERR 'Authorization Violation'\r\n");
    let c3 = h.accept(3);
    h.send(c3, "CONNECT {\"user\":\"a\",\"pass\":\"b\"}\r\nPING\r\n");
    assert_eq!(h.take(c3), "+OK\r\nPONG\r\n", "verbose is on by default");
}

#[test]
fn auth_timeout_closes_silent_client() {
    let config = ServerConfig {
        auth: AuthConfig::token("s3cret"),
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let c = h.accept(1);
    let _ = h.actions();
    assert_eq!(h.server.poll_timeout(), Some(t(2000)));
    h.server.handle_timeout(t(2000));
    assert_eq!(h.take(c), "-ERR 'Authentication Timeout'\r\n");
    assert!(h.actions().contains(&Action::Close {
        conn: c,
        reason: CloseReason::AuthenticationTimeout
    }));
}

#[test]
fn silent_client_goes_stale_after_ping_max() {
    let config = ServerConfig {
        ping_interval: Duration::from_secs(10),
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let c = h.connect(1, "{}");
    let mut out = String::new();
    let mut now = t(0);
    for _ in 0..10 {
        let Some(deadline) = h.server.poll_timeout() else {
            break;
        };
        now = deadline.max(now);
        h.server.handle_timeout(now);
        out.push_str(&h.take(c));
    }
    assert_eq!(out, "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n");
}

#[test]
fn pong_resets_outstanding_pings() {
    let config = ServerConfig {
        ping_interval: Duration::from_secs(10),
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let c = h.connect(1, "{}");
    for _ in 0..6 {
        let deadline = h.server.poll_timeout().unwrap();
        h.server.handle_timeout(deadline);
        h.now = deadline;
        let out = h.take(c);
        if out.contains("PING") {
            h.send(c, "PONG\r\n");
        }
        assert!(!out.contains("Stale"), "{out:?}");
    }
}

#[test]
fn slow_consumer_is_cut_off_and_publisher_is_not() {
    let config = ServerConfig {
        max_pending: 1000,
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let slow = h.connect(1, "{}");
    let fast = h.connect(2, "{}");
    let publisher = h.connect(3, "{}");
    h.send(slow, "SUB foo 1\r\n");
    h.send(fast, "SUB foo 1\r\n");
    let _ = h.actions();
    let payload = "x".repeat(100);
    for _ in 0..20 {
        h.send(publisher, &format!("PUB foo 100\r\n{payload}\r\n"));
        let _ = h.take(fast);
    }
    let actions = h.actions();
    assert!(actions.contains(&Action::Close {
        conn: slow,
        reason: CloseReason::SlowConsumerPendingBytes
    }));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Close { conn, .. } if *conn != slow)));
    assert_eq!(h.server.stats().slow_consumers, 1);
    assert_eq!(
        h.server.num_subscriptions(),
        1,
        "the slow consumer's subscription is gone"
    );
}

#[test]
fn max_payload_violation_closes() {
    let config = ServerConfig {
        max_payload: 4,
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let c = h.connect(1, "{}");
    let _ = h.actions();
    h.send(c, "PUB foo 5\r\nhello\r\n");
    assert_eq!(h.take(c), "-ERR 'Maximum Payload Violation'\r\n");
    assert!(h.actions().contains(&Action::Close {
        conn: c,
        reason: CloseReason::MaxPayloadExceeded
    }));
}

#[test]
fn max_subscriptions_refuses_extra() {
    let config = ServerConfig {
        max_subscriptions: 1,
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let c = h.connect(1, "{}");
    h.send(c, "SUB a 1\r\nSUB b 2\r\nPING\r\n");
    assert_eq!(
        h.take(c),
        "-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n"
    );
}

#[test]
fn closed_connection_leaves_no_subscriptions() {
    let mut h = Harness::default();
    let c = h.connect(1, "{}");
    h.send(c, "SUB a 1\r\nSUB b q 2\r\n");
    assert_eq!(h.server.num_subscriptions(), 2);
    h.server.handle_closed(Instant::ZERO, c);
    assert_eq!(h.server.num_subscriptions(), 0);
    assert!(h.server.client(c).is_none());
    assert_eq!(h.server.poll_timeout(), None);
}

#[test]
fn reload_closes_connections_whose_credentials_no_longer_pass() {
    let config = ServerConfig {
        auth: AuthConfig::single_user("a", "b"),
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config.clone());
    let c = h.connect(1, r#"{"user":"a","pass":"b"}"#);
    let _ = h.actions();
    let new = ServerConfig {
        auth: AuthConfig::single_user("a", "c"),
        max_payload: 100,
        ..config.clone()
    };
    assert_eq!(
        config.changes_to(&new),
        vec!["max_payload = 100", "authorization password"]
    );
    h.server.reload(new);
    assert_eq!(h.take(c), "-ERR 'Authorization Violation'\r\n");
    assert!(h.actions().contains(&Action::Close {
        conn: c,
        reason: CloseReason::AuthenticationViolation
    }));
    // New connections see the new limits and credentials.
    let c2 = h.connect(2, r#"{"user":"a","pass":"c"}"#);
    h.send(c2, "PUB foo 101\r\n");
    assert_eq!(h.take(c2), "-ERR 'Maximum Payload Violation'\r\n");
}

#[test]
fn ping_flood_from_a_peer_that_never_reads_is_bounded() {
    // Found by the server_machine fuzz target: PONGs piled up without limit.
    let config = ServerConfig {
        max_pending: 1000,
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let c = h.connect(1, "{}");
    let _ = h.actions();
    for _ in 0..100 {
        h.send(c, &"PING\r\n".repeat(10));
        let client_pending = h.server.client(c).map_or(0, |c| c.pending_bytes());
        assert!(client_pending <= 1000 + 6, "pending {client_pending}");
    }
    assert!(h.actions().contains(&Action::Close {
        conn: c,
        reason: CloseReason::SlowConsumerPendingBytes
    }));
    assert_eq!(h.server.stats().slow_consumers, 1);
}

mod routes;
mod security;
mod system;
mod websocket;

#[test]
fn reserved_subject_errors_quote_control_bytes_as_go_does() {
    // Regression: these -ERRs were built with a lossy conversion, so a `\r`
    // in the subject went to the wire raw (and a debug build panicked).
    // Texts checked against nats-server v2.15.1.
    let mut h = Harness::default();
    let conn = h.connect(1, "{}");
    h.send(
        conn,
        "PUB $NRG.a\rb 1\r\nx\r\nPUB foo _R_.a\rb 1\r\nx\r\nPUB _GR_.x\ry 1\r\nx\r\nPING\r\n",
    );
    assert_eq!(
        h.take(conn),
        concat!(
            "-ERR 'Permissions Violation for Publish to \"$NRG.a\\rb\"'\r\n",
            "-ERR 'Permissions Violation for Publish with Reply of \"_R_.a\\rb\"'\r\n",
            "-ERR 'Permissions Violation for Publish to \"_GR_.x\\ry\"'\r\n",
            "PONG\r\n"
        )
    );
}

#[test]
fn a_slow_consumer_cut_during_delivery_closes_like_any_other() {
    // Regression: delivery had its own copy of the slow-consumer close that
    // left the connection's timer filed and traced no DELSUB lines.
    let config = ServerConfig {
        max_pending: 1000,
        trace: true,
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let slow = h.connect(1, "{}");
    let publisher = h.connect(2, "{}");
    h.send(slow, "SUB foo 7\r\nSUB bar 8\r\n");
    let _ = h.actions();
    assert!(h
        .server
        .timers
        .deadline(TimerKey::Connection(slow))
        .is_some());
    let _ = h.server.take_logs().count();
    let payload = "x".repeat(600);
    for _ in 0..3 {
        h.send(publisher, &format!("PUB foo 600\r\n{payload}\r\n"));
    }
    assert_eq!(
        h.server.close_reason(slow),
        Some(CloseReason::SlowConsumerPendingBytes)
    );
    assert_eq!(h.server.timers.deadline(TimerKey::Connection(slow)), None);
    let lines: Vec<String> = h
        .server
        .take_logs()
        .filter(|r| r.conn == Some(slow))
        .map(|r| r.text)
        .collect();
    let expected = [
        "Slow Consumer Detected: MaxPending of 1000 Exceeded",
        "Client connection closed: Slow Consumer (Pending Bytes)",
        "<-> [DELSUB 7]",
        "<-> [DELSUB 8]",
    ];
    for line in expected {
        assert!(
            lines.iter().any(|l| l == line),
            "{line:?} missing in {lines:#?}"
        );
    }
    assert_eq!(h.server.num_subscriptions(), 0);
}

#[test]
fn a_peer_close_leaves_no_action_for_the_gone_connection() {
    let mut h = Harness::default();
    let conn = h.connect(1, "{}");
    h.send(conn, "PING\r\n");
    // A Transmit is queued; then the peer goes away before it is served.
    h.server.handle_closed(h.now, conn);
    let actions = h.actions();
    assert!(
        actions.iter().all(|a| a.conn() != conn),
        "actions for a connection the runtime reported gone: {actions:?}"
    );
}

#[test]
fn a_stalled_write_names_the_deadline_as_go_prints_durations() {
    let mut config = ServerConfig::default();
    config.monitoring.write_deadline = Duration::from_millis(300);
    let mut h = Harness::new(config);
    let conn = h.connect(1, "{}");
    let _ = h.server.take_logs().count();
    assert!(!h.server.handle_write_stalled(conn, 0));
    let lines: Vec<String> = h.server.take_logs().map(|r| r.text).collect();
    assert!(
        lines.contains(&String::from(
            "Slow Consumer Detected: WriteDeadline of 300ms exceeded with 1 chunks of 0 total bytes."
        )),
        "{lines:#?}"
    );
    assert_eq!(
        h.server.close_reason(conn),
        Some(CloseReason::SlowConsumerWriteDeadline)
    );
}
