//! `flight-simulator`: aircraft flying great-circle legs between real airports, back
//! and forth, reporting positions shaped like AirLabs `/flights` items and keyed by
//! their ICAO24 `hex`. Record `n` is aircraft `n % flights` at its report `n / flights`.

use serde::{Serialize, Serializer};
use wasm_connect_sdk::simulation::{self, Rng, Simulator, Timeline};
use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, Settings, export_source};

/// ICAO, IATA, latitude, longitude.
const AIRPORTS: &[(&str, &str, f64, f64)] = &[
    ("EGLL", "LHR", 51.4700, -0.4543),
    ("LFPG", "CDG", 49.0097, 2.5479),
    ("EDDF", "FRA", 50.0379, 8.5622),
    ("EHAM", "AMS", 52.3105, 4.7683),
    ("LEMD", "MAD", 40.4983, -3.5676),
    ("LIRF", "FCO", 41.8003, 12.2389),
    ("LSZH", "ZRH", 47.4647, 8.5492),
    ("LTFM", "IST", 41.2753, 28.7519),
    ("OMDB", "DXB", 25.2532, 55.3657),
    ("VIDP", "DEL", 28.5562, 77.1000),
    ("VHHH", "HKG", 22.3080, 113.9185),
    ("RJTT", "HND", 35.5494, 139.7798),
    ("WSSS", "SIN", 1.3644, 103.9915),
    ("YSSY", "SYD", -33.9399, 151.1753),
    ("KJFK", "JFK", 40.6413, -73.7781),
    ("KLAX", "LAX", 33.9416, -118.4085),
    ("KORD", "ORD", 41.9742, -87.9073),
    ("KATL", "ATL", 33.6407, -84.4277),
    ("CYYZ", "YYZ", 43.6777, -79.6248),
    ("SBGR", "GRU", -23.4356, -46.4731),
    ("FAOR", "JNB", -26.1337, 28.2420),
    ("HECA", "CAI", 30.1219, 31.4056),
    ("ZBAA", "PEK", 40.0799, 116.6031),
    ("RKSI", "ICN", 37.4602, 126.4407),
];

/// ICAO, IATA, registration prefix, country of registration (ISO2).
const AIRLINES: &[(&str, &str, &str, &str)] = &[
    ("BAW", "BA", "G-", "GB"),
    ("AFR", "AF", "F-", "FR"),
    ("DLH", "LH", "D-", "DE"),
    ("KLM", "KL", "PH-", "NL"),
    ("UAE", "EK", "A6-", "AE"),
    ("SIA", "SQ", "9V-", "SG"),
    ("DAL", "DL", "N", "US"),
    ("AAL", "AA", "N", "US"),
    ("QFA", "QF", "VH-", "AU"),
    ("THY", "TK", "TC-", "TR"),
];

const AIRCRAFT: &[&str] = &["A320", "A321", "A359", "A388", "B738", "B77W", "B789", "E190"];

const EARTH_RADIUS_KM: f64 = 6371.0;

/// One aircraft, fixed for a seed.
struct Aircraft {
    hex: String,
    registration: String,
    airline: (&'static str, &'static str, &'static str, &'static str),
    aircraft_type: &'static str,
    flight_number: u32,
    from: usize,
    to: usize,
    speed_kmh: f64,
    cruise_m: f64,
    phase_s: f64,
}

impl Aircraft {
    fn new(seed: u64, index: u64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(index));
        let from = rng.index(AIRPORTS.len());
        let to = (from + 1 + rng.index(AIRPORTS.len() - 1)) % AIRPORTS.len();
        let airline = AIRLINES[rng.index(AIRLINES.len())];
        Self {
            hex: format!("{:06x}", (rng.next_u64() & 0xFF_FFFF) as u32),
            registration: format!("{}{}", airline.2, registration_suffix(&mut rng)),
            airline,
            aircraft_type: AIRCRAFT[rng.index(AIRCRAFT.len())],
            flight_number: 10 + rng.index(9000) as u32,
            from,
            to,
            speed_kmh: rng.between(780.0, 910.0),
            cruise_m: (rng.between(9500.0, 12500.0) / 100.0).round() * 100.0,
            phase_s: rng.between(0.0, 86_400.0),
        }
    }
}

fn registration_suffix(rng: &mut Rng) -> String {
    (0..4).map(|_| (b'A' + rng.index(26) as u8) as char).collect()
}

fn radians(degrees: f64) -> f64 {
    degrees.to_radians()
}

