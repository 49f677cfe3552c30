//! `accounts { NAME { users, default_permissions, exports, imports, mappings } }`
//! and top-level `mappings`, as the reference's `parseAccounts`,
//! `parseExportStreamOrService`, `parseImportStreamOrService` and
//! `parseAccountMappings` read them, with the checks its `Account` methods
//! make when the parsed exports, imports and mappings are added.
//!
//! A block is read in two passes, like the reference: first every account
//! with its users and the raw exports and imports; then, with all accounts
//! known, export account lists, import authorization, prefixes, duplicates
//! and cycles are checked, in the reference's order (stream exports, service
//! exports, stream imports, service imports).

use std::collections::BTreeSet;
use std::time::Duration;

use super::super::options::{invalid, string, unknown_field, wrong_type, Unsupported};
use super::super::value::{ConfMap, MapEntry, Position, ValueKind};
use super::super::{AuthorizationOptions, ConfError};
use super::{
    go_type_name, go_value_text, invalid_at, is_public_key, parse_permissions, parse_users,
    SecurityOptions,
};
use crate::auth::{
    AccountConfig, Export, ExportKind, Import, ImportKind, MappingDestination, ResponseType,
    SubjectMapping, GLOBAL_ACCOUNT,
};
use crate::subject::{
    is_subset_match, is_valid_subject, subject_is_literal, subjects_collide, SubjectTransform,
    TransformError,
};

/// Keys of an account block the reference knows and rnats does not handle.
const UNSUPPORTED_ACCOUNT_KEYS: &[&str] = &["limits", "msg_trace", "trace_dest"];

/// The reference gives up looking for an import cycle this many accounts deep.
const CYCLE_SEARCH_DEPTH_MAX: usize = 1024;

/// The mapping functions the reference knows; rnats applies `wildcard` only.
const MAPPING_FUNCTIONS: &[&str] = &[
    "wildcard",
    "partition",
    "splitfromleft",
    "splitfromright",
    "slicefromleft",
    "slicefromright",
    "split",
    "random",
];

/// An import as written, before the second pass resolves `prefix`.
struct PendingImport {
    importer: String,
    import: Import,
    prefix: Option<String>,
}

/// What the first pass gathers from one `accounts { }` block.
#[derive(Default)]
struct Block {
    exports: Vec<(String, Export)>,
    imports: Vec<PendingImport>,
}

/// `accounts { ... }` (a map of accounts) or `accounts: [A, B]` (names only).
/// `authorization` is the block as read so far, when the file had one
/// before this one.
pub fn parse_accounts(
    entry: &MapEntry,
    authorization: Option<&AuthorizationOptions>,
    security: &mut SecurityOptions,
    unsupported: &mut Vec<Unsupported>,
) -> Result<(), ConfError> {
    if let ValueKind::Array(names) = &entry.value.kind {
        return account_names(entry, names, security);
    }
    let accounts = entry
        .value
        .as_map()
        .ok_or_else(|| wrong_type(entry, "a map"))?;
    let mut block = Block::default();
    for account in accounts {
        if account.is_referenced() {
            continue;
        }
        let Some(fields) = account.value.as_map() else {
            return Err(invalid(account, "Expected map entries for accounts"));
        };
        check_not_reserved(account, &account.key)?;
        let context = Context {
            block_key: &entry.key,
            account: &account.key,
        };
        let config = parse_account(
            &context,
            fields,
            authorization,
            security,
            &mut block,
            unsupported,
        )?;
        security.accounts.retain(|a| a.name != config.name);
        security.accounts.push(config);
    }
    resolve(entry, block, security)
}

/// Names for messages and unsupported keys.
struct Context<'a> {
    block_key: &'a str,
    account: &'a str,
}

impl Context<'_> {
    fn unsupported(&self, field: &MapEntry) -> Unsupported {
        Unsupported::new(
            format!("{}.{}.{}", self.block_key, self.account, field.key),
            field,
        )
    }

    /// A key inside an entry of the account's `parent` array.
    fn unsupported_in(&self, parent: &str, field: &MapEntry) -> Unsupported {
        Unsupported::new(
            format!("{}.{}.{parent}.{}", self.block_key, self.account, field.key),
            field,
        )
    }
}

