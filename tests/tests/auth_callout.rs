//! Auth callout (`authorization { auth_callout { } }`) with the official
//! async-nats client: a callout service written here (async-nats + nkeys)
//! answers the server's authorization requests with user JWTs it signs,
//! optionally sealed with xkeys. Run against the reference with
//! `RNATS_TEST_SERVER_BIN=nats-server cargo test -p rnats-tests --test auth_callout`.

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::ConnectOptions;
use base64::Engine;
use bytes::Bytes;
use common::{next_message, sync_with_server, within};
use futures::StreamExt;
use rnats_tests::ServerProcess;
use serde_json::{json, Value};

/// A directory of its own for one test's files.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-callout-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The keys of one callout set-up: the issuer of the user JWTs and,
/// when requests are sealed, the service's curve key.
struct Callout {
    issuer: nkeys::KeyPair,
    xkey: Option<nkeys::XKey>,
}

impl Callout {
    fn new(sealed: bool) -> Callout {
        Callout {
            issuer: nkeys::KeyPair::new_account(),
            xkey: sealed.then(nkeys::XKey::new),
        }
    }

    /// A server with accounts AUTH (the service's user `auth`) and APP,
    /// the callout publishing into AUTH.
    fn start(&self, name: &str, extra: &str) -> ServerProcess {
        let xkey = self
            .xkey
            .as_ref()
            .map(|x| format!("xkey: {}", x.public_key()))
            .unwrap_or_default();
        let text = format!(
            "accounts {{\n  AUTH {{ users: [ {{user: auth, password: pwd}} ] }}\n  APP {{}}\n}}\n\
             authorization {{\n  auth_callout {{\n    issuer: {issuer}\n    account: AUTH\n    \
             auth_users: [ auth ]\n    {xkey}\n  }}\n}}\n{extra}\n",
            issuer = self.issuer.public_key(),
        );
        let path = test_dir(name).join("server.conf");
        std::fs::write(&path, text).unwrap();
        ServerProcess::start(&["-c", path.to_str().unwrap()])
    }

    /// Run the callout service on `url` until the test ends: `alice`
    /// (password `pw`) is placed into APP with `permissions`; anyone else
    /// gets the error "not welcome".
    async fn serve(&self, url: &str, permissions: Value) -> async_nats::Client {
        let client = within(
            "the callout service connects",
            ConnectOptions::with_user_and_password("auth".into(), "pwd".into()).connect(url),
        )
        .await
        .expect("the auth user bypasses the callout");
        let requests = client.subscribe("$SYS.REQ.USER.AUTH").await.unwrap();
        sync_with_server(&client).await;
        let signers = Signers {
            response: copy(&self.issuer),
            user: copy(&self.issuer),
            placement: Some(String::from("APP")),
        };
        respond(&client, requests, signers, self.xkey.as_ref(), permissions);
        client
    }
}

fn copy(key: &nkeys::KeyPair) -> nkeys::KeyPair {
    nkeys::KeyPair::from_seed(&key.seed().unwrap()).unwrap()
}

/// Who signs the service's answers and where the user JWT places the user.
struct Signers {
    response: nkeys::KeyPair,
    user: nkeys::KeyPair,
    /// The user JWT's audience (the configuration form places by it).
    placement: Option<String>,
}

/// Answer every request on `requests` until the test ends.
fn respond(
    client: &async_nats::Client,
    mut requests: async_nats::Subscriber,
    signers: Signers,
    xkey: Option<&nkeys::XKey>,
    permissions: Value,
) {
    let xkey = xkey.map(|x| nkeys::XKey::from_seed(&x.seed().unwrap()).unwrap());
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let reply = message.reply.clone().expect("requests carry an inbox");
            let answer = answer(&signers, xkey.as_ref(), &message, &permissions);
            responder.publish(reply, answer.into()).await.unwrap();
        }
    });
}

/// The claims of a JWT, its signature checked against its issuer.
fn verified_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let issuer = nkeys::KeyPair::from_public_key(claims["iss"].as_str().unwrap()).unwrap();
    issuer
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64.decode(parts[2]).unwrap(),
        )
        .expect("the server signs its requests");
    claims
}

