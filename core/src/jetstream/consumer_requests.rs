//! The consumer half of the `$JS.API` handler.
//!
//! Role: `CONSUMER.CREATE` (all its subject forms), `DURABLE.CREATE`,
//! `INFO`, `NAMES`, `LIST`, `DELETE`, `PAUSE`, `UNPIN`, `RESET`, and
//! `MSG.NEXT` (pull requests, answered by the consumer itself with
//! messages and status headers, not with JSON). Validation of configurations is
//! [`super::consumer_config`]'s; this module applies the outcome to the
//! stream's consumer table ([`super::consumer_table`]) and builds replies.
//!
//! Invariants: as [`super::requests`]: one reply per JSON request.

use super::api::time::GoTime;
use super::api::{
    ApiPaged, ConsumerCreateResponse, ConsumerDeleteResponse, ConsumerInfo, ConsumerInfoResponse,
    ConsumerListResponse, ConsumerNamesRequest, ConsumerNamesResponse, ConsumerPauseRequest,
    ConsumerPauseResponse, ConsumerResetRequest, ConsumerResetResponse, ConsumerUnpinResponse,
    CreateConsumerRequest, SequenceInfo,
};
use super::consumer_config::{self, ConsumerCheckContext, ServerConsumerLimits};
use super::errors::{ApiError, ApiErrorKind as K};
use super::link::{JsInbound, StreamId};
use super::machine::JetStream;
use crate::store::Disk;
use crate::time::WallTime;

/// `CONSUMER.NAMES` pages hold this many names.
const NAMES_PAGE: usize = super::api::consumer_page_limit::NAMES;
/// `CONSUMER.LIST` pages hold this many infos.
const LIST_PAGE: usize = super::api::consumer_page_limit::LIST;

impl<D: Disk + Clone> JetStream<D> {
    /// `CONSUMER.CREATE` / `DURABLE.CREATE`; `rest` is the subject after
    /// `API.`, `headers` the request's. With the reply, the stream's
    /// identity for a `Nats-Stream-Identity` reply header: a direct or
    /// sourcing consumer's creator (a mirror or source on another
    /// account or server) learns from it whether the origin was created
    /// again, and may name the identity it expects in the same header.
    pub(super) fn consumer_create(
        &mut self,
        account: &str,
        rest: &str,
        payload: &[u8],
        headers: &[u8],
    ) -> Result<(ConsumerCreateResponse, Option<String>), ApiError> {
        let expected = crate::protocol::find_header(headers, b"Nats-Stream-Identity");
        self.consumer_create_with(account, rest, payload, None, expected)
    }

