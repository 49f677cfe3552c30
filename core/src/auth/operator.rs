//! Operator mode (decentralized auth): the server trusts operators' keys;
//! accounts are JWTs the operators signed, held by a resolver; users
//! connect with a user JWT their account signed and prove their key by
//! signing the server's nonce.
//!
//! This module builds [`OperatorMode`] from the configuration (the trusted
//! operator JWTs and the `MEMORY` resolver's preloaded account JWTs), turns
//! each account JWT into the server's [`AccountConfig`] (exports, imports,
//! mappings), and checks a CONNECT's user JWT the way the reference does.
//!
//! Invariants:
//! - An account is used only if its JWT verifies and a trusted key signed
//!   it; a user only if its JWT verifies, its issuer is its account or one
//!   of the account's signing keys, it is neither expired nor revoked, and
//!   (unless a bearer token the account allows) it signed the nonce.
//! - Fail closed: a claim rnats does not apply yet refuses start-up (in an
//!   account JWT) or the login (in a user JWT), by name; it is never
//!   ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use super::claims_check;
use super::jwt::{self, AccountNats, Jwt, OperatorNats, SigningKey, UserNats};
use super::resolver::{AccountFetch, DirResolver, JwtDelete, ResolverWrite, UrlResolver};
use super::CONNECTION_TYPES;
use super::{
    AccountConfig, AuthFailure, Export, ExportKind, Identity, Import, ImportKind,
    MappingDestination, ResponseType, SubjectMapping, DEFAULT_RESPONSE_THRESHOLD,
};
use crate::protocol::ConnectOptions;
use crate::time::WallTime;

/// The trusted operators and the accounts the resolver holds.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorMode {
    /// The operator JWTs, as trusted (for the start-up lines and `/varz`).
    pub operators: Vec<Jwt<OperatorNats>>,
    /// The same JWTs as configured (`/varz` `trusted_operators_jwt`).
    pub operator_tokens: Vec<String>,
    /// Keys whose signature makes an account JWT trusted: each operator's
    /// own key (unless `strict_signing_key_usage`) and its signing keys.
    pub trusted_keys: Vec<String>,
    /// The resolver's account JWTs by account public key, verified.
    pub accounts: BTreeMap<String, Jwt<AccountNats>>,
    /// The directory (`full`) resolver, when configured.
    pub dir: Option<DirResolver>,
    /// The URL resolver, when configured (or implied by the operator's
    /// `account_server_url`). Neither: `MEMORY`.
    pub url: Option<UrlResolver>,
    /// The server's time zone (IANA name, set by the runtime; empty: UTC),
    /// for user JWT connect times without `times_location`.
    pub local_zone: String,
    /// The first operator's key when it uses signing keys strictly: it may
    /// not sign account JWTs itself (checked on a push to the directory).
    pub strict_operator: Option<String>,
    /// Written to the directory at start-up (preloads newer than the
    /// files); the server hands them to the runtime once.
    pub startup_writes: Vec<ResolverWrite>,
    /// Stored JWTs no account could be built from, with why (logged once
    /// at start-up; their users cannot log in).
    pub startup_warnings: Vec<String>,
    /// The preloaded account JWTs' validation, to be warned of once the
    /// wall clock is known (its time checks need it): see
    /// [`OperatorMode::preload_warnings`].
    pub preload_checks: Vec<PreloadCheck>,
}

/// What the reference's validation of one preloaded account JWT looks at:
/// its times, then the issues found in its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreloadCheck {
    pub key: String,
    pub expires: i64,
    pub not_before: i64,
    /// The library's checks but the time checks (made when warned).
    pub validation: claims_check::Validation,
}

/// A JWT the directory resolver stored (or already held).
#[derive(Debug)]
pub struct StoredClaims {
    /// The account it is for.
    pub account: String,
    /// The file changes (none: the same JWT was held already).
    pub writes: Vec<ResolverWrite>,
    /// The reply's message ("jwt updated", or the cache's words).
    pub message: &'static str,
    /// Whether the account now runs with it; the error says why not (the
    /// JWT is stored all the same, as the reference stores it).
    pub applied: Result<bool, String>,
}

/// What an operator's delete request did.
#[derive(Debug)]
pub struct DeletedAccounts {
    /// Accounts named (missing ones count, as in the reference).
    pub count: usize,
    pub writes: Vec<ResolverWrite>,
    /// Accounts that were in use: their clients must go.
    pub removed: Vec<String>,
}

/// A refused push or delete: the reply's `account` (`n/a` when the JWT did
/// not decode, empty for a delete) and its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRefusal {
    pub account: String,
    /// What failed ("jwt update resulted in error"); empty when `reason`
    /// says it all.
    pub message: &'static str,
    pub reason: String,
}

impl StoreRefusal {
    /// The reply's `description`: `<message> - <reason>`.
    pub fn description(&self) -> String {
        if self.message.is_empty() {
            self.reason.clone()
        } else {
            format!("{} - {}", self.message, self.reason)
        }
    }
}

/// What came of an account claims update that was not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsUpdate {
    /// The account now runs with the new claims (or already did).
    Updated,
    /// The server holds no such account: nothing to update.
    Skipped,
}

/// Why an account claims update was refused (the account is unchanged).
/// The texts are the reference's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClaimsUpdateError {
    #[error("request body is empty")]
    Empty,
    #[error("{0}")]
    Jwt(jwt::JwtError),
    #[error("subject does not match jwt content")]
    SubjectMismatch,
    /// Not signed by a trusted operator key.
    #[error("account validation failed")]
    Validation,
    /// Claims rnats does not apply yet: refused by name, never ignored.
    #[error("{0}")]
    Unsupported(String),
}

impl ClaimsUpdateError {
    /// What failed, in the reference's words (the `Display` is why).
    pub fn message(&self) -> &'static str {
        match self {
            ClaimsUpdateError::Empty => "jwt update error",
            _ => "jwt update resulted in error",
        }
    }
}

/// What the configuration says of operator mode, before it is checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatorOptions {
    /// The operator JWTs (files already read).
    pub operator_jwts: Vec<String>,
    /// `trusted_keys`: operator public keys trusted without their JWTs
    /// (checked to be operator keys when the file was read).
    pub trusted_keys: Vec<String>,
    /// `resolver: MEMORY` was configured.
    pub memory_resolver: bool,
    /// `resolver { type: full }` was configured, with the JWT files read.
    pub dir_resolver: Option<DirResolver>,
    /// `resolver: URL(...)`.
    pub url_resolver: Option<UrlResolver>,
    /// `resolver_tls`, for an `https` URL resolver.
    pub resolver_tls: Option<super::resolver::ResolverTls>,
    /// `resolver_preload`: account public key → account JWT.
    pub preload: BTreeMap<String, String>,
    /// `system_account` as configured.
    pub system_account: Option<String>,
    /// The URL resolver's fetches at start-up (see
    /// [`OperatorOptions::startup_fetches`]) and what each brought.
    pub fetched: Vec<(AccountFetch, Result<String, String>)>,
}

