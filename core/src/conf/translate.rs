//! From what a config file set ([`FileOptions`]) and what the command line
//! set ([`Overrides`]) to the machine's [`ServerConfig`], as nats-server
//! merges them: a flag that was given wins over the file.
//!
//! Input: the file's options, the flags given (parsed by the runtime), and
//! the runtime's identity (server id, keys, address, version), or on reload
//! the running configuration. Output: the `ServerConfig`, or a typed error.
//! Pure, so the simulator and the fuzzers run the same translation as
//! rnats-server.
//!
//! Invariants:
//! - A flag that was given wins over the file; the file wins over defaults.
//! - Limits come from the file only (no flag sets them), each replacing the
//!   default only when positive, as the reference reads them.
//! - Users, nkeys and accounts come from the file; the single user or token
//!   from the flags, else from the file's `authorization`.
//! - JetStream is on when `-js` or the file says so (`-js=false` does not
//!   turn the file's off); `-sd` wins over the file's store directory.
//!   [`server_config`] keeps `base.jetstream`: the runtime resolves it from
//!   [`jetstream_request`] and the machine, and on a reload sets it as
//!   [`super::jetstream_reload`] decides.

use std::time::Duration;

use super::jetstream_options::SyncInterval;
use super::tls_options::DEFAULT_TLS_TIMEOUT;
use super::FileOptions;
use crate::auth::{AuthConfig, OperatorMode, GLOBAL_ACCOUNT, SYSTEM_ACCOUNT};
use crate::format::go_quote;
use crate::jetstream;
use crate::jetstream::config::{sync_policy, valid_domain, Encryption, JetStreamRequest};
use crate::server::{ServerConfig, TlsPolicy};
use crate::store::SyncPolicy;
use crate::subject::is_valid_subject;

/// The reference's lame duck grace period and duration.
const DEFAULT_LAME_DUCK_GRACE_PERIOD: Duration = Duration::from_secs(10);
const DEFAULT_LAME_DUCK_DURATION: Duration = Duration::from_secs(2 * 60);

