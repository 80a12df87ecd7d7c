//! `aggregate`: windowed aggregations per group, like Kafka Streams' windowed
//! `aggregate` or a ksqlDB `GROUP BY ... WINDOW`, configured with options only.
//!
//! Records are grouped by their key or by fields of their JSON value, and fall into
//! tumbling (`size`), hopping (`size` every `advance`) or session windows (records
//! less than `gap` apart, merged when one bridges two) by event time (the record's
//! timestamp, or `time_field`). Each partition keeps a stream time, the
//! newest event time it has read: a window closes once its partition's stream time
//! passes the window's end plus `grace`, or, while the input is idle, once
//! `wall_clock_timeout` passed since its first record came in, so that the last
//! windows close on an idle topic too
//! (the trap ksqlDB users hit: stream time only moves with new data). A record for a
//! window that already closed is late: it goes to the dead-letter topic with the
//! reason. With `latest_by`, a group's values are gauges: each window aggregates the
//! newest value per sub-key (a station's bikes available) as of the window's end,
//! carried over from earlier windows, never the sum of every snapshot.
//!
//! The state (open windows, the gauges, stream times) is checkpointed with the
//! results and the input offsets, in the store `windows`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use wasm_connect_protocol::Record;
use wasm_connect_protocol::time::format_rfc3339;
use wasm_connect_protocol::values::parse_list;

use super::builtin::OptionSpec;
use super::event_time::EventTime;
use super::options::{GroupBy, TIME_FIELD, TIME_UNIT, duration_ms, field, json_object, option};
use super::stream_time::{self, StreamTimes};
use super::{Processed, Processor};
use crate::runtime::OptionType;
use crate::transforms::path::{FieldPath, FieldSyntax};
use crate::transport::{StateChange, StateEntry};

/// The store of groups and their windows.
const GROUPS: &str = "windows";
/// The store of what shapes the state (the options it was built under), per partition.
const LAYOUT: &str = "layout";

/// The options `aggregate` understands.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "group_by",
        option_type: OptionType::List,
        default: Some("key"),
        required: false,
        documentation: "What a group is: `key` (the record key) or fields of the value (dotted paths), e.g. `postcode` or `device_id,site`.",
    },
    OptionSpec {
        name: "window",
        option_type: OptionType::String,
        default: Some("tumbling"),
        required: false,
        documentation: "`tumbling` (back to back), `hopping` (overlapping, one every `advance`) or `session` (a group's records less than `gap` apart).",
    },
    OptionSpec {
        name: "size",
        option_type: OptionType::Duration,
        default: None,
        required: false,
        documentation: "How long a window is, e.g. `1m` or `5m` (required for tumbling and hopping windows).",
    },
    OptionSpec {
        name: "gap",
        option_type: OptionType::Duration,
        default: None,
        required: false,
        documentation: "For session windows: a session ends once its group has had no record for this long (event time), e.g. `30m`.",
    },
    OptionSpec {
        name: "advance",
        option_type: OptionType::Duration,
        default: None,
        required: false,
        documentation: "For hopping windows: how far apart their starts are (defaults to `size`: tumbling).",
    },
    OptionSpec {
        name: "grace",
        option_type: OptionType::Duration,
        default: Some("0s"),
        required: false,
        documentation: "How long after a window's end (in event time) late records still count.",
    },
    OptionSpec {
        name: "wall_clock_timeout",
        option_type: OptionType::Duration,
        default: None,
        required: false,
        documentation: "While the input is idle, a window closes once this long (wall clock) passed since its first record, so the last windows close on an idle topic too (defaults to size + grace, or gap + grace for sessions).",
    },
    TIME_FIELD,
    TIME_UNIT,
    OptionSpec {
        name: "aggregations",
        option_type: OptionType::List,
        default: Some("count"),
        required: false,
        documentation: "What to compute, each `[name=]function[(field)]`: count, count(f), sum(f), avg(f), min(f), max(f), first(f), last(f), distinct_count(f).",
    },
    OptionSpec {
        name: "latest_by",
        option_type: OptionType::String,
        default: None,
        required: false,
        documentation: "Gauges: aggregate only the newest value per this sub-key field (e.g. `station_id`), carried over between windows.",
    },
    OptionSpec {
        name: "latest_ttl",
        option_type: OptionType::Duration,
        default: Some("1d"),
        required: false,
        documentation: "With `latest_by`: a sub-key not updated for this long (event time) is left out.",
    },
    OptionSpec {
        name: "emit",
        option_type: OptionType::String,
        default: Some("close"),
        required: false,
        documentation: "`close`: one result per window when it closes; `update`: the window's result after every batch that changed it.",
    },
    OptionSpec {
        name: "having",
        option_type: OptionType::String,
        default: None,
        required: false,
        documentation: "Emit only the results meeting a condition on one aggregation, e.g. `count > 5` (an alert: more than 5 payments per card per window).",
    },
    OptionSpec {
        name: "output_key",
        option_type: OptionType::String,
        default: Some("window"),
        required: false,
        documentation: "The result's key: `window` (`<group>@<window start>`, one per window) or `group`.",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Function {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    DistinctCount,
}

#[derive(Debug, Clone)]
struct Aggregation {
    /// The name of its field in the result.
    name: String,
    function: Function,
    /// The field it reads (none: `count` of records).
    field: Option<FieldPath>,
}

#[derive(Debug, Clone)]
struct Settings {
    group_by: GroupBy,
    size: i64,
    advance: i64,
    /// Session windows: the inactivity gap that ends a session.
    gap: Option<i64>,
    grace: i64,
    wall_clock_timeout: i64,
    event_time: EventTime,
    aggregations: Vec<Aggregation>,
    latest_by: Option<FieldPath>,
    latest_ttl: i64,
    emit_updates: bool,
    key_per_window: bool,
    /// Only results meeting this condition are emitted.
    having: Option<Having>,
    /// Whether any option needs the value parsed.
    reads_value: bool,
    /// The options the state's shape depends on, as text: state stored under others
    /// is refused at restore.
    layout: String,
}

/// One aggregation's running value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Slot {
    Count(u64),
    Sum { sum: f64, integral: bool },
    Avg { sum: f64, count: u64 },
    Min(Option<Value>),
    Max(Option<Value>),
    First(Option<(i64, Value)>),
    Last(Option<(i64, Value)>),
    Distinct(BTreeSet<String>),
}

