//! What the wasm-connect host and its plugins must agree on, written once and linked
//! by both sides: the flat record-batch encoding that crosses the WebAssembly boundary
//! ([`batch`]) and the syntax of configuration option values ([`values`]).

#![forbid(unsafe_code)]

pub mod batch;
pub mod values;

pub use batch::{BatchReader, BatchWriter, DecodeError, Record, RecordView, decode, encode};
