//! `rnats-sim`: run the deterministic simulator from the command line.
//!
//! ```text
//! rnats-sim run   --scenario FILE --seed N [--defect NAME] [--quiet]
//! rnats-sim sweep --scenario FILE --seeds A..B [--check-determinism] [--defect NAME]
//! rnats-sim regress --list FILE [--scenarios DIR]
//! rnats-sim raft-bench --scenario FILE --seeds A..B
//! ```
//! `raft-bench` runs a RAFT scenario (`sim-scenarios/raft-bench.json`) and
//! prints committed entries per virtual second and commit latency
//! percentiles (proposal to apply on the leader), per seed and over all.
//! A failure prints the seed, the one-line replay command and the last events,
//! and the process exits with status 1.

use std::process::ExitCode;
use std::time::Instant as WallClock;

use rnats_runtime_sim::{run, Outcome, RunOptions, Scenario};

struct Args {
    command: String,
    scenario: Option<String>,
    seed: u64,
    seeds: (u64, u64),
    check_determinism: bool,
    defect: Option<String>,
    list: Option<String>,
    scenarios_dir: String,
    quiet: bool,
}

fn usage() -> String {
    String::from(
        "usage:\n  rnats-sim run --scenario FILE --seed N [--defect NAME]\n  rnats-sim sweep --scenario FILE --seeds A..B [--check-determinism] [--defect NAME]\n  rnats-sim regress --list sim-scenarios/regression-seeds.txt [--scenarios sim-scenarios]\n  rnats-sim raft-bench --scenario sim-scenarios/raft-bench.json --seeds 0..5",
    )
}

fn parse_args() -> Result<Args, String> {
    let mut raw = std::env::args().skip(1);
    let command = raw.next().ok_or_else(usage)?;
    let mut args = Args {
        command,
        scenario: None,
        seed: 0,
        seeds: (0, 10),
        check_determinism: false,
        defect: None,
        list: None,
        scenarios_dir: String::from("sim-scenarios"),
        quiet: false,
    };
    while let Some(flag) = raw.next() {
        let mut value = || raw.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => args.scenario = Some(value()?),
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--seeds" => args.seeds = parse_range(&value()?)?,
            "--defect" => args.defect = Some(value()?),
            "--list" => args.list = Some(value()?),
            "--scenarios" => args.scenarios_dir = value()?,
            "--check-determinism" => args.check_determinism = true,
            "--quiet" => args.quiet = true,
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(args)
}

/// `A..B`: seeds A up to B, B excluded.
fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (low, high) = text
        .split_once("..")
        .ok_or_else(|| format!("--seeds wants A..B, got {text:?}"))?;
    let low = low.parse().map_err(|e| format!("--seeds: {e}"))?;
    let high = high.parse().map_err(|e| format!("--seeds: {e}"))?;
    if low >= high {
        return Err(format!("--seeds: empty range {text}"));
    }
    Ok((low, high))
}

fn replay_command(path: &str, seed: u64, defect: Option<&str>) -> String {
    match defect {
        Some(defect) => format!(
            "cargo run -p rnats-runtime-sim --features planted-defects --bin rnats-sim -- run --scenario {path} --seed {seed} --defect {defect}"
        ),
        None => format!("cargo run -p rnats-runtime-sim --bin rnats-sim -- run --scenario {path} --seed {seed}"),
    }
}

fn report_failure(path: &str, outcome: &Outcome, defect: Option<&str>) {
    let Some(failure) = &outcome.failure else {
        return;
    };
    eprintln!(
        "FAILED scenario {} seed {} at {:.6}s: {}",
        outcome.scenario,
        outcome.seed,
        failure.at.as_nanos() as f64 / 1e9,
        failure.message
    );
    eprintln!("replay: {}", replay_command(path, outcome.seed, defect));
    eprintln!("fault plan: {}", outcome.plan);
    eprintln!("last events:");
    for line in &failure.recent {
        eprintln!("  {line}");
    }
}