/// Central angle between two points (haversine), in radians.
fn central_angle(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (radians(lat1), radians(lat2));
    let d_phi = phi2 - phi1;
    let d_lambda = radians(lon2 - lon1);
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * a.sqrt().atan2((1.0 - a).sqrt())
}

/// The point at `fraction` of the great circle from 1 to 2, and the bearing there.
fn along_great_circle(lat1: f64, lon1: f64, lat2: f64, lon2: f64, fraction: f64) -> (f64, f64, f64) {
    let delta = central_angle(lat1, lon1, lat2, lon2);
    let (phi1, lambda1, phi2, lambda2) = (radians(lat1), radians(lon1), radians(lat2), radians(lon2));
    let a = ((1.0 - fraction) * delta).sin() / delta.sin();
    let b = (fraction * delta).sin() / delta.sin();
    let x = a * phi1.cos() * lambda1.cos() + b * phi2.cos() * lambda2.cos();
    let y = a * phi1.cos() * lambda1.sin() + b * phi2.cos() * lambda2.sin();
    let z = a * phi1.sin() + b * phi2.sin();
    let phi = z.atan2((x * x + y * y).sqrt());
    let lambda = y.atan2(x);
    let bearing = ((lambda2 - lambda).sin() * phi2.cos()).atan2(phi.cos() * phi2.sin() - phi.sin() * phi2.cos() * (lambda2 - lambda).cos());
    (phi.to_degrees(), lambda.to_degrees(), (bearing.to_degrees() + 360.0) % 360.0)
}

fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// One position report, shaped like an AirLabs `/flights` item. Written straight to
/// JSON (no tree of values: it was a quarter of the pipeline's CPU), its fields in name
/// order as AirLabs-shaped records have always been.
#[derive(Serialize)]
pub struct Report<'a> {
    aircraft_icao: &'static str,
    airline_iata: &'static str,
    airline_icao: &'static str,
    alt: f64,
    arr_iata: &'static str,
    arr_icao: &'static str,
    dep_iata: &'static str,
    dep_icao: &'static str,
    dir: f64,
    flag: &'static str,
    flight_iata: FlightCode,
    flight_icao: FlightCode,
    flight_number: FlightCode,
    hex: &'a str,
    lat: f64,
    lng: f64,
    reg_number: &'a str,
    speed: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    squawk: Option<Squawk>,
    status: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    updated: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    v_speed: Option<f64>,
}

/// An airline code followed by a flight number (`BAW576`), or the number alone, as a
/// JSON string, written without an allocation.
pub struct FlightCode(&'static str, u32);

impl Serialize for FlightCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 24];
        let prefix = self.0.len().min(text.len() - 10);
        text[..prefix].copy_from_slice(&self.0.as_bytes()[..prefix]);
        let mut digits = [0u8; 10];
        let (mut number, mut count) = (self.1, 0);
        loop {
            digits[digits.len() - 1 - count] = b'0' + (number % 10) as u8;
            count += 1;
            number /= 10;
            if number == 0 {
                break;
            }
        }
        text[prefix..prefix + count].copy_from_slice(&digits[digits.len() - count..]);
        serializer.serialize_str(std::str::from_utf8(&text[..prefix + count]).expect("ASCII"))
    }
}

/// A transponder code: four octal digits as a JSON string.
pub struct Squawk(u16);

impl Serialize for Squawk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text: [u8; 4] = std::array::from_fn(|index| b'0' + ((self.0 >> (3 * (3 - index))) & 7) as u8);
        serializer.serialize_str(std::str::from_utf8(&text).expect("ASCII"))
    }
}

/// The simulator task.
pub struct FlightSimulator {
    timeline: Timeline,
    aircraft: Vec<Aircraft>,
}

