//! Seeded random streams: one ChaCha stream per consumer.
//!
//! Every stream is derived from the run's seed and a fixed stream number, so
//! adding a draw to one consumer (a client, a connection's network) never
//! reshuffles what the others draw.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Stream numbers. Per-entity streams add the entity's number to their base.
pub(crate) mod stream {
    /// The swarm draw: which faults are on and at what rates.
    pub(crate) const PLAN: u64 = 1;
    /// A node's server machine seed: node `n` draws from `node(SERVER, n)`.
    pub(crate) const SERVER: u64 = 2;
    /// The fault injector's choices (which connection to reset, stall, ...).
    pub(crate) const FAULTS: u64 = 3;
    /// A node's wall-clock jumps: node `n` draws from `node(WALL_CLOCK, n)`.
    pub(crate) const WALL_CLOCK: u64 = 4;
    /// A node's simulated disk (node 0's is `disk::DISK_STREAM` itself).
    pub(crate) const DISK: u64 = 5;
    /// A node's JetStream runtime half: sync latencies.
    pub(crate) const JETSTREAM: u64 = 6;
    /// A node's restarts: the seed of each new server machine.
    pub(crate) const RESTART: u64 = 7;
    /// Per-node streams are `NODE_STRIDE` apart, so node 0 keeps the numbers
    /// a one-node world always used (its draws, and so its traces, do not
    /// change when nodes are added after it).
    const NODE_STRIDE: u64 = 1 << 8;
    /// Nodes a world may have before per-node streams would reach `CLIENT_BASE`.
    pub(crate) const NODES_MAX: u32 = 1 << 10;
    /// Client `i` draws from `CLIENT_BASE + i`.
    pub(crate) const CLIENT_BASE: u64 = 1 << 20;
    /// Connection `c` draws its network behavior from `CONN_BASE + c`.
    pub(crate) const CONN_BASE: u64 = 1 << 40;
    /// Route link `l` draws its network behavior from `ROUTE_BASE + l`.
    pub(crate) const ROUTE_BASE: u64 = 1 << 48;

    /// Node `node`'s stream of kind `base` (`SERVER` or `WALL_CLOCK`).
    pub(crate) fn node(base: u64, node: u32) -> u64 {
        assert!(
            matches!(base, SERVER | WALL_CLOCK | DISK | JETSTREAM | RESTART),
            "{base} is no per-node stream"
        );
        assert!(node < NODES_MAX, "node {node} past NODES_MAX");
        let stream = base + u64::from(node) * NODE_STRIDE;
        assert!(stream < CLIENT_BASE);
        stream
    }
}

/// A deterministic random stream.
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// Stream `stream` of the run seeded with `seed`.
    pub fn stream(seed: u64, stream: u64) -> Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Rng(rng)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range {low}..={high}");
        low + self.below(high - low + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        assert!(!items.is_empty(), "pick from an empty slice");
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_repeatable() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::stream(7, 1).next_u64(), Rng::stream(7, 2).next_u64());
        assert_ne!(Rng::stream(7, 1).next_u64(), Rng::stream(8, 1).next_u64());
    }

    #[test]
    fn node_zero_keeps_the_one_node_streams_and_nodes_never_share() {
        assert_eq!(stream::node(stream::SERVER, 0), stream::SERVER);
        assert_eq!(stream::node(stream::WALL_CLOCK, 0), stream::WALL_CLOCK);
        let mut seen = std::collections::BTreeSet::new();
        for node in [0, 1, 2, stream::NODES_MAX - 1] {
            for base in [stream::SERVER, stream::WALL_CLOCK] {
                let number = stream::node(base, node);
                assert!(seen.insert(number), "stream {number} shared");
                assert!(number != stream::PLAN && number != stream::FAULTS);
                assert!(number < stream::CLIENT_BASE);
            }
        }
    }
}