    /// [`Self::consumer_create`] of a new consumer that starts from
    /// `initial` (a restored consumer's state).
    pub(super) fn consumer_create_with(
        &mut self,
        account: &str,
        rest: &str,
        payload: &[u8],
        initial: Option<crate::store::ConsumerState>,
        expected_identity: Option<&[u8]>,
    ) -> Result<(ConsumerCreateResponse, Option<String>), ApiError> {
        let subject = match consumer_config::parse_create_subject(&format!("$JS.API.{rest}")) {
            Some(parsed) => parsed?,
            None => return Err(ApiError::new(K::BadRequest)),
        };
        let request: CreateConsumerRequest =
            super::api::decode_request(payload, self.config.strict)?;
        let request = consumer_config::check_create_request(&subject, &request)?;
        let id = self
            .stream_by_name(account, &subject.stream)
            .ok_or_else(|| ApiError::new(K::StreamNotFound))?;
        let drawn = self.next_id()[..8].to_string();
        let entry = &self.streams[&id];
        let existing_name = consumer_config::consumer_name(&request.config).to_string();
        let deliver_subject_bound = entry.consumers.get(&existing_name).is_some_and(|existing| {
            existing.consumer.is_push() && existing.consumer.has_interest()
        });
        let limits = self
            .accounts
            .get(account)
            .map(|acc| acc.limits.clone())
            .unwrap_or_default();
        let context = ConsumerCheckContext {
            server: ServerConsumerLimits {
                max_ack_pending: self.config.limits.max_ack_pending,
                max_request_batch: self.config.limits.max_request_batch,
            },
            account: &limits,
            consumers: &entry.consumers,
            deliver_subject_bound,
            drawn_name: &drawn,
        };
        let config = consumer_config::check_create(&entry.meta.config, &request, &context)?;
        let identity = (config.direct || config.sourcing)
            .then(|| stream_identity(self.streams[&id].meta.created));
        if let (Some(identity), Some(expected)) = (&identity, expected_identity) {
            if !expected.is_empty() && expected != identity.as_bytes() {
                return Err(ApiError::with(
                    K::ConsumerStreamIdentityMismatch,
                    &[("{msg}", identity)],
                ));
            }
        }
        let name = match consumer_config::consumer_name(&config) {
            // A legacy ephemeral: named here, its config keeps no name.
            "" => drawn,
            name => name.to_string(),
        };
        if self.streams[&id].consumers.contains_key(&name) {
            let sourcing = config.sourcing;
            self.update_consumer(id, &name, config)
                .map_err(|error| ApiError::with(K::ConsumerCreate, &[("{err}", &error)]))?;
            if sourcing {
                // A stream sourcing through this (durable) consumer asks
                // again after a break: it starts over above the ack floor,
                // as the reference resets it, so nothing unacked is lost.
                let entry = self.streams.get_mut(&id).expect("the stream exists");
                let store = entry.stream.store_mut();
                let consumer = entry.consumers.get_mut(&name).expect("just updated");
                consumer
                    .consumer
                    .reset(0, store)
                    .expect("a reset to the ack floor is always allowed");
                self.flush_consumer(id, &name);
                self.drop_unwanted(id, 0);
            }
        } else {
            let created = self.wall;
            self.add_consumer_with(id, &name, config, created, initial)
                .map_err(|error| ApiError::with(K::ConsumerCreate, &[("{err}", &error)]))?;
            self.advise_consumer(account, &subject.stream, &name, "create");
        }
        let info = self.consumer_info(id, &name);
        Ok((ConsumerCreateResponse::ok(info), identity))
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
        self.retire_consumer(id, name)
            .map_err(|error| ApiError::with(K::StreamGeneralError, &[("{err}", &error)]))?;
        self.advise_consumer(account, stream, name, "delete");
        Ok(ConsumerDeleteResponse::ok())
    }

    /// `CONSUMER.PAUSE.<stream>.<consumer>`: pause until a time (a time
    /// in the past, or none, resumes).
    pub(super) fn consumer_pause(
        &mut self,
        account: &str,
        stream: &str,
        name: &str,
        payload: &[u8],
    ) -> Result<ConsumerPauseResponse, ApiError> {
        let request: ConsumerPauseRequest =
            super::api::decode_request(payload, self.config.strict)?;
        let id = self.find_consumer(account, stream, name)?;
        let wall = self.wall;
        let until = request.pause_until.filter(|until| *until > wall);
        let mut config = self.streams[&id].consumers[name].config.clone();
        config.pause_until = until.map(GoTime::from_wall);
        consumer_config::set_static_metadata(&mut config);
        self.update_consumer(id, name, config)
            .map_err(|error| ApiError::with(K::ConsumerCreate, &[("{err}", &error)]))?;
        self.advise_pause(account, stream, name, until);
        let remaining = until.map_or(0, |until| {
            i64::try_from(until.0 - wall.0).unwrap_or(i64::MAX)
        });
        Ok(ConsumerPauseResponse::ok(until.is_some(), until, remaining))
    }

