//! Command-line parsing for `rnats-server`, compatible with nats-server's flags.
//!
//! Input: the arguments after `argv[0]`. Output: a [`Command`] (run, print the
//! version, print the help, or send a signal to a running server) or a
//! [`FlagError`] that knows the exact text and exit code the reference gives.
//!
//! The syntax is that of Go's `flag` package, which nats-server uses:
//! - one or two dashes are the same (`-port`, `--port`); every flag has a full
//!   name, so `-js` is one flag, never `-j -s`;
//! - a value follows `=` or is the next argument; a boolean takes a value only
//!   after `=` (`-D=false`), so `-D false` ends the flags at `false`;
//! - parsing stops at the first argument that is not a flag (`-` counts as
//!   one) or after `--`; the first leftover may be `version` or `help`, any
//!   other is an error;
//! - a flag may repeat; the last one wins;
//! - integers take Go's syntax (`0x1f`, `0o17`, `017`, `1_000`, a sign).
//!
//! Every flag of the reference is recognised. Those rnats does not implement
//! yet are refused at start-up, by name, unless they carry their default value
//! (`--routes=` asks for nothing, so it is accepted).
//!
//! Invariant: a field of [`CliOptions`] is `Some` exactly when one of its
//! flags appeared on the command line, so that a configuration file, once
//! supported, can be overridden by the flags given and only by those.

use std::path::PathBuf;

/// The name this binary uses in its messages, where nats-server says its own.
pub const PROGRAM_NAME: &str = "rnats-server";

/// What the process should do, decided from its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
// Made once per process: boxing the options would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Start the server with these options.
    Run(CliOptions),
    /// Print [`version_string`] to stdout and exit 0.
    Version,
    /// Print [`usage`] to stdout and exit 0.
    Help,
    /// Send a signal to a running server (see `signal_cmd::execute`), then exit.
    Signal {
        /// The signal's name as given (`reload`, `stop`, ...); checked when sent,
        /// after the target is resolved, as the reference does.
        signal: String,
        /// The text after `=`: a pid, a pid glob ending in `*`, or a pid file.
        target: Option<String>,
    },
}

/// Options given on the command line; `None` means the flag was absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliOptions {
    /// `-a`, `--addr`, `--net`: the host to bind (reference default 0.0.0.0).
    pub host: Option<String>,
    /// `-p`, `--port`: 0 means the default 4222, -1 a random free port.
    pub port: Option<i64>,
    /// `-m`, `--http_port`: the monitoring port (-1: a random free port).
    pub http_port: Option<i64>,
    /// `-ms`, `--https_port`: the monitoring port over TLS (the client
    /// certificate; -1: a random free port).
    pub https_port: Option<i64>,
    /// `-n`, `--name`, `--server_name`.
    pub server_name: Option<String>,
    /// `-P`, `--pid`: the file to write our pid into.
    pub pid_file: Option<PathBuf>,
    /// `--ports_file_dir`: where to write `<exe>_<pid>.ports`.
    pub ports_file_dir: Option<PathBuf>,
    /// `--client_advertise`: the client URL advertised to other servers.
    pub client_advertise: Option<String>,
    /// `-l`, `--log`: the log file (appended to).
    pub log_file: Option<PathBuf>,
    /// `--log_size_limit`: rotate the log file past this many bytes (0: never).
    pub log_size_limit: Option<i64>,
    /// `--max_traced_msg_len`: longest payload printed in traces (0: all).
    pub max_traced_msg_len: Option<i64>,
    /// `-T`, `--logtime`: timestamps in log lines (reference default true).
    pub logtime: Option<bool>,
    /// `--logtime_utc`: timestamps in UTC rather than local time.
    pub logtime_utc: Option<bool>,
    /// Debug logging, from `-D`, `--debug`, `-DV`, `-DVV`.
    pub debug: Option<bool>,
    /// Protocol tracing, from `-V`, `--trace`, `-VV`, `-DV`, `-DVV`.
    pub trace: Option<bool>,
    /// Tracing of the system account as well, from `-VV`, `-DVV`.
    pub trace_verbose: Option<bool>,
    /// `--user`: the user required of clients.
    pub username: Option<String>,
    /// `--pass`: the password required of clients.
    pub password: Option<String>,
    /// `--auth`: the token required of clients.
    pub authorization: Option<String>,
    /// `-c`, `--config`: the configuration file; flags override what it says.
    pub config_file: Option<PathBuf>,
    /// `-t`: check the configuration file and exit.
    pub check_config: bool,
    /// `--tls`: require TLS (with `--tlscert`/`--tlskey`).
    pub tls: Option<bool>,
    /// `--tlsverify`: require TLS and verify client certificates.
    pub tls_verify: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `--tlscacert`: the CA client certificates must chain to.
    pub tls_ca_cert: Option<PathBuf>,
    /// `-js`, `--jetstream`: turn JetStream on (`false` does not turn the
    /// file's `jetstream` off, as in the reference).
    pub jetstream: Option<bool>,
    /// `-sd`, `--store_dir`: JetStream's storage directory (the stores go
    /// in its `jetstream` folder).
    pub store_dir: Option<String>,
    /// `--cluster`/`--cluster_listen`, `--cluster_name`, `--cluster_advertise`,
    /// `--routes`, `--no_advertise`, `--connect_retries`.
    pub cluster: rnats_core::conf::ClusterFlags,
}

