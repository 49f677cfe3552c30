//! Cron patterns of message schedules (`Nats-Schedule: 0 30 * * * *`), in
//! UTC.
//!
//! Role: parse the reference's six-field form (seconds, minutes, hours,
//! day of month, month, day of week; `*`/`?`, lists, ranges, steps, month
//! and weekday names) and the `@hourly`-style aliases, and find the next
//! time a pattern matches. A day matches when both day fields do if either
//! was written with a star, else when either does (the usual cron rule).
//!
//! Invariants: a field is a bit set of its allowed values (bit 63 marks a
//! star); the next time is the earliest matching whole second after the
//! given instant, and a pattern with no match within five calendar years
//! is invalid, as the reference judges it.

use super::api::time::{civil_from_days, days_from_civil};

const STAR: u64 = 1 << 63;
const SECOND: u64 = 1_000_000_000;
const DAY: u64 = 86_400;

struct Bounds {
    min: u64,
    max: u64,
    names: &'static [&'static str],
}

const SECONDS: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const MINUTES: Bounds = SECONDS;
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DAYS: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAYS: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed pattern: one bit set per field.
pub(crate) struct Cron {
    fields: [u64; 6],
}

impl Cron {
    /// The pattern (or alias) parsed; `None` when it is not one.
    pub(crate) fn parse(pattern: &str) -> Option<Cron> {
        let pattern = match pattern {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            other => other,
        };
        let parts: Vec<&str> = pattern.split_whitespace().collect();
        let [s, m, h, dom, mon, dow] = parts.as_slice() else {
            return None;
        };
        let bounds = [&SECONDS, &MINUTES, &HOURS, &DAYS, &MONTHS, &WEEKDAYS];
        let mut fields = [0; 6];
        for (slot, (text, bounds)) in fields
            .iter_mut()
            .zip([s, m, h, dom, mon, dow].into_iter().zip(bounds))
        {
            *slot = field(text, bounds)?;
        }
        Some(Cron { fields })
    }

    /// The first matching second strictly after `after` (Unix nanoseconds),
    /// `None` when there is none within five years.
    pub(crate) fn next_after(&self, after: u64) -> Option<u64> {
        // An empty time field matches no second of any day: answer at once
        // rather than search five years of days.
        if self.fields[..3].iter().any(|&set| set & !STAR == 0) {
            return None;
        }
        let start = after / SECOND + 1;
        let first_day = start / DAY;
        let (year, _, _) = civil_from_days(first_day as i64);
        let last_day = u64::try_from(days_from_civil(year + 6, 1, 1)).ok()?;
        for day in first_day..last_day {
            let (_, month, dom) = civil_from_days(day as i64);
            if !self.day_matches(month as u64, dom as u64, (day + 4) % 7) {
                continue;
            }
            let from = if day == first_day { start % DAY } else { 0 };
            if let Some(second) = self.time_of_day(from) {
                return Some((day * DAY + second) * SECOND);
            }
        }
        None
    }

    fn day_matches(&self, month: u64, dom: u64, weekday: u64) -> bool {
        let [.., days, months, weekdays] = self.fields;
        if months & (1 << month) == 0 {
            return false;
        }
        let by_date = days & (1 << dom) != 0;
        let by_weekday = weekdays & (1 << weekday) != 0;
        if (days | weekdays) & STAR != 0 {
            by_date && by_weekday
        } else {
            by_date || by_weekday
        }
    }

    /// The earliest matching second of a day at or after `from`.
    fn time_of_day(&self, from: u64) -> Option<u64> {
        let [seconds, minutes, hours, ..] = self.fields;
        let allowed = |set: u64, v: u64| set & (1 << v) != 0;
        (from / 3600..24)
            .filter(|&h| allowed(hours, h))
            .find_map(|h| {
                (0..60).filter(|&m| allowed(minutes, m)).find_map(|m| {
                    (0..60)
                        .filter(|&s| allowed(seconds, s))
                        .map(|s| h * 3600 + m * 60 + s)
                        .find(|&t| t >= from)
                })
            })
    }
}

/// A comma-separated list of ranges (empty items are skipped).
fn field(text: &str, bounds: &Bounds) -> Option<u64> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .try_fold(0, |bits, item| Some(bits | range(item, bounds)?))
}

/// `*`, `?`, `n`, `n-m`, each optionally `/step` (`n/step` runs to the
/// maximum); a star with a step over one is no longer a star.
fn range(item: &str, bounds: &Bounds) -> Option<u64> {
    let mut steps = item.split('/');
    let span = steps.next()?;
    let step = steps.next();
    if steps.next().is_some() {
        return None;
    }
    let mut ends = span.split('-');
    let low = ends.next()?;
    let (start, mut end, mut star) = if low == "*" || low == "?" {
        (bounds.min, bounds.max, STAR)
    } else {
        let start = number(low, bounds)?;
        let end = match (ends.next(), ends.next()) {
            (None, _) => start,
            (Some(high), None) => number(high, bounds)?,
            (Some(_), Some(_)) => return None,
        };
        (start, end, 0)
    };
    let step = match step {
        None => 1,
        Some(text) => {
            let step = integer(text)?;
            if !span.contains('-') {
                end = bounds.max;
            }
            if step > 1 {
                star = 0;
            }
            step
        }
    };
    if start < bounds.min || end > bounds.max || start > end || step == 0 {
        return None;
    }
    let bits = (start..=end)
        .step_by(step as usize)
        .fold(0, |bits, v| bits | 1 << v);
    Some(bits | star)
}

/// A name of the field (case-insensitive) or a non-negative integer.
fn number(text: &str, bounds: &Bounds) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = bounds.names.iter().position(|name| *name == lower) {
        return Some(index as u64 + bounds.min);
    }
    integer(text)
}

fn integer(text: &str) -> Option<u64> {
    let value: i64 = text.parse().ok()?;
    u64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::Cron;

    const SECOND: u64 = 1_000_000_000;
    // 2027-01-15T08:00:00Z, a Friday.
    const T: u64 = 1_800_000_000 * SECOND;

    fn next(pattern: &str, after: u64) -> Option<u64> {
        Cron::parse(pattern)?.next_after(after)
    }

    #[test]
    fn next_times_follow_the_fields() {
        assert_eq!(next("* * * * * *", T), Some(T + SECOND));
        assert_eq!(next("0 * * * * *", T), Some(T + 60 * SECOND));
        assert_eq!(next("30 15 8 * * *", T), Some(T + (15 * 60 + 30) * SECOND));
        assert_eq!(next("@hourly", T), Some(T + 3600 * SECOND));
        assert_eq!(next("@daily", T), Some(T + 16 * 3600 * SECOND));
        // Saturday at midnight, by name.
        assert_eq!(next("0 0 0 * * sat", T), Some(T + 16 * 3600 * SECOND));
        // Both day fields restricted: either matches (the 16th is Saturday too).
        assert_eq!(next("0 0 0 20 * 6", T), Some(T + 16 * 3600 * SECOND));
        assert_eq!(next("*/20 * * * * *", T + SECOND), Some(T + 20 * SECOND));
    }

    #[test]
    fn malformed_or_impossible_patterns_are_refused() {
        for bad in [
            "* * * * *",
            "60 * * * * *",
            "5-1 * * * * *",
            "*/0 * * * * *",
            "1-2-3 * * * * *",
            "x * * * * *",
        ] {
            assert!(Cron::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(next("0 0 0 30 2 *", T), None, "February 30th never comes");
    }
}
