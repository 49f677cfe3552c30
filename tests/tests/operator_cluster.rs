//! The directory resolvers between clustered servers, each with its own
//! JWT directory: a pushed account JWT reaches every server, an account a
//! server does not hold is looked up from its peers before a login is
//! refused, a server started later syncs its directory (the newer JWT of
//! an account wins), and a `cache` resolver looks accounts up from a full
//! one. The mixed test runs the same exchanges with nats-server v2.15.1 as
//! a peer (skipped with a NOTICE without it, failing in CI).

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::cluster::{start_with, Kind};
use common::{next_message, within};
use futures::StreamExt;
use jwt::{connect_creds, Trust};
use rnats_tests::ServerProcess;
use serde_json::{json, Value};

impl Trust {
    /// A config with its own (emptied) JWT directory `name`, the system
    /// account preloaded, and `resolver` settings after `type`/`dir`.
    fn resolver_config(&self, name: &str, kind: &str, settings: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.join(format!("{name}-jwt"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let system = self.system.public_key();
        let system_jwt = jwt::account(&self.operator, &self.system, json!({}));
        let config = self.dir.join(format!("{name}.conf"));
        std::fs::write(
            &config,
            format!(
                "operator: {operator}\nsystem_account: {system}\n\
                 resolver: {{ type: {kind}, dir: {dir:?}{settings} }}\n\
                 resolver_preload: {{\n  {system}: {system_jwt}\n}}\n",
                operator = self.operator_file().display(),
                dir = dir.display().to_string(),
            ),
        )
        .unwrap();
        (config, dir)
    }

    fn system_creds(&self) -> PathBuf {
        self.user_creds("system.creds", &self.system)
    }
}

/// An account JWT issued at `iat` with id `jti` (a newer version of an
/// account needs both to differ).
fn account_jwt(trust: &Trust, account: &nkeys::KeyPair, iat: i64, nats: Value) -> String {
    let id = format!("{}-{iat}", account.public_key());
    jwt::account_with(
        &trust.operator,
        account,
        nats,
        json!({"iat": iat, "jti": id}),
    )
}

fn server_id(server: &ServerProcess) -> String {
    rnats_tests::http_json(server.http_port(), "/varz")["server_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until `$SYS.REQ.SERVER.PING.IDZ` from `client` is answered by
/// every server in `servers` (their system services' interest crossed the
/// routes).
async fn await_cluster(client: &async_nats::Client, servers: &[&ServerProcess]) {
    let ids: BTreeSet<String> = servers.iter().map(|s| server_id(s)).collect();
    within("every server answering IDZ", async {
        loop {
            let got = answers(client, "$SYS.REQ.SERVER.PING.IDZ", "", 500).await;
            let got: BTreeSet<String> = got
                .iter()
                .filter_map(|answer| {
                    let json: Value = serde_json::from_slice(answer).ok()?;
                    json["id"].as_str().map(str::to_string)
                })
                .collect();
            if ids.is_subset(&got) {
                return;
            }
        }
    })
    .await;
}

/// Every answer to a request within `window_ms`.
async fn answers(
    client: &async_nats::Client,
    subject: &str,
    body: &str,
    window_ms: u64,
) -> Vec<Bytes> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    // The inbox's interest reaches the routes before the request does.
    client.flush().await.unwrap();
    client
        .publish_with_reply(subject.to_string(), inbox, body.to_string().into())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(window_ms);
    let mut got = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
        got.push(msg.payload);
    }
    got
}

/// Waits until `<dir>/<key>.jwt` holds `jwt`.
async fn await_file(dir: &Path, key: &str, jwt: &str) {
    let path = dir.join(format!("{key}.jwt"));
    within(
        &format!("{} to hold the JWT", path.display()),
        file_holds(&path, jwt),
    )
    .await;
}

/// [`await_file`] for a JWT a server gets by syncing every second: each
/// `$SYS.REQ.CLAIMS.PACK` is answered by one member of the `responder`
/// queue group, drawn at random, and only some members hold the JWT, so
/// the rounds it takes are random too (ten misses in a row, the common
/// wait's bound, happened in CI). Forty seconds make a miss of every
/// round vanishingly rare.
async fn await_synced_file(dir: &Path, key: &str, jwt: &str) {
    let path = dir.join(format!("{key}.jwt"));
    let waited = tokio::time::timeout(Duration::from_secs(40), file_holds(&path, jwt)).await;
    assert!(waited.is_ok(), "{} never held the JWT", path.display());
}

async fn file_holds(path: &Path, jwt: &str) {
    loop {
        if std::fs::read_to_string(path).is_ok_and(|held| held == jwt) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A user of the account logs in on `server` and gets its own message.
async fn user_works(server: &ServerProcess, creds: &Path) {
    let client = connect_creds(&server.url(), creds)
        .await
        .unwrap_or_else(|error| panic!("login refused on {}: {error}", server.url()));
    let mut sub = client.subscribe("greet").await.unwrap();
    client.publish("greet", Bytes::from("hi")).await.unwrap();
    assert_eq!(next_message(&mut sub).await.payload, "hi");
}

fn start(kind: Kind, seed: Option<&ServerProcess>, config: &Path) -> Option<ServerProcess> {
    start_with(kind, seed.map(ServerProcess::route_port), Some(config))
}

/// A push on one server is stored by every server; an account a server
/// does not hold is looked up from its peers (found: the login goes
/// through and the JWT is stored; found nowhere: refused).
#[tokio::test]
async fn pushes_reach_every_server_and_logins_look_up_peers() {
    let trust = Trust::new("cluster-push");
    let settings = ", interval: \"2m\", timeout: \"3s\"";
    let (config1, dir1) = trust.resolver_config("s1", "full", settings);
    let (config2, dir2) = trust.resolver_config("s2", "full", settings);
    let s1 = start(Kind::Rnats, None, &config1).unwrap();
    let s2 = start(Kind::Rnats, Some(&s1), &config2).unwrap();
    let system = connect_creds(&s1.url(), &trust.system_creds())
        .await
        .unwrap();
    await_cluster(&system, &[&s1, &s2]).await;

    let account = trust.account.public_key();
    let token = account_jwt(&trust, &trust.account, 1_700_000_000, json!({}));
    let replies = answers(&system, "$SYS.REQ.CLAIMS.UPDATE", &token, 700).await;
    assert_eq!(replies.len(), 2, "each server answers the push");
    for reply in replies {
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(
            reply["data"],
            json!({"account": account, "code": 200, "message": "jwt updated"})
        );
    }
    await_file(&dir1, &account, &token).await;
    await_file(&dir2, &account, &token).await;
    let creds = trust.user_creds("a.creds", &trust.account);
    user_works(&s2, &creds).await;

    // A third server with an empty directory looks the account up.
    let (config3, dir3) = trust.resolver_config("s3", "full", settings);
    let s3 = start(Kind::Rnats, Some(&s1), &config3).unwrap();
    let system3 = connect_creds(&s3.url(), &trust.system_creds())
        .await
        .unwrap();
    await_cluster(&system3, &[&s1, &s2, &s3]).await;
    assert!(!dir3.join(format!("{account}.jwt")).exists());
    user_works(&s3, &creds).await;
    await_file(&dir3, &account, &token).await;

    // An account no server holds is refused (every peer answered empty).
    let stranger = nkeys::KeyPair::new_account();
    let stranger_creds = trust.user_creds("b.creds", &stranger);
    let refused = connect_creds(&s3.url(), &stranger_creds).await;
    assert!(refused.is_err(), "an unknown account's user was admitted");
}

/// A server started later gets the accounts it lacks from a peer's pack
/// within `interval`; of two versions of an account, the one issued later
/// wins on both servers.
#[tokio::test]
async fn a_later_server_syncs_its_directory() {
    let trust = Trust::new("cluster-sync");
    let settings = ", interval: \"1s\"";
    let (config1, dir1) = trust.resolver_config("s1", "full", settings);
    let s1 = start(Kind::Rnats, None, &config1).unwrap();
    let system = connect_creds(&s1.url(), &trust.system_creds())
        .await
        .unwrap();
    let account = trust.account.public_key();
    let newer = account_jwt(&trust, &trust.account, 1_700_000_100, json!({}));
    let pushed = within(
        "a push",
        system.request("$SYS.REQ.CLAIMS.UPDATE", newer.clone().into()),
    )
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&pushed.payload).contains("jwt updated"));
    let other = nkeys::KeyPair::new_account();
    let other_jwt = account_jwt(&trust, &other, 1_700_000_000, json!({}));
    within(
        "a push",
        system.request("$SYS.REQ.CLAIMS.UPDATE", other_jwt.clone().into()),
    )
    .await
    .unwrap();

    // The second server holds an older version of the account.
    let (config2, dir2) = trust.resolver_config("s2", "full", settings);
    let older = account_jwt(&trust, &trust.account, 1_699_000_000, json!({}));
    std::fs::write(dir2.join(format!("{account}.jwt")), &older).unwrap();
    let s2 = start(Kind::Rnats, Some(&s1), &config2).unwrap();
    await_synced_file(&dir2, &other.public_key(), &other_jwt).await;
    await_synced_file(&dir2, &account, &newer).await;
    // Both have exchanged packs by now; the older one did not win anywhere.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        std::fs::read_to_string(dir1.join(format!("{account}.jwt"))).unwrap(),
        newer
    );
    user_works(&s2, &trust.user_creds("other.creds", &other)).await;
}

/// A `cache` resolver beside a full one: accounts are looked up from the
/// full server and kept in the cache's directory for `ttl`, claims updates
/// of accounts it runs are stored ("jwt updated cache"), others skipped.
#[tokio::test]
async fn a_cache_resolver_looks_accounts_up() {
    let trust = Trust::new("cluster-cache");
    let (config1, _) = trust.resolver_config("full", "full", ", interval: \"2m\"");
    let (config2, cache_dir) = trust.resolver_config(
        "cache",
        "cache",
        ", ttl: \"3s\", limit: 10, timeout: \"3s\"",
    );
    let full = start(Kind::Rnats, None, &config1).unwrap();
    let cache = start(Kind::Rnats, Some(&full), &config2).unwrap();
    assert!(
        cache
            .log_lines()
            .iter()
            .any(|line| line.contains("Managing some jwt in exclusive directory")),
        "{:?}",
        cache.log_lines()
    );
    let system = connect_creds(&full.url(), &trust.system_creds())
        .await
        .unwrap();
    await_cluster(&system, &[&full, &cache]).await;

    let account = trust.account.public_key();
    let token = account_jwt(&trust, &trust.account, 1_700_000_000, json!({}));
    let replies = answers(&system, "$SYS.REQ.CLAIMS.UPDATE", &token, 700).await;
    let messages: BTreeSet<String> = replies
        .iter()
        .map(|reply| {
            let reply: Value = serde_json::from_slice(reply).unwrap();
            reply["data"]["message"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        messages,
        BTreeSet::from([
            "jwt updated".to_string(),
            "jwt update cache skipped".to_string()
        ])
    );
    assert!(!cache_dir.join(format!("{account}.jwt")).exists());

    let creds = trust.user_creds("a.creds", &trust.account);
    user_works(&cache, &creds).await;
    await_file(&cache_dir, &account, &token).await;

    let update = account_jwt(
        &trust,
        &trust.account,
        1_700_000_100,
        json!({"mappings": {"old": [{"subject": "greet", "weight": 100}]}}),
    );
    let replies = answers(&system, "$SYS.REQ.CLAIMS.UPDATE", &update, 700).await;
    assert!(
        replies
            .iter()
            .any(|reply| String::from_utf8_lossy(reply).contains("jwt updated cache")),
        "{replies:?}"
    );
    await_file(&cache_dir, &account, &update).await;
    // The cache runs the update: the mapping applies there.
    let client = connect_creds(&cache.url(), &creds).await.unwrap();
    let mut sub = client.subscribe("greet").await.unwrap();
    client.flush().await.unwrap();
    client.publish("old", Bytes::from("mapped")).await.unwrap();
    assert_eq!(next_message(&mut sub).await.payload, "mapped");
    // The cache serves no lookups: only the full server answers.
    let lookups = answers(
        &system,
        &format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.LOOKUP"),
        "",
        700,
    )
    .await;
    assert_eq!(lookups.len(), 1);
    // The file goes `ttl` after it was stored; the account keeps running.
    let path = cache_dir.join(format!("{account}.jwt"));
    within("the cache's file to expire", async {
        while path.exists() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    user_works(&cache, &creds).await;
}

/// nats-server v2.15.1 as a peer: each looks up accounts from the other,
/// pushes cross both ways, and rnats syncs its directory from it.
#[tokio::test]
async fn mixed_cluster_with_the_reference() {
    let trust = Trust::new("cluster-mixed");
    let (config1, dir1) = trust.resolver_config("ref", "full", ", interval: \"2m\"");
    let (config2, dir2) = trust.resolver_config("rnats", "full", ", interval: \"2m\"");
    let (config3, dir3) = trust.resolver_config("rnats-sync", "full", ", interval: \"1s\"");
    // The first rnats's directory starts with account C, the reference's with D.
    let c = nkeys::KeyPair::new_account();
    let c_jwt = account_jwt(&trust, &c, 1_700_000_000, json!({}));
    std::fs::write(dir2.join(format!("{}.jwt", c.public_key())), &c_jwt).unwrap();
    let d = nkeys::KeyPair::new_account();
    let d_jwt = account_jwt(&trust, &d, 1_700_000_000, json!({}));
    std::fs::write(dir1.join(format!("{}.jwt", d.public_key())), &d_jwt).unwrap();
    let Some(reference) = start(Kind::Reference, None, &config1) else {
        return;
    };
    let system = connect_creds(&reference.url(), &trust.system_creds())
        .await
        .unwrap();
    // Pushed while the reference is alone: the syncing rnats gets it later.
    let account = trust.account.public_key();
    let token = account_jwt(&trust, &trust.account, 1_700_000_000, json!({}));
    within(
        "a push to the reference",
        system.request("$SYS.REQ.CLAIMS.UPDATE", token.clone().into()),
    )
    .await
    .unwrap();

    let rnats = start(Kind::Rnats, Some(&reference), &config2).unwrap();
    await_cluster(&system, &[&reference, &rnats]).await;
    // Each looks up the account only the other holds.
    user_works(&rnats, &trust.user_creds("d.creds", &d)).await;
    await_file(&dir2, &d.public_key(), &d_jwt).await;
    user_works(&reference, &trust.user_creds("c.creds", &c)).await;
    await_file(&dir1, &c.public_key(), &c_jwt).await;
    // Pushed to rnats: stored by the reference too.
    let system2 = connect_creds(&rnats.url(), &trust.system_creds())
        .await
        .unwrap();
    let e = nkeys::KeyPair::new_account();
    let e_jwt = account_jwt(&trust, &e, 1_700_000_000, json!({}));
    let replies = answers(&system2, "$SYS.REQ.CLAIMS.UPDATE", &e_jwt, 700).await;
    assert_eq!(replies.len(), 2, "both servers answer the push");
    await_file(&dir1, &e.public_key(), &e_jwt).await;
    user_works(&reference, &trust.user_creds("e.creds", &e)).await;

    // A server started later syncs what the others hold.
    let _syncing = start(Kind::Rnats, Some(&reference), &config3).unwrap();
    for (key, jwt) in [
        (&account, &token),
        (&c.public_key(), &c_jwt),
        (&d.public_key(), &d_jwt),
        (&e.public_key(), &e_jwt),
    ] {
        await_synced_file(&dir3, key, jwt).await;
    }
}

/// `$SYS.REQ.CLAIMS.PACK` is served by the queue group `responder`: one
/// server of the cluster answers each request (its JWTs, then one empty
/// message), whichever kinds the servers are.
async fn one_server_answers_a_pack_request(name: &str, kinds: [Kind; 3]) {
    let trust = Trust::new(name);
    let mut servers: Vec<ServerProcess> = Vec::new();
    for (index, kind) in kinds.into_iter().enumerate() {
        let (config, _) = trust.resolver_config(&format!("s{index}"), "full", ", interval: \"2m\"");
        let Some(server) = start(kind, servers.first(), &config) else {
            return;
        };
        servers.push(server);
    }
    let system = connect_creds(&servers[0].url(), &trust.system_creds())
        .await
        .unwrap();
    let all: Vec<&ServerProcess> = servers.iter().collect();
    await_cluster(&system, &all).await;
    // Every server holds the pushed account, so any responder has a line.
    let token = account_jwt(&trust, &trust.account, 1_700_000_000, json!({}));
    let replies = answers(&system, "$SYS.REQ.CLAIMS.UPDATE", &token, 700).await;
    assert_eq!(replies.len(), 3, "each server stores the push");
    // The queue interest of every server has crossed the routes with the
    // push's; a hash matching no directory asks for everything.
    for _ in 0..4 {
        let replies = answers(&system, "$SYS.REQ.CLAIMS.PACK", "no such hash", 700).await;
        let ends = replies.iter().filter(|reply| reply.is_empty()).count();
        assert_eq!(ends, 1, "one responder ends its pack: {replies:?}");
        let line = format!("{}|{token}", trust.account.public_key());
        assert!(
            replies.iter().any(|reply| *reply == line.as_bytes()),
            "{replies:?}"
        );
    }
}

#[tokio::test]
async fn one_rnats_server_answers_a_pack_request() {
    one_server_answers_a_pack_request("pack-rnats", [Kind::Rnats; 3]).await;
}

#[tokio::test]
async fn one_server_of_a_mixed_cluster_answers_a_pack_request() {
    one_server_answers_a_pack_request("pack-mixed", [Kind::Reference, Kind::Rnats, Kind::Rnats])
        .await;
}

#[tokio::test]
async fn one_reference_server_answers_a_pack_request() {
    one_server_answers_a_pack_request("pack-reference", [Kind::Reference; 3]).await;
}
