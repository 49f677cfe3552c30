//! The account resolver's `$SYS` requests, as nats-server answers them in
//! operator mode: claims updates (both resolvers), and for the directory
//! (`full`) resolver pushes, lookups, lists and the operator's deletes.
//!
//! Role: the driver's half of run-time account changes. What a request
//! does to the accounts is decided by `OperatorMode` (in `auth`); this
//! file applies the outcome to the running server (accounts rebuilt as by
//! a reload, clients of deleted accounts closed), queues the directory's
//! file changes for the runtime, and builds the reply.
//!
//! A push or a delete is answered only once the runtime reports its file
//! changes made (`handle_resolver_written`), as the reference answers
//! after writing: whoever reads the reply finds the directory changed.
//!
//! Invariants:
//! - A refused request changes nothing: the mode is updated on a clone and
//!   put back only on success.
//! - Every change to the directory resolver's JWTs queues exactly the file
//!   operations that make the directory say the same, in order; the
//!   runtime completes them in that order, so ids complete ascending.
//! - A held reply waits for the last write queued before it, no longer.

use std::collections::VecDeque;

use bytes::Bytes;

use super::error::ServerError;
use super::log::LogLevel;
use super::system::{to_json, SysService};
use super::system_inbox::SysRequest;
use super::Server;
use crate::auth::{ClaimsUpdate, OperatorMode, ResolverWrite};
use crate::monitor::events::{ApiResponse, ClaimsUpdateFailure, ClaimsUpdateStatus};
use crate::runtime::CloseReason;
use crate::time::Instant;

/// A reply's `data` or `error`.
type Outcome = Result<ClaimsUpdateStatus, ClaimsUpdateFailure>;

/// File changes on their way to the runtime, and replies waiting for them.
#[derive(Default)]
pub(super) struct ResolverFiles {
    /// Ids given so far; the last one is the newest write.
    issued: u64,
    /// Writes the runtime has not taken yet.
    queued: Vec<(u64, ResolverWrite)>,
    /// The newest write the runtime reported done.
    done: u64,
    /// Replies to send once `done` reaches their id, oldest first.
    held: VecDeque<(u64, Bytes, Vec<u8>)>,
}

impl ResolverFiles {
    pub(super) fn queue(&mut self, write: ResolverWrite) {
        self.issued += 1;
        self.queued.push((self.issued, write));
    }

    pub(super) fn take(&mut self) -> Vec<(u64, ResolverWrite)> {
        std::mem::take(&mut self.queued)
    }
}

impl Server {
    /// Answer (or act on) a resolver request: the reply goes out now, or
    /// once the file changes it made are done.
    pub(super) fn answer_resolver(&mut self, now: Instant, request: &SysRequest) {
        if request.service == SysService::ClaimsPack {
            self.answer_pack(now, request);
            return;
        }
        let issued = self.resolver_files.issued;
        let Some(body) = self.resolver_reply(now, request) else {
            return;
        };
        if request.reply.is_empty() {
            return;
        }
        let files = &mut self.resolver_files;
        if files.issued > issued && files.done < files.issued {
            files
                .held
                .push_back((files.issued, request.reply.clone(), body));
        } else {
            self.publish_system(now, &request.reply, &body);
        }
    }

    /// The runtime made the resolver's file changes up to `id` (in order);
    /// `result` is the last one's. Replies waiting for them go out.
    pub fn handle_resolver_written(&mut self, now: Instant, id: u64, result: Result<(), String>) {
        let files = &mut self.resolver_files;
        assert!(
            id > files.done && id <= files.issued,
            "resolver write {id} completed out of order (done {}, issued {})",
            files.done,
            files.issued
        );
        files.done = id;
        if let Err(error) = result {
            // The running accounts already changed; the directory did not.
            self.logs.push(
                LogLevel::Error,
                None,
                format!("DirResolver - writing the JWT directory failed: {error}"),
            );
        }
        while let Some((after, _, _)) = self.resolver_files.held.front() {
            if *after > id {
                break;
            }
            let (_, reply, body) = self.resolver_files.held.pop_front().expect("front");
            self.publish_system(now, &reply, &body);
        }
        self.finish_step(now);
    }

