//! The two JSON documents of the client protocol: the client's CONNECT
//! options and the server's INFO.
//!
//! Input: a CONNECT or INFO argument as raw bytes; output: [`ConnectOptions`],
//! or a validation verdict for an INFO a client sent. [`ServerInfo`] goes the
//! other way, serialized with the reference's field names, order, omissions
//! and string escaping, so an INFO line is byte-identical to nats-server's
//! for the same values.
//!
//! The reference decodes JSON with Go's rules, and clients can tell, because a
//! decoding error closes the connection. Those rules, kept here: keys match
//! field names case-insensitively; a repeated key is applied again, in order;
//! `null` (for a field or the whole document) leaves a value as it was; a
//! value of the wrong type is an error; unknown keys are skipped (but must be
//! valid JSON). Before any CONNECT a client's options are the defaults below
//! (`verbose`, `pedantic` and `echo` on), and a CONNECT is applied on top of
//! the options the connection already has.

use core::fmt;
use std::io;

use bytes::{BufMut, BytesMut};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The newest client protocol version the reference accepts in CONNECT; a
/// `protocol` outside `0..=CLIENT_PROTOCOL_MAX` gets `-ERR 'invalid client protocol'`.
pub const CLIENT_PROTOCOL_MAX: i64 = 1;

/// A CONNECT argument the reference would fail to decode (it then closes the
/// connection without an -ERR).
#[derive(Debug, thiserror::Error)]
#[error("invalid CONNECT JSON: {0}")]
pub struct ConnectJsonError(#[from] serde_json::Error);

/// A client's CONNECT options. `Debug` redacts the secrets (token, password,
/// JWT), so the options can be logged.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ConnectOptions {
    pub verbose: bool,
    pub pedantic: bool,
    pub tls_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub protocol: i64,
    pub echo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    pub headers: bool,
    pub no_responders: bool,
    /// The reference treats a non-empty `account` (or `new_account`) as an
    /// authorization violation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "core::ops::Not::not")]
    pub new_account: bool,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("ConnectOptions")
            .field("verbose", &self.verbose)
            .field("pedantic", &self.pedantic)
            .field("tls_required", &self.tls_required)
            .field("auth_token", &redacted(&self.auth_token))
            .field("user", &self.user)
            .field("pass", &redacted(&self.pass))
            .field("name", &self.name)
            .field("lang", &self.lang)
            .field("version", &self.version)
            .field("protocol", &self.protocol)
            .field("echo", &self.echo)
            .field("sig", &self.sig)
            .field("jwt", &redacted(&self.jwt))
            .field("nkey", &self.nkey)
            .field("headers", &self.headers)
            .field("no_responders", &self.no_responders)
            .field("account", &self.account)
            .field("new_account", &self.new_account)
            .finish()
    }
}

impl Default for ConnectOptions {
    /// What the reference assumes before, and under, a client's CONNECT.
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            tls_required: false,
            auth_token: None,
            user: None,
            pass: None,
            name: None,
            lang: None,
            version: None,
            protocol: 0,
            echo: true,
            sig: None,
            jwt: None,
            nkey: None,
            headers: false,
            no_responders: false,
            account: None,
            new_account: false,
        }
    }
}

impl ConnectOptions {
    /// The defaults with `json` applied: a first CONNECT.
    pub fn from_json(json: &[u8]) -> Result<Self, ConnectJsonError> {
        let mut options = ConnectOptions::default();
        options.apply_json(json)?;
        Ok(options)
    }

    /// Applies a CONNECT on top of these options, as the reference does for a
    /// second CONNECT on the same connection. On error `self` may be partly
    /// updated; the connection is closing anyway.
    pub fn apply_json(&mut self, json: &[u8]) -> Result<(), ConnectJsonError> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        GoDecode(self).deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(())
    }

    /// Whether `protocol` is one the reference accepts.
    pub fn protocol_supported(&self) -> bool {
        (0..=CLIENT_PROTOCOL_MAX).contains(&self.protocol)
    }
}

