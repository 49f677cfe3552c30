//! Protocol tracing (`-V`): each operation a client sends (`<<- [PUB a 2]`,
//! `<<- MSG_PAYLOAD: ["hi"]`) and each the server sends it (`->> [MSG a 1 2]`,
//! `->> [PONG]`, `->> [-ERR ...]`), worded as nats-server traces them.
//!
//! Role: pure formatting. The server calls it only when `ServerConfig::trace`
//! is on, so tracing costs nothing otherwise. Outbound lines are read back
//! from the bytes the runtime takes (one place sees every reply, in order).
//!
//! Invariant: secrets never reach a trace line: CONNECT's `pass`,
//! `auth_token` and `sig` values are replaced by `[REDACTED]`.

use crate::protocol::ClientOp;

/// The trace lines for one inbound operation.
pub fn inbound(op: &ClientOp, max_payload: usize) -> Vec<String> {
    let line = |text: String| format!("<<- [{text}]");
    match op {
        ClientOp::Connect(json) => vec![line(format!("CONNECT {}", redact(json)))],
        ClientOp::Pub {
            subject,
            reply,
            payload,
        } => {
            let mut lines = vec![line(format!(
                "PUB {}{} {}",
                text(subject),
                reply_part(reply.as_deref()),
                payload.len()
            ))];
            lines.extend(payload_line("<<-", payload, max_payload));
            lines
        }
        ClientOp::HPub {
            subject,
            reply,
            headers,
            payload,
        } => {
            let mut lines = vec![line(format!(
                "HPUB {}{} {} {}",
                text(subject),
                reply_part(reply.as_deref()),
                headers.len(),
                headers.len() + payload.len()
            ))];
            let mut whole = headers.to_vec();
            whole.extend_from_slice(payload);
            lines.extend(payload_line("<<-", &whole, max_payload));
            lines
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => vec![line(format!(
            "SUB {}{} {}",
            text(subject),
            reply_part(queue.as_deref()),
            text(sid)
        ))],
        ClientOp::Unsub { sid, max } => vec![line(match max {
            Some(max) => format!("UNSUB {} {max}", text(sid)),
            None => format!("UNSUB {}", text(sid)),
        })],
        ClientOp::Ping => vec![line(String::from("PING"))],
        ClientOp::Pong => vec![line(String::from("PONG"))],
        ClientOp::StrayHMsg => vec![line(String::from("HMSG"))],
    }
}

/// The trace lines for bytes the server wrote to a client (whole
/// operations, as the server machine queues them). INFO is not traced.
pub fn outbound(mut bytes: &[u8], max_payload: usize) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(end) = find_crlf(bytes) {
        let control = &bytes[..end];
        bytes = &bytes[end + 2..];
        let words: Vec<&[u8]> = control.split(|b| *b == b' ').collect();
        match words[0] {
            b"MSG" | b"HMSG" | b"RMSG" => {
                let size = words
                    .last()
                    .and_then(|w| std::str::from_utf8(w).ok())
                    .and_then(|w| w.parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(bytes.len());
                lines.push(format!("->> [{}]", text(control)));
                lines.extend(payload_line("->>", &bytes[..size], max_payload));
                bytes = bytes.get(size + 2..).unwrap_or(&[]);
            }
            b"INFO" => {}
            b"+OK" => lines.push(String::from("->> [OK]")),
            b"-ERR" => {
                let message = control[4..].trim_ascii();
                let message = message
                    .strip_prefix(b"'")
                    .and_then(|m| m.strip_suffix(b"'"))
                    .unwrap_or(message);
                lines.push(format!("->> [-ERR {}]", text(message)));
            }
            _ => lines.push(format!("->> [{}]", text(control))),
        }
    }
    lines
}

/// `<-> [DELSUB <sid>]`: a subscription gone with its connection.
pub fn delsub(sid: &[u8]) -> String {
    format!("<-> [DELSUB {}]", text(sid))
}

/// `MSG_PAYLOAD: ["..."]`, cut to `max` bytes (0: whole) with `...` after
/// the quoted part, as the reference cuts it.
fn payload_line(direction: &str, payload: &[u8], max: usize) -> Option<String> {
    // The reference prints no payload line for an empty payload.
    if payload.is_empty() {
        return None;
    }
    if max > 0 && payload.len() > max {
        let quoted = format!("{:?}", String::from_utf8_lossy(&payload[..max]));
        let inner = &quoted[1..quoted.len() - 1];
        return Some(format!("{direction} MSG_PAYLOAD: [\"{inner}...\"]"));
    }
    Some(format!(
        "{direction} MSG_PAYLOAD: [{:?}]",
        String::from_utf8_lossy(payload)
    ))
}

fn reply_part(reply: Option<&[u8]>) -> String {
    reply.map(|r| format!(" {}", text(r))).unwrap_or_default()
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

/// CONNECT's JSON as sent, with the values of secret fields replaced (the
/// reference prints the raw text, so key order and spacing stay).
fn redact(json: &[u8]) -> String {
    const SECRETS: [&[u8]; 3] = [b"\"pass\"", b"\"auth_token\"", b"\"sig\""];
    let mut out = json.to_vec();
    for key in SECRETS {
        let mut from = 0;
        while let Some(found) = out[from..].windows(key.len()).position(|w| w == key) {
            let mut at = from + found + key.len();
            while out
                .get(at)
                .is_some_and(|b| b.is_ascii_whitespace() || *b == b':')
            {
                at += 1;
            }
            from = at;
            if out.get(at) != Some(&b'"') {
                continue;
            }
            // The string value: up to the first quote not escaped.
            let start = at + 1;
            let mut end = start;
            while end < out.len() && out[end] != b'"' {
                end += if out[end] == b'\\' { 2 } else { 1 };
            }
            let end = end.min(out.len());
            out.splice(start..end, b"[REDACTED]".iter().copied());
            from = start + b"[REDACTED]".len();
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn inbound_ops_are_worded_as_the_reference() {
        let op = ClientOp::Pub {
            subject: Bytes::from_static(b"a"),
            reply: None,
            payload: Bytes::from_static(b"hi"),
        };
        assert_eq!(
            inbound(&op, 0),
            ["<<- [PUB a 2]", "<<- MSG_PAYLOAD: [\"hi\"]"]
        );
        assert_eq!(inbound(&op, 1)[1], "<<- MSG_PAYLOAD: [\"h...\"]");
        let connect = ClientOp::Connect(Bytes::from_static(
            br#"{"user":"u", "pass" : "se\"cret","auth_token":"tok","verbose":false}"#,
        ));
        assert_eq!(
            inbound(&connect, 0),
            [
                r#"<<- [CONNECT {"user":"u", "pass" : "[REDACTED]","auth_token":"[REDACTED]","verbose":false}]"#
            ]
        );
    }

    #[test]
    fn outbound_bytes_become_trace_lines() {
        let out =
            b"INFO {}\r\nMSG a 1 2\r\nhi\r\nPONG\r\n-ERR 'Authorization Violation'\r\n+OK\r\n";
        assert_eq!(
            outbound(out, 0),
            [
                "->> [MSG a 1 2]",
                "->> MSG_PAYLOAD: [\"hi\"]",
                "->> [PONG]",
                "->> [-ERR Authorization Violation]",
                "->> [OK]",
            ]
        );
    }
}