fn account_names(
    entry: &MapEntry,
    names: &[super::super::value::ConfValue],
    security: &mut SecurityOptions,
) -> Result<(), ConfError> {
    let mut seen = BTreeSet::new();
    for name in names {
        let text = name
            .as_str()
            .ok_or_else(|| wrong_type(entry, "an array of names"))?;
        if text == GLOBAL_ACCOUNT {
            return Err(invalid_at(
                &name.position,
                &entry.key,
                format!("\"{text}\" is a Reserved Account"),
            ));
        }
        if !seen.insert(text) {
            return Err(invalid_at(
                &name.position,
                &entry.key,
                format!("Duplicate Account Entry: {text}"),
            ));
        }
        security.accounts.retain(|a| a.name != text);
        security.accounts.push(AccountConfig::new(text));
    }
    Ok(())
}

fn check_not_reserved(at: &MapEntry, name: &str) -> Result<(), ConfError> {
    if name == GLOBAL_ACCOUNT {
        return Err(invalid(at, &format!("\"{name}\" is a Reserved Account")));
    }
    Ok(())
}

/// One account's keys; its users are added to `security` at once, its
/// exports and imports wait in `block` for the second pass.
fn parse_account(
    context: &Context<'_>,
    fields: &ConfMap,
    authorization: Option<&AuthorizationOptions>,
    security: &mut SecurityOptions,
    block: &mut Block,
    unsupported: &mut Vec<Unsupported>,
) -> Result<AccountConfig, ConfError> {
    let name = context.account;
    let mut config = AccountConfig::new(name);
    let mut users = None;
    let mut default_permissions = None;
    let unsupported_prefix = format!("{}.{}.", context.block_key, name);
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "nkey" => {
                let valid = field.value.as_str().is_some_and(|k| is_public_key(k, b'A'));
                if !valid {
                    return Err(invalid(
                        field,
                        &format!(
                            "Not a valid public nkey for an account: \"{}\"",
                            go_value_text(&field.value)
                        ),
                    ));
                }
                unsupported.push(context.unsupported(field));
            }
            "users" => {
                users = Some((
                    field,
                    parse_users(field, name, unsupported, &unsupported_prefix)?,
                ))
            }
            "default_permissions" => default_permissions = Some(parse_permissions(field)?),
            "exports" => {
                let exports = parse_exports(field, context, unsupported)?;
                block.exports.retain(|(owner, _)| owner != name);
                block
                    .exports
                    .extend(exports.into_iter().map(|e| (name.to_string(), e)));
            }
            "imports" => {
                let imports = parse_imports(field, name, context, unsupported)?;
                block.imports.retain(|i| i.importer != name);
                block.imports.extend(imports);
            }
            "mappings" | "maps" => {
                config.mappings = parse_mappings(field, &unsupported_prefix, unsupported)?
            }
            "jetstream" => {
                config.jetstream = super::super::jetstream_options::parse_account_jetstream(
                    field,
                    &unsupported_prefix,
                    unsupported,
                )?
            }
            key if UNSUPPORTED_ACCOUNT_KEYS.contains(&key) => {
                unsupported.push(context.unsupported(field))
            }
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    if let Some((at, mut users)) = users {
        if !users.is_empty() {
            let filled = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
            if authorization.is_some_and(|a| filled(&a.user)) {
                return Err(invalid(at, "Can not have a single user/pass and accounts"));
            }
            if authorization.is_some_and(|a| filled(&a.token)) {
                return Err(invalid(at, "Can not have a token and accounts"));
            }
        }
        users.apply_default_permissions(&default_permissions);
        users.add_to(security, at)?;
    }
    Ok(config)
}

fn parse_exports(
    entry: &MapEntry,
    context: &Context<'_>,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Vec<Export>, ConfError> {
    let items = entry.value.as_array().ok_or_else(|| {
        invalid(
            entry,
            &format!(
                "Exports should be an array, got {}",
                go_type_name(&entry.value)
            ),
        )
    })?;
    let mut exports = Vec::new();
    for item in items {
        let fields = item.as_map().ok_or_else(|| {
            invalid_at(
                &item.position,
                &entry.key,
                format!(
                    "Export Items should be a map with type entry, got {}",
                    go_type_name(item)
                ),
            )
        })?;
        if let Some(export) = parse_export(fields, context, unsupported)? {
            exports.push(export);
        }
    }
    Ok(exports)
}

