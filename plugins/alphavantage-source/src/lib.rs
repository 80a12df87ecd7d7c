//! `alphavantage-source`: Alpha Vantage markets. One function per connector
//! (GLOBAL_QUOTE, TIME_SERIES_INTRADAY, TIME_SERIES_DAILY, CURRENCY_EXCHANGE_RATE,
//! DIGITAL_CURRENCY_DAILY) for a list of symbols, one request per symbol per cycle.
//! Numeric strings become numbers, numbered keys plain names (`"05. price"` ->
//! `price`), exchange-local times UTC in the zone the answer names; each series point
//! is emitted once, keyed by symbol. Every error and throttle comes back as HTTP 200
//! and is read from the body. The default schedule (one symbol, hourly, within a
//! budget of 25 requests a day) never exhausts the free tier's quota.

use std::time::Duration;

use serde_json::{Map, Value, json};
use wasm_connect_sdk::api::{ApiPoller, Item, Requests};
use wasm_connect_sdk::http::{Request, shown_url, url};
use wasm_connect_sdk::polling::{Watermarks, now_ms};
use wasm_connect_sdk::time::{format_rfc3339, local_to_utc, parse_local};
use wasm_connect_sdk::{BatchWriter, ConfigOption, Description, Error, OptionType, Plugin, PollStatus, Settings, Source, export_source};

const FUNCTIONS: &[&str] =
    &["GLOBAL_QUOTE", "TIME_SERIES_INTRADAY", "TIME_SERIES_DAILY", "CURRENCY_EXCHANGE_RATE", "DIGITAL_CURRENCY_DAILY"];
const SERIES_INTERVALS: &[&str] = &["1min", "5min", "15min", "30min", "60min"];

/// The task.
pub struct AlphavantageSource {
    base: String,
    api_key: String,
    function: String,
    symbols: Vec<String>,
    series_interval: String,
    market: String,
    outputsize: String,
    poller: ApiPoller,
}

impl Plugin for AlphavantageSource {
    fn description() -> Description {
        Description::new(
            "alphavantage-source",
            env!("CARGO_PKG_VERSION"),
            "Alpha Vantage quotes, time series, exchange rates and crypto: each point once, keyed by symbol, times in UTC.",
        )
        .option(
            ConfigOption::new("base_url", OptionType::HttpEndpoint, "The API base (`/query` is appended); grants its host.")
                .default("https://www.alphavantage.co"),
        )
        .option(
            ConfigOption::new("api_key", OptionType::String, "The Alpha Vantage API key (write `${ALPHAVANTAGE_KEY}`).")
                .required()
                .secret(),
        )
        .option(
            ConfigOption::new(
                "function",
                OptionType::String,
                "GLOBAL_QUOTE, TIME_SERIES_INTRADAY, TIME_SERIES_DAILY, CURRENCY_EXCHANGE_RATE or DIGITAL_CURRENCY_DAILY.",
            )
            .default("GLOBAL_QUOTE"),
        )
        .option(
            ConfigOption::new(
                "symbols",
                OptionType::List,
                "Symbols (`IBM,MSFT`); currency pairs as `USD/JPY`; crypto as `BTC`. One request each per cycle.",
            )
            .default("IBM"),
        )
        .option(
            ConfigOption::new("series_interval", OptionType::String, "TIME_SERIES_INTRADAY's interval: 1min, 5min, 15min, 30min or 60min.")
                .default("5min"),
        )
        .option(ConfigOption::new("market", OptionType::String, "DIGITAL_CURRENCY_DAILY's market currency.").default("USD"))
        .option(
            ConfigOption::new("outputsize", OptionType::String, "compact (last 100 points) or full (premium for intraday).")
                .default("compact"),
        )
        .option(
            ConfigOption::new(
                "interval",
                OptionType::Duration,
                "Time between cycles; the default keeps one symbol within 25 requests a day.",
            )
            .default("1h"),
        )
        .option(
            ConfigOption::new("request_budget", OptionType::Integer, "Requests allowed per budget_window (the free tier: 25 a day).")
                .default("25"),
        )
        .option(ConfigOption::new("budget_window", OptionType::Duration, "The window of request_budget (sliding).").default("1d"))
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let function = settings.get("function").unwrap_or("GLOBAL_QUOTE");
        if !FUNCTIONS.contains(&function) {
            problems.push(("function".to_owned(), format!("must be one of {}", FUNCTIONS.join(", "))));
        }
        if !SERIES_INTERVALS.contains(&settings.get("series_interval").unwrap_or("5min")) {
            problems.push(("series_interval".to_owned(), format!("must be one of {}", SERIES_INTERVALS.join(", "))));
        }
        if !matches!(settings.get("outputsize").unwrap_or("compact"), "compact" | "full") {
            problems.push(("outputsize".to_owned(), "must be compact or full".to_owned()));
        }
        let symbols = settings.list("symbols").unwrap_or_default();
        if symbols.is_empty() {
            problems.push(("symbols".to_owned(), "name at least one symbol".to_owned()));
        }
        if function == "CURRENCY_EXCHANGE_RATE" && symbols.iter().any(|pair| pair.split_once('/').is_none()) {
            problems.push(("symbols".to_owned(), "CURRENCY_EXCHANGE_RATE takes pairs written `FROM/TO`, e.g. `USD/JPY`".to_owned()));
        }
        problems
    }
}

