//! The NATS JWT library's `Validate` rules for account and user claims: the
//! checks nats-server runs on a JWT after its signature and issuer passed,
//! before it uses it.
//!
//! Role: turn claims into a list of [`Issue`]s in the reference's words and
//! order, so each caller decides as the reference does: a claims push to
//! the directory resolver is refused with every error listed (`validation
//! errors: [..]`), an account that does not verify is not used (its users
//! cannot log in), a preloaded one is warned of with each issue, and a user
//! JWT with an error is refused at login.
//!
//! Invariants: pure functions of the claims (and, for the time checks, the
//! wall-clock second handed in); a claim part that does not decode is an
//! error issue, never a panic. Where the reference walks a Go map (signing
//! keys, mappings, overlapping exports) its order is random; here it is
//! the sorted order, so the same claims always give the same list.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::jwt::{
    AccountNats, ClaimsData, PermissionClaim, PermissionsClaim, SigningKey, UserNats,
};

/// The longest `description` or `info_url` the library accepts.
const MAX_INFO_LENGTH: usize = 8 * 1024;

/// How much an issue counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The claims are not valid.
    Error,
    /// Expired or not yet valid: blocking where the caller counts time.
    TimeCheck,
    /// Reported, never blocking.
    Warning,
}

/// One finding, in the library's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub description: String,
}

/// Every finding of one check, in the order the library makes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    pub issues: Vec<Issue>,
}

impl Validation {
    fn add(&mut self, severity: Severity, description: impl Into<String>) {
        self.issues.push(Issue {
            severity,
            description: description.into(),
        });
    }

    fn error(&mut self, description: impl Into<String>) {
        self.add(Severity::Error, description);
    }

    /// Whether the claims must not be used: an error, or (when
    /// `include_time_checks`) a failed time check.
    pub fn is_blocking(&self, include_time_checks: bool) -> bool {
        self.issues.iter().any(|issue| match issue.severity {
            Severity::Error => true,
            Severity::TimeCheck => include_time_checks,
            Severity::Warning => false,
        })
    }

    /// The errors and time checks as the reference prints a Go slice of
    /// them: `[first second ...]`.
    pub fn errors_text(&self) -> String {
        let errors: Vec<&str> = self
            .issues
            .iter()
            .filter(|issue| issue.severity != Severity::Warning)
            .map(|issue| issue.description.as_str())
            .collect();
        format!("[{}]", errors.join(" "))
    }

    /// Every description, warnings included (what a preload warning lists).
    pub fn descriptions(&self) -> impl Iterator<Item = &str> {
        self.issues.iter().map(|issue| issue.description.as_str())
    }
}

/// Go's `%q` of a string, for the texts that quote one.
fn quoted(text: &str) -> String {
    format!("{text:?}")
}

/// The library's time checks against `now` (Unix seconds); none without it.
fn check_times(claims: &ClaimsData, now: Option<i64>, found: &mut Validation) {
    let Some(now) = now else { return };
    if claims.expires > 0 && now > claims.expires {
        found.add(Severity::TimeCheck, "claim is expired");
    }
    if claims.not_before > 0 && claims.not_before > now {
        found.add(Severity::TimeCheck, "claim is not yet valid");
    }
}

fn is_public_key(key: &str, prefix: char) -> bool {
    key.starts_with(prefix) && nkeys::KeyPair::from_public_key(key).is_ok()
}

/// A subject as the library checks one (far looser than the protocol).
fn check_subject(subject: &str, found: &mut Validation) {
    if subject.is_empty() {
        found.error("subject cannot be empty");
        return;
    }
    if subject.contains(' ') {
        found.error(format!("subject {} cannot have spaces", quoted(subject)));
    }
    if subject.starts_with('.') || subject.ends_with('.') {
        found.error(format!(
            "subject {} cannot start or end with a `.`",
            quoted(subject)
        ));
    }
    if subject.contains("..") {
        found.error(format!(
            "subject {} cannot contain consecutive `.`",
            quoted(subject)
        ));
    }
}

/// The library's own idea of a wildcard subject (`foo*` is none, `>.x` is
/// none either).
fn has_wildcards(subject: &str) -> bool {
    subject.ends_with(".>")
        || subject.contains(".*.")
        || subject.ends_with(".*")
        || subject.starts_with("*.")
        || subject == "*"
        || subject == ">"
}

