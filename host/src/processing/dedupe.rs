//! `dedupe`: passes the first record of each identity (its key, or fields of its
//! value) and drops the ones that repeat it within `horizon` of event time, the
//! at-least-once producer's retries and a polling source's repeated snapshots.
//!
//! An identity is remembered, in the store `seen`, until its partition's stream time
//! (the newest event time read from it) is `horizon` past the record that passed; a
//! record of it then passes again and is remembered anew. Memory is bounded by the
//! identities seen within one horizon.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use wasm_connect_protocol::Record;

use super::builtin::OptionSpec;
use super::event_time::EventTime;
use super::options::{GroupBy, TIME_FIELD, TIME_UNIT, duration_ms, json_object, option};
use super::stream_time::{self, QUIET_PARTITION_MS, StreamTimes};
use super::{Processed, Processor};
use crate::runtime::OptionType;
use crate::transport::{StateChange, StateEntry};

/// The store of the identities seen: the event time of the record that passed.
const SEEN: &str = "seen";

/// The options `dedupe` understands.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "group_by",
        option_type: OptionType::List,
        default: Some("key"),
        required: false,
        documentation: "What identifies a record: `key` (the record key) or fields of the value (dotted paths), e.g. `payment_id`.",
    },
    OptionSpec {
        name: "horizon",
        option_type: OptionType::Duration,
        default: None,
        required: true,
        documentation: "How long (in event time) after a record passes its repeats are dropped, e.g. `10m`.",
    },
    TIME_FIELD,
    TIME_UNIT,
];

/// The `dedupe` processor of one task.
pub struct Dedupe {
    group_by: GroupBy,
    horizon: i64,
    event_time: EventTime,
    reads_value: bool,
    /// Identity -> (its partition, event time of the record that passed).
    seen: HashMap<String, (i32, i64)>,
    /// Per partition, (stream time at which it is forgotten, identity).
    expiring: BTreeMap<i32, BTreeSet<(i64, String)>>,
    stream_times: StreamTimes,
    dirty: HashSet<(String, i32)>,
}

