//! The server's settings, as the runtime hands them to the machine.
//!
//! Defaults are nats-server's (`server/const.go`). The runtime fills this from
//! the config file (`-c`, parsed by [`crate::conf`]) with the command-line
//! flags laid over it; core never reads files or the environment.

use std::time::Duration;

use crate::auth::{AccountConfig, AuthConfig, SYSTEM_ACCOUNT};

/// The nats-server release whose client-visible behaviour rnats matches.
pub const NATS_COMPATIBLE_VERSION: &str = "2.15.1";

/// What the process is, as opposed to what its configuration asks: fixed at
/// start, kept as it is by every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// The server's public identity (an nkey public key in nats-server).
    pub server_id: String,
    /// The server's curve public key for encrypted auth callouts (`xkey` in INFO).
    pub xkey: String,
    /// The key pairs behind `server_id` and `xkey` (auth callout requests
    /// are signed and sealed with them).
    pub keys: crate::auth::callout::ServerKeys,
    /// The version string reported in INFO: the nats-server version whose
    /// behaviour rnats reproduces, because clients turn features on and off by
    /// it. rnats's own version is in the log and in `-v`.
    pub version: String,
    /// The source commit of the build (INFO's `git_commit`).
    pub git_commit: String,
    /// Reported in INFO as `go` (the toolchain; ours names the Rust compiler).
    pub toolchain: String,
    /// Host and port as reported in INFO (the real bound address).
    pub host: String,
    pub port: u16,
    /// `host:port` URLs clients can reach this server at (`client_advertise`,
    /// or the bound address; the runtime resolves an any-address), told to
    /// the cluster's other servers, which tell their clients.
    pub client_urls: Vec<String>,
    /// The same for the websocket listener (`advertise`, or its address).
    pub ws_connect_urls: Vec<String>,
}

impl Default for ServerIdentity {
    fn default() -> Self {
        ServerIdentity {
            server_id: String::from("NRNATSDEFAULTSERVERID"),
            xkey: String::new(),
            keys: crate::auth::callout::ServerKeys::default(),
            version: String::from(NATS_COMPATIBLE_VERSION),
            git_commit: String::new(),
            toolchain: String::from("rust"),
            host: String::from("0.0.0.0"),
            port: 4222,
            client_urls: Vec::new(),
            ws_connect_urls: Vec::new(),
        }
    }
}

/// Everything the server machine needs to know about its own configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who this server is: kept across reloads.
    pub identity: ServerIdentity,
    /// Defaults to `identity.server_id` when not given.
    pub server_name: String,
    pub max_payload: usize,
    pub max_control_line: usize,
    /// Bytes of unsent output a connection may hold before it is a slow consumer.
    pub max_pending: usize,
    /// 0 means no limit.
    pub max_connections: usize,
    /// Per connection; 0 means no limit.
    pub max_subscriptions: usize,
    pub ping_interval: Duration,
    pub ping_max: u32,
    pub auth: AuthConfig,
    pub auth_timeout: Duration,
    /// Configured accounts (`accounts { }`); `$G` and the system account
    /// exist even when not listed. Top-level `mappings` are `$G`'s.
    pub accounts: Vec<AccountConfig>,
    /// `system_account`; `None` with `no_system_account`.
    pub system_account: Option<String>,
    /// What INFO says about TLS and how client certificates are used; the
    /// runtime does the handshakes.
    pub tls: TlsPolicy,
    /// What `/varz` reports about the monitoring listener and timeouts the
    /// runtime enforces.
    pub monitoring: MonitorSettings,
    /// Protocol tracing (`-V`): queue a trace log line per operation in and out.
    pub trace: bool,
    /// Longest payload a trace line shows (0: all of it).
    pub max_traced_msg_len: usize,
    /// `sha256:<hex>` of the configuration (`/varz` `config_digest`); empty
    /// without a config file.
    pub config_digest: String,
    /// JetStream, when enabled (`-js`, `jetstream {}`); `None` is off.
    pub jetstream: Option<crate::jetstream::config::JetStreamConfig>,
    /// The websocket listener, when `websocket { }` configures one (set by
    /// the runtime once it is bound; a reload keeps it).
    pub websocket: Option<crate::websocket::WebSocketConfig>,
    /// Routes to other servers, when `cluster { }` (or `--cluster`)
    /// configures a route listener (its `port` set by the runtime once bound).
    pub cluster: Option<ClusterConfig>,
    /// A defect planted on purpose so the simulator can prove it finds bugs.
    #[cfg(feature = "planted-defects")]
    pub planted_defect: Option<PlantedDefect>,
}

