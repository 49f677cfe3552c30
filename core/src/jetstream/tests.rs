//! The JetStream machine driven directly: API requests and publishes in,
//! replies and syncs out, over an in-memory disk shared by every stream.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use super::config::{AccountLimits, JetStreamConfig};
use super::link::{JsAction, JsInbound, JsTarget, StreamId};
use super::machine::JetStream;
use crate::store::{perform_sync, Disk, MemDisk};
use crate::time::{Instant, WallTime};

/// One MemDisk behind every handle, as one real disk is.
type SharedDisk = crate::store::SharedDisk<MemDisk>;

fn js_config() -> JetStreamConfig {
    JetStreamConfig::with_bounds("", 1 << 30, 1 << 30)
}

struct Harness {
    js: JetStream<SharedDisk>,
    disk: SharedDisk,
    /// Where each stream's subjects go, as the server would file them.
    listening: BTreeMap<StreamId, Vec<String>>,
    wall: u64,
    /// Syncs asked for and not yet performed.
    syncs: Vec<JsAction>,
    /// Advisories published, by subject.
    advisories: Vec<(String, Value)>,
}

impl Harness {
    fn new() -> Harness {
        Harness::on(SharedDisk::default())
    }

    fn on(disk: SharedDisk) -> Harness {
        Harness::on_config(disk, js_config())
    }

    fn on_config(disk: SharedDisk, config: JetStreamConfig) -> Harness {
        let mut accounts = BTreeMap::new();
        accounts.insert("A".to_string(), AccountLimits::default());
        let js = JetStream::open(
            "srv".into(),
            config,
            accounts,
            disk.clone(),
            Instant::ZERO,
            WallTime(1_000_000_000),
        );
        let mut harness = Harness {
            js,
            disk,
            listening: BTreeMap::new(),
            wall: 1_000_000_000,
            syncs: Vec::new(),
            advisories: Vec::new(),
        };
        harness.collect();
        harness
    }

    /// Replies published since the last call, by reply subject.
    fn collect(&mut self) -> Vec<(String, Value)> {
        let mut replies = Vec::new();
        while let Some(action) = self.js.poll_action() {
            match action {
                JsAction::Publish {
                    subject, payload, ..
                } if subject.starts_with(b"$JS.EVENT.") => self.advisories.push((
                    String::from_utf8(subject.to_vec()).unwrap(),
                    serde_json::from_slice(&payload).unwrap(),
                )),
                JsAction::Publish {
                    subject,
                    headers,
                    payload,
                    ..
                } => replies.push((
                    String::from_utf8(subject.to_vec()).unwrap(),
                    if payload.is_empty() && headers.is_empty() {
                        // The empty ack of a staged batch message.
                        Value::Null
                    } else if headers.is_empty() {
                        serde_json::from_slice(&payload).unwrap()
                    } else {
                        serde_json::json!({
                            "headers": String::from_utf8_lossy(&headers),
                            "payload": String::from_utf8_lossy(&payload),
                        })
                    },
                )),
                JsAction::Listen {
                    target: JsTarget::Stream(id),
                    subjects,
                    ..
                } => {
                    if subjects.is_empty() {
                        self.listening.remove(&id);
                    } else {
                        self.listening.insert(id, subjects);
                    }
                }
                JsAction::Listen { .. }
                | JsAction::Deliver { .. }
                | JsAction::WatchInterest { .. }
                | JsAction::WatchReplies { .. } => {}
                sync @ JsAction::Sync { .. } => self.syncs.push(sync),
                JsAction::Log { .. } => {}
            }
        }
        replies
    }

    fn send(&mut self, target: JsTarget, subject: &str, headers: &[u8], payload: &[u8]) {
        self.send_with_reply(target, subject, "_INBOX.r", headers, payload);
    }

    fn send_with_reply(
        &mut self,
        target: JsTarget,
        subject: &str,
        reply: &str,
        headers: &[u8],
        payload: &[u8],
    ) {
        self.wall += 1_000;
        self.js.handle_inbound(
            Instant::from_nanos(self.wall),
            WallTime(self.wall),
            JsInbound {
                account: "A".into(),
                target,
                subject: Bytes::copy_from_slice(subject.as_bytes()),
                reply: Bytes::copy_from_slice(reply.as_bytes()),
                headers: Bytes::copy_from_slice(headers),
                payload: Bytes::copy_from_slice(payload),
                context: Bytes::new(),
            },
        );
    }

    fn api(&mut self, subject: &str, body: &str) -> Value {
        self.send(JsTarget::Api, subject, b"", body.as_bytes());
        let mut replies = self.collect();
        assert_eq!(replies.len(), 1, "one reply to {subject}");
        replies.pop().unwrap().1
    }

    /// Publish to the stream listening on `subject`.
    fn publish(&mut self, subject: &str, headers: &[u8], payload: &[u8]) {
        let id = *self
            .listening
            .iter()
            .find(|(_, subjects)| {
                subjects.iter().any(|s| {
                    crate::subject::subject_matches_pattern(s.as_bytes(), subject.as_bytes())
                })
            })
            .expect("a stream listens")
            .0;
        self.send(JsTarget::Stream(id), subject, headers, payload);
    }

    /// Perform every sync asked for; returns the replies that follow.
    fn sync_all(&mut self) -> Vec<(String, Value)> {
        let mut replies = self.collect();
        loop {
            let syncs = std::mem::take(&mut self.syncs);
            if syncs.is_empty() {
                return replies;
            }
            for sync in syncs {
                let JsAction::Sync {
                    stream,
                    tag,
                    files,
                    dirs,
                } = sync
                else {
                    unreachable!()
                };
                let result = perform_sync(&mut self.disk, &files, &dirs);
                self.js.handle_sync_done(stream, tag, result);
            }
            replies.extend(self.collect());
        }
    }
}

