//! The `wasm-connect` command: `run`, `validate` and `plugins`.

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
    /// Checks a configuration, its plugins and every connector's options, then exits.
    Validate {
        /// The configuration file.
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
}

fn load(path: &Path) -> Result<LoadedConfig, ExitCode> {
    config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::FAILURE
    })
}

fn report(error: anyhow::Error) -> ExitCode {
    match error.downcast_ref::<config::ConfigErrors>() {
        Some(errors) => eprintln!("{errors}"),
        None => eprintln!("error: {error:#}"),
    }
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    wasm_connect::telemetry::logging::init(&std::env::var("WASM_CONNECT_LOG").unwrap_or_else(|_| "info".to_owned()));
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run { config } => load(&config).and_then(|loaded| run(loaded).map_err(report)),
        Command::Validate { config } => load(&config).and_then(|loaded| {
            let (_, _, plans) = wasm_connect::host::prepare(&loaded).map_err(report)?;
            println!("{}: valid, {} connector(s)", loaded.file, plans.len());
            Ok(())
        }),
        Command::Plugins { config, json } => load(&config).and_then(|loaded| list_plugins(&loaded, json).map_err(report)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn run(loaded: LoadedConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
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
    })
}

fn list_plugins(loaded: &LoadedConfig, json: bool) -> anyhow::Result<()> {
    let (_, catalog) = wasm_connect::host::load_plugins(loaded)?;
    let plugins = catalog.plugins();
    if json {
        let descriptions: Vec<_> = plugins.iter().map(|plugin| &plugin.description).collect();
        println!("{}", serde_json::to_string_pretty(&descriptions)?);
        return Ok(());
    }
    for plugin in plugins {
        let description = &plugin.description;
        println!("{}@{} ({}) - {}", description.name, description.version, description.kind, description.documentation);
        for option in &description.options {
            let default = option.default.as_deref().map(|default| format!(" [default: {default}]")).unwrap_or_default();
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
