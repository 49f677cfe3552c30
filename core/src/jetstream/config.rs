//! JetStream's server-level and account-level settings, as the runtime hands
//! them to core (from `-js`/`-sd` and the `jetstream {}` blocks).
//!
//! Defaults are nats-server's: no configured limit means the limit is
//! computed from the machine (75% of memory, 1 TB of disk) by the runtime,
//! which knows the machine; core only sees the resulting numbers.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::auth::{AccountConfig, GLOBAL_ACCOUNT};
use crate::store::codec::is_sealed_file;
use crate::store::{CipherKind, KeyError, KeyRing, SyncPolicy};

/// The folder the reference always keeps its stores in, under the
/// configured store directory.
pub const STORE_SUBDIRECTORY: &str = "jetstream";

/// Server-wide JetStream settings (`jetstream { ... }`, `-js`, `-sd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// Where file-backed streams live. The runtime resolves the default
    /// (`<tmp>/nats/jetstream`) and appends `jetstream` as the reference does.
    pub store_dir: String,
    /// Bytes all memory-backed streams may hold (`max_memory_store`).
    pub max_memory: u64,
    /// Bytes all file-backed streams may hold (`max_file_store`).
    pub max_store: u64,
    /// `domain`: prefixes the API as `$JS.<domain>.API`.
    pub domain: Option<String>,
    /// `strict`: refuse API requests with unknown fields (the reference's
    /// default since 2.11 is true).
    pub strict: bool,
    /// When an acknowledged message is made durable (`sync_interval`).
    pub sync: SyncPolicy,
    /// `max_buffered_msgs` / `max_buffered_size`: how much a stream may hold
    /// in its inbound queue before it refuses publishes.
    pub max_buffered_msgs: Option<u64>,
    pub max_buffered_size: Option<u64>,
    /// Encryption at rest (`cipher`, `key`, `prev_key`).
    pub encryption: Option<Encryption>,
    /// `limits { }`: the server-wide limits on consumers, streams and
    /// batches.
    pub limits: ServerLimits,
}

impl JetStreamConfig {
    /// A configuration with these bounds and every other setting at the
    /// reference's default (strict API, acknowledged after fsync, no
    /// ingest limits, no encryption, no server limits): what tests, fuzz
    /// targets and the simulator start from.
    pub fn with_bounds(store_dir: &str, max_memory: u64, max_store: u64) -> Self {
        JetStreamConfig {
            store_dir: store_dir.to_string(),
            max_memory,
            max_store,
            domain: None,
            strict: true,
            sync: SyncPolicy::BeforeAck,
            max_buffered_msgs: None,
            max_buffered_size: None,
            encryption: None,
            limits: ServerLimits::default(),
        }
    }
}

/// `jetstream { limits { ... } }` as the reference keeps them
/// (`JSLimitOpts`): 0 is "not set" (no limit, or the default where there
/// is one); durations in nanoseconds. Monitoring shows them as set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerLimits {
    #[serde(skip_serializing_if = "is_zero")]
    pub max_request_batch: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
    /// Streams and consumers with more than one replica (none on one
    /// server).
    #[serde(skip_serializing_if = "is_zero")]
    pub max_ha_assets: i64,
    #[serde(rename = "max_duplicate_window", skip_serializing_if = "is_zero")]
    pub duplicate_window: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_batch_inflight_per_stream: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_batch_inflight_total: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_batch_size: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_batch_timeout: i64,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl ServerLimits {
    /// Open atomic batches per stream.
    pub fn batch_inflight_per_stream(&self) -> usize {
        positive_or(
            self.max_batch_inflight_per_stream,
            super::batch::MAX_INFLIGHT,
        )
    }

    /// Open atomic batches on the server.
    pub fn batch_inflight_total(&self) -> usize {
        positive_or(
            self.max_batch_inflight_total,
            super::batch::MAX_INFLIGHT_TOTAL,
        )
    }

    /// Open fast batches per stream (the same setting, another default).
    pub fn fast_batch_inflight_per_stream(&self) -> usize {
        positive_or(
            self.max_batch_inflight_per_stream,
            super::fast_batch::MAX_INFLIGHT,
        )
    }

    /// Open fast batches on the server (the same setting, another
    /// default).
    pub fn fast_batch_inflight_total(&self) -> usize {
        positive_or(
            self.max_batch_inflight_total,
            super::fast_batch::MAX_INFLIGHT_TOTAL,
        )
    }

    /// Messages in one atomic batch.
    pub fn batch_size(&self) -> u64 {
        positive_or(self.max_batch_size, super::batch::MAX_SIZE as usize) as u64
    }

    /// How long a batch may wait for its next message.
    pub fn batch_timeout(&self) -> core::time::Duration {
        match u64::try_from(self.max_batch_timeout) {
            Ok(nanos) if nanos > 0 => core::time::Duration::from_nanos(nanos),
            _ => super::batch::TIMEOUT,
        }
    }
}

