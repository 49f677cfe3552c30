//! A connection's compiled permissions: may it publish here, subscribe there,
//! receive this message?
//!
//! Allow and deny lists become small Sublists, so a check is one trie match
//! (cached) however long the lists are. The semantics are the reference's:
//! - No allow list means everything not denied is allowed; deny wins over allow.
//! - A subscription's subject is matched as written, its wildcards taken as
//!   tokens, so `SUB foo.*` is allowed by `foo.*` or `foo.>` but not by
//!   `foo.bar` (and, as in the reference, `SUB foo.>` is allowed by `foo.*`).
//! - A queue entry (`"foo.> workers"`) allows or denies that queue only; in
//!   the allow list, a plain entry for the subject allows every queue.
//! - Deny entries also filter deliveries: a wildcard (or queue) subscription
//!   allowed as a whole still does not receive messages on a denied subject.
//! - `allow_responses` lets a client publish to reply subjects of messages it
//!   received, each at most `max_msgs` times within `expires`
//!   ([`ResponseTracker`]).
//!
//! Invariant: the response tracker holds at most `MAX_TRACKED_REPLIES`
//! entries, so a flood of requests cannot grow a client's memory unbounded.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Permissions, ResponsePermission, SubjectPermission};
use crate::subject::{is_valid_subscribe_subject, Sublist};
use crate::time::Instant;

/// Reply subjects tracked per client before the oldest are forgotten.
const MAX_TRACKED_REPLIES: usize = 16 * 1024;
/// Prune used-up and expired entries once the tracker holds this many.
const PRUNE_THRESHOLD: usize = 4 * 1024;

/// One list (allow or deny) as a Sublist; the values are entry numbers.
#[derive(Debug, Default)]
struct SubjectList {
    list: Sublist<u32>,
    /// The valid entries as configured, in order (for `$SYS.REQ.USER.INFO`).
    entries: Vec<String>,
}

impl SubjectList {
    /// Entries that are not valid subjects are left out (the reference logs
    /// and skips them; config loading already refused them).
    fn new(entries: &[String], with_queues: bool) -> Self {
        let mut list = Sublist::with_cache_capacity(64);
        let mut kept = Vec::new();
        for (n, entry) in entries.iter().enumerate() {
            let (subject, queue) = if with_queues {
                split_subject_queue(entry)
            } else {
                (entry.trim(), None)
            };
            if !is_valid_subscribe_subject(subject.as_bytes()) {
                continue;
            }
            // A duplicate entry is harmless.
            let _ = list.insert(subject.as_bytes(), queue.map(str::as_bytes), n as u32);
            kept.push(match queue {
                Some(queue) => format!("{subject} {queue}"),
                None => subject.to_owned(),
            });
        }
        SubjectList {
            list,
            entries: kept,
        }
    }

    fn matches_plain(&mut self, subject: &[u8]) -> bool {
        !self.list.matches(subject).plain.is_empty()
    }

    /// (a plain entry matched, the named queue matched a queue entry,
    /// any queue entry matched)
    fn matches_with_queue(&mut self, subject: &[u8], queue: Option<&[u8]>) -> (bool, bool, bool) {
        let result = self.list.matches(subject);
        let queue_entries = !result.queues.is_empty();
        let queue_named = queue.is_some_and(|queue| {
            result
                .queues
                .iter()
                .any(|group| group.name.as_ref() == queue)
        });
        (!result.plain.is_empty(), queue_named, queue_entries)
    }
}

/// `"subject queue"` → (subject, Some(queue)); `"subject"` → (subject, None).
fn split_subject_queue(entry: &str) -> (&str, Option<&str>) {
    let mut fields = entry.split_whitespace();
    let subject = fields.next().unwrap_or("");
    (subject, fields.next())
}

/// The compiled permissions of one connection.
#[derive(Debug, Default)]
pub struct PermissionChecker {
    pub_allow: Option<SubjectList>,
    pub_deny: Option<SubjectList>,
    sub_allow: Option<SubjectList>,
    sub_deny: Option<SubjectList>,
    response: Option<ResponsePermission>,
}

impl PermissionChecker {
    pub fn new(permissions: &Permissions) -> Self {
        let (pub_allow, pub_deny) = lists(permissions.publish.as_ref(), false);
        let (sub_allow, sub_deny) = lists(permissions.subscribe.as_ref(), true);
        // An empty subscribe allow list is no list at all in the reference.
        let sub_allow = sub_allow.filter(|list| !list.list.is_empty());
        PermissionChecker {
            pub_allow,
            pub_deny,
            sub_allow,
            sub_deny,
            response: permissions.response,
        }
    }

