//! Scoped signing keys: an account's signing key with a user template. A
//! user JWT such a key signs carries no permissions or limits of its own;
//! the user gets the template's, with these placeholders in its subjects
//! filled in from the JWTs (as nats-server fills them):
//!
//! - `{{name()}}`, `{{subject()}}`: the user JWT's name and public key;
//! - `{{account-name()}}`, `{{account-subject()}}`: the account's;
//! - `{{tag(x)}}`, `{{account-tag(x)}}`: every value `v` of a tag `x:v` of
//!   the user (or the account), one subject per combination.
//!
//! Invariants: a subject that does not come out valid is dropped from an
//! allow list but fails the login in a deny list (a deny must never
//! silently shrink); an allow list that templates empty becomes a deny of
//! everything; at most [`MAX_EXPANSIONS`] subjects come out of one list.

use super::jwt::{AccountNats, Jwt, PermissionClaim, UserNats};
use super::AuthFailure;
use crate::subject::is_valid_subject;

/// The reference's bound on the subjects one list expands to.
pub const MAX_EXPANSIONS: usize = 4096;

/// The user's effective claims under the scope (`kind`, `template`).
pub fn apply(
    kind: &str,
    template: &serde_json::Value,
    user: &Jwt<UserNats>,
    account: &Jwt<AccountNats>,
) -> Result<UserNats, AuthFailure> {
    if kind != "user_scope" || !has_no_claims_of_its_own(&user.nats) {
        return Err(AuthFailure::JwtInvalid);
    }
    let mut scoped: UserNats =
        serde_json::from_value(template.clone()).map_err(|_| AuthFailure::JwtInvalid)?;
    let values = Values { user, account };
    for claim in [
        &mut scoped.permissions.subscribe,
        &mut scoped.permissions.publish,
    ] {
        expand_claim(claim, &values).map_err(|_| AuthFailure::JwtInvalid)?;
    }
    scoped.issuer_account = user.nats.issuer_account.clone();
    scoped.tags = user.nats.tags.clone();
    Ok(scoped)
}

/// A scoped user's JWT must leave every permission and limit at its zero
/// value (the reference compares with an empty claim: -1 is not empty).
fn has_no_claims_of_its_own(user: &UserNats) -> bool {
    user.permissions == Default::default()
        && user.src.0.is_empty()
        && user.times.is_empty()
        && user.times_location.is_empty()
        && user.subs == 0
        && user.data == 0
        && user.payload == 0
        && !user.bearer_token
        && user.allowed_connection_types.is_empty()
}

/// Expand one `pub` or `sub` claim in place.
fn expand_claim(claim: &mut PermissionClaim, values: &Values) -> Result<(), String> {
    let allowed_before = !claim.allow.is_empty();
    claim.allow = expand_list(&claim.allow, values, false)?;
    claim.deny = expand_list(&claim.deny, values, true)?;
    if allowed_before && claim.allow.is_empty() {
        claim.deny.push(String::from(">"));
    }
    Ok(())
}

/// Where placeholder values come from.
struct Values<'a> {
    user: &'a Jwt<UserNats>,
    account: &'a Jwt<AccountNats>,
}

impl Values<'_> {
    /// The values of placeholder `op` (between the braces, trimmed); an
    /// empty list for a tag nobody has.
    fn of(&self, op: &str) -> Result<Vec<String>, String> {
        let lower = op.to_ascii_lowercase();
        let one = |value: &str| Ok(vec![value.to_owned()]);
        match lower.as_str() {
            "name()" => one(&self.user.claims.name),
            "subject()" => one(&self.user.claims.subject),
            "account-name()" => one(&self.account.claims.name),
            // A scoped signer always names its account.
            "account-subject()" => one(&self.user.nats.issuer_account),
            _ => {
                let (tags, name) = if let Some(name) = tag_name(op, "account-tag(") {
                    (&self.account.nats.tags, name)
                } else if let Some(name) = tag_name(op, "tag(") {
                    (&self.user.nats.tags, name)
                } else {
                    return Err(format!("template operation {op:?} is not defined"));
                };
                let prefix = format!("{}:", name.to_ascii_lowercase());
                Ok(tags
                    .iter()
                    .filter_map(|tag| tag.strip_prefix(&prefix))
                    .map(str::to_owned)
                    .collect())
            }
        }
    }
}

/// `x` of `tag(x)` (the function name in any case).
fn tag_name<'a>(op: &'a str, function: &str) -> Option<&'a str> {
    let head = op.get(..function.len())?;
    (head.eq_ignore_ascii_case(function) && op.ends_with(')'))
        .then(|| &op[function.len()..op.len() - 1])
}

/// The `{{...}}` placeholders in `subject`, in order, as written.
fn placeholders(subject: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = subject;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        let inner = &rest[start + 2..];
        let end = inner.find('}').unwrap_or(inner.len());
        if end > 0 && inner[end..].starts_with("}}") {
            let whole = &subject[offset + start..offset + start + 2 + end + 2];
            found.push(whole);
            offset += start + 2 + end + 2;
        } else {
            offset += start + 2;
        }
        rest = &subject[offset..];
    }
    found
}