/// Whether every subject `subject` names is named by `other` too, by the
/// library's token comparison.
fn contained_in(subject: &str, other: &str) -> bool {
    let mine: Vec<&str> = subject.split('.').collect();
    let theirs: Vec<&str> = other.split('.').collect();
    let open = theirs.last() == Some(&">");
    if (mine.len() > theirs.len() && !open) || mine.len() < theirs.len() {
        return false;
    }
    for (index, token) in theirs.iter().enumerate() {
        if index == theirs.len() - 1 && *token == ">" {
            return true;
        }
        if *token != mine[index] && *token != "*" {
            return false;
        }
    }
    true
}

/// A `local_subject`: `$N` references count as the `*` they stand for.
fn as_subject(renaming: &str) -> String {
    if !renaming.contains('$') {
        return renaming.to_owned();
    }
    renaming
        .split('.')
        .map(|token| match token.strip_prefix('$') {
            Some(digits) if !digits.is_empty() && digits.parse::<i64>().is_ok() => "*",
            _ => token,
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn check_renaming(renaming: &str, from: &str, found: &mut Validation) {
    check_subject(renaming, found);
    if from.is_empty() {
        found.error("subject cannot be empty");
    }
    if renaming.contains(' ') {
        found.error(format!("subject {} cannot have spaces", quoted(renaming)));
    }
    let open = |s: &str| s == ">" || s.ends_with(".>");
    if open(renaming) != open(from) {
        found.error("both, renaming subject and subject, need to end or not end in >");
    }
    let wildcards = if from == "*" {
        1
    } else {
        from.split('.').filter(|t| *t == "*").count()
    };
    let mut references = 0;
    for token in renaming.split('.') {
        if token == "*" {
            references += 1;
        }
        if token.len() < 2 {
            continue;
        }
        if let Some(index) = token.strip_prefix('$').and_then(|d| d.parse::<i64>().ok()) {
            if index > wildcards as i64 {
                found.error(format!(
                    "Reference ${index} in {} reference * in {} that do not exist",
                    quoted(renaming),
                    quoted(from)
                ));
            } else {
                references += 1;
            }
        }
    }
    if references != wildcards {
        found.error("subject does not contain enough * or reference wildcards $[0-9]");
    }
}

fn check_permission(permission: &PermissionClaim, permit_queue: bool, found: &mut Validation) {
    for subject in permission.allow.iter().chain(&permission.deny) {
        let tokens: Vec<&str> = subject.split(' ').collect();
        match tokens.as_slice() {
            [one] => check_subject(one, found),
            [subject_part, queue] => {
                check_subject(subject_part, found);
                check_subject(queue, found);
                if !permit_queue {
                    found.error(format!(
                        "Permission Subject \"{subject}\" is not allowed to contain queue"
                    ));
                }
            }
            _ => found.error(format!(
                "Permission Subject \"{subject}\" contains too many spaces"
            )),
        }
    }
}

fn check_permissions(permissions: &PermissionsClaim, found: &mut Validation) {
    check_permission(&permissions.subscribe, true, found);
    check_permission(&permissions.publish, false, found);
}

/// `description` and `info_url`, carried by accounts and exports.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Info {
    description: String,
    info_url: String,
}

fn check_info(description: &str, info_url: &str, found: &mut Validation) {
    if description.len() > MAX_INFO_LENGTH {
        found.error("Description is too long");
    }
    if info_url.is_empty() {
        return;
    }
    if info_url.len() > MAX_INFO_LENGTH {
        found.error("Info URL is too long");
    }
    // A URL needs a scheme and a host name (`https://example.com/x`).
    let host = info_url
        .split_once("://")
        .filter(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .map(|(_, rest)| {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or("");
            match host.strip_prefix('[') {
                Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
                None => host.split(':').next().unwrap_or(""),
            }
        })
        .unwrap_or("");
    if host.is_empty() {
        found.error("error parsing info url: no hostname or scheme");
    }
}

/// A `type` as the library names it: left out, it is `unknown`.
fn type_name(kind: &str) -> &str {
    if kind.is_empty() {
        "unknown"
    } else {
        kind
    }
}

/// One entry of an account's `imports`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImportClaim {
    subject: String,
    account: String,
    token: String,
    to: String,
    local_subject: String,
    #[serde(rename = "type")]
    kind: String,
    share: bool,
    allow_trace: bool,
}

impl ImportClaim {
    fn is_service(&self) -> bool {
        self.kind == "service"
    }
}

/// One entry of an account's `exports`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ExportClaim {
    subject: String,
    #[serde(rename = "type")]
    kind: String,
    response_type: String,
    response_threshold: i64,
    service_latency: Option<LatencyClaim>,
    account_token_position: u64,
    allow_trace: bool,
    #[serde(flatten)]
    info: Info,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LatencyClaim {
    /// A percentage, or `"headers"` (0 to the library).
    sampling: serde_json::Value,
    results: String,
}

/// An account's `trace`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TraceClaim {
    dest: String,
    sampling: i64,
}

/// One destination of a subject mapping.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WeightedMapping {
    subject: String,
    weight: u8,
    cluster: String,
}

