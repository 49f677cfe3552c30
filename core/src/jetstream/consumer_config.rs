//! Checking a consumer's configuration at `CONSUMER.CREATE`, the way
//! nats-server v2.15.1 does on a single server.
//!
//! Role: pure functions from the request subject, the decoded
//! [`CreateConsumerRequest`], the stream's config and what the stream
//! already holds to the config the consumer runs with, or the [`ApiError`]
//! the reference replies with. The caller's sequence:
//!
//! 1. [`parse_create_subject`]: which form of `CONSUMER.CREATE` this is
//!    (`None`: the reference does not answer);
//! 2. [`check_create_request`]: the handler's checks of subject against
//!    body (stream name, consumer name, durable, filter), then the
//!    single-server replica check;
//! 3. the stream lookup (`StreamNotFound` is the caller's);
//! 4. [`check_create`]: metadata, defaults (pedantic refusals), the config
//!    checks, then against the stream's consumers: an existing one of the
//!    same name is updated under [`check_update`]'s rules, a new one is
//!    counted against `max_consumers` and the workqueue rules.
//!
//! The checks run in the reference's order, because a config with two
//! faults must get the same error from both servers.
//!
//! Invariants: a config returned `Ok` has `max_deliver` -1 or above 0, no
//! negative count or duration, `max_waiting` set for a pull consumer, an
//! `ack_wait` when acks are needed, and `_nats.req.level` in its metadata
//! (the server keys `_nats.ver`/`_nats.level` are only added to replies,
//! [`with_dynamic_metadata`]). A legacy ephemeral (no name anywhere) comes
//! back without a name: the machine draws one and, as the reference,
//! leaves `config.name` empty.

use std::collections::BTreeMap;

use super::api::decode::unmarshal_lenient;
use super::api::{
    AckPolicy, ConsumerAction, ConsumerConfig, ConsumerUnpinRequest, CreateConsumerRequest,
    DeliverPolicy, PriorityPolicy, RetentionPolicy, StorageType, StreamConfig,
};
use super::config::AccountLimits;
use super::errors::{ApiError, ApiErrorKind};
use super::stream_config::{
    is_valid_asset_name, API_LEVEL, MAX_DESCRIPTION_LEN, MAX_METADATA_LEN, MAX_NAME_LEN,
    METADATA_REQUIRED_LEVEL, METADATA_SERVER_LEVEL, METADATA_SERVER_VERSION, SERVER_VERSION,
};
use crate::subject::{is_subset_match, is_valid_subject, subject_is_literal, subjects_collide};

/// `ack_wait` of a consumer that needs acks and sets none: 30 s.
pub const DEFAULT_ACK_WAIT_NANOS: i64 = 30_000_000_000;
/// `max_ack_pending` of a consumer that needs acks and sets none.
pub const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
/// `max_waiting` of a pull consumer that sets none.
pub const DEFAULT_MAX_WAITING: i64 = 512;
/// `inactive_threshold` an ephemeral gets when it sets none: 5 s.
pub const DEFAULT_EPHEMERAL_INACTIVE_THRESHOLD_NANOS: i64 = 5_000_000_000;
/// `priority_timeout` of a `pinned_client` consumer that sets none: 2 min.
pub const DEFAULT_PINNED_TTL_NANOS: i64 = 120_000_000_000;
/// The heartbeat of a `flow_control` ack policy consumer: exactly 1 s.
pub const FLOW_CONTROL_ACK_HEARTBEAT_NANOS: i64 = 1_000_000_000;
/// Longest priority group name.
pub const MAX_PRIORITY_GROUP_LEN: usize = 16;

const NANOS_PER_MILLISECOND: i64 = 1_000_000;

/// The three forms of `$JS.API.CONSUMER.CREATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateForm {
    /// `CONSUMER.CREATE.<stream>`: the name, if any, comes from the body.
    LegacyEphemeral,
    /// `CONSUMER.DURABLE.CREATE.<stream>.<durable>`.
    LegacyDurable,
    /// `CONSUMER.CREATE.<stream>.<name>[.<filter...>]`.
    Named,
}

/// What the subject of a create request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSubject {
    pub form: CreateForm,
    pub stream: String,
    /// Empty for the legacy ephemeral form.
    pub consumer: String,
    /// The filter tokens after the name, joined; empty when absent.
    pub filter: String,
}

/// Reads a `$JS.API.CONSUMER.CREATE...` or `...DURABLE.CREATE...` subject.
/// `None` when the reference does not answer (fewer than five tokens);
/// a durable form with other than seven tokens is refused.
pub fn parse_create_subject(subject: &str) -> Option<Result<CreateSubject, ApiError>> {
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.len() < 5 {
        return None;
    }
    let parsed = if tokens.len() == 5 {
        CreateSubject {
            form: CreateForm::LegacyEphemeral,
            stream: tokens[4].to_owned(),
            consumer: String::new(),
            filter: String::new(),
        }
    } else if tokens[3] == "DURABLE" {
        if tokens.len() != 7 {
            return Some(Err(ApiError::new(
                ApiErrorKind::ConsumerDurableNameNotInSubject,
            )));
        }
        CreateSubject {
            form: CreateForm::LegacyDurable,
            stream: tokens[5].to_owned(),
            consumer: tokens[6].to_owned(),
            filter: String::new(),
        }
    } else {
        CreateSubject {
            form: CreateForm::Named,
            stream: tokens[4].to_owned(),
            consumer: tokens[5].to_owned(),
            filter: tokens[6..].join("."),
        }
    };
    Some(Ok(parsed))
}