impl<'de> Deserialize<'de> for ConnectOptions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut options = ConnectOptions::default();
        GoDecode(&mut options).deserialize(deserializer)?;
        Ok(options)
    }
}

#[derive(Debug, Clone, Copy)]
enum ConnectField {
    Verbose,
    Pedantic,
    TlsRequired,
    AuthToken,
    User,
    Pass,
    Name,
    Lang,
    Version,
    Protocol,
    Echo,
    Sig,
    Jwt,
    Nkey,
    Headers,
    NoResponders,
    Account,
    NewAccount,
    /// Known to the reference and type-checked, but of no use to a client connection.
    Ignored,
}

impl GoStruct for ConnectOptions {
    type Field = ConnectField;

    fn field(key: &str) -> Option<(ConnectField, GoType)> {
        use ConnectField as F;
        const FIELDS: &[(&str, ConnectField, GoType)] = &[
            ("echo", F::Echo, GoType::Bool),
            ("verbose", F::Verbose, GoType::Bool),
            ("pedantic", F::Pedantic, GoType::Bool),
            ("tls_required", F::TlsRequired, GoType::Bool),
            ("nkey", F::Nkey, GoType::Str),
            ("jwt", F::Jwt, GoType::Str),
            ("sig", F::Sig, GoType::Str),
            ("auth_token", F::AuthToken, GoType::Str),
            ("user", F::User, GoType::Str),
            ("pass", F::Pass, GoType::Str),
            ("name", F::Name, GoType::Str),
            ("lang", F::Lang, GoType::Str),
            ("version", F::Version, GoType::Str),
            ("protocol", F::Protocol, GoType::INT),
            ("account", F::Account, GoType::Str),
            ("new_account", F::NewAccount, GoType::Bool),
            ("headers", F::Headers, GoType::Bool),
            ("no_responders", F::NoResponders, GoType::Bool),
            ("import", F::Ignored, GoType::SubjectPermission),
            ("export", F::Ignored, GoType::SubjectPermission),
            ("remote_account", F::Ignored, GoType::Str),
            ("proxy_sig", F::Ignored, GoType::Str),
        ];
        FIELDS
            .iter()
            .find(|(name, _, _)| go_key_matches(key, name))
            .map(|(_, field, ty)| (*field, *ty))
    }

    fn set(&mut self, field: ConnectField, value: Value) {
        use ConnectField as F;
        let flag = value.as_bool().unwrap_or_default();
        let text = || value.as_str().map(str::to_owned);
        match field {
            F::Verbose => self.verbose = flag,
            F::Pedantic => self.pedantic = flag,
            F::TlsRequired => self.tls_required = flag,
            F::Echo => self.echo = flag,
            F::Headers => self.headers = flag,
            F::NoResponders => self.no_responders = flag,
            F::NewAccount => self.new_account = flag,
            F::AuthToken => self.auth_token = text(),
            F::User => self.user = text(),
            F::Pass => self.pass = text(),
            F::Name => self.name = text(),
            F::Lang => self.lang = text(),
            F::Version => self.version = text(),
            F::Sig => self.sig = text(),
            F::Jwt => self.jwt = text(),
            F::Nkey => self.nkey = text(),
            F::Account => self.account = text(),
            F::Protocol => self.protocol = value.as_i64().unwrap_or_default(),
            F::Ignored => {}
        }
    }
}

/// The INFO document, fields in the reference's order. Empty strings, false
/// flags, zero ids and empty lists marked "omitted" are left out, as the
/// reference's `omitempty` does; `headers` and `max_payload` are always present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub git_commit: String,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_verify: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_available: bool,
    pub max_payload: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub jetstream: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub client_id: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(skip_serializing_if = "is_false")]
    pub cluster_dynamic: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ws_connect_urls: Vec<String>,
    /// Lame duck mode.
    #[serde(skip_serializing_if = "is_false")]
    pub ldm: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub compression: String,
    /// Set on the INFO that answers a client's first PING after CONNECT.
    #[serde(skip_serializing_if = "is_false")]
    pub connect_info: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_account: String,
    #[serde(skip_serializing_if = "is_false")]
    pub acc_is_sys: bool,
    /// JetStream API level; the reference (v2.15.1) sends 5 even without JetStream.
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub api_lvl: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub xkey: String,
}

