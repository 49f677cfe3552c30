//! Scenario files: what a run simulates. JSON, documented in `sim-scenarios/README.md`.
//!
//! A scenario names the server's limits, the clients (by role and count), the
//! faults that may be switched on (each one's rate is then drawn from the
//! seed: swarm testing), the length of the workload phase and of the
//! heal-then-converge phase after it.

use serde::Deserialize;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Virtual seconds of workload with faults.
    pub duration_s: f64,
    /// Virtual seconds after the workload stops and every fault heals; then
    /// every liveness invariant is checked.
    #[serde(default = "default_heal_s")]
    pub heal_s: f64,
    #[serde(default)]
    pub server: ServerSpec,
    /// How many servers, and where clients connect; absent: one server.
    #[serde(default)]
    pub topology: TopologySpec,
    pub clients: Vec<ClientSpec>,
    #[serde(default)]
    pub faults: FaultSpec,
    /// Accounts, users and permissions; absent: no authentication.
    #[serde(default)]
    pub security: Option<crate::security::SecuritySpec>,
    /// JetStream on every node (each over its own simulated disk); absent: off.
    #[serde(default)]
    pub jetstream: Option<JetStreamSpec>,
    /// A RAFT group instead of servers (`raft.rs`); absent: the server world.
    #[serde(default)]
    pub raft: Option<crate::raft::RaftSpec>,
}

/// JetStream in a run: every node runs a JetStream machine over its own
/// simulated disk; `fsync_ms` bounds how long one sync takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JetStreamSpec {
    /// A sync takes between these many milliseconds (drawn per sync).
    pub fsync_ms: [f64; 2],
}

impl Default for JetStreamSpec {
    fn default() -> Self {
        JetStreamSpec {
            fsync_ms: [0.05, 4.0],
        }
    }
}

fn default_heal_s() -> f64 {
    8.0
}

/// The server's limits for the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSpec {
    pub max_pending: usize,
    pub max_payload: usize,
    pub max_control_line: usize,
    pub ping_interval_ms: u64,
    pub ping_max: u32,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            max_pending: 64 * 1024,
            max_payload: 8 * 1024,
            max_control_line: 1024,
            ping_interval_ms: 1000,
            ping_max: 2,
        }
    }
}

/// The servers of a run (each its own `Server` machine, all with the
/// `server` limits) and how clients are spread over them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologySpec {
    /// Number of servers (nodes), at least 1.
    pub servers: u32,
    /// Where a client without an explicit `server` connects.
    pub placement: Placement,
    /// Routes between the servers (`routes.rs`): none, a full mesh, or
    /// every server routed to the first (gossip does the rest).
    pub routes: crate::routes::RouteTopology,
}

impl Default for TopologySpec {
    fn default() -> Self {
        TopologySpec {
            servers: 1,
            placement: Placement::RoundRobin,
            routes: crate::routes::RouteTopology::None,
        }
    }
}

/// Where the clients of a spec connect when it names no `server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Client `i` of a spec (counting from 0) connects to server
    /// `i % servers`, so every spec is spread over all servers.
    RoundRobin,
    /// Every client connects to server 0 unless its spec names one.
    First,
}

/// Most servers a scenario may ask for (a bound, not a design limit).
pub const SERVERS_MAX: u32 = 64;

/// What a client does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Publishes to `subjects` at `rate_hz`, some with a reply subject, some with headers.
    Publisher,
    /// Subscribes to `subjects` (wildcards allowed); may change its interest.
    Subscriber,
    /// Subscribes to `subjects` in queue group `group`.
    QueueMember,
    /// Answers requests on `subjects` (in `group` when given).
    Responder,
    /// Sends requests to `subjects` at `rate_hz` with its own reply inbox.
    Requester,
    /// Subscribes, reads for a moment, then stops reading.
    SlowReader,
    /// Sends good frames, then a malformed one.
    Malformed,
    /// Creates its own JetStream stream (file storage, limits drawn from
    /// its stream) on `subjects` (one pattern, `<prefix>.>`), publishes with
    /// reply subjects at `rate_hz` (some with `Nats-Msg-Id`, retried after a
    /// timeout or reconnect, some with `Nats-Expected-Last-Sequence`),
    /// purges now and then, asks for STREAM.INFO and reads messages back
    /// with MSG.GET after its node restarted.
    JsPublisher,
    /// Creates its own file stream on `subjects` (one pattern,
    /// `<prefix>.>`) with a durable pull consumer and a durable push
    /// consumer, publishes into it with acks at `rate_hz`, pulls (batch,
    /// expires, no_wait) and answers every delivery as drawn (ack, AckSync,
    /// nak, term, hold to ack later, silence past ack_wait); in the heal
    /// phase it drains both consumers and checks they settle.
    JsConsumer,
    /// The world's own system-account client (`security.jwt_updates`; no
    /// scenario names it): publishes each account claims update at its
    /// time, again after a reconnect until the server processed it, and
    /// checks the server's answer.
    #[serde(skip_deserializing)]
    System,
}