impl Slot {
    fn new(function: Function) -> Self {
        match function {
            Function::Count => Slot::Count(0),
            Function::Sum => Slot::Sum { sum: 0.0, integral: true },
            Function::Avg => Slot::Avg { sum: 0.0, count: 0 },
            Function::Min => Slot::Min(None),
            Function::Max => Slot::Max(None),
            Function::First => Slot::First(None),
            Function::Last => Slot::Last(None),
            Function::DistinctCount => Slot::Distinct(BTreeSet::new()),
        }
    }

    /// Takes one observed value (`None`: `count` of records, no field) at `time`.
    fn add(&mut self, value: Option<&Value>, time: i64) {
        let present = value.filter(|value| !value.is_null());
        match self {
            Slot::Count(count) => {
                if value.is_none() || present.is_some() {
                    *count += 1;
                }
            }
            Slot::Sum { sum, integral } => {
                if let Some(Value::Number(number)) = present {
                    *sum += number.as_f64().unwrap_or(0.0);
                    *integral &= number.is_i64() || number.is_u64();
                }
            }
            Slot::Avg { sum, count } => {
                if let Some(Value::Number(number)) = present {
                    *sum += number.as_f64().unwrap_or(0.0);
                    *count += 1;
                }
            }
            Slot::Min(current) => {
                if let Some(value) = present
                    && current.as_ref().is_none_or(|current| order(value, current).is_lt())
                {
                    *current = Some(value.clone());
                }
            }
            Slot::Max(current) => {
                if let Some(value) = present
                    && current.as_ref().is_none_or(|current| order(value, current).is_gt())
                {
                    *current = Some(value.clone());
                }
            }
            Slot::First(current) => {
                if let Some(value) = present
                    && current.as_ref().is_none_or(|(first, _)| time < *first)
                {
                    *current = Some((time, value.clone()));
                }
            }
            Slot::Last(current) => {
                if let Some(value) = present
                    && current.as_ref().is_none_or(|(last, _)| time >= *last)
                {
                    *current = Some((time, value.clone()));
                }
            }
            Slot::Distinct(seen) => {
                if let Some(value) = present {
                    seen.insert(match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    });
                }
            }
        }
    }

    /// Takes in what another window of the same aggregation counted (two sessions
    /// that one record bridges).
    fn merge(&mut self, other: Slot) {
        match (self, other) {
            (Slot::Count(count), Slot::Count(more)) => *count += more,
            (Slot::Sum { sum, integral }, Slot::Sum { sum: more, integral: whole }) => {
                *sum += more;
                *integral &= whole;
            }
            (Slot::Avg { sum, count }, Slot::Avg { sum: more, count: also }) => {
                *sum += more;
                *count += also;
            }
            (slot @ (Slot::Min(_) | Slot::Max(_)), Slot::Min(Some(value)) | Slot::Max(Some(value))) => slot.add(Some(&value), 0),
            (slot @ (Slot::First(_) | Slot::Last(_)), Slot::First(Some((time, value))) | Slot::Last(Some((time, value)))) => {
                slot.add(Some(&value), time)
            }
            (Slot::Distinct(seen), Slot::Distinct(more)) => seen.extend(more),
            _ => {}
        }
    }

    fn result(&self) -> Value {
        match self {
            Slot::Count(count) => Value::from(*count),
            Slot::Sum { sum, integral } if *integral && sum.abs() < 9.0e15 => Value::from(*sum as i64),
            Slot::Sum { sum, .. } => Number::from_f64(*sum).map_or(Value::Null, Value::Number),
            Slot::Avg { count: 0, .. } => Value::Null,
            Slot::Avg { sum, count } => Number::from_f64(sum / *count as f64).map_or(Value::Null, Value::Number),
            Slot::Min(value) | Slot::Max(value) => value.clone().unwrap_or(Value::Null),
            Slot::First(value) | Slot::Last(value) => value.as_ref().map_or(Value::Null, |(_, value)| value.clone()),
            Slot::Distinct(seen) => Value::from(seen.len() as u64),
        }
    }
}