/// The handler's checks of the subject against the body, in the
/// reference's order, and the name the subject gives the consumer. Ends
/// with the single-server replica check (`replicas > 1 not supported`),
/// which the reference makes before it looks the stream up.
pub fn check_create_request(
    subject: &CreateSubject,
    request: &CreateConsumerRequest,
) -> Result<CreateConsumerRequest, ApiError> {
    let mut request = request.clone();
    let consumer_name = match subject.form {
        CreateForm::LegacyEphemeral => request.config.name.clone(),
        CreateForm::LegacyDurable | CreateForm::Named => subject.consumer.clone(),
    };
    if subject.stream != request.stream_name {
        return Err(ApiError::new(ApiErrorKind::StreamMismatch));
    }
    if consumer_name.contains(['\\', '/']) {
        return Err(ApiError::new(
            ApiErrorKind::ConsumerNameContainsPathSeparators,
        ));
    }
    name_from_subject(subject.form, consumer_name, &mut request.config)?;
    if !subject.filter.is_empty() {
        if !request.config.filter_subjects.is_empty() {
            return Err(ApiError::new(
                ApiErrorKind::ConsumerMultipleFiltersNotAllowed,
            ));
        }
        if request.config.filter_subject != subject.filter {
            return Err(ApiError::new(
                ApiErrorKind::ConsumerCreateFilterSubjectMismatch,
            ));
        }
    }
    if request.config.num_replicas > 1 {
        return Err(ApiError::new(ApiErrorKind::StreamReplicasNotSupported));
    }
    Ok(request)
}

/// The durable name against the subject's name; the subject names the
/// consumer in the durable and named forms.
fn name_from_subject(
    form: CreateForm,
    consumer_name: String,
    config: &mut ConsumerConfig,
) -> Result<(), ApiError> {
    let durable = &config.durable_name;
    match form {
        CreateForm::LegacyDurable if durable.is_empty() => {
            Err(ApiError::new(ApiErrorKind::ConsumerDurableNameNotSet))
        }
        CreateForm::LegacyDurable | CreateForm::Named
            if !durable.is_empty() && *durable != consumer_name =>
        {
            Err(ApiError::new(
                ApiErrorKind::ConsumerDurableNameNotMatchSubject,
            ))
        }
        CreateForm::LegacyDurable | CreateForm::Named => {
            config.name = consumer_name;
            Ok(())
        }
        CreateForm::LegacyEphemeral if !durable.is_empty() => Err(ApiError::new(
            ApiErrorKind::ConsumerEphemeralWithDurableName,
        )),
        CreateForm::LegacyEphemeral => Ok(()),
    }
}

/// The consumers a stream holds, by name.
pub trait ConsumerLookup {
    fn consumer_config(&self, name: &str) -> Option<&ConsumerConfig>;
    /// Every consumer with its name, in any order.
    fn each_consumer(&self, visit: &mut dyn FnMut(&str, &ConsumerConfig));
}

impl ConsumerLookup for BTreeMap<String, ConsumerConfig> {
    fn consumer_config(&self, name: &str) -> Option<&ConsumerConfig> {
        self.get(name)
    }

    fn each_consumer(&self, visit: &mut dyn FnMut(&str, &ConsumerConfig)) {
        for (name, config) in self {
            visit(name, config);
        }
    }
}

/// A stream without consumers.
pub struct NoConsumers;

impl ConsumerLookup for NoConsumers {
    fn consumer_config(&self, _name: &str) -> Option<&ConsumerConfig> {
        None
    }

    fn each_consumer(&self, _visit: &mut dyn FnMut(&str, &ConsumerConfig)) {}
}

/// The server's `jetstream { limits { ... } }` that bear on consumers; 0 is
/// no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerConsumerLimits {
    pub max_ack_pending: i64,
    pub max_request_batch: i64,
}

/// What the checks need to know beyond the request and the stream config.
pub struct ConsumerCheckContext<'a> {
    pub server: ServerConsumerLimits,
    /// The account's limits (`max_ack_pending`, `max_consumers`).
    pub account: &'a AccountLimits,
    /// The stream's consumers.
    pub consumers: &'a dyn ConsumerLookup,
    /// Whether the existing consumer's deliver subject has subscribers: a
    /// bound push consumer may not move to another deliver subject.
    pub deliver_subject_bound: bool,
    /// A fresh random name the machine drew (the reference's 8 characters):
    /// a direct sourcing consumer on a limits stream is named
    /// `<name>-<drawn>`. Legacy ephemerals are named by the machine.
    pub drawn_name: &'a str,
}

fn invalid(text: &str) -> ApiError {
    ApiError::with(ApiErrorKind::StreamInvalidConfig, &[("{err}", text)])
}

fn pedantic_error(text: &str) -> ApiError {
    ApiError::with(ApiErrorKind::Pedantic, &[("{err}", text)])
}

/// An update refusal the reference words as a plain error (500 10012).
fn create_error(text: &str) -> ApiError {
    ApiError::with(ApiErrorKind::ConsumerCreate, &[("{err}", text)])
}

/// The name a consumer is known by: its durable name, else its name.
pub fn consumer_name(config: &ConsumerConfig) -> &str {
    if config.durable_name.is_empty() {
        &config.name
    } else {
        &config.durable_name
    }
}

/// The filters of a consumer, `filter_subject` last (empty: everything).
pub fn subject_filters(config: &ConsumerConfig) -> Vec<&str> {
    let mut filters: Vec<&str> = config.filter_subjects.iter().map(String::as_str).collect();
    if !config.filter_subject.is_empty() {
        filters.push(&config.filter_subject);
    }
    filters
}

