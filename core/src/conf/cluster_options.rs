//! The `cluster { }` block and the cluster flags, with nats-server v2.15.1's
//! keys and aliases, turned into the [`ClusterConfig`] the machine runs.
//!
//! Input: the block's map entry (and the flags, in [`cluster_request`]).
//! Output: [`ClusterOptions`] (what the file set), then a
//! [`ClusterRequest`] (where to listen, the machine's view).
//!
//! Invariants:
//! - Every key of the reference's block is parsed here or reported as
//!   unsupported (`cluster.<key>`), so start-up refuses what rnats does not
//!   do: the S2 compression modes (rnats has no S2: `off` and `accept` are
//!   served uncompressed), TLS keys rnats does not handle.
//! - `permissions { import, export }` are kept as a [`Permissions`] with
//!   `import` as its publish side and `export` as its subscribe side, as
//!   the reference reads them; the block's own wins over the deprecated
//!   `authorization { permissions }`.
//! - Route URLs keep their credentials only in the config; logs show
//!   `host:port`.

use std::time::Duration;

use super::options::{
    boolean, duration, integer, invalid, string, unknown_field, wrong_type, ConfWarning,
    ConfWarningKind, Unsupported,
};
use super::value::{MapEntry, ValueKind};
use super::ConfError;
use crate::auth::{Permissions, SubjectPermission};
use crate::server::{ClusterConfig, RouteUrl, WriteTimeoutPolicy, MAX_ROUTE_PING_INTERVAL};

/// The reference's default route listener host.
pub const DEFAULT_CLUSTER_HOST: &str = "0.0.0.0";

/// What the file's `cluster { }` block set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterOptions {
    pub name: Option<String>,
    pub host: Option<String>,
    /// -1 asks for a random port; 0 (or none) leaves clustering off.
    pub port: Option<i64>,
    pub routes: Vec<RouteUrl>,
    pub advertise: Option<String>,
    pub no_advertise: bool,
    pub connect_retries: Option<i64>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub auth_timeout: Option<Duration>,
    /// As written: 0 (or none) takes the default, a negative size turns
    /// pooling off.
    pub pool_size: Option<i64>,
    /// Pinned accounts: each gets a route of its own to every peer.
    pub accounts: Vec<String>,
    pub tls: Option<super::tls_options::TlsOptions>,
    /// `permissions { import, export }`: import as publish, export as
    /// subscribe.
    pub permissions: Option<Permissions>,
    /// Set by the deprecated `authorization { permissions }`; used only
    /// when the block has no `permissions` of its own.
    pub authorization_permissions: Option<Permissions>,
    pub ping_interval: Option<Duration>,
    pub ping_max: Option<i64>,
    pub write_deadline: Option<Duration>,
    pub write_timeout: Option<WriteTimeoutPolicy>,
    /// Failed dials back off exponentially up to 30 s.
    pub connect_backoff: bool,
}

/// The reference's default number of pooled route connections per peer.
pub const DEFAULT_POOL_SIZE: i64 = 3;