#[test]
fn a_publish_is_acknowledged_only_after_its_sync() {
    let mut h = Harness::new();
    let created = h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"]}"#,
    );
    assert_eq!(created["did_create"], true, "{created}");
    assert_eq!(created["config"]["max_msgs"], -1);
    h.publish("s.1", b"", b"one");
    h.publish("s.2", b"", b"two");
    assert!(h.collect().is_empty(), "no ack before the sync");
    let acks = h.sync_all();
    let seqs: Vec<u64> = acks
        .iter()
        .map(|(_, ack)| ack["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(acks[0].1["stream"], "S");
}

#[test]
fn duplicates_within_the_window_are_acknowledged_with_the_first_sequence() {
    let mut h = Harness::new();
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"]}"#,
    );
    let id = b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n";
    h.publish("s", id, b"x");
    h.publish("s", id, b"x");
    let acks = h.sync_all();
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[1].1["seq"], 1);
    assert_eq!(acks[1].1["duplicate"], true);
    let info = h.api("$JS.API.STREAM.INFO.S", "");
    assert_eq!(info["state"]["messages"], 1);
}

#[test]
fn an_empty_expected_stream_expects_nothing() {
    let mut h = Harness::new();
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"]}"#,
    );
    h.publish("s", b"NATS/1.0\r\nNats-Expected-Stream:\r\n\r\n", b"x");
    h.publish("s", b"NATS/1.0\r\nNats-Expected-Stream: T\r\n\r\n", b"y");
    let acks = h.sync_all();
    // The refusal leaves at once, the ack after the sync.
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert_eq!(acks[0].1["error"]["err_code"], 10060, "{acks:?}");
    assert_eq!(acks[1].1["seq"], 1, "{acks:?}");
    assert!(acks[1].1.get("error").is_none(), "{acks:?}");
}

#[test]
fn refusals_carry_the_reference_error() {
    let mut h = Harness::new();
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"]}"#,
    );
    h.publish(
        "s",
        b"NATS/1.0\r\nNats-Expected-Last-Sequence: 4\r\n\r\n",
        b"x",
    );
    let refused = h.collect();
    assert_eq!(refused.len(), 1, "refusals need no sync");
    let error = &refused[0].1["error"];
    assert_eq!(error["err_code"], 10071);
    assert_eq!(error["description"], "wrong last sequence: 0");
    assert_eq!(refused[0].1["seq"], 0);
}

#[test]
fn api_errors_for_missing_and_conflicting_streams() {
    let mut h = Harness::new();
    let missing = h.api("$JS.API.STREAM.INFO.NOPE", "");
    assert_eq!(missing["error"]["err_code"], 10059);
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["a"]}"#,
    );
    let conflict = h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["b"]}"#,
    );
    assert_eq!(conflict["error"]["err_code"], 10058);
    let overlap = h.api(
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":["a"]}"#,
    );
    assert_eq!(overlap["error"]["err_code"], 10065);
    let bad = h.api("$JS.API.STREAM.CREATE.T", "{nope");
    assert_eq!(bad["error"]["err_code"], 10025);
    let unknown = h.api("$JS.API.STREAM.CREATE.T", r#"{"name":"T","foo":1}"#);
    assert_eq!(
        unknown["error"]["description"],
        "invalid JSON: json: unknown field \"foo\""
    );
    let mismatch = h.api("$JS.API.STREAM.CREATE.T", "");
    assert_eq!(mismatch["error"]["err_code"], 10056);
    let info = h.api("$JS.API.INFO", "");
    assert_eq!(info["streams"], 1);
    assert_eq!(info["api"]["errors"], 6);
}

#[test]
fn streams_and_their_messages_come_back_after_a_restart() {
    let disk = SharedDisk::default();
    let mut h = Harness::on(disk.clone());
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.*"]}"#,
    );
    for i in 0..10 {
        h.publish(&format!("s.{i}"), b"", format!("m{i}").as_bytes());
    }
    assert_eq!(h.sync_all().len(), 10);
    drop(h);
    disk.with(MemDisk::power_loss);
    let mut h = Harness::on(disk);
    assert_eq!(h.listening.len(), 1, "the stream listens again");
    let info = h.api("$JS.API.STREAM.INFO.S", "");
    assert_eq!(info["state"]["messages"], 10);
    let msg = h.api("$JS.API.STREAM.MSG.GET.S", r#"{"seq":4}"#);
    assert_eq!(msg["message"]["subject"], "s.3");
    h.publish("s.x", b"", b"next");
    let acks = h.sync_all();
    assert_eq!(acks[0].1["seq"], 11);
}

#[test]
fn a_damaged_definition_falls_back_to_its_previous_copy() {
    let disk = SharedDisk::default();
    let mut h = Harness::on(disk.clone());
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"]}"#,
    );
    h.api(
        "$JS.API.STREAM.UPDATE.S",
        r#"{"name":"S","subjects":["s","t"]}"#,
    );
    drop(h);
    // Flip a byte in the current definition.
    {
        let mut inner = disk.0.borrow_mut();
        let bytes = inner
            .bytes_mut("streams/1.meta")
            .expect("the definition exists");
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
    }
    let mut h = Harness::on(disk);
    let info = h.api("$JS.API.STREAM.INFO.S", "");
    assert_eq!(
        info["config"]["subjects"],
        serde_json::json!(["s"]),
        "{info}"
    );
}

#[test]
fn deleting_a_stream_stops_its_routing_and_removes_its_files() {
    let disk = SharedDisk::default();
    let mut h = Harness::on(disk.clone());
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"]}"#,
    );
    h.publish("s", b"", b"x");
    h.sync_all();
    let deleted = h.api("$JS.API.STREAM.DELETE.S", "");
    assert_eq!(deleted["success"], true);
    assert!(h.listening.is_empty(), "the stream's subjects are released");
    let mut disk = disk;
    assert!(disk.list("streams").unwrap().is_empty());
    assert!(disk.list("streams/1").unwrap().is_empty());
}