/// The service's answer to one request.
fn answer(
    signers: &Signers,
    xkey: Option<&nkeys::XKey>,
    message: &async_nats::Message,
    permissions: &Value,
) -> Vec<u8> {
    let server_xkey = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Server-Xkey"))
        .map(|v| v.to_string());
    let token = match (xkey, &server_xkey) {
        (Some(xkey), Some(server)) => {
            let server = nkeys::XKey::from_public_key(server).unwrap();
            String::from_utf8(xkey.open(&message.payload, &server).expect("sealed to us")).unwrap()
        }
        (None, None) => String::from_utf8(message.payload.to_vec()).unwrap(),
        _ => panic!("a request is sealed exactly when the service has an xkey"),
    };
    let request = verified_claims(&token);
    let nats = &request["nats"];
    assert_eq!(nats["type"], "authorization_request");
    assert_eq!(request["aud"], "nats-authorization-request");
    assert_eq!(request["iss"], nats["server_id"]["id"]);
    let user_nkey = nats["user_nkey"].as_str().unwrap();
    let server_id = nats["server_id"]["id"].as_str().unwrap();
    let connect = &nats["connect_opts"];
    let welcome =
        (connect["user"] == "alice" && connect["pass"] == "pw") || connect["name"] == "alice-op";
    let body = if welcome {
        let mut extra = json!({"name": "alice"});
        if let Some(placement) = &signers.placement {
            extra["aud"] = json!(placement);
        }
        let user = jwt::encode(&signers.user, user_nkey, "user", permissions.clone(), extra);
        json!({"jwt": user})
    } else {
        json!({"error": "not welcome"})
    };
    let mut response = jwt::encode(
        &signers.response,
        user_nkey,
        "authorization_response",
        body,
        json!({"aud": server_id}),
    )
    .into_bytes();
    if let (Some(xkey), Some(server)) = (xkey, server_xkey) {
        let server = nkeys::XKey::from_public_key(&server).unwrap();
        response = xkey.seal(&response, &server).unwrap();
    }
    response
}

/// Options for user/password that forward the server's `-ERR`s.
fn with_errors(
    user: &str,
    password: &str,
) -> (ConnectOptions, tokio::sync::mpsc::UnboundedReceiver<String>) {
    common::forward_errors(ConnectOptions::with_user_and_password(
        user.into(),
        password.into(),
    ))
}

async fn connect_as(url: &str, user: &str, password: &str) -> Result<async_nats::Client, String> {
    let options = ConnectOptions::with_user_and_password(user.into(), password.into())
        .max_reconnects(Some(0));
    within("a connect through the callout", options.connect(url))
        .await
        .map_err(|error| error.to_string())
}

/// `alice` was placed into APP with the answer's permissions: they are
/// enforced (the reference's violation), and the service in AUTH sees
/// nothing of its traffic.
async fn admitted_into_app(
    alice: &async_nats::Client,
    errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    service: &async_nats::Client,
) {
    let mut inbox = alice.subscribe("allowed.>").await.unwrap();
    alice.publish("denied.x", Bytes::from("no")).await.unwrap();
    alice
        .publish("allowed.x", Bytes::from("yes"))
        .await
        .unwrap();
    alice.flush().await.unwrap();
    let message = next_message(&mut inbox).await;
    assert_eq!(
        (message.subject.as_str(), &message.payload[..]),
        ("allowed.x", &b"yes"[..])
    );
    let error = within("the violation", errors.recv()).await.unwrap();
    assert_eq!(
        error.to_lowercase(),
        "nats: permissions violation for publish to \"denied.x\""
    );
    let mut watch = service.subscribe("allowed.>").await.unwrap();
    sync_with_server(service).await;
    alice
        .publish("allowed.y", Bytes::from("app"))
        .await
        .unwrap();
    alice.flush().await.unwrap();
    assert_eq!(next_message(&mut inbox).await.subject.as_str(), "allowed.y");
    let nothing = tokio::time::timeout(Duration::from_millis(300), watch.next()).await;
    assert!(!matches!(nothing, Ok(Some(_))), "APP traffic reached AUTH");
}

