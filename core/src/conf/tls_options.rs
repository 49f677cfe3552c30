//! The `tls { }` block and `allow_non_tls`, with nats-server v2.15.1's keys.
//!
//! Paths are kept as written; the runtime reads the files. Keys the reference
//! knows and rnats does not handle yet are reported as unsupported, never
//! silently accepted.

use std::time::Duration;

use super::options::{boolean, invalid, string, unknown_field, wrong_type, Unsupported};
use super::value::{parse_go_duration, MapEntry, ValueKind};
use super::ConfError;

/// The reference's default TLS handshake timeout.
pub const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOptions {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    /// Require and verify client certificates.
    pub verify: bool,
    /// Verify, and take the user from the certificate.
    pub verify_and_map: bool,
    /// Handshake deadline (`timeout`, seconds or a duration).
    pub timeout: Option<Duration>,
    /// Expect the TLS handshake before INFO.
    pub handshake_first: bool,
    /// With `handshake_first` given as a duration (or `auto`): how long to
    /// wait for the client's handshake before falling back to INFO in plain
    /// text and the usual TLS after INFO. `None`: no fallback.
    pub handshake_first_fallback: Option<Duration>,
    /// `min_version: "1.3"`: refuse TLS 1.2. ("1.2", the reference's and
    /// rnats's floor, changes nothing.)
    pub require_tls13: bool,
}

/// The fallback delay of `handshake_first: auto` (the reference's
/// `DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK_DELAY`).
pub const DEFAULT_HANDSHAKE_FIRST_FALLBACK: Duration = Duration::from_millis(50);

const UNSUPPORTED_TLS_KEYS: &[&str] = &[
    "cipher_suites",
    "curve_preferences",
    "insecure",
    "pinned_certs",
    "cert_store",
    "cert_match",
    "cert_match_by",
    "cert_match_skip_invalid",
    "ca_certs_match",
    "ocsp_peer",
    "certs",
    "connection_rate_limit",
    "verify_cert_and_check_known_urls",
];

pub fn parse_tls(
    entry: &MapEntry,
    unsupported: &mut Vec<Unsupported>,
) -> Result<TlsOptions, ConfError> {
    let fields = entry
        .value
        .as_map()
        .ok_or_else(|| wrong_type(entry, "a map"))?;
    let mut tls = TlsOptions::default();
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "cert_file" => tls.cert_file = Some(string(field)?),
            "key_file" => tls.key_file = Some(string(field)?),
            "ca_file" => tls.ca_file = Some(string(field)?),
            "verify" => tls.verify = boolean(field)?,
            "verify_and_map" => {
                tls.verify_and_map = boolean(field)?;
                tls.verify |= tls.verify_and_map;
            }
            "timeout" => {
                let seconds = match &field.value.kind {
                    ValueKind::Integer(n) => *n as f64,
                    ValueKind::Float(f) => *f,
                    ValueKind::String(text) => parse_go_duration(text)
                        .map(|nanos| nanos as f64 / 1e9)
                        .map_err(|error| {
                            invalid(
                                field,
                                &format!("error parsing tls config, 'timeout' {error}"),
                            )
                        })?,
                    _ => return Err(wrong_type(field, "a number or a duration")),
                };
                if !(seconds.is_finite() && seconds >= 0.0) {
                    return Err(invalid(
                        field,
                        "error parsing tls config, 'timeout' out of range",
                    ));
                }
                tls.timeout = Some(Duration::from_secs_f64(seconds));
            }
            "handshake_first" | "first" | "immediate" => {
                (tls.handshake_first, tls.handshake_first_fallback) = handshake_first(field)?;
            }
            "min_version" => tls.require_tls13 = min_version_is_tls13(field)?,
            key if UNSUPPORTED_TLS_KEYS.contains(&key) => unsupported.push(Unsupported::new(
                format!("{}.{}", entry.key, field.key),
                field,
            )),
            _ => return Err(unknown_field(field)),
        }
    }
    if tls.cert_file.is_none() != tls.key_file.is_none() {
        return Err(invalid(
            entry,
            "missing 'cert_file' or 'key_file' in TLS configuration",
        ));
    }
    Ok(tls)
}

/// `min_version`: "1.2" or "1.3" (whether TLS 1.3 is required); "1.0" and
/// "1.1" are refused, as the reference refuses them.
fn min_version_is_tls13(field: &MapEntry) -> Result<bool, ConfError> {
    let fail = |why: String| invalid(field, &format!("error parsing tls config: {why}"));
    let ValueKind::String(version) = &field.value.kind else {
        return Err(fail(String::from("'min_version' wrong type")));
    };
    match version.as_str() {
        "1.2" => Ok(false),
        "1.3" => Ok(true),
        "1.0" | "1.1" => Err(fail(format!("unsupported TLS version: TLS {version}"))),
        _ => Err(fail(format!("unknown version: {version}"))),
    }
}

