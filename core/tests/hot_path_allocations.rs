//! The publish → deliver path allocates nothing per message in steady state.
//!
//! A counting global allocator (this test binary only) measures allocations
//! while the server machine routes thousands of messages to plain and queue
//! subscribers, after a warm-up that lets buffers and the match cache reach
//! their working size.

mod common;

use bytes::BytesMut;
use rnats_core::runtime::ConnId;
use rnats_core::server::{Server, ServerConfig};
use rnats_core::time::Instant;

use common::counting_alloc::{allocations, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const MESSAGES_PER_READ: usize = 100;
const WARM_UP_ROUNDS: usize = 200;

fn feed(server: &mut Server, conn: ConnId, buf: &mut BytesMut, bytes: &[u8]) {
    buf.extend_from_slice(bytes);
    server.handle_read(Instant::from_nanos(1), conn, buf);
    assert!(buf.is_empty(), "every frame was complete");
}

/// Take, "write" and hand back everything queued, as a runtime does.
fn drain(server: &mut Server) -> usize {
    let mut delivered = 0;
    while let Some(action) = server.poll_action() {
        if let rnats_core::runtime::Action::Transmit(conn) = action {
            if let Some(batch) = server.take_outbound(conn) {
                delivered += batch.len();
                server.handle_written(conn, batch.len());
                server.recycle_outbound(batch);
            }
        }
    }
    delivered
}

#[test]
fn publish_to_deliver_allocates_nothing_per_message() {
    let mut server = Server::new(ServerConfig::default(), 1);
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let publisher = ConnId(1);
    let subscribers = [ConnId(2), ConnId(3), ConnId(4), ConnId(5)];
    let mut buf = BytesMut::with_capacity(64 * 1024);
    for conn in std::iter::once(publisher).chain(subscribers) {
        server.handle_accept(
            Instant::from_nanos(1),
            conn,
            peer,
            rnats_core::runtime::ListenerKind::Client,
        );
        feed(
            &mut server,
            conn,
            &mut buf,
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n",
        );
    }
    feed(&mut server, subscribers[0], &mut buf, b"SUB orders.* 1\r\n");
    feed(&mut server, subscribers[1], &mut buf, b"SUB orders.> 1\r\n");
    feed(
        &mut server,
        subscribers[2],
        &mut buf,
        b"SUB orders.new workers 1\r\n",
    );
    feed(
        &mut server,
        subscribers[3],
        &mut buf,
        b"SUB orders.new workers 1\r\n",
    );
    drain(&mut server);

    let mut batch = Vec::new();
    for _ in 0..MESSAGES_PER_READ {
        batch.extend_from_slice(b"PUB orders.new reply.1 16\r\n0123456789abcdef\r\n");
        batch.extend_from_slice(b"HPUB orders.new 18 22\r\nNATS/1.0\r\nA: b\r\n\r\nbody\r\n");
    }
    // Warm up: buffers grow to their working size, the match cache fills.
    for _ in 0..WARM_UP_ROUNDS {
        feed(&mut server, publisher, &mut buf, &batch);
        drain(&mut server);
    }

    let before = allocations();
    let mut bytes_out = 0;
    let rounds = 300;
    for _ in 0..rounds {
        feed(&mut server, publisher, &mut buf, &batch);
        bytes_out += drain(&mut server);
    }
    let allocations = allocations() - before;
    let messages = (rounds * MESSAGES_PER_READ * 2) as u64;
    assert!(bytes_out > 0);
    assert_eq!(
        server.stats().out_msgs,
        (WARM_UP_ROUNDS as u64 + rounds as u64) * MESSAGES_PER_READ as u64 * 2 * 3
    );
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {messages} messages published"
    );
}
