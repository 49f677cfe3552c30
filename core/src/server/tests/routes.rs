//! Two server machines linked by a route, bytes carried by hand: the
//! handshake, interest both ways, one RMSG per message, queue groups once
//! across the pair, and a routed message never routed again.

use super::*;
use crate::server::{ClusterConfig, RouteUrl};

fn node(name: &str, id: &str, routes: Vec<RouteUrl>) -> Harness {
    pooled_node(name, id, routes, -1, Vec::new())
}

/// [`node`] with users `a` (account `A`, exporting `feed.>`) and `b`
/// (account `B`, importing it as `a.feed.>`).
fn node_with_accounts(name: &str, id: &str, routes: Vec<RouteUrl>) -> Harness {
    use crate::auth::{AccountConfig, Export, Import, ImportKind, User};
    let mut config = node(name, id, routes).server.config().clone();
    let mut a = AccountConfig::new("A");
    a.exports = vec![Export::stream("feed.>")];
    let mut b = AccountConfig::new("B");
    b.imports = vec![Import {
        kind: ImportKind::Stream,
        account: "A".into(),
        subject: "feed.>".into(),
        to: Some("a.feed.>".into()),
        share: false,
    }];
    config.accounts = vec![a, b];
    config.auth.users = ["a", "b"]
        .iter()
        .map(|name| User {
            username: (*name).into(),
            password: "pw".into(),
            permissions: None,
            account: name.to_uppercase(),
        })
        .collect();
    Harness::new(config)
}

fn pooled_node(
    name: &str,
    id: &str,
    routes: Vec<RouteUrl>,
    pool_size: i64,
    accounts: Vec<String>,
) -> Harness {
    node_on_port(name, id, routes, pool_size, accounts, 6222)
}

/// A node whose route listener is on `port` (what its INFO tells peers).
fn node_on_port(
    name: &str,
    id: &str,
    routes: Vec<RouteUrl>,
    pool_size: i64,
    accounts: Vec<String>,
    port: u16,
) -> Harness {
    let mut config = ServerConfig {
        server_name: name.to_string(),
        cluster: Some(ClusterConfig {
            name: String::from("c1"),
            host: String::from("127.0.0.1"),
            port,
            routes,
            pool_size,
            accounts,
            ..ClusterConfig::default()
        }),
        ..ServerConfig::default()
    };
    config.identity.server_id = id.to_string();
    Harness::new(config)
}

/// A dials B: the route is conn 100 on both sides.
fn linked() -> (Harness, Harness, ConnId) {
    linked_with(node)
}

/// [`linked`] with nodes made by `make`.
fn linked_with(make: fn(&str, &str, Vec<RouteUrl>) -> Harness) -> (Harness, Harness, ConnId) {
    let url = RouteUrl::parse("nats://127.0.0.1:6222").unwrap();
    let mut a = make("A", "NAAAA", vec![url]);
    let mut b = make("B", "NBBBB", Vec::new());
    let dial = a.server.poll_dial().expect("the explicit route is dialed");
    assert_eq!(dial.address, "127.0.0.1:6222");
    assert_eq!(a.server.poll_dial(), None);
    let route = ConnId(100);
    a.server.handle_dialed(a.now, dial.id, route, peer(6222));
    b.server
        .handle_accept(b.now, route, peer(50000), ListenerKind::Route);
    pump(&mut a, &mut b, route);
    assert!(a
        .server
        .connections()
        .route(route)
        .unwrap()
        .remote
        .is_some());
    assert!(b
        .server
        .connections()
        .route(route)
        .unwrap()
        .remote
        .is_some());
    (a, b, route)
}

/// Carry route bytes both ways until both sides are quiet.
fn pump(a: &mut Harness, b: &mut Harness, route: ConnId) {
    loop {
        let from_a = a.take(route);
        let from_b = b.take(route);
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        b.send(route, &from_a);
        a.send(route, &from_b);
    }
}