fn positive_or(value: i64, default: usize) -> usize {
    usize::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// The cipher named by `jetstream { cipher }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cipher {
    #[default]
    ChaCha,
    Aes,
}

impl Cipher {
    /// As the reference names it in its start-up lines.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaCha => "ChaCha20-Poly1305",
            Cipher::Aes => "AES-GCM",
        }
    }
}

/// Encryption at rest: the key the stores are written with, and the key
/// they were written with before, when it is being rotated. Debug hides
/// the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Encryption {
    pub cipher: Cipher,
    pub key: String,
    pub prev_key: Option<String>,
}

impl Encryption {
    /// The keys the stores and definitions are sealed with.
    pub fn key_ring(&self) -> KeyRing {
        let cipher = match self.cipher {
            Cipher::ChaCha => CipherKind::ChaCha20Poly1305,
            Cipher::Aes => CipherKind::Aes256Gcm,
        };
        KeyRing::new(
            cipher,
            self.key.as_bytes(),
            self.prev_key.as_deref().map(str::as_bytes),
        )
    }
}

/// Seal a stream definition file's bytes under `encryption` (as they are
/// without it). `purpose` names the stream (the same for its current and
/// previous copy); `seed` draws the nonce.
pub fn seal_definition(
    encryption: Option<&Encryption>,
    purpose: &str,
    bytes: Vec<u8>,
    seed: u64,
) -> Vec<u8> {
    match encryption {
        Some(encryption) => encryption.key_ring().seal_file(purpose, &bytes, seed),
        None => bytes,
    }
}

/// A definition file's plain bytes, and whether it should be written again
/// (it was opened with the previous key, or written before encryption was
/// configured). A sealed file without a key, or that no key opens, is an
/// error: the reference refuses to load such a stream too ("unable to
/// recover keys").
pub fn open_definition(
    encryption: Option<&Encryption>,
    purpose: &str,
    bytes: &[u8],
) -> Result<(Vec<u8>, bool), KeyError> {
    match (encryption, is_sealed_file(bytes)) {
        (Some(encryption), true) => encryption.key_ring().open_file(purpose, bytes),
        (Some(_), false) => Ok((bytes.to_vec(), true)),
        (None, true) => Err(KeyError::NotConfigured),
        (None, false) => Ok((bytes.to_vec(), false)),
    }
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("cipher", &self.cipher)
            .field("key", &"[REDACTED]")
            .field("prev_key", &self.prev_key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// An account's JetStream limits (`accounts { A { jetstream { ... } } }`,
/// or `jetstream: enabled` for unlimited). `None` is unlimited (-1 in the
/// reference's JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountLimits {
    pub max_memory: Option<u64>,
    pub max_store: Option<u64>,
    pub max_streams: Option<u64>,
    pub max_consumers: Option<u64>,
    /// `max_bytes_required`: every stream must set `max_bytes`.
    pub max_bytes_required: bool,
    /// `max_ack_pending` for consumers that do not set one.
    pub max_ack_pending: Option<u64>,
    /// Per-stream caps on `max_bytes` by storage type.
    pub memory_max_stream_bytes: Option<u64>,
    pub store_max_stream_bytes: Option<u64>,
    /// Tiered limits (an account JWT's `tiered_limits`), by tier name
    /// (`R1`, `R3`, ...); `None`: flat limits, the fields above. A single
    /// server runs every stream at one replica: the fields above then hold
    /// the `R1` tier's limits, and a stream whose replicas name no tier is
    /// refused (`no JetStream default or applicable tiered limit
    /// present`), as the reference's tier selection refuses it.
    pub tiers: Option<BTreeMap<String, AccountLimits>>,
}

impl AccountLimits {
    /// Whether limits apply to a stream of `replicas` (0 counts as 1):
    /// flat limits always, tiered ones when its tier `R<n>` is named.
    pub fn has_tier_for(&self, replicas: i64) -> bool {
        self.tiers
            .as_ref()
            .is_none_or(|tiers| tiers.contains_key(&format!("R{}", replicas.max(1))))
    }
}

/// Whether `domain`, a JetStream domain name, is one the reference accepts.
pub fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && !domain
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>'))
}

