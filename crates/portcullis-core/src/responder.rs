//! One [`Responder`] for a whole stack: [`ResponderLayer`].

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{DefaultResponder, Rejection, RequestContext, Responder, SharedResponder};

/// The stack's responder, as [`ResponderLayer`] leaves it in a request's
/// extensions.
#[derive(Clone, Debug)]
pub struct StackResponder(pub SharedResponder);

/// One [`Responder`] for a whole stack.
///
/// Put it outermost. Every Portcullis layer inside it, and the axum
/// extractors, render their rejections with its responder — unless a layer
/// was given one of its own, which wins for that layer.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use portcullis_core::{
///     DefaultResponder, Rejection, RequestContext, RequireAuthLayer, Responder, ResponderLayer,
/// };
/// use tower::{ServiceBuilder, ServiceExt};
///
/// /// Sends browsers to the login page instead of a bare 401.
/// #[derive(Debug)]
/// struct ToLogin;
///
/// impl Responder for ToLogin {
///     fn respond(&self, rejection: &Rejection, request: &RequestContext<'_>) -> Response<Bytes> {
///         let mut response = DefaultResponder.respond(rejection, request);
///         if response.status() == StatusCode::UNAUTHORIZED {
///             *response.status_mut() = StatusCode::SEE_OTHER;
///             response.headers_mut().insert("location", "/login".parse().unwrap());
///         }
///         response
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(ResponderLayer::new(ToLogin))
///     // .layer(session_layer) .layer(csrf_layer) …: all render with ToLogin
///     .layer(RequireAuthLayer::new())
///     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(Bytes::new())) });
/// let mut request = Request::new(());
/// request.extensions_mut().insert(portcullis_core::AuthenticatorRan);
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::SEE_OTHER);
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ResponderLayer {
    responder: SharedResponder,
}

impl ResponderLayer {
    /// Renders every rejection inside this layer with `responder`.
    pub fn new(responder: impl Responder) -> Self {
        Self {
            responder: Arc::new(responder),
        }
    }

    /// The same, with a responder already shared.
    pub fn shared(responder: SharedResponder) -> Self {
        Self { responder }
    }
}

impl<S> Layer<S> for ResponderLayer {
    type Service = ResponderService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponderService {
            inner,
            responder: self.responder.clone(),
        }
    }
}

/// The service of [`ResponderLayer`].
#[derive(Clone, Debug)]
pub struct ResponderService<S> {
    inner: S,
    responder: SharedResponder,
}

impl<S, B> Service<Request<B>> for ResponderService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(StackResponder(self.responder.clone()));
        self.inner.call(request)
    }
}

/// The responder that renders a rejection: the layer's own when it was
/// given one, else the stack's ([`ResponderLayer`]), else the default.
pub fn responder_for<'a>(own: Option<&'a SharedResponder>, extensions: &'a Extensions) -> &'a SharedResponder {
    own.or_else(|| extensions.get::<StackResponder>().map(|stack| &stack.0))
        .unwrap_or_else(|| default_responder())
}

/// The process-wide [`DefaultResponder`], shared.
pub(crate) fn default_responder() -> &'static SharedResponder {
    static DEFAULT: OnceLock<SharedResponder> = OnceLock::new();
    DEFAULT.get_or_init(|| Arc::new(DefaultResponder))
}

/// A rejection already rendered for the request it refused, by the
/// responder [`responder_for`] picks (the stack's, else the default): what
/// Portcullis's axum extractors refuse with, so their refusals look like
/// every layer's.
#[derive(Debug)]
pub struct RenderedRejection {
    rejection: Rejection,
    response: Response<Bytes>,
}

impl RenderedRejection {
    /// Renders `rejection` for the request whose head is `parts`.
    pub fn for_parts(rejection: Rejection, parts: &Parts) -> Self {
        let context = RequestContext::new(&parts.method, &parts.uri, &parts.headers);
        let response = responder_for(None, &parts.extensions).respond(&rejection, &context);
        Self { rejection, response }
    }

    /// Why the request was refused.
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }

    /// The response to send.
    pub fn into_response(self) -> Response<Bytes> {
        self.response
    }
}