/// The cluster as the machine runs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterConfig {
    /// Empty: none configured; the machine makes one up and takes a
    /// peer's (the reference's dynamic cluster name).
    pub name: String,
    pub host: String,
    /// The bound route port.
    pub port: u16,
    /// `host:port` other servers are told to dial instead of ours.
    pub advertise: Option<String>,
    /// Keep client URLs out of what this server tells routes.
    pub no_advertise: bool,
    /// The explicit routes, dialed at start.
    pub routes: Vec<RouteUrl>,
    /// Failed dials of an explicit route before it is given up (0: forever).
    pub connect_retries: u32,
    /// `authorization { user, password }`: what soliciting servers must send.
    pub user: Option<String>,
    pub password: String,
    pub auth_timeout: Option<Duration>,
    /// Pooled connections per peer (the reference's `pool_size` after its
    /// defaulting: 3 unless set); negative: unpooled, one connection per
    /// peer carrying every account.
    pub pool_size: i64,
    /// Pinned accounts (`accounts [...]`): a dedicated route each. The
    /// system account is pinned too when pooling (`Server::pinned`).
    pub accounts: Vec<String>,
    /// `tls { }`: every route is TLS from its first byte, both ways (the
    /// runtime does the handshakes; INFO and CONNECT say so).
    pub tls: Option<RouteTls>,
    /// `permissions`: `publish` is the import side (the local interest
    /// announced to routes), `subscribe` the export side (the routes'
    /// interest accepted, and the messages sent over it).
    pub permissions: Option<crate::auth::Permissions>,
    /// Route keepalive, instead of the top-level `ping_interval` (either
    /// way capped at 30 s for routes).
    pub ping_interval: Option<Duration>,
    pub ping_max: Option<u32>,
    /// A write to a route that takes longer is a slow route, instead of the
    /// top-level `write_deadline`.
    pub write_deadline: Option<Duration>,
    pub write_timeout: WriteTimeoutPolicy,
    /// Failed dials back off exponentially up to 30 s (else up to 2 s).
    pub connect_backoff: bool,
}

/// What a write past its deadline does to a connection (the reference's
/// `write_timeout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteTimeoutPolicy {
    /// The kind's default: routes retry, clients close.
    #[default]
    Default,
    Close,
    /// Keep writing (the connection is reported slow) unless nothing at all
    /// was written.
    Retry,
}

/// The cluster's `tls { }`: paths as written (the runtime reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTls {
    /// This server's certificate, shown to peers both when accepting and
    /// when dialing (as a client certificate).
    pub cert_file: String,
    pub key_file: String,
    /// The CA the peers' certificates are checked against.
    pub ca_file: Option<String>,
    /// Require and verify the dialing peer's certificate.
    pub verify: bool,
    /// Handshake deadline.
    pub timeout: Duration,
}

/// A route URL (`nats-route://user:pass@host:port`, `nats://host:port`, `host:port`).
#[derive(Clone, PartialEq, Eq)]
pub struct RouteUrl {
    pub host: String,
    /// -1 asks for a random port (listen URLs only).
    pub port: i64,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl core::fmt::Debug for RouteUrl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the password.
        write!(f, "RouteUrl({})", self.address())
    }
}

