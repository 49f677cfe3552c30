//! Message schedules (`allow_msg_schedules`): a message carrying
//! `Nats-Schedule` is held on its own subject and, when due, the stream
//! stores a message made from it on `Nats-Schedule-Target`.
//!
//! Role: the reference's publish-time checks of the schedule headers
//! ([`check`]), the table of live schedules ([`Schedules`]) and the
//! message a due schedule produces ([`produce`]). The stream calls in from
//! its publish path and its timer; time comes from the runtime (`now`).
//!
//! Patterns: `@at <RFC 3339>` (fires once; the produced message carries
//! `Nats-Schedule-Next: purge`, which removes the schedule) and
//! `@every <Go duration>` (at least a second; the produced message carries
//! the next time, which re-arms the schedule when stored), and cron
//! patterns ([`super::cron`], repeating like `@every`). Time zones other
//! than `UTC` are not built yet (no zone database): they are refused as the
//! reference refuses unknown ones, never stored and ignored.
//!
//! Invariants: `due` holds exactly one `(at, seq)` per armed schedule in
//! `by_subject`; a fired schedule stays in `by_subject` unarmed until the
//! message it produced re-arms it (repeating) or purges it (once), so a
//! schedule whose message was refused does not fire again in a loop.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::errors::ApiErrorKind as K;
use crate::protocol::find_header;
use crate::subject::{is_valid_publish_subject, subjects_collide};
use crate::time::WallTime;

const PATTERN: &[u8] = b"Nats-Schedule";
const TIME_ZONE: &[u8] = b"Nats-Schedule-Time-Zone";
const TTL: &[u8] = b"Nats-Schedule-TTL";
const ROLLUP: &[u8] = b"Nats-Schedule-Rollup";
const TARGET: &[u8] = b"Nats-Schedule-Target";
const SOURCE: &[u8] = b"Nats-Schedule-Source";
const SCHEDULER: &[u8] = b"Nats-Scheduler";
const NEXT: &[u8] = b"Nats-Schedule-Next";
const PURGE: &[u8] = b"purge";
const SECOND: u64 = 1_000_000_000;
const MIN_DELAY: u64 = SECOND / 4;

/// When a schedule message next fires, and whether it repeats; `None` for
/// a message without a pattern. `ts` is when it was stored (or last due).
fn next_fire(headers: &[u8], ts: WallTime, now: WallTime) -> Result<Option<(WallTime, bool)>, K> {
    let zoned = match find_header(headers, TIME_ZONE) {
        None => false,
        // Without a zone database only UTC is known.
        Some(b"UTC") => true,
        Some(_) => return Err(K::MessageSchedulesTimeZoneInvalid),
    };
    let Some(pattern) = find_header(headers, PATTERN).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let pattern = std::str::from_utf8(pattern).map_err(|_| K::MessageSchedulesPatternInvalid)?;
    let invalid = K::MessageSchedulesPatternInvalid;
    if let Some(at) = pattern.strip_prefix("@at ") {
        if zoned {
            return Err(invalid);
        }
        let nanos = super::api::time::parse_rfc3339(at).map_err(|_| invalid)?;
        return Ok(Some((WallTime(nanos.unwrap_or(0)), false)));
    }
    if let Some(every) = pattern.strip_prefix("@every ") {
        let nanos = crate::conf::value::parse_go_duration(every).map_err(|_| invalid)?;
        let nanos = u64::try_from(nanos).map_err(|_| invalid)?;
        if zoned || nanos < SECOND {
            return Err(invalid);
        }
        // From the last time rounded to the second; a schedule that fell
        // behind (a restart) fires once, from now.
        let round = |t: WallTime| (t.0 + SECOND / 2) / SECOND * SECOND;
        let mut next = round(ts).saturating_add(nanos);
        if next < now.0 {
            next = round(now).saturating_add(nanos);
        }
        return Ok(Some((WallTime(next), true)));
    }
    let cron = super::cron::Cron::parse(pattern).ok_or(invalid)?;
    let mut next = cron.next_after(ts.0).ok_or(invalid)?;
    if next < now.0 {
        // Fell behind (a restart): fire once, at the next match from now.
        let round = (now.0 + SECOND / 2) / SECOND * SECOND;
        next = cron.next_after(round).ok_or(invalid)?;
    }
    Ok(Some((WallTime(next), true)))
}

/// The stream facts [`check`] needs.
pub(crate) struct Context<'a> {
    pub allowed: bool,
    pub allow_ttl: bool,
    pub subjects: &'a [String],
    pub now: WallTime,
}