    fn advise_pause(&mut self, account: &str, stream: &str, name: &str, until: Option<WallTime>) {
        let mut body = serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.consumer_pause",
            "id": self.next_id(),
            "timestamp": crate::format::rfc3339_nanos(self.wall),
            "stream": stream,
            "consumer": name,
            "paused": until.is_some(),
        });
        if let Some(until) = until {
            body["pause_until"] = serde_json::Value::String(crate::format::rfc3339_nanos(until));
        }
        self.publish(
            account,
            format!("$JS.EVENT.ADVISORY.CONSUMER.PAUSE.{stream}.{name}"),
            body.to_string().into_bytes(),
        );
    }

    /// `CONSUMER.UNPIN.<stream>.<consumer>`: drops the group's pin (the
    /// next request without a pin id gets a new one) and advises, even when
    /// nothing was pinned, as the reference does.
    pub(super) fn consumer_unpin(
        &mut self,
        account: &str,
        stream: &str,
        name: &str,
        payload: &[u8],
    ) -> Result<ConsumerUnpinResponse, ApiError> {
        let group = consumer_config::check_unpin_request(payload)?;
        let id = self.find_consumer(account, stream, name)?;
        consumer_config::check_unpin_group(&self.streams[&id].consumers[name].config, &group)?;
        let wall = self.wall;
        let entry = self.streams.get_mut(&id).expect("the stream exists");
        let consumer = entry.consumers.get_mut(name).expect("the consumer exists");
        consumer.consumer.unpin("admin", wall, &mut self.actions);
        self.pump_consumer(id, name);
        Ok(ConsumerUnpinResponse::ok())
    }

    /// `CONSUMER.NAMES.<stream>`.
    pub(super) fn consumer_names(
        &mut self,
        account: &str,
        stream: &str,
        payload: &[u8],
    ) -> Result<ConsumerNamesResponse, ApiError> {
        let (_, paged, page) = self.consumer_page(account, stream, payload, NAMES_PAGE)?;
        Ok(ConsumerNamesResponse::ok(paged, page))
    }

    /// `CONSUMER.LIST.<stream>`.
    pub(super) fn consumer_list(
        &mut self,
        account: &str,
        stream: &str,
        payload: &[u8],
    ) -> Result<ConsumerListResponse, ApiError> {
        let (id, paged, page) = self.consumer_page(account, stream, payload, LIST_PAGE)?;
        let infos = page
            .iter()
            .map(|name| self.consumer_info_with(id, name, false))
            .collect();
        Ok(ConsumerListResponse::ok(paged, infos))
    }

    /// One page of a stream's consumer names, by the request's offset.
    fn consumer_page(
        &mut self,
        account: &str,
        stream: &str,
        payload: &[u8],
        limit: usize,
    ) -> Result<(StreamId, ApiPaged, Vec<String>), ApiError> {
        let request: ConsumerNamesRequest =
            super::api::decode_request(payload, self.config.strict)?;
        let id = self
            .stream_by_name(account, stream)
            .ok_or_else(|| ApiError::new(K::StreamNotFound))?;
        // Direct consumers (a mirror's or source's) are hidden, as the
        // reference lists only its public ones.
        let names: Vec<&String> = self.streams[&id]
            .consumers
            .iter()
            .filter(|(_, consumer)| !consumer.config.direct)
            .map(|(name, _)| name)
            .collect();
        let paged = ApiPaged {
            total: names.len(),
            // The reference reports an offset past the end as the end.
            offset: request.offset.min(names.len()),
            limit,
        };
        let page = names
            .into_iter()
            .skip(request.offset)
            .take(limit)
            .cloned()
            .collect();
        Ok((id, paged, page))
    }

    /// `CONSUMER.MSG.NEXT.<stream>.<consumer>`: a pull request. Without
    /// such a consumer nobody listens in the reference, so the requester
    /// gets "no responders".
    pub(super) fn consumer_next(&mut self, msg: &JsInbound, stream: &str, name: &str) {
        match self.find_consumer(&msg.account, stream, name) {
            Ok(id) => self.consumer_pull(id, name, msg),
            Err(_) => self.actions.push_back(super::link::JsAction::Publish {
                account: msg.account.as_str().into(),
                subject: msg.reply.clone(),
                reply: bytes::Bytes::new(),
                headers: bytes::Bytes::from(format!(
                    "NATS/1.0 503\r\nNats-Subject: {}\r\n\r\n",
                    String::from_utf8_lossy(&msg.subject)
                )),
                payload: bytes::Bytes::new(),
            }),
        }
    }

    /// `CONSUMER.RESET.<stream>.<consumer>`: start the consumer over at a
    /// stream sequence (see [`super::consumer::Consumer::reset`]). As in
    /// the reference the consumer itself answers, so a request for one
    /// that does not exist gets no reply, and none is counted or audited.
    /// The body is read as Go's `json.Unmarshal` reads it (unknown fields
    /// ignored); a `Nats-Stream-Identity` header asks for the stream's
    /// identity back in the same header.
    pub(super) fn consumer_reset(&mut self, msg: &JsInbound, stream: &str, name: &str) {
        use crate::protocol::find_header;
        let Ok(id) = self.find_consumer(&msg.account, stream, name) else {
            return;
        };
        let identity = find_header(&msg.headers, b"Nats-Stream-Identity")
            .map(|_| stream_identity(self.streams[&id].meta.created));
        let outcome = if super::requests::required_level_unmet(&msg.headers) {
            Err(ApiError::new(K::RequiredApiLevel))
        } else {
            self.reset_consumer(id, name, &msg.payload)
        };
        let response = match outcome {
            Ok((info, seq)) => ConsumerResetResponse::ok(info, seq),
            Err(error) => ConsumerResetResponse::error(error),
        };
        let headers = match (&identity, &response.error) {
            (Some(identity), None) => bytes::Bytes::from(format!(
                "NATS/1.0\r\nNats-Stream-Identity: {identity}\r\n\r\n"
            )),
            _ => bytes::Bytes::new(),
        };
        self.actions.push_back(super::link::JsAction::Publish {
            account: msg.account.as_str().into(),
            subject: msg.reply.clone(),
            reply: bytes::Bytes::new(),
            headers,
            payload: bytes::Bytes::from(super::api::to_wire_json(&response)),
        });
        // Deliveries from the new start go out after the reply.
        self.drop_unwanted(id, 0);
        self.pump_consumer(id, name);
    }

    /// Reset consumer `name` of stream `id` as `payload` asks: its info
    /// after the reset (made durable first) and the sequence it starts at.
    fn reset_consumer(
        &mut self,
        id: StreamId,
        name: &str,
        payload: &[u8],
    ) -> Result<(ConsumerInfo, u64), ApiError> {
        let request: ConsumerResetRequest = if payload.is_empty() {
            ConsumerResetRequest::default()
        } else {
            super::api::decode::unmarshal_lenient(payload)
                .map_err(|text| ApiError::with(K::InvalidJSON, &[("{err}", &text)]))?
        };
        let entry = self.streams.get_mut(&id).expect("the stream exists");
        let store = entry.stream.store_mut();
        let consumer = entry.consumers.get_mut(name).expect("the consumer exists");
        let seq = consumer
            .consumer
            .reset(request.seq, store)
            .map_err(|reason| ApiError::with(K::ConsumerInvalidReset, &[("{err}", reason)]))?;
        self.flush_consumer(id, name);
        Ok((self.consumer_info(id, name), seq))
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
        self.consumer_info_with(id, name, true)
    }

    /// The info, its config with the server's version metadata added
    /// (`dynamic`) or as stored (what `CONSUMER.LIST` shows).
    fn consumer_info_with(&mut self, id: StreamId, name: &str, dynamic: bool) -> ConsumerInfo {
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
            config: Some(if dynamic {
                consumer_config::with_dynamic_metadata(&consumer.config)
            } else {
                consumer.config.clone()
            }),
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
            // The reference reports its first group only, with its pin.
            priority_groups: consumer
                .config
                .priority_groups
                .first()
                .map(|group| {
                    let pin = consumer.consumer.pin();
                    super::api::PriorityGroupState {
                        group: group.clone(),
                        pinned_client_id: pin.map(|pin| pin.id.clone()).unwrap_or_default(),
                        pinned_ts: pin.map(|pin| pin.since),
                    }
                })
                .into_iter()
                .collect(),
            paused: consumer.consumer.is_paused(),
            pause_remaining: consumer
                .config
                .pause_until
                .and_then(|until| until.wall_time())
                .filter(|_| consumer.consumer.is_paused())
                .map_or(0, |until| {
                    i64::try_from(until.0.saturating_sub(wall.0)).unwrap_or(i64::MAX)
                }),
            ts: wall,
            ..ConsumerInfo::default()
        }
    }
}

