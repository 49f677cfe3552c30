//! The parsed tree mapped onto the options rnats supports, with nats-server
//! v2.15.1's key names, aliases, types and checks (`server/opts.go`).
//!
//! Input: the root map from [`parse`](super::parse). Output: a
//! [`FileOptions`] holding what the file set, the keys the reference knows but
//! rnats does not support yet (so the caller can warn by name), and warnings.
//!
//! Invariants:
//! - Keys match ignoring ASCII case, as the reference lower-cases them.
//! - A field is `Some` exactly when the file set it; defaults belong to the
//!   caller. When a file sets one option twice (`listen` and `port`, or
//!   `port` and `PORT`), the later one in the file wins.
//! - A key the reference does not know is an error ("unknown field"), unless a
//!   `$variable` read it: the reference treats such keys as variable
//!   definitions. A known key rnats does not support is never silently
//!   accepted: it is returned as [`Unsupported`].
//! - Type errors point at the key, as the reference's do.

use std::fmt;
use std::time::Duration;

use super::auth_options::{self, AuthorizationUsers, SecurityOptions};
use super::jetstream_options::{self, JetStreamOptions, HARMLESS_JETSTREAM_KEYS};
use super::tls_options::{self, TlsOptions};
use super::value::{parse_go_duration, ConfMap, ConfValue, MapEntry, Position, ValueKind};
use super::websocket_options::{self, WebSocketOptions};
use super::{parse, ConfError, ConfErrorKind, ConfSource};

/// Top-level keys nats-server knows and rnats does not handle yet.
const UNSUPPORTED_TOP_LEVEL: &[&str] = &[
    "trace_verbose",
    "trace_headers",
    "disable_sublist_cache",
    "no_sublist_cache",
    "default_sentinel",
    "gateway",
    "leaf",
    "leafnodes",
    "logfile_max_num",
    "log_max_num",
    "syslog",
    "remote_syslog",
    "prof_port",
    "prof_block_rate",
    "proxy_protocol",
    "max_sub_tokens",
    "max_subscription_tokens",
    "ocsp",
    "write_timeout",
    "resolver_pinned_accounts",
    "no_header_support",
    "connect_error_reports",
    "reconnect_error_reports",
    "mqtt",
    "server_tags",
    "server_metadata",
    "feature_flags",
    "default_js_domain",
    "ocsp_cache",
    "no_fast_producer_stall",
    "proxies",
];

/// Keys of `authorization { }` the reference knows and rnats does not handle.
const UNSUPPORTED_AUTHORIZATION: &[&str] = &["proxy_required"];

/// The options a config file set. `None` means the file did not mention it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileOptions {
    /// `host`, `net`, or the host part of `listen`. An empty host (from
    /// `listen: 4222`, as in the reference) means the default.
    pub host: Option<String>,
    /// `port`, or the port part of `listen`; -1 asks for a random port.
    pub port: Option<i64>,
    pub server_name: Option<String>,
    pub client_advertise: Option<String>,
    pub max_payload: Option<i32>,
    pub max_control_line: Option<i32>,
    pub max_pending: Option<i64>,
    /// `max_connections` or `max_conn`; a file's 0 becomes -1, no limit.
    pub max_connections: Option<i64>,
    /// `max_subscriptions` or `max_subs`.
    pub max_subscriptions: Option<i64>,
    pub ping_interval: Option<Duration>,
    /// `ping_max`: outstanding PINGs before the connection is stale.
    pub ping_max: Option<i64>,
    pub write_deadline: Option<Duration>,
    pub authorization: Option<AuthorizationOptions>,
    pub no_auth_user: Option<String>,
    /// `pid_file` or `pidfile`.
    pub pid_file: Option<String>,
    pub ports_file_dir: Option<String>,
    /// `log_file` or `logfile`.
    pub log_file: Option<String>,
    /// `logfile_size_limit` or `log_size_limit`: rotate the log file past
    /// this many bytes (0: never).
    pub log_size_limit: Option<i64>,
    pub logtime: Option<bool>,
    pub logtime_utc: Option<bool>,
    pub debug: Option<bool>,
    pub trace: Option<bool>,
    /// `operator` (and its aliases): each a file path or an inline JWT,
    /// as written, with where the key is (for errors).
    pub operators: Vec<String>,
    pub operator_position: Option<Position>,
    /// `operators` as read: the JWT of each (see [`read_operator_jwts`]).
    pub operator_jwts: Vec<String>,
    /// `trusted_keys` (or `trusted`): operator public keys trusted directly.
    pub trusted_keys: Vec<String>,
    /// `resolver: MEMORY`.
    pub memory_resolver: bool,
    /// `resolver { type: full, dir: ... }`: the directory resolver (its
    /// JWT files are read by [`read_resolver_dir`]). Other resolver types
    /// are refused by name.
    pub dir_resolver: Option<crate::auth::DirResolver>,
    /// `resolver: URL("...")`.
    pub url_resolver: Option<crate::auth::UrlResolver>,
    /// `resolver_tls { }`: how `https` account servers are trusted.
    pub resolver_tls: Option<crate::auth::ResolverTls>,
    /// With a URL resolver, what was fetched at start (through
    /// [`ConfSource::fetch_account`]): the base URL, the system account.
    pub fetched_accounts: Vec<(crate::auth::AccountFetch, Result<String, String>)>,
    pub resolver_position: Option<Position>,
    /// `resolver_preload`: account public key → account JWT.
    pub resolver_preload: std::collections::BTreeMap<String, String>,
    /// Users, nkeys, default permissions, accounts, mappings, system account.
    pub security: SecurityOptions,
    pub lame_duck_duration: Option<Duration>,
    /// The `tls { }` block.
    pub tls: Option<TlsOptions>,
    pub allow_non_tls: Option<bool>,
    pub lame_duck_grace_period: Option<Duration>,
    /// `http: "host:port"`: the monitoring listener's host (empty: default).
    pub http_host: Option<String>,
    /// `http_port`, `monitor_port`, or the port of `http`; -1: random.
    pub http_port: Option<i64>,
    pub http_base_path: Option<String>,
    /// `https_port`, or the port of `https: "host:port"`.
    pub https_port: Option<i64>,
    /// `jetstream` and the top-level `store_dir`.
    pub jetstream: JetStreamOptions,
    /// Closed connections `/connz` remembers (0: none).
    pub max_closed_clients: Option<i64>,
    /// Longest payload a protocol trace line shows (0: all of it).
    pub max_traced_msg_len: Option<i64>,
    /// The `cluster { }` block.
    pub cluster: Option<super::cluster_options::ClusterOptions>,
    /// The `websocket { }` block (`ws` is its alias).
    pub websocket: Option<WebSocketOptions>,
    /// What the reference prints as warnings: the server still starts, but
    /// `nats-server -t` calls the file invalid.
    pub warnings: Vec<ConfWarning>,
}

/// The `authorization { }` block. Its Debug output hides the secrets.
#[derive(Clone, Default, PartialEq)]
pub struct AuthorizationOptions {
    /// `user` or `username`.
    pub user: Option<String>,
    /// `password` or `pass`.
    pub password: Option<String>,
    pub token: Option<String>,
    /// `timeout`: seconds, from an integer, a float or a duration string.
    pub timeout_seconds: Option<f64>,
    /// Where `authorization` was written.
    pub position: Option<Position>,
    /// `auth_callout` (or `auth_hook`).
    pub callout: Option<crate::auth::callout::AuthCallout>,
}

impl fmt::Debug for AuthorizationOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("AuthorizationOptions")
            .field("user", &self.user)
            .field("password", &redacted(&self.password))
            .field("token", &redacted(&self.token))
            .field("timeout_seconds", &self.timeout_seconds)
            .field("position", &self.position)
            .field("callout", &self.callout)
            .finish()
    }
}