impl RouteUrl {
    pub fn parse(text: &str) -> Option<RouteUrl> {
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some((_scheme, rest)) => rest,
            None => text,
        };
        let rest = rest.trim_end_matches('/');
        let (credentials, address) = match rest.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, rest),
        };
        let (host, port) = address.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: i64 = port.parse().ok()?;
        if host.is_empty() || !(-1..=65535).contains(&port) {
            return None;
        }
        let (user, password) = match credentials {
            Some(credentials) => match credentials.split_once(':') {
                Some((user, password)) => (Some(user.to_string()), Some(password.to_string())),
                None => (Some(credentials.to_string()), None),
            },
            None => (None, None),
        };
        Some(RouteUrl {
            host: host.to_string(),
            port,
            user,
            password,
        })
    }

    /// `host:port`, as logs show it.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// TLS as the machine sees it: the runtime terminates TLS; the machine
/// announces it in INFO and, with `verify_and_map`, logs clients in by the
/// names of their certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// `tls { }` is configured: clients must use TLS.
    pub required: bool,
    /// `verify`: clients must present a certificate the CA signed.
    pub verify: bool,
    /// `verify_and_map`: the certificate names the user (no password).
    pub map: bool,
    /// `allow_non_tls`: TLS is offered, not required.
    pub allow_non_tls: bool,
}

/// Facts about the runtime's listeners and deadlines that monitoring reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSettings {
    pub http_host: String,
    /// 0: no HTTP monitoring.
    pub http_port: u16,
    pub https_port: u16,
    pub http_base_path: String,
    pub tls_timeout: Duration,
    pub write_deadline: Duration,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            http_host: String::from("0.0.0.0"),
            http_port: 0,
            https_port: 0,
            http_base_path: String::new(),
            tls_timeout: Duration::from_secs(2),
            write_deadline: Duration::from_secs(10),
        }
    }
}

/// Bugs the simulator's tests plant in the server (feature `planted-defects` only).
#[cfg(feature = "planted-defects")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedDefect {
    /// A PUB/HPUB whose frame was split across reads is dropped.
    DropSplitFrame,
    /// When the first queue member drawn cannot receive, two members get the message.
    QueueDoubleDelivery,
    /// HPUB loses its reply subject.
    HpubLosesReply,
    /// A publisher's input waits while any subscriber is over half its pending limit.
    SlowSubscriberBlocksPublisher,
    /// A subscribe deny list no longer filters wildcard subscriptions' deliveries.
    DenyIgnoredOnDelivery,
    /// HPUB skips the publish permission check.
    HpubSkipsPublishPermissions,
    /// A JetStream stream acknowledges a publish as soon as it is stored,
    /// before the sync that makes it durable (planted with `JetStream::plant`).
    AckBeforeSync,
    /// A consumer's ack leaves its state clean: the flush after it (for an
    /// AckSync reply, consumer info or the periodic write) writes nothing,
    /// so a restart forgets acks made since the last delivery was written.
    ConsumerAckLostOnRestart,
    /// A redelivered message's ack timer is armed a year out: if the client
    /// stays silent again, it is never redelivered.
    RedeliveryTimerNotRearmed,
    /// The last local subscriber of a subject leaving is not told to the
    /// routes (no RS-): peers keep forwarding to interest that is gone.
    RouteUnsubscribeLost,
    /// A message with a reply subject goes out twice on a route (as if
    /// sent over two pooled routes to one server).
    RouteDuplicateForward,
    /// An account claims update that revokes a user leaves that user's
    /// open connections running with what they had.
    RevocationIgnoredForConnected,
    /// Re-authentication after new account claims (or a reload) leaves
    /// open connections with the permissions they had.
    NewPermissionsIgnoredForConnected,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            identity: ServerIdentity::default(),
            server_name: String::new(),
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_pending: 64 * 1024 * 1024,
            max_connections: 64 * 1024,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            auth: AuthConfig::default(),
            auth_timeout: Duration::from_secs(2),
            accounts: Vec::new(),
            system_account: Some(String::from(SYSTEM_ACCOUNT)),
            tls: TlsPolicy::default(),
            monitoring: MonitorSettings::default(),
            config_digest: String::new(),
            trace: false,
            max_traced_msg_len: 0,
            jetstream: None,
            websocket: None,
            cluster: None,
            #[cfg(feature = "planted-defects")]
            planted_defect: None,
        }
    }
}

