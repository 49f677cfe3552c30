//! The system account's services inside the machine: events, request
//! replies and the statsz heartbeat, with exact subjects and the JSON
//! pinned by snapshots (every time comes from the test's clock).

use super::*;
use crate::auth::{AccountConfig, User};
use crate::monitor::{self, HostStats, SubszOptions};
use crate::time::WallTime;

const WALL_START: u64 = 1_763_818_200 * 1_000_000_000;

fn user(name: &str, account: &str) -> User {
    User {
        username: name.into(),
        password: "pw".into(),
        permissions: None,
        account: account.into(),
    }
}

/// Accounts A and SYS (the system account), a user in each, a fixed clock.
fn harness() -> Harness {
    let config = ServerConfig {
        server_name: "unit".into(),
        auth: AuthConfig {
            users: vec![user("a", "A"), user("op", "SYS")],
            ..AuthConfig::default()
        },
        accounts: vec![AccountConfig::new("A"), AccountConfig::new("SYS")],
        system_account: Some("SYS".into()),
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    h.server
        .set_wall_clock(t(0), WallTime::from_unix_nanos(WALL_START));
    h.server.set_host_stats(HostStats {
        mem: 1 << 20,
        cpu: 1.5,
        cores: 2,
    });
    h
}

fn login(h: &mut Harness, conn: u64, name: &str, client_name: &str) -> ConnId {
    h.connect(
        conn,
        &format!(r#"{{"user":"{name}","pass":"pw","name":"{client_name}","lang":"rust"}}"#),
    )
}

/// The JSON payloads of the MSGs in `output`, with their subjects.
fn messages(output: &str) -> Vec<(String, serde_json::Value)> {
    let mut found = Vec::new();
    let mut lines = output.split("\r\n");
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("MSG ") {
            let subject = rest.split(' ').next().unwrap().to_owned();
            let payload = lines.next().unwrap();
            found.push((subject, serde_json::from_str(payload).unwrap()));
        }
    }
    found
}

#[test]
fn connect_and_disconnect_events_are_published() {
    let mut h = harness();
    let op = login(&mut h, 1, "op", "watcher");
    h.send(op, "SUB $SYS.ACCOUNT.> 1\r\n");
    let _ = h.take(op);
    let a = login(&mut h, 2, "a", "worker");
    h.now = t(1500);
    h.send(a, "PUB x 3\r\nabc\r\n");
    h.server.handle_closed(t(2000), a);
    let events = messages(&h.take(op));
    let subjects: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "$SYS.ACCOUNT.A.CONNECT",
            "$SYS.ACCOUNT.A.SERVER.CONNS",
            "$SYS.ACCOUNT.A.DISCONNECT",
            "$SYS.ACCOUNT.A.SERVER.CONNS",
        ]
    );
    let disconnect = &events[2].1;
    assert_eq!(disconnect["client"]["name"], "worker");
    assert_eq!(disconnect["client"]["stop"], "2025-11-22T13:30:02Z");
    assert_eq!(disconnect["received"]["bytes"], 3);
    assert_eq!(disconnect["reason"], "Client Closed");
    assert_eq!(events[3].1["conns"], 0);
    assert_eq!(events[3].1["received"]["msgs"], 1);
    insta::assert_json_snapshot!("connect_event", events[0].1);
}

#[test]
fn statsz_heartbeat_ramps_up_to_its_interval() {
    let mut h = harness();
    let op = login(&mut h, 1, "op", "watcher");
    h.send(op, "SUB $SYS.SERVER.*.STATSZ 1\r\n");
    let _ = h.take(op);
    let mut beats = Vec::new();
    while beats.len() < 8 {
        let due = h
            .server
            .poll_timeout()
            .expect("the heartbeat is always due sometime");
        h.server.handle_timeout(due);
        let out = h.take(op);
        if out.contains("STATSZ") {
            beats.push(due.as_nanos() / 1_000_000);
        }
    }
    assert_eq!(beats, [250, 750, 1750, 3750, 7750, 15750, 25750, 35750]);
}

fn request(h: &mut Harness, conn: ConnId, subject: &str, reply: &str, payload: &str) {
    h.send(
        conn,
        &format!("PUB {subject} {reply} {}\r\n{payload}\r\n", payload.len()),
    );
}

