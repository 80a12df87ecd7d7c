//! A connector's offsets, read at any time and changed only while it is STOPPED (as
//! Kafka Connect requires): a sink's committed offsets per partition, a source's
//! stored position.

use super::{Manager, ManagerError, TargetState};
use crate::runtime::{PluginFailure, PluginKind, SourceInstance, TaskAccess, TaskIdentity};
use crate::transport::{PartitionOffset, PartitionOffsetChange};
use crate::worker::ConnectorPlan;

/// What a connector has stored about its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorOffsets {
    /// A sink: the next offset to read per partition that has one.
    Sink(Vec<PartitionOffset>),
    /// A source: its position, if it stored one.
    Source(Option<String>),
}

/// A change of a stopped connector's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsChange {
    /// Forget everything: a sink reads its topics from the start, a source starts over.
    Reset,
    /// Set (or, with `None`, remove) some partitions' offsets of a sink.
    Sink(Vec<PartitionOffsetChange>),
    /// Set (or, with `None`, remove) a source's position.
    Source(Option<String>),
}

impl Manager {
    /// The connector's offsets.
    pub async fn offsets(&self, name: &str) -> Result<ConnectorOffsets, ManagerError> {
        let connector = self.connector(name)?;
        let transport = &self.context.transport;
        Ok(match connector.kind() {
            PluginKind::Source => ConnectorOffsets::Source(transport.source_position(name).await?),
            _ => ConnectorOffsets::Sink(transport.committed_offsets(name, &connector.config.topics).await?),
        })
    }

    /// Changes the offsets of a STOPPED connector.
    pub async fn alter_offsets(&self, name: &str, change: OffsetsChange) -> Result<(), ManagerError> {
        // Holding the lock keeps the connector stopped while its offsets change.
        let _running = self.running.lock().await;
        let connector = self.connector(name)?;
        if connector.target != TargetState::Stopped {
            return Err(ManagerError::NotStopped(name.to_owned()));
        }
        let transport = &self.context.transport;
        match (connector.kind(), change) {
            (PluginKind::Source, OffsetsChange::Reset) => transport.set_source_position(name, None).await?,
            (PluginKind::Source, OffsetsChange::Source(position)) => {
                if let (Some(position), Ok(plan)) = (&position, &connector.plan) {
                    self.check_source_position(plan, position).await?;
                }
                transport.set_source_position(name, position.as_deref()).await?
            }
            (PluginKind::Processor, OffsetsChange::Reset) => {
                // Its state was built from what the offsets say was read: both go.
                transport.clear_processor_state(name, &connector.config.topics).await?
            }
            (PluginKind::Processor, OffsetsChange::Sink(_)) => {
                return Err(ManagerError::BadOffsets(format!(
                    "connector {name} is a processor: its offsets go with its state, so they can only be reset together \
                     (DELETE /connectors/{name}/offsets), which rebuilds the state from the topics' beginning"
                )));
            }
            (_, OffsetsChange::Reset) => transport.reset_committed_offsets(name, &connector.config.topics).await?,
            (_, OffsetsChange::Sink(changes)) => {
                if let Some(foreign) = changes.iter().find(|change| !connector.config.topics.contains(&change.topic)) {
                    return Err(ManagerError::BadOffsets(format!(
                        "topic {:?} is not one connector {name} reads ({}): name one of those",
                        foreign.topic,
                        connector.config.topics.join(", ")
                    )));
                }
                self.check_sink_offsets(&changes).await?;
                transport.alter_committed_offsets(name, changes).await?
            }
            (kind, _) => {
                return Err(ManagerError::BadOffsets(format!(
                    "connector {name} is a {kind}: give offsets in a {kind} connector's shape (see the README)"
                )));
            }
        }
        tracing::info!(connector = name, "Changed the connector's offsets.");
        Ok(())
    }

    /// Refuses a partition the topic does not have and an offset past the partition's
    /// end (the sink would silently skip the records written until then).
    async fn check_sink_offsets(&self, changes: &[PartitionOffsetChange]) -> Result<(), ManagerError> {
        let transport = &self.context.transport;
        let mut topics: Vec<&str> = changes.iter().map(|change| change.topic.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            let described = transport.describe_topics(Some(topic)).await?;
            let partitions = described.iter().find(|description| description.name == topic).map(|description| &description.partitions);
            for change in changes.iter().filter(|change| change.topic == topic) {
                let range = partitions.and_then(|partitions| partitions.iter().find(|range| range.partition == change.partition));
                let Some(range) = range else {
                    return Err(ManagerError::BadOffsets(format!(
                        "topic {topic:?} has no partition {} (it has {}): name an existing partition",
                        change.partition,
                        partitions.map_or(0, Vec::len)
                    )));
                };
                if let Some(offset) = change.offset
                    && offset > range.end
                {
                    return Err(ManagerError::BadOffsets(format!(
                        "offset {offset} is past the end of {topic:?} partition {} (its next offset is {}): give at most {}",
                        change.partition, range.end, range.end
                    )));
                }
            }
        }
        Ok(())
    }

    /// Asks the source plugin to open at `position` in a short-lived instance, so a
    /// position it cannot read is refused now rather than failing every restart.
    async fn check_source_position(&self, plan: &ConnectorPlan, position: &str) -> Result<(), ManagerError> {
        let (runtime, probe, position) = (self.context.runtime.clone(), plan.clone(), position.to_owned());
        let opened = tokio::task::spawn_blocking(move || {
            let plan = probe;
            let identity =
                TaskIdentity { connector: plan.config.name.as_str().into(), task: 0, plugin: plan.plugin.description.name.as_str().into() };
            let access = TaskAccess { grants: plan.grants.clone(), secrets: plan.secrets.clone().into(), metrics: None };
            let mut instance = SourceInstance::new(&runtime, &plan.plugin, identity, access)?;
            instance.open(&plan.plugin_config, Some(&position))
        })
        .await
        .map_err(|error| ManagerError::BadOffsets(format!("the position could not be checked: {error}")))?;
        match opened {
            Ok(()) | Err(PluginFailure::Retriable(_)) => Ok(()),
            Err(failure) => Err(ManagerError::BadOffsets(format!(
                "the plugin cannot start from this position ({}); give a position it stored, or null to start over",
                plan.redact(&failure.to_string())
            ))),
        }
    }
}