impl Source for AlphavantageSource {
    fn open(settings: &Settings, position: Option<&str>) -> Result<Self, Error> {
        let symbols: Vec<String> = settings.list("symbols")?.iter().map(|symbol| symbol.to_ascii_uppercase()).collect();
        let interval = settings.duration("interval")?;
        let requests_per_day = 86_400.0 / interval.as_secs_f64().max(1.0) * symbols.len() as f64;
        let allowed_per_day =
            settings.integer("request_budget")? as f64 * 86_400.0 / settings.duration("budget_window")?.as_secs_f64().max(1.0);
        if requests_per_day > allowed_per_day {
            wasm_connect_sdk::log::warn(&format!(
                "{} symbol(s) every {}s ask for more requests than request_budget allows; cycles will wait for the budget",
                symbols.len(),
                interval.as_secs()
            ));
        }
        let poller = ApiPoller::from_settings(settings, symbols.len() * 2 + 16, position)?;
        Ok(Self {
            base: settings.string("base_url")?,
            api_key: settings.string("api_key")?,
            function: settings.string("function")?,
            symbols,
            series_interval: settings.string("series_interval")?,
            market: settings.string("market")?.to_ascii_uppercase(),
            outputsize: settings.string("outputsize")?,
            poller,
        })
    }

    fn poll(&mut self, max_records: usize, batch: &mut BatchWriter) -> Result<PollStatus, Error> {
        let Self { base, api_key, function, symbols, series_interval, market, outputsize, poller } = self;
        poller.poll(max_records, batch, |requests, marks| {
            let mut items = Vec::new();
            for symbol in symbols.iter() {
                let mut query: Vec<(&str, &str)> =
                    vec![("function", function.as_str()), ("apikey", api_key.as_str()), ("datatype", "json")];
                match function.as_str() {
                    "CURRENCY_EXCHANGE_RATE" => {
                        let (from, to) = symbol.split_once('/').unwrap_or((symbol, "USD"));
                        query.extend([("from_currency", from), ("to_currency", to)]);
                    }
                    "DIGITAL_CURRENCY_DAILY" => query.extend([("symbol", symbol.as_str()), ("market", market.as_str())]),
                    "TIME_SERIES_INTRADAY" => query.extend([
                        ("symbol", symbol.as_str()),
                        ("interval", series_interval.as_str()),
                        ("outputsize", outputsize.as_str()),
                    ]),
                    "TIME_SERIES_DAILY" => query.extend([("symbol", symbol.as_str()), ("outputsize", outputsize.as_str())]),
                    _ => query.push(("symbol", symbol.as_str())),
                }
                let address = url(base, "/query", &query);
                let Some(body) = fetch(requests, &address)? else { break };
                let series = format!(
                    "{function}:{symbol}{}",
                    if function == "TIME_SERIES_INTRADAY" { format!(":{series_interval}") } else { String::new() }
                );
                items.extend(convert(function, symbol, &series, &body, marks));
            }
            Ok(items)
        })
    }
}

