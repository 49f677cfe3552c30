//! Checking a stream's configuration at create and update, the way
//! nats-server v2.15.1 does.
//!
//! Role: pure functions from a requested [`StreamConfig`] (and, for an
//! update, the stream's current one) to the normalized config the stream
//! runs with, or the [`ApiError`] the reference replies with. Defaults are
//! filled as the reference fills them (limits to -1, one replica, a
//! two-minute duplicate window or `max_age` if shorter, the stream's name
//! as its subject when it has none and copies from nowhere); pedantic
//! requests get an error where the reference would adjust.
//!
//! The checks run in the reference's order, because a config with two
//! faults must get the same error from both servers:
//! [`check_create`] = the `STREAM.CREATE` handler's own checks, then
//! [`check_stream_config`], then the single-server replica check;
//! [`check_update`] = [`check_stream_config`], then the update rules
//! against the current config. What needs the rest of the account is the
//! caller's: a stream of the same name, subjects overlapping another
//! stream's ([`subjects_overlap`]), account storage reservations.
//!
//! Invariants: a config returned `Ok` has a valid name, `num_replicas` in
//! 1..=5, every count limit at -1 or above 0, and subjects unless it is a
//! mirror or has sources.

use std::collections::BTreeMap;

use super::api::{
    DiscardPolicy, PersistMode, RetentionPolicy, StorageType, StreamConfig, StreamConfigRequest,
    StreamSource, SubjectTransformConfig,
};
use super::config::AccountLimits;
use super::errors::{ApiError, ApiErrorKind};
use crate::format::go_quote;
pub use crate::subject::subjects_overlap;
use crate::subject::{
    is_subset_match, is_valid_publish_subject, is_valid_subject, subject_is_literal,
    subjects_collide, SubjectTransform, TransformError,
};

/// The API level this server implements (`_nats.level`, `api.level`).
pub const API_LEVEL: u32 = 5;
/// The version written as `_nats.ver`.
pub const SERVER_VERSION: &str = "2.15.1";
/// Metadata keys the server manages.
pub const METADATA_REQUIRED_LEVEL: &str = "_nats.req.level";
pub const METADATA_SERVER_VERSION: &str = "_nats.ver";
pub const METADATA_SERVER_LEVEL: &str = "_nats.level";

/// Longest stream name, description and metadata (keys plus values).
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_DESCRIPTION_LEN: usize = 4 * 1024;
pub const MAX_METADATA_LEN: usize = 128 * 1024;
/// Most replicas a stream may ask for.
pub const MAX_REPLICAS: i64 = 5;
/// The duplicate window a stream gets when it sets none: two minutes.
pub const DEFAULT_DUPLICATE_WINDOW_NANOS: i64 = 120_000_000_000;

const NANOS_PER_MILLISECOND: i64 = 1_000_000;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Other streams of the account, by name: mirrors and sources are checked
/// against the streams they copy from when those exist.
pub trait StreamLookup {
    fn stream_config(&self, name: &str) -> Option<&StreamConfig>;
}

impl StreamLookup for BTreeMap<String, StreamConfig> {
    fn stream_config(&self, name: &str) -> Option<&StreamConfig> {
        self.get(name)
    }
}

/// An account without other streams.
pub struct NoStreams;

impl StreamLookup for NoStreams {
    fn stream_config(&self, _name: &str) -> Option<&StreamConfig> {
        None
    }
}

/// What the checks need to know beyond the config.
pub struct CheckContext<'a> {
    /// Whether the server runs JetStream clustered (replicas > 1 allowed).
    pub clustered: bool,
    /// The server's cap on duplicate windows (nanoseconds), if any.
    pub duplicate_window_limit: Option<i64>,
    /// The account's limits (`max_bytes_required`, per-stream byte caps).
    pub account: &'a AccountLimits,
    /// The account's other streams.
    pub streams: &'a dyn StreamLookup,
}

fn invalid(text: impl Into<String>) -> ApiError {
    ApiError::with(
        ApiErrorKind::StreamInvalidConfig,
        &[("{err}", &text.into())],
    )
}

fn pedantic_error(text: &str) -> ApiError {
    ApiError::with(ApiErrorKind::Pedantic, &[("{err}", text)])
}

/// Whether `name` may name a stream (or consumer): not empty, no
/// whitespace, `.`, `*`, `>`, `\` or `/`.
pub fn is_valid_asset_name(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().any(|c| {
            matches!(
                c,
                ' ' | '\t' | '\r' | '\n' | '\u{c}' | '.' | '*' | '>' | '\\' | '/'
            )
        })
}

