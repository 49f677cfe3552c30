//! JetStream limits from account JWTs in operator mode, against rnats and
//! (when available) nats-server v2.15.1 with the same JWTs: `tiered_limits`
//! on a single server (the `R1` tier applies; a stream whose replicas name
//! no tier is refused; `$JS.API.INFO` shows the tiers and no flat limits).

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::path::{Path, PathBuf};

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
    name: &str,
    account_limits: Value,
) -> (ServerProcess, async_nats::Client) {
    let trust = Trust::new(name);
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
    let (_server, client) = start(binary, &name, json!({"tiered_limits": tiers})).await;
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
