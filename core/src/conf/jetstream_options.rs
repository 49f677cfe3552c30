//! `jetstream` (a switch or a block), the top-level `store_dir`, and an
//! account's `jetstream`, as nats-server v2.15.1 reads them
//! (`parseJetStream`, `parseJetStreamForAccount`, `getStorageSize`).
//!
//! Input: the entries of the parsed tree. Output: [`JetStreamOptions`] in
//! [`FileOptions`](super::FileOptions) (what the file set, nothing resolved:
//! the defaults depend on the machine and are the runtime's), an account's
//! [`AccountLimits`], and the keys rnats does not honour as [`Unsupported`].
//!
//! Invariants:
//! - Sizes are read as the reference reads them: an integer (the lexer has
//!   already applied `1G`, `512MB`), or a string of digits with one of
//!   `K M G T` (powers of 1024). A size that overflows is an error, where the
//!   reference wraps.
//! - Encryption at rest (`key`, `prev_key`, `cipher`) is honoured by the
//!   stores; a `tpm`-held key is not, so it refuses start-up by name.

use std::fmt;
use std::time::Duration;

use super::auth_options::{go_type_name, go_value_text};
use super::options::{
    boolean, duration, integer, invalid, string, unknown_field, ConfWarning, Unsupported,
};
use super::value::{MapEntry, ValueKind};
use super::ConfError;
use crate::jetstream::config::{AccountLimits, Cipher, ServerLimits};

/// What the file says about JetStream. `None` means it did not say.
#[derive(Clone, Default, PartialEq)]
pub struct JetStreamOptions {
    /// `jetstream: enabled|disabled|true|false`, or a block (on unless its
    /// `enabled: false`).
    pub enabled: Option<bool>,
    /// `store_dir` at the top level or in the block (`store`, `storedir`).
    pub store_dir: Option<String>,
    /// `max_memory_store` (`max_mem_store`, `max_mem`). Negative asks for
    /// the default; 0 allows no memory storage.
    pub max_memory: Option<i64>,
    /// `max_file_store` (`max_file`), read like `max_memory`.
    pub max_store: Option<i64>,
    pub domain: Option<String>,
    pub strict: Option<bool>,
    /// `sync_interval` (`sync`).
    pub sync: Option<SyncInterval>,
    pub max_buffered_msgs: Option<i64>,
    pub max_buffered_size: Option<i64>,
    pub cipher: Option<Cipher>,
    /// `key` (`ek`, `encryption_key`); empty means no encryption.
    pub key: Option<String>,
    /// `prev_key` (`prev_ek`, `prev_encryption_key`): the key the stores
    /// were encrypted with before `key` (rotation).
    pub prev_key: Option<String>,
    /// `limits { }`.
    pub limits: ServerLimits,
}

impl fmt::Debug for JetStreamOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("JetStreamOptions")
            .field("enabled", &self.enabled)
            .field("store_dir", &self.store_dir)
            .field("max_memory", &self.max_memory)
            .field("max_store", &self.max_store)
            .field("domain", &self.domain)
            .field("strict", &self.strict)
            .field("sync", &self.sync)
            .field("max_buffered_msgs", &self.max_buffered_msgs)
            .field("max_buffered_size", &self.max_buffered_size)
            .field("cipher", &self.cipher)
            .field("key", &redacted(&self.key))
            .field("prev_key", &redacted(&self.prev_key))
            .field("limits", &self.limits)
            .finish()
    }
}

/// `sync_interval: always` or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncInterval {
    Always,
    Every(Duration),
}

/// Keys of the block that tune what rnats does not have (clustering, the
/// meta group, disk concurrency): validated, then ignored with a warning.
pub(super) const HARMLESS_JETSTREAM_KEYS: &[&str] = &[
    "jetstream.extension_hint",
    "jetstream.unique_tag",
    "jetstream.max_outstanding_catchup",
    "jetstream.meta_compact",
    "jetstream.meta_compact_size",
    "jetstream.meta_compact_sync",
    "jetstream.max_concurrent_io",
];