/// The API level a config needs from the servers that run it.
pub fn required_api_level(config: &StreamConfig) -> u32 {
    let mut level = 0;
    if config.allow_msg_ttl || config.subject_delete_marker_ttl > 0 {
        level = level.max(1);
    }
    if config.allow_msg_counter
        || config.allow_atomic
        || config.allow_msg_schedules
        || config.persist_mode == PersistMode::Async
    {
        level = level.max(2);
    }
    if config.allow_batched {
        level = level.max(4);
    }
    level
}

/// Writes the stored metadata: `_nats.req.level` set from the config, the
/// server's version keys dropped (they are added to replies only).
pub fn set_static_metadata(config: &mut StreamConfig) {
    config.metadata.remove(METADATA_SERVER_VERSION);
    config.metadata.remove(METADATA_SERVER_LEVEL);
    let level = required_api_level(config).to_string();
    config
        .metadata
        .insert(METADATA_REQUIRED_LEVEL.to_owned(), level);
}

/// The config as replies show it: with `_nats.ver` and `_nats.level`.
pub fn with_dynamic_metadata(config: &StreamConfig) -> StreamConfig {
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

/// `STREAM.CREATE.<subject_name>`: the handler's checks, the config checks
/// and the single-server replica check, in the reference's order. The
/// result carries its static metadata.
pub fn check_create(
    subject_name: &str,
    request: &StreamConfigRequest,
    context: &CheckContext<'_>,
) -> Result<StreamConfig, ApiError> {
    let mut config = request.config.clone();
    set_static_metadata(&mut config);
    if subject_name != config.name {
        return Err(ApiError::new(ApiErrorKind::StreamMismatch));
    }
    if subject_name.contains(['\\', '/']) {
        return Err(ApiError::new(
            ApiErrorKind::StreamNameContainsPathSeparators,
        ));
    }
    if config.sealed {
        return Err(invalid("stream configuration for create can not be sealed"));
    }
    if config.mirror_direct && config.mirror.is_none() {
        return Err(invalid("stream has no mirror but does have mirror direct"));
    }
    let config = check_stream_config(&config, context, request.pedantic)?;
    if !context.clustered && config.num_replicas > 1 {
        return Err(ApiError::new(ApiErrorKind::StreamReplicasNotSupported));
    }
    debug_assert!(config.metadata.contains_key(METADATA_REQUIRED_LEVEL));
    Ok(config)
}

/// `STREAM.UPDATE.<subject_name>` of a stream whose config is `current`:
/// the config checks, the name, then what an update may not change. The
/// result carries its static metadata.
pub fn check_update(
    subject_name: &str,
    current: &StreamConfig,
    request: &StreamConfigRequest,
    context: &CheckContext<'_>,
) -> Result<StreamConfig, ApiError> {
    let config = check_stream_config(&request.config, context, request.pedantic)?;
    if subject_name != config.name {
        return Err(ApiError::new(ApiErrorKind::StreamMismatch));
    }
    let mut config = config;
    set_static_metadata(&mut config);
    // The reference checks the whole config again inside the update.
    let mut config = check_stream_config(&config, context, request.pedantic)?;
    check_update_rules(current, &mut config, context)?;
    Ok(config)
}

/// What an update may not change, and the adjustments sealing makes.
fn check_update_rules(
    old: &StreamConfig,
    new: &mut StreamConfig,
    context: &CheckContext<'_>,
) -> Result<(), ApiError> {
    if new.name != old.name {
        return Err(invalid("stream configuration name must match original"));
    }
    if !context.clustered && new.num_replicas > 1 {
        return Err(ApiError::new(ApiErrorKind::StreamReplicasNotSupported));
    }
    if new.storage != old.storage {
        return Err(invalid(
            "stream configuration update can not change storage type",
        ));
    }
    let work_queue = RetentionPolicy::WorkQueue;
    if new.retention != old.retention
        && (old.retention == work_queue || new.retention == work_queue)
    {
        return Err(invalid(
            "stream configuration update can not change retention policy to/from workqueue",
        ));
    }
    let dropped = |was: bool, is: bool| was && !is;
    if dropped(old.sealed, new.sealed) {
        return Err(invalid(
            "stream configuration update can not unseal a sealed stream",
        ));
    }
    if dropped(old.deny_delete, new.deny_delete) {
        return Err(invalid(
            "stream configuration update can not cancel deny message deletes",
        ));
    }
    if dropped(old.deny_purge, new.deny_purge) {
        return Err(invalid(
            "stream configuration update can not cancel deny purge",
        ));
    }
    if new.mirror.is_some() && new.mirror != old.mirror {
        return Err(ApiError::new(ApiErrorKind::StreamMirrorNotUpdatable));
    }
    check_discard_new_per_subject(new)?;
    if dropped(old.allow_msg_ttl, new.allow_msg_ttl) {
        return Err(invalid("message TTL status can not be disabled"));
    }
    if new.allow_msg_counter != old.allow_msg_counter {
        return Err(invalid(
            "stream configuration update can not change message counter setting",
        ));
    }
    if dropped(old.allow_msg_schedules, new.allow_msg_schedules) {
        return Err(invalid("message schedules can not be disabled"));
    }
    if new.persist_mode != old.persist_mode {
        return Err(invalid(
            "stream configuration update can not change persist mode",
        ));
    }
    if new.sealed {
        new.max_age = 0;
        new.discard = DiscardPolicy::New;
        new.deny_delete = true;
        new.deny_purge = true;
        new.allow_rollup_hdrs = false;
    }
    Ok(())
}

/// The reference's `checkStreamCfg`: validate `requested` and return it
/// normalized. `pedantic` refuses what would otherwise be adjusted.
pub fn check_stream_config(
    requested: &StreamConfig,
    context: &CheckContext<'_>,
    pedantic: bool,
) -> Result<StreamConfig, ApiError> {
    check_identity(requested)?;
    let mut config = requested.clone();
    normalize_limits(&mut config, pedantic)?;
    normalize_duplicate_window(&mut config, context, pedantic)?;
    check_features(&mut config, pedantic)?;
    let mut seen = Seen::default();
    if config.mirror.is_some() {
        check_mirror(&mut config, context, pedantic, &mut seen)?;
    }
    check_sources(&config, context, &mut seen)?;
    check_prefixes(&seen)?;
    check_cycles(&config, context.streams)?;
    check_subjects(&mut config)?;
    check_max_bytes(&config, context.account)?;
    check_transform_and_republish(&mut config, pedantic)?;
    if config.placement.as_ref().is_some_and(|p| p.is_empty()) {
        config.placement = None;
    }
    if config
        .placement
        .as_ref()
        .is_some_and(|p| !p.preferred.is_empty())
    {
        return Err(invalid("preferred server not permitted in placement"));
    }
    debug_assert!((1..=MAX_REPLICAS).contains(&config.num_replicas));
    debug_assert!(config.max_msgs == -1 || config.max_msgs > 0);
    Ok(config)
}

fn check_identity(config: &StreamConfig) -> Result<(), ApiError> {
    if !is_valid_asset_name(&config.name) {
        return Err(invalid(
            "stream name is required and can not contain '.', '*', '>', '\\', '/'",
        ));
    }
    if config.name.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "stream name is too long, maximum allowed is {MAX_NAME_LEN}"
        )));
    }
    if config.description.len() > MAX_DESCRIPTION_LEN {
        return Err(invalid(format!(
            "stream description is too long, maximum allowed is {MAX_DESCRIPTION_LEN}"
        )));
    }
    let metadata_len: usize = config.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if metadata_len > MAX_METADATA_LEN {
        return Err(invalid(format!(
            "stream metadata exceeds maximum size of {MAX_METADATA_LEN} bytes"
        )));
    }
    Ok(())
}

