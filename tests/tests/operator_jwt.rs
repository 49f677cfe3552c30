//! Operator mode (decentralized auth) with the official async-nats client:
//! an operator JWT, account JWTs preloaded into the `MEMORY` resolver, and
//! users connecting with `.creds` files. Operators, accounts and users are
//! generated in each test (`common::jwt`). Run against the reference with
//! `RNATS_TEST_SERVER_BIN=nats-server cargo test -p rnats-tests --test operator_jwt`.

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;
use bytes::Bytes;
use common::{next_message, sync_with_server, within};
use futures::StreamExt;
use jwt::{connect_creds, exit_of, Trust};
use rnats_tests::ServerProcess;
use serde_json::json;

// `Trust` (in `common/jwt.rs`): here its accounts are preloaded.
impl Trust {
    /// The server's config, with `account_nats` in account A's JWT.
    fn config(&self, account_nats: serde_json::Value) -> PathBuf {
        let operator_jwt = jwt::operator(
            &self.operator,
            json!({"system_account": self.system.public_key()}),
        );
        let operator_path = self.dir.join("operator.jwt");
        std::fs::write(&operator_path, &operator_jwt).unwrap();
        let system_jwt = jwt::account(&self.operator, &self.system, json!({}));
        let account_jwt = jwt::account(&self.operator, &self.account, account_nats);
        let text = format!(
            "operator: {operator}\nsystem_account: {system}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n  {account}: {account_jwt}\n}}\n",
            operator = operator_path.display(),
            system = self.system.public_key(),
            account = self.account.public_key(),
        );
        let path = self.dir.join("server.conf");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A `.creds` file for a user of the system account.
    fn system_creds(&self) -> PathBuf {
        let user = nkeys::KeyPair::new_user();
        let token = jwt::user(&self.system, &user, json!({}), json!({}));
        let path = self.dir.join("system.creds");
        std::fs::write(&path, jwt::creds(&token, &user)).unwrap();
        path
    }

    /// A `.creds` file for a new user of account A signed by `signer`
    /// (the account itself, or one of its signing keys).
    fn creds(
        &self,
        file: &str,
        signer: &nkeys::KeyPair,
        nats: serde_json::Value,
        extra: serde_json::Value,
    ) -> (nkeys::KeyPair, PathBuf) {
        let user = nkeys::KeyPair::new_user();
        let token = jwt::user(signer, &user, nats, extra);
        let path = self.dir.join(file);
        std::fs::write(&path, jwt::creds(&token, &user)).unwrap();
        (user, path)
    }
}

/// Gathers the subjects `subscriber` receives (fence inboxes aside) until
/// each of `markers` has arrived (each publisher's last message marks the
/// end of what it sent: one connection's operations are handled in order).
async fn collect(
    subscriber: &mut async_nats::Subscriber,
    markers: &[&str],
    seen: &mut Vec<String>,
) {
    let mut ended = 0;
    while ended < markers.len() {
        let message = next_message(subscriber).await;
        if markers.contains(&message.subject.as_str()) {
            ended += 1;
        } else if !message.subject.starts_with("_INBOX.") {
            seen.push(message.subject.to_string());
        }
    }
}

fn start(config: &Path) -> ServerProcess {
    ServerProcess::start(&["-c", config.to_str().unwrap()])
}

#[tokio::test]
async fn a_user_of_a_preloaded_account_connects_with_its_creds() {
    let trust = Trust::new("basic");
    let server = start(&trust.config(json!({})));
    let (_, creds) = trust.creds("u.creds", &trust.account, json!({}), json!({}));
    let client = connect_creds(&server.url(), &creds).await.unwrap();
    let mut sub = client.subscribe("greet").await.unwrap();
    client.flush().await.unwrap();
    client.publish("greet", Bytes::from("hi")).await.unwrap();
    assert_eq!(next_message(&mut sub).await.payload, "hi");

    // A user of another account (not preloaded) is refused, as is one
    // whose JWT the account did not sign.
    let stranger = nkeys::KeyPair::new_account();
    let (_, unknown) = trust.creds("unknown.creds", &stranger, json!({}), json!({}));
    assert!(connect_creds(&server.url(), &unknown).await.is_err());
    let no_creds = within(
        "a connect without creds",
        ConnectOptions::new()
            .max_reconnects(Some(1))
            .connect(server.url()),
    )
    .await;
    assert!(no_creds.is_err(), "operator mode requires a user JWT");
}

#[tokio::test]
async fn user_permissions_come_from_the_jwt_or_the_account_defaults() {
    let trust = Trust::new("permissions");
    let server = start(&trust.config(json!({
        "default_permissions": {"pub": {"allow": ["defaults.>"]}, "sub": {"allow": ["defaults.>"]}},
    })));
    let (_, limited) = trust.creds(
        "limited.creds",
        &trust.account,
        json!({"pub": {"allow": ["a.>"]}, "sub": {"allow": ["a.>"], "deny": ["a.secret"]}}),
        json!({}),
    );
    let (_, plain) = trust.creds("plain.creds", &trust.account, json!({}), json!({}));
    let all = json!({"pub": {"allow": [">"]}, "sub": {"allow": [">"]}});
    let (_, full) = trust.creds("full.creds", &trust.account, all, json!({}));
    let watcher = connect_creds(&server.url(), &full).await.unwrap();
    let mut everything = watcher.subscribe(">").await.unwrap();
    sync_with_server(&watcher).await;

    let limited = connect_creds(&server.url(), &limited).await.unwrap();
    limited.publish("b.x", Bytes::from("denied")).await.unwrap();
    limited
        .publish("a.x", Bytes::from("allowed"))
        .await
        .unwrap();
    limited.publish("a.end", Bytes::new()).await.unwrap();
    limited.flush().await.unwrap();
    // The JWT's sub deny wins over its allow.
    let mut secret = limited.subscribe("a.secret").await.unwrap();
    let mut open = limited.subscribe("a.open").await.unwrap();
    limited.flush().await.unwrap();

    // A user whose JWT sets no permissions gets the account's defaults.
    let defaults = connect_creds(&server.url(), &plain).await.unwrap();
    defaults
        .publish("a.check", Bytes::from("outside the defaults"))
        .await
        .unwrap();
    defaults
        .publish("defaults.ok", Bytes::from("inside"))
        .await
        .unwrap();
    defaults
        .publish("defaults.end", Bytes::new())
        .await
        .unwrap();
    defaults.flush().await.unwrap();

    // Each publisher's last message marks the end of what it sent; one
    // connection's operations are handled in order, so once "a.end" is
    // seen, the limited user's subscriptions are in place too.
    let mut seen = Vec::new();
    collect(&mut everything, &["a.end", "defaults.end"], &mut seen).await;
    watcher.publish("a.secret", Bytes::from("s")).await.unwrap();
    watcher.publish("a.open", Bytes::from("o")).await.unwrap();
    watcher.publish("end", Bytes::from("")).await.unwrap();
    collect(&mut everything, &["end"], &mut seen).await;
    seen.sort();
    assert_eq!(seen, ["a.open", "a.secret", "a.x", "defaults.ok"]);
    assert_eq!(next_message(&mut open).await.payload, "o");
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(300), secret.next()).await;
    assert!(
        !matches!(nothing, Ok(Some(_))),
        "a denied subscription received a message"
    );
}