/// Admitted into APP with the JWT's permissions, which are enforced;
/// refused with the reference's error; the service's own user bypasses.
async fn admits_and_refuses(sealed: bool) {
    let callout = Callout::new(sealed);
    let name = if sealed { "sealed" } else { "plain" };
    let server = callout.start(name, "");
    let service = callout
        .serve(
            &server.url(),
            json!({"pub": {"allow": ["allowed.>"]}, "sub": {"allow": ["allowed.>", "_INBOX.>"]}}),
        )
        .await;

    let (options, mut errors) = with_errors("alice", "pw");
    let alice = within("alice connects", options.connect(server.url()))
        .await
        .expect("the callout admits alice");
    admitted_into_app(&alice, &mut errors, &service).await;

    // Refused by the service, and a wrong password of an auth user (no callout).
    for (user, password) in [("bob", "pw"), ("auth", "wrong")] {
        let refused = connect_as(&server.url(), user, password).await;
        let Err(error) = refused else {
            panic!("{user} was admitted")
        };
        assert!(
            error.to_lowercase().contains("authorization violation"),
            "{user}: {error}"
        );
    }

    // The service's reason is logged as the reference logs it.
    let logged = |needle: &str| server.logs_soon(needle);
    assert!(
        logged("[WRN] Auth callout service returned an error: not welcome"),
        "{:?}",
        server.log_lines()
    );

    // The callout account's users may not publish requests to the callout.
    let (options, mut errors) = with_errors("auth", "pwd");
    let auth = within("auth connects", options.connect(server.url()))
        .await
        .unwrap();
    auth.publish("$SYS.REQ.USER.AUTH", Bytes::from("x"))
        .await
        .unwrap();
    auth.flush().await.unwrap();
    let error = within("the violation", errors.recv()).await.unwrap();
    assert_eq!(
        error.to_lowercase(),
        "nats: permissions violation for publish to \"$sys.req.user.auth\""
    );
}

#[tokio::test]
async fn the_callout_admits_and_refuses() {
    admits_and_refuses(false).await;
}

#[tokio::test]
async fn sealed_requests_and_answers() {
    admits_and_refuses(true).await;
}

/// Without an answer the client is refused once the auth timeout passes,
/// and other clients are served meanwhile.
#[tokio::test]
async fn an_unanswered_callout_refuses_after_the_auth_timeout() {
    let callout = Callout::new(false);
    let server = callout.start("timeout", "");
    // The service is connected but never answers.
    let silent = connect_as(&server.url(), "auth", "pwd").await.unwrap();
    let mut requests = silent.subscribe("$SYS.REQ.USER.AUTH").await.unwrap();
    sync_with_server(&silent).await;
    let started = std::time::Instant::now();
    let waiting = tokio::spawn({
        let url = server.url();
        async move { connect_as(&url, "alice", "pw").await }
    });
    let request = next_message(&mut requests).await;
    assert!(request.reply.is_some());
    // The machine is not blocked by the parked login.
    let other = connect_as(&server.url(), "auth", "pwd").await.unwrap();
    other.flush().await.unwrap();
    let refused = waiting.await.unwrap();
    let Err(error) = refused else {
        panic!("admitted without an answer")
    };
    assert!(
        error.to_lowercase().contains("authorization violation"),
        "{error}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "refused after {waited:?}"
    );
}

