//! The HTTP upgrade that opens a WebSocket connection (RFC 6455 section 4),
//! judged as nats-server v2.15.1 judges it.
//!
//! Input: the bytes a client sent on the websocket port ([`parse_request`]),
//! then the parsed [`Request`] and the listener's [`UpgradePolicy`]
//! ([`upgrade`]). Output: an [`Upgrade`] whose [`Upgrade::response`] is the
//! `101 Switching Protocols` answer, or a typed refusal whose `response` is
//! the exact bytes the reference answers with (its HTTP server's own errors
//! for malformed requests, `http.Error` texts for the websocket checks).
//!
//! Invariants:
//! - A request is read from at most [`MAX_REQUEST_BYTES`]; past that it is
//!   refused (431), so a client never makes the server buffer more.
//! - The checks run in the reference's order: method, host, `Upgrade`,
//!   `Connection`, key, version, origin; the first failure decides.
//! - No header value from the client reaches a response except the accept
//!   key, which is base64 of a SHA-1 digest (no CR or LF can appear).

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::format::http_date;
use crate::time::WallTime;

/// The most bytes of request line and headers read before refusing.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The GUID every server appends to the client's key (RFC 6455 section 1.3).
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// An HTTP request head: what the upgrade checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// The `y` of `HTTP/1.y`.
    pub minor_version: u8,
    /// Names as sent; looked up ignoring ASCII case.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether a comma-separated value of `name` holds `token` (any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|value| value.split(','))
            .any(|item| item.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
    }

    /// The value of cookie `name` (Go's `Request.Cookie`: the first match
    /// over every `Cookie` header, quotes around the value removed).
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.values("Cookie")
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| {
                let value = value.trim();
                value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value)
                    .to_string()
            })
    }

    /// The request's host: the `Host` header (empty when missing).
    pub fn host(&self) -> &str {
        self.header("Host").unwrap_or("")
    }
}

/// A request the HTTP layer refuses before the websocket checks, with Go's
/// HTTP server's answers (which close the connection).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not an HTTP/1.x request head.
    #[error("malformed HTTP request")]
    Malformed,
    /// An HTTP version other than 1.x.
    #[error("unsupported protocol version")]
    UnsupportedVersion,
    /// HTTP/1.1 without a `Host` header.
    #[error("missing required Host header")]
    MissingHost,
    /// More than one `Host` header.
    #[error("too many Host headers")]
    TooManyHosts,
    /// The head is longer than [`MAX_REQUEST_BYTES`].
    #[error("request header fields too large")]
    TooLarge,
}

impl RequestError {
    /// The response bytes, as Go's HTTP server writes them.
    pub fn response(self) -> Vec<u8> {
        let status = match self {
            RequestError::Malformed => "400 Bad Request",
            RequestError::UnsupportedVersion => {
                "505 HTTP Version Not Supported: unsupported protocol version"
            }
            RequestError::MissingHost => "400 Bad Request: missing required Host header",
            RequestError::TooManyHosts => "400 Bad Request: too many Host headers",
            RequestError::TooLarge => "431 Request Header Fields Too Large",
        };
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Connection: close\r\n\r\n{status}"
        )
        .into_bytes()
    }
}

/// Reads a request head from the start of `buf`. `Ok(None)`: incomplete,
/// read more. `Ok(Some((request, n)))`: the head took `n` bytes.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, RequestError> {
    let Some(end) = head_end(buf) else {
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge);
        }
        return Ok(None);
    };
    if end > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| RequestError::Malformed)?;
    let mut lines = head
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let request_line = lines.next().ok_or(RequestError::Malformed)?;
    let mut parts = request_line.splitn(3, ' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed);
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if method.is_empty() || !method.chars().all(token) || target.is_empty() {
        return Err(RequestError::Malformed);
    }
    let minor_version = http_version(version)?;
    let mut headers = Vec::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(RequestError::Malformed)?;
        if name.is_empty() || !name.chars().all(token) {
            return Err(RequestError::Malformed);
        }
        headers.push((
            name.to_string(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    let request = Request {
        method: method.to_string(),
        target: target.to_string(),
        minor_version,
        headers,
    };
    match request.values("Host").count() {
        0 if minor_version >= 1 => return Err(RequestError::MissingHost),
        0 | 1 => {}
        _ => return Err(RequestError::TooManyHosts),
    }
    Ok(Some((request, end)))
}

/// The index just past the empty line ending the head (`\r\n\r\n` or `\n\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut index = 0;
    while let Some(offset) = buf[index..].iter().position(|&b| b == b'\n') {
        let newline = index + offset;
        let next = newline + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some(next + 1);
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some(next + 2);
        }
        index = next;
    }
    None
}

/// `HTTP/1.y` -> y.
fn http_version(text: &str) -> Result<u8, RequestError> {
    let numbers = text.strip_prefix("HTTP/").ok_or(RequestError::Malformed)?;
    let (major, minor) = numbers.split_once('.').ok_or(RequestError::Malformed)?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Err(RequestError::Malformed);
    }
    if major != "1" {
        return Err(RequestError::UnsupportedVersion);
    }
    minor.parse().map_err(|_| RequestError::Malformed)
}

