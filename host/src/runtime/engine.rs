//! The one wasmtime engine, its epoch clock, the linker with the host capabilities
//! (WASI without files or environment, wasi:http, the wasm-connect interfaces),
//! and compilation with an on-disk cache of compiled components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::capabilities::HostCapabilities;
use super::task::TaskState;
use crate::capabilities::StoreClients;

/// Set to `perfmap` to name plugin code in `perf` profiles (see BENCHMARKS.md).
pub const PROFILE_VARIABLE: &str = "WASM_CONNECT_PROFILE";

/// Names a directory of compiled plugins shared by every host on the machine (and by
/// `validate`) instead of `data_dir/cache/compiled`.
pub const CACHE_VARIABLE: &str = "WASM_CONNECT_CACHE_DIR";

/// A compiled component no host loaded for this long is removed from the cache when a
/// host next loads its plugins (each load refreshes the file's modification time), so a
/// cache that sees plugin versions come and go does not grow for ever.
pub const CACHE_UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A temporary file of a cache writer that died before renaming it is removed after this.
const ABANDONED_WRITE_AGE: Duration = Duration::from_secs(24 * 3600);

/// How often the epoch advances; call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The limits every plugin task runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    /// Linear memory a task may grow to.
    pub memory_bytes: usize,
    /// Longest one plugin call may run.
    pub call_timeout: Duration,
}

/// The engine, the linker and the compiled-component cache, shared by every task.
#[derive(Clone)]
pub struct Runtime {
    /// The shared engine.
    pub engine: Engine,
    /// WASI (no files, no environment) and the host capabilities.
    pub linker: Arc<Linker<TaskState>>,
    /// The limits of each task.
    pub limits: TaskLimits,
    /// Pooled store clients (Elasticsearch, MongoDB), shared by every task.
    pub stores: Arc<StoreClients>,
    cache_dir: PathBuf,
    /// The components built into the host, compiled on first use.
    pub(super) builtins: Arc<super::builtin::Builtins>,
    /// Whether newly compiled components are written to `cache_dir` (not by `validate`,
    /// which only reads).
    cache_writes: bool,
    /// Plugin code is named for `perf` (`WASM_CONNECT_PROFILE`).
    profiling: bool,
    /// `cache_dir` is shared with other hosts, so checked before each load.
    cache_shared: bool,
}