fn exit_of(conf: &str, name: &str) -> String {
    let path = test_dir(name).join("server.conf");
    std::fs::write(&path, conf).unwrap();
    let output = std::process::Command::new(rnats_tests::server_under_test())
        .args(["-c", path.to_str().unwrap(), "-t"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "{conf}");
    let text = String::from_utf8_lossy(&output.stderr).to_string();
    // Only the reason: both servers name the file and place differently.
    text.rsplit(": ").next().unwrap_or("").trim().to_string()
}

#[test]
fn start_up_refusals_carry_the_reference_texts() {
    let issuer = nkeys::KeyPair::new_account().public_key();
    for (conf, reason) in [
        (
            "authorization { auth_callout { issuer: x, auth_users: [a] } }".to_string(),
            "Expected callout user to be a valid public account nkey, got \"x\"",
        ),
        (
            format!("authorization {{ auth_callout {{ issuer: {issuer} }} }}"),
            "Authorization callouts require authorized users to be specified",
        ),
        (
            format!("authorization {{ auth_callout {{ issuer: {issuer}, auth_users: [a], xkey: XYZ }} }}"),
            "Expected callout xkey to be a valid public xkey, got \"XYZ\"",
        ),
        (
            format!("authorization {{ auth_callout {{ issuer: {issuer}, auth_users: [a], allowed_accounts: [B] }} }}"),
            "auth_callout allowed account \"B\" not found in configured accounts",
        ),
    ] {
        assert_eq!(exit_of(&conf, "refusals"), reason, "{conf}");
    }
}

/// The operator-mode form: account AUTH's JWT turns the callout on for its
/// users (but its `auth_users`); the service places users into APP with
/// user JWTs APP signs. A reload closes the clients it admitted.
async fn operator_mode(sealed: bool) {
    let dir = test_dir(if sealed {
        "operator-sealed"
    } else {
        "operator"
    });
    let operator = nkeys::KeyPair::new_operator();
    let system = nkeys::KeyPair::new_account();
    let auth = nkeys::KeyPair::new_account();
    let app = nkeys::KeyPair::new_account();
    let service_user = nkeys::KeyPair::new_user();
    let xkey = sealed.then(nkeys::XKey::new);
    let mut external = json!({
        "auth_users": [service_user.public_key()],
        "allowed_accounts": [app.public_key()],
    });
    if let Some(xkey) = &xkey {
        external["xkey"] = json!(xkey.public_key());
    }
    let operator_path = dir.join("operator.jwt");
    std::fs::write(
        &operator_path,
        jwt::operator(&operator, json!({"system_account": system.public_key()})),
    )
    .unwrap();
    let text = format!(
        "operator: {operator}\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {sys}: {sys_jwt}\n  {auth}: {auth_jwt}\n  {app}: {app_jwt}\n}}\n",
        operator = operator_path.display(),
        sys = system.public_key(),
        sys_jwt = jwt::account(&operator, &system, json!({})),
        auth = auth.public_key(),
        auth_jwt = jwt::account(&operator, &auth, json!({"authorization": external})),
        app = app.public_key(),
        app_jwt = jwt::account(&operator, &app, json!({})),
    );
    let config = dir.join("server.conf");
    std::fs::write(&config, text).unwrap();
    let server = ServerProcess::start(&["-c", config.to_str().unwrap()]);

    let creds = |name: &str, key: &nkeys::KeyPair, nats: Value| {
        let path = dir.join(name);
        let token = jwt::user(&auth, key, nats, json!({}));
        std::fs::write(&path, jwt::creds(&token, key)).unwrap();
        path
    };
    let service_creds = creds("service.creds", &service_user, json!({}));
    let service = within(
        "the service connects",
        ConnectOptions::with_credentials_file(&service_creds)
            .await
            .unwrap()
            .connect(server.url()),
    )
    .await
    .expect("an auth user bypasses the callout");
    let requests = service.subscribe("$SYS.REQ.USER.AUTH").await.unwrap();
    sync_with_server(&service).await;
    let signers = Signers {
        response: copy(&auth),
        user: copy(&app),
        placement: None,
    };
    respond(
        &service,
        requests,
        signers,
        xkey.as_ref(),
        json!({"pub": {"allow": ["allowed.>"]}, "sub": {"allow": ["allowed.>", "_INBOX.>"]}}),
    );

    // Everyone else in AUTH connects with a sentinel user that may do nothing.
    let sentinel = creds(
        "sentinel.creds",
        &nkeys::KeyPair::new_user(),
        json!({"pub": {"deny": [">"]}, "sub": {"deny": [">"]}}),
    );
    let connect = |name: &'static str| {
        let sentinel = sentinel.clone();
        let url = server.url();
        async move {
            let (options, rx) = common::forward_errors(
                ConnectOptions::with_credentials_file(&sentinel)
                    .await
                    .unwrap()
                    .name(name),
            );
            let client = within("a sentinel connect", options.connect(url))
                .await
                .map_err(|error| error.to_string());
            (client, rx)
        }
    };
    let (alice, mut errors) = connect("alice-op").await;
    let alice = alice.expect("the callout admits alice into APP");
    admitted_into_app(&alice, &mut errors, &service).await;

    // A reload finds no credentials of its own on a callout-admitted
    // client (the reference dropped the JWT it sent) and closes it.
    server.signal("HUP");
    let error = within("closed by the reload", errors.recv()).await.unwrap();
    assert_eq!(error.to_lowercase(), "nats: authorization violation");

    let (bob, _) = connect("bob").await;
    let Err(error) = bob else {
        panic!("bob was admitted")
    };
    assert!(
        error.to_lowercase().contains("authorization violation"),
        "{error}"
    );
}

