//! The contract between a machine and the runtime that drives it, checked.
//!
//! Role: every driver (runtime-tokio in debug builds, the simulator, the
//! fuzzer, the tests) feeds a [`ContractCheck`] what it sees and does, and
//! the check panics with the connection and the broken rule the moment the
//! machine or the driver breaks one. Keeping it in core means all drivers
//! hold the machine to the same rules.
//!
//! The rules:
//! - a connection is accepted once, and closed (reported gone) at most once;
//! - at most one `Transmit` per connection is outstanding until the runtime
//!   takes its bytes (`take_outbound`);
//! - nothing but its own `Close` is asked for a connection after its `Close`,
//!   and `Close` comes once;
//! - no action names a connection the runtime never accepted or already
//!   reported closed.

use std::collections::BTreeMap;

use super::{Action, ConnId};

#[derive(Debug, Default, Clone, Copy)]
struct ConnState {
    transmit_outstanding: bool,
    close_seen: bool,
}

/// What one driver has seen of its machine's connections.
#[derive(Debug, Default)]
pub struct ContractCheck {
    conns: BTreeMap<ConnId, ConnState>,
}

impl ContractCheck {
    /// The runtime accepted `conn` and told the machine.
    pub fn accepted(&mut self, conn: ConnId) {
        let fresh = self.conns.insert(conn, ConnState::default()).is_none();
        assert!(fresh, "{conn}: accepted twice");
    }

    /// The machine asked for `action`.
    pub fn action(&mut self, action: &Action) {
        match *action {
            Action::Transmit(conn) => {
                let state = self.known(conn, "Transmit");
                assert!(!state.close_seen, "{conn}: Transmit after Close");
                assert!(
                    !state.transmit_outstanding,
                    "{conn}: a second Transmit before the first was served"
                );
                state.transmit_outstanding = true;
            }
            Action::CheckPassword(conn) => {
                let state = self.known(conn, "CheckPassword");
                assert!(!state.close_seen, "{conn}: CheckPassword after Close");
            }
            Action::Close { conn, .. } => {
                let state = self.known(conn, "Close");
                assert!(!state.close_seen, "{conn}: closed twice");
                state.close_seen = true;
            }
        }
    }

    /// The runtime took `conn`'s outbound bytes (serving its `Transmit`).
    pub fn taken(&mut self, conn: ConnId) {
        if let Some(state) = self.conns.get_mut(&conn) {
            state.transmit_outstanding = false;
        }
    }

    /// The runtime reported `conn` gone (`handle_closed`).
    pub fn closed(&mut self, conn: ConnId) {
        let known = self.conns.remove(&conn).is_some();
        assert!(known, "{conn}: reported closed twice, or never accepted");
    }

    /// Whether the machine has asked to close `conn`.
    pub fn close_seen(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|s| s.close_seen)
    }

    /// Connections accepted and not yet reported closed.
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    fn known(&mut self, conn: ConnId, what: &str) -> &mut ConnState {
        self.conns
            .get_mut(&conn)
            .unwrap_or_else(|| panic!("{conn}: {what} for a connection the runtime does not hold"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::CloseReason;

    #[test]
    fn a_well_behaved_sequence_passes() {
        let mut check = ContractCheck::default();
        let conn = ConnId(1);
        check.accepted(conn);
        check.action(&Action::Transmit(conn));
        check.taken(conn);
        check.action(&Action::Transmit(conn));
        check.action(&Action::Close {
            conn,
            reason: CloseReason::ClientClosed,
        });
        assert!(check.close_seen(conn));
        check.closed(conn);
        assert_eq!(check.open(), 0);
    }

    #[test]
    #[should_panic(expected = "a second Transmit")]
    fn two_outstanding_transmits_break_it() {
        let mut check = ContractCheck::default();
        check.accepted(ConnId(1));
        check.action(&Action::Transmit(ConnId(1)));
        check.action(&Action::Transmit(ConnId(1)));
    }

    #[test]
    #[should_panic(expected = "Transmit after Close")]
    fn a_transmit_after_close_breaks_it() {
        let mut check = ContractCheck::default();
        check.accepted(ConnId(1));
        check.action(&Action::Close {
            conn: ConnId(1),
            reason: CloseReason::StaleConnection,
        });
        check.action(&Action::Transmit(ConnId(1)));
    }

    #[test]
    #[should_panic(expected = "reported closed twice")]
    fn closing_twice_breaks_it() {
        let mut check = ContractCheck::default();
        check.accepted(ConnId(1));
        check.closed(ConnId(1));
        check.closed(ConnId(1));
    }
}