/// `{stream: subject}` or `{service: subject, response_type, threshold}`,
/// both with optional `accounts`. An entry with neither is ignored, as the
/// reference does.
fn parse_export(
    fields: &ConfMap,
    context: &Context<'_>,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Option<Export>, ConfError> {
    let mut export: Option<Export> = None;
    let mut accounts = None;
    let mut response: Option<(&MapEntry, ResponseType)> = None;
    let mut threshold: Option<(&MapEntry, Option<Duration>)> = None;
    // `latency` and `allow_trace`, which only a service may have.
    let mut service_only: Vec<&MapEntry> = Vec::new();
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            kind @ ("stream" | "service") => {
                let subject = field.value.as_str().ok_or_else(|| {
                    invalid(
                        field,
                        &format!(
                            "Expected {kind} name to be string, got {}",
                            go_type_name(&field.value)
                        ),
                    )
                })?;
                match (&export, kind) {
                    (Some(e), "stream") if e.kind == ExportKind::Service => {
                        return Err(invalid(
                            field,
                            &format!("Detected stream \"{subject}\" but already saw a service"),
                        ))
                    }
                    (Some(e), "service") if e.kind == ExportKind::Stream => {
                        return Err(invalid(
                            field,
                            &format!("Detected service \"{subject}\" but already saw a stream"),
                        ))
                    }
                    _ => {}
                }
                export = Some(if kind == "stream" {
                    Export::stream(subject)
                } else {
                    Export::service(subject)
                });
            }
            "response" | "response_type" => {
                if response.is_some() {
                    return Err(invalid(field, "Duplicate response type definition"));
                }
                response = Some((field, parse_response_type(field)?));
            }
            "threshold" | "response_threshold" | "response_max_time" | "response_time" => {
                if threshold.is_some() {
                    return Err(invalid(field, "Duplicate response threshold detected"));
                }
                threshold = Some((field, parse_threshold(field)?));
            }
            "accounts" => accounts = Some(string_array(field)?),
            "latency" | "allow_trace" => {
                service_only.push(field);
                unsupported.push(context.unsupported_in("exports", field))
            }
            "account_token_position" => unsupported.push(context.unsupported_in("exports", field)),
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    let Some(mut export) = export else {
        return Ok(None);
    };
    if export.kind == ExportKind::Stream {
        let directive = response.map(|(at, _)| at).or(threshold.map(|(at, _)| at));
        if let Some(at) = directive {
            return Err(invalid(at, "Detected response directive on non-service"));
        }
        if let Some(at) = service_only.first() {
            let name = at.key.to_ascii_lowercase();
            return Err(invalid(
                at,
                &format!("Detected {name} directive on non-service"),
            ));
        }
    }
    // `accounts: []` is a public export, as no `accounts` at all.
    export.accounts = accounts.filter(|list| !list.is_empty());
    if let Some((_, response_type)) = response {
        export.response_type = response_type;
    }
    if let Some((_, Some(threshold))) = threshold {
        export.response_threshold = threshold;
    }
    Ok(Some(export))
}

fn parse_response_type(field: &MapEntry) -> Result<ResponseType, ConfError> {
    let text = field.value.as_str().ok_or_else(|| {
        invalid(
            field,
            &format!(
                "Expected response type to be string, got {}",
                go_type_name(&field.value)
            ),
        )
    })?;
    match text.to_ascii_lowercase().as_str() {
        "single" | "singleton" => Ok(ResponseType::Singleton),
        "stream" => Ok(ResponseType::Stream),
        "chunk" | "chunked" => Ok(ResponseType::Chunked),
        _ => Err(invalid(
            field,
            &format!("Unknown response type: \"{text}\""),
        )),
    }
}

/// A service export's response threshold: a duration string only. A
/// negative or zero threshold keeps the default (`None`), as in the reference.
fn parse_threshold(field: &MapEntry) -> Result<Option<Duration>, ConfError> {
    let text = field.value.as_str().ok_or_else(|| {
        invalid(
            field,
            &format!(
                "Expected response threshold to be a parseable time duration, got {}",
                go_type_name(&field.value)
            ),
        )
    })?;
    let nanos = super::super::parse_go_duration(text).map_err(|_| {
        invalid(
            field,
            &format!("Expected response threshold to be a parseable time duration, got \"{text}\""),
        )
    })?;
    Ok(u64::try_from(nanos)
        .ok()
        .filter(|nanos| *nanos > 0)
        .map(Duration::from_nanos))
}

