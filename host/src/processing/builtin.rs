//! The processors built into the host: configured with options like a plugin, listed
//! with the plugins (type `processor`), and run natively with their state in the
//! task's checkpoint.

use super::Processor;
use super::aggregate::{self, Aggregate};
use super::dedupe::{self, Dedupe};
use super::join::{self, Join};
use super::threshold::{self, Threshold};
use crate::runtime::{ConfigOptionDescription, OptionType, PluginDescription, PluginKind};

/// One option of a built-in processor.
pub struct OptionSpec {
    /// The key in `config:`.
    pub name: &'static str,
    /// The type its value must have.
    pub option_type: OptionType,
    /// The value used when the key is absent.
    pub default: Option<&'static str>,
    /// Whether the key must be given.
    pub required: bool,
    /// What it is for.
    pub documentation: &'static str,
}

/// The names of the processors built into the host; no plugin may take them.
pub const BUILTIN_PROCESSORS: &[&str] = &["aggregate", "dedupe", "join", "threshold"];

/// Whether a connector's `plugin` (`name` or `name@version`) is a built-in processor.
pub fn is_builtin_processor(plugin: &str) -> bool {
    BUILTIN_PROCESSORS.contains(&plugin.split('@').next().unwrap_or_default())
}

/// What a built-in processor says about itself, as a plugin would.
pub fn processor_description(name: &str) -> Option<PluginDescription> {
    let (documentation, options) = match name {
        "aggregate" => (
            "Windowed aggregations per group (count, sum, avg, min, max, first, last, distinct count) over tumbling or \
             hopping windows in event time, with grace for late records, a wall-clock timeout that closes windows on an \
             idle input, and gauges (the newest value per sub-key). Results are emitted once per window.",
            aggregate::OPTIONS,
        ),
        "dedupe" => (
            "Drops the records that repeat an earlier one's identity (its key or value fields) within a horizon of \
             event time: producer retries, repeated snapshots of a polled API.",
            dedupe::OPTIONS,
        ),
        "join" => (
            "Enriches each record with the matching entry of a reference table (a topic read whole by every task, its \
             newest value per key), joined by key or field, like Kafka Streams' GlobalKTable; records with no match \
             pass, are dropped or fail, as configured.",
            join::OPTIONS,
        ),
        "threshold" => (
            "An alert when a numeric field stays above (or below) a threshold for N records in a row of one group \
             (a sensor above 80 three readings in a row); one alert per run.",
            threshold::OPTIONS,
        ),
        _ => return None,
    };
    Some(PluginDescription {
        name: name.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        kind: PluginKind::Processor,
        documentation: documentation.to_owned(),
        options: options
            .iter()
            .map(|option| ConfigOptionDescription {
                name: option.name.to_owned(),
                option_type: option.option_type,
                default: option.default.map(str::to_owned),
                required: option.required,
                secret: false,
                documentation: option.documentation.to_owned(),
            })
            .collect(),
    })
}

/// A new instance of the built-in processor `name` with `options`, or every problem
/// as (option, message).
pub fn build_processor(name: &str, options: &[(String, String)]) -> Result<Box<dyn Processor>, Vec<(String, String)>> {
    match name {
        "aggregate" => Ok(Box::new(Aggregate::new(options)?)),
        "dedupe" => Ok(Box::new(Dedupe::new(options)?)),
        "join" => Ok(Box::new(Join::new(options)?)),
        "threshold" => Ok(Box::new(Threshold::new(options)?)),
        other => Err(vec![("plugin".to_owned(), format!("{other} is not a processor built into this host"))]),
    }
}
