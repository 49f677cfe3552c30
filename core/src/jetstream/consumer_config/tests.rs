//! Tests of the consumer config checks: the cases captured from
//! nats-server v2.15.1 (`reference_cases.json`: streams created, then every
//! `CONSUMER.CREATE` form and body sent to a fresh `nats-server -js`, with
//! the deletes that kept its state known, each with its reply, in order),
//! and hand-written cases for what one server with default limits cannot
//! show (server and account limits, a bound deliver subject).

use super::*;
use crate::jetstream::api::time::GoTime;
use crate::jetstream::api::{decode_request, StreamConfigRequest};
use crate::jetstream::stream_config::{self, CheckContext, NoStreams};

fn stream(json: &str) -> StreamConfig {
    let request: StreamConfigRequest = serde_json::from_str(json).unwrap();
    let limits = AccountLimits::default();
    let context = CheckContext {
        clustered: false,
        duplicate_window_limit: None,
        account: &limits,
        streams: &NoStreams,
    };
    stream_config::check_create(&request.config.name, &request, &context).unwrap()
}

fn context<'a>(
    account: &'a AccountLimits,
    consumers: &'a dyn ConsumerLookup,
) -> ConsumerCheckContext<'a> {
    ConsumerCheckContext {
        server: ServerConsumerLimits::default(),
        account,
        consumers,
        deliver_subject_bound: false,
        drawn_name: "",
    }
}

/// The whole create path for `subject` and `body` against `stream`.
fn create_with(
    stream: &StreamConfig,
    subject: &str,
    body: &str,
    context: &ConsumerCheckContext<'_>,
) -> Result<ConsumerConfig, ApiError> {
    let parsed = parse_create_subject(subject).expect("answered")?;
    let request = decode_request::<CreateConsumerRequest>(body.as_bytes(), true)?;
    let request = check_create_request(&parsed, &request)?;
    check_create(stream, &request, context)
}

