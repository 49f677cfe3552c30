//! Differential test: replays raw client-protocol transcripts against rnats-server and
//! the reference nats-server and requires byte-identical replies.
//!
//! Inputs: every `*.txt` file in `tests/transcripts/` (format below). Output: one
//! pass/fail per transcript; a failure prints both normalized replies and where they
//! first differ.
//!
//! For each transcript both servers are started fresh with the transcript's flags (and
//! config file, if any), the steps are replayed over plain TCP sockets, and everything
//! each server sends is recorded per connection together with `<mark>` points and the
//! moment the server closed the connection (`<closed>`). The records are normalized
//! (volatile INFO values such as `server_id` or `port` become placeholders; the key set
//! and key order are kept) and compared as text.
//!
//! Transcript format (one step per line):
//!
//! ```text
//! # comment                      ignored
//! server: --user a --pass b      extra server flags (whitespace separated)
//! config: max_connections: 2     a line of a config file passed with `-c`
//! A> CONNECT {}\r\nPING\r\n      send on connection A (opened on first use; `>` alone means A)
//! open B                         open connection B without sending anything
//! close B                        the client closes connection B
//! wait 300                       sleep 300 ms
//! mark                           wait until every connection is quiet, then record `<mark>`
//! ```
//!
//! Send text escapes: `\r`, `\n`, `\t`, `\\`, `\xHH`, `\{TEXT*N}` (TEXT repeated N times,
//! TEXT may not contain `}`), and `\|` which splits the line into separate writes with a
//! short pause in between (so the server sees separate reads). Trailing blanks are kept
//! only when escaped (`\x20`). Whenever a send names a different connection than the
//! previous send, and before and after a connection is opened, the runner waits until
//! all connections are quiet, which orders the steps of different connections. Each
//! transcript gets its own pair of servers, but its connections share that server, so
//! use distinct subjects on different connections unless the cross-talk is the point.
//!
//! Environment:
//! - `RNATS_DIFF_SELFTEST=1`: the "rnats" side is a second nats-server instance, which
//!   validates the transcripts and this runner before rnats exists.
//! - `RNATS_TEST_SERVER_BIN=nats-server` (the harness's switch) has the same effect.
//! - `RNATS_DIFF_FILTER=substr`: only transcripts whose name contains `substr`.
//! - `RNATS_DIFF_VERBOSE=1`: print every normalized reply, also on success.
//!
//! Invariants: every socket read has a timeout, every wait is bounded, and a shared
//! deadline cuts all transcripts short, so the test cannot hang.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rnats_tests::ServerProcess;

/// How long every connection must stay silent before a sync point is passed.
const QUIET_SYNC: Duration = Duration::from_millis(80);
/// How long every connection must stay silent after the last step before recording ends.
const QUIET_FINAL: Duration = Duration::from_millis(250);
/// Upper bound for a single sync point (a server that never stops talking).
const SYNC_MAX: Duration = Duration::from_secs(3);
/// Pause between the pieces of a send split with `\|`.
const SPLIT_PAUSE: Duration = Duration::from_millis(25);
/// Pause after every send, so consecutive sends usually arrive as separate reads.
const SEND_PAUSE: Duration = Duration::from_millis(5);
/// Granularity of the reader threads' socket timeouts.
const READ_TICK: Duration = Duration::from_millis(20);
/// Bound for the whole suite; transcripts still running at this point are cut short.
const SUITE_MAX: Duration = Duration::from_secs(150);
/// Transcripts replayed at the same time (each one starts two servers).
const CONCURRENCY_MAX: usize = 6;
/// Bound on the bytes recorded per connection (the largest transcript sends 1 MiB).
const RECORD_BYTES_MAX: usize = 4 << 20;

// ---------------------------------------------------------------------------
// Transcripts

