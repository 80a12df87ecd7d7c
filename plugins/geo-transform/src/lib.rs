//! `geo-transform`: adds a location field built from a record's latitude and longitude
//! fields, in one of the shapes Elasticsearch and OpenSearch map as `geo_point`. The
//! AirLabs flights carry `lat` and `lng`; OpenSearch does not read a `lat`/`lng` pair
//! as a point, so a map of flights needs `location: {"lat": .., "lon": ..}`.
//!
//! Records whose value is not a JSON object, or lacks either field, follow
//! `on_missing`; coordinates out of range (or not numbers) fail the record.

use serde_json::{Map, Value};
use wasm_connect_sdk::{
    BatchWriter, ConfigOption, Description, Error, OptionType, Outcome, Plugin, RecordView, Settings, Transform, export_transform,
};

/// How the point is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"lat": 51.5, "lon": -0.12}`
    Object,
    /// `"51.5,-0.12"`
    String,
    /// `[-0.12, 51.5]` (GeoJSON order: longitude first)
    Array,
    /// `"POINT (-0.12 51.5)"`
    Wkt,
}

/// What happens to a record without both coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// It goes on unchanged.
    Keep,
    /// It is dropped.
    Drop,
    /// It fails (the dead-letter topic, or the task fails).
    Fail,
}

/// The task.
#[derive(Debug, Clone)]
pub struct GeoTransform {
    lat: Vec<String>,
    lng: Vec<String>,
    target: String,
    format: Format,
    on_missing: OnMissing,
    remove_source: bool,
}

const FORMATS: &str = "object, string, array or wkt";
const ON_MISSING: &str = "keep, drop or fail";

fn format_of(text: &str) -> Option<Format> {
    Some(match text {
        "object" => Format::Object,
        "string" => Format::String,
        "array" => Format::Array,
        "wkt" => Format::Wkt,
        _ => return None,
    })
}

fn on_missing_of(text: &str) -> Option<OnMissing> {
    Some(match text {
        "keep" => OnMissing::Keep,
        "drop" => OnMissing::Drop,
        "fail" => OnMissing::Fail,
        _ => return None,
    })
}

/// A dotted path's segments; empty segments are refused by `validate`.
fn path(text: &str) -> Vec<String> {
    text.split('.').map(str::to_owned).collect()
}

impl Plugin for GeoTransform {
    fn description() -> Description {
        Description::new(
            "geo-transform",
            env!("CARGO_PKG_VERSION"),
            "Adds a geo_point field (Elasticsearch, OpenSearch) built from a record's latitude and longitude fields.",
        )
        .option(ConfigOption::new("lat_field", OptionType::String, "The latitude field; dots reach into nested objects.").default("lat"))
        .option(ConfigOption::new("lng_field", OptionType::String, "The longitude field; dots reach into nested objects.").default("lng"))
        .option(ConfigOption::new("target_field", OptionType::String, "The field the point is written to (top level).").default("location"))
        .option(
            ConfigOption::new(
                "format",
                OptionType::String,
                "object ({\"lat\", \"lon\"}), string (\"lat,lon\"), array ([lon, lat]) or wkt (\"POINT (lon lat)\").",
            )
            .default("object"),
        )
        .option(
            ConfigOption::new("on_missing", OptionType::String, "A record without both coordinates: keep (unchanged), drop or fail.")
                .default("keep"),
        )
        .option(
            ConfigOption::new(
                "remove_source_fields",
                OptionType::Boolean,
                "Removes the latitude and longitude fields once the point is written.",
            )
            .default("false"),
        )
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for key in ["lat_field", "lng_field"] {
            if settings.get(key).is_some_and(|field| field.split('.').any(str::is_empty)) {
                problems.push((key.to_owned(), "must be a field name, with dots between nested names and no empty name".to_owned()));
            }
        }
        if settings.get("target_field").is_some_and(|field| field.is_empty()) {
            problems.push(("target_field".to_owned(), "must not be empty".to_owned()));
        }
        if settings.get("format").is_some_and(|format| format_of(format).is_none()) {
            problems.push(("format".to_owned(), format!("must be {FORMATS}")));
        }
        if settings.get("on_missing").is_some_and(|choice| on_missing_of(choice).is_none()) {
            problems.push(("on_missing".to_owned(), format!("must be {ON_MISSING}")));
        }
        problems
    }
}

