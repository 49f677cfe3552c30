//! The wire types against nats-server v2.15.1: every reply captured from a
//! fresh `nats-server -js` (`testdata/reference_replies.json`, recorded
//! with the Python client: account info, create, publish, info, names,
//! list, get, delete, purge, update and their errors) must read into its
//! type and write back to the same bytes. Snapshots pin what rnats itself
//! builds.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;
use crate::jetstream::errors::{ApiError, ApiErrorKind};
use crate::jetstream::stream_config::{
    check_create, with_dynamic_metadata, CheckContext, NoStreams,
};
use crate::time::WallTime;

#[derive(serde::Deserialize)]
struct Captured {
    #[serde(default)]
    request: String,
    reply: String,
}

fn captures() -> BTreeMap<String, Captured> {
    serde_json::from_str(include_str!("testdata/reference_replies.json")).unwrap()
}

/// Reads `text` as `T` and writes it back; the bytes must not change.
fn round_trip<T: Serialize + DeserializeOwned>(case: &str, text: &str) -> T {
    let value: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{case}: {e}"));
    let written = String::from_utf8(to_wire_json(&value)).unwrap();
    assert_eq!(written, text, "{case}");
    value
}

#[test]
fn every_captured_reply_round_trips_byte_for_byte() {
    let captures = captures();
    let mut checked = 0;
    for (case, captured) in &captures {
        let text = captured.reply.as_str();
        match case.as_str() {
            "info" | "info_after" => drop(round_trip::<AccountInfoResponse>(case, text)),
            "create_default" | "create_same" | "create_exists" | "counter" | "full" => {
                drop(round_trip::<StreamCreateResponse>(case, text))
            }
            "update" | "update_storage" | "update_retention" | "update_missing" => {
                drop(round_trip::<StreamUpdateResponse>(case, text))
            }
            c if c.starts_with("stream_info") => drop(round_trip::<StreamInfoResponse>(case, text)),
            c if c.starts_with("names") => drop(round_trip::<StreamNamesResponse>(case, text)),
            c if c.starts_with("list") => drop(round_trip::<StreamListResponse>(case, text)),
            c if c.starts_with("msg_get") => drop(round_trip::<MsgGetResponse>(case, text)),
            c if c.starts_with("msg_delete") => drop(round_trip::<MsgDeleteResponse>(case, text)),
            c if c.starts_with("purge") => drop(round_trip::<PurgeResponse>(case, text)),
            c if c.starts_with("delete") => drop(round_trip::<StreamDeleteResponse>(case, text)),
            "pub_wrong_last" => drop(round_trip::<PubAck>(case, text)),
            c if c.starts_with("pub_ack") => {
                let ack: PubAck = serde_json::from_str(text).unwrap();
                assert_eq!(String::from_utf8(ack.encode()).unwrap(), text, "{case}");
            }
            other => panic!("no type for captured reply {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, captures.len());
}

/// The create and update replies captured for the config checks
/// (`stream_config/reference_cases.json`: full configs, mirrors and
/// sources with their info, errors) round-trip byte for byte too.
#[test]
fn captured_create_and_update_replies_round_trip() {
    #[derive(serde::Deserialize)]
    struct Case {
        case: String,
        op: String,
        reply: String,
    }
    let cases: Vec<Case> =
        serde_json::from_str(include_str!("../stream_config/reference_cases.json")).unwrap();
    for case in &cases {
        if case.op == "create" {
            let reply = round_trip::<StreamCreateResponse>(&case.case, &case.reply);
            if case.case == "mirror_ok" {
                let mirror = reply.info.unwrap().mirror.unwrap();
                assert_eq!((mirror.name.as_str(), mirror.active), ("S1", -1));
            }
        } else {
            round_trip::<StreamUpdateResponse>(&case.case, &case.reply);
        }
    }
    assert!(cases.len() > 70);
}

#[test]
fn wire_json_escapes_as_go_does() {
    let config = StreamConfig {
        name: "S".into(),
        subjects: vec!["a.>".into(), "<&>\u{2028}".into()],
        ..StreamConfig::default()
    };
    let text = String::from_utf8(to_wire_json(&config.subjects)).unwrap();
    assert_eq!(text, r#"["a.\u003e","\u003c\u0026\u003e\u2028"]"#);
    let back: Vec<String> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, config.subjects);
}

#[test]
fn captured_requests_read() {
    let captures = captures();
    let body = |case: &str| captures[case].request.clone();
    let get: MsgGetRequest = serde_json::from_str(&body("msg_get_last")).unwrap();
    assert_eq!(get.last_by_subj, "S1");
    let delete: MsgDeleteRequest = serde_json::from_str(&body("msg_delete_noerase")).unwrap();
    assert!(delete.no_erase);
    assert_eq!(delete.seq, 2);
    let info: StreamInfoRequest = serde_json::from_str(&body("stream_info_subjects")).unwrap();
    assert!(info.deleted_details);
    assert_eq!(info.subjects_filter, ">");
    let names: StreamNamesRequest = serde_json::from_str(&body("names_subject")).unwrap();
    assert_eq!(names.subject, "nomatch");
    let purge: PurgeRequest = serde_json::from_str(&body("purge")).unwrap();
    assert_eq!(purge, PurgeRequest::default());
    let full: StreamConfigRequest = serde_json::from_str(&body("full")).unwrap();
    assert_eq!(full.config.storage, StorageType::Memory);
    assert_eq!(full.config.consumer_limits.max_ack_pending, 10);
}

#[test]
fn captured_state_fields() {
    let captures = captures();
    let info: StreamInfoResponse =
        serde_json::from_str(&captures["stream_info_subjects"].reply).unwrap();
    let info = info.info.unwrap();
    assert_eq!(info.state.subjects.get("S1"), Some(&2));
    assert_eq!(info.state.messages, 2);
    assert!(info.state.first_ts.is_some());
    let missing: StreamInfoResponse =
        serde_json::from_str(&captures["stream_info_missing"].reply).unwrap();
    assert!(missing.info.is_none());
    assert!(missing.error.unwrap().is(ApiErrorKind::StreamNotFound));
    let get: MsgGetResponse = serde_json::from_str(&captures["msg_get_last"].reply).unwrap();
    let message = get.message.unwrap();
    assert_eq!(message.data, b"hello");
    assert_eq!(message.hdrs, b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n");
}

const CREATED: WallTime = WallTime(1_796_544_000_123_456_789);
const NOW: WallTime = WallTime(1_796_544_000_500_000_000);

fn default_info() -> StreamInfo {
    let limits = crate::jetstream::config::AccountLimits::default();
    let context = CheckContext {
        clustered: false,
        duplicate_window_limit: None,
        account: &limits,
        streams: &NoStreams,
    };
    let request: StreamConfigRequest = serde_json::from_str(r#"{"name":"ORDERS"}"#).unwrap();
    let config = check_create("ORDERS", &request, &context).unwrap();
    StreamInfo {
        config: with_dynamic_metadata(&config),
        created: CREATED,
        ts: NOW,
        cluster: Some(ClusterInfo {
            leader: "NSERVERID".into(),
            ..ClusterInfo::default()
        }),
        ..StreamInfo::default()
    }
}

#[test]
fn snapshot_default_created_stream() {
    let reply = StreamCreateResponse::ok(
        StreamInfo {
            cluster: None,
            ..default_info()
        },
        true,
    );
    insta::assert_snapshot!(serde_json::to_string_pretty(&reply).unwrap());
}

#[test]
fn snapshot_stream_info_with_details() {
    let mut info = default_info();
    info.state = StreamState {
        messages: 2,
        bytes: 106,
        first_seq: 1,
        first_ts: Some(CREATED),
        last_seq: 3,
        last_ts: Some(NOW),
        num_subjects: 1,
        subjects: [("ORDERS".to_owned(), 2)].into_iter().collect(),
        num_deleted: 1,
        deleted: vec![2],
        ..StreamState::default()
    };
    let paged = ApiPaged {
        total: 1,
        offset: 0,
        limit: 100_000,
    };
    insta::assert_snapshot!(serde_json::to_string(&StreamInfoResponse::ok(paged, info)).unwrap());
}

#[test]
fn snapshot_pub_acks() {
    let ack = PubAck {
        stream: "ORDERS".into(),
        seq: 1,
        ..PubAck::default()
    };
    let duplicate = PubAck {
        duplicate: true,
        ..ack.clone()
    };
    let refused = PubAck::encode_error("ORDERS", &ApiError::new(ApiErrorKind::StreamNotMatch));
    let lines = [ack.encode(), duplicate.encode(), refused]
        .map(|bytes| String::from_utf8(bytes).unwrap())
        .join("\n");
    insta::assert_snapshot!(lines);
}

#[test]
fn snapshot_account_info() {
    let info = AccountInfo {
        api: ApiStats {
            level: 5,
            total: 3,
            errors: 1,
            inflight: 0,
        },
        ..AccountInfo::default()
    };
    insta::assert_snapshot!(serde_json::to_string(&AccountInfoResponse::ok(info)).unwrap());
}

#[test]
fn snapshot_error_replies() {
    let not_found = ApiError::new(ApiErrorKind::StreamNotFound);
    let lines = [
        serde_json::to_string(&StreamInfoResponse::error(not_found.clone())).unwrap(),
        serde_json::to_string(&StreamCreateResponse::error(ApiError::new(
            ApiErrorKind::StreamNameExist,
        )))
        .unwrap(),
        serde_json::to_string(&StreamDeleteResponse::error(not_found)).unwrap(),
        serde_json::to_string(&MsgGetResponse::error(ApiError::new(
            ApiErrorKind::NoMessageFound,
        )))
        .unwrap(),
        serde_json::to_string(&AccountInfoResponse::error(ApiError::new(
            ApiErrorKind::NotEnabledForAccount,
        )))
        .unwrap(),
        serde_json::to_string(&StreamNamesResponse::ok(
            ApiPaged {
                total: 0,
                offset: 0,
                limit: 1024,
            },
            vec![],
        ))
        .unwrap(),
        serde_json::to_string(&PurgeResponse::ok(0)).unwrap(),
    ]
    .join("\n");
    insta::assert_snapshot!(lines);
}

/// The keys rnats writes for a default stream are the reference's: the
/// captured `create_default` reply and ours, built from the same request,
/// differ only in times and the server id.
#[test]
fn default_create_has_the_reference_keys() {
    let captures = captures();
    let reference: serde_json::Value =
        serde_json::from_str(&captures["create_default"].reply).unwrap();
    let reference_config = reference["config"].clone();
    let ours = serde_json::to_value(StreamCreateResponse::ok(
        StreamInfo {
            cluster: None,
            config: {
                let mut info = default_info();
                info.config.name = "S1".into();
                info.config.subjects = vec!["S1".into()];
                info.config
            },
            ..default_info()
        },
        true,
    ))
    .unwrap();
    let keys = |value: &serde_json::Value| {
        value
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&ours), keys(&reference));
    assert_eq!(ours["config"], reference_config);
    assert_eq!(keys(&ours["state"]), keys(&reference["state"]));
}
