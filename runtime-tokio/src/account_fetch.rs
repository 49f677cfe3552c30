//! The URL resolver's fetches: an HTTP GET of an account's JWT
//! (`<base><account key>`), as the machine asks for them
//! (`Server::take_account_fetches`), with hyper's HTTP/1 client.
//!
//! The answer is the body of a `200` response; anything else is an error
//! in the reference's words (`could not fetch <"url">: <why>`, the URL's
//! password redacted). The whole exchange is bounded by
//! `ACCOUNT_FETCH_TIMEOUT` and the body by `MAX_JWT_BYTES`, so a slow or
//! endless server costs one task for at most that long. An `https` URL is
//! fetched over TLS (tokio-rustls): the server's certificate must chain to
//! `resolver_tls`'s `ca_file`, or to the system's roots without one (as
//! Go's HTTP client), and `resolver_tls`'s certificate is shown when set.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rnats_core::auth::{AccountFetch, ResolverTls, ACCOUNT_FETCH_TIMEOUT};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, ServerName};

/// An account JWT larger than this is refused (the reference reads any
/// size; a JWT is a few KiB).
const MAX_JWT_BYTES: usize = 4 << 20;

/// Fetch one account JWT (within [`ACCOUNT_FETCH_TIMEOUT`]).
pub async fn fetch(request: &AccountFetch) -> Result<String, String> {
    let shown = redacted(&request.url);
    let failed = |why: String| format!("could not fetch <{shown:?}>: {why}");
    let exchange = get(&request.url, request.tls.as_ref(), &shown);
    match tokio::time::timeout(ACCOUNT_FETCH_TIMEOUT, exchange).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(Fail::Fetch(why))) => Err(failed(why)),
        Ok(Err(Fail::Body(why))) => Err(why),
        Err(_) => Err(failed(format!(
            "Get {shown:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))),
    }
}

/// Fetch one account JWT from outside a tokio runtime (at start-up, while
/// the configuration is read): on a thread of its own, with a runtime of
/// its own.
pub fn fetch_blocking(request: &AccountFetch) -> Result<String, String> {
    let request = request.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("cannot fetch {:?}: {error}", request.url))?;
        runtime.block_on(fetch(&request))
    })
    .join()
    .unwrap_or_else(|_| Err(String::from("account fetch panicked")))
}

enum Fail {
    /// Before a response: wrapped in `could not fetch <url>:`.
    Fetch(String),
    /// Reading the body of a `200` (the reference returns that error as is).
    Body(String),
}

async fn get(url: &str, tls: Option<&ResolverTls>, shown: &str) -> Result<String, Fail> {
    let uri: Uri = url
        .parse()
        .map_err(|_| Fail::Fetch(format!("Get {shown:?}: unsupported protocol scheme \"\"")))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        other => {
            return Err(Fail::Fetch(format!(
                "Get {shown:?}: unsupported protocol scheme {:?}",
                other.unwrap_or("")
            )))
        }
    };
    let host = uri.host().unwrap_or("").to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let address = format!("{host}:{port}");
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|error| {
            Fail::Fetch(format!(
                "Get {shown:?}: dial tcp {address}: connect: {}",
                crate::logging::os_error_text(&error)
            ))
        })?;
    if !https {
        return exchange(TokioIo::new(stream), &uri, shown).await;
    }
    let connector =
        connector(tls).map_err(|error| Fail::Fetch(format!("Get {shown:?}: {error}")))?;
    let name = ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_owned())
        .map_err(|error| Fail::Fetch(format!("Get {shown:?}: {error}")))?;
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|error| Fail::Fetch(format!("Get {shown:?}: tls: {error}")))?;
    exchange(TokioIo::new(stream), &uri, shown).await
}

/// The TLS client for an `https` account server.
fn connector(tls: Option<&ResolverTls>) -> Result<tokio_rustls::TlsConnector, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let roots = match tls.and_then(|tls| tls.ca_file.as_deref()) {
        Some(ca_file) => crate::tls::read_roots(ca_file)?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot use is skipped, as Go skips it.
                let _ = roots.add(cert);
            }
            roots
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots);
    let config = match tls.and_then(|tls| tls.cert_file.as_deref().zip(tls.key_file.as_deref())) {
        Some((cert_file, key_file)) => {
            let certs = crate::tls::read_certs(std::path::Path::new(cert_file))?;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| {
                format!("error parsing X509 certificate/key pair: {key_file}: {error}")
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|error| format!("error parsing X509 certificate/key pair: {error}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// One GET over a connected stream (plain or TLS).
async fn exchange<T>(io: TokioIo<T>, uri: &Uri, shown: &str) -> Result<String, Fail>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|error| Fail::Fetch(format!("Get {shown:?}: {error}")))?;
    // Drives the connection; it ends when the exchange does.
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::get(path)
        .header(
            hyper::header::HOST,
            uri.authority().map_or("", |a| a.as_str()),
        )
        .header(hyper::header::USER_AGENT, "Go-http-client/1.1")
        .body(Empty::<Bytes>::new())
        .map_err(|error| Fail::Fetch(format!("Get {shown:?}: {error}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| Fail::Fetch(format!("Get {shown:?}: {error}")))?;
    let status = response.status();
    if status != hyper::StatusCode::OK {
        // Go's `resp.Status`: the code and its reason phrase.
        return Err(Fail::Fetch(format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )));
    }
    let body = Limited::new(response.into_body(), MAX_JWT_BYTES)
        .collect()
        .await
        .map_err(|error| Fail::Body(error.to_string()))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `url` with its password (if any) shown as `xxxxx`, as Go's
/// `URL.Redacted` shows it.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{scheme}://{user}:xxxxx@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("http://u:secret@h:1/jwt/A"),
            "http://u:xxxxx@h:1/jwt/A"
        );
        assert_eq!(redacted("http://u@h:1/A"), "http://u@h:1/A");
        assert_eq!(redacted("http://h:1/A"), "http://h:1/A");
    }
}