/// The reference's checks of a published message's schedule headers, in
/// its order. A schedule gets `Nats-Rollup: sub` (it replaces the previous
/// schedule on its subject): the new header block is returned then.
/// `last_on` gives the headers of a subject's last message, if any.
pub(crate) fn check(
    headers: &[u8],
    subject: &[u8],
    cx: &Context<'_>,
    last_on: impl FnOnce(&[u8]) -> Option<Bytes>,
) -> Result<Option<Vec<u8>>, K> {
    if headers.is_empty() {
        return Ok(None);
    }
    let gate = |kind: K| {
        if cx.allowed {
            kind
        } else {
            K::MessageSchedulesDisabled
        }
    };
    let mut added = None;
    match next_fire(headers, cx.now, cx.now) {
        Err(kind) => return Err(gate(kind)),
        Ok(None) => {}
        Ok(Some(_)) => {
            if !cx.allowed {
                return Err(K::MessageSchedulesDisabled);
            }
            let ttl = find_header(headers, TTL).filter(|t| !t.is_empty());
            if ttl.is_some_and(|t| super::stream::parse_ttl(t).is_none()) {
                return Err(K::MessageSchedulesTTLInvalid);
            }
            if find_header(headers, ROLLUP).is_some_and(|r| !r.is_empty() && r != b"sub") {
                return Err(K::MessageSchedulesRollupInvalid);
            }
            if ttl.is_some() && !cx.allow_ttl {
                return Err(K::MessageTTLDisabled);
            }
            let target = find_header(headers, TARGET).unwrap_or_default();
            if target.is_empty() || !is_valid_publish_subject(target) || target == subject {
                return Err(K::MessageSchedulesTargetInvalid);
            }
            let source = find_header(headers, SOURCE).unwrap_or_default();
            if !source.is_empty()
                && (source == target || source == subject || !is_valid_publish_subject(source))
            {
                return Err(K::MessageSchedulesSourceInvalid);
            }
            let in_stream = |s: &[u8]| {
                let s = String::from_utf8_lossy(s);
                cx.subjects.iter().any(|own| subjects_collide(own, &s))
            };
            if !in_stream(target) {
                return Err(K::MessageSchedulesTargetInvalid);
            }
            if !source.is_empty() && !in_stream(source) {
                return Err(K::MessageSchedulesSourceInvalid);
            }
            match find_header(headers, b"Nats-Rollup") {
                None | Some(b"") => {
                    added = Some(with_lines(headers, |_| true, &[(b"Nats-Rollup", b"sub")]))
                }
                Some(b"sub") => {}
                Some(_) => return Err(K::MessageSchedulesRollupInvalid),
            }
        }
    }
    let scheduler = find_header(headers, SCHEDULER).filter(|s| !s.is_empty());
    match find_header(headers, NEXT).filter(|n| !n.is_empty()) {
        Some(next) => {
            if next != PURGE {
                return Err(K::MessageSchedulesSchedulerInvalid);
            }
            let Some(scheduler) =
                scheduler.filter(|s| *s != subject && is_valid_publish_subject(s))
            else {
                return Err(K::MessageSchedulesSchedulerInvalid);
            };
            if !cx.allowed {
                return Err(K::MessageSchedulesDisabled);
            }
            // Only a schedule may be purged this way (an empty subject is
            // let through, as the reference does).
            if last_on(scheduler)
                .is_some_and(|h| find_header(&h, PATTERN).is_none_or(<[u8]>::is_empty))
            {
                return Err(K::MessageSchedulesSchedulerInvalid);
            }
        }
        None if scheduler.is_some() => return Err(K::MessageSchedulesSchedulerInvalid),
        None => {}
    }
    Ok(added)
}

/// The subject whose schedule a stored message purges
/// (`Nats-Schedule-Next: purge` with `Nats-Scheduler`).
pub(crate) fn purges(headers: &[u8]) -> Option<&[u8]> {
    if find_header(headers, NEXT) != Some(PURGE) {
        return None;
    }
    find_header(headers, SCHEDULER).filter(|s| !s.is_empty())
}

/// The live schedules of one stream.
#[derive(Debug, Default)]
pub(crate) struct Schedules {
    /// Subject → (sequence of its schedule message, when it fires).
    by_subject: BTreeMap<Bytes, (u64, WallTime)>,
    /// Armed schedules by time.
    due: BTreeSet<(WallTime, u64)>,
}

