//! A websocket client is an ordinary client of the machine: what differs is
//! its INFO (the websocket listener's host, port and TLS), its log prefix
//! (`wid:`), its `/connz` type and, when the block overrides them, its
//! credentials.

use super::*;
use crate::auth::AuthConfig;
use crate::websocket::{CookieCredentials, WebSocketAuth, WebSocketConfig};

fn websocket_config(auth: WebSocketAuth) -> ServerConfig {
    ServerConfig {
        auth: AuthConfig::single_user("top", "secret"),
        websocket: Some(WebSocketConfig {
            host: "127.0.0.1".into(),
            port: 8443,
            tls: true,
            auth,
            ..WebSocketConfig::default()
        }),
        ..ServerConfig::default()
    }
}

fn info_json(out: &str) -> serde_json::Value {
    assert!(out.starts_with("INFO {"), "{out:?}");
    let end = out.find(" \r\n").expect("one INFO line");
    serde_json::from_str(&out[5..end]).unwrap()
}

#[test]
fn websocket_clients_see_the_websocket_listener_and_are_told_apart() {
    let mut h = Harness::new(websocket_config(WebSocketAuth::default()));
    let ws = ConnId(1);
    h.server
        .handle_accept(h.now, ws, peer(5555), ListenerKind::WebSocket);
    let info = info_json(&h.take(ws));
    assert_eq!(info["port"], 8443);
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["tls_required"], true);
    assert_eq!(info["tls_available"], true);
    let tcp = ConnId(2);
    h.server
        .handle_accept(h.now, tcp, peer(5556), ListenerKind::Client);
    let info = info_json(&h.take(tcp));
    assert_ne!(info["port"], 8443);
    assert!(info.get("tls_required").is_none());
    // Same auth as everyone without an override: a bad password is refused.
    h.send(ws, "CONNECT {\"user\":\"top\",\"pass\":\"wrong\"}\r\n");
    assert!(h.take(ws).contains("Authorization Violation"));
    let logs: Vec<_> = h.server.take_logs().collect();
    assert!(
        logs.iter()
            .any(|l| l.prefix.starts_with("127.0.0.1:5555 - wid:1 - ")),
        "{:?}",
        logs.iter().map(|l| &l.prefix).collect::<Vec<_>>()
    );
    let open = ConnId(3);
    h.server
        .handle_accept(h.now, open, peer(5557), ListenerKind::WebSocket);
    let connz = crate::monitor::connz(
        &h.server.view(),
        &crate::monitor::ConnzOptions::default(),
        h.server.clock(h.now),
    );
    let types: Vec<_> = connz
        .connections
        .iter()
        .map(|c| (c.cid, c.conn_type))
        .collect();
    assert!(types.contains(&(2, "nats")), "{types:?}");
    assert!(types.contains(&(3, "websocket")), "{types:?}");
}

#[test]
fn the_blocks_credentials_and_cookies_apply_to_websocket_clients_only() {
    let auth = WebSocketAuth {
        user: Some("wsuser".into()),
        password: Some("wspass".into()),
        ..WebSocketAuth::default()
    };
    let mut h = Harness::new(websocket_config(auth));
    let ws = ConnId(1);
    h.server
        .handle_accept(h.now, ws, peer(5555), ListenerKind::WebSocket);
    assert_eq!(info_json(&h.take(ws))["auth_required"], true);
    // The top-level user is not a websocket user.
    h.send(
        ws,
        "CONNECT {\"verbose\":false,\"user\":\"top\",\"pass\":\"secret\"}\r\n",
    );
    assert!(h.take(ws).contains("Authorization Violation"));
    // Cookies fill in the missing credentials.
    let cookie = ConnId(2);
    let session = crate::websocket::ClientSession {
        cookies: CookieCredentials {
            user: Some("wsuser".into()),
            pass: Some("wspass".into()),
            token: None,
            jwt: None,
        },
        forwarded_for: None,
    };
    h.server
        .handle_accept_websocket(h.now, cookie, peer(5556), session);
    let _ = h.take(cookie);
    h.send(cookie, "CONNECT {\"verbose\":false}\r\nPING\r\n");
    assert_eq!(h.take(cookie), "PONG\r\n");
    // The client port keeps the top-level user.
    let tcp = ConnId(3);
    h.server
        .handle_accept(h.now, tcp, peer(5557), ListenerKind::Client);
    let _ = h.take(tcp);
    h.send(
        tcp,
        "CONNECT {\"verbose\":false,\"user\":\"wsuser\",\"pass\":\"wspass\"}\r\n",
    );
    assert!(h.take(tcp).contains("Authorization Violation"));
}
