//! Checking a CONNECT's credentials: which user is this, in which account,
//! with which permissions.
//!
//! The order of checks is the reference's: an nkey user (by the `nkey` the
//! client names, which must have signed the server's nonce), then a user of
//! the users list (by certificate when `verify_and_map` is on, else by name
//! and password), then the single token or user/password. A client that
//! sends no credentials at all is logged in as `no_auth_user` when there is
//! one.
//!
//! Invariants:
//! - Secret comparisons take time independent of where the first difference
//!   is (plain text); bcrypt hashes are checked with bcrypt.
//! - Failure never says which part was wrong: the wire error is always
//!   `Authorization Violation`; [`AuthFailure`] is for the debug log only.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use base64::Engine;

use super::{AuthConfig, NkeyUser, Permissions, User, GLOBAL_ACCOUNT};
use crate::protocol::ConnectOptions;
use crate::time::WallTime;

/// Who a connection turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub account: String,
    /// The user name or nkey, for logs and monitoring; `None` when the server
    /// needs no authentication or a shared token was used.
    pub user: Option<String>,
    pub permissions: Option<Permissions>,
    /// What a user JWT restricts beyond permissions, for the server to
    /// apply with what it knows of the connection; `None` otherwise.
    pub restrictions: Option<Box<super::operator::Restrictions>>,
}

impl Identity {
    fn global() -> Self {
        Identity {
            account: String::from(GLOBAL_ACCOUNT),
            user: None,
            permissions: None,
            restrictions: None,
        }
    }
}

/// Why a CONNECT was refused (the reference's debug wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("unknown nkey")]
    UnknownNkey,
    #[error("Signature missing")]
    SignatureMissing,
    #[error("Signature not valid base64")]
    SignatureNotBase64,
    #[error("User nkey not valid")]
    NkeyNotValid,
    #[error("Signature not verified")]
    SignatureNotVerified,
    #[error("unknown user")]
    UnknownUser,
    #[error("bad password")]
    BadPassword,
    #[error("User requires a client certificate")]
    CertificateRequired,
    #[error("no user matches the client certificate")]
    CertificateNotMapped,
    #[error("bad token")]
    BadToken,
    #[error("no credentials")]
    NoCredentials,
    #[error("Authentication requires a user JWT")]
    JwtMissing,
    #[error("User JWT not valid")]
    JwtInvalid,
    #[error("Account JWT lookup error")]
    AccountUnknown,
    #[error("User JWT issuer is not known")]
    JwtIssuerUnknown,
    #[error("Account JWT has expired")]
    AccountExpired,
    #[error("Account does not allow bearer tokens")]
    BearerNotAllowed,
    #[error("User authentication revoked")]
    Revoked,
    #[error("Connection type not allowed")]
    ConnectionTypeNotAllowed,
    #[error("Outside connect times")]
    OutsideConnectTimes,
    /// A user JWT claim rnats does not apply yet: refused, never ignored.
    #[error("user JWT claim {0} is not supported yet")]
    Unsupported(&'static str),
}

/// What a CONNECT's credentials come to.
#[derive(Debug, Clone, PartialEq)]
pub enum Login {
    /// Checked: this is who the client is.
    Accepted(Identity),
    /// Everything is checked but a bcrypt password, which costs tens of
    /// milliseconds: `check` decides, off the server's lock, whether the
    /// client logs in as `identity`.
    NeedsPasswordCheck {
        identity: Identity,
        check: PasswordCheck,
    },
}

/// One bcrypt verification, for the runtime to run where it blocks nothing
/// (a blocking pool), then hand back to the server.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordCheck {
    hash: String,
    given: String,
    /// False when something checked alongside the password (a single
    /// user's name) already failed: the check still runs, so the time taken
    /// does not tell which part was wrong.
    rest_ok: bool,
}

impl PasswordCheck {
    /// Run bcrypt: whether the password (and the rest) passed.
    pub fn run(&self) -> bool {
        bcrypt::verify(&self.given, &self.hash).unwrap_or(false) && self.rest_ok
    }
}

