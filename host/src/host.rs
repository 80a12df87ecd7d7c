//! Starting and stopping the whole host: load plugins, plan the file's connectors,
//! open the transport and the desired-state store, hand everything to the
//! [`Manager`], serve the admin API, and stop every task on shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, ReloadingTls, ServerLimits};
use crate::cluster::plugins::PluginShare;
use crate::cluster::status::{SharedStatus, StatusSettings};
use crate::cluster::{Identity, Ownership};
use crate::config::{ConfigErrors, HostConfig, KafkaConfig, LoadedConfig};
use crate::data_dir::DataDirLock;
use crate::manager::log::ConfigLog;
use crate::manager::store::{KafkaStateStore, SqliteStateStore, StateStore};
use crate::manager::{Manager, Place};
use crate::runtime::{PluginCatalog, PluginOrigin, Runtime, TaskLimits};
use crate::telemetry::redaction::SecretRegistration;
use crate::telemetry::{Metrics, StatusBoard};
use crate::transport::kafka::{ClusterTopics, HostTopic, MembershipSettings};
use crate::transport::{EmbeddedTransport, KafkaTransport, Transport, kafka};
use crate::worker::{ConnectorPlan, WorkerContext, plan_connectors};

/// How long tasks get to finish their current batch after shutdown was requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a stopping host may take to write its last task states and its leaving.
const SHARING_GRACE: Duration = Duration::from_secs(5);
/// How often the embedded store applies retention.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// The runtime and the plugins of a configuration: what `run`, `validate` and
/// `plugins` all start from. Blocking: compiles plugins.
pub fn load_plugins(loaded: &LoadedConfig) -> anyhow::Result<(Runtime, PluginCatalog)> {
    load_plugins_with(loaded, true)
}

/// The runtime of a configuration (its limits and compiled-component cache), without
/// its plugins: what the built-in jq needs.
pub fn runtime_of(loaded: &LoadedConfig) -> anyhow::Result<Runtime> {
    let plugins = &loaded.config.plugins;
    let limits = TaskLimits { memory_bytes: plugins.memory_limit_mib as usize * 1024 * 1024, call_timeout: plugins.call_timeout };
    let (cache_dir, shared) = crate::runtime::cache_dir_for(&loaded.config.data_dir)?;
    let runtime = Runtime::new(&cache_dir, limits)?;
    Ok(if shared { runtime.with_shared_cache() } else { runtime })
}

/// [`load_plugins`], writing newly compiled components to the cache in `data_dir`
/// only when `write_cache`; a shared cache (`WASM_CONNECT_CACHE_DIR`) is always written.
fn load_plugins_with(loaded: &LoadedConfig, write_cache: bool) -> anyhow::Result<(Runtime, PluginCatalog)> {
    let plugins = &loaded.config.plugins;
    let runtime = runtime_of(loaded)?;
    let runtime = if write_cache || runtime.shares_cache() { runtime } else { runtime.without_cache_writes() };
    let (catalog, errors) = PluginCatalog::load_dir(&runtime, &plugins.dir).with_context(|| {
        format!(
            "cannot read the plugin directory {} (plugins.dir). The shipped plugins are built into plugins/dist of the \
             wasm-connect repository by `cargo build --release`; point plugins.dir at that directory (a relative path is \
             read from the configuration file's directory)",
            plugins.dir.display()
        )
    })?;
    let (mut catalog, mut errors) = (catalog, errors);
    let uploaded = uploaded_plugins_dir(&loaded.config.data_dir);
    if uploaded.is_dir() {
        errors.extend(catalog.add_dir(&runtime, &uploaded, PluginOrigin::Uploaded)?);
    }
    for error in errors {
        tracing::warn!(path = %error.path.display(), reason = %error.reason, "A plugin was not loaded.");
    }
    // After the loads, which marked what this host uses.
    runtime.prune_cache();
    Ok((runtime, catalog))
}

/// Where plugins uploaded through the REST API are kept.
pub fn uploaded_plugins_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("plugins")
}

