//! The server process: from parsed options to a running [`Runner`], and the
//! process-level duties around it (log lines, PID and ports files, Unix signals).
//!
//! Signals follow nats-server: SIGINT and SIGTERM stop cleanly, SIGUSR1 reopens
//! the log file, SIGHUP reloads the configuration, SIGUSR2 enters lame-duck mode.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rnats_core::auth::GLOBAL_ACCOUNT;
use rnats_core::conf::jetstream_reload::{
    plan_jetstream_reload, JetStreamReload, JetStreamSettings,
};
use rnats_core::conf::{self, FileOptions};
use rnats_core::jetstream::banner;
use rnats_core::jetstream::config::{JetStreamConfig, JetStreamRequest};
use rnats_core::jetstream::{self};
use rnats_core::server::{LogLevel, Server, ServerConfig, ServerIdentity, NATS_COMPATIBLE_VERSION};

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::flags::{self, CliOptions};
use crate::jetstream_host;
use crate::logging::{self, LogConfig, LogHandle};
use crate::monitor_http::{MonitorHttp, MonitorListener};
use crate::ports_file::{self, Ports};
use crate::runner::{Clock, Runner};
use crate::settings;
use crate::tls;

/// Run the server until it is told to stop; returns the process exit code.
pub fn run(cli: CliOptions) -> i32 {
    // Before anything builds a map: a random key keeps subjects and sids a
    // client chooses from colliding on purpose (hash flooding).
    rnats_core::subject::hash::set_process_key(random_seed() ^ 0x6861_7368_6b65_7973);
    let loaded = match &cli.config_file {
        Some(path) => match settings::load_config(path) {
            Ok(loaded) => Some(loaded),
            Err(error) => flags::die(&error),
        },
        None => None,
    };
    if let Some(error) = loaded
        .as_ref()
        .and_then(|l| conf::check_callout_accounts(&l.options).err())
    {
        flags::die(&error);
    }
    if cli.check_config {
        let path = cli.config_file.as_ref().expect("flags demand -c with -t");
        let loaded = loaded.as_ref().expect("loaded above");
        // As the reference: what only warns at start fails the check.
        if !loaded.options.warnings.is_empty() {
            let warnings: Vec<String> = loaded
                .options
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect();
            flags::die(&warnings.join("\n"));
        }
        eprintln!(
            "{}: configuration file {} is valid (sha256:{})",
            flags::PROGRAM_NAME,
            path.display(),
            loaded.sha256
        );
        return 0;
    }
    let file = loaded
        .as_ref()
        .map(|l| l.options.clone())
        .unwrap_or_default();
    if let Err(error) = conf::check_no_auth_user(&file) {
        // Like the reference, `-t` passes such a file; starting does not.
        flags::die(&error);
    }
    if let Err(error) = conf::check_limits(&file) {
        flags::die(&error);
    }
    // Like the reference, `-t` passes a websocket block without TLS;
    // starting does not.
    let websocket = conf::websocket_request(&file).unwrap_or_else(|error| flags::die(&error));
    let cluster = conf::cluster_request(file.cluster.as_ref(), &cli.cluster)
        .unwrap_or_else(|error| flags::die(&error));
    let options = settings::merge(&cli, &file);
    if !file.operator_jwts.is_empty() || !file.trusted_keys.is_empty() {
        // The reference checks operator mode before it logs anything.
        if let Err(error) = settings::server_config(&options, &file, &ServerConfig::default()) {
            flags::die(&error.to_string());
        }
    }
    let jetstream = match settings::jetstream_request(&options, &file) {
        Ok(request) => JetStreamStart::Request(request.map(Box::new)),
        // The reference reports this one after its banner, as fatal.
        Err(error @ conf::TranslateError::JetStreamOnSystemAccount) => {
            JetStreamStart::Refused(error.to_string())
        }
        Err(error) => flags::die(&error.to_string()),
    };
    let log = logging::init(LogConfig::from_cli(&options)).unwrap_or_else(|error| error.exit());
    if let Some(loaded) = &loaded {
        for warning in &loaded.options.warnings {
            tracing::warn!("{warning}");
        }
        for key in &loaded.ignored {
            tracing::warn!("{key}; ignored");
        }
    }
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap_or_else(|error| logging::fatal(format_args!("cannot start the runtime: {error}")));
    let reloader = Reloader {
        operator: operator_settings(&file),
        websocket: websocket.clone(),
        cluster: cluster.clone(),
        jetstream: std::sync::Mutex::new(JetStreamSettings::of(
            matches!(jetstream, JetStreamStart::Request(Some(_))),
            cli.store_dir.as_deref(),
            &file.jetstream,
        )),
        cli,
    };
    let sha256 = loaded.map(|l| l.sha256);
    let start = Start {
        jetstream,
        websocket,
        cluster,
        config_sha256: sha256,
    };
    runtime.block_on(serve(options, file, start, reloader, log))
}

