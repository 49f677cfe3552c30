//! The server's own services on the system account: the events it publishes
//! on `$SYS` and the `$SYS.REQ` requests it answers, as nats-server does.
//!
//! Role: requests reach the server like any message: the system account's
//! Sublist holds a [`SubTarget::System`] entry per request subject, and every
//! other account imports the account-scoped ones (`$SYS.REQ.ACCOUNT.PING.CONNZ`
//! and friends) as service imports, so their replies travel back through the
//! ordinary `_R_.` response routes. Events (client connect/disconnect,
//! account connection counts, the statsz heartbeat) are published into the
//! system account as if by an internal client.
//!
//! Invariants:
//! - A request is queued while the router holds a match result and answered
//!   at the end of the step, so the router never re-enters itself; the
//!   queue is bounded by [`MAX_PENDING_REQUESTS`] (extra requests are dropped).
//! - `seq` in every event and reply header strictly increases.
//! - The statsz heartbeat starts at 250 ms after the first wall-clock reading
//!   and doubles up to [`STATSZ_INTERVAL`], as the reference ramps it.
//! - Event ids come from their own seeded stream: publishing an event never
//!   changes which queue member the router picks.

use serde::Serialize;

use super::system_inbox::SysRequest;
pub use super::system_inbox::*;
use super::{AccountId, Delivery, Server, View};
use crate::monitor::events::{
    AccountConnectionsEvent, AccountzRequest, ApiError, ApiResponse, ConnectEvent, ConnzRequest,
    DisconnectEvent, EventClient, EventFilter, EventServer, Idz, RoutezRequest, StatszMessage,
    StatzRequest, SubszRequest, UserInfo, UserPermissions, CONNECT_EVENT_TYPE,
    DISCONNECT_EVENT_TYPE,
};
use crate::monitor::{self, ConnState, ConnzOptions, Healthz, SortOpt, SubszOptions};
use crate::runtime::{CloseReason, ConnId};
use crate::time::Instant;

impl Server {
    /// End of a step: publish pending connect events, answer queued
    /// requests, and send the statsz heartbeat when due.
    pub(super) fn run_system(&mut self, now: Instant) {
        if self.router.accounts.system.is_none() {
            self.system.clear();
            return;
        }
        for conn in self.system.take_connected() {
            self.publish_connect_event(now, conn);
        }
        // Answers may be requests again (a reply subject that is a system
        // subject); a few rounds settle any sane traffic.
        for _ in 0..4 {
            let requests = self.system.take_requests();
            if requests.is_empty() {
                break;
            }
            for request in requests {
                self.answer(now, &request);
            }
        }
        if self.system.heartbeat_due(now) {
            let subject = format!("$SYS.SERVER.{}.STATSZ", self.config.identity.server_id);
            let body = self.statsz_message(now);
            self.publish_system(now, subject.as_bytes(), &body);
            self.system.heartbeat_sent(now);
        }
    }

    /// Publish `payload` on `subject` in the system account, from no client.
    pub(super) fn publish_system(&mut self, now: Instant, subject: &[u8], payload: &[u8]) {
        let Some(system) = self.router.accounts.system else {
            return;
        };
        let delivery = Delivery {
            publisher: INTERNAL_CONN,
            subject,
            reply: None,
            headers: None,
            payload,
            shown_subject: None,
        };
        self.route(now, system, &delivery, true);
    }

    pub(super) fn header(&mut self, now: Instant) -> EventServer {
        let seq = self.system.next_seq();
        EventServer::new(&self.view(), seq, self.clock(now))
    }

    fn statsz_message(&mut self, now: Instant) -> Vec<u8> {
        let message = StatszMessage {
            server: self.header(now),
            statsz: monitor::events::Statsz::new(&self.view()),
        };
        to_json(&message)
    }

    fn publish_connect_event(&mut self, now: Instant, conn: ConnId) {
        let clock = self.clock(now);
        let Some(client) = EventClient::of(&self.view(), conn, clock) else {
            return;
        };
        let Some(account) = self.conns.get(conn).map(|c| c.account) else {
            return;
        };
        let event = ConnectEvent {
            kind: CONNECT_EVENT_TYPE,
            id: self.system.next_id(),
            timestamp: crate::format::rfc3339_nanos(clock.wall_now),
            server: self.header(now),
            client,
        };
        let subject = format!(
            "$SYS.ACCOUNT.{}.CONNECT",
            self.router.accounts.list[account].name
        );
        self.publish_system(now, subject.as_bytes(), &to_json(&event));
        self.publish_account_connections(now, account);
    }