impl Runtime {
    /// Builds the engine and starts its epoch clock. Compiled components are cached in
    /// `cache_dir`.
    pub fn new(cache_dir: &Path, limits: TaskLimits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        // wasmtime writes /tmp/perf-<pid>.map, where `perf report` finds the names of
        // the functions it compiled: plugin code shows as its own functions rather
        // than as unknown addresses.
        let profiling = match std::env::var(PROFILE_VARIABLE).as_deref() {
            Ok("perfmap") => {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
                true
            }
            Ok("") | Err(std::env::VarError::NotPresent) => false,
            Ok(_) | Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("{PROFILE_VARIABLE} may only be `perfmap` (plugin code named in `perf` profiles) or unset")
            }
        };
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;
        // Outgoing HTTP, checked per request against the connector's grants (capabilities/http.rs).
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;
        HostCapabilities::add_to_linker::<TaskState, HasSelf<TaskState>>(&mut linker, |state| state).map_err(anyhow::Error::from)?;
        start_epoch_clock(&engine);
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits,
            stores: Arc::new(StoreClients::default()),
            cache_dir: cache_dir.to_path_buf(),
            builtins: Arc::default(),
            cache_writes: true,
            profiling,
            cache_shared: false,
        })
    }

    /// The same runtime, reading the compiled-component cache but never writing to it.
    pub fn without_cache_writes(self) -> Self {
        Self { cache_writes: false, ..self }
    }

    /// The same runtime on a cache shared with other hosts (`WASM_CONNECT_CACHE_DIR`):
    /// the directory is checked again before each load (see [`check_private_dir`]).
    pub fn with_shared_cache(self) -> Self {
        Self { cache_shared: true, ..self }
    }

    /// Compiles a component, or loads it from the cache when the same bytes were
    /// compiled before by an engine with the same settings. Blocking: call it off the
    /// async threads.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let key = self.cache_key(bytes);
        let cached = self.cache_dir.join(format!("{key}.cwasm"));
        let trusted = !self.cache_shared
            || check_private_dir(&self.cache_dir)
                .inspect_err(|error| tracing::warn!(%error, "The shared plugin cache is not used; compiling instead."))
                .is_ok();
        if trusted && cached.exists() {
            // SAFETY: the file is one this host (or, in a shared cache, another host of
            // this user's) serialised into a directory only this user can write to,
            // named by the hash of the component and the engine settings; a file that
            // fails to load is recompiled below.
            // A profiled run copies the code into memory: `perf` names code in a mapped
            // file after the file (it has no symbols), not from wasmtime's perf map.
            #[allow(unsafe_code)]
            let loaded = if self.profiling {
                std::fs::read(&cached)
                    .map_err(wasmtime::Error::from)
                    .and_then(|serialized| unsafe { Component::deserialize(&self.engine, serialized) })
            } else {
                unsafe { Component::deserialize_file(&self.engine, &cached) }
            };
            match loaded {
                Ok(component) => {
                    if self.cache_writes {
                        // Marks it used, for [`prune_cache`]; a file this user cannot
                        // open for writing stays as it is.
                        let _ = std::fs::File::options().write(true).open(&cached).and_then(|file| file.set_modified(SystemTime::now()));
                    }
                    return Ok(component);
                }
                Err(error) => tracing::warn!(path = %cached.display(), %error, "Cached plugin could not be loaded; compiling it again."),
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(anyhow::Error::from)?;
        if !self.cache_writes || !trusted {
            return Ok(component);
        }
        if let Err(error) = self.store_in_cache(&component, &cached) {
            tracing::warn!(path = %cached.display(), %error, "Compiled plugin could not be cached; it will be compiled again next start.");
        }
        Ok(component)
    }

    /// Whether the compiled cache is shared with other hosts (`WASM_CONNECT_CACHE_DIR`).
    pub fn shares_cache(&self) -> bool {
        self.cache_shared
    }

    /// Prunes the compiled cache (see [`prune_cache`]) when this runtime may write to it,
    /// and logs what went. Blocking.
    pub fn prune_cache(&self) {
        if !self.cache_writes || (self.cache_shared && check_private_dir(&self.cache_dir).is_err()) {
            return;
        }
        let removed = prune_cache(&self.cache_dir, SystemTime::now());
        if removed > 0 {
            tracing::info!(
                removed,
                days = CACHE_UNUSED_FOR.as_secs() / 86_400,
                "Removed compiled plugins no host had loaded for the given number of days from the cache."
            );
        }
    }

    fn store_in_cache(&self, component: &Component, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        use std::sync::atomic::{AtomicU64, Ordering};
        static WRITES: AtomicU64 = AtomicU64::new(0);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.cache_dir).context("creating the cache directory")?;
        let serialized = component.serialize().map_err(anyhow::Error::from)?;
        // A new file of its own per writer (hosts sharing the directory may compile the
        // same component at once), written in full and synced before it takes the name.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.subsec_nanos());
        let temporary = path.with_extension(format!("{}-{nanos}-{}.tmp", std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed)));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(&serialized)?;
                file.sync_data()
            })
            .and_then(|()| std::fs::rename(&temporary, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        Ok(written?)
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut settings = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut settings);
        let mut digest = Sha256::new();
        digest.update(bytes);
        digest.update(settings.finish().to_le_bytes());
        digest.update(env!("CARGO_PKG_VERSION").as_bytes());
        digest.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

/// Where compiled components are cached for a host on `data_dir`, and whether the
/// place is shared: `WASM_CONNECT_CACHE_DIR` when set (created owner-only when missing,
/// and refused unless [`check_private_dir`] passes), else `data_dir/cache/compiled`.
pub fn cache_dir_for(data_dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(shared) = std::env::var_os(CACHE_VARIABLE).filter(|value| !value.is_empty()) else {
        return Ok((data_dir.join("cache").join("compiled"), false));
    };
    let shared = PathBuf::from(shared);
    if std::fs::symlink_metadata(&shared).is_err() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&shared).with_context(|| {
            format!(
                "{CACHE_VARIABLE} names {}, which cannot be created: name a directory this user may create, or unset it",
                shared.display()
            )
        })?;
    }
    check_private_dir(&shared)?;
    Ok((shared, true))
}