/// What start-up does about JetStream.
enum JetStreamStart {
    /// Start it with these settings, or not at all (`None`).
    Request(Option<Box<JetStreamRequest>>),
    /// Refuse to start the server, after the banner, for this reason.
    Refused(String),
}

impl JetStreamStart {
    fn enabled(&self) -> bool {
        !matches!(self, JetStreamStart::Request(None))
    }
}

/// Resolves JetStream's settings against the machine and logs the
/// reference's start-up lines; a store directory that cannot be used stops
/// the process.
fn start_jetstream(start: JetStreamStart, file: &FileOptions) -> Option<JetStreamConfig> {
    let request = match start {
        JetStreamStart::Request(request) => request?,
        JetStreamStart::Refused(reason) => logging::fatal(format_args!("{reason}")),
    };
    let started = std::time::Instant::now();
    let (config, notes) = match jetstream_host::resolve(&request) {
        Ok(resolved) => resolved,
        Err(error) => {
            tracing::info!("Starting JetStream");
            logging::fatal(format_args!("Can't start JetStream: {error}"))
        }
    };
    announce_jetstream(&config, notes, file);
    tracing::info!("{}", banner::started_line(started.elapsed()));
    Some(config)
}

/// The reference's lines for a JetStream starting with `config`: its
/// banner, limits and each account's limits.
fn announce_jetstream(config: &JetStreamConfig, notes: banner::StartupNotes, file: &FileOptions) {
    let system_account = conf::system_account(file);
    let accounts = &file.security.accounts;
    let names = std::iter::once(GLOBAL_ACCOUNT).chain(accounts.iter().map(|a| a.name.as_str()));
    let account_lines = names.flat_map(|name| {
        jetstream::config::account_limits(true, accounts, system_account.as_deref(), name)
            .map(|limits| banner::account_lines(name, &limits))
            .unwrap_or_default()
    });
    let lines = banner::startup_lines(config, notes)
        .into_iter()
        .chain(account_lines)
        .collect::<Vec<_>>();
    for (level, text) in lines {
        match level {
            LogLevel::Error => tracing::error!("{text}"),
            LogLevel::Warn => tracing::warn!("{text}"),
            LogLevel::Info => tracing::info!("{text}"),
            LogLevel::Debug => tracing::debug!("{text}"),
            LogLevel::Trace => tracing::trace!("{text}"),
        }
    }
}

/// What start-up settled before the server runs.
struct Start {
    jetstream: JetStreamStart,
    websocket: Option<conf::WebSocketRequest>,
    /// The route listener and the cluster, when configured.
    cluster: Option<conf::ClusterRequest>,
    config_sha256: Option<String>,
}

