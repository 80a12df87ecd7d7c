//! `trapping-describe`: a sink whose `describe` panics, so the host must refuse it
//! when it is loaded or uploaded. Built into `plugins/test-broken/`, never loaded
//! with the other test plugins.

use wasm_connect_sdk::{Description, Error, Plugin, RecordView, Settings, Sink, export_sink};

/// The task (never opened: the plugin cannot describe itself).
pub struct TrappingDescribe;

impl Plugin for TrappingDescribe {
    fn description() -> Description {
        panic!("trapping-describe traps in describe on purpose")
    }
}

impl Sink for TrappingDescribe {
    fn open(_settings: &Settings) -> Result<Self, Error> {
        Ok(Self)
    }

    fn write(&mut self, _records: &[RecordView<'_>]) -> Result<(), Error> {
        Ok(())
    }
}

export_sink!(TrappingDescribe);
