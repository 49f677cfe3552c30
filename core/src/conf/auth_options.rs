//! The security parts of a config file: `authorization { users,
//! default_permissions }`, `accounts { }`, top-level `mappings`,
//! `system_account` and `no_system_account`, mapped onto the data model of
//! [`crate::auth`] with nats-server v2.15.1's key names, aliases, checks and
//! error texts (`parseAuthorization`, `parseUsers`, `parseUserPermissions`,
//! `parseAccounts` and their helpers in the reference's `server/opts.go`).
//!
//! Invariants:
//! - Every user and nkey user names the account it belongs to: `$G` for
//!   users of `authorization { }`, the block's name for an account's users.
//! - User names and nkeys are unique across the whole file.
//! - As in the reference, default permissions are applied here: a user of
//!   `authorization { }` without permissions gets the block's
//!   `default_permissions`, a user of an account the account's.
//! - Permissions are in [`Permissions::normalized`] form; subjects in them
//!   are valid subjects (queue entries: a valid subject and a valid queue).
//! - Cross-references inside `accounts { }` (export and import accounts,
//!   import authorization, cycles) are checked when the block is read, after
//!   all its accounts are known, as the reference does; `no_auth_user` is
//!   checked when the server starts ([`check_no_auth_user`]).
//!
//! The reference reads maps in Go's random order, so a few checks that depend
//! on the order of keys there (a stream import with both `prefix` and `to`, a
//! stream export with a `threshold`, top-level blocks that refer to each
//! other) are made here in file order, always.

mod accounts;
#[cfg(test)]
mod tests;

use std::time::Duration;

use super::options::{
    invalid, string, unknown_field, wrong_type, AuthorizationOptions, Unsupported,
};
use super::value::{ConfValue, MapEntry, Position, ValueKind};
use super::{ConfError, ConfErrorKind, FileOptions};
use crate::auth::CONNECTION_TYPES;
use crate::auth::{
    AccountConfig, NkeyUser, Permissions, ResponsePermission, SubjectPermission, User,
    GLOBAL_ACCOUNT,
};
use crate::subject::is_valid_subject;

pub use accounts::{parse_accounts, parse_global_mappings};

/// What the file says about users, accounts and mappings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityOptions {
    /// The users of `authorization { users }` (account `$G`) and of every
    /// account, in file order.
    pub users: Vec<User>,
    /// Users identified by an nkey, likewise.
    pub nkeys: Vec<NkeyUser>,
    /// `authorization { default_permissions }` (already applied to that
    /// block's users; kept for reference).
    pub default_permissions: Option<Permissions>,
    /// `accounts { }` in file order, and `$G` when top-level `mappings` are
    /// set.
    pub accounts: Vec<AccountConfig>,
    /// `system_account` / `system`.
    pub system_account: Option<String>,
    /// `no_system_account` / `no_system` / `no_sys_acc`.
    pub no_system_account: bool,
}

/// Keys of a user entry the reference knows and rnats does not handle.
const UNSUPPORTED_USER_KEYS: &[&str] = &[
    "allowed_connection_types",
    "connection_types",
    "clients",
    "proxy_required",
];

/// An error at `position` (an array item has no key of its own; `key` names
/// the array).
fn invalid_at(position: &Position, key: &str, reason: String) -> ConfError {
    ConfError::new(
        position.clone(),
        ConfErrorKind::InvalidValue {
            key: key.to_string(),
            reason,
        },
    )
}

/// A scalar as Go's `%v` prints it, for the reference's messages that quote
/// a value of the wrong type; other values by their type.
pub(in crate::conf) fn go_value_text(value: &ConfValue) -> String {
    match &value.kind {
        ValueKind::String(text) => text.clone(),
        ValueKind::Integer(n) => n.to_string(),
        ValueKind::Float(x) => x.to_string(),
        ValueKind::Bool(b) => b.to_string(),
        other => other.type_name().to_string(),
    }
}

/// A value's Go type as the reference's `%T` prints it.
pub(in crate::conf) fn go_type_name(value: &ConfValue) -> &'static str {
    match &value.kind {
        ValueKind::String(_) => "string",
        ValueKind::Integer(_) => "int64",
        ValueKind::Float(_) => "float64",
        ValueKind::Bool(_) => "bool",
        ValueKind::DateTime(_) => "time.Time",
        ValueKind::Array(_) => "[]interface {}",
        ValueKind::Map(_) => "map[string]interface {}",
    }
}