fn string_array(field: &MapEntry) -> Result<Vec<String>, ConfError> {
    let items = field
        .value
        .as_array()
        .ok_or_else(|| wrong_type(field, "an array"))?;
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| wrong_type(field, "an array of strings"))
        })
        .collect()
}

fn parse_imports(
    entry: &MapEntry,
    importer: &str,
    context: &Context<'_>,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Vec<PendingImport>, ConfError> {
    let items = entry.value.as_array().ok_or_else(|| {
        invalid(
            entry,
            &format!(
                "Imports should be an array, got {}",
                go_type_name(&entry.value)
            ),
        )
    })?;
    let mut imports: Vec<PendingImport> = Vec::new();
    for item in items {
        let fields = item.as_map().ok_or_else(|| {
            invalid_at(
                &item.position,
                &entry.key,
                format!(
                    "Import Items should be a map with type entry, got {}",
                    go_type_name(item)
                ),
            )
        })?;
        let Some(pending) = parse_import(fields, importer, context, unsupported)? else {
            continue;
        };
        if pending.import.kind == ImportKind::Service {
            let local = pending.import.local_subject();
            let duplicate = imports.iter().find(|other| {
                other.import.kind == ImportKind::Service
                    && other.import.local_subject() == local
                    && other.import.account == pending.import.account
            });
            if let Some(other) = duplicate {
                return Err(invalid_at(
                    &item.position,
                    &entry.key,
                    format!(
                        "Duplicate service import subject \"{local}\", previously used in \
                         import for account \"{}\", subject \"{}\"",
                        other.import.account, other.import.subject
                    ),
                ));
            }
        }
        imports.push(pending);
    }
    Ok(imports)
}

/// `{stream: {account, subject}, prefix | to}` or `{service: {account,
/// subject}, to}`. An entry with neither is ignored, as the reference does.
fn parse_import(
    fields: &ConfMap,
    importer: &str,
    context: &Context<'_>,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Option<PendingImport>, ConfError> {
    let mut import: Option<Import> = None;
    let mut prefix = None;
    let mut to: Option<(&MapEntry, String)> = None;
    let mut allow_trace = None;
    let mut share = false;
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            kind @ ("stream" | "service") => {
                let kind = if kind == "stream" {
                    ImportKind::Stream
                } else {
                    ImportKind::Service
                };
                match &import {
                    Some(other) if other.kind != kind && kind == ImportKind::Stream => {
                        return Err(invalid(field, "Detected stream but already saw a service"))
                    }
                    Some(other) if other.kind != kind => {
                        return Err(invalid(field, "Detected service but already saw a stream"))
                    }
                    _ => {}
                }
                let (account, subject) = import_source(field, kind)?;
                import = Some(Import {
                    kind,
                    account,
                    subject,
                    to: None,
                    share: false,
                });
            }
            "prefix" => prefix = Some(string(field)?),
            "to" => to = Some((field, string(field)?)),
            "share" => {
                share = field
                    .value
                    .as_bool()
                    .ok_or_else(|| wrong_type(field, "a boolean"))?;
            }
            "allow_trace" => {
                allow_trace = Some(field);
                unsupported.push(context.unsupported_in("imports", field));
            }
            _ if field.is_referenced() => {}
            _ => return Err(unknown_field(field)),
        }
    }
    let Some(mut import) = import else {
        return Ok(None);
    };
    match import.kind {
        ImportKind::Stream => {
            if let (Some(_), Some((at, _))) = (&prefix, &to) {
                return Err(invalid(
                    at,
                    "Stream import can not have a 'prefix' and a 'to' property",
                ));
            }
        }
        ImportKind::Service => {
            if let Some(at) = allow_trace {
                return Err(invalid(
                    at,
                    "Detected allow_trace directive on a non-stream",
                ));
            }
            // The reference ignores a service import's `prefix`.
            prefix = None;
        }
    }
    import.to = to.map(|(_, to)| to).filter(|to| !to.is_empty());
    // The reference keeps `share` on stream imports too, where it does nothing.
    import.share = share;
    Ok(Some(PendingImport {
        importer: importer.to_string(),
        import,
        prefix: prefix.filter(|p| !p.is_empty()),
    }))
}