/// The answer's body; None when Alpha Vantage throttles (the poller pauses).
fn fetch(requests: &mut Requests<'_>, address: &str) -> Result<Option<Value>, Error> {
    let shown = shown_url(address);
    let response = requests.send(&Request::get(address))?;
    if response.status >= 500 {
        return Err(Error::Retriable(format!("{shown} answered {}", response.status)));
    }
    let body = response.json(&shown)?;
    if let Some(message) = body.get("Error Message").and_then(Value::as_str) {
        let hint = if message.contains("apikey") { "check api_key" } else { "check function and symbols" };
        return Err(Error::BadConfig(format!("Alpha Vantage refused the call: {}; {hint}", first_sentence(message))));
    }
    let notice = body.get("Information").or_else(|| body.get("Note")).and_then(Value::as_str);
    if let Some(notice) = notice {
        if notice.contains("premium endpoint") {
            return Err(Error::BadConfig(format!("Alpha Vantage: {}; choose another function or outputsize", first_sentence(notice))));
        }
        let now = now_ms();
        // The per-minute throttle clears within a minute; the daily quota at the next day.
        let wait = if notice.contains("per minute") || body.get("Note").is_some() {
            Duration::from_secs(60)
        } else {
            Duration::from_millis((86_400_000 - now.rem_euclid(86_400_000)) as u64)
        };
        requests.throttle(&format!("Alpha Vantage: {}", first_sentence(notice)), wait);
        return Ok(None);
    }
    Ok(Some(body))
}

fn first_sentence(text: &str) -> &str {
    let end = text.find(". ").map_or(text.len(), |end| end + 1);
    &text[..end.min(300)]
}

/// `"05. price"` -> `price`, `"10. change percent"` -> `change_percent`,
/// `"1a. open (USD)"` -> `open_usd`.
fn plain_name(key: &str) -> String {
    let name =
        key.split_once(". ").map_or(key, |(number, name)| if number.chars().all(|c| c.is_ascii_alphanumeric()) { name } else { key });
    name.trim().to_ascii_lowercase().replace(" (", "_").replace(['(', ')'], "").replace([' ', '-'], "_")
}

/// A numeric string as a number (`"0.9235%"` too); anything else as it is.
fn plain_value(value: &Value) -> Value {
    let Some(text) = value.as_str() else { return value.clone() };
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(parsed) if parsed.is_finite() && !number.is_empty() => {
            serde_json::Number::from_f64(parsed).map_or_else(|| value.clone(), Value::Number)
        }
        _ => value.clone(),
    }
}

fn plain_object(object: &Map<String, Value>) -> Map<String, Value> {
    object.iter().map(|(key, value)| (plain_name(key), plain_value(value))).collect()
}

/// The value of the first key starting with `prefix`.
fn find<'a>(object: &'a Value, prefix: &str) -> Option<&'a Value> {
    object.as_object()?.iter().find(|(key, _)| key.starts_with(prefix)).map(|(_, value)| value)
}

/// The zone a metadata block names (`"6. Time Zone"`, `"5. Time Zone"`, `"7. Time Zone"`).
fn zone_of(meta: &Value) -> Option<&str> {
    meta.as_object()?.iter().find(|(key, _)| key.ends_with("Time Zone")).and_then(|(_, zone)| zone.as_str())
}

fn convert(function: &str, symbol: &str, series: &str, body: &Value, marks: &Watermarks) -> Vec<Item> {
    match function {
        "GLOBAL_QUOTE" => convert_quote(symbol, series, body, marks),
        "CURRENCY_EXCHANGE_RATE" => convert_exchange_rate(symbol, series, body, marks),
        _ => convert_series(symbol, series, body, marks),
    }
}

fn convert_quote(symbol: &str, series: &str, body: &Value, marks: &Watermarks) -> Vec<Item> {
    let Some(quote) = find(body, "Global Quote").and_then(Value::as_object) else {
        return Item::dead_letter(Some(symbol.to_owned()), body, "the answer has no `Global Quote`", marks).into_iter().collect();
    };
    if quote.is_empty() {
        return Item::dead_letter(Some(symbol.to_owned()), body, format!("Alpha Vantage knows no symbol {symbol}"), marks)
            .into_iter()
            .collect();
    }
    let mut record = plain_object(quote);
    record.insert("delayed".to_owned(), Value::Bool(body.get("Global Quote - DATA DELAYED").is_some()));
    // A quote is a snapshot: emitted when anything in it changed.
    let fingerprint = Value::String(Value::Object(record.clone()).to_string());
    if marks.get(series) == Some(&fingerprint) {
        return Vec::new();
    }
    vec![Item::record(symbol.to_owned(), &Value::Object(record), Some(now_ms()), None).marked(series, fingerprint)]
}