/// The users of one `users: [ ... ]` array, before they are checked against
/// the rest of the file.
#[derive(Debug, Default)]
pub(super) struct ParsedUsers {
    pub users: Vec<User>,
    pub nkeys: Vec<NkeyUser>,
}

impl ParsedUsers {
    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.nkeys.is_empty()
    }

    /// Users without permissions of their own get `defaults`.
    fn apply_default_permissions(&mut self, defaults: &Option<Permissions>) {
        let Some(defaults) = defaults else { return };
        for user in &mut self.users {
            user.permissions.get_or_insert_with(|| defaults.clone());
        }
        for user in &mut self.nkeys {
            user.permissions.get_or_insert_with(|| defaults.clone());
        }
    }

    /// Appends these users to the file's, refusing a name or nkey already
    /// taken (the reference checks users and nkeys against one set).
    fn add_to(self, security: &mut SecurityOptions, at: &MapEntry) -> Result<(), ConfError> {
        let taken = |security: &SecurityOptions, name: &str| {
            security.users.iter().any(|u| u.username == name)
                || security.nkeys.iter().any(|u| u.nkey == name)
        };
        for user in self.nkeys {
            if taken(security, &user.nkey) {
                return Err(invalid(
                    at,
                    &format!("Duplicate nkey \"{}\" detected", user.nkey),
                ));
            }
            security.nkeys.push(user);
        }
        for user in self.users {
            if taken(security, &user.username) {
                return Err(invalid(
                    at,
                    &format!("Duplicate user \"{}\" detected", user.username),
                ));
            }
            security.users.push(user);
        }
        Ok(())
    }
}

/// `users: [ {user, password, permissions} | {nkey, permissions} ]` inside
/// `authorization` or an account.
pub(super) fn parse_users(
    entry: &MapEntry,
    account: &str,
    unsupported: &mut Vec<Unsupported>,
    unsupported_prefix: &str,
) -> Result<ParsedUsers, ConfError> {
    let items = entry.value.as_array().ok_or_else(|| {
        invalid(
            entry,
            &format!(
                "Expected users field to be an array, got {}",
                entry.value.kind.type_name()
            ),
        )
    })?;
    let mut parsed = ParsedUsers::default();
    for item in items {
        let fields = item.as_map().ok_or_else(|| {
            invalid_at(
                &item.position,
                &entry.key,
                format!(
                    "Expected user entry to be a map/struct, got {}",
                    go_value_text(item)
                ),
            )
        })?;
        let mut name = String::new();
        let mut password = String::new();
        let mut nkey = String::new();
        let mut permissions = None;
        for field in fields {
            match field.key.to_ascii_lowercase().as_str() {
                "nkey" => nkey = string(field)?,
                "user" | "username" => name = string(field)?,
                "pass" | "password" => password = string(field)?,
                "permission" | "permissions" | "authorization" => {
                    permissions = Some(parse_permissions(field)?)
                }
                key if UNSUPPORTED_USER_KEYS.contains(&key) => {
                    if key == "proxy_required" {
                        field
                            .value
                            .as_bool()
                            .ok_or_else(|| wrong_type(field, "a boolean"))?;
                    } else {
                        check_connection_types(field)?;
                    }
                    unsupported.push(Unsupported::new(
                        format!("{unsupported_prefix}{}.{}", entry.key, field.key),
                        field,
                    ))
                }
                _ if field.is_referenced() => {}
                _ => return Err(unknown_field(field)),
            }
        }
        let fail = |reason: &str| invalid_at(&item.position, &entry.key, reason.to_string());
        if nkey.is_empty() && name.is_empty() {
            return Err(fail("User entry requires a user"));
        }
        if nkey.is_empty() {
            parsed.users.push(User {
                username: name,
                password,
                permissions,
                account: account.to_string(),
            });
            continue;
        }
        if !is_public_key(&nkey, b'U') {
            return Err(fail("Not a valid public nkey for a user"));
        }
        if !name.is_empty() || !password.is_empty() {
            return Err(fail("Nkey users do not take usernames or passwords"));
        }
        parsed.nkeys.push(NkeyUser {
            nkey,
            permissions,
            account: account.to_string(),
        });
    }
    Ok(parsed)
}

/// `allowed_connection_types`: a name or a list of names the reference knows
/// (any case).
fn check_connection_types(field: &MapEntry) -> Result<(), ConfError> {
    let names: Vec<&str> = match &field.value.kind {
        ValueKind::String(name) => vec![name.as_str()],
        ValueKind::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| wrong_type(field, "an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(wrong_type(field, "a string or an array")),
    };
    let unknown: Vec<String> = names
        .iter()
        .map(|name| name.to_ascii_uppercase())
        .filter(|name| !CONNECTION_TYPES.contains(&name.as_str()))
        .map(|name| format!("{name:?}"))
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(
            field,
            &format!("invalid connection types [{}]", unknown.join(" ")),
        ));
    }
    Ok(())
}