impl ServerInfo {
    /// The JSON object alone, appended to `out`, escaped as the reference escapes.
    pub fn write_json(&self, out: &mut BytesMut) {
        let mut serializer = serde_json::Serializer::with_formatter(out.writer(), GoFormatter);
        self.serialize(&mut serializer)
            .expect("serializing plain data into memory cannot fail");
    }

    /// The JSON object alone, as a string.
    pub fn to_json(&self) -> String {
        let mut out = BytesMut::new();
        self.write_json(&mut out);
        String::from_utf8(out.to_vec()).expect("serde_json writes UTF-8")
    }
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_zero_i32(value: &i32) -> bool {
    *value == 0
}

/// Checks an INFO argument a client sent the way the reference decodes it:
/// `Err` carries the reason, and the reference then closes the connection.
pub fn validate_info(json: &[u8]) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    GoDecode(&mut InfoCheck)
        .deserialize(&mut deserializer)
        .map_err(|error| error.to_string())?;
    deserializer.end().map_err(|error| error.to_string())
}

/// Decodes nothing; only type-checks the INFO fields the reference knows.
struct InfoCheck;

impl GoStruct for InfoCheck {
    type Field = ();

    fn field(key: &str) -> Option<((), GoType)> {
        const BYTE: GoType = GoType::Int {
            min: 0,
            max: u8::MAX as i64,
        };
        const INT32: GoType = GoType::Int {
            min: i32::MIN as i64,
            max: i32::MAX as i64,
        };
        const FIELDS: &[(&str, GoType)] = &[
            ("server_id", GoType::Str),
            ("server_name", GoType::Str),
            ("version", GoType::Str),
            ("proto", GoType::INT),
            ("git_commit", GoType::Str),
            ("go", GoType::Str),
            ("host", GoType::Str),
            ("port", GoType::INT),
            ("headers", GoType::Bool),
            ("auth_required", GoType::Bool),
            ("tls_required", GoType::Bool),
            ("tls_verify", GoType::Bool),
            ("tls_available", GoType::Bool),
            ("max_payload", INT32),
            ("jetstream", GoType::Bool),
            ("ip", GoType::Str),
            ("client_id", GoType::Uint64),
            ("client_ip", GoType::Str),
            ("nonce", GoType::Str),
            ("cluster", GoType::Str),
            ("cluster_dynamic", GoType::Bool),
            ("domain", GoType::Str),
            ("connect_urls", GoType::StrList),
            ("ws_connect_urls", GoType::StrList),
            ("ldm", GoType::Bool),
            ("compression", GoType::Str),
            ("connect_info", GoType::Bool),
            ("remote_account", GoType::Str),
            ("acc_is_sys", GoType::Bool),
            ("api_lvl", GoType::INT),
            ("import", GoType::SubjectPermission),
            ("export", GoType::SubjectPermission),
            ("lnoc", GoType::Bool),
            ("lnocu", GoType::Bool),
            ("info_on_connect", GoType::Bool),
            ("route_pool_size", GoType::INT),
            ("route_pool_idx", GoType::INT),
            ("route_account", GoType::Str),
            ("route_acc_add_reqid", GoType::Str),
            ("gossip_mode", BYTE),
            ("gateway", GoType::Str),
            ("gateway_urls", GoType::StrList),
            ("gateway_url", GoType::Str),
            ("gateway_cmd", BYTE),
            ("gateway_cmd_payload", GoType::Base64),
            ("gateway_nrp", GoType::Bool),
            ("gateway_iom", GoType::Bool),
            ("leafnode_urls", GoType::StrList),
            ("xkey", GoType::Str),
        ];
        FIELDS
            .iter()
            .find(|(name, _)| go_key_matches(key, name))
            .map(|(_, ty)| ((), *ty))
    }

