//! What the wasm-connect host and its plugins must agree on, written once and linked
//! by both sides: the flat record-batch encoding that crosses the WebAssembly boundary
//! ([`batch`]), the syntax of configuration option values ([`values`]) and calendar
//! arithmetic both sides need ([`time`]), percent-encoding ([`url`]), and the look at
//! JSON text both make before building a tree from it ([`json`]).

#![forbid(unsafe_code)]

pub mod batch;
pub mod json;
pub mod time;
pub mod url;
pub mod values;

pub use batch::{BatchReader, BatchWriter, DecodeError, Record, RecordView, decode, encode};

/// A header a source puts on an item it could not convert: the host sends that record
/// to the connector's dead-letter topic with the header's value as the reason
/// (`errors.tolerance: all`), or fails the task (`none`), instead of writing it to the
/// connector's topic.
pub const DEAD_LETTER_REASON_HEADER: &str = "wasm-connect.dead-letter.reason";
