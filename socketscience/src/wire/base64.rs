//! Base64 of bodies: standard alphabet with padding, as Python's
//! `base64.b64encode` writes it (SIMD, picked at run time).

use base64_simd::STANDARD as BASE64;

use super::WireError;

/// Decodes a base64 body into `out` (cleared first).
pub fn decode_base64(body_b64: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    BASE64
        .decode_append(body_b64, out)
        .map_err(|e| WireError::Base64(e.to_string()))
}

/// Decodes base64 that must give exactly `N` bytes.
pub(crate) fn decode_base64_exact<const N: usize>(b64: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    // `decode` needs room for what the text gives: check its length first.
    if BASE64.decoded_length(b64).ok()? != N {
        return None;
    }
    BASE64
        .decode(b64, base64_simd::Out::from_slice(&mut out))
        .ok()?;
    Some(out)
}

/// Appends the base64 of `body` to `out`.
pub fn encode_base64(body: &[u8], out: &mut String) {
    BASE64.encode_append(body, out);
}

/// [`encode_base64`] onto bytes or a string.
pub(crate) fn append_base64<T: base64_simd::AppendBase64Encode>(body: &[u8], out: &mut T) {
    BASE64.encode_append(body, out);
}