async fn serve(
    options: CliOptions,
    file: FileOptions,
    start: Start,
    reloader: Reloader,
    log: LogHandle,
) -> i32 {
    let Start {
        jetstream,
        websocket,
        cluster,
        config_sha256,
    } = start;
    // Before anything is announced: a signal sent as soon as the listening
    // line appears (tests, process managers) must find its handler, not
    // the default action (SIGHUP would end the process).
    let signals = Signals::install();
    let host = options
        .host
        .clone()
        .unwrap_or_else(|| settings::DEFAULT_HOST.to_string());
    let port = settings::listen_port(&options)
        .unwrap_or_else(|error| logging::fatal(format_args!("{error}")));
    let server_keys = server_keys();
    let server_id = server_keys.server_id();
    let server_name = options
        .server_name
        .clone()
        .unwrap_or_else(|| server_id.clone());

    tracing::info!("Starting nats-server");
    tracing::info!(
        "  Version:  {NATS_COMPATIBLE_VERSION} (rnats {})",
        env!("CARGO_PKG_VERSION")
    );
    tracing::info!("  Git:      [{}]", env!("RNATS_GIT_COMMIT"));
    if let Some(name) = cluster
        .as_ref()
        .map(|c| &c.config.name)
        .filter(|n| !n.is_empty())
    {
        tracing::info!("  Cluster:  {name}");
    }
    tracing::info!("  Name:     {server_name}");
    if jetstream.enabled() {
        tracing::info!("  Node:     {}", jetstream_host::node_hash(&server_name));
    }
    tracing::info!("  ID:       {server_id}");
    if settings::auth_config(&options, &file).has_plaintext_passwords() {
        tracing::warn!("Plaintext passwords detected, use nkeys or bcrypt");
    }
    if let (Some(path), Some(sha256)) = (&options.config_file, &config_sha256) {
        tracing::info!(
            "Using configuration file: {} (sha256:{sha256})",
            path.display()
        );
    }
    let operator_mode = settings::server_config(&options, &file, &ServerConfig::default())
        .ok()
        .and_then(|config| config.auth.operator);
    if let Some(mode) = &operator_mode {
        for line in rnats_core::auth::operator_startup_lines(mode) {
            tracing::info!("{line}");
        }
    }
    let jetstream = start_jetstream(jetstream, &file);

    let pid = std::process::id();
    if let Some(path) = &options.pid_file {
        if let Err(error) = ports_file::write_pid_file(path, pid) {
            logging::fatal(format_args!(
                "Could not write pidfile: open {}: {}",
                path.display(),
                logging::os_error_text(&error)
            ));
        }
    }

    let tls = match tls::settings(&options, &file) {
        Ok(Some(settings)) => Some(
            tls::Tls::new(settings).unwrap_or_else(|error| logging::fatal(format_args!("{error}"))),
        ),
        Ok(None) => None,
        Err(error) => logging::fatal(format_args!("{error}")),
    };

    // The reference opens the websocket listener before the client port.
    let websocket = match websocket {
        Some(request) => Some(open_websocket(request).await),
        None => None,
    };
    let listener = match bind(&host, port).await {
        Ok(listener) => listener,
        Err(error) => logging::fatal(format_args!(
            "Error listening on port: {host}:{port}, \"{error}\""
        )),
    };
    let local = listener
        .local_addr()
        .expect("bound listener has an address");
    tracing::info!(
        "Listening for client connections on {}",
        display_addr(&host, local)
    );
    if let Some(tls) = &tls {
        if tls.settings.plain_text_allowed() {
            tracing::info!("TLS available for client connections");
        } else {
            tracing::info!("TLS required for client connections");
        }
        if tls.settings.handshake_first_only() {
            tracing::warn!(
                "Clients that are not using \"TLS Handshake First\" option will fail to connect"
            );
        }
    }

    let mut config_closed_capacity = rnats_core::monitor::DEFAULT_MAX_CLOSED_CLIENTS;
    let monitor = open_monitor(&options, &file).await;
    let ports_path = options
        .ports_file_dir
        .as_ref()
        .filter(|dir| !dir.as_os_str().is_empty())
        .and_then(|dir| {
            let ports = Ports {
                nats: ports_file::format_urls("nats", local),
                monitoring: monitor
                    .as_ref()
                    .map(|m| ports_file::format_urls(m.scheme(), m.address()))
                    .unwrap_or_default(),
                websocket: websocket
                    .as_ref()
                    .map(|ws| ports_file::format_urls(ws.config.scheme(), ws.address))
                    .unwrap_or_default(),
                ..Ports::default()
            };
            let exe = ports_file::exe_name();
            match ports_file::write_ports_file(dir, &exe, pid, &ports) {
                Ok(path) => Some(path),
                Err(error) => {
                    let path = ports_file::ports_file_path(dir, &exe, pid);
                    tracing::error!("Error writing ports file ({}): {error}", path.display());
                    None
                }
            }
        });

    let identity = ServerConfig {
        identity: ServerIdentity {
            server_id,
            xkey: server_keys.xkey(),
            keys: server_keys,
            git_commit: env!("RNATS_GIT_COMMIT").to_string(),
            toolchain: format!(
                "rust{}",
                option_env!("CARGO_PKG_RUST_VERSION").unwrap_or("")
            ),
            host: host.clone(),
            port: local.port(),
            client_urls: client_urls(
                options
                    .client_advertise
                    .as_deref()
                    .or(file.client_advertise.as_deref()),
                &host,
                local.port(),
            ),
            ..ServerIdentity::default()
        },
        jetstream,
        ..ServerConfig::default()
    };
    let mut config = settings::server_config(&options, &file, &identity)
        .unwrap_or_else(|error| logging::fatal(format_args!("{error}")));
    config.config_digest = config_sha256
        .as_ref()
        .map(|sha| format!("sha256:{sha}"))
        .unwrap_or_default();
    if let Some(monitor) = &monitor {
        config.monitoring.http_host = monitor.host.clone();
        let port = monitor.address().port();
        if monitor.tls.is_some() {
            config.monitoring.https_port = port;
        } else {
            config.monitoring.http_port = port;
        }
    }
    config.websocket = websocket.as_ref().map(|ws| ws.config.clone());
    if let Some(ws) = &config.websocket {
        config.identity.ws_connect_urls = client_urls(ws.advertise.as_deref(), &ws.host, ws.port);
    }
    let routes = match cluster {
        Some(request) => Some(open_routes(request).await),
        None => None,
    };
    config.cluster = routes.as_ref().map(|(_, config)| config.clone());
    if let Some(max) = file.max_closed_clients {
        config_closed_capacity = usize::try_from(max).unwrap_or(0);
    }
    let mut server = Server::new(config, random_seed());
    server.set_closed_capacity(config_closed_capacity);
    let runner = Runner::new(server, Clock::new(), tls);
    run_jetstream(&runner);
    let serving = tokio::spawn(runner.clone().serve(listener));
    let websocket_serving = websocket.map(|ws| tokio::spawn(runner.clone().serve_websocket(ws)));
    let sampler = tokio::spawn(runner.clone().sample_host());
    let monitoring = monitor.map(|monitor| {
        let base_path =
            runner.with_server(|server, _| server.config().monitoring.http_base_path.clone());
        tokio::spawn(MonitorHttp::new(runner.clone(), &base_path).serve(monitor))
    });
    tracing::info!("Server is ready");
    let routes_serving = routes.map(|(listener, config)| {
        let name = runner.with_server(|server, _| server.cluster_name().to_string());
        tracing::info!("Cluster name is {name}");
        if config.name.is_empty() {
            tracing::warn!("Cluster name was dynamically generated, consider setting one");
        }
        tracing::info!(
            "Listening for route connections on {}",
            display_addr(&config.host, SocketAddr::from(([0, 0, 0, 0], config.port)))
        );
        let tls = config.tls.as_ref().map(|settings| {
            crate::runner::RouteTlsIo::new(settings)
                .unwrap_or_else(|error| logging::fatal(format_args!("{error}")))
        });
        // Dials queued so far wait for this, as the reference dials its
        // routes once it listens for them.
        let dials = tokio::spawn(runner.clone().dial_loop(tls.clone()));
        (
            tokio::spawn(runner.clone().serve_routes(listener, tls)),
            dials,
        )
    });

    handle_signals(signals, &runner, &log, &reloader).await;

    if let Some(monitoring) = monitoring {
        monitoring.abort();
    }
    sampler.abort();
    runner.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    if let Some(websocket) = websocket_serving {
        websocket.abort();
    }
    if let Some((routes, dials)) = routes_serving {
        routes.abort();
        dials.abort();
    }
    // A clean stop: each file stream's full-state snapshot, so the next
    // start need not read its blocks.
    if let Some(failures) = runner.query_jetstream(|js| js.write_snapshots()).await {
        for (stream, error) in failures {
            tracing::warn!("JetStream stream {stream}: snapshot not written: {error}");
        }
    }
    // Give writers a moment to flush their last bytes before the process exits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Some(path) = &ports_path {
        if let Err(error) = ports_file::remove_ports_file(path) {
            tracing::error!("Error cleaning up ports file {}: {error}", path.display());
        }
    }
    tracing::info!("Server Exiting..");
    0
}

