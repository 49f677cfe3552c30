//! `/connz` query options: the raw query string in, [`ConnzOptions`] or a
//! [`QueryError`] out.
//!
//! Role: decode exactly what nats-server v2.15.1 decodes, with its defaults
//! and its rejections, so a script that works against one works against both.
//! The error texts (`Display`) are the reference's 400 response bodies; Go's
//! `strconv` error wording is part of them.
//!
//! Invariants:
//! - `limit >= 1` (0 or negative means the default, 1024); `offset >= 0`.
//! - A `cid` forces `limit` to 1.
//! - `sort=stop` and `sort=reason` are accepted only with `state=closed`.

use crate::format::go_quote;
use core::fmt;

/// nats-server's `DefaultConnListSize`.
pub const DEFAULT_CONN_LIST_SIZE: usize = 1024;

/// Which connections `/connz` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnState {
    #[default]
    Open,
    Closed,
    Any,
}

/// `/connz` `sort=` keys, as the reference names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOpt {
    #[default]
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
    Rtt,
}

impl SortOpt {
    const ALL: [SortOpt; 14] = [
        SortOpt::Cid,
        SortOpt::Start,
        SortOpt::Subs,
        SortOpt::Pending,
        SortOpt::MsgsTo,
        SortOpt::MsgsFrom,
        SortOpt::BytesTo,
        SortOpt::BytesFrom,
        SortOpt::Last,
        SortOpt::Idle,
        SortOpt::Uptime,
        SortOpt::Stop,
        SortOpt::Reason,
        SortOpt::Rtt,
    ];

    /// The name `/connz` echoes back in `sort`.
    pub fn as_str(self) -> &'static str {
        match self {
            SortOpt::Cid => "cid",
            SortOpt::Start => "start",
            SortOpt::Subs => "subs",
            SortOpt::Pending => "pending",
            SortOpt::MsgsTo => "msgs_to",
            SortOpt::MsgsFrom => "msgs_from",
            SortOpt::BytesTo => "bytes_to",
            SortOpt::BytesFrom => "bytes_from",
            SortOpt::Last => "last",
            SortOpt::Idle => "idle",
            SortOpt::Uptime => "uptime",
            SortOpt::Stop => "stop",
            SortOpt::Reason => "reason",
            SortOpt::Rtt => "rtt",
        }
    }

    /// Sort keys are matched exactly (the reference does not fold case).
    pub fn parse(text: &str) -> Option<SortOpt> {
        SortOpt::ALL.into_iter().find(|opt| opt.as_str() == text)
    }
}

/// What `/routez` (and `ROUTEZ` requests) list besides the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoutezOptions {
    /// `subs=1`: each route's interest subjects.
    pub subscriptions: bool,
    /// `subs=detail`: each route's interest in detail.
    pub subscriptions_detail: bool,
}

impl RoutezOptions {
    /// Decodes `subs` as the reference does (`detail`, or a Go bool).
    pub fn from_query(query: &str) -> Result<RoutezOptions, QueryError> {
        let (subscriptions, subscriptions_detail) = decode_subs(&Params::parse(query))?;
        Ok(RoutezOptions {
            subscriptions,
            subscriptions_detail,
        })
    }
}

/// `subs`: (list, detail), the reference's `decodeSubs`.
fn decode_subs(params: &Params) -> Result<(bool, bool), QueryError> {
    if params.get("subs").eq_ignore_ascii_case("detail") {
        return Ok((false, true));
    }
    Ok((decode_bool(params, "subs")?, false))
}

/// Everything `/connz` takes from its query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnzOptions {
    pub sort: SortOpt,
    /// `auth=1`: report `authorized_user` and `account`.
    pub username: bool,
    pub subscriptions: bool,
    pub subscriptions_detail: bool,
    pub offset: usize,
    pub limit: usize,
    /// 0: no cid filter.
    pub cid: u64,
    pub state: ConnState,
    /// `user=` filter; empty: none.
    pub user: String,
    /// `acc=` filter; empty: none.
    pub account: String,
    /// `filter_subject=`; only with `acc`.
    pub filter_subject: String,
}

