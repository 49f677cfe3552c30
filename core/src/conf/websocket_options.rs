//! The `websocket { }` block, with nats-server v2.15.1's keys and aliases.
//!
//! Input: the block's map entry. Output: [`WebSocketOptions`] (what the file
//! set) plus the keys of its `tls { }` the reference knows and rnats does
//! not handle yet, named `websocket.tls.<key>` so start-up refuses them by
//! name.
//!
//! Invariants:
//! - Every key of the reference's block is either parsed here or reported as
//!   unsupported; an unknown key is an error ("unknown field"), as in the
//!   reference.
//! - The TLS requirement (`websocket requires TLS configuration` unless
//!   `no_tls`) is checked at start ([`check_websocket`]), not by `-t`, as in
//!   the reference.

use std::time::Duration;

use super::options::{
    boolean, duration, invalid, string, string_list, unknown_field, wrong_type, ConfWarning,
    Unsupported,
};
use super::tls_options::{self, TlsOptions};
use super::value::{MapEntry, ValueKind};
use super::ConfError;

/// What the file's `websocket { }` block set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebSocketOptions {
    /// `host`, or the host part of `listen`.
    pub host: Option<String>,
    /// `port`, or the port part of `listen`; -1 asks for a random port, 0
    /// (or no port) leaves the listener off, as in the reference.
    pub port: Option<i64>,
    /// `advertise`: the `host:port` websocket clients are told to use.
    pub advertise: Option<String>,
    /// `no_tls: true` allows a listener without TLS.
    pub no_tls: bool,
    /// The block's own `tls { }`.
    pub tls: Option<TlsOptions>,
    /// `same_origin`: a browser's `Origin` must be the request's host.
    pub same_origin: bool,
    /// `allowed_origins` (or its aliases), as written.
    pub allowed_origins: Vec<String>,
    /// `handshake_timeout`: how long the HTTP upgrade (and TLS) may take.
    pub handshake_timeout: Option<Duration>,
    /// `ping_interval`: the PING interval of websocket clients, in place of
    /// the top-level one.
    pub ping_interval: Option<Duration>,
    /// `headers { }`: extra headers of the 101 response, in file order.
    pub headers: Vec<(String, String)>,
    /// `compression` (or `compress`): permessage-deflate when the client
    /// asks for it.
    pub compression: bool,
    /// `authorization { }` (simple: user, password, token, timeout) and
    /// `no_auth_user`.
    pub auth: crate::websocket::WebSocketAuth,
    pub cookies: crate::websocket::CookieNames,
}

