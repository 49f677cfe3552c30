//! What a configuration reload may change of JetStream, decided as
//! nats-server v2.15.1 decides it (`diffOptions` in its `reload.go`).
//!
//! Input: the JetStream settings the running configuration was read from
//! and those of the file asked for, each as the reference's options hold
//! them ([`JetStreamSettings`]: unset sizes are -1, an unset sync interval
//! is two minutes, ...). Output: a [`JetStreamReload`] the runtime carries
//! out (turn JetStream on or off, raise its limits, take new server
//! limits), or the reference's refusal text.
//!
//! The reference compares its options field by field in their declaration
//! order and refuses at the first field it cannot change, so the fields
//! are compared here in that order and the first refusal wins. Limits may
//! only grow while JetStream runs; dropping them or the store directory is
//! allowed only together with turning JetStream off.
//!
//! One difference: the reference prints an encryption key's old and new
//! values in its refusal; rnats never logs a key and names the field only.

use super::jetstream_options::{JetStreamOptions, SyncInterval};
use crate::format::go_duration;
use crate::jetstream::config::ServerLimits;

/// The reference's sync interval when none is configured.
const DEFAULT_SYNC_INTERVAL_NANOS: u64 = 120_000_000_000;

/// JetStream's settings as the reference's `Options` fields hold them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamSettings {
    /// `JetStream`: on (the file or `-js`).
    pub enabled: bool,
    /// `NoJetStreamStrict`.
    pub no_strict: bool,
    /// `JetStreamMaxMemory` / `JetStreamMaxStore`: -1 when unset.
    pub max_memory: i64,
    pub max_store: i64,
    /// `JetStreamDomain`, empty when unset.
    pub domain: String,
    /// `JetStreamKey`, `JetStreamOldKey`: never printed.
    pub key: String,
    pub old_key: String,
    /// `JetStreamCipher`, as the reference names it.
    pub cipher: &'static str,
    /// `JetStreamLimits`.
    pub limits: ServerLimits,
    /// `StreamMaxBufferedMsgs` / `StreamMaxBufferedSize`: 0 when unset.
    pub max_buffered_msgs: i64,
    pub max_buffered_size: i64,
    /// `StoreDir`: the flag's or the file's, empty when unset.
    pub store_dir: String,
    /// `SyncInterval` in nanoseconds, and `SyncAlways`.
    pub sync_interval: u64,
    pub sync_always: bool,
}

impl JetStreamSettings {
    /// The settings a file's `jetstream` options (and the `-js`/`-sd`
    /// flags, folded into `enabled` and `store_dir_flag`) amount to.
    pub fn of(
        enabled: bool,
        store_dir_flag: Option<&str>,
        options: &JetStreamOptions,
    ) -> JetStreamSettings {
        let store_dir = store_dir_flag
            .filter(|dir| !dir.is_empty())
            .map(str::to_owned)
            .or_else(|| options.store_dir.clone())
            .unwrap_or_default();
        let (sync_interval, sync_always) = match options.sync {
            None => (DEFAULT_SYNC_INTERVAL_NANOS, false),
            Some(SyncInterval::Always) => (DEFAULT_SYNC_INTERVAL_NANOS, true),
            Some(SyncInterval::Every(every)) => {
                (u64::try_from(every.as_nanos()).unwrap_or(u64::MAX), false)
            }
        };
        JetStreamSettings {
            enabled,
            no_strict: !options.strict.unwrap_or(true),
            max_memory: options.max_memory.unwrap_or(-1),
            max_store: options.max_store.unwrap_or(-1),
            domain: options.domain.clone().unwrap_or_default(),
            key: options.key.clone().unwrap_or_default(),
            old_key: options.prev_key.clone().unwrap_or_default(),
            cipher: options.cipher.unwrap_or_default().name(),
            limits: options.limits,
            max_buffered_msgs: options.max_buffered_msgs.unwrap_or(0),
            max_buffered_size: options.max_buffered_size.unwrap_or(0),
            store_dir,
            sync_interval,
            sync_always,
        }
    }
}

/// What a reload does to JetStream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JetStreamReload {
    /// `Some(true)`: start JetStream; `Some(false)`: shut it down.
    pub switch: Option<bool>,
    /// A higher `max_memory_store` / `max_file_store` for the running
    /// JetStream.
    pub max_memory: Option<u64>,
    pub max_store: Option<u64>,
    /// The server limits (`jetstream { limits { } }`) changed.
    pub limits: Option<ServerLimits>,
}

impl JetStreamReload {
    pub fn is_empty(&self) -> bool {
        *self == JetStreamReload::default()
    }
}