/// The duration after which an unsynced write is flushed under
/// `sync_interval: <duration>`; `always` and rnats's default sync before
/// the ack.
pub fn sync_policy(interval: Option<Duration>) -> SyncPolicy {
    match interval {
        Some(every) if !every.is_zero() => SyncPolicy::Interval(every),
        _ => SyncPolicy::BeforeAck,
    }
}

/// JetStream as the file and the flags ask for it, before the machine's
/// defaults (memory, disk) are known. Built by
/// [`crate::conf::jetstream_request`]; the runtime then resolves the store
/// directory ([`JetStreamRequest::store_dir`]), measures the machine there,
/// and calls [`JetStreamRequest::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamRequest {
    /// As configured (`-sd`, `store_dir`); `None` or empty: a temporary one.
    pub store_dir: Option<String>,
    /// As configured: positive is a limit, 0 allows nothing, negative or
    /// `None` asks for the machine's default.
    pub max_memory: Option<i64>,
    pub max_store: Option<i64>,
    pub domain: Option<String>,
    pub strict: bool,
    pub sync: SyncPolicy,
    pub max_buffered_msgs: Option<u64>,
    pub max_buffered_size: Option<u64>,
    pub encryption: Option<Encryption>,
    pub limits: ServerLimits,
}

/// Where the stores live, and whether that is a temporary folder (the
/// reference then warns that data could be lost on reboot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDir {
    pub path: String,
    pub temporary: bool,
}

/// What the runtime measured: 75% of the machine's memory, and 75% of the
/// disk space available at the store directory (1 TB when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineDefaults {
    pub max_memory: u64,
    pub max_store: u64,
}

/// The disk limit the reference assumes when it cannot measure the disk.
pub const MAX_STORE_FALLBACK: u64 = 1 << 40;
/// The memory limit the reference assumes when it cannot measure memory.
pub const MAX_MEMORY_FALLBACK: u64 = 256 << 20;

impl JetStreamRequest {
    /// Whether a limit is taken from the machine: the reference's "dynamic
    /// configuration", unless both limits are configured and positive.
    pub fn is_dynamic(&self) -> bool {
        let positive = |limit: Option<i64>| limit.is_some_and(|l| l > 0);
        !(positive(self.max_memory) && positive(self.max_store))
    }

    /// The store directory: `<configured>/jetstream`, else under `temp_dir`
    /// (`<tmp>/nats/jetstream`; `<tmp>/jetstream` when both limits are set,
    /// as the reference does).
    pub fn store_dir(&self, temp_dir: &str) -> StoreDir {
        match self.store_dir.as_deref().filter(|dir| !dir.is_empty()) {
            Some(dir) => StoreDir {
                path: join_path(dir, STORE_SUBDIRECTORY),
                temporary: false,
            },
            None => {
                let base = if self.is_dynamic() {
                    join_path(temp_dir, "nats")
                } else {
                    temp_dir.to_string()
                };
                StoreDir {
                    path: join_path(&base, STORE_SUBDIRECTORY),
                    temporary: true,
                }
            }
        }
    }

