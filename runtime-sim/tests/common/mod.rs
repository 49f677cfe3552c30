//! Helpers shared by the simulator's tests.
#![allow(dead_code)]

use rnats_runtime_sim::{run, Outcome, RunOptions, Scenario};

pub fn scenario(name: &str) -> Scenario {
    let path = format!(
        "{}/../sim-scenarios/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    Scenario::load(&path).expect("scenario loads")
}

pub fn run_seed(scenario: &Scenario, seed: u64, defect: Option<&str>) -> Outcome {
    let options = RunOptions {
        seed,
        defect: defect.map(str::to_string),
        ..RunOptions::default()
    };
    run(scenario, &options).expect("run starts")
}

/// Runs `seeds`, each twice when `check_determinism`; returns the first failing outcome.
pub fn sweep(
    scenario: &Scenario,
    seeds: std::ops::Range<u64>,
    check_determinism: bool,
    defect: Option<&str>,
) -> Option<Outcome> {
    for seed in seeds {
        let outcome = run_seed(scenario, seed, defect);
        if check_determinism {
            let again = run_seed(scenario, seed, defect);
            assert_eq!(
                outcome.trace_hash, again.trace_hash,
                "{} seed {seed} is not deterministic",
                scenario.name
            );
            assert_eq!(outcome.failure, again.failure);
        }
        if outcome.failure.is_some() {
            return Some(outcome);
        }
    }
    None
}

pub fn describe(outcome: &Outcome) -> String {
    match &outcome.failure {
        None => format!("{} seed {}: ok", outcome.scenario, outcome.seed),
        Some(failure) => format!(
            "{} seed {} failed: {}\nreplay: cargo run -p rnats-runtime-sim --bin rnats-sim -- run --scenario sim-scenarios/{}.json --seed {}\n{}",
            outcome.scenario,
            outcome.seed,
            failure.message,
            outcome.scenario,
            outcome.seed,
            failure.recent.join("\n")
        ),
    }
}
