//! HTTP monitoring against the real binary: true counts for traffic the test
//! generates, close reasons of closed connections, error texts, and the key
//! sets of every endpoint compared with the reference nats-server's.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{key_paths, RawConnection};
use rnats_tests::{http_get, http_json, ServerProcess};
use serde_json::Value;

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-monitor-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.conf");
    std::fs::write(&path, text).unwrap();
    path
}

/// Polls `path` until `done` holds (the server counts asynchronously to the
/// test's own socket reads), then returns the last answer.
fn wait_for(port: u16, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = http_json(port, path);
        if done(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("GET {path} never satisfied the condition; last answer: {last:#}");
}

#[tokio::test]
async fn counters_match_the_traffic_the_test_sent() {
    let server = ServerProcess::start(&["-m", "-1"]);
    let http = server.http_port();
    let mut subscriber = RawConnection::connect_quiet(
        &server.addr(),
        r#"{"verbose":false,"name":"counted","lang":"raw","version":"1"}"#,
    )
    .await;
    subscriber
        .send(b"SUB counted.> 1\r\nSUB other 2\r\nPING\r\n")
        .await;
    subscriber.read_until(b"PONG\r\n").await;
    let mut publisher = RawConnection::connect_quiet(&server.addr(), r#"{"verbose":false}"#).await;
    for i in 0..10 {
        publisher
            .send(format!("PUB counted.{i} 5\r\nhello\r\n").as_bytes())
            .await;
    }
    publisher.send(b"PUB nobody 3\r\nabc\r\nPING\r\n").await;
    publisher.read_until(b"PONG\r\n").await;
    subscriber.read_until(b"counted.9").await;

    let varz = wait_for(http, "/varz", |v| v["out_msgs"] == 10);
    assert_eq!(varz["in_msgs"], 11);
    assert_eq!(varz["in_bytes"], 53);
    assert_eq!(varz["out_bytes"], 50);
    assert_eq!(varz["connections"], 2);
    assert_eq!(varz["total_connections"], 2);
    assert_eq!(varz["http_port"], http);
    assert!(varz["http_req_stats"]["/varz"].as_u64().unwrap() >= 1);

    let connz = http_json(http, "/connz?subs=1&sort=msgs_to");
    assert_eq!(connz["num_connections"], 2);
    let first = &connz["connections"][0];
    assert_eq!(first["name"], "counted");
    assert_eq!(first["out_msgs"], 10);
    assert_eq!(first["out_bytes"], 50);
    assert_eq!(first["subscriptions"], 2);
    let subjects: BTreeSet<&str> = first["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(subjects, BTreeSet::from(["counted.>", "other"]));
    let second = &connz["connections"][1];
    assert_eq!(
        (second["in_msgs"].clone(), second["in_bytes"].clone()),
        (11.into(), 53.into())
    );

    // `num_subscriptions` also counts the server's own entries (system
    // services and their imports), as the reference's does; `total` lists
    // client subscriptions.
    assert_eq!(http_json(http, "/subsz?subs=1")["total"], 2);
    let subsz = http_json(http, "/subsz?subs=1&test=counted.x");
    assert_eq!(subsz["total"], 1);
    assert_eq!(subsz["subscriptions_list"][0]["subject"], "counted.>");
    assert_eq!(subsz["subscriptions_list"][0]["msgs"], 10);
    assert_eq!(subsz["subscriptions_list"][0]["account"], "$G");

    let accstatz = http_json(http, "/accstatz");
    let global = &accstatz["account_statz"][0];
    assert_eq!(global["acc"], "$G");
    assert_eq!(global["conns"], 2);
    assert_eq!(global["sent"]["msgs"], 10);
    assert_eq!(global["received"]["msgs"], 11);
    assert_eq!(global["received"]["bytes"], 53);
}

#[tokio::test]
async fn closed_connections_keep_their_reason() {
    let config = write_config(
        "closed",
        "max_payload: 1024\nmax_pending: 2048\nauthorization { users [{user: u, password: p}] }\n",
    );
    let server = ServerProcess::start(&["-m", "-1", "-c", config.to_str().unwrap()]);
    let http = server.http_port();

    let mut quits = RawConnection::connect_quiet(
        &server.addr(),
        r#"{"verbose":false,"user":"u","pass":"p","name":"quits"}"#,
    )
    .await;
    quits.send(b"SUB gone 1\r\nPING\r\n").await;
    quits.read_until(b"PONG\r\n").await;
    drop(quits);

    let mut intruder = RawConnection::connect(&server.addr()).await;
    intruder
        .send(b"CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"wrong\"}\r\n")
        .await;
    intruder.read_until_closed().await;

    // A subscriber that never reads while 1 MiB is published to it.
    let slow = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut slow = RawConnection::from_stream(slow).await;
    slow.send(b"CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"p\",\"name\":\"slow\"}\r\nSUB flood 1\r\nPING\r\n")
        .await;
    slow.read_until(b"PONG\r\n").await;
    let mut publisher =
        RawConnection::connect_quiet(&server.addr(), r#"{"verbose":false,"user":"u","pass":"p"}"#)
            .await;
    let payload = vec![b'x'; 1024];
    for _ in 0..1024 {
        let mut frame = b"PUB flood 1024\r\n".to_vec();
        frame.extend_from_slice(&payload);
        frame.extend_from_slice(b"\r\n");
        publisher.send(&frame).await;
    }

    let closed = wait_for(http, "/connz?state=closed&subs=1", |v| {
        v["total"].as_u64().unwrap_or(0) >= 3
    });
    let reasons: BTreeSet<String> = closed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(reasons.contains("Client Closed"), "{closed:#}");
    assert!(reasons.contains("Authentication Failure"), "{closed:#}");
    assert!(
        reasons.contains("Slow Consumer (Pending Bytes)"),
        "{closed:#}"
    );
    let quit = closed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "quits")
        .expect("the client that quit is listed");
    assert_eq!(quit["subscriptions_list"], serde_json::json!(["gone"]));
    assert!(quit["stop"].is_string());

    let varz = http_json(http, "/varz");
    assert_eq!(varz["slow_consumers"], 1);
    assert_eq!(varz["slow_consumer_stats"]["clients"], 1);
    assert_eq!(varz["auth_required"], true);
}

#[test]
fn bad_queries_and_paths_get_the_reference_answers() {
    let config = write_config("basepath", "http_port: -1\nhttp_base_path: /mon\n");
    let server = ServerProcess::start(&["-c", config.to_str().unwrap()]);
    let http = server.http_port();
    let (status, head, body) = http_get(http, "/mon/varz");
    assert_eq!(status, 200);
    assert!(head.contains("application/json"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{head}"
    );
    let varz: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(varz["http_base_path"], "/mon");
    let (status, _, body) = http_get(http, "/varz");
    assert_eq!((status, body.as_str()), (404, "404 page not found\n"));
    let (status, _, body) = http_get(http, "/mon/connz?limit=x");
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "Error decoding int for 'limit': strconv.Atoi: parsing \"x\": invalid syntax"
    );
    let (status, _, body) = http_get(http, "/mon/connz?sort=stop");
    assert_eq!(
        (status, body.as_str()),
        (400, "sort by stop only valid on closed connections")
    );
    let (status, _, body) = http_get(http, "/mon/accountz?acc=NOPE");
    assert_eq!(
        (status, body.as_str()),
        (400, "Account NOPE does not exist")
    );
    let (status, _, body) = http_get(http, "/mon/healthz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _, body) = http_get(http, "/mon/");
    assert_eq!(status, 200);
    assert!(body.contains("./varz"), "{body}");
}

/// Keys the reference reports for features rnats does not have yet.
fn lacks_feature(path: &str) -> bool {
    const ABSENT: &[&str] = &[
        // JetStream's feature flags.
        "feature_flags",
    ];
    path.split('.')
        .any(|part| ABSENT.contains(&part.trim_end_matches("[]")))
}

/// The same traffic on either server; the returned connection stays open
/// while the endpoints are read.
async fn traffic(addr: &str) -> RawConnection {
    let mut a = RawConnection::connect_quiet(
        addr,
        r#"{"verbose":false,"user":"a","pass":"a","name":"alpha","lang":"raw","version":"1"}"#,
    )
    .await;
    a.send(b"SUB s.x 1\r\nSUB q.x grp 2\r\nPUB s.x 5\r\nhello\r\nPING\r\n")
        .await;
    a.read_until(b"PONG\r\n").await;
    let mut b = RawConnection::connect_quiet(
        addr,
        r#"{"verbose":false,"user":"b","pass":"b","name":"beta"}"#,
    )
    .await;
    b.send(b"SUB p.s.> 1\r\nPING\r\n").await;
    b.read_until(b"PONG\r\n").await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    a
}

#[tokio::test]
async fn endpoint_keys_cover_the_reference() {
    let Some(reference_binary) = rnats_tests::reference_server() else {
        eprintln!(
            "NOTICE: monitoring key comparison skipped: the reference nats-server is not available"
        );
        return;
    };
    let config = write_config(
        "keys",
        "accounts {\n  A { users [{user: a, password: a}]\n      exports [{stream: \"s.>\"}, {service: \"svc.>\", accounts: [B]}]\n      mappings { \"m.a\": \"m.b\" } }\n  B { users [{user: b, password: b}]\n      imports [{stream: {account: A, subject: \"s.>\"}, prefix: p}, {service: {account: A, subject: \"svc.x\"}, to: \"local.x\"}] }\n}\n",
    );
    let args = ["-m", "-1", "-c", config.to_str().unwrap()];
    let reference = ServerProcess::start_binary(reference_binary, &args);
    let candidate = ServerProcess::start(&args);
    let _reference_client = traffic(&reference.addr()).await;
    let _candidate_client = traffic(&candidate.addr()).await;
    let endpoints = [
        "/varz",
        "/connz?subs=detail&auth=1",
        "/connz?state=closed&subs=1",
        "/subsz?subs=1",
        "/accountz",
        "/accountz?acc=A",
        "/accountz?acc=B",
        "/accstatz?unused=1",
        "/routez",
        "/gatewayz",
        "/leafz",
        "/healthz",
    ];
    let mut missing = Vec::new();
    for endpoint in endpoints {
        let expected = http_json(reference.http_port(), endpoint);
        let actual = http_json(candidate.http_port(), endpoint);
        let (mut want, mut have) = (BTreeSet::new(), BTreeSet::new());
        key_paths(&expected, "", &mut want);
        key_paths(&actual, "", &mut have);
        for path in want.difference(&have) {
            if !lacks_feature(path) {
                missing.push(format!("{endpoint}: {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys nats-server reports and rnats does not:\n{}",
        missing.join("\n")
    );
}

const SYSTEM_CONFIG: &str = "server_name: events\naccounts {\n  A { users [{user: a, password: a}] }\n  SYS { users [{user: sys, password: sys}] }\n}\nsystem_account: SYS\n";

async fn login(server: &ServerProcess, user: &str, name: &str) -> async_nats::Client {
    common::connect_with(
        &server.url(),
        async_nats::ConnectOptions::with_user_and_password(user.into(), user.into()).name(name),
    )
    .await
}

fn json_of(message: &async_nats::Message) -> Value {
    serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: {:?}",
            message.subject,
            String::from_utf8_lossy(&message.payload)
        )
    })
}

#[tokio::test]
async fn connect_and_disconnect_events_reach_the_system_account() {
    use futures::StreamExt;
    let config = write_config("events", SYSTEM_CONFIG);
    let server = ServerProcess::start(&["-c", config.to_str().unwrap()]);
    let system = login(&server, "sys", "watcher").await;
    let mut events = system.subscribe("$SYS.ACCOUNT.A.>").await.unwrap();
    common::sync_with_server(&system).await;

    let client = login(&server, "a", "publisher").await;
    for _ in 0..3 {
        client.publish("work", "12345".into()).await.unwrap();
    }
    common::sync_with_server(&client).await;
    client.drain().await.unwrap();

    let mut seen = Vec::new();
    let idle_again = |(subject, event): &(String, Value)| {
        subject == "$SYS.ACCOUNT.A.SERVER.CONNS" && event["conns"] == 0
    };
    while !seen.iter().any(idle_again) {
        let message = common::within("a $SYS event", events.next()).await.unwrap();
        seen.push((message.subject.to_string(), json_of(&message)));
    }
    let connect = &seen
        .iter()
        .find(|(s, _)| s == "$SYS.ACCOUNT.A.CONNECT")
        .expect("a CONNECT event")
        .1;
    assert_eq!(connect["type"], "io.nats.server.advisory.v1.client_connect");
    assert_eq!(connect["server"]["name"], "events");
    assert_eq!(connect["client"]["acc"], "A");
    assert_eq!(connect["client"]["user"], "a");
    assert_eq!(connect["client"]["name"], "publisher");
    let disconnect = &seen
        .iter()
        .find(|(s, _)| s == "$SYS.ACCOUNT.A.DISCONNECT")
        .expect("a DISCONNECT event")
        .1;
    assert_eq!(
        disconnect["type"],
        "io.nats.server.advisory.v1.client_disconnect"
    );
    // Three 5-byte messages and the 5-byte fence of `sync_with_server`.
    assert_eq!(disconnect["received"]["msgs"], 4);
    assert_eq!(disconnect["received"]["bytes"], 20);
    assert_eq!(disconnect["reason"], "Client Closed");
    assert!(disconnect["server"]["seq"].as_u64() > connect["server"]["seq"].as_u64());
}

#[tokio::test]
async fn system_requests_answer_with_monitoring_data() {
    use futures::StreamExt;
    let config = write_config("requests", SYSTEM_CONFIG);
    let server = ServerProcess::start(&["-c", config.to_str().unwrap()]);
    let system = login(&server, "sys", "operator").await;
    let member = login(&server, "a", "member").await;
    let _sub = member.subscribe("member.topic").await.unwrap();
    common::sync_with_server(&member).await;

    let ping = json_of(
        &system
            .request("$SYS.REQ.SERVER.PING", "".into())
            .await
            .unwrap(),
    );
    assert_eq!(ping["statsz"]["connections"], 2);
    assert_eq!(ping["server"]["name"], "events");
    let id = ping["server"]["id"].as_str().unwrap().to_owned();

    let varz = json_of(
        &system
            .request("$SYS.REQ.SERVER.PING.VARZ", "".into())
            .await
            .unwrap(),
    );
    assert_eq!(varz["data"]["server_id"], id.as_str());
    assert_eq!(varz["data"]["connections"], 2);
    let idz = json_of(
        &system
            .request("$SYS.REQ.SERVER.PING.IDZ", "".into())
            .await
            .unwrap(),
    );
    assert_eq!(idz["id"], id.as_str());

    let connz = json_of(
        &system
            .request(
                format!("$SYS.REQ.SERVER.{id}.CONNZ"),
                r#"{"subscriptions":true,"auth":true}"#.into(),
            )
            .await
            .unwrap(),
    );
    let connections = connz["data"]["connections"].as_array().unwrap();
    let member_row = connections
        .iter()
        .find(|c| c["name"] == "member")
        .expect("the member is listed");
    // Its fence inbox from `sync_with_server` may still be listed.
    let subjects = member_row["subscriptions_list"].as_array().unwrap();
    assert!(
        subjects.contains(&Value::from("member.topic")),
        "{member_row:#}"
    );
    assert_eq!(member_row["account"], "A");

    let bad = json_of(
        &system
            .request("$SYS.REQ.SERVER.PING.SUBSZ", r#"{"test":"a.*"}"#.into())
            .await
            .unwrap(),
    );
    assert_eq!(bad["error"]["code"], 400);
    let silent = tokio::time::timeout(
        Duration::from_millis(500),
        system.request(
            "$SYS.REQ.SERVER.PING.VARZ",
            r#"{"server_name":"elsewhere"}"#.into(),
        ),
    )
    .await;
    assert!(silent.is_err(), "a server the filter excludes stays silent");

    // An ordinary account sees its own connections through the imports.
    let own = json_of(
        &member
            .request("$SYS.REQ.ACCOUNT.PING.CONNZ", "".into())
            .await
            .unwrap(),
    );
    let rows = own["data"]["connections"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{own:#}");
    assert_eq!(rows[0]["name"], "member");
    let statz = json_of(
        &member
            .request("$SYS.REQ.ACCOUNT.PING.STATZ", "".into())
            .await
            .unwrap(),
    );
    assert_eq!(statz["data"]["account_statz"][0]["acc"], "A");
    assert_eq!(statz["data"]["account_statz"][0]["conns"], 1);

    let mut heartbeats = system.subscribe("$SYS.SERVER.*.STATSZ").await.unwrap();
    let beat = common::within("a statsz heartbeat", heartbeats.next())
        .await
        .unwrap();
    assert_eq!(beat.subject.as_str(), format!("$SYS.SERVER.{id}.STATSZ"));
    assert!(json_of(&beat)["statsz"]["mem"].as_u64().unwrap() > 0);
}

/// Publishes one traced message (and one trace-only message) through a
/// mapping to a plain and a queue subscriber; returns the two trace events
/// and how many copies the subscriber got.
async fn trace_run(server: &ServerProcess) -> (Value, Value, usize) {
    use futures::StreamExt;
    let tracer = common::connect(&server.url()).await;
    let mut traces = tracer.subscribe("trace.dest").await.unwrap();
    common::sync_with_server(&tracer).await;
    let receiver = common::connect_with(
        &server.url(),
        async_nats::ConnectOptions::new().name("receiver"),
    )
    .await;
    let mut plain = receiver.subscribe("m.out").await.unwrap();
    let _group = receiver
        .queue_subscribe("m.out", "workers".into())
        .await
        .unwrap();
    common::sync_with_server(&receiver).await;
    let publisher = common::connect_with(
        &server.url(),
        async_nats::ConnectOptions::new().name("sender"),
    )
    .await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Trace-Dest", "trace.dest");
    publisher
        .publish_with_headers("m.in", headers.clone(), "hello".into())
        .await
        .unwrap();
    headers.insert("Nats-Trace-Only", "true");
    publisher
        .publish_with_headers("m.in", headers, "hidden".into())
        .await
        .unwrap();
    common::sync_with_server(&publisher).await;
    let first = json_of(&common::within("a trace", traces.next()).await.unwrap());
    let second = json_of(&common::within("a trace", traces.next()).await.unwrap());
    common::sync_with_server(&receiver).await;
    let delivered = common::drain_ready(&mut plain).len();
    (first, second, delivered)
}

fn event_types(trace: &Value) -> Vec<String> {
    trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn traced_messages_report_their_path() {
    let config = write_config("trace", "mappings { \"m.in\": \"m.out\" }\n");
    let server = ServerProcess::start(&["-c", config.to_str().unwrap()]);
    let (traced, trace_only, delivered) = trace_run(&server).await;
    assert_eq!(event_types(&traced), ["in", "sm", "eg", "eg"]);
    let events = traced["events"].as_array().unwrap();
    assert_eq!(events[0]["name"], "sender");
    assert_eq!(events[0]["subj"], "m.in");
    assert_eq!(events[1]["to"], "m.out");
    assert_eq!(events[3]["queue"], "workers");
    assert_eq!(
        traced["request"]["header"]["Nats-Trace-Dest"],
        serde_json::json!(["trace.dest"])
    );
    assert_eq!(event_types(&trace_only), ["in", "sm", "eg", "eg"]);
    assert_eq!(
        trace_only["request"]["header"]["Nats-Trace-Only"],
        serde_json::json!(["true"])
    );
    // The traced message arrived once; the trace-only one not at all.
    assert_eq!(delivered, 1);

    let Some(reference_binary) = rnats_tests::reference_server() else {
        eprintln!("NOTICE: trace comparison skipped: the reference nats-server is not available");
        return;
    };
    let reference =
        ServerProcess::start_binary(reference_binary, &["-c", config.to_str().unwrap()]);
    let (expected, expected_only, expected_delivered) = trace_run(&reference).await;
    assert_eq!(event_types(&expected), event_types(&traced));
    assert_eq!(event_types(&expected_only), event_types(&trace_only));
    assert_eq!(expected_delivered, delivered);
    let (mut want, mut have) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&expected, "", &mut want);
    key_paths(&traced, "", &mut have);
    let missing: Vec<&String> = want
        .difference(&have)
        .filter(|path| !lacks_feature(path))
        .collect();
    assert!(missing.is_empty(), "trace keys rnats lacks: {missing:?}");
}

#[tokio::test]
async fn debug_and_trace_lines_name_the_client_as_the_reference_does() {
    let server = ServerProcess::start(&["-DV"]);
    let mut client = RawConnection::connect_quiet(
        &server.addr(),
        r#"{"verbose":false,"name":"nm","lang":"py","version":"1.0","pass":"hidden","user":"u"}"#,
    )
    .await;
    client.send(b"SUB a 1\r\nPUB a 2\r\nhi\r\nPING\r\n").await;
    client.read_until(b"PONG\r\n").await;
    drop(client);
    let wanted = [
        r#"cid:1 - <<- [CONNECT {"verbose":false,"name":"nm","lang":"py","version":"1.0","pass":"[REDACTED]","user":"u"}]"#,
        r#"cid:1 - "v1.0:py:nm" - "$G/user:u" - <<- [PUB a 2]"#,
        r#"cid:1 - "v1.0:py:nm" - "$G/user:u" - <<- MSG_PAYLOAD: ["hi"]"#,
        r#"cid:1 - "v1.0:py:nm" - "$G/user:u" - ->> [MSG a 1 2]"#,
        r#"cid:1 - "v1.0:py:nm" - "$G/user:u" - Client connection closed: Client Closed"#,
    ];
    let mut missing = wanted.to_vec();
    for _ in 0..100 {
        let lines = server.log_lines();
        missing.retain(|want| !lines.iter().any(|line| line.ends_with(want)));
        if missing.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        missing.is_empty(),
        "missing: {missing:#?}\nlog: {:#?}",
        server.log_lines()
    );
    assert!(!server
        .log_lines()
        .iter()
        .any(|line| line.contains("hidden")));
}

/// The system account's events and replies for one scripted session, keyed
/// by subject (or request), for a key-set comparison between servers.
async fn system_session(server: &ServerProcess) -> Vec<(String, Value)> {
    use futures::StreamExt;
    let system = login(server, "sys", "operator").await;
    let mut events = system.subscribe("$SYS.ACCOUNT.A.>").await.unwrap();
    common::sync_with_server(&system).await;
    let member = login(server, "a", "member").await;
    member.publish("work", "12345".into()).await.unwrap();
    common::sync_with_server(&member).await;
    let mut seen = Vec::new();
    for request in [
        "$SYS.REQ.SERVER.PING",
        "$SYS.REQ.SERVER.PING.VARZ",
        "$SYS.REQ.SERVER.PING.CONNZ",
        "$SYS.REQ.SERVER.PING.SUBSZ",
        "$SYS.REQ.SERVER.PING.IDZ",
        "$SYS.REQ.SERVER.PING.HEALTHZ",
        "$SYS.REQ.SERVER.PING.ACCOUNTZ",
        "$SYS.REQ.ACCOUNT.A.STATZ",
        "$SYS.REQ.ACCOUNT.A.CONNS",
    ] {
        let reply = system.request(request, "".into()).await.unwrap();
        seen.push((request.to_owned(), json_of(&reply)));
    }
    let own = member
        .request("$SYS.REQ.ACCOUNT.PING.CONNZ", "".into())
        .await
        .unwrap();
    seen.push(("account CONNZ".to_owned(), json_of(&own)));
    let who = member
        .request("$SYS.REQ.USER.INFO", "".into())
        .await
        .unwrap();
    seen.push(("USER.INFO".to_owned(), json_of(&who)));
    // Closes the connection now (dropping the handle would leave it to
    // the client's keepalive).
    member.drain().await.unwrap();
    while !seen.iter().any(|(s, _)| s == "$SYS.ACCOUNT.A.DISCONNECT") {
        let message = common::within("a $SYS event", events.next()).await.unwrap();
        seen.push((message.subject.to_string(), json_of(&message)));
    }
    seen
}

#[tokio::test]
async fn system_events_and_replies_cover_the_reference_keys() {
    let Some(reference_binary) = rnats_tests::reference_server() else {
        eprintln!(
            "NOTICE: $SYS key comparison skipped: the reference nats-server is not available"
        );
        return;
    };
    let config = write_config("syskeys", SYSTEM_CONFIG);
    let reference =
        ServerProcess::start_binary(reference_binary, &["-c", config.to_str().unwrap()]);
    let candidate = ServerProcess::start(&["-c", config.to_str().unwrap()]);
    let expected = system_session(&reference).await;
    let actual = system_session(&candidate).await;
    let mut missing = Vec::new();
    for (name, want_json) in &expected {
        let Some((_, have_json)) = actual.iter().find(|(n, _)| n == name) else {
            missing.push(format!("{name}: never seen"));
            continue;
        };
        let (mut want, mut have) = (BTreeSet::new(), BTreeSet::new());
        key_paths(want_json, "", &mut want);
        key_paths(have_json, "", &mut have);
        for path in want.difference(&have) {
            if !lacks_feature(path) {
                missing.push(format!("{name}: {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys nats-server sends and rnats does not:\n{}",
        missing.join("\n")
    );
}

const USER_INFO_CONFIG: &str = r#"
accounts {
  A { users [{user: a, password: a, permissions: {
        publish: { allow: ["orders.>", "$SYS.REQ.USER.INFO", "_INBOX.>"], deny: ["orders.secret"] },
        subscribe: { allow: ["_INBOX.>", "jobs.* workers"], deny: ["_INBOX.hidden"] },
        allow_responses: { max: 3, expires: "1m" } } }] }
  B { users [{user: b, password: b}] }
  SYS { users [{user: sys, password: sys}] }
}
system_account: SYS
"#;

/// Each user's `$SYS.REQ.USER.INFO` answer's `data`, lists sorted (the
/// reference walks its permission Sublists in map order).
async fn user_infos(server: &ServerProcess) -> Vec<Value> {
    let mut answers = Vec::new();
    for user in ["a", "b", "sys"] {
        let client = login(server, user, "who-am-i").await;
        let reply = client
            .request("$SYS.REQ.USER.INFO", "".into())
            .await
            .unwrap();
        let mut data = json_of(&reply)["data"].clone();
        for side in ["publish", "subscribe"] {
            for list in ["allow", "deny"] {
                if let Some(Value::Array(entries)) =
                    data.pointer_mut(&format!("/permissions/{side}/{list}"))
                {
                    entries.sort_by_key(|entry| entry.to_string());
                }
            }
        }
        answers.push(data);
        client.drain().await.unwrap();
    }
    answers
}

#[tokio::test]
async fn user_info_tells_each_user_who_it_is() {
    let config = write_config("userinfo", USER_INFO_CONFIG);
    let server = ServerProcess::start(&["-c", config.to_str().unwrap()]);
    let answers = user_infos(&server).await;
    let a = &answers[0];
    assert_eq!(a["user"], "a");
    assert_eq!(a["account"], "A");
    assert_eq!(a["account_name"], "A");
    assert_eq!(
        a["permissions"]["publish"]["allow"],
        serde_json::json!(["$SYS.REQ.USER.INFO", "_INBOX.>", "orders.>"])
    );
    assert_eq!(
        a["permissions"]["publish"]["deny"],
        serde_json::json!(["orders.secret"])
    );
    assert_eq!(
        a["permissions"]["subscribe"]["allow"],
        serde_json::json!(["_INBOX.>", "jobs.* workers"])
    );
    assert_eq!(
        a["permissions"]["responses"],
        serde_json::json!({"max": 3, "ttl": 60_000_000_000u64})
    );
    // No permissions: none shown. The system account's own users ask too.
    assert_eq!(
        answers[1],
        serde_json::json!({"user": "b", "account": "B", "account_name": "B"})
    );
    assert_eq!(answers[2]["account"], "SYS");

    let Some(reference_binary) = rnats_tests::reference_server() else {
        eprintln!(
            "NOTICE: USER.INFO comparison skipped: the reference nats-server is not available"
        );
        return;
    };
    let reference =
        ServerProcess::start_binary(reference_binary, &["-c", config.to_str().unwrap()]);
    assert_eq!(answers, user_infos(&reference).await);
}
