//! `threshold`: an alert when a numeric field stays above (or below) a threshold for
//! `consecutive` records in a row of one group (a sensor above 80 °C three readings
//! in a row). One alert per run: the group must fall back within the threshold before
//! it can alert again.
//!
//! Each group's current run (how many records in a row crossed, their values, the
//! first one's time) is kept in the store `runs`, and forgotten when the run breaks
//! or when its group has had no record for `reset_after` (event time): a sensor that
//! crossed once and went silent leaves nothing behind, and when it comes back its
//! readings start a new run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wasm_connect_protocol::Record;
use wasm_connect_protocol::time::format_rfc3339;

use super::builtin::OptionSpec;
use super::options::{GroupBy, duration_ms, field, json_object, option};
use super::stream_time::{self, QUIET_PARTITION_MS, StreamTimes};
use super::{Processed, Processor};
use crate::runtime::OptionType;
use crate::transforms::path::FieldPath;
use crate::transport::{StateChange, StateEntry};

/// The store of the groups' current runs.
const RUNS: &str = "runs";
/// The longest run asked for: each value of a run is kept until it alerts.
const MAX_CONSECUTIVE: u32 = 1_000;

/// The options `threshold` understands.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "group_by",
        option_type: OptionType::List,
        default: Some("key"),
        required: false,
        documentation: "Whose records make a run: `key` (the record key) or fields of the value (dotted paths), e.g. `sensor_id`.",
    },
    OptionSpec {
        name: "field",
        option_type: OptionType::String,
        default: None,
        required: true,
        documentation: "The numeric field of the value compared with the threshold, e.g. `temperature`.",
    },
    OptionSpec {
        name: "above",
        option_type: OptionType::Float,
        default: None,
        required: false,
        documentation: "Alert when the field is above this value (give `above` or `below`).",
    },
    OptionSpec {
        name: "below",
        option_type: OptionType::Float,
        default: None,
        required: false,
        documentation: "Alert when the field is below this value (give `above` or `below`).",
    },
    OptionSpec {
        name: "consecutive",
        option_type: OptionType::Integer,
        default: Some("3"),
        required: false,
        documentation: "How many records in a row must cross the threshold (1 to 1000).",
    },
    OptionSpec {
        name: "reset_after",
        option_type: OptionType::Duration,
        default: Some("1d"),
        required: false,
        documentation: "A run ends when its group has had no record for this long (event time): the next crossing starts a new run.",
    },
];

/// Which side of the threshold alerts.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Above(f64),
    Below(f64),
}

impl Bound {
    fn crossed(self, value: f64) -> bool {
        match self {
            Bound::Above(limit) => value > limit,
            Bound::Below(limit) => value < limit,
        }
    }
}

/// A group's current run of records across the threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Run {
    /// The group's fields, for the alert.
    fields: Vec<Value>,
    /// The run's values so far (up to `consecutive`).
    values: Vec<Value>,
    /// How many records in a row crossed.
    length: u64,
    /// Timestamp of the run's first record.
    since: Option<i64>,
    /// Whether this run has alerted already.
    alerted: bool,
    /// Timestamp of the run's newest record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<i64>,
}

/// The `threshold` processor of one task.
pub struct Threshold {
    group_by: GroupBy,
    field: FieldPath,
    bound: Bound,
    consecutive: u32,
    reset_after: i64,
    /// Group -> (its partition, its run).
    runs: HashMap<String, (i32, Run)>,
    dirty: HashSet<(String, i32)>,
    stream_times: StreamTimes,
    /// Per partition, (stream time at which it ends, group) of every run with a time.
    ending: BTreeMap<i32, BTreeSet<(i64, String)>>,
}