/// The API level a consumer config needs from the servers that run it.
pub fn required_api_level(config: &ConsumerConfig) -> u32 {
    let mut level = 0;
    if config.pause_until.is_some_and(|until| !until.is_zero()) {
        level = level.max(1);
    }
    if config.priority_policy != PriorityPolicy::None
        || config.priority_timeout != 0
        || !config.priority_groups.is_empty()
    {
        level = level.max(1);
    }
    if config.ack_policy == AckPolicy::FlowControl {
        level = level.max(4);
    }
    level
}

/// Writes the stored metadata: `_nats.req.level` set from the config, the
/// server's version keys dropped (they are added to replies only).
pub fn set_static_metadata(config: &mut ConsumerConfig) {
    config.metadata.remove(METADATA_SERVER_VERSION);
    config.metadata.remove(METADATA_SERVER_LEVEL);
    let level = required_api_level(config).to_string();
    config
        .metadata
        .insert(METADATA_REQUIRED_LEVEL.to_owned(), level);
}

/// The config as replies show it: with `_nats.ver` and `_nats.level`.
pub fn with_dynamic_metadata(config: &ConsumerConfig) -> ConsumerConfig {
    let mut shown = config.clone();
    shown.metadata.insert(
        METADATA_SERVER_VERSION.to_owned(),
        SERVER_VERSION.to_owned(),
    );
    shown
        .metadata
        .insert(METADATA_SERVER_LEVEL.to_owned(), API_LEVEL.to_string());
    shown
}

/// The reference compares a create against an existing consumer with the
/// existing one's `_nats.req.level` (the one the request computed may
/// differ, and is not what makes the configs different).
fn metadata_as_previous(config: &mut ConsumerConfig, previous: &ConsumerConfig) {
    config.metadata.remove(METADATA_SERVER_VERSION);
    config.metadata.remove(METADATA_SERVER_LEVEL);
    match previous.metadata.get(METADATA_REQUIRED_LEVEL) {
        Some(level) => {
            config
                .metadata
                .insert(METADATA_REQUIRED_LEVEL.to_owned(), level.clone());
        }
        None => {
            config.metadata.remove(METADATA_REQUIRED_LEVEL);
        }
    }
}

/// `CONSUMER.CREATE` on `stream` once [`check_create_request`] passed and
/// the stream exists: the config the consumer runs with. When a consumer
/// of the same name exists the result is its updated config; the caller
/// tells the two apart by looking up [`consumer_name`] of the result (a
/// direct sourcing consumer's name may have gained the drawn suffix).
pub fn check_create(
    stream: &StreamConfig,
    request: &CreateConsumerRequest,
    context: &ConsumerCheckContext<'_>,
) -> Result<ConsumerConfig, ApiError> {
    let mut config = request.config.clone();
    upgrade_sourcing(&mut config, stream, context.drawn_name);
    let existing = match consumer_name(&config) {
        "" => None,
        name => context.consumers.consumer_config(name),
    };
    if let Some(existing) = existing {
        // A create never changes the pause; CONSUMER.PAUSE does.
        config.pause_until = existing.pause_until;
        if config.sourcing && !config.durable_name.is_empty() {
            config.deliver_policy = existing.deliver_policy;
            config.opt_start_seq = existing.opt_start_seq;
            config.opt_start_time = existing.opt_start_time;
        }
    }
    set_static_metadata(&mut config);
    set_defaults(&mut config, stream, context, request.pedantic)?;
    check_config(&config, stream, context)?;
    if let Some(existing) = existing {
        return check_against_existing(config, existing, stream, request.action, context);
    }
    if request.action == ConsumerAction::Update {
        return Err(ApiError::new(ApiErrorKind::ConsumerDoesNotExist));
    }
    check_stream_consumers(&config, stream, context)?;
    check_new_name(&config, stream)?;
    if config.durable_name.is_empty() && config.inactive_threshold <= 0 {
        config.inactive_threshold = DEFAULT_EPHEMERAL_INACTIVE_THRESHOLD_NANOS;
    }
    debug_assert!(config.max_deliver == -1 || config.max_deliver > 0);
    debug_assert!(config.metadata.contains_key(METADATA_REQUIRED_LEVEL));
    Ok(config)
}

/// A stream sourcing from this one asks for a direct consumer under a
/// stable name: an interest or workqueue stream gives it a durable one
/// acked by flow control (its acks must count), a limits stream an
/// ephemeral one under a name of its own.
fn upgrade_sourcing(config: &mut ConsumerConfig, stream: &StreamConfig, drawn_name: &str) {
    if !(config.direct && config.sourcing && !config.name.is_empty()) {
        return;
    }
    if stream.retention != RetentionPolicy::Limits {
        config.direct = false;
        config.durable_name = config.name.clone();
        config.ack_policy = AckPolicy::FlowControl;
        config.ack_wait = 0;
        config.max_deliver = 0;
        config.inactive_threshold = 0;
    } else {
        debug_assert!(!drawn_name.is_empty());
        config.name = format!("{}-{drawn_name}", config.name);
    }
}

