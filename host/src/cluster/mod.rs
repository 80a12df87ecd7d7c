//! Several hosts, one cluster: who this host is among the hosts that share a Kafka
//! cluster's `group.id`, and which tasks it runs.
//!
//! Tasks are shared out through an ordinary consumer group, with no protocol of our
//! own: every host is a member of the group `group.id` on the assignments topic, and
//! task `n` of connector `c` belongs to whoever the broker gives the partition
//! `(murmur2(c) + n) % partitions` (consecutive partitions: the tasks of one connector
//! never share one while it has no more tasks than the topic has partitions). The
//! member stops the tasks of partitions taken from it before its revoke callback
//! returns, so that no task runs on two hosts across a rebalance.

pub mod plugins;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use tokio_util::sync::CancellationToken;

use crate::config::AdminConfig;

/// This host among the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The address others reach its REST API at, `host:port` (Kafka Connect's
    /// `worker_id`): what the status shows for the tasks it runs.
    pub worker_id: String,
    /// Its stable identity, kept in `data_dir` across restarts.
    pub host_id: String,
    /// The cluster it belongs to (`kafka.cluster."group.id"`); none on the embedded
    /// transport, where a host is a cluster of its own.
    pub group_id: Option<String>,
    /// The id of the Kafka cluster it runs on, when the broker said.
    pub kafka_cluster_id: Option<String>,
}

/// The `worker_id` of a host whose API listens on `bound`: the advertised host and
/// port where `admin` sets them, else the bound address; an unspecified address
/// (`0.0.0.0`, `::`) is named by the machine's host name.
pub fn worker_id(admin: &AdminConfig, bound: SocketAddr) -> String {
    let host = match &admin.advertised_host {
        Some(host) => host.clone(),
        None if bound.ip().is_unspecified() => machine_name().unwrap_or_else(|| bound.ip().to_string()),
        None => bound.ip().to_string(),
    };
    let port = admin.advertised_port.unwrap_or(bound.port());
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(address)) => format!("[{address}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// The machine's host name, when it is one (letters, digits, `.`, `-`).
fn machine_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    let valid = !name.is_empty() && name.len() <= 253 && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c));
    valid.then(|| name.to_owned())
}

/// The partition of the assignments topic (of `partitions`) that task `task` of
/// `connector` belongs to.
pub fn task_partition(connector: &str, task: u32, partitions: u32) -> i32 {
    let partitions = partitions.max(1);
    let base = crate::transport::partition_for_key(Some(connector.as_bytes()), partitions, &mut 0) as u32;
    ((base + task % partitions) % partitions) as i32
}

/// The partitions of the assignments topic this host owns, hence the tasks it runs.
/// Each owned partition has a token that its tasks' tokens are children of: giving the
/// partition up cancels them at once, without waiting for any lock.
#[derive(Debug, Clone)]
pub struct Ownership {
    /// The assignments topic's partition count.
    partitions: u32,
    /// The partitions owned, with their tokens; `None`: every one (a host that is a
    /// cluster of its own), under `root`.
    owned: Option<BTreeMap<i32, CancellationToken>>,
    /// The token of every task of a host alone.
    root: CancellationToken,
    /// Whether the cluster's group has given this host its share yet.
    assigned: bool,
}

impl Ownership {
    /// A host alone: it runs every task (the embedded transport).
    pub fn everything() -> Self {
        Ownership { partitions: 1, owned: None, root: CancellationToken::new(), assigned: true }
    }

    /// A member of a cluster whose assignments topic has `partitions`, before the
    /// broker gave it any.
    pub fn nothing(partitions: u32) -> Self {
        Ownership { partitions: partitions.max(1), owned: Some(BTreeMap::new()), root: CancellationToken::new(), assigned: false }
    }

    /// Whether this host runs task `task` of `connector`.
    pub fn owns_task(&self, connector: &str, task: u32) -> bool {
        self.owned.as_ref().is_none_or(|owned| owned.contains_key(&task_partition(connector, task, self.partitions)))
    }

    /// A token for task `task` of `connector`, cancelled when this host gives its
    /// partition up; none when it does not own it.
    pub fn task_token(&self, connector: &str, task: u32) -> Option<CancellationToken> {
        match &self.owned {
            None => Some(self.root.child_token()),
            Some(owned) => owned.get(&task_partition(connector, task, self.partitions)).map(CancellationToken::child_token),
        }
    }

    /// Whether task `task` of `connector` is in one of `partitions`.
    pub fn in_partitions(&self, connector: &str, task: u32, partitions: &BTreeSet<i32>) -> bool {
        self.owned.is_some() && partitions.contains(&task_partition(connector, task, self.partitions))
    }

    /// Whether the cluster's group has given this host its share yet (until then it
    /// runs nothing).
    pub fn assigned(&self) -> bool {
        self.assigned
    }