#[test]
fn handshake_interest_and_one_rmsg_per_message() {
    let (mut a, mut b, route) = linked();
    let sub = b.connect(1, "{}");
    b.send(sub, "SUB foo.* 1\r\nSUB foo.> 2\r\n");
    // Two local subscriptions matching one subject: still one RMSG.
    let interest = b.take(route);
    assert_eq!(interest, "RS+ $G foo.*\r\nRS+ $G foo.>\r\n");
    a.send(route, &interest);
    let publisher = a.connect(2, "{}");
    a.send(publisher, "PUB foo.x r 2\r\nhi\r\n");
    let forwarded = a.take(route);
    assert_eq!(forwarded, "RMSG $G foo.x r 2\r\nhi\r\n");
    b.send(route, &forwarded);
    assert_eq!(
        b.take(sub),
        "MSG foo.x 2 r 2\r\nhi\r\nMSG foo.x 1 r 2\r\nhi\r\n"
    );
    // The last subscription gone: RS-.
    b.send(sub, "UNSUB 1\r\nUNSUB 2\r\n");
    assert_eq!(b.take(route), "RS- $G foo.*\r\nRS- $G foo.>\r\n");
}

#[test]
fn a_subscription_reaches_the_routes_before_a_message_read_with_it() {
    let (mut a, mut b, route) = linked();
    let responder = a.connect(1, "{}");
    a.send(responder, "SUB req 1\r\n");
    b.send(route, &a.take(route));
    let requester = b.connect(2, "{}");
    b.send(requester, "SUB reply 1\r\nPUB req reply 2\r\nhi\r\n");
    assert_eq!(
        b.take(route),
        "RS+ $G reply\r\nRMSG $G req reply 2\r\nhi\r\n"
    );
}

#[test]
fn a_routed_message_reaches_local_subscribers_only() {
    let (mut a, mut b, route) = linked();
    // A has interest in `x`, so B would forward B's own clients' messages.
    let a_sub = a.connect(1, "{}");
    a.send(a_sub, "SUB x 1\r\n");
    b.send(route, &a.take(route));
    let b_sub = b.connect(2, "{}");
    b.send(b_sub, "SUB x 9\r\n");
    let _ = b.take(route);
    // A message from A's route is delivered on B, never sent back.
    b.send(route, "RMSG $G x 1\r\nz\r\n");
    assert_eq!(b.take(b_sub), "MSG x 9 1\r\nz\r\n");
    assert_eq!(b.take(route), "");
}

#[test]
fn queue_groups_deliver_once_across_the_pair() {
    let (mut a, mut b, route) = linked();
    let b_member = b.connect(1, "{}");
    b.send(b_member, "SUB work q 1\r\nSUB work q 2\r\n");
    let interest = b.take(route);
    // The weight follows the members on B.
    assert_eq!(interest, "RS+ $G work q 1\r\nRS+ $G work q 2\r\n");
    a.send(route, &interest);
    let a_member = a.connect(2, "{}");
    a.send(a_member, "SUB work q 7\r\n");
    let _ = a.take(route);
    let publisher = a.connect(3, "{}");
    let (mut local, mut remote) = (0, 0);
    for _ in 0..300 {
        a.send(publisher, "PUB work 1\r\nj\r\n");
        let here = a.take(a_member);
        let there = a.take(route);
        match (here.is_empty(), there.is_empty()) {
            (false, true) => local += 1,
            (true, false) => {
                assert_eq!(there, "RMSG $G work | q 1\r\nj\r\n");
                b.send(route, &there);
                assert_eq!(b.take(b_member).matches("MSG work").count(), 1);
                remote += 1;
            }
            other => panic!("delivered {other:?}"),
        }
    }
    // Weighted 1 here against 2 there: both get a share.
    assert!(local > 30 && remote > 100, "local {local}, remote {remote}");
    // A routed message naming no queue group reaches no queue member.
    b.send(route, "RMSG $G work 1\r\nj\r\n");
    assert_eq!(b.take(b_member), "");
}

