//! The message types several test binaries share, declared once.
//!
//! `#[message]` registers a type for the whole program (through
//! `inventory`), and a node refuses to start when two types claim one kind:
//! every kind below is taken in each test binary that says `mod common;`,
//! so a test's own types use other kinds.
//!
//! These are SmokeDetector's kinds, in the shapes Python SocketScience
//! writes them: the interop and golden tests compare bytes with Python's
//! and with fixed texts, so the fields, their order and their types stay as
//! they are.

use socketscience::message;

/// Where an instance runs, and when it said so.
#[message("ping")]
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    pub location: String,
    pub timestamp: f64,
}

/// A newtype: its value on the wire is the bare float.
#[message("heartbeat")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heartbeat(pub f64);

/// A unit enum: its value on the wire is the lowercase variant name.
#[message("metasmoke_state")]
#[serde(rename_all = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetasmokeState {
    Up,
    Down,
}

/// An instance's location, a bare string on the wire: with `timestamp`,
/// the two kinds of SmokeDetector's status ping (metasmoke.py).
#[message("location")]
#[derive(Debug, Clone, PartialEq)]
pub struct Location(pub String);

/// A question every instance answers with its [`Location`].
#[message("where_are_you", reply = Location)]
#[derive(Debug, Clone)]
pub struct WhereAreYou;
