//! Subject and queue-name checks, each reproducing one check of nats-server v2.15.1.
//!
//! Subjects are byte strings split on `.` into tokens. A token that is exactly
//! `*` (one token) or exactly `>` (one or more trailing tokens) is a wildcard;
//! `*` or `>` inside a longer token (`foo*`, `>bar`) is an ordinary byte.
//!
//! The reference applies different checks at different places, and the server
//! must call the same one at the same place (see each function):
//!
//! | where                        | check                          | on failure |
//! |------------------------------|--------------------------------|------------|
//! | `SUB` subject, every mode    | [`is_valid_subscribe_subject`] | `-ERR 'Invalid Subject'`, connection stays open |
//! | `SUB` queue name             | none (the parser's split only) | (`_sys_` alone is refused, as a permissions violation) |
//! | `PUB`/`HPUB` subject, pedantic | [`is_valid_literal_subject`] | `-ERR 'Invalid Publish Subject'`, message still delivered |
//! | `PUB`/`HPUB` subject, otherwise | none                        | an unmatchable subject just reaches nobody |
//! | `PUB` reply subject          | none on syntax                 | (only the reserved-reply permission check) |
//!
//! Invariant: no function here allocates; each is a single pass over the bytes.

/// The byte separating tokens.
pub const TOKEN_SEPARATOR: u8 = b'.';
/// The token matching exactly one token.
pub const PARTIAL_WILDCARD: &[u8] = b"*";
/// The token matching one or more trailing tokens.
pub const FULL_WILDCARD: &[u8] = b">";

/// The tokens of `subject`, empty ones included (`""` yields one empty token).
pub(crate) fn tokens(subject: &[u8]) -> impl Iterator<Item = &[u8]> {
    subject.split(|byte| *byte == TOKEN_SEPARATOR)
}

/// Whether `token` is one of the two wildcard tokens.
pub fn is_wildcard_token(token: &[u8]) -> bool {
    token == PARTIAL_WILDCARD || token == FULL_WILDCARD
}

/// The whitespace that [`is_valid_subject`] refuses inside a token. Vertical tab
/// (0x0b) is not in the reference's set, so it is not here either.
fn is_subject_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// The general subject check (the reference's `IsValidSubject`): not empty, no
/// empty token, nothing after a `>` token, and no space, tab, CR, LF or form
/// feed anywhere. Wildcards are allowed. Any other byte, NUL and non-UTF-8
/// included, is accepted.
///
/// The client protocol never calls this on `SUB` or `PUB` (the parser already
/// splits on whitespace); it is the check for subjects from configuration and
/// JSON APIs (imports, exports, mappings, stream subjects).
pub fn is_valid_subject(subject: &[u8]) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut after_full_wildcard = false;
    for token in tokens(subject) {
        if token.is_empty() || after_full_wildcard {
            return false;
        }
        if token.iter().copied().any(is_subject_whitespace) {
            return false;
        }
        after_full_wildcard = token == FULL_WILDCARD;
    }
    true
}

/// [`is_valid_subject`] plus the reference's rune check, used where subjects are
/// read back from stored data (the file store's index rebuild): no NUL byte,
/// valid UTF-8, and no U+FFFD (the reference cannot tell a stored replacement
/// character from a decoding error, so it refuses both).
pub fn is_valid_subject_utf8(subject: &[u8]) -> bool {
    if subject.contains(&0) {
        return false;
    }
    match core::str::from_utf8(subject) {
        Ok(text) if !text.contains(char::REPLACEMENT_CHARACTER) => is_valid_subject(subject),
        _ => false,
    }
}

/// What the Sublist accepts on insert and remove, and therefore the whole
/// `SUB` subject check of the reference (pedantic or not): no empty token
/// (so not empty, no leading, trailing or doubled `.`) and nothing after a
/// `>` token. Whitespace, NUL and non-UTF-8 bytes are accepted (the
/// reference accepts `SUB foo.\x00 1`).
///
/// The server sends `-ERR 'Invalid Subject'` when this fails, keeps the
/// connection open and sends no `+OK`. The reference only reaches this check for
/// a new subscription id: a `SUB` reusing a live id is ignored silently, even
/// with an invalid subject.
pub fn is_valid_subscribe_subject(subject: &[u8]) -> bool {
    let mut after_full_wildcard = false;
    for token in tokens(subject) {
        if token.is_empty() || after_full_wildcard {
            return false;
        }
        after_full_wildcard = token == FULL_WILDCARD;
    }
    true
}

/// The reference's `IsValidLiteralSubject`: no empty token and no wildcard
/// token. It does not look for whitespace.
///
/// This is the pedantic `PUB`/`HPUB` subject check. When it fails the reference
/// sends `-ERR 'Invalid Publish Subject'` and then processes the message as
/// usual (it is delivered to matching subscriptions, and `+OK` follows in
/// verbose mode). Non-pedantic connections get no check at all.
pub fn is_valid_literal_subject(subject: &[u8]) -> bool {
    tokens(subject).all(|token| !token.is_empty() && !is_wildcard_token(token))
}

/// The reference's `IsValidPublishSubject`: [`is_valid_subject`] and no
/// wildcard token. Used for subjects the server itself will publish to, taken
/// from configuration or APIs (deliver subjects, import targets).
pub fn is_valid_publish_subject(subject: &[u8]) -> bool {
    is_valid_subject(subject) && subject_is_literal(subject)
}

/// Whether no token of `subject` is a wildcard. Does not validate anything
/// else: `foo..*x` is literal.
pub fn subject_is_literal(subject: &[u8]) -> bool {
    !tokens(subject).any(is_wildcard_token)
}