fn create(body: &str) -> Result<ConsumerConfig, ApiError> {
    let stream = stream(r#"{"name":"S","subjects":["s.>"]}"#);
    let limits = AccountLimits::default();
    create_with(
        &stream,
        "$JS.API.CONSUMER.CREATE.S",
        body,
        &context(&limits, &NoConsumers),
    )
}

fn refusal(body: &str) -> (ApiErrorKind, String) {
    let error = create(body).expect_err(body);
    (error.kind().unwrap(), error.description)
}

#[derive(serde::Deserialize)]
struct Case {
    case: String,
    op: String,
    subject: String,
    request: String,
    reply: String,
}

/// Every captured request gets the reference's reply: the same error
/// member, or the same config (with the server's metadata keys) and name.
#[test]
fn replays_the_reference_cases() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("reference_cases.json")).unwrap();
    let limits = AccountLimits::default();
    let mut streams: BTreeMap<String, StreamConfig> = BTreeMap::new();
    let mut consumers: BTreeMap<String, BTreeMap<String, ConsumerConfig>> = BTreeMap::new();
    let mut subscribed: Vec<String> = Vec::new();
    let mut checked = 0;
    for case in &cases {
        match case.op.as_str() {
            "stream" => {
                let config = stream(&case.request);
                consumers.insert(config.name.clone(), BTreeMap::new());
                streams.insert(config.name.clone(), config);
            }
            "delete" => {
                let tokens: Vec<&str> = case.subject.split('.').collect();
                let (stream_name, name) = (tokens[4], tokens[5]);
                let removed = consumers
                    .get_mut(stream_name)
                    .and_then(|held| held.remove(name));
                let reply: serde_json::Value = serde_json::from_str(&case.reply).unwrap();
                assert_eq!(
                    removed.is_some(),
                    reply.get("error").is_none(),
                    "{}",
                    case.case
                );
            }
            "subscribe" => subscribed.push(case.subject.clone()),
            _ => {
                replay_create(case, &streams, &mut consumers, &limits, &subscribed);
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked}");
}

fn replay_create(
    case: &Case,
    streams: &BTreeMap<String, StreamConfig>,
    consumers: &mut BTreeMap<String, BTreeMap<String, ConsumerConfig>>,
    limits: &AccountLimits,
    subscribed: &[String],
) {
    let reply: serde_json::Value = match case.reply.as_str() {
        "" => serde_json::Value::Null,
        text => serde_json::from_str(text).unwrap(),
    };
    // The machine's random draw, as the reference's reply shows it.
    let drawn = reply["name"]
        .as_str()
        .and_then(|name| name.rsplit_once('-'));
    let drawn_name = drawn.map_or("", |(_, drawn)| drawn);
    let Some(parsed) = parse_create_subject(&case.subject) else {
        assert_eq!(case.reply, "", "{}", case.case);
        return;
    };
    let empty = BTreeMap::new();
    let result = parsed
        .and_then(|parsed| {
            let request = decode_request::<CreateConsumerRequest>(case.request.as_bytes(), true)?;
            check_create_request(&parsed, &request)
        })
        .and_then(|request| {
            let stream = streams
                .get(&request.stream_name)
                .ok_or_else(|| ApiError::new(ApiErrorKind::StreamNotFound))?;
            let held = consumers.get(&request.stream_name).unwrap_or(&empty);
            let mut cx = context(limits, held);
            cx.drawn_name = drawn_name;
            let existing = held.consumer_config(consumer_name(&request.config));
            cx.deliver_subject_bound =
                existing.is_some_and(|old| subscribed.contains(&old.deliver_subject));
            let config = check_create(stream, &request, &cx)?;
            Ok((request.stream_name, config))
        });
    match (result, reply.get("error")) {
        (Err(error), Some(expected)) => {
            assert_eq!(
                &serde_json::to_value(&error).unwrap(),
                expected,
                "{}",
                case.case
            );
        }
        (Ok((stream_name, config)), None) => {
            let shown = serde_json::to_value(with_dynamic_metadata(&config)).unwrap();
            assert_eq!(shown, reply["config"], "{}", case.case);
            let name = reply["name"].as_str().unwrap().to_owned();
            if !config.name.is_empty() {
                assert_eq!(name, config.name, "{}", case.case);
            }
            consumers
                .entry(stream_name)
                .or_default()
                .insert(name, config);
        }
        (result, expected) => panic!("{}: got {result:?}, reference {expected:?}", case.case),
    }
}

#[test]
fn subjects_name_the_form() {
    let parsed = |subject: &str| parse_create_subject(subject).unwrap().unwrap();
    let legacy = parsed("$JS.API.CONSUMER.CREATE.S");
    assert_eq!(legacy.form, CreateForm::LegacyEphemeral);
    assert_eq!(
        (legacy.stream.as_str(), legacy.consumer.as_str()),
        ("S", "")
    );
    let named = parsed("$JS.API.CONSUMER.CREATE.S.C.orders.*.>");
    assert_eq!(named.form, CreateForm::Named);
    assert_eq!(named.consumer, "C");
    assert_eq!(named.filter, "orders.*.>");
    let durable = parsed("$JS.API.CONSUMER.DURABLE.CREATE.S.D");
    assert_eq!(durable.form, CreateForm::LegacyDurable);
    assert_eq!(
        (durable.stream.as_str(), durable.consumer.as_str()),
        ("S", "D")
    );
    assert!(parse_create_subject("$JS.API.CONSUMER.CREATE").is_none());
    let error = parse_create_subject("$JS.API.CONSUMER.DURABLE.CREATE.S.D.x")
        .unwrap()
        .unwrap_err();
    assert!(error.is(ApiErrorKind::ConsumerDurableNameNotInSubject));
}

#[test]
fn defaults_of_a_pull_consumer_with_acks() {
    let config = create(r#"{"stream_name":"S","config":{"ack_policy":"explicit"}}"#).unwrap();
    assert_eq!(config.ack_wait, DEFAULT_ACK_WAIT_NANOS);
    assert_eq!(config.max_deliver, -1);
    assert_eq!(config.max_waiting, DEFAULT_MAX_WAITING);
    assert_eq!(config.max_ack_pending, DEFAULT_MAX_ACK_PENDING);
    assert_eq!(
        config.replay_policy,
        crate::jetstream::api::ReplayPolicy::Instant
    );
    assert_eq!(
        config.inactive_threshold,
        DEFAULT_EPHEMERAL_INACTIVE_THRESHOLD_NANOS
    );
    assert_eq!(config.num_replicas, 0);
    assert_eq!(config.metadata.get(METADATA_REQUIRED_LEVEL).unwrap(), "0");
    assert!(
        config.name.is_empty(),
        "a legacy ephemeral's name is drawn by the machine"
    );
}

#[test]
fn server_and_account_limits_cap_max_ack_pending() {
    let stream = stream(r#"{"name":"S","subjects":["s.>"]}"#);
    let body = r#"{"stream_name":"S","config":{"ack_policy":"explicit"}}"#;
    let account = AccountLimits {
        max_ack_pending: Some(300),
        ..AccountLimits::default()
    };
    let mut cx = context(&account, &NoConsumers);
    cx.server.max_ack_pending = 200;
    let config = create_with(&stream, "$JS.API.CONSUMER.CREATE.S", body, &cx).unwrap();
    assert_eq!(config.max_ack_pending, 200);
    let too_many =
        r#"{"stream_name":"S","config":{"ack_policy":"explicit","max_ack_pending":250}}"#;
    let error = create_with(&stream, "$JS.API.CONSUMER.CREATE.S", too_many, &cx).unwrap_err();
    assert_eq!(
        error.description,
        "consumer max ack pending exceeds system limit of 200"
    );
    cx.server.max_ack_pending = 0;
    let config = create_with(&stream, "$JS.API.CONSUMER.CREATE.S", body, &cx).unwrap();
    assert_eq!(config.max_ack_pending, 300);
    let error = create_with(
        &stream,
        "$JS.API.CONSUMER.CREATE.S",
        too_many.replace("250", "301").as_str(),
        &cx,
    )
    .unwrap_err();
    assert_eq!(
        error.description,
        "consumer max ack pending exceeds system limit of 300"
    );
}

#[test]
fn server_max_request_batch_is_a_default_and_a_cap() {
    let stream = stream(r#"{"name":"S","subjects":["s.>"]}"#);
    let limits = AccountLimits::default();
    let mut cx = context(&limits, &NoConsumers);
    cx.server.max_request_batch = 100;
    let subject = "$JS.API.CONSUMER.CREATE.S";
    let config = create_with(&stream, subject, r#"{"stream_name":"S","config":{}}"#, &cx).unwrap();
    assert_eq!(config.max_batch, 100);
    let push = r#"{"stream_name":"S","config":{"deliver_subject":"d"}}"#;
    assert_eq!(
        create_with(&stream, subject, push, &cx).unwrap().max_batch,
        0
    );
    let pedantic = r#"{"stream_name":"S","config":{},"pedantic":true}"#;
    let error = create_with(&stream, subject, pedantic, &cx).unwrap_err();
    assert!(error.is(ApiErrorKind::Pedantic));
    let over = r#"{"stream_name":"S","config":{"max_batch":101}}"#;
    let error = create_with(&stream, subject, over, &cx).unwrap_err();
    assert_eq!(
        error.description,
        "consumer max request batch exceeds server limit of 100"
    );
}

#[test]
fn account_max_consumers_counts_when_tighter_than_the_stream() {
    let stream = stream(r#"{"name":"S","subjects":["s.>"],"max_consumers":5}"#);
    let account = AccountLimits {
        max_consumers: Some(1),
        ..AccountLimits::default()
    };
    let mut held = BTreeMap::new();
    held.insert("A".to_owned(), ConsumerConfig::default());
    let body = r#"{"stream_name":"S","config":{}}"#;
    let error = create_with(
        &stream,
        "$JS.API.CONSUMER.CREATE.S",
        body,
        &context(&account, &held),
    )
    .unwrap_err();
    assert!(error.is(ApiErrorKind::MaximumConsumersLimit));
    // Direct and sourcing consumers are not counted.
    let subject = "$JS.API.CONSUMER.CREATE.S";
    held.get_mut("A").unwrap().sourcing = true;
    assert!(create_with(&stream, subject, body, &context(&account, &held)).is_ok());
    let other = held.get_mut("A").unwrap();
    (other.sourcing, other.direct) = (false, true);
    assert!(create_with(&stream, subject, body, &context(&account, &held)).is_ok());
}

#[test]
fn metadata_too_long_is_refused() {
    let value = "v".repeat(MAX_METADATA_LEN);
    let body = format!(r#"{{"stream_name":"S","config":{{"metadata":{{"k":"{value}"}}}}}}"#);
    let (kind, text) = refusal(&body);
    assert_eq!(kind, ApiErrorKind::ConsumerMetadataLength);
    assert_eq!(text, "consumer metadata exceeds maximum size of 128KB");
}

#[test]
fn static_metadata_replaces_the_server_keys() {
    let body = r#"{"stream_name":"S","config":{"metadata":{"_nats.ver":"1","_nats.level":"9","_nats.req.level":"7","x":"y"}}}"#;
    let config = create(body).unwrap();
    let keys: Vec<(&str, &str)> = config
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(keys, [("_nats.req.level", "0"), ("x", "y")]);
    let shown = with_dynamic_metadata(&config);
    assert_eq!(
        shown.metadata.get(METADATA_SERVER_VERSION).unwrap(),
        SERVER_VERSION
    );
    assert_eq!(shown.metadata.get(METADATA_SERVER_LEVEL).unwrap(), "5");
}

#[test]
fn required_levels() {
    let mut config = ConsumerConfig::default();
    assert_eq!(required_api_level(&config), 0);
    config.priority_groups = vec!["A".into()];
    assert_eq!(required_api_level(&config), 1);
    config.ack_policy = AckPolicy::FlowControl;
    assert_eq!(required_api_level(&config), 4);
}

fn durable_push() -> ConsumerConfig {
    let stream = stream(r#"{"name":"S","subjects":["s.>"]}"#);
    let body = r#"{"stream_name":"S","config":{"durable_name":"D","deliver_subject":"d","ack_policy":"explicit"}}"#;
    let limits = AccountLimits::default();
    let subject = "$JS.API.CONSUMER.CREATE.S.D";
    create_with(&stream, subject, body, &context(&limits, &NoConsumers)).unwrap()
}

/// One edit of a config, for the update rule table.
type Change = fn(&mut ConsumerConfig);

#[test]
fn update_rules_in_the_reference_order() {
    let old = durable_push();
    let mut new = old.clone();
    new.deliver_policy = DeliverPolicy::New;
    new.ack_policy = AckPolicy::All;
    let error = check_update(&old, &new, false).unwrap_err();
    assert!(error.is(ApiErrorKind::ConsumerCreate));
    assert_eq!(error.code, 500);
    assert_eq!(error.description, "deliver policy can not be updated");
    let changes: [(Change, &str); 7] = [
        (|c| c.direct = true, "direct can not be updated"),
        (|c| c.sourcing = true, "sourcing can not be updated"),
        (|c| c.opt_start_seq = 3, "start sequence can not be updated"),
        (
            |c| c.opt_start_time = Some(GoTime::from_wall(crate::time::WallTime(1))),
            "start time can not be updated",
        ),
        (|c| c.flow_control = true, "flow control can not be updated"),
        (
            |c| c.deliver_subject.clear(),
            "can not update push consumer to pull based",
        ),
        (|c| c.max_waiting = 3, "max waiting can not be updated"),
    ];
    for (change, text) in changes {
        let mut new = old.clone();
        change(&mut new);
        assert_eq!(
            check_update(&old, &new, false).unwrap_err().description,
            text
        );
    }
}

#[test]
fn a_bound_push_consumer_keeps_its_deliver_subject() {
    let old = durable_push();
    let mut new = old.clone();
    new.deliver_subject = "elsewhere".into();
    assert_eq!(check_update(&old, &new, false).unwrap(), new);
    let error = check_update(&old, &new, true).unwrap_err();
    assert!(error.is(ApiErrorKind::ConsumerNameExist));
}

#[test]
fn updates_that_are_allowed() {
    let old = durable_push();
    let mut new = old.clone();
    new.description = "d".into();
    new.max_ack_pending = 5;
    new.filter_subject = "s.x".into();
    new.rate_limit_bps = 8;
    new.headers_only = true;
    new.sample_freq = "10%".into();
    new.inactive_threshold = 1;
    new.metadata.insert("k".into(), "v".into());
    assert_eq!(check_update(&old, &new, false).unwrap(), new);
    new.backoff = vec![1, 2];
    new.max_deliver = 1;
    let error = check_update(&old, &new, false).unwrap_err();
    assert!(error.is(ApiErrorKind::ConsumerMaxDeliverBackoff));
}

#[test]
fn an_ephemeral_keeps_a_threshold_across_updates() {
    let body = r#"{"stream_name":"S","config":{"name":"E"}}"#;
    let old = create(body).unwrap();
    let mut new = old.clone();
    new.inactive_threshold = 0;
    let updated = check_update(&old, &new, false).unwrap();
    assert_eq!(
        updated.inactive_threshold,
        DEFAULT_EPHEMERAL_INACTIVE_THRESHOLD_NANOS
    );
}

#[test]
fn sampling_words_as_go() {
    assert!(check_sampling("").is_ok());
    assert!(check_sampling("+5%").is_ok());
    let text = |freq: &str| check_sampling(freq).unwrap_err().description;
    assert_eq!(
        text("99999999999999999999"),
        r#"failed to parse consumer sampling configuration: strconv.Atoi: parsing "99999999999999999999": value out of range"#
    );
    assert_eq!(
        text("5%%"),
        r#"failed to parse consumer sampling configuration: strconv.Atoi: parsing "5%": invalid syntax"#
    );
    assert_eq!(
        text("-3%"),
        "failed to parse consumer sampling configuration: <nil>"
    );
}

#[test]
fn group_names() {
    assert!(is_valid_group_name("a/_=-Z9"));
    assert!(is_valid_group_name(&"A".repeat(MAX_PRIORITY_GROUP_LEN)));
    assert!(!is_valid_group_name(
        &"A".repeat(MAX_PRIORITY_GROUP_LEN + 1)
    ));
    assert!(!is_valid_group_name("a.b"));
    assert!(!is_valid_group_name(""));
}

#[test]
fn workqueue_partitions_ignore_sourcing_consumers() {
    let stream = stream(r#"{"name":"WQ","subjects":["wq.>"],"retention":"workqueue"}"#);
    let limits = AccountLimits::default();
    let mut held = BTreeMap::new();
    let sourcing = ConsumerConfig {
        sourcing: true,
        ..ConsumerConfig::default()
    };
    held.insert("SRC".to_owned(), sourcing);
    let body = r#"{"stream_name":"WQ","config":{"durable_name":"W","ack_policy":"explicit"}}"#;
    let subject = "$JS.API.CONSUMER.CREATE.WQ.W";
    assert!(create_with(&stream, subject, body, &context(&limits, &held)).is_ok());
    let plain = ConsumerConfig {
        filter_subject: "wq.a".into(),
        ..ConsumerConfig::default()
    };
    held.insert("A".to_owned(), plain);
    let error = create_with(&stream, subject, body, &context(&limits, &held)).unwrap_err();
    assert!(error.is(ApiErrorKind::ConsumerWQMultipleUnfiltered));
}

#[test]
fn file_names_longer_than_a_directory_fail_only_on_file_storage() {
    let name = "E".repeat(MAX_NAME_LEN + 1);
    let body = format!(r#"{{"stream_name":"S","config":{{"name":"{name}"}}}}"#);
    let error = create(&body).unwrap_err();
    assert!(error.is(ApiErrorKind::ConsumerCreate));
    let body = format!(r#"{{"stream_name":"S","config":{{"name":"{name}","mem_storage":true}}}}"#);
    assert!(create(&body).is_ok());
}

/// Replies captured from nats-server v2.15.1 to `CONSUMER.UNPIN` bodies.
#[test]
fn unpin_bodies_as_the_reference_reads_them() {
    let refused: [(&[u8], u16, &str); 5] = [
        (b"", 10025, "invalid JSON: unexpected end of JSON input"),
        (b"{}", 10025, "invalid JSON: consumer group not specified"),
        (b"null", 10025, "invalid JSON: consumer group not specified"),
        (
            br#"{"group":"a.b"}"#,
            10162,
            "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters",
        ),
        (
            br#"{"group":"G"} {"group":"H"}"#,
            10025,
            "invalid JSON: invalid character '{' after top-level value",
        ),
    ];
    for (body, err_code, text) in refused {
        let error = check_unpin_request(body).unwrap_err();
        assert_eq!(
            (error.err_code, error.description.as_str()),
            (err_code, text)
        );
    }
    assert_eq!(check_unpin_request(br#"{"Group":"G","x":1}"#).unwrap(), "G");
    let config = ConsumerConfig {
        priority_groups: vec!["G".into()],
        ..ConsumerConfig::default()
    };
    assert!(check_unpin_group(&config, "G").is_ok());
    let error = check_unpin_group(&ConsumerConfig::default(), "G").unwrap_err();
    assert!(error.is(ApiErrorKind::ConsumerInvalidPriorityGroup));
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::jetstream::api::ReplayPolicy;

    /// Configs built from the values that steer the checks: counts and
    /// durations around their edges, push or pull, the policies, a few
    /// filters and priority settings.
    fn configs() -> impl Strategy<Value = (ConsumerConfig, bool)> {
        let count = prop_oneof![4 => Just(0_i64), 2 => Just(-1), 1 => Just(-7), 3 => 1_i64..2000];
        let nanos = prop_oneof![
            5 => Just(0_i64),
            1 => Just(-1),
            1 => Just(500_000),
            2 => Just(1_000_000_000),
            1 => Just(30_000_000_000)
        ];
        let filters = prop::collection::vec(
            prop::sample::select(vec!["s.a", "s.*", "s.>", "s.b.c", "x", ""]),
            0..3,
        );
        let ack = prop::sample::select(vec![
            AckPolicy::None,
            AckPolicy::All,
            AckPolicy::Explicit,
            AckPolicy::FlowControl,
        ]);
        let deliver = prop::sample::select(vec![
            DeliverPolicy::All,
            DeliverPolicy::New,
            DeliverPolicy::LastPerSubject,
            DeliverPolicy::ByStartSequence,
        ]);
        let priority = prop::sample::select(vec![
            PriorityPolicy::None,
            PriorityPolicy::Overflow,
            PriorityPolicy::PinnedClient,
        ]);
        let flags = prop::collection::vec(prop::bool::weighted(0.25), 6);
        let tidy = prop::bool::weighted(0.8);
        (
            (count.clone(), count.clone(), count),
            (nanos.clone(), nanos.clone(), nanos),
            filters,
            (ack, deliver, priority),
            flags,
            tidy,
        )
            .prop_map(|(counts, durations, filters, policies, flags, tidy)| {
                let (max_deliver, max_ack_pending, max_waiting) = counts;
                let (ack_wait, idle_heartbeat, inactive_threshold) = durations;
                let (ack_policy, deliver_policy, priority_policy) = policies;
                let mut filters: Vec<String> = filters.into_iter().map(str::to_owned).collect();
                let filter_subject = if flags[0] { filters.pop() } else { None };
                let config = ConsumerConfig {
                    name: "C".into(),
                    durable_name: if flags[1] { "C".into() } else { String::new() },
                    deliver_subject: if flags[2] { "d".into() } else { String::new() },
                    flow_control: flags[3],
                    backoff: if flags[4] {
                        vec![1_000_000_000, 2_000_000_000]
                    } else {
                        Vec::new()
                    },
                    replay_policy: ReplayPolicy::Instant,
                    priority_groups: if flags[5] {
                        vec!["G".into()]
                    } else {
                        Vec::new()
                    },
                    opt_start_seq: u64::from(deliver_policy == DeliverPolicy::ByStartSequence),
                    filter_subject: filter_subject.unwrap_or_default(),
                    filter_subjects: filters,
                    max_deliver,
                    max_ack_pending,
                    max_waiting,
                    ack_wait,
                    idle_heartbeat,
                    inactive_threshold,
                    ack_policy,
                    deliver_policy,
                    priority_policy,
                    ..ConsumerConfig::default()
                };
                let mut config = config;
                if tidy {
                    tidy_up(&mut config);
                }
                (config, flags[0] && flags[1])
            })
    }

    /// Takes away the faults most draws have, so that most configs pass
    /// and the property is about accepted ones.
    fn tidy_up(config: &mut ConsumerConfig) {
        config.filter_subjects.retain(|filter| !filter.is_empty());
        config.filter_subjects.dedup();
        if config.filter_subjects.len() > 1 {
            config.filter_subjects = vec!["s.a".into(), "x".into()];
        }
        if config.is_pull() {
            config.idle_heartbeat = 0;
            config.flow_control = false;
            if config.ack_policy == AckPolicy::FlowControl {
                config.ack_policy = AckPolicy::Explicit;
            }
        } else {
            config.priority_policy = PriorityPolicy::None;
            config.max_waiting = 0;
        }
        config.priority_groups = match config.priority_policy {
            PriorityPolicy::None => Vec::new(),
            _ => vec!["G".into()],
        };
        let unfiltered = config.filter_subject.is_empty() && config.filter_subjects.is_empty();
        if config.deliver_policy == DeliverPolicy::LastPerSubject && unfiltered {
            config.filter_subject = "s.a".into();
        }
        if config.flow_control && config.idle_heartbeat == 0 {
            config.idle_heartbeat = 1_000_000_000;
        }
    }

    proptest! {
        /// An accepted config holds the module's invariants, and sending it
        /// back (as clients re-create a consumer) changes nothing.
        #[test]
        fn accepted_configs_are_normal_and_stable((config, pedantic) in configs()) {
            let stream = stream(r#"{"name":"S","subjects":["s.>"]}"#);
            let limits = AccountLimits::default();
            let request = CreateConsumerRequest {
                stream_name: "S".into(),
                config,
                action: ConsumerAction::CreateOrUpdate,
                pedantic,
            };
            let Ok(created) = check_create(&stream, &request, &context(&limits, &NoConsumers)) else {
                return Ok(());
            };
            prop_assert!(created.max_deliver == -1 || created.max_deliver > 0);
            prop_assert!(created.max_ack_pending >= -1);
            for value in [created.ack_wait, created.idle_heartbeat, created.inactive_threshold] {
                prop_assert!(value >= 0);
            }
            if created.is_pull() {
                prop_assert!(created.max_waiting > 0);
            }
            if matches!(created.ack_policy, AckPolicy::Explicit | AckPolicy::All) {
                prop_assert!(created.ack_wait > 0);
            }
            let mut held = BTreeMap::new();
            held.insert(consumer_name(&created).to_owned(), created.clone());
            let again = CreateConsumerRequest {
                config: created.clone(),
                pedantic: false,
                ..request
            };
            let recreated = check_create(&stream, &again, &context(&limits, &held));
            prop_assert_eq!(recreated, Ok(created));
        }
    }
}