/// A create naming an existing consumer: `create` must match it exactly,
/// a workqueue's filters must stay unique, then the update rules.
fn check_against_existing(
    mut config: ConsumerConfig,
    existing: &ConsumerConfig,
    stream: &StreamConfig,
    action: ConsumerAction,
    context: &ConsumerCheckContext<'_>,
) -> Result<ConsumerConfig, ApiError> {
    if action == ConsumerAction::Create {
        let mut compared = config.clone();
        metadata_as_previous(&mut compared, existing);
        if compared != *existing {
            return Err(ApiError::new(ApiErrorKind::ConsumerAlreadyExists));
        }
    }
    let name = consumer_name(&config).to_owned();
    if stream.retention == RetentionPolicy::WorkQueue
        && !partition_unique(context.consumers, &name, &subject_filters(&config))
    {
        return Err(ApiError::new(ApiErrorKind::ConsumerWQConsumerNotUnique));
    }
    config = check_update(existing, &config, context.deliver_subject_bound)?;
    Ok(config)
}

/// An update of consumer `old` to `new` (both already checked and
/// defaulted): the reference's list of what may not change, with its
/// words. `deliver_subject_bound`: whether `old`'s deliver subject has
/// subscribers. The result is `new` with the ephemeral threshold stamped
/// where the reference stamps it and `pause_until` in UTC, as an update
/// stores it.
pub fn check_update(
    old: &ConsumerConfig,
    new: &ConsumerConfig,
    deliver_subject_bound: bool,
) -> Result<ConsumerConfig, ApiError> {
    let mut updated = new.clone();
    if let Some(until) = updated.pause_until.as_mut() {
        until.offset_seconds = 0;
    }
    if old == new {
        return Ok(updated);
    }
    if let Some(text) = fixed_field_changed(old, new) {
        return Err(create_error(text));
    }
    if old.deliver_subject != new.deliver_subject {
        if old.deliver_subject.is_empty() {
            return Err(create_error("can not update pull consumer to push based"));
        }
        if new.deliver_subject.is_empty() {
            return Err(create_error("can not update push consumer to pull based"));
        }
        if deliver_subject_bound {
            return Err(ApiError::new(ApiErrorKind::ConsumerNameExist));
        }
    }
    if old.max_waiting != new.max_waiting {
        return Err(create_error("max waiting can not be updated"));
    }
    let backoffs = new.backoff.len() as i64;
    if backoffs > 0 && new.max_deliver != -1 && backoffs > new.max_deliver {
        return Err(ApiError::new(ApiErrorKind::ConsumerMaxDeliverBackoff));
    }
    // The reference stamps the ephemeral default when the threshold
    // changes, judging durability by the consumer as it was.
    if updated.inactive_threshold != old.inactive_threshold
        && old.durable_name.is_empty()
        && updated.inactive_threshold <= 0
    {
        updated.inactive_threshold = DEFAULT_EPHEMERAL_INACTIVE_THRESHOLD_NANOS;
    }
    Ok(updated)
}

/// The first field an update may not change that `new` changes, as the
/// reference words it.
fn fixed_field_changed(old: &ConsumerConfig, new: &ConsumerConfig) -> Option<&'static str> {
    let fixed = [
        (
            old.deliver_policy != new.deliver_policy,
            "deliver policy can not be updated",
        ),
        (
            old.mem_storage != new.mem_storage,
            "storage type can not be updated",
        ),
        (old.direct != new.direct, "direct can not be updated"),
        (old.sourcing != new.sourcing, "sourcing can not be updated"),
        (
            old.opt_start_seq != new.opt_start_seq,
            "start sequence can not be updated",
        ),
        (
            match (&old.opt_start_time, &new.opt_start_time) {
                (Some(old), Some(new)) => !old.same_instant(new),
                (old, new) => old.is_some() != new.is_some(),
            },
            "start time can not be updated",
        ),
        (
            old.ack_policy != new.ack_policy,
            "ack policy can not be updated",
        ),
        (
            old.replay_policy != new.replay_policy,
            "replay policy can not be updated",
        ),
        (
            old.idle_heartbeat != new.idle_heartbeat,
            "heart beats can not be updated",
        ),
        (
            old.flow_control != new.flow_control,
            "flow control can not be updated",
        ),
    ];
    fixed
        .iter()
        .find(|(changed, _)| *changed)
        .map(|(_, text)| *text)
}

/// Negative values to their floor (or a pedantic refusal), then the
/// defaults, in the reference's order.
fn set_defaults(
    config: &mut ConsumerConfig,
    stream: &StreamConfig,
    context: &ConsumerCheckContext<'_>,
    pedantic: bool,
) -> Result<(), ApiError> {
    if config.max_deliver == 0 || config.max_deliver < -1 {
        if pedantic && config.max_deliver < -1 {
            return Err(pedantic_error("max_deliver must be set to -1"));
        }
        config.max_deliver = -1;
    }
    if config.max_waiting < 0 {
        if pedantic {
            return Err(pedantic_error("max_waiting must not be negative"));
        }
        config.max_waiting = 0;
    }
    if config.max_ack_pending < -1 {
        if pedantic {
            return Err(pedantic_error("max_ack_pending must be set to -1"));
        }
        config.max_ack_pending = -1;
    }
    let floors: [(&mut i64, &str); 6] = [
        (&mut config.max_batch, "max_batch must not be negative"),
        (&mut config.max_expires, "max_expires must not be negative"),
        (&mut config.max_bytes, "max_bytes must not be negative"),
        (
            &mut config.idle_heartbeat,
            "idle_heartbeat must not be negative",
        ),
        (
            &mut config.inactive_threshold,
            "inactive_threshold must not be negative",
        ),
        (
            &mut config.priority_timeout,
            "priority_timeout must not be negative",
        ),
    ];
    for (value, text) in floors {
        if *value < 0 {
            if pedantic {
                return Err(pedantic_error(text));
            }
            *value = 0;
        }
    }
    set_default_values(config, stream, context, pedantic)
}