/// A stream's identity, as the reference derives it from its creation
/// time (RFC 3339 with nanoseconds, UTC): 8 characters of base 62 from
/// the first bytes of its SHA-256.
fn stream_identity(created: u64) -> String {
    super::sourcing::stream_identity(WallTime(created))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_identity_is_the_reference_hash_of_the_creation_time() {
        // Captured from nats-server v2.15.1: a stream created at
        // 2026-12-06T17:24:51.044568094Z answers with this identity.
        let created = 1_796_577_891_044_568_094;
        assert_eq!(
            crate::format::rfc3339_nanos(crate::time::WallTime(created)),
            "2026-12-06T17:24:51.044568094Z"
        );
        assert_eq!(super::stream_identity(created), "W2f9CiYq");
    }

    use crate::jetstream::config::{AccountLimits, JetStreamConfig};
    use crate::jetstream::link::{JsAction, JsInbound, JsTarget};
    use crate::jetstream::machine::JetStream;
    use crate::store::{MemDisk, SharedDisk};
    use crate::time::{Instant, WallTime};
    use bytes::Bytes;
    use serde_json::{json, Value};

    type Machine = JetStream<SharedDisk<MemDisk>>;

    fn send(js: &mut Machine, target: JsTarget, subject: &str, headers: &str, body: &str) {
        js.handle_inbound(
            Instant::ZERO,
            WallTime(1_000_000_000),
            JsInbound {
                account: "A".into(),
                target,
                subject: Bytes::copy_from_slice(subject.as_bytes()),
                reply: Bytes::from_static(b"r"),
                headers: Bytes::copy_from_slice(headers.as_bytes()),
                payload: Bytes::copy_from_slice(body.as_bytes()),
                context: Bytes::new(),
            },
        );
    }

    fn drain(js: &mut Machine) -> Vec<JsAction> {
        std::iter::from_fn(|| js.poll_action()).collect()
    }

    /// The JSON answer to `r` among `actions`.
    fn answer(actions: &[JsAction]) -> Value {
        actions
            .iter()
            .find_map(|a| match a {
                JsAction::Publish {
                    subject, payload, ..
                } if &subject[..] == b"r" => serde_json::from_slice(payload).ok(),
                _ => None,
            })
            .expect("answered")
    }

    #[test]
    fn a_sourcing_consumer_of_a_work_queue_is_a_durable_acked_by_flow_control() {
        let accounts = [("A".to_string(), AccountLimits::default())].into();
        let mut js: Machine = JetStream::open(
            "srv".into(),
            JetStreamConfig::with_bounds("", 1 << 30, 1 << 30),
            accounts,
            SharedDisk::default(),
            Instant::ZERO,
            WallTime(1_000_000_000),
        );
        let stream = json!({"name": "O", "subjects": ["o.>"], "retention": "workqueue",
            "storage": "memory"});
        send(
            &mut js,
            JsTarget::Api,
            "$JS.API.STREAM.CREATE.O",
            "",
            &stream.to_string(),
        );
        let id = js.stream_by_name("A", "O").unwrap();
        for n in 0..3 {
            send(&mut js, JsTarget::Stream(id), &format!("o.{n}"), "", "x");
        }
        drain(&mut js);
        // What a source in another account asks for (see remote_feed).
        let request = |deliver: &str| {
            json!({"stream_name": "O", "config": {"name": "JS_SRC_x", "deliver_subject": deliver,
                "ack_policy": "none", "ack_wait": 79_200_000_000_000u64, "max_deliver": 1,
                "idle_heartbeat": 1_000_000_000, "flow_control": true, "direct": true,
                "sourcing": true, "inactive_threshold": 10_000_000_000u64}})
            .to_string()
        };
        send(
            &mut js,
            JsTarget::Api,
            "$JS.API.CONSUMER.CREATE.O",
            "",
            &request("d.1"),
        );
        let actions = drain(&mut js);
        let created = answer(&actions);
        assert_eq!(created["name"], "JS_SRC_x", "{created}");
        assert_eq!(created["config"]["durable_name"], "JS_SRC_x", "{created}");
        assert_eq!(created["config"]["ack_policy"], "flow_control", "{created}");
        // It listens for flow-control answers only: no ack subjects.
        let listened: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                JsAction::Listen {
                    target: JsTarget::Consumer(..),
                    subjects,
                    ..
                } => Some(subjects.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(!listened.is_empty());
        assert!(
            listened.iter().all(|s| s.starts_with("$JS.FC.")),
            "{listened:?}"
        );
        let consumer = js.streams[&id].consumers.keys().next().unwrap().clone();
        let target = JsTarget::Consumer(id, js.streams[&id].consumers[&consumer].consumer.id);
        let interest = |js: &mut Machine, deliver: &str, yes: bool| {
            let watcher = crate::jetstream::link::Watcher::Consumer(
                id,
                match target {
                    JsTarget::Consumer(_, c) => c,
                    _ => unreachable!(),
                },
            );
            js.handle_inbound(
                Instant::ZERO,
                WallTime(1_000_000_000),
                JsInbound {
                    account: "A".into(),
                    target: JsTarget::Interest(watcher),
                    subject: Bytes::copy_from_slice(deliver.as_bytes()),
                    reply: Bytes::new(),
                    headers: Bytes::new(),
                    payload: Bytes::from_static(if yes { b"1" } else { b"0" }),
                    context: Bytes::new(),
                },
            );
            drain(js)
        };
        let delivered = interest(&mut js, "d.1", true);
        let count = |actions: &[JsAction]| {
            actions
                .iter()
                .filter(|a| matches!(a, JsAction::Deliver { .. }))
                .count()
        };
        assert_eq!(count(&delivered), 3);
        // Nothing is acked until flow control says so; the answer acks
        // up to the stream sequence it names and the work queue drops it.
        js.handle_timeout(
            Instant::ZERO + std::time::Duration::from_secs(1),
            WallTime(2_000_000_000),
        );
        let fc = drain(&mut js)
            .into_iter()
            .find_map(|a| match a {
                JsAction::Publish { reply, headers, .. }
                    if headers.starts_with(b"NATS/1.0 100 FlowControl") =>
                {
                    Some(String::from_utf8(reply.to_vec()).unwrap())
                }
                _ => None,
            })
            .expect("a flow-control request with the heartbeat");
        send(
            &mut js,
            target,
            &fc,
            "NATS/1.0\r\nNats-Last-Consumer: 2\r\nNats-Last-Stream: 2\r\n\r\n",
            "",
        );
        drain(&mut js);
        let state = js.streams[&id].stream.state();
        assert_eq!((state.msgs, state.first_seq), (1, 3));
        // Asked again (a new deliver subject, the old one given up):
        // updated and reset to above its floor, so the unacked third
        // message goes out again.
        interest(&mut js, "d.1", false);
        send(
            &mut js,
            JsTarget::Api,
            "$JS.API.CONSUMER.CREATE.O",
            "",
            &request("d.2"),
        );
        let updated = answer(&drain(&mut js));
        assert_eq!(updated["delivered"]["stream_seq"], 2, "{updated}");
        assert_eq!(updated["num_ack_pending"], 0, "{updated}");
        assert_eq!(count(&interest(&mut js, "d.2", true)), 1);
    }
}
