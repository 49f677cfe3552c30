//! Black-box tests of authentication, authorization and accounts with the
//! official async-nats client, each server started from a nats-server config
//! file. Run against the reference with
//! `RNATS_TEST_SERVER_BIN=nats-server cargo test -p rnats-tests --test security`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{ConnectOptions, Event, ServerError};
use bytes::Bytes;
use common::{connect_with, drain_ready, next_message, sync_with_server, within};
use futures::StreamExt;
use rnats_tests::ServerProcess;
use tokio::sync::mpsc;

/// A config file in a fresh directory of its own.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-security-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, text).unwrap();
    path
}

fn start_with(name: &str, text: &str) -> (ServerProcess, PathBuf) {
    let path = config_file(name, text);
    let server = ServerProcess::start(&["-c", path.to_str().unwrap()]);
    (server, path)
}

fn user(name: &str, password: &str) -> ConnectOptions {
    ConnectOptions::with_user_and_password(name.into(), password.into()).max_reconnects(Some(1))
}

/// Whether the server refuses a connection made with `options` (async-nats
/// does not retry a first connect unless asked to).
async fn refused(url: &str, options: ConnectOptions) -> bool {
    within("a refused connect", options.connect(url))
        .await
        .is_err()
}

/// Options that forward the server's `-ERR`s to a channel.
fn with_errors(options: ConnectOptions) -> (ConnectOptions, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let options = options.event_callback(move |event| {
        let tx = tx.clone();
        async move {
            if let Event::ServerError(ServerError::Other(text)) = event {
                let _ = tx.send(text);
            }
        }
    });
    (options, rx)
}

async fn next_error(errors: &mut mpsc::UnboundedReceiver<String>) -> String {
    within("a server error", errors.recv())
        .await
        .expect("error channel open")
}

#[tokio::test]
async fn users_with_plain_and_bcrypt_passwords_and_nkeys() {
    let nkey_user = nkeys::KeyPair::new_user();
    let config = format!(
        r#"
authorization {{
  users: [
    {{ user: plain, password: pw }}
    # bcrypt of "s3cret"
    {{ user: hashed, password: "$2b$04$D0i1eDzJNUp9uPAroojmku01xRRBQdgDR86CsiOL0edwXWTxLfOOO" }}
    {{ nkey: {} }}
  ]
}}
"#,
        nkey_user.public_key()
    );
    let (server, _) = start_with("users", &config);
    let url = server.url();
    for (name, password) in [("plain", "pw"), ("hashed", "s3cret")] {
        let client = connect_with(&url, user(name, password)).await;
        client.flush().await.unwrap();
    }
    assert!(refused(&url, user("plain", "wrong")).await);
    assert!(refused(&url, user("hashed", "pw")).await);
    assert!(refused(&url, user("nobody", "pw")).await);
    assert!(refused(&url, ConnectOptions::new()).await);

    let nkey = connect_with(&url, ConnectOptions::with_nkey(nkey_user.seed().unwrap())).await;
    nkey.flush().await.unwrap();
    // A valid key pair the server does not know.
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    assert!(refused(&url, ConnectOptions::with_nkey(stranger)).await);
}

#[tokio::test]
async fn token_authentication() {
    let (server, _) = start_with("token", "authorization { token: t0ken }\n");
    let client = connect_with(&server.url(), ConnectOptions::with_token("t0ken".into())).await;
    client.flush().await.unwrap();
    assert!(refused(&server.url(), ConnectOptions::with_token("nope".into())).await);
}

#[tokio::test]
async fn no_auth_user_takes_clients_without_credentials() {
    let (server, _) = start_with(
        "noauth",
        "no_auth_user: anon\nauthorization { users: [ {user: anon, password: x, permissions: { publish: \"open.>\" }}, {user: bob, password: pw} ] }\n",
    );
    let (options, mut errors) = with_errors(ConnectOptions::new());
    let anon = connect_with(&server.url(), options).await;
    assert!(!anon.server_info().auth_required);
    anon.publish("closed", Bytes::new()).await.unwrap();
    assert_eq!(
        next_error(&mut errors).await,
        "Permissions Violation for Publish to \"closed\""
    );
    assert!(refused(&server.url(), user("bob", "bad")).await);
}

const PERMISSIONS: &str = r#"
authorization {
  default_permissions: { publish: "default.>" }
  users: [
    { user: u, password: pw, permissions: {
        # _INBOX.> lets the test's fences (sync_with_server) through.
        publish: { allow: ["foo.>", "_INBOX.>"], deny: ["foo.no"] }
        subscribe: { allow: ["foo.*", "jobs.> workers", "_INBOX.>"], deny: ["foo.secret"] }
    } }
    { user: root, password: pw, permissions: { publish: ">", subscribe: ">" } }
    { user: d, password: pw }
  ]
}
"#;

