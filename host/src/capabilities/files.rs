//! `files`: append-only files inside the one directory a connector's `directory`
//! option grants. Names are plain file names, so a plugin cannot leave its directory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use crate::runtime::TaskState;
use crate::runtime::bindings::capabilities::wasm_connect::connector::files::Host;
use crate::runtime::bindings::types::Error;

/// Most bytes one `read-tail` call returns.
const MAX_TAIL: u32 = 1 << 20;

/// Most files a task keeps open. A plugin that writes to ever new names has the
/// others synced and closed rather than holding a descriptor each, which would
/// exhaust the host's (and with them the admin API's connections).
const MAX_OPEN_FILES: usize = 64;

/// The directory granted to one task and the files it has open.
#[derive(Debug)]
pub struct FileGrant {
    directory: PathBuf,
    open: HashMap<String, File>,
    unsynced: Vec<String>,
    created: bool,
}

impl FileGrant {
    /// Grants `directory` (created on first write).
    pub fn new(directory: PathBuf) -> Self {
        Self { directory, open: HashMap::new(), unsynced: Vec::new(), created: false }
    }

    fn check_name(name: &str) -> Result<(), Error> {
        let plain = !name.is_empty() && name.len() <= 255 && !name.starts_with('.') && !name.contains(['/', '\\', '\0']) && name != "..";
        if plain { Ok(()) } else { Err(Error::Fatal(format!("file name {name:?} is not a plain file name inside the granted directory"))) }
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<u64, Error> {
        Self::check_name(name)?;
        let io = |error: std::io::Error| Error::Retriable(format!("writing {name}: {error}"));
        if !self.open.contains_key(name) {
            if self.open.len() >= MAX_OPEN_FILES {
                // Synced first: a commit after this write must still find them durable.
                self.sync()?;
                self.open.clear();
            }
            std::fs::create_dir_all(&self.directory).map_err(io)?;
            self.created = true;
            let file = OpenOptions::new().create(true).append(true).open(self.directory.join(name)).map_err(io)?;
            self.open.insert(name.to_owned(), file);
        }
        let file = self.open.get_mut(name).expect("inserted above");
        file.write_all(data).map_err(io)?;
        if !self.unsynced.iter().any(|unsynced| unsynced == name) {
            self.unsynced.push(name.to_owned());
        }
        Ok(file.metadata().map_err(io)?.len())
    }

    fn size(&self, name: &str) -> Option<u64> {
        Self::check_name(name).ok()?;
        std::fs::metadata(self.directory.join(name)).ok().map(|metadata| metadata.len())
    }

    fn read_tail(&self, name: &str, length: u32) -> Result<Vec<u8>, Error> {
        use std::io::{Read, Seek, SeekFrom};
        Self::check_name(name)?;
        let io = |error: std::io::Error| Error::Retriable(format!("reading {name}: {error}"));
        let mut file = File::open(self.directory.join(name)).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let start = size.saturating_sub(u64::from(length.min(MAX_TAIL)));
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut tail = Vec::with_capacity((size - start) as usize);
        file.read_to_end(&mut tail).map_err(io)?;
        Ok(tail)
    }

    fn truncate(&mut self, name: &str, size: u64) -> Result<(), Error> {
        Self::check_name(name)?;
        let io = |error: std::io::Error| Error::Retriable(format!("truncating {name}: {error}"));
        self.open.remove(name);
        let file = OpenOptions::new().write(true).open(self.directory.join(name)).map_err(io)?;
        if size < file.metadata().map_err(io)?.len() {
            file.set_len(size).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Error> {
        for name in self.unsynced.drain(..) {
            if let Some(file) = self.open.get(&name) {
                file.sync_data().map_err(|error| Error::Retriable(format!("syncing {name}: {error}")))?;
            }
        }
        if std::mem::take(&mut self.created) {
            // New files must survive a crash too: sync the directory entry.
            if let Ok(directory) = File::open(&self.directory) {
                let _ = directory.sync_all();
            }
        }
        // Keep few descriptors open: a rotated-away file is never appended again.
        if self.open.len() >= MAX_OPEN_FILES {
            self.open.clear();
        }
        Ok(())
    }
}

fn not_granted() -> Error {
    Error::BadConfig("this connector has no `directory` option, so the files capability is not granted".to_owned())
}

impl Host for TaskState {
    fn append(&mut self, name: String, data: Vec<u8>) -> Result<u64, Error> {
        self.count_capability_call();
        self.files.as_mut().ok_or_else(not_granted)?.append(&name, &data)
    }

    fn size(&mut self, name: String) -> Option<u64> {
        self.count_capability_call();
        self.files.as_ref()?.size(&name)
    }

    fn sync(&mut self) -> Result<(), Error> {
        self.count_capability_call();
        self.files.as_mut().ok_or_else(not_granted)?.sync()
    }

    fn read_tail(&mut self, name: String, length: u32) -> Result<Vec<u8>, Error> {
        self.count_capability_call();
        self.files.as_ref().ok_or_else(not_granted)?.read_tail(&name, length)
    }

    fn truncate(&mut self, name: String, size: u64) -> Result<(), Error> {
        self.count_capability_call();
        self.files.as_mut().ok_or_else(not_granted)?.truncate(&name, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_writing_ever_new_files_holds_a_bounded_number_open_and_loses_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let mut grant = FileGrant::new(directory.path().to_owned());
        for n in 0..500 {
            grant.append(&format!("file-{n}"), format!("{n}\n").as_bytes()).unwrap();
            assert!(grant.open.len() <= MAX_OPEN_FILES, "{} files open", grant.open.len());
        }
        grant.sync().unwrap();
        for n in 0..500 {
            assert_eq!(std::fs::read_to_string(directory.path().join(format!("file-{n}"))).unwrap(), format!("{n}\n"));
        }
        assert!(grant.unsynced.is_empty());
    }
}