impl OperatorOptions {
    /// The URL resolver these options configure: `resolver: URL(...)`, or
    /// with no resolver and one operator, its `account_server_url` with
    /// `/accounts` appended (as `nsc push` serves them).
    fn url_resolver(&self, operators: &[Jwt<OperatorNats>]) -> Option<UrlResolver> {
        let url = self.configured_url_resolver(operators)?;
        Some(UrlResolver {
            tls: self.resolver_tls.clone(),
            ..url
        })
    }

    fn configured_url_resolver(&self, operators: &[Jwt<OperatorNats>]) -> Option<UrlResolver> {
        if let Some(url) = &self.url_resolver {
            return Some(url.clone());
        }
        match operators {
            [operator]
                if !self.memory_resolver
                    && self.dir_resolver.is_none()
                    && !operator.nats.account_server_url.is_empty() =>
            {
                Some(UrlResolver::new(&format!(
                    "{}/accounts",
                    operator.nats.account_server_url
                )))
            }
            _ => None,
        }
    }

    /// What the server fetches before it starts, with a URL resolver: the
    /// base URL itself (the reference's check that the account server
    /// answers: anything but a `200` stops the start), then the system
    /// account's JWT (when it cannot be had, the reference runs the system
    /// account without claims). The reference asks twice for the system
    /// account (a trial, then the fetch it keeps); so does rnats, the
    /// second only when the first brought a JWT.
    pub fn startup_fetches(&self) -> Vec<AccountFetch> {
        let operators: Vec<Jwt<OperatorNats>> = self
            .operator_jwts
            .iter()
            .filter_map(|token| jwt::decode_operator(token).ok())
            .collect();
        let Some(url) = self.url_resolver(&operators) else {
            return Vec::new();
        };
        let mut fetches = vec![url.fetch("")];
        let system = self.system_account.clone().or_else(|| {
            (operators.len() == 1)
                .then(|| operators[0].nats.system_account.clone())
                .filter(|key| !key.is_empty())
        });
        if let Some(key) = system.filter(|key| key != super::SYSTEM_ACCOUNT) {
            fetches.push(url.fetch(&key));
            fetches.push(url.fetch(&key));
        }
        fetches
    }
}

/// Operator mode as configured: the mode, the accounts it defines and the
/// system account.
pub struct Built {
    pub mode: OperatorMode,
    pub accounts: Vec<AccountConfig>,
    pub system_account: Option<String>,
}

impl OperatorMode {
    /// Check the configuration as the reference does at start-up and build
    /// the accounts. The error is the reference's text (or, for a claim
    /// rnats does not apply yet, one naming it).
    pub fn build(options: &OperatorOptions, other_auth: bool) -> Result<Built, String> {
        let mut operators = Vec::new();
        for token in &options.operator_jwts {
            let operator = jwt::decode_operator(token)
                .map_err(|error| format!("error parsing operator JWT: {error}"))?;
            operators.push(operator);
        }
        assert!(
            !operators.is_empty() || !options.trusted_keys.is_empty(),
            "operator mode needs an operator or trusted keys"
        );
        let url = options.url_resolver(&operators);
        if operators.is_empty() {
            // Trusted keys alone: the reference checks no resolver (without
            // one, no account can be found and no user logs in).
            if !options.preload.is_empty()
                && !options.memory_resolver
                && options.dir_resolver.is_none()
            {
                return Err(String::from(
                    "resolver preloads only available for writeable resolver types MEM/DIR/CACHE_DIR",
                ));
            }
            if options.dir_resolver.is_some() && options.system_account.is_none() {
                return Err(String::from(
                    "configuration key \"trusted_keys\" is not supported yet: with the full resolver and no system_account",
                ));
            }
        } else if !options.memory_resolver && options.dir_resolver.is_none() {
            if !options.preload.is_empty() {
                return Err(String::from(
                    "resolver preloads only available for writeable resolver types MEM/DIR/CACHE_DIR",
                ));
            }
            if url.is_none() {
                return Err(String::from(
                    "operators require an account resolver to be configured",
                ));
            }
        }
        if other_auth {
            return Err(String::from(
                "operators do not allow users to be configured directly",
            ));
        }
        if !operators.is_empty() && !options.trusted_keys.is_empty() {
            return Err(String::from(
                "conflicting options for 'TrustedKeys' and 'TrustedOperators'",
            ));
        }
        let system_account = options.system_account.clone().or_else(|| {
            operators
                .first()
                .map(|operator| operator.nats.system_account.clone())
                .filter(|key| !key.is_empty())
        });
        if system_account.is_none() && options.dir_resolver.is_some() && !operators.is_empty() {
            return Err(String::from(
                "using nats based account resolver - the system account needs to be specified in configuration or the operator jwt",
            ));
        }
        if let Some(system) = &options.system_account {
            let named: Vec<&str> = operators
                .iter()
                .map(|op| op.nats.system_account.as_str())
                .filter(|key| !key.is_empty())
                .collect();
            if !named.is_empty() && !named.contains(&system.as_str()) {
                return Err(String::from(
                    "system_account in config and operator JWT must be identical",
                ));
            }
        }
        for operator in &operators {
            if !operator.nats.assert_server_version.is_empty() {
                return Err(format!(
                    "configuration key \"operator\" is not supported yet: assert_server_version in operator {}",
                    operator.claims.subject
                ));
            }
        }
        let mut trusted_keys = options.trusted_keys.clone();
        for operator in &operators {
            if !operator.nats.strict_signing_key_usage {
                trusted_keys.push(operator.claims.subject.clone());
            }
            trusted_keys.extend(operator.nats.signing_keys.iter().cloned());
        }
        for key in &trusted_keys {
            if !is_public_key(key, 'O') {
                return Err(format!(
                    "trusted Keys {key:?} are required to be a valid public operator nkey"
                ));
            }
        }
        let mut mode = OperatorMode {
            strict_operator: operators
                .first()
                .filter(|operator| operator.nats.strict_signing_key_usage)
                .map(|operator| operator.claims.subject.clone()),
            operators,
            operator_tokens: options.operator_jwts.clone(),
            trusted_keys,
            accounts: BTreeMap::new(),
            dir: options.dir_resolver.clone(),
            url,
            local_zone: String::new(),
            startup_writes: Vec::new(),
            startup_warnings: Vec::new(),
            preload_checks: Vec::new(),
        };
        for (key, token) in &options.preload {
            let account =
                jwt::decode_account(token).map_err(|_| String::from("invalid account JWT"))?;
            if account.claims.subject != *key {
                return Err(format!(
                    "resolver_preload: the JWT under {key} is account {}",
                    account.claims.subject
                ));
            }
            // Stored all the same, as the reference stores it; its users
            // are refused at login.
            let trusted = mode.trusted_keys.contains(&account.claims.issuer);
            refuse_unsupported_account_claims(key, &account.nats)?;
            // Warned of, as the reference does (an account with issues
            // does not verify, so its users cannot log in).
            let validation = claims_check::check_account(&account.claims, &account.nats, None);
            let invalid = validation.is_blocking(false);
            mode.preload_checks.push(PreloadCheck {
                key: key.clone(),
                expires: account.claims.expires,
                not_before: account.claims.not_before,
                validation,
            });
            match &mut mode.dir {
                None if invalid || !trusted => {}
                None => {
                    mode.accounts.insert(key.clone(), account);
                }
                // Stored unless the directory holds this JWT or a newer one.
                Some(dir) => {
                    let held = dir
                        .lookup(key)
                        .and_then(|held| jwt::decode_account(held).ok());
                    let newer = held.is_none_or(|held| {
                        held.claims.id != account.claims.id
                            && held.claims.issued_at <= account.claims.issued_at
                    });
                    if newer {
                        let writes = dir.save(key, token).map_err(|e| e.to_string())?;
                        mode.startup_writes.extend(writes);
                    }
                }
            }
        }
        if let Some(dir) = &mode.dir {
            for (key, token) in dir.stored.clone() {
                match mode.verified_account(&key, &token) {
                    Ok(account) => {
                        mode.accounts.insert(key, account);
                    }
                    Err(why) => mode
                        .startup_warnings
                        .push(format!("DirResolver - account {key} is not usable: {why}")),
                }
            }
        }
        for (index, (fetch, fetched)) in options.fetched.iter().enumerate() {
            let trial = options.fetched[index + 1..]
                .iter()
                .any(|(later, _)| later.account == fetch.account);
            if fetch.account.is_empty() || (trial && fetched.is_ok()) {
                // Is anyone home?
                fetched.clone()?;
                continue;
            }
            let verified = fetched
                .clone()
                .and_then(|token| mode.verified_account(&fetch.account, &token));
            let account = match verified {
                Ok(account) => account,
                // With one operator the reference stands in an account
                // without claims, issued by the operator; with more it
                // does not start.
                Err(_) if mode.operators.len() == 1 => {
                    placeholder_account(&fetch.account, &mode.operators[0].claims.issuer)
                }
                Err(error) => return Err(format!("Can't set system account: {error}")),
            };
            mode.accounts.insert(fetch.account.clone(), account);
        }
        let accounts = mode.account_configs()?;
        Ok(Built {
            mode,
            accounts,
            system_account,
        })
    }