/// The `{account, subject}` map of an import.
fn import_source(field: &MapEntry, kind: ImportKind) -> Result<(String, String), ConfError> {
    let parts = field.value.as_map().ok_or_else(|| {
        let what = match kind {
            ImportKind::Stream => "Stream",
            ImportKind::Service => "Service",
        };
        invalid(
            field,
            &format!(
                "{what} entry should be an account map, got {}",
                go_type_name(&field.value)
            ),
        )
    })?;
    let mut account = String::new();
    let mut subject = String::new();
    for part in parts {
        match part.key.to_ascii_lowercase().as_str() {
            "account" => account = string(part)?,
            "subject" => subject = string(part)?,
            _ if part.is_referenced() => {}
            _ => return Err(unknown_field(part)),
        }
    }
    if account.is_empty() || subject.is_empty() {
        return Err(invalid(field, "Expect an account name and a subject"));
    }
    Ok((account, subject))
}

/// The second pass over a block: every account is known now.
fn resolve(
    entry: &MapEntry,
    block: Block,
    security: &mut SecurityOptions,
) -> Result<(), ConfError> {
    let fail = |reason: String| invalid(entry, &reason);
    let known = |security: &SecurityOptions, name: &str| {
        security.accounts.iter().any(|account| account.name == name)
    };
    for kind in [ExportKind::Stream, ExportKind::Service] {
        for (owner, export) in block.exports.iter().filter(|(_, e)| e.kind == kind) {
            for name in export.accounts.iter().flatten() {
                if !known(security, name) {
                    return Err(fail(format!(
                        "\"{name}\" account not defined for {} export",
                        kind_name(kind == ExportKind::Stream)
                    )));
                }
            }
            let account = account_mut(security, owner);
            account
                .exports
                .retain(|e| e.subject != export.subject || e.kind != kind);
            account.exports.push(export.clone());
        }
    }
    for kind in [ImportKind::Stream, ImportKind::Service] {
        for pending in block.imports.iter().filter(|i| i.import.kind == kind) {
            let import = resolve_import(pending, security).map_err(fail)?;
            account_mut(security, &pending.importer)
                .imports
                .push(import);
        }
    }
    Ok(())
}

fn kind_name(stream: bool) -> &'static str {
    if stream {
        "stream"
    } else {
        "service"
    }
}

fn account_mut<'a>(security: &'a mut SecurityOptions, name: &str) -> &'a mut AccountConfig {
    security
        .accounts
        .iter_mut()
        .find(|account| account.name == name)
        .expect("the first pass added every account of the block")
}

fn account<'a>(security: &'a SecurityOptions, name: &str) -> Option<&'a AccountConfig> {
    security
        .accounts
        .iter()
        .find(|account| account.name == name)
}

/// The checks the reference's `addStreamImportWithClaim`,
/// `addMappedStreamImportWithClaim` and `AddServiceImport` make, with their
/// error texts; the import with `to` resolved.
fn resolve_import(pending: &PendingImport, security: &SecurityOptions) -> Result<Import, String> {
    let import = &pending.import;
    let stream = import.kind == ImportKind::Stream;
    let what = kind_name(stream);
    let Some(exporter) = account(security, &import.account) else {
        return Err(format!(
            "\"{}\" account not defined for {what} import",
            import.account
        ));
    };
    let adding = |reason: &str| {
        format!(
            "Error adding {what} import \"{}\": {reason}",
            import.subject
        )
    };
    let mut resolved = import.clone();
    if stream {
        if !is_authorized(
            exporter,
            ExportKind::Stream,
            &import.subject,
            &pending.importer,
        ) {
            return Err(adding("stream import not authorized"));
        }
        if let Some(prefix) = &pending.prefix {
            if !subject_is_literal(prefix.as_bytes()) {
                return Err(adding(
                    "stream import prefix can not contain wildcard tokens",
                ));
            }
            let separator = if prefix.ends_with('.') { "" } else { "." };
            resolved.to = Some(format!("{prefix}{separator}{}", import.subject));
        }
        let to = resolved.local_subject().to_string();
        if import.subject.split('.').any(|t| t == "*" || t == ">") && to != import.subject {
            SubjectTransform::new(&import.subject, &to).map_err(|error| {
                adding(&format!(
                    "failed to create mapping transform for stream import subject from \"{}\" to \"{to}\": {}",
                    import.subject,
                    transform_error_text(&error)
                ))
            })?;
        }
        let importer = account(security, &pending.importer).expect("importer added");
        if importer.imports.iter().any(|i| {
            i.kind == ImportKind::Stream
                && i.account == import.account
                && i.subject == import.subject
        }) {
            return Err(adding("stream import already exists"));
        }
        for subject in [to.as_str(), import.subject.as_str()] {
            let mut visited = BTreeSet::from([pending.importer.clone()]);
            stream_cycle(security, exporter, subject, &mut visited).map_err(&adding)?;
        }
    } else {
        let local = resolved.local_subject().to_string();
        if !is_valid_subject(local.as_bytes()) || !is_valid_subject(import.subject.as_bytes()) {
            return Err(adding("sublist: invalid subject"));
        }
        if !is_authorized(
            exporter,
            ExportKind::Service,
            &import.subject,
            &pending.importer,
        ) {
            return Err(adding("service import not authorized"));
        }
        let mut visited = BTreeSet::from([pending.importer.clone()]);
        service_cycle(security, exporter, &local, &mut visited).map_err(&adding)?;
    }
    Ok(resolved)
}

