//! Several hosts, one cluster, timed with the real `wasm-connect` binary (built first
//! with `cargo build --release`), each host a process of its own on this machine:
//!
//! - `takeover`: the time from a SIGKILL of the host that runs a source to the other
//!   host running it, on librdkafka's mock cluster (which ends the sessions of hosts
//!   that stop heartbeating, as Kafka does; noida-db never does), with
//!   `session.timeout.ms: 6000` and `heartbeat.interval.ms: 1000`;
//! - `hosts`: records/s of prebuilt-source -> counting-sink (3 sink tasks) with 1, 2
//!   and 3 hosts, on the mock cluster and on noida-db, and the CPU time of all hosts
//!   per record. On two cores this shows what sharing costs, not scaling;
//! - `idle`: the broker's CPU and each host's with 0 to 3 idle hosts of one cluster,
//!   on the mock cluster: what a host adds to the broker while nothing flows (its
//!   membership heartbeats, its status heartbeats, its readers of the config and
//!   status topics). Not on noida-db, which answers a fetch at once when it has no
//!   record (Kafka and the mock hold it up to `fetch.wait.max.ms`), so that every
//!   idle reader of it spins: one plain librdkafka consumer costs about 600 ms of CPU
//!   per second there, and 1 ms on the mock.
//!
//! `cargo bench -p wasm-connect-bench --bench cluster [-- takeover | hosts [RECORDS] | idle]`

// The tests' broker helpers, which find `services` and `repo_root` beside them.
#[allow(dead_code)]
#[path = "../../../tests/support/kafka.rs"]
mod kafka;
#[allow(dead_code)]
#[path = "../../../tests/support/services.rs"]
mod services;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kafka::{MockBroker, NoidaKafka};
use wasm_connect_bench::{HostProcess, measure_delivery_with, pid_cpu_time, repository, write_config};

fn repo_root() -> PathBuf {
    repository()
}

/// One host of the cluster `group`: its process and its admin port.
struct Member {
    process: HostProcess,
    port: u16,
    config: PathBuf,
}

impl Member {
    /// Starts host `index` of `group` under `directory`, with `connectors` (YAML lines
    /// indented by two spaces, or empty) and `strategy` as its assignor.
    fn start(directory: &Path, index: usize, bootstrap: &str, group: &str, strategy: &str, connectors: &str) -> Member {
        let directory = directory.join(format!("host-{index}"));
        std::fs::create_dir_all(&directory).unwrap();
        let port = services::free_port();
        let connectors = if connectors.is_empty() { " []\n".to_owned() } else { format!("\n{connectors}") };
        let text = format!(
            "version: 1\ndata_dir: {data}\nadmin:\n  listen: 127.0.0.1:{port}\nplugins:\n  dir: {plugins}\n\
             kafka:\n  bootstrap_servers: {bootstrap}\n  client:\n    session.timeout.ms: 6000\n  cluster:\n    group.id: {group}\n\
             \x20   assignment.storage.partitions: 12\n    session.timeout.ms: 6000\n    heartbeat.interval.ms: 1000\n\
             \x20   partition.assignment.strategy: {strategy}\nconnectors:{connectors}",
            data = directory.join("data").display(),
            plugins = repository().join("plugins/test-dist").display(),
        );
        let config = write_config(&directory, &text);
        Member { process: HostProcess::start(&config), port, config }
    }

    /// The same host started again (same `data_dir`, same port).
    fn restart(&mut self) {
        self.process = HostProcess::start(&self.config);
    }