    /// Replace account `key`'s claims with `token` (a claims update sent
    /// to `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE`), checked as the resolver's
    /// JWTs are at start-up. On success the caller rebuilds the accounts
    /// from [`OperatorMode::account_configs`]; on any error nothing changed.
    pub fn update_account(
        &mut self,
        key: &str,
        token: &[u8],
    ) -> Result<ClaimsUpdate, ClaimsUpdateError> {
        if token.is_empty() {
            return Err(ClaimsUpdateError::Empty);
        }
        let text = std::str::from_utf8(token)
            .map_err(|_| ClaimsUpdateError::Jwt(jwt::JwtError::Base64))?;
        let account = jwt::decode_account(text).map_err(ClaimsUpdateError::Jwt)?;
        if account.claims.subject != key {
            return Err(ClaimsUpdateError::SubjectMismatch);
        }
        let Some(current) = self.accounts.get(key) else {
            // The resolver never held it: no account to update.
            return Ok(ClaimsUpdate::Skipped);
        };
        if *current == account {
            return Ok(ClaimsUpdate::Updated);
        }
        if !self.trusted_keys.contains(&account.claims.issuer)
            || claims_check::check_account(&account.claims, &account.nats, None).is_blocking(false)
        {
            return Err(ClaimsUpdateError::Validation);
        }
        refuse_unsupported_account_claims(key, &account.nats)
            .map_err(ClaimsUpdateError::Unsupported)?;
        self.use_account(key, account)
            .map_err(ClaimsUpdateError::Unsupported)?;
        Ok(ClaimsUpdate::Updated)
    }

    /// Run account `key` with `account`'s claims from now on, unless the
    /// accounts then fail to build (nothing changes then).
    fn use_account(&mut self, key: &str, account: Jwt<AccountNats>) -> Result<(), String> {
        let previous = self.accounts.insert(key.to_owned(), account);
        if let Err(error) = self.account_configs() {
            match previous {
                Some(previous) => self.accounts.insert(key.to_owned(), previous),
                None => self.accounts.remove(key),
            };
            return Err(error);
        }
        Ok(())
    }

    /// Account `key`'s JWT checked as the resolver's are before use: it
    /// decodes, names `key`, a trusted key signed it, and rnats applies
    /// every claim in it.
    fn verified_account(&self, key: &str, token: &str) -> Result<Jwt<AccountNats>, String> {
        let account = jwt::decode_account(token).map_err(|error| error.to_string())?;
        if account.claims.subject != key {
            return Err(String::from("subject does not match jwt content"));
        }
        if !self.trusted_keys.contains(&account.claims.issuer)
            || claims_check::check_account(&account.claims, &account.nats, None).is_blocking(false)
        {
            return Err(String::from("account validation failed"));
        }
        refuse_unsupported_account_claims(key, &account.nats)?;
        Ok(account)
    }

