//! The system services' inbox: what the router and the driver queue for the
//! `$SYS` services during a step, and the request subjects they serve.
//!
//! Role: the half of the system services that the parts below the driver
//! may touch. The router queues a request when a message matches a
//! [`SubTarget::System`] entry; the driver queues connect events; the
//! answering half (`system.rs`, which builds monitoring data) drains this
//! inbox at the end of the step. Nothing here reads monitoring data, so the
//! router does not depend on `monitor`.
//!
//! Invariants: the request queue never holds more than
//! [`MAX_PENDING_REQUESTS`]; `seq` strictly increases.

use std::time::Duration;

use bytes::Bytes;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::accounts::{AccountId, Accounts, SubTarget};
use super::log::{LogLevel, LogQueue};
use crate::runtime::ConnId;
use crate::time::Instant;

/// Requests waiting for the end of the step; more are dropped.
const MAX_PENDING_REQUESTS: usize = 1024;
/// The statsz heartbeat's steady interval (`statsHBInterval`).
pub const STATSZ_INTERVAL: Duration = Duration::from_secs(10);
/// Its first interval after start.
const STATSZ_FIRST_INTERVAL: Duration = Duration::from_millis(250);
/// Where failed logins are reported (a `client_disconnect` event).
pub const AUTH_ERROR_SUBJECT: &str = "$SYS.ACCOUNT.CLIENT.AUTH.ERR";
/// The connection id of the server's internal publisher; runtimes number
/// real connections from 1.
pub const INTERNAL_CONN: ConnId = ConnId(0);

/// Server-wide endpoints (`$SYS.REQ.SERVER.PING.<E>`, `$SYS.REQ.SERVER.<id>.<E>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerEndpoint {
    Statsz,
    Varz,
    Connz,
    Subsz,
    Routez,
    Gatewayz,
    Leafz,
    Accountz,
    Healthz,
    Idz,
}

impl ServerEndpoint {
    const ALL: [(ServerEndpoint, &'static str); 10] = [
        (ServerEndpoint::Statsz, "STATSZ"),
        (ServerEndpoint::Varz, "VARZ"),
        (ServerEndpoint::Connz, "CONNZ"),
        (ServerEndpoint::Subsz, "SUBSZ"),
        (ServerEndpoint::Routez, "ROUTEZ"),
        (ServerEndpoint::Gatewayz, "GATEWAYZ"),
        (ServerEndpoint::Leafz, "LEAFZ"),
        (ServerEndpoint::Accountz, "ACCOUNTZ"),
        (ServerEndpoint::Healthz, "HEALTHZ"),
        (ServerEndpoint::Idz, "IDZ"),
    ];
}

/// Account-scoped endpoints (`$SYS.REQ.ACCOUNT.<account>.<E>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountEndpoint {
    Connz,
    Subsz,
    Statz,
    Conns,
    Leafz,
}

impl AccountEndpoint {
    const ALL: [(AccountEndpoint, &'static str); 5] = [
        (AccountEndpoint::Connz, "CONNZ"),
        (AccountEndpoint::Subsz, "SUBSZ"),
        (AccountEndpoint::Statz, "STATZ"),
        (AccountEndpoint::Conns, "CONNS"),
        (AccountEndpoint::Leafz, "LEAFZ"),
    ];
}

/// What a [`SubTarget::System`] entry answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SysService {
    Server(ServerEndpoint),
    Account(AccountEndpoint),
    /// `$SYS.REQ.ACCOUNT.PING.STATZ`: every account's statz.
    AccountPingStatz,
    /// `$SYS.REQ.USER.INFO`: the requesting connection's user and permissions.
    UserInfo,
    /// `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` (and the older
    /// `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`): new claims for a JWT account.
    /// Acted on with or without a reply subject.
    ClaimsUpdate,
    /// `$SYS.REQ.CLAIMS.UPDATE`: an account JWT for the directory resolver.
    ClaimsPush,
    /// `$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`: the stored JWT, or nothing.
    ClaimsLookup,
    /// `$SYS.REQ.CLAIMS.LIST`: the account keys stored.
    ClaimsList,
    /// `$SYS.REQ.CLAIMS.DELETE`: the operator deletes accounts.
    ClaimsDelete,
    /// `$SYS.REQ.CLAIMS.PACK`: a peer's directory hash; the full resolver
    /// answers with its JWTs when they differ (`resolver_peers.rs`).
    ClaimsPack,
    /// `$SYS._INBOX.<server id>.*`: answers to this server's pack and
    /// lookup requests to its peers (`resolver_peers.rs`).
    ResolverReply,
    /// The inbox of one auth callout request, in the callout account
    /// (`callout_ops.rs`): the service's answer.
    AuthCalloutReply,
}

