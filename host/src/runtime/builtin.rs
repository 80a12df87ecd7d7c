//! Components built into the host binary: the jq component (`plugins/jq-transform`),
//! which runs the `Jq$Value`, `Jq$Key` and `Jq` types, so that a jq program that
//! recurses without end or never stops is stopped by a component's limits instead of
//! taking the host down. Compiled once per runtime, on first use.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::{LoadedPlugin, PluginOrigin, Runtime, load_component};

/// The jq component, as the build script left it (empty when the plugins were not
/// built: `WASM_CONNECT_SKIP_PLUGIN_BUILD`).
const JQ_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/jq-transform.wasm"));

/// The compiled jq component of one runtime.
#[derive(Default)]
pub(super) struct Builtins {
    jq: OnceLock<Result<Arc<LoadedPlugin>, String>>,
}

impl Runtime {
    /// The jq component, compiled on first use (blocking), or why it cannot be used.
    pub fn jq_component(&self) -> Result<Arc<LoadedPlugin>, String> {
        self.builtins
            .jq
            .get_or_init(|| {
                if JQ_COMPONENT.is_empty() {
                    return Err("this host was built without its plugins (WASM_CONNECT_SKIP_PLUGIN_BUILD): jq is not available".to_owned());
                }
                load_component(self, JQ_COMPONENT, &PathBuf::from("(built in)/jq-transform.wasm"), PluginOrigin::Directory)
                    .map(Arc::new)
                    .map_err(|reason| format!("the built-in jq component did not load: {reason}"))
            })
            .clone()
    }
}