/// Numbers before texts before anything else; numbers by value, texts by bytes.
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().unwrap_or(0.0).total_cmp(&b.as_f64().unwrap_or(0.0)),
        (Value::Number(_), _) => std::cmp::Ordering::Less,
        (_, Value::Number(_)) => std::cmp::Ordering::Greater,
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::String(_), _) => std::cmp::Ordering::Less,
        (_, Value::String(_)) => std::cmp::Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// One open window of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Window {
    /// Wall clock when its first record came in (its wall-clock timeout counts from
    /// it); a session's newest record.
    opened_at: i64,
    /// The aggregations' running values (empty with `latest_by`: computed at the end).
    slots: Vec<Slot>,
    /// Records it took.
    records: u64,
    /// A session's newest event time (its start is its oldest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<i64>,
}

/// A sub-key's value at one event time (with `latest_by`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Observation {
    time: i64,
    /// The value of each aggregation's field (null when absent).
    values: Vec<Value>,
}

/// One group's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    /// The input partition its state belongs to.
    partition: i32,
    /// The group's fields, for the result (`key`: the key as text).
    fields: Vec<Value>,
    /// Open windows by start.
    windows: BTreeMap<i64, Window>,
    /// The end of the newest window already emitted.
    closed_through: Option<i64>,
    /// With `latest_by`: each sub-key's values, oldest first, back to the newest one
    /// before the oldest open window.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    latest: BTreeMap<String, Vec<Observation>>,
}

/// The `aggregate` processor of one task.
pub struct Aggregate {
    settings: Settings,
    groups: HashMap<String, Group>,
    /// Per partition, (stream time at which it closes, group, window start) of every
    /// open window.
    closing: BTreeMap<i32, BTreeSet<(i64, String, i64)>>,
    /// (wall clock at which it closes, group, window start), for every open window.
    deadlines: BTreeSet<(i64, String, i64)>,
    stream_times: StreamTimes,
    /// (group, partition) changed since the last checkpoint: a group deleted in one
    /// partition and made again from another's records is deleted in the first.
    dirty: HashSet<(String, i32)>,
    /// Windows changed in this batch (with `emit: update`).
    updated: BTreeSet<(String, i64)>,
    /// Per partition, (stream time at which it may go, group) of groups with nothing
    /// open that are kept a while after their last window closed.
    forgetting: BTreeMap<i32, BTreeSet<(i64, String)>>,
}

impl Aggregate {
    /// Builds the processor from its options, or every problem as (option, message).
    pub fn new(options: &[(String, String)]) -> Result<Self, Vec<(String, String)>> {
        Ok(Self {
            settings: Settings::parse(options)?,
            groups: HashMap::new(),
            closing: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            stream_times: StreamTimes::default(),
            dirty: HashSet::new(),
            updated: BTreeSet::new(),
            forgetting: BTreeMap::new(),
        })
    }
}

