//! Writing NATS JWTs and `.creds` files for tests, as nsc would: operators,
//! accounts and users generated in the test with the `nkeys` crate.

// Each test file that includes it uses only part of it.
#![allow(dead_code)]

use base64::Engine;
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT of `kind` for `subject`, signed by `issuer`, with `nats` merged
/// over the kind's defaults and `extra` standard claims (`exp`, `nbf`, ...).
pub fn encode(
    issuer: &nkeys::KeyPair,
    subject: &str,
    kind: &str,
    nats: Value,
    extra: Value,
) -> String {
    let mut section = json!({"type": kind, "version": 2});
    if let (Some(section), Some(more)) = (section.as_object_mut(), nats.as_object()) {
        section.extend(more.clone());
    }
    let mut claims = json!({
        "jti": b64(format!("{subject}-{kind}").as_bytes()),
        "iat": 1_700_000_000i64,
        "iss": issuer.public_key(),
        "name": kind,
        "sub": subject,
        "nats": section,
    });
    if let (Some(claims), Some(more)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(more.clone());
    }
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let signed = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let signature = issuer.sign(signed.as_bytes()).expect("signing works");
    format!("{signed}.{}", b64(&signature))
}

/// A self-signed operator JWT.
pub fn operator(operator: &nkeys::KeyPair, nats: Value) -> String {
    encode(
        operator,
        &operator.public_key(),
        "operator",
        nats,
        json!({}),
    )
}

/// An account JWT with nsc's default (unlimited) limits under `nats`.
pub fn account(issuer: &nkeys::KeyPair, account: &nkeys::KeyPair, nats: Value) -> String {
    account_with(issuer, account, nats, json!({}))
}

/// [`account`] with `extra` standard claims (`iat`, `jti`, ...).
pub fn account_with(
    issuer: &nkeys::KeyPair,
    account: &nkeys::KeyPair,
    nats: Value,
    extra: Value,
) -> String {
    let mut section = json!({
        "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                   "wildcards": true, "conn": -1, "leaf": -1},
        "default_permissions": {"pub": {}, "sub": {}},
    });
    if let (Some(section), Some(more)) = (section.as_object_mut(), nats.as_object()) {
        section.extend(more.clone());
    }
    encode(issuer, &account.public_key(), "account", section, extra)
}

/// A user JWT with nsc's default (unlimited) limits under `nats`.
pub fn user(issuer: &nkeys::KeyPair, user: &nkeys::KeyPair, nats: Value, extra: Value) -> String {
    let mut section = json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1});
    if let (Some(section), Some(more)) = (section.as_object_mut(), nats.as_object()) {
        section.extend(more.clone());
    }
    encode(issuer, &user.public_key(), "user", section, extra)
}

/// A `.creds` file's text for `jwt` and the user's seed, as nsc writes it.
pub fn creds(jwt: &str, user: &nkeys::KeyPair) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().expect("a generated key has a seed")
    )
}

/// An operator, its system account and one application account, with a
/// directory for the test's files (each test file adds the methods it
/// needs in an `impl Trust` of its own).
pub struct Trust {
    pub operator: nkeys::KeyPair,
    pub system: nkeys::KeyPair,
    pub account: nkeys::KeyPair,
    pub dir: std::path::PathBuf,
}

impl Trust {
    /// The operator JWT, naming the system account, in `operator.jwt`.
    pub fn operator_file(&self) -> std::path::PathBuf {
        let path = self.dir.join("operator.jwt");
        let token = operator(
            &self.operator,
            json!({"system_account": self.system.public_key()}),
        );
        std::fs::write(&path, token).unwrap();
        path
    }

    /// A `.creds` file for a new user of `account`.
    pub fn user_creds(&self, file: &str, account: &nkeys::KeyPair) -> std::path::PathBuf {
        let user = nkeys::KeyPair::new_user();
        let token = self::user(account, &user, json!({}), json!({}));
        let path = self.dir.join(file);
        std::fs::write(&path, creds(&token, &user)).unwrap();
        path
    }

    pub fn new(name: &str) -> Trust {
        Trust {
            operator: nkeys::KeyPair::new_operator(),
            system: nkeys::KeyPair::new_account(),
            account: nkeys::KeyPair::new_account(),
            dir: test_dir(name),
        }
    }
}

/// A directory of its own for one test's files.
pub fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-jwt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A connection with a `.creds` file (one reconnect at most), or the
/// client's error text.
pub async fn connect_creds(
    url: &str,
    creds: &std::path::Path,
) -> Result<async_nats::Client, String> {
    let options = async_nats::ConnectOptions::with_credentials_file(creds)
        .await
        .map_err(|error| error.to_string())?
        .max_reconnects(Some(1));
    crate::common::within("a connect with creds", options.connect(url))
        .await
        .map_err(|error| error.to_string())
}

/// Runs `binary` with config `path` expecting it to exit: (code, stderr).
pub fn exit_of(binary: &std::path::Path, path: &std::path::Path) -> (Option<i32>, String) {
    let output = std::process::Command::new(binary)
        .args(["-p", "-1", "-c", path.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the server");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
