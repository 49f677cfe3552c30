//! Differential JetStream test: the same `$JS.API` requests and publishes, sent
//! as raw requests over a plain async-nats client to rnats-server and to the
//! reference nats-server (both `-js -sd <fresh dir>`), with every reply compared
//! whole (JSON values, status, headers) after normalizing what must differ
//! (timestamps, server ids and names, the version).
//!
//! A step's reply is recorded as one JSON value: the status and description of
//! a status reply, the headers (values kept, `Nats-Time-Stamp` normalized), and
//! the body parsed as JSON (or kept as text). Replies are compared step by step;
//! a difference fails the test with the request and both replies.
//!
//! Differences that are known are listed in [`KNOWN_DIFFERENCES`] (whole
//! steps) and [`KNOWN_ACCOUNT_INFO_FIELDS`] (one key
//! each): every one is checked to still differ, so the test fails once rnats
//! is fixed and the entry must be removed. Steps that change state in a way
//! that differs come last, so they cannot shift the sequences compared before.
//!
//! Without the reference the test prints a NOTICE and passes (unless
//! `RNATS_REQUIRE_REFERENCE=1`). `RNATS_TEST_SERVER_BIN=nats-server` makes the
//! "rnats" side a second reference, which validates the steps and the
//! normalization (then the known differences are not expected to differ).
//! `RNATS_JSDIFF_VERBOSE=1` prints every normalized reply.

mod common;

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use rnats_tests::ServerProcess;
use serde_json::{json, Value};