#[test]
fn direct_get_answers_with_the_message_and_status_headers() {
    let mut h = Harness::new();
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.*"],"allow_direct":true}"#,
    );
    h.publish("s.a", b"NATS/1.0\r\nFoo: bar\r\n\r\n", b"first");
    h.publish("s.b", b"", b"second");
    h.sync_all();
    let got = h.api("$JS.API.DIRECT.GET.S", r#"{"seq":1}"#);
    let headers = got["headers"].as_str().unwrap();
    assert!(headers.starts_with("NATS/1.0\r\nFoo: bar\r\nNats-Stream: S\r\nNats-Subject: s.a\r\nNats-Sequence: 1\r\nNats-Time-Stamp: "), "{headers}");
    assert!(headers.ends_with("Z\r\n\r\n"));
    assert_eq!(got["payload"], "first");
    let last = h.api("$JS.API.DIRECT.GET.S.s.b", "");
    assert_eq!(last["payload"], "second");
    let missing = h.api("$JS.API.DIRECT.GET.S", r#"{"seq":9}"#);
    assert_eq!(missing["headers"], "NATS/1.0 404 Message Not Found\r\n\r\n");
    let empty = h.api("$JS.API.DIRECT.GET.S", "");
    assert_eq!(empty["headers"], "NATS/1.0 408 Empty Request\r\n\r\n");
}

#[test]
fn stream_actions_and_api_requests_are_advised() {
    let mut h = Harness::new();
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"]}"#,
    );
    h.api("$JS.API.STREAM.DELETE.S", "");
    h.api("$JS.API.STREAM.INFO.S", "");
    let subjects: Vec<&str> = h.advisories.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        vec![
            "$JS.EVENT.ADVISORY.STREAM.CREATED.S",
            "$JS.EVENT.ADVISORY.API",
            "$JS.EVENT.ADVISORY.STREAM.DELETED.S",
            "$JS.EVENT.ADVISORY.API",
            "$JS.EVENT.ADVISORY.API",
        ]
    );
    let created = &h.advisories[0].1;
    assert_eq!(
        created["type"],
        "io.nats.jetstream.advisory.v1.stream_action"
    );
    assert_eq!(created["action"], "create");
    assert_eq!(created["id"].as_str().unwrap().len(), 22);
    let audit = &h.advisories[4].1;
    assert_eq!(audit["subject"], "$JS.API.STREAM.INFO.S");
    assert!(audit["response"].as_str().unwrap().contains("10059"));
}

#[test]
fn an_async_persisted_stream_acknowledges_before_its_sync() {
    let mut h = Harness::new();
    let created = h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"],"persist_mode":"async"}"#,
    );
    assert_eq!(created["config"]["persist_mode"], "async", "{created}");
    h.publish("s", b"", b"one");
    let acks = h.collect();
    assert_eq!(acks.len(), 1, "acknowledged once written");
    assert_eq!(acks[0].1["seq"], 1);
    // The rest of the server still syncs before it acknowledges.
    h.api(
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":["t"]}"#,
    );
    h.publish("t", b"", b"two");
    assert!(h.collect().is_empty(), "no ack before the sync");
    assert_eq!(h.sync_all().len(), 1);
    // Where the reference refuses the mode, so does rnats.
    let memory = h.api(
        "$JS.API.STREAM.CREATE.M",
        r#"{"name":"M","subjects":["m"],"persist_mode":"async","storage":"memory"}"#,
    );
    assert_eq!(
        memory["error"]["description"], "async persist mode is only supported on file storage",
        "{memory}"
    );
}

