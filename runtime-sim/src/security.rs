//! The simulator's independent view of accounts, users and permissions: a
//! scenario's `security` section, the server configuration built from it,
//! and the naive checks the model routes with.
//!
//! The model's oracle is deliberately simple and written apart from core's
//! `auth` module: linear scans over allow and deny lists, stream imports
//! rewritten by string prefixing. The invariant it enforces (through the
//! model's expectations) is that a client receives a message only when its
//! account and permissions make it routable, and that every forbidden
//! publish and subscribe is answered with the reference's exact `-ERR`.
//!
//! With `jwt`, the same accounts and users run in operator mode: the
//! simulator signs an operator, account and (bearer) user JWTs with keys
//! derived from the names (so every run signs the same tokens), the server
//! holds the accounts in its `MEMORY` resolver, and clients log in with
//! their user JWT. The model's checks do not change: what a JWT grants is
//! what the plain configuration grants.
//!
//! `jwt_updates` are run-time account claims updates: at its time, the
//! world's system client (a bearer user of the system account) publishes
//! the account's JWT re-signed with a newer `iat` and the revocations of
//! this and every earlier update of that account on
//! `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE`, with the update's default
//! permissions. From the step the server processes it, a revoked user's
//! connections get nothing more (the server closes them with `User
//! Authentication Revoked`) and its reconnects are refused (`Authorization
//! Violation`); the account's users without permissions of their own are
//! held to the new defaults (`Identity::take_defaults`).

use serde::Deserialize;

use rnats_core::auth::{
    AccountConfig, AuthConfig, Export, Import, ImportKind, Permissions, SubjectPermission, User,
};

use crate::model::subject_matches;

/// Every user's password in a simulated run.
pub const PASSWORD: &str = "pw";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySpec {
    pub accounts: Vec<AccountSpec>,
    pub users: Vec<UserSpec>,
    /// Clients log in by their TLS client certificate (`verify_and_map`):
    /// the simulated handshake hands the server the certificate's name
    /// (`CN=<user>`), and CONNECT carries no credentials. The simulator's
    /// deterministic stand-in for a TLS stack: names, no cryptography.
    #[serde(default)]
    pub tls_map: bool,
    /// Operator mode: accounts and users as JWTs (see the module comment).
    #[serde(default)]
    pub jwt: bool,
    /// Run-time account claims updates (operator mode only), in time order.
    #[serde(default)]
    pub jwt_updates: Vec<JwtUpdate>,
}

/// One account claims update: at `at_ms` of virtual time, `account`'s JWT
/// is re-issued revoking `revoke` (user names of that account).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtUpdate {
    pub at_ms: u64,
    pub account: String,
    #[serde(default)]
    pub revoke: Vec<String>,
    /// The account's `default_permissions` from this update on (absent:
    /// none): they hold for its users whose JWT has no permissions, open
    /// connections included (a subscription they no longer allow is
    /// removed with the reference's `-ERR`).
    #[serde(default)]
    pub default_permissions: Option<PermissionSpec>,
}

/// Allow and deny lists (an account's default permissions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionSpec {
    #[serde(default)]
    pub publish_allow: Option<Vec<String>>,
    #[serde(default)]
    pub publish_deny: Vec<String>,
    #[serde(default)]
    pub subscribe_allow: Option<Vec<String>>,
    #[serde(default)]
    pub subscribe_deny: Vec<String>,
}

impl PermissionSpec {
    /// The lists as a JWT's permission claims, added to `nats`.
    fn add_claims(&self, nats: &mut serde_json::Value) {
        let section = |allow: &Option<Vec<String>>, deny: &[String]| {
            let mut section = serde_json::json!({});
            if let Some(allow) = allow {
                section["allow"] = serde_json::json!(allow);
            }
            if !deny.is_empty() {
                section["deny"] = serde_json::json!(deny);
            }
            section
        };
        nats["pub"] = section(&self.publish_allow, &self.publish_deny);
        nats["sub"] = section(&self.subscribe_allow, &self.subscribe_deny);
    }

    /// Whether a JWT with these lists restricts nothing (an empty allow
    /// list allows everything, as no list does).
    fn restricts_nothing(&self) -> bool {
        let empty = |allow: &Option<Vec<String>>| allow.as_ref().is_none_or(Vec::is_empty);
        empty(&self.publish_allow)
            && empty(&self.subscribe_allow)
            && self.publish_deny.is_empty()
            && self.subscribe_deny.is_empty()
    }
}