#[derive(Debug, Clone)]
struct Transcript {
    name: String,
    server_args: Vec<String>,
    config_lines: Vec<String>,
    /// Why rnats is known to answer this transcript differently (documented
    /// in README's feature table); a difference is reported, not failed.
    known_difference: Option<String>,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Writes `chunks` one after the other on the connection, pausing between them.
    Send {
        connection: String,
        chunks: Vec<Vec<u8>>,
    },
    Open(String),
    Close(String),
    Wait(Duration),
    Mark,
}

fn parse_transcript(name: &str, text: &str) -> Result<Transcript, String> {
    let mut transcript = Transcript {
        name: name.to_string(),
        server_args: Vec::new(),
        config_lines: Vec::new(),
        known_difference: None,
        steps: Vec::new(),
    };
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.trim_start();
        let fail = |what: &str| format!("{name}:{line_number}: {what}: {raw:?}");
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("server:") {
            transcript
                .server_args
                .extend(rest.split_whitespace().map(str::to_string));
        } else if let Some(rest) = line.strip_prefix("config:") {
            transcript.config_lines.push(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("known-difference:") {
            transcript.known_difference = Some(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("wait ") {
            let ms: u64 = rest.trim().parse().map_err(|_| fail("bad wait"))?;
            assert!(ms <= 10_000, "{}", fail("wait longer than 10 s"));
            transcript.steps.push(Step::Wait(Duration::from_millis(ms)));
        } else if line.trim_end() == "mark" {
            transcript.steps.push(Step::Mark);
        } else if let Some(rest) = line.strip_prefix("open ") {
            transcript.steps.push(Step::Open(
                connection_name(rest.trim()).map_err(|e| fail(&e))?,
            ));
        } else if let Some(rest) = line.strip_prefix("close ") {
            transcript.steps.push(Step::Close(
                connection_name(rest.trim()).map_err(|e| fail(&e))?,
            ));
        } else if let Some(position) = line.find('>') {
            let connection = match line[..position].trim() {
                "" => "A".to_string(),
                other => connection_name(other).map_err(|e| fail(&e))?,
            };
            let body = &line[position + 1..];
            let body = body.strip_prefix(' ').unwrap_or(body).trim_end();
            let chunks = unescape(body).map_err(|e| fail(&e))?;
            transcript.steps.push(Step::Send { connection, chunks });
        } else {
            return Err(fail("unknown step"));
        }
    }
    if transcript.steps.is_empty() {
        return Err(format!("{name}: no steps"));
    }
    Ok(transcript)
}

fn connection_name(text: &str) -> Result<String, String> {
    let valid =
        !text.is_empty() && text.len() <= 8 && text.chars().all(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!("bad connection name {text:?}"))
    }
}

/// Decodes the escapes of a send line into the chunks to write (split at `\|`).
fn unescape(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let bytes = text.as_bytes();
    let mut chunks = vec![Vec::new()];
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        i += 1;
        if byte != b'\\' {
            chunks.last_mut().expect("never empty").push(byte);
            continue;
        }
        let Some(&escape) = bytes.get(i) else {
            return Err("trailing backslash".into());
        };
        i += 1;
        let current = chunks.last_mut().expect("never empty");
        match escape {
            b'r' => current.push(b'\r'),
            b'n' => current.push(b'\n'),
            b't' => current.push(b'\t'),
            b'\\' => current.push(b'\\'),
            b'x' => {
                let hex = text.get(i..i + 2).ok_or("short \\x escape")?;
                current.push(u8::from_str_radix(hex, 16).map_err(|_| "bad \\x escape")?);
                i += 2;
            }
            b'{' => {
                let end = text[i..].find('}').ok_or("unclosed \\{")? + i;
                let (repeated, count) = text[i..end].rsplit_once('*').ok_or("\\{ without *N")?;
                let count: usize = count.parse().map_err(|_| "bad repeat count")?;
                assert!(
                    count <= 2 << 20,
                    "repeat count {count} over the 2 MiB bound"
                );
                current.extend(repeated.as_bytes().repeat(count));
                i = end + 1;
            }
            b'|' => chunks.push(Vec::new()),
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    chunks.retain(|chunk| !chunk.is_empty());
    Ok(chunks)
}

fn transcripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts")
}

fn load_transcripts() -> Vec<Transcript> {
    let dir = transcripts_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    paths.sort();
    let filter = std::env::var("RNATS_DIFF_FILTER").unwrap_or_default();
    paths
        .iter()
        .map(|path| {
            let name = path
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(path).expect("read transcript");
            parse_transcript(&name, &text).unwrap_or_else(|e| panic!("{e}"))
        })
        .filter(|transcript| transcript.name.contains(&filter))
        .collect()
}

// ---------------------------------------------------------------------------
// Replay

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Data(Vec<u8>),
    Mark,
    /// The server closed the connection (EOF or reset).
    Closed,
}

/// What one connection received. Shared between the runner and the reader thread.
#[derive(Debug)]
struct Record {
    events: Vec<Event>,
    bytes_total: usize,
    last_activity: Instant,
    closed: bool,
}

struct Connection {
    name: String,
    stream: TcpStream,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Connection {
    fn open(name: &str, addr: &str) -> Connection {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(READ_TICK))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .expect("write timeout");
        let record = Arc::new(Mutex::new(Record {
            events: Vec::new(),
            bytes_total: 0,
            last_activity: Instant::now(),
            closed: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stream = stream.try_clone().expect("clone stream");
            let record = record.clone();
            let stop = stop.clone();
            std::thread::spawn(move || read_until_closed(stream, &record, &stop))
        };
        Connection {
            name: name.to_string(),
            stream,
            record,
            stop,
            reader: Some(reader),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        if self.record.lock().unwrap().closed {
            return;
        }
        // A server that already closed the connection makes this fail; the close is
        // what gets compared, not the write error.
        let _ = self.stream.write_all(bytes);
    }

    /// Stops the reader and returns the events. A close by the client is not recorded.
    fn finish(mut self) -> (String, Vec<Event>) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            reader.join().expect("reader thread");
        }
        let record = self.record.lock().unwrap();
        (self.name.clone(), record.events.clone())
    }
}

fn read_until_closed(mut stream: TcpStream, record: &Mutex<Record>, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let result = stream.read(&mut buffer);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut record = record.lock().unwrap();
        match result {
            // Timeout tick: look at the stop flag again.
            Err(error) if is_timeout(&error) => {}
            Ok(0) | Err(_) => {
                record.events.push(Event::Closed);
                record.closed = true;
                record.last_activity = Instant::now();
                return;
            }
            Ok(n) => {
                if record.bytes_total + n <= RECORD_BYTES_MAX {
                    match record.events.last_mut() {
                        Some(Event::Data(data)) => data.extend_from_slice(&buffer[..n]),
                        _ => record.events.push(Event::Data(buffer[..n].to_vec())),
                    }
                }
                record.bytes_total += n;
                record.last_activity = Instant::now();
            }
        }
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Replays `transcript` against the server at `addr`; returns each connection's events
/// in the order the connections were opened.
fn replay(transcript: &Transcript, addr: &str, deadline: Instant) -> Vec<(String, Vec<Event>)> {
    let mut connections: Vec<Connection> = Vec::new();
    let mut last_sender: Option<String> = None;
    for step in &transcript.steps {
        if Instant::now() >= deadline {
            break;
        }
        match step {
            Step::Send { connection, chunks } => {
                if last_sender.as_ref().is_some_and(|last| last != connection) {
                    wait_quiet(&connections, QUIET_SYNC, deadline);
                }
                last_sender = Some(connection.clone());
                let index = connection_index(&mut connections, connection, addr, deadline);
                for (i, chunk) in chunks.iter().enumerate() {
                    if i > 0 {
                        std::thread::sleep(SPLIT_PAUSE);
                    }
                    connections[index].send(chunk);
                }
                std::thread::sleep(SEND_PAUSE);
            }
            Step::Open(name) => {
                connection_index(&mut connections, name, addr, deadline);
            }
            Step::Close(name) => {
                wait_quiet(&connections, QUIET_SYNC, deadline);
                if let Some(connection) = connections.iter().find(|c| &c.name == name) {
                    let _ = connection.stream.shutdown(Shutdown::Write);
                }
            }
            Step::Wait(duration) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep((*duration).min(remaining));
            }
            Step::Mark => {
                wait_quiet(&connections, QUIET_SYNC, deadline);
                for connection in &connections {
                    connection.record.lock().unwrap().events.push(Event::Mark);
                }
            }
        }
    }
    wait_quiet(&connections, QUIET_FINAL, deadline);
    connections.into_iter().map(Connection::finish).collect()
}

/// Finds the connection called `name`, opening it if needed. A new connection is only
/// opened once the others are quiet, and is given time to receive its INFO: the
/// reference server registers concurrent connections in any order, which matters for
/// `max_connections`.
fn connection_index(
    connections: &mut Vec<Connection>,
    name: &str,
    addr: &str,
    deadline: Instant,
) -> usize {
    if let Some(index) = connections.iter().position(|c| c.name == name) {
        return index;
    }
    wait_quiet(connections, QUIET_SYNC, deadline);
    connections.push(Connection::open(name, addr));
    wait_quiet(connections, QUIET_SYNC, deadline);
    connections.len() - 1
}

/// Waits until no connection received anything for `quiet` (closed ones count as
/// quiet), at most `SYNC_MAX` and never past `deadline`.
fn wait_quiet(connections: &[Connection], quiet: Duration, deadline: Instant) {
    let start = Instant::now();
    let bound = deadline.min(start + SYNC_MAX + quiet);
    // The quiet period is measured from the call, so a silent server still gets `quiet`.
    std::thread::sleep(quiet.min(bound.saturating_duration_since(Instant::now())));
    loop {
        let now = Instant::now();
        if now >= bound {
            return;
        }
        let busy_until = connections
            .iter()
            .filter_map(|c| {
                let record = c.record.lock().unwrap();
                (!record.closed).then(|| record.last_activity + quiet)
            })
            .max();
        match busy_until {
            Some(until) if until > now => std::thread::sleep((until - now).min(bound - now)),
            _ => return,
        }
    }
}

// ---------------------------------------------------------------------------
// Normalization

/// INFO keys whose values differ between runs or implementations. Their values become
/// `"<key>"`; the keys stay, in place.
const INFO_VOLATILE_KEYS: &[&str] = &[
    "server_id",
    "server_name",
    "version",
    "go",
    "git_commit",
    "host",
    "port",
    "client_id",
    "client_ip",
    "nonce",
    "connect_urls",
    "ws_connect_urls",
    "xkey",
    "ip",
    "cluster",
    "domain",
];

/// Renders one connection's events as readable text: every protocol message on its own
/// line (escaped, INFO normalized), payloads shown escaped after their control line.
fn render(events: &[Event], port: u16) -> String {
    let mut stream = Vec::new();
    let mut markers: Vec<(usize, &'static str)> = Vec::new();
    for event in events {
        match event {
            Event::Data(data) => stream.extend_from_slice(data),
            Event::Mark => markers.push((stream.len(), "<mark>")),
            Event::Closed => markers.push((stream.len(), "<closed>")),
        }
    }
    let mut out = String::new();
    let mut markers = markers.into_iter().peekable();
    let mut position = 0;
    while position < stream.len() {
        while let Some(&(offset, label)) = markers.peek() {
            if offset > position {
                break;
            }
            out.push_str(label);
            out.push('\n');
            markers.next();
        }
        let length = message_length(&stream[position..]);
        out.push_str(&normalize_message(
            &stream[position..position + length],
            port,
        ));
        out.push('\n');
        position += length;
    }
    for (_, label) in markers {
        out.push_str(label);
        out.push('\n');
    }
    out
}

/// Length of the server message at the start of `bytes`: a control line, plus the
/// payload and its CRLF for MSG/HMSG. Incomplete data is one message.
fn message_length(bytes: &[u8]) -> usize {
    let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
        return bytes.len();
    };
    let line_end = newline + 1;
    let line = &bytes[..newline];
    let is_msg = line.starts_with(b"MSG ") || line.starts_with(b"HMSG ");
    if !is_msg {
        return line_end;
    }
    let size = line
        .strip_suffix(b"\r")
        .unwrap_or(line)
        .rsplit(|&b| b == b' ')
        .next()
        .and_then(|size| std::str::from_utf8(size).ok())
        .and_then(|size| size.parse::<usize>().ok());
    match size {
        Some(size) => (line_end + size + 2).min(bytes.len()),
        None => line_end,
    }
}

fn normalize_message(message: &[u8], port: u16) -> String {
    if let Some(json) = message.strip_prefix(b"INFO ") {
        let end = json
            .iter()
            .rposition(|&b| b == b'}')
            .map_or(json.len(), |i| i + 1);
        if let Ok(text) = std::str::from_utf8(&json[..end]) {
            if serde_json::from_str::<serde_json::Value>(text).is_ok() {
                let normalized = normalize_info_json(text);
                return format!("INFO {}{}", normalized, escape(&json[end..]));
            }
        }
    }
    let text = escape(message);
    if message.starts_with(b"-ERR") && port != 0 {
        return text.replace(&port.to_string(), "<port>");
    }
    text
}

/// Replaces the values of volatile top-level keys of a JSON object, keeping the text
/// of everything else (so key order and spacing are compared too).
fn normalize_info_json(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut depth = 0usize;
    let mut pending_key: Option<String> = None;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'"' => {
                let end = string_end(bytes, i);
                let literal = &text[i..end];
                if depth == 1
                    && pending_key.is_none()
                    && bytes[end..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':')
                {
                    pending_key = Some(literal.trim_matches('"').to_string());
                    out.push_str(literal);
                    i = end;
                    continue;
                }
                out.push_str(literal);
                i = end;
                continue;
            }
            b':' if depth == 1 => {
                out.push(':');
                i += 1;
                let key = pending_key.take().unwrap_or_default();
                if INFO_VOLATILE_KEYS.contains(&key.as_str()) {
                    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    i = value_end(bytes, i);
                    out.push_str(&format!("\"<{key}>\""));
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => pending_key = None,
            _ => {}
        }
        out.push(byte as char);
        i += 1;
    }
    out
}

/// Index just past the JSON string starting at `start` (which is a `"`).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Index just past the JSON value starting at `start`.
fn value_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = string_end(bytes, i);
                if depth == 0 {
                    return i;
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return i,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b',' if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// Printable form of protocol bytes: `\r`, `\n`, `\t`, `\\` and `\xHH` escapes.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out
}

/// Long lines (a 1 MiB payload) are shortened for display only.
fn abbreviate(rendered: &str) -> String {
    rendered
        .lines()
        .map(|line| {
            if line.len() <= 300 {
                line.to_string()
            } else {
                let cut = (0..=200)
                    .rev()
                    .find(|&i| line.is_char_boundary(i))
                    .unwrap_or(0);
                format!("{}... [{} chars]", &line[..cut], line.len())
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// The test

/// The normalized reply of one server to one transcript.
fn rendered_reply(replies: &[(String, Vec<Event>)], port: u16) -> String {
    let mut out = String::new();
    for (name, events) in replies {
        out.push_str(&format!("[{name}]\n"));
        out.push_str(&render(events, port));
    }
    out
}

struct Outcome {
    name: String,
    known_difference: Option<String>,
    reference: String,
    candidate: String,
}

fn run_one(transcript: &Transcript, selftest: bool, deadline: Instant) -> Option<Outcome> {
    let config_path = write_config(transcript);
    let mut args: Vec<String> = transcript.server_args.clone();
    if let Some(path) = &config_path {
        args.push("-c".into());
        args.push(path.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reference = ServerProcess::start_reference(&args)?;
    let candidate = if selftest {
        ServerProcess::start_reference(&args)?
    } else {
        ServerProcess::start(&args)
    };
    // Both servers are replayed at the same time: half the wall time.
    let (reference_reply, candidate_reply) = std::thread::scope(|scope| {
        let reference_run = scope.spawn(|| replay(transcript, &reference.addr(), deadline));
        let candidate_reply = replay(transcript, &candidate.addr(), deadline);
        (
            reference_run.join().expect("reference replay"),
            candidate_reply,
        )
    });
    if let Some(path) = config_path {
        let _ = std::fs::remove_file(path);
    }
    Some(Outcome {
        name: transcript.name.clone(),
        known_difference: transcript.known_difference.clone(),
        reference: rendered_reply(&reference_reply, reference.port),
        candidate: rendered_reply(&candidate_reply, candidate.port),
    })
}

fn write_config(transcript: &Transcript) -> Option<PathBuf> {
    if transcript.config_lines.is_empty() {
        return None;
    }
    let path = std::env::temp_dir().join(format!(
        "rnats-differential-{}-{}.conf",
        std::process::id(),
        transcript.name
    ));
    std::fs::write(&path, transcript.config_lines.join("\n") + "\n").expect("write config");
    Some(path)
}

fn describe_mismatch(outcome: &Outcome, candidate_label: &str) -> String {
    let reference_lines: Vec<&str> = outcome.reference.lines().collect();
    let candidate_lines: Vec<&str> = outcome.candidate.lines().collect();
    let first = reference_lines
        .iter()
        .zip(&candidate_lines)
        .position(|(a, b)| a != b)
        .unwrap_or(reference_lines.len().min(candidate_lines.len()));
    let line_at = |lines: &[&str]| {
        lines
            .get(first)
            .map_or("<end>".to_string(), |l| abbreviate(l))
    };
    format!(
        "=== transcript {} differs at reply line {}\n  nats-server: {}\n  {candidate_label}: {}\n\
         --- nats-server reply:\n{}\n--- {candidate_label} reply:\n{}\n",
        outcome.name,
        first + 1,
        line_at(&reference_lines),
        line_at(&candidate_lines),
        abbreviate(&outcome.reference),
        abbreviate(&outcome.candidate),
    )
}

#[test]
fn transcripts_match_reference() {
    if rnats_tests::reference_server().is_none() {
        eprintln!("NOTICE: differential test skipped: the reference nats-server is not available");
        return;
    }
    let selftest = std::env::var("RNATS_DIFF_SELFTEST").is_ok_and(|v| v == "1");
    let verbose = std::env::var("RNATS_DIFF_VERBOSE").is_ok_and(|v| v == "1");
    let candidate_label = if selftest {
        "nats-server #2"
    } else {
        "rnats-server"
    };
    if !selftest {
        // Build rnats-server once up front (unless RNATS_TEST_SERVER_BIN names another binary)
        // rather than inside the first replay.
        rnats_tests::server_under_test();
    }
    let transcripts = load_transcripts();
    assert!(
        !transcripts.is_empty(),
        "no transcripts in {}",
        transcripts_dir().display()
    );
    let started = Instant::now();
    let deadline = started + SUITE_MAX;
    let queue = Mutex::new(transcripts.iter().collect::<VecDeque<_>>());
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENCY_MAX.min(transcripts.len()) {
            scope.spawn(|| loop {
                let Some(transcript) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(outcome) = run_one(transcript, selftest, deadline) {
                    outcomes.lock().unwrap().push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        Instant::now() < deadline,
        "the differential suite ran past its {SUITE_MAX:?} bound"
    );
    let mut failures = Vec::new();
    for outcome in &outcomes {
        if verbose {
            eprintln!("--- {}:\n{}", outcome.name, abbreviate(&outcome.reference));
        }
        if outcome.reference != outcome.candidate {
            match &outcome.known_difference {
                Some(reason) if !selftest => {
                    eprintln!(
                        "differential: {} differs as documented: {reason}",
                        outcome.name
                    )
                }
                _ => failures.push(describe_mismatch(outcome, candidate_label)),
            }
        }
    }
    eprintln!(
        "differential: {} transcripts, {} differ ({candidate_label} vs nats-server), {:.1}s",
        outcomes.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        outcomes.len(),
        transcripts.len(),
        "some transcripts did not run"
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Unit tests of the runner's own pieces (no servers involved).

#[test]
fn unescape_handles_every_escape() {
    assert_eq!(unescape(r"PING\r\n").unwrap(), vec![b"PING\r\n".to_vec()]);
    assert_eq!(
        unescape(r"PI\|NG\r\|\n").unwrap(),
        vec![b"PI".to_vec(), b"NG\r".to_vec(), b"\n".to_vec()]
    );
    assert_eq!(unescape(r"\x41\t\\").unwrap(), vec![b"A\t\\".to_vec()]);
    assert_eq!(unescape(r"<\{ab*3}>").unwrap(), vec![b"<ababab>".to_vec()]);
    assert!(unescape(r"\q").is_err());
    assert!(unescape("x\\").is_err());
}

#[test]
fn parse_transcript_reads_steps_and_flags() {
    let text = "# c\nserver: --user a --pass b\nconfig: max_payload: 16\n> PING\\r\\n\nB> SUB a.> 1\\r\\n\nwait 20\nmark\nopen C\nclose C\n";
    let transcript = parse_transcript("t", text).unwrap();
    assert_eq!(transcript.server_args, ["--user", "a", "--pass", "b"]);
    assert_eq!(transcript.config_lines, ["max_payload: 16"]);
    assert_eq!(
        transcript.steps[0],
        Step::Send {
            connection: "A".into(),
            chunks: vec![b"PING\r\n".to_vec()]
        }
    );
    assert_eq!(
        transcript.steps[1],
        Step::Send {
            connection: "B".into(),
            chunks: vec![b"SUB a.> 1\r\n".to_vec()]
        }
    );
    assert_eq!(transcript.steps[2], Step::Wait(Duration::from_millis(20)));
    assert_eq!(transcript.steps[3], Step::Mark);
    assert_eq!(transcript.steps[4], Step::Open("C".into()));
    assert_eq!(transcript.steps[5], Step::Close("C".into()));
    assert!(parse_transcript("t", "bogus\n").is_err());
}

#[test]
fn info_normalization_keeps_keys_and_order() {
    let info = r#"{"server_id":"NABC","version":"2.15.1","proto":1,"port":4222,"connect_urls":["a:1","b:2"],"headers":true,"nested":{"port":1},"client_id":7}"#;
    assert_eq!(
        normalize_info_json(info),
        r#"{"server_id":"<server_id>","version":"<version>","proto":1,"port":"<port>","connect_urls":"<connect_urls>","headers":true,"nested":{"port":1},"client_id":"<client_id>"}"#
    );
}

#[test]
fn render_splits_messages_and_places_markers() {
    let events = vec![
        Event::Data(b"INFO {\"port\":5} \r\n+OK\r\nMSG a 1 5\r\nx\r\nyz\r\n".to_vec()),
        Event::Mark,
        Event::Data(b"HMSG a 1 3 5\r\nh\r\nab\r\n-ERR 'x'\r\n".to_vec()),
        Event::Closed,
    ];
    assert_eq!(
        render(&events, 5),
        "INFO {\"port\":\"<port>\"} \\r\\n\n+OK\\r\\n\nMSG a 1 5\\r\\nx\\r\\nyz\\r\\n\n<mark>\n\
         HMSG a 1 3 5\\r\\nh\\r\\nab\\r\\n\n-ERR 'x'\\r\\n\n<closed>\n"
    );
}
