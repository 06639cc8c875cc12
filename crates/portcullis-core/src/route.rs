//! Routing tags: which shard of a partitioned store a principal's state
//! lives on.

use std::fmt;

use crate::Principal;

/// A 16-bit routing tag. Partitioned stores (Redis Cluster) keep
/// everything of one principal — their sessions, the index of them, their
/// refresh families, their "log out everywhere" generation — on the shard
/// this tag picks, so that every change to them is one atomic step on one
/// node. Session ids and refresh-family ids carry the tag of the principal
/// they were issued to, so a store finds the shard from the id alone, with
/// no lookup.
///
/// The tag of a principal is a public function of its canonical key (no
/// secret): a store must derive it for "end every session of alice"
/// without holding the session secret. It tells nobody anything they do not
/// already know — only the holder of a cookie sees the tag in it (and that
/// holder is the user), and the store keeps the principal in the clear
/// anyway. Anonymous sessions take a random tag.
///
/// ```
/// use portcullis_core::{Principal, Route};
///
/// let alice = Principal::new("https://app.example", "alice");
/// assert_eq!(Route::of(&alice), Route::of(&alice.clone()), "stable");
/// let tag = Route::of(&alice).to_string();
/// assert_eq!(tag.len(), 4, "four hex digits");
/// assert_eq!(Route::parse(&tag), Some(Route::of(&alice)));
/// assert_eq!(Route::parse("xyz!"), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route(u16);

impl Route {
    /// The tag of `principal`.
    pub fn of(principal: &Principal) -> Self {
        Self::of_text(&principal.key())
    }

    /// The tag of a bare subject (refresh families, which belong to one
    /// issuer's subjects).
    pub fn of_subject(subject: &str) -> Self {
        Self::of_text(subject)
    }

    fn of_text(text: &str) -> Self {
        // FNV-1a: the tag needs an even spread, not secrecy (see above).
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        for byte in text.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let folded = (hash >> 48) ^ (hash >> 32) ^ (hash >> 16) ^ hash;
        Self(u16::try_from(folded & 0xffff).unwrap_or_default())
    }

    /// A random tag, for state that belongs to nobody yet.
    pub fn random() -> Self {
        Self(u16::from_be_bytes(crate::random_bytes()))
    }

    /// The tag from its two bytes (big-endian).
    pub fn from_bytes(bytes: [u8; 2]) -> Self {
        Self(u16::from_be_bytes(bytes))
    }

    /// The tag as two bytes (big-endian).
    pub fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// The route an id starts with (four hex digits), if it does.
    ///
    /// ```
    /// use portcullis_core::Route;
    /// assert_eq!(Route::prefix_of("00ffrest-of-the-id"), Route::parse("00ff"));
    /// assert_eq!(Route::prefix_of("zz"), None);
    /// ```
    pub fn prefix_of(id: &str) -> Option<Self> {
        id.get(..4).and_then(Self::parse)
    }

    /// Parses the four lowercase hex digits of [`Display`](fmt::Display).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        u16::from_str_radix(text, 16).ok().map(Self)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Route({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_spread_over_the_whole_range() {
        // 4,096 subjects over 16 buckets of the tag space: every bucket
        // gets a fair share (a hash that ignored some input bits would not).
        let mut buckets = [0u32; 16];
        for n in 0..4_096 {
            let route = Route::of(&Principal::new("https://app.test", format!("user-{n}")));
            buckets[usize::from(route.0 >> 12)] += 1;
        }
        for (bucket, count) in buckets.iter().enumerate() {
            assert!((128..=384).contains(count), "bucket {bucket} got {count} of 4096");
        }
    }

    #[test]
    fn the_issuer_is_part_of_the_tag_input_and_text_round_trips() {
        let local = Principal::new("https://a.test", "alice");
        let other = Principal::new("https://b.test", "alice");
        assert_ne!(Route::of(&local), Route::of(&other));
        for route in [Route(0), Route(0xffff), Route::of(&local), Route::random()] {
            assert_eq!(Route::parse(&route.to_string()), Some(route));
            assert_eq!(Route::from_bytes(route.to_bytes()), route);
        }
        for bad in ["", "abc", "abcde", "ABCD", "+123", "g000"] {
            assert_eq!(Route::parse(bad), None, "{bad:?}");
        }
    }
}