impl Threshold {
    /// Builds the processor from its options, or every problem as (option, message).
    pub fn new(options: &[(String, String)]) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let group_by = GroupBy::parse(options, "group_by", &mut problems);
        let field = match option(options, "field") {
            Some(text) => field(text, "field", &mut problems),
            None => {
                problems.push(("field".into(), "is required: the numeric field compared, e.g. temperature".into()));
                None
            }
        };
        let number = |name: &str, problems: &mut Vec<(String, String)>| {
            let text = option(options, name)?;
            match text.trim().parse::<f64>() {
                Ok(number) if number.is_finite() => Some(number),
                _ => {
                    problems.push((name.to_owned(), format!("must be a number, not {}", crate::names::shown(text))));
                    None
                }
            }
        };
        let bound = match (number("above", &mut problems), number("below", &mut problems)) {
            (Some(above), None) => Some(Bound::Above(above)),
            (None, Some(below)) => Some(Bound::Below(below)),
            (Some(_), Some(_)) => {
                problems.push(("below".into(), "give above or below, not both (two thresholds are two connectors)".into()));
                None
            }
            (None, None) if option(options, "above").is_none() && option(options, "below").is_none() => {
                problems.push(("above".into(), "give above (or below): the value the field must cross".into()));
                None
            }
            (None, None) => None,
        };
        let consecutive = match option(options, "consecutive").map(|text| text.trim().parse::<u32>()) {
            None => 3,
            Some(Ok(count)) if (1..=MAX_CONSECUTIVE).contains(&count) => count,
            Some(_) => {
                problems.push(("consecutive".into(), format!("must be a whole number from 1 to {MAX_CONSECUTIVE}")));
                3
            }
        };
        let reset_after = duration_ms(options, "reset_after", &mut problems).unwrap_or(86_400_000);
        if reset_after <= 0 {
            problems.push(("reset_after".into(), "must be longer than 0".into()));
        }
        match (field, bound) {
            (Some(field), Some(bound)) if problems.is_empty() => Ok(Self {
                group_by,
                field,
                bound,
                consecutive,
                reset_after,
                runs: HashMap::new(),
                dirty: HashSet::new(),
                stream_times: StreamTimes::default(),
                ending: BTreeMap::new(),
            }),
            _ => Err(problems),
        }
    }

    /// The stream time runs kept with `partition` end by: its own grouping by key,
    /// the partitions' shared clock grouping by fields.
    fn stream_time(&self, partition: i32) -> i64 {
        if self.group_by.reads_value() { self.stream_times.shared() } else { self.stream_times.get(partition) }
    }

    /// Removes a group's run and its entry in `ending`.
    fn end_run(&mut self, group_key: &str) {
        if let Some((owner, run)) = self.runs.remove(group_key) {
            if let Some(last) = run.last {
                self.ending.entry(owner).or_default().remove(&(last.saturating_add(self.reset_after), group_key.to_owned()));
            }
            self.dirty.insert((group_key.to_owned(), owner));
        }
    }

    /// Whether a run kept with `partition` whose newest record came at `last` is over:
    /// its group's stream time left it `reset_after` behind.
    fn quiet(&self, partition: i32, last: Option<i64>) -> bool {
        last.is_some_and(|last| last.saturating_add(self.reset_after) <= self.stream_time(partition))
    }

    /// Forgets the runs whose group stream time left `reset_after` behind.
    fn end_quiet_runs(&mut self) {
        let clocks: Vec<(i32, i64)> = self.ending.keys().map(|partition| (*partition, self.stream_time(*partition))).collect();
        for (partition, stream_time) in clocks {
            while let Some(due) = self.ending.get_mut(&partition)
                && due.first().is_some_and(|(ends_at, _)| *ends_at <= stream_time)
            {
                let (ends_at, group_key) = due.pop_first().expect("looked at above");
                // Only the run this entry was made for (its partition, its newest record).
                let current = self.runs.get(&group_key).is_some_and(|(owner, run)| {
                    *owner == partition && run.last.map(|last| last.saturating_add(self.reset_after)) == Some(ends_at)
                });
                if current {
                    self.end_run(&group_key);
                }
            }
        }
    }

    fn add(&mut self, record: Record, now_ms: i64, out: &mut Processed) {
        let parsed = match json_object(&record, true) {
            Ok(parsed) => parsed,
            Err(reason) => return out.failed.push((record, reason)),
        };
        let (group_key, fields) = match self.group_by.of(&record, parsed.as_ref()) {
            Ok(group) => group,
            Err(reason) => return out.failed.push((record, reason)),
        };
        let value = match parsed.as_ref().and_then(|object| self.field.get(object)) {
            Some(Value::Number(number)) => number.clone(),
            _ => return out.failed.push((record, format!("the value has no number in {}", self.field.display()))),
        };
        let partition = self.group_by.state_partition(&record);
        if let Some(time) = record.timestamp {
            self.stream_times.advance(record.partition.unwrap_or(0), time, now_ms);
            if self.group_by.reads_value() {
                self.stream_times.refresh_shared(now_ms, QUIET_PARTITION_MS);
            }
        }
        // After `reset_after` of its group's stream time without a record, a run is
        // over: the same test as at the end of a batch, so batching changes nothing.
        let broken = !self.bound.crossed(value.as_f64().unwrap_or(f64::NAN));
        if broken || self.runs.get(&group_key).is_some_and(|(owner, run)| self.quiet(*owner, run.last)) {
            self.end_run(&group_key);
        }
        if broken {
            return;
        }
        let (owner, run) = self.runs.entry(group_key.clone()).or_insert_with(|| {
            (partition, Run { fields, values: Vec::new(), length: 0, since: record.timestamp, alerted: false, last: None })
        });
        if let Some(time) = record.timestamp.filter(|time| run.last.is_none_or(|last| *time > last)) {
            let due = self.ending.entry(*owner).or_default();
            if let Some(last) = run.last {
                due.remove(&(last.saturating_add(self.reset_after), group_key.clone()));
            }
            due.insert((time.saturating_add(self.reset_after), group_key.clone()));
            run.last = Some(time);
        }
        run.length += 1;
        if !run.alerted {
            run.values.push(Value::Number(value));
        }
        self.dirty.insert((group_key.clone(), *owner));
        if run.alerted || run.length < u64::from(self.consecutive) {
            return;
        }
        run.alerted = true;
        let mut alert = Map::new();
        self.group_by.describe(&group_key, &run.fields, &mut alert);
        alert.insert("field".into(), Value::String(self.field.display()));
        let (side, limit) = match self.bound {
            Bound::Above(limit) => ("above", limit),
            Bound::Below(limit) => ("below", limit),
        };
        alert.insert(side.into(), serde_json::Number::from_f64(limit).map_or(Value::Null, Value::Number));
        alert.insert("consecutive".into(), Value::from(self.consecutive));
        alert.insert("values".into(), Value::Array(std::mem::take(&mut run.values)));
        alert.insert("since".into(), run.since.map_or(Value::Null, |time| Value::String(format_rfc3339(time))));
        alert.insert("at".into(), record.timestamp.map_or(Value::Null, |time| Value::String(format_rfc3339(time))));
        out.records.push(Record {
            key: Some(group_key.into_bytes()),
            value: Some(Value::Object(alert).to_string().into_bytes()),
            timestamp: record.timestamp,
            ..Record::default()
        });
    }
}