#[test]
fn stream_importers_cast_shadow_interest_and_queue_members_once_across_the_pair() {
    let (mut a, mut b, route) = linked_with(node_with_accounts);
    let importer = b.connect(1, r#"{"user":"b","pass":"pw"}"#);
    b.send(importer, "SUB a.feed.x.> q 1\r\nSUB a.feed.> 2\r\n");
    // The importer's own interest, then its shadow in the exporter: the
    // subject taken back through the import, the queue group kept.
    let interest = b.take(route);
    assert_eq!(
        interest,
        "RS+ B a.feed.x.> q 1\r\nRS+ A feed.x.> q 1\r\nRS+ B a.feed.>\r\nRS+ A feed.>\r\n"
    );
    a.send(route, &interest);
    // A member of the same group on A: its shadow is drawn with B's.
    let local = a.connect(2, r#"{"user":"b","pass":"pw"}"#);
    a.send(local, "SUB a.feed.> q 7\r\n");
    let _ = a.take(route);
    let publisher = a.connect(3, r#"{"user":"a","pass":"pw"}"#);
    let (mut here, mut there) = (0, 0);
    for _ in 0..200 {
        a.send(publisher, "PUB feed.x.y 2\r\nhi\r\n");
        let forwarded = a.take(route);
        b.send(route, &forwarded);
        let on_b = b.take(importer);
        let queued_on_b = on_b.matches("MSG a.feed.x.y 1 2").count();
        assert_eq!(on_b.matches("MSG a.feed.x.y 2 2").count(), 1, "{on_b:?}");
        match (a.take(local).as_str(), queued_on_b) {
            ("MSG a.feed.x.y 7 2\r\nhi\r\n", 0) => {
                assert_eq!(forwarded, "RMSG A feed.x.y 2\r\nhi\r\n");
                here += 1;
            }
            ("", 1) => {
                assert_eq!(forwarded, "RMSG A feed.x.y | q 2\r\nhi\r\n");
                there += 1;
            }
            other => panic!("queue group delivered {other:?}"),
        }
    }
    assert!(here > 30 && there > 30, "here {here}, there {there}");
    // The importer gone: its shadows leave with it.
    b.send(importer, "UNSUB 1\r\nUNSUB 2\r\n");
    assert_eq!(
        b.take(route),
        "RS- B a.feed.x.> q\r\nRS- A feed.x.> q\r\nRS- B a.feed.>\r\nRS- A feed.>\r\n"
    );
}

#[test]
fn a_closed_route_takes_its_interest_and_is_dialed_again() {
    let (mut a, mut b, route) = linked();
    let sub = b.connect(1, "{}");
    b.send(sub, "SUB gone 1\r\n");
    a.send(route, &b.take(route));
    a.server.handle_closed(a.now, route);
    let publisher = a.connect(2, "{}");
    a.send(publisher, "PUB gone 1\r\nz\r\n");
    assert!(a.server.connections().route(route).is_none());
    // The redial waits for its backoff timer.
    assert_eq!(a.server.poll_dial(), None);
    a.now = t(1_000);
    a.server.handle_timeout(a.now);
    assert!(a.server.poll_dial().is_some());
}

#[test]
fn a_route_that_does_not_read_is_a_slow_consumer() {
    let (mut a, mut b, route) = linked();
    let sub = b.connect(1, "{}");
    b.send(sub, "SUB big 1\r\n");
    a.send(route, &b.take(route));
    let publisher = a.connect(2, "{}");
    let payload = "x".repeat(1024 * 1024);
    let max_pending = a.server.config().max_pending;
    for _ in 0..=(max_pending / payload.len()) {
        a.send(
            publisher,
            &format!("PUB big {}\r\n{payload}\r\n", payload.len()),
        );
    }
    assert_eq!(
        a.server.close_reason(route),
        Some(CloseReason::SlowConsumerPendingBytes)
    );
    assert!(a.actions().contains(&Action::Close {
        conn: route,
        reason: CloseReason::SlowConsumerPendingBytes
    }));
}

/// A write to a route past its deadline: as the reference's default
/// `write_timeout` for routes (`retry`), a route that took some of it stays
/// and is reported slow once per episode; one that took nothing is cut.
#[test]
fn a_stalled_route_write_is_retried_unless_nothing_was_written() {
    let (mut a, _b, route) = linked();
    let _ = a.server.take_logs().count();
    let before = a.server.stats().slow_consumers;
    assert!(a.server.handle_write_stalled(route, 10));
    assert!(a.server.handle_write_stalled(route, 20));
    let lines: Vec<String> = a.server.take_logs().map(|r| r.text).collect();
    assert!(lines[0].starts_with("Slow Consumer Detected: WriteDeadline of 10s exceeded"));
    assert!(lines[1].starts_with("Slow Consumer State: WriteDeadline of 10s exceeded"));
    assert_eq!(a.server.stats().slow_consumers, before + 1);
    assert_eq!(a.server.close_reason(route), None);
    assert!(!a.server.handle_write_stalled(route, 0));
    assert_eq!(
        a.server.close_reason(route),
        Some(CloseReason::SlowConsumerWriteDeadline)
    );
}

/// Gossip as nats-server's `gossip_mode`: B and C dial seed A. A tells B
/// about C (a route A accepted) with `gossip_mode` 1, so B, dialing C
/// because of it, says 1 in its INFO and C tells nobody; and B, having
/// dialed C on gossip's word, tells nobody either.
/// Routes PING at most every 30 s, as the reference caps them, though the
/// top-level `ping_interval` (2 minutes by default) is longer.
#[test]
fn route_pings_are_capped_at_thirty_seconds() {
    let (a, _b, route) = linked();
    assert!(a.server.config().ping_interval > Duration::from_secs(30));
    let deadline = a.server.connections().route(route).unwrap().ping_deadline;
    assert_eq!(deadline - a.now, Duration::from_secs(30));
}

#[test]
fn gossip_modes_keep_news_from_being_passed_on_twice() {
    let url = RouteUrl::parse("nats://127.0.0.1:6222").unwrap();
    let mut a = node("A", "NAAAA", Vec::new());
    let mut b = node("B", "NBBBB", vec![url.clone()]);
    let mut c = node_on_port("C", "NCCCC", vec![url], -1, Vec::new(), 6333);
    let (ab, ac, bc) = (ConnId(100), ConnId(101), ConnId(102));
    for (dialer, conn) in [(&mut b, ab), (&mut c, ac)] {
        let dial = dialer.server.poll_dial().unwrap();
        dialer
            .server
            .handle_dialed(dialer.now, dial.id, conn, peer(6222));
        a.server
            .handle_accept(a.now, conn, peer(50000), ListenerKind::Route);
        pump(&mut a, dialer, conn);
    }
    pump(&mut a, &mut b, ab);
    // B heard of C from A (which had accepted C): it dials C.
    let dial = b.server.poll_dial().expect("gossip names C");
    assert_eq!(dial.address, "127.0.0.1:6333");
    b.server.handle_dialed(b.now, dial.id, bc, peer(6333));
    let b_hello = b.take(bc);
    assert!(b_hello.contains("\"gossip_mode\":1"), "{b_hello}");
    c.server
        .handle_accept(c.now, bc, peer(50001), ListenerKind::Route);
    c.send(bc, &b_hello);
    b.send(bc, &c.take(bc));
    pump(&mut b, &mut c, bc);
    for h in [&mut a, &mut b, &mut c] {
        assert_eq!(h.server.connections().route_ids().len(), 2);
    }
    // Nobody was told about the B-C route.
    assert_eq!(a.take(ab), "");
    assert_eq!(a.take(ac), "");
    assert_eq!(b.take(ab), "");
    assert_eq!(c.take(ac), "");
}

#[test]
fn pool_index_is_the_references_fnv1a() {
    use crate::server::routes::pool_index;
    // FNV-1a 32 of "foobar" is 0xbf9cf968 (the published test vector).
    assert_eq!(pool_index(0xbf9c_f969, "foobar"), 0xbf9c_f968);
    assert_eq!(pool_index(3, "$G"), 2);
    assert_eq!(pool_index(1, "$G"), 0);
    assert_eq!(pool_index(0, "$G"), 0);
}

/// Two pooling servers: A dials B's pool and B's pinned system account
/// route; each pooled connection A registers names its slot in A's INFO,
/// and the next slot is dialed when B answers A's PING; an account's
/// interest goes on its slot only, a pinned account's without its name.
#[test]
fn pooled_routes_fill_their_slots() {
    let url = RouteUrl::parse("nats://127.0.0.1:6222").unwrap();
    let mut a = pooled_node("A", "NAAAA", vec![url], 3, Vec::new());
    let mut b = pooled_node("B", "NBBBB", Vec::new(), 3, Vec::new());
    let pool = a.server.poll_dial().expect("the pool is dialed");
    let system = a.server.poll_dial().expect("the system account's route");
    assert_eq!(a.server.poll_dial(), None);
    let sub = b.connect(1, "{}");
    b.send(sub, "SUB x 1\r\n");
    let mut conns = Vec::new();
    for (n, dial) in [pool.id, system.id].into_iter().enumerate() {
        let conn = ConnId(100 + n as u64);
        a.server.handle_dialed(a.now, dial, conn, peer(6222));
        b.server
            .handle_accept(b.now, conn, peer(50000 + n as u16), ListenerKind::Route);
        conns.push(conn);
    }
    // A's pooled INFO waits for B's; A's pinned route sends its at once.
    let first = a.take(conns[0]);
    assert!(
        first.starts_with("CONNECT ") && !first.contains("INFO"),
        "{first}"
    );
    b.send(conns[0], &first);
    let pinned = a.take(conns[1]);
    assert!(pinned.contains("\"route_account\":\"$SYS\""), "{pinned}");
    b.send(conns[1], &pinned);
    let to_a = b.take(conns[0]);
    assert!(to_a.contains("\"route_pool_size\":3"), "{to_a}");
    a.send(conns[0], &to_a);
    let reply = a.take(conns[0]);
    // Slot 0 is not written (the reference omits a zero index), then PING.
    assert!(
        reply.starts_with("INFO ") && reply.ends_with("PING\r\n"),
        "{reply}"
    );
    b.send(conns[0], &reply);
    // `$G` sits in slot 2: B's interest in it is not on slot 0.
    assert!(!b.take(conns[0]).contains("RS+ $G x"));
    // The PONG opens the next slot's dial.
    a.send(conns[0], "PONG\r\n");
    let next = a.server.poll_dial().expect("the next slot is dialed");
    assert_eq!(next.address, "127.0.0.1:6222");
    // The pinned route's interest leaves the account out.
    pump(&mut a, &mut b, conns[1]);
    let on_pinned = a.server.connections().route(conns[1]).unwrap();
    assert_eq!(on_pinned.account.as_deref(), Some("$SYS"));
    // (The system services' subjects, and the wildcard of the responses
    // to requests the other accounts import from it.)
    assert!(on_pinned
        .subs
        .values()
        .all(|s| s.subject.starts_with(b"$SYS.") || s.subject.starts_with(b"_R_.")));
    // Slots 1 and 2: the second dial takes slot 1, a third slot 2, where
    // B's `$G` interest arrives.
    let mut dial = next;
    for slot in 1..3u64 {
        let conn = ConnId(200 + slot);
        a.server.handle_dialed(a.now, dial.id, conn, peer(6222));
        b.server
            .handle_accept(b.now, conn, peer(51000 + slot as u16), ListenerKind::Route);
        b.send(conn, &a.take(conn));
        a.send(conn, &b.take(conn));
        let info = a.take(conn);
        assert!(
            info.contains(&format!("\"route_pool_idx\":{slot}")),
            "{info}"
        );
        b.send(conn, &info);
        let interest = b.take(conn);
        assert_eq!(interest.contains("RS+ $G x"), slot == 2, "{interest}");
        a.send(conn, "PONG\r\n");
        match a.server.poll_dial() {
            Some(more) => dial = more,
            None => assert_eq!(slot, 2, "no dial after slot {slot}"),
        }
    }
}

#[test]
fn a_late_second_connection_is_the_duplicate_whoever_dialed_it() {
    // Each names the other; A's dial registers first and carries interest.
    let url = |port| RouteUrl::parse(&format!("nats://127.0.0.1:{port}")).unwrap();
    // B has the smaller id: a rule by ids would keep B's dial.
    let mut a = node("A", "NZZZZ", vec![url(6223)]);
    let mut b = node("B", "NAAAA", vec![url(6222)]);
    let (a_dial, b_dial) = (a.server.poll_dial().unwrap(), b.server.poll_dial().unwrap());
    let first = ConnId(100);
    a.server.handle_dialed(a.now, a_dial.id, first, peer(6223));
    b.server
        .handle_accept(b.now, first, peer(50000), ListenerKind::Route);
    pump(&mut a, &mut b, first);
    let sub = b.connect(1, "{}");
    b.send(sub, "SUB foo 1\r\n");
    a.send(first, &b.take(first));
    // B's own dial connects late. Whatever the ids say, the route already
    // carrying messages stays on both ends and the latecomer goes.
    let late = ConnId(200);
    b.server.handle_dialed(b.now, b_dial.id, late, peer(6222));
    a.server
        .handle_accept(a.now, late, peer(50001), ListenerKind::Route);
    pump(&mut a, &mut b, late);
    for side in [&a, &b] {
        assert_eq!(
            side.server.close_reason(late),
            Some(CloseReason::DuplicateRoute)
        );
        assert_eq!(side.server.close_reason(first), None);
    }
    let publisher = a.connect(2, "{}");
    a.send(publisher, "PUB foo 2\r\nhi\r\n");
    b.send(first, &a.take(first));
    assert_eq!(b.take(sub), "MSG foo 1 2\r\nhi\r\n");
    // The closed latecomer is not redialed: B's dial now rides on the kept
    // route, and comes back when that one closes.
    b.server.handle_closed(b.now, late);
    b.now = t(5_000);
    b.server.handle_timeout(b.now);
    assert_eq!(b.server.poll_dial(), None);
}