impl Settings {
    fn parse(options: &[(String, String)]) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let group_by = GroupBy::parse(options, "group_by", &mut problems);
        let (hopping, session) = match option(options, "window").map(str::trim) {
            None | Some("tumbling") => (false, false),
            Some("hopping") => (true, false),
            Some("session") => (false, true),
            Some(other) => {
                problems.push(("window".into(), format!("must be tumbling, hopping or session, not {other:?}")));
                (false, false)
            }
        };
        let size = duration_ms(options, "size", &mut problems);
        let gap = duration_ms(options, "gap", &mut problems);
        match (session, option(options, "size").is_some(), option(options, "gap").is_some()) {
            (false, false, _) => problems.push(("size".into(), "is required: how long a window is, e.g. 1m".into())),
            (false, _, true) => problems.push(("gap".into(), "is for session windows: set window: session, or leave gap out".into())),
            (true, _, false) => {
                problems.push(("gap".into(), "is required for session windows: how long without a record ends a session, e.g. 30m".into()))
            }
            (true, true, _) => {
                problems.push(("size".into(), "is for tumbling and hopping windows: a session's length is set by gap".into()))
            }
            _ => {}
        }
        let gap = gap.filter(|_| session);
        if gap.is_some_and(|gap| gap <= 0) {
            problems.push(("gap".into(), "must be longer than 0".into()));
        }
        // A session's length is not known ahead: `size` is then only a placeholder.
        let size = size.or(gap).unwrap_or(60_000);
        let advance = duration_ms(options, "advance", &mut problems).unwrap_or(size);
        if !hopping && advance != size {
            problems.push(("advance".into(), "is for hopping windows: set window: hopping, or leave advance out".into()));
        }
        if size <= 0 {
            problems.push(("size".into(), "must be longer than 0".into()));
        }
        if advance <= 0 || advance > size {
            problems.push(("advance".into(), "must be longer than 0 and at most size".into()));
        } else if size / advance > 100 {
            problems.push(("advance".into(), "makes a record fall into more than 100 windows; make it longer".into()));
        }
        let grace = duration_ms(options, "grace", &mut problems).unwrap_or(0);
        let wall_clock_timeout = duration_ms(options, "wall_clock_timeout", &mut problems).unwrap_or(size.saturating_add(grace));
        if session && option(options, "latest_by").is_some() {
            problems.push((
                "latest_by".into(),
                "gauges need tumbling or hopping windows (a session has no set end to take the newest values at)".into(),
            ));
        }
        let event_time = EventTime::parse(option(options, "time_field"), option(options, "time_unit")).unwrap_or_else(|problem| {
            problems.push(problem);
            EventTime::Timestamp
        });
        let aggregations: Vec<Aggregation> = parse_list(option(options, "aggregations").unwrap_or("count"))
            .iter()
            .filter_map(|text| parse_aggregation(text).map_err(|problem| problems.push(("aggregations".into(), problem))).ok())
            .collect();
        if option(options, "aggregations").is_some_and(|text| parse_list(text).is_empty()) {
            problems.push(("aggregations".into(), "must name at least one aggregation, e.g. count".into()));
        }
        let mut names = HashSet::new();
        for aggregation in &aggregations {
            if !names.insert(aggregation.name.as_str()) || ["window_start", "window_end"].contains(&aggregation.name.as_str()) {
                problems.push((
                    "aggregations".into(),
                    format!("the name {} is used twice; give one of them another name (name=function(field))", aggregation.name),
                ));
            }
        }
        let latest_by = option(options, "latest_by").and_then(|text| field(text, "latest_by", &mut problems));
        let latest_ttl = duration_ms(options, "latest_ttl", &mut problems).unwrap_or(86_400_000);
        let emit_updates = match option(options, "emit").map(str::trim) {
            None | Some("close") => false,
            Some("update") => true,
            Some(other) => {
                problems.push(("emit".into(), format!("must be close or update, not {other:?}")));
                false
            }
        };
        let having = option(options, "having")
            .and_then(|text| Having::parse(text, &aggregations).map_err(|problem| problems.push(("having".into(), problem))).ok());
        let key_per_window = match option(options, "output_key").map(str::trim) {
            None | Some("window") => true,
            Some("group") => false,
            Some(other) => {
                problems.push(("output_key".into(), format!("must be window or group, not {other:?}")));
                true
            }
        };
        let layout = serde_json::json!({
            "group_by": match &group_by {
                GroupBy::Key { .. } => vec!["key".to_owned()],
                GroupBy::Fields { paths, .. } => paths.iter().map(FieldPath::display).collect(),
            },
            "size": if session { 0 } else { size },
            "advance": if session { 0 } else { advance },
        "aggregations": aggregations
                .iter()
                .map(|aggregation| {
                    // By position: a result's name is not in the state, so renaming one is fine.
                    let function = serde_json::to_value(aggregation.function).unwrap_or_default();
                    let field = aggregation.field.as_ref().map(FieldPath::display).unwrap_or_default();
                    format!("{}({field})", function.as_str().unwrap_or_default())
                })
                .collect::<Vec<_>>(),
            "latest_by": latest_by.as_ref().map(FieldPath::display),
        })
        .to_string();
        let layout = match gap {
            // Only sessions add to the layout: state stored before they existed stays good.
            Some(gap) => {
                let mut layout: Value = serde_json::from_str(&layout).expect("made above");
                layout["window"] = Value::from("session");
                layout["gap"] = Value::from(gap);
                layout.to_string()
            }
            None => layout,
        };
        let reads_value = group_by.reads_value()
            || matches!(event_time, EventTime::Field { .. })
            || latest_by.is_some()
            || aggregations.iter().any(|aggregation| aggregation.field.is_some());
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            group_by,
            size,
            advance,
            gap,
            grace,
            wall_clock_timeout,
            event_time,
            aggregations,
            latest_by,
            latest_ttl,
            emit_updates,
            key_per_window,
            having,
            reads_value,
            layout,
        })
    }

    /// How long (stream time) a group with nothing open is kept after the end of what
    /// it emitted. A session's group two gaps: until then a record less than a gap
    /// after that session is late, not the start of another (past that, such a
    /// record's own session would be closed already).
    fn kept_after_close(&self) -> i64 {
        self.grace.saturating_add(self.gap.unwrap_or(0).saturating_mul(2))
    }

    /// When a group's window closes in stream time: a fixed window at its end plus
    /// grace, a session a gap after its newest record plus grace.
    fn closes_at(&self, start: i64, window: &Window) -> i64 {
        self.end_of(start, window).saturating_add(self.gap.unwrap_or(0)).saturating_add(self.grace)
    }

    /// A window's end in results: a fixed window's (exclusive) end, a session's newest
    /// event time.
    fn end_of(&self, start: i64, window: &Window) -> i64 {
        match self.gap {
            Some(_) => window.last.unwrap_or(start),
            None => start.saturating_add(self.size),
        }
    }

    /// The starts of the windows `time` falls into, oldest first.
    fn window_starts(&self, time: i64) -> impl Iterator<Item = i64> + use<> {
        let (size, advance) = (self.size, self.advance);
        let last = time - time.rem_euclid(advance);
        let first = last - (size - 1) / advance * advance;
        (0..=(last - first) / advance).map(move |step| first + step * advance).filter(move |start| start + size > time)
    }
}

/// The indexes of open windows a session's merge moves.
struct OpenWindows<'a> {
    closing: &'a mut BTreeMap<i32, BTreeSet<(i64, String, i64)>>,
    deadlines: &'a mut BTreeSet<(i64, String, i64)>,
    updated: &'a mut BTreeSet<(String, i64)>,
    /// The starts of sessions merged into another, whose updates a tombstone retracts.
    merged_away: Vec<i64>,
}