    /// Takes `partitions` on; answers those past the partition count it maps tasks
    /// with (the topic grew since this host started: hosts would disagree).
    pub fn acquire(&mut self, partitions: &BTreeSet<i32>) -> Vec<i32> {
        self.assigned = true;
        let beyond = partitions.iter().copied().filter(|partition| *partition < 0 || *partition as u32 >= self.partitions).collect();
        if let Some(owned) = &mut self.owned {
            for partition in partitions {
                owned.entry(*partition).or_insert_with(CancellationToken::new);
            }
        }
        beyond
    }

    /// Gives `partitions` up: the tasks of each are cancelled at once.
    pub fn release(&mut self, partitions: &BTreeSet<i32>) {
        if let Some(owned) = &mut self.owned {
            for partition in partitions {
                if let Some(token) = owned.remove(partition) {
                    token.cancel();
                }
            }
        }
    }

    /// Gives every partition up, as before the cluster's group gave any.
    pub fn release_everything(&mut self) {
        let owned: BTreeSet<i32> = self.owned.iter().flat_map(|owned| owned.keys().copied()).collect();
        self.release(&owned);
        self.assigned = false;
    }

    /// How many partitions it owns; none for a host alone, which owns everything.
    pub fn owned_count(&self) -> Option<usize> {
        self.owned.as_ref().map(BTreeMap::len)
    }
}

/// What the member of the cluster's group hands the partitions it is given and
/// loses to.
pub trait Owner: Send + Sync + 'static {
    /// Stops the tasks of `partitions` and returns once they stopped (each committed
    /// its batch), or `deadline` passed. `lost`: the broker already gave them to
    /// another host (this host's session ended), so the tasks get only a moment.
    /// Called from the member's own thread, never an async one.
    fn release(&self, partitions: BTreeSet<i32>, lost: bool, deadline: std::time::Duration);
    /// Starts the tasks of `partitions`, without waiting for them.
    fn acquire(&self, partitions: BTreeSet<i32>);
    /// The member is out of the group for good (a fatal error): every task stops.
    fn release_everything(&self);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{Ownership, task_partition, worker_id};

    #[test]
    fn the_tasks_of_a_connector_go_to_consecutive_partitions() {
        let first = task_partition("flights", 0, 12);
        assert_eq!(first, crate::transport::partition_for_key(Some(b"flights"), 12, &mut 0));
        let tasks: BTreeSet<i32> = (0..12).map(|task| task_partition("flights", task, 12)).collect();
        assert_eq!(tasks.len(), 12, "twelve tasks, twelve partitions");
        assert_eq!(task_partition("flights", 1, 12), (first + 1) % 12);
        assert_eq!(task_partition("flights", 12, 12), first);
        let mut ownership = Ownership::nothing(12);
        assert!(!ownership.owns_task("flights", 0) && ownership.task_token("flights", 0).is_none());
        assert!(ownership.acquire(&[first].into()).is_empty());
        assert!(ownership.owns_task("flights", 0) && !ownership.owns_task("flights", 1));
        assert!(ownership.in_partitions("flights", 0, &[first].into()));
        let token = ownership.task_token("flights", 0).unwrap();
        ownership.release(&[first].into());
        assert!(!ownership.owns_task("flights", 0));
        assert!(token.is_cancelled(), "giving the partition up cancels its tasks");
        assert_eq!(ownership.acquire(&[12].into()), vec![12], "a partition past the count it maps with");
        assert!(Ownership::everything().owns_task("flights", 7));
        assert!(!Ownership::everything().in_partitions("flights", 0, &[0].into()));
    }
    use crate::config::AdminConfig;

    #[test]
    fn the_worker_id_is_the_advertised_address_or_the_bound_one() {
        let admin = AdminConfig::default();
        assert_eq!(worker_id(&admin, "127.0.0.1:40123".parse().unwrap()), "127.0.0.1:40123");
        assert_eq!(worker_id(&admin, "[::1]:8083".parse().unwrap()), "[::1]:8083");
        let anywhere = worker_id(&admin, "0.0.0.0:8083".parse().unwrap());
        assert!(anywhere.ends_with(":8083") && !anywhere.starts_with("0.0.0.0"), "{anywhere}");
        let advertised =
            AdminConfig { advertised_host: Some("connect-1.example.com".into()), advertised_port: Some(443), ..AdminConfig::default() };
        assert_eq!(worker_id(&advertised, "0.0.0.0:8083".parse().unwrap()), "connect-1.example.com:443");
        let port_only = AdminConfig { advertised_port: Some(9000), ..AdminConfig::default() };
        assert_eq!(worker_id(&port_only, "10.0.0.7:8083".parse().unwrap()), "10.0.0.7:9000");
        let v6 = AdminConfig { advertised_host: Some("fd00::7".into()), ..AdminConfig::default() };
        assert_eq!(worker_id(&v6, "0.0.0.0:8083".parse().unwrap()), "[fd00::7]:8083");
    }
}
