//! The same seed gives the same trace, and nothing survives from one run to the next.

mod common;

use common::{run_seed, scenario};

#[test]
fn a_seed_replays_bit_for_bit_even_after_other_runs() {
    let pubsub = scenario("pubsub-faults");
    let first = run_seed(&pubsub, 11, None);
    let other = run_seed(&pubsub, 12, None);
    let queue = run_seed(&scenario("queue-churn"), 11, None);
    let again = run_seed(&pubsub, 11, None);
    assert_eq!(first.trace_hash, again.trace_hash);
    assert_eq!(first.events, again.events);
    assert_eq!(first.published, again.published);
    assert_eq!(first.delivered, again.delivered);
    assert_eq!(first.faults, again.faults);
    assert_ne!(first.trace_hash, other.trace_hash, "seeds must differ");
    assert_ne!(first.trace_hash, queue.trace_hash);
    assert!(first.failure.is_none(), "{}", common::describe(&first));
}

#[test]
fn a_websocket_seed_replays_bit_for_bit() {
    let ws = scenario("websocket");
    let first = run_seed(&ws, 5, None);
    let _other = run_seed(&scenario("pubsub-faults"), 5, None);
    let again = run_seed(&ws, 5, None);
    assert!(first.failure.is_none(), "{}", common::describe(&first));
    assert_eq!(first.trace_hash, again.trace_hash);
    assert_eq!(first.events, again.events);
    assert_eq!(first.published, again.published);
    assert_eq!(first.delivered, again.delivered);
    assert!(first.delivered > 1000, "{}", common::describe(&first));
    assert_ne!(first.trace_hash, run_seed(&ws, 6, None).trace_hash);
}

#[test]
fn a_two_node_seed_replays_bit_for_bit() {
    let two = scenario("two-nodes");
    let first = run_seed(&two, 3, None);
    let _other = run_seed(&scenario("pubsub-faults"), 3, None);
    let again = run_seed(&two, 3, None);
    assert!(first.failure.is_none(), "{}", common::describe(&first));
    assert_eq!(first.servers, 2);
    assert_eq!(first.trace_hash, again.trace_hash);
    assert_eq!(first.events, again.events);
    assert_eq!(first.published, again.published);
    assert_eq!(first.delivered, again.delivered);
    assert_eq!(first.faults, again.faults);
    assert_ne!(first.trace_hash, run_seed(&two, 4, None).trace_hash);
}

#[test]
fn a_jetstream_seed_replays_bit_for_bit_and_restarts() {
    let js = scenario("jetstream-restarts");
    let first = run_seed(&js, 3, None);
    let _other = run_seed(&scenario("two-nodes"), 3, None);
    let again = run_seed(&js, 3, None);
    assert!(first.failure.is_none(), "{}", common::describe(&first));
    assert_eq!(first.trace_hash, again.trace_hash);
    assert_eq!(first.events, again.events);
    assert_eq!(first.faults, again.faults);
    assert_eq!(first.jetstream, again.jetstream);
    assert_ne!(first.trace_hash, run_seed(&js, 4, None).trace_hash);
    // Seed 3 kills and powers off nodes, and the publishers read back.
    let count = |what: &str| first.jetstream.get(what).copied().unwrap_or(0);
    assert!(first.faults.get("power-loss").copied().unwrap_or(0) > 0);
    assert!(first.faults.get("process-kill").copied().unwrap_or(0) > 0);
    assert!(count("acked") > 500, "{:?}", first.jetstream);
    assert!(count("acked-duplicate") > 0, "{:?}", first.jetstream);
    assert!(count("msg-get-found") > 10, "{:?}", first.jetstream);
    // Every ack a publisher got was checked durable when released (some
    // were released to publishers already gone).
    assert!(count("acks-checked-durable") >= count("acked"));
}

#[test]
fn a_consumer_seed_replays_bit_for_bit_and_exercises_every_answer() {
    let consumers = scenario("jetstream-consumers");
    let first = run_seed(&consumers, 3, None);
    let _other = run_seed(&scenario("jetstream-restarts"), 3, None);
    let again = run_seed(&consumers, 3, None);
    assert!(first.failure.is_none(), "{}", common::describe(&first));
    assert_eq!(first.trace_hash, again.trace_hash);
    assert_eq!(first.events, again.events);
    assert_eq!(first.faults, again.faults);
    assert_eq!(first.jetstream, again.jetstream);
    assert_ne!(first.trace_hash, run_seed(&consumers, 4, None).trace_hash);
    let count = |what: &str| first.jetstream.get(what).copied().unwrap_or(0);
    let restarts = first.faults.get("power-loss").copied().unwrap_or(0)
        + first.faults.get("process-kill").copied().unwrap_or(0);
    assert!(restarts > 0, "{:?}", first.faults);
    for what in [
        "c-delivered",
        "c-redelivered",
        "c-acks",
        "c-acks-confirmed",
        "c-naks",
        "c-naks-delayed",
        "c-terms",
        "c-held",
        "c-acked-later",
        "c-silent",
        "c-pulls",
        "c-pulls-no-wait",
        "c-pull-404",
        "c-pull-408",
        "c-infos",
    ] {
        assert!(count(what) > 0, "no {what}: {:?}", first.jetstream);
    }
    // Every consumer of every client settled and was checked at the end.
    assert_eq!(count("c-quiet-checked"), 8, "{:?}", first.jetstream);
}

#[test]
fn a_run_does_real_work() {
    let outcome = run_seed(&scenario("pubsub-faults"), 5, None);
    assert!(outcome.failure.is_none(), "{}", common::describe(&outcome));
    assert!(outcome.published > 500, "published {}", outcome.published);
    assert!(outcome.delivered > outcome.published);
    assert!(outcome.events > 10_000);
    assert!(outcome.virtual_time.as_nanos() >= 20_000_000_000);
}

#[test]
fn slow_readers_are_cut_off() {
    let outcome = run_seed(&scenario("slow-consumers"), 2, None);
    assert!(outcome.failure.is_none(), "{}", common::describe(&outcome));
    let cut = outcome
        .closes
        .get("Slow Consumer (Pending Bytes)")
        .copied()
        .unwrap_or(0);
    assert!(cut >= 3, "only {cut} slow consumers cut off");
}

#[test]
fn malformed_clients_are_closed() {
    let outcome = run_seed(&scenario("malformed"), 2, None);
    assert!(outcome.failure.is_none(), "{}", common::describe(&outcome));
    assert!(outcome.faults.get("malformed-frame").copied().unwrap_or(0) > 10);
    let closed: u64 = outcome
        .closes
        .iter()
        .filter(|(reason, _)| **reason != "Client Closed" && **reason != "Stale Connection")
        .map(|(_, n)| n)
        .sum();
    assert!(closed > 10, "closes {:?}", outcome.closes);
}