/// A kind of client, `count` times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub role: Role,
    #[serde(default = "one")]
    pub count: usize,
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Messages (or requests) per virtual second.
    #[serde(default = "default_rate")]
    pub rate_hz: f64,
    /// Share of publishes that carry a reply subject.
    #[serde(default)]
    pub reply_ratio: f64,
    /// Share of publishes sent as HPUB with a header block.
    #[serde(default)]
    pub headers_ratio: f64,
    /// Largest random payload filler, in bytes.
    #[serde(default = "default_payload_max")]
    pub payload_max: usize,
    /// Chance per virtual second that the client vanishes (close, reset or
    /// half-open, drawn) and reconnects later.
    #[serde(default)]
    pub churn_per_s: f64,
    /// Chance per virtual second that a subscriber swaps one subscription.
    #[serde(default)]
    pub resubscribe_per_s: f64,
    /// Share of these clients that CONNECT with `verbose` (+OK to every op).
    #[serde(default)]
    pub verbose_ratio: f64,
    /// Share of these clients that CONNECT with `pedantic`.
    #[serde(default)]
    pub pedantic_ratio: f64,
    /// The user these clients log in as (a scenario with `security`).
    #[serde(default)]
    pub user: Option<String>,
    /// The server (0-based) all these clients connect to; absent: the
    /// topology's placement decides.
    #[serde(default)]
    pub server: Option<u32>,
    /// These clients connect over WebSocket (`runtime-sim/src/ws.rs`).
    #[serde(default)]
    pub websocket: bool,
}

fn one() -> usize {
    1
}

fn default_rate() -> f64 {
    20.0
}

fn default_payload_max() -> usize {
    64
}

/// Which faults may happen. Each enabled fault is switched off by the seed
/// about one run in four, and otherwise gets a rate drawn up to its maximum.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// One-way latency range, milliseconds.
    pub latency_ms: [f64; 2],
    /// Extra random delay per segment, up to this many milliseconds.
    pub jitter_ms_max: f64,
    /// Writes split into segments and reads cut at random byte boundaries.
    pub split: bool,
    /// Connection resets per virtual second, at most (whole run, not per connection).
    pub reset_per_s_max: f64,
    /// Clients vanishing without a FIN, per virtual second, at most.
    pub half_open_per_s_max: f64,
    /// Network stalls per virtual second, at most, each up to `stall_ms_max`.
    pub stall_per_s_max: f64,
    pub stall_ms_max: f64,
    /// Chance that a connect attempt is refused, at most.
    pub refuse_max: f64,
    /// Wall-clock jumps per virtual second, at most (the server does not use
    /// wall time yet; its monotonic time never goes back).
    pub wall_jump_per_s_max: f64,
    /// Process kills per virtual second, at most (whole run): a node's
    /// server and JetStream restart; its disk keeps every write.
    pub kill_per_s_max: f64,
    /// Power losses per virtual second, at most (whole run): as a kill, and
    /// the node's disk loses what was not synced.
    pub power_loss_per_s_max: f64,
    /// Partitions between two nodes per virtual second, at most (whole
    /// run): both ways or one way, each lasting 100 ms to `partition_ms_max`.
    pub partition_per_s_max: f64,
    pub partition_ms_max: f64,
    /// Route connection resets per virtual second, at most (whole run).
    pub route_reset_per_s_max: f64,
}

impl Default for FaultSpec {
    fn default() -> Self {
        FaultSpec {
            latency_ms: [0.05, 2.0],
            jitter_ms_max: 1.0,
            split: true,
            reset_per_s_max: 0.0,
            half_open_per_s_max: 0.0,
            stall_per_s_max: 0.0,
            stall_ms_max: 300.0,
            refuse_max: 0.0,
            wall_jump_per_s_max: 0.1,
            kill_per_s_max: 0.0,
            power_loss_per_s_max: 0.0,
            partition_per_s_max: 0.0,
            partition_ms_max: 3000.0,
            route_reset_per_s_max: 0.0,
        }
    }
}

impl Scenario {
    pub fn from_json(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_json::from_str(text).map_err(|e| e.to_string())?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn load(path: &str) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Scenario::from_json(&text).map_err(|e| format!("{path}: {e}"))
    }