fn expand_list(list: &[String], values: &Values, strict: bool) -> Result<Vec<String>, String> {
    if !list.iter().any(|subject| !placeholders(subject).is_empty()) {
        return Ok(list.to_vec());
    }
    let mut out = Vec::new();
    for subject in list {
        let sources = placeholders(subject);
        let mut choices = Vec::with_capacity(sources.len());
        for source in &sources {
            let op = source[2..source.len() - 2].trim();
            let found = values.of(op)?;
            if found.is_empty() {
                if strict {
                    return Err(format!("generated invalid subject {subject:?}"));
                }
                // Yields an invalid subject, dropped below.
                choices.push(vec![String::from(" ")]);
            } else {
                choices.push(found);
            }
        }
        let combinations = choices.iter().map(Vec::len).try_fold(1usize, |total, n| {
            total
                .checked_mul(n)
                .filter(|total| *total <= MAX_EXPANSIONS)
        });
        match combinations {
            Some(count) if out.len() + count <= MAX_EXPANSIONS => {}
            _ => {
                return Err(format!(
                    "template expansion exceeds limit: {MAX_EXPANSIONS}"
                ))
            }
        }
        let mut index = vec![0usize; choices.len()];
        loop {
            let mut expanded = subject.clone();
            for (source, (choice, at)) in sources.iter().zip(choices.iter().zip(&index)) {
                expanded = expanded.replace(source, &choice[*at]);
            }
            if is_valid_subject(expanded.as_bytes()) {
                out.push(expanded);
            } else if strict {
                return Err(String::from("generated invalid subject"));
            }
            // Next combination, the last placeholder fastest.
            let mut position = choices.len();
            loop {
                if position == 0 {
                    break;
                }
                position -= 1;
                index[position] += 1;
                if index[position] < choices[position].len() {
                    break;
                }
                index[position] = 0;
            }
            if index.iter().all(|at| *at == 0) {
                break;
            }
        }
        debug_assert!(out.len() <= MAX_EXPANSIONS);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwts(tags: &[&str]) -> (Jwt<UserNats>, Jwt<AccountNats>) {
        let mut user: Jwt<UserNats> = Jwt {
            claims: Default::default(),
            nats: Default::default(),
            token: String::new(),
        };
        user.claims.name = String::from("alice");
        user.claims.subject = String::from("UALICE");
        user.nats.issuer_account = String::from("AACCOUNT");
        user.nats.tags = tags.iter().map(|t| t.to_string()).collect();
        let mut account: Jwt<AccountNats> = Jwt {
            claims: Default::default(),
            nats: Default::default(),
            token: String::new(),
        };
        account.claims.name = String::from("acme");
        account.nats.tags = vec![String::from("region:eu")];
        (user, account)
    }

    fn expand(list: &[&str], tags: &[&str], strict: bool) -> Result<Vec<String>, String> {
        let (user, account) = jwts(tags);
        let values = Values {
            user: &user,
            account: &account,
        };
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        expand_list(&list, &values, strict)
    }

    #[test]
    fn placeholders_are_filled_from_the_jwts() {
        assert_eq!(
            expand(
                &[
                    "{{name()}}.>",
                    "{{ subject() }}.x",
                    "{{Account-Name()}}.{{account-subject()}}",
                    "plain"
                ],
                &[],
                false
            ),
            Ok(vec![
                "alice.>".to_string(),
                "UALICE.x".to_string(),
                "acme.AACCOUNT".to_string(),
                "plain".to_string()
            ])
        );
        assert_eq!(
            expand(
                &["{{tag(team)}}.{{account-tag(region)}}"],
                &["team:red", "team:blue", "x:y"],
                false
            ),
            Ok(vec!["red.eu".to_string(), "blue.eu".to_string()])
        );
        // A tag nobody has: dropped from an allow list, fatal in a deny list.
        assert_eq!(
            expand(&["{{tag(none)}}.x", "a"], &[], false),
            Ok(vec!["a".to_string()])
        );
        assert!(expand(&["{{tag(none)}}.x"], &[], true).is_err());
        assert!(expand(&["{{bogus()}}"], &[], false).is_err());
    }

    #[test]
    fn expansion_is_bounded() {
        let tags: Vec<String> = (0..100).map(|i| format!("t:v{i}")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        assert_eq!(
            expand(&["{{tag(t)}}.{{tag(t)}}"], &tags, false),
            Err(format!(
                "template expansion exceeds limit: {MAX_EXPANSIONS}"
            ))
        );
        assert_eq!(
            expand(&["{{tag(t)}}.x"], &tags, false).map(|l| l.len()),
            Ok(100)
        );
    }

    #[test]
    fn an_allow_list_templated_empty_denies_everything() {
        let (user, account) = jwts(&[]);
        let values = Values {
            user: &user,
            account: &account,
        };
        let mut claim = PermissionClaim {
            allow: vec![String::from("{{tag(none)}}.>")],
            deny: Vec::new(),
        };
        expand_claim(&mut claim, &values).unwrap();
        assert!(claim.allow.is_empty());
        assert_eq!(claim.deny, vec![String::from(">")]);
    }
}