impl ServerConfig {
    /// How long a write may take before the connection is a slow
    /// consumer: the cluster's `write_deadline` for a route when set, else
    /// the top-level one (10 s, the reference's default, when zero).
    pub fn write_deadline(&self, route: bool) -> Duration {
        let cluster = self
            .cluster
            .as_ref()
            .and_then(|c| c.write_deadline)
            .filter(|_| route);
        let deadline = cluster.unwrap_or(self.monitoring.write_deadline);
        if deadline.is_zero() {
            Duration::from_secs(10)
        } else {
            deadline
        }
    }

    /// The PING interval of a client from `listener`: the websocket
    /// block's own `ping_interval` when set, as in the reference.
    pub fn ping_interval_for(&self, listener: crate::runtime::ListenerKind) -> Duration {
        match (&self.websocket, listener) {
            (Some(ws), crate::runtime::ListenerKind::WebSocket) if !ws.ping_interval.is_zero() => {
                ws.ping_interval
            }
            _ => self.ping_interval,
        }
    }

    /// What a reload from `self` to `new` changes, one line each in the
    /// reference's log wording (`max_payload = 100`, `authorization`).
    pub fn changes_to(&self, new: &ServerConfig) -> Vec<String> {
        let mut changes = Vec::new();
        let mut compare = |name: &str, old: String, new: String| {
            if old != new {
                changes.push(format!("{name} = {new}"));
            }
        };
        compare(
            "server_name",
            self.server_name.clone(),
            new.server_name.clone(),
        );
        compare(
            "max_payload",
            self.max_payload.to_string(),
            new.max_payload.to_string(),
        );
        compare(
            "max_control_line",
            self.max_control_line.to_string(),
            new.max_control_line.to_string(),
        );
        compare(
            "max_pending",
            self.max_pending.to_string(),
            new.max_pending.to_string(),
        );
        compare(
            "max_connections",
            self.max_connections.to_string(),
            new.max_connections.to_string(),
        );
        compare(
            "max_subscriptions",
            self.max_subscriptions.to_string(),
            new.max_subscriptions.to_string(),
        );
        compare(
            "ping_interval",
            format!("{:?}", self.ping_interval),
            format!("{:?}", new.ping_interval),
        );
        compare(
            "ping_max",
            self.ping_max.to_string(),
            new.ping_max.to_string(),
        );
        compare(
            "auth_timeout",
            format!("{:?}", self.auth_timeout),
            format!("{:?}", new.auth_timeout),
        );
        // Name what changed, never the secret itself.
        let old = &self.auth;
        let new_auth = &new.auth;
        if old.token != new_auth.token {
            changes.push(String::from("authorization token"));
        }
        if old.user != new_auth.user {
            changes.push(String::from("authorization user"));
        }
        if old.password != new_auth.password {
            changes.push(String::from("authorization password"));
        }
        if old.users != new_auth.users || old.nkeys != new_auth.nkeys {
            changes.push(String::from("authorization users"));
        }
        if old.default_permissions != new_auth.default_permissions {
            changes.push(String::from("authorization default_permissions"));
        }
        if old.no_auth_user != new_auth.no_auth_user {
            changes.push(String::from("no_auth_user"));
        }
        if self.accounts != new.accounts {
            changes.push(String::from("accounts"));
        }
        if self.system_account != new.system_account {
            changes.push(String::from("system_account"));
        }
        changes
    }

    /// The name INFO reports: the configured one, or the server id.
    pub fn effective_name(&self) -> &str {
        if self.server_name.is_empty() {
            &self.identity.server_id
        } else {
            &self.server_name
        }
    }
}
