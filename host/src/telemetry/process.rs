//! The host process's own resources, read from `/proc` at each scrape, under the
//! names every Prometheus client library uses (`process_cpu_seconds_total`, ...), so
//! standard dashboards and alerts work unchanged.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/self/stat` (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process collector; off Linux it reports nothing.
#[derive(Debug)]
pub struct ProcessMetrics;

/// What `/proc` says about this process.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    start_time_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    max_fds: f64,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

impl Sample {
    fn read() -> Option<Self> {
        let mut sample = Self::parse_stat(&read("/proc/self/stat")?, &read("/proc/stat")?)?;
        let status = read("/proc/self/status")?;
        let kibibytes = |key: &str| -> Option<f64> {
            let line = status.lines().find(|line| line.starts_with(key))?;
            Some(line[key.len()..].trim().trim_end_matches("kB").trim().parse::<f64>().ok()? * 1024.0)
        };
        sample.resident_bytes = kibibytes("VmRSS:")?;
        sample.virtual_bytes = kibibytes("VmSize:")?;
        sample.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        sample.max_fds = read("/proc/self/limits")?
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3)?.parse().ok())
            .unwrap_or(0.0);
        Some(sample)
    }

    /// CPU time and start time from `/proc/self/stat` (the fields after the command
    /// name, which may itself contain spaces) and the boot time from `/proc/stat`.
    fn parse_stat(stat: &str, system: &str) -> Option<Self> {
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // Fields 14, 15 and 22 of stat(5), counted from the state (field 3) here.
        let ticks = |field: usize| -> Option<f64> { fields.get(field - 3)?.parse().ok() };
        let boot_time: f64 = system.lines().find_map(|line| line.strip_prefix("btime "))?.trim().parse().ok()?;
        Some(Self {
            cpu_seconds: (ticks(14)? + ticks(15)?) / TICKS_PER_SECOND,
            start_time_seconds: boot_time + ticks(22)? / TICKS_PER_SECOND,
            ..Self::default()
        })
    }
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(sample) = Sample::read() else { return Ok(()) };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            ("process_start_time_seconds", "Start time of the process since unix epoch in seconds", sample.start_time_seconds),
            ("process_resident_memory_bytes", "Resident memory size in bytes", sample.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", sample.virtual_bytes),
            ("process_open_fds", "Number of open file descriptors", sample.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", sample.max_fds),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_name_with_spaces() {
        let stat = "4242 (wasm connect) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 9 0 12345 1000 200 18446744073709551615";
        let sample = Sample::parse_stat(stat, "cpu  1 2 3\nbtime 1700000000\n").unwrap();
        assert_eq!(sample.cpu_seconds, 3.0);
        assert_eq!(sample.start_time_seconds, 1_700_000_000.0 + 123.45);
    }

    #[test]
    fn this_process_has_memory_and_descriptors() {
        let sample = Sample::read().expect("a Linux /proc");
        assert!(sample.resident_bytes > 0.0 && sample.virtual_bytes >= sample.resident_bytes);
        assert!(sample.open_fds >= 3.0 && sample.max_fds >= sample.open_fds);
        assert!(sample.start_time_seconds > 1_600_000_000.0);
    }
}