    /// Called by `handle_closed` while the client is still known.
    pub(super) fn publish_disconnect_event(&mut self, now: Instant, conn: ConnId) {
        if self.router.accounts.system.is_none() {
            return;
        }
        let Some(client) = self.conns.get(conn) else {
            return;
        };
        let reason = client.closing.unwrap_or(CloseReason::ClientClosed);
        // A failed login is reported too, on its own subject, naming the
        // user it claimed to be.
        let auth_error = reason == CloseReason::AuthenticationViolation;
        if !client.connect_received && !auth_error {
            return;
        }
        let account = client.account;
        let stats = client.stats;
        let claimed_user = client.options.user.clone().unwrap_or_default();
        let clock = self.clock(now);
        let Some(mut info) = EventClient::of(&self.view(), conn, clock) else {
            return;
        };
        if auth_error {
            info.user = claimed_user;
        }
        info.stop = Some(crate::format::rfc3339_nanos(clock.wall_now));
        let (sent, received) = DisconnectEvent::traffic(&stats);
        let event = DisconnectEvent {
            kind: DISCONNECT_EVENT_TYPE,
            id: self.system.next_id(),
            timestamp: crate::format::rfc3339_nanos(clock.wall_now),
            server: self.header(now),
            client: info,
            sent,
            received,
            reason: reason.as_str(),
        };
        if auth_error {
            self.publish_system(now, AUTH_ERROR_SUBJECT.as_bytes(), &to_json(&event));
            return;
        }
        let subject = format!(
            "$SYS.ACCOUNT.{}.DISCONNECT",
            self.router.accounts.list[account].name
        );
        self.publish_system(now, subject.as_bytes(), &to_json(&event));
        self.publish_account_connections(now, account);
    }

    /// `$SYS.ACCOUNT.<acc>.SERVER.CONNS` and its older twin
    /// `$SYS.SERVER.ACCOUNT.<acc>.CONNS`, as the reference sends both.
    fn publish_account_connections(&mut self, now: Instant, account: AccountId) {
        let id = self.system.next_id();
        let header = self.header(now);
        let event =
            AccountConnectionsEvent::new(&self.view(), account, id, header, self.clock(now));
        let body = to_json(&event);
        let name = self.router.accounts.list[account].name.clone();
        for subject in [
            format!("$SYS.ACCOUNT.{name}.SERVER.CONNS"),
            format!("$SYS.SERVER.ACCOUNT.{name}.CONNS"),
        ] {
            self.publish_system(now, subject.as_bytes(), &body);
        }
    }

