use serde_json::json;

use super::*;

const ACCOUNT: &str = "ADDH2PSVBQPXZVQRWS7QY2ISK6GS4JHVEHBMQVXCJMKOLTOO6YJB3MH2";

fn account(nats: serde_json::Value) -> Validation {
    let claims = ClaimsData {
        subject: ACCOUNT.into(),
        ..ClaimsData::default()
    };
    let nats: AccountNats = serde_json::from_value(nats).unwrap();
    check_account(&claims, &nats, None)
}

fn errors(found: &Validation) -> Vec<&str> {
    found
        .issues
        .iter()
        .filter(|issue| issue.severity == Severity::Error)
        .map(|issue| issue.description.as_str())
        .collect()
}

fn unlimited() -> serde_json::Value {
    json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
           "wildcards": true, "conn": -1, "leaf": -1})
}

#[test]
fn a_plain_account_has_no_issues() {
    let found = account(json!({
        "limits": unlimited(),
        "imports": [{"subject": "x.>", "account": ACCOUNT, "type": "service",
                     "local_subject": "y.>"}],
        "exports": [{"subject": "e.*", "type": "service", "response_type": "Stream",
                     "account_token_position": 2}],
        "mappings": {"m": [{"subject": "n", "weight": 40}, {"subject": "o", "weight": 60}]},
        "info_url": "https://example.com/account",
    }));
    assert!(found.issues.is_empty(), "{found:?}");
    assert!(!found.is_blocking(true));
}

#[test]
fn imports_are_checked_one_by_one_and_for_overlaps() {
    let found = account(json!({
        "limits": unlimited(),
        "imports": [
            {"subject": "svc.>", "account": ACCOUNT, "type": "service"},
            {"subject": "svc.a", "account": ACCOUNT, "type": "service", "to": "old"},
            {"subject": "a..b", "account": "", "share": true},
            null,
        ],
    }));
    assert_eq!(
        errors(&found),
        [
            "invalid import type: \"unknown\"",
            "account to import from is not specified",
            "subject \"a..b\" cannot contain consecutive `.`",
            "sharing information (for latency tracking) is only valid for services: \"a..b\"",
            "null import is not allowed",
        ]
    );
    // `to` is local: `old` does not overlap `svc.>`, but is deprecated.
    assert!(found
        .issues
        .iter()
        .any(|issue| issue.severity == Severity::Warning
            && issue.description == "the field to has been deprecated (use LocalSubject instead)"));
    let found = account(json!({
        "limits": unlimited(),
        "imports": [
            {"subject": "svc.>", "account": ACCOUNT, "type": "service"},
            {"subject": "svc.a", "account": ACCOUNT, "type": "service"},
            {"subject": "svc.a", "account": ACCOUNT, "type": "service"},
        ],
    }));
    let overlap = format!(
        "overlapping subject namespace for \"svc.a\" and \"svc.>\" in same account \"{ACCOUNT}\""
    );
    assert_eq!(errors(&found)[0], overlap);
    assert!(errors(&found).contains(
        &format!("overlapping subject namespace for \"svc.a\" in account \"{ACCOUNT}\"").as_str()
    ));
}

#[test]
fn a_local_subject_must_use_the_wildcards_it_renames() {
    let found = account(json!({
        "limits": unlimited(),
        "imports": [{"subject": "d.*", "account": ACCOUNT, "type": "stream",
                     "local_subject": "e.$2"}],
    }));
    assert_eq!(
        errors(&found),
        [
            "Reference $2 in \"e.$2\" reference * in \"d.*\" that do not exist",
            "subject does not contain enough * or reference wildcards $[0-9]",
        ]
    );
}

#[test]
fn exports_are_checked_and_may_not_hold_each_other() {
    let found = account(json!({
        "limits": unlimited(),
        "exports": [
            {"subject": "foo.*", "type": "service"},
            {"subject": "foo.bar", "type": "service", "response_type": "Bogus"},
            {"subject": "s.x", "type": "stream", "response_type": "Stream",
             "response_threshold": 5, "account_token_position": 1},
            {"subject": "t.*.u", "type": "stream", "account_token_position": 3},
            {"subject": "v.*", "type": "stream", "account_token_position": 4},
        ],
    }));
    assert_eq!(
        errors(&found),
        [
            "invalid response type for service: \"Bogus\"",
            "invalid response type for stream: \"Stream\"",
            "response threshold only valid for services",
            "Account Token Position can only be used with wildcard subjects: s.x",
            "Account Token Position 3 matches 'u' but must match a * in: t.*.u",
            "Account Token Position 4 exceeds length of subject 'v.*'",
            "service export subject \"foo.*\" already exports \"foo.bar\"",
        ]
    );
}

