//! Shared helpers for the over-the-wire suites: servers on free loopback
//! ports, a plain HTTP client, and a small hand-written gRPC service (no
//! protoc needed) whose handler reports the caller's `Identity`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use portcullis::Identity;
use tokio::net::TcpListener;

pub mod client;
pub mod example;
pub mod oidc_provider;
pub mod postgres_server;
pub mod redis_cluster;
pub mod redis_server;
pub mod tcp_proxy;
pub mod webdriver;

/// A fresh session key routed to `principal`, as `SessionLayer` makes
/// them, for store-level tests: unique per call (`n` and the clock).
pub fn routed_key(principal: &portcullis::Principal, n: u64) -> portcullis::session::SessionKey {
    let mut bytes = [0u8; 32];
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    bytes[2..10].copy_from_slice(&salt.to_le_bytes());
    bytes[10..18].copy_from_slice(&n.to_le_bytes());
    portcullis::session::SessionKey::from_bytes(bytes).with_route(portcullis::Route::of(principal))
}

/// The rules every shared replay cache keeps, on two connections (two
/// nodes) to one store: a first use once, a replay refused from the other
/// node, namespaces apart, and an identifier forgotten once it expires.
pub async fn replay_cache_rules(node_a: &dyn portcullis::ReplayCache, node_b: &dyn portcullis::ReplayCache) {
    use std::time::{Duration, SystemTime};
    let until = SystemTime::now() + Duration::from_secs(60);
    assert!(node_a.first_use("jti", "token-1", until).await.expect("first"));
    assert!(
        !node_b.first_use("jti", "token-1", until).await.expect("replay"),
        "a replay on another node"
    );
    assert!(
        node_b
            .first_use("state", "token-1", until)
            .await
            .expect("other namespace")
    );
    let soon = SystemTime::now() + Duration::from_millis(200);
    assert!(node_a.first_use("jti", "short-lived", soon).await.expect("first"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        node_b.first_use("jti", "short-lived", until).await.expect("expired"),
        "forgotten once expired"
    );
    assert!(
        !node_a
            .first_use("jti", "short-lived", until)
            .await
            .expect("replay again")
    );
}

/// A loopback port free now (the kernel's pick), for a server a test
/// starts as a child process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Binds a listener on a free loopback port.
pub async fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Serves an axum router on a free loopback port.
pub async fn spawn_axum(router: axum::Router) -> SocketAddr {
    let (listener, addr) = loopback_listener().await;
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Serves a bare tower service with hyper 1 (HTTP/1 and HTTP/2) on a free
/// loopback port.
pub async fn spawn_hyper<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (listener, addr) = loopback_listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body, as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("visible ASCII header")
    }
}

/// Sends `GET path` to `addr` over a real socket, with an optional bearer
/// token.
pub async fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Answer {
    let mut request = Request::get(format!("http://{addr}{path}"));
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(request.body(Full::new(Bytes::new())).expect("request")).await
}

/// POSTs an `application/x-www-form-urlencoded` body to `addr` over a
/// real socket.
pub async fn post_form(addr: SocketAddr, path: &str, form: &str) -> Answer {
    let request = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_owned())))
        .expect("request");
    send(request).await
}