    /// Whether publishing to `subject` is allowed by the static lists
    /// (responses are checked separately).
    pub fn may_publish(&mut self, subject: &[u8]) -> bool {
        if let Some(allow) = &mut self.pub_allow {
            if !allow.matches_plain(subject) {
                return false;
            }
        }
        if let Some(deny) = &mut self.pub_deny {
            if deny.matches_plain(subject) {
                return false;
            }
        }
        true
    }

    pub fn restricts_publish(&self) -> bool {
        self.pub_allow.is_some() || self.pub_deny.is_some()
    }

    /// Whether `SUB subject [queue]` is allowed.
    pub fn may_subscribe(&mut self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        let mut allowed = true;
        if let Some(allow) = &mut self.sub_allow {
            let (plain, queue_named, queue_entries) = allow.matches_with_queue(subject, queue);
            allowed = plain;
            if queue.is_some() && queue_entries {
                // A queue named in the allow list allows it.
                allowed = queue_named;
            }
        }
        if allowed {
            if let Some(deny) = &mut self.sub_deny {
                let (plain, queue_named, _) = deny.matches_with_queue(subject, queue);
                allowed = !plain && !queue_named;
            }
        }
        allowed
    }

    /// Whether a message on `subject` may be delivered to a subscription
    /// made on `sub_subject` (in `queue`): the deny list filters messages a
    /// broader wildcard subscription would otherwise receive.
    pub fn may_receive(
        &mut self,
        sub_subject: &[u8],
        queue: Option<&[u8]>,
        subject: &[u8],
    ) -> bool {
        let Some(deny) = &mut self.sub_deny else {
            return true;
        };
        let has_wildcard = sub_subject
            .split(|&b| b == b'.')
            .any(|token| token == b"*" || token == b">");
        if !has_wildcard && queue.is_none() {
            // A literal subscription was checked when it was made.
            return true;
        }
        let (plain, queue_named, _) = deny.matches_with_queue(subject, queue);
        !plain && !queue_named
    }

    /// `allow_responses`, if granted.
    pub fn response_permission(&self) -> Option<ResponsePermission> {
        self.response
    }

    /// The lists in force, as a client may see them (`$SYS.REQ.USER.INFO`):
    /// entries that were skipped as invalid are not shown.
    pub fn describe(&self) -> Permissions {
        let side = |allow: &Option<SubjectList>, deny: &Option<SubjectList>| SubjectPermission {
            allow: allow.as_ref().map(|list| list.entries.clone()),
            deny: deny
                .as_ref()
                .map(|list| list.entries.clone())
                .unwrap_or_default(),
        };
        Permissions {
            publish: Some(side(&self.pub_allow, &self.pub_deny)),
            subscribe: Some(side(&self.sub_allow, &self.sub_deny)),
            response: self.response,
        }
    }
}

fn lists(
    permission: Option<&SubjectPermission>,
    with_queues: bool,
) -> (Option<SubjectList>, Option<SubjectList>) {
    let Some(permission) = permission else {
        return (None, None);
    };
    let allow = permission
        .allow
        .as_ref()
        .map(|entries| SubjectList::new(entries, with_queues));
    let deny =
        (!permission.deny.is_empty()).then(|| SubjectList::new(&permission.deny, with_queues));
    (allow, deny)
}

/// Reply subjects a client with `allow_responses` may publish to.
#[derive(Debug, Default)]
pub struct ResponseTracker {
    replies: BTreeMap<Bytes, TrackedReply>,
}

#[derive(Debug, Clone, Copy)]
struct TrackedReply {
    received_at: Instant,
    used: u64,
}

impl ResponseTracker {
    /// The client received a message asking for replies on `reply`.
    pub fn track(&mut self, reply: &[u8], now: Instant, permission: ResponsePermission) {
        if self.replies.len() >= PRUNE_THRESHOLD {
            self.prune(now, permission);
        }
        if self.replies.len() >= MAX_TRACKED_REPLIES {
            // Still full of live entries: forget the oldest.
            if let Some(oldest) = self
                .replies
                .iter()
                .min_by_key(|(_, entry)| entry.received_at)
                .map(|(key, _)| key.clone())
            {
                self.replies.remove(&oldest);
            }
        }
        self.replies.insert(
            Bytes::copy_from_slice(reply),
            TrackedReply {
                received_at: now,
                used: 0,
            },
        );
        assert!(self.replies.len() <= MAX_TRACKED_REPLIES);
    }

    /// Whether publishing to `subject` answers a tracked request; counts the use.
    pub fn allow(&mut self, subject: &[u8], now: Instant, permission: ResponsePermission) -> bool {
        let Some(entry) = self.replies.get_mut(subject) else {
            return false;
        };
        entry.used += 1;
        let expired = now.saturating_duration_since(entry.received_at) > permission.expires;
        if entry.used > permission.max_msgs || expired {
            self.replies.remove(subject);
            return false;
        }
        true
    }