impl Schedules {
    fn arm(&mut self, subject: &[u8], seq: u64, at: WallTime) {
        self.disarm(subject);
        self.by_subject
            .insert(Bytes::copy_from_slice(subject), (seq, at));
        self.due.insert((at, seq));
    }

    /// Forget `subject`'s schedule.
    pub(crate) fn remove(&mut self, subject: &[u8]) {
        self.disarm(subject);
        self.by_subject.remove(subject);
    }

    fn disarm(&mut self, subject: &[u8]) {
        if let Some(&(seq, at)) = self.by_subject.get(subject) {
            self.due.remove(&(at, seq));
        }
    }

    /// A message was stored at `seq` on `subject`: it may start a schedule,
    /// replace one, or (produced by a repeating one) re-arm its scheduler.
    pub(crate) fn stored(&mut self, seq: u64, subject: &[u8], headers: &[u8], now: WallTime) {
        match next_fire(headers, now, now) {
            // The reference's timer never fires sooner than this after a
            // schedule is stored (a time already past included), so a
            // publish right behind it is stored first there too.
            Ok(Some((at, _))) => self.arm(subject, seq, at.max(WallTime(now.0 + MIN_DELAY))),
            _ if find_header(headers, SCHEDULER).is_none_or(<[u8]>::is_empty) => {
                self.remove(subject)
            }
            _ => {}
        }
        let next = find_header(headers, NEXT).filter(|n| !n.is_empty() && *n != PURGE);
        let scheduler = find_header(headers, SCHEDULER).filter(|s| !s.is_empty());
        if let (Some(next), Some(scheduler)) = (next, scheduler) {
            let parsed = std::str::from_utf8(next)
                .ok()
                .and_then(|t| super::api::time::parse_rfc3339(t).ok());
            if let (Some(at), Some(&(seq, _))) = (parsed, self.by_subject.get(scheduler)) {
                self.arm(scheduler, seq, WallTime(at.unwrap_or(0)));
            }
        }
    }

    /// Forget the schedule stored at `seq` (its message is gone: purged,
    /// deleted or aged out). Rare, so a scan is fine.
    pub(crate) fn forget(&mut self, seq: u64) {
        self.by_subject.retain(|_, &mut (s, _)| s != seq);
    }

    /// The earliest armed schedule.
    pub(crate) fn next(&self) -> Option<WallTime> {
        self.due.first().map(|&(at, _)| at)
    }

    /// Disarm and return the schedules due at `now`: `(seq, when due)`.
    pub(crate) fn take_due(&mut self, now: WallTime) -> Vec<(u64, WallTime)> {
        let mut taken = Vec::new();
        while let Some(&(at, seq)) = self.due.first().filter(|(at, _)| *at <= now) {
            self.due.pop_first();
            taken.push((seq, at));
        }
        debug_assert!(self.due.len() <= self.by_subject.len());
        taken
    }
}

/// A message a due schedule produces.
pub(crate) struct Produced {
    pub target: Bytes,
    pub headers: Vec<u8>,
    pub payload: Bytes,
}

/// What the schedule stored as `(subject, headers, payload)`, due at `at`,
/// produces; `None` when it is no longer a valid schedule (it is dropped).
/// `source` is the last message on `Nats-Schedule-Source`, if any: its
/// headers and payload are sent instead of the schedule's own.
pub(crate) fn produce(
    subject: &[u8],
    headers: &[u8],
    payload: &Bytes,
    source: Option<(Bytes, Bytes)>,
    at: WallTime,
    now: WallTime,
) -> Option<Produced> {
    let (next, repeats) = next_fire(headers, at, now).ok()??;
    let ttl = find_header(headers, TTL).unwrap_or_default();
    if !ttl.is_empty() && super::stream::parse_ttl(ttl).is_none() {
        return None;
    }
    let target = find_header(headers, TARGET).filter(|t| !t.is_empty())?;
    let rollup = find_header(headers, ROLLUP).unwrap_or_default();
    let (body_headers, body) = match &source {
        Some((h, p)) => (&h[..], p.clone()),
        None => (headers, payload.clone()),
    };
    let next = if repeats {
        crate::format::rfc3339_nanos(next).into_bytes()
    } else {
        PURGE.to_vec()
    };
    let mut lines: Vec<(&[u8], &[u8])> = vec![(SCHEDULER, subject), (NEXT, &next)];
    if !ttl.is_empty() {
        lines.push((b"Nats-TTL", ttl));
    }
    if !rollup.is_empty() {
        lines.push((b"Nats-Rollup", rollup));
    }
    let kept = |key: &[u8]| {
        !key.starts_with(PATTERN)
            && !key.starts_with(b"Nats-Expected-")
            && !matches!(key, b"Nats-Msg-Id" | b"Nats-TTL" | b"Nats-Rollup")
    };
    Some(Produced {
        target: Bytes::copy_from_slice(target),
        headers: with_lines(body_headers, kept, &lines),
        payload: body,
    })
}

