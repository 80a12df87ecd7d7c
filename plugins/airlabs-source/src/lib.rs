//! `airlabs-source`: AirLabs Data API v9 real-time flights (`/flights`). One record per
//! aircraft, keyed by `hex`, emitted only when its `updated` advanced since the last
//! record emitted for that aircraft; the memory of that is bounded and kept in the
//! source position. Errors are read from the body (AirLabs answers most of them with
//! HTTP 200): an invalid key fails the task, a minute/hour/month limit pauses the
//! source until the limit's window resets.

use std::time::Duration;

use serde_json::Value;
use wasm_connect_sdk::api::{ApiPoller, Item, Requests, reset_wait};
use wasm_connect_sdk::http::{Request, shown_url, url};
use wasm_connect_sdk::polling::{Watermarks, now_ms};
use wasm_connect_sdk::time::start_of_next_month;
use wasm_connect_sdk::{BatchWriter, ConfigOption, Description, Error, OptionType, Plugin, PollStatus, Settings, Source, export_source};

/// The `/flights` filters, passed through under their API names.
const FILTERS: &[(&str, &str)] = &[
    ("bbox", "SW lat, SW lng, NE lat, NE lng (comma-separated)."),
    ("zoom", "Map zoom level (0-11) for bbox queries."),
    ("hex", "ICAO24 hex codes."),
    ("reg_number", "Aircraft registrations."),
    ("airline_icao", "Airline ICAO code."),
    ("airline_iata", "Airline IATA code."),
    ("flag", "Country of registration (ISO 2)."),
    ("flight_icao", "Flight ICAO code."),
    ("flight_iata", "Flight IATA code."),
    ("flight_number", "Flight number."),
    ("dep_icao", "Departure airport ICAO code."),
    ("dep_iata", "Departure airport IATA code."),
    ("arr_icao", "Arrival airport ICAO code."),
    ("arr_iata", "Arrival airport IATA code."),
    ("_fields", "Only these fields (comma-separated); hex and updated are always added."),
    ("_limit", "At most this many flights per request."),
];

/// The task.
pub struct AirlabsSource {
    request: Request,
    shown: String,
    poller: ApiPoller,
}

impl Plugin for AirlabsSource {
    fn description() -> Description {
        let mut description = Description::new(
            "airlabs-source",
            env!("CARGO_PKG_VERSION"),
            "AirLabs v9 real-time flights: one record per aircraft keyed by hex, whenever its `updated` advances.",
        )
        .option(
            ConfigOption::new("base_url", OptionType::HttpEndpoint, "The API base; grants its host.").default("https://airlabs.co/api/v9"),
        )
        .option(ConfigOption::new("api_key", OptionType::String, "The AirLabs API key (write `${AIRLABS_KEY}`).").required().secret())
        .option(
            ConfigOption::new(
                "interval",
                OptionType::Duration,
                "Time between requests; the default stays within a free key's 1,000 calls a month.",
            )
            .default("1h"),
        )
        .option(
            ConfigOption::new("request_budget", OptionType::Integer, "Requests allowed per budget_window (the key's quota).")
                .default("1000"),
        )
        .option(ConfigOption::new("budget_window", OptionType::Duration, "The window of request_budget (sliding).").default("30d"))
        .option(
            ConfigOption::new("max_tracked_aircraft", OptionType::Integer, "Aircraft whose last `updated` is remembered.").default("20000"),
        );
        for (name, documentation) in FILTERS {
            description = description.option(ConfigOption::new(name, OptionType::String, documentation).default(""));
        }
        description
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Some(bbox) = settings.get("bbox").filter(|bbox| !bbox.is_empty()) {
            let corners: Vec<Option<f64>> = bbox.split(',').map(|part| part.trim().parse().ok()).collect();
            if corners.len() != 4 || corners.iter().any(Option::is_none) {
                problems.push(("bbox".to_owned(), "must be four numbers: SW lat, SW lng, NE lat, NE lng".to_owned()));
            }
        }
        if settings.get("api_key").is_some_and(str::is_empty) {
            problems.push(("api_key".to_owned(), "must not be empty".to_owned()));
        }
        problems
    }
}