/// A command line the server cannot act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlagError {
    /// A syntax error from the flag parser: unknown flag, missing or bad value.
    /// The reference prints the message, then the usage, and exits 0.
    #[error("{0}")]
    Syntax(String),
    /// The first argument after the flags is neither `version` nor `help`.
    #[error("unrecognized command: {}", go_quote(.0))]
    UnrecognizedCommand(String),
    /// `--signal` was given more than one `=`; holds the extra parts.
    #[error("invalid signal parameters: [{}]", .0.join(" "))]
    InvalidSignalParameters(Vec<String>),
    /// `-t` without a configuration file.
    #[error("must specify [-c, --config] option to check configuration file syntax")]
    CheckConfigWithoutConfig,
    /// Flags of the reference that rnats does not implement yet, as written.
    #[error("{}", unsupported_text(.0))]
    Unsupported(Vec<String>),
}

impl FlagError {
    /// The exit code the reference uses for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            // Go's flag package calls the usage function, which exits 0.
            FlagError::Syntax(_) => 0,
            _ => 1,
        }
    }

    /// Whether the usage text follows the message (on stdout).
    pub fn shows_usage(&self) -> bool {
        matches!(self, FlagError::Syntax(_))
    }

    /// Prints the error as the reference does and exits the process.
    pub fn exit(&self) -> ! {
        if self.shows_usage() {
            eprintln!("{self}");
            print!("{}", usage());
            std::process::exit(self.exit_code());
        }
        die(&self.to_string())
    }
}

/// Prints `rnats-server: <message>` to stderr and exits 1, like the reference's
/// fatal start-up errors.
pub fn die(message: &str) -> ! {
    eprintln!("{PROGRAM_NAME}: {message}");
    std::process::exit(1)
}

fn unsupported_text(names: &[String]) -> String {
    assert!(!names.is_empty());
    if let [name] = names {
        format!("flag {name} is not supported yet")
    } else {
        format!("flags {} are not supported yet", names.join(", "))
    }
}

/// What `-v` prints (with a newline): our name and version.
pub fn version_string() -> String {
    format!("{PROGRAM_NAME}: v{}", env!("CARGO_PKG_VERSION"))
}

/// The help text, to be printed to stdout as is (it starts and ends with an
/// empty line, as the reference's does).
pub fn usage() -> String {
    USAGE.to_string()
}

const USAGE: &str = "
Usage: rnats-server [options]

Server Options:
    -a, --addr, --net <host>         Address to listen on for clients (default: 0.0.0.0)
    -p, --port <port>                Client port (default: 4222; -1 picks a free port)
    -n, --name
        --server_name <server_name>  Name of this server (default: its generated id)
    -P, --pid <file>                 Write the process id into this file
    -m, --http_port <port>           Use port for http monitoring
    -ms,--https_port <port>          Use port for https monitoring
    -c, --config <file>              Configuration file
    -t                               Check the configuration file, then exit
    -sl,--signal <signal>[=<pid>]    Signal a running server: ldm, stop, quit, term, reopen or reload
                                     <pid> is a process id (e.g. 1), or a file holding one
                                     (e.g. /var/run/rnats-server.pid)
        --client_advertise <string>  Client URL advertised to other servers
        --ports_file_dir <dir>       Write the listening URLs to <dir>/<executable_name>_<pid>.ports

Logging Options:
    -l, --log <file>                 Append the log to this file instead of stderr
    -T, --logtime                    Prefix log lines with the time (default: true)
        --logtime_utc                Log times in UTC rather than local time
    -s, --syslog                     Log to syslog (not supported yet)
    -r, --remote_syslog <addr>       Log to a remote syslog, e.g. udp://localhost:514 (not supported yet)
    -D, --debug                      Log debug lines
    -V, --trace                      Log the protocol traffic
    -VV                              Like -V, including the system account
    -DV                              Like -D and -V together
    -DVV                             Like -D and -VV together
        --log_size_limit <limit>     Rotate the log file once it exceeds this many bytes
        --max_traced_msg_len <len>   Longest message payload shown in traces (default: all of it)

JetStream Options:
    -js, --jetstream                 Turn JetStream on
    -sd, --store_dir <dir>           JetStream storage directory; the stores go in its
                                     jetstream folder (default: <tmp>/nats/jetstream)

Authorization Options:
        --user <user>                User name clients must present
        --pass <password>            Password clients must present
        --auth <token>               Token clients must present

TLS Options:
        --tls                        Require TLS, without checking client certificates
        --tlscert <file>             The server's certificate
        --tlskey <file>              The private key of that certificate
        --tlsverify                  Require TLS and check client certificates
        --tlscacert <file>           CA that client certificates must chain to

