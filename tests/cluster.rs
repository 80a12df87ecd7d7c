//! Several hosts, one cluster: host processes that share a Kafka cluster's
//! `group.id`, on one broker (noida-db of the test's own, or the cluster in
//! `WASM_CONNECT_TEST_KAFKA_BOOTSTRAP`, where every name gets a unique suffix).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::cluster::{Cluster, broker};
use support::topics::{kafka, kafka_feed, runtime};
use wasm_connect::transport::Transport;
use wasm_connect::transport::kafka::ClusterTopics;
use wasm_connect_protocol::Record;

/// Three hosts of one group: each names itself by the address its API is reached at,
/// all name the same group and Kafka cluster, the group's topics are made with the
/// partitions the settings give, and a sink's consumer group starts with `group.id`.
#[test]
fn three_hosts_of_one_group_are_distinct_workers_on_its_topics() {
    let (_noida, bootstrap, s) = broker();
    let group = format!("etl{s}");
    let root = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(root.path(), &bootstrap, &group).with("offset.storage.partitions", "5");
    let topic = format!("readings{s}");
    support::kafka::create_topic(&bootstrap, &topic, 2);
    let records = (0..10).map(|n| Record { key: Some(format!("k{n}").into_bytes()), value: Some(b"{}".to_vec()), ..Record::default() });
    kafka_feed(&bootstrap, &topic, records.collect());
    let output = root.path().join("archive");
    let sink =
        format!("  - name: archive\n    plugin: file-sink\n    topics: [{topic}]\n    config:\n      directory: {}\n", output.display());
    let hosts: Vec<_> = (0..3).map(|index| cluster.start(index, if index == 0 { &sink } else { "" })).collect();
    let mut workers = BTreeSet::new();
    for host in &hosts {
        let info = host.get_json("/");
        let address = host.admin_url();
        assert_eq!(info["worker_id"], address.trim_start_matches("http://"), "{info}");
        assert_eq!(info["group_id"], group.as_str(), "{info}");
        assert!(info["kafka_cluster_id"].as_str().is_some_and(|id| !id.is_empty()), "{info}");
        assert_eq!(info["kafka_cluster_id"], hosts[0].get_json("/")["kafka_cluster_id"]);
        workers.insert(info["worker_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(workers.len(), 3, "three distinct workers: {workers:?}");
    let client = kafka(&bootstrap);
    let partitions = |name: &str| {
        let topics = runtime().block_on(client.describe_topics(Some(name))).unwrap();
        topics.first().map_or(0, |topic| topic.partitions.len())
    };
    hosts[0].wait_until("the group's topics", Duration::from_secs(30), || partitions(&format!("{group}-offsets")) > 0);
    assert_eq!(partitions(&format!("{group}-offsets")), 5, "offset.storage.partitions");
    assert_eq!(partitions(&format!("{group}-configs")), 1, "the config topic has one partition");
    hosts[0].wait_until("the sink's ten records", Duration::from_secs(60), || {
        support::read_sink_output(&output).values().map(Vec::len).sum::<usize>() == 10
    });
    let mut hosts = hosts;
    hosts.remove(0).stop();
    let committed = |prefix: &str| {
        let client = wasm_connect::transport::KafkaTransport::new(&bootstrap, &Default::default(), ClusterTopics::named(prefix));
        let offsets = runtime().block_on(client.committed_offsets("archive", std::slice::from_ref(&topic))).unwrap();
        offsets.iter().map(|offset| offset.offset).sum::<i64>()
    };
    assert_eq!(committed(&group), 10, "the sink's group is {group}-archive");
    assert_eq!(committed("wasm-connect"), 0, "nothing under the default group's name");
}