/// Loads plugins and plans every connector: what `validate` checks.
pub fn prepare(loaded: &LoadedConfig) -> anyhow::Result<(Runtime, PluginCatalog, Vec<ConnectorPlan>)> {
    check_kafka_client(loaded)?;
    let (runtime, catalog) = load_plugins(loaded)?;
    let plans = plan_connectors(loaded, &catalog, &runtime)?;
    Ok((runtime, catalog, plans))
}

/// What `wasm-connect validate` checks: the plugins and every connector's plan, with
/// nothing written to `data_dir`.
pub fn validate(loaded: &LoadedConfig) -> anyhow::Result<Vec<ConnectorPlan>> {
    check_kafka_client(loaded)?;
    let (runtime, catalog) = load_plugins_with(loaded, false)?;
    Ok(plan_connectors(loaded, &catalog, &runtime)?)
}

/// The `kafka.client` settings, checked by librdkafka itself before anything starts,
/// each problem located in the file.
fn check_kafka_client(loaded: &LoadedConfig) -> Result<(), ConfigErrors> {
    let Some(kafka) = &loaded.config.kafka else { return Ok(()) };
    let client = kafka.client.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect();
    let problems: Vec<(String, String)> = kafka::client_problems(&client)
        .into_iter()
        .map(|(key, message)| (if key.is_empty() { "kafka.client".to_owned() } else { format!("kafka.client.{key}") }, message))
        .collect();
    if problems.is_empty() { Ok(()) } else { Err(loaded.errors(problems)) }
}

/// The client of the configuration's Kafka cluster; none for the embedded transport.
/// The client settings that hold secrets are kept out of every log line from here on
/// (the host and the topic tools alike).
pub fn kafka_transport(config: &HostConfig) -> Option<KafkaTransport> {
    config.kafka.as_ref().map(|kafka| {
        let secrets = kafka.client.iter().filter(|(key, _)| kafka::is_secret_setting(key));
        SecretRegistration::forever(secrets.map(|(_, value)| value.0.as_str()));
        let client = kafka.client.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect();
        KafkaTransport::new(&kafka.bootstrap_servers, &client, cluster_topics(kafka))
    })
}

/// The cluster's name and the host's own topics, as `kafka` sets them.
fn cluster_topics(kafka: &KafkaConfig) -> ClusterTopics {
    let cluster = &kafka.cluster;
    ClusterTopics {
        group_id: cluster.group_id.clone(),
        offsets: HostTopic {
            name: kafka.offsets_topic(),
            partitions: cluster.offset_storage_partitions,
            replication: cluster.offset_storage_replication_factor,
        },
        // One partition, as Kafka Connect's: the desired state in one order.
        config: HostTopic { name: kafka.config_topic(), partitions: 1, replication: cluster.config_storage_replication_factor },
        // Replicated as the config topic: both are the cluster's control plane.
        assignments: HostTopic {
            name: kafka.assignments_topic(),
            partitions: cluster.assignment_storage_partitions,
            replication: cluster.config_storage_replication_factor,
        },
        status: HostTopic {
            name: kafka.status_topic(),
            partitions: cluster.status_storage_partitions,
            replication: cluster.status_storage_replication_factor,
        },
        // One partition: a plugin's chunks are read whole, in one order.
        plugins: HostTopic { name: kafka.plugins_topic(), partitions: 1, replication: cluster.plugin_storage_replication_factor },
        members: kafka.membership_group(),
        exactly_once_sources: cluster.exactly_once_source_support == crate::config::ExactlyOnceSupport::Enabled,
    }
}

/// Where the desired state lives, to read it whole (the topic tools): the cluster's
/// config topic, or SQLite under `data_dir` for the embedded transport.
pub fn state_store(config: &HostConfig, kafka_transport: Option<&KafkaTransport>) -> anyhow::Result<Box<dyn StateStore>> {
    Ok(match (&config.kafka, kafka_transport) {
        (Some(kafka), Some(transport)) => Box::new(KafkaStateStore::new(transport.clone(), &kafka.config_topic())),
        _ => Box::new(SqliteStateStore::open(&config.data_dir)?),
    })
}

