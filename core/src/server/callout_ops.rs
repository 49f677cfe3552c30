//! Logins decided by the auth callout service
//! (`authorization { auth_callout { } }`).
//!
//! Role: when a CONNECT is delegated, the server publishes a signed (and
//! maybe sealed) authorization request on `$SYS.REQ.USER.AUTH` in the
//! callout account, with a reply inbox filed in that account's Sublist as a
//! [`SysService::AuthCalloutReply`] entry. The client is parked
//! (`LoginWait::Callout`): what it sends meanwhile waits, and the machine
//! goes on serving everyone else. The answer is judged by
//! `auth::callout::judge_response` at the end of the step that brought it;
//! no answer within the auth timeout refuses the client. A reload asks
//! again about the connected clients the callout decides
//! (`Client::callout_recheck`): they are not parked, and the answer
//! re-binds or closes them.
//!
//! Invariants:
//! - Each pending callout (a login's or a reload's) has exactly one inbox
//!   in [`Callouts`] and one Sublist entry; both go when it is answered, times out, or its client
//!   closes (swept at the end of every step).
//! - An answer is used only for the login that is still waiting on that
//!   inbox; late, repeated or stray answers are dropped.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand_chacha::rand_core::RngCore;

use super::accounts::{AccountId, SubTarget};
use super::client::{CalloutRecheck, LoginWait, PendingLogin};
use super::log::LogLevel;
use super::system_inbox::{SysService, INTERNAL_CONN};
use super::{Delivery, Server};
use crate::auth::callout::{self, AuthCallout, CALLOUT_SUBJECT, XKEY_HEADER};
use crate::auth::{self as auth, AuthFailure, Login};
use crate::protocol::ConnectOptions;
use crate::runtime::{CloseReason, ConnId, ListenerKind};
use crate::time::Instant;

/// The auth callout requests waiting for an answer, by reply inbox.
#[derive(Debug, Default)]
pub(super) struct Callouts {
    pending: BTreeMap<Bytes, (ConnId, AccountId)>,
    /// Requests a reload prepared, published once every client is filed
    /// again (the service's own subscription among them).
    unsent: Vec<Prepared>,
}

/// A signed (maybe sealed) request whose inbox is filed, not yet published.
#[derive(Debug)]
struct Prepared {
    account: AccountId,
    inbox: Bytes,
    headers: Option<String>,
    payload: Vec<u8>,
}

