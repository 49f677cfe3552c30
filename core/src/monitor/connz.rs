//! `/connz`: the page of client connections a query asks for.
//!
//! Role: turn the server's open clients and the ring of closed ones into the
//! reference's `Connz` JSON shape. Inputs: `&Server`, the decoded
//! [`ConnzOptions`], the closed ring, and a [`Clock`] pairing the machine's
//! monotonic `now` with the wall time the runtime read at the same moment
//! (client times are monotonic inside the core; this is where they become
//! dates). Output: [`Connz`], serialized by the runtime outside its lock.
//!
//! Invariants:
//! - `connections.len() <= limit`; `total` counts every match before paging.
//! - Work per request is one pass over the matching connections plus a sort;
//!   only the page's rows carry subscription lists.

use serde::Serialize;

use super::query::{ConnState, ConnzOptions, SortOpt};
use crate::format::{rfc3339_nanos, rtt_text, uptime};
use crate::runtime::ConnId;
use crate::server::{non_empty, ClosedConnection};
use crate::server::{Client, ClientStats, Subscription, View};
use crate::time::{Clock, WallTime};

#[derive(Debug, Clone, Serialize)]
pub struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub connections: Vec<ConnInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub conn_type: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub rtt: String,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list_detail: Vec<SubDetail>,
    /// With `auth=1`, in operator mode: the user JWT (left out for a bearer
    /// token) and the key that signed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_key: Option<String>,
    /// With `auth=1`: the account's name tag: its JWT's name, else its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_tag: Option<String>,
    /// With `auth=1`: the user JWT's tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubDetail {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account_tag: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qgroup: Option<String>,
    pub sid: String,
    pub msgs: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub cid: u64,
}

impl SubDetail {
    /// `account` empty leaves `account` and `account_tag` out (as `/connz` does).
    pub fn new(account: &str, conn: ConnId, sub: &Subscription) -> SubDetail {
        SubDetail {
            account: account.to_owned(),
            account_tag: account.to_owned(),
            subject: String::from_utf8_lossy(&sub.subject).into_owned(),
            qgroup: sub
                .queue
                .as_ref()
                .map(|q| String::from_utf8_lossy(q).into_owned()),
            sid: String::from_utf8_lossy(&sub.sid).into_owned(),
            msgs: sub.delivered,
            max: sub.max,
            cid: conn.0,
        }
    }
}

/// The global account's name; `/connz` omits `account` for it.
const GLOBAL_ACCOUNT_NAME: &str = "$G";

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// One matching connection before paging: only what sorting needs.
enum Row<'a> {
    Open(ConnId, &'a Client),
    Closed(&'a ClosedConnection),
}

impl Row<'_> {
    fn listener(&self) -> crate::runtime::ListenerKind {
        match self {
            Row::Open(_, client) => client.listener,
            Row::Closed(closed) => closed.listener,
        }
    }

    fn cid(&self) -> u64 {
        match self {
            Row::Open(conn, _) => conn.0,
            Row::Closed(closed) => closed.cid.0,
        }
    }

    fn stats(&self) -> ClientStats {
        match self {
            Row::Open(_, client) => client.stats,
            Row::Closed(closed) => closed.stats,
        }
    }

    fn subs(&self) -> usize {
        match self {
            Row::Open(_, client) => client.subs.len(),
            Row::Closed(closed) => closed.subscriptions.len(),
        }
    }

    fn rtt(&self) -> Option<core::time::Duration> {
        match self {
            Row::Open(_, client) => client.rtt,
            Row::Closed(closed) => closed.rtt,
        }
    }

    fn pending(&self) -> usize {
        match self {
            Row::Open(_, client) => client.pending_bytes(),
            Row::Closed(_) => 0,
        }
    }

    fn start(&self, clock: &Clock) -> WallTime {
        match self {
            Row::Open(_, client) => clock.wall(client.accepted_at),
            Row::Closed(closed) => closed.start,
        }
    }

    fn last(&self, clock: &Clock) -> WallTime {
        match self {
            Row::Open(_, client) => clock.wall(client.last_in.unwrap_or(client.accepted_at)),
            Row::Closed(closed) => closed.last_activity,
        }
    }

    /// Where a connection's lifetime ends: its stop time, or now if open.
    fn end(&self, clock: &Clock) -> WallTime {
        match self {
            Row::Open(..) => clock.wall_now,
            Row::Closed(closed) => closed.stop,
        }
    }

    fn account<'s>(&'s self, server: &View<'s>) -> &'s str {
        match self {
            Row::Open(conn, _) => server.account_of(*conn).unwrap_or(""),
            Row::Closed(closed) => &closed.account,
        }
    }

    fn user(&self) -> Option<&str> {
        match self {
            Row::Open(_, client) => client.user.as_deref(),
            Row::Closed(closed) => closed.user.as_deref(),
        }
    }
}

