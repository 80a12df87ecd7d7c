//! Log levels that change while the host runs, as Kafka Connect's `/admin/loggers`:
//! a `root` level and a level per logger, a logger being a `tracing` target prefix
//! (`wasm_connect::worker`, `plugin` for plugins' own lines, `librdkafka`, ...).
//! The levels start from `WASM_CONNECT_LOG` and are applied through a reloadable
//! filter.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Kafka Connect's level names, and what each means here.
const LEVELS: &[(&str, &str)] =
    &[("OFF", "off"), ("FATAL", "error"), ("ERROR", "error"), ("WARN", "warn"), ("INFO", "info"), ("DEBUG", "debug"), ("TRACE", "trace")];

/// One logger's level.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct LoggerLevel {
    /// `OFF`, `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// When it was last set through the API, in milliseconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<u64>,
}

/// The most loggers with a level of their own: each is a directive of the filter.
const MAX_LOGGERS: usize = 1000;

/// The levels in force and the filter they are applied through.
pub struct LogLevels {
    levels: Mutex<BTreeMap<String, LoggerLevel>>,
    filter: reload::Handle<EnvFilter, Registry>,
}

static LOG_LEVELS: OnceLock<LogLevels> = OnceLock::new();

/// Installs the process's log output (stderr, ANSI colours on a terminal) with the
/// levels of `directives` (`tracing` filter syntax, such as `info,plugin=warn`).
pub fn init(directives: &str) {
    let mut levels = BTreeMap::new();
    levels.insert("root".to_owned(), LoggerLevel { level: "INFO".to_owned(), last_modified: None });
    for directive in directives.split(',').map(str::trim).filter(|directive| !directive.is_empty()) {
        let (logger, level) = directive.split_once('=').unwrap_or(("root", directive));
        if let Some((name, _)) = LEVELS.iter().find(|(_, filter)| filter.eq_ignore_ascii_case(level.trim())) {
            levels.insert(logger.trim().to_owned(), LoggerLevel { level: (*name).to_owned(), last_modified: None });
        }
    }
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(super::redaction::RedactingStderr),
        )
        .init();
    let _ = LOG_LEVELS.set(LogLevels { levels: Mutex::new(levels), filter: handle });
}

/// The levels in force; `None` when [`init`] did not run (a host inside a test).
pub fn levels() -> Option<&'static LogLevels> {
    LOG_LEVELS.get()
}

impl LogLevels {
    /// Every logger with its level.
    pub fn all(&self) -> BTreeMap<String, LoggerLevel> {
        self.levels.lock().expect("log levels lock").clone()
    }

    /// One logger's level: its own, or that of the nearest logger above it.
    pub fn get(&self, logger: &str) -> LoggerLevel {
        let levels = self.levels.lock().expect("log levels lock");
        let mut name = logger;
        loop {
            if let Some(level) = levels.get(name) {
                return level.clone();
            }
            match name.rsplit_once("::") {
                Some((parent, _)) => name = parent,
                None => return levels["root"].clone(),
            }
        }
    }

    /// Sets `logger` (or `root`) to `level`; returns the loggers now at that level
    /// because of it (the logger and those below it, which it replaces).
    pub fn set(&self, logger: &str, level: &str) -> Result<Vec<String>, String> {
        let (canonical, _) = LEVELS.iter().find(|(name, _)| name.eq_ignore_ascii_case(level)).ok_or_else(|| {
            format!("level must be one of {}, not {level:?}", LEVELS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", "))
        })?;
        crate::names::check_logger(logger)?;
        let mut levels = self.levels.lock().expect("log levels lock");
        if !levels.contains_key(logger) && levels.len() >= MAX_LOGGERS {
            return Err(format!("{MAX_LOGGERS} loggers have levels already; set a level on a parent such as root instead"));
        }
        let below = format!("{logger}::");
        let affected: Vec<String> = levels
            .keys()
            .filter(|name| *name == logger || logger == "root" || name.starts_with(&below))
            .cloned()
            .chain(std::iter::once(logger.to_owned()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64);
        // The new levels are applied before they are kept: a level the filter refuses
        // leaves the old ones in force and in the map.
        let mut updated = levels.clone();
        for name in &affected {
            updated.insert(name.clone(), LoggerLevel { level: (*canonical).to_owned(), last_modified: Some(now) });
        }
        let directives: Vec<String> = updated
            .iter()
            .map(|(name, level)| {
                let filter = LEVELS.iter().find(|(known, _)| *known == level.level).map_or("info", |(_, filter)| filter);
                if name == "root" { filter.to_owned() } else { format!("{name}={filter}") }
            })
            .collect();
        let filter = EnvFilter::try_new(directives.join(",")).map_err(|error| format!("the levels could not be applied: {error}"))?;
        self.filter.reload(filter).map_err(|error| format!("the levels could not be applied: {error}"))?;
        *levels = updated;
        Ok(affected)
    }
}
