//! Accounts at run time: one subject namespace (a Sublist) per account, and
//! the routes that carry messages between accounts through exports and
//! imports.
//!
//! A Sublist entry is a [`SubTarget`]: a client's subscription, or an
//! internal route:
//! - a stream import lives in the *exporter's* Sublist on the imported
//!   subject; a match forwards the message into the importer under the
//!   import's local subject.
//! - a service import lives in the *importer's* Sublist on its local
//!   subject; a match forwards the request into the exporter, with its reply
//!   subject replaced by a fresh `_R_.` subject.
//! - that `_R_.` subject is a response route in the exporter's Sublist; a
//!   response on it is forwarded back to the requester's reply subject.
//!
//! Invariants:
//! - Account 0 is `$G`. Account names are unique.
//! - Every response route is in its exporter's Sublist exactly once, under
//!   its `subject`, and nowhere else; at most `MAX_RESPONSE_ROUTES` exist.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::config::ServerConfig;
use crate::auth::{
    AccountConfig, ExportKind, ImportKind, ResponseType, SubjectMapping, GLOBAL_ACCOUNT,
};
use crate::subject::{subject_matches_pattern, SubjectTransform, Sublist};
use crate::time::Instant;

/// Index of an account in [`Accounts::list`].
pub type AccountId = usize;

/// Response routes alive at once, across all accounts; the oldest go first.
const MAX_RESPONSE_ROUTES: usize = 64 * 1024;

/// What a Sublist entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubTarget {
    Client(SubKey),
    /// Interest a route announced (RS+): the route's connection and its
    /// index of that interest (`routes.rs`).
    Route(SubKey),
    /// Index into [`Accounts::stream_imports`].
    StreamImport(u32),
    /// A queue subscription of a stream import's importer, filed in the
    /// exporter (the reference's shadow subscription): it joins the
    /// exporter's queue groups, so one member cluster-wide gets each
    /// message; delivered to the client through the import's transform.
    Shadow {
        key: SubKey,
        import: u32,
    },
    /// Index into [`Accounts::service_imports`].
    ServiceImport(u32),
    /// Key of [`Accounts::responses`].
    Response(u64),
    /// A request subject the server itself answers (system account only).
    System(super::system::SysService),
    /// A subject JetStream listens to (its API, a stream's subjects).
    JetStream(crate::jetstream::link::JsTarget),
}

/// Names one subscription in the Sublist: the connection and a per-connection index.
/// (A sid is client-chosen bytes; an index is small, `Copy` and never reused.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubKey {
    pub conn: crate::runtime::ConnId,
    pub index: u64,
}

pub struct Account {
    pub name: String,
    pub sublist: Sublist<SubTarget>,
    pub mappings: Vec<Mapping>,
    /// Client subscriptions in `sublist` (the rest are internal routes).
    pub client_subs: usize,
    /// Indexes into [`Accounts::stream_imports`] of the imports this
    /// account makes (its subscriptions cast shadows through them).
    pub stream_imports: Vec<u32>,
    pub stats: AccountStats,
}

impl Account {
    fn empty(name: &str) -> Self {
        Account {
            name: name.to_string(),
            sublist: Sublist::new(),
            mappings: Vec::new(),
            client_subs: 0,
            stream_imports: Vec::new(),
            stats: AccountStats::default(),
        }
    }
}

/// One account's traffic since start (kept across reloads by name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountStats {
    /// Messages its clients published, and their bytes.
    pub received_msgs: u64,
    pub received_bytes: u64,
    /// Messages delivered to its clients, and their bytes.
    pub sent_msgs: u64,
    pub sent_bytes: u64,
    pub slow_consumers: u64,
}

/// One `mappings` entry: a source pattern and weighted destinations.
pub struct Mapping {
    source: String,
    /// (transform, cumulative weight in percent); the last weight is at most 100.
    destinations: Vec<(SubjectTransform, u32)>,
}

