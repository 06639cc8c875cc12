//! The HTTP client the relying party talks to its provider with: any tower
//! service, and a default on hyper with rustls.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::BoxError;
use tower::util::BoxCloneSyncService;

/// The client: a tower service from a request (GET for discovery, POST for
/// the token endpoint) to the whole response. Plug in your own (a proxy,
/// mTLS) with [`BoxCloneSyncService::new`]; it should bound its own time
/// and body size like [`default_client`] does, and follow no redirects.
pub type HttpClient = BoxCloneSyncService<Request<Bytes>, Response<Bytes>, BoxError>;

/// The default client: hyper over rustls (aws-lc-rs; Mozilla's roots),
/// HTTP/1.1, 5 s for the whole exchange, at most 1 MiB read, no redirect
/// followed (a token endpoint that redirects is refused).
pub fn default_client() -> HttpClient {
    const TIMEOUT: Duration = Duration::from_secs(5);
    const MAX_BODY: usize = 1024 * 1024;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map(|builder| builder.https_or_http().enable_http1().build());
    let client = connector.map(|connector| Client::builder(TokioExecutor::new()).build(connector));
    BoxCloneSyncService::new(tower::service_fn(move |request: Request<Bytes>| {
        let client = client.clone();
        async move {
            let client = client.map_err(|error| -> BoxError { format!("TLS setup failed: {error}").into() })?;
            let exchange = async {
                let response = client.request(request.map(Full::new)).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_BODY)
                    .collect()
                    .await
                    .map_err(|error| -> BoxError { format!("response unreadable or too large: {error}").into() })?
                    .to_bytes();
                Ok::<_, BoxError>(Response::from_parts(parts, body))
            };
            tokio::time::timeout(TIMEOUT, exchange)
                .await
                .map_err(|_| -> BoxError { format!("no answer within {TIMEOUT:?}").into() })?
        }
    }))
}

/// Whether `url` may be used to reach the provider: `https`, or `http` to
/// a loopback host (127.0.0.0/8, `::1`, `localhost`), or `http` anywhere
/// with the insecure opt-in.
pub(crate) fn transport_allowed(url: &str, insecure_allow_http: bool) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    match uri.scheme_str() {
        Some("https") => uri.host().is_some(),
        Some("http") => insecure_allow_http || uri.host().is_some_and(portcullis_core::is_loopback_host),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_are_https_or_loopback() {
        assert!(transport_allowed("https://login.example.com/token", false));
        assert!(transport_allowed("http://127.0.0.1:8080/token", false));
        assert!(transport_allowed("http://[::1]:8080/token", false));
        assert!(!transport_allowed("http://login.example.com/token", false));
        assert!(transport_allowed("http://login.example.com/token", true));
        assert!(!transport_allowed("ftp://login.example.com/", true));
        assert!(!transport_allowed("not a url", false));
    }
}
