//! A user JWT's connect times: `times` (`HH:MM:SS` start and end, a range
//! crossing midnight allowed) in `times_location` (an IANA time zone; the
//! server's own zone when empty), checked as the reference checks them at
//! login.
//!
//! Role: answer "may this user connect now, and for how long": the login
//! is refused outside every range; inside, the connection may last until
//! the end of the range that lasts longest (the caller closes it then with
//! `User Authentication Expired`, as the reference's timer does).
//!
//! Invariants: only the bundled time zone database is read (the same
//! answer on every machine, no file touched); a zone or a time that does
//! not parse allows no login, as in the reference.

use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

use super::jwt::TimeRange;
use crate::time::WallTime;

/// How long a user may stay connected from `now`: `Some(Duration::ZERO)`
/// without `times` (no limit), `Some(left)` inside a range, `None` outside
/// every range (or when the zone or a time does not parse). `local_zone`
/// names the server's zone (used when `location` is empty; UTC when it
/// is unknown).
pub fn connect_window(
    times: &[TimeRange],
    location: &str,
    local_zone: &str,
    now: WallTime,
) -> Option<Duration> {
    if times.is_empty() {
        return Some(Duration::ZERO);
    }
    let database = TimeZoneDatabase::bundled();
    let zone = if location.is_empty() {
        database.get(local_zone).unwrap_or(TimeZone::UTC)
    } else {
        database.get(location).ok()?
    };
    let nanos = i128::from(now.as_unix_nanos());
    let now = Timestamp::from_nanosecond(nanos)
        .ok()?
        .to_zoned(zone.clone());
    let today = now.date();
    let mut longest: Option<Duration> = None;
    for range in times {
        let start = today
            .to_datetime(parse_clock(&range.start)?)
            .to_zoned(zone.clone())
            .ok()?;
        let end = today
            .to_datetime(parse_clock(&range.end)?)
            .to_zoned(zone.clone())
            .ok()?;
        let left = if start < now && now < end {
            Some(&end)
        } else {
            None
        };
        let tomorrow_end;
        let left = match left {
            Some(end) => Some(end),
            // A range crossing midnight: after midnight it ends today,
            // before midnight tomorrow.
            None if start > end && now < end => Some(&end),
            None if start > end && start < now => {
                tomorrow_end = end.tomorrow().ok()?;
                (now < tomorrow_end).then_some(&tomorrow_end)
            }
            None => None,
        };
        if let Some(end) = left {
            let nanos = end.timestamp().as_nanosecond() - now.timestamp().as_nanosecond();
            let left = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
            if longest.is_none_or(|longest| left > longest) {
                longest = Some(left);
            }
        }
    }
    longest
}

/// `HH:MM:SS` as Go's `15:04:05` layout reads it: one or two digits of
/// hour, two of minute and second.
pub(super) fn parse_clock(text: &str) -> Option<Time> {
    let mut parts = text.split(':');
    let (hour, minute, second) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || !(1..=2).contains(&hour.len())
        || minute.len() != 2
        || second.len() != 2
    {
        return None;
    }
    let number = |digits: &str| -> Option<i8> {
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    Time::new(number(hour)?, number(minute)?, number(second)?, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: &str) -> TimeRange {
        TimeRange {
            start: start.into(),
            end: end.into(),
        }
    }

    /// 2024-01-15 13:00:00 UTC.
    fn one_pm() -> WallTime {
        WallTime::from_unix_nanos(1_705_323_600 * 1_000_000_000)
    }

    #[test]
    fn inside_a_range_the_time_left_is_until_its_end() {
        let left = connect_window(&[range("11:00:00", "22:00:00")], "", "UTC", one_pm());
        assert_eq!(left, Some(Duration::from_secs(9 * 3600)));
        assert_eq!(
            connect_window(&[range("14:00:00", "22:00:00")], "", "UTC", one_pm()),
            None
        );
        // The longest of the ranges that hold now.
        let left = connect_window(
            &[range("12:00:00", "14:00:00"), range("10:00:00", "20:00:00")],
            "UTC",
            "",
            one_pm(),
        );
        assert_eq!(left, Some(Duration::from_secs(7 * 3600)));
        assert_eq!(connect_window(&[], "", "", one_pm()), Some(Duration::ZERO));
    }

    #[test]
    fn ranges_cross_midnight_and_zones_apply() {
        // 13:00 UTC is 08:00 in New York (winter).
        let left = connect_window(
            &[range("22:00:00", "09:00:00")],
            "America/New_York",
            "UTC",
            one_pm(),
        );
        assert_eq!(left, Some(Duration::from_secs(3600)));
        // 13:00 UTC is 22:00 in Tokyo: until 06:00 tomorrow.
        let left = connect_window(&[range("21:00:00", "06:00:00")], "", "Asia/Tokyo", one_pm());
        assert_eq!(left, Some(Duration::from_secs(8 * 3600)));
    }

    #[test]
    fn what_does_not_parse_allows_nothing() {
        assert_eq!(
            connect_window(&[range("11:00:00", "22:00:00")], "Mars/Base", "", one_pm()),
            None
        );
        for bad in ["11:00", "11:0:00", "25:00:00", "xx:00:00", "11:00:00:00"] {
            assert_eq!(
                connect_window(&[range(bad, "22:00:00")], "", "", one_pm()),
                None,
                "{bad}"
            );
        }
        assert!(connect_window(&[range("9:00:00", "22:00:00")], "", "", one_pm()).is_some());
    }
}