    /// A push to the directory resolver (`$SYS.REQ.CLAIMS.UPDATE`, or the
    /// per-account subjects naming `subject_key`): the JWT is stored when
    /// it decodes (and names `subject_key`), then used when it verifies.
    /// The cache stores only accounts the server runs, in words of its own.
    /// Checks in the reference's order.
    pub fn store_claims(
        &mut self,
        subject_key: Option<&str>,
        token: &[u8],
    ) -> Result<StoredClaims, StoreRefusal> {
        let cache = self.dir.as_ref().is_some_and(DirResolver::is_cache);
        let failed = if cache {
            "jwt update cache resulted in error"
        } else {
            "jwt update resulted in error"
        };
        let text = String::from_utf8_lossy(token);
        let account = jwt::decode_account(&text).map_err(|error| StoreRefusal {
            account: match (cache, subject_key) {
                (true, Some(key)) => key.to_owned(),
                _ => String::from("n/a"),
            },
            message: failed,
            reason: error.to_string(),
        })?;
        let key = account.claims.subject.clone();
        let refusal = |key: &str, reason: &str| StoreRefusal {
            account: key.to_owned(),
            message: failed,
            reason: reason.to_owned(),
        };
        // The library's checks, without the time checks: an expired JWT is
        // stored (and not used).
        let validation = claims_check::check_account(&account.claims, &account.nats, None);
        let invalid = validation.is_blocking(false).then(|| StoreRefusal {
            account: key.clone(),
            message: if cache {
                "jwt update cache validation failed"
            } else {
                "jwt validation failed"
            },
            reason: format!("validation errors: {}", validation.errors_text()),
        });
        // The full resolver checks the claims first on the per-account
        // subjects, after the signer on the general one; the cache last.
        let validate_first = !cache && subject_key.is_some();
        if let Some(invalid) = invalid.clone().filter(|_| validate_first) {
            return Err(invalid);
        }
        if let Some(subject_key) = subject_key {
            if key != subject_key {
                return Err(refusal(subject_key, "subject does not match jwt content"));
            }
        }
        if self.strict_operator.as_deref() == Some(account.claims.issuer.as_str()) {
            return Err(refusal(
                &key,
                "operator requires issuer to be a signing key",
            ));
        }
        if cache && !self.accounts.contains_key(&key) {
            return Ok(StoredClaims {
                account: key,
                writes: Vec::new(),
                message: "jwt update cache skipped",
                applied: Ok(false),
            });
        }
        if let Some(invalid) = invalid {
            return Err(invalid);
        }
        let dir = self.dir.as_mut().expect("a directory resolver");
        let writes = dir
            .save(&key, &text)
            .map_err(|error| refusal(&key, &error.to_string()))?;
        let mut stored = StoredClaims {
            account: key.clone(),
            writes,
            message: if cache {
                "jwt updated cache"
            } else {
                "jwt updated"
            },
            applied: Ok(false),
        };
        if !stored.writes.is_empty() {
            stored.applied = self
                .verified_account(&key, &text)
                .and_then(|account| self.use_account(&key, account))
                .map(|()| true);
        }
        Ok(stored)
    }

    /// A JWT from a peer (a pack line or a lookup's answer) for the
    /// directory resolver: stored unless the one held is the same or newer
    /// (`Err`: the reference's reason), then used when it verifies
    /// (`applied`, as in [`StoredClaims`]).
    pub fn merge_claims(
        &mut self,
        key: &str,
        token: &str,
    ) -> Result<(Vec<ResolverWrite>, Result<bool, String>), String> {
        let dir = self.dir.as_mut().expect("a directory resolver");
        let writes = dir.save_if_newer(key, token)?;
        let applied = if writes.is_empty() {
            Ok(false)
        } else {
            self.verified_account(key, token)
                .and_then(|account| self.use_account(key, account))
                .map(|()| true)
        };
        Ok((writes, applied))
    }

    /// The account a CONNECT's user JWT belongs to, when the resolver
    /// fetches accounts and does not hold it yet, or holds it with a JWT
    /// whose `exp` has passed (the reference looks an expired account up
    /// again: the URL resolver fetches it, a directory resolver asks its
    /// peers once the expired file is gone): the login waits for the
    /// fetch ([`OperatorMode::fetched_account`]). `None` when the JWT is
    /// unusable anyway (it does not decode, or has expired) or names no
    /// valid account key (the reference fetches only those).
    pub fn account_to_fetch(
        &self,
        connect: &ConnectOptions,
        now: WallTime,
    ) -> Option<AccountFetch> {
        if self.url.is_none() && self.dir.is_none() {
            return None;
        }
        let user = jwt::decode_user(connect.jwt.as_deref()?).ok()?;
        let now_seconds = (now.as_unix_nanos() / 1_000_000_000) as i64;
        user.claims.check_times(now_seconds).ok()?;
        let key = if user.nats.issuer_account.is_empty() {
            &user.claims.issuer
        } else {
            &user.nats.issuer_account
        };
        if !is_public_key(key, 'A') {
            return None;
        }
        if let Some(held) = self.accounts.get(key) {
            let expired = held.claims.expires > 0 && held.claims.expires <= now_seconds;
            let stored = self
                .dir
                .as_ref()
                .is_some_and(|dir| dir.lookup(key).is_some());
            if !expired || stored {
                return None;
            }
        }
        Some(match &self.url {
            Some(url) => url.fetch(key),
            // The directory resolvers ask their peers (no URL).
            None => AccountFetch {
                account: key.to_owned(),
                url: String::new(),
                tls: None,
            },
        })
    }

    /// An account JWT the URL resolver fetched for `key`: checked as the
    /// resolver's JWTs are, then run. On success the caller rebuilds the
    /// accounts from [`OperatorMode::account_configs`]; on an error
    /// (the reference's text) nothing changed.
    pub fn fetched_account(&mut self, key: &str, token: &str) -> Result<(), String> {
        if self
            .accounts
            .get(key)
            .is_some_and(|held| held.claims.expires == 0 || held.token == token)
        {
            // A claims update brought it meanwhile (that one stays), or an
            // expired account was fetched again with the same claims.
            return Ok(());
        }
        let account = self.verified_account(key, token)?;
        self.use_account(key, account)
    }

    /// The warnings of the preloaded account JWTs at `now` (seconds), as
    /// the reference logs them at start: for each with a blocking issue
    /// (its time checks included), a line naming it and one per issue.
    /// Given once.
    pub fn preload_warnings(&mut self, now: i64) -> Vec<String> {
        let mut lines = Vec::new();
        for check in std::mem::take(&mut self.preload_checks) {
            let mut issues = Vec::new();
            if check.expires > 0 && now > check.expires {
                issues.push("claim is expired");
            }
            if check.not_before > 0 && check.not_before > now {
                issues.push("claim is not yet valid");
            }
            let blocking = !issues.is_empty() || check.validation.is_blocking(false);
            issues.extend(check.validation.descriptions());
            if blocking {
                lines.push(format!("Account [{}] has validation issues:", check.key));
                lines.extend(issues.iter().map(|issue| format!("  - {issue}")));
            }
        }
        lines
    }

