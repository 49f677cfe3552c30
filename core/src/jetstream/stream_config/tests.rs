//! Tests of the stream config checks: defaults, each refusal, and the
//! cases captured from nats-server v2.15.1 (`reference_cases.json`: every
//! `STREAM.CREATE`/`STREAM.UPDATE` request sent to a fresh
//! `nats-server -js` and its reply, in order).

use super::*;
use crate::jetstream::api::{decode_request, Placement, StreamSource, SubjectTransformConfig};

fn request(json: &str) -> StreamConfigRequest {
    serde_json::from_str(json).unwrap()
}

fn context<'a>(limits: &'a AccountLimits, streams: &'a dyn StreamLookup) -> CheckContext<'a> {
    CheckContext {
        clustered: false,
        duplicate_window_limit: None,
        account: limits,
        streams,
    }
}

fn create(json: &str) -> Result<StreamConfig, ApiError> {
    let request = request(json);
    let limits = AccountLimits::default();
    let name = request.config.name.clone();
    check_create(&name, &request, &context(&limits, &NoStreams))
}

fn refusal(json: &str) -> (ApiErrorKind, String) {
    let error = create(json).expect_err(json);
    (error.kind().unwrap(), error.description)
}

#[test]
fn defaults_are_the_reference_defaults() {
    let config = create(r#"{"name":"ORDERS"}"#).unwrap();
    assert_eq!(config.subjects, vec!["ORDERS".to_owned()]);
    assert_eq!(config.max_msgs, -1);
    assert_eq!(config.max_bytes, -1);
    assert_eq!(config.max_age, 0);
    assert_eq!(config.max_msg_size, -1);
    assert_eq!(config.max_msgs_per_subject, -1);
    assert_eq!(config.max_consumers, -1);
    assert_eq!(config.duplicate_window, DEFAULT_DUPLICATE_WINDOW_NANOS);
    assert_eq!(config.num_replicas, 1);
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.retention, RetentionPolicy::Limits);
    assert_eq!(config.discard, DiscardPolicy::Old);
    assert_eq!(
        config
            .metadata
            .get(METADATA_REQUIRED_LEVEL)
            .map(String::as_str),
        Some("0")
    );
}

