//! Logins waiting for the resolver to fetch their account's JWT.
//!
//! Role: a user JWT naming an account the resolver does not hold yet
//! parks its login (`LoginWait::Account`) and asks for the account's JWT:
//! the URL resolver asks the runtime ([`AccountFetch`], taken with
//! [`Server::take_account_fetches`], answered with
//! [`Server::handle_account_fetched`]); the directory resolvers ask their
//! peers over `$SYS` (`resolver_peers.rs`). The answer runs the account
//! (checked as the resolver's JWTs are; a directory resolver stores it
//! first) and logs every waiting client in again, or refuses them with
//! `Authorization Violation` and the reference's warning.
//!
//! Invariants:
//! - At most one fetch per account is in flight; every login waiting on
//!   it is in `waiting` under that account, and is decided when the answer
//!   comes (or by its auth timeout, whichever is first).
//! - A failed fetch is not remembered: the next login asks again, as in
//!   the reference.
//! - An account held with an expired JWT is fetched again at most once a
//!   second (the reference's "update ignored, too soon"), so the logins
//!   decided after its fetch do not ask again.

use std::collections::BTreeMap;

use super::client::{LoginWait, PendingLogin};
use super::log::LogLevel;
use super::Server;
use crate::auth::AccountFetch;
use crate::protocol::ConnectOptions;
use crate::runtime::ConnId;
use crate::time::Instant;

/// Fetches asked for and the logins waiting on them.
#[derive(Debug, Default)]
pub(super) struct AccountFetches {
    /// Logins by the account they wait for.
    waiting: BTreeMap<String, Vec<ConnId>>,
    /// Fetches the runtime has not taken yet.
    queued: Vec<AccountFetch>,
    /// When each expired account was last fetched again.
    refetched: BTreeMap<String, Instant>,
}

/// How soon an expired account may be fetched again.
const REFETCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Server {
    /// The account a login must wait for: operator mode with the URL
    /// resolver, a websocket or a plain client alike.
    pub(super) fn account_to_fetch(
        &self,
        options: &ConnectOptions,
        now: Instant,
    ) -> Option<AccountFetch> {
        let wall = self.monitor.wall.wall_at(now);
        let mode = self.authenticator.config().operator.as_ref()?;
        let fetch = mode.account_to_fetch(options, wall)?;
        let held = mode.accounts.contains_key(&fetch.account);
        let recent = self
            .account_fetches
            .refetched
            .get(&fetch.account)
            .is_some_and(|at| now < *at + REFETCH_INTERVAL);
        if held && recent {
            return None;
        }
        Some(fetch)
    }

    /// Park `conn`'s login until `fetch` is answered; ask for it unless
    /// another login already did.
    pub(super) fn wait_for_account(
        &mut self,
        now: Instant,
        conn: ConnId,
        options: ConnectOptions,
        fetch: AccountFetch,
    ) {
        let client = self.conns.client(conn);
        client.pending_login = Some(Box::new(PendingLogin {
            options,
            wait: LoginWait::Account(fetch.account.clone()),
        }));
        let fetches = &mut self.account_fetches;
        let waiting = fetches.waiting.entry(fetch.account.clone()).or_default();
        let first = waiting.is_empty();
        waiting.push(conn);
        let held = self
            .config
            .auth
            .operator
            .as_ref()
            .is_some_and(|mode| mode.accounts.contains_key(&fetch.account));
        if first && held {
            fetches.refetched.insert(fetch.account.clone(), now);
        }
        if first {
            if fetch.url.is_empty() {
                self.lookup_from_peers(now, &fetch.account);
            } else {
                fetches.queued.push(fetch);
            }
        }
    }

    /// Account JWTs to fetch since the last call: for each, an HTTP GET of
    /// its `url` within [`crate::auth::ACCOUNT_FETCH_TIMEOUT`], answered
    /// with [`Server::handle_account_fetched`].
    pub fn take_account_fetches(&mut self) -> Vec<AccountFetch> {
        std::mem::take(&mut self.account_fetches.queued)
    }

    /// The runtime fetched `account`'s JWT (`Ok`: a `200` answer's body),
    /// or failed to (the reference's text: `could not fetch <"url">: ...`).
    pub fn handle_account_fetched(
        &mut self,
        now: Instant,
        account: &str,
        result: Result<String, String>,
    ) {
        self.account_fetched(now, account, result);
        self.finish_step(now);
    }

    /// `account`'s JWT came (from the runtime or a peer), or will not:
    /// decide the logins waiting for it.
    pub(super) fn account_fetched(
        &mut self,
        now: Instant,
        account: &str,
        result: Result<String, String>,
    ) {
        let waiting = self
            .account_fetches
            .waiting
            .remove(account)
            .unwrap_or_default();
        match result {
            Ok(token) => {
                if let Some(mut mode) = self.config.auth.operator.clone() {
                    let fetched = if mode.dir.is_some() {
                        // From a peer: stored as the peer's pack lines are.
                        mode.merge_claims(account, &token)
                            .and_then(|(writes, applied)| {
                                for write in writes {
                                    self.resolver_files.queue(write);
                                }
                                applied.map(|_| ())
                            })
                    } else {
                        mode.fetched_account(account, &token)
                    };
                    match fetched {
                        Ok(()) => self.apply_operator_mode(mode),
                        Err(error) => self.logs.push(
                            LogLevel::Debug,
                            None,
                            format!("Account JWT lookup error: {error}"),
                        ),
                    }
                }
            }
            Err(error) => self.logs.push(
                LogLevel::Warn,
                None,
                format!("Account fetch failed: {error}"),
            ),
        }
        let known = self
            .config
            .auth
            .operator
            .as_ref()
            .is_some_and(|mode| mode.accounts.contains_key(account));
        for conn in waiting {
            let Some(options) = self.take_account_login(conn, account) else {
                continue;
            };
            // Unknown still: not fetched again, the answer for this login was no.
            self.decide_parked_login(now, conn, options, known);
        }
    }

    /// The login of `conn` still waiting for `account`, taken.
    fn take_account_login(&mut self, conn: ConnId, account: &str) -> Option<ConnectOptions> {
        let client = self.conns.get_mut(conn).filter(|c| !c.is_closing())?;
        match client.pending_login.as_deref() {
            Some(PendingLogin {
                wait: LoginWait::Account(waiting),
                ..
            }) if waiting == account => {}
            _ => return None,
        }
        client.pending_login.take().map(|pending| pending.options)
    }
}
