//! The system account and account imports across routes, with real
//! clients: three rnats servers, and mixed clusters with nats-server
//! v2.15.1.
//!
//! Every server reads one config: a system account `SYS`, an account `A`
//! exporting the service `svc.>` and the stream `ev.>`, and an account `B`
//! importing both. Waits are probes repeated until answered (interest
//! crosses the routes asynchronously), bounded by `WAIT_TIMEOUT`. Mixed
//! tests skip with a NOTICE without the reference, and fail in CI.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::{conf_file, start_cluster_with, Kind};
use common::{connect_with, drain_ready, sync_with_server, within, RawConnection};
use futures::StreamExt;
use rnats_tests::ServerProcess;

const CONF: &str = r#"
accounts {
  SYS { users = [ { user: sys, password: sys } ] }
  A {
    users = [ { user: a, password: a } ]
    exports = [ { service: "svc.>" }, { stream: "ev.>" } ]
  }
  B {
    users = [ { user: b, password: b } ]
    imports = [
      { service: { account: A, subject: "svc.>" } }
      { stream: { account: A, subject: "ev.>" } }
    ]
  }
}
system_account: SYS
"#;

fn cluster(kinds: [Kind; 3]) -> Option<Vec<ServerProcess>> {
    start_cluster_with(kinds, &conf_file(CONF))
}

async fn user(server: &ServerProcess, name: &str) -> async_nats::Client {
    let options = async_nats::ConnectOptions::with_user_and_password(name.into(), name.into());
    connect_with(&server.url(), options).await
}