    /// The directory resolver's JWT for `key`.
    pub fn lookup(&self, key: &str) -> Option<&str> {
        self.dir.as_ref()?.lookup(key)
    }

    /// The account keys the directory resolver lists at `now` (seconds).
    pub fn stored_keys(&self, now: i64) -> Vec<String> {
        self.dir
            .as_ref()
            .map(|dir| dir.unexpired(now).map(|(key, _)| key.clone()).collect())
            .unwrap_or_default()
    }

    /// The operator's request to delete accounts (`$SYS.REQ.CLAIMS.DELETE`):
    /// a generic JWT the operator signed for itself, naming them in
    /// `accounts`. Checks in the reference's order.
    pub fn delete_accounts(
        &mut self,
        token: &[u8],
        system_account: Option<&str>,
    ) -> Result<DeletedAccounts, StoreRefusal> {
        let request = jwt::decode_generic(&String::from_utf8_lossy(token));
        let subject = request
            .as_ref()
            .map(|request| request.claims.subject.clone())
            .unwrap_or_default();
        let refusal = |reason: &str| StoreRefusal {
            account: String::new(),
            message: "",
            reason: format!("delete accounts request by {subject} failed - {reason}"),
        };
        let request = request.map_err(|error| refusal(&error.to_string()))?;
        let dir = self.dir.as_mut().expect("a directory resolver");
        if dir.delete == JwtDelete::Never {
            return Err(refusal("delete must be enabled in server config"));
        }
        if request.claims.subject != request.claims.issuer {
            return Err(refusal("not self signed"));
        }
        if !self.trusted_keys.contains(&request.claims.issuer) {
            return Err(refusal("not trusted"));
        }
        let Some(list) = request
            .nats
            .get("accounts")
            .and_then(|list| list.as_array())
        else {
            return Err(refusal("malformed request"));
        };
        let mut keys = Vec::new();
        for entry in list {
            match entry.as_str() {
                Some(key) if Some(key) == system_account => {
                    return Err(refusal("not allowed to delete system account"))
                }
                Some(key) if is_public_key(key, 'A') => keys.push(key.to_owned()),
                _ => return Err(refusal("malformed request")),
            }
        }
        let mut deleted = DeletedAccounts {
            count: keys.len(),
            writes: Vec::new(),
            removed: Vec::new(),
        };
        for key in keys {
            deleted
                .writes
                .extend(dir.delete(&key).expect("deleting is allowed"));
            if self.accounts.remove(&key).is_some() {
                deleted.removed.push(key);
            }
        }
        Ok(deleted)
    }

    /// Account `key`'s `conn` limit (`None`: no limit, or not a JWT account).
    /// The external authorization (auth callout) of account `key`, when on.
    pub fn external_authorization(&self, key: &str) -> Option<&super::jwt::ExternalAuthorization> {
        self.accounts
            .get(key)?
            .nats
            .authorization
            .as_ref()
            .filter(|external| external.is_enabled())
    }

    /// The permissions a user JWT of `account` signed by `signer` gets:
    /// its own, or, from a scoped signing key, the scope's template; `None`
    /// when `signer` is neither the account nor one of its signing keys.
    pub fn callout_user(
        &self,
        account: &str,
        user: &Jwt<UserNats>,
    ) -> Result<Option<super::Permissions>, String> {
        let claims = self
            .accounts
            .get(account)
            .ok_or_else(|| format!("account {account:?} missing"))?;
        let signer = &user.claims.issuer;
        let nats = if signer == account {
            user.nats.clone()
        } else {
            match claims
                .nats
                .signing_keys
                .iter()
                .find(|key| key.key() == signer)
            {
                Some(SigningKey::Plain(_)) => user.nats.clone(),
                Some(SigningKey::Scoped { kind, template, .. }) => {
                    super::scope::apply(kind, template, user, claims)
                        .map_err(|error| format!("user JWT is not valid: {error}"))?
                }
                None => return Err(format!("user JWT issuer {signer:?} is not known")),
            }
        };
        Ok(nats
            .permissions
            .to_permissions()
            .or_else(|| claims.nats.default_permissions.to_permissions()))
    }

    /// Whether `key` signs for `account` (the account itself or a signing key).
    pub fn signs_for(&self, account: &str, key: &str) -> bool {
        key == account
            || self
                .accounts
                .get(account)
                .is_some_and(|claims| claims.nats.signing_keys.iter().any(|k| k.key() == key))
    }

    pub fn connection_limit(&self, key: &str) -> Option<usize> {
        limit(self.accounts.get(key)?.nats.limits.conn)
    }

    /// The server's accounts, one per account JWT, named by public key.
    pub fn account_configs(&self) -> Result<Vec<AccountConfig>, String> {
        let mut configs = Vec::new();
        for (key, account) in &self.accounts {
            let mut config = AccountConfig::new(key.clone());
            for export in &account.nats.exports {
                config.exports.push(self.export(key, export)?);
            }
            for import in &account.nats.imports {
                config.imports.push(self.import(key, import)?);
            }
            for (source, destinations) in &account.nats.mappings {
                config.mappings.push(mapping(key, source, destinations)?);
            }
            config.jetstream = jetstream_limits(key, &account.nats.limits)?;
            configs.push(config);
        }
        Ok(configs)
    }

    fn export(&self, account: &str, claim: &serde_json::Value) -> Result<Export, String> {
        let text = |name: &str| claim.get(name).and_then(|v| v.as_str()).unwrap_or("");
        let kind = match text("type") {
            "stream" => ExportKind::Stream,
            "service" => ExportKind::Service,
            other => {
                return Err(format!(
                    "account {account}: export type {other:?} is not valid"
                ))
            }
        };
        for unsupported in ["service_latency", "revocations"] {
            if claim.get(unsupported).is_some_and(|v| !v.is_null()) {
                return Err(format!(
                    "account {account}: export claim {unsupported:?} is not supported yet"
                ));
            }
        }
        let mut export = match kind {
            ExportKind::Stream => Export::stream(text("subject")),
            ExportKind::Service => Export::service(text("subject")),
        };
        if claim.get("token_req").and_then(|v| v.as_bool()) == Some(true) {
            // Private: only accounts holding an activation token import it.
            export.accounts = Some(self.activated_importers(account, &export));
        }
        export.response_type = match text("response_type") {
            "" | "Singleton" => ResponseType::Singleton,
            "Stream" => ResponseType::Stream,
            "Chunked" => ResponseType::Chunked,
            other => {
                return Err(format!(
                    "account {account}: response type {other:?} is not valid"
                ))
            }
        };
        let threshold = claim
            .get("response_threshold")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        export.response_threshold = if threshold > 0 {
            Duration::from_nanos(threshold as u64)
        } else {
            DEFAULT_RESPONSE_THRESHOLD
        };
        export.account_token_position = claim
            .get("account_token_position")
            .and_then(|v| v.as_u64())
            .filter(|position| *position > 0)
            .map(|position| position as usize);
        Ok(export)
    }

