//! What a heartbeat says of its sender beyond being alive: a peer's meta
//! (`_pv`), kinds (`_pk`) and shared kinds (`_ps`) as read (`Said`), and
//! this node's own (`Own`), kept, announced when due and written.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Presence;
use crate::failover::Role;

/// The most bytes an instance's meta ([`NodeBuilder::meta`](crate::NodeBuilder::meta))
/// takes as compact JSON. It travels in heartbeats, which should stay one
/// chat message on IRC; a peer's larger meta is ignored.
pub const MAX_META_BYTES: usize = 1024;

/// The most kinds a peer's `_pk` may list, and the longest kind in it: a
/// longer list (or kind) is ignored whole.
pub(crate) const MAX_PEER_KINDS: usize = 256;
pub(crate) const MAX_KIND_BYTES: usize = 128;

/// What a post said of its sender beyond being alive (a heartbeat's `_el`,
/// `_pv`, `_pk`); `None`: not said, unchanged.
#[derive(Debug, Default)]
pub(crate) struct Said {
    pub(crate) role: Option<Role>,
    /// With `role`: the term it said.
    pub(crate) term: Option<u64>,
    pub(crate) meta: Option<Arc<str>>,
    pub(crate) kinds: Option<Arc<[String]>>,
    /// `_ps`: the kinds it handles shared.
    pub(crate) shared: Option<Arc<[String]>>,
}

/// What this node says about itself in heartbeats.
#[derive(Debug, Default)]
pub(super) struct Own {
    /// Compact JSON, sorted keys.
    meta: Option<Arc<str>>,
    kinds: Vec<String>,
    /// The kinds it has shared handlers for.
    shared: Vec<String>,
    /// Whether it takes its share of them (`_ps` lists them; otherwise,
    /// when it has some, `_ps` is empty).
    shared_open: bool,
}

/// This node's entries of a heartbeat, when due.
#[derive(Debug)]
pub(crate) struct OwnSaid {
    pub(crate) meta: Option<Arc<str>>,
    pub(crate) kinds: Vec<String>,
    /// `None`: it has no shared handlers (no `_ps`).
    pub(crate) shared: Option<Vec<String>>,
}

/// Canonical JSON of a serde value: compact, object keys sorted (so that
/// "changed" is a comparison of bytes); fails when it does not serialise
/// or exceeds [`MAX_META_BYTES`].
pub(crate) fn canonical_meta<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, String> {
    let mut value =
        serde_json::to_value(value).map_err(|e| format!("it does not serialise: {e}"))?;
    value.sort_all_objects();
    let json = value.to_string();
    if json.len() > MAX_META_BYTES {
        return Err(format!(
            "it is {} bytes as JSON, more than {MAX_META_BYTES}: heartbeats carry it, keep it to a \
             version, a commit, a host",
            json.len()
        ));
    }
    Ok(json)
}

/// Makes `list` hold `kinds`; whether it changed.
fn replace_if_changed(list: &mut Vec<String>, kinds: Vec<&str>) -> bool {
    if list.iter().map(String::as_str).eq(kinds.iter().copied()) {
        return false;
    }
    *list = kinds.into_iter().map(String::from).collect();
    true
}

impl Presence {
    /// Sets this node's meta (canonical JSON); announced at the next
    /// heartbeat if it changed.
    pub(crate) fn set_meta(&self, meta: Option<String>) {
        let mut own = crate::sync::lock(&self.own);
        if own.meta.as_deref() != meta.as_deref() {
            own.meta = meta.map(Arc::from);
            self.own_is_due.store(true, Ordering::SeqCst);
        }
    }

    /// Sets the kinds this node handles, and those it handles shared;
    /// announced at the next heartbeat if they changed.
    pub(crate) fn set_kinds(&self, kinds: Vec<&str>, shared: Vec<&str>) {
        let mut own = crate::sync::lock(&self.own);
        let own = &mut *own;
        // (Both replaced: `|`, not `||`.)
        if replace_if_changed(&mut own.kinds, kinds) | replace_if_changed(&mut own.shared, shared) {
            self.own_is_due.store(true, Ordering::SeqCst);
        }
    }

    /// Whether this node takes its share of its shared kinds (`_ps` lists
    /// them): announced at the next heartbeat if it changed. Returns
    /// whether it has shared kinds (then a heartbeat should say so now).
    pub(crate) fn set_shared_open(&self, open: bool) -> bool {
        let mut own = crate::sync::lock(&self.own);
        if own.shared_open != open {
            own.shared_open = open;
            if !own.shared.is_empty() {
                self.own_is_due.store(true, Ordering::SeqCst);
            }
        }
        !own.shared.is_empty()
    }

    /// Says this node's meta and kinds again at the next heartbeat (a
    /// newcomer has not heard them).
    pub(crate) fn own_due(&self) {
        self.own_is_due.store(true, Ordering::SeqCst);
    }