    fn answer(&mut self, now: Instant, request: &SysRequest) {
        if request.service.is_resolver() {
            self.answer_resolver(now, request);
            return;
        }
        if request.service == SysService::ResolverReply {
            self.resolver_reply_arrived(now, request);
            return;
        }
        let payload = if request.payload.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &request.payload[..]
        };
        let body = match request.service {
            SysService::Server(endpoint) => self.answer_server(now, endpoint, payload),
            SysService::Account(endpoint) => {
                // `$SYS.REQ.ACCOUNT.<account>.<E>`: the account is the 4th token.
                let subject = String::from_utf8_lossy(&request.subject).into_owned();
                let account = subject.split('.').nth(3).unwrap_or("").to_owned();
                if account == "PING" {
                    // The PING forms have subscriptions of their own.
                    return;
                }
                self.answer_account(now, endpoint, &account, payload)
            }
            SysService::AccountPingStatz => self.answer_account_statz(now, payload, None),
            SysService::UserInfo => self.answer_user_info(now, request.requester),
            SysService::ClaimsUpdate
            | SysService::ClaimsPush
            | SysService::ClaimsLookup
            | SysService::ClaimsList
            | SysService::ClaimsDelete
            | SysService::ClaimsPack
            | SysService::ResolverReply => unreachable!("answered above"),
            SysService::AuthCalloutReply => unreachable!("queued apart"),
        };
        if let Some(body) = body {
            self.publish_system(now, &request.reply, &body);
        }
        if matches!(
            request.service,
            SysService::Server(ServerEndpoint::Connz) | SysService::Account(AccountEndpoint::Connz)
        ) {
            // What the page listed; the reference measures those round trips.
            let listed = self.open_connections();
            self.measure_rtt(now, listed);
        }
    }

    /// `None`: this server stays silent (a filter did not match).
    fn answer_server(
        &mut self,
        now: Instant,
        endpoint: ServerEndpoint,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let clock = self.clock(now);
        let reply = match endpoint {
            ServerEndpoint::Statsz => {
                let filter: EventFilter = serde_json::from_slice(payload).unwrap_or_default();
                if !filter.matches(&self.view()) {
                    return None;
                }
                return Some(self.statsz_message(now));
            }
            ServerEndpoint::Idz => {
                let config = &self.config;
                return Some(to_json(&Idz {
                    name: config.effective_name().to_owned(),
                    host: config.identity.host.clone(),
                    id: config.identity.server_id.clone(),
                }));
            }
            ServerEndpoint::Varz => self.filtered::<EventFilter, _>(payload, |server, _| {
                Ok(to_value(&monitor::varz(server, clock)))
            }),
            ServerEndpoint::Connz => self.filtered(payload, |server, request: ConnzRequest| {
                let opts = connz_options(&request)?;
                Ok(to_value(&monitor::connz(server, &opts, clock)))
            }),
            ServerEndpoint::Subsz => self.filtered(payload, |server, request: SubszRequest| {
                let opts = subsz_options(&request)?;
                Ok(to_value(&monitor::subsz(server, &opts, clock)))
            }),
            ServerEndpoint::Routez => self.filtered(payload, |server, request: RoutezRequest| {
                let opts = monitor::RoutezOptions {
                    subscriptions: request.subscriptions,
                    subscriptions_detail: request.subscriptions_detail,
                };
                Ok(to_value(&monitor::routez(server, opts, clock)))
            }),
            ServerEndpoint::Gatewayz => self.filtered::<EventFilter, _>(payload, |server, _| {
                Ok(to_value(&monitor::gatewayz(server, clock)))
            }),
            ServerEndpoint::Leafz => self.filtered::<EventFilter, _>(payload, |server, _| {
                Ok(to_value(&monitor::leafz(server, clock)))
            }),
            ServerEndpoint::Accountz => {
                self.filtered(payload, |server, request: AccountzRequest| {
                    monitor::accountz(server, &request.account, clock)
                        .map(|page| to_value(&page))
                        .map_err(|e| e.to_string())
                })
            }
            ServerEndpoint::Healthz => self.filtered::<EventFilter, _>(payload, |_, _| {
                Ok(to_value(&Healthz {
                    status: "ok",
                    status_code: 200,
                    error: None,
                }))
            }),
        }?;
        Some(self.envelope(now, reply))
    }

    fn answer_account(
        &mut self,
        now: Instant,
        endpoint: AccountEndpoint,
        account: &str,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let clock = self.clock(now);
        let known = self.router.accounts.find(account);
        let reply = match endpoint {
            AccountEndpoint::Connz => self.filtered(payload, |server, request: ConnzRequest| {
                let mut opts = connz_options(&request)?;
                // An account sees its own connections only.
                opts.account = account.to_owned();
                Ok(to_value(&monitor::connz(server, &opts, clock)))
            }),
            AccountEndpoint::Subsz => self.filtered(payload, |server, request: SubszRequest| {
                let mut opts = subsz_options(&request)?;
                opts.account = account.to_owned();
                Ok(to_value(&monitor::subsz(server, &opts, clock)))
            }),
            AccountEndpoint::Leafz => self.filtered::<EventFilter, _>(payload, |server, _| {
                Ok(to_value(&monitor::leafz(server, clock)))
            }),
            AccountEndpoint::Statz => {
                return self.answer_account_statz(now, payload, Some(account));
            }
            AccountEndpoint::Conns => {
                let id = known?;
                let event_id = self.system.next_id();
                let header = self.header(now);
                let event = AccountConnectionsEvent::new(&self.view(), id, event_id, header, clock);
                return Some(to_json(&event));
            }
        }?;
        Some(self.envelope(now, reply))
    }

    /// The requester's identity; silent when it is gone or is the server itself.
    fn answer_user_info(&mut self, now: Instant, requester: ConnId) -> Option<Vec<u8>> {
        let client = self.conns.get(requester)?;
        let account = self.router.accounts.list[client.account].name.clone();
        let info = UserInfo {
            user: client.user.clone().unwrap_or_default(),
            account_name: account.clone(),
            account,
            permissions: client
                .permissions
                .as_ref()
                .map(|checker| UserPermissions::new(&checker.describe())),
        };
        Some(self.envelope(now, Ok(to_value(&info))))
    }

    /// Account statz: of `account`, or of the accounts the request names.
    fn answer_account_statz(
        &mut self,
        now: Instant,
        payload: &[u8],
        account: Option<&str>,
    ) -> Option<Vec<u8>> {
        let clock = self.clock(now);
        let reply = self.filtered(payload, |server, request: StatzRequest| {
            let names = match account {
                Some(account) => vec![account.to_owned()],
                None => request.accounts.clone(),
            };
            // Asking for one account by name includes it even when idle.
            let unused = request.include_unused || account.is_some();
            Ok(to_value(&monitor::accstatz(server, &names, unused, clock)))
        })?;
        Some(self.envelope(now, reply))
    }

    /// Decode the request options (`T` embeds an [`EventFilter`]); a server
    /// the filter excludes answers nothing; a bad payload gets a 400 error.
    fn filtered<T, F>(&self, payload: &[u8], build: F) -> Option<Result<Data, String>>
    where
        T: serde::de::DeserializeOwned + Default + HasFilter,
        F: FnOnce(&View<'_>, T) -> Result<Data, String>,
    {
        let request: T = match serde_json::from_slice(payload) {
            Ok(request) => request,
            Err(error) => return Some(Err(format!("invalid request: {error}"))),
        };
        if !request.filter().matches(&self.view()) {
            return None;
        }
        Some(build(&self.view(), request))
    }

    fn envelope(&mut self, now: Instant, reply: Result<Data, String>) -> Vec<u8> {
        let server = self.header(now);
        let response = match reply {
            Ok(data) => ApiResponse {
                server,
                data: Some(data),
                error: None,
            },
            Err(description) => ApiResponse {
                server,
                data: None,
                error: Some(ApiError {
                    code: 400,
                    description,
                }),
            },
        };
        to_json(&response)
    }
}

