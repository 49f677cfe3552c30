//! The security parts of a config file: `authorization { users,
//! default_permissions }`, `accounts { }`, top-level `mappings`,
//! `system_account` and `no_system_account`, mapped onto the data model of
//! [`crate::auth`] with nats-server v2.15.1's key names and aliases.
//!
//! Invariants:
//! - Every user and nkey user names the account it belongs to: `$G` for
//!   users of `authorization { }`, the block's name for an account's users.
//! - Cross-references (an import naming an account, `no_auth_user` naming a
//!   user, duplicate users) are checked once the whole file is read, in
//!   [`validate`].
//! - Permissions are kept as written (plus the reference's `allow_responses`
//!   normalisation); subjects in them are checked to be valid subjects.

use std::time::Duration;

use super::options::{
    invalid, parse_duration_value, string, unknown_field, wrong_type, FileOptions, Unsupported,
};
use super::value::{ConfMap, ConfValue, MapEntry, ValueKind};
use super::ConfError;
use crate::auth::{
    AccountConfig, Export, ExportKind, Import, ImportKind, MappingDestination, NkeyUser,
    Permissions, ResponsePermission, ResponseType, SubjectMapping, SubjectPermission, User,
    GLOBAL_ACCOUNT,
};
use crate::subject::{is_valid_subject, is_valid_subscribe_subject};

/// What the file says about users, accounts and mappings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityOptions {
    pub users: Vec<User>,
    pub nkeys: Vec<NkeyUser>,
    pub default_permissions: Option<Permissions>,
    pub accounts: Vec<AccountConfig>,
    /// `system_account` / `system`.
    pub system_account: Option<String>,
    /// `no_system_account` / `no_system` / `no_sys_acc`.
    pub no_system_account: bool,
}

/// Keys of an account block the reference knows and rnats does not handle.
const UNSUPPORTED_ACCOUNT_KEYS: &[&str] = &[
    "jetstream",
    "js",
    "limits",
    "default_permissions",
    "nkey",
    "trace_dest",
    "msg_trace",
    "auth_callout",
];

/// Keys of a user entry the reference knows and rnats does not handle.
const UNSUPPORTED_USER_KEYS: &[&str] = &[
    "allowed_connection_types",
    "connection_types",
    "clients",
    "proxy_required",
];

fn map_of(entry: &MapEntry) -> Result<&ConfMap, ConfError> {
    entry
        .value
        .as_map()
        .ok_or_else(|| wrong_type(entry, "a map"))
}

/// A value inside an array has no key of its own; errors point at the array's key.
fn item_map<'a>(item: &'a ConfValue, parent: &MapEntry) -> Result<&'a ConfMap, ConfError> {
    item.as_map().ok_or_else(|| wrong_type(parent, "a map"))
}

/// `users: [ ... ]` inside `authorization` or an account.
pub fn parse_users(
    entry: &MapEntry,
    account: &str,
    security: &mut SecurityOptions,
    unsupported: &mut Vec<Unsupported>,
) -> Result<(), ConfError> {
    let items = entry
        .value
        .as_array()
        .ok_or_else(|| wrong_type(entry, "an array"))?;
    for item in items {
        let fields = item_map(item, entry)?;
        let mut name = None;
        let mut password = None;
        let mut nkey = None;
        let mut permissions = None;
        for field in fields {
            match field.key.to_ascii_lowercase().as_str() {
                "user" | "username" => name = Some(string(field)?),
                "pass" | "password" => password = Some(string(field)?),
                "nkey" => nkey = Some(string(field)?),
                "permission" | "permissions" => permissions = Some(parse_permissions(field)?),
                "account" => {}
                key if UNSUPPORTED_USER_KEYS.contains(&key) => unsupported.push(Unsupported {
                    key: format!("{}.{}", entry.key, field.key),
                    position: field.key_position.clone(),
                }),
                _ => return Err(unknown_field(field)),
            }
        }
        match (nkey, name) {
            (Some(nkey), None) => {
                if password.is_some() {
                    return Err(invalid(
                        entry,
                        "Nkey users do not take usernames or passwords",
                    ));
                }
                if !nkey.starts_with('U') || nkeys::KeyPair::from_public_key(&nkey).is_err() {
                    return Err(invalid(entry, "Not a valid public nkey for a user"));
                }
                security.nkeys.push(NkeyUser {
                    nkey,
                    permissions,
                    account: account.to_string(),
                });
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    entry,
                    "Nkey users do not take usernames or passwords",
                ))
            }
            (None, Some(name)) => security.users.push(User {
                username: name,
                password: password.unwrap_or_default(),
                permissions,
                account: account.to_string(),
            }),
            (None, None) => {
                return Err(invalid(entry, "User entry requires a user"));
            }
        }
    }
    Ok(())
}

