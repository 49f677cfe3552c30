//! Differential JetStream consumer test: one transcript of consumer API
//! requests, pull requests, acks and bad input, sent over a raw NATS
//! connection to rnats-server and to the reference nats-server at once (both
//! `-js -sd <fresh dir>`), with every frame received compared after
//! normalization.
//!
//! A step subscribes a fresh inbox (`_INBOX.<label>`, its own sid), sends its
//! request with that inbox as the reply subject and records every `MSG`/`HMSG`
//! it gets there: the subject, the reply subject (an ack subject with its
//! timestamp token replaced), the header block byte for byte (status lines and
//! pending headers included) and the payload (JSON normalized: times, server
//! ids; otherwise text). Pull requests collect until their terminal status,
//! their batch, or a deadline (a run of identical `100 Idle Heartbeat`s counts
//! as one: how many fit in a wait is timing). Acks are sent to the ack subject of a delivery
//! recorded by an earlier step. An ephemeral consumer's generated name is
//! captured per side and shown as `<E1>`; steps may use `{E1}` in subjects.
//!
//! Known differences are listed in [`KNOWN_DIFFERENCES`]: each must still
//! differ (the test fails once rnats is fixed, so the entry is removed).
//! [`PENDING_CONFIG_VALIDATION`] lists create-time errors that wait for the
//! consumer config validation being finished in parallel: they may differ or
//! match, and are printed either way.
//!
//! Without the reference the test prints a NOTICE and passes (unless
//! `RNATS_REQUIRE_REFERENCE=1`). `RNATS_TEST_SERVER_BIN=nats-server` makes
//! the "rnats" side a second reference (validating the transcript and its
//! normalization). `RNATS_JSDIFF_VERBOSE=1` prints every normalized reply.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rnats_tests::ServerProcess;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// When a pull request's replies are complete.
#[derive(Clone, Copy)]
enum Until {
    /// A status other than `100` (heartbeat) arrived, or `n` messages did.
    Terminal(usize),
    /// Whatever arrives within the wait.
    Quiet,
}

enum Action {
    /// A request: the first reply on the step's inbox.
    Request {
        subject: String,
        headers: Vec<(String, String)>,
        payload: String,
    },
    /// A message that may or may not be answered: whatever arrives on the
    /// step's inbox within `wait`.
    Publish {
        subject: String,
        payload: String,
        wait: Duration,
    },
    /// A pull request (or several, each with its own inbox), collected
    /// until `until` or `wait`.
    Pull {
        subject: String,
        payloads: Vec<String>,
        until: Until,
        wait: Duration,
    },
    /// An ack on the ack subject of delivery `index` of step `pull`; with a
    /// reply subject (AckSync) when `sync`, collected for `wait`.
    Ack {
        pull: &'static str,
        index: usize,
        body: String,
        sync: bool,
    },
}

struct Step {
    /// Unique label: the inbox name, and the name in [`KNOWN_DIFFERENCES`].
    label: &'static str,
    action: Action,
    /// Where to keep the reply's `name` (an ephemeral consumer's).
    capture: Option<&'static str>,
}

/// Steps whose replies differ today, with why. Each must still differ.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// Create-time errors that depend on consumer config validation work in
/// progress: allowed to differ, reported either way. Empty since
/// consumer_config.rs landed (every create step matched then).
const PENDING_CONFIG_VALIDATION: &[&str] = &[];

/// Steps whose reply carries a JSON syntax error: rnats words it with
/// serde's text, the reference with Go's (a documented difference), so the
/// text after `invalid JSON: ` (API replies) or `Bad Request - ` (pull
/// status lines) is not compared.
const JSON_SYNTAX_ERROR_STEPS: &[&str] = &["create-malformed-json", "pull-bad-json"];

/// Keys whose values are times or identities of one server run.
const VOLATILE_KEYS: &[&str] = &[
    "created",
    "ts",
    "last_active",
    "first_ts",
    "last_ts",
    "time",
    "leader",
    "server_id",
    "server_name",
    // A pin id is random on both sides; whether there is one still shows.
    "pinned_client_id",
    "pinned_ts",
];

const SECOND: u64 = 1_000_000_000;
const MILLISECOND: u64 = 1_000_000;

fn request(label: &'static str, subject: &str, payload: impl ToString) -> Step {
    Step {
        label,
        action: Action::Request {
            subject: subject.to_string(),
            headers: Vec::new(),
            payload: payload.to_string(),
        },
        capture: None,
    }
}

fn api(label: &'static str, api: &str, payload: Value) -> Step {
    let payload = if payload == json!("") {
        String::new()
    } else {
        payload.to_string()
    };
    request(label, &format!("$JS.API.{api}"), payload)
}

/// A consumer create on `subject` (after `$JS.API.CONSUMER.`) with `body`.
fn create(label: &'static str, subject: &str, body: Value) -> Step {
    api(label, &format!("CONSUMER.{subject}"), body)
}

fn publish(label: &'static str, subject: &str, headers: &[(&str, &str)], payload: &str) -> Step {
    Step {
        label,
        action: Action::Request {
            subject: subject.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            payload: payload.to_string(),
        },
        capture: None,
    }
}

/// A message that may or may not be answered, collected for 300 ms.
fn fire(label: &'static str, subject: &str, payload: &str) -> Step {
    Step {
        label,
        action: Action::Publish {
            subject: subject.to_string(),
            payload: payload.to_string(),
            wait: Duration::from_millis(300),
        },
        capture: None,
    }
}

fn pull_many(
    label: &'static str,
    consumer: &str,
    payloads: &[String],
    until: Until,
    wait_ms: u64,
) -> Step {
    Step {
        label,
        action: Action::Pull {
            subject: format!("$JS.API.CONSUMER.MSG.NEXT.ORDERS.{consumer}"),
            payloads: payloads.to_vec(),
            until,
            wait: Duration::from_millis(wait_ms),
        },
        capture: None,
    }
}

fn pull(label: &'static str, consumer: &str, body: &str, until: Until, wait_ms: u64) -> Step {
    pull_many(label, consumer, &[body.to_string()], until, wait_ms)
}

