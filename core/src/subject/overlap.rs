//! Whether two subject patterns can match the same subject, and whether
//! one pattern covers another.
//!
//! Role: pure functions on subjects as text, for configuration checks
//! (JetStream stream subjects, account imports and exports), not for
//! routing: the Sublist answers "who gets this message".
//!
//! Invariants: [`subjects_collide`] is symmetric; [`is_subset_match`]
//! implies [`subjects_collide`] for valid subjects.

fn is_wildcard(token: &str) -> bool {
    token == "*" || token == ">"
}

/// Whether every subject `subject` matches is matched by `pattern` (the
/// reference's `subjectIsSubsetMatch`).
pub fn is_subset_match(subject: &str, pattern: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    let mut count = 0;
    for (index, wanted) in pattern.split('.').enumerate() {
        count = index + 1;
        let Some(token) = tokens.get(index) else {
            return false;
        };
        if wanted.is_empty() {
            return false;
        }
        if wanted == ">" {
            return true;
        }
        if token.is_empty() || *token == ">" {
            return false;
        }
        if *token == "*" {
            if wanted != "*" {
                return false;
            }
            continue;
        }
        if wanted != "*" && wanted != *token {
            return false;
        }
    }
    tokens.len() == count
}

/// Whether some subject matches both `a` and `b` (the reference's
/// `SubjectsCollide`).
pub fn subjects_collide(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let left: Vec<&str> = a.split('.').collect();
    let right: Vec<&str> = b.split('.').collect();
    let literal = |tokens: &[&str]| !tokens.iter().any(|t| is_wildcard(t));
    match (literal(&left), literal(&right)) {
        (true, true) => return false,
        (true, false) => return is_subset_match(a, b),
        (false, true) => return is_subset_match(b, a),
        (false, false) => {}
    }
    let full = |tokens: &[&str]| tokens.contains(&">");
    let (full_left, full_right) = (full(&left), full(&right));
    if left.len() != right.len()
        && ((left.len() < right.len() && !full_left) || (right.len() < left.len() && !full_right))
    {
        return false;
    }
    left.iter()
        .zip(&right)
        .all(|(x, y)| is_wildcard(x) || is_wildcard(y) || x == y)
}

/// The pattern matching exactly the subjects both `a` and `b` match, or
/// `None` when no subject matches both. (Two NATS patterns always meet in
/// one pattern: token by token a literal beats `*`, and a `>` takes the
/// other side's remaining tokens.)
pub fn intersect(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let left: Vec<&[u8]> = a.split(|&c| c == b'.').collect();
    let right: Vec<&[u8]> = b.split(|&c| c == b'.').collect();
    let mut out: Vec<&[u8]> = Vec::with_capacity(left.len().max(right.len()));
    let mut index = 0;
    loop {
        match (left.get(index), right.get(index)) {
            (None, None) => break,
            (Some(&b">"), Some(_)) => {
                out.extend_from_slice(&right[index..]);
                break;
            }
            (Some(_), Some(&b">")) => {
                out.extend_from_slice(&left[index..]);
                break;
            }
            (Some(x), Some(y)) if x == y || *y == b"*" => out.push(x),
            (Some(&b"*"), Some(y)) => out.push(y),
            _ => return None,
        }
        index += 1;
    }
    Some(out.join(&b'.'))
}

/// Whether any subject of `a` collides with any subject of `b` (JetStream
/// refuses a stream whose subjects overlap another stream's).
pub fn subjects_overlap(a: &[String], b: &[String]) -> bool {
    a.iter()
        .any(|left| b.iter().any(|right| subjects_collide(left, right)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersections() {
        let meet = |a: &str, b: &str| {
            intersect(a.as_bytes(), b.as_bytes()).map(|m| String::from_utf8(m).unwrap())
        };
        assert_eq!(meet("a.b", "a.b").as_deref(), Some("a.b"));
        assert_eq!(meet("a.*", "*.b").as_deref(), Some("a.b"));
        assert_eq!(meet("a.>", "*.b").as_deref(), Some("a.b"));
        assert_eq!(meet("a.>", "*.b.>").as_deref(), Some("a.b.>"));
        assert_eq!(meet(">", "x.*").as_deref(), Some("x.*"));
        assert_eq!(meet("a.*", "*.b.>"), None);
        assert_eq!(meet("a.>", "a"), None);
        assert_eq!(meet("a.b", "a.c"), None);
        assert_eq!(meet("a.b", "a.b.c"), None);
    }

    fn pattern() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let token = prop_oneof![Just("a"), Just("b"), Just("*")];
        (proptest::collection::vec(token, 1..4), proptest::bool::ANY).prop_map(|(tokens, full)| {
            let mut text = tokens.join(".");
            if full {
                text.push_str(".>");
            }
            text
        })
    }

    proptest::proptest! {
        /// A subject matches the intersection exactly when it matches both
        /// patterns (checked on every short subject over the alphabet).
        #[test]
        fn intersection_matches_what_both_match(a in pattern(), b in pattern()) {
            use crate::subject::subject_matches_pattern as matches;
            let meet = intersect(a.as_bytes(), b.as_bytes());
            for len in 1..=5u32 {
                for bits in 0..(1u32 << len) {
                    let subject: Vec<&str> = (0..len)
                        .map(|i| if bits >> i & 1 == 0 { "a" } else { "b" })
                        .collect();
                    let subject = subject.join(".");
                    let both = matches(a.as_bytes(), subject.as_bytes())
                        && matches(b.as_bytes(), subject.as_bytes());
                    let met = meet
                        .as_ref()
                        .is_some_and(|m| matches(m, subject.as_bytes()));
                    proptest::prop_assert_eq!(both, met, "{} {} {} {:?}", a, b, subject, meet);
                }
            }
        }
    }

    #[test]
    fn collisions() {
        for (a, b, expected) in [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.*", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.*", "a.b.c", false),
            ("*.b", "a.*", true),
            (">", "x", true),
            ("a.*.c", "a.b.>", true),
            ("a.*", "b.>", false),
        ] {
            assert_eq!(subjects_collide(a, b), expected, "{a} {b}");
            assert_eq!(subjects_collide(b, a), expected, "{b} {a}");
        }
    }

    #[test]
    fn subsets() {
        assert!(is_subset_match("a.b", "a.*"));
        assert!(is_subset_match("a.*", "a.>"));
        assert!(!is_subset_match("a.>", "a.*"));
        assert!(is_subset_match("$JS.EVENT.x", "$JS.EVENT.>"));
    }

    #[test]
    fn overlap_of_lists() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(subjects_overlap(&s(&["x", "a.*"]), &s(&["a.b"])));
        assert!(!subjects_overlap(&s(&["x"]), &s(&["y", "z.>"])));
        assert!(!subjects_overlap(&[], &s(&["y"])));
    }
}