/// `permissions { publish, subscribe, allow_responses }`.
pub fn parse_permissions(entry: &MapEntry) -> Result<Permissions, ConfError> {
    let fields = map_of(entry)?;
    let mut permissions = Permissions::default();
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "pub" | "publish" | "import" => {
                permissions.publish = Some(parse_subject_permission(field, false)?)
            }
            "sub" | "subscribe" | "export" => {
                permissions.subscribe = Some(parse_subject_permission(field, true)?)
            }
            "allow_responses" | "allow_resp" | "publish_allow_responses" => {
                permissions.response = parse_allow_responses(field)?
            }
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

/// A string or list (the allow list), or `{ allow, deny }`.
fn parse_subject_permission(
    entry: &MapEntry,
    queues: bool,
) -> Result<SubjectPermission, ConfError> {
    match &entry.value.kind {
        ValueKind::Map(fields) => {
            let mut permission = SubjectPermission::default();
            for field in fields {
                match field.key.to_ascii_lowercase().as_str() {
                    "allow" => permission.allow = Some(subject_list(field, queues)?),
                    "deny" => permission.deny = subject_list(field, queues)?,
                    _ => {
                        return Err(invalid(
                            field,
                            &format!(
                                "Unknown field name \"{}\" parsing subject permissions, only 'allow' or 'deny' are permitted",
                                field.key
                            ),
                        ))
                    }
                }
            }
            Ok(permission)
        }
        _ => Ok(SubjectPermission {
            allow: Some(subject_list(entry, queues)?),
            deny: Vec::new(),
        }),
    }
}

fn subject_list(entry: &MapEntry, queues: bool) -> Result<Vec<String>, ConfError> {
    let subjects: Vec<String> = match &entry.value.kind {
        ValueKind::String(subject) => vec![subject.clone()],
        ValueKind::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_type(entry, "a string"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(wrong_type(entry, "a string or an array")),
    };
    for subject in &subjects {
        let mut parts = subject.split_whitespace();
        let first = parts.next().unwrap_or("");
        let queue = parts.next();
        let valid = is_valid_subscribe_subject(first.as_bytes())
            && (queue.is_none() || queues)
            && queue.is_none_or(|q| is_valid_subject(q.as_bytes()))
            && parts.next().is_none();
        if !valid {
            return Err(invalid(
                entry,
                &format!("subject \"{subject}\" is not a valid subject"),
            ));
        }
    }
    Ok(subjects)
}

/// `allow_responses: true | false | { max, expires }`.
fn parse_allow_responses(entry: &MapEntry) -> Result<Option<ResponsePermission>, ConfError> {
    match &entry.value.kind {
        ValueKind::Bool(false) => Ok(None),
        ValueKind::Bool(true) => Ok(Some(ResponsePermission::default())),
        ValueKind::Map(fields) => {
            let mut permission = ResponsePermission {
                max_msgs: 0,
                expires: Duration::ZERO,
            };
            for field in fields {
                match field.key.to_ascii_lowercase().as_str() {
                    "max" | "max_msgs" | "max_messages" | "max_responses" => {
                        let max = field
                            .value
                            .as_i64()
                            .ok_or_else(|| wrong_type(field, "an integer"))?;
                        permission.max_msgs = u64::try_from(max).unwrap_or(0);
                    }
                    "expires" | "expiration" | "ttl" => {
                        permission.expires = parse_duration_value(field)?
                    }
                    _ => {
                        return Err(invalid(
                            field,
                            &format!("Unknown field \"{}\" parsing allow_responses", field.key),
                        ))
                    }
                }
            }
            Ok(Some(permission))
        }
        _ => Err(wrong_type(entry, "a boolean or a map")),
    }
}

/// `authorization { users, default_permissions }` (the rest of the block is
/// read by the options module).
pub fn parse_authorization_field(
    block: &MapEntry,
    field: &MapEntry,
    security: &mut SecurityOptions,
    unsupported: &mut Vec<Unsupported>,
) -> Result<bool, ConfError> {
    let _ = block;
    match field.key.to_ascii_lowercase().as_str() {
        "users" => parse_users(field, GLOBAL_ACCOUNT, security, unsupported)?,
        "default_permission" | "default_permissions" | "permissions" => {
            security.default_permissions = Some(parse_permissions(field)?)
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `accounts { NAME { users, exports, imports, mappings } ... }`.
pub fn parse_accounts(
    entry: &MapEntry,
    security: &mut SecurityOptions,
    unsupported: &mut Vec<Unsupported>,
) -> Result<(), ConfError> {
    let accounts = map_of(entry)?;
    for account in accounts {
        let name = account.key.clone();
        if security.accounts.iter().any(|a| a.name == name) {
            return Err(invalid(
                account,
                &format!("Duplicate Account Entry: {name}"),
            ));
        }
        let mut config = AccountConfig::new(name.clone());
        if let Some(fields) = account.value.as_map() {
            for field in fields {
                match field.key.to_ascii_lowercase().as_str() {
                    "users" => parse_users(field, &name, security, unsupported)?,
                    "exports" => config.exports = parse_exports(field)?,
                    "imports" => config.imports = parse_imports(field)?,
                    "mappings" | "maps" => config.mappings = parse_mappings(field)?,
                    key if UNSUPPORTED_ACCOUNT_KEYS.contains(&key) => {
                        unsupported.push(Unsupported {
                            key: format!("{}.{}.{}", entry.key, account.key, field.key),
                            position: field.key_position.clone(),
                        })
                    }
                    _ => return Err(unknown_field(field)),
                }
            }
        } else if !matches!(&account.value.kind, ValueKind::String(_)) {
            return Err(wrong_type(account, "a map"));
        }
        security.accounts.push(config);
    }
    Ok(())
}

fn parse_exports(entry: &MapEntry) -> Result<Vec<Export>, ConfError> {
    let items = entry
        .value
        .as_array()
        .ok_or_else(|| wrong_type(entry, "an array"))?;
    let mut exports = Vec::new();
    for item in items {
        let fields = item_map(item, entry)?;
        let mut export: Option<Export> = None;
        let mut accounts = None;
        let mut response_type = None;
        let mut threshold = None;
        for field in fields {
            match field.key.to_ascii_lowercase().as_str() {
                "stream" | "service" => {
                    let subject = string(field)?;
                    if !is_valid_subscribe_subject(subject.as_bytes()) {
                        return Err(invalid(
                            field,
                            &format!("invalid export subject \"{subject}\""),
                        ));
                    }
                    if export.is_some() {
                        return Err(invalid(
                            field,
                            "Detected stream and service export in the same entry",
                        ));
                    }
                    export = Some(if field.key.eq_ignore_ascii_case("stream") {
                        Export::stream(subject)
                    } else {
                        Export::service(subject)
                    });
                }
                "accounts" => accounts = Some(string_list(field)?),
                "response" | "response_type" => {
                    response_type = Some(match string(field)?.to_ascii_lowercase().as_str() {
                        "single" | "singleton" => ResponseType::Singleton,
                        "stream" => ResponseType::Stream,
                        "chunk" | "chunked" => ResponseType::Chunked,
                        other => {
                            return Err(invalid(
                                field,
                                &format!("Unknown response type: \"{other}\""),
                            ))
                        }
                    })
                }
                "threshold" | "response_threshold" | "response_max_time" | "response_time" => {
                    threshold = Some(parse_duration_value(field)?)
                }
                "latency" | "account_token_position" | "advertise" | "allow_trace" => {}
                _ => return Err(unknown_field(field)),
            }
        }
        let mut export =
            export.ok_or_else(|| invalid(entry, "Export entry requires a stream or service"))?;
        export.accounts = accounts;
        if let Some(response_type) = response_type {
            if export.kind == ExportKind::Stream {
                return Err(invalid(entry, "Detected response directive on non-service"));
            }
            export.response_type = response_type;
        }
        if let Some(threshold) = threshold {
            export.response_threshold = threshold;
        }
        exports.push(export);
    }
    Ok(exports)
}

fn parse_imports(entry: &MapEntry) -> Result<Vec<Import>, ConfError> {
    let items = entry
        .value
        .as_array()
        .ok_or_else(|| wrong_type(entry, "an array"))?;
    let mut imports = Vec::new();
    for item in items {
        let fields = item_map(item, entry)?;
        let mut import: Option<Import> = None;
        let mut prefix = None;
        let mut to = None;
        for field in fields {
            match field.key.to_ascii_lowercase().as_str() {
                kind @ ("stream" | "service") => {
                    let source = map_of(field)?;
                    let mut account = None;
                    let mut subject = None;
                    for part in source {
                        match part.key.to_ascii_lowercase().as_str() {
                            "account" => account = Some(string(part)?),
                            "subject" => subject = Some(string(part)?),
                            _ => return Err(unknown_field(part)),
                        }
                    }
                    let account = account
                        .ok_or_else(|| invalid(field, "Expect an account name and a subject"))?;
                    let subject = subject
                        .ok_or_else(|| invalid(field, "Expect an account name and a subject"))?;
                    if !is_valid_subscribe_subject(subject.as_bytes()) {
                        return Err(invalid(
                            field,
                            &format!("invalid import subject \"{subject}\""),
                        ));
                    }
                    import = Some(Import {
                        kind: if kind == "stream" {
                            ImportKind::Stream
                        } else {
                            ImportKind::Service
                        },
                        account,
                        subject,
                        to: None,
                    });
                }
                "prefix" => prefix = Some(string(field)?),
                "to" => to = Some(string(field)?),
                "share" | "allow_trace" => {}
                _ => return Err(unknown_field(field)),
            }
        }
        let mut import =
            import.ok_or_else(|| invalid(entry, "Import entry requires a stream or service"))?;
        import.to = match (prefix, to, import.kind) {
            (Some(prefix), _, ImportKind::Stream) => Some(format!("{prefix}.{}", import.subject)),
            (Some(_), _, ImportKind::Service) => {
                return Err(invalid(entry, "Detected prefix on a service import"))
            }
            (None, Some(to), _) => Some(to),
            (None, None, _) => None,
        };
        imports.push(import);
    }
    Ok(imports)
}

/// `mappings { "src": "dest" | { destination, weight } | [ ... ] }`.
pub fn parse_mappings(entry: &MapEntry) -> Result<Vec<SubjectMapping>, ConfError> {
    let fields = map_of(entry)?;
    let mut mappings = Vec::new();
    for field in fields {
        let source = field.key.clone();
        if !is_valid_subscribe_subject(source.as_bytes()) {
            return Err(invalid(
                field,
                &format!("invalid mapping source \"{source}\""),
            ));
        }
        let destinations = match &field.value.kind {
            ValueKind::String(destination) => vec![MappingDestination {
                subject: destination.clone(),
                weight: 100,
            }],
            ValueKind::Map(map) => vec![mapping_destination(field, map)?],
            ValueKind::Array(items) => items
                .iter()
                .map(|item| mapping_destination(field, item_map(item, field)?))
                .collect::<Result<_, _>>()?,
            _ => return Err(wrong_type(field, "a string, a map or an array")),
        };
        let total: u32 = destinations.iter().map(|d| u32::from(d.weight)).sum();
        if total > 100 {
            return Err(invalid(
                field,
                &format!("Error adding mapping for \"{source}\" : total weight needs to be <= 100"),
            ));
        }
        mappings.push(SubjectMapping {
            source,
            destinations,
        });
    }
    Ok(mappings)
}

fn mapping_destination(field: &MapEntry, map: &ConfMap) -> Result<MappingDestination, ConfError> {
    let mut subject = None;
    let mut weight = 100u8;
    for part in map {
        match part.key.to_ascii_lowercase().as_str() {
            "dest" | "destination" => subject = Some(string(part)?),
            "weight" => {
                let value = match &part.value.kind {
                    ValueKind::Integer(n) => *n,
                    ValueKind::String(text) => text
                        .trim()
                        .trim_end_matches('%')
                        .parse::<i64>()
                        .map_err(|_| invalid(part, &format!("Invalid weight \"{text}\"")))?,
                    _ => return Err(wrong_type(part, "an integer or a percentage")),
                };
                weight = u8::try_from(value)
                    .ok()
                    .filter(|w| (1..=100).contains(w))
                    .ok_or_else(|| {
                        invalid(part, &format!("Invalid weight {value}, must be 1 to 100"))
                    })?;
            }
            "cluster" => {}
            _ => return Err(unknown_field(part)),
        }
    }
    let subject = subject.ok_or_else(|| invalid(field, "Mapping entry requires a destination"))?;
    Ok(MappingDestination { subject, weight })
}

fn string_list(entry: &MapEntry) -> Result<Vec<String>, ConfError> {
    match &entry.value.kind {
        ValueKind::String(one) => Ok(vec![one.clone()]),
        ValueKind::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_type(entry, "a string"))
            })
            .collect(),
        _ => Err(wrong_type(entry, "an array")),
    }
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

/// Checks that need the whole file: imports name known accounts, user names
/// are unique.
pub fn validate(options: &FileOptions, root: &ConfMap) -> Result<(), ConfError> {
    let security = &options.security;
    let at = |key: &str| {
        root.iter()
            .find(|entry| entry.key.eq_ignore_ascii_case(key))
            .or_else(|| root.iter().next())
    };
    let known = |name: &str| {
        name == GLOBAL_ACCOUNT || security.accounts.iter().any(|account| account.name == name)
    };
    for account in &security.accounts {
        for import in &account.imports {
            if !known(&import.account) {
                let entry = at("accounts").expect("accounts block present");
                return Err(invalid(
                    entry,
                    &format!(
                        "\"{}\" account not defined for {} import",
                        import.account,
                        match import.kind {
                            ImportKind::Stream => "stream",
                            ImportKind::Service => "service",
                        }
                    ),
                ));
            }
        }
    }
    for (n, user) in security.users.iter().enumerate() {
        if security.users[..n]
            .iter()
            .any(|u| u.username == user.username)
        {
            let entry = at("accounts").or_else(|| at("authorization"));
            if let Some(entry) = entry {
                return Err(invalid(
                    entry,
                    &format!("Duplicate user \"{}\" detected", user.username),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{load_options, NoSource};
    use super::*;

    fn load(text: &str) -> Result<FileOptions, String> {
        load_options("test.conf", text, &NoSource)
            .map(|(options, _)| options)
            .map_err(|error| error.to_string())
    }

    const REALISTIC: &str = r#"
authorization {
  default_permissions: { publish: "pub.>", allow_responses: true }
  users: [
    { user: alice, password: "$2a$11$abcdefghijklmnopqrstuuJ3l9vmQQ1DZdgRaY5wTxWA3ZgqvT5F2" }
    { user: bob, password: hunter2, permissions: {
        publish: { allow: ["orders.>"], deny: ["orders.secret"] }
        subscribe: ["orders.*", "jobs.> workers"]
        allow_responses: { max: 3, expires: "5s" }
    } }
    { nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4 }
  ]
}
no_auth_user: bob
mappings { "old.*": "new.$1", "split": [ { destination: left, weight: 30% }, { destination: right, weight: 70 } ] }
system_account: SYS
accounts {
  SYS: { users: [ { user: admin, password: pw } ] }
  A: {
    users: [ { user: a, password: pw } ]
    exports: [ { stream: "feed.>" }, { service: "svc.*", accounts: [B], response_type: stream, response_threshold: "10s" } ]
    mappings: { "in.>": "out.>" }
  }
  B: {
    users: [ { user: b, password: pw } ]
    imports: [ { stream: { account: A, subject: "feed.>" }, prefix: a }, { service: { account: A, subject: "svc.time" }, to: time } ]
  }
}
lame_duck_duration: "30s"
lame_duck_grace_period: "5s"
"#;

    #[test]
    fn snapshot_of_a_realistic_security_config() {
        let options = load(REALISTIC).expect("valid");
        let shown = format!("{:#?}", options.security);
        assert!(!shown.contains("hunter2"), "passwords are redacted");
        insta::assert_snapshot!(shown);
        assert_eq!(options.lame_duck_duration, Some(Duration::from_secs(30)));
        assert_eq!(options.lame_duck_grace_period, Some(Duration::from_secs(5)));
    }

    #[test]
    fn users_land_in_their_accounts() {
        let options = load(REALISTIC).expect("valid");
        let account_of = |name: &str| {
            options
                .security
                .users
                .iter()
                .find(|u| u.username == name)
                .map(|u| u.account.clone())
        };
        assert_eq!(account_of("alice").as_deref(), Some("$G"));
        assert_eq!(account_of("a").as_deref(), Some("A"));
        assert_eq!(account_of("admin").as_deref(), Some("SYS"));
        let b = options
            .security
            .accounts
            .iter()
            .find(|a| a.name == "B")
            .unwrap();
        assert_eq!(b.imports[0].to.as_deref(), Some("a.feed.>"));
        let global = options
            .security
            .accounts
            .iter()
            .find(|a| a.name == "$G")
            .unwrap();
        assert_eq!(global.mappings[1].destinations[0].weight, 30);
    }

    #[test]
    fn errors() {
        for (text, expected) in [
            (
                "accounts { B: { imports: [ { stream: { account: Z, subject: x } } ] } }",
                "\"Z\" account not defined for stream import",
            ),
            (
                "authorization { users: [ {user: a, password: x}, {user: a, password: y} ] }",
                "Duplicate user \"a\" detected",
            ),
            (
                "authorization { users: [ {user: a, permissions: { publish: \"a..b\" }} ] }",
                "subject \"a..b\" is not a valid subject",
            ),
            (
                "authorization { users: [ {user: a, permissions: { publish: { allow: x, nope: y } }} ] }",
                "Unknown field name \"nope\" parsing subject permissions",
            ),
            (
                "authorization { users: [ {nkey: NOTAKEY} ] }",
                "Not a valid public nkey for a user",
            ),
            (
                "mappings { a: [ {destination: b, weight: 80}, {destination: c, weight: 30} ] }",
                "Error adding mapping for \"a\" : total weight needs to be <= 100",
            ),
            (
                "accounts { A: { exports: [ { stream: x, response_type: stream } ] } }",
                "response directive on non-service",
            ),
        ] {
            let error = load(text).expect_err(text);
            assert!(error.contains(expected), "{text}\n  got: {error}");
        }
    }

    #[test]
    fn no_auth_user_must_name_a_user_at_start() {
        let options =
            load("no_auth_user: ghost\nauthorization { users: [ {user: a, password: x} ] }")
                .expect("-t accepts it, as the reference does");
        let error = check_no_auth_user(&options).expect_err("but starting refuses it");
        assert!(error.contains("no_auth_user: \"ghost\" not present as user or nkey"));
        let options =
            load("no_auth_user: a\nauthorization { users: [ {user: a, password: x} ] }").unwrap();
        assert!(check_no_auth_user(&options).is_ok());
    }

    #[test]
    fn permission_forms() {
        let options = load(
            "authorization { users: [ {user: u, password: p, permissions: { pub: [a, b], sub: { deny: \"c.>\" } }} ] }",
        )
        .expect("valid");
        let permissions = options.security.users[0].permissions.clone().unwrap();
        assert_eq!(
            permissions.publish.unwrap().allow,
            Some(vec![String::from("a"), String::from("b")])
        );
        let subscribe = permissions.subscribe.unwrap();
        assert_eq!(subscribe.allow, None);
        assert_eq!(subscribe.deny, vec![String::from("c.>")]);
    }
}