    /// The settings core runs with: limits configured, or the machine's.
    pub fn resolve(&self, store_dir: &StoreDir, machine: MachineDefaults) -> JetStreamConfig {
        // A positive limit is taken as is; 0 configured allows nothing; the
        // rest (unset, negative) is the machine's.
        let limit = |configured: Option<i64>, default: u64| match configured {
            Some(limit) if limit >= 0 => limit.unsigned_abs(),
            _ => default,
        };
        let config = JetStreamConfig {
            store_dir: store_dir.path.clone(),
            max_memory: limit(self.max_memory, machine.max_memory),
            max_store: limit(self.max_store, machine.max_store),
            domain: self.domain.clone().filter(|d| !d.is_empty()),
            strict: self.strict,
            sync: self.sync,
            max_buffered_msgs: self.max_buffered_msgs,
            max_buffered_size: self.max_buffered_size,
            encryption: self.encryption.clone(),
            limits: self.limits,
        };
        assert!(config.store_dir.ends_with(STORE_SUBDIRECTORY));
        config
    }
}

/// Go's `filepath.Join`: the parts joined by `/`, then cleaned (repeated
/// separators, `.` and resolvable `..` removed).
pub fn join_path(base: &str, name: &str) -> String {
    let joined = if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    };
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => String::from("."),
        (false, false) => body,
    }
}

/// An account's JetStream limits, as the reference decides them, or `None`
/// when JetStream is off for it:
/// - off everywhere when the server's JetStream is off;
/// - never for the system account;
/// - the global account `$G` gets unlimited JetStream when no account but
///   the system account is configured;
/// - otherwise an account has what its `jetstream` says.
pub fn account_limits(
    jetstream_enabled: bool,
    accounts: &[AccountConfig],
    system_account: Option<&str>,
    account: &str,
) -> Option<AccountLimits> {
    if !jetstream_enabled || Some(account) == system_account {
        return None;
    }
    if account == GLOBAL_ACCOUNT {
        let only_global = accounts
            .iter()
            .all(|a| a.name == GLOBAL_ACCOUNT || Some(a.name.as_str()) == system_account);
        return only_global.then(AccountLimits::default);
    }
    accounts
        .iter()
        .find(|a| a.name == account)
        .and_then(|a| a.jetstream.clone())
}

/// The reference refuses to start when the system account asks for
/// JetStream while JetStream is on.
pub fn check_system_account(
    jetstream_enabled: bool,
    accounts: &[AccountConfig],
    system_account: Option<&str>,
) -> Result<(), &'static str> {
    let system_has_jetstream = accounts
        .iter()
        .any(|a| Some(a.name.as_str()) == system_account && a.jetstream.is_some());
    if jetstream_enabled && system_has_jetstream {
        return Err("Not allowed to enable JetStream on the system account");
    }
    Ok(())
}