#[tokio::test]
async fn signing_keys_revocations_expiry_and_bearer_tokens() {
    let trust = Trust::new("signing");
    let signing = nkeys::KeyPair::new_account();
    let revoked_user = nkeys::KeyPair::new_user();
    let server = start(&trust.config(json!({
        "signing_keys": [signing.public_key()],
        "revocations": {revoked_user.public_key(): 1_800_000_000i64},
    })));
    let url = server.url();

    // Signed by the account's signing key, naming the account.
    let (_, by_signing_key) = trust.creds(
        "signed.creds",
        &signing,
        json!({"issuer_account": trust.account.public_key()}),
        json!({}),
    );
    connect_creds(&url, &by_signing_key).await.unwrap();
    // Signed by a key the account does not list.
    let rogue = nkeys::KeyPair::new_account();
    let (_, by_rogue) = trust.creds(
        "rogue.creds",
        &rogue,
        json!({"issuer_account": trust.account.public_key()}),
        json!({}),
    );
    assert!(connect_creds(&url, &by_rogue).await.is_err());

    // Revoked: issued (1,700,000,000) before the revocation.
    let token = jwt::user(&trust.account, &revoked_user, json!({}), json!({}));
    let path = trust.dir.join("revoked.creds");
    std::fs::write(&path, jwt::creds(&token, &revoked_user)).unwrap();
    assert!(connect_creds(&url, &path).await.is_err());

    // Expired, and not yet valid.
    let (_, expired) = trust.creds(
        "expired.creds",
        &trust.account,
        json!({}),
        json!({"exp": 1_000_000_000i64}),
    );
    assert!(connect_creds(&url, &expired).await.is_err());
    let (_, early) = trust.creds(
        "early.creds",
        &trust.account,
        json!({}),
        json!({"nbf": 4_000_000_000i64}),
    );
    assert!(connect_creds(&url, &early).await.is_err());

    // A bearer token needs no nonce signature: a JWT alone logs in.
    let bearer_user = nkeys::KeyPair::new_user();
    let bearer = jwt::user(
        &trust.account,
        &bearer_user,
        json!({"bearer_token": true}),
        json!({}),
    );
    let client = within(
        "a bearer-token connect",
        ConnectOptions::with_jwt(bearer, |_| async { Ok(Vec::new()) })
            .max_reconnects(Some(1))
            .connect(&url),
    )
    .await;
    assert!(client.is_ok(), "{client:?}");
    // Without bearer_token the same empty signature is refused.
    let signed_user = nkeys::KeyPair::new_user();
    let not_bearer = jwt::user(&trust.account, &signed_user, json!({}), json!({}));
    let refused = within(
        "an unsigned connect",
        ConnectOptions::with_jwt(not_bearer, |_| async { Ok(Vec::new()) })
            .max_reconnects(Some(1))
            .connect(&url),
    )
    .await;
    assert!(refused.is_err());
}

