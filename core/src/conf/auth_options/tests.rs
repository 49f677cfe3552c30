//! Every shape of the security keys, and every error, with the texts
//! nats-server v2.15.1 prints for the same file under `-t`.

use std::time::Duration;

use super::super::{load_options, FileOptions, NoSource, Unsupported};
use super::*;
use crate::auth::{ExportKind, ImportKind, ResponseType, DEFAULT_ALLOW_RESPONSE_EXPIRATION};

fn load(text: &str) -> Result<FileOptions, String> {
    load_options("test.conf", text, &NoSource)
        .map(|(options, _)| options)
        .map_err(|error| error.to_string())
}

fn load_unsupported(text: &str) -> Vec<String> {
    let (_, unsupported) = load_options("test.conf", text, &NoSource).expect("valid");
    unsupported
        .into_iter()
        .map(|u: Unsupported| u.key)
        .collect()
}

fn account<'a>(options: &'a FileOptions, name: &str) -> &'a AccountConfig {
    options
        .security
        .accounts
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("account {name}"))
}

fn user<'a>(options: &'a FileOptions, name: &str) -> &'a User {
    options
        .security
        .users
        .iter()
        .find(|u| u.username == name)
        .unwrap_or_else(|| panic!("user {name}"))
}

const NKEY: &str = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";

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
    default_permissions: { subscribe: { deny: "secret.>" } }
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
    assert!(!shown.contains("$2a$11$"), "hashes are redacted too");
    insta::assert_snapshot!(shown);
    assert_eq!(options.lame_duck_duration, Some(Duration::from_secs(30)));
    assert_eq!(options.lame_duck_grace_period, Some(Duration::from_secs(5)));
}

#[test]
fn users_land_in_their_accounts_with_their_default_permissions() {
    let options = load(REALISTIC).expect("valid");
    assert_eq!(user(&options, "alice").account, "$G");
    assert_eq!(user(&options, "a").account, "A");
    assert_eq!(user(&options, "admin").account, "SYS");
    assert_eq!(options.security.nkeys[0].account, "$G");
    // authorization's defaults go to its own users only, as in the reference.
    let alice = user(&options, "alice")
        .permissions
        .clone()
        .expect("defaults");
    assert_eq!(
        alice.publish.unwrap().allow,
        Some(vec!["pub.>".to_string()])
    );
    assert_eq!(alice.response, Some(ResponsePermission::default()));
    assert!(options.security.nkeys[0].permissions.is_some());
    assert_eq!(user(&options, "a").permissions, None);
    // An account's defaults go to its users.
    let b = user(&options, "b")
        .permissions
        .clone()
        .expect("account defaults");
    assert_eq!(b.subscribe.unwrap().deny, vec!["secret.>".to_string()]);
    // Passwords are kept verbatim, bcrypt hashes included.
    assert!(user(&options, "alice").password.starts_with("$2a$11$"));
}

#[test]
fn exports_imports_and_mappings() {
    let options = load(REALISTIC).expect("valid");
    let a = account(&options, "A");
    assert_eq!(a.exports[0].kind, ExportKind::Stream);
    assert_eq!(a.exports[0].accounts, None);
    let service = &a.exports[1];
    assert_eq!(service.kind, ExportKind::Service);
    assert_eq!(service.accounts, Some(vec!["B".to_string()]));
    assert_eq!(service.response_type, ResponseType::Stream);
    assert_eq!(service.response_threshold, Duration::from_secs(10));
    let b = account(&options, "B");
    assert_eq!(b.imports[0].kind, ImportKind::Stream);
    assert_eq!(b.imports[0].to.as_deref(), Some("a.feed.>"));
    assert_eq!(b.imports[1].kind, ImportKind::Service);
    assert_eq!(b.imports[1].local_subject(), "time");
    let global = account(&options, "$G");
    assert_eq!(global.mappings[0].destinations[0].weight, 100);
    assert_eq!(global.mappings[1].destinations[0].weight, 30);
    assert_eq!(global.mappings[1].destinations[1].weight, 70);
    assert_eq!(a.mappings[0].destinations[0].subject, "out.>");
    assert_eq!(options.security.system_account.as_deref(), Some("SYS"));
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

    // A single string; `authorization` as an alias of `permissions`; an
    // empty allow/deny map sets nothing.
    let options = load(
        "authorization { users: [ {user: u, authorization: { publish: x, subscribe: {} }} ] }",
    )
    .unwrap();
    let permissions = options.security.users[0].permissions.clone().unwrap();
    assert_eq!(
        permissions.publish.unwrap().allow,
        Some(vec!["x".to_string()])
    );
    assert_eq!(permissions.subscribe, None);
}

