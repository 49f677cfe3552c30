//! The directory resolvers between servers, over `$SYS` across the routes,
//! as nats-server's `DirAccResolver` and `CacheDirAccResolver` talk:
//!
//! - Sync (full resolver): every `interval` the server publishes its
//!   directory's hash on `$SYS.REQ.CLAIMS.PACK`; a peer whose hash differs
//!   answers with each JWT it holds (`<key>|<jwt>`, one per message) and an
//!   empty message to end, and each line is merged: stored unless the JWT
//!   held is the same or newer (`DirResolver::save_if_newer`).
//! - Lookup (both): a login naming an account the server does not hold is
//!   parked while `$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP` asks the peers;
//!   the first JWT answered is stored and run, empty answers from every
//!   server asked mean "not found", and no answer within `timeout` fails.
//! - Cache expiry: the cache's JWT files are removed `ttl` after they were
//!   stored (the accounts keep running, as in the reference).
//! - JWT expiry (the full resolver, and the cache without `ttl`): at start
//!   and every minute after, as the reference's expiration tracker ticks,
//!   the files of JWTs whose `exp` has passed are removed and leave the
//!   directory's hash (the accounts are expired by their own deadline).
//!
//! Pushed claims reach every server without help: each one serves
//! `$SYS.REQ.CLAIMS.UPDATE` in the system account, whose interest crosses
//! the routes, so a push published anywhere is stored everywhere.
//!
//! Invariants:
//! - At most one lookup per account is in flight; the logins parked on it
//!   (`fetch_ops.rs`) are decided when it ends, by answer or by timeout.
//! - Deadlines come from the machine's clock only; `deadline()` is the
//!   earliest of them, filed as `TimerKey::Resolver`.

use std::collections::BTreeMap;

use super::log::LogLevel;
use super::system_inbox::{resolver_inbox, SysRequest, INTERNAL_CONN};
use super::{Delivery, Server};
use crate::auth::{DirKind, DirResolver, ResolverWrite};
use crate::time::Instant;

/// Where the answers to this server's pack requests arrive (after its
/// resolver inbox).
const PACK_TOKEN: &str = "PACK";

/// The peer exchanges in flight and the timers they need.
#[derive(Debug, Default)]
pub(super) struct PeerResolver {
    /// When the full resolver next asks for a pack (`None` until the
    /// system account runs).
    next_sync: Option<Instant>,
    /// Lookups in flight, by account.
    lookups: BTreeMap<String, PeerLookup>,
    lookups_sent: u64,
    /// The cache's JWTs by when their `ttl` runs out.
    expiry: BTreeMap<String, Instant>,
    /// The cache's save counter last seen (`None`: never looked).
    saves_seen: Option<u64>,
    /// When expired JWTs are next looked for (`None`: not started).
    next_expiry_check: Option<Instant>,
}

/// How often the directory looks for expired JWTs (the reference's
/// expiration tracker without a `ttl`).
const EXPIRY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug)]
struct PeerLookup {
    /// The last token of its reply inbox.
    token: String,
    deadline: Instant,
    /// Empty answers still to come before "not found".
    awaiting: usize,
}

impl PeerResolver {
    pub(super) fn deadline(&self) -> Option<Instant> {
        let lookups = self.lookups.values().map(|lookup| lookup.deadline);
        let expiry = self.expiry.values().copied();
        self.next_sync
            .into_iter()
            .chain(self.next_expiry_check)
            .chain(lookups)
            .chain(expiry)
            .min()
    }
}

/// The directory resolver, when one is configured.
fn dir_resolver(config: &super::ServerConfig) -> Option<&DirResolver> {
    config.auth.operator.as_ref()?.dir.as_ref()
}

/// The keys of `map` whose instant is due at `now`.
fn due<T>(map: &BTreeMap<String, T>, now: Instant, at: impl Fn(&T) -> Instant) -> Vec<String> {
    map.iter()
        .filter(|(_, value)| at(value) <= now)
        .map(|(key, _)| key.clone())
        .collect()
}

