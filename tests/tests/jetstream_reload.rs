//! JetStream and configuration reloads (SIGHUP), against rnats-server and,
//! when it can be had, nats-server: JetStream turned off and on again by a
//! reload, storage limits raised while it runs, and the changes the
//! reference refuses, with its texts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rnats_tests::ServerProcess;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rnats-js-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Rewrites the file, signals a reload and waits until the server logged
/// the outcome (applied or refused); returns the lines logged meanwhile.
async fn reload(server: &ServerProcess, conf: &Path, text: &str) -> Vec<String> {
    let before = server.log_lines().len();
    std::fs::write(conf, text).unwrap();
    server.signal("HUP");
    let start = Instant::now();
    loop {
        let lines = server.log_lines();
        let new = lines[before.min(lines.len())..].to_vec();
        if new.iter().any(|l| {
            l.contains("Reloaded server configuration (sha256:")
                || l.contains("Failed to reload server configuration")
        }) {
            return new;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no reload outcome logged: {new:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a publish on a stream subject or an API request got back.
async fn outcome(client: &async_nats::Client, subject: &str) -> String {
    let request = async_nats::Request::new()
        .payload("x".into())
        .timeout(Some(Duration::from_millis(500)));
    match client.send_request(subject.to_string(), request).await {
        Ok(reply) => String::from_utf8_lossy(&reply.payload).to_string(),
        Err(error) => match error.kind() {
            async_nats::RequestErrorKind::NoResponders => String::from("no responders"),
            async_nats::RequestErrorKind::TimedOut => String::from("timed out"),
            other => format!("{other:?}"),
        },
    }
}

fn js_block(dir: &Path, limits: &str) -> String {
    format!(
        "jetstream {{ store_dir: \"{}\"{limits} }}\n",
        dir.join("store").display()
    )
}

/// JetStream turned off by a reload stops serving (stream subjects have no
/// responders, API requests go unanswered) and, turned on again, recovers
/// its streams from the store directory.
async fn off_and_on(server: ServerProcess, conf: &Path, dir: &Path) -> Vec<String> {
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "S".into(),
        subjects: vec!["s.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("s.1", "one".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let mut seen = Vec::new();
    let off = reload(&server, conf, "jetstream: disabled\n").await;
    for line in [
        "Reloaded: JetStream",
        "Initiating JetStream Shutdown...",
        "JetStream Shutdown",
    ] {
        assert!(off.iter().any(|l| l.ends_with(line)), "{line}: {off:?}");
    }
    seen.push(format!(
        "publish while off: {}",
        outcome(&client, "s.2").await
    ));
    seen.push(format!(
        "API while off: {}",
        outcome(&client, "$JS.API.INFO").await
    ));

    let on = reload(&server, conf, &js_block(dir, "")).await;
    for line in [
        "Reloaded: JetStream",
        "Restarting JetStream",
        "Starting JetStream",
    ] {
        assert!(on.iter().any(|l| l.ends_with(line)), "{line}: {on:?}");
    }
    let mut stream = js.get_stream("S").await.unwrap();
    seen.push(format!(
        "messages after on: {}",
        stream.info().await.unwrap().state.messages
    ));
    let ack = js
        .publish("s.3", "three".into())
        .await
        .unwrap()
        .await
        .unwrap();
    seen.push(format!("next sequence: {}", ack.sequence));
    seen
}

/// Runs `scenario` on rnats-server started with the file `start` (written
/// in a fresh directory), then on nats-server if it can be had, and checks
/// that both saw the same; returns what rnats-server saw.
async fn on_both<F, Fut>(name: &str, start: impl Fn(&Path) -> String, scenario: F) -> Vec<String>
where
    F: Fn(ServerProcess, PathBuf, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let mut outcomes = Vec::new();
    for reference in [false, true] {
        let dir = temp_dir(&format!("{name}-{reference}"));
        let conf = dir.join("js.conf");
        std::fs::write(&conf, start(&dir)).unwrap();
        let args = ["-c", conf.to_str().unwrap()];
        let server = if reference {
            match ServerProcess::start_reference(&args) {
                Some(server) => server,
                None => break,
            }
        } else {
            ServerProcess::start(&args)
        };
        outcomes.push(scenario(server, conf, dir).await);
    }
    if let [ours, theirs] = &outcomes[..] {
        assert_eq!(ours, theirs, "rnats-server, then nats-server");
    }
    outcomes.swap_remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_turns_jetstream_off_and_on() {
    let ours = on_both(
        "off-on",
        |dir| js_block(dir, ""),
        |server, conf, dir| async move { off_and_on(server, &conf, &dir).await },
    )
    .await;
    assert_eq!(
        ours,
        [
            "publish while off: no responders",
            "API while off: timed out",
            "messages after on: 1",
            "next sequence: 2",
        ]
    );
}

/// A memory stream larger than the server's `max_memory_store` is refused
/// until a reload raises it; lowering it, and other changes the reference
/// cannot make while running, are refused with its texts.
async fn limits(server: ServerProcess, conf: &Path, dir: &Path) -> Vec<String> {
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let big = || async_nats::jetstream::stream::Config {
        name: "BIG".into(),
        subjects: vec!["big".into()],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        max_bytes: 3 << 20,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let created =
        |result: Result<_, async_nats::jetstream::context::CreateStreamError>| match result {
            Ok(_) => String::from("created"),
            Err(error) => error.to_string(),
        };
    seen.push(format!(
        "before: {}",
        created(js.create_stream(big()).await)
    ));
    for (text, what) in [
        (
            js_block(dir, ", max_mem: 2MB, max_file: 8MB, domain: x"),
            "domain",
        ),
        (js_block(dir, ", max_mem: 1MB, max_file: 8MB"), "lower"),
        (js_block(dir, ", max_file: 8MB"), "unset"),
        (
            js_block(dir, ", max_mem: 2MB, max_file: 8MB, sync_interval: always"),
            "sync",
        ),
        (js_block(dir, ", max_mem: 4MB, max_file: 9MB"), "raise"),
    ] {
        let lines = reload(&server, conf, &text).await;
        let outcome = lines
            .iter()
            .filter_map(|l| {
                let at = l
                    .find("Failed to reload server configuration: ")
                    .or_else(|| l.find("Reloaded: JetStream"))?;
                Some(l[at..].to_string())
            })
            .collect::<Vec<_>>()
            .join(" | ");
        seen.push(format!("{what}: {outcome}"));
    }
    seen.push(format!("after: {}", created(js.create_stream(big()).await)));
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_raises_jetstream_limits_and_refuses_the_rest() {
    let ours = on_both(
        "limits",
        |dir| js_block(dir, ", max_mem: 2MB, max_file: 8MB"),
        |server, conf, dir| async move { limits(server, &conf, &dir).await },
    )
    .await;
    assert!(
        ours[0].starts_with("before: ") && ours[0] != "before: created",
        "{ours:?}"
    );
    assert_eq!(
        ours[1..],
        [
            "domain: Failed to reload server configuration: config reload not supported for JetStreamDomain: old=, new=x",
            "lower: Failed to reload server configuration: config reload not supported for decreasing jetstream max memory and store",
            "unset: Failed to reload server configuration: config reload not supported for jetstream max memory and max store",
            "sync: Failed to reload server configuration: config reload not supported for SyncAlways: old=false, new=true",
            "raise: Reloaded: JetStream max_mem_store = 4.00 MB | Reloaded: JetStream max_file_store = 9.00 MB",
            "after: created",
        ]
    );
}