/// Replicas and the count limits: 0 and anything below -1 become -1.
fn normalize_limits(config: &mut StreamConfig, pedantic: bool) -> Result<(), ApiError> {
    if config.num_replicas == 0 {
        config.num_replicas = 1;
    }
    if config.num_replicas > MAX_REPLICAS {
        return Err(invalid(format!("maximum replicas is {MAX_REPLICAS}")));
    }
    if config.num_replicas < 0 {
        return Err(ApiError::new(ApiErrorKind::ReplicasCountCannotBeNegative));
    }
    fn unlimited(value: &mut i64, name: &str, pedantic: bool) -> Result<(), ApiError> {
        if *value == 0 || *value < -1 {
            if pedantic && *value < -1 {
                return Err(pedantic_error(&format!("{name} must be set to -1")));
            }
            *value = -1;
        }
        Ok(())
    }
    unlimited(&mut config.max_msgs, "max_msgs", pedantic)?;
    unlimited(
        &mut config.max_msgs_per_subject,
        "max_msgs_per_subject",
        pedantic,
    )?;
    unlimited(&mut config.max_bytes, "max_bytes", pedantic)?;
    let mut max_msg_size = i64::from(config.max_msg_size);
    unlimited(&mut max_msg_size, "max_msg_size", pedantic)?;
    config.max_msg_size = i32::try_from(max_msg_size).unwrap_or(-1);
    unlimited(&mut config.max_consumers, "max_consumers", pedantic)?;
    if config.max_age < 0 {
        return Err(invalid("max age can not be negative"));
    }
    if config.max_age != 0 && config.max_age < 100 * NANOS_PER_MILLISECOND {
        return Err(invalid("max age needs to be >= 100ms"));
    }
    Ok(())
}