/// `handshake_first`: a boolean, or a string: `true`/`on`, `false`/`off`,
/// `auto`/`auto_fallback` (the default fallback delay) or a duration (that
/// fallback delay; zero means none).
fn handshake_first(field: &MapEntry) -> Result<(bool, Option<Duration>), ConfError> {
    let text = match &field.value.kind {
        ValueKind::Bool(on) => return Ok((*on, None)),
        ValueKind::String(text) => text,
        other => {
            return Err(invalid(
                field,
                &format!(
                    "field \"{}\" should be a boolean or a string, got {}",
                    field.key,
                    other.type_name()
                ),
            ))
        }
    };
    match text.to_ascii_lowercase().as_str() {
        "true" | "on" => return Ok((true, None)),
        "false" | "off" => return Ok((false, None)),
        "auto" | "auto_fallback" => return Ok((true, Some(DEFAULT_HANDSHAKE_FIRST_FALLBACK))),
        _ => {}
    }
    match parse_go_duration(text) {
        // A negative delay, like zero, means no fallback (the reference
        // only falls back after a strictly positive delay).
        Ok(nanos) => {
            let delay = u64::try_from(nanos).ok().filter(|n| *n > 0);
            Ok((true, delay.map(Duration::from_nanos)))
        }
        Err(_) => Err(invalid(
            field,
            &format!("field \"{}\"'s value \"{text}\" is invalid", field.key),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load_options, NoSource};
    use super::*;

    #[test]
    fn the_tls_block() {
        let (options, unsupported) = load_options(
            "t.conf",
            "tls { cert_file: a.pem, key_file: a.key, ca_file: ca.pem, verify_and_map: true, timeout: 0.5, handshake_first: true, cipher_suites: [] }\nallow_non_tls: false",
            &NoSource,
        )
        .expect("valid");
        let tls = options.tls.expect("tls set");
        assert_eq!(tls.cert_file.as_deref(), Some("a.pem"));
        assert!(tls.verify && tls.verify_and_map && tls.handshake_first);
        assert_eq!(tls.timeout, Some(Duration::from_millis(500)));
        assert_eq!(options.allow_non_tls, Some(false));
        assert_eq!(unsupported[0].key, "tls.cipher_suites");
        assert_eq!(tls.handshake_first_fallback, None);
        let error = load_options("t.conf", "tls { cert_file: a.pem }", &NoSource).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("missing 'cert_file' or 'key_file'"),
            "{error}"
        );
    }

    #[test]
    fn handshake_first_with_a_fallback_delay() {
        let read = |value: &str| {
            let text = format!("tls {{ cert_file: a, key_file: b, handshake_first: {value} }}");
            load_options("t.conf", &text, &NoSource).map(|(options, _)| {
                let tls = options.tls.expect("tls set");
                (tls.handshake_first, tls.handshake_first_fallback)
            })
        };
        assert_eq!(read("true").unwrap(), (true, None));
        assert_eq!(read("\"on\"").unwrap(), (true, None));
        assert_eq!(read("\"off\"").unwrap(), (false, None));
        assert_eq!(
            read("300ms").unwrap(),
            (true, Some(Duration::from_millis(300)))
        );
        assert_eq!(
            read("auto").unwrap(),
            (true, Some(DEFAULT_HANDSHAKE_FIRST_FALLBACK))
        );
        assert_eq!(read("\"0s\"").unwrap(), (true, None));
        let error = read("\"soon\"").unwrap_err().to_string();
        assert!(
            error.ends_with("field \"handshake_first\"'s value \"soon\" is invalid"),
            "{error}"
        );
    }

    #[test]
    fn min_version() {
        let read = |value: &str| {
            let text = format!("tls {{ cert_file: a, key_file: b, min_version: {value} }}");
            load_options("t.conf", &text, &NoSource)
                .map(|(options, _)| options.tls.expect("tls set").require_tls13)
                .map_err(|error| error.to_string())
        };
        assert_eq!(read("\"1.2\""), Ok(false));
        assert_eq!(read("\"1.3\""), Ok(true));
        assert_eq!(
            read("\"1.1\""),
            Err(String::from(
                "t.conf:1:34: error parsing tls config: unsupported TLS version: TLS 1.1"
            ))
        );
        assert!(read("\"2\"").unwrap_err().ends_with("unknown version: 2"));
    }
}
