//! The server's effective settings: the config file (`-c`) read from disk and
//! parsed by `rnats_core::conf`, with command-line flags laid over it, as
//! nats-server merges them (a flag that was given wins over the file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rnats_core::auth::SYSTEM_ACCOUNT;
use rnats_core::conf::{self, ConfSource, FileOptions};
use rnats_core::server::{AuthConfig, ServerConfig};

use crate::flags::CliOptions;

/// The client port when none is given.
pub const DEFAULT_PORT: u16 = 4222;
pub const DEFAULT_HOST: &str = "0.0.0.0";

/// Reads includes from disk and variables from the process environment.
pub struct FsSource;

impl ConfSource for FsSource {
    fn read_include(&self, from: &str, path: &str) -> Result<(String, String), String> {
        // Like the reference, an include is relative to the including file's folder.
        let base = Path::new(from).parent().unwrap_or_else(|| Path::new(""));
        let resolved = base.join(path.trim_start_matches('/'));
        let resolved = if Path::new(path).is_absolute() && !resolved.exists() {
            PathBuf::from(path)
        } else {
            resolved
        };
        let text = std::fs::read_to_string(&resolved).map_err(|error| {
            format!(
                "open {}: {}",
                resolved.display(),
                crate::logging::os_error_text(&error)
            )
        })?;
        Ok((resolved.display().to_string(), text))
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A config file, loaded: its options, the harmless keys rnats ignores (to
/// warn about), and its SHA-256 (reported by `-t`, as the reference does).
pub struct LoadedConfig {
    pub options: FileOptions,
    pub ignored: Vec<conf::Unsupported>,
    pub sha256: String,
}

/// Read and parse `path`. The error is the text the reference prints, or,
/// for keys rnats does not support and must not run without, one line per
/// key naming it: start-up, `-t` and reload all refuse such a file.
pub fn load_config(path: &Path) -> Result<LoadedConfig, String> {
    use sha2::Digest;
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "open {}: {}",
            path.display(),
            crate::logging::os_error_text(&error)
        )
    })?;
    let name = path.display().to_string();
    let (options, unsupported) =
        conf::load_options(&name, &text, &FsSource).map_err(|error| error.to_string())?;
    let ignored = conf::refuse_unsupported(unsupported).map_err(|error| error.to_string())?;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let sha256 = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(LoadedConfig {
        options,
        ignored,
        sha256,
    })
}

/// Lay the file's options under the command line's: a flag that was given wins.
pub fn merge(cli: &CliOptions, file: &FileOptions) -> CliOptions {
    let mut merged = cli.clone();
    let non_empty = |text: &Option<String>| text.clone().filter(|t| !t.is_empty());
    merged.host = cli.host.clone().or_else(|| non_empty(&file.host));
    merged.port = cli.port.or(file.port);
    merged.http_port = cli.http_port.or(file.http_port);
    merged.https_port = cli.https_port.or(file.https_port);
    merged.max_traced_msg_len = cli.max_traced_msg_len.or(file.max_traced_msg_len);
    merged.server_name = cli.server_name.clone().or_else(|| file.server_name.clone());
    merged.client_advertise = cli
        .client_advertise
        .clone()
        .or_else(|| file.client_advertise.clone());
    merged.pid_file = cli
        .pid_file
        .clone()
        .or_else(|| file.pid_file.clone().map(PathBuf::from));
    merged.ports_file_dir = cli
        .ports_file_dir
        .clone()
        .or_else(|| file.ports_file_dir.clone().map(PathBuf::from));
    merged.log_file = cli
        .log_file
        .clone()
        .or_else(|| file.log_file.clone().map(PathBuf::from));
    merged.log_size_limit = cli.log_size_limit.or(file.log_size_limit);
    merged.logtime = cli.logtime.or(file.logtime);
    merged.logtime_utc = cli.logtime_utc.or(file.logtime_utc);
    merged.debug = cli.debug.or(file.debug);
    merged.trace = cli.trace.or(file.trace);
    if let Some(authorization) = &file.authorization {
        merged.username = cli.username.clone().or_else(|| authorization.user.clone());
        merged.password = cli
            .password
            .clone()
            .or_else(|| authorization.password.clone());
        merged.authorization = cli
            .authorization
            .clone()
            .or_else(|| authorization.token.clone());
    }
    merged
}

/// `-p`: absent or 0 is the default port; -1 asks the OS for a free one.
pub fn listen_port(options: &CliOptions) -> Result<u16, String> {
    match options.port {
        None | Some(0) => Ok(DEFAULT_PORT),
        Some(-1) => Ok(0),
        Some(port) => u16::try_from(port).map_err(|_| format!("invalid port {port}")),
    }
}

/// Who may connect: the token or single user of the merged options (flags
/// over the file's `authorization`), and the file's users, nkeys and
/// `no_auth_user`.
///
/// Default permissions are already in the users: the config reader gave
/// `authorization { default_permissions }` to that block's users and an
/// account's `default_permissions` to its users, as the reference does. They
/// are not handed on as `AuthConfig::default_permissions`, which would also
/// give them to account users and to token and single-user logins (the
/// reference gives those none).
pub fn auth_config(options: &CliOptions, file: &FileOptions) -> AuthConfig {
    let mut auth = match (&options.authorization, &options.username, &options.password) {
        (Some(token), _, _) if !token.is_empty() => AuthConfig::token(token.clone()),
        (_, Some(user), password) if !user.is_empty() => {
            AuthConfig::single_user(user.clone(), password.clone().unwrap_or_default())
        }
        _ => AuthConfig::default(),
    };
    let security = &file.security;
    auth.users = security.users.clone();
    auth.nkeys = security.nkeys.clone();
    auth.default_permissions = None;
    auth.no_auth_user = file.no_auth_user.clone().filter(|u| !u.is_empty());
    auth
}