/// `limits { max_ack_pending, max_ha_assets, max_request_batch,
/// duplicate_window, batch { max_inflight_per_stream, max_inflight_total,
/// max_msgs, timeout } }`, with the reference's errors.
fn parse_limits(entry: &MapEntry) -> Result<ServerLimits, ConfError> {
    let fields = entry.value.as_map().ok_or_else(|| {
        invalid(
            entry,
            &format!(
                "Expected a map to define JetStreamLimits, got {}",
                go_type_name(&entry.value)
            ),
        )
    })?;
    let mut limits = ServerLimits::default();
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "max_ack_pending" => limits.max_ack_pending = integer(field)?,
            "max_ha_assets" => limits.max_ha_assets = integer(field)?,
            "max_request_batch" => limits.max_request_batch = integer(field)?,
            "duplicate_window" => limits.duplicate_window = go_duration(field)?,
            "batch" => {
                let batch = field.value.as_map().ok_or_else(|| {
                    invalid(
                        field,
                        &format!(
                            "Expected a map to define batch limits, got {}",
                            go_type_name(&field.value)
                        ),
                    )
                })?;
                for item in batch {
                    match item.key.to_ascii_lowercase().as_str() {
                        "max_inflight_per_stream" => {
                            limits.max_batch_inflight_per_stream = integer(item)?
                        }
                        "max_inflight_total" => limits.max_batch_inflight_total = integer(item)?,
                        "max_msgs" => limits.max_batch_size = integer(item)?,
                        "timeout" => limits.max_batch_timeout = go_duration(item)?,
                        _ if item.is_referenced() => {}
                        _ => return Err(unknown_field(item)),
                    }
                }
            }
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    Ok(limits)
}

/// A duration written as Go's `time.ParseDuration` takes it (a string).
fn go_duration(field: &MapEntry) -> Result<i64, ConfError> {
    let text = field
        .value
        .as_str()
        .ok_or_else(|| super::options::wrong_type(field, "a duration string"))?;
    super::value::parse_go_duration(text).map_err(|error| invalid(field, &error))
}

/// The reference's bounds on `max_concurrent_io`.
const CONCURRENT_IO_MIN: i64 = 4;
const CONCURRENT_IO_MAX: i64 = 8192;

/// The top-level `store_dir` (`storedir`). Like the reference, a second
/// non-empty store directory, here or in the block, is an error.
pub(super) fn parse_top_level_store_dir(
    entry: &MapEntry,
    options: &mut JetStreamOptions,
) -> Result<(), ConfError> {
    set_store_dir(entry, options)
}

fn set_store_dir(entry: &MapEntry, options: &mut JetStreamOptions) -> Result<(), ConfError> {
    if options
        .store_dir
        .as_deref()
        .is_some_and(|dir| !dir.is_empty())
    {
        return Err(invalid(entry, "Duplicate 'store_dir' configuration"));
    }
    options.store_dir = Some(string(entry)?);
    Ok(())
}

/// The top-level `jetstream`: a switch or a block.
pub(super) fn parse_jetstream(
    entry: &MapEntry,
    options: &mut JetStreamOptions,
    unsupported: &mut Vec<Unsupported>,
    warnings: &mut Vec<ConfWarning>,
) -> Result<(), ConfError> {
    match &entry.value.kind {
        ValueKind::Map(block) => {
            let mut enabled = true;
            for field in block {
                if let Some(on) = parse_block_field(entry, field, options, unsupported, warnings)? {
                    enabled = on;
                }
            }
            options.enabled = Some(enabled);
        }
        _ => options.enabled = Some(switch(entry)?),
    }
    Ok(())
}

/// `enabled`, `enable`, `true`, `disabled`, `disable`, `false`.
fn switch(entry: &MapEntry) -> Result<bool, ConfError> {
    match &entry.value.kind {
        ValueKind::Bool(on) => Ok(*on),
        ValueKind::String(text) => match text.to_ascii_lowercase().as_str() {
            "enabled" | "enable" => Ok(true),
            "disabled" | "disable" => Ok(false),
            _ => Err(invalid(
                entry,
                &format!("Expected 'enabled' or 'disabled' for string value, got '{text}'"),
            )),
        },
        _ => Err(invalid(
            entry,
            &format!(
                "Expected map, bool or string to define JetStream, got {}",
                go_type_name(&entry.value)
            ),
        )),
    }
}

