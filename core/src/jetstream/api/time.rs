//! Go's `time.Time` on the JetStream wire: RFC 3339 with nanoseconds.
//!
//! Role: serde adapters for [`WallTime`] fields. Writing goes through
//! [`crate::format::rfc3339_nanos`] (UTC, trailing fraction zeros dropped);
//! reading accepts any RFC 3339 time a client may send (`Z` or a `±hh:mm`
//! offset, 0 to 9 fraction digits). Go's zero time, `0001-01-01T00:00:00Z`,
//! is `None` for the optional form; a time before 1970 reads as `None`
//! too, since [`WallTime`] starts at the Unix epoch.
//!
//! [`GoTime`] is for times a client sends that the reference writes back
//! as sent (a consumer's `opt_start_time` and `pause_until`): it keeps the
//! UTC offset and can hold times before the epoch, Go's zero time included.

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
    let time = GoTime::parse(text)?;
    if time.unix_seconds < 0 {
        return Ok(None);
    }
    let unix_nanos = (time.unix_seconds as u64)
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(time.nanos)))
        .ok_or_else(|| format!("parsing time {text:?}: not RFC 3339"))?;
    Ok(Some(unix_nanos))
}

/// A `time.Time` as a client wrote it: the instant and the UTC offset it
/// carried. The reference keeps a config's times as sent (a consumer's
/// `opt_start_time` sent as `...+01:00` is written back so), and Go's zero
/// time is a time like any other there, not an absence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoTime {
    /// Seconds since the Unix epoch (negative before it).
    pub unix_seconds: i64,
    /// Always below one second.
    pub nanos: u32,
    /// The offset east of UTC the time was written with.
    pub offset_seconds: i32,
}

impl GoTime {
    /// A UTC time.
    pub fn from_wall(time: WallTime) -> GoTime {
        let unix_nanos = time.as_unix_nanos();
        GoTime {
            unix_seconds: (unix_nanos / 1_000_000_000) as i64,
            nanos: (unix_nanos % 1_000_000_000) as u32,
            offset_seconds: 0,
        }
    }

    /// The instant, or `None` before the Unix epoch (Go's zero time among
    /// them).
    pub fn wall_time(&self) -> Option<WallTime> {
        let seconds = u64::try_from(self.unix_seconds).ok()?;
        let unix_nanos = seconds
            .checked_mul(1_000_000_000)?
            .checked_add(u64::from(self.nanos))?;
        Some(WallTime::from_unix_nanos(unix_nanos))
    }

    /// Go's `Equal`: the same instant, whatever the offsets.
    pub fn same_instant(&self, other: &GoTime) -> bool {
        (self.unix_seconds, self.nanos) == (other.unix_seconds, other.nanos)
    }

    /// Go's `IsZero`: January 1, year 1, 00:00:00 UTC.
    pub fn is_zero(&self) -> bool {
        self.unix_seconds == days_from_civil(1, 1, 1) * 86_400 && self.nanos == 0
    }

    /// Reads any RFC 3339 time (`Z` or `±hh:mm`, 0 to 9 fraction digits).
    pub fn parse(text: &str) -> Result<GoTime, String> {
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
        let mut nanos: u32 = 0;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return Err(bad());
            }
            let fraction = &after_dot[..digits];
            nanos = fraction.parse::<u32>().map_err(|_| bad())? * 10_u32.pow(9 - digits as u32);
            rest = &after_dot[digits..];
        }
        let offset_seconds = match rest.as_bytes() {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let field = |a: u8, b: u8| -> Result<i32, String> {
                    if a.is_ascii_digit() && b.is_ascii_digit() {
                        Ok(i32::from(a - b'0') * 10 + i32::from(b - b'0'))
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
        let local = days * 86_400 + hour * 3600 + minute * 60 + second;
        Ok(GoTime {
            unix_seconds: local - i64::from(offset_seconds),
            nanos,
            offset_seconds,
        })
    }

    /// Go's `RFC3339Nano` in the time's own offset (`Z` for UTC).
    pub fn to_rfc3339(&self) -> String {
        let local = self.unix_seconds + i64::from(self.offset_seconds);
        let (year, month, day) = civil_from_days(local.div_euclid(86_400));
        let second_of_day = local.rem_euclid(86_400);
        let mut out = format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        );
        if self.nanos > 0 {
            let fraction = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(fraction.trim_end_matches('0'));
        }
        if self.offset_seconds == 0 {
            out.push('Z');
        } else {
            let sign = if self.offset_seconds < 0 { '-' } else { '+' };
            let minutes = self.offset_seconds.unsigned_abs() / 60;
            out.push_str(&format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60));
        }
        out
    }
}

impl serde::Serialize for GoTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GoTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        GoTime::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// (year, month, day) of a day counted from 1970-01-01 (negative before
/// it), in 400-year eras.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (negative before it), counting in 400-year eras.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
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

    /// Texts as nats-server v2.15.1 wrote back the times it was sent.
    #[test]
    fn client_times_keep_their_offset() {
        let cases = [
            ("2026-01-01T00:00:00.5+01:00", "2026-01-01T00:00:00.5+01:00"),
            ("2026-01-01T00:00:00-00:00", "2026-01-01T00:00:00Z"),
            ("2026-01-01T00:00:00.000+00:00", "2026-01-01T00:00:00Z"),
            (ZERO_TIME, ZERO_TIME),
            (
                "1969-12-31T23:59:59.25-03:30",
                "1969-12-31T23:59:59.25-03:30",
            ),
        ];
        for (sent, written) in cases {
            let time = GoTime::parse(sent).unwrap();
            assert_eq!(time.to_rfc3339(), written, "{sent}");
            assert_eq!(
                GoTime::parse(written).unwrap().unix_seconds,
                time.unix_seconds
            );
        }
        assert!(GoTime::parse(ZERO_TIME).unwrap().is_zero());
        assert_eq!(GoTime::parse(ZERO_TIME).unwrap().wall_time(), None);
        let plus_one = GoTime::parse("2026-01-01T01:00:00+01:00").unwrap();
        let utc = GoTime::parse("2026-01-01T00:00:00Z").unwrap();
        assert!(plus_one.same_instant(&utc));
        assert_ne!(plus_one, utc);
        let wall = utc.wall_time().unwrap();
        assert_eq!(GoTime::from_wall(wall), utc);
    }
}