#[test]
fn server_storage_limits_refuse_publishes_and_reservations() {
    let mut h = Harness::new();
    // js_config() allows 1 GiB of each storage type.
    let too_big = h.api(
        "$JS.API.STREAM.CREATE.BIG",
        r#"{"name":"BIG","subjects":["big"],"max_bytes":2000000000}"#,
    );
    assert_eq!(too_big["error"]["err_code"], 10047, "{too_big}");
    h.api(
        "$JS.API.STREAM.CREATE.M",
        r#"{"name":"M","subjects":["m"],"storage":"memory"}"#,
    );
    // Fill the memory budget with large messages until one is refused.
    let payload = vec![b'x'; 1 << 20];
    let mut refused = None;
    for _ in 0..1100 {
        h.publish("m", b"", &payload);
        if let Some((_, reply)) = h
            .sync_all()
            .into_iter()
            .find(|(_, r)| r["error"].is_object())
        {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the memory budget runs out");
    assert_eq!(refused["error"]["err_code"], 10023, "{refused}");
    assert_eq!(refused["error"]["description"], "insufficient resources");
}

// ---- encryption at rest ----

fn encrypted(key: &str, prev_key: Option<&str>) -> JetStreamConfig {
    JetStreamConfig {
        encryption: Some(super::config::Encryption {
            cipher: super::config::Cipher::ChaCha,
            key: key.to_string(),
            prev_key: prev_key.map(str::to_string),
        }),
        ..js_config()
    }
}

/// Every file of the definitions and of stream 1's store, by path.
fn stream_files(disk: &SharedDisk) -> Vec<(String, Vec<u8>)> {
    disk.with(|disk| {
        let mut out = Vec::new();
        for dir in ["streams", "streams/1"] {
            for name in disk.list(dir).unwrap_or_default() {
                let path = format!("{dir}/{name}");
                if let Ok(Some(bytes)) = disk.read_all(&path) {
                    out.push((path, bytes));
                }
            }
        }
        out.sort();
        out
    })
}

#[test]
fn an_encrypted_stream_needs_its_key_and_rotates_to_a_new_one() {
    let disk = SharedDisk::default();
    let mut h = Harness::on_config(disk.clone(), encrypted("key-one", None));
    h.api(
        "$JS.API.STREAM.CREATE.SECRETS",
        r#"{"name":"SECRETS","subjects":["hidden.*"]}"#,
    );
    for i in 0..3 {
        h.publish(
            &format!("hidden.{i}"),
            b"",
            format!("classified-{i}").as_bytes(),
        );
    }
    assert_eq!(h.sync_all().len(), 3);
    drop(h);
    disk.with(MemDisk::power_loss);
    let before = stream_files(&disk);
    assert!(
        before.iter().any(|(path, _)| path == "streams/1/key"),
        "{before:?}"
    );
    for (path, bytes) in &before {
        for clear in [&b"classified"[..], b"SECRETS", b"hidden."] {
            assert!(
                !bytes.windows(clear.len()).any(|w| w == clear),
                "{path} holds {:?} in clear",
                String::from_utf8_lossy(clear)
            );
        }
    }

    // The wrong key: the stream is not loaded, logged, and nothing changes.
    let mut accounts = BTreeMap::new();
    accounts.insert("A".to_string(), AccountLimits::default());
    let mut js = JetStream::open(
        "srv".into(),
        encrypted("key-two", None),
        accounts,
        disk.clone(),
        Instant::ZERO,
        WallTime(2_000_000_000),
    );
    let mut logs = Vec::new();
    while let Some(action) = js.poll_action() {
        if let JsAction::Log { text, .. } = action {
            logs.push(text);
        }
    }
    assert!(
        logs.iter().any(|text| text
            == "JetStream: error decrypting stream definition streams/1.meta: unable to recover keys"),
        "{logs:?}"
    );
    drop(js);
    assert_eq!(stream_files(&disk), before, "a wrong key changed files");
    let mut h = Harness::on_config(disk.clone(), encrypted("key-two", None));
    let info = h.api("$JS.API.STREAM.INFO.SECRETS", "");
    assert_eq!(info["error"]["err_code"], 10059, "{info}");
    drop(h);

    // The new key with the old one as `prev_key`: loaded and sealed again.
    let mut h = Harness::on_config(disk.clone(), encrypted("key-two", Some("key-one")));
    let info = h.api("$JS.API.STREAM.INFO.SECRETS", "");
    assert_eq!(info["state"]["messages"], 3, "{info}");
    h.publish("hidden.9", b"", b"classified-9");
    assert_eq!(h.sync_all().len(), 1);
    drop(h);
    disk.with(MemDisk::power_loss);

    // From then on the new key alone opens everything.
    let mut h = Harness::on_config(disk.clone(), encrypted("key-two", None));
    let info = h.api("$JS.API.STREAM.INFO.SECRETS", "");
    assert_eq!(info["state"]["messages"], 4, "{info}");
    let msg = h.api("$JS.API.STREAM.MSG.GET.SECRETS", r#"{"seq":2}"#);
    assert_eq!(msg["message"]["subject"], "hidden.1");
    drop(h);
    let mut h = Harness::on_config(disk, encrypted("key-one", None));
    let info = h.api("$JS.API.STREAM.INFO.SECRETS", "");
    assert_eq!(
        info["error"]["err_code"], 10059,
        "the old key no longer opens it"
    );
}

/// `subject_delete_marker_ttl`: expiry of a subject's last message (by
/// `max_age` or its own TTL) leaves a marker with the reference's headers,
/// republished like any stored message; a TTL below the markers' is raised;
/// a marker's own expiry leaves nothing behind.
#[test]
fn delete_markers_replace_expired_subjects_and_are_republished() {
    let mut h = Harness::new();
    let created = h.api(
        "$JS.API.STREAM.CREATE.M",
        r#"{"name":"M","subjects":["m.>"],"storage":"memory","max_age":2000000000,
            "subject_delete_marker_ttl":3000000000,"republish":{"src":">","dest":"rp.>"}}"#,
    );
    assert_eq!(created["config"]["allow_msg_ttl"], true, "{created}");
    assert_eq!(created["config"]["allow_rollup_hdrs"], true, "{created}");
    h.publish("m.a", b"", b"1");
    h.publish("m.a", b"", b"2");
    h.publish("m.b", b"NATS/1.0\r\nNats-TTL: 1s\r\n\r\n", b"3");
    let replies = h.sync_all();
    let republished: Vec<_> = replies
        .iter()
        .filter(|(s, _)| s.starts_with("rp."))
        .collect();
    assert_eq!(republished.len(), 3, "{replies:?}");
    let headers = republished[2].1["headers"].as_str().unwrap();
    assert!(
        headers.starts_with("NATS/1.0\r\nNats-TTL: 3\r\nNats-Stream: M\r\nNats-Subject: m.b\r\nNats-Sequence: 3\r\n"),
        "the TTL is raised to the markers' in seconds: {headers:?}"
    );
    assert!(
        headers.ends_with("Nats-Last-Sequence: 0\r\n\r\n"),
        "{headers:?}"
    );

    h.wall += 2_500_000_000;
    h.js.handle_timeout(Instant::from_nanos(h.wall), WallTime(h.wall));
    let markers: Vec<_> = h
        .sync_all()
        .into_iter()
        .filter(|(s, _)| s.starts_with("rp."))
        .collect();
    let subjects: Vec<&str> = markers.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subjects, ["rp.m.a", "rp.m.b"]);
    let headers = markers[0].1["headers"].as_str().unwrap();
    let expected = "NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: 3s\r\nNats-Rollup: sub\r\nNats-Stream: M\r\nNats-Subject: m.a\r\nNats-Sequence: 4\r\nNats-Time-Stamp: ";
    assert!(headers.starts_with(expected), "{headers:?}");
    assert!(
        headers.ends_with("Nats-Last-Sequence: 2\r\n\r\n"),
        "{headers:?}"
    );
    assert_eq!(markers[0].1["payload"], "");
    let info = h.api("$JS.API.STREAM.INFO.M", "{}");
    assert_eq!(info["state"]["messages"], 2, "{info}");
    assert_eq!(info["state"]["first_seq"], 4, "{info}");
    let got = h.api("$JS.API.STREAM.MSG.GET.M", r#"{"last_by_subj":"m.b"}"#);
    assert_eq!(got["message"]["seq"], 5, "{got}");

    // The markers expire (by max_age here) and leave no marker of their own.
    h.wall += 3_000_000_000;
    h.js.handle_timeout(Instant::from_nanos(h.wall), WallTime(h.wall));
    let after = h.sync_all();
    assert!(
        after.iter().all(|(s, _)| !s.starts_with("rp.")),
        "{after:?}"
    );
    let info = h.api("$JS.API.STREAM.INFO.M", "{}");
    assert_eq!(info["state"]["messages"], 0, "{info}");
    assert_eq!(info["state"]["last_seq"], 5, "{info}");
}

/// `subject_transform` rewrites the stored subject; a subject its source
/// does not match is stored as published.
#[test]
fn subject_transform_rewrites_what_is_stored() {
    let mut h = Harness::new();
    h.api(
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":["in.>"],"subject_transform":{"src":"in.*.*","dest":"out.$2.$1"}}"#,
    );
    h.publish("in.a.b", b"", b"x");
    h.publish("in.c", b"", b"y");
    h.sync_all();
    let first = h.api("$JS.API.STREAM.MSG.GET.T", r#"{"seq":1}"#);
    assert_eq!(first["message"]["subject"], "out.b.a", "{first}");
    let second = h.api("$JS.API.STREAM.MSG.GET.T", r#"{"seq":2}"#);
    assert_eq!(second["message"]["subject"], "in.c", "{second}");
}

#[test]
fn the_server_opens_at_most_a_thousand_atomic_batches() {
    let mut h = Harness::new();
    // 21 streams of 50 open batches each would pass the server's 1000.
    for n in 0..21 {
        let body = format!(r#"{{"name":"S{n}","subjects":["s{n}"],"allow_atomic":true}}"#);
        let created = h.api(&format!("$JS.API.STREAM.CREATE.S{n}"), &body);
        assert!(created["error"].is_null(), "{created}");
    }
    let open = |h: &mut Harness, stream: usize, batch: usize| {
        let headers =
            format!("NATS/1.0\r\nNats-Batch-Id: b{batch}\r\nNats-Batch-Sequence: 1\r\n\r\n");
        h.publish(&format!("s{stream}"), headers.as_bytes(), b"x");
        let mut replies = h.collect();
        assert_eq!(replies.len(), 1);
        replies.pop().unwrap().1
    };
    for n in 0..1000 {
        assert_eq!(open(&mut h, n / 50, n % 50), Value::Null, "batch {n}");
    }
    let refused = open(&mut h, 20, 0);
    assert_eq!(refused["error"]["err_code"], 10210, "{refused}");
    // Deleting a stream frees its batches' room.
    h.api("$JS.API.STREAM.DELETE.S0", "");
    assert_eq!(open(&mut h, 20, 1), Value::Null);
}

/// A fast batch message on the stream listening on `subject`, with the
/// reply `_INBOX.f.<id>.<flow>.fail.<seq>.<op>.$FI`; the answers that
/// leave at once.
fn fast(h: &mut Harness, subject: &str, id: &str, flow: u16, seq: u64, op: u8) -> Vec<Value> {
    let id_of = |h: &Harness| {
        *h.listening
            .iter()
            .find(|(_, subjects)| subjects.iter().any(|s| s == subject))
            .expect("a stream listens")
            .0
    };
    let target = JsTarget::Stream(id_of(h));
    let reply = format!("_INBOX.f.{id}.{flow}.fail.{seq}.{op}.$FI");
    h.send_with_reply(target, subject, &reply, b"", b"x");
    h.collect().into_iter().map(|(_, answer)| answer).collect()
}

#[test]
fn fast_batch_acks_wait_for_the_sync_that_covers_them() {
    let mut h = Harness::new();
    let created = h.api(
        "$JS.API.STREAM.CREATE.F",
        r#"{"name":"F","subjects":["f"],"allow_batched":true}"#,
    );
    assert!(created["error"].is_null(), "{created}");
    // The first ack names nothing stored: it leaves at once.
    let first = fast(&mut h, "f", "b", 1, 1, 0);
    assert_eq!(first, [serde_json::json!({"type":"ack","seq":0,"msgs":1})]);
    // The flow ack for message 1 waits for the fsync of it.
    assert!(h.syncs.len() == 1, "the store asked for a sync");
    let synced: Vec<Value> = h.sync_all().into_iter().map(|(_, a)| a).collect();
    assert_eq!(synced, [serde_json::json!({"type":"ack","seq":1,"msgs":1})]);
    assert!(fast(&mut h, "f", "b", 1, 2, 2).is_empty());
    let synced: Vec<Value> = h.sync_all().into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        synced,
        [serde_json::json!({"stream":"F","seq":2,"batch":"b","count":2})]
    );
}

#[test]
fn the_server_limits_open_fast_batches_and_frees_their_room() {
    let mut config = js_config();
    config.limits.max_batch_inflight_total = 3;
    let mut h = Harness::on_config(SharedDisk::default(), config);
    for name in ["S0", "S1"] {
        let body = format!(
            r#"{{"name":"{name}","subjects":["{}"],"allow_batched":true,"storage":"memory"}}"#,
            name.to_lowercase()
        );
        let created = h.api(&format!("$JS.API.STREAM.CREATE.{name}"), &body);
        assert!(created["error"].is_null(), "{created}");
    }
    let open = |h: &mut Harness, subject: &str, id: &str| fast(h, subject, id, 10, 1, 0);
    let started = serde_json::json!({"type":"ack","seq":0,"msgs":10});
    assert_eq!(open(&mut h, "s0", "a"), std::slice::from_ref(&started));
    assert_eq!(open(&mut h, "s1", "b"), std::slice::from_ref(&started));
    // Beside another open batch, one ack per message to start with.
    assert_eq!(
        open(&mut h, "s1", "c"),
        [
            serde_json::json!({"type":"ack","seq":0,"msgs":1}),
            serde_json::json!({"type":"ack","seq":1,"msgs":2}),
        ]
    );
    let refused = open(&mut h, "s0", "d");
    assert_eq!(refused[0]["error"]["err_code"], 10211, "{refused:?}");
    // An update that turns fast batches off forgets S1's two.
    let updated = h.api(
        "$JS.API.STREAM.UPDATE.S1",
        r#"{"name":"S1","subjects":["s1"],"storage":"memory"}"#,
    );
    assert!(updated["error"].is_null(), "{updated}");
    let disabled = open(&mut h, "s1", "e");
    assert_eq!(disabled[0]["error"]["err_code"], 10205, "{disabled:?}");
    let acked = |answers: Vec<Value>| answers.iter().all(|a| a["type"] == "ack");
    assert!(acked(open(&mut h, "s0", "f")));
    assert!(acked(open(&mut h, "s0", "g")));
    assert_eq!(open(&mut h, "s0", "h")[0]["error"]["err_code"], 10211);
    // Deleting a stream frees its batches' room.
    h.api("$JS.API.STREAM.DELETE.S0", "");
    let created = h.api(
        "$JS.API.STREAM.CREATE.S2",
        r#"{"name":"S2","subjects":["s2"],"allow_batched":true,"storage":"memory"}"#,
    );
    assert!(created["error"].is_null(), "{created}");
    assert_eq!(open(&mut h, "s2", "i"), [started]);
}

/// Account `A` with `limits`, or without JetStream (`None`), as a claims
/// update hands it to the machine.
fn account_a(limits: Option<AccountLimits>) -> BTreeMap<String, AccountLimits> {
    limits
        .map(|limits| BTreeMap::from([("A".to_string(), limits)]))
        .unwrap_or_default()
}

/// A consumer's progress as its info reports it.
fn progress(info: &Value) -> Value {
    serde_json::json!([
        info["delivered"]["stream_seq"],
        info["ack_floor"]["stream_seq"],
        info["num_ack_pending"],
        info["num_pending"],
    ])
}

#[test]
fn turning_an_account_off_stops_its_streams_and_on_brings_them_back() {
    let disk = SharedDisk::default();
    let mut h = Harness::on(disk.clone());
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"]}"#,
    );
    for i in 1..=3 {
        h.publish("s.a", b"", format!("m{i}").as_bytes());
    }
    assert_eq!(h.sync_all().len(), 3);
    let created = h.api(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
    );
    assert!(created["error"].is_null(), "{created}");
    h.send(
        JsTarget::Api,
        "$JS.API.CONSUMER.MSG.NEXT.S.C",
        b"",
        br#"{"batch":1}"#,
    );
    h.collect();
    let before = progress(&h.api("$JS.API.CONSUMER.INFO.S.C", ""));
    assert_eq!(before, serde_json::json!([1, 0, 1, 2]));
    let files_before = stream_files(&disk);

    h.js.set_accounts(account_a(None));
    assert!(h.collect().is_empty(), "a stop is advised to no one");
    assert!(h.listening.is_empty(), "its subjects are no longer routed");
    assert!(!h.js.enabled_for("A"));
    for subject in [
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.S",
        "$JS.API.CONSUMER.INFO.S.C",
    ] {
        let refused = h.api(subject, "");
        assert_eq!(refused["error"]["err_code"], 10039, "{subject}: {refused}");
    }
    // Nothing listens for pull requests: "no responders".
    h.send(
        JsTarget::Api,
        "$JS.API.CONSUMER.MSG.NEXT.S.C",
        b"",
        br#"{"batch":1}"#,
    );
    let next = h.collect();
    assert_eq!(next.len(), 1, "{next:?}");
    let status = next[0].1["headers"].as_str().unwrap_or_default();
    assert!(status.starts_with("NATS/1.0 503\r\n"), "{next:?}");
    // A publish already on its way when the stream stopped is dropped.
    h.send(JsTarget::Stream(StreamId(1)), "s.a", b"", b"lost");
    assert!(h.sync_all().is_empty());
    // Nothing is removed or rewritten; the stop writes the store's
    // snapshot, as a clean shutdown does.
    let files_after = stream_files(&disk);
    let added: Vec<&String> = files_after
        .iter()
        .filter(|file| !files_before.contains(file))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(added, ["streams/1/snapshot"]);
    assert!(files_before.iter().all(|file| files_after.contains(file)));

    h.js.set_accounts(account_a(Some(AccountLimits::default())));
    h.collect();
    assert_eq!(h.listening[&StreamId(1)], vec!["s.>".to_string()]);
    let info = h.api("$JS.API.STREAM.INFO.S", "");
    assert_eq!(info["state"]["messages"], 3, "{info}");
    assert_eq!(info["state"]["consumer_count"], 1, "{info}");
    let after = progress(&h.api("$JS.API.CONSUMER.INFO.S.C", ""));
    assert_eq!(after, before, "the consumer comes back as it was");
    h.publish("s.a", b"", b"m4");
    assert_eq!(h.sync_all()[0].1["seq"], 4);
    // The API counters started over, as the reference's account's do:
    // the stream and consumer info since.
    let account = h.api("$JS.API.INFO", "");
    assert_eq!(account["api"]["total"], 2, "{account}");
}

#[test]
fn a_stop_acknowledges_what_was_stored_and_ignores_its_syncs_still_out() {
    let disk = SharedDisk::default();
    let mut h = Harness::on(disk.clone());
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"]}"#,
    );
    h.publish("s", b"", b"zero");
    assert_eq!(h.sync_all().len(), 1, "the store's first sync is done");
    h.publish("s", b"", b"one");
    h.publish("s", b"", b"two");
    assert!(h.collect().is_empty(), "acks wait for the sync");
    assert_eq!(h.syncs.len(), 1, "the store's second sync is out");

    h.js.set_accounts(account_a(None));
    let acks = h.collect();
    let seqs: Vec<&Value> = acks.iter().map(|(_, ack)| &ack["seq"]).collect();
    assert_eq!(seqs, [2, 3], "the stop synced them: {acks:?}");

    // Back on before the old sync completes: the reopened store (same
    // id, its own tags from 1) must not take that completion for its
    // own, in whichever order the two complete.
    h.js.set_accounts(account_a(Some(AccountLimits::default())));
    h.collect();
    h.publish("s", b"", b"three");
    assert!(h.collect().is_empty());
    assert_eq!(h.syncs.len(), 2, "the old sync and the new one");
    h.syncs.reverse();
    let acks = h.sync_all();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].1["seq"], 4);

    drop(h);
    disk.with(MemDisk::power_loss);
    let mut h = Harness::on(disk);
    let info = h.api("$JS.API.STREAM.INFO.S", "");
    assert_eq!(info["state"]["messages"], 4, "{info}");
}