/// Top-level keys rnats may ignore with a warning: whatever they are set to,
/// rnats behaves as the operator asked, or the key only tunes something rnats
/// does not have.
const HARMLESS_TOP_LEVEL: &[&str] = &[
    // How much of a protocol trace is shown: log detail only.
    "trace_verbose",
    "trace_headers",
    // A performance switch: matching results are the same without the cache.
    "disable_sublist_cache",
    "no_sublist_cache",
    // How often failed route, gateway and leafnode connections are logged;
    // rnats refuses to start with any of those configured.
    "connect_error_reports",
    "reconnect_error_reports",
    // The sampling rate of the profiler, which `prof_port` (refused) starts.
    "prof_block_rate",
    // rnats never stalls a fast producer: a slow subscriber alone is cut off.
    "no_fast_producer_stall",
];

/// Nested keys rnats may ignore with a warning, as `block.key`.
const HARMLESS_NESTED: &[&str] = &[
    // Skipping the verification of a peer's certificate applies to the side
    // that dials out; a server's client listener never does.
    "tls.insecure",
];

/// Keys of an account block rnats may ignore with a warning, as the end of
/// `accounts.NAME.block.key`.
const HARMLESS_ACCOUNT_NESTED: &[&str] = &[
    // Which account carries a clustered account's replication traffic;
    // rnats has no cluster.
    ".jetstream.cluster_traffic",
];

/// A key the reference knows that rnats does not implement. Unless it is
/// harmless ([`Unsupported::refuses_start`]), the server refuses to start
/// (and a reload is refused) rather than run without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// As written; nested keys are prefixed with their block
    /// (`authorization.users`).
    pub key: String,
    pub position: Position,
    /// The value turns the feature off (`false`, or `jetstream: disabled`),
    /// which is what rnats does anyway.
    pub disabled: bool,
}

impl Unsupported {
    /// The key `key` (named with its block) of `entry`.
    pub(super) fn new(key: String, entry: &MapEntry) -> Self {
        let disabled = match &entry.value.kind {
            ValueKind::Bool(on) => !on,
            ValueKind::String(text) => text.eq_ignore_ascii_case("disabled"),
            _ => false,
        };
        Unsupported {
            key,
            position: entry.key_position.clone(),
            disabled,
        }
    }

    /// Whether running without this key could give the operator less than
    /// they configured (a feature, a limit, a security check): then rnats
    /// must not start with it. Keys that only tune what rnats lacks, or that
    /// turn a feature off, are ignored with a warning.
    pub fn refuses_start(&self) -> bool {
        if self.disabled {
            return false;
        }
        let key = self.key.to_ascii_lowercase();
        let harmless = if key.contains('.') {
            HARMLESS_NESTED.contains(&key.as_str())
                || HARMLESS_JETSTREAM_KEYS.contains(&key.as_str())
                || HARMLESS_ACCOUNT_NESTED
                    .iter()
                    .any(|tail| key.starts_with("accounts.") && key.ends_with(tail))
        } else {
            HARMLESS_TOP_LEVEL.contains(&key.as_str())
        };
        !harmless
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: configuration key \"{}\" is not supported yet",
            self.position, self.key
        )
    }
}

/// The keys of a file rnats cannot honour, each on its own line as
/// `file:line:column: configuration key "jetstream" is not supported yet`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RefusedKeys(pub Vec<Unsupported>);

impl fmt::Display for RefusedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, key) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{key}")?;
        }
        Ok(())
    }
}

/// Splits a file's unsupported keys: an error naming every key rnats must
/// not run without, or the harmless ones to warn about.
pub fn refuse_unsupported(unsupported: Vec<Unsupported>) -> Result<Vec<Unsupported>, RefusedKeys> {
    let (refused, harmless): (Vec<_>, Vec<_>) = unsupported
        .into_iter()
        .partition(Unsupported::refuses_start);
    if refused.is_empty() {
        Ok(harmless)
    } else {
        Err(RefusedKeys(refused))
    }
}

/// Something accepted but suspicious, in the reference's words.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfWarning {
    pub position: Position,
    pub kind: ConfWarningKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConfWarningKind {
    /// The file sets nothing.
    EmptyConfig,
    /// A duration given as a number of seconds.
    NumberAsDuration { field: String },
    /// An authorization timeout over a minute, usually an unquoted `1m`
    /// read as one million.
    HighAuthTimeout { field: String, seconds: f64 },
    /// A reference warning given as its text.
    Notice { text: String },
}

impl fmt::Display for ConfWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ConfWarningKind::EmptyConfig => {
                write!(
                    f,
                    "{}: config has no values or is empty",
                    self.position.file
                )
            }
            ConfWarningKind::NumberAsDuration { field } => write!(
                f,
                "{}: invalid use of field \"{field}\": {field} should be converted to a duration",
                self.position
            ),
            ConfWarningKind::Notice { text } => write!(f, "{}: {text}", self.position),
            ConfWarningKind::HighAuthTimeout { field, seconds } => write!(
                f,
                "{}: invalid use of field \"{field}\": timeout of {seconds} seconds is high, \
                 consider keeping it under 60 seconds. possibly caused by unquoted duration; \
                 use '1m' instead of 1m, for example",
                self.position
            ),
        }
    }
}

/// Parses `text` and maps it onto [`FileOptions`]. Returns the first error in
/// file order (the reference lists them all).
pub fn load_options(
    file_name: &str,
    text: &str,
    source: &dyn ConfSource,
) -> Result<(FileOptions, Vec<Unsupported>), ConfError> {
    let root = parse(file_name, text, source)?;
    let (mut options, unsupported) = options_from_tree(&root)?;
    read_operator_jwts(&mut options, source)?;
    for fetch in operator_options(&options).startup_fetches() {
        let attempt = options
            .fetched_accounts
            .iter()
            .filter(|(earlier, _)| earlier.url == fetch.url)
            .count();
        let fetched = source.fetch_account(&fetch, attempt);
        let failed = fetched.is_err();
        options.fetched_accounts.push((fetch, fetched));
        if failed {
            // The first failure decides (the base URL's stops the start).
            break;
        }
    }
    if let Err(reason) = read_resolver_dir(&mut options, source) {
        let position = options
            .resolver_position
            .clone()
            .expect("set with dir_resolver");
        return Err(ConfError::new(
            position,
            ConfErrorKind::InvalidValue {
                key: String::from("resolver"),
                reason,
            },
        ));
    }
    Ok((options, unsupported))
}

/// The callout's `allowed_accounts` must be configured accounts: checked
/// once the whole file is read (`-t` too), and, as in the reference,
/// reported without a position.
pub fn check_callout_accounts(options: &FileOptions) -> Result<(), String> {
    let Some(callout) = options
        .authorization
        .as_ref()
        .and_then(|a| a.callout.as_ref())
    else {
        return Ok(());
    };
    for name in &callout.allowed_accounts {
        if !options.security.accounts.iter().any(|a| &a.name == name) {
            return Err(format!(
                "auth_callout allowed account {name:?} not found in configured accounts"
            ));
        }
    }
    Ok(())
}

/// Maps an already parsed root map onto [`FileOptions`].
pub fn options_from_tree(root: &ConfValue) -> Result<(FileOptions, Vec<Unsupported>), ConfError> {
    let ValueKind::Map(map) = &root.kind else {
        return Err(ConfError::new(
            root.position.clone(),
            ConfErrorKind::WrongType {
                key: String::from("(root)"),
                expected: "a map",
                found: root.kind.type_name(),
            },
        ));
    };
    let mut options = FileOptions::default();
    let mut unsupported = Vec::new();
    if map.is_empty() {
        options.warnings.push(ConfWarning {
            position: root.position.clone(),
            kind: ConfWarningKind::EmptyConfig,
        });
    }
    for entry in map {
        apply_top_level(&mut options, &mut unsupported, entry)?;
    }
    Ok((options, unsupported))
}

