//! Host bindings generated from `wit/`. The capability world is generated once and
//! its interfaces are shared by the plugin worlds, so each host function is
//! implemented once (in `capabilities/`).
//!
//! The host binds the `-base` worlds: their exports are exactly those of a plugin
//! built against WIT 0.1.0, so such a plugin still loads (wasmtime matches 0.1.0
//! against 0.1.1 by semver). The `grants` export that 0.1.1 added is read on its own
//! through `grant_declarations`.

#![allow(missing_docs)]

/// The imports every plugin may use: `log`, `files` and the store clients.
pub mod capabilities {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "host-capabilities",
        // A processor's state and timer calls trap when they break a bound.
        imports: {
            "wasm-connect:connector/state": trappable,
            "wasm-connect:connector/timers": trappable,
        },
    });
}

/// Source plugins.
pub mod source {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "source-base",
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
        world: "sink-base",
        with: {
            "wasm-connect:connector/types": super::capabilities::wasm_connect::connector::types,
            "wasm-connect:connector/log": super::capabilities::wasm_connect::connector::log,
            "wasm-connect:connector/files": super::capabilities::wasm_connect::connector::files,
            "wasm-connect:connector/elasticsearch": super::capabilities::wasm_connect::connector::elasticsearch,
            "wasm-connect:connector/mongodb": super::capabilities::wasm_connect::connector::mongodb,
            "wasm-connect:connector/cassandra": super::capabilities::wasm_connect::connector::cassandra,
        },
    });
}

/// Transform plugins.
pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform-base",
        with: {
            "wasm-connect:connector/types": super::capabilities::wasm_connect::connector::types,
            "wasm-connect:connector/log": super::capabilities::wasm_connect::connector::log,
        },
    });
}

/// Transforms in a connector's chain (WIT 0.1.3).
pub mod record_transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "record-transform-base",
        with: {
            "wasm-connect:connector/types": super::capabilities::wasm_connect::connector::types,
            "wasm-connect:connector/log": super::capabilities::wasm_connect::connector::log,
        },
    });
}

/// Stream processors (WIT 0.1.4).
pub mod stream_processor {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "stream-processor-base",
        with: {
            "wasm-connect:connector/types": super::capabilities::wasm_connect::connector::types,
            "wasm-connect:connector/log": super::capabilities::wasm_connect::connector::log,
            "wasm-connect:connector/state": super::capabilities::wasm_connect::connector::state,
            "wasm-connect:connector/timers": super::capabilities::wasm_connect::connector::timers,
        },
    });
}

/// The `plugin` export every plugin has, whatever its world: describe and validate.
pub mod described {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "described",
        with: {
            "wasm-connect:connector/types": super::capabilities::wasm_connect::connector::types,
        },
    });
}

/// The `grants` export of plugins built against 0.1.1 or later.
pub mod grant_declarations {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "grant-declarations",
    });
}

pub use capabilities::wasm_connect::connector::types;
