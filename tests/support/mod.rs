//! Helpers shared by the end-to-end tests: where things are, running the real
//! `wasm-connect` binary on a generated configuration, and reading what the file sink
//! wrote.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cluster;
pub mod cql_server;
pub mod kafka;
pub mod prometheus;
pub mod proxy;
pub mod replay;
pub mod services;
pub mod topics;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every plugin, the misbehaving test ones included (built by the host's build script).
pub fn test_plugins_dir() -> PathBuf {
    repo_root().join("plugins/test-dist")
}

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wasm-connect"))
}

/// The compiled-plugin cache every host and runtime of the test run shares
/// (`target/test-compiled-plugins`): without it each host compiled every test plugin
/// again (4 s of the two cores per start).
pub fn shared_cache_dir() -> PathBuf {
    std::env::current_exe().unwrap().ancestors().nth(3).unwrap().join("test-compiled-plugins")
}

/// A command running the binary under test, on the shared compiled-plugin cache.
pub fn command() -> Command {
    let mut command = Command::new(binary());
    command.env(wasm_connect::runtime::CACHE_VARIABLE, shared_cache_dir());
    command
}

/// A running host, stopped (SIGKILL) when dropped.
pub struct Host {
    child: Mutex<Child>,
    log: Arc<Mutex<String>>,
}

impl Host {
    /// Starts `wasm-connect run CONFIG` and waits until its admin API is up.
    pub fn start(config: &Path) -> Host {
        Host::start_with_env(config, &[])
    }

    /// [`Host::start`] with extra environment variables for the host.
    pub fn start_with_env(config: &Path, environment: &[(&str, &str)]) -> Host {
        let mut child = command()
            .arg("run")
            .arg(config)
            .env("WASM_CONNECT_LOG", std::env::var("TEST_HOST_LOG").unwrap_or_else(|_| "info,plugin=warn".into()))
            .envs(environment.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wasm-connect");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let host = Host { child: Mutex::new(child), log };
        host.wait_for_log("admin API at ", Duration::from_secs(60));
        host
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `text`; panics with the log otherwise.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(text) {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                panic!("wasm-connect exited ({status}) before logging {text:?}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {text:?} in the log after {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `condition` holds; on timeout, panics with the host's log.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            if Instant::now() > deadline {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!("timed out after {timeout:?} waiting for {what}; the host's last log lines:\n{}", tail.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The admin API's base URL, read from the start-up log line.
    pub fn admin_url(&self) -> String {
        let log = self.log();
        let start = log.find("admin API at ").expect("start-up line") + "admin API at ".len();
        log[start..].split_whitespace().next().unwrap().trim_end_matches('/').to_owned()
    }

    /// GET `path` from the admin API as JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let body = self.get_text(path);
        serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: {error}: {body}"))
    }

    /// GET `path` from the admin API as text.
    pub fn get_text(&self, path: &str) -> String {
        http_get(&format!("{}{path}", self.admin_url())).1
    }

    /// Sends `method path` with a JSON `body` to the admin API: the status and the JSON
    /// answer (`Null` when the body is empty).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let response =
            http_request(method, &format!("{}{path}", self.admin_url()), &[("Content-Type", "application/json")], body.as_bytes());
        let value = if response.body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&response.body).unwrap_or_else(|error| panic!("{method} {path}: {error}: {}", response.body))
        };
        (response.status, value)
    }

    /// Stops the host with SIGTERM and waits for a clean exit.
    pub fn stop(self) -> String {
        let mut child = self.child.lock().unwrap();
        signal(child.id(), "TERM");
        let status = wait_with_timeout(&mut child, Duration::from_secs(60));
        drop(child);
        let log = self.log();
        assert!(status.success(), "wasm-connect exited with {status} after SIGTERM:\n{log}");
        log
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// The host's resident memory, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.lock().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    /// Freezes the host (SIGSTOP), as a long pause of its machine or network would.
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    /// Lets a frozen host go on (SIGCONT).
    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    /// Kills the host with SIGKILL, as a crash would.
    pub fn kill(self) {
        let mut child = self.child.lock().unwrap();
        signal(child.id(), "KILL");
        wait_with_timeout(&mut child, Duration::from_secs(10));
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // The lock may be poisoned by a failed assertion: kill the host all the same.
        let child = self.child.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("running kill");
    assert!(status.success());
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wasm-connect did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(unused_imports)]
pub use services::{HttpResponse, http_request};

/// A minimal HTTP/1.1 GET over loopback: (status, body).
pub fn http_get(url: &str) -> (u16, String) {
    let response = http_request("GET", url, &[], b"");
    (response.status, response.body)
}

/// One line the file sink wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkLine {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    pub key: Option<String>,
    pub timestamp: Option<i64>,
    pub headers: Value,
    pub value: Value,
}

/// Every complete line the file sink wrote in `directory`, by topic, in file order.
pub fn read_sink_output(directory: &Path) -> BTreeMap<String, Vec<SinkLine>> {
    let mut output: BTreeMap<String, Vec<SinkLine>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(directory) else { return output };
    let mut files: Vec<PathBuf> = entries.map(|entry| entry.unwrap().path()).collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // A line still being written (no newline yet) is not read.
        let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        for line in complete.lines() {
            let document: Value =
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{}: not a JSON line ({error}): {line}", file.display()));
            let topic = document["topic"].as_str().unwrap().to_owned();
            output.entry(topic.clone()).or_default().push(SinkLine {
                topic,
                partition: document["partition"].as_i64().unwrap(),
                offset: document["offset"].as_i64().unwrap(),
                key: document["key"].as_str().map(str::to_owned),
                timestamp: document["timestamp"].as_i64(),
                headers: document["headers"].clone(),
                value: document["value"].clone(),
            });
        }
    }
    output
}