/// An allowed origin: its scheme and port, filed under its host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedOrigin {
    host: String,
    scheme: String,
    port: String,
}

/// What the listener's options say about upgrades.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradePolicy {
    /// The listener speaks TLS (`wss`): the same-origin default port is 443.
    pub tls: bool,
    pub same_origin: bool,
    allowed: Vec<AllowedOrigin>,
    /// Extra response headers (`headers { }`), checked at configuration.
    pub headers: Vec<(String, String)>,
    /// `compression: true`: accept permessage-deflate when offered.
    pub compression: bool,
    /// Cookies whose values stand in for missing CONNECT credentials.
    pub cookies: super::CookieNames,
}

impl UpgradePolicy {
    /// The policy of a listener; origins that do not parse are skipped, as
    /// the reference skips them (with an error it logs at start).
    pub fn new(
        tls: bool,
        same_origin: bool,
        allowed_origins: &[String],
        headers: Vec<(String, String)>,
    ) -> Self {
        let allowed = allowed_origins
            .iter()
            .filter_map(|origin| {
                let url = OriginUrl::parse(origin).ok()?;
                let (host, port) = host_and_port(url.scheme == "https", &url.host).ok()?;
                Some(AllowedOrigin {
                    host,
                    scheme: url.scheme,
                    port,
                })
            })
            .collect();
        UpgradePolicy {
            tls,
            same_origin,
            allowed,
            headers,
            compression: false,
            cookies: super::CookieNames::default(),
        }
    }

    /// The reference's origin check: nothing to check without
    /// `same_origin` and an allowed list, or without an `Origin` header.
    fn check_origin(&self, request: &Request) -> Result<(), String> {
        if !self.same_origin && self.allowed.is_empty() {
            return Ok(());
        }
        let origin = request
            .header("Origin")
            .filter(|o| !o.is_empty())
            .or_else(|| request.header("Sec-Websocket-Origin"))
            .unwrap_or("");
        if origin.is_empty() {
            return Ok(());
        }
        let url = OriginUrl::parse(origin)?;
        let (host, port) = host_and_port(url.scheme == "https", &url.host)?;
        if self.same_origin {
            let (request_host, request_port) = host_and_port(self.tls, request.host())?;
            if host != request_host || port != request_port {
                return Err(String::from("not same origin"));
            }
        }
        if !self.allowed.is_empty() {
            // The reference keeps one entry per host: the last one written.
            let entry = self.allowed.iter().rev().find(|a| a.host == host);
            match entry {
                Some(a) if a.scheme == url.scheme && a.port == port => {}
                _ => return Err(String::from("not in the allowed list")),
            }
        }
        Ok(())
    }
}

/// The scheme and host of an origin, as Go's `url.ParseRequestURI` splits
/// an absolute URL.
struct OriginUrl {
    scheme: String,
    host: String,
}

impl OriginUrl {
    fn parse(text: &str) -> Result<OriginUrl, String> {
        let invalid = || format!("parse \"{text}\": invalid URI for request");
        if text.starts_with('/') {
            return Ok(OriginUrl {
                scheme: String::new(),
                host: String::new(),
            });
        }
        let (scheme, rest) = text.split_once(':').ok_or_else(invalid)?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return Err(invalid());
        }
        let host = match rest.strip_prefix("//") {
            Some(authority) => {
                let end = authority.find(['/', '?', '#']).unwrap_or(authority.len());
                let authority = &authority[..end];
                authority.rsplit_once('@').map_or(authority, |(_, h)| h)
            }
            None => "",
        };
        Ok(OriginUrl {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_string(),
        })
    }
}