/// Runs the host until `shutdown` fires, then stops every task cleanly: each task
/// finishes (and commits) the batch in hand.
pub async fn run(loaded: LoadedConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Before anything is read or written: this host alone owns data_dir.
    let _data_dir_lock = DataDirLock::acquire(&loaded.config.data_dir)?;
    // And before any task starts: a host that cannot listen starts nothing.
    let listener = admin::bind(loaded.config.admin.listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin.listen); choose a free address", loaded.config.admin.listen))?;
    register_host_secrets(&loaded.config);
    let tls = match &loaded.config.admin.tls {
        Some(files) => Some(ReloadingTls::load(&files.cert_file, &files.key_file).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let config = &loaded.config;
    let host_id = crate::data_dir::host_identity(&config.data_dir)
        .with_context(|| format!("cannot keep this host's identity in {}", config.data_dir.display()))?;
    let kafka_transport = kafka_transport(config).map(|kafka| kafka.with_host_identity(&host_id));
    let uploads = uploaded_plugins_dir(&config.data_dir);
    // Before the plugins are loaded: those other hosts of the cluster took too.
    let plugins = match (&kafka_transport, &config.kafka) {
        (Some(transport), Some(kafka)) => {
            let share = PluginShare::new(transport.clone(), &kafka.plugins_topic(), u64::from(config.plugins.max_upload_mib) << 20);
            // Not time-boxed: the file's connectors may need them to be planned at all
            // (each read of a topic is bounded on its own).
            match transport.read_compacted(&kafka.config_topic(), "the desired state").await {
                Ok(state) => crate::manager::fetch_before_start(&share, &state, &uploads).await,
                Err(error) => tracing::warn!(%error, "The cluster's plugins could not be looked up before the start."),
            }
            Some(share)
        }
        _ => None,
    };
    let prepared = loaded.clone();
    let (runtime, catalog, plans) = tokio::task::spawn_blocking(move || prepare(&prepared)).await??;
    let bound = listener.local_addr()?;
    let mut identity = Identity {
        worker_id: crate::cluster::worker_id(&config.admin, bound),
        host_id: host_id.clone(),
        group_id: config.kafka.as_ref().map(|kafka| kafka.cluster.group_id.clone()),
        kafka_cluster_id: None,
    };
    let transport: Arc<dyn Transport> = match &kafka_transport {
        Some(kafka) => Arc::new(kafka.clone()),
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
        Some(kafka) => match kafka::last_client_error() {
            Some(reason) => {
                format!("cannot reach the Kafka cluster at {} to check the connectors' topics. {reason}", kafka.bootstrap_servers)
            }
            None => format!(
                "cannot reach the Kafka cluster at {} to check the connectors' topics; check kafka.bootstrap_servers and kafka.client",
                kafka.bootstrap_servers
            ),
        },
        None => format!("cannot create the connectors' topics in {}", config.data_dir.display()),
    })?;
    if let Some(kafka) = &kafka_transport {
        identity.kafka_cluster_id = kafka.cluster_id().await;
    }
    // On Kafka this host runs the tasks of the partitions the cluster gives it, none
    // before it joined, and shares their states with the other hosts.
    let (ownership, shared) = match (&kafka_transport, &config.kafka) {
        (Some(transport), Some(kafka)) => {
            let partitions = transport.assignment_partitions().await?;
            let shared = SharedStatus::new(StatusSettings {
                host_id: host_id.clone(),
                worker_id: identity.worker_id.clone(),
                partitions,
                heartbeat_interval: Duration::from_millis(kafka.cluster.heartbeat_interval_ms.into()),
                session_timeout: Duration::from_millis(kafka.cluster.session_timeout_ms.into()),
            });
            (Ownership::nothing(partitions), Some(shared))
        }
        _ => (Ownership::everything(), None),
    };
    let mut status = StatusBoard::new(&identity.worker_id);
    if let Some(shared) = &shared {
        status = status.with_listener(shared.clone());
    }
    let metrics = Metrics::new(status.clone());
    let opened = match (&config.kafka, &kafka_transport) {
        (Some(kafka), Some(transport)) => ConfigLog::kafka(transport.clone(), &kafka.config_topic()).await?,
        _ => ConfigLog::store(Box::new(SqliteStateStore::open(&config.data_dir)?)).await?,
    };
    let context = WorkerContext {
        runtime,
        transport: transport.clone(),
        metrics: metrics.clone(),
        status,
        restart_backoff: config.plugins.restart_backoff,
        max_restart_backoff: config.plugins.max_restart_backoff,
    };
    let sharing = match (&shared, &kafka_transport) {
        (Some(shared), Some(transport)) => Some(shared.run(transport.clone())),
        _ => None,
    };
    let place = Place { host_id: host_id.clone(), ownership, shared, plugins };
    let manager = Manager::start(context, catalog, loaded.base_dir.clone(), uploads, opened, place, plans).await?;
    let membership = match (&kafka_transport, &config.kafka) {
        (Some(transport), Some(kafka)) => {
            let cluster = &kafka.cluster;
            let settings = MembershipSettings {
                host_id,
                worker_id: identity.worker_id.clone(),
                strategy: cluster.partition_assignment_strategy.clone(),
                session_timeout_ms: cluster.session_timeout_ms,
                heartbeat_interval_ms: cluster.heartbeat_interval_ms,
                rebalance_timeout_ms: cluster.rebalance_timeout_ms,
                return_delay_ms: cluster.scheduled_rebalance_max_delay_ms,
            };
            match transport.join_cluster(&settings, manager.cluster_owner(tokio::runtime::Handle::current())) {
                Ok(membership) => Some(membership),
                Err(error) => {
                    manager.shutdown(SHUTDOWN_GRACE).await;
                    if let Some(sharing) = sharing {
                        sharing.finish(SHARING_GRACE).await;
                    }
                    return Err(anyhow::Error::new(error).context("cannot join the cluster's group on its assignments topic"));
                }
            }
        }
        _ => None,
    };
    let admin_state = AdminState {
        manager: manager.clone(),
        metrics,
        max_plugin_bytes: config.plugins.max_upload_mib as usize * 1024 * 1024,
        token: admin::configured_token(config.admin.token.as_deref()),
        allowed_origins: config.admin.allowed_origins.clone().into(),
        allowed_hosts: config.admin.allowed_hosts.clone().into(),
        request_timeout: config.admin.request_timeout,
        uploads: Arc::new(tokio::sync::Semaphore::new(admin::CONCURRENT_UPLOADS)),
        identity: Arc::new(identity),
    };
    let limits = ServerLimits { max_connections: config.admin.max_connections as usize, header_timeout: config.admin.header_timeout };
    if let Some(tls) = &tls {
        tls.clone().watch(shutdown.clone());
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let admin_server = admin::serve(listener, admin_state, limits, tls, shutdown.clone());
    crate::manager::watch_file(manager.clone(), loaded.clone(), shutdown.clone());
    tracing::info!(address = %bound, transport = transport.name(), connectors = manager.connectors().len(), "wasm-connect is running; admin API at {scheme}://{bound}/");
    shutdown.cancelled().await;
    tracing::info!("Stopping: every task finishes the batch in hand.");
    manager.shutdown(SHUTDOWN_GRACE).await;
    // The last states written under this host's generations, and its leaving said,
    // before another host is given its partitions.
    if let Some(sharing) = sharing {
        sharing.finish(SHARING_GRACE).await;
    }
    if let Some(membership) = membership {
        // The other hosts take this host's partitions at once, or after the delay.
        if let Some(kafka) = config.kafka.as_ref().filter(|kafka| kafka.cluster.scheduled_rebalance_max_delay_ms > 0) {
            tracing::info!(
                delay_ms = kafka.cluster.scheduled_rebalance_max_delay_ms,
                "This host's tasks wait for it to come back for scheduled.rebalance.max.delay.ms; the other hosts take them after that."
            );
        }
        let _ = tokio::task::spawn_blocking(move || membership.leave()).await;
    }
    let _ = admin_server.await;
    tracing::info!("wasm-connect stopped.");
    Ok(())
}

/// Keeps the admin token out of every log line (the Kafka client's secrets are
/// registered with its transport, [`kafka_transport`]).
fn register_host_secrets(config: &HostConfig) {
    let token = admin::configured_token(config.admin.token.as_deref());
    SecretRegistration::forever(token.as_deref());
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