#[tokio::test]
async fn publish_and_subscribe_permissions() {
    let (server, _) = start_with("perms", PERMISSIONS);
    let (options, mut errors) = with_errors(user("u", "pw"));
    let u = connect_with(&server.url(), options).await;
    let root = connect_with(&server.url(), user("root", "pw")).await;

    u.publish("foo.no", Bytes::new()).await.unwrap();
    assert_eq!(
        next_error(&mut errors).await,
        "Permissions Violation for Publish to \"foo.no\""
    );
    u.publish("elsewhere", Bytes::new()).await.unwrap();
    assert_eq!(
        next_error(&mut errors).await,
        "Permissions Violation for Publish to \"elsewhere\""
    );

    let _denied = u.subscribe("bar").await.unwrap();
    assert_eq!(
        next_error(&mut errors).await,
        "Permissions Violation for Subscription to \"bar\""
    );
    let _other_queue = u.queue_subscribe("jobs.x", "others".into()).await.unwrap();
    assert_eq!(
        next_error(&mut errors).await,
        "Permissions Violation for Subscription to \"jobs.x\" using queue \"others\""
    );

    // Allowed subscriptions work; the deny list filters a wildcard's deliveries.
    let mut wildcard = u.subscribe("foo.*").await.unwrap();
    let mut workers = u.queue_subscribe("jobs.x", "workers".into()).await.unwrap();
    sync_with_server(&u).await;
    for subject in ["foo.secret", "foo.public", "jobs.x"] {
        root.publish(subject, Bytes::from(subject)).await.unwrap();
    }
    sync_with_server(&root).await;
    assert_eq!(
        next_message(&mut wildcard).await.subject.as_str(),
        "foo.public"
    );
    assert_eq!(next_message(&mut workers).await.subject.as_str(), "jobs.x");
    sync_with_server(&u).await;
    assert!(
        drain_ready(&mut wildcard).is_empty(),
        "foo.secret was not delivered"
    );

    // The connection survived every violation.
    u.publish("foo.ok", Bytes::new()).await.unwrap();
    u.flush().await.unwrap();
    assert_eq!(
        u.connection_state(),
        async_nats::connection::State::Connected
    );

    // Default permissions for a user without its own.
    let (options, mut errors) = with_errors(user("d", "pw"));
    let d = connect_with(&server.url(), options).await;
    d.publish("default.ok", Bytes::new()).await.unwrap();
    d.publish("x", Bytes::new()).await.unwrap();
    assert_eq!(
        next_error(&mut errors).await,
        "Permissions Violation for Publish to \"x\""
    );
}

#[tokio::test]
async fn allow_responses_lets_a_service_answer_requests() {
    let (server, _) = start_with(
        "responses",
        "authorization { users: [ {user: svc, password: pw, permissions: { subscribe: \"time\", allow_responses: true }}, {user: cli, password: pw} ] }\n",
    );
    let svc = connect_with(&server.url(), user("svc", "pw")).await;
    let cli = connect_with(&server.url(), user("cli", "pw")).await;
    let mut requests = svc.subscribe("time").await.unwrap();
    // svc may not publish to an inbox, so no fence: it answers every request,
    // and the client asks until the subscription is in place.
    let responder = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let reply = request.reply.unwrap();
            svc.publish(reply, Bytes::from("noon")).await.unwrap();
            svc.flush().await.unwrap();
        }
    });
    let response = within("the response", async {
        loop {
            let request = cli.send_request(
                "time",
                async_nats::Request::new().timeout(Some(Duration::from_millis(200))),
            );
            if let Ok(response) = request.await {
                break response;
            }
        }
    })
    .await;
    assert_eq!(response.payload, Bytes::from("noon"));
    responder.abort();
}

const ACCOUNTS: &str = r#"
accounts {
  PROVIDER: {
    users: [ {user: provider, password: pw} ]
    exports: [
      { stream: "feed.>" }
      { service: "svc.time" }
      { stream: "private.>", accounts: [ OTHER ] }
    ]
  }
  CONSUMER: {
    users: [ {user: consumer, password: pw} ]
    imports: [
      { stream: { account: PROVIDER, subject: "feed.>" }, prefix: provider }
      { service: { account: PROVIDER, subject: "svc.time" }, to: "time" }
    ]
  }
  OTHER: { users: [ {user: other, password: pw} ] }
}
"#;

/// The `Nats-Request-Info` header a request crossing an import carries.
fn request_info_header(request: &async_nats::Message) -> String {
    request
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Request-Info"))
        .map(|v| v.as_str().to_string())
        .expect("a Nats-Request-Info header")
}

