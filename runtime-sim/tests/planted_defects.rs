//! Proof that the simulator finds bugs: each defect planted in core (feature
//! `planted-defects`) is reported by a sweep of at most a few hundred seeds,
//! and the reported seed replays the same failure with the same trace hash.

mod common;

use common::{run_seed, scenario, sweep};

const SEEDS_MAX: u64 = 200;

fn caught(defect: &str, scenario_name: &str) {
    let scenario = scenario(scenario_name);
    let found = sweep(&scenario, 0..SEEDS_MAX, false, Some(defect))
        .unwrap_or_else(|| panic!("{defect}: no failure in {SEEDS_MAX} seeds of {scenario_name}"));
    let failure = found.failure.clone().expect("a failure");
    println!(
        "{defect}: caught by {scenario_name} seed {}: {}",
        found.seed, failure.message
    );
    let replay = run_seed(&scenario, found.seed, Some(defect));
    assert_eq!(
        replay.failure, found.failure,
        "the seed replays the same failure"
    );
    assert_eq!(replay.trace_hash, found.trace_hash, "and the same trace");
    let clean = run_seed(&scenario, found.seed, None);
    assert!(
        clean.failure.is_none(),
        "without the defect the seed passes: {}",
        common::describe(&clean)
    );
}

#[test]
fn drop_split_frame_is_caught() {
    caught("drop-split-frame", "pubsub-faults");
}

#[test]
fn queue_double_delivery_is_caught() {
    caught("queue-double-delivery", "queue-churn");
}

#[test]
fn hpub_losing_its_reply_is_caught() {
    caught("hpub-loses-reply", "request-reply");
}

#[test]
fn slow_subscriber_blocking_its_publisher_is_caught() {
    caught("slow-subscriber-blocks-publisher", "slow-consumers");
}

#[test]
fn a_deny_list_ignored_on_delivery_is_caught() {
    caught("deny-ignored-on-delivery", "accounts-permissions");
}

#[test]
fn a_jwt_deny_list_ignored_on_delivery_is_caught() {
    // The same invariant with the permissions in bearer user JWTs.
    caught("deny-ignored-on-delivery", "operator-jwt");
}

#[test]
fn a_revocation_ignored_for_connected_users_is_caught() {
    // A claims update revokes users mid-run; their open connections must
    // get nothing new from the step the server processed it.
    caught("revocation-ignored-for-connected", "operator-jwt");
}

#[test]
fn new_default_permissions_ignored_for_connected_users_are_caught() {
    // A claims update changes an account's default permissions; its open
    // connections must be held to them from the step it was processed.
    caught("new-permissions-ignored-for-connected", "operator-jwt");
}

#[test]
fn hpub_skipping_publish_permissions_is_caught() {
    caught("hpub-skips-publish-permissions", "accounts-permissions");
}

#[test]
fn defects_are_caught_in_a_two_node_world() {
    // Each node is its own server machine with the defect; the node-aware
    // model still tells a lost or doubled message from one that stayed home.
    caught("drop-split-frame", "two-nodes");
    caught("queue-double-delivery", "two-nodes");
}

#[test]
fn defects_are_caught_by_other_scenarios_too() {
    // The same bug shows in a scenario not written for it.
    let found = sweep(
        &scenario("request-reply"),
        0..SEEDS_MAX,
        false,
        Some("drop-split-frame"),
    );
    assert!(
        found.is_some(),
        "drop-split-frame not caught by request-reply"
    );
}

#[test]
fn an_ack_before_its_sync_is_caught() {
    caught("ack-before-sync", "jetstream-restarts");
}

#[test]
fn a_consumer_ack_lost_on_restart_is_caught() {
    // An AckSync confirmed, then a restart: the message comes back.
    caught("consumer-ack-lost-on-restart", "jetstream-consumers");
}

#[test]
fn a_redelivery_timer_never_rearmed_is_caught() {
    // A redelivered message left silent again stays pending for ever: the
    // consumer does not settle in the heal phase.
    caught("redelivery-timer-not-rearmed", "jetstream-consumers");
}

#[test]
fn an_ack_before_its_sync_is_caught_by_the_publishers_alone() {
    // Without the node-side durability check, a power loss between the
    // early ack and the sync loses an acknowledged message: the publisher's
    // read-back (or a sequence acknowledged twice) shows it.
    let scenario = scenario("jetstream-restarts");
    let options = |seed| rnats_runtime_sim::RunOptions {
        seed,
        defect: Some("ack-before-sync".to_string()),
        client_checks_only: true,
    };
    let found = (0..SEEDS_MAX)
        .map(|seed| rnats_runtime_sim::run(&scenario, &options(seed)).expect("run starts"))
        .find(|outcome| outcome.failure.is_some())
        .expect("ack-before-sync: no publisher-visible failure in 200 seeds");
    println!(
        "ack-before-sync (publishers alone): caught by seed {}: {}",
        found.seed,
        found.failure.as_ref().expect("failed").message
    );
    let replay = rnats_runtime_sim::run(&scenario, &options(found.seed)).expect("run starts");
    assert_eq!(replay.trace_hash, found.trace_hash);
}

#[test]
fn a_raft_vote_forgotten_in_a_crash_is_caught() {
    // The node restarts in an older term with no vote and votes (and
    // leads) again in terms it already took part in.
    caught("raft-vote-not-durable", "raft-elections");
    caught("raft-vote-not-durable", "raft");
}

#[test]
fn a_raft_append_acknowledged_before_its_sync_is_caught() {
    // A power loss on a majority takes an entry the leader committed and a
    // client saw acknowledged; a later leader fills its index with another.
    caught("raft-ack-before-durable", "raft-elections");
}

#[test]
fn a_raft_old_term_entry_committed_by_counting_is_caught() {
    // The dissertation's figure 8: a leader counts an earlier term's entry
    // onto a majority and applies it; a later leader that never had it
    // overwrites that index on a follower that had committed it.
    caught("raft-commit-old-term", "raft-figure8");
}

#[test]
fn an_unsubscribe_never_told_to_routes_is_caught() {
    caught("route-unsubscribe-lost", "cluster");
}

#[test]
fn a_message_routed_twice_is_caught() {
    caught("route-duplicate-forward", "cluster");
}

#[test]
fn a_raft_second_uncommitted_membership_change_is_caught() {
    // Two additions (or a removal and an addition) in flight at once: the
    // old and the newest configuration have disjoint majorities, each
    // elects a leader and commits a different entry at one index.
    caught("raft-concurrent-config", "raft-membership");
}

#[test]
fn a_raft_node_that_lost_its_log_voting_as_its_old_self_is_caught() {
    // A wiped (or lazily synced, then crashed) node reopens empty under its
    // old id: it votes for a candidate missing acknowledged entries, which
    // the new leader overwrites.
    caught("raft-wiped-node-votes", "raft-lost-log");
}

#[test]
fn a_raft_damaged_snapshot_trusted_is_caught() {
    // A snapshot file with a flipped bit restores a store no node had at
    // that index.
    caught("raft-trust-damaged-snapshot", "raft-snapshots");
}