/// The user the world's system client logs in as (a bearer user JWT of the
/// system account); no scenario user may take the name.
pub const SYSTEM_USER: &str = "$sim-system";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub name: String,
    /// Public stream exports.
    #[serde(default)]
    pub exports: Vec<String>,
    #[serde(default)]
    pub imports: Vec<ImportSpec>,
}

/// A stream import: `subject` of `account`, seen here as `prefix.subject`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSpec {
    pub account: String,
    pub subject: String,
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    pub account: String,
    #[serde(default)]
    pub publish_allow: Option<Vec<String>>,
    #[serde(default)]
    pub publish_deny: Vec<String>,
    #[serde(default)]
    pub subscribe_allow: Option<Vec<String>>,
    #[serde(default)]
    pub subscribe_deny: Vec<String>,
}

impl UserSpec {
    /// Its own permission lists (kept as fields of the user so a scenario
    /// file's typo is refused by name).
    fn lists(&self) -> PermissionSpec {
        PermissionSpec {
            publish_allow: self.publish_allow.clone(),
            publish_deny: self.publish_deny.clone(),
            subscribe_allow: self.subscribe_allow.clone(),
            subscribe_deny: self.subscribe_deny.clone(),
        }
    }
}

impl SecuritySpec {
    pub fn validate(&self) -> Result<(), String> {
        let known = |name: &str| self.accounts.iter().any(|a| a.name == name);
        for user in &self.users {
            if !known(&user.account) {
                return Err(format!(
                    "user {} names unknown account {}",
                    user.name, user.account
                ));
            }
        }
        for account in &self.accounts {
            for import in &account.imports {
                if !known(&import.account) {
                    return Err(format!("import from unknown account {}", import.account));
                }
            }
        }
        let mut last_at = 0;
        for update in &self.jwt_updates {
            if !self.jwt {
                return Err(String::from("jwt_updates need jwt (operator mode)"));
            }
            if update.at_ms < last_at {
                return Err(String::from("jwt_updates must be in time order"));
            }
            last_at = update.at_ms;
            if !known(&update.account) {
                return Err(format!("jwt update of unknown account {}", update.account));
            }
            for name in &update.revoke {
                if !self
                    .users
                    .iter()
                    .any(|u| u.name == *name && u.account == update.account)
                {
                    return Err(format!(
                        "jwt update of {} revokes {name}, not a user of that account",
                        update.account
                    ));
                }
            }
        }
        if self.users.iter().any(|u| u.name == SYSTEM_USER) {
            return Err(format!("the user name {SYSTEM_USER} is the simulator's"));
        }
        if self.jwt && self.tls_map {
            return Err(String::from(
                "jwt users log in with their JWT, not by certificate",
            ));
        }
        Ok(())
    }

    /// What a client of `user` puts in its CONNECT to log in (nothing when
    /// the certificate names it), ending in a comma.
    pub fn credentials(&self, user: &str) -> String {
        if self.tls_map {
            String::new()
        } else if self.jwt {
            format!("\"jwt\":\"{}\",", self.user_jwt(user))
        } else {
            format!("\"user\":\"{user}\",\"pass\":\"{PASSWORD}\",")
        }
    }

    /// The core configuration: users with the shared password, accounts
    /// with public stream exports and prefixed stream imports; with `jwt`,
    /// operator mode. The third part is the system account, if any.
    pub fn server_config(&self) -> (AuthConfig, Vec<AccountConfig>, Option<String>) {
        if self.jwt {
            return self.operator_config();
        }
        let to_permission = |allow: &Option<Vec<String>>, deny: &Vec<String>| {
            (allow.is_some() || !deny.is_empty()).then(|| SubjectPermission {
                allow: allow.clone(),
                deny: deny.clone(),
            })
        };
        let users = self
            .users
            .iter()
            .map(|user| {
                let publish = to_permission(&user.publish_allow, &user.publish_deny);
                let subscribe = to_permission(&user.subscribe_allow, &user.subscribe_deny);
                User {
                    username: if self.tls_map {
                        certificate_name(&user.name)
                    } else {
                        user.name.clone()
                    },
                    password: if self.tls_map {
                        String::new()
                    } else {
                        PASSWORD.to_string()
                    },
                    permissions: (publish.is_some() || subscribe.is_some()).then_some(
                        Permissions {
                            publish,
                            subscribe,
                            response: None,
                        },
                    ),
                    account: user.account.clone(),
                }
            })
            .collect();
        let accounts = self
            .accounts
            .iter()
            .map(|account| AccountConfig {
                name: account.name.clone(),
                exports: account.exports.iter().map(Export::stream).collect(),
                imports: account
                    .imports
                    .iter()
                    .map(|import| Import {
                        kind: ImportKind::Stream,
                        account: import.account.clone(),
                        subject: import.subject.clone(),
                        to: Some(format!("{}.{}", import.prefix, import.subject)),
                        share: false,
                    })
                    .collect(),
                mappings: Vec::new(),
                jetstream: None,
            })
            .collect();
        (
            AuthConfig {
                users,
                ..AuthConfig::default()
            },
            accounts,
            None,
        )
    }

