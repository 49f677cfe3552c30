//! Cluster scenarios: the same measured publish/subscribe runs with the
//! publisher on one server and the subscribers on others, over routes.
//!
//! The servers of a run form an explicit full mesh (each is started with
//! `--cluster` on a free port and `--routes` naming every other one), each
//! server with its own defaults otherwise (route pooling and compression as
//! that server ships). Before the clock starts, every subscriber proves that
//! the publisher's server has learned its interest: it also subscribes to a
//! probe subject after the measured one, and a prober on the publisher's
//! server publishes probes until one arrives. Interest travels in order over
//! the route the account uses, so a probe delivered means the measured
//! subject's interest arrived first; the probe subscription is then removed.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BufMut;
use rnats_core::protocol::write_pub;

use crate::server::ServerProcess;
use crate::wire::{drain_frames, Conn, Frame};

/// The probe subject and the sid subscribers give it.
const PROBE_SUBJECT: &[u8] = b"bench.route.probe";
pub const PROBE_SID: u64 = 99;

/// Starts `count` servers from `binary` on loopback, routed in a full mesh,
/// each with `extra` arguments too.
pub fn start(binary: &Path, count: usize, extra: &[String]) -> Result<Vec<ServerProcess>, String> {
    assert!(count >= 2, "a cluster has two servers or more");
    let ports = free_ports(count)?;
    let mut servers = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let routes: Vec<String> = ports
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
            .collect();
        let mut args = extra.to_vec();
        args.extend([
            "--cluster".to_string(),
            format!("nats://127.0.0.1:{port}"),
            "--cluster_name".to_string(),
            "bench".to_string(),
            "--routes".to_string(),
            routes.join(","),
        ]);
        servers.push(ServerProcess::start_with(binary, &args)?);
    }
    Ok(servers)
}

/// Ports nothing listens on right now (bound and released at once).
fn free_ports(count: usize) -> Result<Vec<u16>, String> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}")))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
}

/// The SUB a subscriber sends after its measured subscriptions.
pub fn probe_subscription() -> (Vec<u8>, Option<&'static [u8]>, u64) {
    (PROBE_SUBJECT.to_vec(), None, PROBE_SID)
}

/// Publishes probes from `prober` (on the publisher's server) until
/// `subscriber` gets one, then removes its probe subscription and reads
/// until the server confirmed that, dropping late probes.
pub async fn await_interest(
    prober: &mut Conn,
    subscriber: &mut Conn,
    stall: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut arrived = false;
    while !arrived {
        if started.elapsed() > stall {
            return Err(format!(
                "the publisher's server never learned a subscriber's interest within {stall:?}"
            ));
        }
        write_pub(&mut prober.out, PROBE_SUBJECT, None, b"probe");
        prober.ping_pong().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        while !arrived {
            arrived = drain_probes(subscriber)?.probe;
            if arrived
                || tokio::time::timeout_at(deadline, subscriber.read_more())
                    .await
                    .map_or(true, |read| read.is_err())
            {
                break;
            }
        }
    }
    subscriber
        .out
        .put_slice(format!("UNSUB {PROBE_SID}\r\n").as_bytes());
    subscriber.queue_ping();
    subscriber.flush().await?;
    loop {
        if drain_probes(subscriber)?.pong {
            subscriber.pings_outstanding = subscriber.pings_outstanding.saturating_sub(1);
            return Ok(());
        }
        subscriber.read_more().await?;
    }
}

/// What the frames read so far held (consumed with them); server PINGs are
/// answered (queued), anything but probes, PINGs and PONGs is an error.
struct Drained {
    probe: bool,
    pong: bool,
}

fn drain_probes(subscriber: &mut Conn) -> Result<Drained, String> {
    let mut drained = Drained {
        probe: false,
        pong: false,
    };
    let mut problem = None;
    let mut owed_pongs = 0;
    drain_frames(&mut subscriber.inbuf, |frame| {
        match frame {
            Frame::Msg { sid, .. } if sid == PROBE_SID => drained.probe = true,
            Frame::Msg { .. } => problem = Some("a message before the run began".to_string()),
            Frame::Err(text) => problem = Some(format!("-ERR {}", String::from_utf8_lossy(text))),
            Frame::Ping => owed_pongs += 1,
            Frame::Pong => drained.pong = true,
            Frame::Ignored => {}
        }
        Ok(())
    })?;
    for _ in 0..owed_pongs {
        subscriber.out.put_slice(b"PONG\r\n");
    }
    match problem {
        Some(problem) => Err(problem),
        None => Ok(drained),
    }
}