impl Default for ConnzOptions {
    fn default() -> Self {
        ConnzOptions {
            sort: SortOpt::Cid,
            username: false,
            subscriptions: false,
            subscriptions_detail: false,
            offset: 0,
            limit: DEFAULT_CONN_LIST_SIZE,
            cid: 0,
            state: ConnState::Open,
            user: String::new(),
            account: String::new(),
            filter_subject: String::new(),
        }
    }
}

/// Why a `/connz` query is refused (HTTP 400 with the `Display` text as body).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryError {
    /// A boolean parameter (`auth`, `subs`) is not one of Go's bool spellings.
    Bool { param: &'static str, value: String },
    /// An integer parameter (`offset`, `limit`) is not a decimal int.
    Int { param: &'static str, value: String },
    /// `cid` is not a decimal u64.
    Uint64 { param: &'static str, value: String },
    /// `state` is not open, closed, any or all.
    State { value: String },
    /// `sort` names no known key.
    Sort { value: String },
    /// `sort=stop` without `state=closed`.
    StopNeedsClosed,
    /// `sort=reason` without `state=closed`.
    ReasonNeedsClosed,
    /// `filter_subject` without `acc`.
    FilterNeedsAccount,
    /// `/subsz` `test` is not a literal subject.
    TestSubject { value: String },
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Bool { param, value } => write!(
                f,
                "Error decoding boolean for '{param}': strconv.ParseBool: parsing {}: invalid syntax",
                go_quote(value.as_bytes())
            ),
            QueryError::Int { param, value } => write!(
                f,
                "Error decoding int for '{param}': strconv.Atoi: parsing {}: {}",
                go_quote(value.as_bytes()),
                int_failure(value)
            ),
            QueryError::Uint64 { param, value } => write!(
                f,
                "Error decoding uint64 for '{param}': strconv.ParseUint: parsing {}: {}",
                go_quote(value.as_bytes()),
                uint_failure(value)
            ),
            QueryError::State { value } => write!(f, "Error decoding state for {value}"),
            QueryError::Sort { value } => write!(f, "invalid sorting option: {value}"),
            QueryError::StopNeedsClosed => {
                f.write_str("sort by stop only valid on closed connections")
            }
            QueryError::ReasonNeedsClosed => {
                f.write_str("sort by reason only valid on closed connections")
            }
            QueryError::FilterNeedsAccount => {
                f.write_str("filter by subject only valid with account filtering")
            }
            QueryError::TestSubject { value } => write!(
                f,
                "invalid test subject, must be valid publish subject: {value}"
            ),
        }
    }
}

impl std::error::Error for QueryError {}

impl ConnzOptions {
    /// Decodes a raw query string (without the `?`), the first value of each
    /// parameter winning, as Go's `url.Values.Get` does.
    pub fn from_query(query: &str) -> Result<ConnzOptions, QueryError> {
        let params = Params::parse(query);
        let mut opts = ConnzOptions::default();

        let sort = params.get("sort");
        if !sort.is_empty() {
            opts.sort = SortOpt::parse(sort).ok_or_else(|| QueryError::Sort {
                value: sort.to_owned(),
            })?;
        }
        opts.username = decode_bool(&params, "auth")?;
        (opts.subscriptions, opts.subscriptions_detail) = decode_subs(&params)?;
        let offset = decode_int(&params, "offset")?;
        let limit = decode_int(&params, "limit")?;
        opts.cid = decode_uint64(&params, "cid")?;
        opts.state = decode_state(&params)?;
        opts.user = params.get("user").to_owned();
        opts.account = params.get("acc").to_owned();
        opts.filter_subject = params.get("filter_subject").to_owned();

        // Out-of-range numbers fall back to the defaults, as in the reference.
        opts.offset = usize::try_from(offset).unwrap_or(0);
        opts.limit = match usize::try_from(limit) {
            Ok(0) | Err(_) => DEFAULT_CONN_LIST_SIZE,
            Ok(limit) => limit,
        };
        if opts.sort == SortOpt::Stop && opts.state != ConnState::Closed {
            return Err(QueryError::StopNeedsClosed);
        }
        if opts.sort == SortOpt::Reason && opts.state != ConnState::Closed {
            return Err(QueryError::ReasonNeedsClosed);
        }
        if opts.cid > 0 {
            opts.limit = 1;
        }
        if !opts.filter_subject.is_empty() && opts.filter_subject != ">" {
            if opts.account.is_empty() {
                return Err(QueryError::FilterNeedsAccount);
            }
        } else {
            opts.filter_subject.clear();
        }
        debug_assert!(opts.limit >= 1);
        Ok(opts)
    }
}

