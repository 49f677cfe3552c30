//! A read-only view of the server's parts, for whoever reports on them.
//!
//! Role: monitoring pages and `$SYS` replies are built from a [`View`], not
//! from the step driver, so `monitor/` depends on the parts it reads
//! (connections, accounts, config, counters, monitoring state) and never on
//! the driver that also runs the system services built on top of monitor.
//! A `View` is a handful of references taken between steps (or inside one,
//! before anything is changed), so it is always consistent.

use super::accounts::{AccountId, Accounts};
use super::client::Client;
use super::config::ServerConfig;
use super::connections::Connections;
use super::monitor_state::MonitorState;
use super::stats::ServerStats;
use crate::runtime::ConnId;
use crate::time::{Clock, Instant};

/// The server's parts, borrowed for reading.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub(super) config: &'a ServerConfig,
    pub(super) conns: &'a Connections,
    pub(super) accounts: &'a Accounts,
    pub(super) stats: ServerStats,
    pub(super) monitor: &'a MonitorState,
    /// The cluster's name (empty without a cluster).
    pub(super) cluster_name: &'a str,
}

impl<'a> View<'a> {
    pub fn config(&self) -> &'a ServerConfig {
        self.config
    }

    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    pub fn client(&self, conn: ConnId) -> Option<&'a Client> {
        self.conns.get(conn)
    }

    pub fn connections(&self) -> &'a Connections {
        self.conns
    }

    pub(crate) fn accounts(&self) -> &'a Accounts {
        self.accounts
    }

    pub fn cluster_name(&self) -> &'a str {
        self.cluster_name
    }

    pub fn monitor_state(&self) -> &'a MonitorState {
        self.monitor
    }

    /// Monitoring's view of time at `now`.
    pub fn clock(&self, now: Instant) -> Clock {
        self.monitor.clock(now)
    }

    /// Connections not closing.
    pub fn num_connections(&self) -> usize {
        self.conns.values().filter(|c| !c.is_closing()).count()
    }

    /// Connections not yet closing, in id order.
    pub fn open_connections(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.is_closing())
            .map(|(&conn, _)| conn)
            .collect()
    }

    /// Client subscriptions, in every account.
    pub fn num_subscriptions(&self) -> usize {
        self.accounts.client_subscriptions()
    }

    /// Every Sublist entry in every account: client subscriptions and the
    /// server's own (imports, system services), as the reference counts them.
    pub fn total_subscriptions(&self) -> usize {
        self.accounts.list.iter().map(|a| a.sublist.len()).sum()
    }

    /// The name of the account `conn` is bound to.
    pub fn account_of(&self, conn: ConnId) -> Option<&'a str> {
        let client = self.conns.get(conn)?;
        Some(&self.accounts.list[client.account].name)
    }

    /// Connections of `account` past CONNECT and not closing.
    pub fn account_connections(&self, account: AccountId) -> usize {
        self.conns
            .values()
            .filter(|c| c.account == account && c.connect_received && !c.is_closing())
            .count()
    }
}