/// Whether some token of `subject` is a wildcard.
pub fn subject_has_wildcard(subject: &[u8]) -> bool {
    !subject_is_literal(subject)
}

/// Whether `queue` could be a queue group name on a protocol line: not empty
/// and none of the bytes the argument splitter cuts on (space, tab, CR, LF).
///
/// The reference validates queue names no further: `SUB foo q.* 1` and
/// `SUB foo q.. 1` are accepted as groups named `q.*` and `q..`. So the server
/// must not refuse a parsed queue name with this; the Sublist uses it to refuse
/// names no client could have sent. The one refused name, `_sys_`, is a
/// permission rule of the server, not a syntax rule.
pub fn is_valid_queue_name(queue: &[u8]) -> bool {
    !queue.is_empty()
        && !queue
            .iter()
            .any(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expectations from the reference's TestSublistValidSubjects.
    #[test]
    fn valid_subjects_match_reference() {
        for bad in [
            &b"."[..],
            b".foo",
            b"foo.",
            b"foo..bar",
            b">.bar",
            b"foo.>.bar",
            b"",
        ] {
            assert!(!is_valid_subject(bad), "{:?}", bad);
        }
        for good in [
            &b"foo"[..],
            b"foo.bar.*",
            b"foo.bar.>",
            b"*",
            b">",
            b"foo*",
            b"foo**",
            b"foo.**",
            b"foo*bar",
            b"foo.*bar",
            b"foo*.bar",
            b"*bar",
            b"foo>",
            b"foo.>>",
            b"foo>bar",
            b"foo.>bar",
            b"foo>.bar",
            b">bar",
            b"*.*.>",
            b"foo.\x00",
            b"foo.\xff",
            b"foo.\x0b",
        ] {
            assert!(is_valid_subject(good), "{:?}", good);
        }
    }

    #[test]
    fn whitespace_is_refused_by_general_check_only() {
        for bad in [
            &b"foo bar"[..],
            b"foo.\t",
            b"foo.b\nr",
            b"\r",
            b"a.\x0c.b",
            b" ",
        ] {
            assert!(!is_valid_subject(bad), "{:?}", bad);
            assert!(!is_valid_publish_subject(bad), "{:?}", bad);
        }
        // The subscribe and literal checks never see whitespace from the
        // parser and do not look for it.
        assert!(is_valid_subscribe_subject(b"foo bar"));
        assert!(is_valid_literal_subject(b"foo bar"));
    }

    #[test]
    fn utf8_variant_refuses_nul_and_bad_runes() {
        assert!(!is_valid_subject_utf8(b"foo.bar.baz.\x00"));
        assert!(!is_valid_subject_utf8(b"foo.\xff"));
        assert!(!is_valid_subject_utf8("foo.\u{fffd}".as_bytes()));
        assert!(is_valid_subject_utf8("foo.caf\u{e9}.>".as_bytes()));
        assert!(!is_valid_subject_utf8(b"foo..bar"));
    }

    // Expectations from the reference's TestSublistValidLiteralSubjects.
    #[test]
    fn valid_literal_subjects_match_reference() {
        for bad in [
            &b".foo"[..],
            b"foo.",
            b"foo..bar",
            b"foo.bar.*",
            b"foo.bar.>",
            b"*",
            b">",
            b"",
        ] {
            assert!(!is_valid_literal_subject(bad), "{:?}", bad);
        }
        for good in [
            &b"foo"[..],
            b"foo*",
            b"foo**",
            b"foo.**",
            b"foo*bar",
            b"foo.*bar",
            b"foo*.bar",
            b"*bar",
            b"foo>",
            b"foo>>",
            b"foo.>>",
            b"foo>bar",
            b"foo.>bar",
            b"foo>.bar",
            b">bar",
        ] {
            assert!(is_valid_literal_subject(good), "{:?}", good);
        }
    }

    #[test]
    fn subscribe_subject_rules() {
        for bad in [&b""[..], b".", b".foo", b"foo.", b"a..b", b">.a", b"a.>.b"] {
            assert!(!is_valid_subscribe_subject(bad), "{:?}", bad);
        }
        for good in [&b"a"[..], b"*", b">", b"a.*.>", b"a.*x", b"a.>-", b"\x00"] {
            assert!(is_valid_subscribe_subject(good), "{:?}", good);
        }
    }

    // Expectations from the reference's TestSubjectIsLiteral.
    #[test]
    fn literal_detection() {
        for literal in [
            &b"foo"[..],
            b"foo.bar",
            b"foo*.bar",
            b"*bar",
            b"foo.*bar",
            b"foo>",
        ] {
            assert!(subject_is_literal(literal), "{:?}", literal);
            assert!(!subject_has_wildcard(literal));
        }
        for wild in [
            &b"*"[..],
            b">",
            b"foo.*",
            b"foo.>",
            b"foo.*.>",
            b"foo.*.bar",
        ] {
            assert!(!subject_is_literal(wild), "{:?}", wild);
            assert!(subject_has_wildcard(wild));
        }
        assert!(is_valid_publish_subject(b"foo.bar"));
        assert!(!is_valid_publish_subject(b"foo.*"));
    }

    #[test]
    fn queue_names() {
        for good in [&b"q"[..], b"q.*", b"q..", b">", b"\x0c", b"_sys_"] {
            assert!(is_valid_queue_name(good), "{:?}", good);
        }
        for bad in [&b""[..], b"a b", b"a\tb", b"a\r", b"\nb"] {
            assert!(!is_valid_queue_name(bad), "{:?}", bad);
        }
    }
}
