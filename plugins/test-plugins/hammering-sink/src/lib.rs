//! `hammering-sink`: on every write, calls the files capability in a tight loop and
//! never returns: `size` of one file (`call: size`), or a one-byte `append` to a new
//! file each time (`call: append-new-files`), which would hold a descriptor per file
//! if the host let it. For the tests that hostile plugins fail only themselves.

use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, RecordView, Settings, Sink, export_sink, files};

/// The task.
pub struct HammeringSink {
    call: String,
}

impl Plugin for HammeringSink {
    fn description() -> Description {
        Description::new("hammering-sink", env!("CARGO_PKG_VERSION"), "Calls the files capability in a tight loop, for tests.")
            .option(ConfigOption::new("call", OptionType::String, "size or append-new-files.").required())
            .option(ConfigOption::new("directory", OptionType::Directory, "The granted directory.").required())
    }
}

impl Sink for HammeringSink {
    fn open(settings: &Settings) -> Result<Self, Error> {
        let call = settings.string("call")?;
        match call.as_str() {
            "size" | "append-new-files" => Ok(Self { call }),
            other => Err(Error::BadConfig(format!("call must be size or append-new-files, not {other:?}"))),
        }
    }

    fn write(&mut self, _records: &[RecordView<'_>]) -> Result<(), Error> {
        let mut calls = 0u64;
        loop {
            calls = calls.wrapping_add(1);
            if self.call == "size" {
                std::hint::black_box(files::size("hammered"));
            } else {
                files::append(&format!("hammered-{calls}"), b"x")?;
            }
        }
    }
}

export_sink!(HammeringSink);