impl Processor for Threshold {
    fn restore(&mut self, entries: Vec<StateEntry>) -> Result<(), String> {
        for entry in entries {
            match entry.store.as_str() {
                RUNS => {
                    let group_key = String::from_utf8_lossy(&entry.key).into_owned();
                    let run: Run = serde_json::from_slice(&entry.value)
                        .map_err(|error| format!("the stored run of {} is damaged: {error}", crate::names::shown(&group_key)))?;
                    // A run stored before `last` existed ends by its first record's time.
                    let mut run = run;
                    run.last = run.last.or(run.since);
                    if let Some(last) = run.last {
                        self.ending.entry(entry.partition).or_default().insert((last.saturating_add(self.reset_after), group_key.clone()));
                    }
                    self.runs.insert(group_key, (entry.partition, run));
                }
                stream_time::STORE => self.stream_times.restore(&entry)?,
                // A store of another version of this processor: left alone.
                _ => {}
            }
        }
        Ok(())
    }

    fn assign(&mut self, partitions: &[i32], now_ms: i64) {
        self.stream_times.assign(partitions, now_ms);
    }

    fn process(&mut self, records: Vec<Record>, now_ms: i64, out: &mut Processed) {
        if self.group_by.reads_value() {
            self.stream_times.refresh_shared(now_ms, QUIET_PARTITION_MS);
        }
        for record in records {
            self.add(record, now_ms, out);
        }
        self.end_quiet_runs();
    }