    fn validate(&self) -> Result<(), String> {
        if self.duration_s.is_nan()
            || self.duration_s <= 0.0
            || self.heal_s.is_nan()
            || self.heal_s < 0.0
        {
            return Err(String::from(
                "duration_s must be positive, heal_s not negative",
            ));
        }
        if let Some(security) = &self.security {
            security.validate()?;
            if !security.jwt_updates.is_empty() && self.topology.servers != 1 {
                // One MEMORY resolver takes the update; nothing carries it
                // to other servers.
                return Err(String::from("jwt_updates need a single server"));
            }
        }
        if self.topology.routes != crate::routes::RouteTopology::None {
            // The model routes across nodes in the global account only, and
            // the JetStream clients check a stream on their own node.
            if self.security.is_some() || self.jetstream.is_some() {
                return Err(String::from(
                    "routes are simulated without security and jetstream sections",
                ));
            }
            if self.clients.iter().any(|c| c.websocket) {
                return Err(String::from(
                    "routes are simulated without websocket clients",
                ));
            }
        }
        let servers = self.topology.servers;
        if servers == 0 || servers > SERVERS_MAX {
            return Err(format!(
                "topology.servers must be 1 to {SERVERS_MAX}, not {servers}"
            ));
        }
        for spec in &self.clients {
            if let Some(server) = spec.server.filter(|s| *s >= servers) {
                return Err(format!(
                    "a client names server {server}, but there are {servers} (counted from 0)"
                ));
            }
            match (&self.security, &spec.user) {
                (Some(security), Some(user)) if security.identity(user).is_none() => {
                    return Err(format!("unknown user {user}"));
                }
                (Some(_), None) => {
                    return Err(String::from("with security, every client names a user"))
                }
                (None, Some(_)) => return Err(String::from("a user needs a security section")),
                _ => {}
            }
            let needs_subjects = !matches!(spec.role, Role::Malformed);
            if needs_subjects && spec.subjects.is_empty() {
                return Err(format!("{:?} clients need subjects", spec.role));
            }
            if spec.role == Role::QueueMember && spec.group.is_none() {
                return Err(String::from("queue_member clients need a group"));
            }
            if matches!(spec.role, Role::JsPublisher | Role::JsConsumer) {
                if self.jetstream.is_none() {
                    return Err(String::from(
                        "js_publisher and js_consumer clients need a jetstream section",
                    ));
                }
                if spec.subjects.len() != 1 || !spec.subjects[0].ends_with(".>") {
                    return Err(String::from(
                        "js_publisher and js_consumer clients take one subject prefix, written <prefix>.>",
                    ));
                }
            }
            if spec.rate_hz.is_nan() || spec.rate_hz <= 0.0 {
                return Err(String::from("rate_hz must be positive"));
            }
        }
        Ok(())
    }

    /// The server client `index_in_spec` of `spec` connects to.
    pub fn server_of(&self, spec: &ClientSpec, index_in_spec: usize) -> u32 {
        let server = match (spec.server, self.topology.placement) {
            (Some(server), _) => server,
            (None, Placement::RoundRobin) => {
                (index_in_spec as u64 % u64::from(self.topology.servers)) as u32
            }
            (None, Placement::First) => 0,
        };
        assert!(server < self.topology.servers);
        server
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(topology: &str, clients: &str) -> Result<Scenario, String> {
        Scenario::from_json(&format!(
            r#"{{"name": "t", "duration_s": 1, {topology} "clients": [{clients}]}}"#
        ))
    }

    #[test]
    fn one_server_unless_the_topology_says_otherwise() {
        let one = scenario(
            "",
            r#"{"role": "publisher", "subjects": ["a"], "count": 3}"#,
        )
        .unwrap();
        assert_eq!(one.topology.servers, 1);
        assert!((0..3).all(|i| one.server_of(&one.clients[0], i) == 0));
    }

    #[test]
    fn round_robin_spreads_each_spec_and_explicit_servers_win() {
        let two = scenario(
            r#""topology": {"servers": 2},"#,
            r#"{"role": "publisher", "subjects": ["a"], "count": 3},
               {"role": "subscriber", "subjects": ["a"], "count": 2, "server": 1}"#,
        )
        .unwrap();
        let placed: Vec<u32> = (0..3).map(|i| two.server_of(&two.clients[0], i)).collect();
        assert_eq!(placed, [0, 1, 0]);
        assert_eq!(two.server_of(&two.clients[1], 0), 1);
        assert_eq!(two.server_of(&two.clients[1], 1), 1);
        let first = scenario(
            r#""topology": {"servers": 2, "placement": "first"},"#,
            r#"{"role": "publisher", "subjects": ["a"], "count": 2}"#,
        )
        .unwrap();
        assert_eq!(first.server_of(&first.clients[0], 1), 0);
    }

    #[test]
    fn bad_topologies_are_refused() {
        assert!(scenario(r#""topology": {"servers": 0},"#, "").is_err());
        let beyond = r#"{"role": "publisher", "subjects": ["a"], "server": 2}"#;
        assert!(scenario(r#""topology": {"servers": 2},"#, beyond).is_err());
    }
}