impl Settings {
    /// Adds a record at event time `time` with the aggregations' `values` to the
    /// group's sessions: to the one it is less than a gap from, merging every session
    /// it bridges, or to a new one. False when it is late: it is less than a gap from
    /// a session already closed (by stream time, even one still to be emitted at the
    /// end of the batch, so batch boundaries change nothing) or emitted, or it would
    /// start a session that is closed already.
    fn add_to_session(
        &self,
        group: &mut Group,
        key: &str,
        (time, values): (i64, &[Value]),
        (stream_time, now_ms): (i64, i64),
        open: &mut OpenWindows,
    ) -> bool {
        let gap = self.gap.expect("sessions have a gap");
        let mut touching = Vec::new();
        for (start, window) in &group.windows {
            if start.saturating_sub(time) < gap && time.saturating_sub(window.last.unwrap_or(*start)) < gap {
                if self.closes_at(*start, window) <= stream_time {
                    return false;
                }
                touching.push(*start);
            }
        }
        let after_emitted = group.closed_through.is_some_and(|closed| time.saturating_sub(closed) < gap);
        if touching.is_empty() && (time.saturating_add(gap).saturating_add(self.grace) <= stream_time || after_emitted) {
            return false;
        }
        let mut start = time;
        let mut merged = Window {
            opened_at: now_ms,
            slots: self.aggregations.iter().map(|aggregation| Slot::new(aggregation.function)).collect(),
            records: 0,
            last: Some(time),
        };
        // The sessions it bridges first, then the record: ties of first and last go as
        // they would in one window.
        for old_start in touching {
            let old = group.windows.remove(&old_start).expect("found above");
            if let Some(due) = open.closing.get_mut(&group.partition) {
                due.remove(&(self.closes_at(old_start, &old), key.to_owned(), old_start));
            }
            open.deadlines.remove(&(old.opened_at.saturating_add(self.wall_clock_timeout), key.to_owned(), old_start));
            open.updated.remove(&(key.to_owned(), old_start));
            if self.emit_updates {
                open.merged_away.push(old_start);
            }
            start = start.min(old_start);
            merged.last = merged.last.max(old.last);
            merged.records += old.records;
            for (slot, old_slot) in merged.slots.iter_mut().zip(old.slots) {
                slot.merge(old_slot);
            }
        }
        merged.records += 1;
        for ((slot, aggregation), value) in merged.slots.iter_mut().zip(&self.aggregations).zip(values) {
            slot.add(aggregation.field.as_ref().map(|_| value), time);
        }
        // A session's wall-clock timeout counts from its newest record: a live session
        // longer than the timeout stays open while records keep coming.
        open.merged_away.retain(|old| *old != start);
        open.closing.entry(group.partition).or_default().insert((self.closes_at(start, &merged), key.to_owned(), start));
        open.deadlines.insert((merged.opened_at.saturating_add(self.wall_clock_timeout), key.to_owned(), start));
        if self.emit_updates {
            open.updated.insert((key.to_owned(), start));
        }
        group.windows.insert(start, merged);
        true
    }
}

/// Whether state stored under the layout `stored` fits `current`: every option both
/// name is the same (an option a later version adds is absent from older state, and
/// an older state is taken as built under its default).
fn same_layout(stored: &[u8], current: &str) -> bool {
    let (Ok(Value::Object(stored)), Ok(Value::Object(current))) =
        (serde_json::from_slice::<Value>(stored), serde_json::from_str::<Value>(current))
    else {
        return false;
    };
    stored.iter().all(|(name, value)| current.get(name).is_none_or(|now| now == value))
}

/// `having`: a condition on one aggregation's result, `count > 5`.
#[derive(Debug, Clone)]
struct Having {
    /// Which aggregation.
    index: usize,
    /// `>`, `>=`, `<`, `<=`, `==`, `!=`.
    operator: &'static str,
    number: f64,
}

impl Having {
    fn parse(text: &str, aggregations: &[Aggregation]) -> Result<Self, String> {
        let operator = [">=", "<=", "==", "!=", ">", "<"].into_iter().find(|operator| text.contains(operator)).ok_or_else(|| {
            format!("{} must be `<aggregation> <op> <number>` with op one of > >= < <= == !=, e.g. count > 5", crate::names::shown(text))
        })?;
        let (name, number) = text.split_once(operator).expect("found above");
        let (name, number) = (name.trim(), number.trim());
        let index = aggregations.iter().position(|aggregation| aggregation.name == name).ok_or_else(|| {
            let names: Vec<&str> = aggregations.iter().map(|aggregation| aggregation.name.as_str()).collect();
            format!("{} is not one of the aggregations ({})", crate::names::shown(name), names.join(", "))
        })?;
        let number = number
            .parse::<f64>()
            .ok()
            .filter(|number| number.is_finite())
            .ok_or_else(|| format!("{} is not a number", crate::names::shown(number)))?;
        Ok(Self { index, operator, number })
    }

    /// Whether the aggregations' results meet the condition (a result that is no
    /// number never does).
    fn holds(&self, slots: &[Slot]) -> bool {
        let Some(value) = slots.get(self.index).and_then(|slot| slot.result().as_f64()) else { return false };
        match self.operator {
            ">" => value > self.number,
            ">=" => value >= self.number,
            "<" => value < self.number,
            "<=" => value <= self.number,
            "==" => value == self.number,
            _ => value != self.number,
        }
    }
}