/// Waits until `condition` holds, polling; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `text` to `directory/connectors.yaml` and returns its path.
pub fn write_config(directory: &Path, text: &str) -> PathBuf {
    let path = directory.join("connectors.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes a host configuration for tests to `directory/connectors.yaml`: data under
/// `directory/data`, the admin API on a free port, every test plugin, quick restarts,
/// and the `connectors` given (a YAML list, indented by two spaces).
pub fn host_config(directory: &Path, connectors: &str) -> PathBuf {
    write_config(
        directory,
        &format!(
            "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {}\n  restart_backoff: 200ms\n  max_restart_backoff: 2s\nconnectors:\n{connectors}",
            directory.join("data").display(),
            test_plugins_dir().display()
        ),
    )
}

/// The number of file descriptors `pid` has open.
pub fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The sum of a metric's samples whose labels contain every `label="value"` given.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|(key, value)| line.contains(&format!("{key}=\"{value}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What a seeded simulator produces: the first `count` record values, as JSON.
pub fn simulated_values(plugin: &str, seed: &str, start: &str, count: usize) -> Vec<Value> {
    use wasm_connect::runtime::{PluginCatalog, Runtime, SourceInstance, TaskIdentity, TaskLimits};
    let cache = tempfile::tempdir().unwrap();
    let limits = TaskLimits { memory_bytes: 64 << 20, call_timeout: Duration::from_secs(30) };
    let runtime = Runtime::new(cache.path(), limits).unwrap();
    let (catalog, _) = PluginCatalog::load_dir(&runtime, &test_plugins_dir()).unwrap();
    let identity = TaskIdentity { connector: Arc::from("expected"), task: 0, plugin: Arc::from(plugin) };
    let mut instance =
        SourceInstance::new(&runtime, &catalog.find(plugin).unwrap(), identity, wasm_connect::capabilities::Grants::default()).unwrap();
    let config = [("seed", seed), ("rate", "0"), ("start", start)].map(|(key, value)| (key.to_owned(), value.to_owned()));
    instance.open(&config, None).unwrap();
    let mut values = Vec::new();
    while values.len() < count {
        let outcome = instance.poll((count - values.len()).min(1000) as u32).unwrap();
        for record in wasm_connect_protocol::decode(&outcome.batch).unwrap() {
            values.push(serde_json::from_slice(record.value.unwrap()).unwrap());
        }
    }
    values
}

/// Asserts that a topic's (partition, offset) pairs cover 0..n in every partition: no
/// record was skipped.
pub fn assert_contiguous(coordinates: &HashSet<(i64, i64)>, topic: &str) {
    let mut per_partition: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (partition, offset) in coordinates {
        per_partition.entry(*partition).or_default().push(*offset);
    }
    for (partition, mut offsets) in per_partition {
        offsets.sort();
        // Reported as the missing ranges, not as the whole list.
        let mut missing: Vec<(i64, i64)> = Vec::new();
        let mut expected = 0;
        for offset in offsets {
            if offset > expected {
                missing.push((expected, offset - 1));
            }
            expected = offset + 1;
        }
        assert!(missing.is_empty(), "{topic} partition {partition}: offsets missing (first..last): {missing:?}");
    }
}

/// Sorted JSON texts, to compare collections of values as multisets.
pub fn sorted_texts<'a>(values: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut texts: Vec<String> = values.into_iter().map(Value::to_string).collect();
    texts.sort();
    texts
}

/// True when every file in `directory` ends with a complete line.
pub fn every_file_ends_with_a_newline(directory: &Path) -> bool {
    std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .all(|content| content.is_empty() || content.ends_with(b"\n"))
}

/// Runs `wasm-connect run CONFIG`, expecting it to exit by itself: (success, stderr).
pub fn run_to_exit(config: &Path) -> (bool, String) {
    let mut child = command().arg("run").arg(config).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            return (status.success(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wasm-connect kept running; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `value` with the fields of every object in name order.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            let sorted: BTreeMap<&String, Value> = fields.iter().map(|(name, value)| (name, canonical(value))).collect();
            Value::Object(sorted.into_iter().map(|(name, value)| (name.clone(), value)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// `text` made safe for a URL query value: every byte but the unreserved ones as `%XX`.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `component` with every occurrence of `from` replaced by `to` (same length): a
/// plugin that describes itself under another name.
pub fn renamed_component(component: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut bytes = component.to_vec();
    let mut replaced = 0;
    let mut index = 0;
    while index + from.len() <= bytes.len() {
        if &bytes[index..index + from.len()] == from.as_bytes() {
            bytes[index..index + from.len()].copy_from_slice(to.as_bytes());
            replaced += 1;
            index += from.len();
        } else {
            index += 1;
        }
    }
    assert!(replaced > 0, "{from} is not in the component");
    bytes
}

/// The component with a custom section appended: the same plugin, other bytes.
pub fn rebuilt_component(component: &[u8]) -> Vec<u8> {
    let name = b"rebuilt";
    let payload = b"another build";
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}