#[test]
fn start_up_refusals_and_lines_match_the_reference() {
    let trust = Trust::new("startup");
    let good = trust.config(json!({}));
    let text = std::fs::read_to_string(&good).unwrap();
    let jwt_dir = trust.dir.join("jwt").display().to_string();
    // An operator naming no system account.
    let bare_operator = trust.dir.join("bare-operator.jwt");
    std::fs::write(&bare_operator, jwt::operator(&trust.operator, json!({}))).unwrap();
    let variants = [
        ("accounts.conf", format!("{text}accounts {{ X {{ }} }}\n")),
        ("noresolver.conf", text.replace("resolver: MEMORY\n", "")),
        (
            "badpreload.conf",
            format!("{text}resolver_preload: {{ ABC: \"garbage\" }}\n"),
        ),
        (
            "nofile.conf",
            // Not on line 1, where the reference counts columns from 0.
            format!(
                "# no such file\noperator: {}/missing.jwt\nresolver: MEMORY\n",
                trust.dir.display()
            ),
        ),
        (
            "users.conf",
            format!("{text}authorization {{ users: [ {{ user: a, password: b }} ] }}\n"),
        ),
        (
            "full-nodir.conf",
            text.replace("resolver: MEMORY\n", "resolver: { type: full }\n"),
        ),
        (
            "full-ttl.conf",
            text.replace(
                "resolver: MEMORY\n",
                &format!(
                    "resolver: {{ type: full, dir: {:?}, ttl: \"1m\" }}\n",
                    jwt_dir
                ),
            ),
        ),
        (
            "cache-sync.conf",
            text.replace(
                "resolver: MEMORY\n",
                &format!(
                    "resolver: {{ type: cache, dir: {:?}, interval: \"1m\" }}\n",
                    jwt_dir
                ),
            ),
        ),
        (
            "cache-delete.conf",
            text.replace(
                "resolver: MEMORY\n",
                &format!(
                    "resolver: {{ type: cache, dir: {:?}, allow_delete: true }}\n",
                    jwt_dir
                ),
            ),
        ),
        (
            "cache-nosystem.conf",
            format!(
                "operator: {}\nresolver: {{ type: cache, dir: {:?} }}\n",
                bare_operator.display(),
                jwt_dir
            ),
        ),
        (
            "full-nosystem.conf",
            format!(
                "operator: {}\nresolver: {{ type: full, dir: {:?} }}\n",
                bare_operator.display(),
                jwt_dir
            ),
        ),
    ];
    let reference = rnats_tests::reference_server();
    for (name, config) in variants {
        let path = trust.dir.join(name);
        std::fs::write(&path, config).unwrap();
        let (code, ours) = exit_of(rnats_tests::rnats_server_binary(), &path);
        assert_eq!(code, Some(1), "{name}: {ours}");
        if let Some(reference) = &reference {
            let (code, theirs) = exit_of(reference, &path);
            assert_eq!(code, Some(1), "{name}: {theirs}");
            // The program names itself first (`rnats-server:` / `nats-server:`);
            // the reference lists every error, rnats the first.
            let message = |text: &str| {
                let first = text.trim().lines().next().unwrap_or("");
                first.split_once(": ").map(|(_, m)| m.to_string())
            };
            assert_eq!(message(&ours), message(&theirs), "{name}");
        }
    }

    // A good configuration names its operator as the reference does.
    let lines = |server: &ServerProcess| -> Vec<String> {
        server
            .log_lines()
            .iter()
            .filter_map(|line| line.find("[INF]   ").map(|at| line[at..].to_string()))
            .filter(|line| {
                ["System", "Operator", "Issued", "Expires"]
                    .iter()
                    .any(|k| line.contains(k))
            })
            .collect()
    };
    let ours = lines(&start(&good));
    assert_eq!(ours.len(), 4, "{ours:?}");
    if let Some(theirs) = ServerProcess::start_reference(&["-c", good.to_str().unwrap()]) {
        assert_eq!(ours, lines(&theirs));
    }
}