/// An account's name tag: the name in its JWT (operator mode), else its name.
pub(super) fn name_tag<'a>(server: &View<'a>, account: &'a str) -> &'a str {
    server
        .config()
        .auth
        .operator
        .as_ref()
        .and_then(|mode| mode.accounts.get(account))
        .map(|jwt| jwt.claims.name.as_str())
        .filter(|name| !name.is_empty())
        .unwrap_or(account)
}

/// Builds the `/connz` page for `opts`.
pub fn connz(server: &View<'_>, opts: &ConnzOptions, clock: Clock) -> Connz {
    let closed = &server.monitor_state().closed;
    let mut rows: Vec<Row<'_>> = Vec::new();
    if opts.state != ConnState::Closed {
        for conn in server.open_connections() {
            if let Some(client) = server.client(conn) {
                rows.push(Row::Open(conn, client));
            }
        }
    }
    if opts.state != ConnState::Open {
        rows.extend(closed.iter().map(Row::Closed));
    }
    rows.retain(|row| {
        (opts.cid == 0 || row.cid() == opts.cid)
            && (opts.account.is_empty() || row.account(server) == opts.account)
            && (opts.user.is_empty() || row.user() == Some(opts.user.as_str()))
    });
    sort_rows(&mut rows, opts.sort, &clock);

    let total = rows.len();
    let connections: Vec<ConnInfo> = rows
        .iter()
        .skip(opts.offset)
        .take(opts.limit)
        .map(|row| conn_info(server, row, opts, &clock))
        .collect();
    debug_assert!(connections.len() <= opts.limit);
    Connz {
        server_id: server.config().identity.server_id.clone(),
        now: rfc3339_nanos(clock.wall_now),
        num_connections: connections.len(),
        total,
        offset: opts.offset,
        limit: opts.limit,
        connections,
    }
}

