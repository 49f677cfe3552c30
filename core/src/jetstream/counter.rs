//! Counter streams (`allow_msg_counter`): each message on a subject adds
//! its `Nats-Incr` to the subject's running total.
//!
//! Role: the checks the reference makes on `Nats-Incr` (before any other
//! header check, so a bad increment is reported before a mismatched
//! expectation), and the new total. The stored message keeps the
//! publisher's headers; its payload is the total, written as the reference
//! writes it (`{"val":"<decimal>"}`), and the ack carries the total as
//! `val`. Totals are arbitrary-precision integers, as the reference's are.
//!
//! Invariants: an increment is a decimal integer with an optional sign and
//! nothing else; a counter message always has an empty published payload;
//! the previous total is read from the subject's last stored message, so a
//! restart or a purge needs no state of its own.

use num_bigint::BigInt;

use super::errors::ApiErrorKind;
use crate::protocol::find_header;

pub(crate) const INCR: &[u8] = b"Nats-Incr";

/// Headers an increment cannot be combined with: they expect or replace
/// state that the running total depends on.
const INCOMPATIBLE: [&[u8]; 6] = [
    b"Nats-Rollup",
    b"Nats-Expected-Stream",
    b"Nats-Expected-Last-Msg-Id",
    b"Nats-Expected-Last-Subject-Sequence-Subject",
    b"Nats-Expected-Last-Sequence",
    b"Nats-Expected-Last-Subject-Sequence",
];

/// The increment a publish carries (`None`: no `Nats-Incr`, or an empty
/// one), checked as the reference checks it on any stream.
pub(crate) fn increment(
    headers: &[u8],
    payload: &[u8],
    allowed: bool,
) -> Result<Option<BigInt>, ApiErrorKind> {
    let Some(text) = find_header(headers, INCR).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let incr = parse_decimal(text).ok_or(ApiErrorKind::MessageIncrInvalid)?;
    if !allowed {
        return Err(ApiErrorKind::MessageIncrDisabled);
    }
    if !payload.is_empty() {
        return Err(ApiErrorKind::MessageIncrPayload);
    }
    let present = |key: &[u8]| find_header(headers, key).is_some_and(|v| !v.is_empty());
    if INCOMPATIBLE.into_iter().any(present) {
        return Err(ApiErrorKind::MessageIncrInvalid);
    }
    Ok(Some(incr))
}

/// An optional sign then decimal digits, nothing else (no spaces, no
/// underscores), as Go's `big.Int.SetString(s, 10)` accepts.
fn parse_decimal(text: &[u8]) -> Option<BigInt> {
    let digits = match text.first() {
        Some(b'+' | b'-') => &text[1..],
        _ => text,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    BigInt::parse_bytes(text, 10)
}

/// The payload of the message that adds `incr` to the total held by
/// `last` (the subject's last stored payload, `None` when it has none).
/// A last payload that is not a counter's is a broken counter.
pub(crate) fn next_total(last: Option<&[u8]>, incr: &BigInt) -> Result<Vec<u8>, ApiErrorKind> {
    let previous = match last {
        None => BigInt::default(),
        Some(payload) => total_of(payload).ok_or(ApiErrorKind::MessageCounterBroken)?,
    };
    Ok(format!("{{\"val\":\"{}\"}}", previous + incr).into_bytes())
}

/// The total a counter payload holds. A JSON object whose `val` is absent,
/// null or not a number counts as zero (the reference reads it into a
/// string and parses that, ignoring failure); anything else is broken.
fn total_of(payload: &[u8]) -> Option<BigInt> {
    #[derive(serde::Deserialize)]
    struct Value {
        #[serde(default)]
        val: Option<String>,
    }
    if payload.trim_ascii() == b"null" {
        return Some(BigInt::default());
    }
    let value: Value = serde_json::from_slice(payload).ok()?;
    let text = value.val.unwrap_or_default();
    Some(parse_decimal(text.as_bytes()).unwrap_or_default())
}

/// The total in a payload [`next_total`] wrote, for the ack's `val`.
pub(crate) fn ack_value(payload: &[u8]) -> String {
    total_of(payload).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &str) -> Vec<u8> {
        format!("NATS/1.0\r\n{lines}\r\n").into_bytes()
    }

    #[test]
    fn increments_parse_as_the_reference_parses_them() {
        let ok = |v: &str| increment(&headers(&format!("Nats-Incr: {v}\r\n")), b"", true);
        assert_eq!(ok("+5"), Ok(Some(BigInt::from(5))));
        assert_eq!(ok("-2"), Ok(Some(BigInt::from(-2))));
        for bad in ["abc", "1_0", "-", "1.5", "0x10"] {
            assert_eq!(ok(bad), Err(ApiErrorKind::MessageIncrInvalid), "{bad}");
        }
        assert_eq!(increment(&headers("Nats-Incr:\r\n"), b"", true), Ok(None));
    }

    #[test]
    fn disabled_payload_and_incompatible_headers_are_refused_in_order() {
        let h = headers("Nats-Incr: 1\r\nNats-Rollup: sub\r\n");
        assert_eq!(
            increment(&h, b"x", false),
            Err(ApiErrorKind::MessageIncrDisabled)
        );
        assert_eq!(
            increment(&h, b"x", true),
            Err(ApiErrorKind::MessageIncrPayload)
        );
        assert_eq!(
            increment(&h, b"", true),
            Err(ApiErrorKind::MessageIncrInvalid)
        );
        let bad = headers("Nats-Incr: x\r\n");
        assert_eq!(
            increment(&bad, b"", false),
            Err(ApiErrorKind::MessageIncrInvalid)
        );
    }

    #[test]
    fn totals_add_beyond_sixty_four_bits() {
        let big: BigInt = "99999999999999999999999999999".parse().unwrap();
        let first = next_total(None, &big).unwrap();
        let second = next_total(Some(&first), &BigInt::from(4)).unwrap();
        assert_eq!(second, br#"{"val":"100000000000000000000000000003"}"#);
        assert_eq!(ack_value(&second), "100000000000000000000000000003");
        assert_eq!(
            next_total(Some(b"hello"), &BigInt::from(1)),
            Err(ApiErrorKind::MessageCounterBroken)
        );
        assert_eq!(
            next_total(Some(b"{}"), &BigInt::from(1)).unwrap(),
            br#"{"val":"1"}"#
        );
    }
}