/// Whether `exporter` lets `importer` import `subject`: an export of that
/// kind on exactly that subject decides; otherwise one whose subject covers
/// it. A missing `accounts` list means anyone.
fn is_authorized(
    exporter: &AccountConfig,
    kind: ExportKind,
    subject: &str,
    importer: &str,
) -> bool {
    if !is_valid_subject(subject.as_bytes()) {
        return false;
    }
    let exports = || exporter.exports.iter().filter(|e| e.kind == kind);
    let allows = |export: &Export| {
        export
            .accounts
            .as_ref()
            .is_none_or(|list| list.iter().any(|name| name == importer))
    };
    if let Some(exact) = exports().find(|e| e.subject == subject) {
        return allows(exact);
    }
    exports()
        .filter(|e| is_subset_match(subject, &e.subject))
        .any(allows)
}

/// The reference's `checkStreamImportsForCycles`: does routing `subject`
/// through `account`'s stream imports come back to an account visited?
fn stream_cycle(
    security: &SecurityOptions,
    account: &AccountConfig,
    subject: &str,
    visited: &mut BTreeSet<String>,
) -> Result<(), &'static str> {
    if visited.len() >= CYCLE_SEARCH_DEPTH_MAX {
        return Err("search cycle depth exhausted");
    }
    let exported = account
        .exports
        .iter()
        .any(|e| e.kind == ExportKind::Stream && is_subset_match(subject, &e.subject));
    if !exported {
        return Ok(());
    }
    for import in account
        .imports
        .iter()
        .filter(|i| i.kind == ImportKind::Stream)
    {
        let local = import.local_subject();
        if !subjects_collide(subject, local) {
            continue;
        }
        if visited.contains(&import.account) {
            return Err("import forms a cycle");
        }
        visited.insert(account.name.clone());
        let next = if is_subset_match(local, subject) {
            local
        } else {
            subject
        };
        if let Some(source) = self::account(security, &import.account) {
            stream_cycle(security, source, next, visited)?;
        }
    }
    Ok(())
}

/// The reference's `checkServiceImportsForCycles`.
fn service_cycle(
    security: &SecurityOptions,
    account: &AccountConfig,
    subject: &str,
    visited: &mut BTreeSet<String>,
) -> Result<(), &'static str> {
    if visited.len() >= CYCLE_SEARCH_DEPTH_MAX {
        return Err("search cycle depth exhausted");
    }
    for import in account
        .imports
        .iter()
        .filter(|i| i.kind == ImportKind::Service)
    {
        if !subjects_collide(subject, &import.subject) {
            continue;
        }
        if visited.contains(&import.account) {
            return Err("import forms a cycle");
        }
        visited.insert(account.name.clone());
        let local = import.local_subject();
        let next = if is_subset_match(local, subject) {
            local
        } else {
            subject
        };
        if let Some(target) = self::account(security, &import.account) {
            service_cycle(security, target, next, visited)?;
        }
    }
    Ok(())
}

