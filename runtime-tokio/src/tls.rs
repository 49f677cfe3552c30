//! TLS for client connections, with rustls (ring provider).
//!
//! The machine in core never sees TLS: it announces it in INFO
//! (`TlsPolicy`) and, under `verify_and_map`, receives the names of a verified
//! client certificate. This module builds the acceptor from the merged
//! settings (the `tls { }` block, or the `--tls*` flags that replace it) and
//! turns a client certificate into those names.
//!
//! Order on the wire, as nats-server: INFO goes out in plain text, then the
//! client starts the handshake; with `handshake_first` the handshake comes
//! first and INFO follows over TLS. Either way the handshake must finish
//! within `timeout`, or the connection is dropped. `handshake_first` with a
//! fallback delay waits that long for the handshake, then sends INFO in plain
//! text and goes on as without it. With `allow_non_tls`, a client whose first
//! bytes after INFO are not a TLS handshake is served in plain text.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

use rnats_core::conf::{FileOptions, TlsConfig};

use crate::flags::CliOptions;

/// The effective TLS settings: core's translation of the `tls { }` block
/// and the `--tls*` flags (paths as written; read here).
pub type TlsSettings = TlsConfig;

/// The flags (`--tls`, `--tlsverify`, `--tlscert`, `--tlskey`,
/// `--tlscacert`) replace the file's `tls { }` block, as in the reference
/// (see [`rnats_core::conf::tls_config`]).
pub fn settings(cli: &CliOptions, file: &FileOptions) -> Result<Option<TlsSettings>, String> {
    rnats_core::conf::tls_config(file, &crate::settings::overrides(cli))
        .map_err(|error| error.to_string())
}

/// A ready acceptor and how to use it.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub settings: TlsSettings,
}

impl Tls {
    pub fn new(settings: TlsSettings) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = read_certs(Path::new(&settings.cert_file))?;
        let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|error| {
            format!(
                "error parsing X509 certificate/key pair: {}: {error}",
                settings.key_file
            )
        })?;
        // rustls speaks TLS 1.2 and 1.3, the reference's default range.
        let versions: &[&rustls::SupportedProtocolVersion] = if settings.require_tls13 {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|error| error.to_string())?;
        let builder = if settings.verify {
            let ca_file = settings
                .ca_file
                .as_ref()
                .ok_or("verify requires a ca_file in the TLS configuration")?;
            let verifier = client_verifier(Arc::new(read_roots(ca_file)?), provider)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|error| format!("error parsing X509 certificate/key pair: {error}"))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            settings,
        })
    }
}

/// The CA certificates of `ca_file` as a root store.
pub(crate) fn read_roots(ca_file: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(Path::new(ca_file))? {
        roots
            .add(cert)
            .map_err(|error| format!("{ca_file}: {error}"))?;
    }
    Ok(roots)
}

/// A verifier requiring a client certificate signed by one of `roots`.
pub(crate) fn client_verifier(
    roots: Arc<RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|error| error.to_string())
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("error parsing certificates in {}: {error}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificates found in {}", path.display()));
    }
    Ok(certs)
}

/// The names a verified client certificate maps to under `verify_and_map`,
/// in the reference's order of preference: email addresses, DNS names and
/// URIs of the subject alternative names, then the subject DN written as Go
/// writes it (`CN=alice,OU=dev,O=acme`: the RDNs last to first).
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for kind in 0..3 {
            for name in &san.value.general_names {
                match (kind, name) {
                    (0, GeneralName::RFC822Name(email)) => names.push(email.to_string()),
                    (1, GeneralName::DNSName(dns)) => names.push(dns.to_string()),
                    (2, GeneralName::URI(uri)) => names.push(uri.to_string()),
                    _ => {}
                }
            }
        }
    }
    // Go's `pkix.Name.String()` lays the standard attributes out in a fixed
    // order (C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER), then
    // the others, and prints that sequence last to first; a certificate's own
    // order is also offered, so a DN written either way maps.
    const CANONICAL: [&str; 9] = [
        "2.5.4.6", "2.5.4.8", "2.5.4.7", "2.5.4.9", "2.5.4.17", "2.5.4.10", "2.5.4.11", "2.5.4.3",
        "2.5.4.5",
    ];
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut as_written: Vec<String> = Vec::new();
    for rdn in parsed.subject().iter() {
        let mut parts = Vec::new();
        for attribute in rdn.iter() {
            let Ok(value) = attribute.as_str() else {
                continue;
            };
            let oid = attribute.attr_type().to_id_string();
            parts.push(format!("{}={}", short_name(&oid), escape_dn(value)));
            attributes.push((oid, value.to_string()));
        }
        if !parts.is_empty() {
            as_written.push(parts.join("+"));
        }
    }
    let mut canonical: Vec<String> = Vec::new();
    for oid in CANONICAL {
        let values: Vec<String> = attributes
            .iter()
            .filter(|(o, _)| o == oid)
            .map(|(_, v)| format!("{}={}", short_name(oid), escape_dn(v)))
            .collect();
        if !values.is_empty() {
            canonical.push(values.join("+"));
        }
    }
    for (oid, value) in &attributes {
        if !CANONICAL.contains(&oid.as_str()) {
            canonical.push(format!("{}={}", short_name(oid), escape_dn(value)));
        }
    }
    canonical.reverse();
    as_written.reverse();
    for dn in [canonical.join(","), as_written.join(",")] {
        if !dn.is_empty() && !names.contains(&dn) {
            names.push(dn);
        }
    }
    names
}

/// The short names Go prints for attribute types; others by OID.
fn short_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.17" => "POSTALCODE",
        "2.5.4.5" => "SERIALNUMBER",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        other => return other.to_string(),
    }
    .to_string()
}

/// RFC 4514 escaping, as Go's `pkix.Name.String` does.
fn escape_dn(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    #[test]
    fn names_in_the_references_order_and_dn_form() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["host.acme.test".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::Rfc822Name("alice@acme.test".try_into().unwrap()));
        params.distinguished_name.push(DnType::CountryName, "US");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "acme");
        params
            .distinguished_name
            .push(DnType::CommonName, "alice, jr");
        let cert = params.self_signed(&key).unwrap();
        let names = certificate_names(cert.der());
        assert_eq!(
            names,
            vec![
                "alice@acme.test".to_string(),
                "host.acme.test".to_string(),
                "CN=alice\\, jr,O=acme,C=US".to_string(),
                "O=acme,C=US,CN=alice\\, jr".to_string(),
            ]
        );
    }
}
