//! The CI sweep: a fixed seed range of every scenario, each seed run twice
//! and compared, plus the checked-in seeds that once failed.
//!
//! `SIM_CI_SEEDS=N` widens the range (default 8 per scenario).

mod common;

use common::{describe, run_seed, scenario, sweep};

fn seeds() -> u64 {
    std::env::var("SIM_CI_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8)
}

fn sweep_clean(name: &str) {
    let scenario = scenario(name);
    if let Some(failed) = sweep(&scenario, 0..seeds(), true, None) {
        panic!("{}", describe(&failed));
    }
}

#[test]
fn ci_pubsub_faults() {
    sweep_clean("pubsub-faults");
}

#[test]
fn ci_queue_churn() {
    sweep_clean("queue-churn");
}

#[test]
fn ci_request_reply() {
    sweep_clean("request-reply");
}

#[test]
fn ci_slow_consumers() {
    sweep_clean("slow-consumers");
}

#[test]
fn ci_accounts_permissions() {
    sweep_clean("accounts-permissions");
}

#[test]
fn ci_accounts_permissions_tls() {
    sweep_clean("accounts-permissions-tls");
}

#[test]
fn ci_operator_jwt() {
    sweep_clean("operator-jwt");
}

#[test]
fn ci_malformed() {
    sweep_clean("malformed");
}

#[test]
fn ci_websocket() {
    sweep_clean("websocket");
}

#[test]
fn ci_two_nodes() {
    sweep_clean("two-nodes");
}

#[test]
fn ci_cluster() {
    sweep_clean("cluster");
}

#[test]
fn ci_cluster_gossip() {
    sweep_clean("cluster-gossip");
}

#[test]
fn ci_jetstream_restarts() {
    sweep_clean("jetstream-restarts");
}

#[test]
fn ci_jetstream_consumers() {
    sweep_clean("jetstream-consumers");
}

#[test]
fn ci_raft() {
    sweep_clean("raft");
}

#[test]
fn ci_raft_five() {
    sweep_clean("raft-five");
}

#[test]
fn ci_raft_bridge() {
    sweep_clean("raft-bridge");
}

#[test]
fn ci_raft_elections() {
    sweep_clean("raft-elections");
}

#[test]
fn ci_raft_figure8() {
    sweep_clean("raft-figure8");
}

#[test]
fn ci_raft_membership() {
    sweep_clean("raft-membership");
}

#[test]
fn ci_raft_snapshots() {
    sweep_clean("raft-snapshots");
}

#[test]
fn ci_raft_lost_log() {
    sweep_clean("raft-lost-log");
}

#[test]
fn ci_raft_disk_faults() {
    sweep_clean("raft-disk-faults");
}

#[test]
fn ci_raft_clocks() {
    sweep_clean("raft-clocks");
}

#[test]
fn ci_raft_stepdown() {
    sweep_clean("raft-stepdown");
}

#[test]
fn ci_raft_transport() {
    sweep_clean("raft-transport");
}

/// `sim-scenarios/regression-seeds.txt`: `scenario seed [defect]` per line.
/// Without a defect the seed must pass; with one it must still be caught.
#[test]
fn ci_regression_seeds() {
    let path = format!(
        "{}/../sim-scenarios/regression-seeds.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("regression list");
    let mut replayed = 0;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(matches!(words.len(), 2 | 3), "bad line {line:?}");
        let name = words[0].trim_end_matches(".json");
        let seed: u64 = words[1].parse().expect("seed");
        let defect = words.get(2).copied();
        let outcome = run_seed(&scenario(name), seed, defect);
        match defect {
            None => assert!(outcome.failure.is_none(), "{}", describe(&outcome)),
            Some(defect) => assert!(
                outcome.failure.is_some(),
                "{name} seed {seed} no longer catches {defect}"
            ),
        }
        replayed += 1;
    }
    assert!(replayed > 0);
}