/// Which account resolver's requests the system account serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolverRequests {
    /// Not in operator mode: none.
    None,
    /// `MEMORY`: claims updates of accounts it holds.
    Memory,
    /// The full resolver: updates, pushes, lookups, lists, deletes, packs,
    /// and the answers of its peers.
    Directory,
    /// The cache resolver: updates, pushes, lists, deletes, and the
    /// answers of its peers (it serves no lookups or packs).
    Cache,
}

impl SysService {
    /// Whether the account resolver answers it (`resolver_requests.rs`).
    pub(super) fn is_resolver(self) -> bool {
        matches!(
            self,
            SysService::ClaimsUpdate
                | SysService::ClaimsPush
                | SysService::ClaimsLookup
                | SysService::ClaimsList
                | SysService::ClaimsDelete
                | SysService::ClaimsPack
        )
    }

    /// The queue group the service is filed in, when one server of the
    /// cluster answers for all: the pack responders form the reference's
    /// group `responder` (its servers and these draw from one group, so a
    /// mixed cluster answers once too).
    pub(super) fn queue_group(self) -> Option<&'static [u8]> {
        (self == SysService::ClaimsPack).then_some(&b"responder"[..])
    }

    /// Whether the request changes the server, so it is taken even when
    /// nobody waits for an answer.
    fn acts(self) -> bool {
        matches!(
            self,
            SysService::ClaimsUpdate
                | SysService::ClaimsPush
                | SysService::ClaimsDelete
                | SysService::ResolverReply
        )
    }
}

/// The service imports every other account gets from the system account:
/// (local subject, exported subject with `{}` for the account's name).
pub const ACCOUNT_IMPORTS: [(&str, &str); 4] = [
    ("$SYS.REQ.ACCOUNT.PING.CONNZ", "$SYS.REQ.ACCOUNT.{}.CONNZ"),
    ("$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.ACCOUNT.{}.CONNZ"),
    ("$SYS.REQ.ACCOUNT.PING.STATZ", "$SYS.REQ.ACCOUNT.{}.STATZ"),
    (USER_INFO_SUBJECT, "$SYS.REQ.USER.{}.INFO"),
];

/// Where any user asks who it is (imported into every account).
pub const USER_INFO_SUBJECT: &str = "$SYS.REQ.USER.INFO";