/// Request options that carry an [`EventFilter`].
trait HasFilter {
    fn filter(&self) -> &EventFilter;
}

impl HasFilter for EventFilter {
    fn filter(&self) -> &EventFilter {
        self
    }
}

impl HasFilter for ConnzRequest {
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
}

impl HasFilter for RoutezRequest {
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
}

impl HasFilter for SubszRequest {
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
}

impl HasFilter for AccountzRequest {
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
}

impl HasFilter for StatzRequest {
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
}

fn connz_options(request: &ConnzRequest) -> Result<ConnzOptions, String> {
    let mut opts = ConnzOptions::default();
    if !request.sort.is_empty() {
        opts.sort = SortOpt::parse(&request.sort)
            .ok_or_else(|| format!("invalid sorting option: {}", request.sort))?;
    }
    opts.username = request.auth;
    opts.subscriptions = request.subscriptions;
    opts.subscriptions_detail = request.subscriptions_detail;
    opts.offset = usize::try_from(request.offset).unwrap_or(0);
    opts.limit = match usize::try_from(request.limit) {
        Ok(0) | Err(_) => monitor::DEFAULT_CONN_LIST_SIZE,
        Ok(limit) => limit,
    };
    opts.cid = request.cid;
    opts.state = match request.state {
        Some(1) => ConnState::Closed,
        Some(2) => ConnState::Any,
        _ => ConnState::Open,
    };
    if opts.cid > 0 {
        opts.limit = 1;
    }
    opts.user = request.user.clone();
    opts.account = request.acc.clone();
    Ok(opts)
}

fn subsz_options(request: &SubszRequest) -> Result<SubszOptions, String> {
    SubszOptions::new(
        request.subscriptions,
        request.offset,
        request.limit,
        &request.test,
        request.account.clone(),
    )
    .map_err(|e| e.to_string())
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("system messages serialize")
}

/// A reply's `data`, serialized once in its own field order.
type Data = Box<serde_json::value::RawValue>;

fn to_value<T: Serialize>(value: &T) -> Data {
    serde_json::value::to_raw_value(value).expect("monitoring pages serialize")
}