#[test]
fn allow_responses_forms() {
    let permissions = |text: &str| {
        let file = format!(
            "authorization {{ users: [ {{user: u, permissions: {{ allow_responses: {text} }}}} ] }}"
        );
        load(&file).expect(text).security.users[0]
            .permissions
            .clone()
            .unwrap()
    };
    let on = permissions("true");
    assert_eq!(on.response, Some(ResponsePermission::default()));
    // Responding alone closes publishing otherwise.
    assert_eq!(on.publish.unwrap().allow, Some(vec![]));
    assert_eq!(permissions("false").response, None);
    let custom = permissions("{ max: 3, expires: \"5s\" }").response.unwrap();
    assert_eq!(custom.max_msgs, 3);
    assert_eq!(custom.expires, Duration::from_secs(5));
    // Zero means the default, negative means no limit.
    let zero = permissions("{ max: 0, ttl: \"0s\" }").response.unwrap();
    assert_eq!(zero, ResponsePermission::default());
    let unlimited = permissions("{ max: -1, expires: \"-1s\" }")
        .response
        .unwrap();
    assert_eq!(unlimited.max_msgs, u64::MAX);
    assert_eq!(unlimited.expires, Duration::MAX);
    let only_max = permissions("{ max_msgs: 5 }").response.unwrap();
    assert_eq!(only_max.expires, DEFAULT_ALLOW_RESPONSE_EXPIRATION);
}

#[test]
fn queue_permissions() {
    let options = load(
        "authorization { users: [ {user: u, permissions: { sub: [\"foo.* q\", \"bar q.>x\"] }} ] }",
    )
    .expect("valid");
    let subscribe = options.security.users[0]
        .permissions
        .clone()
        .unwrap()
        .subscribe
        .unwrap();
    assert_eq!(subscribe.allow.unwrap().len(), 2);
}

#[test]
fn nkey_users() {
    let options = load(&format!(
        "authorization {{ users: [ {{nkey: {NKEY}, permissions: {{ publish: x }}}} ] }}"
    ))
    .expect("valid");
    assert_eq!(options.security.nkeys[0].nkey, NKEY);
    assert!(options.security.nkeys[0].permissions.is_some());
    assert!(options.security.users.is_empty());
}

#[test]
fn accounts_as_a_list_of_names() {
    let options = load("accounts: [A, B]").expect("valid");
    let names: Vec<_> = options
        .security
        .accounts
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["A", "B"]);
}

#[test]
fn mapping_forms() {
    let options = load(
        "mappings { a: b, c: { destination: d, weight: 40 }, e: [ {dest: f, weight: \"0%\"}, {destination: g, weight: 10, cluster: east} ] }",
    )
    .expect("valid");
    let global = account(&options, "$G");
    assert_eq!(global.mappings.len(), 3);
    assert_eq!(global.mappings[1].destinations[0].weight, 40);
    // Cluster-scoped destinations never apply outside a cluster.
    assert_eq!(global.mappings[2].destinations.len(), 1);
    assert_eq!(global.mappings[2].destinations[0].weight, 0);

    // `maps` is an alias; two blocks merge, a later source replacing.
    let options = load("mappings { a: b }\nmaps { a: c, d: e }").expect("valid");
    let global = account(&options, "$G");
    assert_eq!(global.mappings.len(), 2);
    assert_eq!(global.mappings[0].destinations[0].subject, "c");
}

#[test]
fn unsupported_mapping_functions_are_reported_not_applied() {
    let text = "mappings { \"a.*\": \"b.{{partition(3,1)}}\", \"c.*\": \"d.{{wildcard(1)}}\" }";
    assert_eq!(load_unsupported(text), ["mappings.a.*"]);
    let options = load(text).unwrap();
    assert_eq!(account(&options, "$G").mappings.len(), 1);
}