Cluster Options:
        --routes <rurl-1, rurl-2>    Routes to connect to
        --cluster <cluster-url>      URL to accept routes on
        --cluster_name <string>      Name of the cluster (default: generated)
        --no_advertise <bool>        Keep cluster addresses out of what clients are told
        --cluster_advertise <string> Cluster URL advertised to other servers
        --connect_retries <number>   Connect attempts for implicit routes
        --cluster_listen <url>       Same as --cluster

Profiling Options (not supported yet):
        --profile <port>             Port of the profiling HTTP server

Common Options:
    -h, --help                       Print this text
    -v, --version                    Print the version
        --help_tls                   Help on the TLS options (not supported yet)

";

/// The kind of value a flag takes, which decides its syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Text,
}

/// Every flag of the reference. `Unsupported` flags are parsed like the others
/// (so their values get the same checks) and refused afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Help,
    Version,
    Host,
    Port,
    ServerName,
    PidFile,
    PortsFileDir,
    ClientAdvertise,
    LogFile,
    LogSizeLimit,
    MaxTracedMsgLen,
    Logtime,
    LogtimeUtc,
    Debug,
    Trace,
    TraceVerbose,
    DebugTrace,
    DebugTraceVerbose,
    User,
    Pass,
    Auth,
    Signal,
    CheckConfig,
    Config,
    Tls,
    TlsVerify,
    TlsCert,
    TlsKey,
    TlsCaCert,
    HttpPort,
    HttpsPort,
    JetStream,
    StoreDir,
    ClusterListen,
    ClusterName,
    ClusterAdvertise,
    Routes,
    NoAdvertise,
    ConnectRetries,
    Unsupported,
}

/// Flag names (without dashes), their kind and meaning.
const FLAGS: &[(&str, Kind, Flag)] = &[
    ("h", Kind::Bool, Flag::Help),
    ("help", Kind::Bool, Flag::Help),
    ("v", Kind::Bool, Flag::Version),
    ("version", Kind::Bool, Flag::Version),
    ("a", Kind::Text, Flag::Host),
    ("addr", Kind::Text, Flag::Host),
    ("net", Kind::Text, Flag::Host),
    ("p", Kind::Int, Flag::Port),
    ("port", Kind::Int, Flag::Port),
    ("n", Kind::Text, Flag::ServerName),
    ("name", Kind::Text, Flag::ServerName),
    ("server_name", Kind::Text, Flag::ServerName),
    ("P", Kind::Text, Flag::PidFile),
    ("pid", Kind::Text, Flag::PidFile),
    ("ports_file_dir", Kind::Text, Flag::PortsFileDir),
    ("client_advertise", Kind::Text, Flag::ClientAdvertise),
    ("l", Kind::Text, Flag::LogFile),
    ("log", Kind::Text, Flag::LogFile),
    ("log_size_limit", Kind::Int, Flag::LogSizeLimit),
    ("max_traced_msg_len", Kind::Int, Flag::MaxTracedMsgLen),
    ("T", Kind::Bool, Flag::Logtime),
    ("logtime", Kind::Bool, Flag::Logtime),
    ("logtime_utc", Kind::Bool, Flag::LogtimeUtc),
    ("D", Kind::Bool, Flag::Debug),
    ("debug", Kind::Bool, Flag::Debug),
    ("V", Kind::Bool, Flag::Trace),
    ("trace", Kind::Bool, Flag::Trace),
    ("VV", Kind::Bool, Flag::TraceVerbose),
    ("DV", Kind::Bool, Flag::DebugTrace),
    ("DVV", Kind::Bool, Flag::DebugTraceVerbose),
    ("user", Kind::Text, Flag::User),
    ("pass", Kind::Text, Flag::Pass),
    ("auth", Kind::Text, Flag::Auth),
    ("sl", Kind::Text, Flag::Signal),
    ("signal", Kind::Text, Flag::Signal),
    ("t", Kind::Bool, Flag::CheckConfig),
    ("c", Kind::Text, Flag::Config),
    ("config", Kind::Text, Flag::Config),
    ("m", Kind::Int, Flag::HttpPort),
    ("http_port", Kind::Int, Flag::HttpPort),
    ("ms", Kind::Int, Flag::HttpsPort),
    ("https_port", Kind::Int, Flag::HttpsPort),
    ("s", Kind::Bool, Flag::Unsupported),
    ("syslog", Kind::Bool, Flag::Unsupported),
    ("r", Kind::Text, Flag::Unsupported),
    ("remote_syslog", Kind::Text, Flag::Unsupported),
    ("profile", Kind::Int, Flag::Unsupported),
    ("routes", Kind::Text, Flag::Routes),
    ("cluster", Kind::Text, Flag::ClusterListen),
    ("cluster_listen", Kind::Text, Flag::ClusterListen),
    ("cluster_advertise", Kind::Text, Flag::ClusterAdvertise),
    ("no_advertise", Kind::Bool, Flag::NoAdvertise),
    ("connect_retries", Kind::Int, Flag::ConnectRetries),
    ("cluster_name", Kind::Text, Flag::ClusterName),
    ("help_tls", Kind::Bool, Flag::Unsupported),
    ("tls", Kind::Bool, Flag::Tls),
    ("tlsverify", Kind::Bool, Flag::TlsVerify),
    ("tlscert", Kind::Text, Flag::TlsCert),
    ("tlskey", Kind::Text, Flag::TlsKey),
    ("tlscacert", Kind::Text, Flag::TlsCaCert),
    ("js", Kind::Bool, Flag::JetStream),
    ("jetstream", Kind::Bool, Flag::JetStream),
    ("sd", Kind::Text, Flag::StoreDir),
    ("store_dir", Kind::Text, Flag::StoreDir),
];