    /// The accounts whose imports of `export` carry a valid activation
    /// token from `exporter`.
    fn activated_importers(&self, exporter: &str, export: &Export) -> Vec<String> {
        let mut importers = Vec::new();
        for (importer, account) in &self.accounts {
            for import in &account.nats.imports {
                let from = import.get("account").and_then(|v| v.as_str());
                let token = import.get("token").and_then(|v| v.as_str()).unwrap_or("");
                if from == Some(exporter)
                    && self.activation_valid(exporter, importer, export, token)
                    && !importers.contains(importer)
                {
                    importers.push(importer.clone());
                }
            }
        }
        importers
    }

    fn activation_valid(
        &self,
        exporter: &str,
        importer: &str,
        export: &Export,
        token: &str,
    ) -> bool {
        let Ok(activation) = jwt::decode_activation(token) else {
            return false;
        };
        let Some(account) = self.accounts.get(exporter) else {
            return false;
        };
        let signer_ok = activation.claims.issuer == exporter
            || account
                .nats
                .signing_keys
                .iter()
                .any(|key| key.key() == activation.claims.issuer);
        let kind_ok = match export.kind {
            ExportKind::Stream => activation.nats.kind == "stream",
            ExportKind::Service => activation.nats.kind == "service",
        };
        signer_ok
            && kind_ok
            && activation.claims.subject == importer
            && crate::subject::subject_matches_pattern(
                export.subject.as_bytes(),
                activation.nats.subject.as_bytes(),
            )
    }

    fn import(&self, account: &str, claim: &serde_json::Value) -> Result<Import, String> {
        let text = |name: &str| claim.get(name).and_then(|v| v.as_str()).unwrap_or("");
        let kind = match text("type") {
            "stream" => ImportKind::Stream,
            "service" => ImportKind::Service,
            other => {
                return Err(format!(
                    "account {account}: import type {other:?} is not valid"
                ))
            }
        };
        let local = [text("local_subject"), text("to")]
            .into_iter()
            .find(|subject| !subject.is_empty())
            .map(str::to_owned);
        Ok(Import {
            kind,
            account: text("account").to_string(),
            subject: text("subject").to_string(),
            to: local,
            share: claim.get("share").and_then(|v| v.as_bool()) == Some(true),
        })
    }

    /// Check a CONNECT's user JWT, as the reference does, at wall time `now`.
    pub fn authenticate(
        &self,
        connect: &ConnectOptions,
        nonce: &[u8],
        now: WallTime,
    ) -> Result<Identity, AuthFailure> {
        let token = connect
            .jwt
            .as_deref()
            .filter(|token| !token.is_empty())
            .ok_or(AuthFailure::JwtMissing)?;
        let user = jwt::decode_user(token).map_err(|_| AuthFailure::JwtInvalid)?;
        let now_seconds = (now.as_unix_nanos() / 1_000_000_000) as i64;
        // The library's checks, time included: a malformed permission,
        // network or time range refuses the login, as in the reference.
        if claims_check::check_user(&user.claims, &user.nats, Some(now_seconds)).is_blocking(true) {
            return Err(AuthFailure::JwtInvalid);
        }
        let account_key = if user.nats.issuer_account.is_empty() {
            user.claims.issuer.clone()
        } else {
            user.nats.issuer_account.clone()
        };
        let account_key = &account_key;
        let account = self
            .accounts
            .get(account_key)
            .ok_or(AuthFailure::AccountUnknown)?;
        if !self.trusted_keys.contains(&account.claims.issuer) {
            return Err(AuthFailure::AccountUnknown);
        }
        let mut user = user;
        let signer = user.claims.issuer.clone();
        if signer != *account_key {
            match account
                .nats
                .signing_keys
                .iter()
                .find(|key| key.key() == signer)
            {
                Some(SigningKey::Plain(_)) => {}
                // The scope's template stands in for the user's claims.
                Some(SigningKey::Scoped { kind, template, .. }) => {
                    user.nats = super::scope::apply(kind, template, &user, account)?;
                }
                None => return Err(AuthFailure::JwtIssuerUnknown),
            }
        }
        // Expired from its `exp` second on, as the reference's account
        // expiry timer marks it (a user JWT is valid through its `exp`).
        let expired = account.claims.expires > 0 && account.claims.expires <= now_seconds;
        if expired || account.claims.check_times(now_seconds).is_err() {
            return Err(AuthFailure::AccountExpired);
        }
        if user.nats.bearer_token {
            if account.nats.limits.disallow_bearer {
                return Err(AuthFailure::BearerNotAllowed);
            }
        } else {
            super::authenticate::verify_nonce_signature(
                &user.claims.subject,
                connect.sig.as_deref(),
                nonce,
            )?;
        }
        if revoked(&account.nats, &user.claims.subject, user.claims.issued_at) {
            return Err(AuthFailure::Revoked);
        }
        refuse_unsupported_user_claims(&user.nats)?;
        let window = super::times::connect_window(
            &user.nats.times,
            &user.nats.times_location,
            &self.local_zone,
            now,
        )
        .ok_or(AuthFailure::OutsideConnectTimes)?;
        let mut restrictions = Restrictions::of(&user, account)?;
        if !window.is_zero() {
            // Closed at the end of its range, or at its expiry if sooner.
            let end = WallTime::from_unix_nanos(
                now.as_unix_nanos()
                    .saturating_add(u64::try_from(window.as_nanos()).unwrap_or(u64::MAX)),
            );
            restrictions.expires = Some(restrictions.expires.map_or(end, |at| at.min(end)));
        }
        let permissions = user
            .nats
            .permissions
            .to_permissions()
            .or_else(|| account.nats.default_permissions.to_permissions());
        Ok(Identity {
            account: account_key.clone(),
            user: Some(user.claims.subject.clone()),
            permissions,
            restrictions: (!restrictions.is_empty()).then(|| Box::new(restrictions)),
        })
    }
}

