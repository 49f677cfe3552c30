//! `rnats-bench`: drives a NATS server over real connections with the raw
//! protocol, checks every delivery, and compares rnats-server with nats-server
//! side by side.
//!
//! ```text
//! rnats-bench                       every scenario against a fresh rnats-server
//! rnats-bench --compare             rnats-server and nats-server, alternating A B A B
//! rnats-bench --smoke               tiny counts, every scenario, correctness only (< 30 s)
//! rnats-bench --addr 127.0.0.1:4222 [--pid PID]   an already running server
//! rnats-bench --compare --scenario js   the JetStream scenarios, four durability levels
//! ```
//!
//! A run that loses, duplicates or reorders a message reports FAILURE, never a
//! number, and the tool exits non-zero.

mod cluster;
mod js;
mod raft;
mod scenarios;
mod server;
mod wire;
mod ws;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use js::{ConsumeMode, Durability, JsCase, JsParams, JsScenario, JsServer, Storage, StoreDir};
use scenarios::{Metric, Params, Scenario, Target, PAYLOAD_MIN};
use server::{Kind, ServerProcess};

const USAGE: &str = "\
rnats-bench: NATS server benchmarks over the raw protocol

USAGE: rnats-bench [MODE] [OPTIONS]

MODES (default: every core scenario against a fresh rnats-server)
  --compare              rnats-server and nats-server, alternating A B A B per round
  --smoke                tiny counts, every scenario (JetStream too), checks correctness only
  --addr HOST:PORT       an already running server (add --pid PID for memory figures;
                         JetStream scenarios need a server this tool starts)
  --server rnats|nats    which server to start when not comparing (default rnats)