/// Sends `request` over a real socket.
pub async fn send(request: Request<Full<Bytes>>) -> Answer {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
        .await
        .expect("answer within 10 s")
        .expect("HTTP exchange");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The gRPC service used by the tests, written by hand the way
/// `tonic-build` would generate it.
pub mod grpc {
    use super::*;
    use tonic::codegen::http::uri::PathAndQuery;

    /// `WhoAmI` request (empty).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WhoAmIRequest {}

    /// `WhoAmI` reply.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WhoAmIReply {
        /// The caller's subject.
        #[prost(string, tag = "1")]
        pub subject: String,
        /// `session` or `bearer`.
        #[prost(string, tag = "2")]
        pub method: String,
        /// Granted scopes.
        #[prost(string, repeated, tag = "3")]
        pub scopes: Vec<String>,
    }

    const PATH: &str = "/test.v1.Identity/WhoAmI";

    /// The server side.
    #[derive(Clone, Debug, Default)]
    pub struct IdentityServer;

    impl tonic::server::NamedService for IdentityServer {
        const NAME: &'static str = "test.v1.Identity";
    }

    struct WhoAmI;

    impl tonic::server::UnaryService<WhoAmIRequest> for WhoAmI {
        type Response = WhoAmIReply;
        type Future = std::future::Ready<Result<tonic::Response<WhoAmIReply>, tonic::Status>>;

        fn call(&mut self, request: tonic::Request<WhoAmIRequest>) -> Self::Future {
            std::future::ready(match request.extensions().get::<Identity>() {
                Some(identity) => Ok(tonic::Response::new(WhoAmIReply {
                    subject: identity.subject().to_owned(),
                    method: identity.method().name().to_owned(),
                    scopes: identity.scopes().to_vec(),
                })),
                None => Err(tonic::Status::internal("handler reached without an identity")),
            })
        }
    }

    impl tower::Service<Request<tonic::body::Body>> for IdentityServer {
        type Response = Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
            Box::pin(async move {
                if request.uri().path() == PATH {
                    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    Ok(grpc.unary(WhoAmI, request).await)
                } else {
                    Ok(tonic::Status::unimplemented("no such method").into_http())
                }
            })
        }
    }

    /// Calls `WhoAmI` with a `cookie` metadata entry (a session cookie).
    pub async fn who_am_i_with_cookie(addr: SocketAddr, cookie: &str) -> Result<WhoAmIReply, tonic::Status> {
        call(addr, "cookie", cookie.to_owned()).await
    }

    /// Calls `WhoAmI` on `addr` with a real tonic client.
    pub async fn who_am_i(addr: SocketAddr, bearer: Option<&str>) -> Result<WhoAmIReply, tonic::Status> {
        who_am_i_at(addr, PATH, bearer).await
    }

    /// Calls a `WhoAmI` method served at `path` (same messages).
    pub async fn who_am_i_at(
        addr: SocketAddr,
        path: &'static str,
        bearer: Option<&str>,
    ) -> Result<WhoAmIReply, tonic::Status> {
        match bearer {
            Some(token) => call_at(addr, path, "authorization", format!("Bearer {token}")).await,
            None => call_at(addr, path, "", String::new()).await,
        }
    }

    async fn call(addr: SocketAddr, header: &'static str, value: String) -> Result<WhoAmIReply, tonic::Status> {
        call_at(addr, PATH, header, value).await
    }

    async fn call_at(
        addr: SocketAddr,
        path: &'static str,
        header: &'static str,
        value: String,
    ) -> Result<WhoAmIReply, tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect over loopback");
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.expect("client ready");
        let mut request = tonic::Request::new(WhoAmIRequest {});
        if !header.is_empty() {
            request
                .metadata_mut()
                .insert(header, value.parse().expect("ascii metadata"));
        }
        client
            .unary(
                request,
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .map(tonic::Response::into_inner)
    }
}

/// A TCP forwarder on a loopback port that a test can cut and restore: a
/// network partition between one node and its Redis, while other nodes
/// still reach it.
#[derive(Debug)]
pub struct Partition {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Partition {
    /// Forwards a free loopback port to `upstream`.
    pub async fn to(upstream: SocketAddr) -> Self {
        let (listener, addr) = loopback_listener().await;
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if *watch.borrow() {
                    continue; // dropped: the connection is refused
                }
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    /// `redis://` URL through the forwarder.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Cuts every connection through it and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// A session store with the local cache on.
pub trait CachingStore: portcullis::session::SessionStore {
    /// The cache's counters.
    fn cache_stats(&self) -> Option<portcullis::session::CacheStats>;
}

impl CachingStore for portcullis::redis::RedisSessionStore {
    fn cache_stats(&self) -> Option<portcullis::session::CacheStats> {
        portcullis::redis::RedisSessionStore::cache_stats(self)
    }
}

impl CachingStore for portcullis::postgres::PostgresSessionStore {
    fn cache_stats(&self) -> Option<portcullis::session::CacheStats> {
        portcullis::postgres::PostgresSessionStore::cache_stats(self)
    }
}

/// Two caching nodes on one shared store share every change: for
/// `subjects` users (spread over the shards of a Redis Cluster), a session made
/// on `a` and read twice on `b` (the second read from `b`'s cache), then
/// written and ended on `a`, is seen written and ended on `b` within 1 s.
/// Returns the slowest propagation seen.
pub async fn cached_nodes_share_changes<S: CachingStore>(a: &S, b: &S, subjects: u64) -> std::time::Duration {
    use portcullis::session::{Changes, SessionRecord};
    use std::time::{Duration, Instant, SystemTime};
    let bound = Duration::from_secs(1);
    let mut slowest = Duration::ZERO;
    for n in 0..subjects {
        let person = portcullis::Principal::new("https://app.test", format!("cached-{n}"));
        let key = routed_key(&person, n);
        let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
        record.principal = Some(person);
        a.create(&key, &record, Duration::from_secs(600)).await.expect("create");
        b.load(&key).await.expect("load").expect("present on b");
        let hits = b.cache_stats().expect("cache on").hits;
        b.load(&key).await.expect("load").expect("present on b");
        assert!(
            b.cache_stats().expect("cache on").hits > hits,
            "subject {n}: served from b's cache"
        );
        let mut changes = Changes::default();
        changes.set.insert("n".into(), n.to_string());
        assert!(a.update(&key, &changes).await.expect("update"));
        let started = Instant::now();
        while b
            .load(&key)
            .await
            .expect("load")
            .and_then(|record| record.data.get("n").cloned())
            != Some(n.to_string())
        {
            assert!(
                started.elapsed() < bound,
                "subject {n}: the write reached b within {bound:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        a.delete(&key).await.expect("delete");
        while b.load(&key).await.expect("load").is_some() {
            assert!(started.elapsed() < 2 * bound, "subject {n}: the logout reached b");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        slowest = slowest.max(started.elapsed());
    }
    slowest
}