/// A flag's parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl Value {
    /// Whether this is what the flag holds when absent, i.e. asks for nothing.
    fn is_default(&self) -> bool {
        match self {
            Value::Bool(value) => !value,
            Value::Int(value) => *value == 0,
            Value::Text(value) => value.is_empty(),
        }
    }
}

/// One flag as it appeared on the command line.
#[derive(Debug)]
struct Occurrence {
    flag: Flag,
    /// As the user spelled it, without any `=value` (e.g. `--jetstream`).
    written: String,
    value: Value,
}

/// Parses the arguments after `argv[0]`.
pub fn parse_args(args: &[String]) -> Result<Command, FlagError> {
    let (occurrences, leftover) = scan(args)?;
    // Several names may share one variable in the reference; the last wins.
    let has = |flag: Flag| {
        occurrences
            .iter()
            .rev()
            .find(|occurrence| occurrence.flag == flag)
            .is_some_and(|occurrence| occurrence.value == Value::Bool(true))
    };
    // The reference decides in this order: version, help, TLS help (refused
    // below), leftover command, signal, configuration check.
    if has(Flag::Version) {
        return Ok(Command::Version);
    }
    if has(Flag::Help) {
        return Ok(Command::Help);
    }
    if let Some(first) = leftover.first() {
        return match first.to_lowercase().as_str() {
            "version" => Ok(Command::Version),
            "help" => Ok(Command::Help),
            _ => Err(FlagError::UnrecognizedCommand(first.clone())),
        };
    }
    if let Some(signal) = last_text(&occurrences, Flag::Signal).filter(|text| !text.is_empty()) {
        return signal_command(&signal);
    }
    let config = last_text(&occurrences, Flag::Config).filter(|text| !text.is_empty());
    if has(Flag::CheckConfig) && config.is_none() {
        return Err(FlagError::CheckConfigWithoutConfig);
    }
    let mut unsupported: Vec<String> = Vec::new();
    for occurrence in &occurrences {
        let refused = occurrence.flag == Flag::Unsupported;
        if refused && !occurrence.value.is_default() && !unsupported.contains(&occurrence.written) {
            unsupported.push(occurrence.written.clone());
        }
    }
    if !unsupported.is_empty() {
        return Err(FlagError::Unsupported(unsupported));
    }
    Ok(Command::Run(build_options(&occurrences)))
}

/// Splits `--signal`'s value into the signal and its optional target.
fn signal_command(text: &str) -> Result<Command, FlagError> {
    let parts: Vec<&str> = text.split('=').collect();
    assert!(!parts.is_empty());
    if parts.len() > 2 {
        let extra = parts[2..].iter().map(|part| part.to_string()).collect();
        return Err(FlagError::InvalidSignalParameters(extra));
    }
    Ok(Command::Signal {
        signal: parts[0].to_string(),
        target: parts.get(1).map(|target| target.to_string()),
    })
}

fn last_text(occurrences: &[Occurrence], flag: Flag) -> Option<String> {
    occurrences
        .iter()
        .rev()
        .find(|occurrence| occurrence.flag == flag)
        .map(|occurrence| match &occurrence.value {
            Value::Text(text) => text.clone(),
            other => unreachable!("flag {flag:?} holds {other:?}"),
        })
}