OPTIONS
  --scenario NAME[,NAME] pub pubsub fanout queue fanin reqrep idle subs ws-pubsub cluster-pubsub cluster-fanout raft-loopback (\"core\", the default),
                         js-pub js-pub-sync js-consume js-kv js-restart js-many (\"js\"), or \"all\"
  --payloads N[,N]       payload sizes in bytes, >= 12 (default 16,1024)
  --rounds N             runs per scenario and server (default 3 with --compare, else 1)
  --messages N           messages published per run (default 500000; capped at 256 MiB of payload)
  --requests N           request/reply round trips per run (default 10000)
  --connections N        idle connections (default 1000)
  --subscriptions N      subscriptions in the subs scenario (default 100000)
  --publishers N         publishers in the fanin scenario (default 4)
  --rnats-bin PATH       rnats-server binary (default: beside this binary)
  --nats-bin PATH        nats-server binary (default: pyenv which nats-server, else PATH)

JETSTREAM OPTIONS
  --durability L[,L]     default (rnats acks after fsync; nats-server syncs every 2 min)
                         other (rnats with sync_interval 2m; nats-server with sync_interval always)
                         (default: both, so four servers per JetStream case)
  --js-payloads N[,N]    payload sizes (default 128,16384)
  --js-publishers N[,N]  js-pub publishers (default 1,8)
  --js-windows N[,N]     js-pub publishes in flight per publisher (default 256,4096)
  --js-streams N[,N]     js-pub streams the publishers spread over (default 1)
  --js-storage S[,S]     js-pub storage: file, memory (default both)
  --js-messages N        messages per js-pub / js-pub-sync run (default 200000)
  --consume-messages N   messages a js-consume run reads (default 1000000)
  --consume-modes M[,M]  js-consume readers: pull100, pull1000, push, ordered (default all)
  --restart-messages N   messages in the stream a js-restart run restarts with (default 1000000)
  --kv-clients N[,N]     js-kv clients (default 1,8)
  --kv-ops N             js-kv puts, then gets, per client (default 100000; 100 keys each)
  --streams N            js-many streams (default 1000)
  --consumers N          js-many consumers per stream (default 10)
  --seconds N            time bound of a publishing or consuming phase (default 10)
  --store-parent DIR     where fresh store directories are made (default the temp dir)
";

struct Options {
    js_scenarios: Vec<JsScenario>,
    js: JsParams,
    durabilities: Vec<Durability>,
    js_payloads: Vec<usize>,
    js_publishers: Vec<usize>,
    js_windows: Vec<usize>,
    js_streams: Vec<usize>,
    js_storages: Vec<Storage>,
    consume_modes: Vec<ConsumeMode>,
    kv_clients: Vec<usize>,
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
        js_scenarios: Vec::new(),
        js: JsParams {
            messages: 200_000,
            consume_messages: 1_000_000,
            restart_messages: 1_000_000,
            bytes_max: 256 * 1024 * 1024,
            kv_ops: 100_000,
            kv_keys: 100,
            many_streams: 1000,
            many_consumers: 10,
            seconds: Duration::from_secs(10),
            store_parent: std::env::temp_dir(),
        },
        durabilities: vec![Durability::Default, Durability::Other],
        js_payloads: vec![128, 16 * 1024],
        js_publishers: vec![1, 8],
        js_windows: vec![256, 4096],
        js_streams: vec![1],
        js_storages: vec![Storage::File, Storage::Memory],
        consume_modes: vec![
            ConsumeMode::Pull(100),
            ConsumeMode::Pull(1000),
            ConsumeMode::Push,
            ConsumeMode::Ordered,
        ],
        kv_clients: vec![1, 8],
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
        let numbers = |v: String| -> Result<Vec<usize>, String> {
            v.split(',')
                .map(|n| {
                    n.parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(format!("{flag}: not a positive number: {n}"))
                })
                .collect()
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
                options.scenarios.clear();
                for name in value()?.split(',') {
                    match name {
                        "core" => options.scenarios.extend(Scenario::ALL),
                        "js" => options.js_scenarios.extend(JsScenario::ALL),
                        "all" => {
                            options.scenarios.extend(Scenario::ALL);
                            options.js_scenarios.extend(JsScenario::ALL);
                        }
                        _ => match (Scenario::from_name(name), JsScenario::from_name(name)) {
                            (Some(s), _) => options.scenarios.push(s),
                            (_, Some(s)) => options.js_scenarios.push(s),
                            _ => return Err(format!("unknown scenario {name}")),
                        },
                    }
                }
            }
            "--durability" => {
                options.durabilities = value()?
                    .split(',')
                    .map(|d| match d {
                        "default" => Ok(Durability::Default),
                        "other" => Ok(Durability::Other),
                        _ => Err(format!("--durability: default or other, not {d}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--js-payloads" => {
                options.js_payloads = numbers(value()?)?;
                if options.js_payloads.iter().any(|&p| p < PAYLOAD_MIN) {
                    return Err(format!("--js-payloads: each at least {PAYLOAD_MIN} bytes"));
                }
            }
            "--js-publishers" => options.js_publishers = numbers(value()?)?,
            "--js-windows" => options.js_windows = numbers(value()?)?,
            "--js-streams" => options.js_streams = numbers(value()?)?,
            "--js-storage" => {
                options.js_storages = value()?
                    .split(',')
                    .map(|d| match d {
                        "file" => Ok(Storage::File),
                        "memory" => Ok(Storage::Memory),
                        _ => Err(format!("--js-storage: file or memory, not {d}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--consume-modes" => {
                options.consume_modes = value()?
                    .split(',')
                    .map(|mode| match mode {
                        "pull100" => Ok(ConsumeMode::Pull(100)),
                        "pull1000" => Ok(ConsumeMode::Pull(1000)),
                        "push" => Ok(ConsumeMode::Push),
                        "ordered" => Ok(ConsumeMode::Ordered),
                        _ => Err(format!(
                            "--consume-modes: pull100, pull1000, push or ordered, not {mode}"
                        )),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--kv-clients" => options.kv_clients = numbers(value()?)?,
            "--kv-ops" => options.js.kv_ops = number(value()?)?.max(1),
            "--js-messages" => options.js.messages = number(value()?)?.max(1),
            "--consume-messages" => options.js.consume_messages = number(value()?)?.max(1),
            "--restart-messages" => options.js.restart_messages = number(value()?)?.max(1),
            "--streams" => options.js.many_streams = number(value()?)?.max(1),
            "--consumers" => options.js.many_consumers = number(value()?)?,
            "--seconds" => options.js.seconds = Duration::from_secs(number(value()?)?.max(1)),
            "--store-parent" => options.js.store_parent = PathBuf::from(value()?),
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
        if !given.contains("--scenario") {
            options.js_scenarios = JsScenario::ALL.to_vec();
        }
        let js = &mut options.js;
        js.messages = js.messages.min(2000);
        js.consume_messages = js.consume_messages.min(3000);
        js.restart_messages = js.restart_messages.min(3000);
        js.bytes_max = 8 * 1024 * 1024;
        js.kv_ops = js.kv_ops.min(200);
        js.kv_keys = js.kv_keys.min(20);
        js.many_streams = js.many_streams.min(10);
        js.many_consumers = js.many_consumers.min(3);
        js.seconds = Duration::from_secs(10);
        if !given.contains("--js-publishers") {
            options.js_publishers = vec![2];
        }
        if !given.contains("--js-windows") {
            options.js_windows = vec![64];
        }
        if !given.contains("--js-streams") {
            options.js_streams = vec![1, 2];
        }
        if !given.contains("--kv-clients") {
            options.kv_clients = vec![2];
        }
    }
    if options.addr.is_some() && !options.js_scenarios.is_empty() {
        return Err("the JetStream scenarios start their own servers: not with --addr".into());
    }
    Ok(options)
}

/// One row group of the table: a scenario at one shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    Core {
        scenario_index: usize,
        payload: usize,
    },
    Js(JsCase),
}

impl Case {
    fn name(&self, options: &Options) -> &'static str {
        match *self {
            Case::Core { scenario_index, .. } => options.scenarios[scenario_index].name(),
            Case::Js(case) => options.js_scenarios[case.scenario_index].name(),
        }
    }

    fn shape(&self, options: &Options) -> String {
        match *self {
            Case::Core {
                scenario_index,
                payload,
            } => {
                if options.scenarios[scenario_index].uses_payloads() {
                    size_label(payload)
                } else {
                    "-".into()
                }
            }
            Case::Js(case) => case.shape(options.js_scenarios[case.scenario_index]),
        }
    }

    /// Whether a server set-up takes part in this case.
    fn runs_on(&self, options: &Options, setup: &Setup) -> bool {
        match (*self, setup.durability) {
            (Case::Core { .. }, durability) => durability.is_none(),
            (Case::Js(_), None) => false,
            (Case::Js(case), Some(durability)) => {
                durability == Durability::Default
                    || options.js_scenarios[case.scenario_index].depends_on_sync()
            }
        }
    }
}

/// Every case the options ask for, in the order they run.
fn cases(options: &Options) -> Vec<Case> {
    let mut cases = Vec::new();
    for (index, scenario) in options.scenarios.iter().enumerate() {
        if scenario.uses_payloads() {
            cases.extend(options.payloads.iter().map(|&payload| Case::Core {
                scenario_index: index,
                payload,
            }));
        } else {
            cases.push(Case::Core {
                scenario_index: index,
                payload: 16,
            });
        }
    }
    for (index, scenario) in options.js_scenarios.iter().enumerate() {
        let base = JsCase {
            scenario_index: index,
            payload: options.js_payloads[0],
            clients: 1,
            window: 1,
            storage: Storage::File,
            consume: ConsumeMode::Ordered,
            streams: 1,
        };
        match scenario {
            JsScenario::Pub => {
                for &payload in &options.js_payloads {
                    for &clients in &options.js_publishers {
                        for &window in &options.js_windows {
                            for &storage in &options.js_storages {
                                for &streams in &options.js_streams {
                                    if streams > 1 && streams > clients {
                                        continue;
                                    }
                                    cases.push(Case::Js(JsCase {
                                        payload,
                                        clients,
                                        window,
                                        storage,
                                        streams: streams.max(1),
                                        ..base
                                    }));
                                }
                            }
                        }
                    }
                }
            }
            JsScenario::PubSync => {
                for &storage in &options.js_storages {
                    cases.push(Case::Js(JsCase { storage, ..base }));
                }
            }
            JsScenario::Consume => {
                for &payload in &options.js_payloads {
                    for &consume in &options.consume_modes {
                        cases.push(Case::Js(JsCase {
                            payload,
                            consume,
                            ..base
                        }));
                    }
                }
            }
            JsScenario::Kv => {
                for &clients in &options.kv_clients {
                    cases.push(Case::Js(JsCase { clients, ..base }));
                }
            }
            JsScenario::Restart | JsScenario::Many => cases.push(Case::Js(base)),
        }
    }
    cases
}

/// A server as a run starts it: which, which binary, and for JetStream cases
/// how much it syncs (core cases run servers without JetStream).
struct Setup {
    kind: Kind,
    binary: Option<PathBuf>,
    durability: Option<Durability>,
}

impl Setup {
    fn label(&self) -> &'static str {
        match self.durability {
            None => self.kind.name(),
            Some(durability) => durability.label(self.kind),
        }
    }
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

/// The server set-ups the options ask for: per server, one without JetStream
/// for the core cases and one per durability level for the JetStream cases.
fn setups(options: &Options) -> Result<Vec<Setup>, String> {
    let mut kinds: Vec<(Kind, Option<PathBuf>)> = Vec::new();
    if options.addr.is_some() {
        kinds.push((options.server, None));
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
            kinds.push((Kind::Rnats, Some(rnats()?)));
            match nats() {
                Some(bin) => kinds.push((Kind::Nats, Some(bin))),
                None => eprintln!("NOTICE: nats-server not found; measuring rnats-server alone"),
            }
        } else if options.server == Kind::Nats {
            kinds.push((Kind::Nats, Some(nats().ok_or("nats-server not found")?)));
        } else {
            kinds.push((Kind::Rnats, Some(rnats()?)));
        }
    }
    let mut setups = Vec::new();
    for (kind, binary) in &kinds {
        if !options.scenarios.is_empty() {
            setups.push(Setup {
                kind: *kind,
                binary: binary.clone(),
                durability: None,
            });
        }
    }
    for &durability in &options.durabilities {
        for (kind, binary) in &kinds {
            if !options.js_scenarios.is_empty() {
                setups.push(Setup {
                    kind: *kind,
                    binary: binary.clone(),
                    durability: Some(durability),
                });
            }
        }
    }
    Ok(setups)
}

/// Runs one case on one set-up: starts the server (with a fresh store for
/// JetStream), runs, samples the peak RSS and stops the server.
async fn run_once(
    options: &Options,
    case: Case,
    setup: &Setup,
    peak_rss_kib: &mut Option<u64>,
) -> Result<Vec<Metric>, String> {
    let limit = Duration::from_secs(if options.smoke { 60 } else { 600 });
    match case {
        Case::Core {
            scenario_index,
            payload,
        } => {
            let scenario = options.scenarios[scenario_index];
            let (processes, target) = match &setup.binary {
                Some(binary) if scenario.servers() > 1 => {
                    let extra = if scenario == Scenario::RaftLoopback {
                        raft::config_args()?
                    } else {
                        Vec::new()
                    };
                    let processes = cluster::start(binary, scenario.servers(), &extra)?;
                    let target = Target {
                        addr: processes[0].addr,
                        pid: Some(processes[0].pid()),
                        ws_addr: None,
                        peers: processes[1..].iter().map(|p| (p.addr, p.pid())).collect(),
                    };
                    (processes, target)
                }
                Some(binary) => {
                    let process = ServerProcess::start(binary, scenario.uses_websocket())?;
                    let target = Target {
                        addr: process.addr,
                        pid: Some(process.pid()),
                        ws_addr: process.ws_addr,
                        peers: Vec::new(),
                    };
                    (vec![process], target)
                }
                None if scenario.servers() > 1 => {
                    return Err(format!(
                        "{} needs servers this tool starts (not --addr)",
                        scenario.name()
                    ))
                }
                None => (
                    Vec::new(),
                    Target {
                        addr: options.addr.expect("addr"),
                        pid: options.pid,
                        ws_addr: None,
                        peers: Vec::new(),
                    },
                ),
            };
            let limit = Duration::from_secs(if options.smoke { 30 } else { 180 });
            let pid = target.pid;
            let outcome = tokio::time::timeout(
                limit,
                scenarios::run(scenario, payload, target, &options.params),
            )
            .await
            .unwrap_or_else(|_| Err(format!("did not finish within {limit:?}")));
            if let Some((_, hwm)) = pid.and_then(server::memory_kib) {
                *peak_rss_kib = Some(peak_rss_kib.unwrap_or(0).max(hwm));
            }
            drop(processes);
            outcome
        }
        Case::Js(js_case) => {
            let scenario = options.js_scenarios[js_case.scenario_index];
            let binary = setup
                .binary
                .as_deref()
                .expect("JetStream runs start servers");
            let durability = setup.durability.expect("a JetStream set-up");
            let store = StoreDir::create(&options.js.store_parent, setup.kind, durability)?;
            let args = store.args();
            let mut process = Some(ServerProcess::start_with(binary, &args)?);
            let server = JsServer {
                process: &mut process,
                binary,
                args,
            };
            let outcome =
                tokio::time::timeout(limit, js::run(scenario, js_case, server, &options.js))
                    .await
                    .unwrap_or_else(|_| Err(format!("did not finish within {limit:?}")));
            if let Some(process) = &process {
                if let Some((_, hwm)) = server::memory_kib(process.pid()) {
                    *peak_rss_kib = Some(peak_rss_kib.unwrap_or(0).max(hwm));
                }
            }
            drop(process);
            drop(store);
            outcome
        }
    }
}

/// Returns whether every run passed its checks.
async fn run(options: Options) -> Result<bool, String> {
    let setups = setups(&options)?;
    let rounds = options
        .rounds
        .unwrap_or(if options.compare { 3 } else { 1 });
    let cases = cases(&options);
    if !options.js_scenarios.is_empty() {
        match js::fsync_latency(&options.js.store_parent) {
            Some(latency) => eprintln!(
                "fdatasync of 4 KiB in {}: {:.2} ms (median of 50)",
                options.js.store_parent.display(),
                latency.as_secs_f64() * 1000.0
            ),
            None => eprintln!(
                "NOTICE: could not time fdatasync in {}",
                options.js.store_parent.display()
            ),
        }
    }

    let mut results: BTreeMap<(Case, usize), Results> = BTreeMap::new();
    let started = std::time::Instant::now();
    for &case in &cases {
        for round in 0..rounds {
            for (setup_index, setup) in setups.iter().enumerate() {
                if !case.runs_on(&options, setup) {
                    continue;
                }
                let entry = results.entry((case, setup_index)).or_default();
                let outcome = run_once(&options, case, setup, &mut entry.peak_rss_kib).await;
                let label = format!(
                    "{} {} round {} {}",
                    case.name(&options),
                    case.shape(&options),
                    round + 1,
                    setup.label()
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
        let core: Vec<Case> = cases
            .iter()
            .copied()
            .filter(|c| matches!(c, Case::Core { .. }))
            .collect();
        let js: Vec<Case> = cases
            .iter()
            .copied()
            .filter(|c| matches!(c, Case::Js(_)))
            .collect();
        for group in [core, js] {
            if !group.is_empty() {
                print_table(&options, &setups, &group, &results, rounds);
            }
        }
        print_failures(&options, &setups, &results);
    }
    Ok(passed)
}

/// One markdown table: a row per (case, metric), a column per set-up that
/// ran any of the cases, the ratio of each rnats set-up to each nats set-up,
/// and peak RSS.
fn print_table(
    options: &Options,
    setups: &[Setup],
    cases: &[Case],
    results: &BTreeMap<(Case, usize), Results>,
    rounds: usize,
) {
    let columns: Vec<usize> = (0..setups.len())
        .filter(|&s| cases.iter().any(|c| results.contains_key(&(*c, s))))
        .collect();
    let mut ratios = Vec::new();
    for &a in &columns {
        for &b in &columns {
            if setups[a].kind == Kind::Rnats && setups[b].kind == Kind::Nats {
                ratios.push((a, b));
            }
        }
    }
    let mut header = String::from("| scenario | case | metric |");
    let mut rule = String::from("| --- | --- | --- |");
    for &s in &columns {
        header.push_str(&format!(" {} |", setups[s].label()));
        rule.push_str(" ---: |");
    }
    for &(a, b) in &ratios {
        header.push_str(&format!(" {} / {} |", setups[a].label(), setups[b].label()));
        rule.push_str(" ---: |");
    }
    for &s in &columns {
        header.push_str(&format!(" peak RSS {} |", setups[s].label()));
        rule.push_str(" ---: |");
    }
    println!("\nMedians of {rounds} round(s).\n");
    println!("{header}\n{rule}");
    for &case in cases {
        let name = case.name(options);
        let shape = case.shape(options);
        let per_setup: Vec<Option<&Results>> =
            columns.iter().map(|&s| results.get(&(case, s))).collect();
        let Some(template) = per_setup.iter().flatten().find_map(|r| r.runs.first()) else {
            let cells: Vec<&str> = per_setup
                .iter()
                .map(|r| if r.is_some() { "FAILURE" } else { "-" })
                .collect();
            println!("| {name} | {shape} | FAILURE | {} |", cells.join(" | "));
            continue;
        };
        for (row, m) in template.iter().enumerate() {
            let mut line = format!("| {name} | {shape} | {} ({}) |", m.name, m.unit);
            let mut medians = BTreeMap::new();
            for (&s, r) in columns.iter().zip(&per_setup) {
                let Some(r) = r else {
                    line.push_str(" - |");
                    continue;
                };
                if !r.failures.is_empty() || r.runs.is_empty() {
                    line.push_str(" FAILURE |");
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
                medians.insert(s, median);
            }
            for &(a, b) in &ratios {
                match (medians.get(&a), medians.get(&b)) {
                    (Some(&x), Some(&y)) if y > 0.0 => {
                        let ratio = x / y;
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
            for r in &per_setup {
                match (row, r.and_then(|r| r.peak_rss_kib)) {
                    (0, Some(kib)) => line.push_str(&format!(" {:.1} MiB |", kib as f64 / 1024.0)),
                    _ => line.push_str(" |"),
                }
            }
            println!("{line}");
        }
    }
}

fn print_failures(options: &Options, setups: &[Setup], results: &BTreeMap<(Case, usize), Results>) {
    for (&(case, setup), r) in results {
        for failure in &r.failures {
            println!(
                "\nFAILURE {} {} on {}: {failure}",
                case.name(options),
                case.shape(options),
                setups[setup].label()
            );
        }
    }
    println!("\n✗ marks a ratio where rnats-server is worse (higher is better for rates, lower for latency and memory).");
}

/// 16 -> "16 B", 16384 -> "16 KiB".
fn size_label(payload: usize) -> String {
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