    /// Operator mode: an operator naming a system account, every account
    /// as a JWT in the `MEMORY` resolver, built as the config file's
    /// `operator` and `resolver_preload` are.
    fn operator_config(&self) -> (AuthConfig, Vec<AccountConfig>, Option<String>) {
        use serde_json::json;
        let operator = sim_key(nkeys::KeyPairType::Operator, "operator");
        let system = sim_key(nkeys::KeyPairType::Account, SYSTEM_ACCOUNT);
        let operator_jwt = sign(
            &operator,
            &operator.public_key(),
            json!({"type": "operator", "version": 2, "system_account": system.public_key()}),
        );
        let mut preload = std::collections::BTreeMap::new();
        let unlimited = unlimited_limits();
        let system_jwt = sign(
            &operator,
            &system.public_key(),
            json!({"type": "account", "version": 2, "limits": unlimited}),
        );
        preload.insert(system.public_key(), system_jwt);
        for account in &self.accounts {
            let key = account_key(&account.name);
            preload.insert(key.public_key(), self.account_jwt(account, 0, &[], None));
        }
        let options = rnats_core::auth::OperatorOptions {
            operator_jwts: vec![operator_jwt],
            memory_resolver: true,
            preload,
            ..rnats_core::auth::OperatorOptions::default()
        };
        let built = rnats_core::auth::OperatorMode::build(&options, false)
            .unwrap_or_else(|error| panic!("the simulator's JWTs are refused: {error}"));
        let system = built.system_account.unwrap_or_else(|| system.public_key());
        (
            AuthConfig {
                operator: Some(built.mode),
                ..AuthConfig::default()
            },
            built.accounts,
            Some(system),
        )
    }

    /// Account `account`'s JWT as update number `update` issues it (0: the
    /// preloaded one), revoking `revoked` users at that time.
    fn account_jwt(
        &self,
        account: &AccountSpec,
        update: usize,
        revoked: &[&str],
        defaults: Option<&PermissionSpec>,
    ) -> String {
        use serde_json::json;
        let key = account_key(&account.name);
        let exports: Vec<_> = account
            .exports
            .iter()
            .map(|subject| json!({"subject": subject, "type": "stream"}))
            .collect();
        let imports: Vec<_> = account
            .imports
            .iter()
            .map(|import| {
                json!({
                    "account": account_key(&import.account).public_key(),
                    "subject": import.subject,
                    "local_subject": format!("{}.{}", import.prefix, import.subject),
                    "type": "stream",
                })
            })
            .collect();
        let at = ISSUED_AT + update as i64;
        let revocations: serde_json::Map<_, _> = revoked
            .iter()
            .map(|name| {
                (
                    sim_key(nkeys::KeyPairType::User, name).public_key(),
                    json!(at),
                )
            })
            .collect();
        let mut nats = json!({"type": "account", "version": 2, "limits": unlimited_limits(),
                              "exports": exports, "imports": imports, "revocations": revocations});
        if let Some(defaults) = defaults {
            let mut claims = json!({});
            defaults.add_claims(&mut claims);
            nats["default_permissions"] = claims;
        }
        let operator = sim_key(nkeys::KeyPairType::Operator, "operator");
        sign_at(&operator, &key.public_key(), nats, at)
    }

    /// Update number `index` of `jwt_updates` as the system client
    /// publishes it: (subject, the re-signed account JWT), revoking the
    /// users of this update and of every earlier one of the same account
    /// (a newer JWT replaces the older claims whole).
    pub fn update_message(&self, index: usize) -> (String, String) {
        let update = &self.jwt_updates[index];
        let account = self
            .accounts
            .iter()
            .find(|a| a.name == update.account)
            .expect("validated: a known account");
        let revoked = self.revoked_through(index);
        let revoked: Vec<&str> = revoked.iter().map(String::as_str).collect();
        let key = account_key(&account.name).public_key();
        (
            format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE"),
            self.account_jwt(
                account,
                index + 1,
                &revoked,
                update.default_permissions.as_ref(),
            ),
        )
    }