/// Re-reads the config file on SIGHUP and lays the command line over it again.
struct Reloader {
    cli: CliOptions,
    /// The websocket listener started with; a reload asking for another is
    /// refused, as the reference refuses it.
    websocket: Option<conf::WebSocketRequest>,
    /// The cluster started with; a reload asking for another is refused.
    cluster: Option<conf::ClusterRequest>,
    /// JetStream's settings as the running configuration was read: a
    /// reload compares the file's with them as the reference does
    /// (`conf::jetstream_reload`), and they change with every reload that
    /// is carried out.
    jetstream: std::sync::Mutex<JetStreamSettings>,
    /// Operator mode as started (operator JWTs, `MEMORY` resolver,
    /// preloads). A reload that changes it is refused: the accounts and
    /// connected users would need the run-time account updates rnats
    /// does not have yet.
    operator: OperatorSettings,
}

/// What a file says of operator mode, compared across a reload.
type OperatorSettings = (
    Vec<String>,
    bool,
    std::collections::BTreeMap<String, String>,
    // The directory resolver's settings; its files change while running.
    Option<(String, rnats_core::auth::JwtDelete, Option<u64>)>,
    // The URL resolver's base URL.
    Option<String>,
);

fn operator_settings(file: &FileOptions) -> OperatorSettings {
    (
        [file.operator_jwts.clone(), file.trusted_keys.clone()].concat(),
        file.memory_resolver,
        file.resolver_preload.clone(),
        file.dir_resolver
            .as_ref()
            .map(|dir| (dir.dir.clone(), dir.delete, dir.limit)),
        file.url_resolver.as_ref().map(|url| url.base.clone()),
    )
}