impl Dedupe {
    /// Builds the processor from its options, or every problem as (option, message).
    pub fn new(options: &[(String, String)]) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let group_by = GroupBy::parse(options, "group_by", &mut problems);
        let horizon = duration_ms(options, "horizon", &mut problems).unwrap_or(0);
        if option(options, "horizon").is_none() {
            problems.push(("horizon".into(), "is required: how long repeats of a record are dropped, e.g. 10m".into()));
        } else if horizon <= 0 {
            problems.push(("horizon".into(), "must be longer than 0".into()));
        }
        let event_time = EventTime::parse(option(options, "time_field"), option(options, "time_unit")).unwrap_or_else(|problem| {
            problems.push(problem);
            EventTime::Timestamp
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        let reads_value = group_by.reads_value() || matches!(event_time, EventTime::Field { .. });
        Ok(Self {
            group_by,
            horizon,
            event_time,
            reads_value,
            seen: HashMap::new(),
            expiring: BTreeMap::new(),
            stream_times: StreamTimes::default(),
            dirty: HashSet::new(),
        })
    }

    fn remember(&mut self, identity: String, partition: i32, time: i64) {
        if let Some((old_partition, old_time)) = self.seen.insert(identity.clone(), (partition, time)) {
            if let Some(expiring) = self.expiring.get_mut(&old_partition) {
                expiring.remove(&(old_time.saturating_add(self.horizon), identity.clone()));
            }
            self.dirty.insert((identity.clone(), old_partition));
        }
        self.expiring.entry(partition).or_default().insert((time.saturating_add(self.horizon), identity.clone()));
        self.dirty.insert((identity, partition));
    }

    fn add(&mut self, record: Record, now_ms: i64, out: &mut Processed) {
        let parsed = match json_object(&record, self.reads_value) {
            Ok(parsed) => parsed,
            Err(reason) => return out.failed.push((record, reason)),
        };
        let identity = match self.group_by.of(&record, parsed.as_ref()) {
            Ok((identity, _)) => identity,
            Err(reason) => return out.failed.push((record, reason)),
        };
        let time = match self.event_time.of(&record, parsed.as_ref()) {
            Ok(time) => time,
            Err(reason) => return out.failed.push((record, reason)),
        };
        let partition = self.group_by.state_partition(&record);
        self.stream_times.advance(record.partition.unwrap_or(0), time, now_ms);
        if self.group_by.reads_value() {
            self.stream_times.refresh_shared(now_ms, QUIET_PARTITION_MS);
        }
        // What passed is forgotten once its partition's stream time is a horizon past it,
        // also in the middle of a batch (so that batch boundaries change nothing).
        let remembered = self.seen.get(&identity).filter(|(owner, passed)| passed.saturating_add(self.horizon) > self.stream_time(*owner));
        match remembered {
            // A repeat within the horizon of the record that passed, before or after it.
            Some((_, passed)) if time.abs_diff(*passed) < self.horizon.unsigned_abs() => {}
            // An older record than the one that passed, beyond its horizon: it passes,
            // the newer one stays remembered.
            Some((_, passed)) if time < *passed => out.records.push(record),
            _ => {
                self.remember(identity, partition, time);
                out.records.push(record);
            }
        }
    }

    /// The stream time identities kept with `partition` expire by: its own grouping
    /// by key, the partitions' shared clock grouping by fields.
    fn stream_time(&self, partition: i32) -> i64 {
        if self.group_by.reads_value() { self.stream_times.shared() } else { self.stream_times.get(partition) }
    }

    /// Forgets the identities their partition's stream time left a horizon behind.
    fn expire(&mut self) {
        let clocks: Vec<(i32, i64)> = self.expiring.keys().map(|partition| (*partition, self.stream_time(*partition))).collect();
        for (partition, stream_time) in clocks {
            let Some(expiring) = self.expiring.get_mut(&partition) else { continue };
            while expiring.first().is_some_and(|(until, _)| *until <= stream_time) {
                let (_, identity) = expiring.pop_first().expect("looked at above");
                self.seen.remove(&identity);
                self.dirty.insert((identity, partition));
            }
        }
    }
}

impl Processor for Dedupe {
    fn restore(&mut self, entries: Vec<StateEntry>) -> Result<(), String> {
        for entry in entries {
            let number = std::str::from_utf8(&entry.value).ok().and_then(|text| text.parse::<i64>().ok());
            match entry.store.as_str() {
                SEEN => {
                    let identity = String::from_utf8_lossy(&entry.key).into_owned();
                    let time = number.ok_or_else(|| format!("the stored time of {} is damaged", crate::names::shown(&identity)))?;
                    self.expiring.entry(entry.partition).or_default().insert((time.saturating_add(self.horizon), identity.clone()));
                    self.seen.insert(identity, (entry.partition, time));
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
        self.expire();
    }

    fn take_changes(&mut self) -> Vec<StateChange> {
        let mut changes = Vec::with_capacity(self.dirty.len());
        for (identity, partition) in self.dirty.drain() {
            let value = self.seen.get(&identity).filter(|(owner, _)| *owner == partition).map(|(_, time)| time.to_string().into_bytes());
            changes.push(StateChange { store: SEEN.to_owned(), partition, key: identity.into_bytes(), value });
        }
        changes.extend(self.stream_times.take_changes());
        changes
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::processing::testing::*;

    fn passed(out: &Processed) -> Vec<(String, i64)> {
        out.records.iter().map(|record| (String::from_utf8(record.key.clone().unwrap()).unwrap(), record.timestamp.unwrap())).collect()
    }

    #[test]
    fn repeats_within_the_horizon_are_dropped_and_pass_again_after_it() {
        let mut dedupe = Dedupe::new(&options(&[("horizon", "10s")])).unwrap();
        let mut out = Processed::default();
        let input = vec![
            keyed("a", 0, 1_000),
            keyed("a", 0, 5_000),
            keyed("b", 0, 6_000),
            keyed("a", 0, 500),
            keyed("a", 0, 10_999),
            keyed("a", 0, 11_000),
            keyed("a", 0, 12_000),
        ];
        dedupe.process(input, 0, &mut out);
        assert_eq!(passed(&out), vec![("a".into(), 1_000), ("b".into(), 6_000), ("a".into(), 11_000)]);
        assert!(out.failed.is_empty() && out.late.is_empty());
        // Stream time 21 000 forgets a (passed at 11 000) and b.
        let mut later = Processed::default();
        dedupe.process(vec![keyed("c", 0, 21_000), keyed("a", 0, 15_000)], 0, &mut later);
        assert_eq!(passed(&later), vec![("c".into(), 21_000), ("a".into(), 15_000)]);
        assert_eq!(dedupe.seen.len(), 2, "{:?}", dedupe.seen);
    }

    #[test]
    fn identities_from_value_fields_and_records_without_them_go_through_the_error_policy() {
        let mut dedupe = Dedupe::new(&options(&[("horizon", "1m"), ("group_by", "payment.id"), ("time_field", "at")])).unwrap();
        let mut out = Processed::default();
        let input = vec![
            valued(json!({"payment": {"id": 7}, "at": "2026-12-05T10:00:00Z"}), 0),
            valued(json!({"payment": {"id": 7}, "at": "2026-12-05T10:00:30Z"}), 0),
            valued(json!({"payment": {"id": 8}, "at": "2026-12-05T10:00:30Z"}), 0),
            valued(json!({"at": "2026-12-05T10:00:30Z"}), 0),
            Record { value: Some(b"not json".to_vec()), ..valued(json!({}), 0) },
        ];
        dedupe.process(input, 0, &mut out);
        assert_eq!(out.records.len(), 2);
        let reasons: Vec<&str> = out.failed.iter().map(|(_, reason)| reason.as_str()).collect();
        assert_eq!(reasons, vec!["the value has no field payment.id (group_by)", "the value is not a JSON object"]);
        let problems = Dedupe::new(&options(&[("horizon", "0s"), ("time_unit", "days")])).err().unwrap();
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, vec!["horizon", "time_unit"]);
        assert_eq!(Dedupe::new(&[]).err().unwrap()[0].0, "horizon");
    }

    #[test]
    fn a_dedupe_restarted_from_its_checkpoints_passes_what_an_uninterrupted_one_does() {
        let mut next = seeded(11);
        let input: Vec<Record> = (0..3_000)
            .map(|n| {
                let key = format!("k{}", next() % 40);
                let time = n * 50 - (next() % 3_000) as i64;
                Record { value: Some(json!({"n": n}).to_string().into_bytes()), ..keyed(&key, (next() % 3) as i32, time) }
            })
            .collect();
        let build = || Dedupe::new(&options(&[("horizon", "4s")])).unwrap();
        let (straight, straight_state) = run_with_restarts(build, &input, 41, &[]);
        let (restarted, restarted_state) = run_with_restarts(build, &input, 41, &[1, 2, 9, 30, 60]);
        assert!(straight.len() > 200 && straight.len() < 2_000, "{} passed", straight.len());
        assert_eq!(restarted, straight);
        assert_eq!(restarted_state.0, straight_state.0);
    }
}
