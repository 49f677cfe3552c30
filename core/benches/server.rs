//! Micro-benchmark of the server machine's publish -> deliver step: one
//! `handle_read` carrying 100 PUBs to a subject with 4 subscribers, then
//! `take_outbound` for each subscriber (what the runtime does per read batch).
//!
//! Run: `cargo bench -p rnats-core --bench server`.

use std::time::Duration;

use bytes::BytesMut;
use core::net::SocketAddr;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rnats_core::protocol::write_pub;
use rnats_core::runtime::ConnId;
use rnats_core::server::{Server, ServerConfig};
use rnats_core::time::Instant;

const PUBS_PER_READ: usize = 100;
const SUBSCRIBERS: u64 = 4;
const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n";

struct Bench {
    server: Server,
    publisher: ConnId,
    subscribers: Vec<ConnId>,
}

fn drain(server: &mut Server, conn: ConnId) -> usize {
    let mut taken = 0;
    while let Some(batch) = server.take_outbound(conn) {
        taken += batch.len();
        server.handle_written(conn, batch.len());
        server.recycle_outbound(batch);
    }
    taken
}

fn setup(queue: Option<&str>) -> Bench {
    let mut server = Server::new(ServerConfig::default(), 1);
    let now = Instant::from_nanos(0);
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let publisher = ConnId(1);
    let subscribers: Vec<ConnId> = (0..SUBSCRIBERS).map(|i| ConnId(2 + i)).collect();
    for &conn in std::iter::once(&publisher).chain(&subscribers) {
        server.handle_accept(now, conn, peer, rnats_core::runtime::ListenerKind::Client);
        let mut buf = BytesMut::from(CONNECT);
        server.handle_read(now, conn, &mut buf);
    }
    for &conn in &subscribers {
        let sub = match queue {
            Some(q) => format!("SUB bench.subject {q} 1\r\n"),
            None => "SUB bench.subject 1\r\n".to_string(),
        };
        let mut buf = BytesMut::from(sub.as_bytes());
        server.handle_read(now, conn, &mut buf);
    }
    for &conn in std::iter::once(&publisher).chain(&subscribers) {
        drain(&mut server, conn);
    }
    while server.poll_action().is_some() {}
    Bench {
        server,
        publisher,
        subscribers,
    }
}

fn publish_deliver(c: &mut Criterion) {
    let mut group = c.benchmark_group("server/handle_read+take_outbound");
    for (name, queue) in [("fanout_4", None), ("queue_group_4", Some("workers"))] {
        for size in [16usize, 128, 1024] {
            let payload = vec![b'x'; size];
            let mut template = BytesMut::new();
            for _ in 0..PUBS_PER_READ {
                write_pub(&mut template, b"bench.subject", None, &payload);
            }
            let mut bench = setup(queue);
            let now = Instant::from_nanos(1_000_000);
            group.throughput(Throughput::Elements(PUBS_PER_READ as u64));
            group.bench_function(format!("{name}/100_pubs_{size}B"), |b| {
                b.iter_batched_ref(
                    || template.clone(),
                    |buf| {
                        bench.server.handle_read(now, bench.publisher, buf);
                        assert!(buf.is_empty());
                        while let Some(action) = bench.server.poll_action() {
                            let _ = black_box(action);
                        }
                        let mut delivered = 0;
                        for &conn in &bench.subscribers {
                            delivered += drain(&mut bench.server, conn);
                        }
                        black_box(delivered)
                    },
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = publish_deliver
}
criterion_main!(benches);
