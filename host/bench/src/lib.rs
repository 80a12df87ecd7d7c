//! What the benchmarks in `benches/` share: the records they push through, and the
//! shipped default pipeline set up in a directory of their own.

use std::path::{Path, PathBuf};

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