#[test]
fn requests_are_answered_on_the_reply_subject() {
    let mut h = harness();
    let op = login(&mut h, 1, "op", "operator");
    let a = login(&mut h, 2, "a", "member");
    h.send(a, "SUB member.topic 1\r\nSUB inbox 2\r\n");
    h.send(op, "SUB reply.> 9\r\n");
    request(&mut h, op, "$SYS.REQ.SERVER.PING.IDZ", "reply.idz", "");
    request(
        &mut h,
        op,
        "$SYS.REQ.SERVER.PING.CONNZ",
        "reply.connz",
        r#"{"subscriptions":true}"#,
    );
    request(
        &mut h,
        op,
        "$SYS.REQ.SERVER.PING.SUBSZ",
        "reply.bad",
        r#"{"test":"a.*"}"#,
    );
    request(
        &mut h,
        op,
        "$SYS.REQ.SERVER.PING.VARZ",
        "reply.none",
        r#"{"server_name":"other"}"#,
    );
    let replies = messages(&h.take(op));
    let subjects: Vec<&str> = replies.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subjects, ["reply.idz", "reply.connz", "reply.bad"]);
    assert_eq!(replies[0].1["name"], "unit");
    let rows = replies[1].1["data"]["connections"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1]["subscriptions_list"],
        serde_json::json!(["member.topic", "inbox"])
    );
    assert_eq!(replies[2].1["error"]["code"], 400);

    // Account A asks through its imports and sees only itself.
    request(&mut h, a, "$SYS.REQ.ACCOUNT.PING.CONNZ", "inbox", "");
    let answer = messages(&h.take(a));
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].0, "inbox");
    let rows = answer[0].1["data"]["connections"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "member");
}

#[test]
fn monitoring_pages_snapshot() {
    let mut h = harness();
    let a = login(&mut h, 2, "a", "member");
    h.send(a, "SUB t.> 1\r\nPUB t.x 2\r\nhi\r\n");
    let _ = h.take(a);
    let clock = h.server.clock(t(5000));
    // Typed pages keep their field order: the snapshot pins it too.
    let pretty = |json: Result<String, serde_json::Error>| json.unwrap();
    insta::assert_snapshot!(
        "varz",
        pretty(serde_json::to_string_pretty(&monitor::varz(
            &h.server.view(),
            clock
        )))
    );
    let opts = SubszOptions::from_query("subs=1&acc=A").unwrap();
    insta::assert_snapshot!(
        "subsz",
        pretty(serde_json::to_string_pretty(&monitor::subsz(
            &h.server.view(),
            &opts,
            clock
        )))
    );
    let accountz = monitor::accountz(&h.server.view(), "A", clock).unwrap();
    insta::assert_snapshot!("accountz", pretty(serde_json::to_string_pretty(&accountz)));
    let accstatz = monitor::accstatz(&h.server.view(), &[], false, clock);
    insta::assert_snapshot!("accstatz", pretty(serde_json::to_string_pretty(&accstatz)));
}

#[test]
fn a_responder_gets_one_rtt_ping_and_its_pong_measures_the_round_trip() {
    let mut h = harness();
    let responder = login(&mut h, 1, "a", "responder");
    h.send(responder, "SUB svc 1\r\nPING\r\n");
    assert_eq!(h.take(responder), "PONG\r\n");
    let requester = login(&mut h, 2, "a", "requester");
    h.send(requester, "PUB svc _INBOX.abcdefghijklmn 2\r\nhi\r\n");
    assert_eq!(
        h.take(responder),
        "PING\r\nMSG svc 1 _INBOX.abcdefghijklmn 2\r\nhi\r\n"
    );
    // A second request does not ask again while the first is unanswered.
    h.send(requester, "PUB svc _INBOX.abcdefghijklmn 2\r\nhi\r\n");
    assert_eq!(
        h.take(responder),
        "MSG svc 1 _INBOX.abcdefghijklmn 2\r\nhi\r\n"
    );
    h.now = t(3);
    h.send(responder, "PONG\r\n");
    let rtt = h.server.client(responder).unwrap().rtt;
    assert_eq!(rtt, Some(Duration::from_millis(3)));
    let opts = monitor::ConnzOptions::from_query("cid=1").unwrap();
    let page = monitor::connz(&h.server.view(), &opts, h.server.clock(t(5)));
    assert_eq!(page.connections[0].rtt, "3ms");
}

#[test]
fn a_failed_login_is_reported_on_the_auth_error_subject() {
    let mut h = harness();
    let op = login(&mut h, 1, "op", "watcher");
    h.send(op, "SUB $SYS.ACCOUNT.CLIENT.AUTH.ERR 1\r\n");
    let intruder = h.accept(2);
    h.send(
        intruder,
        "CONNECT {\"user\":\"a\",\"pass\":\"wrong\",\"verbose\":false}\r\n",
    );
    h.server.handle_closed(t(10), intruder);
    let events = messages(&h.take(op));
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0].1;
    assert_eq!(
        event["type"],
        "io.nats.server.advisory.v1.client_disconnect"
    );
    assert_eq!(event["reason"], "Authentication Failure");
    assert_eq!(event["client"]["user"], "a");
}