fn normalize_duplicate_window(
    config: &mut StreamConfig,
    context: &CheckContext<'_>,
    pedantic: bool,
) -> Result<(), ApiError> {
    let limit = context.duplicate_window_limit.filter(|limit| *limit > 0);
    if config.duplicate_window == 0 && config.mirror.is_none() && config.sources.is_empty() {
        let mut window = DEFAULT_DUPLICATE_WINDOW_NANOS;
        if let Some(limit) = limit.filter(|limit| window > *limit) {
            if pedantic {
                return Err(pedantic_error(
                    "duplicate window limits are higher than current limits",
                ));
            }
            window = limit;
        }
        if config.max_age != 0 && config.max_age < window {
            if pedantic {
                return Err(pedantic_error(
                    "duplicate window cannot be bigger than max age",
                ));
            }
            config.duplicate_window = config.max_age;
        } else {
            config.duplicate_window = window;
        }
    }
    if config.duplicate_window < 0 {
        return Err(invalid("duplicates window can not be negative"));
    }
    if config.max_age != 0 && config.duplicate_window > config.max_age {
        return Err(invalid("duplicates window can not be larger then max age"));
    }
    if let Some(limit) = limit.filter(|limit| config.duplicate_window > *limit) {
        let text = crate::format::go_duration(limit.unsigned_abs());
        return Err(invalid(format!(
            "duplicates window can not be larger then server limit of {text}"
        )));
    }
    if config.duplicate_window > 0 && config.duplicate_window < 100 * NANOS_PER_MILLISECOND {
        return Err(invalid("duplicates window needs to be >= 100ms"));
    }
    Ok(())
}

fn check_discard_new_per_subject(config: &StreamConfig) -> Result<(), ApiError> {
    if config.discard_new_per_subject {
        if config.discard != DiscardPolicy::New {
            return Err(invalid(
                "discard new per subject requires discard new policy to be set",
            ));
        }
        if config.max_msgs_per_subject <= 0 {
            return Err(invalid(
                "discard new per subject requires max msgs per subject > 0",
            ));
        }
    }
    Ok(())
}

/// What a counter stream may not combine with.
fn check_counter(config: &StreamConfig) -> Result<(), ApiError> {
    if !config.allow_msg_counter {
        return Ok(());
    }
    if config.discard == DiscardPolicy::New {
        return Err(invalid("counter stream cannot use discard new"));
    }
    if config.allow_msg_ttl {
        return Err(invalid("counter stream cannot use message TTLs"));
    }
    if config.allow_msg_schedules {
        return Err(invalid("counter stream cannot use message schedules"));
    }
    if config.retention != RetentionPolicy::Limits {
        return Err(invalid("counter stream can only use limits retention"));
    }
    Ok(())
}

/// Roll-ups, counters, discard-new-per-subject, delete markers, schedules
/// and the persist mode, which constrain one another.
fn check_features(config: &mut StreamConfig, pedantic: bool) -> Result<(), ApiError> {
    if config.deny_purge && config.allow_rollup_hdrs {
        return Err(invalid("roll-ups require the purge permission"));
    }
    check_counter(config)?;
    check_discard_new_per_subject(config)?;
    if config.subject_delete_marker_ttl > 0 {
        if config.subject_delete_marker_ttl < NANOS_PER_SECOND {
            return Err(invalid(
                "subject delete marker TTL must be at least 1 second",
            ));
        }
        if !config.allow_msg_ttl {
            if pedantic {
                return Err(invalid(
                    "subject delete marker cannot be set if message TTLs are disabled",
                ));
            }
            config.allow_msg_ttl = true;
        }
        if !config.allow_rollup_hdrs {
            if pedantic {
                return Err(invalid(
                    "subject delete marker cannot be set if roll-ups are disabled",
                ));
            }
            config.allow_rollup_hdrs = true;
            config.deny_purge = false;
        }
    } else if config.subject_delete_marker_ttl < 0 {
        return Err(invalid("subject delete marker TTL must not be negative"));
    }
    if config.allow_msg_schedules {
        if config.discard == DiscardPolicy::New {
            return Err(invalid("message scheduling cannot use discard new"));
        }
        if !config.allow_rollup_hdrs {
            if pedantic {
                return Err(invalid(
                    "message scheduling cannot be set if roll-ups are disabled",
                ));
            }
            config.allow_rollup_hdrs = true;
            config.deny_purge = false;
        }
    }
    check_persist_mode(config)
}

