//! `iot-sensor-simulator`: temperature, humidity and PM2.5 readings from a fleet of
//! devices, with occasional anomalies (spikes, stuck sensors, dropouts) flagged in the
//! record so that downstream detection can be checked. Keyed by `device_id`.

use serde_json::json;
use wasm_connect_sdk::simulation::{self, Simulator, Timeline, format_rfc3339};
use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, Settings, export_source};

const SITES: &[&str] = &["warehouse-north", "warehouse-south", "office-hq", "plant-a", "plant-b", "cold-store"];

/// The simulator task.
pub struct IotSensorSimulator {
    timeline: Timeline,
    devices: u64,
    anomaly_probability: f64,
}

impl IotSensorSimulator {
    /// Reading `n`: device `n % devices`, its reading number `n / devices`.
    pub fn reading(&self, n: u64) -> (String, serde_json::Value) {
        let device = n % self.devices;
        let mut device_rng = wasm_connect_sdk::simulation::Rng::new(self.timeline.seed.wrapping_add(device * 7919));
        let base_temperature = device_rng.between(17.0, 25.0);
        let base_humidity = device_rng.between(35.0, 60.0);
        let base_pm25 = device_rng.between(4.0, 20.0);
        let site = SITES[device_rng.index(SITES.len())];
        let time_ms = self.timeline.timestamp_ms(n);
        let day_phase = (time_ms as f64 / 86_400_000.0).fract() * std::f64::consts::TAU;
        let mut rng = self.timeline.rng(n);
        let mut temperature = base_temperature + 3.0 * (day_phase - 2.0).sin() + rng.normal(0.0, 0.2);
        let mut humidity = (base_humidity - 6.0 * (day_phase - 2.0).sin() + rng.normal(0.0, 1.0)).clamp(0.0, 100.0);
        let mut pm25 = (base_pm25 + rng.normal(0.0, 1.5)).max(0.0);
        let reading_number = n / self.devices;
        let battery = (100.0 - reading_number as f64 * 0.01).max(5.0);
        let anomaly = if rng.chance(self.anomaly_probability) {
            Some(*rng.weighted(&[("temperature_spike", 3), ("pm25_spike", 3), ("stuck_sensor", 2), ("humidity_dropout", 1)]))
        } else {
            None
        };
        match anomaly {
            Some("temperature_spike") => temperature += rng.between(15.0, 30.0),
            Some("pm25_spike") => pm25 *= rng.between(8.0, 20.0),
            Some("stuck_sensor") => temperature = 85.0,
            Some("humidity_dropout") => humidity = 0.0,
            _ => {}
        }
        let device_id = format!("sensor-{device:05}");
        let reading = json!({
            "device_id": device_id,
            "site": site,
            "timestamp": format_rfc3339(time_ms),
            "sequence": reading_number,
            "temperature_c": (temperature * 100.0).round() / 100.0,
            "humidity_pct": (humidity * 10.0).round() / 10.0,
            "pm25_ugm3": (pm25 * 10.0).round() / 10.0,
            "battery_pct": (battery * 10.0).round() / 10.0,
            "anomaly": anomaly.is_some(),
            "anomaly_kind": anomaly,
        });
        (device_id, reading)
    }
}

impl Plugin for IotSensorSimulator {
    fn description() -> Description {
        let description = Description::new(
            "iot-sensor-simulator",
            env!("CARGO_PKG_VERSION"),
            "Temperature, humidity and PM2.5 readings per device, with occasional flagged anomalies; keyed by device_id.",
        )
        .option(ConfigOption::new("devices", OptionType::Integer, "Number of devices.").default("50"))
        .option(
            ConfigOption::new("anomaly_probability", OptionType::Float, "Share of readings that are anomalies (0 to 1).").default("0.01"),
        );
        simulation::options("10").into_iter().fold(description, Description::option)
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut issues = simulation::validate(settings);
        if settings.integer("devices").is_ok_and(|devices| devices < 1) {
            issues.push(("devices".to_owned(), "must be at least 1".to_owned()));
        }
        if settings.float("anomaly_probability").is_ok_and(|p| !(0.0..=1.0).contains(&p)) {
            issues.push(("anomaly_probability".to_owned(), "must be between 0 and 1".to_owned()));
        }
        issues
    }
}

impl Simulator for IotSensorSimulator {
    fn start(settings: &Settings, timeline: Timeline) -> Result<Self, Error> {
        Ok(Self {
            timeline,
            devices: settings.integer("devices")?.max(1) as u64,
            anomaly_probability: settings.float("anomaly_probability")?,
        })
    }

    fn timeline(&mut self) -> &mut Timeline {
        &mut self.timeline
    }

    fn record(&self, n: u64, key: &mut Vec<u8>, value: &mut Vec<u8>) {
        let (record_key, record_value) = self.reading(n);
        key.extend_from_slice(record_key.as_bytes());
        serde_json::to_writer(value, &record_value).expect("a JSON tree always serialises");
    }
}

export_source!(IotSensorSimulator);