#[test]
fn lowered_limits_keep_what_is_held_and_refuse_more() {
    let mut h = Harness::new();
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"]}"#,
    );
    h.publish("s", b"", b"held");
    h.sync_all();
    h.js.set_accounts(account_a(Some(AccountLimits {
        max_store: Some(10),
        max_streams: Some(1),
        ..AccountLimits::default()
    })));
    h.collect();
    let info = h.api("$JS.API.STREAM.INFO.S", "");
    assert_eq!(info["state"]["messages"], 1, "{info}");
    h.publish("s", b"", b"more");
    let refused = h.sync_all();
    assert_eq!(refused[0].1["error"]["err_code"], 10002, "{refused:?}");
    let create = h.api(
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":["t"]}"#,
    );
    assert_eq!(create["error"]["err_code"], 10027, "{create}");
}

#[test]
fn a_memory_stream_does_not_come_back_when_its_account_is_turned_on_again() {
    let mut h = Harness::new();
    h.api(
        "$JS.API.STREAM.CREATE.M",
        r#"{"name":"M","subjects":["m"],"storage":"memory"}"#,
    );
    h.publish("m", b"", b"in memory");
    assert_eq!(h.sync_all().len(), 1);
    h.js.set_accounts(account_a(None));
    h.collect();
    h.js.set_accounts(account_a(Some(AccountLimits::default())));
    h.collect();
    assert!(h.listening.is_empty());
    let names = h.api("$JS.API.STREAM.NAMES", "");
    assert_eq!(names["total"], 0, "{names}");
    let created = h.api(
        "$JS.API.STREAM.CREATE.M",
        r#"{"name":"M","subjects":["m"],"storage":"memory"}"#,
    );
    assert_eq!(created["did_create"], true, "created anew: {created}");
}