/// Asynchronous persistence: file storage, one replica, no atomic batches.
fn check_persist_mode(config: &StreamConfig) -> Result<(), ApiError> {
    if config.persist_mode == PersistMode::Async {
        if config.storage != StorageType::File {
            return Err(invalid(
                "async persist mode is only supported on file storage",
            ));
        }
        if config.num_replicas > 1 {
            return Err(invalid(
                "async persist mode is not supported on replicated streams",
            ));
        }
        if config.allow_atomic {
            return Err(invalid(
                "async persist mode is not supported with atomic batch publish",
            ));
        }
    }
    Ok(())
}

/// What mirror and source checks collect for the checks after them.
#[derive(Default)]
struct Seen {
    /// Subjects of the streams copied from (when they exist here).
    origin_subjects: Vec<String>,
    delivery_prefixes: Vec<String>,
    api_prefixes: Vec<String>,
}

/// The text the reference gives a transform it cannot build.
fn mapping_error(error: &TransformError) -> String {
    match error {
        TransformError::InvalidSource(_) => "invalid subject".to_owned(),
        TransformError::WildcardOutOfRange { index, destination } => {
            // The reference names the destination token, not the whole subject.
            let dollar = format!("${index}");
            let call = format!("({index})");
            let token = destination
                .split('.')
                .find(|token| *token == dollar || (token.contains("{{") && token.contains(&call)))
                .unwrap_or(destination);
            // The legacy `$n` form is reported with the indexes it names.
            let suffix = if token.starts_with('$') {
                format!(": [{index}]")
            } else {
                String::new()
            };
            format!("invalid mapping destination: wildcard index out of range in {token}{suffix}")
        }
        TransformError::UnsupportedFunction(_) => {
            "invalid mapping destination: unknown function".to_owned()
        }
        TransformError::InvalidDestination(_) | TransformError::UnmatchedFullWildcard(_) => {
            "invalid mapping destination: invalid transform".to_owned()
        }
    }
}

/// Whether `source` to `destination` is a mapping the server can apply (an
/// empty destination maps nothing).
fn validate_mapping(source: &str, destination: &str) -> Result<(), String> {
    if destination.is_empty() {
        return Ok(());
    }
    let source = if source.is_empty() { ">" } else { source };
    SubjectTransform::new(source, destination)
        .map(|_| ())
        .map_err(|error| mapping_error(&error))
}

fn check_mirror(
    config: &mut StreamConfig,
    context: &CheckContext<'_>,
    pedantic: bool,
    seen: &mut Seen,
) -> Result<(), ApiError> {
    let Some(mirror) = config.mirror.clone() else {
        return Ok(());
    };
    check_mirror_exclusions(config)?;
    if !durable_consumer_source_ok(&mirror) {
        return Err(ApiError::new(ApiErrorKind::MirrorDurableConsumerCfgInvalid));
    }
    if !mirror.filter_subject.is_empty() && !mirror.subject_transforms.is_empty() {
        return Err(ApiError::new(ApiErrorKind::MirrorMultipleFiltersNotAllowed));
    }
    if config.subject_delete_marker_ttl > 0 {
        return Err(invalid("subject delete markers forbidden on mirrors"));
    }
    for (outer, transform) in mirror.subject_transforms.iter().enumerate() {
        check_transform(
            transform,
            ApiErrorKind::MirrorInvalidSubjectFilter,
            ApiErrorKind::MirrorInvalidTransformDestination,
        )?;
        let collides = mirror
            .subject_transforms
            .iter()
            .enumerate()
            .any(|(inner, other)| inner != outer && subjects_collide(&transform.src, &other.src));
        if collides {
            return Err(ApiError::new(ApiErrorKind::MirrorOverlappingSubjectFilters));
        }
    }
    if mirror.external.is_none() && !is_valid_asset_name(&mirror.name) {
        return Err(ApiError::new(ApiErrorKind::MirrorInvalidStreamName));
    }
    let too_big = ApiErrorKind::MirrorMaxMessageSizeTooBig;
    if let Some(origin) = note_origin(&mirror, config, context.streams, seen, too_big)? {
        if pedantic && config.mirror_direct != origin.allow_direct {
            return Err(pedantic_error(
                "origin stream has direct get set, mirror has it disabled",
            ));
        }
        config.mirror_direct = origin.allow_direct;
    }
    Ok(())
}

/// What a mirror may not have besides its mirror.
fn check_mirror_exclusions(config: &StreamConfig) -> Result<(), ApiError> {
    let exclusions = [
        (config.first_seq > 0, ApiErrorKind::MirrorWithFirstSeq),
        (
            !config.subjects.is_empty(),
            ApiErrorKind::MirrorWithSubjects,
        ),
        (!config.sources.is_empty(), ApiErrorKind::MirrorWithSources),
        (config.allow_msg_counter, ApiErrorKind::MirrorWithCounters),
        (config.allow_atomic, ApiErrorKind::MirrorWithAtomicPublish),
        (config.allow_batched, ApiErrorKind::MirrorWithBatchPublish),
        (
            config.allow_msg_schedules,
            ApiErrorKind::MirrorWithMsgSchedules,
        ),
    ];
    match exclusions.iter().find(|(set, _)| *set) {
        Some((_, kind)) => Err(ApiError::new(*kind)),
        None => Ok(()),
    }
}