fn server_id(server: &ServerProcess) -> String {
    rnats_tests::http_json(server.http_port(), "/varz")["server_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The server ids answering `subject` (a request every server answers)
/// within `window`.
async fn answering_servers(
    client: &async_nats::Client,
    subject: &str,
    window: Duration,
) -> BTreeSet<String> {
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(subject.to_string(), inbox, "".into())
        .await
        .unwrap();
    let mut ids = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, answers.next()).await {
        let json: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        let id = json["server"]["id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{subject} answer without server.id: {json}");
        assert!(
            json.get("error").is_none(),
            "{subject} answered an error: {json}"
        );
        ids.insert(id.to_string());
    }
    ids
}

/// A `$SYS.REQ.SERVER.PING[.X]` from a client of each server is answered
/// by every server of the cluster; a direct request for a remote server's
/// id is answered by that server.
async fn check_system_services(servers: &[ServerProcess]) {
    let ids: BTreeSet<String> = servers.iter().map(server_id).collect();
    for server in servers {
        let client = user(server, "sys").await;
        for subject in [
            "$SYS.REQ.SERVER.PING",
            "$SYS.REQ.SERVER.PING.STATSZ",
            "$SYS.REQ.SERVER.PING.VARZ",
            "$SYS.REQ.SERVER.PING.ROUTEZ",
        ] {
            within(&format!("every server answering {subject}"), async {
                loop {
                    let got = answering_servers(&client, subject, Duration::from_millis(700)).await;
                    assert!(got.is_subset(&ids), "unknown server answered: {got:?}");
                    if got == ids {
                        return;
                    }
                }
            })
            .await;
        }
        for id in &ids {
            let subject = format!("$SYS.REQ.SERVER.{id}.VARZ");
            let answer = within(&subject, client.request(subject.clone(), "".into()))
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
            assert_eq!(json["server"]["id"].as_str(), Some(id.as_str()), "{json}");
            assert_eq!(
                json["data"]["server_id"].as_str(),
                Some(id.as_str()),
                "{json}"
            );
        }
    }
}

/// Events another server publishes in the system account reach a local
/// subscriber: a client's connect event, and the statsz heartbeat.
async fn check_remote_events(servers: &[ServerProcess]) {
    let watcher = user(&servers[0], "sys").await;
    let mut connects = watcher.subscribe("$SYS.ACCOUNT.B.CONNECT").await.unwrap();
    let mut statsz = watcher.subscribe("$SYS.SERVER.*.STATSZ").await.unwrap();
    sync_with_server(&watcher).await;
    let remote = server_id(&servers[2]);
    within("a remote server's connect event", async {
        loop {
            // Interest takes a moment to reach the remote server: connect
            // until an event of it arrives.
            let client = user(&servers[2], "b").await;
            client.flush().await.unwrap();
            let event = tokio::time::timeout(Duration::from_millis(500), connects.next()).await;
            if let Ok(Some(event)) = event {
                let json: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
                assert_eq!(
                    json["server"]["id"].as_str(),
                    Some(remote.as_str()),
                    "{json}"
                );
                assert_eq!(json["client"]["acc"], "B", "{json}");
                return;
            }
        }
    })
    .await;
    // The heartbeat doubles up to 10 s: give it one full interval.
    let others: BTreeSet<String> = servers[1..].iter().map(server_id).collect();
    let mut seen = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(25), async {
        while seen != others {
            let event = statsz.next().await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
            let id = json["server"]["id"].as_str().unwrap().to_string();
            if others.contains(&id) {
                seen.insert(id);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("statsz of {others:?} not seen, got {seen:?}"));
}

/// Publishes `probe` on `subject` until `subscriber` (on another server)
/// gets one: its interest crossed the routes.
async fn await_delivery(
    publisher: &async_nats::Client,
    subject: &str,
    subscriber: &mut async_nats::Subscriber,
) {
    within(
        &format!("interest in {subject} across the cluster"),
        async {
            loop {
                publisher
                    .publish(subject.to_string(), "probe".into())
                    .await
                    .unwrap();
                publisher.flush().await.unwrap();
                if let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(300), subscriber.next()).await
                {
                    return;
                }
            }
        },
    )
    .await
}

/// A service exported by `A` and imported by `B`: the responder in `A` on
/// one server answers a requester in `B` on another; a stream exported by
/// `A` reaches a subscriber in `B` on another server exactly once.
async fn check_imports(servers: &[ServerProcess], exporter: usize, importer: usize) {
    let a = user(&servers[exporter], "a").await;
    let b = user(&servers[importer], "b").await;
    let mut requests = a.subscribe("svc.>").await.unwrap();
    let answering = a.clone();
    let responder = tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            if let Some(reply) = msg.reply {
                let body = format!("answer to {}", msg.subject);
                answering.publish(reply, body.into()).await.unwrap();
            }
        }
    });
    a.flush().await.unwrap();
    let answer = within("a service import answered across the cluster", async {
        loop {
            let asked = tokio::time::timeout(
                Duration::from_millis(500),
                b.request("svc.hello", "q".into()),
            )
            .await;
            if let Ok(Ok(answer)) = asked {
                return answer;
            }
        }
    })
    .await;
    assert_eq!(&answer.payload[..], b"answer to svc.hello");
    responder.abort();

    let mut events = b.subscribe("ev.>").await.unwrap();
    sync_with_server(&b).await;
    await_delivery(&a, "ev.probe", &mut events).await;
    // Once the interest is in place, each message arrives once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain_ready(&mut events);
    for n in 0..5 {
        a.publish(format!("ev.{n}"), n.to_string().into())
            .await
            .unwrap();
    }
    a.flush().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let msg = within("an imported event", events.next()).await.unwrap();
        got.push(msg.subject.to_string());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sync_with_server(&b).await;
    let extra: Vec<_> = drain_ready(&mut events)
        .into_iter()
        .map(|m| m.subject.to_string())
        .collect();
    assert_eq!(got, ["ev.0", "ev.1", "ev.2", "ev.3", "ev.4"]);
    assert!(extra.is_empty(), "duplicates: {extra:?}");
}

#[tokio::test]
async fn three_rnats_servers_answer_system_requests() {
    let servers = cluster([Kind::Rnats; 3]).unwrap();
    check_system_services(&servers).await;
    check_remote_events(&servers).await;
}

#[tokio::test]
async fn mixed_cluster_answers_system_requests() {
    let Some(servers) = cluster([Kind::Rnats, Kind::Reference, Kind::Rnats]) else {
        return;
    };
    check_system_services(&servers).await;
    check_remote_events(&servers).await;
}

#[tokio::test]
async fn three_rnats_servers_follow_imports_across_routes() {
    let servers = cluster([Kind::Rnats; 3]).unwrap();
    check_imports(&servers, 0, 2).await;
    check_imports(&servers, 2, 1).await;
}

#[tokio::test]
async fn mixed_cluster_follows_imports_across_routes() {
    let Some(servers) = cluster([Kind::Rnats, Kind::Reference, Kind::Rnats]) else {
        return;
    };
    // rnats exporter to a nats-server importer, and back; rnats to rnats
    // across a nats-server seed.
    check_imports(&servers, 0, 1).await;
    check_imports(&servers, 1, 2).await;
    check_imports(&servers, 2, 0).await;
}