fn apply_top_level(
    options: &mut FileOptions,
    unsupported: &mut Vec<Unsupported>,
    entry: &MapEntry,
) -> Result<(), ConfError> {
    let key = entry.key.to_ascii_lowercase();
    match key.as_str() {
        "listen" => {
            let (host, port) = parse_listen(entry)?;
            options.host = Some(host);
            options.port = Some(port);
        }
        "port" => options.port = Some(integer(entry)?),
        "http" => {
            let (host, port) = parse_listen(entry)?;
            options.http_host = Some(host);
            options.http_port = Some(port);
        }
        "http_port" | "monitor_port" => options.http_port = Some(integer(entry)?),
        "https" => {
            let (host, port) = parse_listen(entry)?;
            options.http_host = Some(host);
            options.https_port = Some(port);
        }
        "https_port" => options.https_port = Some(integer(entry)?),
        "http_base_path" => options.http_base_path = Some(string(entry)?),
        "max_closed_clients" => options.max_closed_clients = Some(integer(entry)?),
        "max_traced_msg_len" => options.max_traced_msg_len = Some(integer(entry)?),
        "host" | "net" => options.host = Some(string(entry)?),
        "server_name" => {
            let name = string(entry)?;
            if name.contains(' ') {
                return Err(invalid(entry, "server name cannot contain spaces"));
            }
            options.server_name = Some(name);
        }
        "client_advertise" => options.client_advertise = Some(string(entry)?),
        "max_payload" => options.max_payload = Some(int32(entry)?),
        "max_control_line" => options.max_control_line = Some(int32(entry)?),
        "max_pending" => options.max_pending = Some(integer(entry)?),
        "max_connections" | "max_conn" => {
            let limit = integer(entry)?;
            options.max_connections = Some(if limit == 0 { -1 } else { limit });
        }
        "max_subscriptions" | "max_subs" => options.max_subscriptions = Some(integer(entry)?),
        "ping_interval" => {
            options.ping_interval = Some(duration(entry, "ping_interval", &mut options.warnings)?)
        }
        "ping_max" => options.ping_max = Some(integer(entry)?),
        "write_deadline" => {
            options.write_deadline = Some(duration(entry, "write_deadline", &mut options.warnings)?)
        }
        "authorization" => {
            let auth = authorization(
                entry,
                unsupported,
                &mut options.warnings,
                &mut options.security,
            )?;
            options.authorization = Some(auth);
        }
        "accounts" => auth_options::parse_accounts(
            entry,
            options.authorization.as_ref(),
            &mut options.security,
            unsupported,
        )?,
        "mappings" | "maps" => {
            auth_options::parse_global_mappings(entry, &mut options.security, unsupported)?
        }
        "system_account" | "system" => {
            auth_options::parse_system_account(entry, &mut options.security)?
        }
        "no_system_account" | "no_system" | "no_sys_acc" => {
            options.security.no_system_account = boolean(entry)?
        }
        "tls" => options.tls = Some(tls_options::parse_tls(entry, unsupported)?),
        "jetstream" => jetstream_options::parse_jetstream(
            entry,
            &mut options.jetstream,
            unsupported,
            &mut options.warnings,
        )?,
        "store_dir" | "storedir" => {
            jetstream_options::parse_top_level_store_dir(entry, &mut options.jetstream)?
        }
        "cluster" => {
            options.cluster = Some(super::cluster_options::parse_cluster(
                entry,
                unsupported,
                &mut options.warnings,
            )?)
        }
        "websocket" | "ws" => {
            options.websocket = Some(websocket_options::parse_websocket(
                entry,
                unsupported,
                &mut options.warnings,
            )?)
        }
        "allow_non_tls" => options.allow_non_tls = Some(boolean(entry)?),
        "lame_duck_duration" => options.lame_duck_duration = Some(parse_duration_value(entry)?),
        "lame_duck_grace_period" => {
            options.lame_duck_grace_period = Some(parse_duration_value(entry)?)
        }
        "no_auth_user" => options.no_auth_user = Some(string(entry)?),
        "operator" | "operators" | "roots" | "root" | "root_operators" | "root_operator" => {
            options.operators = operator_sources(entry)?;
            options.operator_position = Some(entry.key_position.clone());
        }
        "resolver_tls" => {
            let tls = super::tls_options::parse_tls(entry, unsupported)?;
            options.resolver_tls = Some(crate::auth::ResolverTls {
                ca_file: tls.ca_file,
                cert_file: tls.cert_file,
                key_file: tls.key_file,
            });
        }
        "resolver" | "account_resolver" | "accounts_resolver" => {
            let memory = entry.value.as_str().is_some_and(|text| {
                let text = text.trim().to_ascii_uppercase();
                text.starts_with("MEM")
            });
            if memory {
                options.memory_resolver = true;
            } else if entry.value.as_map().is_some() {
                match resolver_map(entry)? {
                    ResolverMap::Memory => options.memory_resolver = true,
                    ResolverMap::Directory(dir) => {
                        options.dir_resolver = Some(dir);
                        options.resolver_position = Some(entry.key_position.clone());
                    }
                }
            } else if let Some(text) = entry.value.as_str() {
                // The reference takes `URL` anywhere in the text, then an
                // optional `("<url>")`; text without it is refused.
                let url = url_resolver(text).ok_or_else(|| invalid(entry, RESOLVER_KINDS))?;
                options.url_resolver = Some(crate::auth::UrlResolver::new(&url));
            } else {
                unsupported.push(Unsupported::new(entry.key.clone(), entry));
            }
        }
        "resolver_preload" => options.resolver_preload = resolver_preload(entry)?,
        "trusted" | "trusted_keys" => options.trusted_keys = trusted_keys(entry)?,
        "pidfile" | "pid_file" => options.pid_file = Some(string(entry)?),
        "ports_file_dir" => options.ports_file_dir = Some(string(entry)?),
        "logfile" | "log_file" => options.log_file = Some(string(entry)?),
        "logfile_size_limit" | "log_size_limit" => options.log_size_limit = Some(integer(entry)?),
        "logtime" => options.logtime = Some(boolean(entry)?),
        "logtime_utc" => options.logtime_utc = Some(boolean(entry)?),
        "debug" => options.debug = Some(boolean(entry)?),
        "trace" => options.trace = Some(boolean(entry)?),
        _ if UNSUPPORTED_TOP_LEVEL.contains(&key.as_str()) => {
            unsupported.push(Unsupported::new(entry.key.clone(), entry))
        }
        _ if entry.is_referenced() => {}
        _ => return Err(unknown_field(entry)),
    }
    Ok(())
}

/// `operator: "path or JWT"` or a list of them.
fn operator_sources(entry: &MapEntry) -> Result<Vec<String>, ConfError> {
    if let Some(text) = entry.value.as_str() {
        return Ok(vec![text.to_string()]);
    }
    let items = entry.value.as_array().ok_or_else(|| {
        invalid(
            entry,
            &format!(
                "error parsing operators: unsupported type {}",
                entry.value.kind.type_name()
            ),
        )
    })?;
    items
        .iter()
        .map(|item| {
            item.as_str().map(str::to_owned).ok_or_else(|| {
                invalid(
                    entry,
                    "error parsing operators: unsupported type where string is expected",
                )
            })
        })
        .collect()
}