fn ack(label: &'static str, pull: &'static str, index: usize, body: &str, sync: bool) -> Step {
    Step {
        label,
        action: Action::Ack {
            pull,
            index,
            body: body.to_string(),
            sync,
        },
        capture: None,
    }
}

fn info(label: &'static str, consumer: &str) -> Step {
    api(
        label,
        &format!("CONSUMER.INFO.ORDERS.{consumer}"),
        json!(""),
    )
}

fn config(name: &str, extra: Value) -> Value {
    // A named consumer that is not durable goes away after 5 s without
    // activity by default; a minute keeps the transcript free of timing.
    let mut config =
        json!({"name": name, "ack_policy": "explicit", "inactive_threshold": 60 * SECOND});
    for (key, value) in extra.as_object().expect("an object") {
        config[key] = value.clone();
    }
    json!({"stream_name": "ORDERS", "config": config})
}

fn steps() -> Vec<Step> {
    let terminal = Until::Terminal;
    let mut s = vec![
        api(
            "stream-create",
            "STREAM.CREATE.ORDERS",
            json!({"name": "ORDERS", "subjects": ["orders.>"]}),
        ),
        publish("pub-1", "orders.a", &[], "one"),
        publish("pub-2", "orders.b", &[], "two"),
        publish("pub-3", "orders.a", &[("X-Trace", "t3")], "three"),
        publish("pub-4", "orders.c", &[], "four"),
        publish("pub-5", "orders.b", &[], "five"),
        // ---- creates in every subject form
        create(
            "durable-create",
            "DURABLE.CREATE.ORDERS.D1",
            json!({"stream_name": "ORDERS", "config": {"durable_name": "D1", "ack_policy": "explicit"}}),
        ),
        create(
            "create-named",
            "CREATE.ORDERS.C1",
            config("C1", json!({"max_waiting": 3, "ack_wait": 30 * SECOND})),
        ),
        create(
            "create-named-again",
            "CREATE.ORDERS.C1",
            config("C1", json!({"max_waiting": 3, "ack_wait": 30 * SECOND})),
        ),
        create(
            "create-named-filter",
            "CREATE.ORDERS.CF.orders.a",
            config("CF", json!({"filter_subject": "orders.a"})),
        ),
        create(
            "create-named-filter-wildcard",
            "CREATE.ORDERS.CW.orders.*",
            config("CW", json!({"filter_subject": "orders.*"})),
        ),
        create(
            "create-filter-subject-mismatch",
            "CREATE.ORDERS.CX.orders.b",
            config("CX", json!({"filter_subject": "orders.a"})),
        ),
        create(
            "create-filter-in-subject-only",
            "CREATE.ORDERS.CY.orders.b",
            config("CY", json!({})),
        ),
        create(
            "create-ephemeral",
            "CREATE.ORDERS",
            json!({"stream_name": "ORDERS", "config": {"ack_policy": "explicit", "inactive_threshold": 60 * SECOND}}),
        ),
        // ---- actions
        create("action-create-existing-same", "CREATE.ORDERS.C1", {
            let mut body = config("C1", json!({"max_waiting": 3, "ack_wait": 30 * SECOND}));
            body["action"] = json!("create");
            body
        }),
        create("action-create-existing-different", "CREATE.ORDERS.C1", {
            let mut body = config(
                "C1",
                json!({"max_waiting": 3, "ack_wait": 30 * SECOND, "description": "changed"}),
            );
            body["action"] = json!("create");
            body
        }),
        create("action-update-existing", "CREATE.ORDERS.C1", {
            let mut body = config(
                "C1",
                json!({"max_waiting": 3, "ack_wait": 30 * SECOND, "description": "updated"}),
            );
            body["action"] = json!("update");
            body
        }),
        create(
            "create-without-defaults",
            "CREATE.ORDERS.C8",
            json!({"stream_name": "ORDERS", "config": {"name": "C8", "ack_policy": "explicit"}}),
        ),
        create(
            "action-create-same-body-defaults",
            "CREATE.ORDERS.C8",
            json!({"stream_name": "ORDERS", "config": {"name": "C8", "ack_policy": "explicit"}, "action": "create"}),
        ),
        api("cleanup-c8", "CONSUMER.DELETE.ORDERS.C8", json!("")),
        create("action-update-missing", "CREATE.ORDERS.C9", {
            let mut body = config("C9", json!({}));
            body["action"] = json!("update");
            body
        }),
        create("action-create-missing", "CREATE.ORDERS.C2", {
            let mut body = config("C2", json!({}));
            body["action"] = json!("create");
            body
        }),
        create("action-bogus", "CREATE.ORDERS.C3", {
            let mut body = config("C3", json!({}));
            body["action"] = json!("bogus");
            body
        }),
        // ---- create errors
        create("create-unknown-stream", "CREATE.NOPE.X", {
            let mut body = config("X", json!({}));
            body["stream_name"] = json!("NOPE");
            body
        }),
        create(
            "create-name-mismatch",
            "CREATE.ORDERS.A1",
            config("B1", json!({})),
        ),
        create(
            "durable-create-name-mismatch",
            "DURABLE.CREATE.ORDERS.D2",
            json!({"stream_name": "ORDERS", "config": {"durable_name": "D3", "ack_policy": "explicit"}}),
        ),
        create("create-stream-name-mismatch", "CREATE.ORDERS.C4", {
            let mut body = config("C4", json!({}));
            body["stream_name"] = json!("OTHER");
            body
        }),
        request(
            "create-malformed-json",
            "$JS.API.CONSUMER.CREATE.ORDERS.C5",
            "{",
        ),
        request(
            "create-empty-payload",
            "$JS.API.CONSUMER.CREATE.ORDERS.C5",
            "",
        ),
        create(
            "create-for-update",
            "CREATE.ORDERS.U1",
            config("U1", json!({})),
        ),
        create(
            "update-immutable-ack-policy",
            "CREATE.ORDERS.U1",
            config("U1", json!({"ack_policy": "none"})),
        ),
        api("cleanup-u1", "CONSUMER.DELETE.ORDERS.U1", json!("")),
        create(
            "create-filter-outside-stream",
            "CREATE.ORDERS.C6",
            config("C6", json!({"filter_subject": "zzz"})),
        ),
        create(
            "durable-create-no-subject-name",
            "DURABLE.CREATE.ORDERS",
            json!({"stream_name": "ORDERS", "config": {"durable_name": "D4"}}),
        ),
        // Consumers only one side created above (see PENDING_CONFIG_VALIDATION),
        // deleted so that NAMES and LIST compare the rest.
        api("cleanup-cx", "CONSUMER.DELETE.ORDERS.CX", json!("")),
        api("cleanup-cy", "CONSUMER.DELETE.ORDERS.CY", json!("")),
        api("cleanup-a1", "CONSUMER.DELETE.ORDERS.A1", json!("")),
        api("cleanup-b1", "CONSUMER.DELETE.ORDERS.B1", json!("")),
        api("cleanup-c4", "CONSUMER.DELETE.ORDERS.C4", json!("")),
        api("cleanup-c5", "CONSUMER.DELETE.ORDERS.C5", json!("")),
        // ---- consumers for the pulls below
        create(
            "create-max-bytes-consumer",
            "CREATE.ORDERS.MB",
            config("MB", json!({})),
        ),
        create(
            "create-nonsense-consumer",
            "CREATE.ORDERS.NS",
            config("NS", json!({"filter_subject": "orders.none"})),
        ),
        create(
            "create-flood-consumer",
            "CREATE.ORDERS.FL",
            config(
                "FL",
                json!({"filter_subject": "orders.none", "max_waiting": 3}),
            ),
        ),
        // ---- the ephemeral: pull, ack, info, delete (before NAMES/LIST,
        // whose order would depend on its random name)
        pull(
            "ephemeral-pull",
            "{E1}",
            r#"{"batch":1}"#,
            terminal(1),
            2000,
        ),
        ack("ephemeral-ack", "ephemeral-pull", 0, "+ACK", true),
        api("ephemeral-info", "CONSUMER.INFO.ORDERS.{E1}", json!("")),
        api("ephemeral-delete", "CONSUMER.DELETE.ORDERS.{E1}", json!("")),
        // ---- info, names, list
        info("info-c1", "C1"),
        info("info-unknown-consumer", "NOPE"),
        api("info-unknown-stream", "CONSUMER.INFO.NOPE.C1", json!("")),
        api("names", "CONSUMER.NAMES.ORDERS", json!("")),
        api(
            "names-offset",
            "CONSUMER.NAMES.ORDERS",
            json!({"offset": 2}),
        ),
        api(
            "names-offset-past-end",
            "CONSUMER.NAMES.ORDERS",
            json!({"offset": 50}),
        ),
        api("names-unknown-stream", "CONSUMER.NAMES.NOPE", json!("")),
        api("list", "CONSUMER.LIST.ORDERS", json!({})),
        api("list-offset", "CONSUMER.LIST.ORDERS", json!({"offset": 3})),
        api("list-unknown-stream", "CONSUMER.LIST.NOPE", json!({})),
        // ---- pulls and acks on C1 (explicit, max_waiting 3)
        pull("pull-batch-2", "C1", r#"{"batch":2}"#, terminal(2), 2000),
        ack("ack-first", "pull-batch-2", 0, "+ACK", false),
        ack("ack-sync-second", "pull-batch-2", 1, "+ACK", true),
        info("info-after-acks", "C1"),
        pull("pull-bare-number", "C1", "1", terminal(1), 2000),
        ack("nak-third", "pull-bare-number", 0, "-NAK", true),
        pull(
            "pull-redelivered",
            "C1",
            r#"{"batch":1}"#,
            terminal(1),
            2000,
        ),
        ack("wpi-third", "pull-redelivered", 0, "+WPI", true),
        ack("term-third", "pull-redelivered", 0, "+TERM bad order", true),
        info("info-after-term", "C1"),
        pull(
            "pull-no-wait-partial",
            "C1",
            r#"{"batch":5,"no_wait":true}"#,
            terminal(5),
            1000,
        ),
        pull(
            "pull-no-wait-empty",
            "C1",
            r#"{"batch":1,"no_wait":true}"#,
            terminal(1),
            1000,
        ),
        pull(
            "pull-expires",
            "C1",
            &format!(r#"{{"batch":3,"expires":{}}}"#, 300 * MILLISECOND),
            terminal(3),
            2000,
        ),
        pull(
            "pull-heartbeat",
            "C1",
            &format!(
                r#"{{"batch":1,"expires":{},"idle_heartbeat":{}}}"#,
                SECOND,
                200 * MILLISECOND
            ),
            terminal(1),
            2500,
        ),
        pull(
            "pull-heartbeat-over-half-expires",
            "C1",
            &format!(
                r#"{{"batch":1,"expires":{},"idle_heartbeat":{}}}"#,
                SECOND,
                800 * MILLISECOND
            ),
            terminal(1),
            1500,
        ),
        publish("pub-6", "orders.d", &[], "six"),
        publish("pub-7", "orders.d", &[("Nats-Msg-Id", "m7")], "seven"),
        pull(
            "pull-six-and-seven",
            "C1",
            r#"{"batch":5,"no_wait":true}"#,
            terminal(5),
            1500,
        ),
        ack(
            "nak-sixth-with-delay",
            "pull-six-and-seven",
            0,
            "-NAK 10ms",
            true,
        ),
        pull(
            "pull-negative-batch",
            "C1",
            r#"{"batch":-1}"#,
            terminal(1),
            1000,
        ),
        info("info-after-pulls", "C1"),
        // ---- bad acks (on C1's deliveries and made-up subjects)
        ack("ack-malformed-body", "pull-six-and-seven", 1, "+XYZ", true),
        ack("ack-empty-body", "pull-six-and-seven", 1, "", true),
        ack("ack-again", "pull-six-and-seven", 1, "+ACK", true),
        fire("ack-short-subject", "$JS.ACK.ORDERS.C1.1.2", "+ACK"),
        fire("ack-not-numbers", "$JS.ACK.ORDERS.C1.a.b.c.d.e", "+ACK"),
        fire(
            "ack-unknown-consumer",
            "$JS.ACK.ORDERS.NOPE.1.1.1.1.0",
            "+ACK",
        ),
        fire("ack-unknown-stream", "$JS.ACK.NOPE.C1.1.1.1.1.0", "+ACK"),
        fire(
            "ack-sequence-never-delivered",
            "$JS.ACK.ORDERS.C1.1.999.999.1.0",
            "+ACK",
        ),
        fire(
            "ack-long-form",
            "$JS.ACK.HUB.ACCHASH.ORDERS.C1.1.7.9.1.0.RANDOM",
            "+ACK",
        ),
        // The long form with this server's domain (`_`: none) and the
        // hash of account `$G`, for a sequence never delivered: taken in
        // silently by both.
        fire(
            "ack-long-form-own-hash",
            "$JS.ACK._.szMpdrwD.ORDERS.C1.1.999.999.1.0",
            "+ACK",
        ),
        info("info-after-bad-acks", "C1"),
        // ---- max_bytes on MB (7 messages pending)
        pull(
            "pull-max-bytes-too-small",
            "MB",
            r#"{"batch":10,"max_bytes":5}"#,
            terminal(10),
            1500,
        ),
        info("info-max-bytes-too-small", "MB"),
        pull(
            "pull-max-bytes",
            "MB",
            r#"{"batch":10,"max_bytes":120,"no_wait":true}"#,
            terminal(10),
            1500,
        ),
        info("info-max-bytes", "MB"),
        // ---- max_bytes on a consumer without acks: the message too big
        // for the request is still there for the next one
        create(
            "create-ack-none-consumer",
            "CREATE.ORDERS.AN",
            config("AN", json!({"ack_policy": "none"})),
        ),
        pull(
            "pull-ack-none-max-bytes-too-small",
            "AN",
            r#"{"batch":1,"max_bytes":5}"#,
            terminal(1),
            1500,
        ),
        pull(
            "pull-ack-none-after-max-bytes",
            "AN",
            r#"{"batch":1,"no_wait":true}"#,
            terminal(1),
            1500,
        ),
        info("info-ack-none", "AN"),
        // A consumer without acks has no ack subscription at all.
        fire("ack-on-ack-none", "$JS.ACK.ORDERS.AN.1.1.1.1.0", "+ACK"),
        // A deadline already past: queued, then timed out at once, also
        // with messages to deliver.
        create(
            "create-expired-consumer",
            "CREATE.ORDERS.NE",
            config("NE", json!({})),
        ),
        pull(
            "pull-negative-expires-with-messages",
            "NE",
            r#"{"batch":2,"expires":-1}"#,
            terminal(2),
            1000,
        ),
        info("info-after-negative-expires", "NE"),
        // A no_wait request while those waiting already asked for more
        // than is pending (the one message allowed out is unacked).
        create(
            "create-requests-pending-consumer",
            "CREATE.ORDERS.RP",
            config("RP", json!({"max_ack_pending": 1})),
        ),
        pull(
            "pull-requests-pending-first",
            "RP",
            r#"{"batch":1,"no_wait":true}"#,
            terminal(1),
            1000,
        ),
        pull_many(
            "pull-requests-pending",
            "RP",
            &[
                format!(r#"{{"batch":100,"expires":{}}}"#, 300 * MILLISECOND),
                r#"{"batch":1,"no_wait":true}"#.to_string(),
            ],
            terminal(1),
            1500,
        ),
        // ---- nonsense pull requests on NS (nothing to deliver)
        pull("pull-zero-batch", "NS", r#"{"batch":0}"#, terminal(1), 500),
        info("info-after-zero-batch", "NS"),
        // Its timeout shows the batch asked for.
        pull(
            "pull-zero-batch-expires",
            "NS",
            &format!(r#"{{"batch":0,"expires":{}}}"#, 100 * MILLISECOND),
            terminal(1),
            1000,
        ),
        pull(
            "pull-huge-expires-no-wait",
            "NS",
            r#"{"batch":1,"expires":9223372036854775807,"no_wait":true}"#,
            terminal(1),
            500,
        ),
        info("info-after-huge-expires", "NS"),
        pull(
            "pull-negative-expires",
            "NS",
            r#"{"batch":1,"expires":-5,"no_wait":true}"#,
            terminal(1),
            500,
        ),
        pull("pull-non-json", "NS", "hello", terminal(1), 500),
        info("info-after-non-json", "NS"),
        pull("pull-bad-json", "NS", r#"{"batch":"#, terminal(1), 500),
        pull(
            "pull-unknown-field",
            "NS",
            r#"{"batch":1,"no_wait":true,"bogus":1}"#,
            terminal(1),
            500,
        ),
        pull(
            "pull-negative-max-bytes",
            "NS",
            r#"{"batch":1,"max_bytes":-1,"no_wait":true}"#,
            terminal(1),
            500,
        ),
        info("info-after-nonsense", "NS"),
        pull(
            "pull-unknown-consumer",
            "NOPE",
            r#"{"batch":1}"#,
            Until::Quiet,
            300,
        ),
        // ---- a flood beyond max_waiting (3) on FL (nothing to deliver)
        pull_many(
            "pull-flood",
            "FL",
            &vec![format!(r#"{{"batch":1,"expires":{}}}"#, 400 * MILLISECOND); 6],
            terminal(1),
            2000,
        ),
        info("info-after-flood", "FL"),
        // ---- the filtered and wildcard consumers
        pull(
            "pull-filtered",
            "CF",
            r#"{"batch":5,"no_wait":true}"#,
            terminal(5),
            1000,
        ),
        info("info-filtered", "CF"),
        pull(
            "pull-wildcard-filter",
            "CW",
            r#"{"batch":2}"#,
            terminal(2),
            1000,
        ),
        info("info-wildcard-filter", "CW"),
        // ---- priority groups: the overflow policy on PO
        create(
            "create-overflow",
            "CREATE.ORDERS.PO",
            config(
                "PO",
                json!({"priority_policy": "overflow", "priority_groups": ["G"]}),
            ),
        ),
        info("info-overflow", "PO"),
        pull(
            "pull-priority-group-missing",
            "PO",
            r#"{"batch":1}"#,
            terminal(1),
            500,
        ),
        pull(
            "pull-priority-group-invalid",
            "PO",
            r#"{"batch":1,"group":"H"}"#,
            terminal(1),
            500,
        ),
        pull(
            "pull-priority-pin-id-on-overflow",
            "PO",
            r#"{"batch":1,"group":"G","id":"x"}"#,
            terminal(1),
            500,
        ),
        pull(
            "pull-priority-out-of-range",
            "PO",
            r#"{"batch":1,"group":"G","priority":10}"#,
            terminal(1),
            500,
        ),
        pull(
            "pull-min-pending-not-overflow",
            "NS",
            r#"{"batch":1,"min_pending":1}"#,
            terminal(1),
            500,
        ),
        pull(
            "pull-overflow-min-pending-unmet",
            "PO",
            &format!(
                r#"{{"batch":1,"group":"G","min_pending":100,"expires":{}}}"#,
                300 * MILLISECOND
            ),
            terminal(1),
            1500,
        ),
        pull(
            "pull-overflow-min-pending",
            "PO",
            &format!(
                r#"{{"batch":10,"group":"G","min_pending":5,"expires":{}}}"#,
                400 * MILLISECOND
            ),
            terminal(10),
            1500,
        ),
        pull(
            "pull-overflow-min-ack-pending",
            "PO",
            &format!(
                r#"{{"batch":2,"group":"G","min_ack_pending":3,"expires":{}}}"#,
                400 * MILLISECOND
            ),
            terminal(2),
            1500,
        ),
        api(
            "unpin-overflow",
            "CONSUMER.UNPIN.ORDERS.PO",
            json!({"group": "G"}),
        ),
        api(
            "unpin-unknown-group",
            "CONSUMER.UNPIN.ORDERS.PO",
            json!({"group": "H"}),
        ),
        info("info-overflow-after", "PO"),
        api("delete-overflow", "CONSUMER.DELETE.ORDERS.PO", json!("")),
        // ---- priority groups: the pinned_client policy on PC
        create(
            "create-pinned",
            "CREATE.ORDERS.PC",
            config(
                "PC",
                json!({"priority_policy": "pinned_client", "priority_groups": ["G"]}),
            ),
        ),
        pull(
            "pull-pinned-first",
            "PC",
            r#"{"batch":1,"group":"G"}"#,
            terminal(1),
            1000,
        ),
        info("info-pinned", "PC"),
        pull(
            "pull-pinned-stale-id",
            "PC",
            r#"{"batch":1,"group":"G","id":"stale"}"#,
            terminal(1),
            500,
        ),
        pull(
            "pull-pinned-other-client",
            "PC",
            &format!(
                r#"{{"batch":1,"group":"G","expires":{}}}"#,
                300 * MILLISECOND
            ),
            terminal(1),
            1500,
        ),
        api(
            "unpin-pinned",
            "CONSUMER.UNPIN.ORDERS.PC",
            json!({"group": "G"}),
        ),
        info("info-unpinned", "PC"),
        pull(
            "pull-unpinned-stale-id",
            "PC",
            &format!(
                r#"{{"batch":1,"group":"G","id":"stale","expires":{}}}"#,
                300 * MILLISECOND
            ),
            terminal(1),
            1500,
        ),
        pull(
            "pull-pinned-anew",
            "PC",
            r#"{"batch":2,"group":"G"}"#,
            terminal(2),
            1000,
        ),
        info("info-pinned-anew", "PC"),
        api("delete-pinned", "CONSUMER.DELETE.ORDERS.PC", json!("")),
        // ---- the durable
        pull("pull-durable", "D1", r#"{"batch":7}"#, terminal(7), 1500),
        ack("ack-durable-last", "pull-durable", 6, "+ACK", true),
        info("info-durable", "D1"),
        // ---- CONSUMER.RESET: answered by the consumer itself (no reply
        // for one that does not exist), outside the API counts
        create("create-reset", "CREATE.ORDERS.RS", config("RS", json!({}))),
        pull("reset-pull", "RS", r#"{"batch":4}"#, terminal(4), 1500),
        ack("reset-ack-first", "reset-pull", 0, "+ACK", true),
        ack("reset-ack-third", "reset-pull", 2, "+ACK", true),
        api("reset-to-floor", "CONSUMER.RESET.ORDERS.RS", json!("")),
        pull(
            "reset-pull-again",
            "RS",
            r#"{"batch":2}"#,
            terminal(2),
            1500,
        ),
        info("reset-info-after-pull", "RS"),
        api(
            "reset-to-seq",
            "CONSUMER.RESET.ORDERS.RS",
            json!({"seq": 4}),
        ),
        api("reset-zero", "CONSUMER.RESET.ORDERS.RS", json!({"seq": 0})),
        api(
            "reset-past-end",
            "CONSUMER.RESET.ORDERS.RS",
            json!({"seq": 100}),
        ),
        api("reset-null", "CONSUMER.RESET.ORDERS.RS", json!(null)),
        request(
            "reset-unknown-field",
            "$JS.API.CONSUMER.RESET.ORDERS.RS",
            r#"{"seq":2,"bogus":1}"#,
        ),
        request(
            "reset-negative",
            "$JS.API.CONSUMER.RESET.ORDERS.RS",
            r#"{"seq":-1}"#,
        ),
        request(
            "reset-fraction",
            "$JS.API.CONSUMER.RESET.ORDERS.RS",
            r#"{"seq":1.5}"#,
        ),
        request(
            "reset-string",
            "$JS.API.CONSUMER.RESET.ORDERS.RS",
            r#"{"seq":"1"}"#,
        ),
        request("reset-array", "$JS.API.CONSUMER.RESET.ORDERS.RS", "[]"),
        request("reset-blank", "$JS.API.CONSUMER.RESET.ORDERS.RS", " "),
        request(
            "reset-trailing",
            "$JS.API.CONSUMER.RESET.ORDERS.RS",
            r#"{"seq":2} x"#,
        ),
        publish(
            "reset-api-level-too-high",
            "$JS.API.CONSUMER.RESET.ORDERS.RS",
            &[("Nats-Required-Api-Level", "9")],
            "",
        ),
        publish(
            "reset-api-level-bad",
            "$JS.API.CONSUMER.RESET.ORDERS.RS",
            &[("Nats-Required-Api-Level", "abc")],
            "",
        ),
        publish(
            "reset-api-level-met",
            "$JS.API.CONSUMER.RESET.ORDERS.RS",
            &[("Nats-Required-Api-Level", "5")],
            r#"{"seq":3}"#,
        ),
        fire(
            "reset-unknown-consumer",
            "$JS.API.CONSUMER.RESET.ORDERS.NOPE",
            "",
        ),
        fire("reset-unknown-stream", "$JS.API.CONSUMER.RESET.NOPE.RS", ""),
        create(
            "create-reset-by-seq",
            "CREATE.ORDERS.RQ",
            config(
                "RQ",
                json!({"deliver_policy": "by_start_sequence", "opt_start_seq": 3}),
            ),
        ),
        api(
            "reset-below-start-seq",
            "CONSUMER.RESET.ORDERS.RQ",
            json!({"seq": 2}),
        ),
        api(
            "reset-above-start-seq",
            "CONSUMER.RESET.ORDERS.RQ",
            json!({"seq": 4}),
        ),
        create(
            "create-reset-last",
            "CREATE.ORDERS.RL",
            config("RL", json!({"deliver_policy": "last"})),
        ),
        api(
            "reset-last-to-seq",
            "CONSUMER.RESET.ORDERS.RL",
            json!({"seq": 2}),
        ),
        api("reset-last-to-floor", "CONSUMER.RESET.ORDERS.RL", json!("")),
        api("account-info-after-reset", "INFO", json!("")),
        api("delete-reset", "CONSUMER.DELETE.ORDERS.RS", json!("")),
        api(
            "delete-reset-by-seq",
            "CONSUMER.DELETE.ORDERS.RQ",
            json!(""),
        ),
        api("delete-reset-last", "CONSUMER.DELETE.ORDERS.RL", json!("")),
        // ---- delete
        api("delete-c1", "CONSUMER.DELETE.ORDERS.C1", json!("")),
        api("delete-c1-again", "CONSUMER.DELETE.ORDERS.C1", json!("")),
        api(
            "delete-unknown-stream",
            "CONSUMER.DELETE.NOPE.C1",
            json!(""),
        ),
        info("info-deleted", "C1"),
        fire(
            "ack-deleted-consumer",
            "$JS.ACK.ORDERS.C1.1.1.1.1.0",
            "+ACK",
        ),
        api("names-after-delete", "CONSUMER.NAMES.ORDERS", json!("")),
        api("stream-info-end", "STREAM.INFO.ORDERS", json!("")),
    ];
    s[13].capture = Some("E1");
    assert_eq!(s[13].label, "create-ephemeral");
    s
}

/// A `MSG` or `HMSG` frame.
struct Frame {
    subject: String,
    sid: u64,
    reply: Option<String>,
    headers: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// A bare NATS connection: writes protocol bytes, reads frames, answers PINGs.
struct Wire {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// `-ERR` lines received, kept for the step that was running.
    errors: Vec<String>,
}

impl Wire {
    async fn connect(addr: &str) -> Wire {
        let raw = common::RawConnection::connect_quiet(
            addr,
            r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}"#,
        )
        .await;
        Wire {
            stream: raw.into_stream(),
            buffer: Vec::new(),
            errors: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        common::within("a socket write", self.stream.write_all(bytes))
            .await
            .expect("socket write");
    }

    /// The next frame before `deadline`, or None.
    async fn next_frame(&mut self, deadline: tokio::time::Instant) -> Option<Frame> {
        loop {
            if let Some(line_end) = find(&self.buffer, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..line_end]).into_owned();
                let words: Vec<&str> = line.split(' ').collect();
                match words[0] {
                    "MSG" | "HMSG" => {
                        let headers = words[0] == "HMSG";
                        let numbers = if headers { 2 } else { 1 };
                        let sizes: Vec<usize> = words[words.len() - numbers..]
                            .iter()
                            .map(|w| w.parse().expect("a size"))
                            .collect();
                        let total = *sizes.last().unwrap();
                        let start = line_end + 2;
                        if self.buffer.len() >= start + total + 2 {
                            let body = self.buffer[start..start + total].to_vec();
                            let rest = self.buffer.split_off(start + total + 2);
                            self.buffer = rest;
                            let fixed = words.len() - numbers;
                            let (header_block, payload) = if headers {
                                (Some(body[..sizes[0]].to_vec()), body[sizes[0]..].to_vec())
                            } else {
                                (None, body)
                            };
                            return Some(Frame {
                                subject: words[1].to_string(),
                                sid: words[2].parse().expect("a sid"),
                                reply: (fixed == 4).then(|| words[3].to_string()),
                                headers: header_block,
                                payload,
                            });
                        }
                    }
                    "PING" => {
                        self.buffer.drain(..line_end + 2);
                        self.send(b"PONG\r\n").await;
                        continue;
                    }
                    _ => {
                        if line.starts_with("-ERR") {
                            self.errors.push(line.clone());
                        }
                        self.buffer.drain(..line_end + 2);
                        continue;
                    }
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => panic!("the server closed the connection"),
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `PUB`/`HPUB` frame.
fn pub_frame(
    subject: &str,
    reply: Option<&str>,
    headers: &[(String, String)],
    payload: &str,
) -> Vec<u8> {
    let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
    if headers.is_empty() {
        let mut frame = format!("PUB {subject}{reply} {}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload.as_bytes());
        frame.extend_from_slice(b"\r\n");
        return frame;
    }
    let mut block = String::from("NATS/1.0\r\n");
    for (name, value) in headers {
        block.push_str(&format!("{name}: {value}\r\n"));
    }
    block.push_str("\r\n");
    let total = block.len() + payload.len();
    let mut frame = format!("HPUB {subject}{reply} {} {total}\r\n", block.len()).into_bytes();
    frame.extend_from_slice(block.as_bytes());
    frame.extend_from_slice(payload.as_bytes());
    frame.extend_from_slice(b"\r\n");
    frame
}

/// One server's side of the transcript.
struct Side {
    wire: Wire,
    /// Captured names: `E1` → the ephemeral's generated name.
    vars: BTreeMap<&'static str, String>,
    /// The raw ack subjects each pull step received, in order.
    deliveries: BTreeMap<&'static str, Vec<String>>,
    next_sid: u64,
}

impl Side {
    fn fill(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (name, value) in &self.vars {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    /// Subscribes a fresh inbox; returns it and its sid.
    async fn inbox(&mut self, label: &str, index: usize) -> (String, u64) {
        self.next_sid += 1;
        let inbox = format!("_INBOX.{label}.{index}");
        let sid = self.next_sid;
        self.wire
            .send(format!("SUB {inbox} {sid}\r\n").as_bytes())
            .await;
        (inbox, sid)
    }

    /// Frames for `sids` until `done` says so or `wait` passes.
    async fn collect(
        &mut self,
        sids: &[u64],
        wait: Duration,
        done: impl Fn(&BTreeMap<u64, Vec<Frame>>) -> bool,
    ) -> BTreeMap<u64, Vec<Frame>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut frames: BTreeMap<u64, Vec<Frame>> = sids.iter().map(|&s| (s, Vec::new())).collect();
        while !done(&frames) {
            let Some(frame) = self.wire.next_frame(deadline).await else {
                break;
            };
            if let Some(list) = frames.get_mut(&frame.sid) {
                list.push(frame);
            }
        }
        for sid in sids {
            self.wire.send(format!("UNSUB {sid}\r\n").as_bytes()).await;
        }
        frames
    }

    async fn run(&mut self, step: &Step) -> Value {
        let reply = match &step.action {
            Action::Request {
                subject,
                headers,
                payload,
            } => {
                let (inbox, sid) = self.inbox(step.label, 0).await;
                let frame = pub_frame(
                    &self.fill(subject),
                    Some(&inbox),
                    headers,
                    &self.fill(payload),
                );
                self.wire.send(&frame).await;
                let frames = self
                    .collect(&[sid], Duration::from_secs(3), |f| !f[&sid].is_empty())
                    .await;
                self.record(step, frames)
            }
            Action::Publish {
                subject,
                payload,
                wait,
            } => {
                let (inbox, sid) = self.inbox(step.label, 0).await;
                let frame = pub_frame(&self.fill(subject), Some(&inbox), &[], payload);
                self.wire.send(&frame).await;
                let frames = self.collect(&[sid], *wait, |_| false).await;
                self.record(step, frames)
            }
            Action::Pull {
                subject,
                payloads,
                until,
                wait,
            } => {
                let mut sids = Vec::new();
                let subject = self.fill(subject);
                for (index, payload) in payloads.iter().enumerate() {
                    let (inbox, sid) = self.inbox(step.label, index).await;
                    self.wire
                        .send(&pub_frame(&subject, Some(&inbox), &[], payload))
                        .await;
                    sids.push(sid);
                }
                let until = *until;
                let frames = self
                    .collect(&sids, *wait, move |frames| {
                        frames.values().all(|list| finished(list, until))
                    })
                    .await;
                let acks = frames
                    .values()
                    .flatten()
                    .filter_map(|f| f.reply.clone())
                    .collect();
                self.deliveries.insert(step.label, acks);
                self.record(step, frames)
            }
            Action::Ack {
                pull,
                index,
                body,
                sync,
            } => {
                let subject = self
                    .deliveries
                    .get(pull)
                    .and_then(|acks| acks.get(*index))
                    .cloned();
                let Some(subject) = subject else {
                    return json!({"missing delivery": format!("{pull}[{index}]")});
                };
                if *sync {
                    let (inbox, sid) = self.inbox(step.label, 0).await;
                    self.wire
                        .send(&pub_frame(&subject, Some(&inbox), &[], body))
                        .await;
                    let frames = self
                        .collect(&[sid], Duration::from_millis(1000), |f| !f[&sid].is_empty())
                        .await;
                    self.record(step, frames)
                } else {
                    self.wire.send(&pub_frame(&subject, None, &[], body)).await;
                    // Acks are processed apart from API requests: let it land.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    json!("sent")
                }
            }
        };
        if let Some(var) = step.capture {
            if let Some(name) = reply["replies"][0][0]["json"]["name"].as_str() {
                self.vars.insert(var, name.to_string());
            }
        }
        let mut reply = reply;
        self.hide_vars(&mut reply);
        reply
    }

    /// Every frame received, per inbox, as JSON; `-ERR`s too.
    fn record(&mut self, step: &Step, frames: BTreeMap<u64, Vec<Frame>>) -> Value {
        let replies: Vec<Value> = frames
            .into_values()
            .map(|list| {
                let mut frames: Vec<Value> =
                    list.iter().map(|f| frame_json(step.label, f)).collect();
                // How many heartbeats fit in a wait depends on timing: a run
                // of identical ones counts as one.
                frames.dedup_by(|a, b| a == b && is_heartbeat(a));
                Value::Array(frames)
            })
            .collect();
        let mut record = json!({"replies": replies});
        if !self.wire.errors.is_empty() {
            record["errors"] = json!(std::mem::take(&mut self.wire.errors));
        }
        record
    }

    /// Replaces captured names with their placeholders.
    fn hide_vars(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                for (name, actual) in &self.vars {
                    if text.contains(actual.as_str()) {
                        *text = text.replace(actual.as_str(), &format!("<{name}>"));
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.hide_vars(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.hide_vars(v)),
            _ => {}
        }
    }
}

/// Replaces a JSON syntax error's wording in a recorded reply.
fn hide_syntax_error(record: &mut Value) {
    let Some(frame) = record.pointer_mut("/replies/0/0") else {
        return;
    };
    if let Some(text) = frame.pointer_mut("/json/error/description") {
        if text
            .as_str()
            .is_some_and(|t| t.starts_with("invalid JSON: "))
        {
            *text = json!("invalid JSON: <syntax error>");
        }
    }
    if let Some(headers) = frame.get_mut("headers") {
        if let Some(at) = headers.as_str().and_then(|h| h.find("Bad Request - ")) {
            let kept = headers.as_str().unwrap()[..at].to_string();
            *headers = json!(format!("{kept}Bad Request - <syntax error>"));
        }
    }
}

/// Whether `frame` (as recorded) is a `100 Idle Heartbeat`.
fn is_heartbeat(frame: &Value) -> bool {
    frame["headers"]
        .as_str()
        .is_some_and(|h| h.starts_with("NATS/1.0 100 Idle Heartbeat"))
}

/// Whether a pull request's replies so far are complete.
fn finished(frames: &[Frame], until: Until) -> bool {
    match until {
        Until::Quiet => false,
        Until::Terminal(count) => {
            let terminal = frames
                .iter()
                .any(|f| status(f).is_some_and(|code| code != "100"));
            let messages = frames.iter().filter(|f| status(f).is_none()).count();
            terminal || messages >= count
        }
    }
}

/// The status code of a status message (`NATS/1.0 408 ...`).
fn status(frame: &Frame) -> Option<String> {
    let headers = frame.headers.as_ref()?;
    let line = headers.split(|&b| b == b'\r').next()?;
    let line = String::from_utf8_lossy(line);
    let code = line.strip_prefix("NATS/1.0 ")?.get(..3)?;
    Some(code.to_string())
}

/// A frame as JSON, normalized.
fn frame_json(label: &str, frame: &Frame) -> Value {
    let mut out = serde_json::Map::new();
    let inbox_prefix = format!("_INBOX.{label}.");
    if !frame.subject.starts_with(&inbox_prefix) {
        out.insert("subject".into(), json!(frame.subject));
    }
    // The reference writes the replies of a consumer's own subscriptions
    // (`CONSUMER.RESET`) with an empty reply token (`MSG <subject> <sid>
    // <size>` with two spaces); clients read that as no reply, as rnats
    // sends it.
    if let Some(reply) = frame.reply.as_ref().filter(|reply| !reply.is_empty()) {
        out.insert("reply".into(), json!(normalize_ack_subject(reply)));
    }
    if let Some(headers) = &frame.headers {
        let text = String::from_utf8_lossy(headers).into_owned();
        let lines: Vec<String> = text
            .split("\r\n")
            .map(|line| {
                if line.starts_with("Nats-Time-Stamp:") {
                    "Nats-Time-Stamp: <time>".to_string()
                } else if line.starts_with("Nats-Pin-Id:") {
                    "Nats-Pin-Id: <pin>".to_string()
                } else {
                    line.to_string()
                }
            })
            .collect();
        out.insert("headers".into(), json!(lines.join("\\r\\n")));
    }
    let body = String::from_utf8_lossy(&frame.payload).into_owned();
    match serde_json::from_str::<Value>(&body) {
        Ok(mut value) if !body.is_empty() && (value.is_object() || value.is_array()) => {
            normalize(&mut value);
            out.insert("json".into(), value);
        }
        _ => {
            out.insert("text".into(), json!(body));
        }
    }
    Value::Object(out)
}

/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
/// with its timestamp token replaced.
fn normalize_ack_subject(subject: &str) -> String {
    let mut tokens: Vec<&str> = subject.split('.').collect();
    if subject.starts_with("$JS.ACK.") && tokens.len() == 9 {
        tokens[7] = "<ts>";
    }
    tokens.join(".")
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

fn store_dir(side: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-jscdiff-{side}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn run_all(server: &ServerProcess, steps: &[Step]) -> Vec<Value> {
    let mut side = Side {
        wire: Wire::connect(&server.addr()).await,
        vars: BTreeMap::new(),
        deliveries: BTreeMap::new(),
        next_sid: 0,
    };
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        out.push(side.run(step).await);
    }
    out
}

/// Whether the "rnats" side is in fact the reference (validating this test).
fn is_self_test() -> bool {
    rnats_tests::server_under_test()
        .file_name()
        .is_some_and(|name| name == "nats-server")
}

fn describe(step: &Step) -> String {
    match &step.action {
        Action::Request {
            subject, payload, ..
        } => format!("request {subject} {payload}"),
        Action::Publish {
            subject, payload, ..
        } => format!("publish {subject} {payload}"),
        Action::Pull {
            subject, payloads, ..
        } => format!("pull {subject} {payloads:?}"),
        Action::Ack {
            pull,
            index,
            body,
            sync,
        } => format!("ack {pull}[{index}] {body:?} sync={sync}"),
    }
}

#[tokio::test]
async fn jetstream_consumer_replies_match_the_reference() {
    let Some(reference_bin) = rnats_tests::reference_server() else {
        return;
    };
    let started = Instant::now();
    let (dir_a, dir_b) = (store_dir("rnats"), store_dir("ref"));
    let under_test = ServerProcess::start(&["-js", "-sd", dir_a.to_str().unwrap()]);
    let reference =
        ServerProcess::start_binary(reference_bin, &["-js", "-sd", dir_b.to_str().unwrap()]);
    let steps = steps();
    let (ours, theirs) = tokio::join!(run_all(&under_test, &steps), run_all(&reference, &steps));
    let self_test = is_self_test();
    let verbose = std::env::var_os("RNATS_JSDIFF_VERBOSE").is_some();
    let mut failures = Vec::new();
    let mut pending = Vec::new();
    for ((step, a), b) in steps.iter().zip(&ours).zip(&theirs) {
        if verbose {
            println!(
                "{} {}\n  rnats: {a}\n  ref:   {b}",
                step.label,
                describe(step)
            );
        }
        let (mut a, mut b) = (a.clone(), b.clone());
        if JSON_SYNTAX_ERROR_STEPS.contains(&step.label) {
            hide_syntax_error(&mut a);
            hide_syntax_error(&mut b);
        }
        let known = KNOWN_DIFFERENCES.iter().find(|(l, _)| *l == step.label);
        if PENDING_CONFIG_VALIDATION.contains(&step.label) {
            let verdict = if a == b { "matches" } else { "differs" };
            pending.push(format!("{} {verdict}", step.label));
            continue;
        }
        match (a == b, known) {
            (true, None) => {}
            (false, Some(_)) if !self_test => {}
            (true, Some((_, why))) if !self_test => failures.push(format!(
                "{}: listed as a known difference ({why}) but the replies now match; remove it",
                step.label
            )),
            (true, Some(_)) => {}
            (false, _) => failures.push(format!(
                "{}: {}\n  rnats:     {a}\n  reference: {b}",
                step.label,
                describe(step)
            )),
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
        "{} steps compared in {:.1} s; pending config validation: {pending:?}",
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
