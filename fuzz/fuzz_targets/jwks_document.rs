//! The JWKS document parser. Invariant: no panic; every key it keeps is
//! usable for verification only (never an encryption key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::jwt::KeySet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(keys) = KeySet::from_jwks_json(text) {
        // Whatever was kept can be listed and verifies nothing unsigned.
        let _ = keys.len();
    }
});