/// `trusted_keys: "<key>"` or a list of keys, each a public operator nkey.
fn trusted_keys(entry: &MapEntry) -> Result<Vec<String>, ConfError> {
    let keys = if let Some(key) = entry.value.as_str() {
        vec![key.to_owned()]
    } else if let Some(items) = entry.value.as_array() {
        let mut keys = Vec::new();
        for item in items {
            let key = item.as_str().ok_or_else(|| {
                invalid(
                    entry,
                    &format!(
                        "error parsing trusted: unsupported type in array {}",
                        super::auth_options::go_type_name(item)
                    ),
                )
            })?;
            keys.push(key.to_owned());
        }
        keys
    } else {
        return Err(invalid(
            entry,
            &format!(
                "error parsing trusted: unsupported type {}",
                super::auth_options::go_type_name(&entry.value)
            ),
        ));
    };
    // The reference points at the last item of a list.
    let position = entry
        .value
        .as_array()
        .and_then(|items| items.last())
        .map_or(&entry.key_position, |item| &item.position);
    for key in &keys {
        if !crate::auth::is_public_operator_key(key) {
            return Err(ConfError::new(
                position.clone(),
                ConfErrorKind::InvalidValue {
                    key: entry.key.clone(),
                    reason: format!(
                        "trust key {key:?} required to be a valid public operator nkey"
                    ),
                },
            ));
        }
    }
    Ok(keys)
}

/// The reference's refusal of a resolver it does not know.
const RESOLVER_KINDS: &str = "error parsing account resolver, should be MEM or  URL(\"url\") or a map containing dir and type state=[FULL|CACHE])";

/// The URL of `resolver: URL("<url>")` (the quotes are optional, the
/// case of `URL` is not significant; `URL` alone is an empty URL). `None`
/// when the text has no `URL`.
fn url_resolver(text: &str) -> Option<String> {
    let at = text.to_ascii_uppercase().find("URL")?;
    let rest = &text[at + 3..];
    let Some(inner) = rest.strip_prefix('(') else {
        return Some(String::new());
    };
    let inner = inner.trim_start();
    let inner = inner.strip_prefix('"').unwrap_or(inner);
    let end = inner
        .find(|c: char| c.is_whitespace() || c == '"' || c == ')')
        .unwrap_or(inner.len());
    let url = &inner[..end];
    // The closing `)` must follow (else the reference's pattern matches
    // `URL` alone).
    let tail = inner[end..].trim_start();
    let tail = tail.strip_prefix('"').unwrap_or(tail).trim_start();
    Some(if tail.starts_with(')') {
        url.to_owned()
    } else {
        String::new()
    })
}

/// What a `resolver { }` map configures.
enum ResolverMap {
    Memory,
    Directory(crate::auth::DirResolver),
}

/// `resolver { type, dir, allow_delete, hard_delete, limit, ttl, interval,
/// timeout }`, checked as the reference does.
fn resolver_map(entry: &MapEntry) -> Result<ResolverMap, ConfError> {
    use crate::auth::JwtDelete;
    let map = entry.value.as_map().expect("checked by the caller");
    let field = |name: &str| map.iter().find(|field| field.key == name);
    let kind = field("type").map(string).transpose()?.unwrap_or_default();
    let dir = field("dir").map(string).transpose()?.unwrap_or_default();
    let allow_delete = field("allow_delete")
        .map(boolean)
        .transpose()?
        .unwrap_or(false);
    let hard_delete = field("hard_delete").map(boolean).transpose()?;
    let limit = field("limit").map(integer).transpose()?.unwrap_or(0);
    let ttl = field("ttl").map(parse_duration_value).transpose()?;
    let interval = field("interval").map(parse_duration_value).transpose()?;
    let timeout = field("timeout").map(parse_duration_value).transpose()?;
    let cache = match kind.to_ascii_uppercase().as_str() {
        "MEM" | "MEMORY" => return Ok(ResolverMap::Memory),
        "FULL" => false,
        "CACHE" => true,
        _ => return Err(invalid(entry, RESOLVER_KINDS)),
    };
    if dir.is_empty() {
        return Err(invalid(
            entry,
            "dir has no value and needs to point to a directory",
        ));
    }
    let ttl = ttl.filter(|ttl| !ttl.is_zero());
    let interval = interval.filter(|interval| !interval.is_zero());
    if cache {
        if interval.is_some() {
            return Err(invalid(entry, "CACHE does not accept sync"));
        }
        if allow_delete {
            return Err(invalid(entry, "CACHE does not accept allow_delete"));
        }
        if hard_delete.is_some() {
            return Err(invalid(entry, "CACHE does not accept hard_delete"));
        }
    } else {
        if ttl.is_some() {
            return Err(invalid(entry, "FULL does not accept ttl"));
        }
        if hard_delete.is_some() && !allow_delete {
            return Err(invalid(entry, "hard_delete has no effect without delete"));
        }
    }
    if timeout.is_some_and(|timeout| timeout.is_zero()) {
        return Err(invalid(entry, "Fetch timeout 0s is too smal"));
    }
    let delete = match (allow_delete, hard_delete) {
        // The cache removes what the operator deletes.
        _ if cache => JwtDelete::Remove,
        (false, _) => JwtDelete::Never,
        (true, Some(true)) => JwtDelete::Remove,
        (true, _) => JwtDelete::Rename,
    };
    let limit = u64::try_from(limit).ok().filter(|limit| *limit > 0);
    let defaults = crate::auth::DirResolver::full(&dir);
    Ok(ResolverMap::Directory(crate::auth::DirResolver {
        kind: if cache {
            crate::auth::DirKind::Cache { ttl }
        } else {
            crate::auth::DirKind::Full
        },
        delete,
        limit: match (cache, limit) {
            (true, None) => Some(crate::auth::DEFAULT_CACHE_LIMIT),
            (_, limit) => limit,
        },
        interval: interval.unwrap_or(defaults.interval),
        timeout: timeout.unwrap_or(defaults.timeout),
        ..defaults
    }))
}

/// Read the directory resolver's JWT files (`<dir>/<account key>.jwt`)
/// into `options.dir_resolver.stored`; the directory is created when
/// missing, as the reference does.
pub fn read_resolver_dir(options: &mut FileOptions, source: &dyn ConfSource) -> Result<(), String> {
    let Some(resolver) = options.dir_resolver.as_mut() else {
        return Ok(());
    };
    let (absolute, jwts) = source.read_jwt_dir(&resolver.dir)?;
    resolver.dir = absolute;
    resolver.stored = jwts.into_iter().collect();
    Ok(())
}

/// `resolver_preload { <account public key>: <account JWT> }`. Each JWT
/// must decode as an account JWT (its trust is checked at start).
fn resolver_preload(
    entry: &MapEntry,
) -> Result<std::collections::BTreeMap<String, String>, ConfError> {
    let map = entry.value.as_map().ok_or_else(|| {
        invalid(
            entry,
            "preload should be a map of account_public_key:account_jwt",
        )
    })?;
    let mut preload = std::collections::BTreeMap::new();
    for field in map {
        let Some(token) = field.value.as_str() else {
            return Err(ConfError::new(
                field.key_position.clone(),
                ConfErrorKind::InvalidValue {
                    key: field.key.clone(),
                    reason: String::from("preload map value should be a string JWT"),
                },
            ));
        };
        if crate::auth::jwt::decode_account(token).is_err() {
            return Err(ConfError::new(
                field.key_position.clone(),
                ConfErrorKind::InvalidValue {
                    key: field.key.clone(),
                    reason: String::from("invalid account JWT"),
                },
            ));
        }
        preload.insert(field.key.clone(), token.to_string());
    }
    Ok(preload)
}