/// The defaults proper, once no value is negative.
fn set_default_values(
    config: &mut ConsumerConfig,
    stream: &StreamConfig,
    context: &ConsumerCheckContext<'_>,
    pedantic: bool,
) -> Result<(), ApiError> {
    if config.is_pull() && config.max_waiting == 0 {
        config.max_waiting = DEFAULT_MAX_WAITING;
    }
    let acked = matches!(config.ack_policy, AckPolicy::Explicit | AckPolicy::All);
    if config.ack_wait == 0 && acked {
        config.ack_wait = DEFAULT_ACK_WAIT_NANOS;
    }
    if let Some(&first) = config.backoff.first() {
        if pedantic && config.ack_wait != first {
            return Err(pedantic_error(
                "first backoff value has to equal batch AckWait",
            ));
        }
        config.ack_wait = first;
    }
    let limits = &stream.consumer_limits;
    if config.max_ack_pending == 0 {
        if pedantic && limits.max_ack_pending > 0 {
            return Err(pedantic_error(
                "max_ack_pending must be set if it's configured in stream limits",
            ));
        }
        config.max_ack_pending = limits.max_ack_pending;
    }
    if config.inactive_threshold == 0 {
        if pedantic && limits.inactive_threshold > 0 {
            return Err(pedantic_error(
                "inactive_threshold must be set if it's configured in stream limits",
            ));
        }
        config.inactive_threshold = limits.inactive_threshold;
    }
    if config.max_ack_pending == 0 && config.ack_policy != AckPolicy::None {
        let mut pending = DEFAULT_MAX_ACK_PENDING;
        let account = account_max_ack_pending(context.account);
        for limit in [context.server.max_ack_pending, account] {
            if limit > 0 && limit < pending {
                pending = limit;
            }
        }
        config.max_ack_pending = pending;
    }
    let server_batch = context.server.max_request_batch;
    if config.is_pull() && config.max_batch == 0 && server_batch > 0 {
        if pedantic {
            return Err(pedantic_error(
                "max_request_batch must be set if it's JetStream limits are set",
            ));
        }
        config.max_batch = server_batch;
    }
    if config.priority_policy == PriorityPolicy::PinnedClient && config.priority_timeout == 0 {
        config.priority_timeout = DEFAULT_PINNED_TTL_NANOS;
    }
    if config.ack_policy == AckPolicy::FlowControl && !pedantic {
        config.flow_control = true;
        config.idle_heartbeat = FLOW_CONTROL_ACK_HEARTBEAT_NANOS;
    }
    Ok(())
}

fn account_max_ack_pending(account: &AccountLimits) -> i64 {
    account
        .max_ack_pending
        .map_or(0, |limit| i64::try_from(limit).unwrap_or(i64::MAX))
}

/// The reference's `checkConsumerCfg`, in its order.
fn check_config(
    config: &ConsumerConfig,
    stream: &StreamConfig,
    context: &ConsumerCheckContext<'_>,
) -> Result<(), ApiError> {
    check_names_and_replicas(config, stream)?;
    check_acks(config)?;
    if config.description.len() > MAX_DESCRIPTION_LEN {
        let max = MAX_DESCRIPTION_LEN.to_string();
        return Err(ApiError::with(
            ApiErrorKind::ConsumerDescriptionTooLong,
            &[("{max}", &max)],
        ));
    }
    if config.is_pull() {
        check_pull(config, stream, context)?;
    } else {
        check_push(config, stream)?;
    }
    check_limits(config, stream, context)?;
    if config.direct {
        if config.is_pull() {
            return Err(ApiError::new(ApiErrorKind::ConsumerDirectRequiresPush));
        }
        if config.is_durable() {
            return Err(ApiError::new(ApiErrorKind::ConsumerDirectRequiresEphemeral));
        }
    }
    check_filters(config)?;
    check_start(config)?;
    check_sampling(&config.sample_freq)?;
    if config.flow_control && config.idle_heartbeat == 0 {
        return Err(ApiError::new(
            ApiErrorKind::ConsumerWithFlowControlNeedsHeartbeats,
        ));
    }
    if config.is_durable() && !config.name.is_empty() && config.name != config.durable_name {
        return Err(ApiError::new(
            ApiErrorKind::ConsumerCreateDurableAndNameMismatch,
        ));
    }
    let metadata_len: usize = config.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if metadata_len > MAX_METADATA_LEN {
        let limit = format!("{}KB", MAX_METADATA_LEN / 1024);
        return Err(ApiError::with(
            ApiErrorKind::ConsumerMetadataLength,
            &[("{limit}", &limit)],
        ));
    }
    check_priority(config)?;
    let preferred = stream.placement.as_ref().map(|p| !p.preferred.is_empty());
    if preferred == Some(true) {
        return Err(invalid("preferred server not permitted in placement"));
    }
    Ok(())
}

