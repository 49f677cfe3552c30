//! Clusters over routes, with real clients: three rnats servers, and mixed
//! clusters of rnats and nats-server v2.15.1 (2+1 and 1+2).
//!
//! Topology: the first server is the seed; the other two route to it only,
//! so the link between them comes from gossip. Every wait for interest is
//! a probe (a request to a responder subscribed after the subscriptions
//! under test, answered once the interest reached the requester's server),
//! never a blind sleep. Mixed tests skip with a NOTICE without the
//! reference, and fail in CI (`RNATS_REQUIRE_REFERENCE=1`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::{await_probe, conf_file, responder, start_cluster, start_with, Kind};
use common::{connect, within};
use futures::StreamExt;
use rnats_tests::ServerProcess;

/// Every server's `/routez` lists the other two by id (the mesh formed,
/// partly by gossip), `/varz` counts them, and each pair of servers agrees
/// on the connections between them (pooled and pinned: both kinds of
/// server reach the same pool): both kinds of server agree.
fn check_routez(servers: &[ServerProcess]) {
    let ids: Vec<String> = servers
        .iter()
        .map(|s| {
            rnats_tests::http_json(s.http_port(), "/varz")["server_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let deadline = std::time::Instant::now() + common::WAIT_TIMEOUT;
    loop {
        // (server, remote) -> connections, with the pinned accounts seen.
        let mut links: BTreeMap<(usize, String), (usize, BTreeSet<String>)> = BTreeMap::new();
        let mut complete = true;
        for (index, server) in servers.iter().enumerate() {
            let routez = rnats_tests::http_json(server.http_port(), "/routez");
            let routes = routez["routes"].as_array().unwrap();
            assert_eq!(routez["num_routes"], routes.len(), "{routez}");
            for route in routes {
                let link = links
                    .entry((index, route["remote_id"].as_str().unwrap().to_string()))
                    .or_default();
                link.0 += 1;
                if let Some(account) = route["account"].as_str() {
                    link.1.insert(account.to_string());
                }
            }
            let remotes: BTreeSet<&str> = links
                .keys()
                .filter(|(server, _)| *server == index)
                .map(|(_, id)| id.as_str())
                .collect();
            let expected: BTreeSet<&str> = ids
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, id)| id.as_str())
                .collect();
            complete &= remotes == expected;
        }
        let agree = complete
            && (0..servers.len()).all(|a| {
                (0..servers.len())
                    .filter(|b| *b != a)
                    .all(|b| links.get(&(a, ids[b].clone())) == links.get(&(b, ids[a].clone())))
            });
        // Pooled connections come up after the first: the servers agree
        // once every one counts two servers (`remotes`: pooled ones only)
        // and all its connections.
        let settled = agree
            && servers.iter().enumerate().all(|(index, server)| {
                let varz = rnats_tests::http_json(server.http_port(), "/varz");
                let routes: usize = links
                    .iter()
                    .filter(|((server, _), _)| *server == index)
                    .map(|(_, (n, _))| n)
                    .sum();
                assert_eq!(varz["cluster"]["name"], "c1", "{varz}");
                varz["remotes"] == 2 && varz["routes"] == routes
            });
        if settled {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the servers do not agree on their routes: {links:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Delivery, a queue group spread over the cluster, and request/reply, on
/// three servers of any kinds.
async fn check_cluster(servers: &[ServerProcess]) {
    check_routez(servers);
    check_account(servers, None).await;
}

/// [`check_cluster`]'s traffic with clients of one account (`user`
/// logs in with its name as password).
async fn check_account(servers: &[ServerProcess], user: Option<&str>) {
    let mut clients = Vec::new();
    for server in servers {
        clients.push(match user {
            Some(user) => {
                let options =
                    async_nats::ConnectOptions::with_user_and_password(user.into(), user.into());
                common::connect_with(&server.url(), options).await
            }
            None => connect(&server.url()).await,
        });
    }

    // Delivery across servers: a subscriber on the third server gets every
    // message published on the first and the second, once.
    let mut sub = clients[2].subscribe("cl.msg").await.unwrap();
    responder(&clients[2], "probe.msg".into()).await;
    await_probe(&clients[0], "probe.msg").await;
    await_probe(&clients[1], "probe.msg").await;
    for i in 0..50 {
        clients[0]
            .publish("cl.msg", format!("a{i}").into())
            .await
            .unwrap();
        clients[1]
            .publish("cl.msg", format!("b{i}").into())
            .await
            .unwrap();
    }
    clients[0].flush().await.unwrap();
    clients[1].flush().await.unwrap();
    let mut seen = BTreeSet::new();
    within("100 messages across servers", async {
        while seen.len() < 100 {
            let msg = sub.next().await.expect("subscription open");
            let text = String::from_utf8(msg.payload.to_vec()).unwrap();
            assert!(seen.insert(text.clone()), "{text} delivered twice");
        }
    })
    .await;

    // A queue group with members on every server: each message goes to
    // exactly one member cluster-wide, and every server's members get some.
    let mut members = Vec::new();
    for (server, client) in clients.iter().enumerate() {
        for _ in 0..2 {
            members.push((
                server,
                client
                    .queue_subscribe("cl.work", "workers".into())
                    .await
                    .unwrap(),
            ));
        }
        responder(client, format!("probe.work.{server}")).await;
    }
    for server in 0..3 {
        await_probe(&clients[0], &format!("probe.work.{server}")).await;
    }
    const JOBS: usize = 300;
    for i in 0..JOBS {
        clients[0]
            .publish("cl.work", format!("{i}").into())
            .await
            .unwrap();
    }
    clients[0].flush().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (server, mut member) in members {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = member.next().await {
                let _ = tx.send((server, String::from_utf8(msg.payload.to_vec()).unwrap()));
            }
        });
    }
    let mut jobs: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_server = [0usize; 3];
    let all = tokio::time::timeout(common::WAIT_TIMEOUT, async {
        while jobs.len() < JOBS {
            let (server, job) = rx.recv().await.unwrap();
            *jobs.entry(job).or_default() += 1;
            per_server[server] += 1;
        }
    })
    .await;
    if all.is_err() {
        let missing: Vec<usize> = (0..JOBS)
            .filter(|i| !jobs.contains_key(&i.to_string()))
            .collect();
        let subsz: Vec<_> = servers
            .iter()
            .map(|s| rnats_tests::http_json(s.http_port(), "/subsz?subs=1"))
            .collect();
        let routez: Vec<_> = servers
            .iter()
            .map(|s| rnats_tests::http_json(s.http_port(), "/routez?subs=1"))
            .collect();
        let logs: Vec<Vec<String>> = servers.iter().map(|s| s.log_lines()).collect();
        panic!(
            "jobs missing after {:?}: {missing:?}; delivered per server {per_server:?}\nsubsz {subsz:#?}\nroutez {routez:#?}\nlogs {logs:#?}",
            common::WAIT_TIMEOUT
        );
    }
    // Every route has carried its share by now: a probe through each one
    // makes any late duplicate arrive before it is looked for.
    for server in 0..3 {
        await_probe(&clients[0], &format!("probe.work.{server}")).await;
    }
    while let Ok((server, job)) = rx.try_recv() {
        *jobs.entry(job).or_default() += 1;
        per_server[server] += 1;
    }
    assert!(
        jobs.values().all(|n| *n == 1),
        "a job was delivered twice: {jobs:?}"
    );
    assert_eq!(per_server.iter().sum::<usize>(), JOBS);
    assert!(
        per_server.iter().all(|n| *n > 0),
        "not spread: {per_server:?}"
    );

    // Request/reply across servers: a service on the second server, asked
    // from the third.
    let mut service = clients[1].subscribe("cl.svc").await.unwrap();
    let answering = clients[1].clone();
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            let body = format!("re:{}", String::from_utf8_lossy(&msg.payload));
            let _ = answering.publish(msg.reply.unwrap(), body.into()).await;
        }
    });
    clients[1].flush().await.unwrap();
    responder(&clients[1], "probe.svc".into()).await;
    await_probe(&clients[2], "probe.svc").await;
    let answer = within(
        "a reply across servers",
        clients[2].request("cl.svc", "q".into()),
    )
    .await
    .unwrap();
    assert_eq!(&answer.payload[..], b"re:q");

    // Closed for good: a client left open reconnects when its cluster
    // stops, and a later cluster of the same test may be listening on a
    // port it knows (ephemeral ports are reused): its queue members would
    // then take that cluster's jobs.
    for client in &clients {
        let _ = client.drain().await;
    }
}

