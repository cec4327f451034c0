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

impl Keys {
    /// The tag of a bound chunk (the bytes [`Chunk::covered`](wire::Chunk::covered)
    /// gives), with the first secret; `None` without one.
    pub(crate) fn chunk_tag(&self, covered: &[u8]) -> Option<[u8; wire::CHUNK_TAG_LEN]> {
        let key = self.0.first()?;
        let full = Self::chunk_mac(key, covered).finalize().into_bytes();
        let mut tag = [0; wire::CHUNK_TAG_LEN];
        tag.copy_from_slice(&full[..wire::CHUNK_TAG_LEN]);
        Some(tag)
    }

    /// Checks a chunk's tag against every key, in constant time each
    /// (`covered`: scratch for the bytes it covers).
    pub(crate) fn verify_chunk(&self, chunk: &wire::Chunk<'_>, covered: &mut String) -> Verdict {
        let (Some(_), Some(tag)) = (chunk.session, chunk.tag) else {
            return Verdict::Unsigned;
        };
        let Some(tag) = wire::decode_base64_exact::<{ wire::CHUNK_TAG_LEN }>(tag.as_bytes()) else {
            return Verdict::Forged;
        };
        chunk.covered(covered);
        if self.0.iter().any(|key| {
            Self::chunk_mac(key, covered.as_bytes())
                .verify_truncated_left(&tag)
                .is_ok()
        }) {
            Verdict::Valid
        } else {
            Verdict::Forged
        }
    }

    /// A chunk's MAC: apart from a body's (its own prefix), so that
    /// neither stands for the other.
    fn chunk_mac(key: &[u8], covered: &[u8]) -> HmacSha256 {
        let mut mac = Self::mac(key, b"socketscience chunk\n");
        mac.update(covered);
        mac
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
    /// The patterns as given (none: the node's own account only), for
    /// messages.
    given: Vec<String>,
}

impl Trust {
    /// Trusts `patterns`; none given: `own` only.
    pub(crate) fn new(patterns: Vec<String>, own: &str) -> Trust {
        let given = patterns.clone();
        let patterns = if patterns.is_empty() {
            vec![own.to_owned()]
        } else {
            patterns
        };
        let (globs, exact): (Vec<_>, Vec<_>) =
            patterns.into_iter().partition(|p| p.contains(['*', '?']));
        Trust {
            exact: exact.into_iter().map(String::into_boxed_str).collect(),
            patterns: globs.iter().map(|p| WildMatch::new(p)).collect(),
            given,
        }
    }

    /// What a node trusts, in words: for the warning about an account it
    /// does not.
    pub(crate) fn describe(&self, own: &str) -> String {
        if self.given.is_empty() {
            format!("only its own account `{own}`, as no `.trust(..)` was given")
        } else {
            let given: Vec<String> = self.given.iter().map(|p| format!("`{p}`")).collect();
            format!("the accounts matching {}", given.join(", "))
        }
    }

    /// The `.trust(..)` calls that would admit `other` and keep trusting
    /// `own`: one pattern for both when their names share enough (a
    /// prefix and suffix of at least four characters, as in `smokey-*` or
    /// `@smokey-*:example.org`), else each by name.
    pub(crate) fn suggest(&self, own: &str, other: &str) -> String {
        let prefix = own
            .char_indices()
            .zip(other.chars())
            .find(|((_, a), b)| a != b)
            .map_or(own.len().min(other.len()), |((i, _), _)| i);
        let rest = own.len().min(other.len()) - prefix;
        let suffix = own[prefix..]
            .chars()
            .rev()
            .zip(other[prefix..].chars().rev())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a.len_utf8())
            .sum::<usize>()
            .min(rest);
        let glob = format!("{}*{}", &own[..prefix], &own[own.len() - suffix..]);
        let keeps_own = !self.given.is_empty() || self.allows(own);
        if prefix + suffix >= 4
            && !glob.contains('?')
            && prefix + suffix < own.len().max(other.len())
        {
            format!(".trust(\"{glob}\")")
        } else if self.given.is_empty() && keeps_own {
            format!(".trust(\"{own}\").trust(\"{other}\")")
        } else {
            format!(".trust(\"{other}\")")
        }
    }