/// Account `A` exports `ev.>`; `B` imports it as it is, `C` under `c.`.
const QUEUE_CONF: &str = r#"
accounts {
  A { users = [ { user: a, password: a } ], exports = [ { stream: "ev.>" } ] }
  B {
    users = [ { user: b, password: b } ]
    imports = [ { stream: { account: A, subject: "ev.>" } } ]
  }
  C {
    users = [ { user: c, password: c } ]
    imports = [ { stream: { account: A, subject: "ev.>" }, to: "c.ev.>" } ]
  }
}
"#;

/// Queue groups of the importers `B` and `C` with members on every
/// server: each message `A` publishes on `exporter`'s server reaches one
/// member of each group, cluster-wide (the reference's shadow
/// subscriptions), under the importer's subject; plain subscribers of
/// the importers get every message once.
async fn check_import_queue_groups(servers: &[ServerProcess], exporter: usize) {
    const COUNT: usize = 40;
    let a = user(&servers[exporter], "a").await;
    let mut groups: Vec<(&str, &str, Vec<async_nats::Subscriber>)> =
        vec![("b", "ev.>", Vec::new()), ("c", "c.ev.>", Vec::new())];
    let mut plain = Vec::new();
    for server in servers {
        for (name, subject, members) in groups.iter_mut() {
            let client = user(server, name).await;
            for _ in 0..2 {
                let queue = format!("{name}-workers");
                members.push(client.queue_subscribe(*subject, queue).await.unwrap());
            }
            // Subscribed last: once it hears the exporter, the queue
            // members' interest crossed the same route before it.
            let mut probe = client.subscribe(*subject).await.unwrap();
            sync_with_server(&client).await;
            await_delivery(&a, "ev.probe", &mut probe).await;
            plain.push((client, probe));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (_, _, members) in groups.iter_mut() {
        for member in members.iter_mut() {
            drain_ready(member);
        }
    }
    for (_, probe) in plain.iter_mut() {
        drain_ready(probe);
    }
    for n in 0..COUNT {
        a.publish(format!("ev.{n}"), n.to_string().into())
            .await
            .unwrap();
    }
    sync_with_server(&a).await;
    for (_, probe) in plain.iter_mut() {
        for _ in 0..COUNT {
            within("an imported event", probe.next()).await.unwrap();
        }
    }
    // Every plain subscriber has them all: whatever the groups were sent
    // reached their servers too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (client, _) in &plain {
        sync_with_server(client).await;
    }
    for (name, subject, members) in groups.iter_mut() {
        let prefix = subject.trim_end_matches('>');
        let mut got: Vec<usize> = Vec::new();
        for member in members.iter_mut() {
            for msg in drain_ready(member) {
                let n: usize = msg.subject.strip_prefix(prefix).unwrap().parse().unwrap();
                assert_eq!(&msg.payload[..], n.to_string().as_bytes());
                got.push(n);
            }
        }
        got.sort_unstable();
        assert_eq!(
            got,
            (0..COUNT).collect::<Vec<_>>(),
            "account {name}'s queue group (publisher on server {exporter})"
        );
    }
    for (_, probe) in plain.iter_mut() {
        assert!(
            drain_ready(probe).is_empty(),
            "a plain subscriber got duplicates"
        );
    }
}

#[tokio::test]
async fn imported_streams_reach_queue_groups_once_cluster_wide() {
    let servers = start_cluster_with([Kind::Rnats; 3], &conf_file(QUEUE_CONF)).unwrap();
    check_import_queue_groups(&servers, 0).await;
    check_import_queue_groups(&servers, 2).await;
}

#[tokio::test]
async fn mixed_cluster_imported_streams_reach_queue_groups_once() {
    let conf = conf_file(QUEUE_CONF);
    let Some(servers) = start_cluster_with([Kind::Rnats, Kind::Reference, Kind::Rnats], &conf)
    else {
        return;
    };
    for exporter in 0..3 {
        check_import_queue_groups(&servers, exporter).await;
    }
}

/// A protocol-1 client (one that takes async INFO, as the official
/// clients are) and the last INFO it was sent.
struct Watcher {
    conn: RawConnection,
    info: serde_json::Value,
}

impl Watcher {
    async fn connect(server: &ServerProcess) -> Watcher {
        let mut conn = RawConnection::connect(&server.addr()).await;
        let info = serde_json::from_str(&conn.info_json).unwrap();
        conn.send(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n")
            .await;
        Watcher { conn, info }
    }

    fn urls(&self) -> BTreeSet<String> {
        self.info["connect_urls"]
            .as_array()
            .map(|urls| {
                urls.iter()
                    .map(|u| u.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reads the async INFOs until the last one names exactly `expected`.
    async fn await_urls(&mut self, expected: &BTreeSet<String>) {
        while self.urls() != *expected {
            let line = self.conn.read_until(b"\r\n").await;
            let line = String::from_utf8(line).unwrap();
            if let Some(json) = line.strip_prefix("INFO ") {
                self.info = serde_json::from_str(json.trim_end()).unwrap();
            } else if line == "PING\r\n" {
                self.conn.send(b"PONG\r\n").await;
            }
        }
    }
}

/// Server `leaving` enters lame duck mode (SIGUSR2): it tells its routes
/// (INFO `ldm`), and a client of another server is told the cluster's
/// URLs without it (async INFO) while that server is still up and routed;
/// its own client is told `ldm` and the other servers' URLs only.
async fn check_lame_duck(servers: &[ServerProcess], leaving: usize, observer: usize) {
    let all: BTreeSet<String> = servers.iter().map(ServerProcess::addr).collect();
    let mut watching = Watcher::connect(&servers[observer]).await;
    let mut staying = Watcher::connect(&servers[leaving]).await;
    watching.await_urls(&all).await;
    staying.await_urls(&all).await;
    servers[leaving].signal("USR2");
    let rest: BTreeSet<String> = all
        .iter()
        .filter(|url| **url != servers[leaving].addr())
        .cloned()
        .collect();
    watching.await_urls(&rest).await;
    assert!(watching.info.get("ldm").is_none(), "{}", watching.info);
    staying.await_urls(&rest).await;
    assert_eq!(staying.info["ldm"], true, "{}", staying.info);
    // The route is still up: the URL left because of the INFO, not a close.
    let leaving_id = server_id(&servers[leaving]);
    let routez = rnats_tests::http_json(servers[observer].http_port(), "/routez");
    assert!(
        routez["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["remote_id"] == leaving_id.as_str()),
        "{routez}"
    );
}

/// A long grace period keeps the lame duck's clients and routes up while
/// the test looks.
const LAME_DUCK_CONF: &str = "lame_duck_grace_period: \"20s\"\nlame_duck_duration: \"30s\"\n";

#[tokio::test]
async fn lame_duck_mode_is_announced_to_routes() {
    let servers = start_cluster_with([Kind::Rnats; 3], &conf_file(LAME_DUCK_CONF)).unwrap();
    check_lame_duck(&servers, 2, 0).await;
}

#[tokio::test]
async fn mixed_cluster_lame_duck_both_ways() {
    let conf = conf_file(LAME_DUCK_CONF);
    // nats-server's clients hear of an rnats lame duck.
    let Some(servers) = start_cluster_with([Kind::Reference, Kind::Rnats, Kind::Rnats], &conf)
    else {
        return;
    };
    check_lame_duck(&servers, 1, 0).await;
    drop(servers);
    // rnats's clients hear of a nats-server lame duck.
    let servers = start_cluster_with([Kind::Rnats, Kind::Reference, Kind::Rnats], &conf).unwrap();
    check_lame_duck(&servers, 1, 2).await;
}

/// `/routez?subs=1` and `?subs=detail` on a pair of servers where the
/// second has a plain and a queue subscriber the first published to:
/// (keys of the route entries, the test interest as listed).
async fn routez_listing(
    servers: &[ServerProcess],
) -> (BTreeSet<String>, Vec<serde_json::Value>, Vec<String>) {
    let mut subscriber = RawConnection::connect(&servers[1].addr()).await;
    subscriber
        .send(b"CONNECT {\"verbose\":false}\r\nSUB rz.plain 1\r\nSUB rz.queue grp 2\r\nPING\r\n")
        .await;
    subscriber.read_until(b"PONG\r\n").await;
    let publisher = common::connect(&servers[0].url()).await;
    // Interest crossed once a published message arrives.
    within("interest in rz.plain", async {
        loop {
            publisher.publish("rz.plain", "x".into()).await.unwrap();
            publisher.flush().await.unwrap();
            let got =
                tokio::time::timeout(Duration::from_millis(200), subscriber.read_until(b"x\r\n"))
                    .await;
            if got.is_ok() {
                return;
            }
        }
    })
    .await;
    publisher.publish("rz.queue", "y".into()).await.unwrap();
    publisher.flush().await.unwrap();
    subscriber.read_until(b"y\r\n").await;
    let port = servers[0].http_port();
    // Every connection of the pool measured its round trip (the last ones
    // may have registered a moment ago).
    within("every route's rtt", async {
        loop {
            let routez = rnats_tests::http_json(port, "/routez");
            let routes = routez["routes"].as_array().unwrap();
            if !routes.is_empty() && routes.iter().all(|r| r["rtt"] != "0s") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let detail = rnats_tests::http_json(port, "/routez?subs=detail");
    let mut keys = BTreeSet::new();
    common::key_paths(&detail, "", &mut keys);
    let listed = rnats_tests::http_json(port, "/routez?subs=1");
    common::key_paths(&listed, "", &mut keys);
    let mut details = Vec::new();
    let mut subjects = Vec::new();
    for (routes, list) in [(&detail, &mut details), (&listed, &mut Vec::new())] {
        for route in routes["routes"].as_array().unwrap() {
            assert!(
                route["rtt"].as_str().is_some_and(|rtt| rtt != "0s"),
                "{route}"
            );
            for sub in route["subscriptions_list_detail"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if sub["subject"].as_str().unwrap().starts_with("rz.") {
                    assert_eq!(sub["cid"], route["rid"], "{sub}");
                    let mut sub = sub.clone();
                    sub.as_object_mut().unwrap().remove("cid");
                    list.push(sub);
                }
            }
        }
    }
    for route in listed["routes"].as_array().unwrap() {
        for subject in route["subscriptions_list"].as_array().into_iter().flatten() {
            let subject = subject.as_str().unwrap();
            if subject.starts_with("rz.") {
                subjects.push(subject.to_string());
            }
        }
    }
    details.sort_by_key(|sub| sub["subject"].as_str().unwrap().to_string());
    subjects.sort();
    drop(subscriber);
    (keys, details, subjects)
}

/// rnats's `/routez` lists each route's interest (`subs=1`,
/// `subs=detail`: the reference's sids and message counts) and the
/// measured `rtt`, with every key nats-server reports.
#[tokio::test]
async fn routez_lists_route_interest_and_rtt_as_the_reference() {
    let pair = |kind| {
        let first = common::cluster::start(kind, None)?;
        let port = first.route_port();
        let second = common::cluster::start(kind, Some(port))?;
        Some(vec![first, second])
    };
    let rnats = pair(Kind::Rnats).unwrap();
    let (have_keys, have, have_subjects) = routez_listing(&rnats).await;
    assert_eq!(have.len(), 2, "{have:?}");
    assert_eq!(have[0]["sid"], "R $G rz.plain", "{have:?}");
    assert!(have[0]["msgs"].as_u64().unwrap() >= 1, "{have:?}");
    assert_eq!(have[1]["sid"], "R $G rz.queue grp", "{have:?}");
    assert_eq!(have[1]["msgs"], 1, "{have:?}");
    assert_eq!(have_subjects, ["rz.plain", "rz.queue"]);
    let Some(reference) = pair(Kind::Reference) else {
        return;
    };
    let (want_keys, want, want_subjects) = routez_listing(&reference).await;
    let missing: Vec<_> = want_keys.difference(&have_keys).collect();
    assert!(missing.is_empty(), "routez keys rnats lacks: {missing:?}");
    let strip_msgs = |subs: &[serde_json::Value]| -> Vec<serde_json::Value> {
        subs.iter()
            .map(|sub| {
                let mut sub = sub.clone();
                sub.as_object_mut().unwrap().remove("msgs");
                sub
            })
            .collect()
    };
    assert_eq!(strip_msgs(&have), strip_msgs(&want));
    assert_eq!(have_subjects, want_subjects);
}

/// The trace events of one traced message published on `servers[0]`
/// with a subscriber on `servers[1]`, keyed by the reporting server's id,
/// and what the subscriber got (nothing for a trace-only message).
async fn traced_across(
    servers: &[ServerProcess],
    subject: &str,
    only: bool,
) -> (
    BTreeMap<String, serde_json::Value>,
    Option<async_nats::Message>,
) {
    let publisher = common::connect(&servers[0].url()).await;
    let subscriber = common::connect(&servers[1].url()).await;
    let mut messages = subscriber.subscribe(subject.to_string()).await.unwrap();
    sync_with_server(&subscriber).await;
    await_delivery(&publisher, subject, &mut messages).await;
    let dest = format!("{subject}.trace");
    let mut traces = publisher.subscribe(dest.clone()).await.unwrap();
    // The trace destination's interest reached the other server too.
    let probe = common::connect(&servers[1].url()).await;
    publisher.flush().await.unwrap();
    within("the trace destination's interest", async {
        loop {
            probe.publish(dest.clone(), "{}".into()).await.unwrap();
            probe.flush().await.unwrap();
            if tokio::time::timeout(Duration::from_millis(300), traces.next())
                .await
                .is_ok()
            {
                return;
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain_ready(&mut traces);
    drain_ready(&mut messages);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Trace-Dest", dest.as_str());
    if only {
        headers.insert("Nats-Trace-Only", "true");
    }
    publisher
        .publish_with_headers(subject.to_string(), headers, "traced".into())
        .await
        .unwrap();
    let mut events = BTreeMap::new();
    while events.len() < 2 {
        let event = within("the trace events", traces.next()).await.unwrap();
        let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
        let id = event["server"]["id"].as_str().unwrap().to_string();
        assert!(
            events.insert(id, event).is_none(),
            "two events of one server"
        );
    }
    // What the subscriber got, before a message published after it.
    publisher
        .publish(subject.to_string(), "after".into())
        .await
        .unwrap();
    let mut delivered = None;
    loop {
        let msg = within("the message after the traced one", messages.next())
            .await
            .unwrap();
        if &msg.payload[..] == b"after" {
            break;
        }
        assert_eq!(&msg.payload[..], b"traced");
        delivered = Some(msg);
    }
    (events, delivered)
}

/// A traced message crossing a route, as the reference reports it: the
/// publisher's server an egress of kind ROUTE with hop `1` and `hops: 1`,
/// the other server an ingress from the route (named by the first server's
/// name) with `Nats-Trace-Hop: 1` in the request headers and the delivery;
/// the subscriber gets the hop header. A trace-only message is traced on
/// both servers and delivered on neither.
async fn check_trace_across(servers: &[ServerProcess]) {
    let (origin, remote) = (server_id(&servers[0]), server_id(&servers[1]));
    for only in [false, true] {
        let subject = if only { "tro.x" } else { "tr.x" };
        let (events, delivered) = traced_across(servers, subject, only).await;
        let first = &events[&origin];
        assert_eq!(first["hops"], 1, "{first}");
        let kinds: Vec<_> = first["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["type"].clone(), e["kind"].clone(), e["hop"].clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("in".into(), 0.into(), serde_json::Value::Null),
                ("eg".into(), 1.into(), "1".into())
            ],
            "{first}"
        );
        let second = &events[&remote];
        assert!(second.get("hops").is_none(), "{second}");
        assert_eq!(
            second["request"]["header"]["Nats-Trace-Hop"],
            serde_json::json!(["1"]),
            "{second}"
        );
        let ingress = &second["events"][0];
        assert_eq!(ingress["type"], "in", "{second}");
        assert_eq!(ingress["kind"], 1, "{second}");
        assert_eq!(ingress["name"], first["server"]["name"], "{second}");
        assert_eq!(ingress["subj"], subject, "{second}");
        let egress = &second["events"][1];
        assert_eq!(egress["type"], "eg", "{second}");
        assert_eq!(egress["kind"], 0, "{second}");
        assert_eq!(egress["sub"], subject, "{second}");
        assert_eq!(second["events"].as_array().unwrap().len(), 2, "{second}");
        match (only, delivered) {
            (true, None) => {}
            (false, Some(msg)) => {
                let headers = msg.headers.expect("headers");
                assert_eq!(headers.get("Nats-Trace-Hop").map(|v| v.as_str()), Some("1"));
            }
            (only, got) => panic!("trace-only {only}: delivered {got:?}"),
        }
    }
}

#[tokio::test]
async fn traced_messages_cross_routes_as_the_reference() {
    let pair = |kind| {
        let first = common::cluster::start(kind, None)?;
        let second = common::cluster::start(kind, Some(first.route_port()))?;
        Some(vec![first, second])
    };
    check_trace_across(&pair(Kind::Rnats).unwrap()).await;
    if let Some(reference) = pair(Kind::Reference) {
        check_trace_across(&reference).await;
    }
    // Mixed, both ways.
    if let Some(first) = common::cluster::start(Kind::Reference, None) {
        let second = common::cluster::start(Kind::Rnats, Some(first.route_port())).unwrap();
        let servers = vec![first, second];
        check_trace_across(&servers).await;
        let servers: Vec<_> = servers.into_iter().rev().collect();
        check_trace_across(&servers).await;
    }
}