#[tokio::test]
async fn accounts_are_isolated_and_share_through_exports() {
    let (server, _) = start_with("accounts", ACCOUNTS);
    let provider = connect_with(&server.url(), user("provider", "pw")).await;
    let consumer = connect_with(&server.url(), user("consumer", "pw")).await;
    let other = connect_with(&server.url(), user("other", "pw")).await;

    // Isolation: the same subject in two accounts are two subjects.
    let mut other_x = other.subscribe("x").await.unwrap();
    let mut consumer_x = consumer.subscribe("x").await.unwrap();
    sync_with_server(&other).await;
    sync_with_server(&consumer).await;
    provider.publish("x", Bytes::from("p")).await.unwrap();
    consumer.publish("x", Bytes::from("c")).await.unwrap();
    sync_with_server(&provider).await;
    sync_with_server(&consumer).await;
    assert_eq!(
        next_message(&mut consumer_x).await.payload,
        Bytes::from("c")
    );
    sync_with_server(&other).await;
    assert!(drain_ready(&mut other_x).is_empty());
    assert!(drain_ready(&mut consumer_x).is_empty());

    // A stream import, under its prefix.
    let mut feed = consumer.subscribe("provider.feed.>").await.unwrap();
    sync_with_server(&consumer).await;
    provider
        .publish("feed.news", Bytes::from("extra"))
        .await
        .unwrap();
    sync_with_server(&provider).await;
    let message = next_message(&mut feed).await;
    assert_eq!(message.subject.as_str(), "provider.feed.news");
    assert_eq!(message.payload, Bytes::from("extra"));

    // A service import: the request crosses, the response comes back.
    let mut service = provider.subscribe("svc.time").await.unwrap();
    sync_with_server(&provider).await;
    let provider_clone = provider.clone();
    let responder = tokio::spawn(async move {
        let request = service.next().await.unwrap();
        assert_eq!(request.subject.as_str(), "svc.time");
        // The reference tells the service who asked.
        let info = request_info_header(&request);
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["acc"], "CONSUMER", "{info}");
        provider_clone
            .publish(request.reply.unwrap(), Bytes::from("noon"))
            .await
            .unwrap();
        provider_clone.flush().await.unwrap();
    });
    let response = within("the response", consumer.request("time", Bytes::new()))
        .await
        .unwrap();
    assert_eq!(response.payload, Bytes::from("noon"));
    responder.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_adds_and_removes_users() {
    let (server, path) = start_with(
        "reload-users",
        "authorization { users: [ {user: alice, password: pw}, {user: bob, password: pw} ] }\n",
    );
    let alice = connect_with(&server.url(), user("alice", "pw")).await;
    let bob = connect_with(&server.url(), user("bob", "pw")).await;
    assert!(refused(&server.url(), user("carol", "pw")).await);

    std::fs::write(
        &path,
        "authorization { users: [ {user: alice, password: pw}, {user: carol, password: pw} ] }\n",
    )
    .unwrap();
    server.signal("HUP");

    within("bob to be cut off", async {
        while bob.connection_state() == async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let carol = connect_with(&server.url(), user("carol", "pw")).await;
    carol.flush().await.unwrap();
    alice.flush().await.unwrap();
    assert_eq!(
        alice.connection_state(),
        async_nats::connection::State::Connected
    );
}

const SHARED_IMPORT: &str = r#"
server_name: shared-info
accounts {
  PROVIDER: {
    users: [ {user: provider, password: pw} ]
    exports: [ { service: "svc.>" } ]
  }
  CONSUMER: {
    users: [ {user: consumer, password: pw} ]
    imports: [
      { service: { account: PROVIDER, subject: "svc.shared" }, share: true }
      { service: { account: PROVIDER, subject: "svc.plain" } }
    ]
  }
}
"#;

/// The `Nats-Request-Info` the provider's service receives for a request
/// on `subject` from the consumer account (named `the-consumer`), on a
/// server of `binary` with the accounts of `config`: its text.
async fn request_info_on(binary: PathBuf, config: &str, subject: &'static str) -> String {
    // One file per subject: each subject has its config (tests run at once).
    let path = config_file(&format!("request-info-{subject}"), config);
    let server = ServerProcess::start_binary(binary, &["-c", path.to_str().unwrap()]);
    let provider = connect_with(&server.url(), user("provider", "pw")).await;
    let consumer = connect_with(&server.url(), user("consumer", "pw").name("the-consumer")).await;
    let mut service = provider.subscribe(subject).await.unwrap();
    sync_with_server(&provider).await;
    let answering = provider.clone();
    let responder = tokio::spawn(async move {
        let request = service.next().await.unwrap();
        let info = request_info_header(&request);
        answering
            .publish(request.reply.unwrap(), Bytes::new())
            .await
            .unwrap();
        answering.flush().await.unwrap();
        info
    });
    within("the response", consumer.request(subject, Bytes::new()))
        .await
        .unwrap();
    responder.await.unwrap()
}

/// The fields of a request info in their order, with the values that
/// differ between servers and runs (times, ids, the client version)
/// reduced to their presence and the round trip (measured or not yet)
/// left out.
fn request_info_shape(text: &str) -> Vec<(String, String)> {
    let info: serde_json::Value = serde_json::from_str(text).unwrap();
    // serde_json's map is sorted: the order comes from the text (no value
    // here holds a quoted key followed by a colon).
    let keys = text
        .split('"')
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|pair| pair[1].starts_with(':'))
        .map(|pair| pair[0].to_string())
        .collect::<Vec<_>>();
    keys.into_iter()
        .filter(|key| key != "rtt")
        .map(|key| {
            let shown = match key.as_str() {
                "start" | "id" => "<set>".to_string(),
                "ver" => "<version>".to_string(),
                _ => info[&key].to_string(),
            };
            (key, shown)
        })
        .collect()
}

/// A service import with `share: true` hands the service the requester's
/// details (connection, user, client, this server), as the reference's
/// `getClientInfo(true)`; without it only the account (and round trip).
#[tokio::test]
async fn a_shared_service_import_tells_the_service_who_asked() {
    let shared = request_info_on(
        rnats_tests::rnats_server_binary().clone(),
        SHARED_IMPORT,
        "svc.shared",
    )
    .await;
    let shape = request_info_shape(&shared);
    let shared: serde_json::Value = serde_json::from_str(&shared).unwrap();
    let keys: Vec<&str> = shape.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "start",
            "host",
            "id",
            "acc",
            "user",
            "name",
            "lang",
            "ver",
            "server",
            "kind",
            "client_type"
        ],
        "{shared}"
    );
    assert_eq!(shared["acc"], "CONSUMER");
    assert_eq!(shared["user"], "consumer");
    assert_eq!(shared["name"], "the-consumer");
    assert_eq!(shared["host"], "127.0.0.1");
    assert_eq!(shared["server"], "shared-info");
    assert_eq!(shared["lang"], "rust");
    let plain = request_info_on(
        rnats_tests::rnats_server_binary().clone(),
        SHARED_IMPORT,
        "svc.plain",
    )
    .await;
    assert_eq!(
        request_info_shape(&plain),
        [("acc".to_string(), "\"CONSUMER\"".to_string())]
    );

    if let Some(reference) = rnats_tests::reference_server() {
        for subject in ["svc.shared", "svc.plain"] {
            let ours = request_info_on(
                rnats_tests::rnats_server_binary().clone(),
                SHARED_IMPORT,
                subject,
            )
            .await;
            let theirs = request_info_on(reference.clone(), SHARED_IMPORT, subject).await;
            assert_eq!(
                request_info_shape(&ours),
                request_info_shape(&theirs),
                "{subject}: ours {ours} reference {theirs}"
            );
        }
    }
}