/// One key of the block; returns the block's `enabled` when this is it.
fn parse_block_field(
    block: &MapEntry,
    field: &MapEntry,
    options: &mut JetStreamOptions,
    unsupported: &mut Vec<Unsupported>,
    warnings: &mut Vec<ConfWarning>,
) -> Result<Option<bool>, ConfError> {
    let key = field.key.to_ascii_lowercase();
    let refuse = |unsupported: &mut Vec<Unsupported>| {
        unsupported.push(Unsupported::new(
            format!("{}.{}", block.key, field.key),
            field,
        ))
    };
    match key.as_str() {
        "strict" => {
            let on = field.value.as_bool().ok_or_else(|| {
                invalid(
                    field,
                    &format!(
                        "Expected 'true' or 'false' for bool value, got '{}'",
                        go_value_text(&field.value)
                    ),
                )
            })?;
            options.strict = Some(on);
        }
        "store" | "store_dir" | "storedir" => set_store_dir(field, options)?,
        "sync" | "sync_interval" => {
            let always = field
                .value
                .as_str()
                .is_some_and(|text| text.eq_ignore_ascii_case("always"));
            options.sync = Some(if always {
                SyncInterval::Always
            } else {
                SyncInterval::Every(duration(field, &field.key, warnings)?)
            });
        }
        "max_memory_store" | "max_mem_store" | "max_mem" => {
            options.max_memory = Some(storage_size(field, "max_mem_store")?)
        }
        "max_file_store" | "max_file" => {
            options.max_store = Some(storage_size(field, "max_file_store")?)
        }
        "domain" => options.domain = Some(string(field)?),
        "enable" | "enabled" => return Ok(Some(boolean(field)?)),
        "key" | "ek" | "encryption_key" => options.key = Some(string(field)?),
        "prev_key" | "prev_ek" | "prev_encryption_key" => options.prev_key = Some(string(field)?),
        "cipher" => options.cipher = Some(cipher(field)?),
        "max_buffered_size" => options.max_buffered_size = Some(storage_size(field, &key)?),
        "max_buffered_msgs" => options.max_buffered_msgs = Some(parseable_size(field)?),
        "limits" => options.limits = parse_limits(field)?,
        // A TPM-held key rnats cannot unseal.
        "tpm" => {
            if field.value.as_map().is_none() {
                return Err(invalid(
                    field,
                    &format!(
                        "Expected a map to define JetStreamLimits, got {}",
                        go_type_name(&field.value)
                    ),
                ));
            }
            refuse(unsupported);
        }
        "request_queue_limit" | "info_queue_limit" => {
            parseable_size(field)?;
            refuse(unsupported);
        }
        _ => {
            if check_harmless(field, &key)? {
                refuse(unsupported);
            } else if !field.is_referenced() {
                return Err(unknown_field(field));
            }
        }
    }
    Ok(None)
}

