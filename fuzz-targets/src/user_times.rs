//! A user JWT's connect times (`rnats_core::auth::times::connect_window`):
//! `HH:MM:SS` ranges and a time zone name, as a JWT carries them.
//!
//! Input: 8 bytes of wall clock (seconds, little endian), then up to four
//! ranges' start and end and the zone name, split at NUL (`start`, `end`,
//! `start`, `end`, ..., then the zone last when the count of parts is odd).
//!
//! Checked: no panic for any input; a window, when given, ends within a
//! day and a DST hour of now (a range ends today or tomorrow); no ranges
//! means no limit.

use std::time::Duration;

use rnats_core::auth::jwt::TimeRange;
use rnats_core::auth::times::connect_window;
use rnats_core::time::WallTime;

pub fn run(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (clock, rest) = data.split_at(8);
    let seconds = u64::from_le_bytes(clock.try_into().expect("8 bytes")) % (1 << 34);
    let now = WallTime::from_unix_nanos(seconds * 1_000_000_000);
    let text = String::from_utf8_lossy(rest);
    let parts: Vec<&str> = text.split('\0').take(9).collect();
    let (pairs, zone) = if parts.len() % 2 == 1 {
        (&parts[..parts.len() - 1], parts[parts.len() - 1])
    } else {
        (&parts[..], "")
    };
    let times: Vec<TimeRange> = pairs
        .chunks(2)
        .map(|pair| TimeRange {
            start: pair[0].to_owned(),
            end: pair[1].to_owned(),
        })
        .collect();
    let window = connect_window(&times, zone, "Europe/Berlin", now);
    if times.is_empty() {
        assert_eq!(window, Some(Duration::ZERO));
    }
    if let Some(left) = window {
        assert!(left <= Duration::from_secs(25 * 3600), "{left:?}");
    }
}
