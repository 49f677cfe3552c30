//! The configuration of accounts: `accounts { NAME { users, exports, imports,
//! mappings } }`, as nats-server v2.15.1 reads it.
//!
//! An account is a subject namespace of its own. Messages cross from one
//! account to another only through an export the owner declared and an
//! import the other account declared.

use std::time::Duration;

/// The account of users declared outside `accounts { }`.
pub const GLOBAL_ACCOUNT: &str = "$G";
/// The default `system_account`.
pub const SYSTEM_ACCOUNT: &str = "$SYS";

/// One account as configured. Its users live in [`super::AuthConfig`],
/// each naming its account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountConfig {
    pub name: String,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
    pub mappings: Vec<SubjectMapping>,
    /// JetStream for this account (`jetstream: enabled` or a `jetstream {}`
    /// block of limits); `None` leaves it off.
    pub jetstream: Option<crate::jetstream::config::AccountLimits>,
}

impl AccountConfig {
    pub fn new(name: impl Into<String>) -> Self {
        AccountConfig {
            name: name.into(),
            ..AccountConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Stream,
    Service,
}

/// How many responses a service request may get back across accounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponseType {
    /// One response, then the reply route is gone (the default).
    #[default]
    Singleton,
    /// Any number of responses until the threshold passes.
    Stream,
    /// Like Stream; the reference distinguishes it only for latency tracking.
    Chunked,
}

/// `exports: [ { stream: "foo.>" } | { service: "req.*", ... } ]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub kind: ExportKind,
    /// The exported subject (may hold wildcards).
    pub subject: String,
    /// `accounts: [...]`: who may import; `None` means anyone (public).
    pub accounts: Option<Vec<String>>,
    pub response_type: ResponseType,
    /// How long a service's reply route stays open (`response_threshold`).
    pub response_threshold: Duration,
    /// (Account JWTs) the 1-based token of the imported subject that must
    /// be the importing account's name.
    pub account_token_position: Option<usize>,
}

/// The reference's default `response_threshold`.
pub const DEFAULT_RESPONSE_THRESHOLD: Duration = Duration::from_secs(2 * 60);

impl Export {
    pub fn stream(subject: impl Into<String>) -> Self {
        Export {
            kind: ExportKind::Stream,
            subject: subject.into(),
            accounts: None,
            response_type: ResponseType::Singleton,
            response_threshold: DEFAULT_RESPONSE_THRESHOLD,
            account_token_position: None,
        }
    }

    pub fn service(subject: impl Into<String>) -> Self {
        Export {
            kind: ExportKind::Service,
            ..Export::stream(subject)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    Stream,
    Service,
}

/// `imports: [ { stream: { account, subject }, prefix | to } |
/// { service: { account, subject }, to } ]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub kind: ImportKind,
    /// The exporting account.
    pub account: String,
    /// The subject in the exporting account.
    pub subject: String,
    /// Stream: where imported messages appear locally (a transform of
    /// `subject`; `prefix: p` is `to: "p.<subject>"`). Service: the local
    /// subject clients send requests to. `None`: the same subject.
    pub to: Option<String>,
    /// Service: the request carries the requester's details (connection,
    /// user, client library, this server) in `Nats-Request-Info`, not
    /// only its account.
    pub share: bool,
}

impl Import {
    /// The subject this import uses on the importing side.
    pub fn local_subject(&self) -> &str {
        self.to.as_deref().unwrap_or(&self.subject)
    }
}

/// `mappings { "src": "dest" }` or `"src": [{ destination, weight }]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectMapping {
    pub source: String,
    pub destinations: Vec<MappingDestination>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MappingDestination {
    pub subject: String,
    /// Percent, 1..=100. When the weights add up to less than 100, the rest
    /// of the messages keep their subject.
    pub weight: u8,
}