#[tokio::test]
async fn operator_mode_account_callout() {
    operator_mode(false).await;
}

#[tokio::test]
async fn operator_mode_sealed_account_callout() {
    operator_mode(true).await;
}

/// What the reload test's service answers, changed while it runs.
#[derive(Clone)]
enum Verdict {
    /// Admit into APP with these permissions.
    Admit(Value),
    /// The service's error "not welcome".
    Refuse,
    /// No answer at all.
    Silent,
}

/// A callout service whose verdict the test changes, counting the
/// requests it was asked (by the user they name).
async fn serve_with_verdict(
    callout: &Callout,
    url: &str,
    verdict: std::sync::Arc<std::sync::Mutex<Verdict>>,
    asked: tokio::sync::mpsc::UnboundedSender<String>,
) -> async_nats::Client {
    let client = connect_as(url, "auth", "pwd").await.unwrap();
    let mut requests = client.subscribe("$SYS.REQ.USER.AUTH").await.unwrap();
    sync_with_server(&client).await;
    let issuer = copy(&callout.issuer);
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let token = String::from_utf8(message.payload.to_vec()).unwrap();
            let request = verified_claims(&token);
            let nats = &request["nats"];
            let user_nkey = nats["user_nkey"].as_str().unwrap().to_string();
            let server_id = nats["server_id"]["id"].as_str().unwrap().to_string();
            let _ = asked.send(
                nats["client_info"]["user"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
            let verdict = verdict.lock().unwrap().clone();
            let body = match verdict {
                Verdict::Silent => continue,
                Verdict::Refuse => json!({"error": "not welcome"}),
                Verdict::Admit(permissions) => {
                    // No `name`: the client keeps the credentials it sent.
                    let user = jwt::encode(
                        &issuer,
                        &user_nkey,
                        "user",
                        permissions,
                        json!({"aud": "APP", "name": ""}),
                    );
                    json!({"jwt": user})
                }
            };
            let response = jwt::encode(
                &issuer,
                &user_nkey,
                "authorization_response",
                body,
                json!({"aud": server_id}),
            );
            let reply = message.reply.clone().unwrap();
            responder.publish(reply, response.into()).await.unwrap();
        }
    });
    client
}

/// The server's next bytes on `connection` up to the end of `expected`,
/// its own PINGs left out (the reference sends one soon after CONNECT).
async fn expect_skipping_pings(connection: &mut common::RawConnection, expected: &str) {
    let last = expected
        .trim_end_matches("\r\n")
        .rsplit("\r\n")
        .next()
        .unwrap();
    let got = connection
        .read_until(format!("{last}\r\n").as_bytes())
        .await;
    assert_eq!(
        String::from_utf8_lossy(&got).replace("PING\r\n", ""),
        expected
    );
}

/// Everything the server sent on `connection` before closing it, its
/// PINGs left out.
async fn closed_with(connection: &mut common::RawConnection) -> String {
    let got = connection.read_until_closed().await;
    String::from_utf8_lossy(&got).replace("PING\r\n", "")
}