fn check_names_and_replicas(
    config: &ConsumerConfig,
    stream: &StreamConfig,
) -> Result<(), ApiError> {
    if !config.name.is_empty() && !is_valid_asset_name(&config.name) {
        return Err(invalid(
            "consumer name can not contain '.', '*', '>', '\\', '/'",
        ));
    }
    if config.is_durable() && !is_valid_asset_name(&config.durable_name) {
        return Err(invalid(
            "consumer durable name can not contain '.', '*', '>', '\\', '/'",
        ));
    }
    if config.num_replicas > 0 && config.num_replicas > stream.num_replicas {
        return Err(ApiError::new(ApiErrorKind::ConsumerReplicasExceedsStream));
    }
    if config.num_replicas < 0 {
        return Err(ApiError::new(ApiErrorKind::ReplicasCountCannotBeNegative));
    }
    let interest_like = stream.retention != RetentionPolicy::Limits;
    if interest_like && config.num_replicas != 0 && config.num_replicas != stream.num_replicas {
        return Err(ApiError::new(
            ApiErrorKind::ConsumerReplicasShouldMatchStream,
        ));
    }
    Ok(())
}

fn check_acks(config: &ConsumerConfig) -> Result<(), ApiError> {
    if config.backoff.iter().any(|delay| *delay < 0) {
        return Err(ApiError::new(ApiErrorKind::ConsumerBackOffNegative));
    }
    if config.ack_wait < 0 {
        return Err(ApiError::new(ApiErrorKind::ConsumerAckWaitNegative));
    }
    if config.ack_policy == AckPolicy::FlowControl {
        if config.is_pull() {
            return Err(ApiError::new(ApiErrorKind::ConsumerAckFCRequiresPush));
        }
        if !config.flow_control {
            return Err(ApiError::new(ApiErrorKind::ConsumerAckFCRequiresFC));
        }
        if config.idle_heartbeat != FLOW_CONTROL_ACK_HEARTBEAT_NANOS {
            return Err(invalid("flow control ack policy heartbeat needs to be 1s"));
        }
        if config.max_ack_pending <= 0 {
            return Err(ApiError::new(
                ApiErrorKind::ConsumerAckFCRequiresMaxAckPending,
            ));
        }
        if config.ack_wait != 0 || !config.backoff.is_empty() {
            return Err(ApiError::new(ApiErrorKind::ConsumerAckFCRequiresNoAckWait));
        }
        if config.max_deliver > 0 {
            return Err(ApiError::new(
                ApiErrorKind::ConsumerAckFCRequiresNoMaxDeliver,
            ));
        }
    }
    let backoffs = config.backoff.len() as i64;
    if backoffs > 0 && config.max_deliver != -1 && backoffs > config.max_deliver {
        return Err(ApiError::new(ApiErrorKind::ConsumerMaxDeliverBackoff));
    }
    Ok(())
}

fn check_push(config: &ConsumerConfig, stream: &StreamConfig) -> Result<(), ApiError> {
    let deliver = config.deliver_subject.as_str();
    if !subject_is_literal(deliver.as_bytes()) {
        return Err(ApiError::new(ApiErrorKind::ConsumerDeliverToWildcards));
    }
    if !is_valid_subject(deliver.as_bytes()) {
        return Err(ApiError::new(ApiErrorKind::ConsumerInvalidDeliverSubject));
    }
    if stream
        .subjects
        .iter()
        .any(|subject| is_subset_match(deliver, subject))
    {
        return Err(ApiError::new(ApiErrorKind::ConsumerDeliverCycle));
    }
    if config.max_waiting != 0 {
        return Err(ApiError::new(ApiErrorKind::ConsumerPushMaxWaiting));
    }
    if config.max_ack_pending > 0 && config.ack_policy == AckPolicy::None {
        return Err(ApiError::new(
            ApiErrorKind::ConsumerMaxPendingAckPolicyRequired,
        ));
    }
    if config.idle_heartbeat > 0 && config.idle_heartbeat < 100 * NANOS_PER_MILLISECOND {
        return Err(ApiError::new(ApiErrorKind::ConsumerSmallHeartbeat));
    }
    Ok(())
}

fn check_pull(
    config: &ConsumerConfig,
    stream: &StreamConfig,
    context: &ConsumerCheckContext<'_>,
) -> Result<(), ApiError> {
    if config.ack_policy == AckPolicy::None && stream.retention == RetentionPolicy::WorkQueue {
        return Err(ApiError::new(ApiErrorKind::ConsumerPullRequiresAck));
    }
    if config.rate_limit_bps > 0 {
        return Err(ApiError::new(ApiErrorKind::ConsumerPullWithRateLimit));
    }
    if config.max_waiting < 0 {
        return Err(ApiError::new(ApiErrorKind::ConsumerMaxWaitingNegative));
    }
    if config.idle_heartbeat > 0 {
        return Err(ApiError::new(ApiErrorKind::ConsumerHBRequiresPush));
    }
    if config.flow_control {
        return Err(ApiError::new(ApiErrorKind::ConsumerFCRequiresPush));
    }
    if config.max_batch < 0 {
        return Err(ApiError::new(ApiErrorKind::ConsumerMaxRequestBatchNegative));
    }
    if config.max_expires != 0 && config.max_expires < NANOS_PER_MILLISECOND {
        return Err(ApiError::new(
            ApiErrorKind::ConsumerMaxRequestExpiresTooSmall,
        ));
    }
    let server_batch = context.server.max_request_batch;
    if server_batch > 0 && config.max_batch > server_batch {
        let limit = server_batch.to_string();
        return Err(ApiError::with(
            ApiErrorKind::ConsumerMaxRequestBatchExceeded,
            &[("{limit}", &limit)],
        ));
    }
    Ok(())
}

