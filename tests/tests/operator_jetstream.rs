//! JetStream limits from account JWTs in operator mode, against rnats and
//! (when available) nats-server v2.15.1 with the same JWTs: `tiered_limits`
//! on a single server (the `R1` tier applies; a stream whose replicas name
//! no tier is refused; `$JS.API.INFO` shows the tiers and no flat limits).

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;

use jwt::{connect_creds, Trust};
use rnats_tests::ServerProcess;
use serde_json::{json, Value};

/// The servers to run a scenario against: rnats, then the reference.
fn binaries() -> Vec<PathBuf> {
    let mut binaries = vec![rnats_tests::server_under_test()];
    binaries.extend(rnats_tests::reference_server());
    binaries
}

/// An account JWT's `limits` with nsc's defaults and `jetstream` added.
fn limits(jetstream: Value) -> Value {
    let mut limits = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1,
                            "exports": -1, "wildcards": true, "conn": -1, "leaf": -1});
    if let (Some(limits), Some(more)) = (limits.as_object_mut(), jetstream.as_object()) {
        limits.extend(more.clone());
    }
    limits
}

/// A JetStream server in operator mode whose application account has
/// `account_limits`; the server and a client of that account.
async fn start(
    binary: &Path,
    trust: &Trust,
    account_limits: Value,
) -> (ServerProcess, async_nats::Client) {
    let store = trust.dir.join("js");
    let _ = std::fs::remove_dir_all(&store);
    let system = trust.system.public_key();
    let account = trust.account.public_key();
    let system_jwt = jwt::account(&trust.operator, &trust.system, json!({}));
    let account_jwt = jwt::account(
        &trust.operator,
        &trust.account,
        json!({"limits": limits(account_limits)}),
    );
    let config = trust.dir.join("server.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {}\nsystem_account: {system}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n  {account}: {account_jwt}\n}}\n\
             jetstream {{ store_dir: {:?} }}\n",
            trust.operator_file().display(),
            store.display().to_string()
        ),
    )
    .unwrap();
    let server =
        ServerProcess::start_binary(binary.to_path_buf(), &["-c", config.to_str().unwrap()]);
    let creds = trust.user_creds("user.creds", &trust.account);
    let client = connect_creds(&server.url(), &creds).await.unwrap();
    (server, client)
}

/// A reply without what differs between runs (times, the server's
/// metadata).
fn stable(mut reply: Value) -> Value {
    if let Some(object) = reply.as_object_mut() {
        object.remove("created");
        object.remove("ts");
    }
    if let Some(config) = reply.get_mut("config").and_then(Value::as_object_mut) {
        config.remove("metadata");
    }
    reply
}

/// What one server answers with `tiers` as the account's tiered limits.
async fn tiered_scenario(binary: &Path, tiers: &Value) -> Vec<Value> {
    let name = format!(
        "tiers-{}-{}",
        binary.file_name().unwrap().to_string_lossy(),
        tiers
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<String>()
    );
    let trust = Trust::new(&name);
    let (_server, client) = start(binary, &trust, json!({"tiered_limits": tiers})).await;
    let mut seen = vec![common::js_api(&client, "$JS.API.INFO", json!({})).await];
    for (stream, replicas) in [("ONE", 1), ("THREE", 3)] {
        let create = json!({"name": stream, "subjects": [stream.to_lowercase()],
                            "storage": "file", "num_replicas": replicas});
        let subject = format!("$JS.API.STREAM.CREATE.{stream}");
        seen.push(stable(common::js_api(&client, &subject, create).await));
    }
    seen.push(common::js_api(&client, "$JS.API.INFO", json!({})).await);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_limits_on_a_single_server() {
    let tier = |storage: i64, streams: i64| json!({"mem_storage": -1, "disk_storage": storage, "streams": streams, "consumer": -1});
    let cases = [
        // Only R3: JetStream is on, yet no stream can be created here.
        json!({"R3": tier(-1, -1)}),
        // R1 applies to a single server's streams; R3 streams are refused.
        json!({"R1": tier(1_000_000, 3)}),
        json!({"R1": tier(-1, 2), "R3": tier(5_000_000, 1)}),
    ];
    for tiers in &cases {
        let mut results = Vec::new();
        for binary in binaries() {
            results.push(tiered_scenario(&binary, tiers).await);
        }
        let ours = &results[0];
        if tiers.get("R1").is_none() {
            assert_eq!(ours[1]["error"]["err_code"], 10120, "{ours:#?}");
        } else {
            assert!(ours[1]["error"].is_null(), "{ours:#?}");
            assert_eq!(ours[3]["tiers"]["R1"]["streams"], 1, "{ours:#?}");
        }
        if let Some(theirs) = results.get(1) {
            assert_eq!(ours, theirs, "{tiers}");
        }
    }
}

/// JetStream limits that grant everything.
fn unlimited() -> Value {
    json!({"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1})
}

/// Account `trust.account`'s claims replaced at run time with `limits`
/// (the `n`th update: a later `iat` and its own `jti`); the answer's data
/// but the account's key.
async fn push_claims(system: &async_nats::Client, trust: &Trust, n: i64, limits: Value) -> Value {
    let key = trust.account.public_key();
    let token = jwt::account_with(
        &trust.operator,
        &trust.account,
        json!({"limits": self::limits(limits)}),
        json!({"iat": 1_700_000_000i64 + n, "jti": format!("update-{n}")}),
    );
    let subject = format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE");
    let reply = common::within("a claims update", system.request(subject, token.into()))
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    let mut data = answer["data"].clone();
    assert_eq!(data["account"], key, "{answer}");
    if let Some(data) = data.as_object_mut() {
        data.remove("account");
    }
    data
}

/// A request's answer: its JSON, or the client's error (no responders, a
/// timeout) as a string.
async fn ask(client: &async_nats::Client, subject: &str, body: &str) -> Value {
    let request = async_nats::Request::new()
        .payload(body.to_string().into())
        .timeout(Some(std::time::Duration::from_millis(1500)));
    match client.send_request(subject.to_string(), request).await {
        Ok(reply) => serde_json::from_slice(&reply.payload)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&reply.payload))),
        Err(error) => json!(format!("{:?}", error.kind())),
    }
}