#[test]
fn duplicate_window_follows_a_shorter_max_age() {
    let config = create(r#"{"name":"S","max_age":1000000000}"#).unwrap();
    assert_eq!(config.duplicate_window, 1_000_000_000);
    let error = create(r#"{"name":"S","max_age":1000000000,"pedantic":true}"#).unwrap_err();
    assert!(error.is(ApiErrorKind::Pedantic));
    assert_eq!(
        error.description,
        "pedantic mode: duplicate window cannot be bigger than max age"
    );
}

#[test]
fn server_duplicate_limit_caps_the_default() {
    let limits = AccountLimits::default();
    let mut cx = context(&limits, &NoStreams);
    cx.duplicate_window_limit = Some(30_000_000_000);
    let config = check_stream_config(&request(r#"{"name":"S"}"#).config, &cx, false).unwrap();
    assert_eq!(config.duplicate_window, 30_000_000_000);
    let error = check_stream_config(
        &request(r#"{"name":"S","duplicate_window":60000000000}"#).config,
        &cx,
        false,
    )
    .unwrap_err();
    assert_eq!(
        error.description,
        "duplicates window can not be larger then server limit of 30s"
    );
}

#[test]
fn names() {
    for bad in ["A.B", "A*", "A>", "A B", "A\tB"] {
        let config = StreamConfig {
            name: bad.into(),
            ..StreamConfig::default()
        };
        let limits = AccountLimits::default();
        let error = check_stream_config(&config, &context(&limits, &NoStreams), false).unwrap_err();
        assert!(error.is(ApiErrorKind::StreamInvalidConfig), "{bad}");
    }
    let long = "L".repeat(256);
    let (kind, text) = refusal(&format!(r#"{{"name":"{long}"}}"#));
    assert_eq!(kind, ApiErrorKind::StreamInvalidConfig);
    assert_eq!(text, "stream name is too long, maximum allowed is 255");
    let request = request(r#"{"name":"M1"}"#);
    let limits = AccountLimits::default();
    let error = check_create("OTHER", &request, &context(&limits, &NoStreams)).unwrap_err();
    assert!(error.is(ApiErrorKind::StreamMismatch));
}

#[test]
fn each_refusal_of_a_create() {
    let cases: &[(&str, ApiErrorKind, &str)] = &[
        (
            r#"{"name":"R","num_replicas":3}"#,
            ApiErrorKind::StreamReplicasNotSupported,
            "replicas > 1 not supported in non-clustered mode",
        ),
        (
            r#"{"name":"R","num_replicas":6}"#,
            ApiErrorKind::StreamInvalidConfig,
            "maximum replicas is 5",
        ),
        (
            r#"{"name":"R","num_replicas":-1}"#,
            ApiErrorKind::ReplicasCountCannotBeNegative,
            "replicas count cannot be negative",
        ),
        (
            r#"{"name":"S","max_msgs":-5,"pedantic":true}"#,
            ApiErrorKind::Pedantic,
            "pedantic mode: max_msgs must be set to -1",
        ),
        (
            r#"{"name":"S","max_age":-1}"#,
            ApiErrorKind::StreamInvalidConfig,
            "max age can not be negative",
        ),
        (
            r#"{"name":"S","max_age":1000}"#,
            ApiErrorKind::StreamInvalidConfig,
            "max age needs to be >= 100ms",
        ),
        (
            r#"{"name":"S","max_age":1000000000,"duplicate_window":2000000000}"#,
            ApiErrorKind::StreamInvalidConfig,
            "duplicates window can not be larger then max age",
        ),
        (
            r#"{"name":"S","duplicate_window":-1}"#,
            ApiErrorKind::StreamInvalidConfig,
            "duplicates window can not be negative",
        ),
        (
            r#"{"name":"S","sealed":true}"#,
            ApiErrorKind::StreamInvalidConfig,
            "stream configuration for create can not be sealed",
        ),
        (
            r#"{"name":"S","allow_rollup_hdrs":true,"deny_purge":true}"#,
            ApiErrorKind::StreamInvalidConfig,
            "roll-ups require the purge permission",
        ),
        (
            r#"{"name":"S","allow_msg_counter":true,"allow_msg_ttl":true}"#,
            ApiErrorKind::StreamInvalidConfig,
            "counter stream cannot use message TTLs",
        ),
        (
            r#"{"name":"S","discard_new_per_subject":true}"#,
            ApiErrorKind::StreamInvalidConfig,
            "discard new per subject requires discard new policy to be set",
        ),
        (
            r#"{"name":"S","subject_delete_marker_ttl":2000000000,"pedantic":true}"#,
            ApiErrorKind::StreamInvalidConfig,
            "subject delete marker cannot be set if message TTLs are disabled",
        ),
        (
            r#"{"name":"S","subjects":["a.*","a.b"]}"#,
            ApiErrorKind::StreamInvalidConfig,
            "subject \"a.*\" overlaps with \"a.b\"",
        ),
        (
            r#"{"name":"S","subjects":["a..b"]}"#,
            ApiErrorKind::StreamInvalidConfig,
            "invalid subject",
        ),
        (
            r#"{"name":"S","subjects":[">"]}"#,
            ApiErrorKind::StreamInvalidConfig,
            "capturing all subjects requires no-ack to be true",
        ),
        (
            r#"{"name":"S","mirror":{"name":"O"},"subjects":["x"]}"#,
            ApiErrorKind::MirrorWithSubjects,
            "stream mirrors can not contain subjects",
        ),
        (
            r#"{"name":"S","sources":[{"name":"O"},{"name":"O","filter_subject":">"}]}"#,
            ApiErrorKind::SourceDuplicateDetected,
            "duplicate source configuration detected",
        ),
        (
            r#"{"name":"S","placement":{"preferred":"x"}}"#,
            ApiErrorKind::StreamInvalidConfig,
            "preferred server not permitted in placement",
        ),
        (
            r#"{"name":"S","persist_mode":"async","storage":"memory"}"#,
            ApiErrorKind::StreamInvalidConfig,
            "async persist mode is only supported on file storage",
        ),
    ];
    for (json, kind, text) in cases {
        let (got_kind, got_text) = refusal(json);
        assert_eq!((got_kind, got_text.as_str()), (*kind, *text), "{json}");
    }
}

#[test]
fn sources_may_share_a_stream_with_different_filters() {
    let config = create(
        r#"{"name":"S","sources":[{"name":"O","filter_subject":"a"},{"name":"O","filter_subject":"b"}]}"#,
    )
    .unwrap();
    assert!(config.subjects.is_empty());
    assert_eq!(config.duplicate_window, 0);
}

#[test]
fn cycles_through_sources_are_refused() {
    let mut streams = BTreeMap::new();
    let a = StreamConfig {
        name: "A".into(),
        subjects: vec!["a".into()],
        sources: vec![StreamSource {
            name: "B".into(),
            ..StreamSource::default()
        }],
        ..StreamConfig::default()
    };
    streams.insert("A".to_owned(), a);
    let limits = AccountLimits::default();
    let b = request(r#"{"name":"B","subjects":["b"],"sources":[{"name":"A"}]}"#);
    let error = check_create("B", &b, &context(&limits, &streams)).unwrap_err();
    assert_eq!(error.description, "detected cycle");
}

#[test]
fn mirrors_inherit_direct_get_and_check_message_size() {
    let mut streams = BTreeMap::new();
    let origin = StreamConfig {
        name: "O".into(),
        allow_direct: true,
        max_msg_size: 100,
        ..StreamConfig::default()
    };
    streams.insert("O".to_owned(), origin);
    let limits = AccountLimits::default();
    let m = request(r#"{"name":"M","mirror":{"name":"O"}}"#);
    let config = check_create("M", &m, &context(&limits, &streams)).unwrap();
    assert!(config.mirror_direct);
    let small = request(r#"{"name":"M","mirror":{"name":"O"},"max_msg_size":10}"#);
    let error = check_create("M", &small, &context(&limits, &streams)).unwrap_err();
    assert!(error.is(ApiErrorKind::MirrorMaxMessageSizeTooBig));
}

#[test]
fn account_byte_limits() {
    let limits = AccountLimits {
        max_bytes_required: true,
        store_max_stream_bytes: Some(1000),
        ..AccountLimits::default()
    };
    let cx = context(&limits, &NoStreams);
    let error = check_stream_config(&request(r#"{"name":"S"}"#).config, &cx, false).unwrap_err();
    assert!(error.is(ApiErrorKind::StreamMaxBytesRequired));
    let error = check_stream_config(
        &request(r#"{"name":"S","max_bytes":2000}"#).config,
        &cx,
        false,
    )
    .unwrap_err();
    assert!(error.is(ApiErrorKind::StreamMaxStreamBytesExceeded));
    assert!(check_stream_config(
        &request(r#"{"name":"S","max_bytes":500}"#).config,
        &cx,
        false
    )
    .is_ok());
}

#[test]
fn republish_and_transform() {
    let (_, text) =
        refusal(r#"{"name":"S","subjects":["rc.>"],"republish":{"src":">","dest":"rc.x"}}"#);
    assert_eq!(
        text,
        "stream configuration for republish destination forms a cycle"
    );
    let config = create(r#"{"name":"S","subjects":["s"],"republish":{"dest":"out"}}"#).unwrap();
    assert_eq!(config.republish.unwrap().src, ">");
    let config = create(
        r#"{"name":"S","subjects":["in.>"],"subject_transform":{"src":"in.>","dest":"out.>"},"republish":{"src":">","dest":">"}}"#,
    )
    .unwrap();
    let republish = config.republish.unwrap();
    assert_eq!(
        (republish.src.as_str(), republish.dest.as_str()),
        ("out.>", "out.>")
    );
    let config = create(r#"{"name":"S","placement":{}}"#).unwrap();
    assert_eq!(config.placement, None);
    let _ = (Placement::default(), SubjectTransformConfig::default());
}

#[test]
fn update_rules() {
    let limits = AccountLimits::default();
    let cx = context(&limits, &NoStreams);
    let current =
        create(r#"{"name":"U","subjects":["u"],"deny_delete":true,"allow_msg_ttl":true}"#).unwrap();
    let update = |json: &str| check_update("U", &current, &request(json), &cx);
    let error = update(r#"{"name":"U","subjects":["u"],"storage":"memory","deny_delete":true,"allow_msg_ttl":true}"#).unwrap_err();
    assert_eq!(
        error.description,
        "stream configuration update can not change storage type"
    );
    let error = update(r#"{"name":"U","subjects":["u"],"allow_msg_ttl":true}"#).unwrap_err();
    assert_eq!(
        error.description,
        "stream configuration update can not cancel deny message deletes"
    );
    let error = update(r#"{"name":"U","subjects":["u"],"deny_delete":true}"#).unwrap_err();
    assert_eq!(error.description, "message TTL status can not be disabled");
    let error = update(r#"{"name":"U","subjects":["u"],"deny_delete":true,"allow_msg_ttl":true,"retention":"workqueue"}"#).unwrap_err();
    assert_eq!(
        error.description,
        "stream configuration update can not change retention policy to/from workqueue"
    );
    let sealed = update(r#"{"name":"U","subjects":["u"],"deny_delete":true,"allow_msg_ttl":true,"sealed":true,"max_age":5000000000}"#).unwrap();
    assert_eq!(
        (sealed.max_age, sealed.discard, sealed.deny_purge),
        (0, DiscardPolicy::New, true)
    );
    let mut renamed = current.clone();
    renamed.name = "V".into();
    let error = check_update_rules(&renamed, &mut current.clone(), &cx).unwrap_err();
    assert_eq!(
        error.description,
        "stream configuration name must match original"
    );
}

#[test]
fn metadata_levels() {
    let config =
        create(r#"{"name":"C","allow_msg_counter":true,"metadata":{"_nats.ver":"x","k":"v"}}"#)
            .unwrap();
    assert_eq!(
        config
            .metadata
            .get(METADATA_REQUIRED_LEVEL)
            .map(String::as_str),
        Some("2")
    );
    assert!(!config.metadata.contains_key(METADATA_SERVER_VERSION));
    let shown = with_dynamic_metadata(&config);
    assert_eq!(
        shown
            .metadata
            .get(METADATA_SERVER_VERSION)
            .map(String::as_str),
        Some("2.15.1")
    );
    assert_eq!(
        shown
            .metadata
            .get(METADATA_SERVER_LEVEL)
            .map(String::as_str),
        Some("5")
    );
    assert_eq!(shown.metadata.get("k").map(String::as_str), Some("v"));
}

/// One captured request and reply.
#[derive(serde::Deserialize)]
struct ReferenceCase {
    case: String,
    op: String,
    subject_name: String,
    request: String,
    /// The reply exactly as the reference wrote it.
    reply: String,
}

/// Replays every captured create and update against the checks: the same
/// error (code, err_code, description) or the same config, byte for byte
/// once the reply's version metadata is added. Cases decided outside these
/// checks (JSON parsing, other streams' subjects) are skipped by name.
#[test]
fn replays_the_reference_captures() {
    let cases: Vec<ReferenceCase> =
        serde_json::from_str(include_str!("reference_cases.json")).unwrap();
    // serde_json words JSON syntax errors its own way (see `api::decode`).
    let decided_elsewhere = ["bad_json"];
    let limits = AccountLimits::default();
    let mut streams: BTreeMap<String, StreamConfig> = BTreeMap::new();
    let mut checked = 0;
    for case in &cases {
        if decided_elsewhere.contains(&case.case.as_str()) {
            continue;
        }
        let cx = context(&limits, &streams);
        let decoded = decode_request::<StreamConfigRequest>(case.request.as_bytes(), true);
        let result = decoded.and_then(|request| {
            if case.op == "create" {
                check_create(&case.subject_name, &request, &cx)
            } else {
                let current = streams
                    .get(&case.subject_name)
                    .expect("updated stream exists");
                check_update(&case.subject_name, current, &request, &cx)
            }
        });
        // The caller's part: no overlap with the account's other streams.
        let result = result.and_then(|config| {
            let mut others = streams.values().filter(|other| other.name != config.name);
            if others.any(|other| subjects_overlap(&config.subjects, &other.subjects)) {
                return Err(ApiError::new(ApiErrorKind::StreamSubjectOverlap));
            }
            Ok(config)
        });
        let reply: serde_json::Value = serde_json::from_str(&case.reply).unwrap();
        match (&result, reply.get("error")) {
            (Err(error), Some(expected)) => {
                assert_eq!(
                    &serde_json::to_value(error).unwrap(),
                    expected,
                    "{}",
                    case.case
                );
            }
            (Ok(config), None) => {
                let shown = serde_json::to_value(with_dynamic_metadata(config)).unwrap();
                assert_eq!(&shown, &reply["config"], "{}", case.case);
                streams.insert(config.name.clone(), config.clone());
            }
            (result, expected) => panic!("{}: got {result:?}, reference {expected:?}", case.case),
        }
        checked += 1;
    }
    assert!(checked > 125, "{checked}");
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::jetstream::api::to_wire_json;

    /// Requests built from the values that steer the checks: limits around
    /// their edges, the feature flags, a few subjects and sources.
    fn requests() -> impl Strategy<Value = StreamConfigRequest> {
        let limit = prop_oneof![4 => Just(0_i64), 2 => Just(-1), 1 => Just(-7), 3 => 1_i64..1000];
        let nanos = prop_oneof![
            6 => Just(0_i64),
            1 => Just(-1),
            1 => Just(50_000_000),
            2 => Just(1_000_000_000),
            2 => Just(300_000_000_000)
        ];
        let subjects = prop::collection::vec(
            prop::sample::select(vec!["a", "a.b", "a.*", "b.>", ">", "$JS.API.x", "c"]),
            0..2,
        );
        let flags = prop::collection::vec(prop::bool::weighted(0.15), 12);
        let replicas = prop_oneof![4 => Just(0_i64), 4 => Just(1), 1 => -1_i64..7];
        let source = prop::bool::weighted(0.2);
        (
            limit.clone(),
            limit,
            nanos.clone(),
            nanos,
            subjects,
            flags,
            replicas,
            source,
        )
            .prop_map(
                |(max_msgs, per_subject, max_age, window, subjects, flags, replicas, source)| {
                    let config = StreamConfig {
                        name: "P".into(),
                        subjects: subjects.into_iter().map(str::to_owned).collect(),
                        max_msgs,
                        max_msgs_per_subject: per_subject,
                        max_age,
                        duplicate_window: window,
                        num_replicas: replicas,
                        no_ack: flags[0],
                        deny_purge: flags[1],
                        allow_rollup_hdrs: flags[2],
                        allow_msg_ttl: flags[3],
                        allow_msg_counter: flags[4],
                        allow_msg_schedules: flags[5],
                        allow_atomic: flags[6],
                        discard: if flags[7] {
                            DiscardPolicy::New
                        } else {
                            DiscardPolicy::Old
                        },
                        discard_new_per_subject: flags[8],
                        subject_delete_marker_ttl: if flags[9] { 2_000_000_000 } else { 0 },
                        storage: if flags[10] {
                            StorageType::Memory
                        } else {
                            StorageType::File
                        },
                        sources: if source {
                            vec![StreamSource {
                                name: "O".into(),
                                ..StreamSource::default()
                            }]
                        } else {
                            Vec::new()
                        },
                        ..StreamConfig::default()
                    };
                    StreamConfigRequest {
                        config,
                        pedantic: flags[11],
                    }
                },
            )
    }

    /// A config the checks accept is accepted again unchanged (updates and
    /// restarts check stored configs again), keeps the invariants the
    /// module promises, and survives the wire. Enough of the generated
    /// requests must be accepted for this to mean something.
    #[test]
    fn accepted_configs_are_fixed_points() {
        let accepted = std::cell::Cell::new(0_usize);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let outcome = runner.run(&requests(), |request| {
            let limits = AccountLimits::default();
            let cx = context(&limits, &NoStreams);
            let Ok(config) = check_create("P", &request, &cx) else {
                return Ok(());
            };
            // The reference's own exception (captured as `quirk_*`): delete
            // markers turn message TTLs on after the counter check, so a
            // counter stream with markers is created, then refuses updates.
            if config.allow_msg_counter && config.subject_delete_marker_ttl > 0 {
                return Ok(());
            }
            accepted.set(accepted.get() + 1);
            let again = check_stream_config(&config, &cx, request.pedantic);
            prop_assert_eq!(again.as_ref(), Ok(&config));
            prop_assert!((1..=MAX_REPLICAS).contains(&config.num_replicas));
            let limits = [
                config.max_msgs,
                config.max_msgs_per_subject,
                config.max_bytes,
            ];
            for limit in limits.into_iter().chain([config.max_consumers]) {
                prop_assert!(limit == -1 || limit > 0);
            }
            prop_assert!(!config.subjects.is_empty() || !config.sources.is_empty());
            prop_assert!(config.max_age == 0 || config.duplicate_window <= config.max_age);
            let wire = to_wire_json(&config);
            let back: StreamConfig = serde_json::from_slice(&wire).unwrap();
            prop_assert_eq!(&back, &config);
            let update = StreamConfigRequest {
                config: config.clone(),
                pedantic: request.pedantic,
            };
            prop_assert_eq!(check_update("P", &config, &update, &cx), Ok(config));
            Ok(())
        });
        if let Err(failure) = outcome {
            panic!("{failure}");
        }
        assert!(accepted.get() > 50, "only {} accepted", accepted.get());
    }
}
