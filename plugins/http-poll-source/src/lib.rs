//! `http-poll-source`: polls any JSON API without writing a plugin. Each poll sends one
//! request, finds the array of items at `items_pointer`, keys each item by
//! `key_field`, and, with a `position_field`, emits only items whose position advanced
//! since the last one emitted for their key (so a restart repeats nothing and skips
//! nothing). Without a position field every item is emitted on every poll.

use std::time::Duration;

use serde_json::Value;
use wasm_connect_sdk::api::{ApiPoller, Item, Requests, reset_wait};
use wasm_connect_sdk::http::{Request, Response, shown_url, url};
use wasm_connect_sdk::polling::{Watermarks, now_ms};
use wasm_connect_sdk::{BatchWriter, ConfigOption, Description, Error, OptionType, Plugin, PollStatus, Settings, Source, export_source};

/// The task.
pub struct HttpPollSource {
    request: Request,
    shown: String,
    items_pointer: String,
    key_field: String,
    position_field: Option<String>,
    poller: ApiPoller,
}

impl Plugin for HttpPollSource {
    fn description() -> Description {
        Description::new(
            "http-poll-source",
            env!("CARGO_PKG_VERSION"),
            "Polls a JSON API: one record per item of the array at items_pointer, keyed by key_field; with \
             position_field, only items whose position advanced.",
        )
        .option(
            ConfigOption::new(
                "base_url",
                OptionType::HttpEndpoint,
                "The URL to poll, with any non-secret query parameters; grants its host.",
            )
            .required(),
        )
        .option(ConfigOption::new("path", OptionType::String, "Appended to base_url (`/station_status.json`).").default(""))
        .option(
            ConfigOption::new("api_key", OptionType::String, "An API key (write `${KEY}`), sent as api_key_header or api_key_query.")
                .default("")
                .secret(),
        )
        .option(ConfigOption::new("api_key_header", OptionType::String, "The header that carries api_key (`X-API-Key`).").default(""))
        .option(ConfigOption::new("api_key_query", OptionType::String, "The query parameter that carries api_key (`appid`).").default(""))
        .option(ConfigOption::new("method", OptionType::String, "HTTP method.").default("GET"))
        .option(ConfigOption::new("headers", OptionType::List, "Request headers as `Name: value`, comma-separated.").default(""))
        .option(
            ConfigOption::new(
                "secret_headers",
                OptionType::List,
                "Headers that carry credentials (`Authorization: Bearer ${TOKEN}`); never shown.",
            )
            .default("")
            .secret(),
        )
        .option(
            ConfigOption::new("secret_query", OptionType::List, "Query parameters that carry credentials (`appid=${KEY}`); never shown.")
                .default("")
                .secret(),
        )
        .option(ConfigOption::new("body", OptionType::String, "Request body, for POST.").default(""))
        .option(ConfigOption::new("interval", OptionType::Duration, "Time between polls.").default("60s"))
        .option(
            ConfigOption::new(
                "items_pointer",
                OptionType::String,
                "JSON pointer to the array of items (`/data/stations`); empty: the whole body (an array, or one object as one item).",
            )
            .default(""),
        )
        .option(
            ConfigOption::new("key_field", OptionType::String, "The item's key: a field name or a JSON pointer inside the item (`/id`).")
                .required(),
        )
        .option(
            ConfigOption::new(
                "position_field",
                OptionType::String,
                "A field that grows when an item changes (`last_reported`, a timestamp): only items whose value advanced are emitted.",
            )
            .default(""),
        )
        .option(
            ConfigOption::new(
                "request_budget",
                OptionType::Integer,
                "Requests allowed per budget_window (the provider's quota); 0: no budget.",
            )
            .default("0"),
        )
        .option(ConfigOption::new("budget_window", OptionType::Duration, "The window of request_budget.").default("1d"))
        .option(ConfigOption::new("max_tracked_keys", OptionType::Integer, "Keys whose last position is remembered.").default("100000"))
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for key in ["headers", "secret_headers"] {
            if let Err(message) = settings.list(key).map_err(|error| error.to_string()).and_then(|headers| parse_pairs(&headers, ':')) {
                problems.push((key.to_owned(), message));
            }
        }
        if let Err(message) = settings.list("secret_query").map_err(|error| error.to_string()).and_then(|query| parse_pairs(&query, '=')) {
            problems.push(("secret_query".to_owned(), message));
        }
        if let Ok(pointer) = settings.string("items_pointer")
            && !pointer.is_empty()
            && !pointer.starts_with('/')
        {
            problems.push(("items_pointer".to_owned(), format!("{pointer:?} must be a JSON pointer starting with `/`, or empty")));
        }
        let key_set = settings.get("api_key").is_some_and(|key| !key.is_empty());
        let places =
            ["api_key_header", "api_key_query"].iter().filter(|place| settings.get(place).is_some_and(|name| !name.is_empty())).count();
        if key_set && places != 1 {
            problems.push(("api_key".to_owned(), "say where the key goes: set exactly one of api_key_header and api_key_query".to_owned()));
        }
        if settings.get("key_field").is_some_and(str::is_empty) {
            problems.push(("key_field".to_owned(), "must name the field that identifies an item".to_owned()));
        }
        problems
    }
}