/// A claim part that must decode into `T`: what does not is an error (the
/// reference's decoder would have refused the whole JWT).
fn decode_part<T: for<'de> Deserialize<'de>>(
    value: &serde_json::Value,
    what: &str,
    found: &mut Validation,
) -> Option<T> {
    match T::deserialize(value) {
        Ok(part) => Some(part),
        Err(error) => {
            found.error(format!("{what} does not decode: {error}"));
            None
        }
    }
}

fn check_import(import: &ImportClaim, account_key: &str, found: &mut Validation) {
    let service = import.is_service();
    if !service && import.kind != "stream" {
        found.error(format!(
            "invalid import type: {}",
            quoted(type_name(&import.kind))
        ));
    }
    if service && import.allow_trace {
        found.error("AllowTrace only valid for stream import");
    }
    if import.account.is_empty() {
        found.error("account to import from is not specified");
    }
    if !import.to.is_empty() {
        found.add(
            Severity::Warning,
            "the field to has been deprecated (use LocalSubject instead)",
        );
    }
    check_subject(&import.subject, found);
    if !import.local_subject.is_empty() {
        check_renaming(&import.local_subject, &import.subject, found);
        if !import.to.is_empty() {
            found.error("Local Subject replaces To");
        }
    }
    if import.share && !service {
        found.error(format!(
            "sharing information (for latency tracking) is only valid for services: {}",
            quoted(&import.subject)
        ));
    }
    if import.token.is_empty() {
        return;
    }
    let Ok(activation) = super::jwt::decode_activation(&import.token) else {
        found.error(format!(
            "import {} contains an invalid activation token",
            quoted(&import.subject)
        ));
        return;
    };
    if activation.claims.issuer != import.account
        && activation.nats.issuer_account != import.account
    {
        found.error(format!(
            "activation token doesn't match account for import {}",
            quoted(&import.subject)
        ));
    }
    if activation.claims.subject != account_key {
        found.error(format!(
            "activation token doesn't match account it is being included in, {}",
            quoted(&import.subject)
        ));
    }
    if activation.nats.kind != import.kind {
        found.error(format!(
            "mismatch between token import type {} and type of import {}",
            activation.nats.kind, import.kind
        ));
    }
    if activation.nats.kind != "service" && activation.nats.kind != "stream" {
        found.error(format!(
            "invalid import type: {}",
            quoted(&activation.nats.kind)
        ));
    }
    check_subject(&activation.nats.subject, found);
    if !activation.nats.issuer_account.is_empty()
        && !is_public_key(&activation.nats.issuer_account, 'A')
    {
        found.error("account_id is not an account public key");
    }
    let subject = if service && !import.to.is_empty() {
        &import.to
    } else {
        &import.subject
    };
    if !contained_in(subject, &activation.nats.subject) {
        found.error(format!(
            "activation token import subject {} doesn't match import {}",
            quoted(&activation.nats.subject),
            quoted(&import.subject)
        ));
    }
}