/// A mirror's or source's transform: a valid source subject (empty is
/// all) and a destination the server can map to.
fn check_transform(
    transform: &SubjectTransformConfig,
    bad_source: ApiErrorKind,
    bad_destination: ApiErrorKind,
) -> Result<(), ApiError> {
    if !transform.src.is_empty() && !is_valid_subject(transform.src.as_bytes()) {
        let text = format!("invalid subject {}", transform.src);
        return Err(ApiError::with(bad_source, &[("{err}", &text)]));
    }
    if let Err(text) = validate_mapping(&transform.src, &transform.dest) {
        return Err(ApiError::with(bad_destination, &[("{err}", &text)]));
    }
    Ok(())
}

/// Records what the checks after need from a mirror or source: the
/// origin's subjects when it is a stream of this account (refusing a
/// `max_msg_size` below the origin's with `too_big`), or its external
/// prefixes. Returns the origin's config when it exists here.
fn note_origin<'s>(
    source: &StreamSource,
    config: &StreamConfig,
    streams: &'s dyn StreamLookup,
    seen: &mut Seen,
    too_big: ApiErrorKind,
) -> Result<Option<&'s StreamConfig>, ApiError> {
    if let Some(external) = &source.external {
        if !external.deliver.is_empty() {
            seen.delivery_prefixes.push(external.deliver.clone());
        }
        if !external.api.is_empty() {
            seen.api_prefixes.push(external.api.clone());
        }
        return Ok(None);
    }
    let Some(origin) = streams.stream_config(&source.name) else {
        return Ok(None);
    };
    seen.origin_subjects.extend(origin.subjects.iter().cloned());
    let smaller = config.max_msg_size > 0
        && origin.max_msg_size > 0
        && config.max_msg_size < origin.max_msg_size;
    if smaller {
        return Err(ApiError::new(too_big));
    }
    Ok(Some(origin))
}

/// A source or mirror read through a durable consumer names it and its
/// literal deliver subject, and sets no start or filter of its own.
fn durable_consumer_source_ok(source: &StreamSource) -> bool {
    let Some(consumer) = &source.consumer else {
        return true;
    };
    let deliver = consumer.deliver_subject.as_bytes();
    is_valid_asset_name(&consumer.name)
        && subject_is_literal(deliver)
        && is_valid_subject(deliver)
        && source.opt_start_seq == 0
        && source.opt_start_time.is_none()
        && source.filter_subject.is_empty()
}

/// A source's identity among the others: the stream (and its external API
/// prefix and durable consumer) with the subjects it takes, an empty
/// filter or transform side counting as `>`. Two sources may read the same
/// stream with different filters, not with the same ones.
fn source_index_name(source: &StreamSource) -> String {
    let or_all = |text: &str| {
        if text.is_empty() {
            ">".to_owned()
        } else {
            text.to_owned()
        }
    };
    let mut name = source.name.clone();
    if let Some(external) = &source.external {
        name.push_str(":api=");
        name.push_str(&external.api);
    }
    if let Some(consumer) = &source.consumer {
        name.push_str(":C=");
        name.push_str(&consumer.name);
    }
    if source.subject_transforms.is_empty() {
        name.push(' ');
        name.push_str(&or_all(&source.filter_subject));
        name.push_str(" >");
    } else {
        for transform in &source.subject_transforms {
            name.push(' ');
            name.push_str(&or_all(&transform.src));
            name.push(' ');
            name.push_str(&or_all(&transform.dest));
        }
    }
    name
}

fn check_sources(
    config: &StreamConfig,
    context: &CheckContext<'_>,
    seen: &mut Seen,
) -> Result<(), ApiError> {
    let refuse = |kind| Err(ApiError::new(kind));
    if !config.sources.is_empty() && config.allow_msg_schedules {
        return refuse(ApiErrorKind::SourceWithMsgSchedules);
    }
    let mut index_names = std::collections::BTreeSet::new();
    let mut consumer_names = std::collections::BTreeSet::new();
    for source in &config.sources {
        if !is_valid_asset_name(&source.name) {
            return refuse(ApiErrorKind::SourceInvalidStreamName);
        }
        if !index_names.insert(source_index_name(source)) {
            return refuse(ApiErrorKind::SourceDuplicateDetected);
        }
        if !source.filter_subject.is_empty() && !source.subject_transforms.is_empty() {
            return refuse(ApiErrorKind::SourceMultipleFiltersNotAllowed);
        }
        check_source_transforms(source)?;
        if !durable_consumer_source_ok(source) {
            return refuse(ApiErrorKind::SourceDurableConsumerCfgInvalid);
        }
        if let Some(consumer) = &source.consumer {
            let api = source.external.as_ref().map_or("", |e| e.api.as_str());
            let key = (source.name.as_str(), api, consumer.name.as_str());
            if !consumer_names.insert(key) {
                return refuse(ApiErrorKind::SourceDurableConsumerDuplicateDetected);
            }
        }
        let too_big = ApiErrorKind::SourceMaxMessageSizeTooBig;
        note_origin(source, config, context.streams, seen, too_big)?;
    }
    Ok(())
}

