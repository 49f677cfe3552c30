//! `/accountz` (the accounts, or one account's detail) and `/accstatz`
//! (per-account traffic), in nats-server v2.15.1's shapes.
//!
//! Role: pure views of `&Server`: the run-time accounts for counters, the
//! configured [`AccountConfig`]s for exports, imports and mappings.
//!
//! Invariants:
//! - Accounts are listed in name order (the reference's order is a hash
//!   map's; a stable one is kinder to diffs and tests).
//! - `client_connections`/`conns` count connections that finished CONNECT
//!   and are not closing, as the reference counts registered clients.

use std::collections::BTreeMap;

use serde::Serialize;

use super::subsz::{StatsSum, SublistStatsJson};
use super::Clock;
use crate::auth::{AccountConfig, ExportKind, ImportKind, ResponseType};
use crate::format::rfc3339_nanos;
use crate::server::{AccountId, AccountStats, View};

#[derive(Debug, Clone, Serialize)]
pub struct Accountz {
    pub server_id: String,
    pub now: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_detail: Option<AccountInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountInfo {
    pub account_name: String,
    pub update_time: String,
    #[serde(skip_serializing_if = "is_false")]
    pub is_system: bool,
    pub expired: bool,
    pub complete: bool,
    pub jetstream_enabled: bool,
    pub leafnode_connections: usize,
    pub client_connections: usize,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mappings: BTreeMap<String, Vec<MapDest>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExtExport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<ExtImport>,
    /// Operator mode: the account's JWT, who signed it, its name and tags,
    /// its claims, and the users it revoked (with the time of revocation).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jwt: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub issuer_key: String,
    pub name_tag: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoded_jwt: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub revoked_user: BTreeMap<String, String>,
    pub sublist_stats: SublistStatsJson,
}

#[derive(Debug, Clone, Serialize)]
pub struct MapDest {
    pub subject: String,
    pub weight: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExtExport {
    pub subject: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approved_accounts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExtImport {
    pub subject: String,
    pub account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub local_subject: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub invalid: bool,
    pub share: bool,
    pub tracking: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why `/accountz?acc=` has no answer (HTTP 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAccount(pub String);

impl core::fmt::Display for UnknownAccount {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Account {} does not exist", self.0)
    }
}

/// Builds `/accountz`: every account's name, or `account`'s detail.
pub fn accountz(
    server: &View<'_>,
    account: &str,
    clock: Clock,
) -> Result<Accountz, UnknownAccount> {
    let accounts = server.accounts();
    let system_account = server.config().system_account.clone().unwrap_or_default();
    let mut page = Accountz {
        server_id: server.config().identity.server_id.clone(),
        now: rfc3339_nanos(clock.wall_now),
        system_account,
        accounts: None,
        account_detail: None,
    };
    if account.is_empty() {
        page.accounts = Some(accounts.by_name.keys().cloned().collect());
        return Ok(page);
    }
    let id = accounts
        .find(account)
        .ok_or_else(|| UnknownAccount(account.to_owned()))?;
    page.account_detail = Some(account_info(server, id));
    Ok(page)
}

fn account_info(server: &View<'_>, id: AccountId) -> AccountInfo {
    let account = &server.accounts().list[id];
    let config = server
        .config()
        .accounts
        .iter()
        .find(|config| config.name == account.name);
    let mut sum = StatsSum::default();
    sum.add(account.sublist.stats(), account.sublist.cache_fanout());
    let mut info = AccountInfo {
        account_name: account.name.clone(),
        update_time: rfc3339_nanos(server.monitor_state().config_loaded),
        is_system: server.accounts().system == Some(id),
        expired: false,
        complete: true,
        jetstream_enabled: false,
        leafnode_connections: 0,
        client_connections: server.account_connections(id),
        subscriptions: account.sublist.len(),
        mappings: BTreeMap::new(),
        exports: Vec::new(),
        imports: Vec::new(),
        jwt: String::new(),
        issuer_key: String::new(),
        name_tag: super::connz::name_tag(server, &account.name).to_owned(),
        tags: Vec::new(),
        decoded_jwt: None,
        revoked_user: BTreeMap::new(),
        sublist_stats: sum.json(),
    };
    let claims = server
        .config()
        .auth
        .operator
        .as_ref()
        .and_then(|mode| mode.accounts.get(&account.name));
    if let Some(claims) = claims {
        info.jwt = claims.token.clone();
        info.issuer_key = claims.claims.issuer.clone();
        info.tags = claims.nats.tags.clone();
        // The claims as the token carries them (the reference re-encodes
        // its decoded claims; for JWTs written by nsc that is the same).
        info.decoded_jwt = crate::auth::jwt::claims_json(&claims.token);
        for (user, &at) in &claims.nats.revocations {
            let nanos = u64::try_from(at).unwrap_or(0).saturating_mul(1_000_000_000);
            let when = crate::format::rfc3339_nanos(crate::time::WallTime::from_unix_nanos(nanos));
            info.revoked_user.insert(user.clone(), when);
        }
    }
    if let Some(config) = config {
        describe_config(config, &mut info);
    }
    if let Some(system) = server.accounts().system.filter(|&system| system != id) {
        let system_name = &server.accounts().list[system].name;
        for (local, exported) in crate::server::system::ACCOUNT_IMPORTS {
            info.imports.push(ExtImport {
                subject: exported.replace("{}", &account.name),
                account: system_name.clone(),
                to: Some(local.to_owned()),
                local_subject: local.to_owned(),
                kind: "service",
                invalid: false,
                // The reference shares the requester's details with USER.INFO.
                share: local == crate::server::system::USER_INFO_SUBJECT,
                tracking: false,
            });
        }
    }
    info
}

fn describe_config(config: &AccountConfig, info: &mut AccountInfo) {
    for mapping in &config.mappings {
        info.mappings.insert(
            mapping.source.clone(),
            mapping
                .destinations
                .iter()
                .map(|d| MapDest {
                    subject: d.subject.clone(),
                    weight: d.weight,
                })
                .collect(),
        );
    }
    for export in &config.exports {
        let service = export.kind == ExportKind::Service;
        info.exports.push(ExtExport {
            subject: export.subject.clone(),
            kind: if service { "service" } else { "stream" },
            response_type: service.then(|| response_type_name(export.response_type)),
            approved_accounts: export.accounts.clone().unwrap_or_default(),
        });
    }
    for import in &config.imports {
        let service = import.kind == ImportKind::Service;
        info.imports.push(ExtImport {
            subject: import.subject.clone(),
            account: import.account.clone(),
            // The reference names `to` for service imports only.
            to: service.then(|| import.local_subject().to_owned()),
            local_subject: import.local_subject().to_owned(),
            kind: if service { "service" } else { "stream" },
            invalid: false,
            share: import.share,
            tracking: false,
        });
    }
}

fn response_type_name(response_type: ResponseType) -> &'static str {
    match response_type {
        ResponseType::Singleton => "Singleton",
        ResponseType::Stream => "Stream",
        ResponseType::Chunked => "Chunked",
    }
}

/// Messages and bytes, as the reference's `MsgBytes`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MsgBytes {
    pub msgs: u64,
    pub bytes: u64,
}

/// The reference's `DataStats` as accounts report it: local traffic plus
/// (always zero here) gateway, route and leaf traffic.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DataStats {
    pub msgs: u64,
    pub bytes: u64,
    pub gateways: MsgBytes,
    pub routes: MsgBytes,
    pub leafs: MsgBytes,
}

impl DataStats {
    fn local(msgs: u64, bytes: u64) -> Self {
        DataStats {
            msgs,
            bytes,
            ..DataStats::default()
        }
    }
}

/// One account's traffic (`AccountStat`).
#[derive(Debug, Clone, Serialize)]
pub struct AccountStat {
    pub acc: String,
    pub name: String,
    pub conns: usize,
    pub leafnodes: usize,
    pub total_conns: usize,
    pub num_subscriptions: usize,
    pub sent: DataStats,
    pub received: DataStats,
    pub slow_consumers: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountStatz {
    pub server_id: String,
    pub now: String,
    pub account_statz: Vec<AccountStat>,
}

/// `AccountStat` of one account.
pub fn account_stat(server: &View<'_>, id: AccountId) -> AccountStat {
    let account = &server.accounts().list[id];
    let stats: AccountStats = account.stats;
    let conns = server.account_connections(id);
    AccountStat {
        acc: account.name.clone(),
        name: account.name.clone(),
        conns,
        leafnodes: 0,
        total_conns: conns,
        num_subscriptions: account.sublist.len(),
        sent: DataStats::local(stats.sent_msgs, stats.sent_bytes),
        received: DataStats::local(stats.received_msgs, stats.received_bytes),
        slow_consumers: stats.slow_consumers,
    }
}

/// Builds `/accstatz`: accounts with connections (all with `include_unused`),
/// or only the named ones.
pub fn accstatz(
    server: &View<'_>,
    names: &[String],
    include_unused: bool,
    clock: Clock,
) -> AccountStatz {
    let accounts = server.accounts();
    // `by_name` is ordered by name.
    let ids: Vec<AccountId> = if names.is_empty() {
        accounts.by_name.values().copied().collect()
    } else {
        names
            .iter()
            .filter_map(|name| accounts.find(name))
            .collect()
    };
    AccountStatz {
        server_id: server.config().identity.server_id.clone(),
        now: rfc3339_nanos(clock.wall_now),
        account_statz: ids
            .into_iter()
            .filter(|&id| include_unused || server.account_connections(id) > 0)
            .map(|id| account_stat(server, id))
            .collect(),
    }
}
