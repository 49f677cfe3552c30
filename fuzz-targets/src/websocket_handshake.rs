//! Arbitrary bytes as the HTTP request that opens a websocket connection.
//!
//! Input: 1 control byte (bit 0: TLS listener, bit 1: `same_origin`, bit 2:
//! an allowed-origins list), then the request bytes.
//!
//! Checked: no panic; the request read whole and one byte at a time gives
//! the same head (or the same error); a parsed head never claims more bytes
//! than it was given nor more than `MAX_REQUEST_BYTES`; every answer is a
//! well-formed HTTP response whose lines end in CRLF, whose
//! `Content-Length` is its body's length, and which carries no byte of the
//! request but the accept key (base64 of a SHA-1 digest, 28 bytes).

use rnats_core::time::WallTime;
use rnats_core::websocket::handshake::{
    parse_request, upgrade, Request, RequestError, UpgradePolicy, MAX_REQUEST_BYTES,
};

type Parsed = Result<Option<(Request, usize)>, RequestError>;

fn incrementally(bytes: &[u8]) -> Parsed {
    for end in 1..=bytes.len() {
        match parse_request(&bytes[..end]) {
            Ok(None) => continue,
            other => return other,
        }
    }
    parse_request(&[])
}

fn check_response(response: &[u8], status: &str) {
    let text = std::str::from_utf8(response).expect("responses are text");
    assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    for line in head.split("\r\n") {
        assert!(!line.is_empty() && !line.contains('\n') && !line.contains('\r'));
    }
    if let Some(length) = head
        .split("\r\n")
        .find_map(|line| line.strip_prefix("Content-Length: "))
    {
        assert_eq!(length.parse::<usize>().unwrap(), body.len());
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let whole = parse_request(bytes);
    if bytes.len() <= 4096 {
        // Quadratic: kept to small inputs so the target stays fast.
        let expected = match &whole {
            Ok(None) => Ok(None),
            other => other.clone(),
        };
        assert_eq!(incrementally(bytes), expected);
    }
    let request = match whole {
        Err(error) => {
            check_response(&error.response(), "");
            return;
        }
        Ok(None) => return,
        Ok(Some((request, used))) => {
            assert!(used <= bytes.len() && used <= MAX_REQUEST_BYTES);
            request
        }
    };
    let allowed = if control & 4 != 0 {
        vec![
            "http://a.example.com".to_string(),
            "https://b.example.com:8443".to_string(),
        ]
    } else {
        Vec::new()
    };
    let policy = UpgradePolicy::new(control & 1 != 0, control & 2 != 0, &allowed, vec![]);
    match upgrade(&request, &policy) {
        Ok(accepted) => {
            assert_eq!(accepted.accept_key.len(), 28);
            let response = accepted.response(&policy);
            check_response(&response, "101 Switching Protocols");
            assert!(response.len() < 200, "no request bytes echoed");
        }
        Err(refusal) => {
            if let Some(response) = refusal.response(WallTime::from_unix_nanos(0)) {
                check_response(&response, &refusal.status().0.to_string());
                assert!(response.len() < 250, "no request bytes echoed");
            }
        }
    }
}