/// A CONNECT field that says something.
fn filled(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The user a CONNECT claims, as the reference names it to the callout
/// service and matches it against `auth_users`.
fn raw_auth_user(options: &ConnectOptions) -> &str {
    if let Some(nkey) = filled(&options.nkey) {
        nkey
    } else if let Some(user) = filled(&options.user) {
        user
    } else if filled(&options.auth_token).is_some() {
        "[REDACTED]"
    } else {
        ""
    }
}

/// Unix seconds of a wall time.
fn unix_seconds(wall: crate::time::WallTime) -> i64 {
    i64::try_from(wall.as_unix_nanos() / 1_000_000_000).unwrap_or(i64::MAX)
}

impl Server {
    /// The callout that decides this login, if any: every client but the
    /// callout's own `auth_users` whose configured login failed, or landed
    /// in `$G` or in one of `allowed_accounts` (all accounts when none are
    /// named), as the reference delegates.
    pub(super) fn delegated_to_callout(
        &self,
        options: &ConnectOptions,
        login: &Result<Login, AuthFailure>,
    ) -> Option<AuthCallout> {
        if let Some(mode) = &self.authenticator.config().operator {
            // Operator mode: a user of an account whose JWT turns the
            // callout on, unless it is one of the account's `auth_users`.
            let Ok(Login::Accepted(identity)) = login else {
                return None;
            };
            let external = mode.external_authorization(&identity.account)?;
            let user = identity.user.as_deref().unwrap_or_default();
            if external.auth_users.iter().any(|u| u == user) {
                return None;
            }
            return Some(AuthCallout {
                issuer: identity.account.clone(),
                account: identity.account.clone(),
                auth_users: Vec::new(),
                xkey: Some(external.xkey.clone()).filter(|x| !x.is_empty()),
                allowed_accounts: external.allowed_accounts.clone(),
                operator: true,
            });
        }
        let callout = self.authenticator.config().callout.as_ref()?;
        if callout
            .auth_users
            .iter()
            .any(|user| user == raw_auth_user(options))
        {
            return None;
        }
        let account = match login {
            Err(_) => return Some(callout.clone()),
            Ok(Login::Accepted(identity)) | Ok(Login::NeedsPasswordCheck { identity, .. }) => {
                &identity.account
            }
        };
        let delegated = account == auth::GLOBAL_ACCOUNT
            || callout.allowed_accounts.is_empty()
            || callout.allowed_accounts.contains(account);
        delegated.then(|| callout.clone())
    }

    /// A client logged into the callout account may not publish requests
    /// to the callout itself (the reference adds this deny to its permissions).
    pub(super) fn deny_callout_subject(&self, identity: &mut auth::Identity) {
        let config = self.authenticator.config();
        let callout_account = match (&config.operator, &config.callout) {
            (Some(mode), _) => mode.external_authorization(&identity.account).is_some(),
            (None, Some(callout)) => identity.account == callout.account,
            (None, None) => false,
        };
        if !callout_account {
            return;
        }
        let permissions = identity.permissions.get_or_insert_with(Default::default);
        let publish = permissions.publish.get_or_insert_with(Default::default);
        if !publish.deny.iter().any(|s| s == CALLOUT_SUBJECT) {
            publish.deny.push(String::from(CALLOUT_SUBJECT));
        }
    }

    /// Send `conn`'s authorization request and park its login.
    pub(super) fn start_callout(
        &mut self,
        now: Instant,
        conn: ConnId,
        options: ConnectOptions,
        callout: &AuthCallout,
    ) {
        let Some((user_nkey, prepared)) = self.prepare_callout(now, conn, &options, callout) else {
            self.refuse_login(conn, options);
            return;
        };
        let client = self.conns.client(conn);
        client.pending_login = Some(Box::new(PendingLogin {
            options,
            wait: LoginWait::Callout {
                user_nkey,
                inbox: prepared.inbox.clone(),
                account: prepared.account,
                callout: Box::new(callout.clone()),
            },
        }));
        // The callout has the auth timeout to answer, from now.
        client.auth_deadline = Some(now + self.config.auth_timeout);
        self.refile_timer(conn);
        self.publish_callout(now, &prepared);
    }

    /// After a reload: ask the callout again about connected `conn`, which
    /// it delegates to it, as the reference does. A client that names a
    /// user or nkey the configuration does not place in its current account
    /// is closed unasked (the reference's account-move check, no error).
    /// Otherwise it keeps its account and permissions, its traffic flowing,
    /// until the answer re-admits it (the answer's account and permissions)
    /// or refuses it; the request goes out at the end of the reload.
    pub(super) fn recheck_with_callout(
        &mut self,
        now: Instant,
        conn: ConnId,
        callout: AuthCallout,
    ) {
        let client = self.conns.client(conn);
        let account = client.account;
        let options = client.options.clone();
        if let Some(old) = client.callout_recheck.take() {
            self.forget_callout(&old.inbox);
        }
        let name = &self.router.accounts.list[account].name;
        let still_here = self.router.accounts.find(name) == Some(account);
        let auth = self.authenticator.config();
        let configured = |placed: Option<&String>| placed == Some(name);
        let kept = match (filled(&options.nkey), filled(&options.user)) {
            (Some(nkey), _) => configured(
                auth.nkeys
                    .iter()
                    .find(|u| u.nkey == nkey)
                    .map(|u| &u.account),
            ),
            (None, Some(user)) => configured(
                auth.users
                    .iter()
                    .find(|u| u.username == user)
                    .map(|u| &u.account),
            ),
            (None, None) => true,
        };
        if !kept {
            // Its subscriptions were taken out of the old Sublists already.
            let client = self.conns.client(conn);
            client.subs.clear();
            client.sids.clear();
            self.close(conn, CloseReason::ClientClosed);
            return;
        }
        if !still_here {
            self.refuse_rebuilt(conn);
            return;
        }
        self.refile_keeping_permissions(conn, account);
        let Some((user_nkey, prepared)) = self.prepare_callout(now, conn, &options, &callout)
        else {
            self.auth_violation(conn, &options);
            return;
        };
        let client = self.conns.client(conn);
        client.callout_recheck = Some(Box::new(CalloutRecheck {
            user_nkey,
            inbox: prepared.inbox.clone(),
            callout: Box::new(callout),
        }));
        client.auth_deadline = Some(now + self.config.auth_timeout);
        self.refile_timer(conn);
        self.callouts.unsent.push(prepared);
    }

    /// Accounts rebuilt under an operator-mode callout client. The
    /// reference cleared the user JWT it sent when the callout admitted it:
    /// a reload finds no credentials and closes it with `Authorization
    /// Violation`; a claims update leaves it in its account as it is.
    pub(super) fn operator_callout_client_rebuilt(&mut self, conn: ConnId, reload: bool) {
        let account = self.conns.client(conn).account;
        let name = &self.router.accounts.list[account].name;
        if !reload && self.router.accounts.find(name) == Some(account) {
            self.refile_keeping_permissions(conn, account);
            return;
        }
        self.refuse_rebuilt(conn);
    }

    /// The end of a reload: publish the requests it prepared.
    pub(super) fn send_rechecks(&mut self, now: Instant) {
        for prepared in std::mem::take(&mut self.callouts.unsent) {
            if self.callouts.pending.contains_key(&prepared.inbox) {
                self.publish_callout(now, &prepared);
            }
        }
    }

    /// Build, sign (and seal) `conn`'s authorization request and file its
    /// reply inbox; `None` (logged) when it cannot be made.
    fn prepare_callout(
        &mut self,
        now: Instant,
        conn: ConnId,
        options: &ConnectOptions,
        callout: &AuthCallout,
    ) -> Option<(String, Prepared)> {
        let Some(account) = self.router.accounts.find(&callout.account) else {
            self.logs.push(
                LogLevel::Warn,
                None,
                format!(
                    "No valid account {:?} for auth callout request: account missing",
                    callout.account
                ),
            );
            return None;
        };
        let mut raw = [0u8; 32];
        self.rng.fill_bytes(&mut raw);
        let user_nkey = nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::User, raw)
            .expect("32 bytes make a user key pair")
            .public_key();
        let inbox = Bytes::from(format!("$SYS._INBOX.{}", self.system.next_id()));
        let wall = unix_seconds(self.monitor.wall.wall_at(now));
        let identity = &self.config.identity;
        let client = self.conns.client(conn);
        let signed_nonce = options.sig.as_deref().is_some_and(|sig| !sig.is_empty());
        let request = callout::Request {
            subject: &callout.issuer,
            user_nkey: &user_nkey,
            server: callout::RequestServer {
                name: self.config.server_name.clone(),
                host: identity.host.clone(),
                id: identity.server_id.clone(),
                version: identity.version.clone(),
                xkey: callout.xkey.as_ref().map(|_| identity.xkey.clone()),
            },
            client: callout::RequestClient {
                host: client.peer.ip().to_string(),
                id: conn.0,
                user: raw_auth_user(options).to_string(),
                kind: "Client",
                client_type: match client.listener {
                    ListenerKind::WebSocket => "websocket",
                    _ => "nats",
                },
                nonce: signed_nonce.then(|| client.nonce.clone()),
            },
            connect: options,
            issued_at: wall,
            expires: wall.saturating_add(
                i64::try_from(self.config.auth_timeout.as_secs()).unwrap_or(i64::MAX),
            ),
        };
        let token = callout::request_token(&identity.keys, &request);
        let (payload, headers) = match &callout.xkey {
            None => (token.into_bytes(), None),
            Some(xkey) => {
                let mut nonce = [0u8; 24];
                self.rng.fill_bytes(&mut nonce);
                match identity.keys.seal(token.as_bytes(), xkey, nonce) {
                    Ok(sealed) => (
                        sealed,
                        Some(format!(
                            "NATS/1.0\r\n{XKEY_HEADER}: {}\r\n\r\n",
                            identity.xkey
                        )),
                    ),
                    Err(error) => {
                        self.logs.push(
                            LogLevel::Warn,
                            None,
                            format!(
                                "Error encrypting auth request claim on account {:?}: {error}",
                                callout.account
                            ),
                        );
                        return None;
                    }
                }
            }
        };
        let filed = self.router.accounts.list[account].sublist.insert(
            &inbox,
            None,
            SubTarget::System(SysService::AuthCalloutReply),
        );
        assert!(filed.is_ok(), "a fresh inbox is a new, valid subject");
        self.callouts.pending.insert(inbox.clone(), (conn, account));
        Some((
            user_nkey,
            Prepared {
                account,
                inbox,
                headers,
                payload,
            },
        ))
    }

    /// Publish a prepared request on the callout subject in its account.
    fn publish_callout(&mut self, now: Instant, prepared: &Prepared) {
        let delivery = Delivery {
            publisher: INTERNAL_CONN,
            subject: CALLOUT_SUBJECT.as_bytes(),
            reply: Some(&prepared.inbox),
            headers: prepared.headers.as_ref().map(String::as_bytes),
            payload: &prepared.payload,
            shown_subject: None,
        };
        self.route(now, prepared.account, &delivery, true);
    }

    /// End of a step: judge the answers that arrived, and forget callouts
    /// whose clients are gone.
    pub(super) fn run_callouts(&mut self, now: Instant) {
        for (inbox, payload) in self.system.take_callout_replies() {
            let Some((conn, _)) = self.forget_callout(&inbox) else {
                continue;
            };
            let recheck = self.conns.get_mut(conn).and_then(|c| {
                let waiting = c.callout_recheck.as_ref()?.inbox == inbox;
                waiting.then(|| c.callout_recheck.take()).flatten()
            });
            match recheck {
                Some(recheck) => self.recheck_answered(now, conn, &recheck, &payload),
                None => self.callout_answered(now, conn, &inbox, &payload),
            }
        }
        if self.callouts.pending.is_empty() {
            return;
        }
        let gone: Vec<Bytes> = self
            .callouts
            .pending
            .iter()
            .filter(|(_, (conn, _))| self.conns.get(*conn).is_none_or(|c| c.is_closing()))
            .map(|(inbox, _)| inbox.clone())
            .collect();
        for inbox in gone {
            self.forget_callout(&inbox);
        }
    }

    /// Drop the callout waiting on `inbox`: its map entry and Sublist entry.
    pub(super) fn forget_callout(&mut self, inbox: &Bytes) -> Option<(ConnId, AccountId)> {
        let (conn, account) = self.callouts.pending.remove(inbox)?;
        if let Some(entry) = self.router.accounts.list.get_mut(account) {
            // A reload may have rebuilt the accounts: then it is gone already.
            let _ =
                entry
                    .sublist
                    .remove(inbox, None, SubTarget::System(SysService::AuthCalloutReply));
        }
        Some((conn, account))
    }

    /// The pending callout login of `conn` waiting on `inbox`, taken.
    fn take_callout_login(
        &mut self,
        conn: ConnId,
        inbox: &[u8],
    ) -> Option<(ConnectOptions, String, Box<AuthCallout>)> {
        let client = self.conns.get_mut(conn).filter(|c| !c.is_closing())?;
        match client.pending_login.as_deref() {
            Some(PendingLogin {
                wait: LoginWait::Callout { inbox: waiting, .. },
                ..
            }) if waiting.as_ref() == inbox => {}
            _ => return None,
        }
        let pending = client.pending_login.take()?;
        match *pending {
            PendingLogin {
                options,
                wait:
                    LoginWait::Callout {
                        user_nkey, callout, ..
                    },
            } => Some((options, user_nkey, callout)),
            PendingLogin { .. } => None,
        }
    }

    /// The answer judged against the callout asked and the user key it
    /// was sent: the client to admit (the user JWT's name replacing the
    /// credentials it sent), or the reason it is refused.
    fn judge(
        &self,
        now: Instant,
        mut options: ConnectOptions,
        user_nkey: &str,
        callout: &AuthCallout,
        payload: &[u8],
    ) -> Result<(ConnectOptions, auth::Identity), String> {
        let accounts = &self.router.accounts;
        let exists = |name: &str| accounts.find(name).is_some();
        let expected = callout::Expected {
            keys: &self.config.identity.keys,
            server_id: &self.config.identity.server_id,
            user_nkey,
            account: &callout.account,
            issuer: &callout.issuer,
            xkey: callout.xkey.as_deref(),
            now: unix_seconds(self.monitor.wall.wall_at(now)),
            account_exists: &exists,
            operator: callout
                .operator
                .then_some(self.authenticator.config().operator.as_ref())
                .flatten()
                .map(|mode| (mode, &callout.allowed_accounts[..])),
        };
        let admitted = callout::judge_response(payload, &expected)?;
        if let Some(name) = &admitted.name {
            // The answer names the user from now on.
            options.user = Some(name.clone());
            options.nkey = None;
            options.auth_token = None;
        }
        let identity = auth::Identity {
            account: admitted.account,
            user: Some(admitted.name.unwrap_or(admitted.user)),
            permissions: admitted.permissions,
            restrictions: Some(Box::new(admitted.restrictions)),
        };
        Ok((options, identity))
    }

    fn callout_answered(&mut self, now: Instant, conn: ConnId, inbox: &[u8], payload: &[u8]) {
        let Some((options, user_nkey, callout)) = self.take_callout_login(conn, inbox) else {
            return;
        };
        match self.judge(now, options.clone(), &user_nkey, &callout, payload) {
            Ok((options, identity)) => {
                self.conns.client(conn).by_callout = true;
                self.admit(now, conn, options, identity);
            }
            Err(reason) => {
                self.logs.push(LogLevel::Warn, None, reason);
                self.refuse_login(conn, options);
            }
        }
        self.resume_parked(now, conn);
    }

    /// The answer to a reload's request about connected `conn`.
    fn recheck_answered(
        &mut self,
        now: Instant,
        conn: ConnId,
        recheck: &CalloutRecheck,
        payload: &[u8],
    ) {
        let Some(client) = self.conns.get_mut(conn).filter(|c| !c.is_closing()) else {
            return;
        };
        client.auth_deadline = None;
        let options = client.options.clone();
        match self.judge(
            now,
            options.clone(),
            &recheck.user_nkey,
            &recheck.callout,
            payload,
        ) {
            Ok((options, identity)) => self.readmit(now, conn, options, identity),
            Err(reason) => {
                self.logs.push(LogLevel::Warn, None, reason);
                self.auth_violation(conn, &options);
            }
        }
        self.refile_timer(conn);
    }

    /// The callout did not answer `conn` within the auth timeout.
    pub(super) fn callout_timed_out(&mut self, now: Instant, conn: ConnId) {
        if let Some(recheck) = self.conns.client(conn).callout_recheck.take() {
            // A reload's request: the connected client is refused.
            self.forget_callout(&recheck.inbox);
            self.log_unanswered(&recheck.callout.account);
            let client = self.conns.client(conn);
            client.auth_deadline = None;
            let options = client.options.clone();
            self.auth_violation(conn, &options);
            return;
        }
        let inbox = match self
            .conns
            .get(conn)
            .and_then(|c| c.pending_login.as_deref())
        {
            Some(PendingLogin {
                wait: LoginWait::Callout { inbox, .. },
                ..
            }) => inbox.clone(),
            _ => return,
        };
        self.forget_callout(&inbox);
        let Some((options, _, callout)) = self.take_callout_login(conn, &inbox) else {
            return;
        };
        self.log_unanswered(&callout.account);
        self.refuse_login(conn, options);
        let _ = now;
    }

    fn log_unanswered(&mut self, account: &str) {
        self.logs.push(
            LogLevel::Debug,
            None,
            format!("Authorization callout response not received in time on account {account:?}"),
        );
    }

    /// Refuse a login, keeping what its CONNECT said for events and monitoring.
    fn refuse_login(&mut self, conn: ConnId, options: ConnectOptions) {
        self.conns.client(conn).options = options.clone();
        self.auth_violation(conn, &options);
    }
}
