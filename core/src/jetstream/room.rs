//! What the server's and the account's storage limits leave a publish.
//!
//! Role: the machine, which counts every stream's bytes, hands a stream a
//! [`Room`] with each publish; the stream judges it at the point of its
//! publish checks where the reference does (after the header checks and
//! `max_msg_size`, before a bad `Nats-TTL` and the stream's own limits).
//!
//! The two limits are judged differently, as in the reference:
//! - the server's (`max_memory_store` / `max_file_store`) refuses only once
//!   what is held is already over it: the message that crosses it is
//!   stored, the next is refused "insufficient resources" (10023);
//! - the account's (`max_mem` / `max_file`) refuses a message that would
//!   take what is held over it: "resource limits exceeded for account"
//!   (10002).
//!
//! A restore asks another question, whether a whole snapshot fits both
//! limits ([`Room::holds`]).

use super::stream::PublishError;

/// Bytes held against one limit, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub used: u64,
    pub max: u64,
}

/// The server's and the account's use of one storage type, with their
/// limits, as they stood when the publish was handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub server: Held,
    /// `None`: the account has no limit for this storage.
    pub account: Option<Held>,
}

impl Room {
    /// No limit anywhere.
    pub const UNLIMITED: Room = Room {
        server: Held {
            used: 0,
            max: u64::MAX,
        },
        account: None,
    };

    /// Whether a publish of a message of `size` bytes (as the stream's
    /// store counts it) is refused by either limit; the server's is
    /// judged first.
    pub fn check(&self, size: u64) -> Result<(), PublishError> {
        if self.server.used > self.server.max {
            return Err(PublishError::InsufficientResources);
        }
        match self.account {
            Some(held) if held.used.saturating_add(size) > held.max => {
                Err(PublishError::AccountResources)
            }
            _ => Ok(()),
        }
    }

    /// Whether `size` more bytes fit under both limits (a restore).
    pub fn holds(&self, size: u64) -> bool {
        [Some(self.server), self.account]
            .into_iter()
            .flatten()
            .all(|held| held.used.saturating_add(size) <= held.max)
    }

    /// This room after the stream it was handed to went from holding
    /// `before` bytes to `now` (an atomic batch's earlier messages stored,
    /// a roll-up's removals): the server and the account hold the same
    /// difference.
    pub fn after(self, before: u64, now: u64) -> Room {
        let moved = |held: Held| Held {
            used: held.used.saturating_add(now).saturating_sub(before),
            max: held.max,
        };
        Room {
            server: moved(self.server),
            account: self.account.map(moved),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(server: (u64, u64), account: Option<(u64, u64)>) -> Room {
        let held = |(used, max)| Held { used, max };
        Room {
            server: held(server),
            account: account.map(held),
        }
    }

    #[test]
    fn the_server_limit_refuses_only_once_crossed() {
        // At the limit, and a message that takes it over: stored.
        assert_eq!(room((300, 300), None).check(119), Ok(()));
        assert_eq!(room((299, 300), None).check(119), Ok(()));
        // Over it: refused, whatever the size.
        assert_eq!(
            room((301, 300), None).check(1),
            Err(PublishError::InsufficientResources)
        );
    }

    #[test]
    fn the_account_limit_refuses_what_would_cross_it() {
        assert_eq!(room((0, u64::MAX), Some((181, 300))).check(119), Ok(()));
        assert_eq!(
            room((0, u64::MAX), Some((182, 300))).check(119),
            Err(PublishError::AccountResources)
        );
        // A zero limit refuses everything.
        assert_eq!(
            room((0, u64::MAX), Some((0, 0))).check(1),
            Err(PublishError::AccountResources)
        );
    }

    #[test]
    fn the_server_is_judged_before_the_account() {
        assert_eq!(
            room((301, 300), Some((300, 300))).check(10),
            Err(PublishError::InsufficientResources)
        );
    }

    #[test]
    fn a_restore_must_fit_whole() {
        assert!(room((100, 300), Some((100, 300))).holds(200));
        assert!(!room((101, 300), None).holds(200));
        assert!(!room((0, 300), Some((101, 300))).holds(200));
        assert!(Room::UNLIMITED.holds(u64::MAX));
    }

    #[test]
    fn a_room_follows_what_the_stream_stored_since() {
        let before = room((250, 300), Some((250, 400)));
        let grown = before.after(1000, 1060);
        assert_eq!(grown, room((310, 300), Some((310, 400))));
        assert_eq!(grown.check(1), Err(PublishError::InsufficientResources));
        // Removals (a roll-up) give room back.
        assert_eq!(before.after(1000, 900), room((150, 300), Some((150, 400))));
    }
}