#[test]
fn limits_permissions_mappings_and_the_rest() {
    let found = account(json!({
        "imports": [{"subject": "i", "account": ACCOUNT, "type": "stream"}],
        "default_permissions": {"pub": {"allow": ["a b"]}, "sub": {"deny": ["x y z"]}},
        "mappings": {"m.>": [{"subject": "n.>", "weight": 60}, {"subject": "o.>", "weight": 60}]},
        "signing_keys": ["NOTAKEY"],
        "info_url": "nope",
        "cluster_traffic": "bogus",
        "trace": {"dest": "t.*", "sampling": 200},
    }));
    // Empty limits allow no import, found once (twice with limits set).
    assert_eq!(
        errors(&found),
        [
            "Permission Subject \"x y z\" contains too many spaces",
            "Permission Subject \"a b\" is not allowed to contain queue",
            "Mapping \"m.>\" exceeds 100% among all of it's weighted to mappings",
            "the account Trace.Destination subject \"t.*\" is not a valid publish subject",
            "the account Trace.Sampling value '200' is not valid, should be in the range [1..100]",
            "the account contains more imports than allowed by the operator",
            "\"NOTAKEY\" is not a valid account signing key",
            "error parsing info url: no hostname or scheme",
            "unknown cluster traffic option: \"bogus\"",
        ]
    );
    assert_eq!(
        found.errors_text(),
        format!("[{}]", errors(&found).join(" "))
    );
}

#[test]
fn a_tier_needs_a_name() {
    let mut limits = unlimited();
    limits["tiered_limits"] = json!({"": {"mem_storage": 1}});
    let found = account(json!({"limits": limits}));
    assert_eq!(
        errors(&found),
        ["Tiered JetStream Limits can not contain a blank \"\" tier name"]
    );
}

#[test]
fn time_checks_block_only_when_counted() {
    let claims = ClaimsData {
        subject: ACCOUNT.into(),
        expires: 100,
        ..ClaimsData::default()
    };
    let found = check_account(&claims, &AccountNats::default(), Some(200));
    assert_eq!(
        found.descriptions().collect::<Vec<_>>(),
        ["claim is expired"]
    );
    assert!(found.is_blocking(true));
    assert!(!found.is_blocking(false));
}

#[test]
fn users_with_bad_networks_times_zones_or_permissions() {
    let user: UserNats = serde_json::from_value(json!({
        "pub": {"allow": ["a b"]},
        "src": ["10.0.0.1", "10.0.0.0/8", "::1/129"],
        "times": [{"start": "8:00:00", "end": "25:00:00"}, {"start": "", "end": "1:2:3"}],
        "times_location": "Nowhere/Special",
        "issuer_account": "nope",
    }))
    .unwrap();
    let found = check_user(&ClaimsData::default(), &user, Some(0));
    assert_eq!(
        errors(&found),
        [
            "Permission Subject \"a b\" is not allowed to contain queue",
            "invalid cidr \"10.0.0.1\" in user src limits",
            "invalid cidr \"::1/129\" in user src limits",
            "end in time range is invalid \"25:00:00\"",
            "time ranges start must contain a start",
            "end in time range is invalid \"1:2:3\"",
            "could not parse iana time zone by name: unknown time zone Nowhere/Special",
            "account_id is not an account public key",
        ]
    );
    let fine: UserNats = serde_json::from_value(json!({
        "sub": {"allow": ["q queue"]}, "src": "127.0.0.0/8, ::1/128",
        "times": [{"start": "08:00:00", "end": "17:30:00"}], "times_location": "Europe/Paris",
    }))
    .unwrap();
    assert!(check_user(&ClaimsData::default(), &fine, Some(0))
        .issues
        .is_empty());
}

#[test]
fn an_unknown_import_or_export_type_does_not_decode() {
    let error = serde_json::from_value::<AccountNats>(json!({
        "exports": [{"subject": "x", "type": "bogus"}],
    }))
    .unwrap_err();
    assert_eq!(error.to_string(), "unknown export type \"bogus\"");
    let fine = serde_json::from_value::<AccountNats>(json!({"imports": null})).unwrap();
    assert!(fine.imports.is_empty());
}
