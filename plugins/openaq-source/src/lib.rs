//! `openaq-source`: OpenAQ API v3 air quality (v1 and v2 are gone). Finds locations by
//! coordinates and radius or by id, then reads each location's latest value per
//! sensor and emits each measurement once, keyed by sensor, with its parameter, units
//! and location. Location metadata is refreshed every `locations_refresh`, so a cycle
//! costs one request per location.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use wasm_connect_sdk::api::{ApiPoller, Item, Requests, reset_wait};
use wasm_connect_sdk::http::{Request, Response, shown_url, url};
use wasm_connect_sdk::polling::{Watermarks, now_ms};
use wasm_connect_sdk::time::{format_rfc3339, parse_rfc3339};
use wasm_connect_sdk::{
    BatchWriter, ConfigOption, Description, Error, OptionType, Plugin, PollStatus, Settings, Source, export_source, log,
};

/// What a measurement is of, from the location's sensor list.
#[derive(Debug, Clone, PartialEq)]
struct Sensor {
    parameter_id: Option<i64>,
    parameter: String,
    units: String,
    display_name: Option<String>,
}

/// A location and its sensors.
#[derive(Debug, Clone, PartialEq)]
struct Location {
    id: i64,
    name: Option<String>,
    locality: Option<String>,
    country: Option<String>,
    timezone: Option<String>,
    sensors: BTreeMap<i64, Sensor>,
}

/// Which locations to read.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    Near { coordinates: String, radius: i64 },
    Ids(Vec<i64>),
}

/// The task.
pub struct OpenaqSource {
    base: String,
    api_key: String,
    scope: Scope,
    /// Parameter ids and names to keep; empty: every parameter.
    parameters: Vec<String>,
    max_locations: usize,
    page_size: usize,
    locations_refresh_ms: i64,
    locations: Vec<Location>,
    locations_read_at: Option<i64>,
    poller: ApiPoller,
}

impl Plugin for OpenaqSource {
    fn description() -> Description {
        Description::new(
            "openaq-source",
            env!("CARGO_PKG_VERSION"),
            "OpenAQ v3: the latest measurement of every sensor of the chosen locations, each once, keyed by sensor.",
        )
        .option(ConfigOption::new("base_url", OptionType::HttpEndpoint, "The API base; grants its host.").default("https://api.openaq.org"))
        .option(
            ConfigOption::new("api_key", OptionType::String, "The OpenAQ API key, sent as X-API-Key (write `${OPENAQ_KEY}`).")
                .required()
                .secret(),
        )
        .option(
            ConfigOption::new("coordinates", OptionType::String, "`lat,lon` to search around (with radius); or give location_ids.")
                .default(""),
        )
        .option(ConfigOption::new("radius", OptionType::Integer, "Search radius in metres (up to 25000).").default("10000"))
        .option(ConfigOption::new("location_ids", OptionType::List, "Location ids to read, instead of coordinates.").default(""))
        .option(
            ConfigOption::new("parameters", OptionType::List, "Parameters to keep, by id (`2`) or name (`pm25`, `no2`); empty: all.")
                .default(""),
        )
        .option(
            ConfigOption::new("max_locations", OptionType::Integer, "Most locations read per cycle (each costs a request).").default("25"),
        )
        .option(ConfigOption::new("page_size", OptionType::Integer, "Locations per page of /v3/locations (1..1000).").default("100"))
        .option(ConfigOption::new("interval", OptionType::Duration, "Time between cycles.").default("10m"))
        .option(
            ConfigOption::new("locations_refresh", OptionType::Duration, "How often the location list and sensors are read again.")
                .default("1d"),
        )
        .option(
            ConfigOption::new("request_budget", OptionType::Integer, "Requests allowed per budget_window (the key's quota).")
                .default("2000"),
        )
        .option(ConfigOption::new("budget_window", OptionType::Duration, "The window of request_budget (sliding).").default("1h"))
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let coordinates = settings.get("coordinates").unwrap_or("");
        let ids = settings.list("location_ids").unwrap_or_default();
        match (coordinates.is_empty(), ids.is_empty()) {
            (true, true) => problems.push(("coordinates".to_owned(), "give coordinates (with radius) or location_ids".to_owned())),
            (false, false) => problems.push(("location_ids".to_owned(), "give coordinates or location_ids, not both".to_owned())),
            _ => {}
        }
        if !coordinates.is_empty() {
            let parts: Vec<Option<f64>> = coordinates.split(',').map(|part| part.trim().parse().ok()).collect();
            let valid = matches!(parts.as_slice(), [Some(lat), Some(lon)] if lat.abs() <= 90.0 && lon.abs() <= 180.0);
            if !valid {
                problems.push(("coordinates".to_owned(), "must be `latitude,longitude`, e.g. `48.8566,2.3522`".to_owned()));
            }
        }
        if ids.iter().any(|id| id.parse::<i64>().is_err()) {
            problems.push(("location_ids".to_owned(), "must be whole numbers".to_owned()));
        }
        if settings.integer("page_size").is_ok_and(|size| !(1..=1000).contains(&size)) {
            problems.push(("page_size".to_owned(), "must be between 1 and 1000".to_owned()));
        }
        if settings.integer("radius").is_ok_and(|radius| !(1..=25_000).contains(&radius)) {
            problems.push(("radius".to_owned(), "must be between 1 and 25000 metres".to_owned()));
        }
        problems
    }
}

