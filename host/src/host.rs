//! Starting and stopping the whole host: load plugins, plan connectors, open the
//! transport, serve the admin API, run every task, and stop them all on shutdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::config::LoadedConfig;
use crate::runtime::{PluginCatalog, Runtime, TaskLimits};
use crate::telemetry::{Metrics, StatusBoard};
use crate::transport::{EmbeddedTransport, KafkaTransport, Transport};
use crate::worker::{ConnectorPlan, WorkerContext, plan_connectors, spawn_connector};

/// How long tasks get to finish their current batch after shutdown was requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How often the embedded store applies retention.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// The runtime and the plugins of a configuration: what `run`, `validate` and
/// `plugins` all start from. Blocking: compiles plugins.
pub fn load_plugins(loaded: &LoadedConfig) -> anyhow::Result<(Runtime, PluginCatalog)> {
    let plugins = &loaded.config.plugins;
    let limits = TaskLimits {
        memory_bytes: plugins.memory_limit_mib as usize * 1024 * 1024,
        call_timeout: plugins.call_timeout,
    };
    let runtime = Runtime::new(&loaded.config.data_dir.join("cache").join("compiled"), limits)?;
    let (catalog, errors) = PluginCatalog::load_dir(&runtime, &plugins.dir).with_context(|| {
        format!("cannot read the plugin directory {} (plugins.dir); build the plugins or change plugins.dir", plugins.dir.display())
    })?;
    for error in errors {
        tracing::warn!(path = %error.path.display(), reason = %error.reason, "A plugin was not loaded.");
    }
    Ok((runtime, catalog))
}

/// Loads plugins and plans every connector: what `validate` checks.
pub fn prepare(loaded: &LoadedConfig) -> anyhow::Result<(Runtime, PluginCatalog, Vec<ConnectorPlan>)> {
    let (runtime, catalog) = load_plugins(loaded)?;
    let plans = plan_connectors(loaded, &catalog, &runtime)?;
    Ok((runtime, catalog, plans))
}

/// Runs the host until `shutdown` fires, then stops every task cleanly: each task
/// finishes (and commits) the batch in hand.
pub async fn run(loaded: LoadedConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let prepared = loaded.clone();
    let (runtime, catalog, plans) = tokio::task::spawn_blocking(move || prepare(&prepared)).await??;
    let config = &loaded.config;
    let transport: Arc<dyn Transport> = match &config.kafka {
        Some(kafka) => {
            let client = kafka.client.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect();
            Arc::new(KafkaTransport::new(&kafka.bootstrap_servers, &client, &kafka.offsets_topic))
        }
        None => {
            let embedded = EmbeddedTransport::open(&config.data_dir, config.embedded.partitions)?;
            spawn_retention(embedded.clone(), config.embedded.retention, shutdown.clone());
            Arc::new(embedded)
        }
    };
    let mut topics: Vec<String> = plans
        .iter()
        .flat_map(|plan| plan.config.topic.iter().chain(&plan.config.topics).chain(&plan.config.errors.dead_letter_topic))
        .cloned()
        .collect();
    topics.sort();
    topics.dedup();
    transport.ensure_topics(&topics).await.with_context(|| match &config.kafka {
        Some(kafka) => format!(
            "cannot reach the Kafka cluster at {} to check the connectors' topics; check kafka.bootstrap_servers and kafka.client",
            kafka.bootstrap_servers
        ),
        None => format!("cannot create the connectors' topics in {}", config.data_dir.display()),
    })?;
    let metrics = Metrics::new();
    let worker_id = config.admin.listen.to_string();
    let status = StatusBoard::new(&worker_id);
    let plans: BTreeMap<String, Arc<ConnectorPlan>> =
        plans.into_iter().map(|plan| (plan.config.name.clone(), Arc::new(plan))).collect();
    let admin_state =
        AdminState { status: status.clone(), metrics: metrics.clone(), connectors: Arc::new(plans.clone()), plugins: catalog };
    let (bound, admin_server) = admin::serve(config.admin.listen, admin_state, shutdown.clone())
        .await
        .with_context(|| format!("cannot listen on {} (admin.listen); choose a free address", config.admin.listen))?;
    tracing::info!(address = %bound, transport = transport.name(), connectors = plans.len(), "wasm-connect is running; admin API at http://{bound}/");
    let context = WorkerContext {
        runtime,
        transport,
        metrics,
        status: status.clone(),
        restart_backoff: config.plugins.restart_backoff,
        max_restart_backoff: config.plugins.max_restart_backoff,
    };
    let tracker = TaskTracker::new();
    let tasks_cancel = CancellationToken::new();
    for plan in plans.values() {
        spawn_connector(&context, plan.clone(), &tracker, &tasks_cancel);
    }
    tracker.close();
    shutdown.cancelled().await;
    tracing::info!("Stopping: every task finishes the batch in hand.");
    tasks_cancel.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!(grace_seconds = SHUTDOWN_GRACE.as_secs(), "Some tasks did not stop in time; their uncommitted batches will be delivered again.");
    }
    status.stop_all();
    let _ = admin_server.await;
    tracing::info!("wasm-connect stopped.");
    Ok(())
}

fn spawn_retention(embedded: EmbeddedTransport, retention: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETENTION_INTERVAL) => {}
            }
            match embedded.apply_retention(retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "Retention removed old records from the embedded topics."),
                Err(error) => tracing::warn!(%error, "Retention could not run."),
            }
        }
    });
}