/// The system account's request subjects and what answers each;
/// `claims_updates`: accounts are JWTs that updates may replace.
pub fn request_subjects(server_id: &str, resolver: ResolverRequests) -> Vec<(String, SysService)> {
    let mut subjects = vec![(
        String::from("$SYS.REQ.SERVER.PING"),
        SysService::Server(ServerEndpoint::Statsz),
    )];
    for (endpoint, name) in ServerEndpoint::ALL {
        subjects.push((
            format!("$SYS.REQ.SERVER.PING.{name}"),
            SysService::Server(endpoint),
        ));
        subjects.push((
            format!("$SYS.REQ.SERVER.{server_id}.{name}"),
            SysService::Server(endpoint),
        ));
    }
    for (endpoint, name) in AccountEndpoint::ALL {
        subjects.push((
            format!("$SYS.REQ.ACCOUNT.*.{name}"),
            SysService::Account(endpoint),
        ));
    }
    subjects.push((
        String::from("$SYS.REQ.ACCOUNT.PING.STATZ"),
        SysService::AccountPingStatz,
    ));
    // The imported form, and the system account's own users asking directly.
    subjects.push((String::from("$SYS.REQ.USER.*.INFO"), SysService::UserInfo));
    subjects.push((String::from(USER_INFO_SUBJECT), SysService::UserInfo));
    if resolver != ResolverRequests::None {
        for subject in CLAIMS_UPDATE_SUBJECTS {
            subjects.push((String::from(subject), SysService::ClaimsUpdate));
        }
    }
    if matches!(
        resolver,
        ResolverRequests::Directory | ResolverRequests::Cache
    ) {
        for (subject, service) in [
            ("$SYS.REQ.CLAIMS.UPDATE", SysService::ClaimsPush),
            ("$SYS.REQ.CLAIMS.LIST", SysService::ClaimsList),
            ("$SYS.REQ.CLAIMS.DELETE", SysService::ClaimsDelete),
        ] {
            subjects.push((String::from(subject), service));
        }
        subjects.push((
            format!("{}.*", resolver_inbox(server_id)),
            SysService::ResolverReply,
        ));
    }
    if resolver == ResolverRequests::Directory {
        for (subject, service) in [
            ("$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP", SysService::ClaimsLookup),
            // One server of the cluster answers: see `queue_group`.
            ("$SYS.REQ.CLAIMS.PACK", SysService::ClaimsPack),
        ] {
            subjects.push((String::from(subject), service));
        }
    }
    subjects
}

/// Where this server's peers answer its resolver's requests (the
/// reference's `$SYS._INBOX.<server hash>.<id>` response inboxes).
pub fn resolver_inbox(server_id: &str) -> String {
    format!("$SYS._INBOX.{server_id}")
}

/// Where account claims updates arrive, the newer form first.
pub const CLAIMS_UPDATE_SUBJECTS: [&str; 2] = [
    "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",
    "$SYS.ACCOUNT.*.CLAIMS.UPDATE",
];

/// A request routed to a system service, answered at the end of the step.
#[derive(Debug)]
pub(crate) struct SysRequest {
    pub(super) service: SysService,
    /// The connection that published the request (across imports too).
    pub(super) requester: ConnId,
    pub(super) subject: Bytes,
    pub(super) reply: Bytes,
    pub(super) payload: Bytes,
}

/// The system services' state inside the server machine.
pub(crate) struct System {
    seq: u64,
    ids: ChaCha8Rng,
    statsz_interval: Duration,
    statsz_due: Option<Instant>,
    requests: Vec<SysRequest>,
    /// Clients that finished CONNECT this step (their events are pending).
    connected: Vec<ConnId>,
    /// Answers to auth callout requests: (inbox, payload). Kept apart from
    /// `requests`: they need no system account.
    callout_replies: Vec<(Bytes, Bytes)>,
}

impl System {
    pub fn new(seed: u64) -> Self {
        System {
            seq: 0,
            // A stream of its own: see the module invariants.
            ids: ChaCha8Rng::seed_from_u64(seed ^ 0x5359_5354_454d_4944),
            statsz_interval: STATSZ_FIRST_INTERVAL,
            statsz_due: None,
            requests: Vec::new(),
            connected: Vec::new(),
            callout_replies: Vec::new(),
        }
    }