impl Transform for GeoTransform {
    fn open(settings: &Settings) -> Result<Self, Error> {
        let format = settings.string("format")?;
        let on_missing = settings.string("on_missing")?;
        Ok(Self {
            lat: path(&settings.string("lat_field")?),
            lng: path(&settings.string("lng_field")?),
            target: settings.string("target_field")?,
            format: format_of(&format).ok_or_else(|| Error::BadConfig(format!("format must be {FORMATS}")))?,
            on_missing: on_missing_of(&on_missing).ok_or_else(|| Error::BadConfig(format!("on_missing must be {ON_MISSING}")))?,
            remove_source: settings.boolean("remove_source_fields")?,
        })
    }

    fn apply(&mut self, record: &RecordView<'_>, output: &mut BatchWriter) -> Result<Outcome, Error> {
        let Some(mut value) = record.value.and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok()) else {
            return Ok(self.missing("the value is not a JSON object"));
        };
        let Some(object) = value.as_object_mut() else {
            return Ok(self.missing("the value is not a JSON object"));
        };
        let (lat, lng) = match (lookup(object, &self.lat), lookup(object, &self.lng)) {
            (Some(lat), Some(lng)) => (lat, lng),
            _ => return Ok(self.missing("the record has no latitude or no longitude")),
        };
        let point = match point(lat, lng) {
            Ok(point) => point,
            Err(reason) => return Ok(Outcome::Fail(reason)),
        };
        if self.remove_source {
            remove(object, &self.lat);
            remove(object, &self.lng);
        }
        object.insert(self.target.clone(), self.render(point));
        let bytes = serde_json::to_vec(&value).map_err(|error| Error::Fatal(format!("writing the record: {error}")))?;
        output.push_parts(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.key,
            Some(&bytes),
            record.headers.iter().copied(),
        );
        Ok(Outcome::Written)
    }
}

impl GeoTransform {
    fn missing(&self, why: &str) -> Outcome {
        match self.on_missing {
            OnMissing::Keep => Outcome::Keep,
            OnMissing::Drop => Outcome::Drop,
            OnMissing::Fail => Outcome::Fail(why.to_owned()),
        }
    }

    fn render(&self, (lat, lon): (f64, f64)) -> Value {
        match self.format {
            Format::Object => {
                let mut point = Map::new();
                point.insert("lat".to_owned(), number(lat));
                point.insert("lon".to_owned(), number(lon));
                Value::Object(point)
            }
            Format::String => Value::String(format!("{lat},{lon}")),
            Format::Array => Value::Array(vec![number(lon), number(lat)]),
            Format::Wkt => Value::String(format!("POINT ({lon} {lat})")),
        }
    }
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map(Value::Number).unwrap_or(Value::Null)
}

fn lookup<'a>(object: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut current = object;
    for name in parents {
        current = current.get(name)?.as_object()?;
    }
    current.get(last).filter(|value| !value.is_null())
}

fn remove(object: &mut Map<String, Value>, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut current = object;
    for name in parents {
        match current.get_mut(name).and_then(Value::as_object_mut) {
            Some(next) => current = next,
            None => return,
        }
    }
    current.shift_remove(last);
}

/// The coordinates as numbers in range; numbers written as text are read too.
fn point(lat: &Value, lng: &Value) -> Result<(f64, f64), String> {
    let read = |value: &Value, name: &str| -> Result<f64, String> {
        let number = match value {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => text.trim().parse::<f64>().ok(),
            _ => None,
        };
        number.filter(|number| number.is_finite()).ok_or_else(|| format!("the {name} is not a number"))
    };
    let (lat, lng) = (read(lat, "latitude")?, read(lng, "longitude")?);
    if !(-90.0..=90.0).contains(&lat) {
        return Err(format!("the latitude {lat} is outside -90..90"));
    }
    if !(-180.0..=180.0).contains(&lng) {
        return Err(format!("the longitude {lng} is outside -180..180"));
    }
    Ok((lat, lng))
}

export_transform!(GeoTransform);

#[cfg(test)]
mod tests {
    use super::*;

