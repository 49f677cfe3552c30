//! WebSocket clients: async-nats over `ws://` and `wss://`, raw sockets for
//! the upgrade and the framing, and the same bytes sent to nats-server
//! v2.15.1 to compare its answers (handshake refusals, close frames).
//! Without the reference the comparisons print a NOTICE and only rnats's
//! own expectations are checked (in CI a missing reference fails).

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{connect_with, next_message, sync_with_server, within};
use rnats_tests::ServerProcess;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-ws-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` as a config file and returns its path.
fn config(name: &str, text: &str) -> String {
    let path = temp_dir(name).join("server.conf");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A masked client frame.
fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x7e, 0xa5, 0x03];
    let mut out = vec![first_byte];
    match payload.len() {
        n if n <= 125 => out.push(0x80 | n as u8),
        n if n < 65_536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    out
}

/// Reads one HTTP response: its head and a body of Content-Length bytes
/// (or up to the end of the stream without one).
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = within("a response", stream.read(&mut chunk)).await.unwrap();
        if n == 0 {
            return (String::from_utf8_lossy(&buf).into_owned(), Vec::new());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end..].to_vec();
    if head.starts_with("HTTP/1.1 101 ") {
        // Frames follow an upgrade: the caller reads them.
        return (head, body);
    }
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    loop {
        if length.is_some_and(|l| body.len() >= l) {
            break;
        }
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    (head, body)
}

/// A response with its `Date` header (the only part that varies) removed.
fn without_date(head: &str) -> String {
    head.split("\r\n")
        .filter(|line| !line.starts_with("Date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

async fn answer_to(port: u16, request: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    (without_date(&head), body)
}

/// The server under test and, when available, the reference, both started
/// with `text`.
fn both(name: &str, text: &str) -> (ServerProcess, Option<ServerProcess>) {
    let path = config(name, text);
    let server = ServerProcess::start(&["-c", &path]);
    let reference = ServerProcess::start_reference(&["-c", &path]);
    if reference.is_none() {
        eprintln!("NOTICE: {name}: nats-server not found, checking rnats alone");
    }
    (server, reference)
}

#[tokio::test]
async fn async_nats_over_ws_publishes_subscribes_and_requests() {
    let path = config(
        "pubsub",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n",
    );
    let server = ServerProcess::start(&["-c", &path, "-m", "-1"]);
    let ws_url = format!("ws://127.0.0.1:{}", server.websocket_port());
    let ws = connect_with(&ws_url, async_nats::ConnectOptions::new().name("ws-client")).await;
    let tcp = connect_with(&server.url(), async_nats::ConnectOptions::new()).await;

    // Websocket subscriber, TCP publisher, and the other way round; the big
    // payload needs a 64-bit frame length and many reads.
    let mut ws_sub = ws.subscribe("to.ws").await.unwrap();
    let mut tcp_sub = tcp.subscribe("to.tcp").await.unwrap();
    sync_with_server(&ws).await;
    sync_with_server(&tcp).await;
    let big = Bytes::from(vec![b'z'; 300_000]);
    tcp.publish("to.ws", big.clone()).await.unwrap();
    ws.publish("to.tcp", Bytes::from("from ws")).await.unwrap();
    assert_eq!(next_message(&mut ws_sub).await.payload, big);
    assert_eq!(
        next_message(&mut tcp_sub).await.payload,
        Bytes::from("from ws")
    );

    // Request/reply with the responder on the websocket side.
    let mut service = ws.subscribe("svc").await.unwrap();
    sync_with_server(&ws).await;
    let responder = ws.clone();
    tokio::spawn(async move {
        let request = next_message(&mut service).await;
        let reply = request.reply.expect("a reply subject");
        responder
            .publish(
                reply,
                Bytes::from(format!("re: {}", String::from_utf8_lossy(&request.payload))),
            )
            .await
            .unwrap();
        responder.flush().await.unwrap();
    });
    let answer = within("the reply", tcp.request("svc", Bytes::from("ping")))
        .await
        .unwrap();
    assert_eq!(answer.payload, Bytes::from("re: ping"));

    // Monitoring tells the kinds apart, as the reference does.
    let connz = rnats_tests::http_json(server.http_port(), "/connz");
    let types: Vec<(String, String)> = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        types.contains(&("websocket".into(), "ws-client".into())),
        "{types:?}"
    );
    assert!(types.iter().any(|(kind, _)| kind == "nats"), "{types:?}");
    let varz = rnats_tests::http_json(server.http_port(), "/varz");
    assert_eq!(varz["websocket"]["host"], "127.0.0.1");
    assert_eq!(varz["websocket"]["port"], server.websocket_port());
    assert_eq!(varz["websocket"]["no_tls"], true);
}

#[tokio::test]
async fn handshake_refusals_match_the_reference() {
    let (server, reference) = both(
        "refusals",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true, \
         allowed_origins: [\"http://allowed.example.com\"] }\n",
    );
    let cases = [
        (
            "missing Upgrade",
            UPGRADE.replace("Upgrade: websocket\r\n", ""),
            "400 Bad Request",
        ),
        (
            "missing Connection",
            UPGRADE.replace("Connection: Upgrade\r\n", ""),
            "400 Bad Request",
        ),
        (
            "bad version",
            UPGRADE.replace("Version: 13", "Version: 8"),
            "400 Bad Request",
        ),
        (
            "missing key",
            UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            "400 Bad Request",
        ),
        (
            "wrong method",
            UPGRADE.replace("GET", "POST"),
            "405 Method Not Allowed",
        ),
        (
            "origin not allowed",
            UPGRADE.replace("\r\n\r\n", "\r\nOrigin: http://evil.example.com\r\n\r\n"),
            "403 Forbidden",
        ),
        (
            "no Host",
            UPGRADE.replace("Host: 127.0.0.1\r\n", ""),
            "400 Bad Request: missing required Host header",
        ),
        ("not HTTP", String::from("HELLO\r\n\r\n"), "400 Bad Request"),
        (
            "HTTP/2",
            UPGRADE.replace("HTTP/1.1", "HTTP/2.0"),
            "505 HTTP Version Not Supported",
        ),
    ];
    for (what, request, status) in &cases {
        let (head, body) = answer_to(server.websocket_port(), request).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {head}"
        );
        if let Some(reference) = &reference {
            let expected = answer_to(reference.websocket_port(), request).await;
            assert_eq!((head, body), expected, "{what}");
        }
    }
    // An allowed origin is upgraded.
    let allowed = UPGRADE.replace("\r\n\r\n", "\r\nOrigin: http://allowed.example.com\r\n\r\n");
    let (head, _) = answer_to(server.websocket_port(), &allowed).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(
        server.logs_soon("websocket handshake error: origin not allowed: not in the allowed list")
    );
}

#[tokio::test]
async fn same_origin_refuses_other_origins_like_the_reference() {
    let (server, reference) = both(
        "same-origin",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true, same_origin: true }\n",
    );
    for (origin, ok) in [
        ("http://127.0.0.1", true),
        ("http://127.0.0.1:81", false),
        ("null", false),
    ] {
        let request = UPGRADE.replace("\r\n\r\n", &format!("\r\nOrigin: {origin}\r\n\r\n"));
        let (head, body) = answer_to(server.websocket_port(), &request).await;
        let status = if ok { "101" } else { "403" };
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{origin}: {head}"
        );
        if let (Some(reference), false) = (&reference, ok) {
            assert_eq!(
                (head, body),
                answer_to(reference.websocket_port(), &request).await,
                "{origin}"
            );
        }
    }
}

/// Upgrades a raw connection and reads the INFO frame.
async fn upgraded(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(UPGRADE.as_bytes()).await.unwrap();
    let (head, rest) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // The INFO frame follows the head at once; read it whole.
    let mut info = rest;
    while frames(&info).is_none_or(|f| f.is_empty()) {
        let mut chunk = [0u8; 4096];
        let n = within("INFO", stream.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "closed before INFO");
        info.extend_from_slice(&chunk[..n]);
    }
    let parsed = frames(&info).unwrap();
    assert_eq!(parsed.len(), 1, "one frame: INFO");
    assert_eq!(parsed[0].0, 0x82);
    assert!(parsed[0].1.starts_with(b"INFO {"));
    stream
}

/// A server frame: its first byte (FIN and opcode) and its payload.
type Frame = (u8, Vec<u8>);

/// Server frames if `bytes` holds only whole frames.
fn frames(mut bytes: &[u8]) -> Option<Vec<Frame>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let b1 = *bytes.get(1)?;
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let (len, at) = match b1 & 0x7f {
            126 => (
                u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]) as usize,
                4,
            ),
            127 => {
                let raw: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
                (u64::from_be_bytes(raw) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let payload = bytes.get(at..at + len)?.to_vec();
        out.push((bytes[0], payload));
        bytes = &bytes[at + len..];
    }
    Some(out)
}

/// Everything the server sends until it closes (bounded by the wait).
async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    out
}

/// What a server answers `sent` with after the upgrade and INFO, as frames,
/// with INFO lines (which name the server) reduced to "INFO".
async fn answer_frames(port: u16, sent: &[u8]) -> Vec<Frame> {
    let mut stream = upgraded(port).await;
    stream.write_all(sent).await.unwrap();
    let bytes = read_to_end(&mut stream).await;
    let mut frames = frames(&bytes).unwrap_or_else(|| panic!("whole frames: {bytes:?}"));
    for frame in &mut frames {
        if frame.1.starts_with(b"INFO ") {
            frame.1 = b"INFO".to_vec();
        }
    }
    frames
}

#[tokio::test]
async fn frames_split_anywhere_with_control_frames_in_between() {
    let path = config(
        "frames",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n",
    );
    let server = ServerProcess::start(&["-c", &path]);
    let mut stream = upgraded(server.websocket_port()).await;
    let mut wire = frame(0x02, b"CONNECT {\"verbose\":false} \r\nSUB f");
    wire.extend(frame(0x89, b"are you there"));
    wire.extend(frame(0x00, b"oo 1\r\nPUB foo 5\r\nhe"));
    wire.extend(frame(0x80, b"llo\r\nPING\r\n"));
    // One byte per write: frames and NATS operations split everywhere.
    for byte in wire {
        stream.write_all(&[byte]).await.unwrap();
        stream.flush().await.unwrap();
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let expected_data = b"MSG foo 1 5\r\nhello\r\nPONG\r\n".to_vec();
    loop {
        let n = within("frames", stream.read(&mut chunk)).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
        if let Some(frames) = frames(&got) {
            let pong = frames
                .iter()
                .any(|(b0, p)| *b0 == 0x8a && p == b"are you there");
            let data: Vec<u8> = frames
                .iter()
                .filter(|(b0, _)| *b0 == 0x82)
                .flat_map(|(_, p)| p.clone())
                .collect();
            if pong && data == expected_data {
                break;
            }
            assert!(data.len() < expected_data.len() + 64, "{data:?}");
        }
    }
    // A close from the client is echoed, then the server hangs up.
    stream
        .write_all(&frame(0x88, b"\x03\xe8done"))
        .await
        .unwrap();
    let rest = read_to_end(&mut stream).await;
    assert_eq!(
        frames(&rest).unwrap(),
        vec![(0x88, b"\x03\xe8done".to_vec())]
    );
}

#[tokio::test]
async fn close_frames_match_the_reference() {
    let (server, reference) = both(
        "close",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n\
         authorization { user: alice, password: s3cret }\n",
    );
    let unmasked = [0x82, 0x06, b'P', b'I', b'N', b'G', b'\r', b'\n'].to_vec();
    let violation = |text: &str| vec![(0x88, [&b"\x03\xea"[..], text.as_bytes()].concat())];
    // (what, bytes sent, rnats's answer, whether it is a framing violation).
    // For a violation the reference queues the same close frame and then
    // races it against closing the socket (it usually loses): nothing is
    // the reference's other answer.
    let cases: Vec<(&str, Vec<u8>, Vec<Frame>, bool)> = vec![
        (
            "unmasked frame",
            unmasked,
            violation("mask bit missing"),
            true,
        ),
        (
            "unknown opcode",
            frame(0x83, b"x"),
            violation("unknown opcode 3"),
            true,
        ),
        (
            "fragmented ping",
            frame(0x09, b"x"),
            violation("control frame does not have final bit set"),
            true,
        ),
        (
            "close with an invalid code",
            frame(0x88, b"\x00\x01x"),
            violation("invalid close status code 1"),
            true,
        ),
        (
            "close with a one-byte payload",
            frame(0x88, b"\x03"),
            violation("close frame payload cannot be 1 byte"),
            true,
        ),
        (
            "close without status",
            frame(0x88, b""),
            vec![(0x88, Vec::new())],
            false,
        ),
        (
            "close with a status",
            frame(0x88, b"\x0b\xb8app"),
            vec![(0x88, b"\x0b\xb8app".to_vec())],
            false,
        ),
        (
            "close with a body that is not UTF-8",
            frame(0x88, b"\x03\xe8\xff"),
            vec![(0x88, b"\x03\xefinvalid utf8 body in close frame".to_vec())],
            false,
        ),
        (
            "bad credentials",
            frame(0x82, b"CONNECT {\"user\":\"alice\",\"pass\":\"wrong\"}\r\n"),
            vec![
                (0x82, b"-ERR 'Authorization Violation'\r\n".to_vec()),
                (0x88, b"\x03\xf0Authentication Failure".to_vec()),
            ],
            false,
        ),
    ];
    let mut differences = Vec::new();
    for (what, sent, expected, violation) in cases {
        let got = answer_frames(server.websocket_port(), &sent).await;
        if got != expected {
            differences.push(format!("{what}: rnats {got:?}, expected {expected:?}"));
        }
        if let Some(reference) = &reference {
            let theirs = answer_frames(reference.websocket_port(), &sent).await;
            if got != theirs && !(violation && theirs.is_empty()) {
                differences.push(format!("{what}: rnats {got:?}, nats-server {theirs:?}"));
            }
        }
    }
    assert!(differences.is_empty(), "{differences:#?}");
    // Good credentials work over the websocket too.
    let got = answer_frames(
        server.websocket_port(),
        &[
            frame(
                0x82,
                b"CONNECT {\"user\":\"alice\",\"pass\":\"s3cret\",\"verbose\":false}\r\nPING\r\n",
            ),
            frame(0x88, b"\x03\xe8"),
        ]
        .concat(),
    )
    .await;
    assert_eq!(
        got,
        vec![(0x82, b"PONG\r\n".to_vec()), (0x88, b"\x03\xe8".to_vec())]
    );
}

#[test]
fn tls_is_required_unless_no_tls() {
    let path = config("needs-tls", "websocket { listen: \"127.0.0.1:-1\" }\n");
    let run = |binary: &std::path::Path| {
        let out = std::process::Command::new(binary)
            .args(["-c", &path, "-p", "-1"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(rnats_tests::rnats_server_binary());
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(": websocket requires TLS configuration"),
        "{stderr}"
    );
    if let Some(reference) = rnats_tests::reference_server() {
        let (code, stderr) = run(&reference);
        assert_eq!(code, Some(1));
        assert!(
            stderr.contains(": websocket requires TLS configuration"),
            "{stderr}"
        );
    }
    // Keys rnats does not handle refuse the file by name (`-t`, so that a
    // key once handled fails this test instead of hanging it).
    let path = config(
        "refused",
        "websocket { listen: \"127.0.0.1:-1\", tls { cert_file: c, key_file: k, pinned_certs: [] } }\n",
    );
    let out = std::process::Command::new(rnats_tests::rnats_server_binary())
        .args(["-t", "-c", &path])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("configuration key \"websocket.tls.pinned_certs\" is not supported yet"),
        "{stderr}"
    );
}

#[tokio::test]
async fn wss_with_a_generated_certificate() {
    let dir = temp_dir("wss");
    let pki = common::generated_server_certificate(&dir);
    let path = config(
        "wss",
        &format!(
            "websocket {{\n listen: \"127.0.0.1:-1\"\n tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n}}\n",
            pki.cert.display(),
            pki.key.display()
        ),
    );
    let server = ServerProcess::start(&["-c", &path]);
    assert!(server
        .log_lines()
        .iter()
        .any(|l| l.contains("Listening for websocket clients on wss://127.0.0.1:")));
    let url = format!("wss://127.0.0.1:{}", server.websocket_port());
    let options = async_nats::ConnectOptions::new().add_root_certificates(pki.ca);
    let client = connect_with(&url, options).await;
    assert!(client.server_info().tls_required, "INFO over wss says TLS");
    let mut sub = client.subscribe("secure").await.unwrap();
    sync_with_server(&client).await;
    client
        .publish("secure", Bytes::from("over wss"))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut sub).await.payload,
        Bytes::from("over wss")
    );
    // A plain-text upgrade on the TLS port gets nothing.
    let mut plain = TcpStream::connect(("127.0.0.1", server.websocket_port()))
        .await
        .unwrap();
    plain.write_all(UPGRADE.as_bytes()).await.unwrap();
    let answer = read_to_end(&mut plain).await;
    assert!(!answer.starts_with(b"HTTP/1.1 101"), "{answer:?}");
}

/// Raw deflate of one message, its sync-flush tail stripped (RFC 7692).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    compress
        .compress_vec(data, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Inflates one message payload.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut decompress = flate2::Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 * 1024);
    decompress
        .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    out
}

/// The NATS bytes of server frames, compressed ones (RSV1) inflated.
fn frame_data(frames: &[Frame]) -> (Vec<u8>, usize) {
    let mut data = Vec::new();
    let mut compressed = 0;
    for (b0, payload) in frames {
        assert_eq!(b0 & 0x0f, 2, "binary frames");
        if b0 & 0x40 != 0 {
            compressed += 1;
            data.extend(inflate(payload));
        } else {
            data.extend_from_slice(payload);
        }
    }
    (data, compressed)
}

/// Upgrades asking for permessage-deflate; returns the response head, the
/// INFO line and the stream.
async fn upgraded_compressed(port: u16) -> (String, Vec<u8>, TcpStream) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = UPGRADE.replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, mut rest) = read_response(&mut stream).await;
    while frames(&rest).is_none_or(|f| f.is_empty()) {
        let mut chunk = [0u8; 4096];
        let n = within("INFO", stream.read(&mut chunk)).await.unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&chunk[..n]);
    }
    let (info, compressed) = frame_data(&frames(&rest).unwrap());
    assert_eq!(compressed, 1, "INFO is over the threshold: compressed");
    (without_date(&head), info, stream)
}

#[tokio::test]
async fn compression_both_ways_like_the_reference() {
    let (server, reference) = both(
        "compression",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true, compression: true }\n",
    );
    let mut ports = vec![server.websocket_port()];
    ports.extend(reference.as_ref().map(ServerProcess::websocket_port));
    let mut heads = Vec::new();
    for port in ports {
        let (head, info, mut stream) = upgraded_compressed(port).await;
        assert!(
            head.contains(
                "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover\r\n"
            ),
            "{head}"
        );
        assert!(info.starts_with(b"INFO {") && info.ends_with(b"\r\n"));
        heads.push(head);
        // A compressed message in two fragments, a ping between them, then
        // an uncompressed one: both kinds are read.
        let payload = "x".repeat(100);
        let commands =
            format!("CONNECT {{\"verbose\":false}}\r\nSUB foo 1\r\nPUB foo 100\r\n{payload}\r\n");
        let compressed = deflate(commands.as_bytes());
        let (first, second) = compressed.split_at(compressed.len() / 2);
        let mut wire = frame(0x42, first);
        wire.extend(frame(0x89, b"hi"));
        wire.extend(frame(0x80, second));
        wire.extend(frame(0x82, b"PING\r\n"));
        stream.write_all(&wire).await.unwrap();
        let expected = format!("MSG foo 1 100\r\n{payload}\r\nPONG\r\n").into_bytes();
        let mut got = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = within("the message", stream.read(&mut chunk))
                .await
                .unwrap();
            assert!(n > 0, "closed: {got:?}");
            got.extend_from_slice(&chunk[..n]);
            let Some(frames) = frames(&got) else { continue };
            let (pongs, data): (Vec<Frame>, Vec<Frame>) =
                frames.into_iter().partition(|(b0, _)| *b0 == 0x8a);
            let (data, _) = frame_data(&data);
            if data.len() >= expected.len() {
                assert_eq!(data, expected, "port {port}");
                assert_eq!(pongs, vec![(0x8a, b"hi".to_vec())]);
                break;
            }
        }
    }
    if let [ours, theirs] = &heads[..] {
        assert_eq!(ours, theirs, "the 101 responses");
    }
}

/// Upgrades with `extra` request headers, sends `connect` then PING, and
/// returns the INFO frame's text and what came back after it (frames).
async fn log_in_over_ws(port: u16, extra: &str, connect: &str) -> (String, Vec<Frame>, TcpStream) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = if extra.is_empty() {
        UPGRADE.to_string()
    } else {
        UPGRADE.replace("\r\n\r\n", &format!("\r\n{extra}\r\n\r\n"))
    };
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, mut rest) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    while frames(&rest).is_none_or(|f| f.is_empty()) {
        let mut chunk = [0u8; 4096];
        let n = within("INFO", stream.read(&mut chunk)).await.unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&chunk[..n]);
    }
    let info = String::from_utf8(frames(&rest).unwrap()[0].1.clone()).unwrap();
    stream
        .write_all(&frame(0x82, format!("{connect}\r\nPING\r\n").as_bytes()))
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        got.extend_from_slice(&chunk[..n]);
        let done = frames(&got).is_some_and(|f| {
            f.iter()
                .any(|(_, p)| p.ends_with(b"PONG\r\n") || p.starts_with(b"-ERR"))
        });
        if n == 0 || done {
            break;
        }
    }
    (info, frames(&got).unwrap_or_default(), stream)
}

/// The `authorized_user` of every open websocket connection, by name.
fn websocket_users(http_port: u16) -> Vec<(String, String)> {
    let connz = rnats_tests::http_json(http_port, "/connz?auth=true");
    let mut users: Vec<(String, String)> = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "websocket")
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["authorized_user"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    users.sort();
    users
}

#[tokio::test]
async fn websocket_auth_overrides_and_cookies_like_the_reference() {
    let path = config(
        "ws-auth",
        "authorization { users: [ {user: alice, password: pa}, {user: bob, password: pb} ] }\n\
         websocket { listen: \"127.0.0.1:-1\", no_tls: true, no_auth_user: bob, \
         user_cookie: nu, pass_cookie: np }\n",
    );
    let mut servers = vec![ServerProcess::start(&["-c", &path, "-m", "-1"])];
    match rnats_tests::reference_server() {
        Some(reference) => servers.push(ServerProcess::start_binary(
            reference,
            &["-c", &path, "-m", "-1"],
        )),
        None => eprintln!("NOTICE: nats-server not found, checking rnats alone"),
    }
    let mut outcomes = Vec::new();
    for server in &servers {
        let port = server.websocket_port();
        // No credentials: the websocket block's no_auth_user.
        let (info, anonymous, _a) =
            log_in_over_ws(port, "", r#"CONNECT {"verbose":false,"name":"anon"}"#).await;
        assert!(info.contains("\"auth_required\":true"), "{info}");
        // Cookies stand in for the missing user and password.
        let (_, cookie, _b) = log_in_over_ws(
            port,
            "Cookie: nu=alice; np=pa",
            r#"CONNECT {"verbose":false,"name":"cookie"}"#,
        )
        .await;
        // CONNECT's own credentials win over the cookies.
        let (_, explicit, _c) = log_in_over_ws(
            port,
            "Cookie: nu=alice; np=wrong",
            r#"CONNECT {"verbose":false,"name":"explicit","user":"bob","pass":"pb"}"#,
        )
        .await;
        let (_, refused, _d) = log_in_over_ws(
            port,
            "Cookie: nu=alice; np=wrong",
            r#"CONNECT {"verbose":false,"name":"refused"}"#,
        )
        .await;
        let users = websocket_users(server.http_port());
        // After the -ERR of a refused login the reference sometimes gets
        // its close frame (1008 "Authentication Failure") out before the
        // socket closes and sometimes not, so only the frames before it are
        // compared here (the close frame itself is checked in
        // auth_errors_end_with_a_policy_violation_close_like_the_reference).
        let refused: Vec<_> = refused
            .into_iter()
            .take_while(|(opcode, _)| *opcode != 0x88)
            .collect();
        outcomes.push((anonymous, cookie, explicit, refused.clone(), users.clone()));
        assert_eq!(
            users,
            vec![
                ("anon".to_string(), "bob".to_string()),
                ("cookie".to_string(), "alice".to_string()),
                ("explicit".to_string(), "bob".to_string()),
            ]
        );
        assert_eq!(
            refused.first(),
            Some(&(0x82, b"-ERR 'Authorization Violation'\r\n".to_vec()))
        );
        // The client port keeps the top-level rules: no anonymous users.
        let mut raw = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        raw.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
            .await
            .unwrap();
        let answer = read_to_end(&mut raw).await;
        assert!(
            String::from_utf8_lossy(&answer).contains("-ERR 'Authorization Violation'"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    if let [ours, theirs] = &outcomes[..] {
        assert_eq!(ours, theirs);
    }
}

#[test]
fn websocket_auth_checks_at_start_like_the_reference() {
    let cases = [
        (
            // Without operator mode.
            "ws-jwt",
            "websocket { listen: \"127.0.0.1:-1\", no_tls: true, jwt_cookie: jwt }\n",
            "trusted operators or trusted keys configuration is required for JWT authentication via cookie \"jwt\"",
        ),
        (
            "ws-user-and-users",
            "authorization { users: [ {user: a, password: b} ] }\n\
             websocket { listen: \"127.0.0.1:-1\", no_tls: true, authorization { user: x, password: y } }\n",
            "websocket authentication username not compatible with presence of users/nkeys",
        ),
    ];
    for (name, text, message) in cases {
        let path = config(name, text);
        let mut binaries = vec![rnats_tests::rnats_server_binary().clone()];
        binaries.extend(rnats_tests::reference_server());
        for binary in binaries {
            let out = std::process::Command::new(&binary)
                .args(["-c", &path, "-p", "-1"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{}: {stderr}", binary.display());
            assert!(stderr.contains(message), "{}: {stderr}", binary.display());
        }
    }
}

#[tokio::test]
async fn browsers_get_frames_of_at_most_4_kib_like_the_reference() {
    let (server, reference) = both(
        "browser",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n",
    );
    let mut ports = vec![server.websocket_port()];
    ports.extend(reference.as_ref().map(ServerProcess::websocket_port));
    let payload = "b".repeat(10_000);
    let expected = format!("MSG big 1 {}\r\n{payload}\r\nPONG\r\n", payload.len()).into_bytes();
    for port in ports {
        let connect = format!(
            "CONNECT {{\"verbose\":false}}\r\nSUB big 1\r\nPUB big {}\r\n{payload}",
            payload.len()
        );
        let (_, frames, _stream) = log_in_over_ws(
            port,
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
            &connect,
        )
        .await;
        assert!(frames.len() >= 3, "port {port}: {} frames", frames.len());
        for (b0, data) in &frames {
            assert_eq!(*b0, 0x82, "port {port}: whole binary messages");
            assert!(data.len() <= 4096, "port {port}: a frame of {}", data.len());
        }
        let (data, _) = frame_data(&frames);
        assert_eq!(data, expected, "port {port}");
    }
}

#[tokio::test]
async fn info_names_the_websocket_listener_like_the_reference() {
    let (server, reference) = both(
        "info",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n\
         authorization { user: a, password: b }\n",
    );
    let mut key_sets = Vec::new();
    for server in std::iter::once(&server).chain(reference.as_ref()) {
        let port = server.websocket_port();
        let (info, _, _stream) = log_in_over_ws(port, "", "CONNECT {}").await;
        let json: serde_json::Value =
            serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
        assert_eq!(json["host"], "127.0.0.1", "{info}");
        assert_eq!(
            json["port"], port,
            "the websocket port, not the client port"
        );
        assert_eq!(json["auth_required"], true);
        assert!(json.get("tls_required").is_none(), "{info}");
        let mut keys: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        key_sets.push(keys);
    }
    if let [ours, theirs] = &key_sets[..] {
        assert_eq!(ours, theirs);
    }
}

/// A refused login and a login that never comes: the `-ERR`, then the
/// close frame with 1008 and the reason's text, as the reference sends
/// them. The reference's close frame races its socket close (sometimes it
/// is not sent), so from it only what it did send is compared.
#[tokio::test]
async fn auth_errors_end_with_a_policy_violation_close_like_the_reference() {
    let (server, reference) = both(
        "auth-close",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n\
         authorization { user: a, password: b, timeout: 0.5 }\n",
    );
    let cases: [(&[u8], &[u8], &str); 2] = [
        (
            b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"wrong\"}\r\nPING\r\n",
            b"-ERR 'Authorization Violation'\r\n",
            "Authentication Failure",
        ),
        (
            b"",
            b"-ERR 'Authentication Timeout'\r\n",
            "Authentication Timeout",
        ),
    ];
    for (sent, error, reason) in cases {
        let close = [&[0x03, 0xf0][..], reason.as_bytes()].concat();
        for (name, server) in std::iter::once(("rnats", &server))
            .chain(reference.as_ref().map(|r| ("nats-server", r)))
        {
            let mut stream = upgraded(server.websocket_port()).await;
            if !sent.is_empty() {
                stream.write_all(&frame(0x82, sent)).await.unwrap();
            }
            let got = frames(&read_to_end(&mut stream).await).expect("whole frames");
            assert_eq!(got.first(), Some(&(0x82, error.to_vec())), "{name}");
            match (name, got.get(1)) {
                ("rnats", last) => {
                    assert_eq!(last, Some(&(0x88, close.clone())), "{name}");
                    assert_eq!(got.len(), 2, "{name}: nothing after the close");
                }
                (_, Some(last)) => assert_eq!(last, &(0x88, close.clone()), "{name}"),
                (_, None) => eprintln!("NOTICE: {name} closed before its close frame ({reason})"),
            }
        }
    }
}

/// `X-Forwarded-For`: the first header's value, when it is one address,
/// names the client in log lines as `<it>/<peer>` (IPv6 in brackets), as
/// the reference writes it; `/connz` keeps the peer's own address.
#[tokio::test]
async fn x_forwarded_for_names_the_client_in_logs_like_the_reference() {
    let path = config(
        "xff",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n",
    );
    let mut servers = vec![(
        "rnats",
        ServerProcess::start(&["-c", &path, "-D", "-m", "-1"]),
    )];
    match ServerProcess::start_reference(&["-c", &path, "-D", "-m", "-1"]) {
        Some(reference) => servers.push(("nats-server", reference)),
        None => eprintln!("NOTICE: nats-server not found, checking rnats alone"),
    }
    let cases = [
        ("X-Forwarded-For: 1.2.3.4", Some("1.2.3.4/127.0.0.1:")),
        (
            "X-Forwarded-For:  2001:db8::1 ",
            Some("[2001:db8::1]/127.0.0.1:"),
        ),
        ("X-Forwarded-For: 1.2.3.4, 5.6.7.8", None),
        ("X-Forwarded-For: proxy.example", None),
        (
            "X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-For: 1.1.1.1",
            Some("9.9.9.9/127.0.0.1:"),
        ),
    ];
    for (name, server) in &servers {
        for (index, (header, prefix)) in cases.iter().enumerate() {
            let client = format!("xff{index}");
            let connect = format!("CONNECT {{\"verbose\":false,\"name\":\"{client}\"}}");
            let (_, answer, stream) =
                log_in_over_ws(server.websocket_port(), header, &connect).await;
            assert_eq!(
                answer.last().map(|f| f.1.clone()),
                Some(b"PONG\r\n".to_vec()),
                "{name}"
            );
            let connz = rnats_tests::http_json(server.http_port(), "/connz");
            let entry = connz["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == client.as_str())
                .unwrap_or_else(|| panic!("{name}: {client} not in /connz"))
                .clone();
            assert_eq!(entry["ip"], "127.0.0.1", "{name}: {header}");
            let port = entry["port"].as_u64().unwrap();
            let created = format!("127.0.0.1:{port} - wid:");
            let line = (0..100)
                .find_map(|_| {
                    let found = server
                        .log_lines()
                        .into_iter()
                        .find(|l| l.contains(&created) && l.contains("Client connection created"));
                    if found.is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    found
                })
                .unwrap_or_else(|| panic!("{name}: no creation line for {created}"));
            match prefix {
                Some(prefix) => assert!(
                    line.contains(&format!("] {prefix}{port} - wid:")),
                    "{name}: {header}: {line}"
                ),
                None => assert!(
                    line.contains(&format!("] 127.0.0.1:{port} - wid:")),
                    "{name}: {header}: {line}"
                ),
            }
            drop(stream);
        }
    }
}

/// The block's `ping_interval` applies to websocket clients (the client
/// port keeps the top-level one): a websocket client that never answers
/// is pinged and found stale within seconds, as by the reference.
#[tokio::test]
async fn websocket_ping_interval_applies_to_websocket_clients_like_the_reference() {
    let (server, reference) = both(
        "ws-ping",
        "websocket { listen: \"127.0.0.1:-1\", no_tls: true, ping_interval: \"300ms\" }\n",
    );
    let mut outcomes = Vec::new();
    for server in std::iter::once(&server).chain(reference.as_ref()) {
        let mut stream = upgraded(server.websocket_port()).await;
        stream
            .write_all(&frame(0x82, b"CONNECT {\"verbose\":false}\r\nPING\r\n"))
            .await
            .unwrap();
        // A TCP client of the same server is not pinged meanwhile.
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        tcp.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let got = frames(&read_to_end(&mut stream).await).expect("whole frames");
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(4), "stale after {elapsed:?}");
        let data: Vec<Vec<u8>> = got
            .into_iter()
            .filter(|(opcode, _)| *opcode == 0x82)
            .map(|(_, payload)| payload)
            .collect();
        let text = String::from_utf8_lossy(&data.concat()).into_owned();
        assert_eq!(
            text, "PONG\r\nPING\r\nPING\r\n-ERR 'Stale Connection'\r\n",
            "{elapsed:?}"
        );
        let mut answer = Vec::new();
        while !answer.ends_with(b"PONG\r\n") {
            let mut chunk = [0u8; 4096];
            let n = within("PONG on TCP", tcp.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "TCP client closed");
            answer.extend_from_slice(&chunk[..n]);
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(
            !answer.contains("PING"),
            "the TCP client was pinged: {answer}"
        );
        outcomes.push(text);
    }
    if let [ours, theirs] = &outcomes[..] {
        assert_eq!(ours, theirs);
    }
}

/// In operator mode `jwt_cookie` names the cookie whose user JWT stands in
/// for CONNECT's `jwt` (a bearer token: a cookie cannot sign the nonce).
#[tokio::test]
async fn jwt_cookie_logs_in_a_bearer_user_in_operator_mode_like_the_reference() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let dir = temp_dir("ws-jwt-cookie");
    std::fs::write(dir.join("op.jwt"), jwt::operator(&operator, json!({}))).unwrap();
    let path = config(
        "ws-jwt-cookie",
        &format!(
            "operator: {}\nresolver: MEMORY\nresolver_preload: {{ {}: {} }}\n\
             websocket {{ listen: \"127.0.0.1:-1\", no_tls: true, jwt_cookie: ujwt }}\n",
            dir.join("op.jwt").display(),
            account.public_key(),
            jwt::account(&operator, &account, json!({})),
        ),
    );
    let bearer_user = nkeys::KeyPair::new_user();
    let bearer = jwt::user(
        &account,
        &bearer_user,
        json!({"bearer_token": true}),
        json!({}),
    );
    let signing_user = nkeys::KeyPair::new_user();
    let needs_signature = jwt::user(&account, &signing_user, json!({}), json!({}));
    let mut servers = vec![ServerProcess::start(&["-c", &path])];
    servers.extend(
        rnats_tests::reference_server()
            .map(|binary| ServerProcess::start_binary(binary, &["-c", &path])),
    );
    for server in &servers {
        let port = server.websocket_port();
        let (_, frames, _) =
            log_in_over_ws(port, &format!("Cookie: ujwt={bearer}"), "CONNECT {}").await;
        assert!(
            frames
                .iter()
                .any(|(_, payload)| payload.ends_with(b"PONG\r\n")),
            "{frames:?}"
        );
        // Without the bearer flag the nonce must be signed: refused.
        let (_, frames, _) = log_in_over_ws(
            port,
            &format!("Cookie: ujwt={needs_signature}"),
            "CONNECT {}",
        )
        .await;
        assert!(
            frames
                .iter()
                .any(|(_, payload)| payload.starts_with(b"-ERR 'Authorization Violation'")),
            "{frames:?}"
        );
    }
}