/// `headers` keeping the lines whose key `keep` accepts, then `added`.
fn with_lines(headers: &[u8], keep: impl Fn(&[u8]) -> bool, added: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() + 64);
    let mut lines = headers.split_inclusive(|&b| b == b'\n');
    match lines.next() {
        Some(status) if !headers.is_empty() => out.extend_from_slice(status),
        _ => out.extend_from_slice(b"NATS/1.0\r\n"),
    }
    for line in lines {
        if line == b"\r\n" {
            continue;
        }
        let key = line.split(|&b| b == b':').next().unwrap_or_default();
        if keep(key) {
            out.extend_from_slice(line);
        }
    }
    for (key, value) in added {
        out.extend_from_slice(key);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Rebuild the table from the last message of each subject (a schedule is
/// always its subject's last: it rolls up the subject).
pub(crate) fn recovered(
    last: impl Iterator<Item = (u64, Bytes, Bytes, WallTime)>,
    now: WallTime,
) -> Schedules {
    let mut schedules = Schedules::default();
    for (seq, subject, headers, ts) in last {
        if let Ok(Some((at, _))) = next_fire(&headers, ts, now) {
            schedules.arm(&subject, seq, at);
        }
    }
    schedules
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: WallTime = WallTime(1_800_000_000 * SECOND + 300_000_000);

    fn h(lines: &str) -> Vec<u8> {
        format!("NATS/1.0\r\n{lines}\r\n").into_bytes()
    }

    #[test]
    fn at_and_every_fire_when_the_reference_fires_them() {
        let at = next_fire(
            &h("Nats-Schedule: @at 2027-01-15T09:00:00.5+01:00\r\n"),
            NOW,
            NOW,
        );
        assert_eq!(
            at,
            Ok(Some((
                WallTime(1_800_000_000 * SECOND + 500_000_000),
                false
            )))
        );
        let every = next_fire(&h("Nats-Schedule: @every 5s\r\n"), NOW, NOW).unwrap();
        assert_eq!(every, Some((WallTime(1_800_000_005 * SECOND), true)));
        let cron = next_fire(&h("Nats-Schedule: 0 * * * * *\r\n"), NOW, NOW).unwrap();
        assert_eq!(cron, Some((WallTime(1_800_000_060 * SECOND), true)));
        for bad in ["@every 500ms", "@at soon", "0 * * * *"] {
            let got = next_fire(&h(&format!("Nats-Schedule: {bad}\r\n")), NOW, NOW);
            assert_eq!(got, Err(K::MessageSchedulesPatternInvalid), "{bad}");
        }
        let zoned = h("Nats-Schedule: @every 5s\r\nNats-Schedule-Time-Zone:\r\n");
        assert_eq!(
            next_fire(&zoned, NOW, NOW),
            Err(K::MessageSchedulesTimeZoneInvalid)
        );
    }

    #[test]
    fn a_due_schedule_stays_unarmed_until_its_message_rearms_it() {
        let mut s = Schedules::default();
        s.stored(1, b"s.a", &h("Nats-Schedule: @every 2s\r\n"), NOW);
        let due = s.take_due(WallTime(NOW.0 + 3 * SECOND));
        assert_eq!(due.len(), 1);
        assert_eq!(s.next(), None, "unarmed while its message is stored");
        let produced = produce(
            b"s.a",
            &h("Nats-Schedule: @every 2s\r\nNats-Schedule-Target: s.t\r\nFoo: 1\r\n"),
            &Bytes::new(),
            None,
            due[0].1,
            WallTime(NOW.0 + 3 * SECOND),
        )
        .unwrap();
        let text = String::from_utf8(produced.headers.clone()).unwrap();
        assert!(
            text.starts_with("NATS/1.0\r\nFoo: 1\r\nNats-Scheduler: s.a\r\nNats-Schedule-Next: "),
            "{text}"
        );
        s.stored(2, b"s.t", &produced.headers, WallTime(NOW.0 + 3 * SECOND));
        assert!(s.next().is_some(), "re-armed by the produced message");
    }
}
