//! The server's effective settings: the config file (`-c`) read from disk and
//! parsed by `rnats_core::conf`, with command-line flags laid over it, as
//! nats-server merges them (a flag that was given wins over the file). The
//! translation into the machine's `ServerConfig` is core's
//! (`rnats_core::conf::server_config`); this file reads files, merges the
//! runtime's own options (ports, files, logging) and hands the flags over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rnats_core::conf::{self, ConfSource, FileOptions, Overrides, TlsFlags};
use rnats_core::jetstream::config::JetStreamRequest;
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

    fn read_file(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path)
            .map_err(|error| format!("open {path}: {}", crate::logging::os_error_text(&error)))
    }

    fn fetch_account(
        &self,
        fetch: &rnats_core::auth::AccountFetch,
        attempt: usize,
    ) -> Result<String, String> {
        // The configuration is read again on a reload and for lame duck
        // timing: what was fetched at start is not fetched again (the
        // reference fetches once, at start).
        type Fetched = std::collections::BTreeMap<(String, usize), Result<String, String>>;
        static FETCHED: std::sync::Mutex<Fetched> = std::sync::Mutex::new(Fetched::new());
        let mut fetched = FETCHED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        fetched
            .entry((fetch.url.clone(), attempt))
            .or_insert_with(|| crate::account_fetch::fetch_blocking(fetch))
            .clone()
    }

    fn read_jwt_dir(&self, dir: &str) -> Result<(String, Vec<(String, String)>), String> {
        let os_error = |error: std::io::Error| crate::logging::os_error_text(&error);
        match std::fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(String::from(
                    "dir needs to point to an accessible directory",
                ))
            }
            Ok(_) => {}
            Err(_) => std::fs::create_dir_all(dir)
                .map_err(|error| format!("mkdir {dir}: {}", os_error(error)))?,
        }
        let mut jwts = Vec::new();
        for entry in
            std::fs::read_dir(dir).map_err(|error| format!("open {dir}: {}", os_error(error)))?
        {
            let path = entry.map_err(os_error)?.path();
            let (Some(key), Some("jwt")) = (
                path.file_stem().and_then(|stem| stem.to_str()),
                path.extension().and_then(|ext| ext.to_str()),
            ) else {
                continue;
            };
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|error| format!("open {}: {}", path.display(), os_error(error)))?;
            jwts.push((key.to_owned(), text));
        }
        let absolute = std::path::absolute(dir)
            .map(|path| path.display().to_string())
            .unwrap_or_else(|_| dir.to_owned());
        Ok((absolute, jwts))
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

/// What the command line set, for `rnats_core::conf`'s translation (which
/// lays it over the file). Given the merged options, the result is the same:
/// a merged value is the flag's when one was given.
pub fn overrides(options: &CliOptions) -> Overrides {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    Overrides {
        server_name: options.server_name.clone(),
        user: options.username.clone(),
        password: options.password.clone(),
        token: options.authorization.clone(),
        trace: options.trace,
        max_traced_msg_len: options.max_traced_msg_len,
        tls: TlsFlags {
            tls: options.tls == Some(true),
            verify: options.tls_verify == Some(true),
            cert_file: path(&options.tls_cert),
            key_file: path(&options.tls_key),
            ca_file: path(&options.tls_ca_cert),
        },
        jetstream: options.jetstream == Some(true),
        store_dir: options.store_dir.clone(),
    }
}

/// What the file and the flags ask of JetStream (see [`conf::jetstream_request`]).
pub fn jetstream_request(
    options: &CliOptions,
    file: &FileOptions,
) -> Result<Option<JetStreamRequest>, conf::TranslateError> {
    conf::jetstream_request(file, &overrides(options))
}

/// Who may connect (see [`conf::auth_config`]).
pub fn auth_config(options: &CliOptions, file: &FileOptions) -> AuthConfig {
    conf::auth_config(file, &overrides(options))
}

/// (grace period, duration) of lame duck mode (see [`conf::lame_duck_timing`]).
pub fn lame_duck_timing(file: &FileOptions) -> (Duration, Duration) {
    conf::lame_duck_timing(file)
}

/// The machine's configuration: `identity` (id, keys, address, version)
/// with the file and the flags laid over it (see [`conf::server_config`]).
pub fn server_config(
    options: &CliOptions,
    file: &FileOptions,
    identity: &ServerConfig,
) -> Result<ServerConfig, conf::TranslateError> {
    let mut config = conf::server_config(file, &overrides(options), identity)?;
    if let Some(mode) = config.auth.operator.as_mut() {
        mode.local_zone = local_zone();
    }
    Ok(config)
}

/// The machine's time zone (`TZ`, else `/etc/localtime`), by IANA name,
/// as Go's `time.Local` finds it; empty (UTC) when it has none.
fn local_zone() -> String {
    jiff::tz::TimeZone::try_system()
        .ok()
        .and_then(|zone| zone.iana_name().map(str::to_owned))
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("rnats-{name}-{}.conf", std::process::id()));
        std::fs::write(&path, text).expect("temp file");
        path
    }

    /// An encryption key is honoured and reaches JetStream; a key held in a
    /// TPM is not, and stops the server by name.
    #[test]
    fn an_encryption_key_is_taken_and_a_tpm_key_refuses_start_by_name() {
        let path = config_file(
            "js-key",
            "port: 4222\njetstream {\n  key: s3cr3t\n  prev_key: 0ld\n  cipher: aes\n}\n",
        );
        let loaded = load_config(&path).expect("valid");
        std::fs::remove_file(&path).unwrap();
        let cli = CliOptions {
            jetstream: Some(true),
            ..CliOptions::default()
        };
        let merged = merge(&cli, &loaded.options);
        let request = jetstream_request(&merged, &loaded.options)
            .unwrap()
            .unwrap();
        let encryption = request.encryption.expect("encryption configured");
        assert_eq!(
            encryption.cipher,
            rnats_core::jetstream::config::Cipher::Aes
        );
        assert_eq!(
            (encryption.key.as_str(), encryption.prev_key.as_deref()),
            ("s3cr3t", Some("0ld"))
        );
        let path = config_file(
            "js-tpm",
            "port: 4222\njetstream {\n  tpm { keys_file: x }\n}\n",
        );
        let error = load_config(&path).err().expect("refused");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            error,
            format!(
                "{}:3:3: configuration key \"jetstream.tpm\" is not supported yet",
                path.display()
            )
        );
    }

    #[test]
    fn the_flags_turn_jetstream_on_and_move_its_store() {
        let path = config_file("js-off", "jetstream: disabled\nstore_dir: /file\n");
        let loaded = load_config(&path).expect("valid");
        std::fs::remove_file(&path).unwrap();
        let mut cli = CliOptions::default();
        let merged = merge(&cli, &loaded.options);
        assert_eq!(jetstream_request(&merged, &loaded.options), Ok(None));
        cli.jetstream = Some(true);
        let merged = merge(&cli, &loaded.options);
        let request = jetstream_request(&merged, &loaded.options)
            .unwrap()
            .unwrap();
        assert_eq!(request.store_dir.as_deref(), Some("/file"));
        cli.store_dir = Some(String::from("/flag"));
        let merged = merge(&cli, &loaded.options);
        let request = jetstream_request(&merged, &loaded.options)
            .unwrap()
            .unwrap();
        assert_eq!(request.store_dir.as_deref(), Some("/flag"));
    }
}