/// What the command line set, for the options a config file also sets.
/// `None` (or `false` for the TLS switches) means the flag was not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `-n`/`--server_name`.
    pub server_name: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--pass`.
    pub password: Option<String>,
    /// `--auth`.
    pub token: Option<String>,
    /// `-V` (and its combinations).
    pub trace: Option<bool>,
    /// `--max_traced_msg_len`.
    pub max_traced_msg_len: Option<i64>,
    /// The `--tls*` flags; any of them replaces the file's `tls { }` block.
    pub tls: TlsFlags,
    /// `-js`/`--jetstream` given true: JetStream on, whatever the file says.
    pub jetstream: bool,
    /// `-sd`/`--store_dir` (an empty value is no override).
    pub store_dir: Option<String>,
}

/// `--tls`, `--tlsverify`, `--tlscert`, `--tlskey`, `--tlscacert`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFlags {
    pub tls: bool,
    pub verify: bool,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
}

impl TlsFlags {
    /// Whether the command line configures TLS (then the file's block is ignored).
    pub fn given(&self) -> bool {
        self.tls || self.verify || self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// The effective TLS settings of the client listener. Paths are as written;
/// the runtime reads the files.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub cert_file: String,
    pub key_file: String,
    pub ca_file: Option<String>,
    pub verify: bool,
    pub map: bool,
    pub timeout: Duration,
    pub handshake_first: bool,
    /// With `handshake_first`: how long to wait for the client's handshake
    /// before sending INFO in plain text after all (`None`: never).
    pub handshake_first_fallback: Option<Duration>,
    pub allow_non_tls: bool,
    /// `min_version: "1.3"`: TLS 1.2 is refused.
    pub require_tls13: bool,
}

impl TlsConfig {
    /// `handshake_first` without a fallback: every client must start with
    /// the handshake, whatever `allow_non_tls` says (as in the reference).
    pub fn handshake_first_only(&self) -> bool {
        self.handshake_first && self.handshake_first_fallback.is_none()
    }

    /// A client that does not start a TLS handshake after INFO is served in
    /// plain text (`allow_non_tls`).
    pub fn plain_text_allowed(&self) -> bool {
        self.allow_non_tls && !self.handshake_first_only()
    }

    /// What the machine is told (INFO's `tls_required`, `tls_available`, ...).
    pub fn policy(&self) -> TlsPolicy {
        TlsPolicy {
            required: true,
            verify: self.verify,
            map: self.map,
            allow_non_tls: self.plain_text_allowed(),
        }
    }
}

/// Settings that cannot be turned into a configuration, in the reference's words.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// `--tls*` flags without `--tlscert`.
    #[error("TLS Server certificate must be present and valid")]
    TlsCertificateMissing,
    /// `--tls*` flags without `--tlskey`.
    #[error("TLS Server private key must be present and valid")]
    TlsKeyMissing,
    /// A `tls { }` block without `cert_file` and `key_file`.
    #[error("missing 'cert_file' or 'key_file' in TLS configuration")]
    TlsFilesMissing,
    /// A JetStream `domain` that makes `$JS.<domain>.API.>` no subject;
    /// holds that subject, quoted as Go's `%q` does.
    #[error("invalid domain name: derived {0} is not a valid subject")]
    DomainNotASubject(String),
    /// A JetStream `domain` with `.`, `*`, `>` or white space.
    #[error("invalid domain name: may not contain ., * or >")]
    InvalidDomain,
    /// The system account configured with `jetstream` while JetStream is on.
    #[error("Not allowed to enable JetStream on the system account")]
    JetStreamOnSystemAccount,
    /// Operator mode as the reference checks it at start (or a part of it
    /// rnats does not apply yet, named).
    #[error("{0}")]
    Operator(String),
}

/// What the file and the flags ask of JetStream (`None`: off), checked as
/// the reference checks it at start. The runtime resolves the store
/// directory and the machine's defaults from it
/// ([`JetStreamRequest::store_dir`], [`JetStreamRequest::resolve`]).
pub fn jetstream_request(
    file: &FileOptions,
    overrides: &Overrides,
) -> Result<Option<JetStreamRequest>, TranslateError> {
    let options = &file.jetstream;
    if !(overrides.jetstream || options.enabled == Some(true)) {
        return Ok(None);
    }
    let domain = options.domain.clone().filter(|d| !d.is_empty());
    if let Some(domain) = &domain {
        let derived = format!("$JS.{domain}.API.>");
        if !is_valid_subject(derived.as_bytes()) {
            return Err(TranslateError::DomainNotASubject(go_quote(
                derived.as_bytes(),
            )));
        }
        if !valid_domain(domain) {
            return Err(TranslateError::InvalidDomain);
        }
    }
    let system_account = system_account(file);
    jetstream::config::check_system_account(
        true,
        &file.security.accounts,
        system_account.as_deref(),
    )
    .map_err(|_| TranslateError::JetStreamOnSystemAccount)?;
    let positive =
        |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0);
    let non_empty = |text: &Option<String>| text.clone().filter(|t| !t.is_empty());
    let sync = match options.sync {
        None | Some(SyncInterval::Always) => SyncPolicy::BeforeAck,
        Some(SyncInterval::Every(every)) => sync_policy(Some(every)),
    };
    let encryption = non_empty(&options.key).map(|key| Encryption {
        cipher: options.cipher.unwrap_or_default(),
        key,
        prev_key: non_empty(&options.prev_key),
    });
    Ok(Some(JetStreamRequest {
        store_dir: non_empty(&overrides.store_dir).or_else(|| non_empty(&options.store_dir)),
        max_memory: options.max_memory,
        max_store: options.max_store,
        domain,
        strict: options.strict.unwrap_or(true),
        sync,
        max_buffered_msgs: positive(options.max_buffered_msgs),
        max_buffered_size: positive(options.max_buffered_size),
        encryption,
        limits: options.limits,
    }))
}

/// The system account's name: the file's, `$SYS` by default, none with
/// `no_system_account`.
pub fn system_account(file: &FileOptions) -> Option<String> {
    if file.security.no_system_account {
        return None;
    }
    Some(
        file.security
            .system_account
            .clone()
            .unwrap_or_else(|| String::from(SYSTEM_ACCOUNT)),
    )
}

/// The client listener's TLS settings: the flags' if any was given, else
/// the file's `tls { }` block; `None` without either.
pub fn tls_config(
    file: &FileOptions,
    overrides: &Overrides,
) -> Result<Option<TlsConfig>, TranslateError> {
    let flags = &overrides.tls;
    if flags.given() {
        let cert_file = flags
            .cert_file
            .clone()
            .ok_or(TranslateError::TlsCertificateMissing)?;
        let key_file = flags
            .key_file
            .clone()
            .ok_or(TranslateError::TlsKeyMissing)?;
        return Ok(Some(TlsConfig {
            cert_file,
            key_file,
            ca_file: flags.ca_file.clone(),
            verify: flags.verify,
            map: false,
            timeout: DEFAULT_TLS_TIMEOUT,
            handshake_first: false,
            handshake_first_fallback: None,
            allow_non_tls: false,
            require_tls13: false,
        }));
    }
    let Some(tls) = &file.tls else {
        return Ok(None);
    };
    let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
        return Err(TranslateError::TlsFilesMissing);
    };
    Ok(Some(TlsConfig {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        ca_file: tls.ca_file.clone(),
        verify: tls.verify || tls.verify_and_map,
        map: tls.verify_and_map,
        timeout: tls.timeout.unwrap_or(DEFAULT_TLS_TIMEOUT),
        handshake_first: tls.handshake_first,
        handshake_first_fallback: tls.handshake_first_fallback.filter(|_| tls.handshake_first),
        allow_non_tls: file.allow_non_tls.unwrap_or(false),
        require_tls13: tls.require_tls13,
    }))
}

/// Who may connect: the token or single user of the flags (else of the
/// file's `authorization`), and the file's users, nkeys and `no_auth_user`.
///
/// Default permissions are already in the users: the config reader gave
/// `authorization { default_permissions }` to that block's users and an
/// account's `default_permissions` to its users, as the reference does. They
/// are not handed on as `AuthConfig::default_permissions`, which would also
/// give them to account users and to token and single-user logins (the
/// reference gives those none).
pub fn auth_config(file: &FileOptions, overrides: &Overrides) -> AuthConfig {
    let from_file = file.authorization.as_ref();
    let pick = |flag: &Option<String>, in_file: Option<&Option<String>>| {
        flag.clone().or_else(|| in_file.and_then(Clone::clone))
    };
    let token = pick(&overrides.token, from_file.map(|a| &a.token));
    let user = pick(&overrides.user, from_file.map(|a| &a.user));
    let password = pick(&overrides.password, from_file.map(|a| &a.password));
    let mut auth = match (&token, &user) {
        (Some(token), _) if !token.is_empty() => AuthConfig::token(token.clone()),
        (_, Some(user)) if !user.is_empty() => {
            AuthConfig::single_user(user.clone(), password.unwrap_or_default())
        }
        _ => AuthConfig::default(),
    };
    let security = &file.security;
    auth.users = security.users.clone();
    auth.nkeys = security.nkeys.clone();
    auth.default_permissions = None;
    auth.no_auth_user = file.no_auth_user.clone().filter(|u| !u.is_empty());
    auth.callout = from_file.and_then(|a| a.callout.clone());
    auth
}

/// (grace period, duration) of lame duck mode: the file's, or the
/// reference's defaults of 10 s and 2 min.
pub fn lame_duck_timing(file: &FileOptions) -> (Duration, Duration) {
    (
        file.lame_duck_grace_period
            .unwrap_or(DEFAULT_LAME_DUCK_GRACE_PERIOD),
        file.lame_duck_duration
            .unwrap_or(DEFAULT_LAME_DUCK_DURATION),
    )
}

/// The websocket listener a file asks for: where to bind, the machine's
/// view of it (its `port` filled in once bound) and its TLS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketRequest {
    pub host: String,
    /// As configured; -1 asks for a random port.
    pub port: i64,
    pub config: crate::websocket::WebSocketConfig,
    pub tls: Option<TlsConfig>,
}

/// The file's `websocket { }` block as a listener to open (`None`: no
/// block, or no port), checked as the reference checks it at start.
pub fn websocket_request(file: &FileOptions) -> Result<Option<WebSocketRequest>, String> {
    let Some(ws) = &file.websocket else {
        return Ok(None);
    };
    super::websocket_options::check_websocket(
        ws,
        &file.security,
        !file.operator_jwts.is_empty() || !file.trusted_keys.is_empty(),
    )?;
    let port = ws.port.unwrap_or(0);
    if port == 0 {
        return Ok(None);
    }
    let tls = match &ws.tls {
        None => None,
        Some(tls) => {
            let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
                return Err(TranslateError::TlsFilesMissing.to_string());
            };
            Some(TlsConfig {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                ca_file: tls.ca_file.clone(),
                verify: tls.verify || tls.verify_and_map,
                map: tls.verify_and_map,
                timeout: tls.timeout.unwrap_or(DEFAULT_TLS_TIMEOUT),
                handshake_first: false,
                handshake_first_fallback: None,
                allow_non_tls: false,
                require_tls13: tls.require_tls13,
            })
        }
    };
    let host = ws
        .host
        .clone()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| crate::websocket::DEFAULT_HOST.to_string());
    let config = crate::websocket::WebSocketConfig {
        host: host.clone(),
        port: 0,
        advertise: ws.advertise.clone(),
        tls: tls.is_some(),
        no_tls: ws.no_tls,
        same_origin: ws.same_origin,
        allowed_origins: ws.allowed_origins.clone(),
        handshake_timeout: ws.handshake_timeout.unwrap_or_default(),
        ping_interval: ws.ping_interval.unwrap_or_default(),
        headers: ws.headers.clone(),
        compression: ws.compression,
        auth: ws.auth.clone(),
        cookies: ws.cookies.clone(),
    };
    Ok(Some(WebSocketRequest {
        host,
        port,
        config,
        tls,
    }))
}

/// The machine's configuration: `base` (the server's identity and what the
/// runtime sets itself, such as the monitoring listener; on reload the
/// running configuration) with the file's options and the flags laid over it.
pub fn server_config(
    file: &FileOptions,
    overrides: &Overrides,
    base: &ServerConfig,
) -> Result<ServerConfig, TranslateError> {
    let tls = tls_config(file, overrides)?;
    let server_name = overrides
        .server_name
        .clone()
        .or_else(|| file.server_name.clone())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| base.identity.server_id.clone());
    let mut config = ServerConfig {
        server_name,
        auth: auth_config(file, overrides),
        accounts: file.security.accounts.clone(),
        tls: tls.as_ref().map(TlsConfig::policy).unwrap_or_default(),
        system_account: system_account(file),
        ..base.clone()
    };
    if !file.operator_jwts.is_empty() || !file.trusted_keys.is_empty() {
        apply_operator_mode(&mut config, file)?;
    }
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
    config.trace = overrides.trace.or(file.trace).unwrap_or(false);
    config.max_traced_msg_len = overrides
        .max_traced_msg_len
        .or(file.max_traced_msg_len)
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0);
    if let Some(base) = &file.http_base_path {
        config.monitoring.http_base_path = base.clone();
    }
    if let Some(deadline) = file.write_deadline.filter(|d| !d.is_zero()) {
        config.monitoring.write_deadline = deadline;
    }
    if let Some(tls) = &tls {
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
    Ok(config)
}

/// Operator mode: the accounts come from the operators' JWTs (the
/// `MEMORY` resolver's preloads) and users log in with JWTs only.
fn apply_operator_mode(
    config: &mut ServerConfig,
    file: &FileOptions,
) -> Result<(), TranslateError> {
    let security = &file.security;
    let configured_accounts = security
        .accounts
        .iter()
        .any(|account| account.name != GLOBAL_ACCOUNT);
    if file.operator_jwts.is_empty()
        && (configured_accounts
            || !security.users.is_empty()
            || !security.nkeys.is_empty()
            || file
                .authorization
                .as_ref()
                .is_some_and(|auth| auth.callout.is_some()))
    {
        // Without an operator the reference lets these stand beside the
        // trusted keys; how they mix is not built.
        return Err(TranslateError::Operator(String::from(
            "configuration key \"trusted_keys\" is not supported yet: without an operator, beside configured accounts, users or an auth callout",
        )));
    }
    if configured_accounts {
        return Err(TranslateError::Operator(String::from(
            "operators do not allow Accounts to be configured directly",
        )));
    }
    if file
        .authorization
        .as_ref()
        .is_some_and(|auth| auth.callout.is_some())
    {
        return Err(TranslateError::Operator(String::from(
            "operators do not allow authorization callouts to be configured directly",
        )));
    }
    let options = super::options::operator_options(file);
    let other_auth = !security.users.is_empty() || !security.nkeys.is_empty();
    let built = OperatorMode::build(&options, other_auth).map_err(TranslateError::Operator)?;
    config.accounts = built.accounts;
    if !security.no_system_account {
        config.system_account = Some(
            built
                .system_account
                .unwrap_or_else(|| String::from(SYSTEM_ACCOUNT)),
        );
    }
    config.auth.operator = Some(built.mode);
    Ok(())
}

/// The file's limits over the defaults (no flag sets them).
fn apply_limits(config: &mut ServerConfig, file: &FileOptions) {
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

#[cfg(test)]
mod tests {
    use super::super::{load_options, NoSource};
    use super::*;
    use crate::server::ServerIdentity;

    fn file(text: &str) -> FileOptions {
        load_options("t.conf", text, &NoSource).expect("valid").0
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let options = file(
            "server_name: from_file\nmax_payload: 64\ntrace: true\n\
             authorization { user: a, password: b }\nwrite_deadline: \"2s\"",
        );
        let identity = ServerConfig {
            identity: ServerIdentity {
                server_id: String::from("NID"),
                ..ServerIdentity::default()
            },
            ..ServerConfig::default()
        };
        let config = server_config(&options, &Overrides::default(), &identity).unwrap();
        assert_eq!(config.server_name, "from_file");
        assert_eq!(config.max_payload, 64);
        assert!(config.trace);
        assert_eq!(config.monitoring.write_deadline, Duration::from_secs(2));
        let overrides = Overrides {
            server_name: Some(String::from("from_flag")),
            trace: Some(false),
            user: Some(String::from("flag_user")),
            ..Overrides::default()
        };
        let config = server_config(&options, &overrides, &identity).unwrap();
        assert_eq!(config.server_name, "from_flag");
        assert!(!config.trace);
        assert_eq!(config.max_payload, 64, "no flag sets limits");
        // The flag's user, the file's password.
        let auth = auth_config(&options, &overrides);
        assert!(auth.has_plaintext_passwords());
        let config = server_config(&FileOptions::default(), &Overrides::default(), &identity)
            .expect("no file");
        assert_eq!(config.server_name, "NID");
        assert_eq!(config.max_payload, ServerConfig::default().max_payload);
    }

    #[test]
    fn jetstream_from_the_file_or_the_flags() {
        let none = Overrides::default();
        assert_eq!(jetstream_request(&file("port: 1"), &none), Ok(None));
        assert_eq!(
            jetstream_request(&file("jetstream: disabled"), &none),
            Ok(None)
        );
        let js_flag = Overrides {
            jetstream: true,
            store_dir: Some(String::from("/flag")),
            ..Overrides::default()
        };
        let request = jetstream_request(&file("jetstream: disabled\nstore_dir: /file"), &js_flag)
            .unwrap()
            .expect("-js wins");
        assert_eq!(request.store_dir.as_deref(), Some("/flag"));
        assert!(request.strict);
        assert_eq!(request.sync, SyncPolicy::BeforeAck);
        let only_sd = Overrides {
            store_dir: Some(String::from("/flag")),
            ..Overrides::default()
        };
        assert_eq!(jetstream_request(&file("port: 1"), &only_sd), Ok(None));
        let empty_sd = Overrides {
            jetstream: true,
            store_dir: Some(String::new()),
            ..Overrides::default()
        };
        let options = file(
            "jetstream { store_dir: /file, max_mem: 1G, max_file: -1, domain: hub, strict: false,\n\
             sync_interval: \"1s\", max_buffered_msgs: 0, max_buffered_size: 1K, cipher: aes }",
        );
        let request = jetstream_request(&options, &empty_sd).unwrap().unwrap();
        assert_eq!(
            request,
            JetStreamRequest {
                store_dir: Some(String::from("/file")),
                max_memory: Some(1_000_000_000),
                max_store: Some(-1),
                domain: Some(String::from("hub")),
                strict: false,
                sync: SyncPolicy::Interval(Duration::from_secs(1)),
                max_buffered_msgs: None,
                max_buffered_size: Some(1000),
                encryption: None,
                limits: Default::default(),
            }
        );
        let request = jetstream_request(&file("jetstream { sync: always }"), &none)
            .unwrap()
            .unwrap();
        assert_eq!(request.sync, SyncPolicy::BeforeAck);
    }

    #[test]
    fn jetstream_checks_at_start() {
        let none = Overrides::default();
        let error = |text: &str| {
            jetstream_request(&file(text), &none)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("jetstream { domain: \"a.b\" }"),
            "invalid domain name: may not contain ., * or >"
        );
        assert_eq!(
            error("jetstream { domain: \"a b\" }"),
            "invalid domain name: derived \"$JS.a b.API.>\" is not a valid subject"
        );
        assert_eq!(
            error("jetstream { domain: \">\" }"),
            "invalid domain name: derived \"$JS.>.API.>\" is not a valid subject"
        );
        assert_eq!(
            error(
                "jetstream: enabled\naccounts { SYS { jetstream: enabled } }\nsystem_account: SYS"
            ),
            "Not allowed to enable JetStream on the system account"
        );
        assert_eq!(
            error("jetstream: enabled\naccounts { $SYS { jetstream: enabled } }"),
            "Not allowed to enable JetStream on the system account"
        );
        assert!(jetstream_request(
            &file("accounts { SYS { jetstream: enabled } }\nsystem_account: SYS"),
            &none
        )
        .is_ok());
    }

    #[test]
    fn tls_from_the_file_or_the_flags() {
        let options = file(
            "tls { cert_file: c, key_file: k, handshake_first: \"300ms\" }\nallow_non_tls: true",
        );
        let tls = tls_config(&options, &Overrides::default())
            .unwrap()
            .unwrap();
        assert!(tls.plain_text_allowed() && !tls.handshake_first_only());
        let config =
            server_config(&options, &Overrides::default(), &ServerConfig::default()).unwrap();
        assert!(config.tls.required && config.tls.allow_non_tls);
        assert_eq!(config.auth_timeout, Duration::from_secs(3));
        let flags = Overrides {
            tls: TlsFlags {
                tls: true,
                cert_file: Some(String::from("c")),
                ..TlsFlags::default()
            },
            ..Overrides::default()
        };
        assert_eq!(
            tls_config(&options, &flags),
            Err(TranslateError::TlsKeyMissing)
        );
        assert_eq!(
            server_config(&FileOptions::default(), &flags, &ServerConfig::default())
                .unwrap_err()
                .to_string(),
            "TLS Server private key must be present and valid"
        );
    }
}
