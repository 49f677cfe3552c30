//! The URL resolver's fetches: an HTTP GET of an account's JWT
//! (`<base><account key>`), as the machine asks for them
//! (`Server::take_account_fetches`), with hyper's HTTP/1 client.
//!
//! The answer is the body of a `200` response; anything else is an error
//! in the reference's words (`could not fetch <"url">: <why>`, the URL's
//! password redacted). The whole exchange is bounded by
//! `ACCOUNT_FETCH_TIMEOUT` and the body by `MAX_JWT_BYTES`, so a slow or
//! endless server costs one task for at most that long. Plain `http` only:
//! an `https` URL fails by name (no TLS client for the resolver yet).

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rnats_core::auth::{AccountFetch, ACCOUNT_FETCH_TIMEOUT};

/// An account JWT larger than this is refused (the reference reads any
/// size; a JWT is a few KiB).
const MAX_JWT_BYTES: usize = 4 << 20;

/// Fetch one account JWT (within [`ACCOUNT_FETCH_TIMEOUT`]).
pub async fn fetch(request: &AccountFetch) -> Result<String, String> {
    let shown = redacted(&request.url);
    let failed = |why: String| format!("could not fetch <{shown:?}>: {why}");
    match tokio::time::timeout(ACCOUNT_FETCH_TIMEOUT, get(&request.url, &shown)).await {
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

async fn get(url: &str, shown: &str) -> Result<String, Fail> {
    let uri: Uri = url
        .parse()
        .map_err(|_| Fail::Fetch(format!("Get {shown:?}: unsupported protocol scheme \"\"")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(Fail::Fetch(format!(
                "Get {shown:?}: https account resolver URLs are not supported yet"
            )))
        }
        other => {
            return Err(Fail::Fetch(format!(
                "Get {shown:?}: unsupported protocol scheme {:?}",
                other.unwrap_or("")
            )))
        }
    }
    let host = uri.host().unwrap_or("").to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let address = format!("{host}:{port}");
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|error| {
            Fail::Fetch(format!(
                "Get {shown:?}: dial tcp {address}: connect: {}",
                crate::logging::os_error_text(&error)
            ))
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
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
