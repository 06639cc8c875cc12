//! Every call into `jsonwebtoken`, the JWS/JWT engine, goes through here.
//!
//! jsonwebtoken picks its cryptography from a process-level
//! `CryptoProvider`. With exactly one of its backends enabled (Portcullis
//! enables only `aws_lc_rs`) it picks that one by itself; when feature
//! unification enables both in an application's tree, it cannot choose and
//! panics on first use unless the application installs one. Portcullis
//! turns that panic into an error — [`ConfigError::CryptoProvider`] when a
//! verifier is built, a 500 `misconfigured` rejection if a request still
//! meets it — and [`install_crypto_provider`] is the one-line fix.

use std::panic::{AssertUnwindSafe, catch_unwind};

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;

/// What to tell a user whose tree leaves jsonwebtoken without a provider.
pub(crate) const PROVIDER_FIX: &str = "jsonwebtoken has no process-level CryptoProvider (both of its backends are enabled in \
     this build); call portcullis_jwt::install_crypto_provider() at the start of main, before any token is verified or \
     signed";

/// Another provider became the process default before
/// [`install_crypto_provider`] ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "another jsonwebtoken CryptoProvider is already the process default (or jsonwebtoken ran before this call with \
     both backends enabled and none installed): call install_crypto_provider() first, at the start of main"
)]
pub struct CryptoProviderError;

/// Makes jsonwebtoken's aws-lc-rs backend the process-level
/// `CryptoProvider`: the one line an application needs when its dependency
/// tree enables both of jsonwebtoken's backends (`aws_lc_rs` and
/// `rust_crypto`), where jsonwebtoken cannot choose by itself. Call it at
/// the start of `main`, before any token is verified or signed; with one
/// backend it is harmless.
///
/// `Ok` when aws-lc-rs is now the provider, whether this call installed it
/// or it already was; an error when another provider got there first (a
/// working choice of the application's, or jsonwebtoken used before this
/// call in a tree that cannot choose).
///
/// ```
/// portcullis_jwt::install_crypto_provider()?;
/// // Calling it again is fine.
/// portcullis_jwt::install_crypto_provider()?;
/// # Ok::<(), portcullis_jwt::CryptoProviderError>(())
/// ```
pub fn install_crypto_provider() -> Result<(), CryptoProviderError> {
    match CryptoProvider::install_default(&DEFAULT_PROVIDER) {
        Ok(()) => Ok(()),
        Err(existing) if std::ptr::eq(existing, &DEFAULT_PROVIDER) => Ok(()),
        Err(_) => Err(CryptoProviderError),
    }
}

/// jsonwebtoken had no provider to call (its panic, caught).
#[derive(Debug)]
pub(crate) struct ProviderMissing;

/// Runs an engine call, turning jsonwebtoken's "no provider" panic into an
/// error. The closures given here hold no state a panic could leave
/// half-updated.
pub(crate) fn guarded<T>(call: impl FnOnce() -> T) -> Result<T, ProviderMissing> {
    catch_unwind(AssertUnwindSafe(call)).map_err(|_| ProviderMissing)
}

/// Whether jsonwebtoken can verify and sign in this process: checked when a
/// verifier is built, so a tree that cannot choose fails at start, not on
/// the first request.
pub(crate) fn check_provider() -> Result<(), crate::ConfigError> {
    let key = jsonwebtoken::DecodingKey::from_secret(&[0; 32]);
    guarded(|| jsonwebtoken::crypto::verify("", b"", &key, jsonwebtoken::Algorithm::HS256))
        .map(|_| ())
        .map_err(|ProviderMissing| crate::ConfigError::CryptoProvider)
}