/// Go's `flag` loop: returns the flags in order and the arguments left over.
fn scan(args: &[String]) -> Result<(Vec<Occurrence>, Vec<String>), FlagError> {
    let mut occurrences = Vec::new();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        if arg == "--" {
            index += 1;
            break;
        }
        let dashes = if arg.starts_with("--") { 2 } else { 1 };
        let body = &arg[dashes..];
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError::Syntax(format!("bad flag syntax: {arg}")));
        }
        let (name, inline_value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let Some(&(_, kind, flag)) = FLAGS.iter().find(|(known, _, _)| *known == name) else {
            return Err(FlagError::Syntax(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        index += 1;
        let value = match (kind, inline_value) {
            (Kind::Bool, None) => Value::Bool(true),
            (Kind::Bool, Some(text)) => Value::Bool(parse_go_bool(text).ok_or_else(|| {
                FlagError::Syntax(format!(
                    "invalid boolean value {} for -{name}: parse error",
                    go_quote(text)
                ))
            })?),
            (_, inline) => {
                let text = match inline {
                    Some(text) => text.to_string(),
                    None => {
                        // Go takes the next argument whatever it looks like.
                        let Some(next) = args.get(index) else {
                            return Err(FlagError::Syntax(format!(
                                "flag needs an argument: -{name}"
                            )));
                        };
                        index += 1;
                        next.clone()
                    }
                };
                if kind == Kind::Int {
                    Value::Int(parse_go_int(&text).map_err(|reason| {
                        FlagError::Syntax(format!(
                            "invalid value {} for flag -{name}: {reason}",
                            go_quote(&text)
                        ))
                    })?)
                } else {
                    Value::Text(text)
                }
            }
        };
        let written = arg.split_once('=').map_or(arg.as_str(), |(head, _)| head);
        occurrences.push(Occurrence {
            flag,
            written: written.to_string(),
            value,
        });
    }
    Ok((occurrences, args[index..].to_vec()))
}

/// Folds the flags, in order, into options; the combined debug/trace flags
/// are applied last, as the reference does after parsing.
fn build_options(occurrences: &[Occurrence]) -> CliOptions {
    let mut options = CliOptions::default();
    let (mut debug_trace, mut debug_trace_verbose, mut trace_verbose) = (None, None, None);
    for occurrence in occurrences {
        let text = || match &occurrence.value {
            Value::Text(text) => text.clone(),
            other => unreachable!("text flag holds {other:?}"),
        };
        let int = || match occurrence.value {
            Value::Int(value) => value,
            ref other => unreachable!("integer flag holds {other:?}"),
        };
        let boolean = || match occurrence.value {
            Value::Bool(value) => value,
            ref other => unreachable!("boolean flag holds {other:?}"),
        };
        match occurrence.flag {
            Flag::Host => options.host = Some(text()),
            Flag::Port => options.port = Some(int()),
            Flag::HttpPort => options.http_port = Some(int()),
            Flag::HttpsPort => options.https_port = Some(int()),
            Flag::ServerName => options.server_name = Some(text()),
            Flag::PidFile => options.pid_file = Some(PathBuf::from(text())),
            Flag::PortsFileDir => options.ports_file_dir = Some(PathBuf::from(text())),
            Flag::ClientAdvertise => options.client_advertise = Some(text()),
            Flag::LogFile => options.log_file = Some(PathBuf::from(text())),
            Flag::LogSizeLimit => options.log_size_limit = Some(int()),
            Flag::MaxTracedMsgLen => options.max_traced_msg_len = Some(int()),
            Flag::Logtime => options.logtime = Some(boolean()),
            Flag::LogtimeUtc => options.logtime_utc = Some(boolean()),
            Flag::Debug => options.debug = Some(boolean()),
            Flag::Trace => options.trace = Some(boolean()),
            Flag::TraceVerbose => trace_verbose = Some(boolean()),
            Flag::DebugTrace => debug_trace = Some(boolean()),
            Flag::DebugTraceVerbose => debug_trace_verbose = Some(boolean()),
            Flag::User => options.username = Some(text()),
            Flag::Pass => options.password = Some(text()),
            Flag::Auth => options.authorization = Some(text()),
            Flag::Tls => options.tls = Some(boolean()),
            Flag::TlsVerify => options.tls_verify = Some(boolean()),
            Flag::TlsCert => options.tls_cert = Some(PathBuf::from(text())),
            Flag::TlsKey => options.tls_key = Some(PathBuf::from(text())),
            Flag::TlsCaCert => options.tls_ca_cert = Some(PathBuf::from(text())),
            Flag::JetStream => options.jetstream = Some(boolean()),
            Flag::StoreDir => options.store_dir = Some(text()),
            Flag::ClusterListen => options.cluster.listen = Some(text()).filter(|t| !t.is_empty()),
            Flag::ClusterName => options.cluster.name = Some(text()).filter(|t| !t.is_empty()),
            Flag::ClusterAdvertise => {
                options.cluster.advertise = Some(text()).filter(|t| !t.is_empty())
            }
            Flag::Routes => options.cluster.routes = Some(text()).filter(|t| !t.is_empty()),
            Flag::NoAdvertise => options.cluster.no_advertise = Some(boolean()),
            Flag::ConnectRetries => options.cluster.connect_retries = Some(int()),
            // Decided on, or refused, before options are built.
            Flag::Help | Flag::Version | Flag::Signal | Flag::Unsupported => {}
            Flag::Config => {
                options.config_file =
                    Some(PathBuf::from(text())).filter(|p| !p.as_os_str().is_empty())
            }
            Flag::CheckConfig => options.check_config = boolean(),
        }
    }
    // The reference applies these in the order of their names: DV, DVV, VV.
    if let Some(on) = debug_trace {
        options.debug = Some(on);
        options.trace = Some(on);
    }
    if let Some(on) = debug_trace_verbose {
        options.debug = Some(on);
        options.trace = Some(on);
        options.trace_verbose = Some(on);
    }
    if let Some(on) = trace_verbose {
        options.trace = Some(on);
        options.trace_verbose = Some(on);
    }
    options
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseInt(text, 0, 64)`; the error is Go's reason text.
fn parse_go_int(text: &str) -> Result<i64, &'static str> {
    const SYNTAX: &str = "parse error";
    const RANGE: &str = "value out of range";
    let (negative, unsigned) = match text.as_bytes().first() {
        None => return Err(SYNTAX),
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        Some(_) => (false, text),
    };
    if unsigned.is_empty() {
        return Err(SYNTAX);
    }
    let lower_second = unsigned.as_bytes().get(1).map(u8::to_ascii_lowercase);
    let (radix, digits) = match (unsigned.as_bytes()[0], lower_second) {
        (b'0', Some(b'b')) if unsigned.len() >= 3 => (2, &unsigned[2..]),
        (b'0', Some(b'o')) if unsigned.len() >= 3 => (8, &unsigned[2..]),
        (b'0', Some(b'x')) if unsigned.len() >= 3 => (16, &unsigned[2..]),
        (b'0', _) => (8, &unsigned[1..]),
        _ => (10, unsigned),
    };
    let mut magnitude: u64 = 0;
    let mut underscores = false;
    for byte in digits.bytes() {
        if byte == b'_' {
            underscores = true;
            continue;
        }
        let digit = (byte as char).to_digit(36).ok_or(SYNTAX)?;
        if digit >= radix {
            return Err(SYNTAX);
        }
        magnitude = magnitude
            .checked_mul(u64::from(radix))
            .and_then(|value| value.checked_add(u64::from(digit)))
            .ok_or(RANGE)?;
    }
    if underscores && !go_underscores_ok(unsigned) {
        return Err(SYNTAX);
    }
    let limit = 1u64 << 63;
    match (negative, magnitude) {
        (false, value) if value >= limit => Err(RANGE),
        (true, value) if value > limit => Err(RANGE),
        (false, value) => Ok(value as i64),
        (true, value) => Ok((value as i64).wrapping_neg()),
    }
}

/// Go's rule for `_` in literals: only between digits or after a base prefix.
fn go_underscores_ok(unsigned: &str) -> bool {
    let bytes = unsigned.as_bytes();
    let mut saw = b'^';
    let mut index = 0;
    let mut hex = false;
    if bytes.len() >= 2 && bytes[0] == b'0' && matches!(bytes[1] | 0x20, b'b' | b'o' | b'x') {
        index = 2;
        saw = b'0';
        hex = bytes[1] | 0x20 == b'x';
    }
    for &byte in &bytes[index..] {
        if byte.is_ascii_digit() || (hex && byte.is_ascii_hexdigit()) {
            saw = b'0';
        } else if byte == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Quotes like Go's `%q`, so that messages read as the reference's.
pub(crate) fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\u{b}' => quoted.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                quoted.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, FlagError> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse_args(&args)
    }

    fn run(line: &str) -> CliOptions {
        match parse(line) {
            Ok(Command::Run(options)) => options,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn syntax(line: &str) -> String {
        match parse(line) {
            Err(FlagError::Syntax(message)) => message,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn every_syntax_form_sets_the_port() {
        for line in [
            "-p 5",
            "--p 5",
            "-p=5",
            "--p=5",
            "-port 5",
            "--port 5",
            "-port=5",
            "--port=5",
            "-p 0x5",
            "-p 05",
            "-p 0b101",
            "-p 0o5",
            "-p +5",
            "-p 0_5",
            "-p 1 -p 5",
        ] {
            assert_eq!(run(line).port, Some(5), "{line}");
        }
        assert_eq!(run("-p -1").port, Some(-1));
        assert_eq!(run("--port=-1").port, Some(-1));
        assert_eq!(run("").port, None);
    }

    #[test]
    fn every_supported_flag_lands_in_its_field() {
        type Field = fn(&CliOptions) -> String;
        let cases: &[(&str, Field, &str)] = &[
            (
                "-a 127.0.0.1",
                |o| format!("{:?}", o.host),
                "Some(\"127.0.0.1\")",
            ),
            ("--addr h", |o| format!("{:?}", o.host), "Some(\"h\")"),
            ("--net=h", |o| format!("{:?}", o.host), "Some(\"h\")"),
            ("-n x", |o| format!("{:?}", o.server_name), "Some(\"x\")"),
            (
                "--name x",
                |o| format!("{:?}", o.server_name),
                "Some(\"x\")",
            ),
            (
                "--server_name=x",
                |o| format!("{:?}", o.server_name),
                "Some(\"x\")",
            ),
            (
                "-P /tmp/p",
                |o| format!("{:?}", o.pid_file),
                "Some(\"/tmp/p\")",
            ),
            (
                "--pid /tmp/p",
                |o| format!("{:?}", o.pid_file),
                "Some(\"/tmp/p\")",
            ),
            (
                "--ports_file_dir /d",
                |o| format!("{:?}", o.ports_file_dir),
                "Some(\"/d\")",
            ),
            (
                "--client_advertise x:1",
                |o| format!("{:?}", o.client_advertise),
                "Some(\"x:1\")",
            ),
            ("-l f", |o| format!("{:?}", o.log_file), "Some(\"f\")"),
            ("--log=f", |o| format!("{:?}", o.log_file), "Some(\"f\")"),
            (
                "--log_size_limit 1024",
                |o| format!("{:?}", o.log_size_limit),
                "Some(1024)",
            ),
            (
                "--max_traced_msg_len 9",
                |o| format!("{:?}", o.max_traced_msg_len),
                "Some(9)",
            ),
            ("-T=false", |o| format!("{:?}", o.logtime), "Some(false)"),
            ("--logtime", |o| format!("{:?}", o.logtime), "Some(true)"),
            (
                "--logtime_utc",
                |o| format!("{:?}", o.logtime_utc),
                "Some(true)",
            ),
            (
                "-D",
                |o| format!("{:?}", (o.debug, o.trace)),
                "(Some(true), None)",
            ),
            ("--debug=0", |o| format!("{:?}", o.debug), "Some(false)"),
            (
                "-V",
                |o| format!("{:?}", (o.debug, o.trace)),
                "(None, Some(true))",
            ),
            ("--trace", |o| format!("{:?}", o.trace), "Some(true)"),
            (
                "-VV",
                |o| format!("{:?}", (o.debug, o.trace, o.trace_verbose)),
                "(None, Some(true), Some(true))",
            ),
            (
                "-DV",
                |o| format!("{:?}", (o.debug, o.trace, o.trace_verbose)),
                "(Some(true), Some(true), None)",
            ),
            (
                "-DVV",
                |o| format!("{:?}", (o.debug, o.trace, o.trace_verbose)),
                "(Some(true), Some(true), Some(true))",
            ),
            // The combined flags win over the single ones, wherever they are.
            (
                "-DV -D=false",
                |o| format!("{:?}", (o.debug, o.trace)),
                "(Some(true), Some(true))",
            ),
            ("--user u", |o| format!("{:?}", o.username), "Some(\"u\")"),
            ("--pass p", |o| format!("{:?}", o.password), "Some(\"p\")"),
            (
                "--auth t",
                |o| format!("{:?}", o.authorization),
                "Some(\"t\")",
            ),
            ("-js=false", |o| format!("{:?}", o.debug), "None"),
            ("-js", |o| format!("{:?}", o.jetstream), "Some(true)"),
            (
                "--jetstream",
                |o| format!("{:?}", o.jetstream),
                "Some(true)",
            ),
            ("-js=false", |o| format!("{:?}", o.jetstream), "Some(false)"),
            ("-sd /x", |o| format!("{:?}", o.store_dir), "Some(\"/x\")"),
            ("-sd=/x", |o| format!("{:?}", o.store_dir), "Some(\"/x\")"),
            (
                "--store_dir /y",
                |o| format!("{:?}", o.store_dir),
                "Some(\"/y\")",
            ),
            (
                "--store_dir=/y -sd /z",
                |o| format!("{:?}", o.store_dir),
                "Some(\"/z\")",
            ),
            (
                "-js -sd /x",
                |o| format!("{:?}", (o.jetstream, o.store_dir.as_deref())),
                "(Some(true), Some(\"/x\"))",
            ),
        ];
        for (line, field, expected) in cases {
            assert_eq!(field(&run(line)), *expected, "{line}");
        }
    }

    #[test]
    fn a_value_may_look_like_a_flag() {
        assert_eq!(run("-n -D").server_name.as_deref(), Some("-D"));
        assert_eq!(run("-n=").server_name.as_deref(), Some(""));
    }

    #[test]
    fn parsing_stops_at_the_first_non_flag() {
        assert_eq!(parse("-p 5 version -bogus"), Ok(Command::Version));
        assert_eq!(parse("HELP"), Ok(Command::Help));
        assert_eq!(
            parse("-D false"),
            Err(FlagError::UnrecognizedCommand("false".into()))
        );
        assert_eq!(
            parse("-p 5 -- -D"),
            Err(FlagError::UnrecognizedCommand("-D".into()))
        );
        assert_eq!(parse("-"), Err(FlagError::UnrecognizedCommand("-".into())));
        assert_eq!(run("-p 5 --").port, Some(5));
        assert_eq!(
            FlagError::UnrecognizedCommand("foo".into()).to_string(),
            "unrecognized command: \"foo\""
        );
    }

    #[test]
    fn syntax_errors_have_the_reference_text() {
        let cases = [
            ("-bogus", "flag provided but not defined: -bogus"),
            ("--bogus=3", "flag provided but not defined: -bogus"),
            ("-p", "flag needs an argument: -p"),
            ("-D -p", "flag needs an argument: -p"),
            ("-p abc", "invalid value \"abc\" for flag -p: parse error"),
            ("-p 1__0", "invalid value \"1__0\" for flag -p: parse error"),
            (
                "-p 99999999999999999999",
                "invalid value \"99999999999999999999\" for flag -p: value out of range",
            ),
            ("-m x", "invalid value \"x\" for flag -m: parse error"),
            (
                "-D=maybe",
                "invalid boolean value \"maybe\" for -D: parse error",
            ),
            ("---x", "bad flag syntax: ---x"),
            ("-=x", "bad flag syntax: -=x"),
            ("-sl", "flag needs an argument: -sl"),
            // The error comes first even when -v precedes it.
            ("-v -bogus", "flag provided but not defined: -bogus"),
        ];
        for (line, message) in cases {
            assert_eq!(syntax(line), message, "{line}");
        }
        let error = FlagError::Syntax(String::new());
        assert_eq!(error.exit_code(), 0);
        assert!(error.shows_usage());
    }

    #[test]
    fn version_and_help() {
        for line in ["-v", "--version", "-version=true", "version", "-p 1 -v"] {
            assert_eq!(parse(line), Ok(Command::Version), "{line}");
        }
        for line in ["-h", "--help", "help", "-h -p 4"] {
            assert_eq!(parse(line), Ok(Command::Help), "{line}");
        }
        assert_eq!(parse("-v -h"), Ok(Command::Version));
        assert!(run("-v=false").port.is_none());
        assert!(run("-v --version=false").port.is_none());
        assert!(version_string().starts_with("rnats-server: v"));
        assert!(usage().starts_with("\nUsage: rnats-server [options]\n"));
    }

    #[test]
    fn signal_forms() {
        let signal = |signal: &str, target: Option<&str>| Command::Signal {
            signal: signal.into(),
            target: target.map(String::from),
        };
        assert_eq!(parse("-sl reload=1234"), Ok(signal("reload", Some("1234"))));
        assert_eq!(
            parse("--signal=ldm=/tmp/x.pid"),
            Ok(signal("ldm", Some("/tmp/x.pid")))
        );
        assert_eq!(parse("-sl stop"), Ok(signal("stop", None)));
        assert_eq!(parse("-js -sl quit=12*"), Ok(signal("quit", Some("12*"))));
        assert_eq!(
            parse("-sl reload=1=2=3"),
            Err(FlagError::InvalidSignalParameters(vec![
                "2".into(),
                "3".into()
            ]))
        );
        assert_eq!(
            FlagError::InvalidSignalParameters(vec!["2".into()]).to_string(),
            "invalid signal parameters: [2]"
        );
        assert_eq!(parse("-sl reload -v"), Ok(Command::Version));
    }

    #[test]
    fn config_file_and_check_are_options() {
        let options = run("-c x.conf -t");
        assert_eq!(options.config_file, Some(PathBuf::from("x.conf")));
        assert!(options.check_config);
        let options = run("--config=y.conf");
        assert_eq!(options.config_file, Some(PathBuf::from("y.conf")));
        assert!(!options.check_config);
    }

    #[test]
    fn unsupported_flags_are_refused_by_name() {
        let cases = [
            (
                "-s -r udp://x:514 --help_tls",
                vec!["-s", "-r", "--help_tls"],
            ),
            (
                "--profile 1 --no_advertise --connect_retries 3",
                vec!["--profile"],
            ),
            ("--tlsverify --tlscacert ca -s -s", vec!["-s"]),
        ];
        for (line, names) in cases {
            let names: Vec<String> = names.into_iter().map(String::from).collect();
            assert_eq!(parse(line), Err(FlagError::Unsupported(names)), "{line}");
        }
        assert_eq!(
            FlagError::Unsupported(vec!["-s".into()]).to_string(),
            "flag -s is not supported yet"
        );
        assert_eq!(
            FlagError::Unsupported(vec!["-s".into(), "-r".into()]).to_string(),
            "flags -s, -r are not supported yet"
        );
        // Default values ask for nothing.
        run("-js=false -m 0 --routes= -s=f");
    }

    #[test]
    fn check_config_needs_a_config() {
        assert_eq!(parse("-t"), Err(FlagError::CheckConfigWithoutConfig));
        assert_eq!(FlagError::CheckConfigWithoutConfig.exit_code(), 1);
        run("-t=false");
    }

    #[test]
    fn go_integers() {
        let cases: &[(&str, Result<i64, &str>)] = &[
            ("0", Ok(0)),
            ("-0", Ok(0)),
            ("017", Ok(15)),
            ("0x1F", Ok(31)),
            ("0X_1f", Ok(31)),
            ("1_000", Ok(1000)),
            ("9223372036854775807", Ok(i64::MAX)),
            ("-9223372036854775808", Ok(i64::MIN)),
            ("9223372036854775808", Err("value out of range")),
            ("", Err("parse error")),
            ("-", Err("parse error")),
            ("0x", Err("parse error")),
            ("08", Err("parse error")),
            ("_1", Err("parse error")),
            ("1_", Err("parse error")),
            (" 1", Err("parse error")),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_go_int(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn quoting_follows_go() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }
}