/// Parses the `cluster { }` block.
pub fn parse_cluster(
    entry: &MapEntry,
    unsupported: &mut Vec<Unsupported>,
    warnings: &mut Vec<ConfWarning>,
) -> Result<ClusterOptions, ConfError> {
    let fields = entry
        .value
        .as_map()
        .ok_or_else(|| wrong_type(entry, "a map"))?;
    let mut cluster = ClusterOptions::default();
    for field in fields {
        let key = field.key.to_ascii_lowercase();
        match key.as_str() {
            "name" => {
                let name = string(field)?;
                if name.contains(' ') {
                    return Err(invalid(field, "cluster name cannot contain spaces"));
                }
                cluster.name = Some(name);
            }
            _ if super::options::listener_key(
                &key,
                field,
                &mut cluster.host,
                &mut cluster.port,
            )? => {}
            "authorization" => authorization(field, &mut cluster, warnings)?,
            "routes" => cluster.routes = routes(field)?,
            "cluster_advertise" | "advertise" => cluster.advertise = Some(string(field)?),
            "no_advertise" => cluster.no_advertise = boolean(field)?,
            "connect_retries" => cluster.connect_retries = Some(integer(field)?),
            "pool_size" => cluster.pool_size = Some(integer(field)?),
            "accounts" => {
                let accounts = super::options::string_list(field)?;
                for (at, name) in accounts.iter().enumerate() {
                    if accounts[..at].contains(name) {
                        return Err(invalid(
                            field,
                            &format!(
                                "found duplicate account name {} in pinned accounts list {}",
                                crate::format::go_quote(name.as_bytes()),
                                go_list(&accounts)
                            ),
                        ));
                    }
                }
                cluster.accounts = accounts;
            }
            // rnats has no S2: it announces `off`, which every peer mode
            // negotiates down to no compression. `accept` (the reference's
            // default) is served that way too; the S2 modes are refused.
            "compression" => {
                let served = match &field.value.kind {
                    ValueKind::Bool(on) => !on,
                    ValueKind::String(mode) => compression_served(mode),
                    ValueKind::Map(map) => map.iter().all(|f| {
                        !f.key.eq_ignore_ascii_case("mode")
                            || f.value.as_str().is_some_and(compression_served)
                    }),
                    _ => return Err(wrong_type(field, "a boolean, a string or a map")),
                };
                if !served {
                    unsupported.push(Unsupported::new(format!("cluster.{key}"), field));
                }
            }
            "tls" => {
                let mut refused = Vec::new();
                let tls = super::tls_options::parse_tls(field, &mut refused)?;
                for mut refusal in refused {
                    refusal.key = format!("cluster.{}", refusal.key);
                    unsupported.push(refusal);
                }
                if tls.cert_file.is_none() {
                    return Err(invalid(
                        field,
                        "missing 'cert_file' or 'key_file' in TLS configuration",
                    ));
                }
                // Routes do the handshake first always; these are client-port
                // notions the reference does not apply to routes.
                if tls.handshake_first || tls.verify_and_map {
                    unsupported.push(Unsupported::new(String::from("cluster.tls"), field));
                }
                cluster.tls = Some(tls);
            }
            "permissions" => cluster.permissions = Some(route_permissions(field)?),
            "connect_backoff" => cluster.connect_backoff = boolean(field)?,
            "ping_interval" => {
                let interval = duration(field, "ping_interval", warnings)?;
                if interval > MAX_ROUTE_PING_INTERVAL {
                    warnings.push(ConfWarning {
                        position: field.key_position.clone(),
                        kind: ConfWarningKind::Notice {
                            text: String::from(
                                "Cluster 'ping_interval' will reset to 30s which is the max for routes",
                            ),
                        },
                    });
                }
                cluster.ping_interval = Some(interval);
            }
            "ping_max" => cluster.ping_max = Some(integer(field)?),
            "write_deadline" => {
                cluster.write_deadline = Some(duration(field, "write_deadline", warnings)?)
            }
            "write_timeout" => {
                cluster.write_timeout = Some(match string(field)?.as_str() {
                    "default" => WriteTimeoutPolicy::Default,
                    "close" => WriteTimeoutPolicy::Close,
                    "retry" => WriteTimeoutPolicy::Retry,
                    _ => {
                        return Err(invalid(
                            field,
                            "write_timeout must be 'default', 'close' or 'retry'",
                        ))
                    }
                })
            }
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    Ok(cluster)
}

/// Compression modes rnats serves (uncompressed): `off` and `accept`.
fn compression_served(mode: &str) -> bool {
    matches!(
        mode.to_ascii_lowercase().as_str(),
        "off" | "disabled" | "false" | "accept" | ""
    )
}

/// Go's `%q` of a string slice: `["A" "B"]`.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| crate::format::go_quote(i.as_bytes()))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// `permissions { import, export }` as the reference checks them: no
/// `allow_responses`, every entry a valid subject.
fn route_permissions(field: &MapEntry) -> Result<Permissions, ConfError> {
    let permissions = super::auth_options::parse_permissions(field)?;
    if permissions.response.is_some() {
        return Err(invalid(
            field,
            "Cluster permissions do not support dynamic responses",
        ));
    }
    let sides = [
        ("import", permissions.publish.as_ref()),
        ("export", permissions.subscribe.as_ref()),
    ];
    for (side, list) in sides {
        let Some(SubjectPermission { allow, deny }) = list else {
            continue;
        };
        let lists = [("allow", allow.as_deref().unwrap_or(&[])), ("deny", deny)];
        for (kind, subjects) in lists {
            if let Some(bad) = subjects
                .iter()
                .find(|s| !crate::subject::is_valid_subject(s.as_bytes()))
            {
                return Err(invalid(
                    field,
                    &format!(
                        "cluster {side} {kind}: subject {} is not a valid subject",
                        crate::format::go_quote(bad.as_bytes())
                    ),
                ));
            }
        }
    }
    Ok(permissions)
}

/// The block's `authorization { user, password, timeout }`: one user, no
/// token (as the reference insists).
fn authorization(
    entry: &MapEntry,
    cluster: &mut ClusterOptions,
    warnings: &mut Vec<ConfWarning>,
) -> Result<(), ConfError> {
    let fields = entry
        .value
        .as_map()
        .ok_or_else(|| wrong_type(entry, "a map"))?;
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "user" | "username" => cluster.user = Some(string(field)?),
            "pass" | "password" => cluster.password = Some(string(field)?),
            "token" => {
                return Err(invalid(
                    entry,
                    "Cluster authorization does not support tokens",
                ))
            }
            "users" => {
                return Err(invalid(
                    entry,
                    "Cluster authorization does not allow multiple users",
                ))
            }
            "timeout" => {
                let seconds = match &field.value.kind {
                    ValueKind::Integer(n) => *n as f64,
                    ValueKind::Float(f) => *f,
                    _ => return Err(wrong_type(field, "a number")),
                };
                if !(seconds.is_finite() && seconds >= 0.0) {
                    return Err(invalid(field, "timeout out of range"));
                }
                cluster.auth_timeout = Some(Duration::from_secs_f64(seconds));
            }
            "permissions" => {
                cluster.authorization_permissions = Some(route_permissions(field)?);
                warnings.push(ConfWarning {
                    position: entry.key_position.clone(),
                    kind: ConfWarningKind::Notice {
                        text: format!(
                            "invalid use of field \"{}\": setting \"permissions\" within cluster \
                             authorization block is deprecated",
                            entry.key
                        ),
                    },
                });
            }
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    Ok(())
}

fn routes(field: &MapEntry) -> Result<Vec<RouteUrl>, ConfError> {
    let mut out: Vec<RouteUrl> = Vec::new();
    for item in super::options::string_list(field)? {
        let url = RouteUrl::parse(&item)
            .ok_or_else(|| invalid(field, &format!("error parsing route url [{item:?}]")))?;
        if !out.contains(&url) {
            out.push(url);
        }
    }
    Ok(out)
}

/// The cluster flags (`--cluster`, `--routes`, ...), as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFlags {
    /// `--cluster`/`--cluster_listen`: `nats://host:port`.
    pub listen: Option<String>,
    pub name: Option<String>,
    pub advertise: Option<String>,
    /// `--routes`: comma-separated URLs.
    pub routes: Option<String>,
    pub no_advertise: Option<bool>,
    pub connect_retries: Option<i64>,
}

/// The route listener to open and the machine's view of the cluster
/// (`config.port` is filled in once bound).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRequest {
    pub host: String,
    /// As configured; -1 asks for a random port.
    pub port: i64,
    pub config: ClusterConfig,
}