impl fmt::Debug for PasswordCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordCheck")
            .field("given", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// How one password compares.
enum PasswordOutcome {
    Matches,
    Differs,
    /// A bcrypt hash not in the cache, left to a [`PasswordCheck`].
    Deferred(PasswordCheck),
}

/// The users and secrets of one configuration, indexed for lookup.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    config: AuthConfig,
    users: BTreeMap<String, User>,
    nkeys: BTreeMap<String, NkeyUser>,
    verified: BcryptCache,
}

/// Passwords already proven against a bcrypt hash, as (hash, password).
///
/// bcrypt costs tens of milliseconds by design, and the server runs under
/// one lock: a reload authenticates every client again, which without this
/// would cost each bcrypt user that much again. A hit needs the same hash
/// and the same password, so a changed hash in the configuration is checked
/// afresh. Bounded at [`BcryptCache::CAPACITY`]; the oldest entries go first.
/// The passwords are the ones clients sent in CONNECT (which the server
/// keeps anyway for reloads); `Debug` never shows them.
#[derive(Clone, Default)]
pub struct BcryptCache {
    entries: RefCell<VecDeque<(String, String)>>,
    /// bcrypt verifications actually run (not answered from the cache).
    verifications: Cell<u64>,
}

impl BcryptCache {
    pub const CAPACITY: usize = 1024;

    fn knows(&self, hash: &str, given: &str) -> bool {
        self.entries
            .borrow()
            .iter()
            .any(|(h, p)| h == hash && constant_time_eq(p.as_bytes(), given.as_bytes()))
    }

    fn remember(&self, hash: &str, given: &str) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() == Self::CAPACITY {
            entries.pop_front();
        }
        entries.push_back((hash.to_owned(), given.to_owned()));
        assert!(entries.len() <= Self::CAPACITY);
    }

    fn matches(&self, hash: &str, given: &str) -> bool {
        if self.knows(hash, given) {
            return true;
        }
        self.verifications.set(self.verifications.get() + 1);
        let ok = bcrypt::verify(given, hash).unwrap_or(false);
        if ok {
            self.remember(hash, given);
        }
        ok
    }

    /// bcrypt verifications run so far.
    pub fn verifications(&self) -> u64 {
        self.verifications.get()
    }
}

impl fmt::Debug for BcryptCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BcryptCache")
            .field("entries", &self.entries.borrow().len())
            .field("verifications", &self.verifications.get())
            .finish()
    }
}

impl Authenticator {
    /// Index `config`. Users without permissions of their own get the
    /// default permissions, as in the reference.
    pub fn new(config: &AuthConfig) -> Self {
        // The permissions a user logs in with: its own, else the defaults,
        // in the reference's normalised form.
        let effective = |own: &Option<Permissions>| {
            own.clone()
                .or_else(|| config.default_permissions.clone())
                .map(Permissions::normalized)
        };
        let users = config
            .users
            .iter()
            .map(|user| {
                let permissions = effective(&user.permissions);
                (
                    user.username.clone(),
                    User {
                        permissions,
                        ..user.clone()
                    },
                )
            })
            .collect();
        let nkeys = config
            .nkeys
            .iter()
            .map(|user| {
                let permissions = effective(&user.permissions);
                (
                    user.nkey.clone(),
                    NkeyUser {
                        permissions,
                        ..user.clone()
                    },
                )
            })
            .collect();
        Authenticator {
            config: config.clone(),
            users,
            nkeys,
            verified: BcryptCache::default(),
        }
    }

    /// The authenticator of a reloaded `config`, keeping what this one
    /// already verified (see [`BcryptCache`]).
    pub fn renewed(&self, config: &AuthConfig) -> Self {
        Authenticator {
            verified: self.verified.clone(),
            ..Authenticator::new(config)
        }
    }