impl Source for OpenaqSource {
    fn open(settings: &Settings, position: Option<&str>) -> Result<Self, Error> {
        let coordinates = settings.string("coordinates")?;
        let scope = if coordinates.is_empty() {
            let ids = settings.list("location_ids")?.iter().map(|id| id.parse()).collect::<Result<Vec<i64>, _>>();
            Scope::Ids(ids.map_err(|_| Error::BadConfig("config key \"location_ids\": must be whole numbers".to_owned()))?)
        } else {
            Scope::Near { coordinates: coordinates.replace(' ', ""), radius: settings.integer("radius")? }
        };
        let max_locations = settings.integer("max_locations")?.max(1) as usize;
        // Sensors of the locations read: a bounded number per location.
        let poller = ApiPoller::from_settings(settings, max_locations * 64, position)?;
        Ok(Self {
            base: settings.string("base_url")?,
            api_key: settings.string("api_key")?,
            scope,
            parameters: settings.list("parameters")?.iter().map(|parameter| parameter.to_ascii_lowercase()).collect(),
            max_locations,
            page_size: settings.integer("page_size")?.clamp(1, 1000) as usize,
            locations_refresh_ms: settings.duration("locations_refresh")?.as_millis() as i64,
            locations: Vec::new(),
            locations_read_at: None,
            poller,
        })
    }

    fn poll(&mut self, max_records: usize, batch: &mut BatchWriter) -> Result<PollStatus, Error> {
        let Self { base, api_key, scope, parameters, max_locations, page_size, locations_refresh_ms, locations, locations_read_at, poller } =
            self;
        poller.poll(max_records, batch, |requests, marks| {
            let mut api = Api { base, api_key, requests };
            let stale = locations_read_at.is_none_or(|read_at| now_ms() - read_at >= *locations_refresh_ms);
            if stale {
                let Some(found) = find_locations(&mut api, scope, parameters, *max_locations, *page_size)? else { return Ok(Vec::new()) };
                *locations = found;
                *locations_read_at = Some(now_ms());
            }
            let mut items = Vec::new();
            for location in locations.iter() {
                let path = format!("/v3/locations/{}/latest", location.id);
                let Some(answer) = api.get(&path, &[("limit", "1000")])? else { break };
                let Some(results) = answer else { continue };
                items.extend(convert_latest(location, &results, parameters, marks));
            }
            Ok(items)
        })
    }
}

/// Requests to the API with the key header and OpenAQ's error shapes.
struct Api<'a, 'b> {
    base: &'a str,
    api_key: &'a str,
    requests: &'a mut Requests<'b>,
}

impl Api<'_, '_> {
    /// The `results` of a GET: Some(Some(results)); Some(None) when the thing asked
    /// for does not exist (404, logged); None when the source is throttled.
    #[allow(clippy::type_complexity)]
    fn get(&mut self, path: &str, query: &[(&str, &str)]) -> Result<Option<Option<(Vec<Value>, Value)>>, Error> {
        let address = url(self.base, path, query);
        let shown = shown_url(&address);
        let response =
            self.requests.send(&Request::get(&address).header("X-API-Key", self.api_key).header("Accept", "application/json"))?;
        match response.status {
            200..=299 => {}
            429 => {
                let detail = detail(&response).unwrap_or_else(|| "Too many requests".to_owned());
                self.requests.throttle(&format!("OpenAQ answered 429: {detail}"), reset_wait(&response, Duration::from_secs(60)));
                return Ok(None);
            }
            401 | 403 => {
                let detail = detail(&response).unwrap_or_default();
                return Err(Error::BadConfig(format!("OpenAQ refused the API key ({} {detail}); check api_key", response.status)));
            }
            404 => {
                log::warn(&format!("{shown} answered 404 ({}); skipping it", detail(&response).unwrap_or_default()));
                return Ok(Some(None));
            }
            410 => {
                return Err(Error::BadConfig(format!("{shown} answered 410 Gone: OpenAQ v1 and v2 are retired; base_url must serve v3")));
            }
            422 => {
                return Err(Error::BadConfig(format!(
                    "OpenAQ refused the request as invalid: {}; check coordinates, radius, location_ids and parameters",
                    detail(&response).unwrap_or_default()
                )));
            }
            status if status >= 500 => return Err(Error::Retriable(format!("{shown} answered {status}"))),
            status => return Err(Error::BadConfig(format!("{shown} answered {status}: {}", detail(&response).unwrap_or_default()))),
        }
        let body = response.json(&shown)?;
        let Some(results) = body.get("results").and_then(Value::as_array) else {
            return Err(Error::Retriable(format!("the answer of {shown} has no `results` array")));
        };
        Ok(Some(Some((results.clone(), body.get("meta").cloned().unwrap_or(Value::Null)))))
    }
}