/// A source's transforms: each valid, no source subject within another's.
fn check_source_transforms(source: &StreamSource) -> Result<(), ApiError> {
    for transform in &source.subject_transforms {
        check_transform(
            transform,
            ApiErrorKind::SourceInvalidSubjectFilter,
            ApiErrorKind::SourceInvalidTransformDestination,
        )?;
    }
    for (outer, transform) in source.subject_transforms.iter().enumerate() {
        let overlapping = source
            .subject_transforms
            .iter()
            .enumerate()
            .any(|(inner, other)| inner != outer && is_subset_match(&transform.src, &other.src));
        if overlapping {
            return Err(ApiError::new(ApiErrorKind::SourceOverlappingSubjectFilters));
        }
    }
    Ok(())
}

/// External delivery prefixes must be literal and not capture the origin's
/// subjects; external API prefixes must be literal and outside `$JS.API`.
fn check_prefixes(seen: &Seen) -> Result<(), ApiError> {
    for prefix in &seen.delivery_prefixes {
        if !is_valid_publish_subject(prefix.as_bytes()) {
            return Err(ApiError::with(
                ApiErrorKind::StreamInvalidExternalDeliverySubj,
                &[("{prefix}", prefix)],
            ));
        }
        for subject in &seen.origin_subjects {
            if subjects_collide(subject, &format!("{prefix}.{subject}")) {
                return Err(ApiError::with(
                    ApiErrorKind::StreamExternalDelPrefixOverlaps,
                    &[("{prefix}", prefix), ("{subject}", subject)],
                ));
            }
        }
    }
    for prefix in &seen.api_prefixes {
        if !is_valid_publish_subject(prefix.as_bytes()) {
            return Err(invalid(format!(
                "stream external api prefix {} must be a valid subject without wildcards",
                go_quote(prefix.as_bytes())
            )));
        }
        if subjects_collide(prefix, "$JS.API") {
            return Err(ApiError::with(
                ApiErrorKind::StreamExternalApiOverlap,
                &[("{prefix}", prefix), ("{subject}", "$JS.API")],
            ));
        }
    }
    Ok(())
}

/// Refuses a config whose sources (or mirrors) lead back to it through
/// streams whose subjects the source's filter would take in again.
fn check_cycles(config: &StreamConfig, streams: &dyn StreamLookup) -> Result<(), ApiError> {
    let overlaps = |subjects: &[String], filter: &str| {
        filter.is_empty() || subjects.iter().any(|s| subjects_collide(s, filter))
    };
    let mut to_visit: Vec<StreamConfig> = vec![config.clone()];
    let mut visited = std::collections::BTreeSet::new();
    // Every stream is visited at most once per path; bound the walk anyway.
    let mut budget = 10_000_usize;
    while let Some(current) = (!to_visit.is_empty()).then(|| to_visit.remove(0)) {
        budget = budget.saturating_sub(1);
        if budget == 0 {
            break;
        }
        visited.insert(current.name.clone());
        for source in current.sources.iter().filter(|s| s.external.is_none()) {
            if visited.contains(&source.name) {
                if overlaps(&current.subjects, &source.filter_subject) {
                    return Err(invalid("detected cycle"));
                }
            } else if let Some(next) = streams.stream_config(&source.name) {
                to_visit.push(next.clone());
            }
        }
        if let Some(mirror) = current.mirror.as_ref().filter(|m| m.external.is_none()) {
            if visited.contains(&mirror.name) {
                return Err(invalid("detected cycle"));
            }
            if let Some(next) = streams.stream_config(&mirror.name) {
                to_visit.push(next.clone());
            }
        }
    }
    Ok(())
}