/// An account without claims (no limits, nothing exported or imported),
/// as the reference makes for a system account it could not fetch.
fn placeholder_account(key: &str, issuer: &str) -> Jwt<AccountNats> {
    let nats = serde_json::json!({
        "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                   "wildcards": true, "conn": -1, "leaf": -1},
    });
    Jwt {
        claims: jwt::ClaimsData {
            subject: key.to_owned(),
            issuer: issuer.to_owned(),
            ..jwt::ClaimsData::default()
        },
        nats: serde_json::from_value(nats).expect("the placeholder's claims decode"),
        token: String::new(),
    }
}

/// Whether `key` is a public operator nkey.
/// Whether `key` is a valid account public key.
pub fn is_public_account_key(key: &str) -> bool {
    is_public_key(key, 'A')
}

pub fn is_public_operator_key(key: &str) -> bool {
    is_public_key(key, 'O')
}

/// The reference's start-up lines naming the trusted operators (times in
/// UTC, as Go prints them on a machine whose zone is UTC).
pub fn startup_lines(mode: &OperatorMode) -> Vec<String> {
    let date = |seconds: i64| {
        let nanos = u64::try_from(seconds)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000);
        let text = crate::format::rfc3339_nanos(WallTime::from_unix_nanos(nanos));
        format!(
            "{} +0000 UTC",
            text.trim_end_matches('Z').replacen('T', " ", 1)
        )
    };
    let mut lines = Vec::new();
    if !mode.operators.is_empty() {
        lines.push(String::from("Trusted Operators"));
    }
    for operator in &mode.operators {
        lines.push(format!(
            "  System  : {}",
            crate::format::go_quote(operator.claims.audience.as_bytes())
        ));
        lines.push(format!(
            "  Operator: {}",
            crate::format::go_quote(operator.claims.name.as_bytes())
        ));
        lines.push(format!("  Issued  : {}", date(operator.claims.issued_at)));
        lines.push(match operator.claims.expires {
            0 => String::from("  Expires : Never"),
            expires => format!("  Expires : {}", date(expires)),
        });
    }
    if let Some(dir) = &mode.dir {
        lines.push(format!(
            "Managing {} jwt in exclusive directory {}",
            if dir.is_cache() { "some" } else { "all" },
            dir.dir
        ));
    }
    lines
}

/// What a user JWT restricts that only the server, knowing the
/// connection, can check: where it comes from, over what, until when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    /// `exp`: the connection is closed then (`User Authentication Expired`).
    pub expires: Option<WallTime>,
    /// The account JWT's `exp`: the connection is closed then (`Account
    /// Authentication Expired`).
    pub account_expires: Option<WallTime>,
    /// `src`: the client's address must be in one of these networks.
    pub src: Vec<String>,
    /// `allowed_connection_types` this server knows (`STANDARD`,
    /// `WEBSOCKET`, ...); empty allows every type.
    pub connection_types: Vec<String>,
    /// The lower of the user's and the account's `subs` and `payload`
    /// limits (`None`: no limit; `Some(0)` allows none, as in the reference).
    pub max_subs: Option<usize>,
    pub max_payload: Option<usize>,
    /// The account's `conn` limit: its clients connected at once.
    pub account_max_connections: Option<usize>,
}

/// A JWT's `exp` (seconds; 0 is none) as a wall-clock time.
fn expiry(expires: i64) -> Option<WallTime> {
    (expires > 0).then(|| {
        WallTime::from_unix_nanos(
            u64::try_from(expires)
                .unwrap_or(0)
                .saturating_mul(1_000_000_000),
        )
    })
}

/// A JWT limit: -1 is none, anything else (0 included) a limit.
fn limit(value: i64) -> Option<usize> {
    (value != -1).then(|| usize::try_from(value).unwrap_or(0))
}

/// The lower of two limits.
fn lower(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (one, other) => one.or(other),
    }
}

impl Restrictions {
    /// What a user JWT itself restricts (expiry, connection types), or
    /// `None` when it names only connection types this server does not
    /// know: the intent was to allow none of ours.
    pub(super) fn of_user(user: &Jwt<UserNats>) -> Option<Restrictions> {
        let expires = expiry(user.claims.expires);
        let named = &user.nats.allowed_connection_types;
        let connection_types: Vec<String> = named
            .iter()
            .filter(|kind| CONNECTION_TYPES.contains(&kind.as_str()))
            .cloned()
            .collect();
        (named.is_empty() || !connection_types.is_empty()).then_some(Restrictions {
            expires,
            connection_types,
            ..Restrictions::default()
        })
    }

    fn of(user: &Jwt<UserNats>, account: &Jwt<AccountNats>) -> Result<Restrictions, AuthFailure> {
        let account_expires = expiry(account.claims.expires);
        let account = &account.nats;
        let Restrictions {
            expires,
            connection_types,
            ..
        } = Restrictions::of_user(user).ok_or(AuthFailure::ConnectionTypeNotAllowed)?;
        Ok(Restrictions {
            expires,
            account_expires,
            src: user.nats.src.0.clone(),
            connection_types,
            max_subs: lower(limit(user.nats.subs), limit(account.limits.subs)),
            max_payload: lower(limit(user.nats.payload), limit(account.limits.payload)),
            account_max_connections: limit(account.limits.conn),
        })
    }

    fn is_empty(&self) -> bool {
        *self == Restrictions::default()
    }

    /// Whether a client at `ip` may log in: in one of the `src` networks,
    /// tried in order; one that does not parse before a match fails the
    /// check, as in the reference.
    pub fn source_allowed(&self, ip: std::net::IpAddr) -> bool {
        if self.src.is_empty() {
            return true;
        }
        for cidr in &self.src {
            match cidr_contains(cidr, ip) {
                None => return false,
                Some(true) => return true,
                Some(false) => {}
            }
        }
        false
    }

    /// Whether a connection of `kind` (`STANDARD`, `WEBSOCKET`) may log in.
    pub fn connection_type_allowed(&self, kind: &str) -> bool {
        self.connection_types.is_empty() || self.connection_types.iter().any(|k| k == kind)
    }
}

/// Whether network `cidr` (`10.0.0.0/8`, `::1/128`) holds `ip`; `None`
/// when `cidr` is not a network.
pub(super) fn cidr_contains(cidr: &str, ip: std::net::IpAddr) -> Option<bool> {
    use std::net::IpAddr;
    let (address, bits) = cidr.split_once('/')?;
    let network: IpAddr = address.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    let (network, ip, width) = match (network, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        (IpAddr::V6(n), IpAddr::V4(i)) => (u128::from(n), u128::from(i.to_ipv6_mapped()), 128),
        (IpAddr::V4(n), IpAddr::V6(i)) => match i.to_ipv4_mapped() {
            Some(i) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
            None => return Some(false),
        },
    };
    if bits > width {
        return None;
    }
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (width - bits)
    } & (u128::MAX >> (128 - width));
    Some(network & mask == ip & mask)
}