/// What the file says of operator mode, for `OperatorMode::build`.
pub fn operator_options(file: &FileOptions) -> crate::auth::OperatorOptions {
    crate::auth::OperatorOptions {
        operator_jwts: file.operator_jwts.clone(),
        trusted_keys: file.trusted_keys.clone(),
        memory_resolver: file.memory_resolver,
        dir_resolver: file.dir_resolver.clone(),
        url_resolver: file.url_resolver.clone(),
        resolver_tls: file.resolver_tls.clone(),
        preload: file.resolver_preload.clone(),
        system_account: file.security.system_account.clone(),
        fetched: file.fetched_accounts.clone(),
    }
}

/// Read `options.operators` into `options.operator_jwts`: a file's
/// contents (the JWT, or the decorated form nsc writes), or the text
/// itself when it is an inline JWT and no such file exists.
pub fn read_operator_jwts(
    options: &mut FileOptions,
    source: &dyn ConfSource,
) -> Result<(), ConfError> {
    let mut jwts = Vec::new();
    for name in &options.operators {
        let position = options
            .operator_position
            .clone()
            .expect("set with operators");
        let contents = match source.read_file(name) {
            Ok(contents) => contents,
            Err(_) if name.starts_with("eyJ") => name.clone(),
            Err(error) => {
                return Err(ConfError::new(
                    position,
                    ConfErrorKind::InvalidValue {
                        key: String::from("operator"),
                        reason: format!("error parsing operator JWT: {error}"),
                    },
                ))
            }
        };
        jwts.push(crate::auth::jwt::undecorate(&contents).to_string());
    }
    options.operator_jwts = jwts;
    Ok(())
}

fn authorization(
    entry: &MapEntry,
    unsupported: &mut Vec<Unsupported>,
    warnings: &mut Vec<ConfWarning>,
    security: &mut SecurityOptions,
) -> Result<AuthorizationOptions, ConfError> {
    let block: &ConfMap = entry
        .value
        .as_map()
        .ok_or_else(|| wrong_type(entry, "a map"))?;
    let mut auth = AuthorizationOptions {
        position: Some(entry.key_position.clone()),
        ..AuthorizationOptions::default()
    };
    let mut users = AuthorizationUsers::default();
    for field in block {
        let key = field.key.to_ascii_lowercase();
        match key.as_str() {
            "user" | "username" => auth.user = Some(string(field)?),
            "pass" | "password" => auth.password = Some(string(field)?),
            "token" => auth.token = Some(string(field)?),
            "timeout" => {
                let seconds = auth_timeout(field)?;
                if seconds > 60.0 {
                    warnings.push(ConfWarning {
                        position: field.key_position.clone(),
                        kind: ConfWarningKind::HighAuthTimeout {
                            field: field.key.clone(),
                            seconds,
                        },
                    });
                }
                auth.timeout_seconds = Some(seconds);
            }
            "auth_callout" | "auth_hook" => auth.callout = Some(auth_callout(field)?),
            _ if auth_options::parse_authorization_field(field, &mut users, unsupported)? => {}
            _ if UNSUPPORTED_AUTHORIZATION.contains(&key.as_str()) => {
                unsupported.push(Unsupported::new(
                    format!("{}.{}", entry.key, field.key),
                    field,
                ));
            }
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    let filled = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    let has_user_or_password = filled(&auth.user) || filled(&auth.password);
    if has_user_or_password && filled(&auth.token) {
        return Err(invalid(entry, "Cannot have a user/pass and token"));
    }
    auth_options::finish_authorization(entry, &auth, users, security)?;
    Ok(auth)
}

/// `auth_callout { issuer, account, auth_users, xkey, allowed_accounts }`,
/// checked as the reference checks it while reading the file.
fn auth_callout(entry: &MapEntry) -> Result<crate::auth::callout::AuthCallout, ConfError> {
    let block = entry.value.as_map().ok_or_else(|| {
        // The reference prints the value as Go formats it.
        let value = match &entry.value.kind {
            ValueKind::String(text) => text.clone(),
            ValueKind::Integer(number) => number.to_string(),
            ValueKind::Float(number) => number.to_string(),
            ValueKind::Bool(flag) => flag.to_string(),
            _ => String::from("[]"),
        };
        invalid(
            entry,
            &format!("Expected authorization callout to be a map/struct, got {value}"),
        )
    })?;
    let mut callout = crate::auth::callout::AuthCallout::default();
    let names = |field: &MapEntry, what: &str| -> Result<Vec<String>, ConfError> {
        let items = field.value.as_array().ok_or_else(|| {
            invalid(
                field,
                // The reference names the type of its token wrapper.
                &format!("Expected {what} field to be an array, got *conf.token"),
            )
        })?;
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_type(field, "an array of strings"))
            })
            .collect()
    };
    for field in block {
        match field.key.to_ascii_lowercase().as_str() {
            "issuer" => {
                let issuer = string(field)?;
                if !is_public_key(&issuer, 'A') {
                    return Err(invalid(
                        field,
                        &format!(
                            "Expected callout user to be a valid public account nkey, got {issuer:?}"
                        ),
                    ));
                }
                callout.issuer = issuer;
            }
            "account" | "acc" => callout.account = string(field)?,
            "auth_users" | "users" => callout.auth_users = names(field, "auth_users")?,
            "xkey" | "key" => {
                let xkey = string(field)?;
                if !is_public_key(&xkey, 'X') {
                    return Err(invalid(
                        field,
                        &format!("Expected callout xkey to be a valid public xkey, got {xkey:?}"),
                    ));
                }
                callout.xkey = Some(xkey);
            }
            "allowed_accounts" => callout.allowed_accounts = names(field, "allowed accounts")?,
            _ if field.is_referenced() => {}
            _ => {
                return Err(invalid(
                    field,
                    &format!(
                        "Unknown field {:?} parsing authorization callout",
                        field.key
                    ),
                ))
            }
        }
    }
    if callout.account.is_empty() {
        callout.account = String::from(crate::auth::GLOBAL_ACCOUNT);
    }
    // The reference places these at the block's last field.
    let last = block.iter().last().unwrap_or(entry);
    if callout.issuer.is_empty() {
        return Err(invalid(
            last,
            "Authorization callouts require an issuer to be specified",
        ));
    }
    if callout.auth_users.is_empty() {
        return Err(invalid(
            last,
            "Authorization callouts require authorized users to be specified",
        ));
    }
    Ok(callout)
}

/// Whether `key` is a public nkey with the prefix letter `prefix`.
fn is_public_key(key: &str, prefix: char) -> bool {
    key.starts_with(prefix)
        && match prefix {
            'X' => nkeys::XKey::from_public_key(key).is_ok(),
            _ => nkeys::KeyPair::from_public_key(key).is_ok(),
        }
}

/// The authorization `timeout`: seconds as a number, or a duration string.
fn auth_timeout(field: &MapEntry) -> Result<f64, ConfError> {
    match &field.value.kind {
        ValueKind::Integer(seconds) => Ok(*seconds as f64),
        ValueKind::Float(seconds) => Ok(*seconds),
        ValueKind::String(text) => parse_go_duration(text)
            .map(|nanos| nanos as f64 / 1e9)
            .map_err(|error| {
                invalid(
                    field,
                    &format!("error parsing authorization config, 'timeout' {error}"),
                )
            }),
        _ => Err(invalid(
            field,
            "error parsing authorization config, 'timeout' wrong type",
        )),
    }
}