/// (grace period, duration) of lame duck mode: the file's, or the reference's
/// defaults of 10 s and 2 min.
pub fn lame_duck_timing(file: &FileOptions) -> (Duration, Duration) {
    (
        file.lame_duck_grace_period
            .unwrap_or(Duration::from_secs(10)),
        file.lame_duck_duration
            .unwrap_or(Duration::from_secs(2 * 60)),
    )
}

/// The machine's configuration: `identity` (id, keys, address, version) with
/// the merged options and the file's limits laid over it.
pub fn server_config(
    options: &CliOptions,
    file: &FileOptions,
    identity: &ServerConfig,
) -> ServerConfig {
    let mut config = ServerConfig {
        server_name: options
            .server_name
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| identity.server_id.clone()),
        auth: auth_config(options, file),
        accounts: file.security.accounts.clone(),
        // TLS itself is set up once at start; a reload keeps the policy.
        tls: crate::tls::TlsSettings::policy(
            crate::tls::settings(options, file).ok().flatten().as_ref(),
        ),
        system_account: if file.security.no_system_account {
            None
        } else {
            Some(
                file.security
                    .system_account
                    .clone()
                    .unwrap_or_else(|| String::from(SYSTEM_ACCOUNT)),
            )
        },
        ..identity.clone()
    };
    let defaults = ServerConfig::default();
    config.max_payload = defaults.max_payload;
    config.max_control_line = defaults.max_control_line;
    config.max_pending = defaults.max_pending;
    config.max_connections = defaults.max_connections;
    config.max_subscriptions = defaults.max_subscriptions;
    config.ping_interval = defaults.ping_interval;
    config.ping_max = defaults.ping_max;
    config.auth_timeout = defaults.auth_timeout;
    apply_limits(&mut config, file);
    config.trace = options.trace.unwrap_or(false);
    config.max_traced_msg_len = options
        .max_traced_msg_len
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0);
    if let Some(base) = &file.http_base_path {
        config.monitoring.http_base_path = base.clone();
    }
    if let Some(deadline) = file.write_deadline.filter(|d| !d.is_zero()) {
        config.monitoring.write_deadline = deadline;
    }
    if let Ok(Some(tls)) = crate::tls::settings(options, file) {
        config.monitoring.tls_timeout = tls.timeout;
        // With TLS the default auth timeout leaves room for the handshake:
        // the TLS timeout plus a second, as the reference sets it.
        let explicit = file
            .authorization
            .as_ref()
            .and_then(|a| a.timeout_seconds)
            .is_some_and(|t| t > 0.0 && t.is_finite());
        if !explicit {
            config.auth_timeout = tls.timeout + Duration::from_secs(1);
        }
    }
    config
}

/// The monitoring listener's port: `None` without `-m`/`http_port`/`http`
/// (or with 0); -1 asks the OS for a free one.
pub fn http_port(options: &CliOptions) -> Result<Option<u16>, String> {
    match options.http_port {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(0)),
        Some(port) => u16::try_from(port)
            .map(Some)
            .map_err(|_| format!("invalid monitoring port: {port}")),
    }
}

/// The HTTPS monitoring port, as [`http_port`] reads the HTTP one.
pub fn https_port(options: &CliOptions) -> Result<Option<u16>, String> {
    match options.https_port {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(0)),
        Some(port) => u16::try_from(port)
            .map(Some)
            .map_err(|_| format!("invalid monitoring port: {port}")),
    }
}

/// The monitoring listener's host: the file's `http` host, else the client host.
pub fn http_host(options: &CliOptions, file: &FileOptions) -> String {
    file.http_host
        .clone()
        .filter(|host| !host.is_empty())
        .or_else(|| options.host.clone())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// Apply the file's limits to the machine's configuration (flags have no say here).
pub fn apply_limits(config: &mut ServerConfig, file: &FileOptions) {
    let positive = |value: i64| usize::try_from(value).ok().filter(|v| *v > 0);
    if let Some(max) = file.max_payload.and_then(|v| positive(i64::from(v))) {
        config.max_payload = max;
    }
    if let Some(max) = file.max_control_line.and_then(|v| positive(i64::from(v))) {
        config.max_control_line = max;
    }
    if let Some(max) = file.max_pending.and_then(positive) {
        config.max_pending = max;
    }
    if let Some(max) = file.max_connections {
        // A negative limit (a file's 0) means no limit.
        config.max_connections = usize::try_from(max).unwrap_or(0);
    }
    if let Some(max) = file.max_subscriptions {
        config.max_subscriptions = usize::try_from(max).unwrap_or(0);
    }
    if let Some(interval) = file.ping_interval.filter(|d| !d.is_zero()) {
        config.ping_interval = interval;
    }
    if let Some(max) = file
        .ping_max
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
    {
        config.ping_max = max;
    }
    if let Some(timeout) = file.authorization.as_ref().and_then(|a| a.timeout_seconds) {
        if timeout > 0.0 && timeout.is_finite() {
            config.auth_timeout = Duration::from_secs_f64(timeout);
        }
    }
}