impl Mapping {
    fn new(config: &SubjectMapping) -> Result<Self, String> {
        let mut cumulative = 0u32;
        let mut destinations = Vec::new();
        for destination in &config.destinations {
            let transform = SubjectTransform::new(&config.source, &destination.subject)
                .map_err(|error| format!("mapping {:?}: {error}", config.source))?;
            cumulative += u32::from(destination.weight);
            destinations.push((transform, cumulative));
        }
        if cumulative > 100 || destinations.is_empty() {
            return Err(format!(
                "mapping {:?}: weights must add up to at most 100",
                config.source
            ));
        }
        Ok(Mapping {
            source: config.source.clone(),
            destinations,
        })
    }

    /// The rewritten subject, or `None` when this mapping does not apply (or
    /// the draw fell on the unmapped remainder). `draw` is in 0..100.
    pub fn apply(&self, subject: &[u8], draw: u32, out: &mut Vec<u8>) -> Option<bool> {
        if !subject_matches_pattern(self.source.as_bytes(), subject) {
            return None;
        }
        let chosen = self
            .destinations
            .iter()
            .find(|(_, cumulative)| draw < *cumulative);
        Some(chosen.is_some_and(|(transform, _)| transform.apply(subject, out)))
    }

    pub fn is_weighted(&self) -> bool {
        self.destinations.len() > 1 || self.destinations[0].1 < 100
    }
}

pub struct StreamImportRoute {
    pub importer: AccountId,
    /// The importer's name (for traces, while the accounts are borrowed).
    pub importer_name: String,
    pub exporter: AccountId,
    /// The imported subject, in the exporter.
    pub subject: String,
    /// The subject it is seen under in the importer.
    pub local: String,
    /// Exported subject → the importer's local subject.
    pub transform: SubjectTransform,
    /// The importer's subject → the exporter's, when the transform keeps
    /// every wildcard (else a shadow takes the whole imported subject).
    pub reverse: Option<SubjectTransform>,
}

impl StreamImportRoute {
    /// Where a subscription on `subject` in the importer listens in the
    /// exporter through this import, if the two meet at all.
    pub fn shadow_subject(&self, subject: &[u8]) -> Option<Bytes> {
        let met = crate::subject::intersect(subject, self.local.as_bytes())?;
        let mut out = Vec::new();
        match &self.reverse {
            Some(reverse) if reverse.apply(&met, &mut out) => Some(Bytes::from(out)),
            _ => Some(Bytes::from(self.subject.clone())),
        }
    }
}

pub struct ServiceImportRoute {
    pub importer: AccountId,
    pub exporter: AccountId,
    /// The importer's local subject → the exported subject.
    pub transform: SubjectTransform,
    pub response_type: ResponseType,
    pub response_threshold: Duration,
    /// The import's `share`: requests carry the requester's details.
    pub share: bool,
}

/// A `_R_.` subject standing in for a reply subject of another account:
/// what a service import's request carries (the requester's reply, filed
/// in the exporter), or a response's own reply crossing back (the
/// responder's reply, filed in the requester's account).
pub struct ResponseRoute {
    /// The account `reply` belongs to (where a message on `subject` goes).
    pub reply_account: AccountId,
    /// The account `subject` is filed in.
    pub subject_account: AccountId,
    /// The reply subject stood in for, in `reply_account`.
    pub reply: Bytes,
    /// The `_R_.` subject standing in for `reply`, in `subject_account`.
    pub subject: Bytes,
    pub response_type: ResponseType,
    pub expires_at: Instant,
}

/// Every account and every route between them.
pub struct Accounts {
    pub list: Vec<Account>,
    pub by_name: BTreeMap<String, AccountId>,
    pub system: Option<AccountId>,
    pub stream_imports: Vec<StreamImportRoute>,
    pub service_imports: Vec<ServiceImportRoute>,
    pub responses: BTreeMap<u64, ResponseRoute>,
    pub next_response: u64,
    /// Every `_R_.` subject this server opens starts with
    /// `_R_.<response_prefix>.`, a token of its own server id, so one
    /// wildcard per exporting account tells the routes where responses
    /// go (as the reference's per-account reply prefix does).
    pub response_prefix: String,
    /// Interest this server announces to routes beyond its clients'
    /// subscriptions (`Router::refresh_announced`): the system services'
    /// request subjects and the response wildcard in each service
    /// exporter, with the queue group of those served as one (the pack
    /// responders). (Stream imports announce their subscribers' shadows.)
    pub announced: Vec<(AccountId, Bytes, Option<Bytes>)>,
}