/// Parses the `websocket { }` block.
pub fn parse_websocket(
    entry: &MapEntry,
    unsupported: &mut Vec<Unsupported>,
    warnings: &mut Vec<ConfWarning>,
) -> Result<WebSocketOptions, ConfError> {
    let fields = entry
        .value
        .as_map()
        .ok_or_else(|| wrong_type(entry, "a map"))?;
    let mut ws = WebSocketOptions::default();
    for field in fields {
        let key = field.key.to_ascii_lowercase();
        match key.as_str() {
            _ if super::options::listener_key(&key, field, &mut ws.host, &mut ws.port)? => {}
            "advertise" => ws.advertise = Some(string(field)?),
            "no_tls" => ws.no_tls = boolean(field)?,
            "tls" => {
                let first = unsupported.len();
                ws.tls = Some(tls_options::parse_tls(field, unsupported)?);
                // Name the block's TLS keys under `websocket.` so they are
                // never mistaken for (or excused as) the client port's.
                for key in &mut unsupported[first..] {
                    key.key = format!("{}.{}", entry.key, key.key);
                }
            }
            "same_origin" => ws.same_origin = boolean(field)?,
            "allowed_origins" | "allowed_origin" | "allow_origins" | "allow_origin" | "origins"
            | "origin" => ws.allowed_origins = string_list(field)?,
            "ping_interval" => ws.ping_interval = Some(duration(field, "ping_interval", warnings)?),
            "handshake_timeout" => {
                ws.handshake_timeout = Some(duration(field, "handshake_timeout", warnings)?)
            }
            "headers" => ws.headers = headers(field)?,
            "compression" | "compress" => ws.compression = boolean(field)?,
            "no_auth_user" => ws.auth.no_auth_user = Some(string(field)?),
            "authorization" | "authentication" => simple_auth(field, &mut ws.auth)?,
            "jwt_cookie" => ws.cookies.jwt = Some(string(field)?),
            "user_cookie" => ws.cookies.user = Some(string(field)?),
            "pass_cookie" => ws.cookies.pass = Some(string(field)?),
            "token_cookie" => ws.cookies.token = Some(string(field)?),
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    Ok(ws)
}

/// The block's `authorization { user, password, token, timeout }` (the
/// reference's simple auth: no users list here).
fn simple_auth(
    entry: &MapEntry,
    auth: &mut crate::websocket::WebSocketAuth,
) -> Result<(), ConfError> {
    let fields = entry
        .value
        .as_map()
        .ok_or_else(|| wrong_type(entry, "a map"))?;
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "user" | "username" => auth.user = Some(string(field)?),
            "pass" | "password" => auth.password = Some(string(field)?),
            "token" => auth.token = Some(string(field)?),
            "timeout" => {
                let seconds = match &field.value.kind {
                    ValueKind::Integer(n) => *n as f64,
                    ValueKind::Float(f) => *f,
                    ValueKind::String(text) => super::value::parse_go_duration(text)
                        .map(|nanos| nanos as f64 / 1e9)
                        .map_err(|error| invalid(field, &error.to_string()))?,
                    _ => return Err(wrong_type(field, "a number or a duration")),
                };
                if !(seconds.is_finite() && seconds >= 0.0) {
                    return Err(invalid(field, "timeout out of range"));
                }
                auth.timeout = Some(Duration::from_secs_f64(seconds));
            }
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
    if (set(&auth.user) || set(&auth.password)) && set(&auth.token) {
        return Err(invalid(entry, "Cannot have a user/pass and token"));
    }
    Ok(())
}

/// `headers { name: value }`: names must be HTTP tokens and values must not
/// break the response (no CR or LF), or a header could forge the upgrade.
fn headers(field: &MapEntry) -> Result<Vec<(String, String)>, ConfError> {
    let map = field
        .value
        .as_map()
        .ok_or_else(|| wrong_type(field, "a map"))?;
    let mut out = Vec::with_capacity(map.len());
    for header in map {
        let value = string(header)?;
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if header.key.is_empty() || !header.key.chars().all(token) {
            return Err(invalid(header, "invalid header name"));
        }
        if value.contains(['\r', '\n']) {
            return Err(invalid(header, "invalid header value"));
        }
        out.push((header.key.clone(), value));
    }
    Ok(out)
}

/// The reference's start-up checks of the block, in its order: a listener
/// (a port that is not 0) needs TLS unless `no_tls` says otherwise; its
/// `no_auth_user` must be a configured user; its user or token cannot go
/// with users or nkeys; `jwt_cookie` needs trusted operators.
pub fn check_websocket(
    ws: &WebSocketOptions,
    security: &super::auth_options::SecurityOptions,
    trusted_operators: bool,
) -> Result<(), String> {
    if ws.port.unwrap_or(0) == 0 {
        return Ok(());
    }
    if ws.tls.is_none() && !ws.no_tls {
        return Err(String::from("websocket requires TLS configuration"));
    }
    if let Some(user) = ws.auth.no_auth_user.as_deref().filter(|u| !u.is_empty()) {
        if security.users.is_empty() && security.nkeys.is_empty() {
            return Err(format!(
                "no_auth_user: \"{user}\" present, but users/nkeys are not defined"
            ));
        }
        if !security.users.iter().any(|u| u.username == user)
            && !security.nkeys.iter().any(|n| n.nkey == user)
        {
            return Err(format!(
                "no_auth_user: \"{user}\" not present as user or nkey in authorization block or account configuration"
            ));
        }
    }
    if !security.users.is_empty() || !security.nkeys.is_empty() {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
        if set(&ws.auth.user) {
            return Err(String::from(
                "websocket authentication username not compatible with presence of users/nkeys",
            ));
        }
        if set(&ws.auth.token) {
            return Err(String::from(
                "websocket authentication token not compatible with presence of users/nkeys",
            ));
        }
    }
    if let Some(cookie) = ws
        .cookies
        .jwt
        .as_deref()
        .filter(|c| !c.is_empty() && !trusted_operators)
    {
        return Err(format!(
            "trusted operators or trusted keys configuration is required for JWT authentication via cookie \"{cookie}\""
        ));
    }
    if let Some(tls) = &ws.tls {
        if tls.cert_file.is_none() {
            return Err(String::from(
                "missing 'cert_file' or 'key_file' in TLS configuration",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{load_options, refuse_unsupported, ConfSource};
    use super::*;

    struct NoFiles;
    impl ConfSource for NoFiles {
        fn read_include(&self, _from: &str, path: &str) -> Result<(String, String), String> {
            Err(format!("no file {path}"))
        }
        fn env_var(&self, _name: &str) -> Option<String> {
            None
        }
    }

    fn load(text: &str) -> Result<(WebSocketOptions, Vec<Unsupported>), ConfError> {
        let (options, unsupported) = load_options("ws.conf", text, &NoFiles)?;
        Ok((options.websocket.unwrap_or_default(), unsupported))
    }

    #[test]
    fn every_supported_key_is_read() {
        let (ws, unsupported) = load(
            r#"websocket {
                listen: "127.0.0.1:-1"
                advertise: "ws.example.com:443"
                no_tls: true
                same_origin: true
                allowed_origins: ["http://a.example.com", "https://b.example.com:8443"]
                handshake_timeout: "3s"
                ping_interval: "45s"
                headers { "X-Custom": "yes" }
                compression: true
            }"#,
        )
        .unwrap();
        assert!(unsupported.is_empty());
        assert_eq!(ws.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(ws.port, Some(-1));
        assert_eq!(ws.advertise.as_deref(), Some("ws.example.com:443"));
        assert!(ws.no_tls && ws.same_origin);
        assert_eq!(ws.allowed_origins.len(), 2);
        assert_eq!(ws.handshake_timeout, Some(Duration::from_secs(3)));
        assert_eq!(ws.ping_interval, Some(Duration::from_secs(45)));
        assert_eq!(ws.headers, vec![("X-Custom".into(), "yes".into())]);
        assert!(ws.compression);
        assert_eq!(check_websocket(&ws, &Default::default(), false), Ok(()));
    }

    #[test]
    fn tls_is_required_unless_no_tls() {
        let (ws, _) = load("websocket { port: 8080 }").unwrap();
        assert_eq!(
            check_websocket(&ws, &Default::default(), false).unwrap_err(),
            "websocket requires TLS configuration"
        );
        // No port: no listener, nothing to check (as the reference).
        let (ws, _) = load("websocket { host: 127.0.0.1 }").unwrap();
        assert_eq!(check_websocket(&ws, &Default::default(), false), Ok(()));
    }

    #[test]
    fn auth_keys_are_read_and_checked() {
        let text = r#"websocket {
                port: 1, no_tls: true
                authorization { user: wsu, password: wsp, timeout: 3 }
                user_cookie: u, pass_cookie: p, token_cookie: t
            }"#;
        let (ws, unsupported) = load(text).unwrap();
        assert!(unsupported.is_empty());
        assert_eq!(ws.auth.user.as_deref(), Some("wsu"));
        assert_eq!(ws.auth.timeout, Some(Duration::from_secs(3)));
        assert!(ws.auth.overrides());
        assert_eq!(ws.cookies.token.as_deref(), Some("t"));
        let (options, _) = load_options(
            "ws.conf",
            &format!("{text}\nauthorization {{ users: [ {{user: a, password: b}} ] }}"),
            &NoFiles,
        )
        .unwrap();
        assert_eq!(
            check_websocket(
                options.websocket.as_ref().unwrap(),
                &options.security,
                false
            )
            .unwrap_err(),
            "websocket authentication username not compatible with presence of users/nkeys"
        );
        let (ws, _) = load("websocket { port: 1, no_tls: true, no_auth_user: nobody }").unwrap();
        assert!(check_websocket(&ws, &Default::default(), false)
            .unwrap_err()
            .contains("users/nkeys are not defined"));
        let (ws, _) = load("websocket { port: 1, no_tls: true, jwt_cookie: jwt }").unwrap();
        assert!(check_websocket(&ws, &Default::default(), false)
            .unwrap_err()
            .starts_with("trusted operators or trusted keys configuration is required"));
    }

    #[test]
    fn unhandled_keys_refuse_start_by_name() {
        for (text, key) in [
            (
                "tls { cert_file: c, key_file: k, pinned_certs: [] }",
                "websocket.tls.pinned_certs",
            ),
            (
                "tls { cert_file: c, key_file: k, insecure: true }",
                "websocket.tls.insecure",
            ),
        ] {
            let (_, unsupported) = load(&format!("websocket {{ port: 1, {text} }}")).unwrap();
            let refused = refuse_unsupported(unsupported).unwrap_err();
            assert_eq!(refused.0.len(), 1, "{text}");
            assert_eq!(refused.0[0].key, key);
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(load("websocket { auth_timeout: 2 }")
            .unwrap_err()
            .to_string()
            .contains("unknown field \"auth_timeout\""));
        assert!(load("websocket { handshake_timeout: \"abc\" }").is_err());
        assert!(load("websocket { headers { \"X-A\": \"a\\r\\nX-B: b\" } }").is_err());
        assert!(load("websocket { headers { \"X A\": \"a\" } }").is_err());
    }
}
