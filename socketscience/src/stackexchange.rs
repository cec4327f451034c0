//! Stack Exchange chat.
