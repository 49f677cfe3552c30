//! Users, permissions and accounts inside the server machine: the exact
//! bytes each client sees.

use super::*;
use crate::auth::{
    AccountConfig, Export, Import, ImportKind, MappingDestination, Permissions, SubjectMapping,
    SubjectPermission, User,
};

fn user(name: &str, account: &str, permissions: Option<Permissions>) -> User {
    User {
        username: name.into(),
        password: "pw".into(),
        permissions,
        account: account.into(),
    }
}

fn login(h: &mut Harness, conn: u64, name: &str) -> ConnId {
    h.connect(conn, &format!(r#"{{"user":"{name}","pass":"pw"}}"#))
}

fn allow(subjects: &[&str]) -> Option<SubjectPermission> {
    Some(SubjectPermission {
        allow: Some(subjects.iter().map(|s| s.to_string()).collect()),
        deny: Vec::new(),
    })
}

fn two_accounts() -> ServerConfig {
    let mut a = AccountConfig::new("A");
    a.exports = vec![Export::stream("feed.>"), Export::service("svc.*")];
    let mut b = AccountConfig::new("B");
    b.imports = vec![
        Import {
            kind: ImportKind::Stream,
            account: "A".into(),
            subject: "feed.>".into(),
            to: Some("a.feed.>".into()),
            share: false,
        },
        Import {
            kind: ImportKind::Service,
            account: "A".into(),
            subject: "svc.time".into(),
            to: Some("time".into()),
            share: false,
        },
    ];
    ServerConfig {
        auth: AuthConfig {
            users: vec![
                user("a", "A", None),
                user("b", "B", None),
                user("b2", "B", None),
            ],
            ..AuthConfig::default()
        },
        accounts: vec![a, b],
        ..ServerConfig::default()
    }
}

/// The reply subject of the one message in `output`, which starts with
/// `line_start` (the MSG line up to its reply).
fn reply_in(output: &str, line_start: &str) -> String {
    output
        .strip_prefix(line_start)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("expected {line_start:?}..., got {output:?}"))
        .to_string()
}

#[test]
fn accounts_isolate_subjects() {
    let mut h = Harness::new(two_accounts());
    let a = login(&mut h, 1, "a");
    let b = login(&mut h, 2, "b");
    let b2 = login(&mut h, 3, "b2");
    h.send(a, "SUB x 1\r\n");
    h.send(b2, "SUB x 1\r\n");
    h.send(b, "PUB x 2\r\nhi\r\n");
    assert_eq!(h.take(a), "", "A never sees B's subjects");
    assert_eq!(h.take(b2), "MSG x 1 2\r\nhi\r\n");
    assert_eq!(h.server.account_of(a), Some("A"));
    assert_eq!(h.server.account_of(b), Some("B"));
}

#[test]
fn stream_import_delivers_under_the_local_subject() {
    let mut h = Harness::new(two_accounts());
    let a = login(&mut h, 1, "a");
    let b = login(&mut h, 2, "b");
    h.send(b, "SUB a.feed.> 9\r\n");
    h.send(a, "PUB feed.news 4\r\nnews\r\n");
    assert_eq!(h.take(b), "MSG a.feed.news 9 4\r\nnews\r\n");
    // Not the other way round.
    h.send(a, "SUB a.feed.> 1\r\n");
    h.send(b, "PUB a.feed.x 1\r\nz\r\n");
    assert_eq!(h.take(a), "");
}

#[test]
fn service_import_routes_the_request_and_its_one_response() {
    let mut h = Harness::new(two_accounts());
    let a = login(&mut h, 1, "a");
    let b = login(&mut h, 2, "b");
    h.send(a, "SUB svc.* 1\r\n");
    h.send(b, "SUB _INBOX.r 5\r\nPUB time _INBOX.r 3\r\nnow\r\n");
    let reply = reply_in(&h.take(a), "MSG svc.time 1 ");
    assert!(reply.starts_with("_R_."), "reply mapped: {reply}");
    h.send(
        a,
        &format!("PUB {reply} 2\r\n12\r\nPUB {reply} 2\r\n13\r\n"),
    );
    assert_eq!(
        h.take(b),
        "MSG _INBOX.r 5 2\r\n12\r\n",
        "one response (singleton), under the requester's own reply subject"
    );
    assert!(h.server.accounts().responses.is_empty());
}

#[test]
fn a_responses_own_reply_crosses_back_to_the_responder() {
    let mut h = Harness::new(two_accounts());
    let a = login(&mut h, 1, "a");
    let b = login(&mut h, 2, "b");
    h.send(a, "SUB svc.* 1\r\nSUB ack.me 2\r\n");
    h.send(b, "SUB _INBOX.r 5\r\nPUB time _INBOX.r 1\r\nq\r\n");
    let reply = reply_in(&h.take(a), "MSG svc.time 1 ");
    // The responder asks for an answer to its answer (as a consumer's
    // delivery asks for an ack): the requester gets a `_R_.` subject that
    // leads back to it.
    h.send(a, &format!("PUB {reply} ack.me 1\r\nx\r\n"));
    let back = reply_in(&h.take(b), "MSG _INBOX.r 5 ");
    assert!(back.starts_with("_R_."), "reply mapped back: {back}");
    h.send(b, &format!("PUB {back} 2\r\nok\r\n"));
    assert_eq!(h.take(a), "MSG ack.me 2 2\r\nok\r\n");
    assert!(
        h.server.accounts().responses.is_empty(),
        "both singletons used"
    );
}

#[test]
fn service_import_without_a_responder_frees_the_route_and_answers_503() {
    let mut h = Harness::new(two_accounts());
    let b = h.connect(
        2,
        r#"{"user":"b","pass":"pw","headers":true,"no_responders":true}"#,
    );
    h.send(b, "SUB _INBOX.r 5\r\nPUB time _INBOX.r 0\r\n\r\n");
    assert!(h.take(b).starts_with("HMSG _INBOX.r 5 "));
    assert!(h.server.accounts().responses.is_empty());
}

#[test]
fn publish_and_subscribe_permissions() {
    let permissions = Permissions {
        publish: allow(&["ok.>"]),
        subscribe: Some(SubjectPermission {
            allow: Some(vec!["ok.*".into(), "jobs.> workers".into()]),
            deny: vec!["ok.secret".into()],
        }),
        response: None,
    };
    let config = ServerConfig {
        auth: AuthConfig {
            users: vec![user("u", "$G", Some(permissions)), user("root", "$G", None)],
            ..AuthConfig::default()
        },
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let u = login(&mut h, 1, "u");
    let root = login(&mut h, 2, "root");
    h.send(u, "PUB nope 0\r\n\r\nSUB nope 1\r\nSUB jobs.a other 2\r\nSUB jobs.a workers 3\r\nSUB ok.* 4\r\n");
    assert_eq!(
        h.take(u),
        "-ERR 'Permissions Violation for Publish to \"nope\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"nope\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"jobs.a\" using queue \"other\"'\r\n"
    );
    h.send(
        root,
        "PUB ok.secret 1\r\ns\r\nPUB ok.fine 1\r\nf\r\nPUB jobs.a 1\r\nj\r\n",
    );
    assert_eq!(
        h.take(u),
        "MSG ok.fine 4 1\r\nf\r\nMSG jobs.a 3 1\r\nj\r\n",
        "the deny list filters the wildcard subscription's deliveries"
    );
    assert!(
        h.actions()
            .iter()
            .all(|a| !matches!(a, Action::Close { .. })),
        "violations keep the connection"
    );
    let logs: Vec<String> = h.server.take_logs().map(|r| r.text).collect();
    assert!(
        logs.contains(&String::from("Publish Violation - Subject \"nope\"")),
        "{logs:?}"
    );
    // PUB splits on blanks only, so a subject may hold a `\r`: the error
    // quotes it as Go's %q does (the fuzzer found it raw on the wire).
    h.send(u, "PUB f\0\ro.x 1\r\nx\r\n");
    assert_eq!(
        h.take(u),
        "-ERR 'Permissions Violation for Publish to \"f\\x00\\ro.x\"'\r\n"
    );
}

#[test]
fn allow_responses_lets_a_subscriber_answer_once() {
    let responder = Permissions {
        publish: None,
        subscribe: None,
        response: Some(Default::default()),
    }
    .normalized();
    let config = ServerConfig {
        auth: AuthConfig {
            users: vec![
                user("svc", "$G", Some(responder)),
                user("client", "$G", None),
            ],
            ..AuthConfig::default()
        },
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config);
    let svc = login(&mut h, 1, "svc");
    let client = login(&mut h, 2, "client");
    h.send(svc, "SUB req 1\r\n");
    h.send(client, "SUB inbox 1\r\nPUB req inbox 1\r\n?\r\n");
    assert_eq!(h.take(svc), "MSG req 1 inbox 1\r\n?\r\n");
    h.send(svc, "PUB inbox 1\r\n!\r\nPUB inbox 1\r\n!\r\n");
    assert_eq!(h.take(client), "MSG inbox 1 1\r\n!\r\n");
    assert_eq!(
        h.take(svc),
        "-ERR 'Permissions Violation for Publish to \"inbox\"'\r\n",
        "the second answer is over max_msgs"
    );
}

#[test]
fn mappings_rewrite_published_subjects() {
    let mut global = AccountConfig::new("$G");
    global.mappings = vec![
        SubjectMapping {
            source: "orders.*.*".into(),
            destinations: vec![MappingDestination {
                subject: "o.$2.$1".into(),
                weight: 100,
            }],
        },
        SubjectMapping {
            source: "split".into(),
            destinations: vec![
                MappingDestination {
                    subject: "left".into(),
                    weight: 50,
                },
                MappingDestination {
                    subject: "right".into(),
                    weight: 50,
                },
            ],
        },
    ];
    let mut h = Harness::new(ServerConfig {
        accounts: vec![global],
        ..ServerConfig::default()
    });
    let c = h.connect(1, "{}");
    h.send(
        c,
        "SUB o.> 1\r\nSUB left 2\r\nSUB right 3\r\nPUB orders.eu.42 0\r\n\r\n",
    );
    assert_eq!(h.take(c), "MSG o.42.eu 1 0\r\n\r\n");
    for _ in 0..40 {
        h.send(c, "PUB split 0\r\n\r\n");
    }
    let out = h.take(c);
    let left = out.matches("MSG left").count();
    let right = out.matches("MSG right").count();
    assert_eq!(left + right, 40);
    assert!(left > 5 && right > 5, "both sides drawn: {left}/{right}");
}

#[test]
fn reload_moves_users_and_closes_removed_ones() {
    let mut h = Harness::new(two_accounts());
    let a = login(&mut h, 1, "a");
    let b = login(&mut h, 2, "b");
    h.send(b, "SUB x 1\r\n");
    let mut config = two_accounts();
    // b moves to A, a is removed.
    config.auth.users = vec![user("b", "A", None)];
    h.server.reload(config);
    assert_eq!(h.take(a), "-ERR 'Authorization Violation'\r\n");
    assert_eq!(h.server.account_of(b), Some("A"));
    let a2 = h.connect(3, r#"{"user":"b","pass":"pw"}"#);
    h.send(a2, "PUB x 1\r\n!\r\n");
    assert_eq!(
        h.take(b),
        "MSG x 1 1\r\n!\r\n",
        "b's subscription moved with it"
    );
    assert_eq!(h.server.num_subscriptions(), 1);
}

#[test]
fn nkey_users_get_a_nonce() {
    let config = ServerConfig {
        auth: AuthConfig {
            nkeys: vec![crate::auth::NkeyUser {
                nkey: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4".into(),
                permissions: None,
                account: "$G".into(),
            }],
            ..AuthConfig::default()
        },
        ..ServerConfig::default()
    };
    let mut server = Server::new(config, 1);
    server.handle_accept(
        t(0),
        ConnId(1),
        peer(1),
        crate::runtime::ListenerKind::Client,
    );
    let info = String::from_utf8(server.take_outbound(ConnId(1)).unwrap().to_vec()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(info.trim_start_matches("INFO ").trim_end()).unwrap();
    assert_eq!(json["nonce"].as_str().map(str::len), Some(15));
    assert_eq!(json["auth_required"], true);
}

#[test]
fn reload_removes_subscriptions_the_new_permissions_refuse() {
    let config = |subjects: &[&str]| ServerConfig {
        auth: AuthConfig {
            users: vec![user(
                "u",
                "$G",
                Some(Permissions {
                    subscribe: allow(subjects),
                    ..Permissions::default()
                }),
            )],
            ..AuthConfig::default()
        },
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config(&["a", "b"]));
    let u = login(&mut h, 1, "u");
    h.send(u, "SUB a 1\r\nSUB b q 2\r\n");
    assert_eq!(h.take(u), "");
    h.server.reload(config(&["a"]));
    assert_eq!(
        h.take(u),
        "-ERR 'Permissions Violation for Subscription to \"b\" using queue \"q\" (sid \"2\")'\r\n"
    );
    assert_eq!(h.server.num_subscriptions(), 1);
    let logs: Vec<String> = h.server.take_logs().map(|r| r.text).collect();
    assert!(
        logs.contains(&String::from(
            "Removed sub \"b\" using queue \"q\" (sid \"2\") for User \"u\" - not authorized"
        )),
        "{logs:?}"
    );
}

fn bcrypt_users() -> ServerConfig {
    let hash = bcrypt::hash_with_salt("s3cret", 4, [7u8; 16])
        .expect("bcrypt")
        .to_string();
    let mut bob = user("bob", "$G", None);
    bob.password = hash;
    ServerConfig {
        auth: AuthConfig {
            users: vec![bob, user("carol", "$G", None)],
            ..AuthConfig::default()
        },
        ..ServerConfig::default()
    }
}

#[test]
fn a_bcrypt_login_waits_for_its_check_off_the_lock_then_goes_on() {
    let mut h = Harness::new(bcrypt_users());
    let bob = h.accept(1);
    let other = login(&mut h, 2, "carol");
    let _ = h.actions();
    h.send(
        bob,
        "CONNECT {\"user\":\"bob\",\"pass\":\"s3cret\",\"verbose\":false,\"pedantic\":false}\r\nSUB foo 1\r\nPI",
    );
    // The server asks for the check and parses nothing more meanwhile.
    assert_eq!(h.actions(), vec![Action::CheckPassword(bob)]);
    assert_eq!(h.take(bob), "");
    h.send(bob, "NG\r\n");
    assert_eq!(h.take(bob), "", "still parked");
    // Other clients are served in the meantime.
    h.send(other, "PING\r\n");
    assert_eq!(h.take(other), "PONG\r\n");
    let check = h.server.take_password_check(bob).expect("pending");
    assert!(check.run());
    h.server.handle_password_checked(h.now, bob, true);
    // Logged in: the SUB and the PING it sent while waiting now run.
    assert_eq!(h.take(bob), "PONG\r\n");
    assert_eq!(h.server.num_subscriptions(), 1);
    assert_eq!(h.server.authenticator.bcrypt_verifications(), 1);
    assert!(h.server.take_password_check(bob).is_none());
    // The next login with the same password is answered from the cache.
    let again = h.accept(3);
    h.send(
        again,
        "CONNECT {\"user\":\"bob\",\"pass\":\"s3cret\",\"verbose\":false,\"pedantic\":false}\r\nPING\r\n",
    );
    assert_eq!(h.take(again), "PONG\r\n");
}

#[test]
fn a_failed_bcrypt_check_is_an_authorization_violation() {
    let mut h = Harness::new(bcrypt_users());
    let bob = h.accept(1);
    h.send(
        bob,
        "CONNECT {\"user\":\"bob\",\"pass\":\"wrong\",\"verbose\":false,\"pedantic\":false}\r\nPING\r\n",
    );
    let check = h.server.take_password_check(bob).expect("pending");
    assert!(!check.run());
    h.server.handle_password_checked(h.now, bob, false);
    assert_eq!(h.take(bob), "-ERR 'Authorization Violation'\r\n");
    assert_eq!(
        h.server.close_reason(bob),
        Some(CloseReason::AuthenticationViolation)
    );
    // A late report for a login no longer pending changes nothing.
    h.server.handle_password_checked(h.now, bob, true);
    assert_eq!(h.take(bob), "");
}

#[test]
fn a_client_that_floods_while_its_login_is_pending_is_closed() {
    let mut h = Harness::new(ServerConfig {
        max_payload: 1024,
        max_control_line: 1024,
        ..bcrypt_users()
    });
    let bob = h.accept(1);
    h.send(
        bob,
        "CONNECT {\"user\":\"bob\",\"pass\":\"s3cret\",\"verbose\":false,\"pedantic\":false}\r\n",
    );
    let flood = "PUB foo 10\r\n0123456789\r\n".repeat(400);
    h.send(bob, &flood);
    assert_eq!(
        h.server.close_reason(bob),
        Some(CloseReason::ProtocolViolation)
    );
    assert!(h.server.take_password_check(bob).is_none());
}