fn convert_exchange_rate(symbol: &str, series: &str, body: &Value, marks: &Watermarks) -> Vec<Item> {
    let Some(rate) = body.get("Realtime Currency Exchange Rate").and_then(Value::as_object) else {
        return Item::dead_letter(Some(symbol.to_owned()), body, "the answer has no `Realtime Currency Exchange Rate`", marks)
            .into_iter()
            .collect();
    };
    let mut record = plain_object(rate);
    let zone = rate.iter().find(|(key, _)| key.ends_with("Time Zone")).and_then(|(_, zone)| zone.as_str()).unwrap_or("UTC");
    let refreshed = record.get("last_refreshed").and_then(Value::as_str).and_then(parse_local).and_then(|local| local_to_utc(zone, local));
    let Some(at) = refreshed else {
        return Item::dead_letter(
            Some(symbol.to_owned()),
            body,
            format!("unreadable last refreshed time or unknown time zone {zone:?}"),
            marks,
        )
        .into_iter()
        .collect();
    };
    record.insert("last_refreshed".to_owned(), Value::String(format_rfc3339(at)));
    record.remove("time_zone");
    let position = Value::from(at);
    if !marks.is_new(series, &position) {
        return Vec::new();
    }
    vec![Item::record(symbol.to_owned(), &Value::Object(record), Some(at), None).marked(series, position)]
}

fn convert_series(symbol: &str, series: &str, body: &Value, marks: &Watermarks) -> Vec<Item> {
    let meta = body.get("Meta Data").cloned().unwrap_or(Value::Null);
    let Some(points) = find(body, "Time Series").and_then(Value::as_object) else {
        return Item::dead_letter(Some(symbol.to_owned()), body, "the answer has no `Time Series` object", marks).into_iter().collect();
    };
    let zone = zone_of(&meta).unwrap_or("US/Eastern");
    let interval =
        meta.as_object().and_then(|meta| meta.iter().find(|(key, _)| key.ends_with("Interval"))).and_then(|(_, value)| value.as_str());
    let mut converted: Vec<(i64, &str, &Value)> = Vec::new();
    let mut items = Vec::new();
    for (stamp, point) in points {
        match parse_local(stamp).and_then(|local| local_to_utc(zone, local)) {
            Some(at) => converted.push((at, stamp, point)),
            None => items.extend(Item::dead_letter(
                Some(symbol.to_owned()),
                &json!({"symbol": symbol, "time": stamp, "point": point}),
                format!("unreadable time {stamp:?} or unknown time zone {zone:?}"),
                marks,
            )),
        }
    }
    converted.sort_by_key(|(at, _, _)| *at);
    let last = marks.get(series).and_then(Value::as_i64);
    for (at, stamp, point) in converted {
        if last.is_some_and(|last| at <= last) {
            continue;
        }
        let Some(fields) = point.as_object() else {
            items.extend(Item::dead_letter(Some(symbol.to_owned()), point, format!("the point at {stamp} is not an object"), marks));
            continue;
        };
        let mut record = Map::new();
        record.insert("symbol".to_owned(), Value::String(symbol.to_owned()));
        if let Some(interval) = interval {
            record.insert("interval".to_owned(), Value::String(interval.to_owned()));
        }
        record.insert("time".to_owned(), Value::String(format_rfc3339(at)));
        record.insert("exchange_time".to_owned(), Value::String(stamp.to_owned()));
        record.insert("time_zone".to_owned(), Value::String(zone.to_owned()));
        record.extend(plain_object(fields));
        items.push(Item::record(symbol.to_owned(), &Value::Object(record), Some(at), None).marked(series, Value::from(at)));
    }
    items
}

export_source!(AlphavantageSource);

#[cfg(test)]
mod tests {
    use super::*;