#[test]
fn imports_resolve_prefixes_and_defaults() {
    let options = load(
        "accounts { A: { exports: [ {stream: \"x.>\"}, {service: \"s.*\"} ] }, \
         B: { imports: [ {stream: {account: A, subject: \"x.y\"}, prefix: \"p.\"}, \
                         {stream: {account: A, subject: \"x.*\"}, to: \"z.$1\"}, \
                         {service: {account: A, subject: \"s.q\"}, prefix: ignored} ] } }",
    )
    .expect("valid");
    let b = account(&options, "B");
    assert_eq!(b.imports[0].to.as_deref(), Some("p.x.y"));
    assert_eq!(b.imports[1].to.as_deref(), Some("z.$1"));
    assert_eq!(b.imports[2].to, None);
    assert_eq!(b.imports[2].local_subject(), "s.q");
}

#[test]
fn entries_without_stream_or_service_are_ignored() {
    let options =
        load("accounts { A: { exports: [ { accounts: [B] } ] }, B: { imports: [ { to: x } ] } }")
            .expect("valid, as the reference");
    assert!(account(&options, "A").exports.is_empty());
    assert!(account(&options, "B").imports.is_empty());
}

#[test]
fn system_account() {
    let options = load("system: SYS\naccounts { SYS: {} }").unwrap();
    assert_eq!(options.security.system_account.as_deref(), Some("SYS"));
    for key in ["no_system_account", "no_system", "no_sys_acc"] {
        let options = load(&format!("{key}: true")).unwrap();
        assert!(options.security.no_system_account, "{key}");
    }
}

#[test]
fn an_import_may_share_the_requesters_details() {
    let options = load(
        "accounts { A: { exports: [ { service: x }, { service: y } ] }, \
         B: { imports: [ { service: { account: A, subject: x }, share: true }, \
         { service: { account: A, subject: y }, to: z } ] } }",
    )
    .unwrap();
    let b = options
        .security
        .accounts
        .iter()
        .find(|a| a.name == "B")
        .unwrap();
    let shares: Vec<bool> = b.imports.iter().map(|i| i.share).collect();
    assert_eq!(shares, [true, false]);
}

#[test]
fn keys_rnats_does_not_handle_are_reported() {
    let keys = load_unsupported(
        "accounts { A: { jetstream: enabled, limits: { max_conn: 1 }, \
         users: [ {user: a, allowed_connection_types: [STANDARD]} ], \
         exports: [ {service: x, latency: {sampling: 100%, subject: lat}} ] } }\n\
         authorization { users: [ {user: b, proxy_required: true} ] }",
    );
    assert_eq!(
        keys,
        [
            "accounts.A.limits",
            "accounts.A.users.allowed_connection_types",
            "accounts.A.exports.latency",
            "authorization.users.proxy_required",
        ]
    );
}

#[test]
fn no_auth_user_must_name_a_user_at_start() {
    let options = load("no_auth_user: ghost\nauthorization { users: [ {user: a, password: x} ] }")
        .expect("-t accepts it, as the reference does");
    let error = check_no_auth_user(&options).expect_err("but starting refuses it");
    assert_eq!(
        error,
        "no_auth_user: \"ghost\" not present as user or nkey in authorization block or account configuration"
    );
    let options =
        load("no_auth_user: a\naccounts { A: { users: [ {user: a, password: x} ] } }").unwrap();
    assert!(check_no_auth_user(&options).is_ok());
    let options = load(&format!(
        "no_auth_user: {NKEY}\nauthorization {{ users: [ {{nkey: {NKEY}}} ] }}"
    ))
    .unwrap();
    assert!(check_no_auth_user(&options).is_ok());
}