impl Reloader {
    /// (grace period, duration) of lame duck mode, from the config file as
    /// it is now.
    fn lame_duck_timing(&self) -> (Duration, Duration) {
        let file = self
            .cli
            .config_file
            .as_ref()
            .and_then(|path| settings::load_config(path).ok())
            .map(|loaded| loaded.options)
            .unwrap_or_default();
        settings::lame_duck_timing(&file)
    }

    async fn reload(&self, runner: &Arc<Runner>) {
        let Some(path) = &self.cli.config_file else {
            tracing::error!(
                "Failed to reload server configuration: can only reload config when a file is provided using -c or --config"
            );
            return;
        };
        let loaded = match settings::load_config(path) {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!("Failed to reload server configuration: {error}");
                return;
            }
        };
        let options = settings::merge(&self.cli, &loaded.options);
        if operator_settings(&loaded.options) != self.operator {
            tracing::error!(
                "Failed to reload server configuration: config reload not supported for TrustedOperators"
            );
            return;
        }
        let (js_request, js_settings, js_plan) =
            match self.jetstream_plan(&options, &loaded.options) {
                Ok(planned) => planned,
                Err(error) => {
                    tracing::error!("Failed to reload server configuration: {error}");
                    return;
                }
            };
        if !reload_keeps(
            conf::websocket_request(&loaded.options),
            &self.websocket,
            "Websocket",
        ) {
            return;
        }
        // Routes are not reloaded: a changed `cluster { }` leaves the
        // running configuration in place.
        if !reload_keeps(
            conf::cluster_request(loaded.options.cluster.as_ref(), &self.cli.cluster),
            &self.cluster,
            "cluster",
        ) {
            return;
        }
        // Checked before the machine is touched: a file that cannot be turned
        // into a configuration leaves the running one in place.
        if let Err(error) =
            settings::server_config(&options, &loaded.options, &ServerConfig::default())
        {
            tracing::error!("Failed to reload server configuration: {error}");
            return;
        }
        // A JetStream turned on is resolved (its store directory and the
        // machine's defaults) before the machine sees the new configuration.
        let started = std::time::Instant::now();
        let starting = match (js_plan.switch, js_request) {
            (Some(true), Some(request)) => match jetstream_host::resolve(&request) {
                Ok(resolved) => Some(resolved),
                Err(error) => {
                    tracing::warn!("Can't start JetStream: {error}");
                    None
                }
            },
            _ => None,
        };
        let build = |current: &ServerConfig| {
            let mut config = settings::server_config(&options, &loaded.options, current)
                .unwrap_or_else(|_| current.clone());
            config.jetstream = match (&starting, js_plan.switch) {
                (Some((started, _)), _) => Some(started.clone()),
                (None, Some(_)) => None,
                (None, None) => current.jetstream.clone().map(|mut running| {
                    running.max_memory = js_plan.max_memory.unwrap_or(running.max_memory);
                    running.max_store = js_plan.max_store.unwrap_or(running.max_store);
                    running.limits = js_plan.limits.unwrap_or(running.limits);
                    running
                }),
            };
            config
        };
        for change in runner.reload(build) {
            tracing::info!("Reloaded: {change}");
        }
        *self.jetstream.lock().expect("reload settings") = js_settings;
        self.apply_jetstream(runner, &js_plan, starting, started, &loaded.options)
            .await;
        tracing::info!("Reloaded server configuration (sha256:{})", loaded.sha256);
    }

    /// What the file asks of JetStream, its settings as the reference
    /// compares them, and what the reload does about it (or the
    /// reference's refusal).
    fn jetstream_plan(
        &self,
        options: &CliOptions,
        file: &FileOptions,
    ) -> Result<(Option<JetStreamRequest>, JetStreamSettings, JetStreamReload), String> {
        let request = settings::jetstream_request(options, file).map_err(|e| e.to_string())?;
        let asked = JetStreamSettings::of(
            request.is_some(),
            self.cli.store_dir.as_deref(),
            &file.jetstream,
        );
        let running = self.jetstream.lock().expect("reload settings").clone();
        let plan = plan_jetstream_reload(&running, &asked)?;
        Ok((request, asked, plan))
    }

    /// Start, stop or reconfigure the JetStream machine as `plan` says,
    /// with the reference's log lines; the server machine already runs
    /// with the new configuration.
    async fn apply_jetstream(
        &self,
        runner: &Arc<Runner>,
        plan: &JetStreamReload,
        starting: Option<(JetStreamConfig, banner::StartupNotes)>,
        started: std::time::Instant,
        file: &FileOptions,
    ) {
        match (plan.switch, starting) {
            (Some(false), _) => {
                tracing::info!("Reloaded: JetStream");
                tracing::info!("Initiating JetStream Shutdown...");
                if let Some(sender) = runner.disconnect_jetstream() {
                    for (stream, error) in sender.stop().await {
                        tracing::warn!("JetStream stream {stream}: snapshot not written: {error}");
                    }
                }
                tracing::info!("JetStream Shutdown");
            }
            (Some(true), Some((config, notes))) => {
                tracing::info!("Reloaded: JetStream");
                tracing::info!("Restarting JetStream");
                announce_jetstream(&config, notes, file);
                run_jetstream(runner);
                tracing::info!("{}", banner::started_line(started.elapsed()));
            }
            _ => {}
        }
        if plan.switch.is_some() || plan.is_empty() {
            // Started or stopped above; or nothing for a running JetStream.
            return;
        }
        if let Some(bytes) = plan.max_memory {
            tracing::info!(
                "Reloaded: JetStream max_mem_store = {}",
                banner::friendly_bytes(bytes)
            );
        }
        if let Some(bytes) = plan.max_store {
            tracing::info!(
                "Reloaded: JetStream max_file_store = {}",
                banner::friendly_bytes(bytes)
            );
        }
        let config = runner.with_server(|server, _| server.config().jetstream.clone());
        if let Some(config) = config {
            let _ = runner
                .query_jetstream(move |js| js.reconfigure(config))
                .await;
        }
    }
}

