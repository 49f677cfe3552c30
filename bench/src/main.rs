//! `rnats-bench`: drives a NATS server over real connections with the raw
//! protocol, checks every delivery, and compares rnats-server with nats-server
//! side by side.
//!
//! ```text
//! rnats-bench                       every scenario against a fresh rnats-server
//! rnats-bench --compare             rnats-server and nats-server, alternating A B A B
//! rnats-bench --smoke               tiny counts, every scenario, correctness only (< 10 s)
//! rnats-bench --addr 127.0.0.1:4222 [--pid PID]   an already running server
//! ```
//!
//! A run that loses, duplicates or reorders a message reports FAILURE, never a
//! number, and the tool exits non-zero.

mod scenarios;
mod server;
mod wire;
mod ws;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use scenarios::{Metric, Params, Scenario, Target, PAYLOAD_MIN};
use server::{Kind, ServerProcess};

const USAGE: &str = "\
rnats-bench: NATS server benchmarks over the raw protocol

USAGE: rnats-bench [MODE] [OPTIONS]

MODES (default: every scenario against a fresh rnats-server)
  --compare              rnats-server and nats-server, alternating A B A B per round
  --smoke                tiny counts, every scenario, checks correctness only
  --addr HOST:PORT       an already running server (add --pid PID for memory figures)
  --server rnats|nats    which server to start when not comparing (default rnats)

OPTIONS
  --scenario NAME[,NAME] pub pubsub fanout queue fanin reqrep idle subs ws-pubsub (default all)
  --payloads N[,N]       payload sizes in bytes, >= 12 (default 16,1024)
  --rounds N             runs per scenario and server (default 3 with --compare, else 1)
  --messages N           messages published per run (default 500000; capped at 256 MiB of payload)
  --requests N           request/reply round trips per run (default 10000)
  --connections N        idle connections (default 1000)
  --subscriptions N      subscriptions in the subs scenario (default 100000)
  --publishers N         publishers in the fanin scenario (default 4)
  --rnats-bin PATH       rnats-server binary (default: beside this binary)
  --nats-bin PATH        nats-server binary (default: pyenv which nats-server, else PATH)
";

struct Options {
    compare: bool,
    smoke: bool,
    addr: Option<SocketAddr>,
    pid: Option<u32>,
    server: Kind,
    scenarios: Vec<Scenario>,
    payloads: Vec<usize>,
    rounds: Option<usize>,
    params: Params,
    rnats_bin: Option<PathBuf>,
    nats_bin: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        compare: false,
        smoke: false,
        addr: None,
        pid: None,
        server: Kind::Rnats,
        scenarios: Scenario::ALL.to_vec(),
        payloads: vec![16, 1024],
        rounds: None,
        params: Params {
            messages: 500_000,
            bytes_max: 256 * 1024 * 1024,
            fanin_publishers: 4,
            requests: 10_000,
            connections: 1000,
            subscriptions: 100_000,
            stall: Duration::from_secs(5),
        },
        rnats_bin: None,
        nats_bin: None,
    };
    let mut given = std::collections::BTreeSet::new();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let mut value = || {
            i += 1;
            args.get(i).cloned().ok_or(format!("{flag} needs a value"))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag {
            "-h" | "--help" => return Err(String::new()),
            "--compare" => options.compare = true,
            "--smoke" => options.smoke = true,
            "--addr" => {
                let v = value()?;
                options.addr = Some(v.parse().map_err(|_| format!("--addr: bad address {v}"))?);
            }
            "--pid" => options.pid = Some(number(value()?)? as u32),
            "--server" => {
                options.server = match value()?.as_str() {
                    "rnats" | "rnats-server" => Kind::Rnats,
                    "nats" | "nats-server" => Kind::Nats,
                    other => return Err(format!("--server: rnats or nats, not {other}")),
                }
            }
            "--scenario" => {
                options.scenarios = value()?
                    .split(',')
                    .map(|n| Scenario::from_name(n).ok_or(format!("unknown scenario {n}")))
                    .collect::<Result<_, _>>()?;
            }
            "--payloads" => {
                options.payloads = value()?
                    .split(',')
                    .map(|n| {
                        n.parse::<usize>()
                            .map_err(|_| format!("--payloads: bad size {n}"))
                    })
                    .collect::<Result<_, _>>()?;
                if options.payloads.iter().any(|&p| p < PAYLOAD_MIN) {
                    return Err(format!("--payloads: each at least {PAYLOAD_MIN} bytes"));
                }
            }
            "--rounds" => options.rounds = Some(number(value()?)?.max(1) as usize),
            "--messages" => options.params.messages = number(value()?)?.max(1),
            "--requests" => options.params.requests = number(value()?)?.max(1),
            "--connections" => options.params.connections = number(value()?)?.max(1) as usize,
            "--subscriptions" => options.params.subscriptions = number(value()?)? as usize,
            "--publishers" => options.params.fanin_publishers = number(value()?)?.max(1) as usize,
            "--rnats-bin" => options.rnats_bin = Some(PathBuf::from(value()?)),
            "--nats-bin" => options.nats_bin = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other}")),
        }
        given.insert(flag.to_string());
        i += 1;
    }
    if options.smoke {
        // Tiny but every code path: partial frames, queue picks, flow windows.
        let p = &mut options.params;
        if !given.contains("--messages") {
            p.messages = 20_000;
        }
        if !given.contains("--requests") {
            p.requests = 500;
        }
        if !given.contains("--connections") {
            p.connections = 100;
        }
        if !given.contains("--subscriptions") {
            p.subscriptions = 2000;
        }
        if !given.contains("--payloads") {
            options.payloads = vec![16, 16 * 1024];
        }
        if !given.contains("--rounds") {
            options.rounds = Some(1);
        }
        p.bytes_max = 8 * 1024 * 1024;
        p.stall = Duration::from_secs(3);
    }
    Ok(options)
}