    /// Whether `account` is trusted. The empty account never is: a
    /// transport gives it to a message whose sender the chat does not
    /// vouch for (IRC with SASL: no `account` tag), which no pattern, not
    /// even `*`, may let through.
    pub(crate) fn allows(&self, account: &str) -> bool {
        !account.is_empty()
            && (self.exact.iter().any(|a| **a == *account)
                || self.patterns.iter().any(|p| p.matches(account)))
    }
}

/// The most untrusted accounts a node lists ([`UntrustedAccounts`]): they
/// come from the room, so the list is bounded; envelopes from accounts past
/// it are counted in [`Stats::untrusted_unlisted`](crate::Stats::untrusted_unlisted).
pub(crate) const MAX_UNTRUSTED_ACCOUNTS: usize = 64;

/// A chat account whose envelopes a node ignored because it does not trust
/// the account, from [`Node::untrusted_accounts`](crate::Node::untrusted_accounts).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UntrustedAccount {
    /// The chat account.
    pub account: String,
    /// The instance its first envelope claimed to be from (`_from`), if it
    /// could be read.
    pub instance: Option<String>,
    /// How many framed chat messages (envelopes and chunks) it posted that
    /// the node ignored.
    pub envelopes: u64,
}

/// The untrusted accounts a node heard envelopes from, bounded (shared by
/// the receive path, which fills it, and the node's handles).
#[derive(Debug, Default)]
pub(crate) struct UntrustedAccounts(std::sync::Mutex<Vec<UntrustedAccount>>);

/// What [`UntrustedAccounts::count`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// The account's first envelope: listed now.
    First,
    /// Listed before.
    Again,
    /// Not listed: the list is full.
    Unlisted,
}

impl UntrustedAccounts {
    /// Counts a framed message from `account`.
    pub(crate) fn count(&self, account: &str) -> Counted {
        let mut list = crate::sync::lock(&self.0);
        if let Some(entry) = list.iter_mut().find(|e| e.account == account) {
            entry.envelopes += 1;
            return Counted::Again;
        }
        if list.len() >= MAX_UNTRUSTED_ACCOUNTS {
            return Counted::Unlisted;
        }
        list.push(UntrustedAccount {
            account: account.to_owned(),
            instance: None,
            envelopes: 1,
        });
        Counted::First
    }

    /// Notes the instance an account's first envelope claimed.
    pub(crate) fn claimed(&self, account: &str, instance: &str) {
        let mut list = crate::sync::lock(&self.0);
        if let Some(entry) = list.iter_mut().find(|e| e.account == account) {
            entry.instance = Some(instance.to_owned());
        }
    }

    /// The list, most envelopes first.
    pub(crate) fn list(&self) -> Vec<UntrustedAccount> {
        let mut list = crate::sync::lock(&self.0).clone();
        list.sort_by(|a, b| {
            b.envelopes
                .cmp(&a.envelopes)
                .then(a.account.cmp(&b.account))
        });
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggested_pattern_admits_both_accounts() {
        for (own, other, want) in [
            ("smokey-henders", "smokey-teward", ".trust(\"smokey-*\")"),
            (
                "@smokey-a:localhost",
                "@smokey-b:localhost",
                ".trust(\"@smokey-*:localhost\")",
            ),
            ("smokey", "smokey-teward", ".trust(\"smokey*\")"),
            ("A1", "B1", ".trust(\"A1\").trust(\"B1\")"),
        ] {
            let trust = Trust::new(vec![], own);
            assert_eq!(trust.suggest(own, other), want, "{own} {other}");
            let pattern = want.split('"').nth(1).unwrap();
            if pattern.contains('*') {
                let glob = Trust::new(vec![pattern.to_owned()], own);
                assert!(glob.allows(own) && glob.allows(other), "{pattern}");
            }
        }
        // With patterns given, only the missing account's.
        let given = Trust::new(vec!["other".into()], "A1");
        assert_eq!(given.suggest("A1", "B1"), ".trust(\"B1\")");
    }

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
        let trust = Trust::new(vec!["smokey-*".into(), "1234".into()], "smokey");
        assert!(trust.allows("smokey-henders"));
        assert!(trust.allows("1234"));
        assert!(!trust.allows("12345"));
        assert!(!trust.allows("mallory"));
        assert!(!Trust::new(vec!["*".into()], "A1").allows(""));
    }
}
