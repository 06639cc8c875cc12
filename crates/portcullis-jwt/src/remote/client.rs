//! The HTTP client key sets are fetched with: any tower service, and a
//! default on hyper with rustls.

use std::time::Duration;

use bytes::Bytes;
use http::header::LOCATION;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::BoxError;
use tower::util::BoxCloneSyncService;

/// The client remote key sets use: a tower service from a GET request to
/// the whole response body. Plug in your own (a proxy, mTLS, tracing) with
/// [`tower::util::BoxCloneSyncService::new`]; it should bound its own time
/// and body size like [`default_client`] does.
pub type HttpClient = BoxCloneSyncService<Request<()>, Response<Bytes>, BoxError>;

/// Limits of [`default_client`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ClientLimits {
    /// The whole exchange, redirects included (default 5 s).
    pub timeout: Duration,
    /// The largest document read (default 1 MiB).
    pub max_body_bytes: usize,
    /// Redirects followed (default 3), on the same host only; HTTPS is
    /// never followed to HTTP.
    pub max_redirects: u8,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
            max_redirects: 3,
        }
    }
}

/// The default client: hyper over rustls (aws-lc-rs, the same backend as
/// the signatures; Mozilla's root certificates), HTTP/1.1, with the
/// `limits`. No process-wide rustls provider is installed or needed.
pub fn default_client(limits: ClientLimits) -> HttpClient {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map(|builder| builder.https_or_http().enable_http1().build());
    let client = connector.map(|connector| Client::builder(TokioExecutor::new()).build(connector));
    BoxCloneSyncService::new(tower::service_fn(move |request: Request<()>| {
        let client = client.clone();
        async move {
            let client = client.map_err(|error| -> BoxError { format!("TLS setup failed: {error}").into() })?;
            let exchange = async {
                let mut uri = request.uri().clone();
                for _ in 0..=limits.max_redirects {
                    let response = client
                        .request(Request::get(uri.clone()).body(Empty::<Bytes>::new())?)
                        .await?;
                    if response.status().is_redirection() && response.status() != StatusCode::NOT_MODIFIED {
                        let next = response
                            .headers()
                            .get(LOCATION)
                            .and_then(|location| location.to_str().ok())
                            .ok_or("redirect without a Location")?;
                        let next = resolve(&uri, next)?;
                        if uri.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
                            return Err::<Response<Bytes>, BoxError>("refused a redirect from https to http".into());
                        }
                        // Another host is another key source: it was not
                        // configured, and must not be reached by a redirect.
                        if next.authority() != uri.authority() || next.scheme() != uri.scheme() {
                            return Err("refused a redirect to another host".into());
                        }
                        uri = next;
                        continue;
                    }
                    let (parts, body) = response.into_parts();
                    let body = Limited::new(body, limits.max_body_bytes)
                        .collect()
                        .await
                        .map_err(|error| -> BoxError { format!("document unreadable or too large: {error}").into() })?
                        .to_bytes();
                    return Ok(Response::from_parts(parts, body));
                }
                Err("too many redirects".into())
            };
            tokio::time::timeout(limits.timeout, exchange)
                .await
                .map_err(|_| -> BoxError { format!("no answer within {:?}", limits.timeout).into() })?
        }
    }))
}

/// Resolves a `Location` against the URI it came from (absolute, or an
/// absolute path).
fn resolve(base: &Uri, location: &str) -> Result<Uri, BoxError> {
    if location.starts_with('/') {
        let authority = base.authority().ok_or("redirect from a URI without authority")?;
        let scheme = base.scheme_str().unwrap_or("https");
        return Ok(format!("{scheme}://{authority}{location}").parse()?);
    }
    Ok(location.parse()?)
}
