//! Audit events: one `tracing` event per decision.
//!
//! Every Portcullis layer reports each decision it makes as an event under
//! the one target [`TARGET`] (`portcullis::audit`), with structured fields:
//!
//! | field | meaning |
//! |---|---|
//! | `layer` | the layer that decided (`jwt`, `session`, `csrf`, …) |
//! | `outcome` | `accepted`, `rejected`, `passed` (no credential, let through) or `unavailable` |
//! | `reason` | the rejection reason, when there is one |
//! | `subject` | the caller's subject, when known |
//! | `credential` | a [`Fingerprint`] of the credential, never the credential |
//! | `token_id` | a token's `jti`, when known |
//!
//! Route them with a `tracing_subscriber` filter on the target, e.g.
//! `RUST_LOG=portcullis::audit=info`.
//!
//! ```
//! use portcullis_core::audit::{self, Fingerprint, Outcome};
//!
//! let fingerprint = Fingerprint::of(b"a-secret-token");
//! assert_eq!(fingerprint.to_string().len(), 16);
//! audit::Decision::new("jwt", Outcome::Rejected)
//!     .reason("token expired")
//!     .credential(fingerprint)
//!     .record();
//! ```

use std::fmt;

/// The `tracing` target of every audit event.
pub const TARGET: &str = "portcullis::audit";

/// What a layer decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A credential was verified.
    Accepted,
    /// The request was refused.
    Rejected,
    /// No credential, and the layer let the request through.
    Passed,
    /// The decision could not be made (a store or key set is unreachable).
    Unavailable,
    /// Report-only mode: the request would have been refused.
    WouldReject,
}

impl Outcome {
    /// The outcome's field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Passed => "passed",
            Self::Unavailable => "unavailable",
            Self::WouldReject => "would_reject",
        }
    }
}

/// A short, one-way fingerprint of a credential: the first 8 bytes of its
/// SHA-256, in hex. Enough to correlate log lines, useless to an attacker.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    /// Fingerprints `credential`.
    pub fn of(credential: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, credential);
        Self::from_sha256(digest.as_ref())
    }

    /// The fingerprint of a credential whose SHA-256 is already known.
    /// Shorter input is zero-padded.
    pub fn from_sha256(sha256: &[u8]) -> Self {
        let mut bytes = [0u8; 8];
        for (out, byte) in bytes.iter_mut().zip(sha256) {
            *out = *byte;
        }
        Self(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// One decision, to be recorded with [`Decision::record`].
#[derive(Debug)]
#[must_use = "a decision is recorded only by `record`"]
pub struct Decision<'a> {
    layer: &'static str,
    outcome: Outcome,
    reason: Option<&'a str>,
    subject: Option<&'a str>,
    credential: Option<Fingerprint>,
    token_id: Option<&'a str>,
}

impl<'a> Decision<'a> {
    /// A decision of `layer` with `outcome`.
    pub fn new(layer: &'static str, outcome: Outcome) -> Self {
        Self {
            layer,
            outcome,
            reason: None,
            subject: None,
            credential: None,
            token_id: None,
        }
    }

    /// Why.
    pub fn reason(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Whose credential.
    pub fn subject(mut self, subject: &'a str) -> Self {
        self.subject = Some(subject);
        self
    }

    /// Which credential, by fingerprint.
    pub fn credential(mut self, fingerprint: Fingerprint) -> Self {
        self.credential = Some(fingerprint);
        self
    }

    /// Which token, by `jti`.
    pub fn token_id(mut self, token_id: &'a str) -> Self {
        self.token_id = Some(token_id);
        self
    }

    /// Emits the event. Accepted and passed requests are recorded at
    /// `DEBUG`, refusals at `INFO`, and outages at `WARN`.
    pub fn record(self) {
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    target: "portcullis::audit",
                    $level,
                    layer = self.layer,
                    outcome = self.outcome.as_str(),
                    reason = self.reason,
                    subject = self.subject,
                    credential = self.credential.map(tracing::field::display),
                    token_id = self.token_id,
                )
            };
        }
        match self.outcome {
            Outcome::Accepted | Outcome::Passed => emit!(tracing::Level::DEBUG),
            Outcome::Rejected | Outcome::WouldReject => emit!(tracing::Level::INFO),
            Outcome::Unavailable => emit!(tracing::Level::WARN),
        }
    }
}

/// Whether audit events at `INFO` or below would reach a subscriber; lets
/// layers skip work (fingerprints) that only an event needs.
pub fn enabled() -> bool {
    tracing::enabled!(target: "portcullis::audit", tracing::Level::DEBUG)
}
