//! What the benchmarks in `benches/` share: the records they push through, the
//! shipped default pipeline set up in a directory of their own, and how they read the
//! process's CPU time and memory and a running host's metrics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasm_connect_protocol::Record;

/// The repository root.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default pipeline's connectors.yaml, with its data and output in `directory`
/// and the admin API on `port`.
pub fn pipeline_config(directory: &Path, port: u16) -> PathBuf {
    let shipped = std::fs::read_to_string(repository().join("connectors.yaml")).unwrap();
    let text = shipped
        .replace("data_dir: ./data", &format!("data_dir: {}", directory.join("data").display()))
        .replace("listen: 127.0.0.1:8083", &format!("listen: 127.0.0.1:{port}"))
        .replace("dir: ./plugins/dist", &format!("dir: {}", repository().join("plugins/dist").display()))
        .replace("directory: ./output", &format!("directory: {}", directory.join("output").display()));
    write_config(directory, &text)
}

/// Writes `text` as `directory/connectors.yaml` and returns its path.
pub fn write_config(directory: &Path, text: &str) -> PathBuf {
    let file = directory.join("connectors.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `count` flight-like records of about 230 bytes (AirLabs-shaped JSON values),
/// keyed by a unique hex code, spread over four partitions.
pub fn sample_records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|n| Record {
            topic: "flights".into(),
            partition: Some((n % 4) as i32),
            offset: Some(n as i64),
            timestamp: Some(1_714_521_600_000 + n as i64),
            key: Some(format!("{:06x}", n * 7919 % 0xFF_FFFF).into_bytes()),
            value: Some(
                format!(
                    r#"{{"hex":"{:06x}","lat":{:.5},"lng":{:.5},"alt":{},"dir":{:.1},"speed":{},"dep_icao":"EGLL","arr_icao":"KJFK","flight_icao":"BAW{}","status":"en-route","updated":{}}}"#,
                    n * 7919 % 0xFF_FFFF,
                    51.47 - (n % 1000) as f64 * 0.01,
                    -0.45 - (n % 700) as f64 * 0.05,
                    10_000 + n % 2000,
                    (n % 3600) as f64 / 10.0,
                    800 + n % 100,
                    100 + n % 900,
                    1_714_521_600 + n
                )
                .into_bytes(),
            ),
            headers: Vec::new(),
        })
        .collect()
}

/// CPU time (user + system) of this process so far.
pub fn cpu_time() -> Duration {
    process_cpu_time("self")
}

/// CPU time (user + system) so far of the process `pid` (a broker, say).
pub fn pid_cpu_time(pid: u32) -> Duration {
    process_cpu_time(&pid.to_string())
}

/// CPU time (user + system) so far of the process `/proc/{process}` names.
fn process_cpu_time(process: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).unwrap_or_default();
    let Some((_, after_name)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |times| times.iter().filter_map(|field| field.parse::<u64>().ok()).sum());
    Duration::from_secs_f64(ticks as f64 / 100.0) // USER_HZ on Linux
}

/// Resident memory of this process, in MiB.
pub fn rss_mib() -> f64 {
    memory_mib("self", "VmRSS")
}

/// A memory figure (`VmRSS`, `VmHWM`: the peak resident) of the process `/proc/{process}`
/// names, in MiB; 0 once it has gone.
fn memory_mib(process: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The release binary, which `cargo build --release` (or `cargo test --release`) builds.
pub fn binary() -> PathBuf {
    let binary = repository().join("target/release/wasm-connect");
    assert!(binary.exists(), "{} is missing: run `cargo build --release` first", binary.display());
    binary
}

/// A host process (`wasm-connect run CONFIG`), killed when dropped; its log goes to
/// `host.log` beside the config. It inherits the environment (so a
/// `WASM_CONNECT_CACHE_DIR` set by the bench spares it compiling).
pub struct HostProcess(Child);

impl HostProcess {
    /// Starts the release binary on `config`.
    pub fn start(config: &Path) -> HostProcess {
        let log = std::fs::File::create(config.with_file_name("host.log")).unwrap();
        let child = Command::new(binary())
            .arg("run")
            .arg(config)
            .env("WASM_CONNECT_LOG", "warn,plugin=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting wasm-connect");
        HostProcess(child)
    }

    /// Its resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        memory_mib(&self.0.id().to_string(), "VmRSS")
    }

    /// The most it has been resident so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        memory_mib(&self.0.id().to_string(), "VmHWM")
    }

    /// Its CPU time (user + system) so far.
    pub fn cpu_time(&self) -> Duration {
        process_cpu_time(&self.0.id().to_string())
    }

    /// SIGKILL, and the wait for the exit: a crash.
    pub fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// SIGTERM, and the wait for the exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of a GET to the host's admin API on `port`, or empty while it is not up.
pub fn http_get(port: u16, path: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let mut text = String::new();
    if write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err()
        || std::io::Read::read_to_string(&mut stream, &mut text).is_err()
    {
        return String::new();
    }
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

/// The sum of a metric's samples for `connector`, from the host's `/metrics`; 0 while
/// the admin API is not up.
pub fn metric(port: u16, name: &str, connector: &str) -> f64 {
    http_get(port, "/metrics")
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(&format!("connector=\"{connector}\"")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Records/s and the process's CPU time per record over one run.
pub struct Throughput {
    /// Records per second.
    pub records_per_second: f64,
    /// CPU time of the whole process per record.
    pub cpu_per_record: Duration,
}

/// Watches `delivered()` (records at the far end so far) until it reaches `records`,
/// and measures from the first record seen to the last: the start-up is left out.
/// Blocks the calling thread (call it from `block_on`, not from a runtime's worker).
pub fn measure_delivery(records: usize, what: &str, delivered: impl FnMut() -> usize) -> Throughput {
    measure_delivery_with(records, what, cpu_time, delivered)
}

/// [`measure_delivery`] with the CPU time of whatever `cpu` reads (another process's,
/// such as a [`HostProcess`]'s).
pub fn measure_delivery_with(records: usize, what: &str, cpu: impl Fn() -> Duration, mut delivered: impl FnMut() -> usize) -> Throughput {
    let deadline = Instant::now() + Duration::from_secs(600);
    let (first, first_count, cpu_at_first) = loop {
        let count = delivered();
        if count > 0 {
            break (Instant::now(), count, cpu());
        }
        assert!(Instant::now() < deadline, "{what}: nothing in 10 minutes");
        std::thread::sleep(Duration::from_millis(5));
    };
    // A run over before the first look measures nothing (and would divide by zero).
    assert!(first_count < records * 9 / 10, "{what}: {first_count} of {records} at the first look; give the run more records");
    loop {
        let count = delivered();
        assert!(count <= records, "{what}: {count} for {records} records");
        if count == records {
            break;
        }
        assert!(Instant::now() < deadline, "{what}: {count} of {records} records in 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = first.elapsed();
    let cpu = cpu().saturating_sub(cpu_at_first);
    let measured = (records - first_count) as f64;
    Throughput { records_per_second: measured / elapsed.as_secs_f64(), cpu_per_record: cpu.div_f64(measured) }
}
