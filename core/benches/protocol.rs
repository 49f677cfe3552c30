//! Micro-benchmarks of the client protocol codec: the parser taking a read
//! buffer of PUBs apart, and the MSG encoder writing deliveries.
//!
//! Run: `cargo bench -p rnats-core --bench protocol`.

use std::time::Duration;

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rnats_core::protocol::{write_msg, write_pub, ClientOp, ClientParser, ParserLimits};

/// PUBs per parsed buffer.
const PUBS_PER_BUFFER: usize = 100;
/// Payload sizes measured, in bytes.
const PAYLOAD_SIZES: [usize; 3] = [16, 128, 1024];

fn pub_buffer(payload_size: usize) -> BytesMut {
    let payload = vec![b'x'; payload_size];
    let mut buf = BytesMut::new();
    for _ in 0..PUBS_PER_BUFFER {
        write_pub(&mut buf, b"bench.subject.foo", None, &payload);
    }
    buf
}

fn parser(c: &mut Criterion) {
    let mut group = c.benchmark_group("parser/next_op");
    for size in PAYLOAD_SIZES {
        let template = pub_buffer(size);
        group.throughput(Throughput::Elements(PUBS_PER_BUFFER as u64));
        group.bench_function(format!("100_pubs_{size}B"), |b| {
            let mut parser = ClientParser::new(ParserLimits::default());
            b.iter_batched_ref(
                || template.clone(),
                |buf| {
                    let mut count = 0;
                    while let Some(op) = parser.next_op(buf).expect("valid PUBs") {
                        debug_assert!(matches!(op, ClientOp::Pub { .. }));
                        black_box(&op);
                        count += 1;
                    }
                    assert_eq!(count, PUBS_PER_BUFFER);
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn encoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("encoder/write_msg");
    for size in PAYLOAD_SIZES {
        let payload = vec![b'x'; size];
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{size}B"), |b| {
            let mut out = BytesMut::with_capacity(1 << 20);
            b.iter(|| {
                if out.len() > (1 << 19) {
                    out.clear();
                }
                write_msg(
                    &mut out,
                    black_box(b"bench.subject.foo"),
                    black_box(b"12"),
                    None,
                    black_box(&payload),
                );
            });
        });
    }
    group.bench_function("16B_with_reply", |b| {
        let payload = vec![b'x'; 16];
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            if out.len() > (1 << 19) {
                out.clear();
            }
            write_msg(
                &mut out,
                black_box(b"bench.subject.foo"),
                black_box(b"12"),
                Some(black_box(b"_INBOX.abcdefghijklmnop.1")),
                black_box(&payload),
            );
        });
    });
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
    targets = parser, encoder
}
criterion_main!(benches);