/// One scenario at one payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Case {
    scenario_index: usize,
    payload: usize,
}

/// Everything measured for one case on one server.
#[derive(Default)]
struct Results {
    runs: Vec<Vec<Metric>>,
    failures: Vec<String>,
    /// Largest VmHWM over the runs, KiB.
    peak_rss_kib: Option<u64>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(error) if error.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("rnats-bench: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("rnats-bench: {error}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether every run passed its checks.
async fn run(options: Options) -> Result<bool, String> {
    let mut servers: Vec<(Kind, Option<PathBuf>)> = Vec::new();
    if let Some(addr) = options.addr {
        let _ = addr;
        servers.push((options.server, None));
    } else {
        let rnats = || {
            options
                .rnats_bin
                .clone()
                .or_else(server::rnats_binary)
                .ok_or("rnats-server not found beside rnats-bench: cargo build --release -p rnats-runtime-tokio")
        };
        let nats = || options.nats_bin.clone().or_else(server::nats_binary);
        if options.compare {
            servers.push((Kind::Rnats, Some(rnats()?)));
            match nats() {
                Some(bin) => servers.push((Kind::Nats, Some(bin))),
                None => eprintln!("NOTICE: nats-server not found; measuring rnats-server alone"),
            }
        } else if options.server == Kind::Nats {
            servers.push((Kind::Nats, Some(nats().ok_or("nats-server not found")?)));
        } else {
            servers.push((Kind::Rnats, Some(rnats()?)));
        }
    }
    let rounds = options
        .rounds
        .unwrap_or(if options.compare { 3 } else { 1 });
    let mut cases = Vec::new();
    for (index, scenario) in options.scenarios.iter().enumerate() {
        if scenario.uses_payloads() {
            cases.extend(options.payloads.iter().map(|&payload| Case {
                scenario_index: index,
                payload,
            }));
        } else {
            cases.push(Case {
                scenario_index: index,
                payload: 16,
            });
        }
    }

    let mut results: BTreeMap<(Case, usize), Results> = BTreeMap::new();
    let started = std::time::Instant::now();
    for &case in &cases {
        let scenario = options.scenarios[case.scenario_index];
        for round in 0..rounds {
            for (server_index, (kind, binary)) in servers.iter().enumerate() {
                let entry = results.entry((case, server_index)).or_default();
                let (process, target) = match binary {
                    Some(binary) => {
                        let process = ServerProcess::start(binary, scenario.uses_websocket())?;
                        let target = Target {
                            addr: process.addr,
                            pid: Some(process.pid()),
                            ws_addr: process.ws_addr,
                        };
                        (Some(process), target)
                    }
                    None => (
                        None,
                        Target {
                            addr: options.addr.expect("addr"),
                            pid: options.pid,
                            ws_addr: None,
                        },
                    ),
                };
                let limit = Duration::from_secs(if options.smoke { 30 } else { 180 });
                let outcome = match tokio::time::timeout(
                    limit,
                    scenarios::run(scenario, case.payload, target, &options.params),
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("did not finish within {limit:?}")),
                };
                if let Some(pid) = target.pid {
                    if let Some((_, hwm)) = server::memory_kib(pid) {
                        entry.peak_rss_kib = Some(entry.peak_rss_kib.unwrap_or(0).max(hwm));
                    }
                }
                drop(process);
                let label = format!(
                    "{} {}B round {} {}",
                    scenario.name(),
                    case.payload,
                    round + 1,
                    kind.name()
                );
                match outcome {
                    Ok(metrics) => {
                        let shown: Vec<String> = metrics
                            .iter()
                            .map(|m| format!("{}={} {}", m.name, human(m.value), m.unit))
                            .collect();
                        eprintln!("{label}: {}", shown.join("  "));
                        entry.runs.push(metrics);
                    }
                    Err(error) => {
                        eprintln!("{label}: FAILURE: {error}");
                        entry.failures.push(format!("round {}: {error}", round + 1));
                    }
                }
            }
        }
    }
    eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
    let passed = results.values().all(|r| r.failures.is_empty());
    if options.smoke {
        println!(
            "smoke: {} runs, {}",
            results
                .values()
                .map(|r| r.runs.len() + r.failures.len())
                .sum::<usize>(),
            if passed {
                "all passed"
            } else {
                "FAILURES above"
            }
        );
    } else {
        print_table(&options, &servers, &cases, &results, rounds);
    }
    Ok(passed)
}

fn print_table(
    options: &Options,
    servers: &[(Kind, Option<PathBuf>)],
    cases: &[Case],
    results: &BTreeMap<(Case, usize), Results>,
    rounds: usize,
) {
    let names: Vec<&str> = servers.iter().map(|(k, _)| k.name()).collect();
    let mut header = String::from("| scenario | payload | metric |");
    let mut rule = String::from("| --- | --- | --- |");
    for name in &names {
        header.push_str(&format!(" {name} |"));
        rule.push_str(" ---: |");
    }
    if names.len() == 2 {
        header.push_str(" rnats / nats |");
        rule.push_str(" ---: |");
    }
    for name in &names {
        header.push_str(&format!(" peak RSS {name} |"));
        rule.push_str(" ---: |");
    }
    println!("\nMedians of {rounds} round(s).\n");
    println!("{header}\n{rule}");
    for &case in cases {
        let scenario = options.scenarios[case.scenario_index];
        let per_server: Vec<&Results> = (0..servers.len()).map(|s| &results[&(case, s)]).collect();
        let Some(template) = per_server.iter().find_map(|r| r.runs.first()) else {
            println!(
                "| {} | {} | FAILURE | {} |",
                scenario.name(),
                payload_label(scenario, case.payload),
                per_server
                    .iter()
                    .map(|_| "FAILURE")
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            continue;
        };
        for (row, m) in template.iter().enumerate() {
            let mut line = format!(
                "| {} | {} | {} ({}) |",
                scenario.name(),
                payload_label(scenario, case.payload),
                m.name,
                m.unit
            );
            let mut medians = Vec::new();
            for r in &per_server {
                if !r.failures.is_empty() || r.runs.is_empty() {
                    line.push_str(" FAILURE |");
                    medians.push(None);
                    continue;
                }
                let mut values: Vec<f64> = r
                    .runs
                    .iter()
                    .filter_map(|run| run.get(row))
                    .map(|x| x.value)
                    .collect();
                values.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let median = values[values.len() / 2];
                line.push_str(&format!(" {} |", human(median)));
                medians.push(Some(median));
            }
            if names.len() == 2 {
                match (medians[0], medians[1]) {
                    (Some(a), Some(b)) if b > 0.0 => {
                        let ratio = a / b;
                        let better = if m.higher_is_better {
                            ratio >= 1.0
                        } else {
                            ratio <= 1.0
                        };
                        line.push_str(&format!(" {ratio:.2}{} |", if better { "" } else { " ✗" }));
                    }
                    _ => line.push_str(" - |"),
                }
            }
            for r in &per_server {
                match (row, r.peak_rss_kib) {
                    (0, Some(kib)) => line.push_str(&format!(" {:.1} MiB |", kib as f64 / 1024.0)),
                    _ => line.push_str(" |"),
                }
            }
            println!("{line}");
        }
    }
    for (&(case, server), r) in results {
        for failure in &r.failures {
            let scenario = options.scenarios[case.scenario_index];
            println!(
                "\nFAILURE {} {}B on {}: {failure}",
                scenario.name(),
                case.payload,
                names[server]
            );
        }
    }
    println!("\n✗ marks a ratio where rnats-server is worse (higher is better for rates, lower for latency and memory).");
}

fn payload_label(scenario: Scenario, payload: usize) -> String {
    if !scenario.uses_payloads() {
        return "-".into();
    }
    if payload >= 1024 && (payload / 1024) * 1024 == payload {
        format!("{} KiB", payload / 1024)
    } else {
        format!("{payload} B")
    }
}

/// 1234567 -> "1.23M"; small values keep one decimal.
fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}