/// `Name<separator>value` pairs; the value may contain the separator.
fn parse_pairs(items: &[String], separator: char) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .map(|item| match item.split_once(separator) {
            Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.trim().to_owned())),
            // Never echo the item: it may hold a credential.
            _ => Err(format!("each entry must be `name{separator}value`")),
        })
        .collect()
}

/// A field name or a pointer, as a pointer.
fn pointer(field: &str) -> String {
    if field.starts_with('/') { field.to_owned() } else { format!("/{}", field.replace('~', "~0").replace('/', "~1")) }
}

/// The text of a key value: strings as they are, numbers and booleans as JSON.
fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

impl Source for HttpPollSource {
    fn open(settings: &Settings, position: Option<&str>) -> Result<Self, Error> {
        let base = url(&settings.string("base_url")?, &settings.string("path")?, &[]);
        let (api_key, key_header, key_query) =
            (settings.string("api_key")?, settings.string("api_key_header")?, settings.string("api_key_query")?);
        let mut secret_query = parse_pairs(&settings.list("secret_query")?, '=').map_err(Error::BadConfig)?;
        if !api_key.is_empty() && !key_query.is_empty() {
            secret_query.push((key_query, api_key.clone()));
        }
        let query: Vec<(&str, &str)> = secret_query.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        let mut request = Request::get(&url(&base, "", &query));
        if !api_key.is_empty() && !key_header.is_empty() {
            request = request.header(&key_header, &api_key);
        }
        request.method = settings.string("method")?.to_ascii_uppercase();
        for (name, value) in parse_pairs(&settings.list("headers")?, ':')
            .and_then(|mut headers| {
                headers.extend(parse_pairs(&settings.list("secret_headers").unwrap_or_default(), ':')?);
                Ok(headers)
            })
            .map_err(Error::BadConfig)?
        {
            request = request.header(&name, &value);
        }
        let body = settings.string("body")?;
        if !body.is_empty() {
            request.body = Some(body.into_bytes());
        }
        let poller = ApiPoller::from_settings(settings, settings.integer("max_tracked_keys")?.max(1) as usize, position)?;
        let position_field = settings.string("position_field")?;
        Ok(Self {
            shown: shown_url(&base),
            request,
            items_pointer: settings.string("items_pointer")?,
            key_field: pointer(&settings.string("key_field")?),
            position_field: (!position_field.is_empty()).then(|| pointer(&position_field)),
            poller,
        })
    }