/// `/subsz` (and `$SYS...SUBSZ`) options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubszOptions {
    /// List the subscriptions, not only the counters.
    pub subscriptions: bool,
    pub offset: usize,
    pub limit: usize,
    /// Only subscriptions a message on this literal subject would reach.
    pub test: Option<String>,
    /// Only this account.
    pub account: String,
}

impl Default for SubszOptions {
    fn default() -> Self {
        SubszOptions {
            subscriptions: false,
            offset: 0,
            limit: DEFAULT_CONN_LIST_SIZE,
            test: None,
            account: String::new(),
        }
    }
}

impl SubszOptions {
    /// Decodes `subs`, `offset`, `limit`, `test` and `acc` as the reference does.
    pub fn from_query(query: &str) -> Result<SubszOptions, QueryError> {
        let params = Params::parse(query);
        let subscriptions = decode_bool(&params, "subs")?;
        let offset = decode_int(&params, "offset")?;
        let limit = decode_int(&params, "limit")?;
        let test = params.get("test");
        SubszOptions::new(
            subscriptions,
            offset,
            limit,
            test,
            params.get("acc").to_owned(),
        )
    }

    /// Applies the reference's defaults and checks to decoded values.
    pub fn new(
        subscriptions: bool,
        offset: i64,
        limit: i64,
        test: &str,
        account: String,
    ) -> Result<SubszOptions, QueryError> {
        let test = if test.is_empty() {
            None
        } else if crate::subject::is_valid_literal_subject(test.as_bytes()) {
            Some(test.to_owned())
        } else {
            return Err(QueryError::TestSubject {
                value: test.to_owned(),
            });
        };
        Ok(SubszOptions {
            subscriptions,
            offset: usize::try_from(offset).unwrap_or(0),
            limit: match usize::try_from(limit) {
                Ok(0) | Err(_) => DEFAULT_CONN_LIST_SIZE,
                Ok(limit) => limit,
            },
            test,
            account,
        })
    }
}

/// The first value of `key` in a raw query string, percent-decoded; empty
/// when absent (Go's `url.Values.Get`).
pub fn param(query: &str, key: &str) -> String {
    Params::parse(query).get(key).to_owned()
}

/// A boolean query parameter as the reference decodes it (absent: false).
pub fn decode_bool_param(query: &str, key: &'static str) -> Result<bool, QueryError> {
    decode_bool(&Params::parse(query), key)
}

/// Decoded `key=value` pairs in query order.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Params {
        let pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
            .collect();
        Params(pairs)
    }

    /// The first value for `key`; empty when absent.
    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// `+` is a space and `%XX` a byte; a malformed escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

fn decode_bool(params: &Params, param: &'static str) -> Result<bool, QueryError> {
    match params.get(param) {
        "" => Ok(false),
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(QueryError::Bool {
            param,
            value: other.to_owned(),
        }),
    }
}