/// `max_ack_pending` against the server, account and stream caps, then the
/// stream's cap on `inactive_threshold`.
fn check_limits(
    config: &ConsumerConfig,
    stream: &StreamConfig,
    context: &ConsumerCheckContext<'_>,
) -> Result<(), ApiError> {
    let caps = [
        context.server.max_ack_pending,
        account_max_ack_pending(context.account),
        stream.consumer_limits.max_ack_pending,
    ];
    for cap in caps {
        if cap > 0 && config.max_ack_pending > cap {
            let limit = cap.to_string();
            return Err(ApiError::with(
                ApiErrorKind::ConsumerMaxPendingAckExcess,
                &[("{limit}", &limit)],
            ));
        }
    }
    let threshold_cap = stream.consumer_limits.inactive_threshold;
    if threshold_cap > 0 && config.inactive_threshold > threshold_cap {
        let limit = crate::format::go_duration(threshold_cap.unsigned_abs());
        return Err(ApiError::with(
            ApiErrorKind::ConsumerInactiveThresholdExcess,
            &[("{limit}", &limit)],
        ));
    }
    Ok(())
}

fn check_filters(config: &ConsumerConfig) -> Result<(), ApiError> {
    if !config.filter_subject.is_empty() && !config.filter_subjects.is_empty() {
        return Err(ApiError::new(ApiErrorKind::ConsumerDuplicateFilterSubjects));
    }
    let bad_subject = || invalid("invalid subject");
    if !config.filter_subject.is_empty() && !is_valid_subject(config.filter_subject.as_bytes()) {
        return Err(bad_subject());
    }
    if config.filter_subjects.iter().any(String::is_empty) {
        return Err(ApiError::new(ApiErrorKind::ConsumerEmptyFilter));
    }
    let filters = subject_filters(config);
    for (outer, subject) in filters.iter().enumerate() {
        if !is_valid_subject(subject.as_bytes()) {
            return Err(bad_subject());
        }
        let overlaps = filters
            .iter()
            .enumerate()
            .any(|(inner, other)| inner != outer && is_subset_match(subject, other));
        if overlaps {
            return Err(ApiError::new(
                ApiErrorKind::ConsumerOverlappingSubjectFilters,
            ));
        }
    }
    Ok(())
}

/// The deliver policy against the optional start fields.
fn check_start(config: &ConsumerConfig) -> Result<(), ApiError> {
    let policy_error =
        |text: String| ApiError::with(ApiErrorKind::ConsumerInvalidPolicy, &[("{err}", &text)]);
    let also_set = |policy: &str, start: &str| {
        policy_error(format!(
            "consumer delivery policy is deliver {policy}, but optional start {start} is also set"
        ))
    };
    let not_set = |policy: &str, missing: &str| {
        policy_error(format!(
            "consumer delivery policy is deliver {policy}, but optional {missing} is not set"
        ))
    };
    let has_seq = config.opt_start_seq > 0;
    let has_time = config.opt_start_time.is_some();
    let no_start = |policy: &str| {
        if has_seq {
            return Err(also_set(policy, "sequence"));
        }
        if has_time {
            return Err(also_set(policy, "time"));
        }
        Ok(())
    };
    match config.deliver_policy {
        DeliverPolicy::All => no_start("all"),
        DeliverPolicy::Last => no_start("last"),
        DeliverPolicy::New => no_start("new"),
        DeliverPolicy::LastPerSubject => {
            no_start("last per subject")?;
            if subject_filters(config).is_empty() {
                return Err(not_set("last per subject", "filter subject"));
            }
            Ok(())
        }
        DeliverPolicy::ByStartSequence => {
            if !has_seq {
                return Err(not_set("by start sequence", "start sequence"));
            }
            if has_time {
                return Err(also_set("by start sequence", "time"));
            }
            Ok(())
        }
        DeliverPolicy::ByStartTime => {
            if !has_time {
                return Err(not_set("by start time", "start time"));
            }
            if has_seq {
                // The reference's words, doubled "start" included.
                return Err(also_set("by start time", "start sequence"));
            }
            Ok(())
        }
    }
}

/// `sample_freq`: an integer percentage, optionally followed by `%`,
/// refused with Go's `strconv.Atoi` error (`<nil>` for a negative one).
fn check_sampling(sample_freq: &str) -> Result<(), ApiError> {
    if sample_freq.is_empty() {
        return Ok(());
    }
    let digits = sample_freq.strip_suffix('%').unwrap_or(sample_freq);
    let error = match parse_go_int(digits) {
        Ok(value) if value >= 0 => return Ok(()),
        Ok(_) => "<nil>".to_owned(),
        Err(text) => text,
    };
    Err(ApiError::with(
        ApiErrorKind::ConsumerInvalidSampling,
        &[("{err}", &error)],
    ))
}

/// Go's `strconv.Atoi` on a 64-bit machine, with its error text.
fn parse_go_int(text: &str) -> Result<i64, String> {
    let quoted = crate::format::go_quote(text.as_bytes());
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {quoted}: invalid syntax"));
    }
    text.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {quoted}: value out of range"))
}

fn check_priority(config: &ConsumerConfig) -> Result<(), ApiError> {
    if config.priority_policy != PriorityPolicy::None {
        if !config.is_pull() {
            return Err(ApiError::new(ApiErrorKind::ConsumerPushWithPriorityGroup));
        }
        if config.priority_groups.is_empty() {
            return Err(ApiError::new(
                ApiErrorKind::ConsumerPriorityPolicyWithoutGroup,
            ));
        }
        for group in &config.priority_groups {
            if group.is_empty() {
                return Err(ApiError::new(ApiErrorKind::ConsumerEmptyGroupName));
            }
            if !is_valid_group_name(group) {
                return Err(ApiError::new(ApiErrorKind::ConsumerInvalidGroupName));
            }
        }
        return Ok(());
    }
    if !config.priority_groups.is_empty() {
        return Err(ApiError::new(
            ApiErrorKind::ConsumerPriorityGroupWithPolicyNone,
        ));
    }
    if config.priority_timeout > 0 {
        return Err(ApiError::new(
            ApiErrorKind::ConsumerPinnedTTLWithoutPriorityPolicyNone,
        ));
    }
    Ok(())
}