    /// bcrypt verifications run so far (cache hits are not counted).
    pub fn bcrypt_verifications(&self) -> u64 {
        self.verified.verifications()
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub fn is_required(&self) -> bool {
        self.config.is_required()
    }

    /// Whether INFO carries a nonce for nkey signatures.
    pub fn needs_nonce(&self) -> bool {
        !self.nkeys.is_empty() || self.config.operator.is_some()
    }

    /// INFO's `auth_required`: a `no_auth_user` lets clients in without
    /// credentials, so the reference announces none.
    pub fn announces_auth_required(&self) -> bool {
        self.is_required() && self.config.no_auth_user.is_none()
    }

    /// Check `connect` against the configuration. `nonce` is what this
    /// connection's INFO carried; `cert_names` are the names a verified client
    /// certificate maps to (`verify_and_map`), most specific first.
    pub fn authenticate(
        &self,
        connect: &ConnectOptions,
        nonce: &[u8],
        cert_names: Option<&[String]>,
        now: WallTime,
    ) -> Result<Identity, AuthFailure> {
        match self.login(connect, nonce, cert_names, false, now)? {
            Login::Accepted(identity) => Ok(identity),
            Login::NeedsPasswordCheck { .. } => {
                unreachable!("bcrypt runs inline when not deferred")
            }
        }
    }

    /// As [`Authenticator::authenticate`], but a bcrypt password that is not
    /// in the cache is left to a [`PasswordCheck`] the caller runs elsewhere
    /// (and reports with [`Authenticator::password_checked`]).
    pub fn authenticate_deferred(
        &self,
        connect: &ConnectOptions,
        nonce: &[u8],
        cert_names: Option<&[String]>,
        now: WallTime,
    ) -> Result<Login, AuthFailure> {
        self.login(connect, nonce, cert_names, true, now)
    }

    /// A deferred check ran elsewhere; a passed one is remembered (see
    /// [`BcryptCache`]), so logging the client in afterwards costs no bcrypt.
    pub fn password_checked(&self, check: &PasswordCheck, passed: bool) {
        self.verified
            .verifications
            .set(self.verified.verifications.get() + 1);
        if passed {
            assert!(
                check.rest_ok,
                "a check whose other parts failed cannot pass"
            );
            self.verified.remember(&check.hash, &check.given);
        }
    }

    fn login(
        &self,
        connect: &ConnectOptions,
        nonce: &[u8],
        cert_names: Option<&[String]>,
        defer: bool,
        now: WallTime,
    ) -> Result<Login, AuthFailure> {
        if !self.is_required() {
            return Ok(Login::Accepted(Identity::global()));
        }
        if let Some(operator) = &self.config.operator {
            // Operator mode allows no other form of login.
            return operator
                .authenticate(connect, nonce, now)
                .map(Login::Accepted);
        }
        let no_credentials = is_blank(&connect.user)
            && is_blank(&connect.pass)
            && is_blank(&connect.auth_token)
            && is_blank(&connect.nkey);
        let no_auth_user = self
            .config
            .no_auth_user
            .as_deref()
            .filter(|_| no_credentials);

        // nkey users first.
        if !self.nkeys.is_empty() {
            let named = match (connect.nkey.as_deref(), no_auth_user) {
                (Some(nkey), _) if !nkey.is_empty() => Some((nkey, false)),
                (_, Some(user)) if self.nkeys.contains_key(user) => Some((user, true)),
                _ => None,
            };
            if let Some((nkey, is_no_auth_user)) = named {
                let user = self.nkeys.get(nkey).ok_or(AuthFailure::UnknownNkey)?;
                if !is_no_auth_user {
                    verify_nonce_signature(nkey, connect.sig.as_deref(), nonce)?;
                }
                return Ok(Login::Accepted(Identity {
                    account: user.account.clone(),
                    user: Some(user.nkey.clone()),
                    permissions: user.permissions.clone(),
                    restrictions: None,
                }));
            }
        }

        if !self.users.is_empty() {
            if let Some(names) = cert_names {
                let user = names
                    .iter()
                    .find_map(|name| self.users.get(name))
                    .ok_or(AuthFailure::CertificateNotMapped)?;
                return Ok(Login::Accepted(self.identity_of(user)));
            }
            let name = match (connect.user.as_deref(), no_auth_user) {
                (Some(name), _) if !name.is_empty() => Some((name, false)),
                (_, Some(user)) if self.users.contains_key(user) => Some((user, true)),
                _ => None,
            };
            if let Some((name, is_no_auth_user)) = name {
                let user = self.users.get(name).ok_or(AuthFailure::UnknownUser)?;
                let identity = self.identity_of(user);
                if is_no_auth_user {
                    return Ok(Login::Accepted(identity));
                }
                let given = connect.pass.as_deref().unwrap_or("");
                let outcome = self.check_password(&user.password, given, true, defer);
                return decide(outcome, identity, AuthFailure::BadPassword);
            }
        }

        if let Some(token) = &self.config.token {
            let given = connect.auth_token.as_deref().unwrap_or("");
            let outcome = self.check_password(token, given, true, defer);
            return decide(outcome, self.single_identity(None), AuthFailure::BadToken);
        }
        if let Some(user) = &self.config.user {
            let given_user = connect.user.as_deref().unwrap_or("");
            let given_pass = connect.pass.as_deref().unwrap_or("");
            let password = self.config.password.as_deref().unwrap_or("");
            // Evaluate both so timing does not reveal which one was wrong.
            let user_ok = constant_time_eq(given_user.as_bytes(), user.as_bytes());
            let outcome = self.check_password(password, given_pass, user_ok, defer);
            let identity = self.single_identity(Some(user.clone()));
            return decide(outcome, identity, AuthFailure::BadPassword);
        }
        Err(AuthFailure::NoCredentials)
    }

    /// bcrypt hashes (`$2a$`, `$2b$`, `$2x$`, `$2y$`) are verified with
    /// bcrypt (or the cache of earlier verifications), or deferred to a
    /// [`PasswordCheck`]; anything else is a plain-text secret. `rest_ok`:
    /// whether what is checked alongside (a user name) passed.
    fn check_password(
        &self,
        configured: &str,
        given: &str,
        rest_ok: bool,
        defer: bool,
    ) -> PasswordOutcome {
        let matches = if !is_bcrypt(configured) {
            constant_time_eq(given.as_bytes(), configured.as_bytes())
        } else if defer && !self.verified.knows(configured, given) {
            return PasswordOutcome::Deferred(PasswordCheck {
                hash: configured.to_owned(),
                given: given.to_owned(),
                rest_ok,
            });
        } else {
            self.verified.matches(configured, given)
        };
        if matches && rest_ok {
            PasswordOutcome::Matches
        } else {
            PasswordOutcome::Differs
        }
    }

    fn identity_of(&self, user: &User) -> Identity {
        Identity {
            account: user.account.clone(),
            user: Some(user.username.clone()),
            permissions: user.permissions.clone(),
            restrictions: None,
        }
    }

    /// A token or single-user login: the global account, with the default
    /// permissions if any.
    fn single_identity(&self, user: Option<String>) -> Identity {
        Identity {
            account: String::from(GLOBAL_ACCOUNT),
            user,
            permissions: self
                .config
                .default_permissions
                .clone()
                .map(Permissions::normalized),
            restrictions: None,
        }
    }
}

fn decide(
    outcome: PasswordOutcome,
    identity: Identity,
    failure: AuthFailure,
) -> Result<Login, AuthFailure> {
    match outcome {
        PasswordOutcome::Matches => Ok(Login::Accepted(identity)),
        PasswordOutcome::Differs => Err(failure),
        PasswordOutcome::Deferred(check) => Ok(Login::NeedsPasswordCheck { identity, check }),
    }
}

fn is_blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(str::is_empty)
}

