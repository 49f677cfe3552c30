//! Who may connect, and what they may do once connected.
//!
//! This module holds the configuration model of nats-server's client
//! security (`authorization { }`, `accounts { }`, `no_auth_user`, nkeys) and
//! the two machines built from it:
//! - [`Authenticator`] checks a CONNECT's credentials and answers with the
//!   [`Identity`] the connection gets: its account and its permissions.
//! - [`PermissionChecker`] answers "may this client publish here / subscribe
//!   there / receive this message" with compiled allow and deny lists.
//!
//! Invariants:
//! - Secrets (passwords, tokens) never appear in `Debug` output: the types
//!   that hold them redact them.
//! - Every user belongs to exactly one account; users declared outside
//!   `accounts { }` belong to the global account `$G`.

mod accounts;
mod authenticate;
pub mod callout;
pub mod claims_check;
pub mod jwt;
mod operator;
mod permissions;
mod resolver;
mod scope;
pub mod times;

pub use accounts::{
    AccountConfig, Export, ExportKind, Import, ImportKind, MappingDestination, ResponseType,
    SubjectMapping, DEFAULT_RESPONSE_THRESHOLD, GLOBAL_ACCOUNT, SYSTEM_ACCOUNT,
};
pub use authenticate::{
    encode_nonce, AuthFailure, Authenticator, BcryptCache, Identity, Login, PasswordCheck,
};
pub use operator::{
    is_public_account_key, is_public_operator_key, startup_lines as operator_startup_lines,
    Built as OperatorBuilt, ClaimsUpdate, ClaimsUpdateError, DeletedAccounts, OperatorMode,
    OperatorOptions, Restrictions, StoreRefusal, StoredClaims,
};
pub use permissions::{PermissionChecker, ResponseTracker};
pub use resolver::{
    AccountFetch, DirKind, DirResolver, JwtDelete, ResolverTls, ResolverWrite, UrlResolver,
    ACCOUNT_FETCH_TIMEOUT, DEFAULT_CACHE_LIMIT, DEFAULT_SYNC_INTERVAL,
};

use std::fmt;
use std::time::Duration;

/// The connection types the reference knows (`allowed_connection_types`
/// in a config's users and in user JWTs).
pub const CONNECTION_TYPES: &[&str] = &[
    "STANDARD",
    "WEBSOCKET",
    "LEAFNODE",
    "LEAFNODE_WS",
    "MQTT",
    "MQTT_WS",
    "IN_PROCESS",
];

/// The reference's defaults for `allow_responses: true`.
pub const DEFAULT_ALLOW_RESPONSE_MAX_MSGS: u64 = 1;
pub const DEFAULT_ALLOW_RESPONSE_EXPIRATION: Duration = Duration::from_secs(2 * 60);

/// How clients prove who they are. Several forms may be configured at once
/// only as the reference allows (users and nkeys together; a token or a
/// single user alone).
#[derive(Clone, Default, PartialEq)]
pub struct AuthConfig {
    /// `authorization { token }` / `--auth`: CONNECT's `auth_token` must match.
    /// May be a bcrypt hash.
    pub token: Option<String>,
    /// `authorization { user, password }` / `--user --pass`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// `authorization { users: [...] }` and the users of every account.
    pub users: Vec<User>,
    /// Users identified by an nkey public key (`{ nkey: U... }`).
    pub nkeys: Vec<NkeyUser>,
    /// A client that sends no credentials is logged in as this user.
    pub no_auth_user: Option<String>,
    /// `authorization { default_permissions }` (also `permissions` at the
    /// top of the block when a single user is configured).
    pub default_permissions: Option<Permissions>,
    /// Operator mode: users log in with JWTs of the operators' accounts
    /// (and no other form of login is configured).
    pub operator: Option<OperatorMode>,
    /// `authorization { auth_callout { } }`: a service decides who the
    /// clients that are not its own `auth_users` are.
    pub callout: Option<callout::AuthCallout>,
}

impl AuthConfig {
    /// Whether clients must authenticate (INFO's `auth_required`).
    pub fn is_required(&self) -> bool {
        self.operator.is_some()
            || self.token.is_some()
            || self.user.is_some()
            || !self.users.is_empty()
            || !self.nkeys.is_empty()
    }

    /// The reference warns at startup ("Plaintext passwords detected, use
    /// nkeys or bcrypt") when a password is not a bcrypt hash.
    pub fn has_plaintext_passwords(&self) -> bool {
        let plain = |password: &str| !password.starts_with("$2");
        self.password
            .as_deref()
            .is_some_and(|p| !p.is_empty() && plain(p))
            || self.users.iter().any(|u| plain(&u.password))
    }

    /// A token-only configuration (the `--auth` flag).
    pub fn token(token: impl Into<String>) -> Self {
        AuthConfig {
            token: Some(token.into()),
            ..AuthConfig::default()
        }
    }

    /// A single-user configuration (the `--user`/`--pass` flags).
    pub fn single_user(user: impl Into<String>, password: impl Into<String>) -> Self {
        AuthConfig {
            user: Some(user.into()),
            password: Some(password.into()),
            ..AuthConfig::default()
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("AuthConfig")
            .field("token", &redacted(&self.token))
            .field("user", &self.user)
            .field("password", &redacted(&self.password))
            .field("users", &self.users)
            .field("nkeys", &self.nkeys)
            .field("no_auth_user", &self.no_auth_user)
            .field("default_permissions", &self.default_permissions)
            .field("callout", &self.callout)
            .finish()
    }
}

/// A user with a name and a password (plain text or a bcrypt hash).
#[derive(Clone, PartialEq)]
pub struct User {
    pub username: String,
    pub password: String,
    pub permissions: Option<Permissions>,
    /// The account the user logs into.
    pub account: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .field("permissions", &self.permissions)
            .field("account", &self.account)
            .finish()
    }
}

/// A user identified by an nkey: it proves itself by signing the nonce the
/// server sent in INFO.
#[derive(Debug, Clone, PartialEq)]
pub struct NkeyUser {
    /// The public user key (`U...`).
    pub nkey: String,
    pub permissions: Option<Permissions>,
    pub account: String,
}

/// `permissions { publish, subscribe, allow_responses }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permissions {
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
    /// `allow_responses`: may publish to the reply subjects of messages it
    /// received, up to `max_msgs` times within `expires`.
    pub response: Option<ResponsePermission>,
}

/// Allow and deny lists of subjects (wildcards allowed). For subscribe, an
/// entry may name a queue group after a space: `"foo.> workers"`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectPermission {
    /// `None`: everything not denied is allowed. `Some(empty)`: nothing is.
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePermission {
    pub max_msgs: u64,
    pub expires: Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        ResponsePermission {
            max_msgs: DEFAULT_ALLOW_RESPONSE_MAX_MSGS,
            expires: DEFAULT_ALLOW_RESPONSE_EXPIRATION,
        }
    }
}

impl Permissions {
    /// The reference's normalisation: `allow_responses` implies publishing
    /// is otherwise closed unless an allow list says more.
    pub fn normalized(mut self) -> Self {
        if let Some(response) = &mut self.response {
            if response.max_msgs == 0 {
                response.max_msgs = DEFAULT_ALLOW_RESPONSE_MAX_MSGS;
            }
            if response.expires.is_zero() {
                response.expires = DEFAULT_ALLOW_RESPONSE_EXPIRATION;
            }
            let publish = self.publish.get_or_insert_with(SubjectPermission::default);
            if publish.allow.is_none() {
                publish.allow = Some(Vec::new());
            }
        }
        self
    }
}