/// Checks the value of a key in [`HARMLESS_JETSTREAM_KEYS`]; false when
/// `key` is not one of them.
fn check_harmless(field: &MapEntry, key: &str) -> Result<bool, ConfError> {
    let absolute = |field: &MapEntry| {
        invalid(
            field,
            &format!(
                "Expected an absolute size for \"{}\", got {}",
                field.key,
                go_value_text(&field.value)
            ),
        )
    };
    match key {
        "extension_hint" | "unique_tag" => {
            string(field)?;
        }
        "max_outstanding_catchup" => {
            storage_size(field, key)?;
        }
        "meta_compact" => {
            if field.value.as_i64().is_none_or(|n| n < 0) {
                return Err(absolute(field));
            }
        }
        "meta_compact_size" => {
            if storage_size(field, key)? < 0 {
                return Err(absolute(field));
            }
        }
        "meta_compact_sync" => {
            boolean(field)?;
        }
        "max_concurrent_io" => {
            let in_range = field
                .value
                .as_i64()
                .is_some_and(|n| (CONCURRENT_IO_MIN..=CONCURRENT_IO_MAX).contains(&n));
            if !in_range {
                return Err(invalid(
                    field,
                    &format!(
                        "Expected an absolute size for \"{}\" between 4 and 8192, got {}",
                        field.key,
                        go_value_text(&field.value)
                    ),
                ));
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `cipher: chachapoly | chacha | aes`.
fn cipher(field: &MapEntry) -> Result<Cipher, ConfError> {
    let name = string(field)?;
    match name.to_ascii_lowercase().as_str() {
        "chacha" | "chachapoly" => Ok(Cipher::ChaCha),
        "aes" => Ok(Cipher::Aes),
        _ => Err(invalid(
            field,
            &format!(
                "Unknown cipher type: {}",
                crate::format::go_quote(name.as_bytes())
            ),
        )),
    }
}

/// An integer, as the reference's "parseable size" fields take it.
fn parseable_size(field: &MapEntry) -> Result<i64, ConfError> {
    field.value.as_i64().ok_or_else(|| {
        invalid(
            field,
            &format!(
                "Expected a parseable size for \"{}\", got {}",
                field.key,
                go_value_text(&field.value)
            ),
        )
    })
}

/// A storage size: an integer, or digits and one of `K M G T` (1024-based);
/// errors start with `name`, as the reference's do.
fn storage_size(field: &MapEntry, name: &str) -> Result<i64, ConfError> {
    let fail = |reason: String| invalid(field, &format!("{name} {reason}"));
    match &field.value.kind {
        ValueKind::Integer(size) => Ok(*size),
        ValueKind::String(text) => parse_storage_size(text).map_err(fail),
        _ => Err(fail(String::from("must be int64 or string"))),
    }
}

/// The string form of a storage size (`getStorageSize`): empty is 0.
pub fn parse_storage_size(text: &str) -> Result<i64, String> {
    let Some(suffix) = text.chars().last() else {
        return Ok(0);
    };
    let digits = &text[..text.len() - suffix.len_utf8()];
    let number: i64 = digits.parse().map_err(|_| {
        let all_digits = {
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit())
        };
        let why = if all_digits {
            "value out of range"
        } else {
            "invalid syntax"
        };
        format!(
            "strconv.ParseInt: parsing {}: {why}",
            crate::format::go_quote(digits.as_bytes())
        )
    })?;
    let shift = match suffix {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => {
            return Err(String::from(
                "sizes defined as strings must end in K, M, G, T",
            ))
        }
    };
    // The reference wraps around; a size that does not fit is refused.
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| String::from("value is too big"))
}

/// An account's `jetstream`: `enabled` (no limits), `disabled`, a boolean,
/// or a block of limits. `Ok(None)` leaves JetStream off for the account.
pub(super) fn parse_account_jetstream(
    entry: &MapEntry,
    unsupported_prefix: &str,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Option<AccountLimits>, ConfError> {
    let Some(block) = entry.value.as_map() else {
        return Ok(switch(entry)?.then(AccountLimits::default));
    };
    let mut limits = AccountLimits::default();
    for field in block {
        // A negative limit is the reference's -1: no limit.
        let size = || parseable_size(field).map(|n| u64::try_from(n).ok());
        match field.key.to_ascii_lowercase().as_str() {
            "max_memory" | "max_mem" | "mem" | "memory" => limits.max_memory = size()?,
            "max_store" | "max_file" | "max_disk" | "store" | "disk" => limits.max_store = size()?,
            "max_streams" | "streams" => limits.max_streams = size()?,
            "max_consumers" | "consumers" => limits.max_consumers = size()?,
            "max_bytes_required" | "max_stream_bytes" | "max_bytes" => {
                limits.max_bytes_required = field.value.as_bool().ok_or_else(|| {
                    invalid(
                        field,
                        &format!(
                            "Expected a parseable bool for \"{}\", got {}",
                            field.key,
                            go_value_text(&field.value)
                        ),
                    )
                })?
            }
            "mem_max_stream_bytes" | "memory_max_stream_bytes" => {
                limits.memory_max_stream_bytes = size()?
            }
            "disk_max_stream_bytes" | "store_max_stream_bytes" => {
                limits.store_max_stream_bytes = size()?
            }
            "max_ack_pending" => limits.max_ack_pending = size()?,
            "cluster_traffic" => {
                cluster_traffic(field)?;
                unsupported.push(Unsupported::new(
                    format!("{unsupported_prefix}{}.{}", entry.key, field.key),
                    field,
                ));
            }
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    Ok(Some(limits))
}

/// `cluster_traffic: system | owner`: where a clustered account's
/// replication traffic goes.
fn cluster_traffic(field: &MapEntry) -> Result<(), ConfError> {
    let shown = go_value_text(&field.value);
    let Some(text) = field.value.as_str() else {
        return Err(invalid(
            field,
            &format!(
                "Expected either 'system' or 'owner' string value for \"{}\", got {shown}",
                field.key
            ),
        ));
    };
    if !matches!(text, "system" | "owner" | "") {
        return Err(invalid(
            field,
            &format!(
                "Expected 'system' or 'owner' string value for \"{}\", got {shown}",
                field.key
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