/// Top-level `mappings` / `maps`: the global account's. They join an
/// existing `$G` entry (a mapping of the same source replaced).
pub fn parse_global_mappings(
    entry: &MapEntry,
    security: &mut SecurityOptions,
    unsupported: &mut Vec<Unsupported>,
) -> Result<(), ConfError> {
    let mappings = parse_mappings(entry, "", unsupported)?;
    let accounts = &mut security.accounts;
    let global = match accounts.iter().position(|a| a.name == GLOBAL_ACCOUNT) {
        Some(index) => &mut accounts[index],
        None => {
            accounts.push(AccountConfig::new(GLOBAL_ACCOUNT));
            accounts.last_mut().expect("just pushed")
        }
    };
    for mapping in mappings {
        global.mappings.retain(|m| m.source != mapping.source);
        global.mappings.push(mapping);
    }
    Ok(())
}

/// `mappings { "src": "dest" | {destination, weight} | [ {destination, weight}, ... ] }`.
/// A mapping that uses a mapping function rnats does not implement is left
/// out and reported as unsupported.
pub(super) fn parse_mappings(
    entry: &MapEntry,
    unsupported_prefix: &str,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Vec<SubjectMapping>, ConfError> {
    let fields = entry
        .value
        .as_map()
        .ok_or_else(|| wrong_type(entry, "a map"))?;
    let mut mappings = Vec::new();
    for field in fields {
        let source = field.key.as_str();
        if !is_valid_subject(source.as_bytes()) {
            return Err(invalid(
                field,
                &format!("Subject \"{source}\" is not a valid subject"),
            ));
        }
        let (destinations, single) = match &field.value.kind {
            ValueKind::String(destination) => (
                vec![WeightedDestination {
                    subject: destination.clone(),
                    weight: 100,
                    cluster: None,
                }],
                true,
            ),
            ValueKind::Array(items) => (
                items
                    .iter()
                    .map(|item| mapping_destination(field, &item.position, item.as_map()))
                    .collect::<Result<_, _>>()?,
                false,
            ),
            _ => (
                vec![mapping_destination(
                    field,
                    &field.value.position,
                    field.value.as_map(),
                )?],
                false,
            ),
        };
        let adding = |reason: &str| {
            let text = match (&field.value.kind, single) {
                (ValueKind::String(destination), true) => {
                    format!("Error adding mapping for \"{source}\" to \"{destination}\" : {reason}")
                }
                _ => format!("Error adding mapping for \"{source}\" : {reason}"),
            };
            invalid(field, &text)
        };
        match weighted_mapping(source, destinations) {
            Ok(mapping) => mappings.push(mapping),
            Err(MappingError::Invalid(reason)) => return Err(adding(&reason)),
            Err(MappingError::Unsupported) => unsupported.push(Unsupported::new(
                format!("{unsupported_prefix}{}.{source}", entry.key),
                field,
            )),
        }
    }
    Ok(mappings)
}

struct WeightedDestination {
    subject: String,
    weight: u8,
    /// Cluster-scoped destinations apply only in that cluster.
    cluster: Option<String>,
}

enum MappingError {
    Invalid(String),
    /// A mapping function rnats does not implement.
    Unsupported,
}

/// One `{destination, weight, cluster}` entry. The weight is required.
fn mapping_destination(
    field: &MapEntry,
    position: &Position,
    map: Option<&ConfMap>,
) -> Result<WeightedDestination, ConfError> {
    let map = map.ok_or_else(|| {
        invalid_at(
            position,
            &field.key,
            String::from("Expected an entry for the mapping destination"),
        )
    })?;
    let mut subject = String::new();
    let mut weight = None;
    let mut cluster = None;
    for part in map {
        match part.key.to_ascii_lowercase().as_str() {
            "dest" | "destination" => subject = string(part)?,
            "weight" => weight = Some(parse_weight(part)?),
            "cluster" => cluster = Some(string(part)?).filter(|c| !c.is_empty()),
            _ => {
                return Err(invalid(
                    part,
                    &format!("Unknown field \"{}\" for mapping destination", part.key),
                ))
            }
        }
    }
    let weight = weight.ok_or_else(|| {
        invalid_at(
            position,
            &field.key,
            format!("Missing weight for mapping destination \"{subject}\""),
        )
    })?;
    Ok(WeightedDestination {
        subject,
        weight,
        cluster,
    })
}

/// `weight: 50` or `weight: "50%"`, 0 to 100.
fn parse_weight(part: &MapEntry) -> Result<u8, ConfError> {
    let value = match &part.value.kind {
        ValueKind::Integer(n) => *n,
        ValueKind::String(text) => {
            let digits = text.strip_suffix('%').unwrap_or(text);
            digits.parse::<i64>().map_err(|_| {
                invalid(
                    part,
                    &format!("Invalid weight \"{digits}\" for mapping destination"),
                )
            })?
        }
        _ => {
            return Err(invalid(
                part,
                &format!(
                    "Unknown entry type for weight of {}",
                    go_value_text(&part.value)
                ),
            ))
        }
    };
    u8::try_from(value)
        .ok()
        .filter(|weight| *weight <= 100)
        .ok_or_else(|| {
            invalid(
                part,
                &format!("Invalid weight {value} for mapping destination"),
            )
        })
}

/// The reference's `AddWeightedMappings` checks: no destination twice,
/// weights per cluster at most 100 in total, every destination a valid
/// transform of the source. Cluster-scoped destinations are dropped: this
/// server is in no cluster.
fn weighted_mapping(
    source: &str,
    destinations: Vec<WeightedDestination>,
) -> Result<SubjectMapping, MappingError> {
    let mut seen = BTreeSet::new();
    let mut totals = std::collections::BTreeMap::<Option<&str>, u32>::new();
    for destination in &destinations {
        if !seen.insert(destination.subject.as_str()) {
            return Err(MappingError::Invalid(format!(
                "duplicate entry for \"{}\"",
                destination.subject
            )));
        }
        let total = totals.entry(destination.cluster.as_deref()).or_default();
        *total += u32::from(destination.weight);
        if *total > 100 {
            return Err(MappingError::Invalid(String::from(
                "total weight needs to be <= 100",
            )));
        }
        check_destination(source, &destination.subject)?;
    }
    Ok(SubjectMapping {
        source: source.to_string(),
        destinations: destinations
            .into_iter()
            .filter(|d| d.cluster.is_none())
            .map(|d| MappingDestination {
                subject: d.subject,
                weight: d.weight,
            })
            .collect(),
    })
}

/// The reference's `ValidateMapping` followed by building the transform.
fn check_destination(source: &str, destination: &str) -> Result<(), MappingError> {
    if destination.is_empty() {
        // The reference accepts an entry without a destination; what it
        // would map to is unclear, so it is left out.
        return Err(MappingError::Unsupported);
    }
    let invalid_transform = || {
        MappingError::Invalid(String::from(
            "invalid mapping destination: invalid transform",
        ))
    };
    let mut after_full_wildcard = false;
    for token in destination.split('.') {
        if token.is_empty() || after_full_wildcard {
            return Err(invalid_transform());
        }
        if let Some(inner) = token.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
            let name = inner.split('(').next().unwrap_or("").trim();
            let known = inner.contains('(')
                && inner.trim_end().ends_with(')')
                && MAPPING_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str());
            if !known {
                return Err(MappingError::Invalid(format!(
                    "invalid mapping destination: unknown function in {token}"
                )));
            }
            if !name.eq_ignore_ascii_case("wildcard") {
                return Err(MappingError::Unsupported);
            }
            continue;
        }
        if token == "*" {
            // A mapping's destination names wildcards by `$n`.
            return Err(MappingError::Invalid(String::from("invalid subject")));
        }
        after_full_wildcard = token == ">";
        if token.contains([' ', '\t', '\n', '\r', '\x0c']) {
            return Err(invalid_transform());
        }
    }
    match SubjectTransform::new(source, destination) {
        Ok(_) => Ok(()),
        Err(TransformError::UnsupportedFunction(_)) => Err(MappingError::Unsupported),
        Err(error) => Err(MappingError::Invalid(transform_error_text(&error))),
    }
}

/// A transform error in the reference's words.
fn transform_error_text(error: &TransformError) -> String {
    match error {
        TransformError::WildcardOutOfRange { index, .. } => {
            format!("invalid mapping destination: wildcard index out of range in ${index}")
        }
        TransformError::UnsupportedFunction(name) => {
            format!("mapping function {name:?} is not supported by rnats")
        }
        TransformError::InvalidSource(_) | TransformError::UnmatchedFullWildcard(_) => {
            String::from("invalid subject")
        }
        TransformError::InvalidDestination(_) => {
            String::from("invalid mapping destination: invalid transform")
        }
    }
}