fn check_imports(imports: &[serde_json::Value], account_key: &str, found: &mut Validation) {
    // Each service import's local subject, per account it imports from:
    // two may not overlap.
    let mut by_account: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for value in imports {
        if value.is_null() {
            found.error("null import is not allowed");
            continue;
        }
        let Some(import) = decode_part::<ImportClaim>(value, "import", found) else {
            continue;
        };
        if import.is_service() {
            let local = if !import.to.is_empty() {
                import.to.clone()
            } else if !import.local_subject.is_empty() {
                as_subject(&import.local_subject)
            } else {
                import.subject.clone()
            };
            let seen = by_account.entry(import.account.clone()).or_default();
            for other in seen.iter() {
                if contained_in(&local, other) || contained_in(other, &local) {
                    found.error(format!(
                        "overlapping subject namespace for {} and {} in same account {}",
                        quoted(&local),
                        quoted(other),
                        quoted(&import.account)
                    ));
                }
            }
            if seen.contains(&local) {
                found.error(format!(
                    "overlapping subject namespace for {} in account {}",
                    quoted(&local),
                    quoted(&import.account)
                ));
            } else {
                seen.push(local);
            }
        }
        check_import(&import, account_key, found);
    }
}

fn check_export(export: &ExportClaim, found: &mut Validation) {
    let service = export.kind == "service";
    let stream = export.kind == "stream";
    if !service && !stream {
        found.error(format!(
            "invalid export type: {}",
            quoted(type_name(&export.kind))
        ));
    }
    if service && !["", "Singleton", "Stream", "Chunked"].contains(&export.response_type.as_str()) {
        found.error(format!(
            "invalid response type for service: {}",
            quoted(&export.response_type)
        ));
    }
    if stream {
        if !export.response_type.is_empty() {
            found.error(format!(
                "invalid response type for stream: {}",
                quoted(&export.response_type)
            ));
        }
        if export.allow_trace {
            found.error("AllowTrace only valid for service export");
        }
    }
    if let Some(latency) = &export.service_latency {
        if !service {
            found.error("latency tracking only permitted for services");
        }
        let sampling = latency.sampling.as_i64().unwrap_or(0);
        if sampling != 0 && !(1..=100).contains(&sampling) {
            found.error("sampling percentage needs to be between 1-100");
        }
        check_subject(&latency.results, found);
        if has_wildcards(&latency.results) {
            found.error("results subject can not contain wildcards");
        }
    }
    if export.response_threshold < 0 {
        found.error("negative response threshold is invalid");
    }
    if export.response_threshold > 0 && !service {
        found.error("response threshold only valid for services");
    }
    check_subject(&export.subject, found);
    if export.account_token_position > 0 {
        let tokens: Vec<&str> = export.subject.split('.').collect();
        let position = export.account_token_position;
        if !has_wildcards(&export.subject) {
            found.error(format!(
                "Account Token Position can only be used with wildcard subjects: {}",
                export.subject
            ));
        } else if position > tokens.len() as u64 {
            found.error(format!(
                "Account Token Position {position} exceeds length of subject '{}'",
                export.subject
            ));
        } else if tokens[position as usize - 1] != "*" {
            found.error(format!(
                "Account Token Position {position} matches '{}' but must match a * in: {}",
                tokens[position as usize - 1],
                export.subject
            ));
        }
    }
    check_info(&export.info.description, &export.info.info_url, found);
}

fn check_exports(exports: &[serde_json::Value], found: &mut Validation) {
    let mut services = Vec::new();
    let mut streams = Vec::new();
    for value in exports {
        if value.is_null() {
            found.error("null export is not allowed");
            continue;
        }
        let Some(export) = decode_part::<ExportClaim>(value, "export", found) else {
            continue;
        };
        if export.kind == "service" {
            services.push(export.subject.clone());
        } else {
            streams.push(export.subject.clone());
        }
        check_export(&export, found);
    }
    for (kind, subjects) in [("service", &services), ("stream", &streams)] {
        // Each subject that holds another, with the first it holds.
        let mut holders: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, held) in subjects.iter().enumerate() {
            for (j, holder) in subjects.iter().enumerate() {
                if i != j && contained_in(held, holder) {
                    holders.entry(holder).or_insert(held);
                }
            }
        }
        for (holder, held) in holders {
            found.error(format!(
                "{kind} export subject {} already exports {}",
                quoted(holder),
                quoted(held)
            ));
        }
    }
}