/// Decide what a reload from `running` to `asked` does to JetStream, or
/// why the reference refuses it (the text after "Failed to reload server
/// configuration: ").
pub fn plan_jetstream_reload(
    running: &JetStreamSettings,
    asked: &JetStreamSettings,
) -> Result<JetStreamReload, String> {
    let unsupported = |field: &str, old: &dyn std::fmt::Display, new: &dyn std::fmt::Display| {
        Err(format!(
            "config reload not supported for {field}: old={old}, new={new}"
        ))
    };
    let on = running.enabled;
    let mut plan = JetStreamReload::default();
    if asked.enabled != running.enabled {
        plan.switch = Some(asked.enabled);
    }
    let disabling = !asked.enabled;
    if asked.no_strict != running.no_strict {
        return unsupported("NoJetStreamStrict", &running.no_strict, &asked.no_strict);
    }
    let mut limits_dropped = false;
    for (old, new, raised) in [
        (running.max_memory, asked.max_memory, &mut plan.max_memory),
        (running.max_store, asked.max_store, &mut plan.max_store),
    ] {
        if !on || old == new {
            continue;
        }
        match (old == -1, new == -1) {
            (false, false) if new > old => *raised = u64::try_from(new).ok(),
            (false, true) => limits_dropped = true,
            (true, false) => {
                return Err(String::from(
                    "config reload not supported for jetstream dynamic max memory and store",
                ))
            }
            _ => {
                return Err(String::from(
                    "config reload not supported for decreasing jetstream max memory and store",
                ))
            }
        }
    }
    if asked.domain != running.domain {
        return unsupported("JetStreamDomain", &running.domain, &asked.domain);
    }
    if asked.key != running.key {
        return Err(String::from("config reload not supported for JetStreamKey"));
    }
    if asked.old_key != running.old_key {
        return Err(String::from(
            "config reload not supported for JetStreamOldKey",
        ));
    }
    if asked.cipher != running.cipher {
        return unsupported("JetStreamCipher", &running.cipher, &asked.cipher);
    }
    if asked.limits != running.limits {
        plan.limits = Some(asked.limits);
    }
    if asked.max_buffered_msgs != running.max_buffered_msgs {
        return unsupported(
            "StreamMaxBufferedMsgs",
            &running.max_buffered_msgs,
            &asked.max_buffered_msgs,
        );
    }
    if asked.max_buffered_size != running.max_buffered_size {
        return unsupported(
            "StreamMaxBufferedSize",
            &running.max_buffered_size,
            &asked.max_buffered_size,
        );
    }
    let mut store_dir_dropped = false;
    if on && asked.store_dir != running.store_dir {
        if !asked.store_dir.is_empty() {
            return Err(String::from(
                "config reload not supported for jetstream storage directory",
            ));
        }
        store_dir_dropped = true;
    }
    if asked.sync_interval != running.sync_interval {
        return unsupported(
            "SyncInterval",
            &go_duration(running.sync_interval),
            &go_duration(asked.sync_interval),
        );
    }
    if asked.sync_always != running.sync_always {
        return unsupported("SyncAlways", &running.sync_always, &asked.sync_always);
    }
    if !disabling {
        if limits_dropped {
            return Err(String::from(
                "config reload not supported for jetstream max memory and max store",
            ));
        }
        if store_dir_dropped {
            return Err(String::from(
                "config reload not supported for jetstream storage dir",
            ));
        }
    }
    if disabling {
        // Nothing else applies to a JetStream that is shutting down.
        plan.max_memory = None;
        plan.max_store = None;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(file: &str) -> JetStreamSettings {
        let options = crate::conf::load_options("t.conf", file, &crate::conf::NoSource)
            .expect("a valid file")
            .0;
        let enabled = options.jetstream.enabled == Some(true);
        JetStreamSettings::of(enabled, None, &options.jetstream)
    }

    fn plan(from: &str, to: &str) -> Result<JetStreamReload, String> {
        plan_jetstream_reload(&settings(from), &settings(to))
    }

    const BASE: &str = "jetstream { store_dir: /js, max_memory_store: 1GB, max_file_store: 2GB }";

    #[test]
    fn the_same_settings_change_nothing() {
        assert_eq!(plan(BASE, BASE), Ok(JetStreamReload::default()));
        assert_eq!(plan("port: 1", "port: 2"), Ok(JetStreamReload::default()));
    }

    #[test]
    fn fields_the_reference_cannot_change_are_refused_with_its_text() {
        let cases = [
            (
                "jetstream { store_dir: /js, max_memory_store: 1GB, max_file_store: 2GB, domain: x }",
                "config reload not supported for JetStreamDomain: old=, new=x",
            ),
            (
                "jetstream { store_dir: /js, max_memory_store: 1GB, max_file_store: 2GB, sync_interval: always }",
                "config reload not supported for SyncAlways: old=false, new=true",
            ),
            (
                "jetstream { store_dir: /js, max_memory_store: 1GB, max_file_store: 2GB, sync_interval: 10s }",
                "config reload not supported for SyncInterval: old=2m0s, new=10s",
            ),
            (
                "jetstream { store_dir: /js, max_memory_store: 1GB, max_file_store: 2GB, strict: false }",
                "config reload not supported for NoJetStreamStrict: old=false, new=true",
            ),
            (
                "jetstream { store_dir: /js, max_memory_store: 1GB, max_file_store: 2GB, max_buffered_msgs: 5 }",
                "config reload not supported for StreamMaxBufferedMsgs: old=0, new=5",
            ),
            (
                "jetstream { store_dir: /js, max_memory_store: 1GB, max_file_store: 2GB, max_buffered_size: 1MB }",
                "config reload not supported for StreamMaxBufferedSize: old=0, new=1048576",
            ),
            (
                "jetstream { store_dir: /js2, max_memory_store: 1GB, max_file_store: 2GB }",
                "config reload not supported for jetstream storage directory",
            ),
            (
                "jetstream { store_dir: /js, max_memory_store: 512MB, max_file_store: 2GB }",
                "config reload not supported for decreasing jetstream max memory and store",
            ),
            (
                "jetstream { store_dir: /js, max_file_store: 2GB }",
                "config reload not supported for jetstream max memory and max store",
            ),
            (
                "jetstream { store_dir: /js, max_memory_store: 1GB, max_file_store: 2GB, key: s3cr3t }",
                "config reload not supported for JetStreamKey",
            ),
        ];
        for (to, refusal) in cases {
            assert_eq!(plan(BASE, to), Err(String::from(refusal)), "{to}");
        }
        assert_eq!(
            plan("jetstream {}", "jetstream { max_file_store: 1GB }"),
            Err(String::from(
                "config reload not supported for jetstream dynamic max memory and store"
            ))
        );
    }

    #[test]
    fn limits_may_grow() {
        let raised = plan(
            BASE,
            "jetstream { store_dir: /js, max_memory_store: 2GB, max_file_store: 3GB }",
        )
        .expect("allowed");
        assert_eq!(raised.max_memory, Some(2 << 30));
        assert_eq!(raised.max_store, Some(3 << 30));
        assert_eq!(raised.switch, None);
    }

    #[test]
    fn jetstream_turns_off_and_on() {
        let off = plan(BASE, "jetstream: disabled").expect("allowed");
        assert_eq!(off.switch, Some(false));
        assert_eq!((off.max_memory, off.max_store), (None, None));
        // Without the block at all: the same.
        assert_eq!(plan(BASE, "port: 1").expect("allowed").switch, Some(false));
        // Off, anything the reference checks only while running may change.
        let on = plan(
            "port: 1",
            "jetstream { store_dir: /elsewhere, max_memory_store: 1MB }",
        )
        .expect("allowed");
        assert_eq!(on.switch, Some(true));
        assert_eq!((on.max_memory, on.max_store), (None, None));
        // A domain is compared even while turning JetStream off, as the reference.
        assert_eq!(
            plan("jetstream { domain: hub }", "jetstream: disabled"),
            Err(String::from(
                "config reload not supported for JetStreamDomain: old=hub, new="
            ))
        );
    }

    #[test]
    fn server_limits_are_taken() {
        let changed = plan(
            "jetstream {}",
            "jetstream { limits { max_request_batch: 5 } }",
        )
        .expect("allowed");
        assert_eq!(
            changed.limits.map(|limits| limits.max_request_batch),
            Some(5)
        );
    }

    #[test]
    fn the_store_dir_flag_wins_over_the_file() {
        let options = crate::conf::load_options(
            "t.conf",
            "jetstream { store_dir: /file }",
            &crate::conf::NoSource,
        )
        .expect("a valid file")
        .0
        .jetstream;
        let flagged = JetStreamSettings::of(true, Some("/flag"), &options);
        assert_eq!(flagged.store_dir, "/flag");
        assert_eq!(
            JetStreamSettings::of(true, Some(""), &options).store_dir,
            "/file"
        );
        let every = JetStreamOptions {
            sync: Some(SyncInterval::Every(Duration::from_secs(10))),
            ..JetStreamOptions::default()
        };
        assert_eq!(
            JetStreamSettings::of(true, None, &every).sync_interval,
            10_000_000_000
        );
    }
}
