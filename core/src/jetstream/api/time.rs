//! Go's `time.Time` on the JetStream wire: RFC 3339 with nanoseconds.
//!
//! Role: serde adapters for [`WallTime`] fields. Writing goes through
//! [`crate::format::rfc3339_nanos`] (UTC, trailing fraction zeros dropped);
//! reading accepts any RFC 3339 time a client may send (`Z` or a `±hh:mm`
//! offset, 0 to 9 fraction digits). Go's zero time, `0001-01-01T00:00:00Z`,
//! is `None` for the optional form; a time before 1970 reads as `None`
//! too, since [`WallTime`] starts at the Unix epoch.

use serde::{Deserialize, Deserializer, Serializer};

use crate::format::rfc3339_nanos;
use crate::time::WallTime;

/// Go's zero `time.Time`, written where the reference has no time to give.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `Option<WallTime>`: `None` is written as [`ZERO_TIME`].
pub mod optional {
    use super::*;

    pub fn serialize<S: Serializer>(
        time: &Option<WallTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => serializer.serialize_str(&rfc3339_nanos(*time)),
            None => serializer.serialize_str(ZERO_TIME),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<WallTime>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        match text {
            None => Ok(None),
            Some(text) => parse_rfc3339(&text)
                .map_err(serde::de::Error::custom)
                .map(|unix_nanos| unix_nanos.map(WallTime::from_unix_nanos)),
        }
    }
}

/// A `WallTime` that is always set.
pub mod required {
    use super::*;

    pub fn serialize<S: Serializer>(time: &WallTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339_nanos(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<WallTime, D::Error> {
        let time = optional::deserialize(deserializer)?;
        Ok(time.unwrap_or_default())
    }
}

/// Unix nanoseconds of an RFC 3339 time; `None` for times before the epoch
/// (Go's zero time among them).
pub fn parse_rfc3339(text: &str) -> Result<Option<u64>, String> {
    let bad = || format!("parsing time {text:?}: not RFC 3339");
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return Err(bad());
    }
    if !matches!(bytes[10], b'T' | b't') || bytes[16] != b':' {
        return Err(bad());
    }
    let number = |range: core::ops::Range<usize>| -> Result<i64, String> {
        let digits = &text[range];
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse::<i64>().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad());
    }
    if second > 60 {
        return Err(bad());
    }
    let mut rest = &text[19..];
    let mut nanos: i64 = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        let fraction = &after_dot[..digits];
        nanos = fraction.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(9 - digits as u32);
        rest = &after_dot[digits..];
    }
    let offset_seconds = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let field = |a: u8, b: u8| -> Result<i64, String> {
                if a.is_ascii_digit() && b.is_ascii_digit() {
                    Ok(i64::from(a - b'0') * 10 + i64::from(b - b'0'))
                } else {
                    Err(bad())
                }
            };
            let seconds = field(*h1, *h2)? * 3600 + field(*m1, *m2)? * 60;
            if *sign == b'+' {
                seconds
            } else {
                -seconds
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    if seconds < 0 {
        return Ok(None);
    }
    let unix_nanos = (seconds as u64)
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos as u64))
        .ok_or_else(bad)?;
    Ok(Some(unix_nanos))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (negative before it), counting in 400-year eras.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes() {
        for nanos in [
            0_u64,
            1,
            1_500_000_000,
            1_796_544_000_123_456_789,
            951_782_400_000_000_000,
        ] {
            let text = rfc3339_nanos(WallTime::from_unix_nanos(nanos));
            assert_eq!(parse_rfc3339(&text), Ok(Some(nanos)), "{text}");
        }
    }

    #[test]
    fn offsets_fractions_and_zero_time() {
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Ok(Some(0)));
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:01.5Z"),
            Ok(Some(1_500_000_000))
        );
        assert_eq!(parse_rfc3339(ZERO_TIME), Ok(None));
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("2026-13-01T00:00:00Z").is_err());
        assert!(parse_rfc3339("2026-12-01T00:00:00").is_err());
    }
}
