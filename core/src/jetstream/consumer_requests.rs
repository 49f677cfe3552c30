//! The consumer half of the `$JS.API` handler.
//!
//! Role: `CONSUMER.CREATE` (all its subject forms), `DURABLE.CREATE`,
//! `INFO`, `NAMES`, `LIST`, `DELETE`, and `MSG.NEXT` (pull requests,
//! answered by the consumer itself with messages and status headers, not
//! with JSON). Validation of configurations is
//! [`super::consumer_config`]'s; this module applies the outcome to the
//! stream's consumer table ([`super::consumer_table`]) and builds replies.
//!
//! Invariants: as [`super::requests`]: one reply per JSON request.

use super::api::{
    ApiPaged, ConsumerAction, ConsumerConfig, ConsumerCreateResponse, ConsumerDeleteResponse,
    ConsumerInfo, ConsumerInfoResponse, ConsumerListResponse, ConsumerNamesRequest,
    ConsumerNamesResponse, CreateConsumerRequest, SequenceInfo,
};
use super::consumer_table::consumer_name;
use super::errors::{ApiError, ApiErrorKind as K};
use super::link::{JsInbound, StreamId};
use super::machine::JetStream;
use crate::store::Disk;

/// `CONSUMER.NAMES` pages hold this many names.
const NAMES_PAGE: usize = super::api::consumer_page_limit::NAMES;
/// `CONSUMER.LIST` pages hold this many infos.
const LIST_PAGE: usize = super::api::consumer_page_limit::LIST;

/// How a create request named its consumer in the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateSubject<'a> {
    /// `CONSUMER.CREATE.<stream>`.
    Plain,
    /// `CONSUMER.CREATE.<stream>.<name>[.<filter>]`.
    Named {
        name: &'a str,
        filter: Option<&'a str>,
    },
    /// `CONSUMER.DURABLE.CREATE.<stream>.<durable>`.
    Durable(&'a str),
}

impl<D: Disk + Clone> JetStream<D> {
    /// `CONSUMER.CREATE` / `DURABLE.CREATE` on stream `stream`.
    pub(super) fn consumer_create(
        &mut self,
        account: &str,
        stream: &str,
        how: CreateSubject<'_>,
        payload: &[u8],
    ) -> Result<ConsumerCreateResponse, ApiError> {
        let request: CreateConsumerRequest =
            super::api::decode_request(payload, self.config.strict)?;
        let id = self
            .stream_by_name(account, stream)
            .ok_or_else(|| ApiError::new(K::StreamNotFound))?;
        let stream_config = self.streams[&id].meta.config.clone();
        let mut config = checks::check_create(&stream_config, &request, how)?;
        if config.name.is_empty() && config.durable_name.is_empty() {
            // An ephemeral without a name gets one, as from the reference.
            config.name = self.next_id()[..8].to_string();
        }
        let name = consumer_name(&config).to_string();
        let existing = self.streams[&id]
            .consumers
            .get(&name)
            .map(|entry| entry.config.clone());
        match existing {
            Some(old) => {
                if request.action == ConsumerAction::Create && old != config {
                    return Err(ApiError::new(K::ConsumerAlreadyExists));
                }
                if old != config {
                    let updated = checks::check_update(&old, &config)?;
                    self.update_consumer(id, updated)
                        .map_err(|error| ApiError::with(K::ConsumerCreate, &[("{err}", &error)]))?;
                }
            }
            None => {
                if request.action == ConsumerAction::Update {
                    return Err(ApiError::new(K::ConsumerDoesNotExist));
                }
                self.check_consumer_limits(account, id)?;
                let created = self.wall;
                self.add_consumer(id, config, created)
                    .map_err(|error| ApiError::with(K::ConsumerCreate, &[("{err}", &error)]))?;
                self.advise_consumer(account, stream, &name, "create");
            }
        }
        let info = self.consumer_info(id, &name);
        Ok(ConsumerCreateResponse::ok(info))
    }