/// The message of an error body: `{"detail": "..."}`, or a bare JSON string (422).
fn detail(response: &Response) -> Option<String> {
    let body: Value = serde_json::from_slice(&response.body).ok()?;
    match body {
        Value::String(text) => Some(text),
        Value::Object(object) => object.get("detail").map(|detail| detail.as_str().map_or_else(|| detail.to_string(), str::to_owned)),
        _ => None,
    }
}

/// The locations in scope with their sensors; None when throttled.
fn find_locations(
    api: &mut Api<'_, '_>,
    scope: &Scope,
    parameters: &[String],
    max: usize,
    page_size: usize,
) -> Result<Option<Vec<Location>>, Error> {
    let mut locations = Vec::new();
    match scope {
        Scope::Ids(ids) => {
            for id in ids.iter().take(max) {
                let Some(answer) = api.get(&format!("/v3/locations/{id}"), &[])? else { return Ok(None) };
                locations.extend(answer.into_iter().flat_map(|(results, _)| results).filter_map(|item| read_location(&item)));
            }
        }
        Scope::Near { coordinates, radius } => {
            let ids: Vec<&str> = parameters.iter().filter(|parameter| parameter.parse::<i64>().is_ok()).map(String::as_str).collect();
            let ids = ids.join(",");
            let (radius, limit) = (radius.to_string(), page_size.to_string());
            for page in 1.. {
                let page_text = page.to_string();
                let query = [
                    ("coordinates", coordinates.as_str()),
                    ("radius", &radius),
                    ("parameters_id", &ids),
                    ("limit", &limit),
                    ("page", &page_text),
                ];
                let Some(answer) = api.get("/v3/locations", &query)? else { return Ok(None) };
                let Some((results, meta)) = answer else { break };
                let count = results.len();
                locations.extend(results.iter().filter_map(read_location));
                if !more_pages(&meta, page, count, page_size) || locations.len() >= max {
                    break;
                }
            }
        }
    }
    locations.truncate(max);
    Ok(Some(locations))
}

/// Whether another page may follow: a full page whose `found` is unknown (`">100"`)
/// or larger than what was read so far.
fn more_pages(meta: &Value, page: usize, count: usize, page_size: usize) -> bool {
    if count < page_size {
        return false;
    }
    match meta.get("found") {
        Some(Value::Number(found)) => found.as_u64().is_some_and(|found| found as usize > page * page_size),
        // `">100"`: the page is full and the total unknown.
        _ => true,
    }
}