    fn take_changes(&mut self) -> Vec<StateChange> {
        let mut changes: Vec<StateChange> = self
            .dirty
            .drain()
            .map(|(group_key, partition)| {
                let value = self
                    .runs
                    .get(&group_key)
                    .filter(|(owner, _)| *owner == partition)
                    .map(|(_, run)| serde_json::to_vec(run).expect("a run serializes"));
                StateChange { store: RUNS.to_owned(), partition, key: group_key.into_bytes(), value }
            })
            .collect();
        changes.extend(self.stream_times.take_changes());
        changes
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::processing::testing::*;

    fn reading(sensor: &str, celsius: f64, time: i64) -> Record {
        Record { value: Some(json!({"celsius": celsius}).to_string().into_bytes()), ..keyed(sensor, 0, time) }
    }

    #[test]
    fn three_readings_in_a_row_above_the_threshold_alert_once_per_run() {
        let mut threshold = Threshold::new(&options(&[("field", "celsius"), ("above", "80")])).unwrap();
        let mut out = Processed::default();
        let input = vec![
            reading("s1", 81.0, 1_000),
            reading("s2", 90.0, 1_500),
            reading("s1", 85.5, 2_000),
            reading("s1", 80.0, 3_000), // not above: the run breaks
            reading("s1", 82.0, 4_000),
            reading("s1", 83.0, 5_000),
            reading("s1", 84.0, 6_000), // third in a row: alert
            reading("s1", 99.0, 7_000), // same run: no second alert
            reading("s2", 91.0, 7_500),
        ];
        threshold.process(input, 0, &mut out);
        assert_eq!(
            results(&out.records),
            vec![json!({
                "key": "s1", "field": "celsius", "above": 80.0, "consecutive": 3, "values": [82.0, 83.0, 84.0],
                "since": "1970-01-01T00:00:04.000Z", "at": "1970-01-01T00:00:06.000Z"
            })]
        );
        assert_eq!(out.records[0].key.as_deref(), Some(&b"s1"[..]));
        let mut again = Processed::default();
        threshold.process(vec![reading("s1", 10.0, 8_000), reading("s2", 92.0, 8_500)], 0, &mut again);
        assert_eq!(results(&again.records)[0]["key"], json!("s2"));
        assert!(!threshold.runs.contains_key("s1"), "a broken run is forgotten");
    }

    #[test]
    fn bad_options_and_records_without_the_field_are_refused_with_the_reason() {
        let problems = Threshold::new(&options(&[("above", "high"), ("consecutive", "0")])).err().unwrap();
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, vec!["field", "above", "consecutive"], "{problems:?}");
        let both = Threshold::new(&options(&[("field", "t"), ("above", "1"), ("below", "0")])).err().unwrap();
        assert_eq!(both[0].0, "below");
        let mut threshold = Threshold::new(&options(&[("field", "celsius"), ("below", "-10"), ("consecutive", "1")])).unwrap();
        let mut out = Processed::default();
        let no_number = Record { value: Some(json!({"celsius": "cold"}).to_string().into_bytes()), ..keyed("s", 0, 1) };
        threshold.process(vec![no_number, reading("s", -11.0, 2)], 0, &mut out);
        assert_eq!(out.failed[0].1, "the value has no number in celsius");
        assert_eq!(results(&out.records)[0]["below"], json!(-10.0));
    }