    /// The stream's and the account's consumer limits.
    fn check_consumer_limits(&self, account: &str, id: StreamId) -> Result<(), ApiError> {
        let entry = &self.streams[&id];
        let count = entry.consumers.len() as i64;
        if entry.meta.config.max_consumers > 0 && count >= entry.meta.config.max_consumers {
            return Err(ApiError::new(K::MaximumConsumersLimit));
        }
        if let Some(max) = self
            .accounts
            .get(account)
            .and_then(|acc| acc.limits.max_consumers)
        {
            let total: usize = self.accounts[account]
                .by_name
                .values()
                .map(|stream| self.streams[stream].consumers.len())
                .sum();
            if total as u64 >= max {
                return Err(ApiError::new(K::MaximumConsumersLimit));
            }
        }
        Ok(())
    }

    /// `CONSUMER.INFO.<stream>.<consumer>`.
    pub(super) fn consumer_info_request(
        &mut self,
        account: &str,
        stream: &str,
        name: &str,
    ) -> Result<ConsumerInfoResponse, ApiError> {
        let id = self.find_consumer(account, stream, name)?;
        // What info reports must survive a kill.
        self.flush_consumer(id, name);
        Ok(ConsumerInfoResponse::ok(self.consumer_info(id, name)))
    }

    /// `CONSUMER.DELETE.<stream>.<consumer>`.
    pub(super) fn consumer_delete(
        &mut self,
        account: &str,
        stream: &str,
        name: &str,
    ) -> Result<ConsumerDeleteResponse, ApiError> {
        let id = self.find_consumer(account, stream, name)?;
        self.remove_consumer(id, name)
            .map_err(|error| ApiError::with(K::StreamGeneralError, &[("{err}", &error)]))?;
        self.advise_consumer(account, stream, name, "delete");
        Ok(ConsumerDeleteResponse::ok())
    }

    /// `CONSUMER.NAMES.<stream>`.
    pub(super) fn consumer_names(
        &mut self,
        account: &str,
        stream: &str,
        payload: &[u8],
    ) -> Result<ConsumerNamesResponse, ApiError> {
        let request: ConsumerNamesRequest =
            super::api::decode_request(payload, self.config.strict)?;
        let id = self
            .stream_by_name(account, stream)
            .ok_or_else(|| ApiError::new(K::StreamNotFound))?;
        let names: Vec<String> = self.streams[&id].consumers.keys().cloned().collect();
        let total = names.len();
        let page = names
            .into_iter()
            .skip(request.offset)
            .take(NAMES_PAGE)
            .collect();
        Ok(ConsumerNamesResponse::ok(
            ApiPaged {
                total,
                offset: request.offset,
                limit: NAMES_PAGE,
            },
            page,
        ))
    }

    /// `CONSUMER.LIST.<stream>`.
    pub(super) fn consumer_list(
        &mut self,
        account: &str,
        stream: &str,
        payload: &[u8],
    ) -> Result<ConsumerListResponse, ApiError> {
        let request: ConsumerNamesRequest =
            super::api::decode_request(payload, self.config.strict)?;
        let id = self
            .stream_by_name(account, stream)
            .ok_or_else(|| ApiError::new(K::StreamNotFound))?;
        let names: Vec<String> = self.streams[&id].consumers.keys().cloned().collect();
        let total = names.len();
        let infos = names
            .iter()
            .skip(request.offset)
            .take(LIST_PAGE)
            .map(|name| self.consumer_info(id, name))
            .collect();
        Ok(ConsumerListResponse::ok(
            ApiPaged {
                total,
                offset: request.offset,
                limit: LIST_PAGE,
            },
            infos,
        ))
    }

    /// `CONSUMER.MSG.NEXT.<stream>.<consumer>`: a pull request. Without
    /// such a consumer nobody listens in the reference, so the requester
    /// gets "no responders".
    pub(super) fn consumer_next(&mut self, msg: &JsInbound, stream: &str, name: &str) {
        match self.find_consumer(&msg.account, stream, name) {
            Ok(id) => self.consumer_pull(id, name, msg),
            Err(_) => self.actions.push_back(super::link::JsAction::Publish {
                account: msg.account.clone(),
                subject: msg.reply.clone(),
                reply: bytes::Bytes::new(),
                headers: bytes::Bytes::from_static(b"NATS/1.0 503\r\n\r\n"),
                payload: bytes::Bytes::new(),
            }),
        }
    }

