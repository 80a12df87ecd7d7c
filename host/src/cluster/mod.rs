//! Several hosts, one cluster: who this host is among the hosts that share a Kafka
//! cluster's `group.id`.

use std::net::{IpAddr, SocketAddr};

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

#[cfg(test)]
mod tests {
    use super::worker_id;
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