    fn poll(&mut self, max_records: usize, batch: &mut BatchWriter) -> Result<PollStatus, Error> {
        let Self { request, shown, items_pointer, key_field, position_field, poller } = self;
        poller.poll(max_records, batch, |requests, marks| {
            let Some(response) = fetch(requests, request, shown)? else { return Ok(Vec::new()) };
            let body = response.json(shown)?;
            let found = if items_pointer.is_empty() { Some(&body) } else { body.pointer(items_pointer) };
            let items: Vec<&Value> = match found {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(item @ Value::Object(_)) => vec![item],
                _ => {
                    return Err(Error::Retriable(format!(
                        "the answer of {shown} has no array of items at items_pointer {items_pointer:?}"
                    )));
                }
            };
            Ok(convert(&items, key_field, position_field.as_deref(), marks))
        })
    }
}

/// Sends the request; None when the provider throttles (the poller pauses).
fn fetch(requests: &mut Requests<'_>, request: &Request, shown: &str) -> Result<Option<Response>, Error> {
    let response = requests.send(request)?;
    match response.status {
        200..=299 => Ok(Some(response)),
        429 => {
            requests.throttle(&format!("{shown} answered 429 Too Many Requests"), reset_wait(&response, Duration::from_secs(60)));
            Ok(None)
        }
        401 | 403 => Err(Error::BadConfig(format!(
            "{shown} answered {}: the credentials are missing or refused; check secret_headers / secret_query",
            response.status
        ))),
        500..=599 | 408 => Err(Error::Retriable(format!("{shown} answered {}", response.status))),
        status => Err(Error::BadConfig(format!("{shown} answered {status}: check base_url, path and method"))),
    }
}

/// The records of one answer: new or changed items, and unconvertible ones as dead letters.
fn convert(items: &[&Value], key_field: &str, position_field: Option<&str>, marks: &Watermarks) -> Vec<Item> {
    let timestamp = Some(now_ms());
    let mut output = Vec::with_capacity(items.len());
    for item in items {
        let Some(key) = item.pointer(key_field).and_then(key_text) else {
            output.extend(Item::dead_letter(None, item, format!("the item has no text or number at key_field {key_field:?}"), marks));
            continue;
        };
        let Some(field) = position_field else {
            output.push(Item::record(key, item, timestamp, None));
            continue;
        };
        match item.pointer(field) {
            Some(position @ (Value::Number(_) | Value::String(_))) => {
                if marks.is_new(&key, position) {
                    output.push(Item::record(key, item, timestamp, Some(position.clone())));
                }
            }
            _ => output.extend(Item::dead_letter(
                Some(key),
                item,
                format!("the item has no number or text at position_field {field:?}"),
                marks,
            )),
        }
    }
    output
}

export_source!(HttpPollSource);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_advanced_items_are_emitted_and_bad_ones_dead_lettered() {
        let mut marks = Watermarks::new(10);
        marks.advance("1", json!(100));
        let items = [json!({"id": 1, "t": 100}), json!({"id": 2, "t": 5}), json!({"id": 1, "t": 101}), json!({"t": 3}), json!({"id": "x"})];
        let refs: Vec<&Value> = items.iter().collect();
        let output = convert(&refs, &pointer("id"), Some(&pointer("t")), &marks);
        let keys: Vec<String> = output
            .iter()
            .map(|item| match item {
                Item::Record { key, .. } => key.clone(),
                Item::DeadLetter { reason, .. } => format!("dead: {reason}"),
            })
            .collect();
        assert_eq!(keys[0], "2");
        assert_eq!(keys[1], "1");
        assert!(keys[2].starts_with("dead: the item has no text or number at key_field"));
        assert!(keys[3].starts_with("dead: the item has no number or text at position_field"));
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn pairs_never_echo_their_value() {
        let error = parse_pairs(&["Authorization Bearer s3cr3t".to_owned()], ':').unwrap_err();
        assert!(!error.contains("s3cr3t"));
        assert_eq!(parse_pairs(&["X-Key: a:b".to_owned()], ':').unwrap(), vec![("X-Key".to_owned(), "a:b".to_owned())]);
    }
}
