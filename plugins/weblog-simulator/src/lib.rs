//! `weblog-simulator`: HTTP access-log events from a web shop: client ip, method,
//! path, status, latency, bytes, user agent. Now and then a client misbehaves (a
//! scanner probing admin paths, a burst of server errors) so dashboards have
//! something to find. Keyed by client ip.

use serde_json::json;
use wasm_connect_sdk::simulation::{self, Rng, Simulator, Timeline, format_rfc3339};
use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, Settings, export_source};

const PAGES: &[(&str, u32)] = &[
    ("/", 20),
    ("/products", 15),
    ("/products/{id}", 25),
    ("/cart", 8),
    ("/checkout", 4),
    ("/api/search?q=shoes", 10),
    ("/api/recommendations", 8),
    ("/static/app.js", 5),
    ("/login", 5),
];
const SCANNER_PATHS: &[&str] = &["/wp-admin", "/.env", "/phpmyadmin", "/admin/config.php", "/.git/config"];
const AGENTS: &[(&str, u32)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36", 40),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15", 20),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", 25),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0", 10),
    ("Googlebot/2.1 (+http://www.google.com/bot.html)", 5),
];

/// The simulator task.
pub struct WeblogSimulator {
    timeline: Timeline,
    clients: u64,
    error_rate: f64,
}

impl WeblogSimulator {
    /// Event `n`.
    pub fn event(&self, n: u64) -> (String, serde_json::Value) {
        let mut rng = self.timeline.rng(n);
        let client = rng.index(self.clients as usize) as u64;
        let ip = client_ip(self.timeline.seed, client);
        let scanner = client % 97 == 13;
        let (method, path, status) = if scanner {
            ("GET", SCANNER_PATHS[rng.index(SCANNER_PATHS.len())].to_owned(), 404)
        } else {
            let path = rng.weighted(PAGES).replace("{id}", &(1000 + rng.index(500)).to_string());
            let method = if path == "/checkout" || path == "/login" { "POST" } else { "GET" };
            let status = if rng.chance(self.error_rate) {
                *rng.weighted(&[(500, 5), (502, 2), (503, 3)])
            } else {
                *rng.weighted(&[(200, 90), (304, 5), (404, 3), (301, 2)])
            };
            (method, path, status)
        };
        let latency_ms = if status >= 500 { rng.between(800.0, 5000.0) } else { rng.normal(4.0, 0.8).exp().min(20_000.0) };
        let bytes = if status == 304 { 0 } else { 200 + rng.index(60_000) };
        let event = json!({
            "timestamp": format_rfc3339(self.timeline.timestamp_ms(n)),
            "ip": ip,
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": (latency_ms * 10.0).round() / 10.0,
            "bytes": bytes,
            "user_agent": if scanner { "python-requests/2.31" } else { rng.weighted(AGENTS) },
            "referrer": if rng.chance(0.3) { Some("https://www.example.com/") } else { None },
        });
        (ip, event)
    }
}

fn client_ip(seed: u64, client: u64) -> String {
    let mut rng = Rng::new(seed.wrapping_mul(131).wrapping_add(client));
    let first = *rng.weighted(&[(81u64, 3), (92, 3), (151, 2), (203, 1), (37, 2)]);
    format!("{first}.{}.{}.{}", rng.index(256), rng.index(256), 1 + rng.index(254))
}

impl Plugin for WeblogSimulator {
    fn description() -> Description {
        let description = Description::new(
            "weblog-simulator",
            env!("CARGO_PKG_VERSION"),
            "HTTP access-log events (ip, method, path, status, latency, agent) from a web shop; keyed by client ip.",
        )
        .option(ConfigOption::new("clients", OptionType::Integer, "Number of distinct clients.").default("500"))
        .option(ConfigOption::new("error_rate", OptionType::Float, "Share of requests answered 5xx (0 to 1).").default("0.02"));
        simulation::options("50").into_iter().fold(description, Description::option)
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut issues = simulation::validate(settings);
        if settings.integer("clients").is_ok_and(|clients| clients < 1) {
            issues.push(("clients".to_owned(), "must be at least 1".to_owned()));
        }
        if settings.float("error_rate").is_ok_and(|rate| !(0.0..=1.0).contains(&rate)) {
            issues.push(("error_rate".to_owned(), "must be between 0 and 1".to_owned()));
        }
        issues
    }
}

impl Simulator for WeblogSimulator {
    fn start(settings: &Settings, timeline: Timeline) -> Result<Self, Error> {
        Ok(Self { timeline, clients: settings.integer("clients")?.max(1) as u64, error_rate: settings.float("error_rate")? })
    }

    fn timeline(&mut self) -> &mut Timeline {
        &mut self.timeline
    }

    fn record(&self, n: u64, key: &mut Vec<u8>, value: &mut Vec<u8>) {
        let (record_key, record_value) = self.event(n);
        key.extend_from_slice(record_key.as_bytes());
        serde_json::to_writer(value, &record_value).expect("a JSON tree always serialises");
    }
}

export_source!(WeblogSimulator);