    /// The reply to a resolver request (`None`: nothing to send).
    fn resolver_reply(&mut self, now: Instant, request: &SysRequest) -> Option<Vec<u8>> {
        let mode = self
            .config
            .auth
            .operator
            .clone()
            .expect("resolver requests are served in operator mode only");
        let subject = String::from_utf8_lossy(&request.subject).into_owned();
        let tokens: Vec<&str> = subject.split('.').collect();
        let outcome = match request.service {
            SysService::ClaimsUpdate => {
                // `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` or `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`.
                let key = if tokens.len() == 6 {
                    tokens[3]
                } else {
                    tokens[2]
                };
                if mode.dir.is_some() {
                    self.push_claims(mode, Some(key), &request.payload)
                } else {
                    self.update_claims(mode, key, &request.payload)
                }
            }
            SysService::ClaimsPush => self.push_claims(mode, None, &request.payload),
            SysService::ClaimsDelete => self.delete_accounts(mode, &request.payload),
            SysService::ClaimsLookup => {
                // The JWT itself, or an empty message: "not here".
                let key = tokens.get(3).copied().unwrap_or("");
                return Some(mode.lookup(key).unwrap_or("").as_bytes().to_vec());
            }
            SysService::ClaimsList => {
                let reply = ApiResponse::<_> {
                    server: self.header(now),
                    data: Some(mode.stored_keys(self.wall_seconds(now))),
                    error: None,
                };
                return Some(to_json(&reply));
            }
            _ => unreachable!("not a resolver request: {:?}", request.service),
        };
        let (data, error) = match outcome {
            Ok(status) => (Some(status), None),
            Err(failure) => {
                self.logs.push(
                    LogLevel::Error,
                    None,
                    match failure.account.as_str() {
                        "" => failure.description.clone(),
                        account => {
                            failure
                                .description
                                .replacen(" - ", &format!(" - {account} - "), 1)
                        }
                    },
                );
                (None, Some(failure))
            }
        };
        let reply = ApiResponse {
            server: self.header(now),
            data,
            error,
        };
        Some(to_json(&reply))
    }

    /// `MEMORY` resolver: new claims for an account it holds.
    fn update_claims(&mut self, mut mode: OperatorMode, key: &str, token: &[u8]) -> Outcome {
        match mode.update_account(key, token) {
            Ok(outcome) => {
                if outcome == ClaimsUpdate::Updated {
                    self.apply_operator_mode(mode);
                }
                let message = match outcome {
                    ClaimsUpdate::Updated => "jwt updated",
                    ClaimsUpdate::Skipped => "jwt update skipped",
                };
                Ok(status(key, message))
            }
            Err(refusal) => Err(failure(key, format!("{} - {refusal}", refusal.message()))),
        }
    }

    /// Directory resolver: store the JWT, then run the account with it
    /// when it verifies.
    fn push_claims(&mut self, mut mode: OperatorMode, key: Option<&str>, token: &[u8]) -> Outcome {
        let stored = match mode.store_claims(key, token) {
            Ok(stored) => stored,
            Err(refusal) => return Err(failure(&refusal.account, refusal.description())),
        };
        for write in stored.writes {
            self.resolver_files.queue(write);
        }
        match stored.applied {
            Ok(true) => self.apply_operator_mode(mode),
            Ok(false) => self.config.auth.operator = Some(mode),
            Err(why) => {
                // Stored, as the reference stores it; not usable.
                self.logs.push(
                    LogLevel::Error,
                    None,
                    format!(
                        "DirResolver - Update for account {:?} resulted in error {why}",
                        stored.account
                    ),
                );
                self.config.auth.operator = Some(mode);
            }
        }
        Ok(status(&stored.account, stored.message))
    }

    /// Directory resolver: the operator deletes accounts; their clients are
    /// closed as when an account expires.
    fn delete_accounts(&mut self, mut mode: OperatorMode, token: &[u8]) -> Outcome {
        let system = self.config.system_account.clone();
        let deleted = match mode.delete_accounts(token, system.as_deref()) {
            Ok(deleted) => deleted,
            Err(refusal) => return Err(failure("", refusal.description())),
        };
        for write in deleted.writes {
            self.resolver_files.queue(write);
        }
        for conn in self.conns.ids() {
            let client = self.conns.client(conn);
            let account = &self.router.accounts.list[client.account].name;
            if !client.is_closing() && deleted.removed.contains(account) {
                self.close_with_error(
                    conn,
                    &ServerError::AccountAuthenticationExpired,
                    CloseReason::AuthenticationExpired,
                );
            }
        }
        self.apply_operator_mode(mode);
        Ok(status("", &format!("deleted {} accounts", deleted.count)))
    }
}

fn status(account: &str, message: &str) -> ClaimsUpdateStatus {
    ClaimsUpdateStatus {
        account: account.to_owned(),
        code: 200,
        message: message.to_owned(),
    }
}

fn failure(account: &str, description: String) -> ClaimsUpdateFailure {
    ClaimsUpdateFailure {
        account: account.to_owned(),
        code: 500,
        description,
    }
}
