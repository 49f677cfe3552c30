//! Subject and queue-name validation against a naive token model, and the
//! Sublist's acceptance of exactly the valid subscribe subjects.
//!
//! Input: one control byte, then bytes. When bit 7 of the control byte is
//! set, the first `control & 0x7f` bytes (at most all) are a second string
//! (used as a queue name, and as a published subject) and the rest is the
//! subject; otherwise all of it is the subject.
//!
//! Checked, for the subject: every `validate` predicate equals the model
//! below, written from the documented rules and sharing no code with core;
//! `Sublist::insert` succeeds exactly for valid subscribe subjects and
//! queue names, and refuses with the right error otherwise; an inserted entry
//! is reached by its own subject and removed again, leaving an empty trie; a
//! single-entry Sublist reaches the second string exactly when the model
//! matcher says the pattern matches it, and so does `subject_matches_pattern`.

use rnats_core::subject::{self as core_subject, Sublist, SublistError};

/// The model's tokens: `.` separates, so `""` has one empty token.
fn tokens(subject: &[u8]) -> Vec<&[u8]> {
    subject.split(|&byte| byte == b'.').collect()
}

fn is_wildcard(token: &[u8]) -> bool {
    token == b"*" || token == b">"
}

/// No empty token, `>` only as the last token.
pub fn model_subscribe_valid(subject: &[u8]) -> bool {
    let tokens = tokens(subject);
    let last = tokens.len() - 1;
    tokens
        .iter()
        .enumerate()
        .all(|(index, token)| !token.is_empty() && (*token != b">" || index == last))
}

/// The reference's `IsValidSubject`: subscribe rules, not empty, and none of
/// space, tab, LF, CR, form feed.
pub fn model_valid(subject: &[u8]) -> bool {
    !subject.is_empty()
        && model_subscribe_valid(subject)
        && !subject
            .iter()
            .any(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0c))
}

/// No empty token and no wildcard token.
pub fn model_literal_valid(subject: &[u8]) -> bool {
    tokens(subject)
        .iter()
        .all(|token| !token.is_empty() && !is_wildcard(token))
}

pub fn model_is_literal(subject: &[u8]) -> bool {
    !tokens(subject).iter().any(|token| is_wildcard(token))
}

pub fn model_queue_valid(queue: &[u8]) -> bool {
    !queue.is_empty()
        && !queue
            .iter()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Whether a subscription on `pattern` reaches the published `subject`,
/// taken literally; a subject with an empty token is reached by nothing.
pub fn model_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let pattern = tokens(pattern);
    let subject = tokens(subject);
    if pattern.iter().chain(subject.iter()).any(|t| t.is_empty()) {
        return false;
    }
    for (index, token) in pattern.iter().enumerate() {
        if *token == b">" {
            return index + 1 == pattern.len() && subject.len() > index;
        }
        match subject.get(index) {
            Some(found) if *token == b"*" || token == found => {}
            _ => return false,
        }
    }
    pattern.len() == subject.len()
}

fn check_predicates(subject: &[u8]) {
    let valid = model_valid(subject);
    assert_eq!(
        core_subject::is_valid_subject(subject),
        valid,
        "is_valid_subject"
    );
    assert_eq!(
        core_subject::is_valid_subscribe_subject(subject),
        model_subscribe_valid(subject),
        "is_valid_subscribe_subject"
    );
    assert_eq!(
        core_subject::is_valid_literal_subject(subject),
        model_literal_valid(subject),
        "is_valid_literal_subject"
    );
    assert_eq!(
        core_subject::is_valid_publish_subject(subject),
        valid && model_is_literal(subject),
        "is_valid_publish_subject"
    );
    assert_eq!(
        core_subject::subject_is_literal(subject),
        model_is_literal(subject)
    );
    assert_eq!(
        core_subject::subject_has_wildcard(subject),
        !model_is_literal(subject)
    );
    let utf8 = !subject.contains(&0)
        && core::str::from_utf8(subject).is_ok_and(|text| !text.contains('\u{fffd}'))
        && valid;
    assert_eq!(
        core_subject::is_valid_subject_utf8(subject),
        utf8,
        "is_valid_subject_utf8"
    );
    assert_eq!(
        core_subject::is_valid_queue_name(subject),
        model_queue_valid(subject)
    );
}

fn check_insert(subject: &[u8], queue: Option<&[u8]>) {
    let mut sublist = Sublist::<u8>::with_cache_capacity(2);
    let expected = if !model_subscribe_valid(subject) {
        Err(SublistError::InvalidSubject)
    } else if queue.is_some_and(|name| !model_queue_valid(name)) {
        Err(SublistError::InvalidQueueName)
    } else {
        Ok(())
    };
    assert_eq!(sublist.insert(subject, queue, 7), expected, "insert");
    if expected.is_err() {
        assert!(sublist.is_empty());
        assert_eq!(sublist.node_count(), 0);
        return;
    }
    assert_eq!(
        sublist.insert(subject, queue, 7),
        Err(SublistError::AlreadyPresent)
    );
    let reached = sublist.matches(subject);
    match queue {
        None => assert_eq!(reached.plain, [7]),
        Some(name) => {
            assert!(reached.plain.is_empty());
            assert_eq!(reached.queues.len(), 1);
            assert_eq!(&reached.queues[0].name[..], name);
            assert_eq!(reached.queues[0].members, [7]);
        }
    }
    assert_eq!(sublist.remove(subject, queue, 7), Ok(()));
    assert_eq!(
        sublist.remove(subject, queue, 7),
        Err(SublistError::NotFound)
    );
    assert!(sublist.is_empty());
    assert_eq!(sublist.node_count(), 0);
    assert!(sublist.matches(subject).is_empty());
}

fn check_match(pattern: &[u8], published: &[u8]) {
    let expected = model_valid_pattern(pattern) && model_matches(pattern, published);
    assert_eq!(
        core_subject::subject_matches_pattern(pattern, published),
        model_matches(pattern, published),
        "subject_matches_pattern"
    );
    let mut sublist = Sublist::<u8>::with_cache_capacity(1);
    if sublist.insert(pattern, None, 1).is_err() {
        return;
    }
    // Twice: the second answer comes from the cache.
    for _ in 0..2 {
        let reached = !sublist.matches(published).is_empty();
        assert_eq!(reached, expected, "Sublist::matches");
    }
}

fn model_valid_pattern(pattern: &[u8]) -> bool {
    model_subscribe_valid(pattern)
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (second, subject) = if control & 0x80 != 0 {
        rest.split_at(usize::from(control & 0x7f).min(rest.len()))
    } else {
        (&[][..], rest)
    };
    check_predicates(subject);
    check_predicates(second);
    check_insert(subject, None);
    if control & 0x80 != 0 {
        check_insert(subject, Some(second));
        check_match(subject, second);
    }
}