fn read_location(item: &Value) -> Option<Location> {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let sensors = item
        .get("sensors")
        .and_then(Value::as_array)
        .map(|sensors| {
            sensors
                .iter()
                .filter_map(|sensor| {
                    let parameter = sensor.get("parameter")?;
                    Some((
                        sensor.get("id")?.as_i64()?,
                        Sensor {
                            parameter_id: parameter.get("id").and_then(Value::as_i64),
                            parameter: text(parameter.get("name"))?,
                            units: text(parameter.get("units")).unwrap_or_default(),
                            display_name: text(parameter.get("displayName")),
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Location {
        id: item.get("id")?.as_i64()?,
        name: text(item.get("name")),
        locality: text(item.get("locality")),
        country: text(item.get("country").and_then(|country| country.get("code"))),
        timezone: text(item.get("timezone")),
        sensors,
    })
}

fn wanted(sensor: &Sensor, parameters: &[String]) -> bool {
    parameters.is_empty()
        || parameters
            .iter()
            .any(|wanted| wanted.eq_ignore_ascii_case(&sensor.parameter) || sensor.parameter_id.is_some_and(|id| wanted == &id.to_string()))
}

/// One record per sensor whose latest measurement is newer than the last emitted.
fn convert_latest(location: &Location, results: &(Vec<Value>, Value), parameters: &[String], marks: &Watermarks) -> Vec<Item> {
    let mut items = Vec::new();
    for latest in &results.0 {
        let Some(sensor_id) = latest.get("sensorsId").and_then(Value::as_i64) else {
            items.extend(Item::dead_letter(None, latest, "the measurement has no sensorsId", marks));
            continue;
        };
        let key = sensor_id.to_string();
        let sensor = location.sensors.get(&sensor_id);
        if sensor.is_some_and(|sensor| !wanted(sensor, parameters)) || (sensor.is_none() && !parameters.is_empty()) {
            continue;
        }
        let datetime = latest.get("datetime");
        let Some(at) = datetime.and_then(|datetime| datetime.get("utc")).and_then(Value::as_str).and_then(parse_rfc3339) else {
            items.extend(Item::dead_letter(Some(key), latest, "the measurement has no readable datetime.utc", marks));
            continue;
        };
        let position = Value::from(at);
        if !marks.is_new(&key, &position) {
            continue;
        }
        let Some(value) = latest.get("value").and_then(Value::as_f64) else {
            items.extend(Item::dead_letter(Some(key), latest, "the measurement has no numeric value", marks));
            continue;
        };
        let coordinates = latest.get("coordinates");
        let record = json!({
            "sensor_id": sensor_id,
            "location_id": latest.get("locationsId").and_then(Value::as_i64).unwrap_or(location.id),
            "location": location.name,
            "locality": location.locality,
            "country": location.country,
            "timezone": location.timezone,
            "parameter_id": sensor.and_then(|sensor| sensor.parameter_id),
            "parameter": sensor.map(|sensor| sensor.parameter.clone()),
            "display_name": sensor.and_then(|sensor| sensor.display_name.clone()),
            "units": sensor.map(|sensor| sensor.units.clone()),
            "value": value,
            "datetime": format_rfc3339(at),
            "datetime_local": datetime.and_then(|datetime| datetime.get("local")).cloned(),
            "latitude": coordinates.and_then(|coordinates| coordinates.get("latitude")).cloned(),
            "longitude": coordinates.and_then(|coordinates| coordinates.get("longitude")).cloned(),
        });
        items.push(Item::record(key, &record, Some(at), Some(position)));
    }
    items
}

export_source!(OpenaqSource);

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Location {
        read_location(&json!({"id": 8118, "name": "New Delhi", "country": {"code": "IN"}, "timezone": "Asia/Kolkata",
            "sensors": [{"id": 23534, "name": "pm25 µg/m³", "parameter": {"id": 2, "name": "pm25", "units": "µg/m³", "displayName": "PM2.5"}},
                        {"id": 23535, "parameter": {"id": 7, "name": "no2", "units": "ppm"}}]}))
        .unwrap()
    }

    #[test]
    fn latest_values_become_records_once_and_by_parameter() {
        let latest = vec![
            json!({"datetime": {"utc": "2024-01-15T10:00:00Z", "local": "2024-01-15T15:30:00+05:30"}, "value": 12.3,
                   "coordinates": {"latitude": 28.6, "longitude": 77.2}, "sensorsId": 23534, "locationsId": 8118}),
            json!({"datetime": {"utc": "2024-01-15T10:00:00Z"}, "value": 0.02, "sensorsId": 23535, "locationsId": 8118}),
            json!({"datetime": {"utc": "2024-01-15T10:00:00Z"}, "value": null, "sensorsId": 99, "locationsId": 8118}),
        ];
        let mut marks = Watermarks::new(10);
        let items = convert_latest(&location(), &(latest.clone(), Value::Null), &["pm25".to_owned()], &marks);
        assert_eq!(items.len(), 1, "{items:?}");
        let Item::Record { key, value, timestamp, mark } = &items[0] else { panic!() };
        assert_eq!(key, "23534");
        let value: Value = serde_json::from_slice(value).unwrap();
        assert_eq!(
            (value["parameter"].as_str(), value["units"].as_str(), value["value"].as_f64()),
            (Some("pm25"), Some("µg/m³"), Some(12.3))
        );
        assert_eq!(value["datetime"], "2024-01-15T10:00:00.000Z");
        marks.advance(&mark.as_ref().unwrap().0, mark.as_ref().unwrap().1.clone());
        assert_eq!(*timestamp, parse_rfc3339("2024-01-15T10:00:00Z"));
        assert!(convert_latest(&location(), &(latest.clone(), Value::Null), &["2".to_owned()], &marks).is_empty(), "once per time");
        let all = convert_latest(&location(), &(latest, Value::Null), &[], &Watermarks::new(10));
        assert_eq!(all.len(), 3);
        assert!(matches!(&all[2], Item::DeadLetter { reason, .. } if reason.contains("numeric value")));
    }

    #[test]
    fn pages_continue_while_the_total_is_unknown_or_larger() {
        assert!(more_pages(&json!({"found": ">100"}), 1, 100, 100));
        assert!(more_pages(&json!({"found": 250}), 2, 100, 100));
        assert!(!more_pages(&json!({"found": 200}), 2, 100, 100));
        assert!(!more_pages(&json!({"found": ">100"}), 3, 40, 100));
    }
}
