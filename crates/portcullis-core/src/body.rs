use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A body that went through a Portcullis layer: the original one, or
    /// bytes the layer holds — a rejection's short body on the way out, a
    /// form body the CSRF check read (handed on intact) on the way in.
    ///
    /// It implements [`http_body::Body`] with `Data = Bytes` for any inner
    /// body that does, so it works behind axum, tonic and hyper alike.
    pub struct LayerBody<B> {
        #[pin]
        state: State<B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B> {
        Inner { #[pin] body: B },
        Full { bytes: Option<Bytes> },
    }
}

impl<B> LayerBody<B> {
    /// Wraps the original body.
    pub fn inner(body: B) -> Self {
        Self {
            state: State::Inner { body },
        }
    }

    /// A body of fixed bytes (a rejection's, or a buffered form's).
    pub fn full(bytes: Bytes) -> Self {
        let bytes = if bytes.is_empty() { None } else { Some(bytes) };
        Self {
            state: State::Full { bytes },
        }
    }
}

impl<B> Body for LayerBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().state.project() {
            StateProj::Inner { body } => body.poll_frame(cx),
            StateProj::Full { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Inner { body } => body.is_end_stream(),
            State::Full { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Inner { body } => body.size_hint(),
            State::Full { bytes } => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl<B> std::fmt::Debug for LayerBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            State::Inner { .. } => f.write_str("LayerBody::Inner"),
            State::Full { .. } => f.write_str("LayerBody::Full"),
        }
    }
}

/// The response body of every Portcullis layer: the inner service's body,
/// or a rejection's.
pub type ResponseBody<B> = LayerBody<B>;