/// A stream's and a consumer's state as the API reports them, without
/// times.
async fn states(client: &async_nats::Client) -> Value {
    let stream = ask(client, "$JS.API.STREAM.INFO.S", "").await;
    let consumer = ask(client, "$JS.API.CONSUMER.INFO.S.C", "").await;
    json!({
        "stream": stream.get("state").map(|state| json!({
            "messages": state["messages"], "first_seq": state["first_seq"],
            "last_seq": state["last_seq"], "consumer_count": state["consumer_count"]})),
        "stream_error": stream.get("error"),
        "consumer": consumer.get("config").map(|_| json!({
            "delivered": consumer["delivered"]["stream_seq"],
            "ack_floor": consumer["ack_floor"]["stream_seq"],
            "num_ack_pending": consumer["num_ack_pending"],
            "num_pending": consumer["num_pending"]})),
        "consumer_error": consumer.get("error"),
    })
}

/// Fetch up to `batch` messages from consumer `C` of stream `S` (a pull
/// request expiring after a second): their payloads.
async fn fetch(client: &async_nats::Client, batch: usize) -> Vec<String> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    let request = json!({"batch": batch, "expires": 1_000_000_000u64}).to_string();
    client
        .publish_with_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", inbox, request.into())
        .await
        .unwrap();
    let mut payloads = Vec::new();
    while payloads.len() < batch {
        let next = tokio::time::timeout(std::time::Duration::from_secs(3), replies.next()).await;
        let Ok(Some(message)) = next else { break };
        if message.status.is_some() {
            break;
        }
        payloads.push(String::from_utf8_lossy(&message.payload).into_owned());
        if payloads.len() == 1 {
            if let Some(reply) = message.reply {
                client.publish(reply, "+ACK".into()).await.unwrap();
            }
        }
    }
    payloads
}