fn decode_int(params: &Params, param: &'static str) -> Result<i64, QueryError> {
    let text = params.get(param);
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<i64>().map_err(|_| QueryError::Int {
        param,
        value: text.to_owned(),
    })
}

fn decode_uint64(params: &Params, param: &'static str) -> Result<u64, QueryError> {
    let text = params.get(param);
    if text.is_empty() {
        return Ok(0);
    }
    // Go's ParseUint refuses a sign; Rust's accepts a leading '+'.
    if text.starts_with('+') {
        return Err(QueryError::Uint64 {
            param,
            value: text.to_owned(),
        });
    }
    text.parse::<u64>().map_err(|_| QueryError::Uint64 {
        param,
        value: text.to_owned(),
    })
}

fn decode_state(params: &Params) -> Result<ConnState, QueryError> {
    let text = params.get("state");
    match text.to_ascii_lowercase().as_str() {
        "" | "open" => Ok(ConnState::Open),
        "closed" => Ok(ConnState::Closed),
        "any" | "all" => Ok(ConnState::Any),
        _ => Err(QueryError::State {
            value: text.to_owned(),
        }),
    }
}

/// Go's Atoi says "value out of range" for well-formed digits that overflow.
fn int_failure(text: &str) -> &'static str {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        "value out of range"
    } else {
        "invalid syntax"
    }
}

fn uint_failure(text: &str) -> &'static str {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        "value out of range"
    } else {
        "invalid syntax"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_query_is_the_reference_defaults() {
        let opts = ConnzOptions::from_query("").unwrap();
        assert_eq!(opts, ConnzOptions::default());
        assert_eq!(opts.limit, 1024);
        assert_eq!(opts.state, ConnState::Open);
    }

    #[test]
    fn every_sort_key_round_trips() {
        for opt in SortOpt::ALL {
            assert_eq!(SortOpt::parse(opt.as_str()), Some(opt));
        }
        assert_eq!(SortOpt::parse("CID"), None);
    }

    #[test]
    fn parameters_decode() {
        let opts = ConnzOptions::from_query(
            "sort=bytes_to&limit=5&offset=2&subs=detail&auth=true&state=ANY&acc=%24G&user=a+b",
        )
        .unwrap();
        assert_eq!(opts.sort, SortOpt::BytesTo);
        assert_eq!(opts.limit, 5);
        assert_eq!(opts.offset, 2);
        assert!(opts.subscriptions_detail);
        assert!(!opts.subscriptions);
        assert!(opts.username);
        assert_eq!(opts.state, ConnState::Any);
        assert_eq!(opts.account, "$G");
        assert_eq!(opts.user, "a b");
    }

    #[test]
    fn cid_forces_limit_one_and_bad_numbers_fall_back() {
        let opts = ConnzOptions::from_query("cid=7&limit=50").unwrap();
        assert_eq!((opts.cid, opts.limit), (7, 1));
        let opts = ConnzOptions::from_query("limit=-3&offset=-1").unwrap();
        assert_eq!((opts.limit, opts.offset), (1024, 0));
    }

    #[test]
    fn errors_carry_the_reference_text() {
        let cases = [
            ("sort=foo", "invalid sorting option: foo"),
            ("sort=stop", "sort by stop only valid on closed connections"),
            ("sort=reason&state=any", "sort by reason only valid on closed connections"),
            ("state=gone", "Error decoding state for gone"),
            (
                "subs=maybe",
                "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"maybe\": invalid syntax",
            ),
            (
                "limit=abc",
                "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax",
            ),
            (
                "cid=-1",
                "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"-1\": invalid syntax",
            ),
            (
                "filter_subject=foo",
                "filter by subject only valid with account filtering",
            ),
        ];
        for (query, text) in cases {
            let err = ConnzOptions::from_query(query).unwrap_err();
            assert_eq!(err.to_string(), text, "query {query}");
        }
        assert!(ConnzOptions::from_query("sort=stop&state=closed").is_ok());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb+c"), "a.b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