    /// This node's meta and kinds when they are due (then no longer), for
    /// the heartbeat being written.
    pub(crate) fn take_own(&self) -> Option<OwnSaid> {
        if !self.own_is_due.swap(false, Ordering::SeqCst) {
            return None;
        }
        let own = crate::sync::lock(&self.own);
        Some(OwnSaid {
            meta: own.meta.clone(),
            kinds: own.kinds.clone(),
            shared: (!own.shared.is_empty()).then(|| {
                if own.shared_open {
                    own.shared.clone()
                } else {
                    Vec::new()
                }
            }),
        })
    }
}

/// Reads a peer's `_pv` (its meta, in `codec`) as canonical JSON; `None`
/// (logged at debug) when it does not read or is too large.
pub(crate) fn read_meta(
    codec: crate::wire::Codec,
    raw: &[u8],
    node: &str,
    from: &str,
) -> Option<Arc<str>> {
    // MessagePack is at most a little larger than the JSON it reads as.
    if raw.len() > MAX_META_BYTES * 2 {
        tracing::debug!(
            node,
            from,
            bytes = raw.len(),
            "ignored a peer's meta: too large"
        );
        return None;
    }
    let value: Result<serde_json::Value, String> = codec.decode(raw);
    match value.and_then(|v| canonical_meta(&v)) {
        Ok(json) => Some(json.into()),
        Err(e) => {
            tracing::debug!(node, from, error = %e, "ignored a peer's meta");
            None
        }
    }
}

/// Reads a peer's `_pk` (the kinds it handles, in `codec`), sorted; `None`
/// (logged at debug) when it does not read or is too long.
pub(crate) fn read_kinds(
    codec: crate::wire::Codec,
    raw: &[u8],
    node: &str,
    from: &str,
) -> Option<Arc<[String]>> {
    match codec.decode::<Vec<String>>(raw) {
        Ok(mut kinds)
            if kinds.len() <= MAX_PEER_KINDS && kinds.iter().all(|k| k.len() <= MAX_KIND_BYTES) =>
        {
            kinds.sort_unstable();
            kinds.dedup();
            Some(kinds.into())
        }
        Ok(kinds) => {
            tracing::debug!(
                node,
                from,
                kinds = kinds.len(),
                "ignored a peer's kinds: too many or too long"
            );
            None
        }
        Err(e) => {
            tracing::debug!(node, from, error = %e, "ignored a peer's kinds");
            None
        }
    }
}

/// Writes this node's `_pv` (meta, canonical JSON), `_pk` (kinds) and,
/// when it has shared handlers, `_ps` (kinds handled shared) entries, key
/// and value, in `codec`: each one entry of a heartbeat body.
pub(crate) fn own_entries(codec: crate::wire::Codec, said: &OwnSaid) -> Vec<Vec<u8>> {
    use crate::wire::{Codec, KEY_PEER_KINDS, KEY_PEER_META, KEY_SHARED_KINDS};
    let (meta, kinds) = (said.meta.as_deref(), &said.kinds);
    let mut entries = Vec::with_capacity(3);
    let key = |buf: &mut Vec<u8>, key: &str| match codec {
        Codec::Json => {
            buf.push(b'"');
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(b"\":");
        }
        Codec::MessagePack => {
            rmp::encode::write_str(buf, key).expect("writing to a Vec");
        }
    };
    if let Some(meta) = meta {
        let mut buf = Vec::with_capacity(meta.len() + 8);
        key(&mut buf, KEY_PEER_META);
        match codec {
            Codec::Json => buf.extend_from_slice(meta.as_bytes()),
            Codec::MessagePack => {
                // Canonical JSON read back: it serialises.
                let value: serde_json::Value =
                    serde_json::from_str(meta).expect("canonical JSON reads back");
                rmp_serde::encode::write(&mut buf, &value).expect("a JSON value serialises");
            }
        }
        entries.push(buf);
    }
    let mut buf = Vec::with_capacity(16 * kinds.len() + 8);
    key(&mut buf, KEY_PEER_KINDS);
    match codec {
        Codec::Json => serde_json::to_writer(&mut buf, kinds).expect("strings serialise"),
        Codec::MessagePack => rmp_serde::encode::write(&mut buf, kinds).expect("strings serialise"),
    }
    entries.push(buf);
    if let Some(shared) = &said.shared {
        let mut buf = Vec::with_capacity(16 * shared.len() + 8);
        key(&mut buf, KEY_SHARED_KINDS);
        match codec {
            Codec::Json => serde_json::to_writer(&mut buf, shared).expect("strings serialise"),
            Codec::MessagePack => {
                rmp_serde::encode::write(&mut buf, shared).expect("strings serialise")
            }
        }
        entries.push(buf);
    }
    entries
}