/// Whether `key` is a public nkey of the kind `prefix` names (`U` user,
/// `A` account).
fn is_public_key(key: &str, prefix: u8) -> bool {
    key.as_bytes().first() == Some(&prefix) && nkeys::KeyPair::from_public_key(key).is_ok()
}

/// `permissions { publish, subscribe, allow_responses }`.
pub fn parse_permissions(entry: &MapEntry) -> Result<Permissions, ConfError> {
    let fields = entry.value.as_map().ok_or_else(|| {
        invalid(
            entry,
            &format!(
                "Expected permissions to be a map/struct, got {}",
                go_value_text(&entry.value)
            ),
        )
    })?;
    let mut permissions = Permissions::default();
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            // `import` and `export` are the route permissions' names.
            "pub" | "publish" | "import" => {
                permissions.publish = parse_subject_permission(field, false)?
            }
            "sub" | "subscribe" | "export" => {
                permissions.subscribe = parse_subject_permission(field, true)?
            }
            "allow_responses" | "publish_allow_responses" => {
                permissions.response = parse_allow_responses(field)?
            }
            _ if field.is_referenced() => {}
            _ => {
                return Err(invalid(
                    field,
                    &format!("Unknown field \"{}\" parsing permissions", field.key),
                ))
            }
        }
    }
    Ok(permissions.normalized())
}

/// A subject or a list of them (the allow list), or `{ allow, deny }`. An
/// empty map sets nothing.
fn parse_subject_permission(
    entry: &MapEntry,
    queues: bool,
) -> Result<Option<SubjectPermission>, ConfError> {
    let ValueKind::Map(fields) = &entry.value.kind else {
        return Ok(Some(SubjectPermission {
            allow: Some(subject_list(entry, queues)?),
            deny: Vec::new(),
        }));
    };
    if fields.is_empty() {
        return Ok(None);
    }
    let mut permission = SubjectPermission::default();
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "allow" => permission.allow = Some(subject_list(field, queues)?),
            "deny" => permission.deny = subject_list(field, queues)?,
            _ if field.is_referenced() => {}
            _ => {
                return Err(invalid(
                    field,
                    &format!(
                        "Unknown field name \"{}\" parsing subject permissions, \
                         only 'allow' or 'deny' are permitted",
                        field.key
                    ),
                ))
            }
        }
    }
    Ok(Some(permission))
}

/// The subjects of a permission list, each checked.
fn subject_list(entry: &MapEntry, queues: bool) -> Result<Vec<String>, ConfError> {
    let subjects: Vec<String> = match &entry.value.kind {
        ValueKind::String(subject) => vec![subject.clone()],
        ValueKind::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    invalid_at(
                        &item.position,
                        &entry.key,
                        String::from("Subject in permissions array cannot be cast to string"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(invalid(
                entry,
                &format!(
                    "Expected subject permissions to be a subject, or array of subjects, got {}",
                    go_type_name(&entry.value)
                ),
            ))
        }
    };
    for subject in &subjects {
        check_permission_subject(subject, queues).map_err(|reason| invalid(entry, &reason))?;
    }
    Ok(subjects)
}

/// A permission entry is a valid subject; for subscribe it may instead be
/// `"subject queue"`, both parts valid.
fn check_permission_subject(subject: &str, queues: bool) -> Result<(), String> {
    if is_valid_subject(subject.as_bytes()) {
        return Ok(());
    }
    let whole = || format!("subject \"{subject}\" is not a valid subject");
    if !queues {
        return Err(whole());
    }
    let parts: Vec<&str> = subject.split_whitespace().collect();
    let [subject, queue] = parts[..] else {
        return Err(whole());
    };
    if !is_valid_subject(subject.as_bytes()) {
        return Err(format!("subject \"{subject}\" is not a valid subject"));
    }
    if !is_valid_subject(queue.as_bytes()) {
        return Err(format!("queue \"{queue}\" is not a valid queue"));
    }
    Ok(())
}

/// `allow_responses: true | false | { max, expires }`. Zero means the
/// default; a negative value means no limit.
fn parse_allow_responses(entry: &MapEntry) -> Result<Option<ResponsePermission>, ConfError> {
    let fields = match &entry.value.kind {
        ValueKind::Bool(false) => return Ok(None),
        ValueKind::Bool(true) => return Ok(Some(ResponsePermission::default())),
        ValueKind::Map(fields) => fields,
        _ => {
            return Err(invalid(
                entry,
                "error parsing response permissions, expected a boolean or a map",
            ))
        }
    };
    let mut permission = ResponsePermission::default();
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "max" | "max_msgs" | "max_messages" | "max_responses" => {
                let max = field
                    .value
                    .as_i64()
                    .ok_or_else(|| wrong_type(field, "an integer"))?;
                match u64::try_from(max) {
                    Ok(0) => {}
                    Ok(max) => permission.max_msgs = max,
                    Err(_) => permission.max_msgs = u64::MAX,
                }
            }
            "expires" | "expiration" | "ttl" => {
                let text = field.value.as_str().ok_or_else(|| {
                    invalid(field, "error parsing expires, not a duration string")
                })?;
                let nanos = super::parse_go_duration(text)
                    .map_err(|error| invalid(field, &format!("error parsing expires: {error}")))?;
                match u64::try_from(nanos) {
                    Ok(0) => {}
                    Ok(nanos) => permission.expires = Duration::from_nanos(nanos),
                    Err(_) => permission.expires = Duration::MAX,
                }
            }
            _ if field.is_referenced() => {}
            _ => {
                return Err(invalid(
                    field,
                    &format!("Unknown field \"{}\" parsing permissions", field.key),
                ))
            }
        }
    }
    Ok(Some(permission))
}