    /// The users update number `index` revokes: its own and those of every
    /// earlier update of the same account.
    pub fn revoked_through(&self, index: usize) -> Vec<String> {
        let account = &self.jwt_updates[index].account;
        let revoked: std::collections::BTreeSet<&String> = self.jwt_updates[..=index]
            .iter()
            .filter(|u| u.account == *account)
            .flat_map(|u| &u.revoke)
            .collect();
        revoked.into_iter().cloned().collect()
    }

    /// `name`'s bearer user JWT, signed by its account, with its
    /// permissions (`operator_config`'s accounts).
    fn user_jwt(&self, name: &str) -> String {
        use serde_json::json;
        let user = self.users.iter().find(|u| u.name == name);
        let key = sim_key(nkeys::KeyPairType::User, name);
        let Some(user) = user else {
            assert_eq!(name, SYSTEM_USER, "no user {name}");
            let nats = json!({"type": "user", "version": 2, "bearer_token": true,
                              "subs": -1, "data": -1, "payload": -1});
            return sign(&account_key(SYSTEM_ACCOUNT), &key.public_key(), nats);
        };
        let mut nats = json!({
            "type": "user", "version": 2, "bearer_token": true,
            "subs": -1, "data": -1, "payload": -1,
        });
        user.lists().add_claims(&mut nats);
        sign(&account_key(&user.account), &key.public_key(), nats)
    }

    /// The model's view of `name`'s account and permissions.
    pub fn identity(&self, name: &str) -> Option<Identity> {
        if name == SYSTEM_USER {
            return Some(Identity {
                user: name.to_string(),
                account: SYSTEM_ACCOUNT.to_string(),
                own_permissions: false,
                lists: PermissionSpec::default(),
            });
        }
        let user = self.users.iter().find(|u| u.name == name)?;
        Some(Identity {
            user: user.name.clone(),
            account: user.account.clone(),
            own_permissions: !user.lists().restricts_nothing(),
            lists: user.lists(),
        })
    }

    /// Stream imports as (exporter, subject pattern, importer, prefix).
    pub fn imports(&self) -> Vec<(String, String, String, String)> {
        let mut out = Vec::new();
        for account in &self.accounts {
            for import in &account.imports {
                out.push((
                    import.account.clone(),
                    import.subject.clone(),
                    account.name.clone(),
                    import.prefix.clone(),
                ));
            }
        }
        out
    }
}

/// An account's limits in a simulated run: none.
fn unlimited_limits() -> serde_json::Value {
    serde_json::json!({"subs": -1, "data": -1, "payload": -1, "imports": -1,
                       "exports": -1, "wildcards": true, "conn": -1, "leaf": -1})
}

/// The system account's name for deriving its key.
const SYSTEM_ACCOUNT: &str = "SYS";

/// The key pair of `kind` named `name`: its seed is derived from the two,
/// so every run (and every node) signs with the same keys.
fn sim_key(kind: nkeys::KeyPairType, name: &str) -> nkeys::KeyPair {
    let mut raw = [0u8; 32];
    for (chunk, salt) in raw.chunks_mut(8).zip(0u64..) {
        let mut hash = crate::trace::Fnv64::default();
        hash.write(&salt.to_le_bytes());
        hash.write(format!("{kind:?}/{name}").as_bytes());
        chunk.copy_from_slice(&hash.finish().to_le_bytes());
    }
    nkeys::KeyPair::new_from_raw(kind, raw).expect("32 bytes make a key")
}

fn account_key(name: &str) -> nkeys::KeyPair {
    sim_key(nkeys::KeyPairType::Account, name)
}

/// A JWT of `subject` with `nats` claims, signed by `issuer`.
fn sign(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value) -> String {
    sign_at(issuer, subject, nats, ISSUED_AT)
}

/// When every token the run starts with was issued (Unix seconds); update
/// `n` (from 1) is issued, and revokes, `n` seconds later.
const ISSUED_AT: i64 = 1_700_000_000;

fn sign_at(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value, iat: i64) -> String {
    let claims = serde_json::json!({
        "iat": iat,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": subject,
        "nats": nats,
    });
    rnats_core::auth::jwt::encode(issuer, claims)
}

/// The server's answer to a claims update (on `_INBOX.sys.<n>`): it must
/// say the JWT was taken.
pub fn check_update_reply(subject: &[u8], payload: &[u8]) -> Result<(), String> {
    let reply: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| format!("claims update answer is not JSON ({e})"))?;
    match reply["data"]["message"].as_str() {
        Some("jwt updated") => Ok(()),
        _ => Err(format!(
            "claims update on {} was refused: {reply}",
            String::from_utf8_lossy(subject)
        )),
    }
}