/// Wait for the signal that stops the server, serving the others meanwhile.
/// The signals the server acts on, their handlers installed.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    reopen: tokio::signal::unix::Signal,
    lame_duck: tokio::signal::unix::Signal,
    reload: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Signals {
        Signals {
            interrupt: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            terminate: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            reopen: signal(SignalKind::user_defined1()).expect("SIGUSR1 handler"),
            lame_duck: signal(SignalKind::user_defined2()).expect("SIGUSR2 handler"),
            reload: signal(SignalKind::hangup()).expect("SIGHUP handler"),
        }
    }
}

async fn handle_signals(
    signals: Signals,
    runner: &Arc<Runner>,
    log: &LogHandle,
    reloader: &Reloader,
) {
    let Signals {
        mut interrupt,
        mut terminate,
        mut reopen,
        mut lame_duck,
        mut reload,
    } = signals;
    loop {
        tokio::select! {
            _ = interrupt.recv() => {
                tracing::info!("Trapped \"interrupt\" signal");
                break;
            }
            _ = terminate.recv() => {
                tracing::info!("Trapped \"terminated\" signal");
                break;
            }
            _ = reopen.recv() => {
                tracing::info!("Trapped \"user defined signal 1\" signal");
                let _ = log.reopen();
            }
            _ = reload.recv() => {
                tracing::info!("Trapped \"hangup\" signal");
                reloader.reload(runner).await;
            }
            _ = lame_duck.recv() => {
                tracing::info!("Entering lame duck mode, stop accepting new clients");
                let (grace, duration) = reloader.lame_duck_timing();
                runner.lame_duck(grace, duration).await;
                break;
            }
        }
    }
    tracing::info!("Initiating Shutdown...");
}