// ---- the order of a publish's refusals (the reference's, issue #15) ----

/// The error code of each reply (0 for an ack), a duplicate marked so.
fn answers(replies: &[(String, Value)]) -> Vec<String> {
    replies
        .iter()
        .map(|(_, reply)| match &reply["error"]["err_code"] {
            Value::Number(code) => code.to_string(),
            _ if reply["duplicate"] == true => format!("dup {}", reply["seq"]),
            _ => format!("seq {}", reply["seq"]),
        })
        .collect()
}

/// Publish once with `headers` (lines `Name: value`) and `payload`; the
/// one answer.
fn answer(h: &mut Harness, subject: &str, headers: &[&str], payload: &[u8]) -> String {
    let block = match headers {
        [] => String::new(),
        lines => format!("NATS/1.0\r\n{}\r\n\r\n", lines.join("\r\n")),
    };
    h.publish(subject, block.as_bytes(), payload);
    let replies = h.sync_all();
    let mut found = answers(&replies);
    assert_eq!(found.len(), 1, "{replies:?}");
    found.pop().unwrap()
}

#[test]
fn the_server_limit_refuses_once_it_is_crossed() {
    // A 100-byte payload on "m.a" counts 119 bytes in memory, 138 on file.
    let config = JetStreamConfig::with_bounds("", 300, 400);
    let mut h = Harness::on_config(SharedDisk::default(), config);
    for (name, storage) in [("M", "memory"), ("F", "file")] {
        let lower = name.to_lowercase();
        let created = h.api(
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &format!(
                r#"{{"name":"{name}","subjects":["{lower}.>"],"storage":"{storage}","max_msg_size":150,"duplicate_window":60000000000}}"#
            ),
        );
        assert!(created["error"].is_null(), "{created}");
        let subject = format!("{lower}.a");
        let fill: Vec<String> = (0..4)
            .map(|i| {
                let id = format!("Nats-Msg-Id: d{i}");
                answer(&mut h, &subject, &[&id], &[b'x'; 100])
            })
            .collect();
        // The third crosses the limit and is stored; the fourth is refused.
        assert_eq!(fill, ["seq 1", "seq 2", "seq 3", "10023"], "{name}");
        // Over the limit, the header checks, a duplicate and the size come
        // first; a bad TTL after.
        let cases: [(&[&str], &[u8], &str); 6] = [
            (&[], b"z", "10023"),
            (&["Nats-Msg-Id: d0"], b"z", "dup 1"),
            (&["Nats-Expected-Last-Sequence: 9"], b"z", "10071"),
            (&["Nats-Expected-Stream: X"], b"z", "10060"),
            (&[], &[b'b'; 200], "10054"),
            (&["Nats-TTL: bad"], b"z", "10023"),
        ];
        for (headers, payload, expected) in cases {
            assert_eq!(
                answer(&mut h, &subject, headers, payload),
                expected,
                "{name} {headers:?}"
            );
        }
    }
}