/// The reference accepts the signature in URL-safe base64 without padding,
/// or in standard base64.
pub(super) fn verify_nonce_signature(
    nkey: &str,
    sig: Option<&str>,
    nonce: &[u8],
) -> Result<(), AuthFailure> {
    let sig = sig
        .filter(|s| !s.is_empty())
        .ok_or(AuthFailure::SignatureMissing)?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(sig))
        .map_err(|_| AuthFailure::SignatureNotBase64)?;
    let key = nkeys::KeyPair::from_public_key(nkey).map_err(|_| AuthFailure::NkeyNotValid)?;
    key.verify(nonce, &signature)
        .map_err(|_| AuthFailure::SignatureNotVerified)
}

fn is_bcrypt(secret: &str) -> bool {
    secret.starts_with("$2a$")
        || secret.starts_with("$2b$")
        || secret.starts_with("$2x$")
        || secret.starts_with("$2y$")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// The nonce INFO carries: 11 random bytes in URL-safe base64 (15 characters).
pub fn encode_nonce(raw: [u8; 11]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ResponsePermission, SubjectPermission};

    fn connect(json: &str) -> ConnectOptions {
        ConnectOptions::from_json(json.as_bytes()).expect("valid CONNECT")
    }

    fn user(name: &str, password: &str, account: &str) -> User {
        User {
            username: name.into(),
            password: password.into(),
            permissions: None,
            account: account.into(),
        }
    }

    #[test]
    fn a_bcrypt_password_is_verified_once_and_a_reload_keeps_that() {
        let hash = bcrypt::hash_with_salt("s3cret", 4, [7u8; 16])
            .expect("bcrypt")
            .to_string();
        let config = AuthConfig {
            users: vec![user("bob", &hash, "$G")],
            ..AuthConfig::default()
        };
        let auth = Authenticator::new(&config);
        let good = connect(r#"{"user":"bob","pass":"s3cret"}"#);
        let bad = connect(r#"{"user":"bob","pass":"nope"}"#);
        assert!(auth
            .authenticate(&good, b"", None, WallTime::default())
            .is_ok());
        assert!(auth
            .authenticate(&good, b"", None, WallTime::default())
            .is_ok());
        assert_eq!(auth.bcrypt_verifications(), 1);
        // A wrong password is never remembered: each try costs a bcrypt.
        assert!(auth
            .authenticate(&bad, b"", None, WallTime::default())
            .is_err());
        assert!(auth
            .authenticate(&bad, b"", None, WallTime::default())
            .is_err());
        assert_eq!(auth.bcrypt_verifications(), 3);
        let reloaded = auth.renewed(&config);
        assert!(reloaded
            .authenticate(&good, b"", None, WallTime::default())
            .is_ok());
        assert_eq!(
            reloaded.bcrypt_verifications(),
            3,
            "answered from the cache"
        );
        // A new hash for the same password is checked afresh.
        let rehashed = bcrypt::hash_with_salt("s3cret", 4, [9u8; 16])
            .expect("bcrypt")
            .to_string();
        let changed = auth.renewed(&AuthConfig {
            users: vec![user("bob", &rehashed, "$G")],
            ..AuthConfig::default()
        });
        assert!(changed
            .authenticate(&good, b"", None, WallTime::default())
            .is_ok());
        assert_eq!(changed.bcrypt_verifications(), 4);
        assert!(
            !format!("{auth:?}").contains("s3cret"),
            "Debug shows no password"
        );
    }

    #[test]
    fn constant_time_eq_agrees_with_eq() {
        for (a, b) in [
            ("", ""),
            ("a", ""),
            ("", "a"),
            ("abc", "abc"),
            ("abc", "abd"),
        ] {
            assert_eq!(constant_time_eq(a.as_bytes(), b.as_bytes()), a == b);
        }
    }

    #[test]
    fn users_list_with_plain_and_bcrypt_passwords() {
        let hash = bcrypt::hash_with_salt("s3cret", 4, [7u8; 16])
            .expect("bcrypt")
            .to_string();
        let auth = Authenticator::new(&AuthConfig {
            users: vec![user("alice", "plain", "A"), user("bob", &hash, "$G")],
            ..AuthConfig::default()
        });
        let alice = auth
            .authenticate(
                &connect(r#"{"user":"alice","pass":"plain"}"#),
                b"",
                None,
                WallTime::default(),
            )
            .expect("alice");
        assert_eq!(alice.account, "A");
        assert_eq!(alice.user.as_deref(), Some("alice"));
        assert!(auth
            .authenticate(
                &connect(r#"{"user":"bob","pass":"s3cret"}"#),
                b"",
                None,
                WallTime::default()
            )
            .is_ok());
        assert_eq!(
            auth.authenticate(
                &connect(r#"{"user":"bob","pass":"nope"}"#),
                b"",
                None,
                WallTime::default()
            ),
            Err(AuthFailure::BadPassword)
        );
        assert_eq!(
            auth.authenticate(
                &connect(r#"{"user":"carol","pass":"x"}"#),
                b"",
                None,
                WallTime::default()
            ),
            Err(AuthFailure::UnknownUser)
        );
        assert_eq!(
            auth.authenticate(&connect("{}"), b"", None, WallTime::default()),
            Err(AuthFailure::NoCredentials)
        );
    }

    #[test]
    fn no_auth_user_takes_credential_less_clients_only() {
        let auth = Authenticator::new(&AuthConfig {
            users: vec![user("anon", "pw", "A"), user("bob", "pw2", "B")],
            no_auth_user: Some("anon".into()),
            ..AuthConfig::default()
        });
        assert!(!auth.announces_auth_required());
        let anon = auth
            .authenticate(&connect("{}"), b"", None, WallTime::default())
            .expect("anon");
        assert_eq!(anon.account, "A");
        assert_eq!(
            auth.authenticate(
                &connect(r#"{"user":"bob","pass":"bad"}"#),
                b"",
                None,
                WallTime::default()
            ),
            Err(AuthFailure::BadPassword)
        );
    }

    #[test]
    fn nkey_users_must_sign_the_nonce() {
        let pair =
            nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::User, [42u8; 32]).expect("key pair");
        let public = pair.public_key();
        let auth = Authenticator::new(&AuthConfig {
            nkeys: vec![NkeyUser {
                nkey: public.clone(),
                permissions: None,
                account: "A".into(),
            }],
            ..AuthConfig::default()
        });
        assert!(auth.needs_nonce());
        let nonce = encode_nonce([1; 11]);
        assert_eq!(nonce.len(), 15);
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(pair.sign(nonce.as_bytes()).expect("sign"));
        let good = format!(r#"{{"nkey":"{public}","sig":"{sig}"}}"#);
        assert_eq!(
            auth.authenticate(&connect(&good), nonce.as_bytes(), None, WallTime::default())
                .expect("signed")
                .account,
            "A"
        );
        assert_eq!(
            auth.authenticate(&connect(&good), b"another nonce", None, WallTime::default()),
            Err(AuthFailure::SignatureNotVerified)
        );
        let unsigned = format!(r#"{{"nkey":"{public}"}}"#);
        assert_eq!(
            auth.authenticate(
                &connect(&unsigned),
                nonce.as_bytes(),
                None,
                WallTime::default()
            ),
            Err(AuthFailure::SignatureMissing)
        );
    }

    #[test]
    fn default_permissions_fill_users_without_their_own() {
        let defaults = Permissions {
            publish: Some(SubjectPermission {
                allow: Some(vec!["x".into()]),
                deny: vec![],
            }),
            subscribe: None,
            response: Some(ResponsePermission {
                max_msgs: 0,
                expires: std::time::Duration::ZERO,
            }),
        };
        let auth = Authenticator::new(&AuthConfig {
            users: vec![user("a", "p", "$G")],
            default_permissions: Some(defaults),
            ..AuthConfig::default()
        });
        let identity = auth
            .authenticate(
                &connect(r#"{"user":"a","pass":"p"}"#),
                b"",
                None,
                WallTime::default(),
            )
            .expect("a");
        let permissions = identity.permissions.expect("defaults applied");
        assert_eq!(permissions.response, Some(ResponsePermission::default()));
    }

    #[test]
    fn verify_and_map_finds_the_user_by_certificate_name() {
        let auth = Authenticator::new(&AuthConfig {
            users: vec![user("CN=alice,O=acme", "", "A")],
            ..AuthConfig::default()
        });
        let names = vec![String::from("CN=alice,O=acme")];
        assert_eq!(
            auth.authenticate(&connect("{}"), b"", Some(&names), WallTime::default())
                .expect("mapped")
                .account,
            "A"
        );
        let other = vec![String::from("CN=mallory")];
        assert_eq!(
            auth.authenticate(&connect("{}"), b"", Some(&other), WallTime::default()),
            Err(AuthFailure::CertificateNotMapped)
        );
    }
}