#[tokio::test]
async fn exports_and_imports_between_jwt_accounts() {
    let trust = Trust::new("exports");
    let provider = nkeys::KeyPair::new_account();
    let private_importer = trust.account.public_key();
    let activation = jwt::encode(
        &provider,
        &private_importer,
        "activation",
        json!({"subject": "private.>", "kind": "stream"}),
        json!({}),
    );
    let provider_jwt = jwt::account(
        &trust.operator,
        &provider,
        json!({"exports": [
            {"name": "public", "subject": "public.>", "type": "stream"},
            {"name": "private", "subject": "private.>", "type": "stream", "token_req": true},
            {"name": "help", "subject": "help", "type": "service"},
            {"name": "per-account", "subject": "acct.*.>", "type": "stream", "account_token_position": 2},
        ]}),
    );
    let config = trust.config(json!({"imports": [
        {"name": "public", "subject": "public.>", "account": provider.public_key(), "type": "stream"},
        {"name": "private", "subject": "private.>", "account": provider.public_key(), "type": "stream", "token": activation},
        {"name": "help", "subject": "help", "account": provider.public_key(), "type": "service", "local_subject": "ask"},
        {"name": "mine", "subject": format!("acct.{private_importer}.>"), "account": provider.public_key(), "type": "stream"},
        {"name": "theirs", "subject": "acct.SOMEONE.>", "account": provider.public_key(), "type": "stream"},
    ]}));
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "resolver_preload: {\n",
        &format!(
            "resolver_preload: {{\n  {}: {provider_jwt}\n",
            provider.public_key()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let server = start(&config);
    let url = server.url();

    let (_, importer_creds) = trust.creds("importer.creds", &trust.account, json!({}), json!({}));
    let importer = connect_creds(&url, &importer_creds).await.unwrap();
    let provider_user = nkeys::KeyPair::new_user();
    let token = jwt::user(&provider, &provider_user, json!({}), json!({}));
    let provider_creds = trust.dir.join("provider.creds");
    std::fs::write(&provider_creds, jwt::creds(&token, &provider_user)).unwrap();
    let provider_client = connect_creds(&url, &provider_creds).await.unwrap();

    let mut service = provider_client.subscribe("help").await.unwrap();
    sync_with_server(&provider_client).await;
    let responder = provider_client.clone();
    tokio::spawn(async move {
        while let Some(request) = service.next().await {
            if let Some(reply) = request.reply {
                responder
                    .publish(reply, Bytes::from("helped"))
                    .await
                    .unwrap();
            }
        }
    });
    let mut streams = importer.subscribe(">").await.unwrap();
    sync_with_server(&importer).await;
    for subject in [
        "public.news".to_string(),
        "private.news".to_string(),
        format!("acct.{private_importer}.news"),
        "acct.SOMEONE.news".to_string(),
        "end".to_string(),
        // Last, on a public subject: everything delivered before it is in.
        "public.end".to_string(),
    ] {
        provider_client
            .publish(subject, Bytes::from("x"))
            .await
            .unwrap();
    }
    provider_client.flush().await.unwrap();
    let mut seen = Vec::new();
    collect(&mut streams, &["public.end"], &mut seen).await;
    // The import that names another account's token is refused; "end" is
    // not exported.
    assert_eq!(
        seen,
        [
            "public.news".to_string(),
            "private.news".to_string(),
            format!("acct.{private_importer}.news")
        ]
    );
    let answer = within("a service import", importer.request("ask", Bytes::new()))
        .await
        .unwrap();
    assert_eq!(answer.payload, "helped");
}

/// Account and user limits as rnats reads them: `data` and `leaf` are
/// accepted, a limit left out is a limit of 0, an account breaking its own
/// import/export limits does not validate. (Runs against rnats only.)
#[tokio::test]
async fn claims_not_applied_yet_are_refused() {
    // `data` and `leaf` limits restrict nothing a client does (the
    // reference does not enforce `data` for clients; rnats has no leaf
    // nodes): the account works.
    let trust = Trust::new("unsupported");
    let limited = trust.config(json!({"limits": {"subs": -1, "data": 5000, "payload": -1,
        "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": 3}}));
    let server = start(&limited);
    // Limits left out are 0: a limit of zero (no subscriptions), not none.
    let user = nkeys::KeyPair::new_user();
    let token = jwt::encode(
        &trust.account,
        &user.public_key(),
        "user",
        json!({}),
        json!({}),
    );
    let zero = trust.dir.join("zero-limits.creds");
    std::fs::write(&zero, jwt::creds(&token, &user)).unwrap();
    let (options, mut errors) = with_errors(&zero).await;
    let client = within("a zero-limits connect", options.connect(server.url()))
        .await
        .unwrap();
    let _ = client.subscribe("zero").await;
    let error = tokio::time::timeout(std::time::Duration::from_secs(5), errors.recv())
        .await
        .expect("a subscription over a zero limit is refused")
        .unwrap();
    assert!(error.contains("maximum subscriptions exceeded"), "{error}");
    let (_, plain) = trust.creds("plain.creds", &trust.account, json!({}), json!({}));
    connect_creds(&server.url(), &plain).await.unwrap();
    drop(server);

    // An account JWT breaking its own import/export limits does not
    // validate: its users cannot log in.
    for (name, nats) in [
        (
            "wildcard-export",
            json!({"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                              "exports": 5, "wildcards": false, "conn": -1, "leaf": -1},
                   "exports": [{"subject": "a.*", "type": "stream"}]}),
        ),
        (
            "too-many-exports",
            json!({"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                              "exports": 0, "wildcards": true, "conn": -1, "leaf": -1},
                   "exports": [{"subject": "a.b", "type": "stream"}]}),
        ),
    ] {
        let trust = Trust::new(name);
        let server = start(&trust.config(nats));
        let (_, creds) = trust.creds("u.creds", &trust.account, json!({}), json!({}));
        assert!(
            connect_creds(&server.url(), &creds).await.is_err(),
            "{name}"
        );
    }
}

/// `src` networks and `allowed_connection_types` decide who may log in;
/// an expiring user JWT is disconnected when it expires, with the
/// reference's error.
#[tokio::test]
async fn source_networks_connection_types_and_expiry() {
    let trust = Trust::new("restrictions");
    let server = start(&trust.config(json!({})));
    let url = server.url();
    for (name, nats, allowed) in [
        ("src-other.creds", json!({"src": ["10.0.0.0/8"]}), false),
        (
            "src-local.creds",
            json!({"src": ["10.0.0.0/8", "127.0.0.0/8"]}),
            true,
        ),
        (
            "src-bad.creds",
            json!({"src": ["not-a-network", "127.0.0.0/8"]}),
            false,
        ),
        (
            "ws-only.creds",
            json!({"allowed_connection_types": ["WEBSOCKET"]}),
            false,
        ),
        (
            "standard.creds",
            json!({"allowed_connection_types": ["STANDARD", "WEBSOCKET"]}),
            true,
        ),
        (
            "unknown-type.creds",
            json!({"allowed_connection_types": ["CARRIER_PIGEON"]}),
            false,
        ),
    ] {
        let (_, creds) = trust.creds(name, &trust.account, nats, json!({}));
        assert_eq!(connect_creds(&url, &creds).await.is_ok(), allowed, "{name}");
    }

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (_, expiring) = trust.creds(
        "exp.creds",
        &trust.account,
        json!({}),
        json!({"exp": now + 3}),
    );
    let (options, mut errors) = with_errors(&expiring).await;
    let _client = within("an expiring user's connect", options.connect(&url))
        .await
        .unwrap();
    let error = tokio::time::timeout(std::time::Duration::from_secs(15), errors.recv())
        .await
        .expect("disconnected at expiry")
        .unwrap();
    assert!(error.contains("User Authentication Expired"), "{error}");
}

/// `/varz` names the trusted operators (their JWTs and claims) and the
/// system account as the reference does.
#[test]
fn varz_shows_the_trusted_operators() {
    let trust = Trust::new("varz");
    let config = trust.config(json!({}));
    let args = ["-c", config.to_str().unwrap(), "-m", "-1"];
    let varz = |server: &ServerProcess| rnats_tests::http_json(server.http_port(), "/varz");
    let ours = varz(&ServerProcess::start(&args));
    let token = std::fs::read_to_string(trust.dir.join("operator.jwt")).unwrap();
    assert_eq!(ours["trusted_operators_jwt"], json!([token]));
    assert_eq!(
        ours["trusted_operators_claim"][0]["sub"],
        json!(trust.operator.public_key())
    );
    assert_eq!(ours["system_account"], json!(trust.system.public_key()));
    if let Some(reference) = rnats_tests::reference_server() {
        let theirs = varz(&ServerProcess::start_binary(reference, &args));
        for key in [
            "trusted_operators_jwt",
            "trusted_operators_claim",
            "system_account",
        ] {
            assert_eq!(ours[key], theirs[key], "{key}");
        }
    }
}

/// Options for a creds file that forward the server's `-ERR`s.
async fn with_errors(
    creds: &Path,
) -> (ConnectOptions, tokio::sync::mpsc::UnboundedReceiver<String>) {
    common::forward_errors(ConnectOptions::with_credentials_file(creds).await.unwrap())
}

/// The account's and the user's `subs`, `payload` and `conn` limits, as
/// the reference applies them.
#[tokio::test]
async fn account_and_user_limits() {
    let trust = Trust::new("limits");
    let server = start(
        &trust.config(json!({"limits": {"subs": 3, "data": -1, "payload": 100,
        "imports": -1, "exports": -1, "wildcards": true, "conn": 2, "leaf": -1}})),
    );
    let url = server.url();
    // The user's own limit is lower than the account's: it wins.
    let (_, two_subs) = trust.creds("two.creds", &trust.account, json!({"subs": 2}), json!({}));
    let (options, mut errors) = with_errors(&two_subs).await;
    let client = within("connect", options.connect(&url)).await.unwrap();
    let _a = client.subscribe("a").await.unwrap();
    let _b = client.subscribe("b").await.unwrap();
    let _c = client.subscribe("c").await.unwrap();
    let error = within("the subscription error", errors.recv())
        .await
        .unwrap();
    assert!(error.contains("maximum subscriptions exceeded"), "{error}");

    // The account's payload limit: a larger message closes the connection.
    let (_, plain) = trust.creds("plain.creds", &trust.account, json!({}), json!({}));
    let (options, mut errors) = with_errors(&plain).await;
    let publisher = within("connect", options.connect(&url)).await.unwrap();
    publisher
        .publish("small", Bytes::from(vec![b'x'; 100]))
        .await
        .unwrap();
    publisher
        .publish("big", Bytes::from(vec![b'x'; 101]))
        .await
        .unwrap();
    // The server closes the connection: a flush may never complete.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), publisher.flush()).await;
    let error = within("the payload error", errors.recv()).await.unwrap();
    assert!(error.contains("Maximum Payload Violation"), "{error}");

    drop(client);

    // The account's `conn` limit: with one client connected, the next is
    // refused.
    let trust = Trust::new("conn");
    let server = start(
        &trust.config(json!({"limits": {"subs": -1, "data": -1, "payload": -1,
        "imports": -1, "exports": -1, "wildcards": true, "conn": 1, "leaf": -1}})),
    );
    let (_, creds) = trust.creds("one.creds", &trust.account, json!({}), json!({}));
    let _first = connect_creds(&server.url(), &creds).await.unwrap();
    let second = connect_creds(&server.url(), &creds).await;
    assert!(
        second.is_err(),
        "a second connection of the account was admitted"
    );
}

/// A request on a system subject, answered as JSON.
async fn claims_request(
    client: &async_nats::Client,
    subject: String,
    body: String,
) -> serde_json::Value {
    let reply = within(
        "a claims update reply",
        client.request(subject, body.into()),
    )
    .await
    .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// An account JWT sent to `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` (or the
/// older `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`) replaces the account's claims
/// while the server runs: new mappings apply, revoked users are
/// disconnected, bad updates are answered with the reference's errors.
#[tokio::test]
async fn account_claims_update_at_run_time() {
    let trust = Trust::new("claims-update");
    let server = start(&trust.config(json!({})));
    let url = server.url();
    let system_creds = trust.system_creds();
    let system = connect_creds(&url, &system_creds).await.unwrap();

    let (doomed, doomed_creds) = trust.creds("doomed.creds", &trust.account, json!({}), json!({}));
    let (options, mut doomed_errors) = with_errors(&doomed_creds).await;
    let _doomed = within("the doomed user's connect", options.connect(&url))
        .await
        .unwrap();
    let (_, kept_creds) = trust.creds("kept.creds", &trust.account, json!({}), json!({}));
    let kept = connect_creds(&url, &kept_creds).await.unwrap();
    let mut bar = kept.subscribe("bar").await.unwrap();
    sync_with_server(&kept).await;

    let account = trust.account.public_key();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let updated = jwt::account(
        &trust.operator,
        &trust.account,
        json!({
            "revocations": {doomed.public_key(): now},
            "mappings": {"foo": [{"subject": "bar", "weight": 100}]},
        }),
    );
    let answer = claims_request(
        &system,
        format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.UPDATE"),
        updated.clone(),
    )
    .await;
    assert_eq!(
        answer["data"],
        json!({"account": account, "code": 200, "message": "jwt updated"}),
        "{answer}"
    );
    assert!(answer["server"]["id"].is_string(), "{answer}");
    let error = tokio::time::timeout(std::time::Duration::from_secs(10), doomed_errors.recv())
        .await
        .expect("the revoked user is told")
        .unwrap();
    assert!(error.contains("User Authentication Revoked"), "{error}");

    // The mapping applies to the user who stayed.
    kept.publish("foo", Bytes::from("mapped")).await.unwrap();
    let message = next_message(&mut bar).await;
    assert_eq!(
        (message.subject.as_str(), &message.payload[..]),
        ("bar", &b"mapped"[..])
    );

    // The same JWT again changes nothing and is answered as an update.
    let again = claims_request(
        &system,
        format!("$SYS.ACCOUNT.{account}.CLAIMS.UPDATE"),
        updated,
    )
    .await;
    assert_eq!(again["data"]["message"], "jwt updated", "{again}");

    // Refusals, in the reference's words.
    let subject = format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.UPDATE");
    let empty = claims_request(&system, subject.clone(), String::new()).await;
    assert_eq!(
        empty["error"],
        json!({"account": account, "code": 500,
               "description": "jwt update error - request body is empty"}),
        "{empty}"
    );
    let garbage = claims_request(&system, subject.clone(), "garbage".into()).await;
    assert_eq!(garbage["error"]["code"], 500, "{garbage}");
    let description = garbage["error"]["description"].as_str().unwrap();
    assert_eq!(
        description,
        "jwt update resulted in error - expected 3 chunks"
    );
    let other = nkeys::KeyPair::new_account();
    let mismatched = claims_request(
        &system,
        subject.clone(),
        jwt::account(&trust.operator, &other, json!({})),
    )
    .await;
    assert_eq!(
        mismatched["error"]["description"],
        "jwt update resulted in error - subject does not match jwt content",
        "{mismatched}"
    );
    let untrusted = claims_request(
        &system,
        subject,
        jwt::account(&nkeys::KeyPair::new_operator(), &trust.account, json!({})),
    )
    .await;
    assert_eq!(
        untrusted["error"]["description"],
        "jwt update resulted in error - account validation failed",
        "{untrusted}"
    );
    let unknown = claims_request(
        &system,
        format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", other.public_key()),
        jwt::account(&trust.operator, &other, json!({})),
    )
    .await;
    // A lower `conn` limit closes the newest clients over it.
    let (_, late_creds) = trust.creds("late.creds", &trust.account, json!({}), json!({}));
    let (options, mut late_errors) = with_errors(&late_creds).await;
    let _late = within("a later user's connect", options.connect(&url))
        .await
        .unwrap();
    let limits = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1,
                        "exports": -1, "wildcards": true, "conn": 1, "leaf": -1});
    let limited = jwt::account(&trust.operator, &trust.account, json!({"limits": limits}));
    let answer = claims_request(
        &system,
        format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.UPDATE"),
        limited,
    )
    .await;
    assert_eq!(answer["data"]["message"], "jwt updated", "{answer}");
    let error = tokio::time::timeout(std::time::Duration::from_secs(10), late_errors.recv())
        .await
        .expect("the newest user is closed")
        .unwrap();
    assert!(
        error
            .to_lowercase()
            .contains("maximum account active connections exceeded"),
        "{error}"
    );
    let mut again = kept.subscribe("still").await.unwrap();
    kept.publish("still", Bytes::from("here")).await.unwrap();
    assert_eq!(next_message(&mut again).await.payload, "here");

    // An account the server does not hold is not taken in from an update.
    assert_eq!(
        unknown["data"],
        json!({"account": other.public_key(), "code": 200, "message": "jwt update skipped"}),
        "{unknown}"
    );
}

