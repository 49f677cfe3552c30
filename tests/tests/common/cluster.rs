//! Cluster helpers shared by `cluster.rs` and `cluster_system.rs`:
//! servers started with a cluster listener (rnats or nats-server v2.15.1),
//! the seed-and-gossip topology, and probes that wait for interest to
//! cross the routes instead of sleeping.

use std::time::Duration;

use futures::StreamExt;
use rnats_tests::ServerProcess;

use super::within;

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Rnats,
    Reference,
}

/// Starts one server of cluster `c1`, routing to `seed` when given.
pub fn start(kind: Kind, seed: Option<u16>) -> Option<ServerProcess> {
    start_with(kind, seed, None)
}

/// A config file holding `text`, in this test process's directory.
pub fn conf_file(text: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("rnats-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{n}.conf"));
    std::fs::write(&path, text).unwrap();
    path
}

/// [`start`] with a config file (the flags still give the cluster's
/// listener, name and route).
pub fn start_with(
    kind: Kind,
    seed: Option<u16>,
    conf: Option<&std::path::Path>,
) -> Option<ServerProcess> {
    let route = seed.map(|port| format!("nats://127.0.0.1:{port}"));
    let conf = conf.map(|path| path.to_str().unwrap().to_string());
    let mut args = vec![
        "--cluster",
        "nats://127.0.0.1:-1",
        "--cluster_name",
        "c1",
        "-m",
        "-1",
    ];
    if let Some(route) = &route {
        args.extend(["--routes", route.as_str()]);
    }
    if let Some(conf) = &conf {
        args.extend(["-c", conf.as_str()]);
    }
    match kind {
        Kind::Rnats => Some(ServerProcess::start(&args)),
        Kind::Reference => ServerProcess::start_reference(&args),
    }
}

/// Three servers: `kinds[0]` is the seed the others route to.
pub fn start_cluster(kinds: [Kind; 3]) -> Option<Vec<ServerProcess>> {
    let seed = start(kinds[0], None)?;
    let port = seed.route_port();
    let second = start(kinds[1], Some(port))?;
    let third = start(kinds[2], Some(port))?;
    Some(vec![seed, second, third])
}

/// Answers requests on `probe` (subscribed after the client's other
/// subscriptions, so an answer means they reached the asking server).
pub async fn responder(client: &async_nats::Client, probe: String) {
    let mut sub = client.subscribe(probe).await.unwrap();
    let answering = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = answering.publish(reply, "pong".into()).await;
            }
        }
    });
    client.flush().await.unwrap();
}

/// Waits until `probe` is answered through `client`'s server.
pub async fn await_probe(client: &async_nats::Client, probe: &str) {
    within(&format!("interest in {probe}"), async {
        loop {
            let asked = tokio::time::timeout(
                Duration::from_millis(250),
                client.request(probe.to_string(), "ping".into()),
            )
            .await;
            if let Ok(Ok(_)) = asked {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// [`start_cluster`] with every server reading the config file `conf`.
pub fn start_cluster_with(kinds: [Kind; 3], conf: &std::path::Path) -> Option<Vec<ServerProcess>> {
    let seed = start_with(kinds[0], None, Some(conf))?;
    let port = seed.route_port();
    let second = start_with(kinds[1], Some(port), Some(conf))?;
    let third = start_with(kinds[2], Some(port), Some(conf))?;
    Some(vec![seed, second, third])
}