/// Every account that gets JetStream on a server with JetStream on, with
/// its limits (decided by [`account_limits`]).
pub fn enabled_accounts(
    config: &crate::server::ServerConfig,
) -> std::collections::BTreeMap<String, AccountLimits> {
    let system = config.system_account.as_deref();
    // In operator mode every client is in a JWT account: `$G` has none.
    let global = config
        .auth
        .operator
        .is_none()
        .then(|| crate::auth::GLOBAL_ACCOUNT.to_string());
    let names = global
        .into_iter()
        .chain(config.accounts.iter().map(|account| account.name.clone()));
    names
        .filter_map(|name| {
            let limits = account_limits(true, &config.accounts, system, &name)?;
            Some((name, limits))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> JetStreamRequest {
        JetStreamRequest {
            store_dir: None,
            max_memory: None,
            max_store: None,
            domain: None,
            strict: true,
            sync: SyncPolicy::BeforeAck,
            max_buffered_msgs: None,
            max_buffered_size: None,
            encryption: None,
            limits: ServerLimits::default(),
        }
    }

    const MACHINE: MachineDefaults = MachineDefaults {
        max_memory: 3 << 30,
        max_store: 7 << 30,
    };

    #[test]
    fn store_directories_as_the_reference_places_them() {
        let mut js = request();
        assert_eq!(
            js.store_dir("/tmp"),
            StoreDir {
                path: String::from("/tmp/nats/jetstream"),
                temporary: true
            }
        );
        js.store_dir = Some(String::from("/data/"));
        assert_eq!(js.store_dir("/tmp").path, "/data/jetstream");
        assert!(!js.store_dir("/tmp").temporary);
        js.store_dir = Some(String::from("./data//x/../y/"));
        assert_eq!(js.store_dir("/tmp").path, "data/y/jetstream");
        // Both limits set and no directory: the reference's other default.
        js.store_dir = Some(String::new());
        js.max_memory = Some(1);
        js.max_store = Some(2);
        assert_eq!(js.store_dir("/tmp").path, "/tmp/jetstream");
        assert_eq!(join_path("/", "jetstream"), "/jetstream");
        assert_eq!(join_path("../a/..", "jetstream"), "../jetstream");
        assert_eq!(join_path("/..", "jetstream"), "/jetstream");
    }

    #[test]
    fn limits_come_from_the_file_else_the_machine() {
        let mut js = request();
        assert!(js.is_dynamic());
        let dir = js.store_dir("/tmp");
        let config = js.resolve(&dir, MACHINE);
        assert_eq!((config.max_memory, config.max_store), (3 << 30, 7 << 30));
        js.max_memory = Some(0);
        js.max_store = Some(-1);
        let config = js.resolve(&dir, MACHINE);
        assert_eq!((config.max_memory, config.max_store), (0, 7 << 30));
        js.max_memory = Some(5);
        js.max_store = Some(6);
        assert!(!js.is_dynamic());
        let config = js.resolve(&dir, MACHINE);
        assert_eq!((config.max_memory, config.max_store), (5, 6));
        assert_eq!(config.store_dir, "/tmp/nats/jetstream");
    }

    #[test]
    fn which_accounts_have_jetstream() {
        let with = |name: &str, limits: Option<AccountLimits>| AccountConfig {
            jetstream: limits,
            ..AccountConfig::new(name)
        };
        let sys = Some("SYS");
        // No accounts: only $G, unlimited.
        assert_eq!(
            account_limits(true, &[], sys, GLOBAL_ACCOUNT),
            Some(AccountLimits::default())
        );
        assert_eq!(account_limits(true, &[], sys, "SYS"), None);
        assert_eq!(account_limits(false, &[], sys, GLOBAL_ACCOUNT), None);
        // Only the system account configured: still $G.
        let accounts = [with("SYS", None)];
        assert!(account_limits(true, &accounts, sys, GLOBAL_ACCOUNT).is_some());
        // Any other account: only those that ask.
        let limited = AccountLimits {
            max_streams: Some(3),
            ..AccountLimits::default()
        };
        let accounts = [
            with("A", Some(AccountLimits::default())),
            with("B", None),
            with("C", Some(limited.clone())),
            with("SYS", None),
        ];
        assert_eq!(account_limits(true, &accounts, sys, GLOBAL_ACCOUNT), None);
        assert_eq!(
            account_limits(true, &accounts, sys, "A"),
            Some(AccountLimits::default())
        );
        assert_eq!(account_limits(true, &accounts, sys, "B"), None);
        assert_eq!(account_limits(true, &accounts, sys, "C"), Some(limited));
        assert_eq!(account_limits(true, &accounts, sys, "nobody"), None);
        assert_eq!(account_limits(false, &accounts, sys, "A"), None);
        assert!(check_system_account(true, &accounts, sys).is_ok());
        let accounts = [with("SYS", Some(AccountLimits::default()))];
        assert_eq!(account_limits(true, &accounts, sys, "SYS"), None);
        assert_eq!(
            check_system_account(true, &accounts, sys),
            Err("Not allowed to enable JetStream on the system account")
        );
        assert!(check_system_account(false, &accounts, sys).is_ok());
    }

    #[test]
    fn keys_are_redacted() {
        let encryption = Encryption {
            cipher: Cipher::Aes,
            key: String::from("s3cr3t"),
            prev_key: Some(String::from("0ld")),
        };
        let shown = format!("{encryption:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("0ld"),
            "{shown}"
        );
        assert_eq!(Cipher::ChaCha.name(), "ChaCha20-Poly1305");
    }
}