/// (file, the reference's message). Positions differ in form (the reference
/// counts columns from 0 and often points at the enclosing block), so only
/// the message is compared.
const ERRORS: &[(&str, &str)] = &[
    // Users.
    (
        "authorization { users: [ {user: a, password: x}, {user: a, password: y} ] }",
        "Duplicate user \"a\" detected",
    ),
    (
        "authorization { users: [ {user: a, password: x} ] }\naccounts { A: { users: [ {user: a} ] } }",
        "Duplicate user \"a\" detected",
    ),
    (
        "accounts { A: { users: [ {user: a} ] }, B: { users: [ {user: a} ] } }",
        "Duplicate user \"a\" detected",
    ),
    (
        "authorization { users: [ {nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4}, {nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4} ] }",
        "Duplicate nkey \"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\" detected",
    ),
    ("authorization { users: [ {password: b} ] }", "User entry requires a user"),
    ("authorization { users: [ {nkey: NOTAKEY, user: a} ] }", "Not a valid public nkey for a user"),
    (
        "authorization { users: [ {nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4, user: a} ] }",
        "Nkey users do not take usernames or passwords",
    ),
    ("authorization { users: { user: a } }", "Expected users field to be an array"),
    ("authorization { users: [ a ] }", "Expected user entry to be a map/struct, got a"),
    ("authorization { users: [ {user: a, account: X} ] }", "unknown field \"account\""),
    (
        "authorization { user: x, password: y, users: [ {user: a, password: b} ] }",
        "Can not have a single user/pass and a users array",
    ),
    ("authorization { token: t, users: [] }", "Can not have a token and a users array"),
    (
        "authorization { user: x, password: y }\naccounts { A: { users: [ {user: a} ] } }",
        "Can not have a single user/pass and accounts",
    ),
    (
        "accounts { A: { users: [ {user: a} ] } }\nauthorization { user: x, password: y }",
        "Can not have a single user/pass and a users array",
    ),
    (
        "authorization { token: t }\naccounts { A: { users: [ {user: a} ] } }",
        "Can not have a token and accounts",
    ),
    // Permissions.
    (
        "authorization { users: [ {user: a, permissions: x} ] }",
        "Expected permissions to be a map/struct, got x",
    ),
    (
        "authorization { users: [ {user: a, permissions: { foo: x }} ] }",
        "Unknown field \"foo\" parsing permissions",
    ),
    (
        "authorization { users: [ {user: a, permissions: { allow_resp: true }} ] }",
        "Unknown field \"allow_resp\" parsing permissions",
    ),
    (
        "authorization { users: [ {user: a, permissions: { publish: 1 }} ] }",
        "Expected subject permissions to be a subject, or array of subjects, got int64",
    ),
    (
        "authorization { users: [ {user: a, permissions: { publish: [x, 1] }} ] }",
        "Subject in permissions array cannot be cast to string",
    ),
    (
        "authorization { users: [ {user: a, permissions: { publish: { allow: x, nope: y } }} ] }",
        "Unknown field name \"nope\" parsing subject permissions, only 'allow' or 'deny' are permitted",
    ),
    (
        "authorization { users: [ {user: a, permissions: { publish: \"a..b\" }} ] }",
        "subject \"a..b\" is not a valid subject",
    ),
    (
        "authorization { users: [ {user: a, permissions: { publish: \"foo q\" }} ] }",
        "subject \"foo q\" is not a valid subject",
    ),
    (
        "authorization { users: [ {user: a, permissions: { subscribe: \"foo..bar q\" }} ] }",
        "subject \"foo..bar\" is not a valid subject",
    ),
    (
        "authorization { users: [ {user: a, permissions: { subscribe: \"foo q..r\" }} ] }",
        "queue \"q..r\" is not a valid queue",
    ),
    (
        "authorization { users: [ {user: a, permissions: { subscribe: \"foo q r\" }} ] }",
        "subject \"foo q r\" is not a valid subject",
    ),
    (
        "authorization { default_permissions: { publish: \"a..b\" } }",
        "subject \"a..b\" is not a valid subject",
    ),
    (
        "authorization { users: [ {user: a, permissions: { allow_responses: 3 }} ] }",
        "error parsing response permissions, expected a boolean or a map",
    ),
    (
        "authorization { users: [ {user: a, permissions: { allow_responses: { expires: 5 } }} ] }",
        "error parsing expires, not a duration string",
    ),
    (
        "authorization { users: [ {user: a, permissions: { allow_responses: { expires: \"5x\" } }} ] }",
        "error parsing expires: time: unknown unit \"x\" in duration \"5x\"",
    ),
    (
        "authorization { users: [ {user: a, permissions: { allow_responses: { foo: 1 } }} ] }",
        "Unknown field \"foo\" parsing permissions",
    ),
    // Accounts.
    ("accounts { $G: {} }", "\"$G\" is a Reserved Account"),
    ("accounts: [A, \"$G\"]", "\"$G\" is a Reserved Account"),
    ("accounts: [A, A]", "Duplicate Account Entry: A"),
    ("accounts { A: 1 }", "Expected map entries for accounts"),
    ("accounts { A: x }", "Expected map entries for accounts"),
    ("accounts { A: { foo: 1 } }", "unknown field \"foo\""),
    ("accounts { A: { nkey: x } }", "Not a valid public nkey for an account: \"x\""),
    // Exports.
    (
        "accounts { A: { exports: { stream: x } } }",
        "Exports should be an array, got map[string]interface {}",
    ),
    (
        "accounts { A: { exports: [ x ] } }",
        "Export Items should be a map with type entry, got string",
    ),
    (
        "accounts { A: { exports: [ { stream: x, service: y } ] } }",
        "Detected service \"y\" but already saw a stream",
    ),
    (
        "accounts { A: { exports: [ { service: y, stream: x } ] } }",
        "Detected stream \"x\" but already saw a service",
    ),
    ("accounts { A: { exports: [ { stream: 1 } ] } }", "Expected stream name to be string, got int64"),
    (
        "accounts { A: { exports: [ { stream: x, accounts: [Z] } ] } }",
        "\"Z\" account not defined for stream export",
    ),
    (
        "accounts { A: { exports: [ { service: x, accounts: [Z] } ] } }",
        "\"Z\" account not defined for service export",
    ),
    (
        "accounts { A: { exports: [ { stream: x, response: stream } ] } }",
        "Detected response directive on non-service",
    ),
    (
        "accounts { A: { exports: [ { stream: x, threshold: \"5s\" } ] } }",
        "Detected response directive on non-service",
    ),
    (
        "accounts { A: { exports: [ { service: x, response: foo } ] } }",
        "Unknown response type: \"foo\"",
    ),
    (
        "accounts { A: { exports: [ { service: x, response: 1 } ] } }",
        "Expected response type to be string, got int64",
    ),
    (
        "accounts { A: { exports: [ { service: x, response: single, response_type: stream } ] } }",
        "Duplicate response type definition",
    ),
    (
        "accounts { A: { exports: [ { service: x, threshold: 5 } ] } }",
        "Expected response threshold to be a parseable time duration, got int64",
    ),
    (
        "accounts { A: { exports: [ { service: x, threshold: \"5x\" } ] } }",
        "Expected response threshold to be a parseable time duration, got \"5x\"",
    ),
    (
        "accounts { A: { exports: [ { service: x, threshold: \"5s\", response_time: \"1s\" } ] } }",
        "Duplicate response threshold detected",
    ),
    ("accounts { A: { exports: [ { stream: x, foo: 1 } ] } }", "unknown field \"foo\""),
    (
        "accounts { A: { exports: [ { stream: x, latency: lat } ] } }",
        "Detected latency directive on non-service",
    ),
    (
        "accounts { A: { exports: [ { stream: x, allow_trace: true } ] } }",
        "Detected allow_trace directive on non-service",
    ),
    (
        "accounts { A: { exports: [ {service: x} ] }, B: { imports: [ { service: { account: A, subject: x }, allow_trace: true } ] } }",
        "Detected allow_trace directive on a non-stream",
    ),
    // Imports.
    (
        "accounts { B: { imports: [ { stream: { account: Z, subject: x } } ] } }",
        "\"Z\" account not defined for stream import",
    ),
    (
        "accounts { B: { imports: [ { service: { account: Z, subject: x } } ] } }",
        "\"Z\" account not defined for service import",
    ),
    (
        "accounts { B: { imports: [ { stream: { account: \"$G\", subject: x } } ] } }",
        "\"$G\" account not defined for stream import",
    ),
    (
        "accounts { B: { imports: [ x ] } }",
        "Import Items should be a map with type entry, got string",
    ),
    (
        "accounts { B: { imports: { stream: x } } }",
        "Imports should be an array, got map[string]interface {}",
    ),
    (
        "accounts { A: {}, B: { imports: [ { stream: x } ] } }",
        "Stream entry should be an account map, got string",
    ),
    (
        "accounts { A: {}, B: { imports: [ { stream: { account: A } } ] } }",
        "Expect an account name and a subject",
    ),
    (
        "accounts { A: {}, B: { imports: [ { stream: { account: A, subject: x, foo: 1 } } ] } }",
        "unknown field \"foo\"",
    ),
    (
        "accounts { A: {}, B: { imports: [ { stream: { account: A, subject: x }, service: { account: A, subject: y } } ] } }",
        "Detected service but already saw a stream",
    ),
    (
        "accounts { A: { exports: [ { stream: x } ] }, B: { imports: [ { stream: { account: A, subject: x }, prefix: p, to: y } ] } }",
        "Stream import can not have a 'prefix' and a 'to' property",
    ),
    (
        "accounts { A: {}, B: { imports: [ { stream: { account: A, subject: x } } ] } }",
        "Error adding stream import \"x\": stream import not authorized",
    ),
    (
        "accounts { A: { exports: [ { stream: x, accounts: [C] } ] }, B: { imports: [ { stream: { account: A, subject: x } } ] }, C: {} }",
        "Error adding stream import \"x\": stream import not authorized",
    ),
    (
        "accounts { A: { exports: [ { stream: \">\" } ] }, B: { imports: [ { stream: { account: A, subject: \"a..b\" } } ] } }",
        "Error adding stream import \"a..b\": stream import not authorized",
    ),
    (
        "accounts { A: { exports: [ { service: \"x.*\" } ] }, B: { imports: [ { service: { account: A, subject: \"x.>\" } } ] } }",
        "Error adding service import \"x.>\": service import not authorized",
    ),
    (
        "accounts { A: { exports: [ { service: \">\" } ] }, B: { imports: [ { service: { account: A, subject: \"a..b\" } } ] } }",
        "Error adding service import \"a..b\": sublist: invalid subject",
    ),
    (
        "accounts { A: { exports: [ { stream: \">\" } ] }, B: { imports: [ { stream: { account: A, subject: x }, prefix: \"p.*\" } ] } }",
        "Error adding stream import \"x\": stream import prefix can not contain wildcard tokens",
    ),
    (
        "accounts { A: { exports: [ { stream: \">\" } ] }, B: { imports: [ { stream: { account: A, subject: x } }, { stream: { account: A, subject: x }, prefix: p } ] } }",
        "Error adding stream import \"x\": stream import already exists",
    ),
    (
        "accounts { A: { exports: [ { stream: \">\" } ] }, B: { imports: [ { stream: { account: A, subject: \"x.*\" }, to: \"y.$2\" } ] } }",
        "Error adding stream import \"x.*\": failed to create mapping transform for stream import subject from \"x.*\" to \"y.$2\": invalid mapping destination: wildcard index out of range in $2",
    ),
    (
        "accounts { A: { exports: [ { service: x } ], imports: [ { service: { account: B, subject: x } } ] }, B: { exports: [ { service: x } ], imports: [ { service: { account: A, subject: x } } ] } }",
        "Error adding service import \"x\": import forms a cycle",
    ),
    (
        "accounts { A: { exports: [ { service: x }, { service: y } ] }, B: { imports: [ { service: { account: A, subject: x }, to: z }, { service: { account: A, subject: y }, to: z } ] } }",
        "Duplicate service import subject \"z\", previously used in import for account \"A\", subject \"x\"",
    ),
    // Mappings.
    ("mappings { \"a..b\": c }", "Subject \"a..b\" is not a valid subject"),
    (
        "mappings { a: \"b..c\" }",
        "Error adding mapping for \"a\" to \"b..c\" : invalid mapping destination: invalid transform",
    ),
    (
        "mappings { \"a.*\": \"b.$2\" }",
        "Error adding mapping for \"a.*\" to \"b.$2\" : invalid mapping destination: wildcard index out of range in $2",
    ),
    ("mappings { a: \"b.>\" }", "Error adding mapping for \"a\" to \"b.>\" : invalid subject"),
    ("mappings { \"a.*\": \"b.*\" }", "Error adding mapping for \"a.*\" to \"b.*\" : invalid subject"),
    (
        "mappings { \"a.*\": \"b.{{foo(1)}}\" }",
        "Error adding mapping for \"a.*\" to \"b.{{foo(1)}}\" : invalid mapping destination: unknown function in {{foo(1)}}",
    ),
    (
        "mappings { a: [ {destination: b, weight: 80}, {destination: c, weight: 30} ] }",
        "Error adding mapping for \"a\" : total weight needs to be <= 100",
    ),
    (
        "mappings { a: [ {destination: b, weight: 10}, {destination: b, weight: 20} ] }",
        "Error adding mapping for \"a\" : duplicate entry for \"b\"",
    ),
    ("mappings { a: [ {destination: b} ] }", "Missing weight for mapping destination \"b\""),
    ("mappings { a: {destination: b} }", "Missing weight for mapping destination \"b\""),
    ("mappings { a: [ {destination: b, weight: 101} ] }", "Invalid weight 101 for mapping destination"),
    ("mappings { a: [ {destination: b, weight: -1} ] }", "Invalid weight -1 for mapping destination"),
    ("mappings { a: [ {destination: b, weight: \"x%\"} ] }", "Invalid weight \"x\" for mapping destination"),
    ("mappings { a: [ {destination: b, weight: 1.5} ] }", "Unknown entry type for weight of 1.5"),
    (
        "mappings { a: [ {destination: b, weight: 10, foo: 1} ] }",
        "Unknown field \"foo\" for mapping destination",
    ),
    ("mappings { a: [ x ] }", "Expected an entry for the mapping destination"),
    ("mappings { a: 1 }", "Expected an entry for the mapping destination"),
    (
        "accounts { A: { mappings: { a: [ {destination: b, weight: 60}, {destination: c, weight: 60} ] } } }",
        "Error adding mapping for \"a\" : total weight needs to be <= 100",
    ),
    // System account.
    ("system_account: 1", "system account name must be a string"),
    ("no_system_account: \"yes\"", "expected a boolean for no_system_account"),
];