/// An account's JetStream limits from its JWT, as the reference reads them;
/// `None`: JetStream is off for it (no storage granted in its flat limits
/// or any tier). Flat limits with storage win over tiers; tiered limits
/// keep every tier (`AccountLimits::tiers`) and run under the `R1` tier's
/// (a single server's streams have one replica; without `R1` no stream
/// can be created, as in the reference).
fn jetstream_limits(
    key: &str,
    limits: &jwt::AccountLimitsClaim,
) -> Result<Option<crate::jetstream::config::AccountLimits>, String> {
    let grants =
        |claim: &jwt::AccountLimitsClaim| claim.mem_storage != 0 || claim.disk_storage != 0;
    if grants(limits) {
        return Ok(Some(tier_limits(limits)));
    }
    let mut tiers = BTreeMap::new();
    for (name, tier) in &limits.tiered_limits {
        let claim: jwt::AccountLimitsClaim = serde_json::from_value(tier.clone())
            .map_err(|error| format!("account {key}: tiered_limits.{name}: {error}"))?;
        tiers.insert(name.clone(), claim);
    }
    if !tiers.values().any(grants) {
        return Ok(None);
    }
    let mut account = tiers.get("R1").map(tier_limits).unwrap_or_default();
    account.tiers = Some(
        tiers
            .iter()
            .map(|(name, claim)| (name.clone(), tier_limits(claim)))
            .collect(),
    );
    Ok(Some(account))
}

/// One tier's (or the flat) JetStream limits of an account JWT.
fn tier_limits(tier: &jwt::AccountLimitsClaim) -> crate::jetstream::config::AccountLimits {
    // Storage: -1 is no limit, 0 none; streams and consumers: 0 is no
    // limit too; the rest treat 0 as "not set".
    let storage = |value: i64| u64::try_from(value).ok();
    let counted = |value: i64| u64::try_from(value).ok().filter(|n| *n > 0);
    crate::jetstream::config::AccountLimits {
        max_memory: storage(tier.mem_storage),
        max_store: storage(tier.disk_storage),
        max_streams: counted(tier.streams),
        max_consumers: counted(tier.consumer),
        max_bytes_required: tier.max_bytes_required,
        max_ack_pending: counted(tier.max_ack_pending),
        memory_max_stream_bytes: counted(tier.mem_max_stream_bytes),
        store_max_stream_bytes: counted(tier.disk_max_stream_bytes),
        tiers: None,
    }
}

/// Whether the account revoked the user (by key or all users, `*`) at or
/// after the user JWT was issued.
fn revoked(account: &AccountNats, user: &str, issued_at: i64) -> bool {
    [user, "*"].iter().any(|key| {
        account
            .revocations
            .get(*key)
            .is_some_and(|&at| at >= issued_at)
    })
}

fn refuse_unsupported_account_claims(key: &str, account: &AccountNats) -> Result<(), String> {
    let mut unsupported = Vec::new();
    // `subs`, `payload` and `conn` are applied (see `Restrictions`);
    // `imports`, `exports` and `wildcards` are checked as the JWT is
    // validated (`validation_issues`); `data` restricts no client in the
    // reference either, and `leaf` no connection rnats accepts (it has no
    // leaf nodes). JetStream limits are read by `jetstream_limits`.
    if account.trace.as_ref().is_some_and(|t| !t.is_null()) {
        unsupported.push(String::from("trace"));
    }
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "account {key}: JWT claim(s) {} not supported yet",
            unsupported.join(", ")
        ))
    }
}

/// What the reference's JWT validation finds wrong with an account's own
/// limits (an account with any does not verify).
fn refuse_unsupported_user_claims(user: &UserNats) -> Result<(), AuthFailure> {
    if user.proxy_required {
        return Err(AuthFailure::Unsupported("proxy_required"));
    }
    Ok(())
}

fn mapping(
    account: &str,
    source: &str,
    destinations: &serde_json::Value,
) -> Result<SubjectMapping, String> {
    let list = destinations.as_array().cloned().unwrap_or_default();
    let mut mapped = Vec::new();
    for destination in list {
        if destination
            .get("cluster")
            .and_then(|v| v.as_str())
            .is_some_and(|c| !c.is_empty())
        {
            return Err(format!(
                "account {account}: mapping of {source:?}: cluster-scoped destinations are not supported yet"
            ));
        }
        let subject = destination
            .get("subject")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let weight = destination
            .get("weight")
            .and_then(|v| v.as_u64())
            .unwrap_or(100)
            .min(100) as u8;
        mapped.push(MappingDestination {
            subject,
            weight: if weight == 0 { 100 } else { weight },
        });
    }
    Ok(SubjectMapping {
        source: source.to_string(),
        destinations: mapped,
    })
}

/// Whether `key` is a valid public nkey of the kind whose prefix is `prefix`.
fn is_public_key(key: &str, prefix: char) -> bool {
    key.starts_with(prefix) && nkeys::KeyPair::from_public_key(key).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_hold_their_addresses() {
        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(cidr_contains("10.0.0.0/8", ip("10.200.1.1")), Some(true));
        assert_eq!(cidr_contains("10.0.0.0/8", ip("11.0.0.1")), Some(false));
        assert_eq!(cidr_contains("0.0.0.0/0", ip("8.8.8.8")), Some(true));
        assert_eq!(cidr_contains("127.0.0.1/32", ip("127.0.0.1")), Some(true));
        assert_eq!(cidr_contains("::1/128", ip("::1")), Some(true));
        assert_eq!(cidr_contains("fd00::/8", ip("fd12::1")), Some(true));
        assert_eq!(
            cidr_contains("10.0.0.0/8", ip("::ffff:10.1.2.3")),
            Some(true)
        );
        assert_eq!(cidr_contains("10.0.0.0/33", ip("10.0.0.1")), None);
        assert_eq!(cidr_contains("10.0.0.1", ip("10.0.0.1")), None);
        let restrictions = |src: &[&str]| Restrictions {
            src: src.iter().map(|s| s.to_string()).collect(),
            ..Restrictions::default()
        };
        let local = ip("127.0.0.1");
        assert!(restrictions(&[]).source_allowed(local));
        assert!(restrictions(&["127.0.0.0/8", "junk"]).source_allowed(local));
        assert!(!restrictions(&["junk", "127.0.0.0/8"]).source_allowed(local));
        assert!(!restrictions(&["10.0.0.0/8"]).source_allowed(local));
    }
}
