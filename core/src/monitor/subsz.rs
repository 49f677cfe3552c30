//! `/subsz`: Sublist counters summed over accounts, and optionally a page of
//! client subscriptions.
//!
//! Role: nats-server v2.15.1's `Subsz` shape from `&Server`. Like the
//! reference, `total` counts listed subscriptions and is 0 unless `subs=1`.
//!
//! Invariants:
//! - `subscriptions_list.len() <= limit`.
//! - Work is one pass over the clients' subscription tables plus the
//!   Sublist caches (each bounded by its capacity).

use serde::Serialize;

use super::connz::SubDetail;
use super::query::SubszOptions;
use super::Clock;
use crate::format::rfc3339_nanos;
use crate::server::View;
use crate::subject::{subject_matches_pattern, SublistStats};

/// Sublist counters as the reference names them (`SublistStats`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SublistStatsJson {
    pub num_subscriptions: usize,
    pub num_cache: usize,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    #[serde(serialize_with = "crate::format::go_float")]
    pub cache_hit_rate: f64,
    pub max_fanout: usize,
    #[serde(serialize_with = "crate::format::go_float")]
    pub avg_fanout: f64,
}

/// Sums Sublist counters the way the reference's `SublistStats.add` does:
/// rates and averages are recomputed from the summed counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsSum {
    stats: SublistStats,
    max_fanout: usize,
    total_fanout: usize,
}

impl StatsSum {
    pub fn add(&mut self, stats: SublistStats, (max_fanout, total_fanout): (usize, usize)) {
        self.stats.subscriptions += stats.subscriptions;
        self.stats.cache_entries += stats.cache_entries;
        self.stats.inserts += stats.inserts;
        self.stats.removes += stats.removes;
        self.stats.matches += stats.matches;
        self.stats.cache_hits += stats.cache_hits;
        self.max_fanout = self.max_fanout.max(max_fanout);
        self.total_fanout += total_fanout;
    }

    pub fn json(&self) -> SublistStatsJson {
        let stats = &self.stats;
        SublistStatsJson {
            num_subscriptions: stats.subscriptions,
            num_cache: stats.cache_entries,
            num_inserts: stats.inserts,
            num_removes: stats.removes,
            num_matches: stats.matches,
            cache_hit_rate: ratio(stats.cache_hits as f64, stats.matches as f64),
            max_fanout: self.max_fanout,
            avg_fanout: ratio(self.total_fanout as f64, stats.cache_entries as f64),
        }
    }
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Subsz {
    pub server_id: String,
    pub now: String,
    #[serde(flatten)]
    pub stats: SublistStatsJson,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<SubDetail>,
}

/// Builds `/subsz` for `opts`.
pub fn subsz(server: &View<'_>, opts: &SubszOptions, clock: Clock) -> Subsz {
    let accounts = server.accounts();
    let mut sum = StatsSum::default();
    for account in &accounts.list {
        if opts.account.is_empty() || account.name == opts.account {
            sum.add(account.sublist.stats(), account.sublist.cache_fanout());
        }
    }
    let mut details = Vec::new();
    if opts.subscriptions {
        for conn in server.open_connections() {
            let Some(client) = server.client(conn) else {
                continue;
            };
            let account = &accounts.list[client.account].name;
            if !opts.account.is_empty() && *account != opts.account {
                continue;
            }
            for sub in client.subs.values() {
                if let Some(test) = &opts.test {
                    if !subject_matches_pattern(&sub.subject, test.as_bytes()) {
                        continue;
                    }
                }
                details.push((conn, account, sub));
            }
        }
    }
    let total = details.len();
    let subscriptions_list: Vec<SubDetail> = details
        .into_iter()
        .skip(opts.offset)
        .take(opts.limit)
        .map(|(conn, account, sub)| SubDetail::new(account, conn, sub))
        .collect();
    debug_assert!(subscriptions_list.len() <= opts.limit);
    Subsz {
        server_id: server.config().identity.server_id.clone(),
        now: rfc3339_nanos(clock.wall_now),
        stats: sum.json(),
        total,
        offset: opts.offset,
        limit: opts.limit,
        subscriptions_list,
    }
}