/// Refuses a shared cache directory that anyone but this user could change: its files
/// are loaded as compiled code without another check. The directory itself must not
/// be a symbolic link, must be this user's and writable by no one else; every
/// directory above it must be root's or this user's, and writable by others only
/// with the sticky bit (as /tmp is), so that nobody can move it away and put another
/// in its place.
pub fn check_private_dir(directory: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let user = unsafe { libc::geteuid() };
    let unusable = |why: String| {
        anyhow::anyhow!(
            "{CACHE_VARIABLE} names {}, {why}: compiled plugins there would run unchecked. Give it to this user with mode 700 \
             under directories only root or this user can change (or unset {CACHE_VARIABLE})",
            directory.display()
        )
    };
    let metadata = std::fs::symlink_metadata(directory).map_err(|error| unusable(format!("which cannot be read ({error})")))?;
    if metadata.file_type().is_symlink() {
        return Err(unusable("which is a symbolic link".to_owned()));
    }
    if !metadata.is_dir() {
        return Err(unusable("which is not a directory".to_owned()));
    }
    if metadata.uid() != user || metadata.mode() & 0o022 != 0 {
        return Err(unusable(format!("which another user could write to (owner {}, mode {:o})", metadata.uid(), metadata.mode() & 0o777)));
    }
    let canonical = std::fs::canonicalize(directory).map_err(|error| unusable(format!("which cannot be resolved ({error})")))?;
    for parent in canonical.ancestors().skip(1) {
        let metadata =
            std::fs::metadata(parent).map_err(|error| unusable(format!("whose parent {} cannot be read ({error})", parent.display())))?;
        let others_write = metadata.mode() & 0o022 != 0 && metadata.mode() & 0o1000 == 0;
        if (metadata.uid() != 0 && metadata.uid() != user) || others_write {
            return Err(unusable(format!(
                "inside {}, which another user could change (owner {}, mode {:o})",
                parent.display(),
                metadata.uid(),
                metadata.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

/// Removes from `cache_dir` the compiled components last loaded (or written) more than
/// [`CACHE_UNUSED_FOR`] before `now`, and the temporary files of writes abandoned more
/// than a day ago. Only regular files named as the cache names them (64 hex digits, then
/// `.cwasm`, or `.<writer>.tmp`) are looked at: a shared directory may hold anything
/// else. Returns how many files went.
pub fn prune_cache(cache_dir: &Path, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(cache_dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((key, rest)) = name.split_at_checked(64) else { continue };
        if !key.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) {
            continue;
        }
        let age_limit = if rest == ".cwasm" {
            CACHE_UNUSED_FOR
        } else if is_writer_suffix(rest) {
            ABANDONED_WRITE_AGE
        } else {
            continue;
        };
        // Looked at just before the removal. Another host sharing the cache may load or
        // replace the file between the look and the removal (a window of one system
        // call); it then finds the file gone and compiles the component again, which
        // costs time, not correctness. `symlink_metadata` does not follow links.
        let unused = std::fs::symlink_metadata(entry.path()).is_ok_and(|metadata| {
            metadata.is_file()
                && metadata.modified().ok().and_then(|modified| now.duration_since(modified).ok()).is_some_and(|age| age > age_limit)
        });
        if unused && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// `.<pid>-<nanos>-<count>.tmp`: the name [`Runtime::store_in_cache`] gives a file it is
/// writing, after the key.
fn is_writer_suffix(rest: &str) -> bool {
    let Some(numbers) = rest.strip_prefix('.').and_then(|rest| rest.strip_suffix(".tmp")) else { return false };
    let parts: Vec<&str> = numbers.split('-').collect();
    parts.len() == 3 && parts.iter().all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()))
}

/// Advances the engine's epoch every tick for as long as the engine lives.
fn start_epoch_clock(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{ABANDONED_WRITE_AGE, CACHE_UNUSED_FOR, prune_cache};

    #[test]
    fn pruning_removes_only_the_cache_files_unused_for_long() {
        let cache = tempfile::tempdir().unwrap();
        let key = "ab".repeat(32);
        let other_key = "0f".repeat(32);
        let now = SystemTime::now();
        let file = |name: &str, age: Duration| {
            let path = cache.path().join(name);
            std::fs::write(&path, b"compiled").unwrap();
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(now - age).unwrap();
            path
        };
        let day = Duration::from_secs(86_400);
        let used = file(&format!("{key}.cwasm"), CACHE_UNUSED_FOR - day);
        let unused = file(&format!("{other_key}.cwasm"), CACHE_UNUSED_FOR + day);
        let fresh_write = file(&format!("{key}.123-456-0.tmp"), ABANDONED_WRITE_AGE - Duration::from_secs(60));
        let abandoned_write = file(&format!("{other_key}.123-456-1.tmp"), ABANDONED_WRITE_AGE + Duration::from_secs(60));
        // Not named by the cache: kept whatever their age.
        let notes = file("notes.cwasm", CACHE_UNUSED_FOR * 2);
        let short = file(&format!("{}.cwasm", &key[..63]), CACHE_UNUSED_FOR * 2);
        let not_hex = file(&format!("{}.cwasm", "zz".repeat(32)), CACHE_UNUSED_FOR * 2);
        let upper_case = file(&format!("{}.cwasm", "AB".repeat(32)), CACHE_UNUSED_FOR * 2);
        let other_tool = file(&format!("{other_key}.part.tmp"), ABANDONED_WRITE_AGE * 2);
        std::fs::create_dir(cache.path().join(format!("{}.cwasm", "cd".repeat(32)))).unwrap();

        assert_eq!(prune_cache(cache.path(), now), 2);
        for kept in [&used, &fresh_write, &notes, &short, &not_hex, &upper_case, &other_tool] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(!unused.exists() && !abandoned_write.exists());
        assert!(cache.path().join(format!("{}.cwasm", "cd".repeat(32))).is_dir());
        assert_eq!(prune_cache(&cache.path().join("missing"), now), 0);
    }
}