/// What one server does when a claims update turns the account's
/// JetStream off, then on again, then lowers its limits below its usage.
async fn toggle_scenario(binary: &Path) -> Vec<(&'static str, Value)> {
    let name = format!("toggle-{}", binary.file_name().unwrap().to_string_lossy());
    let trust = Trust::new(&name);
    let (server, client) = start(binary, &trust, unlimited()).await;
    let system_creds = trust.user_creds("system.creds", &trust.system);
    let system = connect_creds(&server.url(), &system_creds).await.unwrap();
    let mut seen = Vec::new();
    let create = r#"{"name":"S","subjects":["s.>"],"storage":"file"}"#;
    seen.push((
        "create",
        stable(ask(&client, "$JS.API.STREAM.CREATE.S", create).await),
    ));
    for n in 1..=3 {
        seen.push(("publish", ask(&client, "s.a", &format!("m{n}")).await));
    }
    let memory = r#"{"name":"M","subjects":["m"],"storage":"memory"}"#;
    let created = ask(&client, "$JS.API.STREAM.CREATE.M", memory).await;
    seen.push(("memory", json!(created.get("error"))));
    seen.push(("publish memory", ask(&client, "m", "kept in memory").await));
    let consumer = r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","ack_wait":1000000000}}"#;
    let created = ask(&client, "$JS.API.CONSUMER.CREATE.S.C", consumer).await;
    seen.push(("consumer", json!(created.get("error"))));
    // The first is acknowledged, the second left pending.
    seen.push(("fetched", json!(fetch(&client, 2).await)));
    common::sync_with_server(&client).await;
    seen.push(("before", states(&client).await));

    seen.push(("off", push_claims(&system, &trust, 1, json!({})).await));
    seen.push(("info off", ask(&client, "$JS.API.INFO", "").await));
    seen.push((
        "stream info off",
        ask(&client, "$JS.API.STREAM.INFO.S", "").await,
    ));
    seen.push(("names off", ask(&client, "$JS.API.STREAM.NAMES", "").await));
    seen.push(("publish off", ask(&client, "s.a", "lost").await));
    seen.push(("states off", states(&client).await));
    // Nothing listens for pull requests, direct gets and acks.
    let next = r#"{"batch":1,"expires":500000000}"#;
    seen.push((
        "next off",
        ask(&client, "$JS.API.CONSUMER.MSG.NEXT.S.C", next).await,
    ));
    let direct = r#"{"seq":1}"#;
    seen.push((
        "direct off",
        ask(&client, "$JS.API.DIRECT.GET.S", direct).await,
    ));
    seen.push((
        "ack off",
        ask(&client, "$JS.ACK.S.C.1.2.2.0.0", "+ACK").await,
    ));

    seen.push(("on", push_claims(&system, &trust, 2, unlimited()).await));
    // Recovered as at start-up, in the same words.
    let restored = format!(
        "Restored 3 messages for stream '{} > S'",
        trust.account.public_key()
    );
    seen.push(("restore logged", json!(server.logs_soon(&restored))));
    let consumers = format!(
        "Recovering 1 consumers for stream - '{} > S'",
        trust.account.public_key()
    );
    seen.push(("consumers logged", json!(server.logs_soon(&consumers))));
    seen.push(("states on", states(&client).await));
    // A memory stream does not come back: nothing of it was on disk.
    seen.push(("names on", ask(&client, "$JS.API.STREAM.NAMES", "").await));
    seen.push(("publish on", ask(&client, "s.a", "m4").await));
    // The pending one is redelivered once its ack wait has passed.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    seen.push(("fetched on", json!(fetch(&client, 4).await)));

    let small = json!({"mem_storage": -1, "disk_storage": 10, "streams": 1, "consumer": 1});
    seen.push(("lowered", push_claims(&system, &trust, 3, small).await));
    seen.push(("states lowered", states(&client).await));
    seen.push(("publish lowered", ask(&client, "s.a", "m5").await));
    let other = r#"{"name":"T","subjects":["t"],"storage":"memory"}"#;
    seen.push((
        "create lowered",
        stable(ask(&client, "$JS.API.STREAM.CREATE.T", other).await),
    ));
    let more = r#"{"stream_name":"S","config":{"durable_name":"D"}}"#;
    seen.push((
        "consumer lowered",
        ask(&client, "$JS.API.CONSUMER.CREATE.S.D", more).await,
    ));
    seen.push(("info lowered", ask(&client, "$JS.API.INFO", "").await));
    seen
}

/// A claims update without JetStream stops the account's streams and
/// consumers (API answered 10039, publishes unanswered); one with
/// JetStream again brings them back from the store with their messages
/// and the consumer's state (a memory stream is gone); lowered limits keep
/// what the account holds and refuse more. As the reference, step by step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claims_update_turns_jetstream_off_and_on() {
    let mut results = Vec::new();
    for binary in binaries() {
        results.push(toggle_scenario(&binary).await);
    }
    let ours: BTreeMap<&str, &Value> = results[0].iter().map(|(k, v)| (*k, v)).collect();
    let not_enabled = json!({"code": 503, "err_code": 10039,
                             "description": "JetStream not enabled for account"});
    assert_eq!(ours["off"]["message"], "jwt updated", "{ours:#?}");
    assert_eq!(ours["info off"]["error"], not_enabled, "{ours:#?}");
    assert_eq!(ours["stream info off"]["error"], not_enabled, "{ours:#?}");
    for what in ["publish off", "next off", "direct off", "ack off"] {
        assert_eq!(*ours[what], json!("NoResponders"), "{what}: {ours:#?}");
    }
    assert_eq!(ours["states on"], ours["before"], "{ours:#?}");
    assert_eq!(*ours["restore logged"], json!(true), "{ours:#?}");
    assert_eq!(*ours["consumers logged"], json!(true), "{ours:#?}");
    assert_eq!(ours["names on"]["streams"], json!(["S"]), "{ours:#?}");
    assert_eq!(
        *ours["publish on"],
        json!({"seq": 4, "stream": "S"}),
        "{ours:#?}"
    );
    // The one left pending comes again, then the rest.
    assert_eq!(*ours["fetched on"], json!(["m2", "m3", "m4"]), "{ours:#?}");
    assert_eq!(
        ours["publish lowered"]["error"]["err_code"], 10002,
        "{ours:#?}"
    );
    assert_eq!(
        ours["create lowered"]["error"]["err_code"], 10027,
        "{ours:#?}"
    );
    assert_eq!(
        ours["consumer lowered"]["error"]["err_code"], 10026,
        "{ours:#?}"
    );
    if let Some(theirs) = results.get(1) {
        assert_eq!(&results[0], theirs);
    }
}
