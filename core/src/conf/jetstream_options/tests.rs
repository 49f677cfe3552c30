use super::super::{load_options, refuse_unsupported, NoSource};
use super::*;
use crate::conf::FileOptions;

fn load(text: &str) -> Result<(FileOptions, Vec<Unsupported>), ConfError> {
    load_options("js.conf", text, &NoSource)
}

fn options(text: &str) -> JetStreamOptions {
    let (options, unsupported) = load(text).expect("valid");
    assert!(unsupported.is_empty(), "{unsupported:?}");
    options.jetstream
}

fn error(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

/// The keys refusing start-up, by name.
fn refused(text: &str) -> Vec<String> {
    let (_, unsupported) = load(text).expect("valid");
    match refuse_unsupported(unsupported) {
        Ok(_) => Vec::new(),
        Err(keys) => keys.0.iter().map(|k| k.key.clone()).collect(),
    }
}

#[test]
fn switches() {
    for (text, enabled) in [
        ("jetstream: enabled", true),
        ("jetstream: Enable", true),
        ("jetstream: true", true),
        ("jetstream: disabled", false),
        ("jetstream: disable", false),
        ("jetstream: false", false),
        ("jetstream {}", true),
        ("jetstream { enabled: false }", false),
        ("jetstream { enable: true }", true),
    ] {
        assert_eq!(options(text).enabled, Some(enabled), "{text}");
    }
    assert_eq!(options("port: 1").enabled, None);
}

#[test]
fn every_key_and_alias() {
    let js = options(
        "jetstream {\n store_dir: /data\n max_memory_store: 1G\n max_file_store: 1T\n \
         domain: hub\n strict: false\n sync_interval: \"10s\"\n max_buffered_msgs: 1000\n \
         max_buffered_size: \"8M\"\n cipher: aes\n}",
    );
    assert_eq!(js.enabled, Some(true));
    assert_eq!(js.store_dir.as_deref(), Some("/data"));
    assert_eq!(js.max_memory, Some(1_000_000_000));
    assert_eq!(js.max_store, Some(1_000_000_000_000));
    assert_eq!(js.domain.as_deref(), Some("hub"));
    assert_eq!(js.strict, Some(false));
    assert_eq!(js.sync, Some(SyncInterval::Every(Duration::from_secs(10))));
    assert_eq!(js.max_buffered_msgs, Some(1000));
    assert_eq!(js.max_buffered_size, Some(8 << 20));
    assert_eq!(js.cipher, Some(Cipher::Aes));
    let js =
        options("jetstream { store: /a, max_mem_store: 512MB, max_file: \"2G\", sync: always }");
    assert_eq!(js.store_dir.as_deref(), Some("/a"));
    assert_eq!(js.max_memory, Some(512 << 20));
    assert_eq!(js.max_store, Some(2 << 30));
    assert_eq!(js.sync, Some(SyncInterval::Always));
    let js = options("jetstream { storedir: /b, max_mem: 0, cipher: ChaChaPoly }");
    assert_eq!(js.store_dir.as_deref(), Some("/b"));
    assert_eq!(js.max_memory, Some(0));
    assert_eq!(js.cipher, Some(Cipher::ChaCha));
    assert_eq!(
        options("jetstream { cipher: chacha }").cipher,
        Some(Cipher::ChaCha)
    );
    assert_eq!(options("jetstream { max_mem: -1 }").max_memory, Some(-1));
    assert_eq!(options("jetstream { max_mem: \"\" }").max_memory, Some(0));
    let js = options("store_dir: /top\njetstream: enabled");
    assert_eq!(js.store_dir.as_deref(), Some("/top"));
    assert_eq!(options("STOREDIR: /top").store_dir.as_deref(), Some("/top"));
    // An empty key means no encryption, as in the reference.
    assert_eq!(options("jetstream { key: \"\" }").key.as_deref(), Some(""));
}

#[test]
fn storage_sizes_as_the_reference_reads_them() {
    assert_eq!(parse_storage_size(""), Ok(0));
    assert_eq!(parse_storage_size("1K"), Ok(1024));
    assert_eq!(parse_storage_size("3T"), Ok(3 << 40));
    assert_eq!(parse_storage_size("-1G"), Ok(-(1 << 30)));
    assert_eq!(
        parse_storage_size("1GB").unwrap_err(),
        "strconv.ParseInt: parsing \"1G\": invalid syntax"
    );
    assert_eq!(
        parse_storage_size("5").unwrap_err(),
        "strconv.ParseInt: parsing \"\": invalid syntax"
    );
    assert_eq!(
        parse_storage_size("99999999999999999999K").unwrap_err(),
        "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
    );
    assert_eq!(
        parse_storage_size("1x").unwrap_err(),
        "sizes defined as strings must end in K, M, G, T"
    );
    assert_eq!(
        parse_storage_size("1k").unwrap_err(),
        "sizes defined as strings must end in K, M, G, T"
    );
    assert_eq!(
        parse_storage_size("9000000T").unwrap_err(),
        "value is too big"
    );
}

#[test]
fn bad_values_have_the_reference_messages() {
    for (text, message) in [
        ("jetstream: maybe", "js.conf:1:1: Expected 'enabled' or 'disabled' for string value, got 'maybe'"),
        ("jetstream: 5", "js.conf:1:1: Expected map, bool or string to define JetStream, got int64"),
        ("jetstream { max_mem: \"1x\" }", "js.conf:1:13: max_mem_store sizes defined as strings must end in K, M, G, T"),
        ("jetstream { max_mem: \"1GB\" }", "js.conf:1:13: max_mem_store strconv.ParseInt: parsing \"1G\": invalid syntax"),
        ("jetstream { max_mem: true }", "js.conf:1:13: max_mem_store must be int64 or string"),
        ("jetstream { max_file: \"abc\" }", "js.conf:1:13: max_file_store strconv.ParseInt: parsing \"ab\": invalid syntax"),
        ("jetstream { strict: \"yes\" }", "js.conf:1:13: Expected 'true' or 'false' for bool value, got 'yes'"),
        ("jetstream { cipher: des }", "js.conf:1:13: Unknown cipher type: \"des\""),
        ("jetstream { sync_interval: \"xx\" }", "js.conf:1:13: error parsing sync_interval: time: invalid duration \"xx\""),
        ("jetstream { foo: 1 }", "js.conf:1:13: unknown field \"foo\""),
        ("jetstream { max_buffered_msgs: \"x\" }", "js.conf:1:13: Expected a parseable size for \"max_buffered_msgs\", got x"),
        ("jetstream { max_buffered_size: \"1Q\" }", "js.conf:1:13: max_buffered_size sizes defined as strings must end in K, M, G, T"),
        ("jetstream { max_concurrent_io: 2 }", "js.conf:1:13: Expected an absolute size for \"max_concurrent_io\" between 4 and 8192, got 2"),
        ("jetstream { meta_compact: -1 }", "js.conf:1:13: Expected an absolute size for \"meta_compact\", got -1"),
        ("jetstream { limits: 1 }", "js.conf:1:13: Expected a map to define JetStreamLimits, got int64"),
        ("store_dir: /a\njetstream { store_dir: /b }", "js.conf:2:13: Duplicate 'store_dir' configuration"),
        ("jetstream { store_dir: /b }\nstore_dir: /a", "js.conf:2:1: Duplicate 'store_dir' configuration"),
        ("jetstream { store_dir: 5 }", "js.conf:1:13: expected a string for store_dir, got an integer"),
        ("jetstream { enabled: \"yes\" }", "js.conf:1:13: expected a boolean for enabled, got a string"),
    ] {
        assert_eq!(error(text), message, "{text}");
    }
    // A number of seconds is still a duration, with a warning.
    let (options, _) = load("jetstream { sync_interval: 5 }").unwrap();
    assert_eq!(
        options.jetstream.sync,
        Some(SyncInterval::Every(Duration::from_secs(5)))
    );
    assert_eq!(
        options.warnings[0].to_string(),
        "js.conf:1:13: invalid use of field \"sync_interval\": sync_interval should be converted to a duration"
    );
    // An empty first store directory is no duplicate.
    assert_eq!(
        options_of("store_dir: \"\"\njetstream { store_dir: /b }"),
        Some(String::from("/b"))
    );
}

fn options_of(text: &str) -> Option<String> {
    options(text).store_dir
}

/// Keys rnats cannot honour refuse start-up by name (a TPM-held key among
/// them); encryption keys are honoured.
#[test]
fn keys_rnats_cannot_honour_refuse_start() {
    for (text, key) in [
        ("jetstream { tpm { keys_file: x } }", "jetstream.tpm"),
        (
            "jetstream { request_queue_limit: 5 }",
            "jetstream.request_queue_limit",
        ),
        (
            "jetstream { info_queue_limit: 5 }",
            "jetstream.info_queue_limit",
        ),
    ] {
        assert_eq!(refused(text), [key], "{text}");
    }
    // The server limits are honoured, with the reference's errors.
    assert_eq!(
        options(
            "jetstream { limits { max_ack_pending: 5, batch { max_msgs: 7, timeout: \"1s\" } } }"
        )
        .limits,
        ServerLimits {
            max_ack_pending: 5,
            max_batch_size: 7,
            max_batch_timeout: 1_000_000_000,
            ..ServerLimits::default()
        }
    );
    for (text, error) in [
        (
            "jetstream { limits: 5 }",
            "Expected a map to define JetStreamLimits, got int64",
        ),
        (
            "jetstream { limits { batch: 1 } }",
            "Expected a map to define batch limits, got int64",
        ),
        ("jetstream { limits { foo: 1 } }", "unknown field \"foo\""),
        (
            "jetstream { limits { duplicate_window: \"x\" } }",
            "time: invalid duration \"x\"",
        ),
    ] {
        let message = load(text).err().unwrap().to_string();
        assert!(message.contains(error), "{text}: {message}");
    }
    let (_, unsupported) = load("K: abc\njetstream {\n  tpm { keys_file: $K }\n}").unwrap();
    assert_eq!(
        refuse_unsupported(unsupported).unwrap_err().to_string(),
        "js.conf:3:3: configuration key \"jetstream.tpm\" is not supported yet"
    );
    // Encryption at rest is honoured (`key` and its aliases, `prev_key`).
    for text in [
        "jetstream { key: s3cr3t }",
        "jetstream { ek: s3cr3t, cipher: aes }",
        "jetstream { encryption_key: disabled }",
        "jetstream { key: new, prev_key: old, cipher: chachapoly }",
    ] {
        assert_eq!(refused(text), Vec::<String>::new(), "{text}");
    }
    assert_eq!(
        options("jetstream { key: new, prev_ek: old }")
            .prev_key
            .as_deref(),
        Some("old")
    );
    // Tuning for clustering and disks rnats lacks is ignored with a warning.
    for text in [
        "jetstream { unique_tag: az }",
        "jetstream { extension_hint: will_extend }",
        "jetstream { max_outstanding_catchup: \"64M\" }",
        "jetstream { meta_compact: 5, meta_compact_size: 1M, meta_compact_sync: true }",
        "jetstream { max_concurrent_io: 16 }",
        "jetstream { key: \"\", cipher: aes }",
        "accounts { A { jetstream { cluster_traffic: owner } } }",
    ] {
        assert_eq!(refused(text), Vec::<String>::new(), "{text}");
    }
    let (_, unsupported) = load("jetstream { unique_tag: az }").unwrap();
    assert_eq!(unsupported[0].key, "jetstream.unique_tag");
}

#[test]
fn account_limits() {
    let account = |text: &str| {
        let (options, unsupported) = load(text).expect("valid");
        assert!(refuse_unsupported(unsupported).is_ok());
        options.security.accounts[0].jetstream.clone()
    };
    assert_eq!(
        account("accounts { A { jetstream: enabled } }"),
        Some(AccountLimits::default())
    );
    assert_eq!(
        account("accounts { A { jetstream: true } }"),
        Some(AccountLimits::default())
    );
    assert_eq!(account("accounts { A { jetstream: disabled } }"), None);
    assert_eq!(account("accounts { A { jetstream: false } }"), None);
    assert_eq!(account("accounts { A { users: [] } }"), None);
    let limits = account(
        "accounts { A { jetstream { max_mem: 1M, max_file: 1G, max_streams: 3, max_consumers: 4,\n\
         max_bytes_required: true, max_ack_pending: 100, mem_max_stream_bytes: 1K,\n\
         disk_max_stream_bytes: 2K } } }",
    )
    .unwrap();
    assert_eq!(
        limits,
        AccountLimits {
            max_memory: Some(1_000_000),
            max_store: Some(1_000_000_000),
            max_streams: Some(3),
            max_consumers: Some(4),
            max_bytes_required: true,
            max_ack_pending: Some(100),
            memory_max_stream_bytes: Some(1000),
            store_max_stream_bytes: Some(2000),
            tiers: None,
        }
    );
    let limits = account(
        "accounts { A { jetstream { memory: -1, disk: 5, streams: 1, consumers: 2, max_bytes: false,\n\
         memory_max_stream_bytes: 7, store_max_stream_bytes: 8 } } }",
    )
    .unwrap();
    assert_eq!(limits.max_memory, None);
    assert_eq!(limits.max_store, Some(5));
    assert_eq!(limits.max_streams, Some(1));
    assert_eq!(limits.max_consumers, Some(2));
    assert_eq!(limits.memory_max_stream_bytes, Some(7));
    assert_eq!(limits.store_max_stream_bytes, Some(8));
    for (alias, expected) in [
        ("mem", 1),
        ("max_memory", 1),
        ("store", 2),
        ("max_store", 2),
        ("max_disk", 2),
    ] {
        let limits = account(&format!(
            "accounts {{ A {{ jetstream {{ {alias}: 9 }} }} }}"
        ))
        .unwrap();
        let got = if expected == 1 {
            limits.max_memory
        } else {
            limits.max_store
        };
        assert_eq!(got, Some(9), "{alias}");
    }
}

#[test]
fn account_errors_have_the_reference_messages() {
    for (text, message) in [
        ("accounts { A { jetstream: maybe } }", "js.conf:1:16: Expected 'enabled' or 'disabled' for string value, got 'maybe'"),
        ("accounts { A { jetstream: 5 } }", "js.conf:1:16: Expected map, bool or string to define JetStream, got int64"),
        ("accounts { A { jetstream { max_mem: \"1G\" } } }", "js.conf:1:28: Expected a parseable size for \"max_mem\", got 1G"),
        ("accounts { A { jetstream { max_bytes_required: 1 } } }", "js.conf:1:28: Expected a parseable bool for \"max_bytes_required\", got 1"),
        ("accounts { A { jetstream { foo: 1 } } }", "js.conf:1:28: unknown field \"foo\""),
        ("accounts { A { jetstream { cluster_traffic: bad } } }", "js.conf:1:28: Expected 'system' or 'owner' string value for \"cluster_traffic\", got bad"),
        ("accounts { A { jetstream { cluster_traffic: 1 } } }", "js.conf:1:28: Expected either 'system' or 'owner' string value for \"cluster_traffic\", got 1"),
    ] {
        assert_eq!(error(text), message, "{text}");
    }
}

#[test]
fn keys_are_redacted_in_debug() {
    let (options, _) = load("jetstream { key: s3cr3t, prev_key: 0ld }").unwrap();
    let shown = format!("{:?}", options.jetstream);
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("0ld"),
        "{shown}"
    );
}