    fn set(&mut self, _field: (), _value: Value) {}
}

/// What a Go field of the reference accepts from JSON (besides `null`).
#[derive(Debug, Clone, Copy)]
enum GoType {
    Bool,
    Str,
    /// A JSON integer literal (no fraction, no exponent) within the range.
    Int {
        min: i64,
        max: i64,
    },
    Uint64,
    StrList,
    /// `{"allow": [..], "deny": [..]}`
    SubjectPermission,
    /// Go's `[]byte`: a standard, padded base64 string.
    Base64,
}

impl GoType {
    const INT: GoType = GoType::Int {
        min: i64::MIN,
        max: i64::MAX,
    };

    /// Whether Go would store `value` (not `null`) in a field of this type.
    fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (GoType::Bool, Value::Bool(_)) | (GoType::Str, Value::String(_)) => true,
            (GoType::Int { min, max }, Value::Number(number)) => number
                .as_i64()
                .is_some_and(|number| (min..=max).contains(&number)),
            (GoType::Uint64, Value::Number(number)) => number.as_u64().is_some(),
            (GoType::StrList, Value::Array(items)) => items
                .iter()
                .all(|item| matches!(item, Value::Null | Value::String(_))),
            (GoType::SubjectPermission, Value::Object(fields)) => {
                fields.iter().all(|(key, value)| {
                    let known = ["allow", "deny"]
                        .iter()
                        .any(|name| go_key_matches(key, name));
                    !known || value.is_null() || GoType::StrList.accepts(value)
                })
            }
            (GoType::Base64, Value::String(text)) => is_padded_base64(text),
            _ => false,
        }
    }
}

fn is_padded_base64(text: &str) -> bool {
    // Go's decoder skips line breaks inside base64.
    let symbols: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    if !symbols.len().is_multiple_of(4) {
        return false;
    }
    let padding = symbols.iter().rev().take_while(|b| **b == b'=').count();
    padding <= 2
        && symbols[..symbols.len() - padding]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Go's rule for matching a JSON key to a field name: equal under Unicode
/// simple case folding. The names are ASCII, and the only non-ASCII
/// characters that fold onto ASCII letters are KELVIN SIGN (k) and LONG S (s).
fn go_key_matches(key: &str, name: &str) -> bool {
    let mut expected = name.bytes();
    for ch in key.chars() {
        let folded = match ch {
            '\u{212A}' => 'k',
            '\u{17F}' => 's',
            ch if ch.is_ascii() => ch.to_ascii_lowercase(),
            _ => return false,
        };
        if expected.next() != Some(folded as u8) {
            return false;
        }
    }
    expected.next().is_none()
}

/// A Go struct as the decoder sees it: which keys it knows, with what type.
trait GoStruct {
    type Field: Copy;
    fn field(key: &str) -> Option<(Self::Field, GoType)>;
    /// Stores a value already checked against the field's type, never `null`.
    fn set(&mut self, field: Self::Field, value: Value);
}

/// Decodes a JSON document onto an existing value with Go's rules.
struct GoDecode<'a, T>(&'a mut T);

impl<'de, T: GoStruct> DeserializeSeed<'de> for GoDecode<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: GoStruct> Visitor<'de> for GoDecode<'_, T> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let Some((field, ty)) = T::field(&key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value: Value = map.next_value()?;
            if value.is_null() {
                continue;
            }
            if !ty.accepts(&value) {
                return Err(de::Error::custom(format_args!(
                    "cannot decode {value} into field {key:?}"
                )));
            }
            self.0.set(field, value);
        }
        Ok(())
    }
}