/// A reload asks the callout again about the clients it delegates to it
/// that carry no user or nkey of their own (here a token): admitted again,
/// they stay with the answer's new permissions (a subscription no longer
/// allowed is removed); refused, or unanswered within the auth timeout,
/// they are closed with `Authorization Violation`. Their traffic flows
/// while the callout thinks. A callout-admitted client that logged in with
/// a user the configuration does not place in its account is closed by
/// the reload unasked and without an error, as the reference does.
#[tokio::test]
async fn a_reload_asks_the_callout_again() {
    let callout = Callout::new(false);
    let server = callout.start("reload", "");
    let verdict = std::sync::Arc::new(std::sync::Mutex::new(Verdict::Admit(
        json!({"pub": {"allow": ["a.>"]}, "sub": {"allow": ["a.>", "b.>"]}}),
    )));
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let _service = serve_with_verdict(&callout, &server.url(), verdict.clone(), asked_tx).await;
    let addr = server.addr();
    let narrower = json!({"pub": {"allow": ["a.>"]}, "sub": {"allow": ["a.>"]}});

    let token = r#"{"auth_token":"tok","verbose":false,"pedantic":false,"protocol":1}"#;
    let mut tokie = common::RawConnection::connect_quiet(&addr, token).await;
    assert_eq!(within("asked", asked.recv()).await.unwrap(), "[REDACTED]");
    tokie.send(b"SUB a.x 1\r\nSUB b.x 2\r\nPING\r\n").await;
    expect_skipping_pings(&mut tokie, "PONG\r\n").await;
    let user = r#"{"user":"bob","pass":"pw","verbose":false,"pedantic":false,"protocol":1}"#;
    let mut bob = common::RawConnection::connect_quiet(&addr, user).await;
    assert_eq!(within("asked", asked.recv()).await.unwrap(), "bob");

    // Admitted again, with narrower permissions.
    *verdict.lock().unwrap() = Verdict::Admit(narrower.clone());
    server.signal("HUP");
    assert_eq!(
        within("asked again", asked.recv()).await.unwrap(),
        "[REDACTED]"
    );
    expect_skipping_pings(
        &mut tokie,
        "-ERR 'Permissions Violation for Subscription to \"b.x\" (sid \"2\")'\r\n",
    )
    .await;
    assert_eq!(closed_with(&mut bob).await, "");
    tokie
        .send(b"PUB a.x 2\r\nhi\r\nPUB b.x 2\r\nno\r\nPING\r\n")
        .await;
    expect_skipping_pings(
        &mut tokie,
        "MSG a.x 1 2\r\nhi\r\n-ERR 'Permissions Violation for Publish to \"b.x\"'\r\nPONG\r\n",
    )
    .await;
    let logged = |needle: &str| server.logs_soon(needle);
    assert!(
        logged("Removed sub \"b.x\" (sid \"2\") for Token \"[REDACTED]\" - not authorized"),
        "{:?}",
        server.log_lines()
    );

    // Unanswered: the client is served meanwhile, then closed.
    *verdict.lock().unwrap() = Verdict::Silent;
    let started = std::time::Instant::now();
    server.signal("HUP");
    assert_eq!(
        within("asked again", asked.recv()).await.unwrap(),
        "[REDACTED]"
    );
    tokie.send(b"PUB a.x 2\r\nhi\r\nPING\r\n").await;
    expect_skipping_pings(&mut tokie, "MSG a.x 1 2\r\nhi\r\nPONG\r\n").await;
    assert_eq!(
        closed_with(&mut tokie).await,
        "-ERR 'Authorization Violation'\r\n"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );

    // Refused: closed at once.
    *verdict.lock().unwrap() = Verdict::Admit(narrower);
    let mut tokie = common::RawConnection::connect_quiet(&addr, token).await;
    assert_eq!(within("asked", asked.recv()).await.unwrap(), "[REDACTED]");
    *verdict.lock().unwrap() = Verdict::Refuse;
    server.signal("HUP");
    assert_eq!(
        within("asked again", asked.recv()).await.unwrap(),
        "[REDACTED]"
    );
    assert_eq!(
        closed_with(&mut tokie).await,
        "-ERR 'Authorization Violation'\r\n"
    );
    assert!(
        logged("[WRN] Auth callout service returned an error: not welcome"),
        "{:?}",
        server.log_lines()
    );
}