impl FlightSimulator {
    /// The AirLabs-shaped report of record `n`, and its key (the aircraft's `hex`).
    pub fn report(&self, n: u64) -> (&str, Report<'_>) {
        let plane = &self.aircraft[(n % self.aircraft.len() as u64) as usize];
        let mut rng = self.timeline.rng(n);
        let time_ms = self.timeline.timestamp_ms(n);
        let (from, to) = (AIRPORTS[plane.from], AIRPORTS[plane.to]);
        let leg_km = central_angle(from.2, from.3, to.2, to.3) * EARTH_RADIUS_KM;
        let leg_s = leg_km / plane.speed_kmh * 3600.0 + 3600.0; // plus an hour on the ground
        let cycle = (time_ms as f64 / 1000.0 + plane.phase_s).rem_euclid(2.0 * leg_s);
        let (outbound, leg_time) = if cycle < leg_s { (true, cycle) } else { (false, cycle - leg_s) };
        let (dep, arr) = if outbound { (from, to) } else { (to, from) };
        let flying_s = leg_s - 3600.0;
        let progress = (leg_time / flying_s).min(1.0);
        let (lat, lng, dir) = along_great_circle(dep.2, dep.3, arr.2, arr.3, progress);
        let climb = 0.08;
        let (alt, v_speed, status) = if progress >= 1.0 {
            (0.0, 0.0, "landed")
        } else if progress < climb {
            (plane.cruise_m * progress / climb, 10.0, "en-route")
        } else if progress > 1.0 - climb {
            (plane.cruise_m * (1.0 - progress) / climb, -8.0, "en-route")
        } else {
            (plane.cruise_m + rng.normal(0.0, 15.0), rng.normal(0.0, 0.3), "en-route")
        };
        let speed = if status == "landed" { 0.0 } else { plane.speed_kmh + rng.normal(0.0, 8.0) };
        let number = plane.flight_number + u32::from(!outbound);
        // AirLabs often omits `v_speed` and `squawk`: so does the simulator.
        let v_speed = rng.chance(0.7).then(|| round(v_speed, 1));
        let squawk = rng.chance(0.5).then(|| Squawk(rng.index(0o7777) as u16));
        let report = Report {
            aircraft_icao: plane.aircraft_type,
            airline_iata: plane.airline.1,
            airline_icao: plane.airline.0,
            alt: alt.round(),
            arr_iata: arr.1,
            arr_icao: arr.0,
            dep_iata: dep.1,
            dep_icao: dep.0,
            dir: round(dir, 1),
            flag: plane.airline.3,
            flight_iata: FlightCode(plane.airline.1, number),
            flight_icao: FlightCode(plane.airline.0, number),
            flight_number: FlightCode("", number),
            hex: &plane.hex,
            lat: round(lat, 5),
            lng: round(lng, 5),
            reg_number: &plane.registration,
            speed: speed.round(),
            squawk,
            status,
            kind: "adsb",
            updated: time_ms.div_euclid(1000),
            v_speed,
        };
        (&plane.hex, report)
    }
}

impl Plugin for FlightSimulator {
    fn description() -> Description {
        let description = Description::new(
            "flight-simulator",
            env!("CARGO_PKG_VERSION"),
            "Aircraft flying great-circle routes between real airports; records shaped like AirLabs flights, keyed by hex.",
        )
        .option(ConfigOption::new("flights", OptionType::Integer, "Number of aircraft.").default("200"))
        .option(
            ConfigOption::new("interval", OptionType::Duration, "Each aircraft reports once per interval (sets `rate` when given).")
                .default("0"),
        );
        simulation::options("200").into_iter().fold(description, Description::option)
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut issues = simulation::validate(settings);
        if settings.integer("flights").is_ok_and(|flights| !(1..=1_000_000).contains(&flights)) {
            issues.push(("flights".to_owned(), "must be between 1 and 1000000".to_owned()));
        }
        issues
    }
}

impl Simulator for FlightSimulator {
    fn start(settings: &Settings, timeline: Timeline) -> Result<Self, Error> {
        let flights = settings.integer("flights")?.max(1) as u64;
        let aircraft = (0..flights).map(|index| Aircraft::new(timeline.seed, index)).collect();
        Ok(Self { timeline, aircraft })
    }

    fn timeline(&mut self) -> &mut Timeline {
        &mut self.timeline
    }

    fn record(&self, n: u64, key: &mut Vec<u8>, value: &mut Vec<u8>) {
        let (hex, report) = self.report(n);
        key.extend_from_slice(hex.as_bytes());
        serde_json::to_writer(value, &report).expect("a report always serialises");
    }

    fn timeline_settings(settings: &Settings) -> Result<Settings, Error> {
        let interval = settings.duration("interval")?;
        if interval.is_zero() {
            return Ok(settings.clone());
        }
        let flights = settings.integer("flights")?.max(1) as f64;
        Ok(settings.clone().with("rate", &(flights / interval.as_secs_f64()).to_string()))
    }
}