/// The file's block with the flags laid over it; `None` when no route
/// listener is configured (no block, or port 0).
pub fn cluster_request(
    file: Option<&ClusterOptions>,
    flags: &ClusterFlags,
) -> Result<Option<ClusterRequest>, String> {
    let mut options = file.cloned().unwrap_or_default();
    if let Some(listen) = &flags.listen {
        let url = RouteUrl::parse(listen)
            .ok_or_else(|| format!("Could not parse cluster URL: {listen}"))?;
        options.host = Some(url.host.clone());
        options.port = Some(url.port);
        if url.user.is_some() {
            options.user = url.user;
            options.password = url.password;
        }
    }
    if let Some(name) = &flags.name {
        options.name = Some(name.clone());
    }
    if let Some(advertise) = &flags.advertise {
        options.advertise = Some(advertise.clone());
    }
    if let Some(routes) = &flags.routes {
        options.routes = routes
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| RouteUrl::parse(r).ok_or_else(|| format!("error parsing route url [{r:?}]")))
            .collect::<Result<_, _>>()?;
    }
    if let Some(no_advertise) = flags.no_advertise {
        options.no_advertise = no_advertise;
    }
    if let Some(retries) = flags.connect_retries {
        options.connect_retries = Some(retries);
    }
    let pool_size = match options.pool_size {
        None | Some(0) => DEFAULT_POOL_SIZE,
        Some(size) => size,
    };
    if pool_size < 0 && !options.accounts.is_empty() {
        return Err(String::from(
            "pool_size cannot be negative if pinned accounts are specified",
        ));
    }
    let port = options.port.unwrap_or(0);
    if port == 0 {
        return Ok(None);
    }
    if !(-1..=65535).contains(&port) {
        return Err(format!("invalid cluster port {port}"));
    }
    let host = options
        .host
        .clone()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| DEFAULT_CLUSTER_HOST.to_string());
    let config = ClusterConfig {
        name: options.name.clone().unwrap_or_default(),
        host: host.clone(),
        port: 0,
        advertise: options.advertise.clone(),
        no_advertise: options.no_advertise,
        routes: options.routes.clone(),
        connect_retries: options.connect_retries.unwrap_or(0).max(0) as u32,
        user: options.user.clone().filter(|u| !u.is_empty()),
        password: options.password.clone().unwrap_or_default(),
        auth_timeout: options.auth_timeout,
        pool_size,
        accounts: options.accounts.clone(),
        permissions: options
            .permissions
            .clone()
            .or_else(|| options.authorization_permissions.clone()),
        ping_interval: options.ping_interval.filter(|d| !d.is_zero()),
        ping_max: options.ping_max.filter(|n| *n > 0).map(|n| n as u32),
        write_deadline: options.write_deadline.filter(|d| !d.is_zero()),
        write_timeout: options.write_timeout.unwrap_or_default(),
        connect_backoff: options.connect_backoff,
        tls: options.tls.as_ref().map(|tls| crate::server::RouteTls {
            cert_file: tls.cert_file.clone().unwrap_or_default(),
            key_file: tls.key_file.clone().unwrap_or_default(),
            ca_file: tls.ca_file.clone(),
            verify: tls.verify,
            timeout: tls
                .timeout
                .unwrap_or(super::tls_options::DEFAULT_TLS_TIMEOUT),
        }),
    };
    Ok(Some(ClusterRequest { host, port, config }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (ClusterOptions, Vec<String>) {
        let root = crate::conf::parse("t.conf", text, &crate::conf::NoSource).unwrap();
        let map = root.as_map().unwrap();
        let entry = map.iter().find(|e| e.key == "cluster").unwrap();
        let mut unsupported = Vec::new();
        let options = parse_cluster(entry, &mut unsupported, &mut Vec::new()).unwrap();
        (options, unsupported.into_iter().map(|u| u.key).collect())
    }

    #[test]
    fn keys_and_refusals() {
        let (options, refused) = load(
            "cluster { name: c1, listen: \"127.0.0.1:-1\", routes: [nats-route://u:p@h:4248, \"nats://h2:6222\"], no_advertise: true, connect_retries: 3, authorization { user: u, password: p, timeout: 2 }, pool_size: -1, compression: off }",
        );
        assert_eq!(options.name.as_deref(), Some("c1"));
        assert_eq!(options.port, Some(-1));
        assert_eq!(options.routes.len(), 2);
        assert_eq!(options.routes[0].user.as_deref(), Some("u"));
        assert_eq!(options.routes[1].address(), "h2:6222");
        assert!(refused.is_empty(), "{refused:?}");
        let (options, refused) = load("cluster { port: 1, pool_size: 5, compression: s2_fast, tls { cert_file: c, key_file: k, insecure: true }, accounts: [A, B], permissions { import: \"a.>\", export: { deny: b } } }");
        assert_eq!(refused, ["cluster.compression", "cluster.tls.insecure"]);
        let permissions = options.permissions.clone().unwrap();
        assert_eq!(
            permissions.publish.unwrap().allow,
            Some(vec![String::from("a.>")])
        );
        assert_eq!(permissions.subscribe.unwrap().deny, ["b"]);
        assert_eq!((options.pool_size, options.accounts.len()), (Some(5), 2));
        for mode in [
            "s2_fast",
            "s2_better",
            "s2_best",
            "s2_auto",
            "s2_uncompressed",
            "{mode: s2_auto}",
        ] {
            let (_, refused) = load(&format!("cluster {{ port: 1, compression: {mode} }}"));
            assert_eq!(refused, ["cluster.compression"], "{mode}");
        }
        for mode in ["off", "accept", "false", "{mode: accept}"] {
            let (_, refused) = load(&format!("cluster {{ port: 1, compression: {mode} }}"));
            assert!(refused.is_empty(), "{mode}");
        }
    }

    #[test]
    fn route_permissions_as_the_reference_checks_them() {
        let error = |text: &str| {
            let root = crate::conf::parse("t.conf", text, &crate::conf::NoSource).unwrap();
            let entry = root.as_map().unwrap().iter().next().unwrap().clone();
            parse_cluster(&entry, &mut Vec::new(), &mut Vec::new())
                .unwrap_err()
                .to_string()
        };
        // A queue entry is a subscribe permission's, not a route's.
        assert!(error("cluster { permissions { export: \"a b\" } }")
            .contains("cluster export allow: subject \"a b\" is not a valid subject"));
        assert!(error("cluster { permissions { allow_responses: true } }")
            .contains("Cluster permissions do not support dynamic responses"));
        // The block's own permissions win over the deprecated ones in
        // `authorization`, whichever comes first; the latter warn.
        let root = crate::conf::parse(
            "t.conf",
            "cluster { permissions { import: a }, authorization { permissions { import: b } }, ping_interval: \"1m\" }",
            &crate::conf::NoSource,
        )
        .unwrap();
        let entry = root.as_map().unwrap().iter().next().unwrap().clone();
        let mut warnings = Vec::new();
        let options = parse_cluster(&entry, &mut Vec::new(), &mut warnings).unwrap();
        let texts: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert!(texts[0]
            .ends_with("setting \"permissions\" within cluster authorization block is deprecated"));
        assert!(texts[1]
            .ends_with("Cluster 'ping_interval' will reset to 30s which is the max for routes"));
        let request = cluster_request(
            Some(&ClusterOptions {
                port: Some(1),
                ..options
            }),
            &ClusterFlags::default(),
        )
        .unwrap()
        .unwrap();
        let import = request.config.permissions.unwrap().publish.unwrap();
        assert_eq!(import.allow, Some(vec![String::from("a")]));
    }

    #[test]
    fn flags_win() {
        let flags = ClusterFlags {
            listen: Some("nats://127.0.0.1:7000".into()),
            routes: Some("nats://a:1, nats://b:2".into()),
            name: Some("x".into()),
            ..ClusterFlags::default()
        };
        let request = cluster_request(None, &flags).unwrap().unwrap();
        assert_eq!((request.host.as_str(), request.port), ("127.0.0.1", 7000));
        assert_eq!(request.config.routes.len(), 2);
        assert_eq!(request.config.name, "x");
        assert_eq!(
            cluster_request(None, &ClusterFlags::default()).unwrap(),
            None
        );
        assert_eq!(request.config.pool_size, DEFAULT_POOL_SIZE);
    }

    #[test]
    fn pool_size_and_pinned_accounts() {
        let request = |text: &str| cluster_request(Some(&load(text).0), &ClusterFlags::default());
        let pool = |text: &str| request(text).unwrap().unwrap().config.pool_size;
        assert_eq!(pool("cluster { port: 1 }"), 3);
        assert_eq!(pool("cluster { port: 1, pool_size: 0 }"), 3);
        assert_eq!(pool("cluster { port: 1, pool_size: -1 }"), -1);
        assert_eq!(pool("cluster { port: 1, pool_size: 7 }"), 7);
        assert_eq!(
            request("cluster { port: 1, pool_size: -1, accounts: [A] }").unwrap_err(),
            "pool_size cannot be negative if pinned accounts are specified"
        );
        let root = crate::conf::parse(
            "t.conf",
            "cluster { port: 1, accounts: [A, A] }",
            &crate::conf::NoSource,
        )
        .unwrap();
        let entry = root
            .as_map()
            .unwrap()
            .iter()
            .find(|e| e.key == "cluster")
            .unwrap();
        let error = parse_cluster(entry, &mut Vec::new(), &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "found duplicate account name \"A\" in pinned accounts list [\"A\" \"A\"]"
            ),
            "{error}"
        );
    }
}
