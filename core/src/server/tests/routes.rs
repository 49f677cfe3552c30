//! Two server machines linked by a route, bytes carried by hand: the
//! handshake, interest both ways, one RMSG per message, queue groups once
//! across the pair, and a routed message never routed again.

use super::*;
use crate::server::{ClusterConfig, RouteUrl};

fn node(name: &str, id: &str, routes: Vec<RouteUrl>) -> Harness {
    let mut config = ServerConfig {
        server_name: name.to_string(),
        cluster: Some(ClusterConfig {
            name: String::from("c1"),
            host: String::from("127.0.0.1"),
            port: 6222,
            advertise: None,
            no_advertise: false,
            routes,
            connect_retries: 0,
            user: None,
            password: String::new(),
            auth_timeout: None,
            pool_size: -1,
            accounts: Vec::new(),
        }),
        ..ServerConfig::default()
    };
    config.identity.server_id = id.to_string();
    Harness::new(config)
}

/// A dials B: the route is conn 100 on both sides.
fn linked() -> (Harness, Harness, ConnId) {
    let url = RouteUrl::parse("nats://127.0.0.1:6222").unwrap();
    let mut a = node("A", "NAAAA", vec![url]);
    let mut b = node("B", "NBBBB", Vec::new());
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