/// serde_json's compact output plus the escapes Go's encoder adds for HTML
/// safety (`<`, `>`, `&`) and for JavaScript (U+2028, U+2029).
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (index, ch) in fragment.char_indices() {
            let escape: &[u8] = match ch {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            writer.write_all(escape)?;
            start = index + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> Result<ConnectOptions, ConnectJsonError> {
        ConnectOptions::from_json(json.as_bytes())
    }

    #[test]
    fn defaults_are_the_references_before_connect() {
        let defaults = ConnectOptions::default();
        assert!(defaults.verbose && defaults.pedantic && defaults.echo);
        assert!(!defaults.headers && !defaults.no_responders && !defaults.tls_required);
        assert_eq!(options("{}").expect("valid"), defaults);
        // The reference accepts `CONNECT null` and changes nothing.
        assert_eq!(options("null").expect("valid"), defaults);
    }

    #[test]
    fn typical_client_connect() {
        let json = r#"{"verbose":false,"pedantic":false,"tls_required":false,"name":"svc","lang":"go",
            "version":"1.41.0","protocol":1,"echo":true,"headers":true,"no_responders":true,
            "user":"a","pass":"b","extra":{"nested":[1,2,{"x":null}]}}"#;
        let parsed = options(json).expect("valid");
        assert!(!parsed.verbose && !parsed.pedantic);
        assert!(parsed.headers && parsed.no_responders && parsed.echo);
        assert_eq!(parsed.name.as_deref(), Some("svc"));
        assert_eq!(parsed.user.as_deref(), Some("a"));
        assert_eq!(parsed.pass.as_deref(), Some("b"));
        assert_eq!(parsed.protocol, 1);
        assert!(parsed.protocol_supported());
        // serde entry point, as the server uses it, agrees.
        let via_serde: ConnectOptions = serde_json::from_str(json).expect("valid");
        assert_eq!(via_serde, parsed);
    }

    #[test]
    fn go_decoding_rules() {
        // Keys match case-insensitively, including Go's two non-ASCII folds.
        assert!(!options(r#"{"VERBOSE":false}"#).expect("valid").verbose);
        assert_eq!(
            options(r#"{"ſig":"x"}"#).expect("valid").sig.as_deref(),
            Some("x")
        );
        assert_eq!(
            options(r#"{"\u212Aey":"x","nKey":"y"}"#)
                .expect("valid")
                .nkey
                .as_deref(),
            Some("y")
        );
        // Repeated keys apply in order; null leaves the value alone.
        assert!(
            options(r#"{"verbose":false,"Verbose":true}"#)
                .expect("valid")
                .verbose
        );
        assert!(options(r#"{"verbose":null}"#).expect("valid").verbose);
        // Wrong types, non-integers and non-objects are errors (the reference closes).
        for bad in [
            r#"{"verbose":"x"}"#,
            r#"{"protocol":1.0}"#,
            r#"{"protocol":1e2}"#,
            r#"{"protocol":18446744073709551615}"#,
            r#"{"name":5}"#,
            r#"{"import":5}"#,
            r#"{"import":{"allow":5}}"#,
            r#"{"ſig":3}"#,
            "[]",
            "5",
            "",
            "{bad",
            r#"{"verbose":false} junk"#,
        ] {
            assert!(options(bad).is_err(), "{bad} must be rejected");
        }
        // Trailing blanks are fine.
        assert!(options("{} \t ").is_ok());
        // A negative protocol decodes; it is the server that rejects it.
        let negative = options(r#"{"protocol":-1}"#).expect("valid");
        assert!(!negative.protocol_supported());
    }

    #[test]
    fn second_connect_applies_on_top() {
        let mut current = options(r#"{"verbose":false,"name":"a"}"#).expect("valid");
        current.apply_json(br#"{"echo":false}"#).expect("valid");
        assert!(!current.verbose && !current.echo);
        assert_eq!(current.name.as_deref(), Some("a"));
    }

    #[test]
    fn client_info_validation() {
        for good in [
            "{}",
            "null",
            r#"{"port":4222,"connect_urls":["a",null],"import":{"allow":["x"]}}"#,
        ] {
            assert_eq!(validate_info(good.as_bytes()), Ok(()), "{good}");
        }
        for bad in [
            r#"{"port":"x"}"#,
            r#"{"port":1.5}"#,
            r#"{"max_payload":99999999999}"#,
            r#"{"connect_urls":[1]}"#,
            r#"{"gossip_mode":300}"#,
            r#"{"import":5}"#,
            r#"{"import":{"allow":5}}"#,
            r#"{"client_id":-1}"#,
            r#"{"gateway_cmd_payload":"!!"}"#,
            "{bad",
        ] {
            assert!(
                validate_info(bad.as_bytes()).is_err(),
                "{bad} must be rejected"
            );
        }
        assert_eq!(validate_info(br#"{"gateway_cmd_payload":"aGk="}"#), Ok(()));
    }

    fn reference_like_info() -> ServerInfo {
        ServerInfo {
            server_id: "NCP27DGXBB7HWUZP6FPIUOUAK46QLM3FJ5R76UNP32PNVM33J4WQL65Y".into(),
            server_name: "NCP27DGXBB7HWUZP6FPIUOUAK46QLM3FJ5R76UNP32PNVM33J4WQL65Y".into(),
            version: "2.15.1".into(),
            proto: 1,
            git_commit: "b2fd3ef".into(),
            go: "go1.27.2".into(),
            host: "0.0.0.0".into(),
            port: 14223,
            headers: true,
            max_payload: 1_048_576,
            client_id: 5,
            client_ip: "127.0.0.1".into(),
            api_lvl: 5,
            xkey: "XCDRQIR5767RBQZRS4LQODNM72JPTUFZXNGVOCOSQM7MVCBLDUXWEW26".into(),
            ..ServerInfo::default()
        }
    }

    #[test]
    fn info_matches_the_reference_shape() {
        // Captured from nats-server v2.15.1 (`-p 14223`), ids kept verbatim.
        let info = reference_like_info();
        assert_eq!(
            info.to_json(),
            r#"{"server_id":"NCP27DGXBB7HWUZP6FPIUOUAK46QLM3FJ5R76UNP32PNVM33J4WQL65Y","server_name":"NCP27DGXBB7HWUZP6FPIUOUAK46QLM3FJ5R76UNP32PNVM33J4WQL65Y","version":"2.15.1","proto":1,"git_commit":"b2fd3ef","go":"go1.27.2","host":"0.0.0.0","port":14223,"headers":true,"max_payload":1048576,"client_id":5,"client_ip":"127.0.0.1","api_lvl":5,"xkey":"XCDRQIR5767RBQZRS4LQODNM72JPTUFZXNGVOCOSQM7MVCBLDUXWEW26"}"#
        );
        // With `--user a --pass b`, `auth_required` sits between headers and max_payload.
        let with_auth = ServerInfo {
            auth_required: true,
            ..reference_like_info()
        };
        assert!(with_auth
            .to_json()
            .contains(r#""headers":true,"auth_required":true,"max_payload":1048576,"#));
        let mut line = BytesMut::new();
        crate::protocol::write_info(&mut line, &with_auth);
        assert!(line.starts_with(b"INFO {\"server_id\":"));
        assert!(line.ends_with(b"} \r\n"));
        insta::assert_snapshot!(String::from_utf8(line.to_vec()).expect("UTF-8"));
    }

    #[test]
    fn info_strings_are_escaped_like_go() {
        let info = ServerInfo {
            server_name: "a<b>&c\u{2028}\u{2029}\"\\\n\u{1}\u{8}é".into(),
            ..ServerInfo::default()
        };
        let json = info.to_json();
        assert!(
            json.contains(r#""server_name":"a\u003cb\u003e\u0026c\u2028\u2029\"\\\n\u0001\bé""#),
            "{json}"
        );
        let back: ServerInfo = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, info);
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let options = ConnectOptions::from_json(
            br#"{"user":"u","pass":"hunter2","auth_token":"t0k3n","jwt":"eyJ.secret"}"#,
        )
        .expect("valid CONNECT");
        let shown = format!("{options:?}");
        for secret in ["hunter2", "t0k3n", "eyJ.secret"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("\"u\""));
    }
}