fn sort_rows(rows: &mut [Row<'_>], sort: SortOpt, clock: &Clock) {
    // Ties keep cid order so a page boundary never moves between requests.
    rows.sort_by_key(Row::cid);
    let now = clock.wall_now.as_unix_nanos();
    match sort {
        SortOpt::Cid | SortOpt::Start => {}
        SortOpt::Subs => rows.sort_by_key(|row| core::cmp::Reverse(row.subs())),
        SortOpt::Pending => rows.sort_by_key(|row| core::cmp::Reverse(row.pending())),
        SortOpt::MsgsTo => rows.sort_by_key(|row| core::cmp::Reverse(row.stats().out_msgs)),
        SortOpt::MsgsFrom => rows.sort_by_key(|row| core::cmp::Reverse(row.stats().in_msgs)),
        SortOpt::BytesTo => rows.sort_by_key(|row| core::cmp::Reverse(row.stats().out_bytes)),
        SortOpt::BytesFrom => rows.sort_by_key(|row| core::cmp::Reverse(row.stats().in_bytes)),
        SortOpt::Last => rows.sort_by_key(|row| core::cmp::Reverse(row.last(clock))),
        SortOpt::Idle => rows.sort_by_key(|row| {
            core::cmp::Reverse(now.saturating_sub(row.last(clock).as_unix_nanos()))
        }),
        SortOpt::Uptime => rows.sort_by_key(|row| {
            let end = row.end(clock).as_unix_nanos();
            core::cmp::Reverse(end.saturating_sub(row.start(clock).as_unix_nanos()))
        }),
        SortOpt::Stop => rows.sort_by_key(|row| core::cmp::Reverse(row.end(clock))),
        SortOpt::Reason => rows.sort_by_key(|row| match row {
            Row::Open(..) => "",
            Row::Closed(closed) => closed.reason.as_str(),
        }),
        SortOpt::Rtt => rows.sort_by_key(|row| core::cmp::Reverse(row.rtt())),
    }
}

fn conn_info(server: &View<'_>, row: &Row<'_>, opts: &ConnzOptions, clock: &Clock) -> ConnInfo {
    let stats = row.stats();
    let start = row.start(clock);
    let last = row.last(clock);
    let end = row.end(clock);
    let mut info = ConnInfo {
        cid: row.cid(),
        kind: "Client",
        conn_type: row.listener().connz_type(),
        ip: String::new(),
        port: 0,
        start: rfc3339_nanos(start),
        last_activity: rfc3339_nanos(last),
        stop: None,
        reason: None,
        rtt: rtt_text(row.rtt()),
        uptime: uptime(end.as_unix_nanos().saturating_sub(start.as_unix_nanos())),
        idle: uptime(end.as_unix_nanos().saturating_sub(last.as_unix_nanos())),
        pending_bytes: row.pending(),
        in_msgs: stats.in_msgs,
        out_msgs: stats.out_msgs,
        in_bytes: stats.in_bytes,
        out_bytes: stats.out_bytes,
        subscriptions: row.subs(),
        name: None,
        lang: None,
        version: None,
        authorized_user: None,
        account: None,
        subscriptions_list: Vec::new(),
        subscriptions_list_detail: Vec::new(),
        jwt: None,
        issuer_key: None,
        name_tag: None,
        tags: Vec::new(),
    };
    match row {
        Row::Open(conn, client) => {
            info.ip = client.peer.ip().to_string();
            info.port = client.peer.port();
            info.name = non_empty(&client.options.name);
            info.lang = non_empty(&client.options.lang);
            info.version = non_empty(&client.options.version);
            if opts.subscriptions_detail {
                info.subscriptions_list_detail = client
                    .subs
                    .values()
                    // /connz leaves `account` out of each sub; /subsz fills it.
                    .map(|sub| SubDetail::new("", *conn, sub))
                    .collect();
            } else if opts.subscriptions {
                info.subscriptions_list = client
                    .subs
                    .values()
                    .map(|sub| String::from_utf8_lossy(&sub.subject).into_owned())
                    .collect();
            }
        }
        Row::Closed(closed) => {
            info.ip = closed.ip.clone();
            info.port = closed.port;
            info.stop = Some(rfc3339_nanos(closed.stop));
            info.reason = Some(closed.reason.as_str());
            info.name = closed.name.clone();
            info.lang = closed.lang.clone();
            info.version = closed.version.clone();
            if opts.subscriptions || opts.subscriptions_detail {
                info.subscriptions_list = closed.subscriptions.clone();
            }
            // Kept at close and shown with or without `auth`, as the
            // reference shows them.
            if let Some(jwt) = &closed.jwt {
                info.jwt = jwt.token.clone();
                info.issuer_key = Some(jwt.issuer_key.clone()).filter(|k| !k.is_empty());
                info.tags = jwt.tags.clone();
                info.name_tag = Some(jwt.name.clone()).filter(|n| !n.is_empty());
            }
        }
    }
    if opts.username {
        info.authorized_user = row.user().map(str::to_owned);
        let account = row.account(server);
        // The reference names the account only when it is not the global one.
        if account != GLOBAL_ACCOUNT_NAME {
            info.account = Some(account.to_owned());
        }
        // A closed client in `$G` keeps the name tag it had.
        if matches!(row, Row::Open(..)) || account != GLOBAL_ACCOUNT_NAME {
            info.name_tag = Some(name_tag(server, account).to_owned());
        }
        if let Row::Open(_, client) = row {
            let user = client
                .options
                .jwt
                .as_deref()
                .and_then(|token| crate::auth::jwt::decode_user(token).ok());
            if let Some(user) = user {
                if !user.nats.bearer_token {
                    info.jwt = Some(user.token.clone());
                }
                info.issuer_key = Some(user.claims.issuer.clone());
                info.tags = user.nats.tags.clone();
            }
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::runtime::CloseReason;
    use crate::server::{Server, ServerConfig};
    use crate::time::Instant;

    const SECOND: u64 = 1_000_000_000;
    const WALL_START: u64 = 1_763_818_200 * SECOND;

    fn clock(seconds: u64) -> Clock {
        Clock {
            now: Instant::from_nanos(seconds * SECOND),
            wall_now: WallTime::from_unix_nanos(WALL_START + seconds * SECOND),
        }
    }

    fn send(server: &mut Server, at: u64, conn: ConnId, text: &str) {
        let mut buf = BytesMut::from(text.as_bytes());
        server.handle_read(Instant::from_nanos(at * SECOND), conn, &mut buf);
        while server.poll_action().is_some() {}
        for conn in server.open_connections() {
            if let Some(bytes) = server.take_outbound(conn) {
                server.handle_written(conn, bytes.len());
            }
        }
    }

    /// Two clients: 1 subscribes twice, 2 publishes three 5-byte messages on `a`.
    fn traffic() -> Server {
        let mut server = Server::new(ServerConfig::default(), 1);
        for cid in [1, 2] {
            let peer = core::net::SocketAddr::from(([127, 0, 0, 1], 5000 + cid as u16));
            server.handle_accept(
                Instant::ZERO,
                ConnId(cid),
                peer,
                crate::runtime::ListenerKind::Client,
            );
        }
        send(
            &mut server,
            1,
            ConnId(1),
            "CONNECT {\"name\":\"sub\",\"lang\":\"rust\",\"version\":\"1.0\"}\r\nSUB a 1\r\nSUB b q 2\r\n",
        );
        send(
            &mut server,
            2,
            ConnId(2),
            "CONNECT {}\r\nPUB a 5\r\nhello\r\nPUB a 5\r\nhello\r\nPUB a 5\r\nhello\r\n",
        );
        server
    }

    #[test]
    fn counters_and_sorting_are_true() {
        let server = traffic();
        let opts = ConnzOptions::from_query("sort=msgs_from&subs=detail").unwrap();
        let page = connz(&server.view(), &opts, clock(10));
        assert_eq!((page.total, page.num_connections), (2, 2));
        let publisher = &page.connections[0];
        assert_eq!(publisher.cid, 2);
        assert_eq!((publisher.in_msgs, publisher.in_bytes), (3, 15));
        let subscriber = &page.connections[1];
        assert_eq!((subscriber.out_msgs, subscriber.out_bytes), (3, 15));
        assert_eq!(subscriber.subscriptions, 2);
        assert_eq!(subscriber.name.as_deref(), Some("sub"));
        assert_eq!(subscriber.subscriptions_list_detail.len(), 2);
        assert_eq!(subscriber.subscriptions_list_detail[0].msgs, 3);
        assert_eq!(subscriber.start, "2025-11-22T13:30:00Z");
        assert_eq!(subscriber.uptime, "10s");
        assert_eq!(subscriber.idle, "9s");
    }

    #[test]
    fn a_closing_client_is_remembered_with_its_counters() {
        let server = traffic();
        let client = server.client(ConnId(2)).unwrap();
        let closed = crate::server::closed_connection(client, ConnId(2), "$G", clock(5));
        assert_eq!(closed.reason, CloseReason::ClientClosed);
        assert_eq!((closed.stats.in_msgs, closed.stats.in_bytes), (3, 15));
        assert_eq!(
            closed.stop,
            WallTime::from_unix_nanos(WALL_START + 5 * SECOND)
        );
    }

    /// Pins the JSON shape (field names, order, omitted empties). Every value
    /// is deterministic here: times come from the test's clock.
    #[test]
    fn connz_json_snapshot() {
        let server = traffic();
        let opts = ConnzOptions::from_query("subs=detail&auth=1").unwrap();
        let page = connz(&server.view(), &opts, clock(10));
        insta::assert_snapshot!(serde_json::to_string_pretty(&page).unwrap());
    }

    #[test]
    fn paging_and_cid_filter() {
        let server = traffic();
        let opts = ConnzOptions::from_query("limit=1&offset=1").unwrap();
        let page = connz(&server.view(), &opts, clock(3));
        assert_eq!((page.total, page.num_connections), (2, 1));
        assert_eq!(page.connections[0].cid, 2);
        let opts = ConnzOptions::from_query("cid=1").unwrap();
        let page = connz(&server.view(), &opts, clock(3));
        assert_eq!(page.connections.len(), 1);
        assert_eq!(page.connections[0].cid, 1);
    }

    #[test]
    fn closed_connections_carry_their_reason() {
        let mut server = traffic();
        server.monitor_mut().closed.push(ClosedConnection {
            cid: ConnId(9),
            listener: crate::runtime::ListenerKind::Client,
            ip: "127.0.0.1".into(),
            port: 6000,
            start: WallTime::from_unix_nanos(WALL_START),
            stop: WallTime::from_unix_nanos(WALL_START + 4 * SECOND),
            last_activity: WallTime::from_unix_nanos(WALL_START + SECOND),
            stats: ClientStats::default(),
            name: None,
            lang: None,
            version: None,
            account: "$G".into(),
            user: None,
            subscriptions: vec!["x".into()],
            rtt: None,
            reason: CloseReason::SlowConsumerPendingBytes,
            jwt: None,
        });
        let opts = ConnzOptions::from_query("state=closed&subs=1").unwrap();
        let page = connz(&server.view(), &opts, clock(20));
        assert_eq!(page.total, 1);
        let info = &page.connections[0];
        assert_eq!(info.reason, Some("Slow Consumer (Pending Bytes)"));
        assert_eq!(info.uptime, "4s");
        assert_eq!(info.subscriptions_list, vec!["x".to_owned()]);
        let json = serde_json::to_value(info).unwrap();
        assert_eq!(json["stop"], "2025-11-22T13:30:04Z");
        let opts = ConnzOptions::from_query("state=any").unwrap();
        assert_eq!(connz(&server.view(), &opts, clock(20)).total, 3);
    }
}