    fn worker_id(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&wasm_connect_bench::http_get(self.port, path)).unwrap_or_default()
    }

    /// How many tasks of `connector` run on this host, by its metrics.
    fn running_tasks(&self, connector: &str) -> usize {
        wasm_connect_bench::http_get(self.port, "/metrics")
            .lines()
            .filter(|line| {
                line.starts_with("wasm_connect_task_state{")
                    && line.contains(&format!("connector=\"{connector}\""))
                    && line.contains("state=\"RUNNING\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as usize
    }

    /// Whether this host says it runs task 0 of `connector` and its own metrics agree.
    fn runs(&self, connector: &str) -> bool {
        let status = self.json(&format!("/connectors/{connector}/status"));
        let task = &status["tasks"][0];
        task["state"] == "RUNNING"
            && task["worker_id"] == self.worker_id().as_str()
            && wasm_connect_bench::http_get(self.port, "/metrics").lines().any(|line| {
                line.starts_with("wasm_connect_task_state{")
                    && line.contains(&format!("connector=\"{connector}\""))
                    && line.contains("state=\"RUNNING\"")
                    && line.ends_with(" 1")
            })
    }
}

/// Waits until the cluster's 12 partitions are shared out among `members`, each with some.
fn settled(members: &[&Member], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let shares: Vec<u64> = members.iter().map(|member| member.json("/")["assigned_partitions"].as_u64().unwrap_or(0)).collect();
        if shares.iter().sum::<u64>() == 12 && shares.iter().all(|share| *share > 0) {
            return;
        }
        assert!(Instant::now() < deadline, "the partitions were not shared out within {within:?}: {shares:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A POST of `body` to the admin API on `port`: the status code.
fn post(port: u16, path: &str, body: &serde_json::Value) -> u16 {
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// The SIGKILL of the host that runs a source to the other host running it, `runs` times.
fn takeover(directory: &Path, runs: usize) {
    println!(
        "\ntakeover: SIGKILL of the host that runs a source -> the other host runs it (librdkafka mock cluster, 2 hosts, cooperative-sticky, session.timeout.ms 6000, heartbeat.interval.ms 1000):"
    );
    let mut mock = MockBroker::start();
    own_topics(&mut mock, "takeover");
    mock.create_topic("taken", 1);
    let source = "  - name: count\n    plugin: counter-source\n    topic: taken\n    config:\n      rate: 200\n";
    let mut members: Vec<Member> =
        (0..2).map(|index| Member::start(directory, index, &mock.bootstrap, "takeover", "cooperative-sticky", source)).collect();
    let mut figures = Vec::new();
    for _ in 0..runs {
        settled(&members.iter().collect::<Vec<_>>(), Duration::from_secs(120));
        let deadline = Instant::now() + Duration::from_secs(60);
        let owner = loop {
            if let Some(owner) = members.iter().position(|member| member.runs("count")) {
                break owner;
            }
            assert!(Instant::now() < deadline, "no host runs the source");
            std::thread::sleep(Duration::from_millis(100));
        };
        std::thread::sleep(Duration::from_secs(2));
        members[owner].process.kill();
        let killed = Instant::now();
        let survivor = &members[1 - owner];
        while !survivor.runs("count") {
            assert!(killed.elapsed() < Duration::from_secs(120), "the source did not move within 2 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
        figures.push(killed.elapsed());
        members[owner].restart();
    }
    let shown: Vec<String> = figures.iter().map(|figure| format!("{:.1} s", figure.as_secs_f64())).collect();
    println!("  {}", shown.join(", "));
    for member in members {
        member.process.stop();
    }
}

/// The cluster `group`'s own topics on the mock cluster, which refuses CreateTopics.
fn own_topics(mock: &mut MockBroker, group: &str) {
    for (suffix, partitions) in [("configs", 1), ("offsets", 5), ("assignments", 12), ("status", 5), ("plugins", 1)] {
        mock.create_topic(&format!("{group}-{suffix}"), partitions);
    }
}

/// A broker in a process of its own: librdkafka's mock cluster or noida-db.
enum Broker {
    Mock(MockBroker),
    Noida(NoidaKafka),
}

impl Broker {
    /// A new broker (the mock or noida-db) with the cluster `group`'s topics and
    /// `topic` of `partitions`.
    fn start(mock: bool, group: &str, topic: &str, partitions: u32) -> Broker {
        if mock {
            let mut broker = MockBroker::start();
            own_topics(&mut broker, group);
            broker.create_topic(topic, partitions);
            Broker::Mock(broker)
        } else {
            let broker = NoidaKafka::start();
            broker.create_topic(topic, partitions);
            Broker::Noida(broker)
        }
    }

    fn bootstrap(&self) -> &str {
        match self {
            Broker::Mock(broker) => &broker.bootstrap,
            Broker::Noida(broker) => &broker.bootstrap,
        }
    }
}

/// Records/s and CPU per record with 1, 2 and 3 hosts, `records` per run, on the mock
/// cluster (at most 80,000: it keeps about 5 MB per partition) and on noida-db.
fn hosts(directory: &Path, records: usize) {
    for (mock, broker) in [(true, "librdkafka mock cluster, cooperative-sticky"), (false, "noida-db 0.2.3, range")] {
        let records = if mock { records.min(80_000) } else { records };
        println!(
            "\nrecords/s of prebuilt-source (500-byte values) -> counting-sink (3 tasks, 16 partitions), {records} records, {broker}, by hosts in the cluster (best of 2; CPU of all hosts per record):"
        );
        let strategy = if mock { "cooperative-sticky" } else { "range" };
        for count in 1..=3 {
            let mut runs = Vec::new();
            for run in 0..2 {
                let broker = Broker::start(mock, "flow", "flow", 16);
                let directory = directory.join(format!("hosts-{mock}-{count}-{run}"));
                let members: Vec<Member> =
                    (0..count).map(|index| Member::start(&directory, index, broker.bootstrap(), "flow", strategy, "")).collect();
                settled(&members.iter().collect::<Vec<_>>(), Duration::from_secs(120));
                let sink =
                    serde_json::json!({"name": "sink", "config": {"connector.class": "counting-sink", "topics": "flow", "tasks.max": "3"}});
                assert_eq!(post(members[0].port, "/connectors", &sink), 201);
                // The sink's group settled before records flow: a rebalance meanwhile
                // would deliver some twice (at least once).
                let deadline = Instant::now() + Duration::from_secs(60);
                while members.iter().map(|member| member.running_tasks("sink")).sum::<usize>() < 3 {
                    assert!(Instant::now() < deadline, "the sink's three tasks did not start");
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::thread::sleep(Duration::from_secs(5));
                let source = serde_json::json!({"name": "source", "config": {
                    "connector.class": "prebuilt-source", "topic": "flow", "value_bytes": "500", "limit": records.to_string()}});
                assert_eq!(post(members[0].port, "/connectors", &source), 201);
                let what = format!("records through {count} host(s) (see {})", directory.display());
                let cpu = || members.iter().map(|member| member.process.cpu_time()).sum::<Duration>();
                let delivered = || {
                    members
                        .iter()
                        .map(|member| wasm_connect_bench::metric(member.port, "wasm_connect_records_written_total{", "sink"))
                        .sum::<f64>() as usize
                };
                runs.push(measure_delivery_with(records, &what, cpu, delivered));
                for member in members {
                    member.process.stop();
                }
            }
            let best = runs.iter().map(|run| run.records_per_second).fold(0.0, f64::max);
            let worst = runs.iter().map(|run| run.records_per_second).fold(f64::MAX, f64::min);
            let cpu = runs.iter().map(|run| run.cpu_per_record).min().unwrap().as_secs_f64() * 1e6;
            println!("  {count} host(s): {best:>8.0} records/s (worst {worst:.0}), {cpu:.1} µs CPU per record");
        }
    }
}

/// The broker's CPU and each host's, per second of `window`, with 0 to 3 idle hosts.
fn idle(directory: &Path) {
    let window = Duration::from_secs(30);
    println!(
        "\nat idle (no connector), librdkafka mock cluster, heartbeat.interval.ms 1000, over {} s each: CPU ms per second",
        window.as_secs()
    );
    let mut mock = MockBroker::start();
    own_topics(&mut mock, "idle");
    let broker_pid = mock.pid();
    let mut members: Vec<Member> = Vec::new();
    let mut before = None;
    for count in 0..=3 {
        if count > 0 {
            members.push(Member::start(directory, count - 1, &mock.bootstrap, "idle", "cooperative-sticky", ""));
            settled(&members.iter().collect::<Vec<_>>(), Duration::from_secs(120));
            // The joins' rebalances, the topics' first reads.
            std::thread::sleep(Duration::from_secs(10));
        }
        let (broker, hosts) = (pid_cpu_time(broker_pid), members.iter().map(|member| member.process.cpu_time()).collect::<Vec<_>>());
        std::thread::sleep(window);
        let per_second = |spent: Duration| spent.as_secs_f64() * 1000.0 / window.as_secs_f64();
        let broker = per_second(pid_cpu_time(broker_pid) - broker);
        let host_figures: Vec<String> =
            members.iter().zip(hosts).map(|(member, at)| format!("{:.1}", per_second(member.process.cpu_time() - at))).collect();
        let added = before.map(|before: f64| format!(" ({:+.1} with this host)", broker - before)).unwrap_or_default();
        println!("  {count} host(s): broker {broker:.1}{added}; hosts [{}]", host_figures.join(", "));
        before = Some(broker);
    }
    for member in members {
        member.process.stop();
    }
}

fn main() {
    let directory = tempfile::tempdir().unwrap();
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let records = arguments.iter().find_map(|argument| argument.parse().ok()).unwrap_or(200_000);
    let only = |part: &str| arguments.iter().any(|argument| argument == part);
    let all = !["takeover", "hosts", "idle"].iter().any(|part| only(part));
    if all || only("takeover") {
        takeover(&directory.path().join("takeover"), 3);
    }
    if all || only("hosts") {
        hosts(&directory.path().join("hosts"), records);
    }
    if all || only("idle") {
        idle(&directory.path().join("idle"));
    }
}