/// One request: subject, headers, payload.
struct Step {
    /// Unique label, used in reports and in [`KNOWN_DIFFERENCES`].
    label: &'static str,
    subject: String,
    headers: Vec<(&'static str, String)>,
    payload: String,
}

fn req(label: &'static str, subject: &str, payload: impl ToString) -> Step {
    Step {
        label,
        subject: subject.to_string(),
        headers: Vec::new(),
        payload: payload.to_string(),
    }
}

fn api(label: &'static str, api: &str, payload: Value) -> Step {
    req(label, &format!("$JS.API.{api}"), payload)
}

fn pubh(
    label: &'static str,
    subject: &str,
    headers: &[(&'static str, &str)],
    payload: &str,
) -> Step {
    Step {
        label,
        subject: subject.to_string(),
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        payload: payload.to_string(),
    }
}

/// Steps whose replies differ today, with why. Each must still differ (so the
/// entry is removed once rnats is fixed).
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// Known differences in `$JS.API.INFO` (account info) replies, each a field
/// set to a placeholder on both sides when the two differ; the test checks
/// that each one still differs somewhere (so it fails once rnats is fixed).
/// None today.
const KNOWN_ACCOUNT_INFO_FIELDS: &[&str] = &[];

/// Replaces the [`KNOWN_ACCOUNT_INFO_FIELDS`] that differ; returns which did.
fn patch_known_account_info(a: &mut Value, b: &mut Value) -> Vec<&'static str> {
    let mut patched = Vec::new();
    let kind = "io.nats.jetstream.api.v1.account_info_response";
    if a["json"]["type"] != json!(kind) || b["json"]["type"] != json!(kind) {
        return patched;
    }
    for field in KNOWN_ACCOUNT_INFO_FIELDS {
        if a["json"][field] != b["json"][field] {
            a["json"][field] = json!("<known difference>");
            b["json"][field] = json!("<known difference>");
            patched.push(*field);
        }
    }
    patched
}

/// Steps whose reply is a JSON syntax error: rnats words it with serde's text,
/// the reference with Go's (a documented difference), so the description after
/// "invalid JSON: " is not compared; the code and err_code are.
const JSON_SYNTAX_ERROR_STEPS: &[&str] = &["malformed-json", "get-malformed"];

/// Keys whose values are times or identities of one server run.
const VOLATILE_KEYS: &[&str] = &[
    "created",
    "ts",
    "first_ts",
    "last_ts",
    "time",
    "leader",
    "_nats.ver",
    "server_id",
    "server_name",
];

fn steps() -> Vec<Step> {
    let mut s = vec![
        api("info-empty", "INFO", json!("")),
        // ---- create with defaults, idempotent and conflicting
        api(
            "create-defaults",
            "STREAM.CREATE.S1",
            json!({"name": "S1", "subjects": ["s1.>"], "allow_direct": true}),
        ),
        api(
            "create-idempotent",
            "STREAM.CREATE.S1",
            json!({"name": "S1", "subjects": ["s1.>"], "allow_direct": true}),
        ),
        api(
            "create-conflicting",
            "STREAM.CREATE.S1",
            json!({"name": "S1", "subjects": ["s1.>"], "max_msgs": 10}),
        ),
        api(
            "create-limits",
            "STREAM.CREATE.LIM",
            json!({"name": "LIM", "subjects": ["lim.*"], "max_msgs": 3, "max_bytes": 10000,
                   "max_age": 3_600_000_000_000u64, "max_msgs_per_subject": 2, "max_msg_size": 64,
                   "discard": "new", "storage": "memory", "duplicate_window": 1_000_000_000u64,
                   "num_replicas": 1, "description": "limits", "max_consumers": 5}),
        ),
        api(
            "create-no-subjects",
            "STREAM.CREATE.NOSUBJ",
            json!({"name": "NOSUBJ"}),
        ),
        // ---- validation errors
        api("bad-name-dot", "STREAM.CREATE.A.B", json!({"name": "A.B"})),
        api("bad-name-star", "STREAM.CREATE.A*", json!({"name": "A*"})),
        api("bad-name-gt", "STREAM.CREATE.A>", json!({"name": "A>"})),
        api(
            "bad-name-space-body",
            "STREAM.CREATE.SP",
            json!({"name": "S P"}),
        ),
        api(
            "bad-name-slash",
            "STREAM.CREATE.A/B",
            json!({"name": "A/B"}),
        ),
        api(
            "bad-name-backslash",
            "STREAM.CREATE.A\\B",
            json!({"name": "A\\B"}),
        ),
        api("bad-name-empty", "STREAM.CREATE.E", json!({"name": ""})),
        api(
            "name-missing-body",
            "STREAM.CREATE.NM",
            json!({"subjects": ["nm"]}),
        ),
        api(
            "name-mismatch",
            "STREAM.CREATE.X1",
            json!({"name": "X2", "subjects": ["x"]}),
        ),
        api(
            "overlap-other-stream",
            "STREAM.CREATE.S2",
            json!({"name": "S2", "subjects": ["s1.foo"]}),
        ),
        api(
            "overlap-other-wider",
            "STREAM.CREATE.S3",
            json!({"name": "S3", "subjects": [">"]}),
        ),
        api(
            "overlap-self",
            "STREAM.CREATE.S4",
            json!({"name": "S4", "subjects": ["a.>", "a.b"]}),
        ),
        api(
            "duplicate-subject",
            "STREAM.CREATE.S5",
            json!({"name": "S5", "subjects": ["d", "d"]}),
        ),
        api(
            "bad-subject",
            "STREAM.CREATE.S6",
            json!({"name": "S6", "subjects": ["foo..bar"]}),
        ),
        api(
            "bad-subject-gt-middle",
            "STREAM.CREATE.S7",
            json!({"name": "S7", "subjects": ["foo.>.bar"]}),
        ),
        api(
            "subject-js-api",
            "STREAM.CREATE.S8",
            json!({"name": "S8", "subjects": ["$JS.API.>"]}),
        ),
        api(
            "subject-empty-string",
            "STREAM.CREATE.S9",
            json!({"name": "S9", "subjects": [""]}),
        ),
        api(
            "unknown-field",
            "STREAM.CREATE.U",
            json!({"name": "U", "subjects": ["u"], "bogus": 1}),
        ),
        api(
            "bad-type-max-msgs",
            "STREAM.CREATE.T",
            json!({"name": "T", "subjects": ["t"], "max_msgs": "ten"}),
        ),
        api(
            "bad-type-subjects",
            "STREAM.CREATE.T",
            json!({"name": "T", "subjects": "t"}),
        ),
        req("malformed-json", "$JS.API.STREAM.CREATE.T", "{"),
        req("empty-payload", "$JS.API.STREAM.CREATE.T", ""),
        api(
            "negative-max-msgs",
            "STREAM.CREATE.N1",
            json!({"name": "N1", "subjects": ["n1"], "max_msgs": -2}),
        ),
        api(
            "negative-max-bytes",
            "STREAM.CREATE.N2",
            json!({"name": "N2", "subjects": ["n2"], "max_bytes": -5}),
        ),
        api(
            "negative-max-age",
            "STREAM.CREATE.N3",
            json!({"name": "N3", "subjects": ["n3"], "max_age": -1}),
        ),
        api(
            "negative-max-msg-size",
            "STREAM.CREATE.N4",
            json!({"name": "N4", "subjects": ["n4"], "max_msg_size": -2}),
        ),
        api(
            "negative-per-subject",
            "STREAM.CREATE.N5",
            json!({"name": "N5", "subjects": ["n5"], "max_msgs_per_subject": -3}),
        ),
        api(
            "negative-max-consumers",
            "STREAM.CREATE.N6",
            json!({"name": "N6", "subjects": ["n6"], "max_consumers": -2}),
        ),
        api(
            "negative-one-is-unlimited",
            "STREAM.CREATE.N7",
            json!({"name": "N7", "subjects": ["n7"], "max_msgs": -1, "max_bytes": -1, "max_msg_size": -1}),
        ),
        api(
            "dupe-window-over-max-age",
            "STREAM.CREATE.DW",
            json!({"name": "DW", "subjects": ["dw"], "max_age": 1_000_000_000u64, "duplicate_window": 2_000_000_000u64}),
        ),
        api(
            "negative-dupe-window",
            "STREAM.CREATE.DW2",
            json!({"name": "DW2", "subjects": ["dw2"], "duplicate_window": -1}),
        ),
        api(
            "bad-storage",
            "STREAM.CREATE.BS",
            json!({"name": "BS", "subjects": ["bs"], "storage": "disk"}),
        ),
        api(
            "bad-discard",
            "STREAM.CREATE.BD",
            json!({"name": "BD", "subjects": ["bd"], "discard": "bogus"}),
        ),
        api(
            "replicas-3",
            "STREAM.CREATE.R3",
            json!({"name": "R3", "subjects": ["r3"], "num_replicas": 3}),
        ),
        api(
            "replicas-too-many",
            "STREAM.CREATE.R9",
            json!({"name": "R9", "subjects": ["r9"], "num_replicas": 9}),
        ),
        api(
            "discard-new-per-subject-without-new",
            "STREAM.CREATE.DN",
            json!({"name": "DN", "subjects": ["dn"], "discard_new_per_subject": true, "max_msgs_per_subject": 1}),
        ),
        api(
            "discard-new-per-subject-without-limit",
            "STREAM.CREATE.DN2",
            json!({"name": "DN2", "subjects": ["dn2"], "discard": "new", "discard_new_per_subject": true}),
        ),
        api(
            "sealed-on-create",
            "STREAM.CREATE.SE",
            json!({"name": "SE", "subjects": ["se"], "sealed": true}),
        ),
        api(
            "ttl-without-age-small",
            "STREAM.CREATE.TA",
            json!({"name": "TA", "subjects": ["ta"], "allow_msg_ttl": true, "max_age": 1000}),
        ),
        api(
            "create-missing-subject-token",
            "STREAM.CREATE",
            json!({"name": "NT"}),
        ),
        api("info-after-validation", "INFO", json!("")),
        // ---- publishes
        pubh("pub-1", "s1.a", &[], "one"),
        pubh("pub-msgid", "s1.b", &[("Nats-Msg-Id", "m1")], "two"),
        pubh(
            "pub-msgid-dup",
            "s1.b",
            &[("Nats-Msg-Id", "m1")],
            "two again",
        ),
        pubh(
            "pub-expected-last-msgid-ok",
            "s1.d",
            &[("Nats-Msg-Id", "m2"), ("Nats-Expected-Last-Msg-Id", "m1")],
            "eight",
        ),
        pubh(
            "pub-expected-last-msgid-bad",
            "s1.d",
            &[("Nats-Expected-Last-Msg-Id", "nope")],
            "x",
        ),
        pubh(
            "pub-expected-stream-ok",
            "s1.a",
            &[("Nats-Expected-Stream", "S1")],
            "three",
        ),
        pubh(
            "pub-expected-stream-bad",
            "s1.a",
            &[("Nats-Expected-Stream", "OTHER")],
            "x",
        ),
        pubh(
            "pub-expected-last-seq-ok",
            "s1.c",
            &[("Nats-Expected-Last-Sequence", "4")],
            "four",
        ),
        pubh(
            "pub-expected-last-seq-bad",
            "s1.c",
            &[("Nats-Expected-Last-Sequence", "1")],
            "x",
        ),
        pubh(
            "pub-expected-last-seq-garbage",
            "s1.c",
            &[("Nats-Expected-Last-Sequence", "abc")],
            "x",
        ),
        pubh(
            "pub-expected-last-subj-seq-ok",
            "s1.c",
            &[("Nats-Expected-Last-Subject-Sequence", "5")],
            "five",
        ),
        pubh(
            "pub-expected-last-subj-seq-bad",
            "s1.c",
            &[("Nats-Expected-Last-Subject-Sequence", "2")],
            "x",
        ),
        pubh(
            "pub-expected-last-subj-seq-zero-new",
            "s1.new",
            &[("Nats-Expected-Last-Subject-Sequence", "0")],
            "six",
        ),
        pubh(
            "pub-expected-last-subj-seq-zero-exists",
            "s1.new",
            &[("Nats-Expected-Last-Subject-Sequence", "0")],
            "x",
        ),
        pubh(
            "pub-expected-last-subj-seq-subject",
            "s1.z",
            &[
                ("Nats-Expected-Last-Subject-Sequence", "6"),
                ("Nats-Expected-Last-Subject-Sequence-Subject", "s1.c"),
            ],
            "seven",
        ),
        pubh(
            "pub-rollup-not-allowed",
            "s1.a",
            &[("Nats-Rollup", "sub")],
            "x",
        ),
        pubh("pub-ttl-not-allowed", "s1.a", &[("Nats-TTL", "1h")], "x"),
        pubh(
            "pub-with-user-header",
            "s1.h",
            &[("X-Custom", "v1")],
            "nine",
        ),
        pubh("pub-lim-1", "lim.a", &[], "a"),
        pubh("pub-lim-2", "lim.b", &[], "b"),
        pubh("pub-lim-3", "lim.c", &[], "c"),
        pubh("pub-lim-discard-new", "lim.d", &[], "d"),
        pubh("pub-lim-too-big", "lim.a", &[], &"x".repeat(100)),
        pubh("pub-lim-msgid", "lim.a", &[("Nats-Msg-Id", "L1")], "x"),
        api("info-after-publishes", "INFO", json!("")),
        // ---- rollup and ttl streams
        api(
            "create-rollup",
            "STREAM.CREATE.ROLL",
            json!({"name": "ROLL", "subjects": ["roll.>"], "allow_rollup_hdrs": true}),
        ),
        pubh("pub-roll-1", "roll.a", &[], "1"),
        pubh("pub-roll-2", "roll.a", &[], "2"),
        pubh("pub-roll-3", "roll.b", &[], "3"),
        pubh("pub-roll-sub", "roll.a", &[("Nats-Rollup", "sub")], "4"),
        api(
            "info-roll-after-sub",
            "STREAM.INFO.ROLL",
            json!({"subjects_filter": ">"}),
        ),
        pubh(
            "pub-roll-bad-value",
            "roll.a",
            &[("Nats-Rollup", "bogus")],
            "x",
        ),
        pubh("pub-roll-all", "roll.c", &[("Nats-Rollup", "all")], "5"),
        api("info-roll-after-all", "STREAM.INFO.ROLL", json!({})),
        api(
            "create-ttl",
            "STREAM.CREATE.TTL",
            json!({"name": "TTL", "subjects": ["ttl.>"], "allow_msg_ttl": true}),
        ),
        pubh("pub-ttl-ok", "ttl.a", &[("Nats-TTL", "1h")], "1"),
        pubh("pub-ttl-never", "ttl.a", &[("Nats-TTL", "never")], "2"),
        pubh("pub-ttl-seconds", "ttl.a", &[("Nats-TTL", "30")], "3"),
        pubh("pub-ttl-garbage", "ttl.a", &[("Nats-TTL", "abc")], "x"),
        pubh("pub-ttl-too-small", "ttl.a", &[("Nats-TTL", "500ms")], "x"),
        api("msg-get-ttl", "STREAM.MSG.GET.TTL", json!({"seq": 1})),
        api("info-before-update", "INFO", json!("")),
        // ---- update
        api(
            "update-allowed",
            "STREAM.UPDATE.S1",
            json!({"name": "S1", "subjects": ["s1.>"], "allow_direct": true, "max_msgs": 100, "description": "updated"}),
        ),
        api(
            "update-storage",
            "STREAM.UPDATE.S1",
            json!({"name": "S1", "subjects": ["s1.>"], "storage": "memory"}),
        ),
        api(
            "update-missing",
            "STREAM.UPDATE.NOPE",
            json!({"name": "NOPE", "subjects": ["nope"]}),
        ),
        api(
            "update-name-mismatch",
            "STREAM.UPDATE.S1",
            json!({"name": "S2", "subjects": ["s1.>"]}),
        ),
        api(
            "update-overlap",
            "STREAM.UPDATE.LIM",
            json!({"name": "LIM", "subjects": ["s1.x"], "storage": "memory"}),
        ),
        api(
            "update-lim-retention-change",
            "STREAM.UPDATE.LIM",
            json!({"name": "LIM", "subjects": ["lim.*"], "storage": "memory", "retention": "workqueue"}),
        ),
        api(
            "update-unknown-field",
            "STREAM.UPDATE.S1",
            json!({"name": "S1", "subjects": ["s1.>"], "bogus": true}),
        ),
        api("info-after-update", "INFO", json!("")),
        // ---- info, names, list
        api("info-s1", "STREAM.INFO.S1", json!({})),
        api("info-s1-no-body", "STREAM.INFO.S1", json!("")),
        api(
            "info-s1-subjects",
            "STREAM.INFO.S1",
            json!({"subjects_filter": ">"}),
        ),
        api(
            "info-s1-subjects-filtered",
            "STREAM.INFO.S1",
            json!({"subjects_filter": "s1.c"}),
        ),
        api(
            "info-s1-subjects-none",
            "STREAM.INFO.S1",
            json!({"subjects_filter": "s1.none"}),
        ),
        api("info-missing", "STREAM.INFO.NOPE", json!({})),
        api("names", "STREAM.NAMES", json!({})),
        api("names-offset", "STREAM.NAMES", json!({"offset": 2})),
        api("names-subject", "STREAM.NAMES", json!({"subject": "s1.a"})),
        api(
            "names-subject-none",
            "STREAM.NAMES",
            json!({"subject": "zzz"}),
        ),
        req("names-no-body", "$JS.API.STREAM.NAMES", ""),
        api("list", "STREAM.LIST", json!({})),
        api("list-offset", "STREAM.LIST", json!({"offset": 3})),
        api("list-subject", "STREAM.LIST", json!({"subject": "lim.a"})),
        api("info-before-get", "INFO", json!("")),
        // ---- msg get
        api("get-seq", "STREAM.MSG.GET.S1", json!({"seq": 1})),
        api("get-seq-headers", "STREAM.MSG.GET.S1", json!({"seq": 2})),
        api(
            "get-last-by-subj",
            "STREAM.MSG.GET.S1",
            json!({"last_by_subj": "s1.c"}),
        ),
        api(
            "get-last-by-subj-wild",
            "STREAM.MSG.GET.S1",
            json!({"last_by_subj": "s1.*"}),
        ),
        api(
            "get-next-by-subj",
            "STREAM.MSG.GET.S1",
            json!({"next_by_subj": "s1.c", "seq": 1}),
        ),
        api("get-missing-seq", "STREAM.MSG.GET.S1", json!({"seq": 999})),
        api(
            "get-missing-subj",
            "STREAM.MSG.GET.S1",
            json!({"last_by_subj": "s1.none"}),
        ),
        api("get-empty-request", "STREAM.MSG.GET.S1", json!({})),
        api(
            "get-both-seq-and-last",
            "STREAM.MSG.GET.S1",
            json!({"seq": 1, "last_by_subj": "s1.a"}),
        ),
        api(
            "get-missing-stream",
            "STREAM.MSG.GET.NOPE",
            json!({"seq": 1}),
        ),
        api("info-before-direct", "INFO", json!("")),
        // ---- direct get
        api("direct-seq", "DIRECT.GET.S1", json!({"seq": 2})),
        api(
            "direct-last-by-subj",
            "DIRECT.GET.S1",
            json!({"last_by_subj": "s1.c"}),
        ),
        api(
            "direct-next-by-subj",
            "DIRECT.GET.S1",
            json!({"next_by_subj": "s1.c", "seq": 1}),
        ),
        req(
            "direct-subject-in-subject",
            "$JS.API.DIRECT.GET.S1.s1.h",
            "",
        ),
        api("direct-missing", "DIRECT.GET.S1", json!({"seq": 999})),
        api("direct-empty-request", "DIRECT.GET.S1", json!({})),
        api("info-after-direct", "INFO", json!("")),
        // ---- msg delete
        api("msg-delete", "STREAM.MSG.DELETE.S1", json!({"seq": 2})),
        api(
            "msg-delete-again",
            "STREAM.MSG.DELETE.S1",
            json!({"seq": 2}),
        ),
        api(
            "msg-delete-no-erase",
            "STREAM.MSG.DELETE.S1",
            json!({"seq": 3, "no_erase": true}),
        ),
        api(
            "msg-delete-missing-seq",
            "STREAM.MSG.DELETE.S1",
            json!({"seq": 999}),
        ),
        api(
            "info-deleted-details",
            "STREAM.INFO.S1",
            json!({"deleted_details": true}),
        ),
        api("get-deleted", "STREAM.MSG.GET.S1", json!({"seq": 2})),
        api("info-after-msg-delete", "INFO", json!("")),
        // ---- purge
        api("purge-filter", "STREAM.PURGE.S1", json!({"filter": "s1.a"})),
        api(
            "purge-keep-seq-bad",
            "STREAM.PURGE.S1",
            json!({"keep": 1, "seq": 5}),
        ),
        api(
            "purge-filter-keep",
            "STREAM.PURGE.S1",
            json!({"filter": "s1.c", "keep": 1}),
        ),
        api("purge-seq", "STREAM.PURGE.S1", json!({"seq": 6})),
        api(
            "info-after-purges",
            "STREAM.INFO.S1",
            json!({"deleted_details": true, "subjects_filter": ">"}),
        ),
        api("purge-keep", "STREAM.PURGE.S1", json!({"keep": 1})),
        api("purge-all", "STREAM.PURGE.S1", json!({})),
        api("purge-missing", "STREAM.PURGE.NOPE", json!({})),
        api("info-after-purge-all", "STREAM.INFO.S1", json!({})),
        pubh("pub-after-purge", "s1.a", &[], "after"),
        api("info-after-purge", "INFO", json!("")),
        // ---- deny_delete / deny_purge, sealed, per-subject and byte limits
        api(
            "create-deny",
            "STREAM.CREATE.DENY",
            json!({"name": "DENY", "subjects": ["deny.>"], "deny_delete": true, "deny_purge": true, "storage": "memory"}),
        ),
        pubh("pub-deny", "deny.a", &[], "1"),
        api(
            "deny-msg-delete",
            "STREAM.MSG.DELETE.DENY",
            json!({"seq": 1}),
        ),
        api("deny-purge", "STREAM.PURGE.DENY", json!({})),
        api(
            "update-deny-off",
            "STREAM.UPDATE.DENY",
            json!({"name": "DENY", "subjects": ["deny.>"], "storage": "memory"}),
        ),
        api(
            "update-sealed",
            "STREAM.UPDATE.DENY",
            json!({"name": "DENY", "subjects": ["deny.>"], "deny_delete": true, "deny_purge": true, "storage": "memory", "sealed": true}),
        ),
        pubh("pub-sealed", "deny.a", &[], "2"),
        api("sealed-purge", "STREAM.PURGE.DENY", json!({})),
        api(
            "update-unseal",
            "STREAM.UPDATE.DENY",
            json!({"name": "DENY", "subjects": ["deny.>"], "deny_delete": true, "deny_purge": true, "storage": "memory"}),
        ),
        api(
            "create-per-subject",
            "STREAM.CREATE.PS",
            json!({"name": "PS", "subjects": ["ps.*"], "max_msgs_per_subject": 1, "discard": "new", "discard_new_per_subject": true}),
        ),
        pubh("pub-ps-1", "ps.a", &[], "1"),
        pubh("pub-ps-2", "ps.b", &[], "2"),
        pubh("pub-ps-refused", "ps.a", &[], "3"),
        api(
            "create-max-bytes",
            "STREAM.CREATE.MB",
            json!({"name": "MB", "subjects": ["mb"], "max_bytes": 100, "discard": "new"}),
        ),
        pubh("pub-mb-1", "mb", &[], &"x".repeat(40)),
        pubh("pub-mb-refused", "mb", &[], &"x".repeat(40)),
        api(
            "create-old-limits",
            "STREAM.CREATE.OLD",
            json!({"name": "OLD", "subjects": ["old.*"], "max_msgs": 2, "max_msgs_per_subject": 1}),
        ),
        pubh("pub-old-1", "old.a", &[], "1"),
        pubh("pub-old-2", "old.a", &[], "2"),
        pubh("pub-old-3", "old.b", &[], "3"),
        pubh("pub-old-4", "old.c", &[], "4"),
        api(
            "info-old",
            "STREAM.INFO.OLD",
            json!({"subjects_filter": ">", "deleted_details": true}),
        ),
        api(
            "update-old-shrink",
            "STREAM.UPDATE.OLD",
            json!({"name": "OLD", "subjects": ["old.*"], "max_msgs": 1, "max_msgs_per_subject": 1}),
        ),
        api(
            "update-old-subjects",
            "STREAM.UPDATE.OLD",
            json!({"name": "OLD", "subjects": ["old.*", "older.>"], "max_msgs": 1, "max_msgs_per_subject": 1}),
        ),
        pubh("pub-older", "older.x.y", &[], "5"),
        api("get-old-first", "STREAM.MSG.GET.OLD", json!({"seq": 1})),
        // ---- more requests (on S1 only reads; the rest on fresh streams)
        api("direct-not-allowed", "DIRECT.GET.LIM", json!({"seq": 1})),
        api(
            "get-next-no-seq",
            "STREAM.MSG.GET.S1",
            json!({"next_by_subj": "s1.*"}),
        ),
        req("get-malformed", "$JS.API.STREAM.MSG.GET.S1", "{\"seq\":"),
        req("info-malformed", "$JS.API.STREAM.INFO.S1", "nope"),
        api(
            "info-bad-type",
            "STREAM.INFO.S1",
            json!({"subjects_filter": 5}),
        ),
        api(
            "names-offset-past-end",
            "STREAM.NAMES",
            json!({"offset": 100}),
        ),
        api(
            "names-wildcard-subject",
            "STREAM.NAMES",
            json!({"subject": "s1.*"}),
        ),
        api(
            "list-wildcard-subject",
            "STREAM.LIST",
            json!({"subject": "*"}),
        ),
        api(
            "create-star-overlaps-nosubj",
            "STREAM.CREATE.STAR",
            json!({"name": "STAR", "subjects": ["*"]}),
        ),
        api(
            "create-name-too-long",
            &format!("STREAM.CREATE.{}", "L".repeat(300)),
            json!({"name": "L".repeat(300), "subjects": ["long"]}),
        ),
        api(
            "create-metadata-compression",
            "STREAM.CREATE.META",
            json!({"name": "META", "subjects": ["meta"], "metadata": {"owner": "tests"}, "compression": "s2"}),
        ),
        api(
            "update-ttl-disable",
            "STREAM.UPDATE.TTL",
            json!({"name": "TTL", "subjects": ["ttl.>"], "allow_msg_ttl": false}),
        ),
        api(
            "update-max-age-below-dupe-window",
            "STREAM.UPDATE.META",
            json!({"name": "META", "subjects": ["meta"], "compression": "s2", "max_age": 1_000_000_000u64}),
        ),
        api(
            "update-compression-change",
            "STREAM.UPDATE.META",
            json!({"name": "META", "subjects": ["meta"], "compression": "none"}),
        ),
        api(
            "update-rollup-to-deny-purge",
            "STREAM.UPDATE.ROLL",
            json!({"name": "ROLL", "subjects": ["roll.>"], "allow_rollup_hdrs": true, "deny_purge": true}),
        ),
        // ---- subject transform, republish and delete markers
        api(
            "create-transform-republish",
            "STREAM.CREATE.TR",
            json!({"name": "TR", "subjects": ["tr.>"], "subject_transform": {"src": "tr.*.>", "dest": "trx.$1.>"},
                   "republish": {"src": "trx.>", "dest": "rp.tr.>", "headers_only": true}}),
        ),
        pubh("pub-transformed", "tr.a.b", &[("Foo", "bar")], "one"),
        pubh(
            "pub-transformed-expected-subject-seq",
            "tr.a.b",
            &[("Nats-Expected-Last-Subject-Sequence", "1")],
            "two",
        ),
        pubh("pub-untransformed", "tr.q", &[], "three"),
        api(
            "get-transformed",
            "STREAM.MSG.GET.TR",
            json!({"last_by_subj": "trx.a.b"}),
        ),
        api(
            "info-transformed",
            "STREAM.INFO.TR",
            json!({"subjects_filter": ">"}),
        ),
        api(
            "create-republish-cycle",
            "STREAM.CREATE.CY",
            json!({"name": "CY", "subjects": ["cy.*"], "republish": {"src": "cy.*", "dest": "cy.>"}}),
        ),
        api(
            "create-republish-implicit-pedantic",
            "STREAM.CREATE.IM",
            json!({"name": "IM", "subjects": ["im"], "subject_transform": {"src": "im", "dest": "imx"},
                   "republish": {"src": ">", "dest": ">"}, "pedantic": true}),
        ),
        api(
            "create-markers-pedantic-no-ttl",
            "STREAM.CREATE.MK",
            json!({"name": "MK", "subjects": ["mk.>"], "subject_delete_marker_ttl": 60_000_000_000u64, "pedantic": true}),
        ),
        api(
            "create-markers",
            "STREAM.CREATE.MK",
            json!({"name": "MK", "subjects": ["mk.>"], "subject_delete_marker_ttl": 5_000_000_000u64}),
        ),
        pubh("pub-markers-short-ttl", "mk.a", &[("Nats-TTL", "1s")], "x"),
        api(
            "get-markers-raised-ttl",
            "STREAM.MSG.GET.MK",
            json!({"seq": 1}),
        ),
        api("info-before-delete", "INFO", json!("")),
        // ---- delete
        api("delete", "STREAM.DELETE.S1", json!("")),
        api(
            "create-async-persisted",
            "STREAM.CREATE.AP",
            json!({"name": "AP", "subjects": ["ap"], "persist_mode": "async"}),
        ),
        pubh("pub-async-persisted", "ap", &[], "x"),
        api(
            "update-persist-mode",
            "STREAM.UPDATE.AP",
            json!({"name": "AP", "subjects": ["ap"]}),
        ),
        api(
            "create-async-persisted-memory",
            "STREAM.CREATE.APM",
            json!({"name": "APM", "subjects": ["apm"], "persist_mode": "async",
                   "storage": "memory"}),
        ),
        api("delete-async-persisted", "STREAM.DELETE.AP", json!("")),
        // `Nats-Required-Api-Level` above the server's: every API request
        // refused in its own response type, before anything else.
        pubh(
            "level-info",
            "$JS.API.INFO",
            &[("Nats-Required-Api-Level", "99")],
            "",
        ),
        pubh(
            "level-stream-info-missing",
            "$JS.API.STREAM.INFO.NOPE",
            &[("Nats-Required-Api-Level", "99")],
            "",
        ),
        pubh(
            "level-names",
            "$JS.API.STREAM.NAMES",
            &[("Nats-Required-Api-Level", "x")],
            "",
        ),
        pubh(
            "level-consumer-info",
            "$JS.API.CONSUMER.INFO.AP.NOPE",
            &[("Nats-Required-Api-Level", "6")],
            "",
        ),
        pubh(
            "level-met",
            "$JS.API.STREAM.NAMES",
            &[("Nats-Required-Api-Level", "1")],
            "",
        ),
        api("delete-missing", "STREAM.DELETE.S1", json!("")),
        api("info-deleted-stream", "STREAM.INFO.S1", json!({})),
        pubh("pub-after-delete", "s1.a", &[], "x"),
        api("info-end", "INFO", json!("")),
        // ---- known differences that change state come last, so that they
        // cannot shift the sequences (and counts) compared above.
        api(
            "create-mid",
            "STREAM.CREATE.MID",
            json!({"name": "MID", "subjects": ["mid.>"]}),
        ),
        pubh("pub-mid-with-id", "mid.a", &[("Nats-Msg-Id", "x1")], "1"),
        pubh("pub-mid-plain", "mid.b", &[], "2"),
        pubh(
            "pub-expected-last-msgid-after-plain",
            "mid.c",
            &[("Nats-Expected-Last-Msg-Id", "x1")],
            "3",
        ),
    ];
    // A request whose payload is "" is sent empty, not as the JSON string "".
    for step in &mut s {
        if step.payload == "\"\"" {
            step.payload.clear();
        }
    }
    s
}

fn store_dir(side: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-jsdiff-{side}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn connect(server: &ServerProcess) -> async_nats::Client {
    let options = async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_secs(2)));
    common::connect_with(&server.url(), options).await
}

/// Sends one step and records its reply as JSON.
async fn run_step(client: &async_nats::Client, step: &Step) -> Value {
    let mut headers = HeaderMap::new();
    for (name, value) in &step.headers {
        headers.append(*name, value.as_str());
    }
    let request = async_nats::Request::new()
        .payload(step.payload.clone().into())
        .headers(headers);
    let reply = match client.send_request(step.subject.clone(), request).await {
        Ok(reply) => reply,
        Err(error) => return json!({"request_error": format!("{:?}", error.kind())}),
    };
    let mut record = serde_json::Map::new();
    if let Some(status) = reply.status {
        record.insert("status".into(), json!(status.as_u16()));
    }
    if let Some(description) = &reply.description {
        record.insert("description".into(), json!(description));
    }
    if let Some(headers) = &reply.headers {
        let mut names: Vec<_> = headers.iter().map(|(n, v)| (n.to_string(), v)).collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = serde_json::Map::new();
        for (name, values) in names {
            let name = name.as_str();
            let values: Vec<String> = values
                .iter()
                .map(|v| {
                    if name == "Nats-Time-Stamp" {
                        "<time>".to_string()
                    } else {
                        v.to_string()
                    }
                })
                .collect();
            out.insert(name.to_string(), json!(values));
        }
        if !out.is_empty() {
            record.insert("headers".into(), Value::Object(out));
        }
    }
    let body = String::from_utf8_lossy(&reply.payload).into_owned();
    match serde_json::from_str::<Value>(&body) {
        Ok(mut value) if !body.is_empty() => {
            normalize(&mut value);
            record.insert("json".into(), value);
        }
        _ => {
            record.insert("text".into(), json!(body));
        }
    }
    Value::Object(record)
}

/// Replaces values that differ between any two server runs.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if VOLATILE_KEYS.contains(&key.as_str()) && !v.is_null() {
                    *v = json!(format!("<{key}>"));
                } else {
                    normalize(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

async fn run_all(server: &ServerProcess, steps: &[Step]) -> Vec<(Value, Duration)> {
    let client = connect(server).await;
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let started = Instant::now();
        let reply = run_step(&client, step).await;
        out.push((reply, started.elapsed()));
    }
    out
}

/// Whether the "rnats" side is in fact the reference (validating this test).
fn is_self_test() -> bool {
    rnats_tests::server_under_test()
        .file_name()
        .is_some_and(|name| name == "nats-server")
}

fn js_flags(dir: &std::path::Path) -> Vec<String> {
    vec!["-js".into(), "-sd".into(), dir.to_str().unwrap().into()]
}

#[tokio::test]
async fn jetstream_api_replies_match_the_reference() {
    let Some(reference_bin) = rnats_tests::reference_server() else {
        return;
    };
    let started = Instant::now();
    let (dir_a, dir_b) = (store_dir("rnats"), store_dir("ref"));
    let (flags_a, flags_b) = (js_flags(&dir_a), js_flags(&dir_b));
    let flags_a: Vec<&str> = flags_a.iter().map(String::as_str).collect();
    let flags_b: Vec<&str> = flags_b.iter().map(String::as_str).collect();
    let under_test = ServerProcess::start(&flags_a);
    let reference = ServerProcess::start_binary(reference_bin, &flags_b);
    let steps = steps();
    let (ours, theirs) = tokio::join!(run_all(&under_test, &steps), run_all(&reference, &steps));
    let self_test = is_self_test();
    let verbose = std::env::var_os("RNATS_JSDIFF_VERBOSE").is_some();
    let mut failures = Vec::new();
    let mut account_info_patched = Vec::new();
    for ((step, (a, took_a)), (b, took_b)) in steps.iter().zip(&ours).zip(&theirs) {
        if verbose {
            println!(
                "{} {} {} ({took_a:?} / {took_b:?})\n  rnats: {a}\n  ref:   {b}",
                step.label, step.subject, step.payload
            );
        }
        let (mut a, mut b) = (a.clone(), b.clone());
        account_info_patched.extend(patch_known_account_info(&mut a, &mut b));
        if JSON_SYNTAX_ERROR_STEPS.contains(&step.label) {
            for reply in [&mut a, &mut b] {
                let description = &mut reply["json"]["error"]["description"];
                if description
                    .as_str()
                    .is_some_and(|d| d.starts_with("invalid JSON: "))
                {
                    *description = json!("invalid JSON: <syntax error>");
                }
            }
        }
        let known = KNOWN_DIFFERENCES
            .iter()
            .find(|(label, _)| *label == step.label);
        match (a == b, known) {
            (true, None) => {}
            (false, Some(_)) if !self_test => {}
            (true, Some((_, why))) if !self_test => failures.push(format!(
                "{}: listed as a known difference ({why}) but the replies now match; remove it from KNOWN_DIFFERENCES",
                step.label
            )),
            (true, Some(_)) => {}
            (false, _) => failures.push(format!(
                "{}: PUB {} headers {:?} payload {}\n  rnats:     {a}\n  reference: {b}",
                step.label, step.subject, step.headers, step.payload
            )),
        }
    }
    for field in KNOWN_ACCOUNT_INFO_FIELDS {
        if !self_test && !account_info_patched.contains(field) {
            failures.push(format!(
                "account info `{field}` no longer differs: remove it from KNOWN_ACCOUNT_INFO_FIELDS"
            ));
        }
    }
    for (label, _) in KNOWN_DIFFERENCES {
        assert!(
            steps.iter().any(|s| s.label == *label),
            "unknown label {label} in KNOWN_DIFFERENCES"
        );
    }
    drop(under_test);
    drop(reference);
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
    println!(
        "{} steps compared in {:.1} s",
        steps.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