impl Server {
    /// End of a step: start the sync timer once there is a system account,
    /// note when new cache JWTs expire, and file the earliest deadline.
    pub(super) fn run_resolver_peers(&mut self, now: Instant) {
        let Some(dir) = dir_resolver(&self.config) else {
            return;
        };
        match dir.kind {
            DirKind::Full => {
                if self.peers.next_sync.is_none() && self.router.accounts.system.is_some() {
                    self.peers.next_sync = Some(now + dir.interval);
                }
            }
            DirKind::Cache { ttl: Some(ttl) } => {
                if self.peers.saves_seen != Some(dir.saves) {
                    let seen = self.peers.saves_seen.unwrap_or(0);
                    for key in dir.stored.keys() {
                        let saved = dir.saved_at.get(key).copied().unwrap_or(0);
                        if saved > seen || self.peers.saves_seen.is_none() {
                            self.peers.expiry.insert(key.clone(), now + ttl);
                        }
                    }
                    self.peers.saves_seen = Some(dir.saves);
                }
            }
            DirKind::Cache { ttl: None } => {}
        }
        let tracks_exp = matches!(dir.kind, DirKind::Full | DirKind::Cache { ttl: None });
        let clock_read = self.monitor.started != crate::time::WallTime::default();
        if tracks_exp && clock_read && self.peers.next_expiry_check.is_none() {
            // The reference's tracker looks once as it starts.
            self.remove_expired_jwts(now);
        }
        let deadline = self.peers.deadline();
        self.timers
            .set_or_cancel(crate::runtime::TimerKey::Resolver, deadline);
    }

    /// The resolver's timer: lookups that ran out of time fail, the sync
    /// is due, cache JWTs expire.
    pub(super) fn resolver_timer(&mut self, now: Instant) {
        for account in due(&self.peers.lookups, now, |lookup| lookup.deadline) {
            self.peers.lookups.remove(&account);
            self.account_fetched(now, &account, Err(String::from("fetching jwt timed out")));
        }
        if self.peers.next_sync.is_some_and(|due| due <= now) {
            self.send_pack_request(now);
        }
        if self.peers.next_expiry_check.is_some_and(|due| due <= now) {
            self.remove_expired_jwts(now);
        }
        for key in due(&self.peers.expiry, now, |at| *at) {
            self.peers.expiry.remove(&key);
            let write = self
                .config
                .auth
                .operator
                .as_mut()
                .and_then(|mode| mode.dir.as_mut())
                .and_then(|dir| dir.evict(&key));
            if let Some(write) = write {
                self.resolver_files.queue(write);
            }
        }
    }

    /// The wall clock at `now` in whole seconds (as JWT times are).
    pub(super) fn wall_seconds(&self, now: Instant) -> i64 {
        let seconds = self.monitor.wall.wall_at(now).as_unix_nanos() / 1_000_000_000;
        i64::try_from(seconds).unwrap_or(i64::MAX)
    }

