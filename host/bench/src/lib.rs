//! What the benchmarks in `benches/` share: the records they push through.

use wasm_connect_protocol::Record;

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