#[test]
fn the_account_limit_refuses_what_would_cross_it() {
    let mut h = Harness::new();
    h.js.set_accounts(account_a(Some(AccountLimits {
        max_memory: Some(300),
        ..AccountLimits::default()
    })));
    h.collect();
    h.api(
        "$JS.API.STREAM.CREATE.M",
        r#"{"name":"M","subjects":["m.>"],"storage":"memory","duplicate_window":60000000000}"#,
    );
    // 148 bytes with the id, 119 without: a third would take 386 over 300,
    // while 20 more fit.
    let fill = [
        answer(&mut h, "m.a", &["Nats-Msg-Id: d0"], &[b'x'; 100]),
        answer(&mut h, "m.a", &[], &[b'x'; 100]),
        answer(&mut h, "m.a", &[], &[b'x'; 100]),
        answer(&mut h, "m.a", &[], b"z"),
    ];
    assert_eq!(fill, ["seq 1", "seq 2", "10002", "seq 3"]);
    let cases: [(&[&str], &str); 6] = [
        (&["Nats-Msg-Id: d0"], "dup 1"),
        (&["Nats-TTL: 5s"], "10166"),
        (&["Nats-TTL: bad"], "10002"),
        (&["Nats-Stream-Source: X 1 a > a"], "10227"),
        (&["Nats-Rollup: sub"], "10111"),
        (&["X-Pad: padding"], "10002"),
    ];
    for (headers, expected) in cases {
        let padded = [b'p'; 60];
        assert_eq!(
            answer(&mut h, "m.a", headers, &padded),
            expected,
            "{headers:?}"
        );
    }
}