const CHAINED_IMPORT: &str = r#"
server_name: chained-info
accounts {
  PROVIDER: {
    users: [ {user: provider, password: pw} ]
    exports: [ { service: "svc.>" } ]
  }
  MIDDLE: {
    users: [ {user: middle, password: pw} ]
    imports: [ { service: { account: PROVIDER, subject: "svc.>" } } ]
    exports: [ { service: "svc.>" } ]
  }
  CONSUMER: {
    users: [ {user: consumer, password: pw} ]
    imports: [ { service: { account: MIDDLE, subject: "svc.>" } } ]
  }
}
"#;

/// A request that crossed a second import keeps the first requester's
/// info and names the account it crossed from in `svc`, as the reference.
#[tokio::test]
async fn a_request_crossing_two_imports_names_the_first_requester() {
    let ours = request_info_on(
        rnats_tests::rnats_server_binary().clone(),
        CHAINED_IMPORT,
        "svc.chained",
    )
    .await;
    assert_eq!(
        request_info_shape(&ours),
        [
            ("acc".to_string(), "\"CONSUMER\"".to_string()),
            ("svc".to_string(), "\"MIDDLE\"".to_string())
        ],
        "{ours}"
    );
    if let Some(reference) = rnats_tests::reference_server() {
        let theirs = request_info_on(reference, CHAINED_IMPORT, "svc.chained").await;
        assert_eq!(
            request_info_shape(&ours),
            request_info_shape(&theirs),
            "ours {ours} reference {theirs}"
        );
    }
}