    fn records(items: &[Item]) -> Vec<Value> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Record { value, .. } => serde_json::from_slice(value).ok(),
                Item::DeadLetter { .. } => None,
            })
            .collect()
    }

    #[test]
    fn names_and_values_become_plain() {
        assert_eq!(plain_name("05. price"), "price");
        assert_eq!(plain_name("10. change percent"), "change_percent");
        assert_eq!(plain_name("1a. open (USD)"), "open_usd");
        assert_eq!(plain_name("07. latest trading day"), "latest_trading_day");
        assert_eq!(plain_value(&json!("0.9235%")), json!(0.9235));
        assert_eq!(plain_value(&json!("2024-01-15")), json!("2024-01-15"));
        assert_eq!(plain_value(&json!("60")), json!(60.0));
    }

    #[test]
    fn intraday_points_are_utc_and_emitted_once_in_order() {
        let body = json!({"Meta Data": {"2. Symbol": "IBM", "4. Interval": "5min", "6. Time Zone": "US/Eastern"},
            "Time Series (5min)": {
                "2024-08-02 19:55:00": {"1. open": "166.0", "2. high": "166.5", "3. low": "165.9", "4. close": "166.1", "5. volume": "60"},
                "2024-08-02 19:50:00": {"1. open": "165.0", "2. high": "165.5", "3. low": "164.9", "4. close": "165.1", "5. volume": "10"}}});
        let mut marks = Watermarks::new(8);
        let items = convert("TIME_SERIES_INTRADAY", "IBM", "TIME_SERIES_INTRADAY:IBM:5min", &body, &marks);
        let values = records(&items);
        assert_eq!(values.len(), 2);
        assert_eq!(values[0]["time"], "2024-08-02T23:50:00.000Z");
        assert_eq!(values[1]["time"], "2024-08-02T23:55:00.000Z");
        assert_eq!((values[1]["close"].as_f64(), values[1]["volume"].as_f64()), (Some(166.1), Some(60.0)));
        let Item::Record { mark: Some((series, position)), .. } = &items[1] else { panic!() };
        marks.advance(series, position.clone());
        assert!(convert("TIME_SERIES_INTRADAY", "IBM", "TIME_SERIES_INTRADAY:IBM:5min", &body, &marks).is_empty());
    }

    #[test]
    fn quotes_rates_and_crypto_days_convert() {
        let marks = Watermarks::new(8);
        let quote = json!({"Global Quote": {"01. symbol": "IBM", "05. price": "185.92", "07. latest trading day": "2024-01-15", "10. change percent": "0.9235%"}});
        let values = records(&convert("GLOBAL_QUOTE", "IBM", "GLOBAL_QUOTE:IBM", &quote, &marks));
        assert_eq!((values[0]["price"].as_f64(), values[0]["change_percent"].as_f64()), (Some(185.92), Some(0.9235)));
        let unknown = convert("GLOBAL_QUOTE", "NOPE", "GLOBAL_QUOTE:NOPE", &json!({"Global Quote": {}}), &marks);
        assert!(matches!(&unknown[0], Item::DeadLetter { reason, .. } if reason.contains("no symbol NOPE")));
        let rate = json!({"Realtime Currency Exchange Rate": {"1. From_Currency Code": "USD", "3. To_Currency Code": "JPY",
            "5. Exchange Rate": "147.944", "6. Last Refreshed": "2024-02-07 15:35:01", "7. Time Zone": "UTC"}});
        let values = records(&convert("CURRENCY_EXCHANGE_RATE", "USD/JPY", "CURRENCY_EXCHANGE_RATE:USD/JPY", &rate, &marks));
        assert_eq!(
            (values[0]["exchange_rate"].as_f64(), values[0]["last_refreshed"].as_str()),
            (Some(147.944), Some("2024-02-07T15:35:01.000Z"))
        );
        let crypto = json!({"Meta Data": {"7. Time Zone": "UTC"}, "Time Series (Digital Currency Daily)": {
            "2024-02-07": {"1a. open (EUR)": "39000.1", "1b. open (USD)": "42000.5"}, "2024-02-06": {"1. open": "41000"}}});
        let values = records(&convert("DIGITAL_CURRENCY_DAILY", "BTC", "DIGITAL_CURRENCY_DAILY:BTC", &crypto, &marks));
        assert_eq!(values[0]["open"].as_f64(), Some(41000.0));
        assert_eq!((values[1]["open_usd"].as_f64(), values[1]["time"].as_str()), (Some(42000.5), Some("2024-02-07T00:00:00.000Z")));
    }
}