    pub fn len(&self) -> usize {
        self.replies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    fn prune(&mut self, now: Instant, permission: ResponsePermission) {
        self.replies.retain(|_, entry| {
            entry.used < permission.max_msgs
                && now.saturating_duration_since(entry.received_at) <= permission.expires
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn checker(
        publish: Option<(&[&str], &[&str])>,
        subscribe: Option<(&[&str], &[&str])>,
    ) -> PermissionChecker {
        let to_permission = |(allow, deny): (&[&str], &[&str])| SubjectPermission {
            allow: (!allow.is_empty()).then(|| allow.iter().map(|s| s.to_string()).collect()),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        };
        PermissionChecker::new(&Permissions {
            publish: publish.map(to_permission),
            subscribe: subscribe.map(to_permission),
            response: None,
        })
    }

    #[test]
    fn publish_allow_then_deny() {
        let mut p = checker(Some((&["foo.>", "bar"], &["foo.secret"])), None);
        assert!(p.may_publish(b"foo.a"));
        assert!(p.may_publish(b"bar"));
        assert!(!p.may_publish(b"baz"));
        assert!(!p.may_publish(b"foo.secret"));
        let mut open = checker(None, None);
        assert!(open.may_publish(b"anything"));
        assert!(!open.restricts_publish());
    }

    #[test]
    fn subscribe_subjects_are_matched_as_written() {
        let mut p = checker(None, Some((&["foo.*", "bar.>"], &[])));
        assert!(p.may_subscribe(b"foo.*", None));
        assert!(p.may_subscribe(b"foo.x", None));
        // As in the reference, a `>` token is matched like any token, so the
        // `*` entry admits it (checked against nats-server 2.15.1).
        assert!(p.may_subscribe(b"foo.>", None));
        assert!(!p.may_subscribe(b"foo.a.b", None));
        assert!(p.may_subscribe(b"bar.*.z", None));
        assert!(!p.may_subscribe(b">", None));
    }

    #[test]
    fn queue_entries_allow_and_deny_that_queue_only() {
        let mut p = checker(None, Some((&["jobs.> workers"], &[])));
        assert!(p.may_subscribe(b"jobs.a", Some(b"workers")));
        assert!(!p.may_subscribe(b"jobs.a", Some(b"others")));
        assert!(!p.may_subscribe(b"jobs.a", None));
        let mut p = checker(None, Some((&[], &["jobs.* spies"])));
        assert!(p.may_subscribe(b"jobs.a", None));
        assert!(!p.may_subscribe(b"jobs.a", Some(b"spies")));
        assert!(p.may_subscribe(b"jobs.a", Some(b"workers")));
    }

    #[test]
    fn deny_filters_deliveries_to_wildcard_subscriptions() {
        let mut p = checker(None, Some((&[], &["foo.secret"])));
        assert!(p.may_subscribe(b"foo.*", None));
        assert!(!p.may_subscribe(b"foo.secret", None));
        assert!(!p.may_receive(b"foo.*", None, b"foo.secret"));
        assert!(p.may_receive(b"foo.*", None, b"foo.public"));
    }

    #[test]
    fn responses_are_allowed_max_times_within_expiry() {
        let permission = ResponsePermission {
            max_msgs: 2,
            expires: Duration::from_secs(1),
        };
        let mut tracker = ResponseTracker::default();
        let t0 = Instant::from_nanos(0);
        tracker.track(b"_INBOX.1", t0, permission);
        assert!(tracker.allow(b"_INBOX.1", t0, permission));
        assert!(tracker.allow(b"_INBOX.1", t0, permission));
        assert!(!tracker.allow(b"_INBOX.1", t0, permission));
        tracker.track(b"_INBOX.2", t0, permission);
        assert!(!tracker.allow(b"_INBOX.2", t0 + Duration::from_secs(2), permission));
        assert!(!tracker.allow(b"_INBOX.3", t0, permission));
    }

    #[test]
    fn the_tracker_is_bounded() {
        let permission = ResponsePermission {
            max_msgs: 1,
            expires: Duration::from_secs(3600),
        };
        let mut tracker = ResponseTracker::default();
        for n in 0..(MAX_TRACKED_REPLIES + 100) {
            tracker.track(
                format!("r.{n}").as_bytes(),
                Instant::from_nanos(n as u64),
                permission,
            );
        }
        assert_eq!(tracker.len(), MAX_TRACKED_REPLIES);
    }
}