/// `[name=]function[(field)]`.
fn parse_aggregation(text: &str) -> Result<Aggregation, String> {
    let (name, call) = match text.split_once('=') {
        Some((name, call)) => (Some(name.trim().to_owned()), call.trim()),
        None => (None, text.trim()),
    };
    let (function_name, field) = match call.split_once('(') {
        Some((function, rest)) => {
            let field = rest.strip_suffix(')').ok_or_else(|| format!("{text:?}: a field goes in parentheses, e.g. sum(amount)"))?;
            (function.trim(), Some(FieldPath::parse(field.trim(), FieldSyntax::V2).map_err(|problem| format!("{text:?}: {problem}"))?))
        }
        None => (call, None),
    };
    let function = match function_name {
        "count" => Function::Count,
        "sum" => Function::Sum,
        "avg" => Function::Avg,
        "min" => Function::Min,
        "max" => Function::Max,
        "first" => Function::First,
        "last" => Function::Last,
        "distinct_count" => Function::DistinctCount,
        other => {
            return Err(format!("{other:?} is not an aggregation; use count, sum, avg, min, max, first, last or distinct_count"));
        }
    };
    if field.is_none() && function != Function::Count {
        return Err(format!("{function_name} needs a field, e.g. {function_name}(amount)"));
    }
    let name = name.filter(|name| !name.is_empty()).unwrap_or_else(|| match &field {
        Some(field) => format!("{function_name}_{}", field.name()),
        None => function_name.to_owned(),
    });
    Ok(Aggregation { name, function, field })
}

impl Aggregate {
    /// Notes the wall clock; grouping by fields, partitions quiet since the last
    /// batch may let the shared clock move (closing windows then happens below).
    fn refresh_clock(&mut self, now_ms: i64) {
        if self.settings.group_by.reads_value() {
            self.stream_times.refresh_shared(now_ms, self.settings.wall_clock_timeout);
        }
    }

    /// The stream time of the groups kept with `partition`: its own grouping by key,
    /// the partitions' shared clock grouping by fields.
    fn stream_time(&self, partition: i32) -> i64 {
        if self.settings.group_by.reads_value() { self.stream_times.shared() } else { self.stream_times.get(partition) }
    }

    fn add(&mut self, record: Record, now_ms: i64, out: &mut Processed) {
        let settings = &self.settings;
        let parsed = match json_object(&record, settings.reads_value) {
            Ok(parsed) => parsed,
            Err(reason) => return out.failed.push((record, reason)),
        };
        let (group_key, fields) = match settings.group_by.of(&record, parsed.as_ref()) {
            Ok(group) => group,
            Err(reason) => return out.failed.push((record, reason)),
        };
        let time = match settings.event_time.of(&record, parsed.as_ref()) {
            Ok(time) => time,
            Err(reason) => return out.failed.push((record, reason)),
        };
        let values: Vec<Value> = settings
            .aggregations
            .iter()
            .map(|aggregation| match (&aggregation.field, &parsed) {
                (Some(path), Some(object)) => path.get(object).cloned().unwrap_or(Value::Null),
                _ => Value::Null,
            })
            .collect();
        let sub_key = match (&settings.latest_by, &parsed) {
            (Some(path), Some(object)) => match path.get(object) {
                Some(Value::String(text)) => Some(text.clone()),
                Some(found) if !found.is_null() => Some(found.to_string()),
                _ => return out.failed.push((record, format!("the value has no field {} (latest_by)", path.display()))),
            },
            _ => None,
        };
        let partition = settings.group_by.state_partition(&record);
        self.stream_times.advance(record.partition.unwrap_or(0), time, now_ms);
        if settings.group_by.reads_value() {
            self.stream_times.refresh_shared(now_ms, settings.wall_clock_timeout);
        }
        let stream_time = self.stream_time(partition);
        let (size, grace, timeout) = (settings.size, settings.grace, settings.wall_clock_timeout);
        let starts: Vec<i64> = if settings.gap.is_some() { Vec::new() } else { settings.window_starts(time).collect() };
        let group = self.groups.entry(group_key.clone()).or_insert_with(|| Group {
            partition,
            fields,
            windows: BTreeMap::new(),
            closed_through: None,
            latest: BTreeMap::new(),
        });
        let mut counted = false;
        if settings.gap.is_some() {
            let mut open = OpenWindows {
                closing: &mut self.closing,
                deadlines: &mut self.deadlines,
                updated: &mut self.updated,
                merged_away: Vec::new(),
            };
            counted = settings.add_to_session(group, &group_key, (time, &values), (stream_time, now_ms), &mut open);
            // Updates emitted under a merged session's key are retracted.
            if settings.key_per_window {
                for start in open.merged_away {
                    let key = format!("{group_key}@{}", format_rfc3339(start));
                    out.records.push(Record { key: Some(key.into_bytes()), value: None, timestamp: Some(start), ..Record::default() });
                }
            }
        }
        for start in starts {
            let end = start + size;
            let open = group.windows.contains_key(&start);
            if end.saturating_add(grace) <= stream_time || (!open && group.closed_through.is_some_and(|closed| end <= closed)) {
                continue;
            }
            counted = true;
            let window = group.windows.entry(start).or_insert_with(|| {
                self.closing.entry(group.partition).or_default().insert((end.saturating_add(grace), group_key.clone(), start));
                self.deadlines.insert((now_ms.saturating_add(timeout), group_key.clone(), start));
                Window {
                    opened_at: now_ms,
                    slots: if sub_key.is_some() {
                        Vec::new()
                    } else {
                        settings.aggregations.iter().map(|aggregation| Slot::new(aggregation.function)).collect()
                    },
                    records: 0,
                    last: None,
                }
            });
            window.records += 1;
            if sub_key.is_none() {
                for ((slot, aggregation), value) in window.slots.iter_mut().zip(&settings.aggregations).zip(&values) {
                    slot.add(aggregation.field.as_ref().map(|_| value), time);
                }
            }
            if settings.emit_updates {
                self.updated.insert((group_key.clone(), start));
            }
        }
        if !counted {
            // A late record leaves no trace: a group it alone made is gone again.
            if group.windows.is_empty() && group.latest.is_empty() && group.closed_through.is_none() {
                self.groups.remove(&group_key);
            }
            let reason = format!(
                "late: event time {} is after the grace period ({} ms) of every window it falls into (stream time {})",
                format_rfc3339(time),
                grace,
                format_rfc3339(stream_time)
            );
            out.late.push((record, reason));
            return;
        }
        if let Some(sub_key) = sub_key {
            let history = group.latest.entry(sub_key).or_default();
            let at = history.partition_point(|observation| observation.time <= time);
            if at > 0 && history[at - 1].time == time {
                history[at - 1].values = values;
            } else {
                history.insert(at, Observation { time, values });
            }
        }
        self.dirty.insert((group_key, group.partition));
    }

