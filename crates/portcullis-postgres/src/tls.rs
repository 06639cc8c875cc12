//! TLS to PostgreSQL through rustls (the aws-lc-rs provider the rest of
//! Portcullis uses): a `tokio-postgres` connector over `tokio-rustls`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// Which certificates a TLS connection to the database trusts.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum PostgresTls {
    /// The Mozilla root set (`webpki-roots`): a managed database with a
    /// public certificate. The default.
    #[default]
    WebPkiRoots,
    /// These roots only (DER): a private CA.
    Roots(Vec<CertificateDer<'static>>),
}

impl PostgresTls {
    /// The roots of a PEM file's certificates (a private CA's bundle).
    ///
    /// ```
    /// use portcullis_postgres::PostgresTls;
    /// let error = PostgresTls::roots_from_pem(b"not a certificate").expect_err("refused");
    /// assert!(error.contains("no certificate"), "{error}");
    /// ```
    pub fn roots_from_pem(pem: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|error| format!("unreadable PEM: {error}"))?;
        if roots.is_empty() {
            return Err("no certificate in the PEM".into());
        }
        Ok(Self::Roots(roots))
    }

    pub(crate) fn connector(&self) -> Result<RustlsConnect, String> {
        let mut store = rustls::RootCertStore::empty();
        match self {
            Self::WebPkiRoots => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Self::Roots(roots) => {
                for root in roots {
                    store
                        .add(root.clone())
                        .map_err(|error| format!("unusable root certificate: {error}"))?;
                }
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(RustlsConnect(Arc::new(config)))
    }
}

/// Makes a TLS connection per database connection, verifying the server's
/// certificate against the configured roots and the host name (or IP).
#[derive(Clone)]
pub(crate) struct RustlsConnect(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsHandshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsHandshake, io::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "invalid database host name for TLS"))?;
        Ok(RustlsHandshake {
            config: self.0.clone(),
            name,
        })
    }
}

pub(crate) struct RustlsHandshake {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsHandshake
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding (`-PLUS`) is not offered; the certificate
        // check is what binds the connection to the server.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