impl Source for AirlabsSource {
    fn open(settings: &Settings, position: Option<&str>) -> Result<Self, Error> {
        let base = settings.string("base_url")?;
        let api_key = settings.string("api_key")?;
        let mut fields = settings.string("_fields")?;
        if !fields.is_empty() {
            for needed in ["hex", "updated"] {
                if !fields.split(',').any(|field| field.trim() == needed) {
                    fields.push(',');
                    fields.push_str(needed);
                }
            }
        }
        let mut query: Vec<(&str, String)> = vec![("api_key", api_key)];
        for (name, _) in FILTERS {
            let value = if *name == "_fields" { fields.clone() } else { settings.string(name)? };
            query.push((name, value));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let poller = ApiPoller::from_settings(settings, settings.integer("max_tracked_aircraft")?.max(1) as usize, position)?;
        let shown = shown_url(&url(&base, "/flights", &[]));
        Ok(Self { request: Request::get(&url(&base, "/flights", &query)), shown, poller })
    }

    fn poll(&mut self, max_records: usize, batch: &mut BatchWriter) -> Result<PollStatus, Error> {
        let Self { request, shown, poller } = self;
        poller.poll(max_records, batch, |requests, marks| fetch(requests, request, shown, marks))
    }
}

fn fetch(requests: &mut Requests<'_>, request: &Request, shown: &str, marks: &Watermarks) -> Result<Vec<Item>, Error> {
    let response = requests.send(request)?;
    if response.status == 429 {
        requests.throttle(&format!("{shown} answered 429 Too Many Requests"), reset_wait(&response, Duration::from_secs(60)));
        return Ok(Vec::new());
    }
    let body = match response.json(shown) {
        Ok(body) => body,
        Err(_) if response.status >= 500 => return Err(Error::Retriable(format!("{shown} answered {}", response.status))),
        Err(error) => return Err(error),
    };
    if let Some(error) = body.get("error") {
        return answer_error(requests, error, shown);
    }
    match response.status {
        200..=299 => {}
        401 | 403 => return Err(Error::BadConfig(format!("{shown} answered {}: check api_key", response.status))),
        500..=599 => return Err(Error::Retriable(format!("{shown} answered {}", response.status))),
        status => return Err(Error::BadConfig(format!("{shown} answered {status}: check base_url and the filters"))),
    }
    let Some(flights) = body.get("response").and_then(Value::as_array) else {
        return Err(Error::Retriable(format!("the answer of {shown} has no `response` array of flights")));
    };
    Ok(convert(flights, marks))
}

/// An AirLabs error body: `{"error":{"message":..,"code":..}}`, whatever the status.
fn answer_error(requests: &mut Requests<'_>, error: &Value, shown: &str) -> Result<Vec<Item>, Error> {
    let code = error.get("code").and_then(Value::as_str).unwrap_or("unknown");
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let now = now_ms();
    let wait = match code {
        "minute_limit_exceeded" => Duration::from_millis((60_000 - now.rem_euclid(60_000)) as u64),
        "hour_limit_exceeded" => Duration::from_millis((3_600_000 - now.rem_euclid(3_600_000)) as u64),
        "month_limit_exceeded" => Duration::from_millis((start_of_next_month(now) - now).max(1) as u64),
        // A year's limit: look again daily.
        "year_limit_exceeded" => Duration::from_secs(86_400),
        "unknown_api_key" | "expired_api_key" | "invalid_api_key" => {
            return Err(Error::BadConfig(format!("AirLabs refused the API key ({code}: {message}); check api_key")));
        }
        "unknown_method" | "wrong_params" | "not_found" => {
            return Err(Error::BadConfig(format!("AirLabs refused the request ({code}: {message}); check base_url and the filters")));
        }
        _ => return Err(Error::Retriable(format!("{shown} answered the error {code}: {message}"))),
    };
    requests.throttle(&format!("AirLabs: {code} ({message})"), wait);
    Ok(Vec::new())
}

/// One record per flight whose `updated` advanced; flights without `hex` or
/// `updated` go to the dead-letter topic.
fn convert(flights: &[Value], marks: &Watermarks) -> Vec<Item> {
    let mut items = Vec::new();
    for flight in flights {
        let hex = flight.get("hex").and_then(Value::as_str).map(str::to_ascii_lowercase).filter(|hex| !hex.is_empty());
        let updated = flight.get("updated").and_then(Value::as_i64);
        match (hex, updated) {
            (Some(hex), Some(updated)) => {
                let position = Value::from(updated);
                if marks.is_new(&hex, &position) {
                    items.push(Item::record(hex, flight, Some(updated * 1000), Some(position)));
                }
            }
            (hex, _) => {
                let reason = "the flight has no `hex` (text) or no `updated` (unix seconds)";
                items.extend(Item::dead_letter(hex, flight, reason, marks));
            }
        }
    }
    items
}

export_source!(AirlabsSource);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_flight_is_emitted_when_its_update_advances() {
        let mut marks = Watermarks::new(100);
        marks.advance("4ca1fa", json!(1_700_000_000));
        let flights = [
            json!({"hex": "4CA1FA", "updated": 1_700_000_000, "lat": 1.0}),
            json!({"hex": "3c6444", "updated": 1_700_000_010}),
            json!({"hex": "4ca1fa", "updated": 1_700_000_030}),
            json!({"reg_number": "G-ABCD", "updated": 1}),
        ];
        let items = convert(&flights, &marks);
        assert_eq!(items.len(), 3);
        let Item::Record { key, timestamp, .. } = &items[0] else { panic!("{items:?}") };
        assert_eq!((key.as_str(), *timestamp), ("3c6444", Some(1_700_000_010_000)));
        let Item::Record { key, .. } = &items[1] else { panic!("{items:?}") };
        assert_eq!(key, "4ca1fa");
        assert!(matches!(&items[2], Item::DeadLetter { key: None, .. }));
    }
}