/// `listen`: a port alone, or `host:port` (`[::1]:4222` for IPv6).
/// `listen`, `port`, `host`/`net` of a listener block (websocket, cluster):
/// true when `key` was one of them.
pub(super) fn listener_key(
    key: &str,
    field: &MapEntry,
    host: &mut Option<String>,
    port: &mut Option<i64>,
) -> Result<bool, ConfError> {
    match key {
        "listen" => {
            let (h, p) = parse_listen(field)?;
            *host = Some(h);
            *port = Some(p);
        }
        "port" => {
            *port = Some(
                field
                    .value
                    .as_i64()
                    .ok_or_else(|| wrong_type(field, "an integer"))?,
            )
        }
        "host" | "net" => *host = Some(string(field)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// A string, or an array of strings.
pub(super) fn string_list(field: &MapEntry) -> Result<Vec<String>, ConfError> {
    match &field.value.kind {
        ValueKind::String(text) => Ok(vec![text.clone()]),
        ValueKind::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_type(field, "an array of strings"))
            })
            .collect(),
        _ => Err(wrong_type(field, "a string or an array of strings")),
    }
}

pub(super) fn parse_listen(entry: &MapEntry) -> Result<(String, i64), ConfError> {
    match &entry.value.kind {
        ValueKind::Integer(port) => Ok((String::new(), *port)),
        ValueKind::String(address) => {
            let (host, port) = split_host_port(address).ok_or_else(|| {
                invalid(
                    entry,
                    &format!("could not parse address string \"{address}\""),
                )
            })?;
            let port: i64 = port
                .parse()
                .map_err(|_| invalid(entry, &format!("could not parse port \"{port}\"")))?;
            Ok((host.to_string(), port))
        }
        other => Err(invalid(
            entry,
            &format!("expected port or host:port, got {}", other.type_name()),
        )),
    }
}

/// Go's `net.SplitHostPort`: the host may be bracketed, and only a bracketed
/// host may contain colons.
fn split_host_port(address: &str) -> Option<(&str, &str)> {
    let colon = address.rfind(':')?;
    let (host, port) = (&address[..colon], &address[colon + 1..]);
    let host = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']')?
    } else {
        host
    };
    let forbidden = |part: &str| part.contains(['[', ']']);
    if forbidden(host) || forbidden(port) {
        return None;
    }
    if host.contains(':') && !address.starts_with('[') {
        return None;
    }
    Some((host, port))
}

/// A duration option: Go duration text, or (with a warning, as the reference
/// still accepts it) a number of seconds.
pub(super) fn duration(
    entry: &MapEntry,
    field: &str,
    warnings: &mut Vec<ConfWarning>,
) -> Result<Duration, ConfError> {
    let nanos: i64 = match &entry.value.kind {
        ValueKind::String(text) => parse_go_duration(text)
            .map_err(|error| invalid(entry, &format!("error parsing {field}: {error}")))?,
        ValueKind::Integer(seconds) => {
            warnings.push(ConfWarning {
                position: entry.key_position.clone(),
                kind: ConfWarningKind::NumberAsDuration {
                    field: field.to_string(),
                },
            });
            seconds
                .checked_mul(1_000_000_000)
                .ok_or_else(|| invalid(entry, &format!("{field} value is too big")))?
        }
        _ => return Err(wrong_type(entry, "a duration")),
    };
    // The reference would accept a negative duration and misbehave later.
    let nanos = u64::try_from(nanos)
        .map_err(|_| invalid(entry, &format!("{field} can not be negative")))?;
    Ok(Duration::from_nanos(nanos))
}

/// An integer value, or the reference's wrong-type error.
pub(super) fn integer(entry: &MapEntry) -> Result<i64, ConfError> {
    entry
        .value
        .as_i64()
        .ok_or_else(|| wrong_type(entry, "an integer"))
}

/// The reference keeps these in an `int32` and rejects what does not fit.
fn int32(entry: &MapEntry) -> Result<i32, ConfError> {
    let number = integer(entry)?;
    i32::try_from(number).map_err(|_| {
        let which = if number > 0 { "too big" } else { "too small" };
        invalid(entry, &format!("{} value is {which}", entry.key))
    })
}

/// A duration given as a Go duration string, or as seconds.
pub(super) fn parse_duration_value(entry: &MapEntry) -> Result<Duration, ConfError> {
    let nanos = match &entry.value.kind {
        ValueKind::String(text) => parse_go_duration(text)
            .map_err(|error| invalid(entry, &format!("error parsing {}: {error}", entry.key)))?,
        ValueKind::Integer(seconds) => seconds
            .checked_mul(1_000_000_000)
            .ok_or_else(|| invalid(entry, &format!("{} value is too big", entry.key)))?,
        _ => return Err(wrong_type(entry, "a duration")),
    };
    let nanos = u64::try_from(nanos)
        .map_err(|_| invalid(entry, &format!("{} can not be negative", entry.key)))?;
    Ok(Duration::from_nanos(nanos))
}

pub(super) fn string(entry: &MapEntry) -> Result<String, ConfError> {
    entry
        .value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| wrong_type(entry, "a string"))
}

pub(super) fn boolean(entry: &MapEntry) -> Result<bool, ConfError> {
    entry
        .value
        .as_bool()
        .ok_or_else(|| wrong_type(entry, "a boolean"))
}

pub(super) fn wrong_type(entry: &MapEntry, expected: &'static str) -> ConfError {
    ConfError::new(
        entry.key_position.clone(),
        ConfErrorKind::WrongType {
            key: entry.key.clone(),
            expected,
            found: entry.value.kind.type_name(),
        },
    )
}

pub(super) fn invalid(entry: &MapEntry, reason: &str) -> ConfError {
    ConfError::new(
        entry.key_position.clone(),
        ConfErrorKind::InvalidValue {
            key: entry.key.clone(),
            reason: reason.to_string(),
        },
    )
}

pub(super) fn unknown_field(entry: &MapEntry) -> ConfError {
    ConfError::new(
        entry.key_position.clone(),
        ConfErrorKind::UnknownField {
            key: entry.key.clone(),
        },
    )
}