    /// The result of a group's window, as an output record.
    /// None when `having` leaves it out.
    fn result(&self, group_key: &str, group: &Group, start: i64, window: &Window) -> Option<Record> {
        let settings = &self.settings;
        let end = settings.end_of(start, window);
        let mut value = Map::new();
        settings.group_by.describe(group_key, &group.fields, &mut value);
        value.insert("window_start".into(), Value::String(format_rfc3339(start)));
        value.insert("window_end".into(), Value::String(format_rfc3339(end)));
        let slots = if settings.latest_by.is_some() { self.latest_slots(group, end) } else { window.slots.clone() };
        if settings.having.as_ref().is_some_and(|having| !having.holds(&slots)) {
            return None;
        }
        for (aggregation, slot) in settings.aggregations.iter().zip(&slots) {
            value.insert(aggregation.name.clone(), slot.result());
        }
        let key = if settings.key_per_window { format!("{group_key}@{}", format_rfc3339(start)) } else { group_key.to_owned() };
        Some(Record {
            key: Some(key.into_bytes()),
            value: Some(Value::Object(value).to_string().into_bytes()),
            timestamp: Some(start),
            ..Record::default()
        })
    }

    /// The aggregations over each sub-key's newest value before `end` (and not older
    /// than `latest_ttl` then).
    fn latest_slots(&self, group: &Group, end: i64) -> Vec<Slot> {
        let settings = &self.settings;
        let mut slots: Vec<Slot> = settings.aggregations.iter().map(|aggregation| Slot::new(aggregation.function)).collect();
        for history in group.latest.values() {
            let Some(newest) = history.iter().rev().find(|observation| observation.time < end) else { continue };
            if newest.time < end.saturating_sub(settings.latest_ttl) {
                continue;
            }
            for ((slot, aggregation), value) in slots.iter_mut().zip(&settings.aggregations).zip(&newest.values) {
                slot.add(aggregation.field.as_ref().map(|_| value), newest.time);
            }
        }
        slots
    }

    /// Closes one window: emits its result (unless results went out as updates) and
    /// forgets it.
    fn close(&mut self, group_key: &str, start: i64, out: &mut Processed) {
        let Some(group) = self.groups.get(group_key) else { return };
        let Some(window) = group.windows.get(&start) else { return };
        // With updates, a window changed in the batch that closes it gets its last one.
        if !self.settings.emit_updates || self.updated.remove(&(group_key.to_owned(), start)) {
            out.records.extend(self.result(group_key, group, start, window));
        }
        let group = self.groups.get_mut(group_key).expect("found above");
        let window = group.windows.remove(&start).expect("found above");
        if let Some(due) = self.closing.get_mut(&group.partition) {
            due.remove(&(self.settings.closes_at(start, &window), group_key.to_owned(), start));
        }
        self.deadlines.remove(&(window.opened_at.saturating_add(self.settings.wall_clock_timeout), group_key.to_owned(), start));
        let end = self.settings.end_of(start, &window);
        group.closed_through = Some(group.closed_through.map_or(end, |closed| closed.max(end)));
        self.dirty.insert((group_key.to_owned(), group.partition));
        self.prune(group_key);
    }

    /// Drops a group's gauge values no open or future window needs, and the group once
    /// nothing of it is needed.
    fn prune(&mut self, group_key: &str) {
        let Some(partition) = self.groups.get(group_key).map(|group| group.partition) else { return };
        let stream_time = self.stream_time(partition);
        let Some(group) = self.groups.get_mut(group_key) else { return };
        // Windows still to come start after what was closed and what the stream left behind.
        let horizon = group.windows.keys().next().copied().unwrap_or_else(|| {
            let expired = stream_time.saturating_sub(self.settings.grace).saturating_sub(self.settings.size);
            group.closed_through.unwrap_or(i64::MIN).max(expired)
        });
        let ttl = self.settings.latest_ttl;
        group.latest.retain(|_, history| {
            // Keep the newest value before the horizon, and every later one.
            let before = history.partition_point(|observation| observation.time < horizon);
            if before > 1 {
                history.drain(..before - 1);
            }
            history.last().is_some_and(|newest| newest.time >= stream_time.saturating_sub(ttl))
        });
        let forget_at = group.closed_through.map(|closed| closed.saturating_add(self.settings.kept_after_close()));
        if group.windows.is_empty() && group.latest.is_empty() {
            match forget_at {
                Some(forget_at) if forget_at > stream_time => {
                    // Nothing open: forgotten once stream time gets there.
                    self.forgetting.entry(partition).or_default().insert((forget_at, group_key.to_owned()));
                }
                _ => {
                    self.groups.remove(group_key);
                }
            }
        }
    }