/// The full (directory) resolver, as `nsc generate config --nats-resolver`
/// sets it up: accounts pushed with `$SYS.REQ.CLAIMS.UPDATE` are stored as
/// `<dir>/<key>.jwt`, used at once, kept across a restart, looked up,
/// listed, and deleted by the operator.
#[tokio::test]
async fn full_resolver_stores_pushed_accounts() {
    let trust = Trust::new("full-resolver");
    let operator_jwt = jwt::operator(
        &trust.operator,
        json!({"system_account": trust.system.public_key()}),
    );
    let operator_path = trust.dir.join("operator.jwt");
    std::fs::write(&operator_path, &operator_jwt).unwrap();
    let jwt_dir = trust.dir.join("jwt");
    let _ = std::fs::remove_dir_all(&jwt_dir);
    let system_jwt = jwt::account(&trust.operator, &trust.system, json!({}));
    let config = trust.dir.join("full.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {operator}\nsystem_account: {system}\n\
             resolver: {{ type: full, dir: {dir:?}, allow_delete: true, interval: \"2m\", timeout: \"1.9s\" }}\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n}}\n",
            operator = operator_path.display(),
            system = trust.system.public_key(),
            dir = jwt_dir.display().to_string(),
        ),
    )
    .unwrap();
    let mut server = start(&config);
    let url = server.url();
    assert!(
        server
            .log_lines()
            .iter()
            .any(|line| line.contains("Managing all jwt in exclusive directory")),
        "{:?}",
        server.log_lines()
    );
    let system_creds = trust.system_creds();
    let system = connect_creds(&url, &system_creds).await.unwrap();

    // Account A is unknown until pushed.
    let (_, creds) = trust.creds("a.creds", &trust.account, json!({}), json!({}));
    assert!(connect_creds(&url, &creds).await.is_err());
    let account = trust.account.public_key();
    let account_jwt = jwt::account(&trust.operator, &trust.account, json!({}));
    let pushed = claims_request(
        &system,
        "$SYS.REQ.CLAIMS.UPDATE".into(),
        account_jwt.clone(),
    )
    .await;
    assert_eq!(
        pushed["data"],
        json!({"account": account, "code": 200, "message": "jwt updated"}),
        "{pushed}"
    );
    let stored = std::fs::read_to_string(jwt_dir.join(format!("{account}.jwt"))).unwrap();
    assert_eq!(stored, account_jwt);
    let client = connect_creds(&url, &creds).await.unwrap();
    let mut sub = client.subscribe("greet").await.unwrap();
    client.publish("greet", Bytes::from("hi")).await.unwrap();
    assert_eq!(next_message(&mut sub).await.payload, "hi");

    // Lookup answers with the JWT itself, or nothing.
    let lookup = within(
        "a lookup",
        system.request(
            format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.LOOKUP"),
            "".into(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(lookup.payload, account_jwt.as_bytes());
    let stranger = nkeys::KeyPair::new_account().public_key();
    let missing = within(
        "a lookup of an unknown account",
        system.request(
            format!("$SYS.REQ.ACCOUNT.{stranger}.CLAIMS.LOOKUP"),
            "".into(),
        ),
    )
    .await
    .unwrap();
    assert!(missing.payload.is_empty());
    let list = claims_request(&system, "$SYS.REQ.CLAIMS.LIST".into(), String::new()).await;
    let mut expected = vec![account.clone(), trust.system.public_key()];
    expected.sort();
    let mut listed: Vec<String> = serde_json::from_value(list["data"].clone()).unwrap();
    listed.sort();
    assert_eq!(listed, expected, "{list}");

    // Bad pushes, in the reference's words.
    let garbage = claims_request(&system, "$SYS.REQ.CLAIMS.UPDATE".into(), "garbage".into()).await;
    assert_eq!(
        garbage["error"],
        json!({"account": "n/a", "code": 500,
               "description": "jwt update resulted in error - expected 3 chunks"}),
        "{garbage}"
    );

    // The account survives a restart (it is read back from the directory).
    drop(client);
    drop(system);
    server.restart();
    let url = server.url();
    let client = connect_creds(&url, &creds).await.unwrap();
    let (options, mut errors) = with_errors(&creds).await;
    let _watched = within("a watched connect", options.connect(&url))
        .await
        .unwrap();
    let system = connect_creds(&url, &system_creds).await.unwrap();

    // Only the operator deletes, and only with allow_delete.
    let by_account = jwt::encode(
        &trust.account,
        &account,
        "generic",
        json!({"accounts": [account]}),
        json!({}),
    );
    let refused = claims_request(&system, "$SYS.REQ.CLAIMS.DELETE".into(), by_account).await;
    assert_eq!(
        refused["error"],
        json!({"code": 500,
               "description": format!("delete accounts request by {account} failed - not trusted")}),
        "{refused}"
    );
    let request = jwt::encode(
        &trust.operator,
        &trust.operator.public_key(),
        "generic",
        json!({"accounts": [account]}),
        json!({}),
    );
    let deleted = claims_request(&system, "$SYS.REQ.CLAIMS.DELETE".into(), request).await;
    assert_eq!(
        deleted["data"],
        json!({"code": 200, "message": "deleted 1 accounts"}),
        "{deleted}"
    );
    let error = tokio::time::timeout(std::time::Duration::from_secs(10), errors.recv())
        .await
        .expect("a deleted account's clients are told")
        .unwrap();
    assert!(error.contains("Account Authentication Expired"), "{error}");
    assert!(!jwt_dir.join(format!("{account}.jwt")).exists());
    assert!(jwt_dir.join(format!("{account}.jwt.deleted")).exists());
    drop(client);
    assert!(connect_creds(&url, &creds).await.is_err());
}

/// JetStream in operator mode: an account's JetStream limits come from its
/// JWT (JetStream is off for an account whose JWT grants none), and a
/// claims update changes them while the server runs.
#[tokio::test]
async fn jetstream_limits_come_from_the_account_jwt() {
    let trust = Trust::new("jetstream");
    let store = trust.dir.join("js");
    let _ = std::fs::remove_dir_all(&store);
    let js_limits = |streams: i64| {
        json!({"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                          "exports": -1, "wildcards": true, "conn": -1, "leaf": -1,
                          "mem_storage": -1, "disk_storage": -1, "streams": streams,
                          "consumer": -1}})
    };
    let config = trust.config(js_limits(1));
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "jetstream {{ store_dir: {:?} }}\n",
        store.display().to_string()
    ));
    // A second account without JetStream.
    let plain = nkeys::KeyPair::new_account();
    let plain_jwt = jwt::account(&trust.operator, &plain, json!({}));
    text = text.replace(
        "resolver_preload: {\n",
        &format!(
            "resolver_preload: {{\n  {}: {plain_jwt}\n",
            plain.public_key()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let server = start(&config);
    let url = server.url();

    let (_, creds) = trust.creds("js.creds", &trust.account, json!({}), json!({}));
    let client = connect_creds(&url, &creds).await.unwrap();
    let info = common::js_api(&client, "$JS.API.INFO", json!({})).await;
    assert_eq!(info["limits"]["max_streams"], 1, "{info}");
    let create =
        |name: &str| json!({"name": name, "subjects": [format!("{name}.>")], "storage": "file"});
    let first = common::js_api(&client, "$JS.API.STREAM.CREATE.ONE", create("ONE")).await;
    assert!(first["error"].is_null(), "{first}");
    let second = common::js_api(&client, "$JS.API.STREAM.CREATE.TWO", create("TWO")).await;
    assert_eq!(second["error"]["err_code"], 10027, "{second}");

    let (_, plain_creds) = trust.creds("plain.creds", &plain, json!({}), json!({}));
    let plain_client = connect_creds(&url, &plain_creds).await.unwrap();
    let refused = common::js_api(&plain_client, "$JS.API.INFO", json!({})).await;
    assert_eq!(refused["error"]["err_code"], 10039, "{refused}");

    // More streams, granted at run time.
    let system = connect_creds(&url, &trust.system_creds()).await.unwrap();
    let account = trust.account.public_key();
    let raised = jwt::account(&trust.operator, &trust.account, js_limits(2));
    let answer = claims_request(
        &system,
        format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.UPDATE"),
        raised,
    )
    .await;
    assert_eq!(answer["data"]["message"], "jwt updated", "{answer}");
    let mut second = json!(null);
    for _ in 0..50 {
        second = common::js_api(&client, "$JS.API.STREAM.CREATE.TWO", create("TWO")).await;
        if second["error"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(second["error"].is_null(), "{second}");
    let info = common::js_api(&client, "$JS.API.INFO", json!({})).await;
    assert_eq!(
        (
            info["limits"]["max_streams"].clone(),
            info["streams"].clone()
        ),
        (json!(2), json!(2)),
        "{info}"
    );
}

/// A scoped signing key: users it signs get the scope's template (with
/// `{{name()}}`, `{{subject()}}`, `{{account-name()}}`,
/// `{{account-subject()}}`, `{{tag(x)}}` filled in from the JWTs) instead
/// of claims of their own, and a user carrying claims of its own is refused.
#[tokio::test]
async fn scoped_signing_keys_apply_their_template() {
    let trust = Trust::new("scoped");
    let scoped = nkeys::KeyPair::new_account();
    let server = start(&trust.config(json!({
        "tags": ["region:eu"],
        "signing_keys": [{
            "kind": "user_scope",
            "key": scoped.public_key(),
            "role": "team",
            "template": {
                "pub": {"allow": ["_INBOX.>", "{{name()}}.>", "{{tag(team)}}.>",
                                  "acct.{{account-subject()}}"]},
                "sub": {"allow": ["_INBOX.>", "{{name()}}.>", "{{tag(team)}}.>",
                                  "{{account-tag(region)}}.>", "{{tag(missing)}}.x"],
                        "deny": ["{{name()}}.secret"]},
                "subs": -1, "data": -1, "payload": -1
            }
        }],
    })));
    let url = server.url();
    let account = trust.account.public_key();

    // A user with no claims of its own, signed by the scoped key.
    let alice = nkeys::KeyPair::new_user();
    let token = jwt::encode(
        &scoped,
        &alice.public_key(),
        "user",
        json!({"issuer_account": account, "tags": ["team:red", "team:blue"]}),
        json!({"name": "alice"}),
    );
    let creds = trust.dir.join("alice.creds");
    std::fs::write(&creds, jwt::creds(&token, &alice)).unwrap();
    let (options, mut errors) = with_errors(&creds).await;
    let client = within("alice's connect", options.connect(&url))
        .await
        .unwrap();

    let mut own = client.subscribe("alice.>").await.unwrap();
    let mut team = client.subscribe("blue.>").await.unwrap();
    let mut region = client.subscribe("eu.>").await.unwrap();
    sync_with_server(&client).await;
    for subject in [
        "alice.one",
        "red.two",
        "blue.three",
        &format!("acct.{account}"),
    ] {
        client
            .publish(subject.to_string(), Bytes::from("x"))
            .await
            .unwrap();
    }
    client.publish("bob.four", Bytes::from("x")).await.unwrap();
    sync_with_server(&client).await;
    assert_eq!(next_message(&mut own).await.subject.as_str(), "alice.one");
    assert_eq!(next_message(&mut team).await.subject.as_str(), "blue.three");
    let error = tokio::time::timeout(std::time::Duration::from_secs(5), errors.recv())
        .await
        .expect("a publish outside the template is refused")
        .unwrap();
    assert!(
        error.contains("Permissions Violation for Publish to \"bob.four\""),
        "{error}"
    );
    let _ = client.subscribe("alice.secret").await.unwrap();
    sync_with_server(&client).await;
    let error = tokio::time::timeout(std::time::Duration::from_secs(5), errors.recv())
        .await
        .expect("a denied subscription is refused")
        .unwrap();
    assert!(
        error.contains("Permissions Violation for Subscription to \"alice.secret\""),
        "{error}"
    );
    drop(region.unsubscribe().await);

    // Claims of its own: refused.
    let bob = nkeys::KeyPair::new_user();
    let token = jwt::encode(
        &scoped,
        &bob.public_key(),
        "user",
        json!({"issuer_account": account, "pub": {"allow": [">"]}}),
        json!({"name": "bob"}),
    );
    let creds = trust.dir.join("bob.creds");
    std::fs::write(&creds, jwt::creds(&token, &bob)).unwrap();
    assert!(connect_creds(&url, &creds).await.is_err());
}

/// `/connz?auth=1` and `/accountz?acc=` show what the JWTs say, as the
/// reference shows it.
#[tokio::test]
async fn monitoring_shows_jwt_data() {
    let trust = Trust::new("monitoring");
    let config =
        trust.config(json!({"tags": ["team:red"], "revocations": {"UREVOKED": 1_700_000_001i64}}));
    let server = ServerProcess::start_binary(
        rnats_tests::server_under_test(),
        &["-c", config.to_str().unwrap(), "-m", "-1"],
    );
    let user = nkeys::KeyPair::new_user();
    let token = jwt::user(
        &trust.account,
        &user,
        json!({"tags": ["role:dev"]}),
        json!({"name": "dev-user"}),
    );
    let creds = trust.dir.join("monitor.creds");
    std::fs::write(&creds, jwt::creds(&token, &user)).unwrap();
    let client = connect_creds(&server.url(), &creds).await.unwrap();
    sync_with_server(&client).await;
    let account = trust.account.public_key();

    let connz = rnats_tests::http_json(server.http_port(), "/connz?auth=1");
    let conn = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["account"] == account.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{connz}"));
    assert_eq!(conn["authorized_user"], user.public_key(), "{conn}");
    assert_eq!(conn["jwt"], token, "{conn}");
    assert_eq!(conn["issuer_key"], account, "{conn}");
    assert_eq!(conn["name_tag"], "account", "{conn}");
    assert_eq!(conn["tags"], json!(["role:dev"]), "{conn}");

    // A closed client keeps its JWT facts (shown without `auth` too).
    drop(client);
    let mut closed = json!(null);
    for _ in 0..100 {
        let connz = rnats_tests::http_json(server.http_port(), "/connz?state=closed");
        if let Some(first) = connz["connections"].as_array().and_then(|l| l.first()) {
            closed = first.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(closed["jwt"], token, "{closed}");
    assert_eq!(closed["issuer_key"], account, "{closed}");
    assert_eq!(closed["tags"], json!(["role:dev"]), "{closed}");
    assert_eq!(closed["name_tag"], "dev-user", "{closed}");

    let accountz = rnats_tests::http_json(server.http_port(), &format!("/accountz?acc={account}"));
    let detail = &accountz["account_detail"];
    assert_eq!(
        detail["issuer_key"],
        trust.operator.public_key(),
        "{detail}"
    );
    assert_eq!(detail["name_tag"], "account", "{detail}");
    assert_eq!(detail["tags"], json!(["team:red"]), "{detail}");
    assert_eq!(detail["decoded_jwt"]["sub"], account, "{detail}");
    assert_eq!(
        detail["decoded_jwt"]["nats"]["tags"],
        json!(["team:red"]),
        "{detail}"
    );
    assert_eq!(
        detail["revoked_user"],
        json!({"UREVOKED": "2023-11-14T22:13:21Z"}),
        "{detail}"
    );
    let jwt = detail["jwt"].as_str().unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwt.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], account, "{detail}");
}