#[test]
fn a_sealed_stream_refuses_before_its_limits() {
    let config = JetStreamConfig::with_bounds("", 300, 1 << 30);
    let mut h = Harness::on_config(SharedDisk::default(), config);
    let body = r#"{"name":"M","subjects":["m.>"],"storage":"memory","max_msg_size":150}"#;
    h.api("$JS.API.STREAM.CREATE.M", body);
    for _ in 0..3 {
        answer(&mut h, "m.a", &[], &[b'x'; 100]);
    }
    assert_eq!(answer(&mut h, "m.a", &[], b"z"), "10023");
    let sealed = body.replace("}", r#","sealed":true}"#);
    let updated = h.api("$JS.API.STREAM.UPDATE.M", &sealed);
    assert!(updated["error"].is_null(), "{updated}");
    for headers in [
        &[][..],
        &["Nats-Expected-Last-Sequence: 9"],
        &["Nats-Stream-Source: X"],
    ] {
        assert_eq!(answer(&mut h, "m.a", headers, &[b'b'; 200]), "10109");
    }
}

#[test]
fn a_lone_publish_is_checked_in_the_reference_order() {
    let mut h = Harness::new();
    h.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"max_msg_size":150,"duplicate_window":60000000000}"#,
    );
    assert_eq!(answer(&mut h, "s.a", &["Nats-Msg-Id: d1"], b"x"), "seq 1");
    assert_eq!(answer(&mut h, "s.b", &[], b"x"), "seq 2");
    let big = [b'b'; 200];
    let cases: [(&[&str], &[u8], &str); 11] = [
        // The size before any header.
        (
            &["Nats-Msg-Id: d1", "Nats-Expected-Stream: X"],
            &big,
            "10054",
        ),
        // The expected stream and a TTL before a duplicate.
        (
            &["Nats-Msg-Id: d1", "Nats-Expected-Stream: X"],
            b"z",
            "10060",
        ),
        (&["Nats-Msg-Id: d1", "Nats-TTL: 5s"], b"z", "10166"),
        // A TTL that does not parse is judged late: after a duplicate.
        (&["Nats-Msg-Id: d1", "Nats-TTL: bad"], b"z", "dup 1"),
        (&["Nats-TTL: bad"], b"z", "10165"),
        // The subject's sequence (1) before the stream's (2).
        (
            &[
                "Nats-Expected-Last-Sequence: 9",
                "Nats-Expected-Last-Subject-Sequence: 7",
            ],
            b"z",
            "10071 1",
        ),
        // The source header after the sequences, before a duplicate.
        (
            &["Nats-Stream-Source: X", "Nats-Expected-Last-Sequence: 9"],
            b"z",
            "10071 2",
        ),
        (&["Nats-Stream-Source: X", "Nats-Msg-Id: d1"], b"z", "10227"),
        // A duplicate before the expected last id and a roll-up.
        (
            &["Nats-Msg-Id: d1", "Nats-Expected-Last-Msg-Id: zz"],
            b"z",
            "dup 1",
        ),
        (
            &["Nats-Expected-Last-Msg-Id: zz", "Nats-Rollup: zz"],
            b"z",
            "10070",
        ),
        (
            &["Nats-Expected-Last-Subject-Sequence-Subject: q"],
            b"z",
            "10193",
        ),
    ];
    for (headers, payload, expected) in cases {
        let block = format!("NATS/1.0\r\n{}\r\n\r\n", headers.join("\r\n"));
        h.publish("s.a", block.as_bytes(), payload);
        let replies = h.sync_all();
        let mut found = answers(&replies).join(",");
        if found == "10071" {
            // Which sequence it names says which check refused it.
            let text = replies[0].1["error"]["description"].as_str().unwrap();
            found = format!("10071 {}", text.rsplit(' ').next().unwrap());
        }
        assert_eq!(found, expected, "{headers:?}");
    }
    // A header block over 64k: refused before the headers are read.
    let pad = format!("X-Pad: {}", "p".repeat(70_000));
    let unlimited = r#"{"name":"U","subjects":["u.>"]}"#;
    h.api("$JS.API.STREAM.CREATE.U", unlimited);
    let huge = answer(&mut h, "u.a", &[&pad, "Nats-Expected-Stream: X"], b"z");
    assert_eq!(huge, "10097");
}
