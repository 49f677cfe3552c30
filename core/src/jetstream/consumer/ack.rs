//! What a client sends back about a delivered message, and the subject it
//! sends it on.
//!
//! Role: parse the ack reply subject a delivery carried
//! (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
//! or the longer form with a domain and an account hash in front and a
//! random token behind) and the ack body (`+ACK`, `-NAK [delay]`, `+WPI`,
//! `+NXT [request]`, `+TERM [reason]`), and build the subject for a new
//! delivery. Pure functions: nothing here holds state.

use std::time::Duration;

/// The prefix of every ack subject.
pub const ACK_PREFIX: &str = "$JS.ACK.";
/// The prefix of a push consumer's flow-control replies.
pub const FC_PREFIX: &str = "$JS.FC.";

/// The numbers an ack subject carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckTarget {
    /// How many times the message had been delivered (1: the first time).
    pub delivered: u64,
    pub stream_seq: u64,
    pub consumer_seq: u64,
}

/// What the client said about the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckKind {
    /// `+ACK`, `+OK` or an empty body.
    Ack,
    /// `-NAK`, redeliver after `delay` (none: at once).
    Nak { delay: Option<Duration> },
    /// `+WPI`: still working on it, restart the ack timer.
    Progress,
    /// `+NXT`: acknowledge, then treat the rest as a pull request whose
    /// replies go to the ack's reply subject.
    Next { request: Vec<u8> },
    /// `+TERM`: never redeliver.
    Term { reason: String },
    /// A body the reference ignores.
    Unknown,
}

/// The ack subject for a delivery.
pub fn ack_subject(
    stream: &str,
    consumer: &str,
    target: AckTarget,
    timestamp: u64,
    pending: u64,
) -> String {
    format!(
        "{ACK_PREFIX}{stream}.{consumer}.{}.{}.{}.{timestamp}.{pending}",
        target.delivered, target.stream_seq, target.consumer_seq
    )
}

/// Ack subjects written into one buffer, as [`ack_subject`] writes them:
/// one allocation per [`AckSubjects::CHUNK`] bytes of subjects rather than
/// a `String` and a `Bytes` per delivery (a profile of push consumers had
/// 3-5% of the JetStream thread formatting them), and the numbers written
/// digit by digit (through `fmt` they were 11% of an ordered consumer's
/// deliveries).
#[derive(Debug, Default)]
pub struct AckSubjects {
    buf: bytes::BytesMut,
}

impl AckSubjects {
    /// Bytes reserved at a time: many subjects per allocation.
    const CHUNK: usize = 8 << 10;

    /// [`ack_subject`]'s subject, as `Bytes` sharing this buffer.
    pub fn subject(
        &mut self,
        stream: &str,
        consumer: &str,
        target: AckTarget,
        timestamp: u64,
        pending: u64,
    ) -> bytes::Bytes {
        // Five numbers of at most 20 digits and their dots.
        let longest = ACK_PREFIX.len() + stream.len() + consumer.len() + 2 + 5 * 21;
        if self.buf.capacity() < longest {
            // The subjects still held keep the old buffer alive; this one is new.
            self.buf.reserve(Self::CHUNK.max(longest));
        }
        let before = self.buf.capacity();
        // Into the room reserved above: no allocation.
        self.buf.extend_from_slice(ACK_PREFIX.as_bytes());
        self.buf.extend_from_slice(stream.as_bytes());
        self.buf.extend_from_slice(b".");
        self.buf.extend_from_slice(consumer.as_bytes());
        for number in [
            target.delivered,
            target.stream_seq,
            target.consumer_seq,
            timestamp,
            pending,
        ] {
            self.buf.extend_from_slice(b".");
            self.buf
                .extend_from_slice(crate::protocol::encoder::Decimal::of_u64(number).as_bytes());
        }
        debug_assert!(
            self.buf.len() <= before,
            "the subject fit the room reserved"
        );
        self.buf.split().freeze()
    }
}

/// The numbers in an ack subject, either form; `None` when it is not one.
/// Read in place: an ack of a push consumer comes per message.
pub fn parse_ack_subject(subject: &[u8]) -> Option<AckTarget> {
    // Not UTF-8: not an ack subject.
    std::str::from_utf8(subject).ok()?;
    let rest = subject.strip_prefix(ACK_PREFIX.as_bytes())?;
    // The first seven tokens, and how many there are.
    let mut tokens: [&[u8]; 7] = [&[]; 7];
    let mut count = 0;
    for token in rest.split(|&byte| byte == b'.') {
        if let Some(slot) = tokens.get_mut(count) {
            *slot = token;
        }
        count += 1;
    }
    // Short: stream, consumer, delivered, sseq, cseq, ts, pending.
    // Long: domain, account hash, stream, consumer, delivered, sseq, cseq,
    // ts, pending, then maybe more (a random token).
    let numbers = match count {
        7 => &tokens[2..5],
        n if n >= 9 => &tokens[4..7],
        _ => return None,
    };
    Some(AckTarget {
        delivered: parse_u64(numbers[0])?,
        stream_seq: parse_u64(numbers[1])?,
        consumer_seq: parse_u64(numbers[2])?,
    })
}