fn check_mappings(mappings: &BTreeMap<String, serde_json::Value>, found: &mut Validation) {
    for (from, destinations) in mappings {
        check_subject(from, found);
        let Some(destinations) =
            decode_part::<Vec<WeightedMapping>>(destinations, "mapping", found)
        else {
            continue;
        };
        let mut per_cluster: BTreeMap<&str, u32> = BTreeMap::new();
        let mut total = 0u32;
        for destination in &destinations {
            check_subject(&destination.subject, found);
            let weight = if destination.weight == 0 {
                100
            } else {
                destination.weight
            };
            if weight > 100 {
                found.error(format!(
                    "Mapping {} has a weight {weight} that exceeds 100",
                    quoted(from)
                ));
            }
            if destination.cluster.is_empty() {
                total += u32::from(weight);
            } else {
                let sum = per_cluster.entry(&destination.cluster).or_default();
                *sum += u32::from(weight);
                if *sum > 100 {
                    found.error(format!(
                        "Mapping {} in cluster {} exceeds 100% among all of it's weighted to mappings",
                        quoted(from),
                        quoted(&destination.cluster)
                    ));
                }
            }
        }
        if total > 100 {
            found.error(format!(
                "Mapping {} exceeds 100% among all of it's weighted to mappings",
                quoted(from)
            ));
        }
    }
}

fn check_external_authorization(account: &AccountNats, found: &mut Validation) {
    let Some(external) = &account.authorization else {
        return;
    };
    if !external.allowed_accounts.is_empty() && external.auth_users.is_empty() {
        found.error("External authorization cannot have accounts without users specified");
    }
    for user in &external.auth_users {
        if !is_public_key(user, 'U') {
            found.error(format!(
                "AuthUser {} is not a valid user public key",
                quoted(user)
            ));
        }
    }
    for allowed in &external.allowed_accounts {
        if allowed == "*" {
            if external.allowed_accounts.len() > 1 {
                found.error("AllowedAccounts can only be a list of accounts or \"*\"");
            }
        } else if !is_public_key(allowed, 'A') {
            found.error(format!(
                "Account {} is not a valid account public key",
                quoted(allowed)
            ));
        }
    }
    let xkey_valid =
        external.xkey.starts_with('X') && nkeys::XKey::from_public_key(&external.xkey).is_ok();
    if !external.xkey.is_empty() && !xkey_valid {
        found.error(format!(
            "XKey {} is not a valid public xkey",
            quoted(&external.xkey)
        ));
    }
}

fn check_trace(trace: &serde_json::Value, found: &mut Validation) {
    if trace.is_null() {
        return;
    }
    let Some(trace) = decode_part::<TraceClaim>(trace, "trace", found) else {
        return;
    };
    let mut destination = Validation::default();
    check_subject(&trace.dest, &mut destination);
    if let Some(first) = destination.issues.first() {
        found.error(format!(
            "the account Trace.Destination {}",
            first.description
        ));
    }
    if has_wildcards(&trace.dest) {
        found.error(format!(
            "the account Trace.Destination subject {} is not a valid publish subject",
            quoted(&trace.dest)
        ));
    }
    if !(0..=100).contains(&trace.sampling) {
        found.error(format!(
            "the account Trace.Sampling value '{}' is not valid, should be in the range [1..100]",
            trace.sampling
        ));
    }
}

/// Whether an account's `limits` are all left out (zero), as the library's
/// `OperatorLimits.IsEmpty`.
fn limits_empty(account: &AccountNats) -> bool {
    let l = &account.limits;
    l.subs == 0
        && l.data == 0
        && l.payload == 0
        && l.imports == 0
        && l.exports == 0
        && !l.wildcards
        && !l.disallow_bearer
        && l.conn == 0
        && l.leaf == 0
        && jetstream_limits_empty(account)
        && l.tiered_limits.is_empty()
}

fn jetstream_limits_empty(account: &AccountNats) -> bool {
    let l = &account.limits;
    l.mem_storage == 0
        && l.disk_storage == 0
        && l.streams == 0
        && l.consumer == 0
        && l.max_ack_pending == 0
        && l.mem_max_stream_bytes == 0
        && l.disk_max_stream_bytes == 0
        && !l.max_bytes_required
}

