//! `$JS.API.INFO`: an account's JetStream usage, limits and API counters.
//!
//! Invariants: limits are -1 when unlimited; `tiers` is written only when
//! the account has tiered limits, `domain` only when the server has one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{is_zero_u64, null_as_default};
use crate::jetstream::config::AccountLimits;

/// Usage and limits of one tier (or the account's totals).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTier {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub streams: usize,
    pub consumers: usize,
    pub limits: AccountLimitsInfo,
}

/// An account's limits as `$JS.API.INFO` writes them (-1 is unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimitsInfo {
    pub max_memory: i64,
    pub max_storage: i64,
    pub max_streams: i64,
    pub max_consumers: i64,
    pub max_ack_pending: i64,
    pub memory_max_stream_bytes: i64,
    pub storage_max_stream_bytes: i64,
    pub max_bytes_required: bool,
}

impl AccountLimitsInfo {
    /// Limits not set at all (the reference's zero value, not -1).
    pub fn zero() -> Self {
        AccountLimitsInfo {
            max_memory: 0,
            max_storage: 0,
            max_streams: 0,
            max_consumers: 0,
            max_ack_pending: 0,
            memory_max_stream_bytes: 0,
            storage_max_stream_bytes: 0,
            max_bytes_required: false,
        }
    }
}

impl Default for AccountLimitsInfo {
    /// Everything unlimited.
    fn default() -> Self {
        AccountLimitsInfo::from(&AccountLimits::default())
    }
}

impl From<&AccountLimits> for AccountLimitsInfo {
    fn from(limits: &AccountLimits) -> Self {
        let wire = |limit: Option<u64>| limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        AccountLimitsInfo {
            max_memory: wire(limits.max_memory),
            max_storage: wire(limits.max_store),
            max_streams: wire(limits.max_streams),
            max_consumers: wire(limits.max_consumers),
            max_ack_pending: wire(limits.max_ack_pending),
            memory_max_stream_bytes: wire(limits.memory_max_stream_bytes),
            storage_max_stream_bytes: wire(limits.store_max_stream_bytes),
            max_bytes_required: limits.max_bytes_required,
        }
    }
}

/// The API's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiStats {
    /// The API level this server implements (5 for v2.15).
    pub level: u32,
    pub total: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub inflight: u64,
}

/// The account's JetStream statistics (the body of the `$JS.API.INFO`
/// reply, after its `type`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    #[serde(flatten)]
    pub totals: AccountTier,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub domain: String,
    pub api: ApiStats,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tiers: BTreeMap<String, AccountTier>,
}