/// The monitoring listener `-m`/`-ms` (or `http`/`https` in the file) ask
/// for, bound; exits as the reference does on a misconfiguration.
async fn open_monitor(options: &CliOptions, file: &FileOptions) -> Option<MonitorListener> {
    let fail = |why: String| -> ! { logging::fatal(format_args!("Can't start monitoring: {why}")) };
    let http = settings::http_port(options).unwrap_or_else(|e| fail(e));
    let https = settings::https_port(options).unwrap_or_else(|e| fail(e));
    let (port, tls) = match (http, https) {
        (None, None) => return None,
        (Some(_), Some(_)) => fail(format!(
            "can't specify both HTTP ({}) and HTTPs ({}) ports",
            options.http_port.unwrap_or(0),
            options.https_port.unwrap_or(0)
        )),
        (Some(port), None) => (port, None),
        (None, Some(port)) => {
            // The client TLS certificate, without asking for client certificates.
            let Ok(Some(settings)) = tls::settings(options, file) else {
                fail(String::from("TLS cert and key required for HTTPS"))
            };
            let settings = tls::TlsSettings {
                verify: false,
                map: false,
                ..settings
            };
            let tls = tls::Tls::new(settings).unwrap_or_else(|e| fail(e));
            (port, Some(tls.acceptor))
        }
    };
    let host = settings::http_host(options, file);
    let scheme = if tls.is_some() { "https" } else { "http" };
    match bind(&host, port).await {
        Ok(listener) => {
            let bound = listener
                .local_addr()
                .expect("bound listener has an address");
            tracing::info!(
                "Starting {scheme} monitor on {}",
                display_addr(&host, bound)
            );
            Some(MonitorListener {
                listener,
                host,
                tls,
            })
        }
        Err(error) => logging::fatal(format_args!(
            "Can't listen to the monitor port: listen tcp {}: {error}",
            display_addr(&host, SocketAddr::from(([0, 0, 0, 0], port)))
        )),
    }
}

/// Whether a reload asks for what is `running` (a listener, which is not
/// reloaded); logs the reference's refusal when not.
fn reload_keeps<T: PartialEq, E: std::fmt::Display>(
    asked: Result<T, E>,
    running: &T,
    what: &str,
) -> bool {
    match asked {
        Ok(request) if request == *running => true,
        Ok(_) => {
            tracing::error!(
                "Failed to reload server configuration: config reload not supported for {what}"
            );
            false
        }
        Err(error) => {
            tracing::error!("Failed to reload server configuration: {error}");
            false
        }
    }
}

/// Binds the route listener; exits when it cannot. Returns the listener and
/// the cluster with its bound port.
async fn open_routes(
    request: conf::ClusterRequest,
) -> (TcpListener, rnats_core::server::ClusterConfig) {
    let port = u16::try_from(request.port.max(0)).unwrap_or(0);
    let listener = bind(&request.host, port).await.unwrap_or_else(|error| {
        logging::fatal(format_args!(
            "Error listening on router port: {} - listen tcp {}: {error}",
            request.port,
            display_addr(&request.host, SocketAddr::from(([0, 0, 0, 0], port)))
        ))
    });
    let address = listener
        .local_addr()
        .expect("bound listener has an address");
    let mut config = request.config;
    config.port = address.port();
    (listener, config)
}

