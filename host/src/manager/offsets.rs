//! A connector's offsets, read at any time and changed only while it is STOPPED (as
//! Kafka Connect requires): a sink's committed offsets per partition, a source's
//! stored position.

use super::{Manager, ManagerError, TargetState};
use crate::runtime::PluginKind;
use crate::transport::{PartitionOffset, PartitionOffsetChange};

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
            (PluginKind::Source, OffsetsChange::Source(position)) => transport.set_source_position(name, position.as_deref()).await?,
            (_, OffsetsChange::Reset) => transport.reset_committed_offsets(name, &connector.config.topics).await?,
            (_, OffsetsChange::Sink(changes)) => {
                if let Some(foreign) = changes.iter().find(|change| !connector.config.topics.contains(&change.topic)) {
                    return Err(ManagerError::Invalid(vec![(
                        "offsets".to_owned(),
                        format!("topic {:?} is not one the connector reads ({})", foreign.topic, connector.config.topics.join(", ")),
                    )]));
                }
                transport.alter_committed_offsets(name, changes).await?
            }
            (kind, _) => {
                return Err(ManagerError::Invalid(vec![(
                    "offsets".to_owned(),
                    format!("connector {name} is a {kind}: give offsets in a {kind} connector's shape (see the README)"),
                )]));
            }
        }
        tracing::info!(connector = name, "Changed the connector's offsets.");
        Ok(())
    }
}