/// An account JWT's claims as the library validates them; time checks
/// against `now` (Unix seconds) when given.
pub fn check_account(claims: &ClaimsData, account: &AccountNats, now: Option<i64>) -> Validation {
    let mut found = Validation::default();
    check_times(claims, now, &mut found);
    check_imports(&account.imports, &claims.subject, &mut found);
    check_exports(&account.exports, &mut found);
    let limits = &account.limits;
    // (Flat and tiered JetStream limits cannot meet here: decoding drops
    // the flat ones when there are tiers, as the reference's does.)
    if limits.tiered_limits.contains_key("") {
        found.error("Tiered JetStream Limits can not contain a blank \"\" tier name");
    }
    check_permissions(&account.default_permissions, &mut found);
    check_mappings(&account.mappings, &mut found);
    check_external_authorization(account, &mut found);
    if let Some(trace) = &account.trace {
        check_trace(trace, &mut found);
    }
    let imports = account.imports.len() as i64;
    let too_many_imports = "the account contains more imports than allowed by the operator";
    if !limits_empty(account) && limits.imports >= 0 && imports > limits.imports {
        found.error(too_many_imports);
    }
    if limits.imports != -1 && imports > limits.imports {
        found.error(too_many_imports);
    }
    if limits.exports != -1 {
        if account.exports.len() as i64 > limits.exports {
            found.error("the account contains more exports than allowed by the operator");
        }
        if !limits.wildcards {
            for export in &account.exports {
                let subject = export.get("subject").and_then(|s| s.as_str());
                if subject.is_some_and(has_wildcards) {
                    found.error(
                        "the account contains wildcard exports that are not allowed by the operator",
                    );
                }
            }
        }
    }
    let mut keys: Vec<&SigningKey> = account.signing_keys.iter().collect();
    keys.sort_by(|a, b| a.key().cmp(b.key()));
    for key in keys {
        match key {
            SigningKey::Plain(key) if !is_public_key(key, 'A') => found.error(format!(
                "{} is not a valid account signing key",
                quoted(key)
            )),
            SigningKey::Scoped { key, .. } if !is_public_key(key, 'A') => {
                found.error(format!("{key} is not an account public key"))
            }
            _ => {}
        }
    }
    check_info(&account.description, &account.info_url, &mut found);
    if !matches!(account.cluster_traffic.as_str(), "" | "system" | "owner") {
        found.error(format!(
            "unknown cluster traffic option: {}",
            quoted(&account.cluster_traffic)
        ));
    }
    found
}

/// A user JWT's claims as the library validates them; time checks against
/// `now` (Unix seconds) when given.
pub fn check_user(claims: &ClaimsData, user: &UserNats, now: Option<i64>) -> Validation {
    let mut found = Validation::default();
    check_times(claims, now, &mut found);
    check_permissions(&user.permissions, &mut found);
    for cidr in &user.src.0 {
        // A network whatever address it is asked about (`None`: not one).
        if super::operator::cidr_contains(cidr, std::net::Ipv4Addr::UNSPECIFIED.into()).is_none() {
            found.error(format!("invalid cidr {} in user src limits", quoted(cidr)));
        }
    }
    for range in &user.times {
        for (text, name, missing) in [
            (
                &range.start,
                "start",
                "time ranges start must contain a start",
            ),
            (&range.end, "end", "time ranges end must contain an end"),
        ] {
            if text.is_empty() {
                found.error(missing);
            } else if super::times::parse_clock(text).is_none() {
                found.error(format!("{name} in time range is invalid {}", quoted(text)));
            }
        }
    }
    if !user.times_location.is_empty()
        && jiff::tz::TimeZoneDatabase::bundled()
            .get(&user.times_location)
            .is_err()
    {
        found.error(format!(
            "could not parse iana time zone by name: unknown time zone {}",
            user.times_location
        ));
    }
    if !user.issuer_account.is_empty() && !is_public_key(&user.issuer_account, 'A') {
        found.error("account_id is not an account public key");
    }
    found
}

#[cfg(test)]
mod tests;