/// The stream's own subjects: defaulted to its name, valid, not
/// overlapping one another, and clear of the API spaces unless `no_ack`.
fn check_subjects(config: &mut StreamConfig) -> Result<(), ApiError> {
    if config.subjects.is_empty() {
        if config.mirror.is_none() && config.sources.is_empty() {
            config.subjects.push(config.name.clone());
        }
    } else {
        if config.mirror.is_some() {
            return Err(ApiError::new(ApiErrorKind::MirrorWithSubjects));
        }
        let mut earlier = std::collections::BTreeSet::new();
        for (index, subject) in config.subjects.iter().enumerate() {
            check_one_subject(config, subject, &earlier)?;
            for later in &config.subjects[index + 1..] {
                if subjects_collide(later, subject) {
                    return Err(invalid(format!(
                        "subject {} overlaps with {}",
                        go_quote(subject.as_bytes()),
                        go_quote(later.as_bytes())
                    )));
                }
            }
            earlier.insert(subject.as_str());
        }
    }
    if config.subjects.is_empty() && config.sources.is_empty() && config.mirror.is_none() {
        return Err(invalid(
            "stream needs at least one configured subject or be a source/mirror",
        ));
    }
    Ok(())
}

fn check_one_subject(
    config: &StreamConfig,
    subject: &str,
    earlier: &std::collections::BTreeSet<&str>,
) -> Result<(), ApiError> {
    if !is_valid_subject(subject.as_bytes()) {
        return Err(invalid("invalid subject"));
    }
    if earlier.contains(subject) {
        return Err(invalid("duplicate subjects detected"));
    }
    if subject == ">" {
        if !config.no_ack {
            return Err(invalid("capturing all subjects requires no-ack to be true"));
        }
        if config.num_replicas != 1 {
            return Err(invalid("capturing all subjects requires replicas of 1"));
        }
    }
    if !config.no_ack {
        for namespace in ["$JS.>", "$JSC.>", "$NRG.>"] {
            if subjects_collide(subject, namespace) && !is_subset_match(subject, "$JS.EVENT.>") {
                return Err(invalid(
                    "subjects that overlap with jetstream api require no-ack to be true",
                ));
            }
        }
        if subjects_collide(subject, "$SYS.>") && !is_subset_match(subject, "$SYS.ACCOUNT.>") {
            return Err(invalid(
                "subjects that overlap with system api require no-ack to be true",
            ));
        }
    }
    Ok(())
}

fn check_max_bytes(config: &StreamConfig, account: &AccountLimits) -> Result<(), ApiError> {
    let limit = match config.storage {
        StorageType::Memory => account.memory_max_stream_bytes,
        StorageType::File => account.store_max_stream_bytes,
    };
    if account.max_bytes_required && config.max_bytes <= 0 {
        return Err(ApiError::new(ApiErrorKind::StreamMaxBytesRequired));
    }
    let limit = limit.and_then(|l| i64::try_from(l).ok()).filter(|l| *l > 0);
    if limit.is_some_and(|limit| config.max_bytes > limit) {
        return Err(ApiError::new(ApiErrorKind::StreamMaxStreamBytesExceeded));
    }
    Ok(())
}

fn check_transform_and_republish(
    config: &mut StreamConfig,
    pedantic: bool,
) -> Result<(), ApiError> {
    if let Some(transform) = &config.subject_transform {
        if !transform.src.is_empty() && !is_valid_subject(transform.src.as_bytes()) {
            let text = format!("invalid subject {}", transform.src);
            return Err(ApiError::with(
                ApiErrorKind::StreamTransformInvalidSource,
                &[("{err}", &text)],
            ));
        }
        if let Err(text) = validate_mapping(&transform.src, &transform.dest) {
            return Err(ApiError::with(
                ApiErrorKind::StreamTransformInvalidDestination,
                &[("{err}", &text)],
            ));
        }
    }
    let Some(mut republish) = config.republish.clone() else {
        return Ok(());
    };
    if republish.src.is_empty() {
        if pedantic {
            return Err(pedantic_error("republish source can not be empty"));
        }
        republish.src = ">".to_owned();
    }
    if let Some(transform) = &config.subject_transform {
        let implicit = republish.dest == ">"
            && republish.src == ">"
            && config.subjects.len() == 1
            && transform.src == config.subjects[0];
        if implicit {
            if pedantic {
                return Err(pedantic_error(
                    "implicit republish based on subject transform",
                ));
            }
            republish.src = transform.dest.clone();
            republish.dest = transform.dest.clone();
        }
    }
    if config
        .subjects
        .iter()
        .any(|s| subjects_collide(&republish.dest, s))
    {
        return Err(invalid(
            "stream configuration for republish destination forms a cycle",
        ));
    }
    if SubjectTransform::new(&republish.src, &republish.dest).is_err() {
        return Err(invalid(format!(
            "stream configuration for republish with transform from '{}' to '{}' not valid",
            republish.src, republish.dest
        )));
    }
    config.republish = Some(republish);
    Ok(())
}

#[cfg(test)]
mod tests;