fn print_summary(outcome: &Outcome, real: std::time::Duration) {
    let real_s = real.as_secs_f64().max(1e-9);
    let virtual_s = outcome.virtual_time.as_nanos() as f64 / 1e9;
    println!("scenario          {}", outcome.scenario);
    println!("seed              {}", outcome.seed);
    println!("servers           {}", outcome.servers);
    println!("virtual time      {virtual_s:.3}s");
    println!("events            {}", outcome.events);
    let faults: Vec<String> = outcome
        .faults
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("faults            {}", faults.join(" "));
    let closes: Vec<String> = outcome
        .closes
        .iter()
        .map(|(k, v)| format!("{k:?}={v}"))
        .collect();
    println!("server closes     {}", closes.join(" "));
    println!("published         {}", outcome.published);
    println!("delivered         {}", outcome.delivered);
    println!("invariant checks  {}", outcome.checks);
    if !outcome.jetstream.is_empty() {
        let counts: Vec<String> = outcome
            .jetstream
            .iter()
            .map(|(what, n)| format!("{what}={n}"))
            .collect();
        println!("jetstream         {}", counts.join(" "));
    }
    println!("trace hash        {:016x}", outcome.trace_hash);
    println!("real time         {:.3}s", real_s);
    println!("events/s          {:.0}", outcome.events as f64 / real_s);
    println!("virtual s/real s  {:.1}", virtual_s / real_s);
    println!(
        "result            {}",
        if outcome.failure.is_some() {
            "FAILED"
        } else {
            "ok"
        }
    );
}

fn run_once(
    scenario: &Scenario,
    seed: u64,
    defect: Option<&str>,
) -> Result<(Outcome, std::time::Duration), String> {
    let options = RunOptions {
        seed,
        defect: defect.map(str::to_string),
        ..RunOptions::default()
    };
    let started = WallClock::now();
    let outcome = run(scenario, &options)?;
    Ok((outcome, started.elapsed()))
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("rnats-sim: {error}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<bool, String> {
    let args = parse_args()?;
    let defect = args.defect.as_deref();
    match args.command.as_str() {
        "run" => {
            let path = args.scenario.clone().ok_or("run needs --scenario")?;
            let scenario = Scenario::load(&path)?;
            let (outcome, real) = run_once(&scenario, args.seed, defect)?;
            print_summary(&outcome, real);
            report_failure(&path, &outcome, defect);
            Ok(outcome.failure.is_none())
        }
        "sweep" => {
            let path = args.scenario.clone().ok_or("sweep needs --scenario")?;
            let scenario = Scenario::load(&path)?;
            sweep(
                &path,
                &scenario,
                args.seeds,
                args.check_determinism,
                defect,
                args.quiet,
            )
        }
        "raft-bench" => {
            let path = args.scenario.clone().ok_or("raft-bench needs --scenario")?;
            let scenario = Scenario::load(&path)?;
            raft_bench(&scenario, args.seeds)
        }
        "regress" => {
            let list = args.list.clone().ok_or("regress needs --list")?;
            regress(&list, &args.scenarios_dir)
        }
        _ => Err(usage()),
    }
}

/// Committed entries per virtual second and commit latency per seed, then
/// the throughput over all seeds and the median of the seeds' percentiles.
fn raft_bench(scenario: &Scenario, (low, high): (u64, u64)) -> Result<bool, String> {
    if scenario.raft.is_none() {
        return Err("raft-bench needs a scenario with a raft section".into());
    }
    let (mut acked, mut load_ms) = (0u64, 0u64);
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for seed in low..high {
        let (outcome, real) = run_once(scenario, seed, None)?;
        if let Some(failure) = &outcome.failure {
            println!("seed {seed}: FAILED {}", failure.message);
            return Ok(false);
        }
        let get = |key: &str| outcome.jetstream.get(key).copied().unwrap_or(0);
        let seconds = get("load_ms").max(1) as f64 / 1000.0;
        println!(
            "seed {seed:>4}  {:>8.0} committed entries/s  commit p50 {:>6.2} ms  p99 {:>6.2} ms  ({} acked, {} entries, {:.2}s real)",
            get("acked") as f64 / seconds,
            get("commit_p50_us") as f64 / 1000.0,
            get("commit_p99_us") as f64 / 1000.0,
            get("acked"),
            get("committed"),
            real.as_secs_f64()
        );
        acked += get("acked");
        load_ms += get("load_ms");
        p50s.push(get("commit_p50_us"));
        p99s.push(get("commit_p99_us"));
    }
    p50s.sort_unstable();
    p99s.sort_unstable();
    let median = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0) as f64 / 1000.0;
    println!(
        "raft-bench {} seeds {low}..{high}: {:.0} committed entries/s (virtual time), commit p50 {:.2} ms, p99 {:.2} ms (medians over seeds)",
        scenario.name,
        acked as f64 / (load_ms.max(1) as f64 / 1000.0),
        median(&p50s),
        median(&p99s)
    );
    Ok(true)
}