    fn find_consumer(&self, account: &str, stream: &str, name: &str) -> Result<StreamId, ApiError> {
        let id = self
            .stream_by_name(account, stream)
            .ok_or_else(|| ApiError::new(K::StreamNotFound))?;
        if !self.streams[&id].consumers.contains_key(name) {
            return Err(ApiError::new(K::ConsumerNotFound));
        }
        Ok(id)
    }

    /// The info the API reports for consumer `name` of stream `id`.
    pub(super) fn consumer_info(&mut self, id: StreamId, name: &str) -> ConsumerInfo {
        let wall = self.wall;
        let entry = self.streams.get_mut(&id).expect("the stream exists");
        let stream_name = entry.meta.config.name.clone();
        let store = entry.stream.store_mut();
        let consumer = entry.consumers.get_mut(name).expect("the consumer exists");
        let numbers = consumer.consumer.numbers(store);
        ConsumerInfo {
            stream_name,
            name: name.to_string(),
            created: consumer.created,
            config: Some(checks::with_dynamic_metadata(&consumer.config)),
            delivered: SequenceInfo {
                consumer_seq: numbers.delivered.consumer,
                stream_seq: numbers.delivered.stream,
                last_active: numbers.last_delivery,
            },
            ack_floor: SequenceInfo {
                consumer_seq: numbers.ack_floor.consumer,
                stream_seq: numbers.ack_floor.stream,
                last_active: numbers.last_ack,
            },
            num_ack_pending: numbers.num_ack_pending as i64,
            num_redelivered: numbers.num_redelivered as i64,
            num_waiting: numbers.num_waiting as i64,
            num_pending: numbers.num_pending,
            push_bound: consumer.consumer.is_push() && consumer.consumer.has_interest(),
            ts: wall,
            ..ConsumerInfo::default()
        }
    }
}

/// The checks until the full validation lands: names, defaults, metadata.
mod checks {
    use super::{ApiError, ConsumerConfig, CreateConsumerRequest, CreateSubject, K};
    use crate::jetstream::api::{AckPolicy, StreamConfig};

    pub fn check_create(
        _stream: &StreamConfig,
        request: &CreateConsumerRequest,
        how: CreateSubject<'_>,
    ) -> Result<ConsumerConfig, ApiError> {
        let mut config = request.config.clone();
        match how {
            CreateSubject::Durable(durable) => {
                if config.durable_name.is_empty() {
                    config.durable_name = durable.to_string();
                }
                if config.durable_name != durable {
                    return Err(ApiError::new(K::ConsumerDurableNameNotMatchSubject));
                }
            }
            CreateSubject::Named { name, .. } => {
                if !config.name.is_empty() && config.name != name {
                    return Err(ApiError::new(K::ConsumerCreateDurableAndNameMismatch));
                }
                config.name = name.to_string();
            }
            CreateSubject::Plain => {}
        }
        if !config.durable_name.is_empty() && config.name.is_empty() {
            config.name = config.durable_name.clone();
        }
        const SECOND: i64 = 1_000_000_000;
        if config.ack_policy != AckPolicy::None && config.ack_wait == 0 {
            config.ack_wait = 30 * SECOND;
        }
        if config.max_deliver == 0 {
            config.max_deliver = -1;
        }
        if config.deliver_subject.is_empty() && config.max_waiting == 0 {
            config.max_waiting = 512;
        }
        if config.ack_policy != AckPolicy::None && config.max_ack_pending == 0 {
            config.max_ack_pending = 1000;
        }
        if config.durable_name.is_empty() && config.inactive_threshold == 0 {
            config.inactive_threshold = 5 * SECOND;
        }
        Ok(config)
    }

    pub fn check_update(
        _old: &ConsumerConfig,
        new: &ConsumerConfig,
    ) -> Result<ConsumerConfig, ApiError> {
        Ok(new.clone())
    }

    pub fn with_dynamic_metadata(config: &ConsumerConfig) -> ConsumerConfig {
        let mut shown = config.clone();
        for (key, value) in [
            ("_nats.level", "5"),
            ("_nats.req.level", "0"),
            ("_nats.ver", crate::jetstream::stream_config::SERVER_VERSION),
        ] {
            shown
                .metadata
                .entry(key.to_string())
                .or_insert_with(|| value.to_string());
        }
        shown
    }
}