#[tokio::test]
async fn three_rnats_servers() {
    let servers = start_cluster([Kind::Rnats; 3]).expect("rnats starts");
    check_cluster(&servers).await;
    // The reference's route lines.
    let log = servers[0].log_lines().join("\n");
    assert!(log.contains("Cluster name is c1"), "{log}");
    assert!(log.contains("Route connection created"), "{log}");
}

#[tokio::test]
async fn mixed_two_rnats_one_reference() {
    let Some(servers) = start_cluster([Kind::Rnats, Kind::Reference, Kind::Rnats]) else {
        return;
    };
    check_cluster(&servers).await;
}

#[tokio::test]
async fn mixed_one_rnats_two_reference() {
    let Some(servers) = start_cluster([Kind::Reference, Kind::Rnats, Kind::Reference]) else {
        return;
    };
    check_cluster(&servers).await;
}

/// A route closed is logged as the reference logs it, and its interest
/// leaves with it: once the subscriber's server is gone, a request gets no
/// responders instead of being forwarded.
#[tokio::test]
async fn route_close_is_logged_and_interest_leaves() {
    let mut servers = start_cluster([Kind::Rnats; 3]).expect("rnats starts");
    let a = connect(&servers[0].url()).await;
    // The responder must not fail over to another server (connect_urls
    // name them): its interest would come back from there. (async-nats
    // reads `max_reconnects(0)` as "no limit".)
    let b = common::connect_with(
        &servers[1].url(),
        async_nats::ConnectOptions::new().ignore_discovered_servers(),
    )
    .await;
    responder(&b, "probe.gone".into()).await;
    await_probe(&a, "probe.gone").await;
    servers[1].kill();
    within("interest gone with the route", async {
        loop {
            // A request that went out before the server saw the route go
            // is lost with the route: ask again rather than wait for it.
            let asked = tokio::time::timeout(
                Duration::from_millis(500),
                a.request("probe.gone", "ping".into()),
            )
            .await;
            if let Ok(Err(error)) = asked {
                if error.kind() == async_nats::RequestErrorKind::NoResponders {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A step's log lines are written after its lock is released, so the
    // interest can be gone a moment before the line is in the log.
    within("the route's close logged", async {
        while !servers[0]
            .log_lines()
            .iter()
            .any(|line| line.contains("Router connection closed: Client Closed"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// `cluster { authorization }` (here from the listen URL's credentials, as
/// nats-server takes them): a server dialing with the credentials joins,
/// one with wrong ones is refused. The seed is rnats, then nats-server
/// (rnats dialing it with the credentials).
#[tokio::test]
async fn cluster_authorization() {
    for seed_kind in [Kind::Rnats, Kind::Reference] {
        let args = [
            "--cluster",
            "nats://ru:rp@127.0.0.1:-1",
            "--cluster_name",
            "c1",
        ];
        let seed = match seed_kind {
            Kind::Rnats => ServerProcess::start(&args),
            Kind::Reference => match ServerProcess::start_reference(&args) {
                Some(seed) => seed,
                None => return,
            },
        };
        let port = seed.route_port();
        let dial = |credentials: &str| {
            let route = format!("nats://{credentials}@127.0.0.1:{port}");
            ServerProcess::start(&[
                "--cluster",
                "nats://127.0.0.1:-1",
                "--cluster_name",
                "c1",
                "--routes",
                &route,
            ])
        };
        let good = dial("ru:rp");
        let a = connect(&seed.url()).await;
        let b = connect(&good.url()).await;
        responder(&a, "probe.auth".into()).await;
        await_probe(&b, "probe.auth").await;
        if let Kind::Rnats = seed_kind {
            let _bad = dial("ru:wrong");
            within("the refusal in the seed's log", async {
                while !seed
                    .log_lines()
                    .iter()
                    .any(|line| line.contains("Authorization Violation"))
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
        }
    }
}

/// Settings not built yet refuse start-up by name.
#[test]
fn unbuilt_cluster_settings_are_refused() {
    let dir = std::env::temp_dir().join(format!("rnats-cluster-refusal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, key) in [
        (
            "cluster { port: -1, compression: s2_auto }",
            "cluster.compression",
        ),
        (
            "cluster { port: -1, tls { cert_file: a, key_file: b, pinned_certs: [x] } }",
            "cluster.tls.pinned_certs",
        ),
    ] {
        let path = dir.join("refused.conf");
        std::fs::write(&path, text).unwrap();
        let mut child = std::process::Command::new(rnats_tests::server_under_test())
            .args(["-a", "127.0.0.1", "-p", "-1", "-c", path.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A server that starts instead of refusing is killed, not waited for.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.is_some_and(|s| !s.success()), "{text} started");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            stderr.contains(&format!("configuration key \"{key}\" is not supported yet")),
            "{text}: {stderr}"
        );
    }
}

/// A port nobody listens on now (the kernel's pick, released at once).
/// A port free now, below Linux's ephemeral range (32768 and up): a port
/// the kernel handed out for `:0` could be handed to another test's
/// server (started with `-1`) before this one binds it again.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 1_000) as u16 * 10;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 10_000;
        let port = if port >= 32_768 { port - 12_768 } else { port };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The usual production layout, and the one a rolling migration keeps:
/// every server lists every route, its own included. Duplicate routes are
/// resolved to one per pair, the self-route dropped, and the cluster works.
#[tokio::test]
async fn every_server_lists_every_route() {
    for kinds in [
        [Kind::Rnats; 3],
        [Kind::Rnats, Kind::Reference, Kind::Rnats],
    ] {
        let ports = [free_port(), free_port(), free_port()];
        let routes = ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::new();
        for (kind, port) in kinds.into_iter().zip(ports) {
            let listen = format!("nats://127.0.0.1:{port}");
            let args = [
                "--cluster",
                listen.as_str(),
                "--cluster_name",
                "c1",
                "--routes",
                routes.as_str(),
                "-m",
                "-1",
            ];
            let server = match kind {
                Kind::Rnats => Some(ServerProcess::start(&args)),
                Kind::Reference => ServerProcess::start_reference(&args),
            };
            let Some(server) = server else {
                return;
            };
            servers.push(server);
        }
        check_cluster(&servers).await;
    }
}

/// Accounts A (pinned: a route of its own) and B (pooled), on every server.
const ACCOUNTS: &str =
    "accounts { A { users: [{user: a, password: a}] }, B { users: [{user: b, password: b}] } }\n";

/// Mixed clusters with pinned accounts, and with pools of different sizes
/// (the larger wins on both ends) or none on one side (one connection for
/// every account): each account's traffic crosses the cluster, queue
/// groups deliver once, and both ends agree on the connections.
#[tokio::test]
async fn mixed_pools_and_pinned_accounts() {
    let pinned = format!("{ACCOUNTS}cluster {{ accounts: [A] }}\n");
    let big_pool = format!("{ACCOUNTS}cluster {{ pool_size: 5 }}\n");
    let unpooled = format!("{ACCOUNTS}cluster {{ pool_size: -1 }}\n");
    let plain = ACCOUNTS.to_string();
    for (kinds, confs) in [
        (
            [Kind::Reference, Kind::Rnats, Kind::Reference],
            [&pinned, &pinned, &pinned],
        ),
        (
            [Kind::Rnats, Kind::Reference, Kind::Rnats],
            [&pinned, &pinned, &pinned],
        ),
        (
            [Kind::Rnats, Kind::Reference, Kind::Rnats],
            [&plain, &big_pool, &plain],
        ),
        (
            [Kind::Reference, Kind::Rnats, Kind::Reference],
            [&plain, &big_pool, &plain],
        ),
        (
            [Kind::Rnats, Kind::Reference, Kind::Rnats],
            [&plain, &unpooled, &plain],
        ),
        (
            [Kind::Reference, Kind::Rnats, Kind::Rnats],
            [&unpooled, &plain, &unpooled],
        ),
    ] {
        eprintln!("cluster {kinds:?}");
        let files: Vec<_> = confs.iter().map(|text| conf_file(text)).collect();
        let Some(seed) = start_with(kinds[0], None, Some(&files[0])) else {
            return;
        };
        let port = seed.route_port();
        let mut servers = vec![seed];
        for index in 1..3 {
            servers.push(start_with(kinds[index], Some(port), Some(&files[index])).unwrap());
        }
        check_routez(&servers);
        let routez = rnats_tests::http_json(servers[1].http_port(), "/routez");
        if confs[0] == &pinned {
            let accounts: BTreeSet<&str> = routez["routes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r["account"].as_str())
                .collect();
            assert_eq!(accounts, BTreeSet::from(["$SYS", "A"]), "{routez}");
        }
        check_account(&servers, Some("a")).await;
        check_account(&servers, Some("b")).await;
    }
}

/// rnats has no S2: it announces `compression: off`, and a nats-server
/// peer in every mode it can be configured with (its default `accept`
/// included) negotiates the route down to no compression, whichever end
/// dials. rnats's own `accept` is served the same way.
#[tokio::test]
async fn mixed_with_every_compression_mode() {
    let modes = [
        None,
        Some("off"),
        Some("accept"),
        Some("s2_fast"),
        Some("s2_better"),
        Some("s2_best"),
        Some("s2_auto"),
    ];
    for (n, mode) in modes.into_iter().enumerate() {
        let reference = conf_file(&match mode {
            Some(mode) => format!("cluster {{ compression: {mode} }}\n"),
            None => String::new(),
        });
        let ours = conf_file(if n % 2 == 0 {
            ""
        } else {
            "cluster { compression: accept }\n"
        });
        // rnats dialing nats-server, then nats-server dialing rnats.
        for kinds in [
            [Kind::Reference, Kind::Rnats, Kind::Reference],
            [Kind::Rnats, Kind::Reference, Kind::Reference],
        ] {
            eprintln!("compression {mode:?}, cluster {kinds:?}");
            let file = |kind: Kind| match kind {
                Kind::Rnats => ours.clone(),
                Kind::Reference => reference.clone(),
            };
            let Some(seed) = start_with(kinds[0], None, Some(&file(kinds[0]))) else {
                return;
            };
            let port = seed.route_port();
            let mut servers = vec![seed];
            for kind in &kinds[1..] {
                servers.push(start_with(*kind, Some(port), Some(&file(*kind))).unwrap());
            }
            check_cluster(&servers).await;
            // Every route with an rnats end is uncompressed, at both ends
            // (two nats-servers compress between themselves).
            let rnats_ids: Vec<String> = kinds
                .iter()
                .zip(&servers)
                .filter(|(kind, _)| matches!(kind, Kind::Rnats))
                .map(|(_, s)| {
                    rnats_tests::http_json(s.http_port(), "/varz")["server_id"].to_string()
                })
                .collect();
            for (kind, server) in kinds.iter().zip(&servers) {
                let routez = rnats_tests::http_json(server.http_port(), "/routez");
                for route in routez["routes"].as_array().unwrap() {
                    if matches!(kind, Kind::Rnats)
                        || rnats_ids.contains(&route["remote_id"].to_string())
                    {
                        assert_eq!(route["compression"], "off", "{mode:?}: {routez}");
                    }
                }
            }
        }
    }
}

/// INFO `connect_urls`: a client told of the cluster's servers when it
/// connects (and again as servers join) fails over to one of them when
/// its server dies, and its traffic flows again.
#[tokio::test]
async fn clients_fail_over_by_connect_urls() {
    let mut servers = start_cluster([Kind::Rnats; 3]).expect("rnats starts");
    check_routez(&servers);
    // Knows only the third server's address.
    let client = connect(&servers[2].url()).await;
    let urls = &client.server_info().connect_urls;
    let expected: BTreeSet<String> = servers.iter().map(|s| s.addr()).collect();
    assert_eq!(
        urls.iter().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{urls:?}"
    );
    let other = connect(&servers[0].url()).await;
    let mut sub = other.subscribe("fo.x").await.unwrap();
    responder(&other, "probe.fo".into()).await;
    await_probe(&client, "probe.fo").await;
    servers[2].kill();
    within("traffic after failing over", async {
        loop {
            let _ = client.publish("fo.x", "after".into()).await;
            let _ = tokio::time::timeout(Duration::from_millis(200), client.flush()).await;
            if let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                assert_eq!(&msg.payload[..], b"after");
                return;
            }
        }
    })
    .await;
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
}

/// `cluster { tls }`: routes are TLS from their first byte, verified both
/// ways against the cluster's CA, between rnats servers and in mixed
/// clusters with nats-server; a server whose certificate another CA signed
/// is not let in.
#[tokio::test]
async fn cluster_tls() {
    let dir = std::env::temp_dir().join(format!("rnats-cluster-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = common::generated_server_certificate(&dir);
    let tls = conf_file(&format!(
        "cluster {{ tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true, timeout: 2 }} }}\n",
        pki.cert, pki.key, pki.ca
    ));
    for kinds in [
        [Kind::Rnats; 3],
        [Kind::Rnats, Kind::Reference, Kind::Rnats],
        [Kind::Reference, Kind::Rnats, Kind::Reference],
    ] {
        eprintln!("tls cluster {kinds:?}");
        let Some(seed) = start_with(kinds[0], None, Some(&tls)) else {
            return;
        };
        let port = seed.route_port();
        let mut servers = vec![seed];
        for kind in &kinds[1..] {
            servers.push(start_with(*kind, Some(port), Some(&tls)).unwrap());
        }
        check_cluster(&servers).await;
        for server in &servers {
            let varz = rnats_tests::http_json(server.http_port(), "/varz");
            assert_eq!(varz["cluster"]["tls_required"], true, "{varz}");
            assert_eq!(varz["cluster"]["tls_verify"], true, "{varz}");
        }
    }
    // Another CA's certificate: the handshake fails, no route forms.
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = common::generated_server_certificate(&other_dir);
    let stranger = conf_file(&format!(
        "cluster {{ tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }} }}\n",
        other.cert, other.key, other.ca
    ));
    let seed = start_with(Kind::Rnats, None, Some(&tls)).unwrap();
    let outsider = start_with(Kind::Rnats, Some(seed.route_port()), Some(&stranger)).unwrap();
    within("the refused handshake in the log", async {
        while !outsider
            .log_lines()
            .iter()
            .any(|line| line.contains("TLS route handshake error"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let routez = rnats_tests::http_json(seed.http_port(), "/routez");
    assert_eq!(routez["num_routes"], 0, "{routez}");
}

/// Route permissions: `import` limits the interest this server announces
/// (so what peers send it), `export` the interest it accepts from peers
/// (so what it sends them); an export deny also filters messages a
/// broader accepted wildcard would carry. Both ends' `/routez` show the
/// permissions, the peer's taken from its INFO.
#[tokio::test]
async fn cluster_permissions() {
    let guarded = conf_file(
        "cluster { permissions { import: { allow: [\"imp.>\", \"probe.>\", \"_INBOX.>\"] }, \
         export: { allow: [\"exp.>\", \"probe.>\", \"_INBOX.>\"], deny: [\"exp.secret\"] } } }\n",
    );
    for kinds in [
        [Kind::Rnats, Kind::Rnats],
        [Kind::Rnats, Kind::Reference],
        [Kind::Reference, Kind::Rnats],
    ] {
        eprintln!("pair {kinds:?}");
        let Some(guarded_server) = start_with(kinds[0], None, Some(&guarded)) else {
            return;
        };
        let Some(plain_server) = start_with(kinds[1], Some(guarded_server.route_port()), None)
        else {
            return;
        };
        let guarded_client = connect(&guarded_server.url()).await;
        let plain_client = connect(&plain_server.url()).await;

        // On the guarded server: interest it may import, and interest it
        // may not (never announced, so never sent to it).
        let mut imported = guarded_client.subscribe("imp.a").await.unwrap();
        let mut not_imported = guarded_client.subscribe("other.a").await.unwrap();
        responder(&guarded_client, "probe.g".into()).await;
        // On the plain server: interest the guarded one exports to, one it
        // ignores, and a wildcard it accepts but filters by its deny.
        let mut exported = plain_client.subscribe("exp.a").await.unwrap();
        let mut not_exported = plain_client.subscribe("nope.a").await.unwrap();
        let mut wildcard = plain_client.subscribe("exp.*").await.unwrap();
        responder(&plain_client, "probe.p".into()).await;
        await_probe(&plain_client, "probe.g").await;
        await_probe(&guarded_client, "probe.p").await;

        // What is refused goes first: once what is allowed arrived (the
        // same publisher, the same route, the same subscriber connection),
        // anything refused that crossed would have arrived before it.
        for subject in ["other.a", "imp.a"] {
            plain_client.publish(subject, subject.into()).await.unwrap();
        }
        plain_client.flush().await.unwrap();
        for subject in ["nope.a", "exp.secret", "exp.a"] {
            guarded_client
                .publish(subject, subject.into())
                .await
                .unwrap();
        }
        guarded_client.flush().await.unwrap();
        let got = within("imported message", imported.next()).await.unwrap();
        assert_eq!(&got.payload[..], b"imp.a");
        let got = within("exported message", exported.next()).await.unwrap();
        assert_eq!(&got.payload[..], b"exp.a");
        let got = within("exported wildcard", wildcard.next()).await.unwrap();
        assert_eq!(
            &got.payload[..],
            b"exp.a",
            "exp.secret crossed despite the export deny"
        );
        await_probe(&guarded_client, "probe.p").await;
        await_probe(&plain_client, "probe.g").await;
        assert!(
            common::drain_ready(&mut not_imported).is_empty(),
            "interest outside the import list was announced"
        );
        assert!(
            common::drain_ready(&mut not_exported).is_empty(),
            "interest outside the export list was accepted"
        );
        assert!(common::drain_ready(&mut wildcard).is_empty());

        // Both `/routez`: the guarded server shows its own permissions; the
        // plain one shows them on its route to the guarded server.
        let own = rnats_tests::http_json(guarded_server.http_port(), "/routez");
        assert_eq!(own["import"]["allow"][0], "imp.>", "{own}");
        assert_eq!(own["export"]["deny"][0], "exp.secret", "{own}");
        let peer = rnats_tests::http_json(plain_server.http_port(), "/routez");
        assert!(peer.get("import").is_none(), "{peer}");
        let routes = peer["routes"].as_array().unwrap();
        assert!(!routes.is_empty());
        for route in routes {
            assert_eq!(route["import"]["allow"][1], "probe.>", "{peer}");
            assert_eq!(route["export"]["allow"][0], "exp.>", "{peer}");
            assert_eq!(route["export"]["deny"][0], "exp.secret", "{peer}");
        }
    }
}

/// Websocket clients are told the cluster's websocket URLs (`connect_urls`
/// from the servers' `ws_connect_urls`), TCP clients the client URLs, in
/// pairs of rnats servers and mixed with nats-server.
#[tokio::test]
async fn websocket_clients_are_told_websocket_urls() {
    let conf = conf_file("websocket { listen: \"127.0.0.1:-1\", no_tls: true }\n");
    for kinds in [
        [Kind::Rnats, Kind::Rnats],
        [Kind::Rnats, Kind::Reference],
        [Kind::Reference, Kind::Rnats],
    ] {
        eprintln!("pair {kinds:?}");
        let Some(first) = start_with(kinds[0], None, Some(&conf)) else {
            return;
        };
        let Some(second) = start_with(kinds[1], Some(first.route_port()), Some(&conf)) else {
            return;
        };
        let client_urls: BTreeSet<String> = [&first, &second]
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let ws_urls: BTreeSet<String> = [&first, &second]
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.websocket_port()))
            .collect();
        // Connect until the route has registered (the INFO then names both).
        let (tcp, ws) = within("both servers in connect_urls", async {
            loop {
                let tcp = connect(&first.url()).await;
                let ws_url = format!("ws://127.0.0.1:{}", first.websocket_port());
                let ws = connect(&ws_url).await;
                let told = |client: &async_nats::Client| -> BTreeSet<String> {
                    client.server_info().connect_urls.into_iter().collect()
                };
                let (tcp, ws) = (told(&tcp), told(&ws));
                if tcp.len() == 2 && ws.len() == 2 {
                    return (tcp, ws);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert_eq!(tcp, client_urls);
        assert_eq!(ws, ws_urls);
    }
}

/// A server listening on every address announces each global unicast
/// address of the host to its peers' clients, as nats-server does: in a
/// mixed pair, both servers' URLs name the same hosts.
#[tokio::test]
async fn an_any_address_server_announces_every_host_address() {
    let start = |kind: Kind, seed: Option<u16>| {
        let route = seed.map(|port| format!("nats://127.0.0.1:{port}"));
        let mut args = vec![
            "-a",
            "0.0.0.0",
            "--cluster",
            "nats://127.0.0.1:-1",
            "--cluster_name",
            "c1",
        ];
        if let Some(route) = &route {
            args.extend(["--routes", route.as_str()]);
        }
        match kind {
            Kind::Rnats => Some(ServerProcess::start(&args)),
            Kind::Reference => ServerProcess::start_reference(&args),
        }
    };
    let Some(rnats) = start(Kind::Rnats, None) else {
        return;
    };
    let Some(reference) = start(Kind::Reference, Some(rnats.route_port())) else {
        return;
    };
    for server in [&rnats, &reference] {
        let urls = within("both servers in connect_urls", async {
            loop {
                let client = connect(&format!("nats://127.0.0.1:{}", server.port)).await;
                let urls = client.server_info().connect_urls;
                let ports: BTreeSet<&str> = urls
                    .iter()
                    .filter_map(|u| u.rsplit_once(':'))
                    .map(|(_, p)| p)
                    .collect();
                if ports.len() == 2 {
                    return urls;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        // As a set: the reference keeps its peers' URLs in a map.
        let hosts = |port: u16| -> BTreeSet<String> {
            urls.iter()
                .filter_map(|u| u.rsplit_once(':'))
                .filter(|(_, p)| *p == port.to_string())
                .map(|(h, _)| h.to_string())
                .collect()
        };
        assert!(!hosts(rnats.port).is_empty(), "{urls:?}");
        assert_eq!(hosts(rnats.port), hosts(reference.port), "{urls:?}");
    }
}