    /// Closes the windows whose partition's stream time passed their end plus grace.
    fn close_by_stream_time(&mut self, out: &mut Processed) {
        let partitions: Vec<i32> = self.closing.keys().copied().collect();
        for partition in partitions {
            let stream_time = self.stream_time(partition);
            while let Some(due) = self.closing.get_mut(&partition) {
                if due.first().is_none_or(|(close_at, _, _)| *close_at > stream_time) {
                    break;
                }
                let (_, group_key, start) = due.pop_first().expect("looked at above");
                self.close(&group_key, start, out);
            }
        }
        // Groups with nothing open, whose time to be forgotten came.
        let partitions: Vec<i32> = self.forgetting.keys().copied().collect();
        for partition in partitions {
            let stream_time = self.stream_time(partition);
            while let Some(due) = self.forgetting.get_mut(&partition)
                && due.first().is_some_and(|(forget_at, _)| *forget_at <= stream_time)
            {
                let (_, group_key) = due.pop_first().expect("looked at above");
                if self.groups.get(&group_key).is_some_and(|group| group.partition == partition) {
                    self.prune(&group_key);
                    if !self.groups.contains_key(&group_key) {
                        self.dirty.insert((group_key, partition));
                    }
                }
            }
        }
    }
}

impl Processor for Aggregate {
    fn restore(&mut self, entries: Vec<StateEntry>) -> Result<(), String> {
        for entry in entries {
            match entry.store.as_str() {
                GROUPS => {
                    let group: Group = serde_json::from_slice(&entry.value).map_err(|error| {
                        format!("the stored state of group {:?} is damaged: {error}", String::from_utf8_lossy(&entry.key))
                    })?;
                    let key = String::from_utf8_lossy(&entry.key).into_owned();
                    for (start, window) in &group.windows {
                        let closes_at = self.settings.closes_at(*start, window);
                        self.closing.entry(group.partition).or_default().insert((closes_at, key.clone(), *start));
                        self.deadlines.insert((window.opened_at.saturating_add(self.settings.wall_clock_timeout), key.clone(), *start));
                    }
                    // A group with nothing open is forgotten when its time comes.
                    if group.windows.is_empty()
                        && let Some(closed) = group.closed_through
                    {
                        let forget_at = closed.saturating_add(self.settings.kept_after_close());
                        self.forgetting.entry(group.partition).or_default().insert((forget_at, key.clone()));
                    }
                    self.groups.insert(key, group);
                }
                LAYOUT if !same_layout(&entry.value, &self.settings.layout) => {
                    return Err(format!(
                        "its options changed since its state was stored (the state was built with {}, the options now say {}): \
                         set them back, or stop the connector and reset its offsets (DELETE /connectors/{{name}}/offsets) \
                         to rebuild the state from its topics",
                        serde_json::from_slice::<Value>(&entry.value)
                            .map_or_else(|_| "unreadable options".to_owned(), |stored| stored.to_string()),
                        self.settings.layout
                    ));
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
        self.refresh_clock(now_ms);
        for record in records {
            self.add(record, now_ms, out);
        }
        self.close_by_stream_time(out);
        if self.settings.emit_updates {
            for (group_key, start) in std::mem::take(&mut self.updated) {
                if let Some(group) = self.groups.get(&group_key)
                    && let Some(window) = group.windows.get(&start)
                {
                    out.records.extend(self.result(&group_key, group, start, window));
                }
            }
        }
    }

    fn fire_timers(&mut self, now_ms: i64, out: &mut Processed) {
        self.refresh_clock(now_ms);
        self.close_by_stream_time(out);
        while let Some((deadline, group_key, start)) = self.deadlines.iter().next().cloned() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.remove(&(deadline, group_key.clone(), start));
            self.close(&group_key, start, out);
        }
    }

    fn take_changes(&mut self) -> Vec<StateChange> {
        let mut changes = Vec::with_capacity(self.dirty.len());
        for (group_key, partition) in self.dirty.drain() {
            let value = self
                .groups
                .get(&group_key)
                .filter(|group| group.partition == partition)
                .map(|group| serde_json::to_vec(group).expect("a group serializes"));
            changes.push(StateChange { store: GROUPS.to_owned(), partition, key: group_key.into_bytes(), value });
        }
        for change in self.stream_times.take_changes() {
            // The layout goes with each partition's stream time.
            let layout = change.value.as_ref().map(|_| self.settings.layout.clone().into_bytes());
            changes.push(StateChange { store: LAYOUT.to_owned(), partition: change.partition, key: Vec::new(), value: layout });
            changes.push(change);
        }
        changes
    }
}

#[cfg(test)]
mod tests;
