//! Trust and signatures: who may steer the fleet.
//!
//! A node trusts chat accounts ([`Trust`]) and, with a shared secret,
//! signs every envelope it posts with HMAC-SHA256 and rejects what is
//! unsigned, forged, stale or replayed. The scheme (see
//! `docs/wire-format.md`): the signature is the body's last entry, `_sig`,
//! and covers every byte of the body before that entry, which include the
//! messages and the `_from`, `_sid`, `_seq` and `_ts` metadata. Where the
//! entry sits and how it is spelled is the format's (`wire/signature.rs`);
//! the keys and the HMAC are here.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wildmatch::WildMatch;

use crate::wire::{self, Codec, SIG_LEN};

/// The environment variable a node reads its secret from when the builder
/// is given none.
pub const SECRET_ENV: &str = "SOCKETSCIENCE_SECRET";
/// The environment variable holding the previous secret during a rotation
/// (accepted, never used to sign).
pub const PREVIOUS_SECRET_ENV: &str = "SOCKETSCIENCE_SECRET_PREVIOUS";

type HmacSha256 = Hmac<Sha256>;

/// The fleet's shared secrets: the first signs, any verifies (two during a
/// rotation). Never printed.
#[derive(Clone, Default)]
pub(crate) struct Keys(Vec<Arc<[u8]>>);

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys(<{} redacted>)", self.0.len())
    }
}

impl Keys {
    pub(crate) fn new(secrets: Vec<Vec<u8>>) -> Keys {
        Keys(secrets.into_iter().map(Arc::from).collect())
    }

    /// The secrets named by the environment, if any.
    pub(crate) fn from_env() -> Keys {
        let secrets = [SECRET_ENV, PREVIOUS_SECRET_ENV]
            .iter()
            .filter_map(std::env::var_os)
            .filter(|value| !value.is_empty())
            .map(|value| value.into_encoded_bytes())
            .collect();
        Keys::new(secrets)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn mac(key: &[u8], covered: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length.
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(covered);
        mac
    }

    /// Appends the `_sig` entry for the body so far (a JSON body without its
    /// closing brace, or a MessagePack map whose header counts `_sig`).
    pub(crate) fn sign(&self, codec: Codec, body: &mut Vec<u8>) {
        let Some(key) = self.0.first() else { return };
        let sig: [u8; SIG_LEN] = Self::mac(key, body).finalize().into_bytes().into();
        wire::append_signature(codec, body, &sig);
    }

    /// Checks a body's signature against every key, in constant time each.
    pub(crate) fn verify(&self, body: &[u8]) -> Verdict {
        let Some((covered, sig)) = wire::split_signed(body) else {
            return Verdict::Unsigned;
        };
        if self
            .0
            .iter()
            .any(|key| Self::mac(key, covered).verify_slice(&sig).is_ok())
        {
            Verdict::Valid
        } else {
            Verdict::Forged
        }
    }
}

/// What [`Keys::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    Unsigned,
    Forged,
}

/// Which chat accounts a node trusts: exact names and `*`/`?` patterns.
pub(crate) struct Trust {
    exact: Vec<Box<str>>,
    patterns: Vec<WildMatch>,
}

impl Trust {
    pub(crate) fn new(patterns: Vec<String>) -> Trust {
        let (globs, exact): (Vec<_>, Vec<_>) =
            patterns.into_iter().partition(|p| p.contains(['*', '?']));
        Trust {
            exact: exact.into_iter().map(String::into_boxed_str).collect(),
            patterns: globs.iter().map(|p| WildMatch::new(p)).collect(),
        }
    }

    pub(crate) fn allows(&self, account: &str) -> bool {
        self.exact.iter().any(|a| **a == *account)
            || self.patterns.iter().any(|p| p.matches(account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_either_key_and_fail_when_tampered() {
        for codec in [Codec::Json, Codec::MessagePack] {
            let old = Keys::new(vec![b"old".to_vec()]);
            let rotating = Keys::new(vec![b"new".to_vec(), b"old".to_vec()]);
            let mut body = match codec {
                Codec::Json => b"{\"ping\":1,\"_seq\":3".to_vec(),
                Codec::MessagePack => vec![0x82, 0xa1, b'a', 0x01],
            };
            old.sign(codec, &mut body);
            assert_eq!(old.verify(&body), Verdict::Valid, "{codec}");
            assert_eq!(rotating.verify(&body), Verdict::Valid, "{codec}");
            assert_eq!(
                Keys::new(vec![b"other".to_vec()]).verify(&body),
                Verdict::Forged
            );
            let mut tampered = body.clone();
            tampered[2] ^= 1;
            assert_eq!(old.verify(&tampered), Verdict::Forged, "{codec}");
            assert_eq!(
                old.verify(&body[..body.len() - 1]),
                Verdict::Unsigned,
                "{codec}"
            );
        }
        assert_eq!(
            format!("{:?}", Keys::new(vec![b"hunter2".to_vec()])),
            "Keys(<1 redacted>)"
        );
    }

    #[test]
    fn trust_patterns() {
        let trust = Trust::new(vec!["smokey-*".into(), "1234".into()]);
        assert!(trust.allows("smokey-henders"));
        assert!(trust.allows("1234"));
        assert!(!trust.allows("12345"));
        assert!(!trust.allows("mallory"));
    }
}