/// Host (lower case) and port of `host[:port]`; a missing port is the
/// scheme's default, as the reference's `wsGetHostAndPort`.
fn host_and_port(tls: bool, hostport: &str) -> Result<(String, String), String> {
    let default_port = if tls { "443" } else { "80" };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, rest) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("address {hostport}: missing ']' in address"))?;
        match rest {
            "" => (host, default_port),
            _ => match rest.strip_prefix(':') {
                Some(port) => (host, port),
                None => return Err(format!("address {hostport}: missing port in address")),
            },
        }
    } else {
        match hostport.split_once(':') {
            None => (hostport, default_port),
            Some((host, port)) if !port.contains(':') => (host, port),
            Some(_) => return Err(format!("address {hostport}: too many colons in address")),
        }
    };
    Ok((host.to_ascii_lowercase(), port.to_string()))
}

/// Why the websocket checks refused an HTTP request.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("request method must be GET")]
    MethodNotGet,
    #[error("'Host' missing in request")]
    HostMissing,
    #[error("invalid value for header 'Upgrade'")]
    BadUpgrade,
    #[error("invalid value for header 'Connection'")]
    BadConnection,
    #[error("key missing")]
    KeyMissing,
    #[error("invalid version")]
    BadVersion,
    /// Holds why (`not same origin`, `not in the allowed list`, a parse error).
    #[error("origin not allowed: {0}")]
    OriginNotAllowed(String),
    /// Bytes followed the request before the upgrade was answered: the
    /// reference closes the connection without an answer.
    #[error("client sent data before handshake is complete")]
    EarlyData,
}

impl Refusal {
    /// The HTTP status the reference answers with.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Refusal::MethodNotGet => (405, "Method Not Allowed"),
            Refusal::OriginNotAllowed(_) => (403, "Forbidden"),
            _ => (400, "Bad Request"),
        }
    }

    /// The response bytes (Go's `http.Error` with the reference's extra
    /// header), `None` when the reference sends nothing.
    pub fn response(&self, now: WallTime) -> Option<Vec<u8>> {
        if *self == Refusal::EarlyData {
            return None;
        }
        let (code, text) = self.status();
        let body = format!("{text}\n");
        Some(
            format!(
                "HTTP/1.1 {code} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Sec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\n\
                 Date: {}\r\nContent-Length: {}\r\n\r\n{body}",
                http_date(now),
                body.len()
            )
            .into_bytes(),
        )
    }
}

/// An accepted upgrade: what the 101 answer says and how the session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Accept`.
    pub accept_key: String,
    /// The client asked (`Nats-No-Masking: true`) to send unmasked frames.
    pub no_masking: bool,
    /// A browser (`User-Agent: Mozilla/...`): the reference caps its frames
    /// at [`super::frame::BROWSER_FRAME_SIZE`].
    pub browser: bool,
    /// Safari (its agent names `Version/` and `Safari/`): compressed
    /// messages are sent whole, as the reference does for it.
    pub safari: bool,
    /// permessage-deflate: both sides compress, without context takeover.
    pub compression: bool,
    /// Credentials from the configured cookies.
    pub cookies: super::CookieCredentials,
    /// The first `X-Forwarded-For` header's value, when it is one IP address.
    pub forwarded_for: Option<String>,
}

