//! `flight-simulator`: aircraft flying great-circle legs between real airports, back
//! and forth, reporting positions shaped like AirLabs `/flights` items and keyed by
//! their ICAO24 `hex`. Record `n` is aircraft `n % flights` at its report `n / flights`.

use serde_json::json;
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

/// The simulator task.
pub struct FlightSimulator {
    timeline: Timeline,
    aircraft: Vec<Aircraft>,
}

impl FlightSimulator {
    /// The AirLabs-shaped report of record `n`.
    pub fn report(&self, n: u64) -> (String, serde_json::Value) {
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
        let mut report = json!({
            "hex": plane.hex,
            "reg_number": plane.registration,
            "flag": plane.airline.3,
            "lat": round(lat, 5),
            "lng": round(lng, 5),
            "alt": alt.round(),
            "dir": round(dir, 1),
            "speed": speed.round(),
            "flight_number": number.to_string(),
            "flight_icao": format!("{}{number}", plane.airline.0),
            "flight_iata": format!("{}{number}", plane.airline.1),
            "dep_icao": dep.0,
            "dep_iata": dep.1,
            "arr_icao": arr.0,
            "arr_iata": arr.1,
            "airline_icao": plane.airline.0,
            "airline_iata": plane.airline.1,
            "aircraft_icao": plane.aircraft_type,
            "updated": time_ms.div_euclid(1000),
            "status": status,
            "type": "adsb",
        });
        // AirLabs often omits these two: so does the simulator.
        if rng.chance(0.7) {
            report["v_speed"] = json!(round(v_speed, 1));
        }
        if rng.chance(0.5) {
            report["squawk"] = json!(format!("{:04o}", rng.index(0o7777)));
        }
        (plane.hex.clone(), report)
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

    fn record(&self, n: u64) -> (String, Vec<u8>) {
        let (key, value) = self.report(n);
        (key, value.to_string().into_bytes())
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

    #[test]
    fn halfway_between_two_points_on_the_equator() {
        let (lat, lng, dir) = along_great_circle(0.0, 0.0, 0.0, 90.0, 0.5);
        assert!((lat - 0.0).abs() < 1e-9 && (lng - 45.0).abs() < 1e-9 && (dir - 90.0).abs() < 1e-6);
    }
}