/// The subject DN of the simulated certificate of `user`.
pub fn certificate_name(user: &str) -> String {
    format!("CN={user}")
}

/// A connection's account and permissions, as the model checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub account: String,
    /// The user has permissions of its own (its account's defaults do not
    /// apply to it).
    own_permissions: bool,
    lists: PermissionSpec,
}

/// Whether `list` has an entry matching `subject` taken as written (a
/// wildcard token in `subject` is a token like any other, as nats-server's
/// permission lists treat it).
fn listed(list: &[String], subject: &[u8]) -> bool {
    list.iter()
        .any(|entry| subject_matches(entry.as_bytes(), subject))
}

impl Identity {
    /// Its account's default permissions changed to `defaults`: a user
    /// without permissions of its own has these from now on.
    pub fn take_defaults(&mut self, defaults: Option<&PermissionSpec>) {
        if self.own_permissions {
            return;
        }
        let mut lists = defaults.cloned().unwrap_or_default();
        // An empty allow list in a JWT allows everything, as no list does.
        for allow in [&mut lists.publish_allow, &mut lists.subscribe_allow] {
            if allow.as_ref().is_some_and(Vec::is_empty) {
                *allow = None;
            }
        }
        self.lists = lists;
    }

    pub fn may_publish(&self, subject: &[u8]) -> bool {
        self.lists
            .publish_allow
            .as_ref()
            .is_none_or(|allow| listed(allow, subject))
            && !listed(&self.lists.publish_deny, subject)
    }

    pub fn may_subscribe(&self, subject: &[u8]) -> bool {
        self.lists
            .subscribe_allow
            .as_ref()
            .is_none_or(|allow| listed(allow, subject))
            && !listed(&self.lists.subscribe_deny, subject)
    }

    /// A subscription allowed as a whole still does not get messages on a
    /// denied subject.
    pub fn may_receive(&self, subject: &[u8]) -> bool {
        !listed(&self.lists.subscribe_deny, subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            user: "u".into(),
            account: "A".into(),
            own_permissions: true,
            lists: PermissionSpec {
                publish_allow: Some(vec!["pub.>".into()]),
                publish_deny: vec!["pub.secret".into()],
                subscribe_allow: None,
                subscribe_deny: vec!["sub.secret".into()],
            },
        }
    }

    #[test]
    fn a_claims_update_is_a_newer_account_jwt_with_every_revocation_so_far() {
        let spec: SecuritySpec = serde_json::from_value(serde_json::json!({
            "jwt": true,
            "accounts": [{"name": "A"}, {"name": "B"}],
            "users": [{"name": "a1", "account": "A"}, {"name": "a2", "account": "A"},
                      {"name": "b1", "account": "B"}],
            "jwt_updates": [{"at_ms": 10, "account": "A", "revoke": ["a1"]},
                            {"at_ms": 20, "account": "B", "revoke": ["b1"]},
                            {"at_ms": 30, "account": "A", "revoke": ["a2"]}],
        }))
        .expect("a valid spec");
        spec.validate().expect("valid");
        assert_eq!(spec.revoked_through(2), ["a1", "a2"]);
        let (subject, token) = spec.update_message(2);
        let key = account_key("A").public_key();
        assert_eq!(subject, format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE"));
        let account = rnats_core::auth::jwt::decode_account(&token).expect("decodes");
        assert_eq!(account.claims.subject, key);
        assert_eq!(account.claims.issued_at, ISSUED_AT + 3);
        let revoked: Vec<_> = account.nats.revocations.keys().cloned().collect();
        let mut want: Vec<_> = ["a1", "a2"]
            .iter()
            .map(|n| sim_key(nkeys::KeyPairType::User, n).public_key())
            .collect();
        want.sort();
        assert_eq!(revoked, want);
        let wrong: SecuritySpec = serde_json::from_value(serde_json::json!({
            "jwt": true, "accounts": [{"name": "A"}, {"name": "B"}],
            "users": [{"name": "b1", "account": "B"}],
            "jwt_updates": [{"at_ms": 10, "account": "A", "revoke": ["b1"]}],
        }))
        .expect("parses");
        assert!(wrong.validate().is_err(), "b1 is not a user of A");
    }

    #[test]
    fn naive_permission_checks() {
        let id = identity();
        assert!(id.may_publish(b"pub.x"));
        assert!(!id.may_publish(b"pub.secret"));
        assert!(!id.may_publish(b"other"));
        assert!(id.may_subscribe(b"sub.*"));
        assert!(!id.may_subscribe(b"sub.secret"));
        assert!(!id.may_receive(b"sub.secret"));
    }
}