impl Upgrade {
    /// The `101 Switching Protocols` response.
    pub fn response(&self, policy: &UpgradePolicy) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            self.accept_key
        );
        if self.compression {
            out.push_str(
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover\r\n",
            );
        }
        if self.no_masking {
            out.push_str("Nats-No-Masking: true\r\n");
        }
        for (name, value) in &policy.headers {
            debug_assert!(!value.contains(['\r', '\n']));
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// The reference's checks, in its order.
pub fn upgrade(request: &Request, policy: &UpgradePolicy) -> Result<Upgrade, Refusal> {
    if request.method != "GET" {
        return Err(Refusal::MethodNotGet);
    }
    if request.host().is_empty() {
        return Err(Refusal::HostMissing);
    }
    if !request.has_token("Upgrade", "websocket") {
        return Err(Refusal::BadUpgrade);
    }
    if !request.has_token("Connection", "Upgrade") {
        return Err(Refusal::BadConnection);
    }
    let key = request
        .header("Sec-Websocket-Key")
        .filter(|key| !key.is_empty())
        .ok_or(Refusal::KeyMissing)?;
    if !request.has_token("Sec-Websocket-Version", "13") {
        return Err(Refusal::BadVersion);
    }
    policy
        .check_origin(request)
        .map_err(Refusal::OriginNotAllowed)?;
    let agent = request.header("User-Agent").unwrap_or("");
    let browser = agent.starts_with("Mozilla/");
    let safari = browser && agent.contains("Version/") && agent.contains("Safari/");
    // The reference looks for the extension's name only; its parameters
    // are answered with no context takeover either way.
    let compression = policy.compression
        && request
            .values("Sec-Websocket-Extensions")
            .flat_map(|value| value.split([',', ';']))
            .any(|item| {
                item.trim_matches([' ', '\t'])
                    .eq_ignore_ascii_case("permessage-deflate")
            });
    let cookie = |name: &Option<String>| {
        name.as_deref()
            .filter(|name| !name.is_empty())
            .and_then(|name| request.cookie(name))
    };
    let cookies = super::CookieCredentials {
        user: cookie(&policy.cookies.user),
        pass: cookie(&policy.cookies.pass),
        token: cookie(&policy.cookies.token),
        jwt: cookie(&policy.cookies.jwt),
    };
    // Only the first header line counts, and only a bare address (a proxy
    // chain "a, b" is ignored), as in the reference.
    let forwarded_for = request
        .values("X-Forwarded-For")
        .next()
        .map(|value| value.trim_matches([' ', '\t']))
        .filter(|value| value.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_owned);
    Ok(Upgrade {
        accept_key: accept_key(key),
        no_masking: request.header("Nats-No-Masking") == Some("true"),
        browser,
        safari,
        compression,
        cookies,
        forwarded_for,
    })
}

impl Upgrade {
    /// What the server machine keeps of the request.
    pub fn session(&self) -> super::ClientSession {
        super::ClientSession {
            cookies: self.cookies.clone(),
            forwarded_for: self.forwarded_for.clone(),
        }
    }
}

/// base64(SHA-1(key + GUID)), RFC 6455 section 4.2.2.
pub fn accept_key(key: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(key.as_bytes());
    hasher.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET / HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn judge(text: &str, policy: &UpgradePolicy) -> Result<Upgrade, Refusal> {
        let (request, used) = parse_request(text.as_bytes()).unwrap().unwrap();
        assert_eq!(used, text.len());
        upgrade(&request, policy)
    }

    #[test]
    fn the_rfc_example_is_accepted() {
        let upgrade = judge(GOOD, &UpgradePolicy::default()).unwrap();
        assert_eq!(upgrade.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let policy = UpgradePolicy::new(false, false, &[], vec![("X-A".into(), "1".into())]);
        assert_eq!(
            String::from_utf8(upgrade.response(&policy)).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-A: 1\r\n\r\n"
        );
    }

    #[test]
    fn cookies_carry_credentials() {
        let mut policy = UpgradePolicy::default();
        policy.cookies.user = Some("nats_user".into());
        policy.cookies.token = Some("nats_token".into());
        let request = GOOD.replace(
            "\r\n\r\n",
            "\r\nCookie: other=1; nats_user=alice\r\nCookie: nats_token=\"s3cret\"\r\n\r\n",
        );
        let upgrade = judge(&request, &policy).unwrap();
        assert_eq!(upgrade.cookies.user.as_deref(), Some("alice"));
        assert_eq!(upgrade.cookies.token.as_deref(), Some("s3cret"));
        assert_eq!(upgrade.cookies.pass, None);
        assert!(judge(GOOD, &policy).unwrap().cookies.is_empty());
    }

    #[test]
    fn forwarded_for_is_the_first_header_when_it_is_one_address() {
        let forwarded = |headers: &str| {
            let request = GOOD.replace("\r\n\r\n", &format!("\r\n{headers}\r\n\r\n"));
            judge(&request, &UpgradePolicy::default())
                .unwrap()
                .forwarded_for
        };
        assert_eq!(
            forwarded("X-Forwarded-For: 10.1.2.3").as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(forwarded("x-forwarded-for:  ::1 ").as_deref(), Some("::1"));
        assert_eq!(
            forwarded("X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-For: 1.1.1.1").as_deref(),
            Some("9.9.9.9")
        );
        assert_eq!(forwarded("X-Forwarded-For: 1.2.3.4, 5.6.7.8"), None);
        assert_eq!(forwarded("X-Forwarded-For: proxy"), None);
        assert_eq!(
            judge(GOOD, &UpgradePolicy::default())
                .unwrap()
                .forwarded_for,
            None
        );
    }

    #[test]
    fn compression_when_both_sides_ask() {
        let offer = GOOD.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        );
        let mut policy = UpgradePolicy::default();
        assert!(!judge(&offer, &policy).unwrap().compression);
        policy.compression = true;
        assert!(!judge(GOOD, &policy).unwrap().compression);
        let upgrade = judge(&offer, &policy).unwrap();
        assert!(upgrade.compression);
        let response = String::from_utf8(upgrade.response(&policy)).unwrap();
        assert!(response.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n"
        ));
    }

    #[test]
    fn each_check_refuses_in_the_references_order() {
        let policy = UpgradePolicy::default();
        let cases = [
            (GOOD.replace("GET", "POST"), Refusal::MethodNotGet),
            (
                GOOD.replace("HTTP/1.1\r\nHost: localhost:8080", "HTTP/1.0"),
                Refusal::HostMissing,
            ),
            (
                GOOD.replace("Upgrade: websocket\r\n", ""),
                Refusal::BadUpgrade,
            ),
            (
                GOOD.replace("Connection: Upgrade\r\n", ""),
                Refusal::BadConnection,
            ),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                Refusal::KeyMissing,
            ),
            (
                GOOD.replace("Version: 13", "Version: 12"),
                Refusal::BadVersion,
            ),
        ];
        for (text, refusal) in cases {
            assert_eq!(judge(&text, &policy).unwrap_err(), refusal, "{text}");
        }
        // Tokens match in any case, inside lists.
        let listed = GOOD
            .replace("Upgrade: websocket", "Upgrade: h2c, WebSocket")
            .replace("Connection: Upgrade", "Connection: keep-alive, upgrade");
        assert!(judge(&listed, &policy).is_ok());
    }

    #[test]
    fn origins_same_and_allowed() {
        let with_origin =
            |origin: &str| GOOD.replace("\r\n\r\n", &format!("\r\nOrigin: {origin}\r\n\r\n"));
        let same = UpgradePolicy::new(false, true, &[], vec![]);
        assert!(judge(&with_origin("http://localhost:8080"), &same).is_ok());
        assert!(judge(GOOD, &same).is_ok(), "no Origin: nothing to check");
        assert_eq!(
            judge(&with_origin("http://evil.com"), &same).unwrap_err(),
            Refusal::OriginNotAllowed("not same origin".into())
        );
        assert_eq!(
            judge(&with_origin("null"), &same).unwrap_err(),
            Refusal::OriginNotAllowed("parse \"null\": invalid URI for request".into())
        );
        let allowed = UpgradePolicy::new(
            false,
            false,
            &[
                "http://a.example.com".into(),
                "https://b.example.com:8443".into(),
            ],
            vec![],
        );
        assert!(judge(&with_origin("http://A.example.com:80"), &allowed).is_ok());
        assert!(judge(&with_origin("https://b.example.com:8443"), &allowed).is_ok());
        for bad in [
            "https://a.example.com",
            "http://b.example.com:8443",
            "http://c.example.com",
        ] {
            assert_eq!(
                judge(&with_origin(bad), &allowed).unwrap_err(),
                Refusal::OriginNotAllowed("not in the allowed list".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn refusal_responses_are_go_http_error_texts() {
        // 2026-12-06T11:06:01Z
        let now = WallTime::from_unix_nanos(1_796_555_161 * 1_000_000_000);
        assert_eq!(
            String::from_utf8(Refusal::BadUpgrade.response(now).unwrap()).unwrap(),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Sec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\n\
             Date: Sun, 06 Dec 2026 11:06:01 GMT\r\nContent-Length: 12\r\n\r\nBad Request\n"
        );
        let forbidden = Refusal::OriginNotAllowed("x".into()).response(now).unwrap();
        assert!(forbidden.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
        assert!(forbidden.ends_with(b"Content-Length: 10\r\n\r\nForbidden\n"));
        assert_eq!(Refusal::EarlyData.response(now), None);
    }

    #[test]
    fn malformed_requests_get_the_http_servers_answers() {
        let parse = |text: &str| parse_request(text.as_bytes());
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(parse("GARBAGE\r\n\r\n"), Err(RequestError::Malformed));
        assert_eq!(
            parse(&GOOD.replace("HTTP/1.1", "HTTP/2.0")),
            Err(RequestError::UnsupportedVersion)
        );
        assert_eq!(
            parse(&GOOD.replace("Host: localhost:8080\r\n", "")),
            Err(RequestError::MissingHost)
        );
        assert_eq!(
            parse(&GOOD.replace("Host: localhost:8080\r\n", "Host: a\r\nBad Line\r\n")),
            Err(RequestError::Malformed)
        );
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_REQUEST_BYTES));
        assert_eq!(parse(&huge), Err(RequestError::TooLarge));
        assert_eq!(
            RequestError::Malformed.response(),
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Connection: close\r\n\r\n400 Bad Request"
                .to_vec()
        );
        // Bare line feeds are accepted, as Go's reader accepts them.
        let bare = GOOD.replace("\r\n", "\n");
        assert!(judge(&bare, &UpgradePolicy::default()).is_ok());
    }
}
