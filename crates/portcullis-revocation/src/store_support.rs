//! For authors of a [`RevocationStore`](crate::RevocationStore): the
//! in-process denylist every node's check reads, the facts a check
//! matches, and the text form stores keep. Applications need none of it.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use portcullis_core::Principal;
//! use portcullis_revocation::store_support::{decode_revocation, encode_target, encode_value};
//! use portcullis_revocation::{Revocation, Target};
//!
//! let alice = Principal::new("https://app.example", "alice");
//! let revocation = Revocation::subject(alice.clone(), SystemTime::now(), Duration::from_secs(60));
//! let key = encode_target(&revocation.target);
//! assert_eq!(key, "s:19:https://app.examplealice");
//! let stored = decode_revocation(&key, &encode_value(&revocation));
//! assert_eq!(stored, Some(revocation));
//! ```

pub use crate::denylist::{Denylist, EXPIRY_MARGIN, TokenFacts};
use crate::denylist::{Revocation, Target};

/// An unambiguous text form of `target`, for use as a key: lengths
/// prefix the parts that could otherwise run together.
pub fn encode_target(target: &Target) -> String {
    target.encode()
}

/// Parses [`encode_target`]'s form; `None` for anything else.
pub fn decode_target(text: &str) -> Option<Target> {
    Target::decode(text)
}

/// The value half a store keeps beside the key: `cutoff:expires`.
pub fn encode_value(revocation: &Revocation) -> String {
    revocation.encode_value()
}

/// Rebuilds a revocation from [`encode_target`] and [`encode_value`];
/// `None` when either does not parse.
pub fn decode_revocation(target: &str, value: &str) -> Option<Revocation> {
    Revocation::decode(target, value)
}
