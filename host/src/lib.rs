//! wasm-connect: a Kafka Connect-style host for WebAssembly connector plugins.
//!
//! The host reads `connectors.yaml` ([`config`]), loads plugin components into a
//! sandboxed [`runtime`], offers them host [`capabilities`], moves records through a
//! [`transport`] (Kafka or the embedded SQLite store) with the [`worker`] task loops,
//! runs stream [`processing`] between topics, runs them under the [`manager`] (the one owner of the running set), and reports
//! through the [`admin`] API and [`telemetry`]; [`topic_tools`] look into topics.

pub mod admin;
pub mod capabilities;
pub mod cluster;
pub mod config;
pub mod data_dir;
pub mod host;
pub mod manager;
pub mod names;
pub mod processing;
pub mod runtime;
pub mod telemetry;
pub mod topic_tools;
pub mod transforms;
pub mod transport;
pub mod worker;

pub use host::run;