/// A token as `str::parse::<u64>` reads it: an optional `+`, then at least
/// one digit and nothing else, no overflow.
fn parse_u64(token: &[u8]) -> Option<u64> {
    let digits = token.strip_prefix(b"+").unwrap_or(token);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.checked_sub(b'0').filter(|&digit| digit < 10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The kind of ack in `body`.
pub fn parse_ack_body(body: &[u8]) -> AckKind {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed == b"+ACK" || trimmed == b"+OK" {
        return AckKind::Ack;
    }
    if let Some(rest) = trimmed.strip_prefix(b"+NXT") {
        return AckKind::Next {
            request: rest.trim_ascii().to_vec(),
        };
    }
    if let Some(rest) = trimmed.strip_prefix(b"-NAK") {
        return AckKind::Nak {
            delay: parse_nak_delay(rest.trim_ascii()),
        };
    }
    if trimmed == b"+WPI" {
        return AckKind::Progress;
    }
    if let Some(rest) = trimmed.strip_prefix(b"+TERM") {
        return AckKind::Term {
            reason: String::from_utf8_lossy(rest.trim_ascii()).into_owned(),
        };
    }
    AckKind::Unknown
}

/// A NAK's delay: `{"delay": <nanoseconds>}` or a Go duration (`5s`).
/// Anything else is a plain NAK, as in the reference.
fn parse_nak_delay(arg: &[u8]) -> Option<Duration> {
    if arg.is_empty() {
        return None;
    }
    if arg[0] == b'{' {
        #[derive(serde::Deserialize)]
        struct NakOptions {
            #[serde(default)]
            delay: i64,
        }
        let options: NakOptions = serde_json::from_slice(arg).ok()?;
        return u64::try_from(options.delay).ok().map(Duration::from_nanos);
    }
    let text = std::str::from_utf8(arg).ok()?;
    let nanos = crate::conf::value::parse_go_duration(text).ok()?;
    u64::try_from(nanos).ok().map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arena_writes_the_same_subjects() {
        let mut arena = AckSubjects::default();
        let mut held = Vec::new();
        for n in 0..2000u64 {
            let target = AckTarget {
                delivered: n % 3 + 1,
                stream_seq: n * 7919,
                consumer_seq: n,
            };
            let stream = if n % 2 == 0 {
                "S"
            } else {
                "A-LONGER-STREAM-NAME"
            };
            let timestamp = u64::MAX - n;
            let expected = ack_subject(stream, "C", target, timestamp, n);
            let subject = arena.subject(stream, "C", target, timestamp, n);
            assert_eq!(&subject[..], expected.as_bytes());
            held.push(subject);
        }
        // Subjects still held are untouched by the ones written after them.
        assert!(held[0].starts_with(b"$JS.ACK.S.C.1.0.0."), "{:?}", held[0]);
    }

    #[test]
    fn ack_subjects_round_trip_and_the_long_form_parses() {
        let target = AckTarget {
            delivered: 2,
            stream_seq: 40,
            consumer_seq: 7,
        };
        let subject = ack_subject("S", "C", target, 1_796_555_163_284_168_919, 3);
        assert_eq!(subject, "$JS.ACK.S.C.2.40.7.1796555163284168919.3");
        assert_eq!(parse_ack_subject(subject.as_bytes()), Some(target));
        let long = b"$JS.ACK.hub.ACCHASH.S.C.2.40.7.1796555163284168919.3.r4nd0m";
        assert_eq!(parse_ack_subject(long), Some(target));
        let bare = b"$JS.ACK.hub.ACCHASH.S.C.2.40.7.1796555163284168919.3";
        assert_eq!(parse_ack_subject(bare), Some(target));
        assert_eq!(parse_ack_subject(b"$JS.ACK.S.C.x.40.7.1.3"), None);
        assert_eq!(parse_ack_subject(b"$JS.ACK.S.C.1.2"), None);
        assert_eq!(parse_ack_subject(b"foo"), None);
    }

    #[test]
    fn numbers_parse_as_str_parse_does() {
        for token in [
            "0",
            "7",
            "+7",
            "+",
            "",
            "-1",
            "1a",
            " 1",
            "18446744073709551615",
            "18446744073709551616",
            "00042",
        ] {
            assert_eq!(
                parse_u64(token.as_bytes()),
                token.parse::<u64>().ok(),
                "{token:?}"
            );
            let subject = format!("$JS.ACK.S.C.{token}.2.3.4.5");
            let expected = token.parse::<u64>().ok().map(|delivered| AckTarget {
                delivered,
                stream_seq: 2,
                consumer_seq: 3,
            });
            assert_eq!(parse_ack_subject(subject.as_bytes()), expected, "{subject}");
        }
        assert_eq!(parse_ack_subject(b"$JS.ACK.\xff.C.1.2.3.4.5"), None);
        assert_eq!(parse_ack_subject(b"$JS.ACK.S.C.1.2.3.4.5.6"), None);
    }

    #[test]
    fn ack_bodies() {
        assert_eq!(parse_ack_body(b""), AckKind::Ack);
        assert_eq!(parse_ack_body(b"+ACK"), AckKind::Ack);
        assert_eq!(parse_ack_body(b"-NAK"), AckKind::Nak { delay: None });
        assert_eq!(
            parse_ack_body(b"-NAK {\"delay\": 2000000000}"),
            AckKind::Nak {
                delay: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            parse_ack_body(b"-NAK 1.5s"),
            AckKind::Nak {
                delay: Some(Duration::from_millis(1500))
            }
        );
        assert_eq!(parse_ack_body(b"-NAK bogus"), AckKind::Nak { delay: None });
        assert_eq!(parse_ack_body(b"+WPI"), AckKind::Progress);
        assert_eq!(
            parse_ack_body(b"+NXT {\"batch\":5}"),
            AckKind::Next {
                request: b"{\"batch\":5}".to_vec()
            }
        );
        assert_eq!(
            parse_ack_body(b"+TERM no good"),
            AckKind::Term {
                reason: "no good".into()
            }
        );
        assert_eq!(parse_ack_body(b"what"), AckKind::Unknown);
    }
}
