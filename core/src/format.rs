//! Text as nats-server writes it: Go's quoting, times and durations.
//!
//! Role: pure formatting, shared by every part of core that produces a wire
//! error, a log line or monitoring JSON (a leaf module: it imports nothing
//! but `time`). Subjects and other client bytes go through [`go_quote`]
//! before they reach an `-ERR` or a log line, as Go's `%q` does in the
//! reference, so a stray control byte never reaches the wire raw. Times are Go's `time.RFC3339Nano` in UTC (fraction
//! with trailing zeros dropped, none at all when whole seconds, then `Z`);
//! uptimes are whole seconds split into years (365 days), days, hours,
//! minutes and seconds, leading zero units left out ("3m7s", "1d0h0m5s").
//! Short hashes are the reference's 8 base-62 characters of a SHA-256.

use core::fmt::Write as _;

use crate::time::WallTime;

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const SECONDS_PER_DAY: u64 = 86_400;

/// `2026-11-22T13:30:28.123456789Z`, the way Go marshals a UTC `time.Time`.
pub fn rfc3339_nanos(time: WallTime) -> String {
    let nanos_total = time.as_unix_nanos();
    let seconds_total = nanos_total / NANOS_PER_SECOND;
    let nanos = nanos_total % NANOS_PER_SECOND;
    let (year, month, day) = civil_from_days(seconds_total / SECONDS_PER_DAY);
    let second_of_day = seconds_total % SECONDS_PER_DAY;
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        let _ = write!(out, ".{}", fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// `Sun, 06 Dec 2026 11:06:01 GMT`, the HTTP date (RFC 9110's IMF-fixdate)
/// Go's HTTP server writes in a response's `Date` header.
pub fn http_date(time: WallTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds_total = time.as_unix_nanos() / NANOS_PER_SECOND;
    let days = seconds_total / SECONDS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    let second_of_day = seconds_total % SECONDS_PER_DAY;
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[(days % 7) as usize];
    let month_name = MONTHS[(month - 1) as usize];
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar, counting in 400-year eras of 146097 days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
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
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    debug_assert!((1..=12).contains(&month));
    debug_assert!((1..=31).contains(&day));
    (year, month, day)
}

/// An uptime or idle time as nats-server prints it (whole seconds).
pub fn uptime(nanos: u64) -> String {
    let seconds = nanos / NANOS_PER_SECOND;
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    let (s, m, h, d) = (seconds % 60, minutes % 60, hours % 24, days % 365);
    if years > 0 {
        format!("{years}y{d}d{h}h{m}m{s}s")
    } else if days > 0 {
        format!("{days}d{h}h{m}m{s}s")
    } else if hours > 0 {
        format!("{hours}h{m}m{s}s")
    } else if minutes > 0 {
        format!("{minutes}m{s}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_go() {
        assert_eq!(
            rfc3339_nanos(WallTime::from_unix_nanos(0)),
            "1970-01-01T00:00:00Z"
        );
        // 2024-02-29T12:34:56.5Z: a leap day, a fraction with trailing zeros dropped.
        let leap = 1_709_210_096 * NANOS_PER_SECOND + 500_000_000;
        assert_eq!(
            rfc3339_nanos(WallTime::from_unix_nanos(leap)),
            "2024-02-29T12:34:56.5Z"
        );
        let odd = 1_763_818_228 * NANOS_PER_SECOND + 123_456_789;
        assert_eq!(
            rfc3339_nanos(WallTime::from_unix_nanos(odd)),
            "2025-11-22T13:30:28.123456789Z"
        );
    }

    #[test]
    fn uptimes_drop_leading_zero_units() {
        let s = NANOS_PER_SECOND;
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(59 * s + 999), "59s");
        assert_eq!(uptime(187 * s), "3m7s");
        assert_eq!(uptime(3600 * s), "1h0m0s");
        assert_eq!(uptime((86_400 + 5) * s), "1d0h0m5s");
        assert_eq!(uptime((366 * 86_400) * s), "1y1d0h0m0s");
    }
}

/// Serializes an `f64` the way Go's `encoding/json` writes a float64: a
/// whole number without a fraction (`2`, not `2.0`).
pub fn go_float<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGER_LIMIT {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

#[cfg(test)]
mod go_float_tests {
    #[derive(serde::Serialize)]
    struct Wrap(#[serde(serialize_with = "super::go_float")] f64);

    #[test]
    fn whole_floats_print_as_integers() {
        assert_eq!(serde_json::to_string(&Wrap(2.0)).unwrap(), "2");
        assert_eq!(serde_json::to_string(&Wrap(0.0)).unwrap(), "0");
        assert_eq!(serde_json::to_string(&Wrap(0.125)).unwrap(), "0.125");
    }
}

/// Go's `time.Duration.String()`: `0s`, `850ns`, `1.5µs`, `2.25ms`, `1m2.5s`,
/// `1h0m0s`.
pub fn go_duration(nanos: u64) -> String {
    const MICRO: u64 = 1_000;
    const MILLI: u64 = 1_000_000;
    const SECOND: u64 = 1_000_000_000;
    match nanos {
        0 => String::from("0s"),
        n if n < MICRO => format!("{n}ns"),
        n if n < MILLI => format!("{}µs", decimal(n, MICRO, 3)),
        n if n < SECOND => format!("{}ms", decimal(n, MILLI, 6)),
        n => {
            let seconds = n / SECOND;
            let (hours, minutes) = (seconds / 3600, seconds / 60 % 60);
            let mut out = String::new();
            if hours > 0 {
                let _ = write!(out, "{hours}h");
            }
            if hours > 0 || minutes > 0 {
                let _ = write!(out, "{minutes}m");
            }
            let rest = n % (60 * SECOND);
            let _ = write!(out, "{}s", decimal(rest, SECOND, 9));
            out
        }
    }
}

/// `value / unit` with up to `digits` decimals, trailing zeros dropped.
fn decimal(value: u64, unit: u64, digits: usize) -> String {
    let (whole, rest) = (value / unit, value % unit);
    if rest == 0 {
        return whole.to_string();
    }
    let fraction = format!("{rest:0digits$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// A round trip as `/connz` reports it: truncated to whole microseconds
/// between 1 µs and 1 ms, as the reference does.
pub fn rtt_text(rtt: Option<core::time::Duration>) -> String {
    let nanos = rtt.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let nanos = if nanos > 1_000 && nanos < 1_000_000 {
        nanos / 1_000 * 1_000
    } else {
        nanos
    };
    go_duration(nanos)
}

#[cfg(test)]
mod go_duration_tests {
    use super::go_duration;

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(850), "850ns");
        assert_eq!(go_duration(920_000), "920µs");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(2_250_000), "2.25ms");
        assert_eq!(go_duration(62_500_000_000), "1m2.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(10_000_000_000), "10s");
    }
}

/// Go's `%q` of a byte string (`strconv.Quote`): in double quotes, `"` and
/// `\` escaped, the C escapes for `\a \b \f \n \r \t \v`, other control bytes
/// and invalid UTF-8 as `\xNN`, non-printable characters as `\uNNNN` or
/// `\UNNNNNNNN`. The reference quotes subjects this way in its `-ERR`s and
/// logs, which also keeps a stray `\r` in a PUB subject off the wire.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    push_go_quoted(&mut out, bytes);
    out
}

/// [`go_quote`] appended to `out` (no allocation of its own: the publish
/// ack's hot path).
pub fn push_go_quoted(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                ' '..='~' => out.push(ch),
                _ if (ch as u32) < 0x20 || ch == '\u{7f}' => {
                    let _ = write!(out, "\\x{:02x}", ch as u32);
                }
                // Go's IsPrint: letters, marks, numbers, punctuation, symbols
                // and U+0020; other spaces and controls are escaped.
                _ if !ch.is_control() && !ch.is_whitespace() => out.push(ch),
                _ if (ch as u32) < 0x10000 => {
                    let _ = write!(out, "\\u{:04x}", ch as u32);
                }
                _ => {
                    let _ = write!(out, "\\U{:08x}", ch as u32);
                }
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
}

#[cfg(test)]
mod quote_tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go_strconv_quote() {
        // Expected texts from Go: fmt.Sprintf("%q", []byte(...)).
        assert_eq!(go_quote(b"foo.bar"), r#""foo.bar""#);
        assert_eq!(go_quote(b"f\0\0\0\roo.bar"), r#""f\x00\x00\x00\roo.bar""#);
        assert_eq!(go_quote(b"a\"b\\c\td\n\x7f"), r#""a\"b\\c\td\n\x7f""#);
        assert_eq!(go_quote("é.ü".as_bytes()), "\"é.ü\"");
        assert_eq!(go_quote(b"\xff.x"), r#""\xff.x""#);
        assert_eq!(go_quote("\u{a0}".as_bytes()), r#""\u00a0""#);
    }
}

/// The reference's short hash of `text`: 8 base-62 characters from the
/// first bytes of its SHA-256 (an account's hash in `$JS.ACK` subjects, a
/// stream's identity from its creation time).
pub fn short_hash(text: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    Sha256::digest(text)[..8]
        .iter()
        .map(|&byte| DIGITS[usize::from(byte) % DIGITS.len()] as char)
        .collect()
}
