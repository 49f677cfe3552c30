//! JetStream's server-level and account-level settings, as the runtime hands
//! them to core (from `-js`/`-sd` and the `jetstream {}` blocks).
//!
//! Defaults are nats-server's: no configured limit means the limit is
//! computed from the machine (75% of memory, 1 TB of disk) by the runtime,
//! which knows the machine; core only sees the resulting numbers.

use std::time::Duration;

use crate::store::SyncPolicy;

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
}

/// The cipher named by `jetstream { cipher }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cipher {
    #[default]
    ChaCha,
    Aes,
}

/// Encryption at rest: the key the stores are written with, and the key
/// they were written with before, when it is being rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    pub cipher: Cipher,
    pub key: String,
    pub prev_key: Option<String>,
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

/// The accounts that get JetStream, with their limits: those configured
/// with `jetstream`, or, when none is, the global account `$G` without
/// limits (as the reference does). The system account never has it.
pub fn enabled_accounts(
    config: &crate::server::ServerConfig,
) -> std::collections::BTreeMap<String, AccountLimits> {
    let system = config.system_account.as_deref();
    let configured: std::collections::BTreeMap<String, AccountLimits> = config
        .accounts
        .iter()
        .filter(|account| Some(account.name.as_str()) != system)
        .filter_map(|account| Some((account.name.clone(), account.jetstream.clone()?)))
        .collect();
    if configured.is_empty() {
        let mut global = std::collections::BTreeMap::new();
        global.insert(
            crate::auth::GLOBAL_ACCOUNT.to_string(),
            AccountLimits::default(),
        );
        return global;
    }
    configured
}