pub const GLOBAL: AccountId = 0;

/// Six characters of FNV-1a over the server id: this server's token in
/// the `_R_.` subjects it opens (a collision between two servers only
/// sends a response to a server that drops it).
fn response_prefix(server_id: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut hash = server_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    (0..6)
        .map(|_| {
            let c = ALPHABET[(hash % ALPHABET.len() as u64) as usize] as char;
            hash /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

impl Accounts {
    /// Build the accounts of `config`. Exports and imports the reference
    /// would refuse are left out and described in the returned warnings.
    ///
    /// On a reload, `previous` are the accounts being replaced: every
    /// account keeps its id (streams, consumers and connections hold ids).
    /// An account the new configuration no longer names keeps its slot,
    /// empty and out of `by_name`, so no id is ever reused for another name.
    pub fn build(config: &ServerConfig, previous: Option<&Accounts>) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let mut accounts = Accounts {
            list: Vec::new(),
            by_name: BTreeMap::new(),
            system: None,
            stream_imports: Vec::new(),
            service_imports: Vec::new(),
            responses: BTreeMap::new(),
            next_response: 0,
            response_prefix: response_prefix(&config.identity.server_id),
            announced: Vec::new(),
        };
        for old in previous.map_or(&[][..], |p| &p.list[..]) {
            accounts.list.push(Account::empty(&old.name));
        }
        accounts.add(GLOBAL_ACCOUNT);
        for account in &config.accounts {
            accounts.add(&account.name);
        }
        if let Some(system) = &config.system_account {
            accounts.system = Some(accounts.add(system));
        }
        for account in &config.accounts {
            let id = accounts.by_name[&account.name];
            for mapping in &account.mappings {
                match Mapping::new(mapping) {
                    Ok(mapping) => accounts.list[id].mappings.push(mapping),
                    Err(error) => warnings.push(format!("account {:?}: {error}", account.name)),
                }
            }
        }
        for account in &config.accounts {
            for import in &account.imports {
                if let Err(error) = accounts.add_import(&config.accounts, account, import) {
                    warnings.push(format!(
                        "account {:?}: import of {:?} from {:?}: {error}",
                        account.name, import.subject, import.account
                    ));
                }
            }
        }
        super::system::install(
            &mut accounts,
            &config.identity.server_id,
            match &config.auth.operator {
                None => super::system::ResolverRequests::None,
                Some(mode) => match &mode.dir {
                    Some(dir) if dir.is_cache() => super::system::ResolverRequests::Cache,
                    Some(_) => super::system::ResolverRequests::Directory,
                    None => super::system::ResolverRequests::Memory,
                },
            },
        );
        (accounts, warnings)
    }

    fn add(&mut self, name: &str) -> AccountId {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        // A slot kept from before a reload, or a new one.
        let id = match self.list.iter().position(|a| a.name == name) {
            Some(id) => id,
            None => {
                self.list.push(Account::empty(name));
                self.list.len() - 1
            }
        };
        self.by_name.insert(name.to_string(), id);
        debug_assert_eq!(self.list[id].name, name);
        id
    }

    fn add_import(
        &mut self,
        configs: &[AccountConfig],
        importer_config: &AccountConfig,
        import: &crate::auth::Import,
    ) -> Result<(), String> {
        let importer = self.by_name[&importer_config.name];
        let exporter = *self
            .by_name
            .get(&import.account)
            .ok_or_else(|| String::from("no such account"))?;
        let wanted = match import.kind {
            ImportKind::Stream => ExportKind::Stream,
            ImportKind::Service => ExportKind::Service,
        };
        // The export must cover the imported subject and let this account in.
        let export = configs
            .iter()
            .find(|c| c.name == import.account)
            .and_then(|c| {
                c.exports.iter().find(|e| {
                    e.kind == wanted
                        && (e.subject == import.subject
                            || subject_matches_pattern(
                                e.subject.as_bytes(),
                                import.subject.as_bytes(),
                            ))
                })
            })
            .ok_or_else(|| String::from("not exported"))?;
        if let Some(allowed) = &export.accounts {
            if !allowed.contains(&importer_config.name) {
                return Err(String::from("not authorized"));
            }
        }
        if let Some(position) = export.account_token_position {
            let token = import.subject.split('.').nth(position - 1);
            if token != Some(importer_config.name.as_str()) {
                return Err(format!(
                    "token {position} of the subject must be the importing account"
                ));
            }
        }
        match import.kind {
            ImportKind::Stream => {
                let transform = SubjectTransform::new(&import.subject, import.local_subject())
                    .map_err(|e| e.to_string())?;
                let index = self.stream_imports.len() as u32;
                self.list[exporter]
                    .sublist
                    .insert(
                        import.subject.as_bytes(),
                        None,
                        SubTarget::StreamImport(index),
                    )
                    .map_err(|e| format!("{e:?}"))?;
                self.stream_imports.push(StreamImportRoute {
                    importer,
                    importer_name: importer_config.name.clone(),
                    exporter,
                    subject: import.subject.clone(),
                    local: import.local_subject().to_string(),
                    reverse: transform.reverse(),
                    transform,
                });
                self.list[importer].stream_imports.push(index);
            }
            ImportKind::Service => {
                let local = import.local_subject();
                let transform =
                    SubjectTransform::new(local, &import.subject).map_err(|e| e.to_string())?;
                let index = self.service_imports.len() as u32;
                self.list[importer]
                    .sublist
                    .insert(local.as_bytes(), None, SubTarget::ServiceImport(index))
                    .map_err(|e| format!("{e:?}"))?;
                self.service_imports.push(ServiceImportRoute {
                    importer,
                    exporter,
                    transform,
                    response_type: export.response_type,
                    response_threshold: export.response_threshold,
                    share: import.share,
                });
                self.announce_responses(exporter);
            }
        }
        Ok(())
    }

    /// A service import the server sets up itself (the system account's
    /// account-scoped requests): no export to check, singleton replies.
    pub fn add_internal_service_import(
        &mut self,
        importer: AccountId,
        exporter: AccountId,
        local: &str,
        exported: &str,
    ) {
        let transform = SubjectTransform::literal(local, exported)
            .expect("internal import subjects are literal");
        let index = self.service_imports.len() as u32;
        let inserted = self.list[importer].sublist.insert(
            local.as_bytes(),
            None,
            SubTarget::ServiceImport(index),
        );
        assert!(
            inserted.is_ok(),
            "internal import {local} is a valid subject"
        );
        self.service_imports.push(ServiceImportRoute {
            importer,
            exporter,
            transform,
            response_type: ResponseType::Singleton,
            response_threshold: crate::auth::DEFAULT_RESPONSE_THRESHOLD,
            share: false,
        });
        self.announce_responses(exporter);
    }

    /// Responses to requests this server carries into `exporter` come
    /// back here from a responder on another server.
    fn announce_responses(&mut self, exporter: AccountId) {
        let wildcard = Bytes::from(format!("_R_.{}.>", self.response_prefix));
        if !self
            .announced
            .iter()
            .any(|(account, subject, _)| *account == exporter && *subject == wildcard)
        {
            self.announced.push((exporter, wildcard, None));
        }
    }

    /// The account named `name`, if configured.
    pub fn find(&self, name: &str) -> Option<AccountId> {
        self.by_name.get(name).copied()
    }

    /// Open a response route for a request crossing `import`; returns its
    /// `_R_.` subject. `token` is random text naming it.
    pub fn open_response(&mut self, import: u32, reply: &[u8], token: &str, now: Instant) -> Bytes {
        let route = &self.service_imports[import as usize];
        let (exporter, importer) = (route.exporter, route.importer);
        let (response_type, threshold) = (route.response_type, route.response_threshold);
        let expiry = (response_type, threshold);
        self.open_response_route(exporter, importer, reply, token, expiry, now)
    }

    /// A route from `_R_.<prefix>.<token>` in `subject_account` to `reply`
    /// in `reply_account`, for responses of `kind` within `threshold` (its
    /// id is the `next_response` before the call).
    pub fn open_response_route(
        &mut self,
        subject_account: AccountId,
        reply_account: AccountId,
        reply: &[u8],
        token: &str,
        (response_type, threshold): (ResponseType, Duration),
        now: Instant,
    ) -> Bytes {
        self.expire_responses(now);
        if self.responses.len() >= MAX_RESPONSE_ROUTES {
            let oldest = *self.responses.keys().next().expect("not empty");
            self.close_response(oldest);
        }
        let id = self.next_response;
        self.next_response += 1;
        let subject = Bytes::from(format!("_R_.{}.{token}", self.response_prefix));
        let inserted =
            self.list[subject_account]
                .sublist
                .insert(&subject, None, SubTarget::Response(id));
        assert!(inserted.is_ok(), "response subject {subject:?} reused");
        self.responses.insert(
            id,
            ResponseRoute {
                reply_account,
                subject_account,
                reply: Bytes::copy_from_slice(reply),
                subject: subject.clone(),
                response_type,
                expires_at: now + threshold,
            },
        );
        assert!(self.responses.len() <= MAX_RESPONSE_ROUTES);
        subject
    }

    pub fn close_response(&mut self, id: u64) {
        if let Some(route) = self.responses.remove(&id) {
            let removed = self.list[route.subject_account].sublist.remove(
                &route.subject,
                None,
                SubTarget::Response(id),
            );
            assert!(
                removed.is_ok(),
                "response route {id} missing from its Sublist"
            );
        }
    }

    /// Forget response routes past their threshold. Routes are keyed in
    /// creation order, so the scan stops at the first live one.
    fn expire_responses(&mut self, now: Instant) {
        while let Some((&id, route)) = self.responses.iter().next() {
            if route.expires_at > now {
                break;
            }
            self.close_response(id);
        }
    }

    /// Subscriptions made by clients, in every account.
    pub fn client_subscriptions(&self) -> usize {
        self.list.iter().map(|a| a.client_subs).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AccountConfig;

    fn config(names: &[&str]) -> ServerConfig {
        ServerConfig {
            accounts: names.iter().map(|n| AccountConfig::new(*n)).collect(),
            system_account: Some(String::from("SYS")),
            ..ServerConfig::default()
        }
    }

    #[test]
    fn account_ids_survive_a_reload_and_are_never_reused() {
        let (before, _) = Accounts::build(&config(&["A", "B"]), None);
        let a = before.find("A").unwrap();
        let b = before.find("B").unwrap();
        let sys = before.find("SYS").unwrap();
        // B stays, A goes, C arrives.
        let (after, _) = Accounts::build(&config(&["C", "B"]), Some(&before));
        assert_eq!(after.find("B"), Some(b));
        assert_eq!(after.find("SYS"), Some(sys));
        assert_eq!(after.find(GLOBAL_ACCOUNT), Some(GLOBAL));
        assert_eq!(after.find("A"), None, "a removed account is not found");
        let c = after.find("C").unwrap();
        assert!(c != a && c != b && c != sys, "a new account gets a new id");
        assert_eq!(after.list[a].name, "A", "the slot keeps its name");
        assert!(!after.by_name.contains_key("A"));
        // A comes back: it gets its old id again.
        let (again, _) = Accounts::build(&config(&["A", "B", "C"]), Some(&after));
        assert_eq!(again.find("A"), Some(a));
        assert_eq!(again.find("C"), Some(c));
    }
}
