//! The JetStream publish path's allocations per message, pinned.
//!
//! The JetStream machine stores messages published on a file-backed stream
//! (over core's in-memory disk) and acknowledges them after each group
//! commit, as the runtime drives it: a batch of publishes, then the actions
//! polled, the sync performed and reported. After a warm-up, the allocations
//! per message are counted. The messages themselves (`JsInbound`, built by
//! the server's link) are made before counting.
//!
//! Nothing is allocated per message beyond the stored bytes: the waiting
//! ack shares the publish's reply subject, the ack names the stream's
//! shared account, and its JSON is a slice of the stream's ack buffer
//! (`AckArena`, one allocation per 8 KiB of acks); block buffers and indexes
//! grow amortized. A change that adds an allocation per message fails here.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use rnats_core::jetstream::config::{AccountLimits, JetStreamConfig};
use rnats_core::jetstream::link::{JsAction, JsInbound, JsTarget};
use rnats_core::jetstream::machine::JetStream;
use rnats_core::store::{perform_sync, MemDisk, SharedDisk};
use rnats_core::time::{Instant, WallTime};

use common::counting_alloc::{allocations, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations per published message, amortized: buffers that fill and are
/// replaced (the ack buffer about every 200 acks, the store's blocks).
const ALLOCATIONS_PER_MESSAGE: f64 = 0.1;

const BATCH: usize = 100;

struct Driver {
    js: JetStream<SharedDisk<MemDisk>>,
    disk: SharedDisk<MemDisk>,
    clock: u64,
    acks: u64,
    listening: Option<JsTarget>,
}

impl Driver {
    fn inbound(&mut self, target: JsTarget, subject: &str, payload: &[u8]) -> JsInbound {
        JsInbound {
            account: "A".into(),
            target,
            subject: Bytes::copy_from_slice(subject.as_bytes()),
            reply: Bytes::from_static(b"_INBOX.ack"),
            headers: Bytes::new(),
            payload: Bytes::copy_from_slice(payload),
            context: Bytes::new(),
        }
    }

    /// Handles `batch`, then does what a runtime does: polls the actions,
    /// performs the syncs and reports them, until nothing is left.
    fn step(&mut self, batch: Vec<JsInbound>) {
        for msg in batch {
            self.clock += 1_000;
            self.js
                .handle_inbound(Instant::from_nanos(self.clock), WallTime(self.clock), msg);
        }
        loop {
            let mut syncs = Vec::new();
            while let Some(action) = self.js.poll_action() {
                match action {
                    JsAction::Sync {
                        stream,
                        tag,
                        files,
                        dirs,
                    } => syncs.push((stream, tag, files, dirs)),
                    JsAction::Publish { subject, .. } if subject.as_ref() == b"_INBOX.ack" => {
                        self.acks += 1
                    }
                    JsAction::Listen { target, .. } => self.listening = Some(target),
                    _ => {}
                }
            }
            if syncs.is_empty() {
                return;
            }
            for (stream, tag, files, dirs) in syncs {
                let result = perform_sync(&mut self.disk, &files, &dirs);
                self.js.handle_sync_done(stream, tag, result);
            }
        }
    }
}

#[test]
fn publishing_into_a_stream_allocates_nothing_per_message() {
    let disk = SharedDisk::<MemDisk>::default();
    let mut accounts = BTreeMap::new();
    accounts.insert("A".to_string(), AccountLimits::default());
    let config = JetStreamConfig::with_bounds("", 1 << 30, 1 << 34);
    let js = JetStream::open(
        "srv".into(),
        config,
        accounts,
        disk.clone(),
        Instant::ZERO,
        WallTime(1),
    );
    let mut driver = Driver {
        js,
        disk,
        clock: 1,
        acks: 0,
        listening: None,
    };
    let create = driver.inbound(
        JsTarget::Api,
        "$JS.API.STREAM.CREATE.ORDERS",
        br#"{"name":"ORDERS","subjects":["orders.*"],"storage":"file"}"#,
    );
    driver.step(vec![create]);
    let stream = driver.listening.expect("the stream listens");
    let payload = [b'x'; 128];
    let make_batch = |driver: &mut Driver| {
        (0..BATCH)
            .map(|i| driver.inbound(stream, ["orders.new", "orders.paid"][i % 2], &payload))
            .collect::<Vec<_>>()
    };

    for _ in 0..300 {
        let batch = make_batch(&mut driver);
        driver.step(batch);
    }
    let rounds = 200;
    let batches: Vec<Vec<JsInbound>> = (0..rounds).map(|_| make_batch(&mut driver)).collect();
    let acks_before = driver.acks;
    let before = allocations();
    for batch in batches {
        driver.step(batch);
    }
    let per_message = (allocations() - before) as f64 / (rounds * BATCH) as f64;
    assert_eq!(
        driver.acks - acks_before,
        (rounds * BATCH) as u64,
        "every publish acknowledged"
    );
    println!("{per_message:.2} allocations per published message");
    assert!(
        per_message <= ALLOCATIONS_PER_MESSAGE,
        "{per_message:.2} allocations per message, at most {ALLOCATIONS_PER_MESSAGE} expected"
    );
}