export_source!(FlightSimulator);

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as the simulator wrote them through a tree of JSON values (before 2026-12-04):
    /// the same seed must keep giving the same bytes.
    #[test]
    fn records_keep_their_bytes() {
        let settings = Settings::new::<FlightSimulator>(vec![
            ("flights".into(), "3".into()),
            ("seed".into(), "7".into()),
            ("rate".into(), "0".into()),
            ("start".into(), "2024-01-01T00:00:00Z".into()),
        ]);
        let simulator = <FlightSimulator as wasm_connect_sdk::Source>::open(&settings, None).unwrap();
        for (n, expected_key, expected_value) in GOLDEN {
            let (mut key, mut value) = (Vec::new(), Vec::new());
            simulator.record(n, &mut key, &mut value);
            assert_eq!(
                (String::from_utf8(key).unwrap(), String::from_utf8(value).unwrap()),
                (expected_key.to_owned(), expected_value.to_owned()),
                "record {n}"
            );
        }
    }

    const GOLDEN: [(u64, &str, &str); 6] = [
        (
            0,
            "866f15",
            r#"{"aircraft_icao":"B789","airline_iata":"BA","airline_icao":"BAW","alt":10293.0,"arr_iata":"JFK","arr_icao":"KJFK","dep_iata":"LHR","dep_icao":"EGLL","dir":249.0,"flag":"GB","flight_iata":"BA576","flight_icao":"BAW576","flight_number":"576","hex":"866f15","lat":50.59803,"lng":-49.34931,"reg_number":"G-WWZO","speed":859.0,"status":"en-route","type":"adsb","updated":1704067200}"#,
        ),
        (
            1,
            "2ee0bf",
            r#"{"aircraft_icao":"A388","airline_iata":"SQ","airline_icao":"SIA","alt":11399.0,"arr_iata":"DEL","arr_icao":"VIDP","dep_iata":"YYZ","dep_icao":"CYYZ","dir":52.8,"flag":"SG","flight_iata":"SQ2987","flight_icao":"SIA2987","flight_number":"2987","hex":"2ee0bf","lat":70.99095,"lng":-43.23586,"reg_number":"9V-ITNC","speed":867.0,"status":"en-route","type":"adsb","updated":1704067200}"#,
        ),
        (
            2,
            "5695a7",
            r#"{"aircraft_icao":"B77W","airline_iata":"EK","airline_icao":"UAE","alt":11488.0,"arr_iata":"HKG","arr_icao":"VHHH","dep_iata":"HND","dep_icao":"RJTT","dir":244.7,"flag":"AE","flight_iata":"EK148","flight_icao":"UAE148","flight_number":"148","hex":"5695a7","lat":34.38836,"lng":136.65187,"reg_number":"A6-BVNF","speed":858.0,"status":"en-route","type":"adsb","updated":1704067200}"#,
        ),
        (
            3,
            "866f15",
            r#"{"aircraft_icao":"B789","airline_iata":"BA","airline_icao":"BAW","alt":10286.0,"arr_iata":"JFK","arr_icao":"KJFK","dep_iata":"LHR","dep_icao":"EGLL","dir":249.0,"flag":"GB","flight_iata":"BA576","flight_icao":"BAW576","flight_number":"576","hex":"866f15","lat":50.59803,"lng":-49.34932,"reg_number":"G-WWZO","speed":834.0,"status":"en-route","type":"adsb","updated":1704067200,"v_speed":-0.0}"#,
        ),
        (
            5000,
            "5695a7",
            r#"{"aircraft_icao":"B77W","airline_iata":"EK","airline_icao":"UAE","alt":11526.0,"arr_iata":"HKG","arr_icao":"VHHH","dep_iata":"HND","dep_icao":"RJTT","dir":244.7,"flag":"AE","flight_iata":"EK148","flight_icao":"UAE148","flight_number":"148","hex":"5695a7","lat":34.38378,"lng":136.64011,"reg_number":"A6-BVNF","speed":859.0,"status":"en-route","type":"adsb","updated":1704067205}"#,
        ),
        (
            123456,
            "866f15",
            r#"{"aircraft_icao":"B789","airline_iata":"BA","airline_icao":"BAW","alt":10301.0,"arr_iata":"JFK","arr_icao":"KJFK","dep_iata":"LHR","dep_icao":"EGLL","dir":248.7,"flag":"GB","flight_iata":"BA576","flight_icao":"BAW576","flight_number":"576","hex":"866f15","lat":50.5039,"lng":-49.73246,"reg_number":"G-WWZO","speed":835.0,"squawk":"7767","status":"en-route","type":"adsb","updated":1704067323,"v_speed":-0.1}"#,
        ),
    ];

    #[test]
    fn halfway_between_two_points_on_the_equator() {
        let (lat, lng, dir) = along_great_circle(0.0, 0.0, 0.0, 90.0, 0.5);
        assert!((lat - 0.0).abs() < 1e-9 && (lng - 45.0).abs() < 1e-9 && (dir - 90.0).abs() < 1e-6);
    }
}