/// Limits that contradict each other. Like the reference, checked when the
/// server starts (not under `-t`): a message may never be larger than what a
/// connection may hold pending.
pub fn check_limits(options: &FileOptions) -> Result<(), String> {
    const DEFAULT_MAX_PAYLOAD: i64 = 1024 * 1024;
    const DEFAULT_MAX_PENDING: i64 = 64 * 1024 * 1024;
    let payload = options
        .max_payload
        .map(i64::from)
        .filter(|v| *v > 0)
        .unwrap_or(DEFAULT_MAX_PAYLOAD);
    let pending = options
        .max_pending
        .filter(|v| *v > 0)
        .unwrap_or(DEFAULT_MAX_PENDING);
    if payload > pending {
        return Err(format!(
            "max_payload ({payload}) cannot be higher than max_pending ({pending})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::NoSource;
    use super::*;

    fn load(text: &str) -> Result<(FileOptions, Vec<Unsupported>), ConfError> {
        load_options("test.conf", text, &NoSource)
    }

    fn error(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    /// The directory resolver's settings, checked as the reference does
    /// (before its directory is read).
    #[test]
    fn full_resolver_settings() {
        let tree = |text: &str| options_from_tree(&parse("test.conf", text, &NoSource).unwrap());
        let (options, unsupported) =
            tree("resolver { type: full, dir: \"jwt\", allow_delete: true, limit: 5 }").unwrap();
        assert!(unsupported.is_empty());
        let dir = options.dir_resolver.unwrap();
        assert_eq!(
            (dir.dir.as_str(), dir.delete, dir.limit),
            ("jwt", crate::auth::JwtDelete::Rename, Some(5))
        );
        let (options, _) =
            tree("resolver { type: FULL, dir: d, allow_delete: true, hard_delete: true }").unwrap();
        assert_eq!(
            options.dir_resolver.unwrap().delete,
            crate::auth::JwtDelete::Remove
        );
        for (text, expected) in [
            (
                "resolver { type: full }",
                "dir has no value and needs to point to a directory",
            ),
            (
                "resolver { type: full, dir: d, ttl: \"1m\" }",
                "FULL does not accept ttl",
            ),
            (
                "resolver { type: full, dir: d, hard_delete: true }",
                "hard_delete has no effect without delete",
            ),
        ] {
            let error = tree(text).unwrap_err().to_string();
            assert!(error.ends_with(expected), "{text}: {error}");
        }
        // Reading the directory needs the runtime's files.
        assert!(
            error("resolver { type: full, dir: d }").contains("directories are not available here")
        );
    }

    #[test]
    fn every_supported_key_and_alias() {
        let (options, unsupported) = load(
            "listen: 127.0.0.1:4333\n\
             server_name: alpha\n\
             client_advertise: \"example.com:4222\"\n\
             max_payload: 2MB\n\
             max_control_line: 8KB\n\
             max_pending: 64MB\n\
             max_conn: 0\n\
             max_subs: 100\n\
             ping_interval: \"2m\"\n\
             ping_max: 3\n\
             write_deadline: \"500ms\"\n\
             authorization { username: alice, pass: secret, timeout: 1.5 }\n\
             no_auth_user: alice\n\
             pidfile: /tmp/x.pid\n\
             ports_file_dir: /tmp\n\
             logfile: /tmp/x.log\n\
             logtime: false\n\
             logtime_utc: on\n\
             debug: yes\n\
             trace: TRUE\n",
        )
        .unwrap();
        assert!(unsupported.is_empty());
        assert!(options.warnings.is_empty());
        assert_eq!(options.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(options.port, Some(4333));
        assert_eq!(options.server_name.as_deref(), Some("alpha"));
        assert_eq!(
            options.client_advertise.as_deref(),
            Some("example.com:4222")
        );
        assert_eq!(options.max_payload, Some(2 << 20));
        assert_eq!(options.max_control_line, Some(8 << 10));
        assert_eq!(options.max_pending, Some(64 << 20));
        assert_eq!(options.max_connections, Some(-1));
        assert_eq!(options.max_subscriptions, Some(100));
        assert_eq!(options.ping_interval, Some(Duration::from_secs(120)));
        assert_eq!(options.ping_max, Some(3));
        assert_eq!(options.write_deadline, Some(Duration::from_millis(500)));
        let auth = options.authorization.as_ref().unwrap();
        assert_eq!(auth.user.as_deref(), Some("alice"));
        assert_eq!(auth.password.as_deref(), Some("secret"));
        assert_eq!(auth.timeout_seconds, Some(1.5));
        assert!(!format!("{auth:?}").contains("secret"));
        assert_eq!(options.no_auth_user.as_deref(), Some("alice"));
        assert_eq!(options.pid_file.as_deref(), Some("/tmp/x.pid"));
        assert_eq!(options.ports_file_dir.as_deref(), Some("/tmp"));
        assert_eq!(options.log_file.as_deref(), Some("/tmp/x.log"));
        assert_eq!(options.logtime, Some(false));
        assert_eq!(options.logtime_utc, Some(true));
        assert_eq!(options.debug, Some(true));
        assert_eq!(options.trace, Some(true));
    }

    #[test]
    fn the_other_spellings() {
        let (options, _) = load(
            "NET: 10.0.0.1\nPort: 4222\nmax_connections: 5\nmax_subscriptions: 6\n\
             pid_file: a\nlog_file: b\nauthorization { user: u, password: p }\n",
        )
        .unwrap();
        assert_eq!(options.host.as_deref(), Some("10.0.0.1"));
        assert_eq!(options.port, Some(4222));
        assert_eq!(options.max_connections, Some(5));
        assert_eq!(options.max_subscriptions, Some(6));
        assert_eq!(options.pid_file.as_deref(), Some("a"));
        assert_eq!(options.log_file.as_deref(), Some("b"));
        let (options, _) = load("host: h\nlisten: 4999").unwrap();
        assert_eq!(options.host.as_deref(), Some(""));
        assert_eq!(options.port, Some(4999));
        let (options, _) = load("listen: \"[::1]:4222\"").unwrap();
        assert_eq!(options.host.as_deref(), Some("::1"));
        let (options, _) = load("listen: \":4222\"").unwrap();
        assert_eq!(options.host.as_deref(), Some(""));
        let (options, _) = load("authorization { token: abc, timeout: \"2s\" }").unwrap();
        let auth = options.authorization.unwrap();
        assert_eq!(auth.token.as_deref(), Some("abc"));
        assert_eq!(auth.timeout_seconds, Some(2.0));
    }

    #[test]
    fn unknown_keys_are_errors_unless_read_as_variables() {
        assert_eq!(
            error("foo = 1\nport = 4222"),
            "test.conf:1:1: unknown field \"foo\""
        );
        assert_eq!(
            error("port = 1\n  Foo = 2"),
            "test.conf:2:3: unknown field \"Foo\""
        );
        let (options, _) = load("foo = 1\nmax_payload = $foo").unwrap();
        assert_eq!(options.max_payload, Some(1));
        assert_eq!(
            error("authorization {\n  user = a\n  bar = 1\n}"),
            "test.conf:3:3: unknown field \"bar\""
        );
        let (options, _) = load("authorization {\n  u = a\n  user = $u\n}").unwrap();
        assert_eq!(options.authorization.unwrap().user.as_deref(), Some("a"));
    }

    #[test]
    fn auth_callout_blocks_are_read_and_checked() {
        let issuer = nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::Account, [1; 32])
            .unwrap()
            .public_key();
        let xkey = nkeys::XKey::new_from_raw([2; 32]).public_key();
        let (options, unsupported) = load(&format!(
            "accounts {{ AUTH {{ users: [{{user: auth, password: pw}}] }}, APP {{}} }}\n\
             authorization {{ auth_callout {{ issuer: {issuer}, account: AUTH, auth_users: [auth],\n\
             xkey: {xkey}, allowed_accounts: [APP] }} }}"
        ))
        .unwrap();
        assert!(unsupported.is_empty());
        assert!(check_callout_accounts(&options).is_ok());
        let callout = options.authorization.unwrap().callout.unwrap();
        assert_eq!(callout.issuer, issuer);
        assert_eq!(callout.account, "AUTH");
        assert_eq!(callout.auth_users, ["auth"]);
        assert_eq!(callout.xkey.as_deref(), Some(xkey.as_str()));
        let (options, _) = load(&format!(
            "authorization {{ auth_callout {{ issuer: {issuer}, auth_users: [a], allowed_accounts: [B] }} }}"
        ))
        .unwrap();
        assert_eq!(
            check_callout_accounts(&options).unwrap_err(),
            "auth_callout allowed account \"B\" not found in configured accounts"
        );
        assert_eq!(
            options.authorization.unwrap().callout.unwrap().account,
            "$G"
        );
        for (text, reason) in [
            (
                "auth_callout: 1",
                "Expected authorization callout to be a map/struct, got 1",
            ),
            (
                "auth_callout { issuer: x, auth_users: [a] }",
                "Expected callout user to be a valid public account nkey, got \"x\"",
            ),
            (
                "auth_callout { auth_users: [a] }",
                "Authorization callouts require an issuer to be specified",
            ),
            (
                "auth_callout { foo: 1 }",
                "Unknown field \"foo\" parsing authorization callout",
            ),
            (
                "auth_callout { xkey: XYZ }",
                "Expected callout xkey to be a valid public xkey, got \"XYZ\"",
            ),
            (
                "auth_callout { auth_users: a }",
                "Expected auth_users field to be an array, got *conf.token",
            ),
        ] {
            let text = format!("authorization {{ {text} }}");
            assert!(error(&text).ends_with(reason), "{text}: {}", error(&text));
        }
        assert!(error(&format!(
            "authorization {{ auth_callout {{ issuer: {issuer} }} }}"
        ))
        .ends_with("Authorization callouts require authorized users to be specified"));
    }

    #[test]
    fn known_but_unsupported_keys_are_listed() {
        let (_, unsupported) = load(
            "cluster { port: 6222, compression: s2_auto }\nJetStream: enabled\nport: 4222\n\
             authorization { users = [ {user: a, password: b} ], proxy_required: true }",
        )
        .unwrap();
        let keys: Vec<_> = unsupported
            .iter()
            .map(|u| (u.key.as_str(), u.position.line, u.position.column))
            .collect();
        assert_eq!(
            keys,
            [
                ("cluster.compression", 1, 23),
                ("authorization.proxy_required", 4, 53)
            ]
        );
    }

    /// Keys of features rnats lacks, and security settings it does not
    /// enforce, refuse start-up by name; only harmless ones are let through.
    #[test]
    fn url_resolvers_parse_as_the_reference_matches_them() {
        let url = |text: &str| {
            load(&format!("resolver: {text}"))
                .expect("valid")
                .0
                .url_resolver
                .map(|url| url.base)
        };
        assert_eq!(
            url("URL(\"http://h:1/jwt/v1/accounts/\")"),
            Some(String::from("http://h:1/jwt/v1/accounts/"))
        );
        assert_eq!(
            url("\"url( http://h:1/jwt )\""),
            Some(String::from("http://h:1/jwt/"))
        );
        assert_eq!(url("URL"), Some(String::from("/")));
        assert_eq!(url("\"URL(http://h:1/\""), Some(String::from("/")));
        assert!(load("resolver: nothing").is_err());
    }

    #[test]
    fn unsupported_keys_refuse_start_unless_harmless() {
        let refused = |text: &str| -> Vec<String> {
            let (_, unsupported) = load(text).expect("valid");
            match refuse_unsupported(unsupported) {
                Ok(_) => Vec::new(),
                Err(keys) => keys.0.iter().map(|k| k.key.clone()).collect(),
            }
        };
        for text in [
            "jetstream { tpm { keys_file: x } }",
            "websocket { port: 8080, no_tls: true, tls { cert_file: a, key_file: b, pinned_certs: [x] } }",
            "leafnodes { port: 7422 }",
            "cluster { port: 6222, compression: s2_best }",
            "gateway { port: 7222 }",
            "mqtt { port: 1883 }",
            "ocsp: true",
            "authorization { proxy_required: true }",
            "tls { cert_file: a, key_file: b, pinned_certs: [x] }",
            "tls { cert_file: a, key_file: b, cert_store: WindowsCurrentUser }",
            "tls { cert_file: a, key_file: b, cipher_suites: [x] }",
            "tls { cert_file: a, key_file: b, curve_preferences: [x] }",
            "tls { cert_file: a, key_file: b, ocsp_peer: true }",
            "authorization { users: [ {user: a, password: b, allowed_connection_types: [STANDARD]} ] }",
            "accounts { A { users: [ {user: a, password: b, allowed_connection_types: [MQTT]} ] } }",
            "accounts { A { limits: { max_conn: 1 } } }",
        ] {
            assert_eq!(refused(text).len(), 1, "{text}");
        }
        for text in [
            "trace_verbose: true",
            "disable_sublist_cache: true",
            "no_fast_producer_stall: true",
            "tls { cert_file: a, key_file: b, insecure: true }",
            "jetstream: disabled",
            "jetstream: false",
            "jetstream: enabled",
            "jetstream { store_dir: /tmp }",
            "accounts { A { jetstream: enabled } }",
            "ocsp: false",
        ] {
            assert_eq!(refused(text), Vec::<String>::new(), "{text}");
        }
        let (_, unsupported) =
            load("port: 1\nmqtt { port: 1883 }\njetstream { tpm { k: v } }").unwrap();
        let error = refuse_unsupported(unsupported).unwrap_err();
        assert_eq!(
            error.to_string(),
            "test.conf:2:1: configuration key \"mqtt\" is not supported yet\n\
             test.conf:3:13: configuration key \"jetstream.tpm\" is not supported yet"
        );
    }

    #[test]
    fn log_size_limit_is_read() {
        let (options, unsupported) = load("logfile_size_limit: 1MB").unwrap();
        assert!(unsupported.is_empty());
        assert_eq!(options.log_size_limit, Some(1 << 20));
    }

    #[test]
    fn type_errors_point_at_the_key() {
        assert_eq!(
            error("port = 1\nmax_payload = \"big\""),
            "test.conf:2:1: expected an integer for max_payload, got a string"
        );
        assert_eq!(
            error("debug = \"true\""),
            "test.conf:1:1: expected a boolean for debug, got a string"
        );
        assert_eq!(
            error("server_name = [a]"),
            "test.conf:1:1: expected a string for server_name, got an array"
        );
        assert_eq!(
            error("authorization = 5"),
            "test.conf:1:1: expected a map for authorization, got an integer"
        );
        assert_eq!(
            error("port = 1.5"),
            "test.conf:1:1: expected an integer for port, got a float"
        );
        assert_eq!(
            error("ping_interval = true"),
            "test.conf:1:1: expected a duration for ping_interval, got a boolean"
        );
    }

    #[test]
    fn value_checks_follow_the_reference() {
        assert_eq!(
            error("server_name = \"a b\""),
            "test.conf:1:1: server name cannot contain spaces"
        );
        assert_eq!(
            error("max_payload = 3GB"),
            "test.conf:1:1: max_payload value is too big"
        );
        assert_eq!(
            error("MAX_CONTROL_LINE = 1E"),
            "test.conf:1:1: MAX_CONTROL_LINE value is too big"
        );
        assert_eq!(
            error("listen = \"4222\""),
            "test.conf:1:1: could not parse address string \"4222\""
        );
        assert_eq!(
            error("listen = \"h:x\""),
            "test.conf:1:1: could not parse port \"x\""
        );
        assert_eq!(
            error("listen = \"a:b:1\""),
            "test.conf:1:1: could not parse address string \"a:b:1\""
        );
        assert_eq!(
            error("ping_interval = \"1x\""),
            "test.conf:1:1: error parsing ping_interval: time: unknown unit \"x\" in duration \"1x\""
        );
        assert_eq!(
            error("authorization { user: a, token: b }"),
            "test.conf:1:1: Cannot have a user/pass and token"
        );
        assert_eq!(
            error("authorization { token: b, users: [] }"),
            "test.conf:1:1: Can not have a token and a users array"
        );
        assert_eq!(
            error("authorization { timeout: true }"),
            "test.conf:1:17: error parsing authorization config, 'timeout' wrong type"
        );
    }

    #[test]
    fn warnings() {
        let (options, _) = load("ping_interval = 30\nauthorization { timeout: 2m }").unwrap();
        assert_eq!(options.ping_interval, Some(Duration::from_secs(30)));
        let shown: Vec<String> = options.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(shown.len(), 2);
        assert_eq!(
            shown[0],
            "test.conf:1:1: invalid use of field \"ping_interval\": ping_interval should be \
             converted to a duration"
        );
        assert!(shown[1].starts_with("test.conf:2:17: invalid use of field \"timeout\""));
        let (options, _) = load("# nothing\n").unwrap();
        assert_eq!(options.warnings.len(), 1);
        assert_eq!(
            options.warnings[0].to_string(),
            "test.conf: config has no values or is empty"
        );
    }

    #[test]
    fn later_settings_win() {
        let (options, _) = load("port = 1\nlisten = \"h:2\"\nPORT = 3").unwrap();
        assert_eq!(options.port, Some(3));
        assert_eq!(options.host.as_deref(), Some("h"));
    }
}