#[test]
fn errors_carry_the_reference_texts() {
    for (text, expected) in ERRORS {
        let error = load(text).expect_err(text);
        assert!(
            error.contains(expected),
            "{text}\n  expected: {expected}\n  got: {error}"
        );
    }
}

#[test]
fn errors_point_into_the_file() {
    let error =
        load("authorization {\n  users: [ {user: a, permissions: { publish: \"a..b\" }} ]\n}")
            .unwrap_err();
    assert!(error.starts_with("test.conf:2:"), "{error}");
    let error = load("accounts {\n  A: { exports: [ { stream: x, service: y } ] }\n}").unwrap_err();
    assert!(error.starts_with("test.conf:2:"), "{error}");
}

/// Files the reference calls valid although they look odd.
#[test]
fn files_the_reference_accepts() {
    for text in [
        "accounts { A: { exports: [ { stream: \"a..b\" } ] } }",
        "accounts { A: { exports: [ { stream: x, accounts: [] } ] }, B: { imports: [ { stream: { account: A, subject: x } } ] } }",
        "accounts { A: { exports: [ { service: x } ] }, B: { imports: [ { service: { account: A, subject: x }, share: false } ] } }",
        "accounts { A: { exports: [ { stream: x } ], imports: [ { stream: { account: A, subject: x } } ] } }",
        "accounts { A: { exports: [ { service: \"x.>\" } ] }, B: { imports: [ { service: { account: A, subject: \"x.*\" } } ] } }",
        "accounts { A: { exports: [ { service: \"x.*\" } ] }, B: { imports: [ { service: { account: A, subject: \"x.*\" }, to: \"y.*\" } ] } }",
        "accounts { A: { default_permissions: { publish: x } } }",
        "accounts { A: {}, A: {} }",
        "accounts { A: {} }\naccounts { B: {} }",
        "mappings { \"a.*.*\": \"b.$1\" }",
        "mappings { a: [ {destination: b, weight: 0} ] }",
        "authorization { users: [ {user: a} ] }",
        "authorization { users: [] }",
        "authorization { users: [ {user: a, permissions: { publish: [] }} ] }",
        "authorization { permissions: { publish: x }, user: a, password: b }",
        "system_account: SYS",
        "no_auth_user: ghost",
    ] {
        if let Err(error) = load(text) {
            panic!("{text}\n  refused: {error}");
        }
    }
}