fn sweep(
    path: &str,
    scenario: &Scenario,
    (low, high): (u64, u64),
    check_determinism: bool,
    defect: Option<&str>,
    quiet: bool,
) -> Result<bool, String> {
    let started = WallClock::now();
    let (mut events, mut virtual_ns, mut failures) = (0u64, 0u64, 0u64);
    for seed in low..high {
        let (outcome, _) = run_once(scenario, seed, defect)?;
        events += outcome.events;
        virtual_ns += outcome.virtual_time.as_nanos();
        if check_determinism {
            let (again, _) = run_once(scenario, seed, defect)?;
            events += again.events;
            virtual_ns += again.virtual_time.as_nanos();
            if again.trace_hash != outcome.trace_hash {
                eprintln!(
                    "NONDETERMINISM scenario {} seed {seed}: trace hash {:016x} then {:016x}",
                    scenario.name, outcome.trace_hash, again.trace_hash
                );
                eprintln!("replay: {}", replay_command(path, seed, defect));
                return Ok(false);
            }
        }
        if !quiet {
            println!(
                "seed {seed:>6}  {:>8} events  hash {:016x}  {}",
                outcome.events,
                outcome.trace_hash,
                if outcome.failure.is_some() {
                    "FAILED"
                } else {
                    "ok"
                }
            );
        }
        if outcome.failure.is_some() {
            failures += 1;
            report_failure(path, &outcome, defect);
            break;
        }
    }
    let real = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "sweep {} seeds {low}..{high}: {} in {real:.2}s, {:.0} events/s, {:.1} virtual s per real s",
        scenario.name,
        if failures == 0 { "all ok" } else { "FAILED" },
        events as f64 / real,
        virtual_ns as f64 / 1e9 / real
    );
    Ok(failures == 0)
}

/// Each line: `scenario-file seed [defect]`; `#` starts a comment.
fn regress(list: &str, dir: &str) -> Result<bool, String> {
    let text = std::fs::read_to_string(list).map_err(|e| format!("{list}: {e}"))?;
    let mut ok = true;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (file, seed) = match words.as_slice() {
            [file, seed] | [file, seed, _] => (file, seed),
            _ => return Err(format!("{list}: bad line {line:?}")),
        };
        let defect = words.get(2).copied();
        let path = format!("{dir}/{file}");
        let scenario = Scenario::load(&path)?;
        let seed = seed.parse().map_err(|e| format!("{list}: {line:?}: {e}"))?;
        let (outcome, _) = run_once(&scenario, seed, defect)?;
        let expect_failure = defect.is_some();
        let passed = outcome.failure.is_some() == expect_failure;
        println!(
            "{path} seed {seed} {}: {}",
            defect.unwrap_or("-"),
            if passed { "ok" } else { "REGRESSED" }
        );
        if !passed {
            report_failure(&path, &outcome, defect);
            ok = false;
        }
    }
    Ok(ok)
}