    fn transform(options: &[(&str, &str)]) -> GeoTransform {
        let settings = Settings::new::<GeoTransform>(options.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect());
        assert_eq!(GeoTransform::validate(&settings), Vec::new());
        GeoTransform::open(&settings).unwrap()
    }

    fn run(transform: &mut GeoTransform, value: &str) -> (Outcome, Vec<String>) {
        let record = RecordView {
            topic: "flights",
            partition: None,
            offset: None,
            timestamp: Some(7),
            key: Some(b"k"),
            value: Some(value.as_bytes()),
            headers: vec![("h", Some(b"v"))],
        };
        let mut output = BatchWriter::default();
        let outcome = transform.apply(&record, &mut output).unwrap();
        let batch = output.finish();
        let records = wasm_connect_sdk::__private::decode(&batch).unwrap();
        for written in &records {
            assert_eq!((written.topic, written.timestamp, written.key, written.headers.len()), ("flights", Some(7), Some(&b"k"[..]), 1));
        }
        (outcome, records.iter().map(|record| String::from_utf8(record.value.unwrap().to_vec()).unwrap()).collect())
    }

    #[test]
    fn adds_a_point_in_each_format_and_keeps_the_field_order() {
        let input = r#"{"hex":"4CA1FA","lat":51.47,"lng":-0.4543,"alt":300}"#;
        let (outcome, values) = run(&mut transform(&[]), input);
        assert_eq!(outcome, Outcome::Written);
        assert_eq!(values, vec![r#"{"hex":"4CA1FA","lat":51.47,"lng":-0.4543,"alt":300,"location":{"lat":51.47,"lon":-0.4543}}"#]);
        let (_, values) = run(&mut transform(&[("format", "string"), ("target_field", "pin")]), input);
        assert!(values[0].ends_with(r#""pin":"51.47,-0.4543"}"#), "{values:?}");
        let (_, values) = run(&mut transform(&[("format", "array"), ("remove_source_fields", "true")]), input);
        assert_eq!(values, vec![r#"{"hex":"4CA1FA","alt":300,"location":[-0.4543,51.47]}"#]);
        let (_, values) = run(&mut transform(&[("format", "wkt")]), input);
        assert!(values[0].ends_with(r#""location":"POINT (-0.4543 51.47)"}"#), "{values:?}");
    }

    #[test]
    fn reads_nested_fields_and_numbers_written_as_text() {
        let mut nested =
            transform(&[("lat_field", "position.latitude"), ("lng_field", "position.longitude"), ("remove_source_fields", "true")]);
        let (_, values) = run(&mut nested, r#"{"position":{"latitude":"48.1","longitude":"11.5","speed":3}}"#);
        assert_eq!(values, vec![r#"{"position":{"speed":3},"location":{"lat":48.1,"lon":11.5}}"#]);
    }

    #[test]
    fn missing_and_bad_coordinates() {
        assert_eq!(run(&mut transform(&[]), r#"{"lat":1}"#), (Outcome::Keep, vec![]));
        assert_eq!(run(&mut transform(&[("on_missing", "drop")]), r#"{"lat":1,"lng":null}"#), (Outcome::Drop, vec![]));
        assert_eq!(run(&mut transform(&[("on_missing", "drop")]), "[1,2]"), (Outcome::Drop, vec![]));
        let (outcome, _) = run(&mut transform(&[("on_missing", "fail")]), "not json");
        assert_eq!(outcome, Outcome::Fail("the value is not a JSON object".to_owned()));
        let (outcome, _) = run(&mut transform(&[]), r#"{"lat":91,"lng":0}"#);
        assert_eq!(outcome, Outcome::Fail("the latitude 91 is outside -90..90".to_owned()));
        let (outcome, _) = run(&mut transform(&[]), r#"{"lat":1,"lng":"east"}"#);
        assert_eq!(outcome, Outcome::Fail("the longitude is not a number".to_owned()));
    }

    #[test]
    fn refuses_options_it_cannot_use() {
        let settings = Settings::new::<GeoTransform>(vec![
            ("format".to_owned(), "geojson".to_owned()),
            ("lat_field".to_owned(), "a..b".to_owned()),
            ("on_missing".to_owned(), "ignore".to_owned()),
        ]);
        let keys: Vec<String> = GeoTransform::validate(&settings).into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, vec!["lat_field", "format", "on_missing"]);
    }
}
