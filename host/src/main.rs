//! The `wasm-connect` command: `run`, `validate`, `plugins`, `topics` and `transforms`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wasm_connect::config::{self, LoadedConfig};

/// A Kafka Connect-style host for WebAssembly connectors.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the connectors of a configuration until interrupted (SIGINT or SIGTERM).
    Run {
        /// The configuration file.
        #[arg(default_value = "connectors.yaml")]
        config: PathBuf,
    },
    /// Checks a configuration, its plugins and every connector's options, then exits;
    /// writes nothing.
    Validate {
        /// The configuration file.
        #[arg(default_value = "connectors.yaml")]
        config: PathBuf,
    },
    /// Lists the plugins found in the configuration's plugin directory.
    Plugins {
        /// The configuration file whose `plugins.dir` is listed.
        #[arg(default_value = "connectors.yaml")]
        config: PathBuf,
        /// Print the descriptions as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists, describes, reads and writes topics on the configuration's transport
    /// (Kafka or the embedded store), as kafka-topics, kafka-console-consumer and
    /// -producer or kcat do for Kafka.
    Topics {
        /// The configuration file whose transport is used.
        #[arg(long, short, global = true, default_value = "connectors.yaml")]
        config: PathBuf,
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Works with a connector's transforms.
    Transforms {
        #[command(subcommand)]
        command: TransformsCommand,
    },
}

#[derive(Subcommand)]
enum TransformsCommand {
    /// Runs sample records through a connector's transforms: one JSON record per line of
    /// stdin (`{"value": ..., "key": ..., "topic": ..., "headers": {...}, "timestamp": ...}`),
    /// one result per line on stdout (what each transform made of it, and the record
    /// written, dropped or failed). Nothing is written anywhere else.
    Test {
        /// The configuration file.
        #[arg(default_value = "connectors.yaml")]
        config: PathBuf,
        /// The connector whose chain runs; may be left out when one connector has transforms.
        #[arg(long, short)]
        connector: Option<String>,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Every topic with its partitions, records held and end offsets.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One topic's partition offsets, and the committed offsets and lag of the sink
    /// connectors that read it (the file's and those created through the API).
    Describe {
        /// The topic.
        topic: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints records with partition, offset, timestamp, key and headers; JSON values
    /// pretty-printed. Reads from the beginning to the end unless told otherwise.
    Read {
        /// The topic.
        topic: String,
        /// Only this partition.
        #[arg(long, short)]
        partition: Option<i32>,
        /// Start at this offset in each partition read.
        #[arg(long, conflicts_with = "from_end")]
        offset: Option<i64>,
        /// Start after the last record: show only new ones (implies --follow).
        #[arg(long)]
        from_end: bool,
        /// Keep waiting for new records (stop with Ctrl-C).
        #[arg(long, short)]
        follow: bool,
        /// Stop after this many records.
        #[arg(long, short = 'n')]
        max: Option<usize>,
        /// One JSON object per line: topic, partition, offset, timestamp (ms), key,
        /// headers, value (parsed when it is JSON).
        #[arg(long)]
        json: bool,
    },
    /// Writes one record per line of stdin (empty lines are skipped).
    Write {
        /// The topic (created if missing).
        topic: String,
        /// Each line is KEY<separator>VALUE, split at the first separator.
        #[arg(long, short)]
        key_separator: Option<String>,
        /// A header every record carries, as NAME=VALUE; repeatable.
        #[arg(long = "header", short = 'H', value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    text.split_once('=').map(|(name, value)| (name.to_owned(), value.to_owned())).ok_or_else(|| format!("{text:?} is not NAME=VALUE"))
}

fn load(path: &Path) -> Result<LoadedConfig, ExitCode> {
    config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::FAILURE
    })
}

fn report(error: anyhow::Error) -> ExitCode {
    // Printed, not logged: the secrets the host knows are taken out here too.
    let text = match error.downcast_ref::<config::ConfigErrors>() {
        Some(errors) => errors.to_string(),
        None => format!("error: {error:#}"),
    };
    eprintln!("{}", wasm_connect::telemetry::redaction::redact(&text));
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The tools print their results; only warnings and errors are logged beside them.
    let default_level = if matches!(cli.command, Command::Topics { .. } | Command::Transforms { .. }) { "warn" } else { "info" };
    wasm_connect::telemetry::logging::init(&std::env::var("WASM_CONNECT_LOG").unwrap_or_else(|_| default_level.to_owned()));
    let outcome = match cli.command {
        Command::Run { config } => load(&config).and_then(|loaded| run(loaded).map_err(report)),
        Command::Validate { config } => load(&config).and_then(|loaded| {
            let plans = wasm_connect::host::validate(&loaded).map_err(report)?;
            println!("{}: valid, {} connector(s)", loaded.file, plans.len());
            Ok(())
        }),
        Command::Plugins { config, json } => load(&config).and_then(|loaded| list_plugins(&loaded, json).map_err(report)),
        Command::Topics { config, command } => load(&config).and_then(|loaded| topics(&loaded, command).map_err(report)),
        Command::Transforms { command: TransformsCommand::Test { config, connector } } => {
            load(&config).and_then(|loaded| test_transforms(&loaded, connector.as_deref()).map_err(report))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// `wasm-connect transforms test`: stdin's sample records through a connector's chain.
fn test_transforms(loaded: &LoadedConfig, name: Option<&str>) -> anyhow::Result<()> {
    use std::io::BufRead;
    use wasm_connect::transforms::sample::{samples_from, test_samples};
    use wasm_connect::transforms::{Chain, ChainPlugins, WASM_TYPE, WasmTransforms, jq_part, short_predicate_name};

    let connectors = &loaded.config.connectors;
    let connector = match name {
        Some(name) => connectors
            .iter()
            .find(|connector| connector.name == name)
            .ok_or_else(|| anyhow::anyhow!("{}: no connector is named {}", loaded.file, wasm_connect::names::shown(name)))?,
        None => {
            let chained: Vec<_> = connectors.iter().filter(|connector| !connector.transforms.is_empty()).collect();
            match chained.as_slice() {
                [one] => *one,
                [] => anyhow::bail!("{}: no connector has transforms", loaded.file),
                _ => anyhow::bail!("{}: several connectors have transforms: name one with --connector", loaded.file),
            }
        }
    };
    // The plugins are loaded (compiled, or read from the cache) only for WASM
    // transforms; jq needs a runtime for its built-in component.
    let uses_wasm = connector.transforms.iter().any(|transform| transform.type_name.trim() == WASM_TYPE);
    let uses_jq = connector.transforms.iter().any(|transform| jq_part(&transform.type_name).is_some())
        || connector.predicates.iter().any(|predicate| short_predicate_name(&predicate.type_name) == "Jq");
    let plugins = match (uses_wasm, uses_jq) {
        (true, _) => Some(wasm_connect::host::load_plugins(loaded)?),
        (false, true) => Some((wasm_connect::host::runtime_of(loaded)?, Default::default())),
        (false, false) => None,
    };
    let resolver = plugins.as_ref().map_or_else(ChainPlugins::unresolved, |(runtime, catalog)| ChainPlugins::new(catalog, runtime));
    let chain = Chain::build(&connector.transforms, &connector.predicates, &resolver).map_err(|problems| {
        anyhow::anyhow!("{}", problems.iter().map(|(key, message)| format!("{key}: {message}")).collect::<Vec<_>>().join("\n"))
    })?;
    let mut wasm = match &plugins {
        Some((runtime, _)) => WasmTransforms::open(&chain, runtime, &connector.name, 0, None)
            .map_err(|failure| anyhow::anyhow!("{}", chain.redact(&failure.to_string())))?,
        None => WasmTransforms::default(),
    };
    let topic = connector.topic.clone().or_else(|| connector.topics.first().cloned()).unwrap_or_else(|| "test".to_owned());
    let mut stdout = std::io::stdout().lock();
    for (number, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let sample: serde_json::Value =
            serde_json::from_str(&line).map_err(|error| anyhow::anyhow!("stdin line {}: not JSON: {error}", number + 1))?;
        let samples = samples_from(&serde_json::Value::Array(vec![sample])).map_err(|error| {
            anyhow::anyhow!("stdin line {}: not a sample record ({{\"value\": ..., \"key\": ..., ...}}): {error}", number + 1)
        })?;
        for tested in test_samples(&chain, &mut wasm, &samples, &topic) {
            writeln!(stdout, "{}", serde_json::to_string(&tested)?)?;
        }
    }
    Ok(())
}

fn run(loaded: LoadedConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            signals.cancel();
        });
        wasm_connect::run(loaded, shutdown).await
    });
    // Every task has committed and stopped by now; a blocking call still in flight (a
    // poll waiting on its timeout) holds nothing that needs it, so do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    outcome
}

fn topics(loaded: &LoadedConfig, command: TopicsCommand) -> anyhow::Result<()> {
    use wasm_connect::topic_tools::{self, ReadOptions, WriteOptions};
    use wasm_connect::transport::StartAt;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let transport = topic_tools::open_transport(&loaded.config)?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match command {
            TopicsCommand::List { json } => topic_tools::list(transport.as_ref(), json, &mut out).await,
            TopicsCommand::Describe { topic, json } => {
                topic_tools::describe(transport.as_ref(), &loaded.config, &topic, json, &mut out).await
            }
            TopicsCommand::Read { topic, partition, offset, from_end, follow, max, json } => {
                let start = match (offset, from_end) {
                    (Some(offset), _) => StartAt::Offset(offset),
                    (None, true) => StartAt::End,
                    (None, false) => StartAt::Beginning,
                };
                let options = ReadOptions { topic, partition, start, max, follow: follow || from_end, json };
                let reading = topic_tools::read(transport.as_ref(), &options, &mut out);
                tokio::select! {
                    read = reading => read.map(|_| ()),
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            }
            TopicsCommand::Write { topic, key_separator, headers, json } => {
                let options = WriteOptions { topic, key_separator, headers };
                let stdin = std::io::stdin();
                let written = topic_tools::write(transport.as_ref(), &options, &mut stdin.lock()).await?;
                if json {
                    writeln!(out, "{}", serde_json::json!({"topic": options.topic, "written": written}))?;
                } else {
                    eprintln!("{written} record(s) written to {}.", options.topic);
                }
                Ok(())
            }
        }
    })
}