/// The user keys of `authorization { }`, gathered while the block is read
/// and added by [`finish_authorization`].
#[derive(Debug, Default)]
pub(super) struct AuthorizationUsers {
    /// `Some` when the block has a `users` array, even an empty one.
    users: Option<ParsedUsers>,
    default_permissions: Option<Permissions>,
}

/// One key of `authorization { }` if it is about users; `false` if the
/// caller should read it.
pub(super) fn parse_authorization_field(
    field: &MapEntry,
    pending: &mut AuthorizationUsers,
    unsupported: &mut Vec<Unsupported>,
) -> Result<bool, ConfError> {
    match field.key.to_ascii_lowercase().as_str() {
        "users" => {
            pending.users = Some(parse_users(
                field,
                GLOBAL_ACCOUNT,
                unsupported,
                "authorization.",
            )?)
        }
        "default_permission" | "default_permissions" | "permissions" => {
            pending.default_permissions = Some(parse_permissions(field)?)
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The checks the reference makes once `authorization { }` is read (`entry`
/// is the block): a users array excludes a single user or a token (users
/// of accounts read before count too), users get the default permissions,
/// and names must be unique.
pub(super) fn finish_authorization(
    entry: &MapEntry,
    auth: &AuthorizationOptions,
    pending: AuthorizationUsers,
    security: &mut SecurityOptions,
) -> Result<(), ConfError> {
    let filled = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    let users_elsewhere = !security.users.is_empty() || !security.nkeys.is_empty();
    if pending.users.is_some() || users_elsewhere {
        if filled(&auth.user) {
            return Err(invalid(
                entry,
                "Can not have a single user/pass and a users array",
            ));
        }
        if filled(&auth.token) {
            return Err(invalid(entry, "Can not have a token and a users array"));
        }
    }
    if let Some(mut users) = pending.users {
        users.apply_default_permissions(&pending.default_permissions);
        users.add_to(security, entry)?;
    }
    security.default_permissions = pending.default_permissions;
    Ok(())
}

/// `system_account` / `system`: the reference's wording for a wrong type.
pub(super) fn parse_system_account(
    entry: &MapEntry,
    security: &mut SecurityOptions,
) -> Result<(), ConfError> {
    let name = entry
        .value
        .as_str()
        .ok_or_else(|| invalid(entry, "system account name must be a string"))?;
    security.system_account = Some(name.to_string());
    Ok(())
}

/// `no_auth_user` must name a user or nkey. The reference checks this when the
/// server starts, not under `-t`, and so does rnats.
pub fn check_no_auth_user(options: &FileOptions) -> Result<(), String> {
    let security = &options.security;
    match options.no_auth_user.as_deref() {
        Some(user)
            if !user.is_empty()
                && !security.users.iter().any(|u| u.username == user)
                && !security.nkeys.iter().any(|u| u.nkey == user) =>
        {
            Err(format!(
                "no_auth_user: \"{user}\" not present as user or nkey in authorization block or account configuration"
            ))
        }
        _ => Ok(()),
    }
}