    /// Remove the JWTs whose `exp` has passed (their files too) and look
    /// again in a minute.
    fn remove_expired_jwts(&mut self, now: Instant) {
        self.peers.next_expiry_check = Some(now + EXPIRY_CHECK_INTERVAL);
        let wall = self.monitor.wall.wall_at(now).as_unix_nanos();
        let Some(dir) = self
            .config
            .auth
            .operator
            .as_mut()
            .and_then(|mode| mode.dir.as_mut())
        else {
            return;
        };
        let expired: Vec<String> = dir
            .stored
            .iter()
            .filter(|(_, jwt)| {
                crate::auth::jwt::decode_generic(jwt).is_ok_and(|claims| {
                    let expires = u64::try_from(claims.claims.expires).unwrap_or(0);
                    expires > 0 && expires.saturating_mul(1_000_000_000) <= wall
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            if let Some(write) = dir.evict(&key) {
                self.resolver_files.queue(write);
            }
        }
    }

    /// Ask the peers for their JWTs, sending this directory's hash.
    fn send_pack_request(&mut self, now: Instant) {
        let Some(dir) = dir_resolver(&self.config) else {
            return;
        };
        let hash = dir.hash();
        self.peers.next_sync = Some(now + dir.interval);
        let reply = format!(
            "{}.{PACK_TOKEN}",
            resolver_inbox(&self.config.identity.server_id)
        );
        self.publish_system_request(now, b"$SYS.REQ.CLAIMS.PACK", &reply, &hash);
    }

    /// Ask the peers for `account`'s JWT, for the logins parked on it.
    pub(super) fn lookup_from_peers(&mut self, now: Instant, account: &str) {
        let Some(dir) = dir_resolver(&self.config) else {
            return;
        };
        self.peers.lookups_sent += 1;
        let token = format!("L{}", self.peers.lookups_sent);
        let mut servers: Vec<&str> = self
            .conns
            .routes()
            .filter_map(|(_, route)| route.remote.as_ref())
            .map(|remote| remote.server_id.as_str())
            .collect();
        servers.sort_unstable();
        servers.dedup();
        // The full resolver answers its own lookup too (with nothing).
        let awaiting = servers.len() + usize::from(!dir.is_cache());
        let lookup = PeerLookup {
            token: token.clone(),
            deadline: now + dir.timeout,
            awaiting,
        };
        assert!(
            self.peers
                .lookups
                .insert(account.to_owned(), lookup)
                .is_none(),
            "one lookup per account at a time"
        );
        let subject = format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.LOOKUP");
        let reply = format!(
            "{}.{token}",
            resolver_inbox(&self.config.identity.server_id)
        );
        self.publish_system_request(now, subject.as_bytes(), &reply, b"");
    }

    /// Publish in the system account with a reply subject, from no client.
    fn publish_system_request(
        &mut self,
        now: Instant,
        subject: &[u8],
        reply: &str,
        payload: &[u8],
    ) {
        let Some(system) = self.router.accounts.system else {
            return;
        };
        let delivery = Delivery {
            publisher: INTERNAL_CONN,
            subject,
            reply: Some(reply.as_bytes()),
            headers: None,
            payload,
            shown_subject: None,
        };
        self.route(now, system, &delivery, true);
    }

    /// A peer's pack request: nothing new when the hashes match, else
    /// every JWT held (unexpired), then an empty message.
    pub(super) fn answer_pack(&mut self, now: Instant, request: &SysRequest) {
        let own = resolver_inbox(&self.config.identity.server_id);
        if request.reply.is_empty() || request.reply.starts_with(own.as_bytes()) {
            // Nobody to answer, or this server asking itself.
            return;
        }
        let Some(dir) = dir_resolver(&self.config) else {
            return;
        };
        let mut messages = Vec::new();
        if request.payload[..] != dir.hash() {
            for (key, jwt) in dir.unexpired(self.wall_seconds(now)) {
                messages.push(format!("{key}|{jwt}").into_bytes());
            }
        }
        messages.push(Vec::new());
        let reply = request.reply.clone();
        for message in messages {
            self.publish_system(now, &reply, &message);
        }
    }

    /// An answer to one of this server's pack or lookup requests.
    pub(super) fn resolver_reply_arrived(&mut self, now: Instant, request: &SysRequest) {
        let token = request
            .subject
            .rsplit(|byte| *byte == b'.')
            .next()
            .unwrap_or_default();
        if token == PACK_TOKEN.as_bytes() {
            if !request.payload.is_empty() {
                self.merge_pack(&String::from_utf8_lossy(&request.payload));
            }
            return;
        }
        let Some(account) = self
            .peers
            .lookups
            .iter()
            .find(|(_, lookup)| lookup.token.as_bytes() == token)
            .map(|(account, _)| account.clone())
        else {
            // A late or stray answer.
            return;
        };
        if request.payload.is_empty() {
            let lookup = self.peers.lookups.get_mut(&account).expect("found above");
            lookup.awaiting = lookup.awaiting.saturating_sub(1);
            if lookup.awaiting > 0 {
                return;
            }
            self.peers.lookups.remove(&account);
            self.account_fetched(now, &account, Err(String::from("account jwt not found")));
            return;
        }
        self.peers.lookups.remove(&account);
        let jwt = String::from_utf8_lossy(&request.payload).into_owned();
        self.account_fetched(now, &account, Ok(jwt));
    }

    /// Merge a peer's pack lines into the directory (stopping at the first
    /// bad line, as the reference), running the accounts that changed.
    fn merge_pack(&mut self, pack: &str) {
        let Some(mut mode) = self.config.auth.operator.clone() else {
            return;
        };
        let mut changed = false;
        let mut writes: Vec<ResolverWrite> = Vec::new();
        let mut failure = None;
        for line in pack.split('\n').filter(|line| !line.is_empty()) {
            let parts: Vec<&str> = line.split('|').collect();
            let [key, jwt] = parts[..] else {
                failure = Some(format!(
                    "line in package didn't contain 2 entries: {}",
                    crate::format::go_quote(line.as_bytes())
                ));
                break;
            };
            if !crate::auth::is_public_account_key(key) {
                failure = Some(String::from(
                    "key to merge is not a valid public account key",
                ));
                break;
            }
            match mode.merge_claims(key, jwt) {
                Ok((more, applied)) => {
                    writes.extend(more);
                    match applied {
                        Ok(applied) => changed |= applied,
                        Err(why) => self.logs.push(
                            LogLevel::Error,
                            None,
                            format!(
                                "DirResolver - Update for account {key:?} resulted in error {why}"
                            ),
                        ),
                    }
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = failure {
            self.logs.push(
                LogLevel::Error,
                None,
                format!("DirResolver - Merging resulted in error: {error}"),
            );
        }
        for write in writes {
            self.resolver_files.queue(write);
        }
        if changed {
            self.apply_operator_mode(mode);
        } else {
            self.config.auth.operator = Some(mode);
        }
    }
}