fn list_plugins(loaded: &LoadedConfig, json: bool) -> anyhow::Result<()> {
    let (_, catalog) = wasm_connect::host::load_plugins(loaded)?;
    let plugins = catalog.plugins();
    if json {
        let descriptions: Vec<_> = plugins
            .iter()
            .map(|plugin| {
                let mut description = serde_json::to_value(&plugin.description)?;
                description["origin"] = serde_json::json!(plugin.origin);
                Ok(description)
            })
            .collect::<anyhow::Result<_>>()?;
        println!("{}", serde_json::to_string_pretty(&descriptions)?);
        return Ok(());
    }
    for plugin in plugins {
        let description = &plugin.description;
        // Uploaded plugins live in data_dir, not in plugins.dir: say where each comes from.
        let origin = match plugin.origin {
            wasm_connect::runtime::PluginOrigin::Directory => "plugins.dir",
            wasm_connect::runtime::PluginOrigin::Uploaded => "uploaded",
            wasm_connect::runtime::PluginOrigin::Builtin => "built in",
        };
        println!("{}@{} ({}, {origin}) - {}", description.name, description.version, description.kind, description.documentation);
        for option in &description.options {
            let default = match option.default.as_deref() {
                Some("") => " [default: empty]".to_owned(),
                Some(default) => format!(" [default: {default}]"),
                None => String::new(),
            };
            let flags = [(option.required, " required"), (option.secret, " secret")]
                .iter()
                .filter(|(set, _)| *set)
                .map(|(_, flag)| *flag)
                .collect::<String>();
            println!("    {} ({}{flags}){default}: {}", option.name, option.option_type, option.documentation);
        }
    }
    Ok(())
}
