//! Host bindings generated from `wit/`. The capability world is generated once and
//! its interfaces are shared by the plugin worlds, so each host function is
//! implemented once (in `capabilities/`).

#![allow(missing_docs)]

/// The imports every plugin may use: `log` and `files`.
pub mod capabilities {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "host-capabilities",
    });
}

/// Source plugins.
pub mod source {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "source",
        with: {
            "wasm-connect:connector/types": super::capabilities::wasm_connect::connector::types,
            "wasm-connect:connector/log": super::capabilities::wasm_connect::connector::log,
        },
    });
}

/// Sink plugins.
pub mod sink {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sink",
        with: {
            "wasm-connect:connector/types": super::capabilities::wasm_connect::connector::types,
            "wasm-connect:connector/log": super::capabilities::wasm_connect::connector::log,
            "wasm-connect:connector/files": super::capabilities::wasm_connect::connector::files,
        },
    });
}

/// Transform plugins.
pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        with: {
            "wasm-connect:connector/types": super::capabilities::wasm_connect::connector::types,
            "wasm-connect:connector/log": super::capabilities::wasm_connect::connector::log,
        },
    });
}

pub use capabilities::wasm_connect::connector::types;