    /// Start the statsz heartbeat (at the first wall-clock reading).
    pub fn start(&mut self, now: Instant) {
        if self.statsz_due.is_none() {
            self.statsz_due = Some(now + self.statsz_interval);
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.statsz_due
    }

    pub fn client_connected(&mut self, conn: ConnId) {
        self.connected.push(conn);
    }

    /// A message matched a system service: queue it for the end of the
    /// step (dropped, with a warning, when too many are pending).
    /// `requester` published it (across imports too).
    pub(super) fn queue(
        &mut self,
        service: SysService,
        requester: ConnId,
        subject: &[u8],
        reply: Option<&[u8]>,
        payload: &[u8],
        logs: &mut LogQueue,
    ) {
        if service == SysService::AuthCalloutReply {
            // One answer per pending login is used; the rest are dropped
            // when judged, so the queue is bounded like `requests`.
            if self.callout_replies.len() < MAX_PENDING_REQUESTS {
                self.callout_replies.push((
                    Bytes::copy_from_slice(subject),
                    Bytes::copy_from_slice(payload),
                ));
            }
            return;
        }
        let reply = match reply.filter(|r| !r.is_empty()) {
            Some(reply) => reply,
            None if service.acts() => &[],
            // Nobody to answer: the reference ignores such requests too.
            None => return,
        };
        if self.requests.len() >= MAX_PENDING_REQUESTS {
            logs.push(
                LogLevel::Warn,
                None,
                String::from("Dropping system request: too many pending"),
            );
            return;
        }
        self.requests.push(SysRequest {
            service,
            requester,
            subject: Bytes::copy_from_slice(subject),
            reply: Bytes::copy_from_slice(reply),
            payload: Bytes::copy_from_slice(payload),
        });
        debug_assert!(self.requests.len() <= MAX_PENDING_REQUESTS);
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Drop everything queued (no system account to answer from).
    pub(super) fn clear(&mut self) {
        self.connected.clear();
        self.requests.clear();
    }

    /// Clients whose connect events are pending, oldest first.
    pub(super) fn take_connected(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.connected)
    }

    /// Auth callout answers that arrived, oldest first.
    pub(super) fn take_callout_replies(&mut self) -> Vec<(Bytes, Bytes)> {
        std::mem::take(&mut self.callout_replies)
    }

    /// Requests waiting for an answer, oldest first.
    pub(super) fn take_requests(&mut self) -> Vec<SysRequest> {
        std::mem::take(&mut self.requests)
    }

    /// Whether the statsz heartbeat is due at `now`.
    pub(super) fn heartbeat_due(&self, now: Instant) -> bool {
        self.statsz_due.is_some_and(|due| due <= now)
    }

    /// The heartbeat went out at `now`: the next is due after twice the
    /// last interval, up to [`STATSZ_INTERVAL`].
    pub(super) fn heartbeat_sent(&mut self, now: Instant) {
        assert!(
            self.heartbeat_due(now),
            "a heartbeat sent before it was due"
        );
        self.statsz_interval = (self.statsz_interval * 2).min(STATSZ_INTERVAL);
        self.statsz_due = Some(now + self.statsz_interval);
    }

    /// A 22-character id like the reference's nuids.
    pub(super) fn next_id(&mut self) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..22)
            .map(|_| ALPHABET[(self.ids.next_u32() as usize) % ALPHABET.len()] as char)
            .collect()
    }
}

/// Put the system services into freshly built accounts: the request
/// subjects in the system account, the account-scoped imports elsewhere.
pub(crate) fn install(accounts: &mut Accounts, server_id: &str, resolver: ResolverRequests) {
    let Some(system) = accounts.system else {
        return;
    };
    for (subject, service) in request_subjects(server_id, resolver) {
        let queue = service.queue_group().map(Bytes::from_static);
        let inserted = accounts.list[system].sublist.insert(
            subject.as_bytes(),
            queue.as_deref(),
            SubTarget::System(service),
        );
        assert!(inserted.is_ok(), "system subject {subject} is valid");
        // Routes hear of every service but the user's own: only the
        // requester's server knows its connection, as in the reference.
        if service != SysService::UserInfo {
            accounts
                .announced
                .push((system, Bytes::from(subject), queue));
        }
    }
    let importers: Vec<(AccountId, String)> = accounts
        .list
        .iter()
        .enumerate()
        // Slots an earlier reload left behind (not in `by_name`) get nothing.
        .filter(|(id, account)| *id != system && accounts.by_name.get(&account.name) == Some(id))
        .map(|(id, account)| (id, account.name.clone()))
        .collect();
    for (importer, name) in importers {
        for (local, exported) in ACCOUNT_IMPORTS {
            accounts.add_internal_service_import(
                importer,
                system,
                local,
                &exported.replace("{}", &name),
            );
        }
    }
}