/// A priority group name: 1 to 16 of `A-Z a-z 0-9 / _ = -`.
pub fn is_valid_group_name(group: &str) -> bool {
    (1..=MAX_PRIORITY_GROUP_LEN).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'=' | b'-'))
}

/// The body of `CONSUMER.UNPIN`, read as the reference reads it (Go's
/// `json.Unmarshal`, not the API decoder: unknown keys pass), and its
/// group checked; the stream and consumer lookups come after this.
pub fn check_unpin_request(body: &[u8]) -> Result<String, ApiError> {
    let invalid_json = |text: &str| ApiError::with(ApiErrorKind::InvalidJSON, &[("{err}", text)]);
    let request: ConsumerUnpinRequest =
        unmarshal_lenient(body).map_err(|text| invalid_json(&text))?;
    if request.group.is_empty() {
        return Err(invalid_json("consumer group not specified"));
    }
    if !is_valid_group_name(&request.group) {
        return Err(ApiError::new(ApiErrorKind::ConsumerInvalidGroupName));
    }
    Ok(request.group)
}

/// `CONSUMER.UNPIN` of `group` on a consumer with `config`: the group must
/// be one of its priority groups.
pub fn check_unpin_group(config: &ConsumerConfig, group: &str) -> Result<(), ApiError> {
    if config.priority_groups.iter().any(|known| known == group) {
        return Ok(());
    }
    Err(ApiError::new(ApiErrorKind::ConsumerInvalidPriorityGroup))
}

/// Whether no other consumer (sourcing and direct ones aside) takes any of
/// `filters` (a consumer without filters takes everything).
fn partition_unique(consumers: &dyn ConsumerLookup, name: &str, filters: &[&str]) -> bool {
    let mut unique = true;
    if filters.is_empty() {
        return true;
    }
    consumers.each_consumer(&mut |other_name, other| {
        if !unique || other_name == name || other.direct || other.sourcing {
            return;
        }
        let taken = subject_filters(other);
        if taken.is_empty() {
            unique = false;
            return;
        }
        unique = !filters
            .iter()
            .any(|filter| taken.iter().any(|t| subjects_collide(filter, t)));
    });
    unique
}

/// A new consumer against the stream's others: `max_consumers`, then the
/// workqueue rules.
fn check_stream_consumers(
    config: &ConsumerConfig,
    stream: &StreamConfig,
    context: &ConsumerCheckContext<'_>,
) -> Result<(), ApiError> {
    // Direct and sourcing consumers serve other streams; they are not
    // the account's to count. Counted only where a limit or a work queue
    // needs the count: a stream may hold many thousands.
    let count_limitable = || {
        let mut limitable = 0_i64;
        context.consumers.each_consumer(&mut |_, other| {
            if !other.sourcing && !other.direct {
                limitable += 1;
            }
        });
        limitable
    };
    let account_max = context
        .account
        .max_consumers
        .map_or(0, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
    let mut max_consumers = stream.max_consumers;
    if max_consumers <= 0 || (account_max > 0 && account_max < max_consumers) {
        max_consumers = account_max;
    }
    if max_consumers > 0 && count_limitable() >= max_consumers {
        return Err(ApiError::new(ApiErrorKind::MaximumConsumersLimit));
    }
    if stream.retention != RetentionPolicy::WorkQueue || config.direct || config.sourcing {
        return Ok(());
    }
    let limitable = count_limitable();
    if !matches!(
        config.ack_policy,
        AckPolicy::Explicit | AckPolicy::FlowControl
    ) {
        return Err(ApiError::new(ApiErrorKind::ConsumerWQRequiresExplicitAck));
    }
    if config.deliver_policy != DeliverPolicy::All {
        return Err(ApiError::new(ApiErrorKind::ConsumerWQConsumerNotDeliverAll));
    }
    if limitable > 0 {
        let filters = subject_filters(config);
        if filters.is_empty() {
            return Err(ApiError::new(ApiErrorKind::ConsumerWQMultipleUnfiltered));
        }
        if !partition_unique(context.consumers, consumer_name(config), &filters) {
            return Err(ApiError::new(ApiErrorKind::ConsumerWQConsumerNotUnique));
        }
    }
    Ok(())
}

/// The name checks of a new consumer: a durable's length, and (for the
/// file store) a directory name the file system takes.
fn check_new_name(config: &ConsumerConfig, stream: &StreamConfig) -> Result<(), ApiError> {
    if config.durable_name.len() > MAX_NAME_LEN {
        let max = MAX_NAME_LEN.to_string();
        return Err(ApiError::with(
            ApiErrorKind::ConsumerNameTooLong,
            &[("{max}", &max)],
        ));
    }
    let name = consumer_name(config);
    if !name.is_empty() && !is_valid_asset_name(name) {
        return Err(ApiError::new(ApiErrorKind::ConsumerBadDurableName));
    }
    // The reference keeps a file-backed consumer in a directory named
    // after it; a name longer than a file name may be fails there.
    let file_backed = stream.storage == StorageType::File && !config.mem_storage;
    if file_backed && !config.direct && name.len() > MAX_NAME_LEN {
        return Err(create_error("error creating store for consumer"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
