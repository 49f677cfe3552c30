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
//! no answer within the auth timeout refuses the client.
//!
//! Invariants:
//! - Each pending callout has exactly one inbox in [`Callouts`] and one
//!   Sublist entry; both go when it is answered, times out, or its client
//!   closes (swept at the end of every step).
//! - An answer is used only for the login that is still waiting on that
//!   inbox; late, repeated or stray answers are dropped.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand_chacha::rand_core::RngCore;

use super::accounts::{AccountId, SubTarget};
use super::client::{LoginWait, PendingLogin};
use super::log::LogLevel;
use super::system_inbox::{SysService, INTERNAL_CONN};
use super::{Delivery, Server};
use crate::auth::callout::{self, AuthCallout, CALLOUT_SUBJECT, XKEY_HEADER};
use crate::auth::{self as auth, AuthFailure, Login};
use crate::protocol::ConnectOptions;
use crate::runtime::{ConnId, ListenerKind};
use crate::time::Instant;

/// The auth callout requests waiting for an answer, by reply inbox.
#[derive(Debug, Default)]
pub(super) struct Callouts {
    pending: BTreeMap<Bytes, (ConnId, AccountId)>,
}

/// The user a CONNECT claims, as the reference names it to the callout
/// service and matches it against `auth_users`.
fn raw_auth_user(options: &ConnectOptions) -> &str {
    fn filled(value: &Option<String>) -> Option<&str> {
        value.as_deref().filter(|v| !v.is_empty())
    }
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
        let Some(account) = self.router.accounts.find(&callout.account) else {
            self.logs.push(
                LogLevel::Warn,
                None,
                format!(
                    "No valid account {:?} for auth callout request: account missing",
                    callout.account
                ),
            );
            self.refuse_login(conn, options);
            return;
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
                user: raw_auth_user(&options).to_string(),
                kind: "Client",
                client_type: match client.listener {
                    ListenerKind::WebSocket => "websocket",
                    _ => "nats",
                },
                nonce: signed_nonce.then(|| client.nonce.clone()),
            },
            connect: &options,
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
                        self.refuse_login(conn, options);
                        return;
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
        let client = self.conns.client(conn);
        client.pending_login = Some(Box::new(PendingLogin {
            options,
            wait: LoginWait::Callout {
                user_nkey,
                inbox: inbox.clone(),
                account,
                callout: Box::new(callout.clone()),
            },
        }));
        // The callout has the auth timeout to answer, from now.
        client.auth_deadline = Some(now + self.config.auth_timeout);
        self.refile_timer(conn);
        let delivery = Delivery {
            publisher: INTERNAL_CONN,
            subject: CALLOUT_SUBJECT.as_bytes(),
            reply: Some(&inbox),
            headers: headers.as_ref().map(String::as_bytes),
            payload: &payload,
            shown_subject: None,
        };
        self.route(now, account, &delivery, true);
    }

    /// End of a step: judge the answers that arrived, and forget callouts
    /// whose clients are gone.
    pub(super) fn run_callouts(&mut self, now: Instant) {
        for (inbox, payload) in self.system.take_callout_replies() {
            let Some((conn, account)) = self.forget_callout(&inbox) else {
                continue;
            };
            let _ = account;
            self.callout_answered(now, conn, &inbox, &payload);
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
    fn forget_callout(&mut self, inbox: &Bytes) -> Option<(ConnId, AccountId)> {
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

    fn callout_answered(&mut self, now: Instant, conn: ConnId, inbox: &[u8], payload: &[u8]) {
        let Some((mut options, user_nkey, callout)) = self.take_callout_login(conn, inbox) else {
            return;
        };
        let accounts = &self.router.accounts;
        let exists = |name: &str| accounts.find(name).is_some();
        let expected = callout::Expected {
            keys: &self.config.identity.keys,
            server_id: &self.config.identity.server_id,
            user_nkey: &user_nkey,
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
        match callout::judge_response(payload, &expected) {
            Ok(admitted) => {
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
                self.admit(now, conn, options, identity);
            }
            Err(reason) => {
                self.logs.push(LogLevel::Warn, None, reason);
                self.refuse_login(conn, options);
            }
        }
        self.resume_parked(now, conn);
    }

    /// The callout did not answer `conn` within the auth timeout.
    pub(super) fn callout_timed_out(&mut self, now: Instant, conn: ConnId) {
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
        let account = &callout.account;
        self.logs.push(
            LogLevel::Debug,
            None,
            format!("Authorization callout response not received in time on account {account:?}"),
        );
        self.refuse_login(conn, options);
        let _ = now;
    }

    /// Refuse a login, keeping what its CONNECT said for events and monitoring.
    fn refuse_login(&mut self, conn: ConnId, options: ConnectOptions) {
        self.conns.client(conn).options = options.clone();
        self.auth_violation(conn, &options);
    }
}