    #[test]
    fn a_threshold_restarted_from_its_checkpoints_alerts_as_an_uninterrupted_one_does() {
        let mut next = seeded(3);
        let input: Vec<Record> = (0..3_000).map(|n| reading(&format!("s{}", next() % 7), (next() % 100) as f64, n * 10)).collect();
        let build = || Threshold::new(&options(&[("field", "celsius"), ("above", "40"), ("consecutive", "3")])).unwrap();
        let (straight, straight_state) = run_with_restarts(build, &input, 29, &[]);
        let (restarted, restarted_state) = run_with_restarts(build, &input, 29, &[1, 4, 17, 50, 90]);
        assert!(straight.len() > 50, "{} alerts", straight.len());
        assert_eq!(restarted, straight);
        assert_eq!(restarted_state.0, straight_state.0);
    }

    #[test]
    fn a_run_ends_after_reset_after_without_a_record_and_its_state_goes() {
        let mut threshold = Threshold::new(&options(&[("field", "celsius"), ("above", "80"), ("reset_after", "1m")])).unwrap();
        let mut out = Processed::default();
        threshold.process(vec![reading("s1", 90.0, 0), reading("s1", 91.0, 1_000)], 0, &mut out);
        // s1 is silent for a minute: its run ends, and the next reading above starts anew.
        threshold.process(vec![reading("s1", 92.0, 61_000)], 0, &mut out);
        assert!(out.records.is_empty(), "{:?}", results(&out.records));
        threshold.process(vec![reading("s1", 93.0, 62_000), reading("s1", 94.0, 63_000)], 0, &mut out);
        assert_eq!(results(&out.records)[0]["values"], json!([92.0, 93.0, 94.0]));
        // A sensor that crossed once and went silent is forgotten once its partition's
        // stream time is a reset_after past it.
        let mut durable = Durable::default();
        threshold.process(vec![reading("s2", 99.0, 64_000)], 0, &mut out);
        durable.apply(threshold.take_changes());
        let kept = |durable: &Durable| -> Vec<Vec<u8>> {
            durable.0.keys().filter(|(store, _, _)| store == RUNS).map(|(_, _, key)| key.clone()).collect()
        };
        assert_eq!(kept(&durable), vec![b"s1".to_vec(), b"s2".to_vec()]);
        threshold.process(vec![reading("s3", 10.0, 124_000)], 0, &mut out);
        durable.apply(threshold.take_changes());
        assert!(kept(&durable).is_empty(), "{:?}", kept(&durable));
        // Restored from the checkpoint, a run still ends a reset_after after its newest record.
        let mut restarted = Threshold::new(&options(&[("field", "celsius"), ("above", "80"), ("reset_after", "1m")])).unwrap();
        threshold.process(vec![reading("s4", 95.0, 125_000)], 0, &mut out);
        durable.apply(threshold.take_changes());
        restarted.restore(durable.entries()).unwrap();
        restarted.process(vec![reading("s5", 10.0, 185_000)], 0, &mut out);
        durable.apply(restarted.take_changes());
        assert!(kept(&durable).is_empty(), "{:?}", kept(&durable));
    }

    #[test]
    fn a_run_ends_by_its_groups_stream_time_however_the_input_is_batched() {
        let build = || Threshold::new(&options(&[("field", "celsius"), ("above", "80"), ("reset_after", "1m")])).unwrap();
        let input = [reading("s1", 90.0, 0), reading("s2", 10.0, 120_000), reading("s1", 91.0, 30_000), reading("s1", 92.0, 31_000)];
        let mut outcomes = Vec::new();
        for batch in [1, 2, 4] {
            let mut threshold = build();
            let mut out = Processed::default();
            for chunk in input.chunks(batch) {
                threshold.process(chunk.to_vec(), 0, &mut out);
            }
            outcomes.push(results(&out.records));
        }
        assert!(outcomes.iter().all(|outcome| *outcome == outcomes[0]), "{outcomes:?}");
        assert!(outcomes[0].is_empty(), "s1's first run ended when the stream passed 60 s: {:?}", outcomes[0]);
    }
}