/// Binds the websocket listener and announces it as the reference does;
/// exits when it cannot.
async fn open_websocket(request: conf::WebSocketRequest) -> crate::runner::WebSocketListener {
    let tls = request.tls.clone().map(|settings| {
        tls::Tls::new(settings).unwrap_or_else(|error| logging::fatal(format_args!("{error}")))
    });
    let port = u16::try_from(request.port.max(0)).unwrap_or_else(|_| {
        logging::fatal(format_args!(
            "Unable to listen for websocket connections: invalid port {}",
            request.port
        ))
    });
    let listener = bind(&request.host, port).await.unwrap_or_else(|error| {
        logging::fatal(format_args!(
            "Unable to listen for websocket connections: listen tcp {}: {error}",
            display_addr(&request.host, SocketAddr::from(([0, 0, 0, 0], port)))
        ))
    });
    let address = listener
        .local_addr()
        .expect("bound listener has an address");
    let mut config = request.config;
    config.port = address.port();
    tracing::info!(
        "Listening for websocket clients on {}://{}:{}",
        config.scheme(),
        config.host,
        config.port
    );
    if tls.is_none() {
        tracing::warn!("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!");
    }
    crate::runner::WebSocketListener {
        listener,
        address,
        config,
        tls,
    }
}

async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let socket = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("no address for host"))?,
    };
    let tcp = if socket.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // Restarting on the same port must not wait out TIME_WAIT.
    tcp.set_reuseaddr(true)?;
    tcp.bind(socket)?;
    tcp.listen(1024)
}

/// This server's client URLs as other servers tell their clients:
/// `client_advertise` (its port defaulting to ours), the listen host, or,
/// for an any-address, every global unicast address of the host's
/// interfaces, in interface order, as the reference lists them.
fn client_urls(advertise: Option<&str>, host: &str, port: u16) -> Vec<String> {
    let join = |host: &str, port: u16| match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    if let Some(advertise) = advertise.filter(|a| !a.is_empty()) {
        let text = advertise
            .split_once("://")
            .map_or(advertise, |(_, rest)| rest);
        return match text.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') => match p.parse() {
                Ok(p) => vec![join(h.trim_matches(['[', ']']), p)],
                Err(_) => vec![join(text, port)],
            },
            _ => vec![join(text, port)],
        };
    }
    let any = host.is_empty() || host == "0.0.0.0" || host == "::";
    if !any {
        return vec![join(host, port)];
    }
    let mut interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    // Stable: an interface's addresses keep their order (IPv4 first).
    interfaces.sort_by_key(|interface| interface.index);
    let mut urls: Vec<String> = Vec::new();
    for interface in interfaces {
        let ip = interface.ip();
        if !is_global_unicast(ip) {
            continue;
        }
        let url = join(&ip.to_string(), port);
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls
}

/// Go's `IP.IsGlobalUnicast`: not loopback, link-local, multicast,
/// unspecified or the IPv4 broadcast address.
fn is_global_unicast(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        std::net::IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_loopback() || link_local || v6.is_multicast() || v6.is_unspecified())
        }
    }
}

fn display_addr(host: &str, local: SocketAddr) -> String {
    if host.contains(':') {
        format!("[{host}]:{}", local.port())
    } else {
        format!("{host}:{}", local.port())
    }
}

/// The core's randomness is seeded once per process from the OS.
/// The server's nkey identity and curve key, drawn from the OS's random source.
fn server_keys() -> rnats_core::auth::callout::ServerKeys {
    let seeds = nkeys::KeyPair::new_server()
        .seed()
        .and_then(|signing| Ok((signing, nkeys::XKey::new().seed()?)));
    seeds
        .ok()
        .and_then(|(signing, curve)| {
            rnats_core::auth::callout::ServerKeys::from_seeds(signing, curve)
        })
        .unwrap_or_else(|| logging::fatal(format_args!("cannot create the server's keys")))
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Open JetStream's stores and start its threads, when it is enabled. Runs
/// before the listener serves, so recovered streams take messages from the
/// first client on.
fn run_jetstream(runner: &std::sync::Arc<Runner>) {
    let (name, config, accounts) = runner.with_server(|server, _| {
        (
            server.config().effective_name().to_string(),
            server.config().jetstream.clone(),
            rnats_core::jetstream::config::enabled_accounts(server.config()),
        )
    });
    let Some(config) = config else {
        return;
    };
    let disk = crate::disk::RealDisk::new(&config.store_dir).unwrap_or_else(|error| {
        logging::fatal(format_args!(
            "Could not create JetStream storage directory {:?}: {error}",
            config.store_dir
        ))
    });
    let js = rnats_core::jetstream::machine::JetStream::open(
        name,
        config,
        accounts,
        disk.clone(),
        runner.now(),
        crate::runner::wall_now(),
    );
    crate::jetstream::spawn(runner.clone(), js, disk);
}
