use serde_json::{Value, json};

use super::*;
use crate::processing::testing::*;

#[test]
fn a_tumbling_count_per_key_emits_each_window_once_when_stream_time_passes_it() {
    let mut aggregate = Aggregate::new(&options(&[("size", "10s")])).unwrap();
    let mut out = Processed::default();
    let input = vec![keyed("a", 0, 1_000), keyed("a", 0, 9_999), keyed("b", 0, 5_000), keyed("a", 0, 10_000)];
    aggregate.process(input, 0, &mut out);
    // Stream time 10 000 closes [0, 10 000) for a and b; a's second window stays open.
    let mut found = results(&out.records);
    found.sort_by_key(|value| value["key"].as_str().unwrap().to_owned());
    assert_eq!(
        found,
        vec![
            json!({"key": "a", "window_start": "1970-01-01T00:00:00.000Z", "window_end": "1970-01-01T00:00:10.000Z", "count": 2}),
            json!({"key": "b", "window_start": "1970-01-01T00:00:00.000Z", "window_end": "1970-01-01T00:00:10.000Z", "count": 1}),
        ]
    );
    assert_eq!(
        out.records.iter().find(|record| record.key.as_deref() == Some(b"a@1970-01-01T00:00:00.000Z".as_slice())).unwrap().timestamp,
        Some(0)
    );
    let mut later = Processed::default();
    aggregate.process(vec![keyed("a", 0, 20_000)], 0, &mut later);
    assert_eq!(
        results(&later.records),
        vec![json!({"key": "a", "window_start": "1970-01-01T00:00:10.000Z", "window_end": "1970-01-01T00:00:20.000Z", "count": 1})]
    );
    assert!(out.late.is_empty() && out.failed.is_empty());
}

#[test]
fn hopping_windows_take_a_record_in_every_window_it_falls_into() {
    let mut aggregate = Aggregate::new(&options(&[("size", "10s"), ("window", "hopping"), ("advance", "5s")])).unwrap();
    assert_eq!(aggregate.settings.window_starts(7_000).collect::<Vec<_>>(), vec![0, 5_000]);
    assert_eq!(aggregate.settings.window_starts(5_000).collect::<Vec<_>>(), vec![0, 5_000]);
    assert_eq!(aggregate.settings.window_starts(-1).collect::<Vec<_>>(), vec![-10_000, -5_000]);
    let mut out = Processed::default();
    aggregate.process(vec![keyed("k", 0, 7_000), keyed("k", 0, 12_000), keyed("k", 0, 30_000)], 0, &mut out);
    let counts: Vec<(String, u64)> = results(&out.records)
        .iter()
        .map(|value| (value["window_start"].as_str().unwrap().to_owned(), value["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("1970-01-01T00:00:00.000Z".to_owned(), 1),
            ("1970-01-01T00:00:05.000Z".to_owned(), 2),
            ("1970-01-01T00:00:10.000Z".to_owned(), 1),
        ]
    );
}

#[test]
fn out_of_order_records_count_within_grace_and_are_late_after_it() {
    let mut aggregate = Aggregate::new(&options(&[("size", "10s"), ("grace", "5s")])).unwrap();
    let mut out = Processed::default();
    // 14 s: [0, 10) is past its end but within grace; 9 s still counts.
    aggregate.process(vec![keyed("k", 0, 1_000), keyed("k", 0, 14_000), keyed("k", 0, 9_000)], 0, &mut out);
    assert!(out.records.is_empty() && out.late.is_empty());
    // 15 s closes [0, 10) with both records; 2 s then is late.
    aggregate.process(vec![keyed("k", 0, 15_000), keyed("k", 0, 2_000)], 0, &mut out);
    assert_eq!(results(&out.records)[0]["count"], json!(2));
    assert_eq!(out.late.len(), 1);
    assert_eq!(out.late[0].0.timestamp, Some(2_000));
    assert!(out.late[0].1.starts_with("late: event time 1970-01-01T00:00:02.000Z"), "{}", out.late[0].1);
}

#[test]
fn a_window_closes_on_an_idle_input_at_its_wall_clock_timeout_and_later_records_for_it_are_late() {
    let mut aggregate = Aggregate::new(&options(&[("size", "1m"), ("wall_clock_timeout", "2s")])).unwrap();
    let mut out = Processed::default();
    aggregate.process(vec![keyed("k", 0, 1_000)], 100_000, &mut out);
    aggregate.fire_timers(101_999, &mut out);
    assert!(out.records.is_empty());
    aggregate.fire_timers(102_000, &mut out);
    assert_eq!(results(&out.records)[0]["count"], json!(1));
    aggregate.process(vec![keyed("k", 0, 2_000)], 102_500, &mut out);
    assert_eq!(out.records.len(), 1, "a closed window is emitted once");
    assert_eq!(out.late.len(), 1);
}

#[test]
fn gauges_sum_the_newest_value_per_sub_key_carried_over_between_windows() {
    let mut aggregate = Aggregate::new(&options(&[
        ("size", "5m"),
        ("group_by", "postcode"),
        ("latest_by", "station_id"),
        ("time_field", "last_reported"),
        ("time_unit", "seconds"),
        ("aggregations", "bikes=sum(num_bikes_available),stations=count"),
        ("output_key", "group"),
    ]))
    .unwrap();
    let status = |station: u32, bikes: u32, seconds: i64| {
        valued(json!({"station_id": station, "postcode": "75015", "num_bikes_available": bikes, "last_reported": seconds}), 0)
    };
    let mut out = Processed::default();
    // Two snapshots of station 1 in the first window: only the newest counts.
    aggregate.process(vec![status(1, 3, 10), status(2, 4, 20), status(1, 5, 200)], 0, &mut out);
    // Station 2 reports again only in the second window; station 1 is carried over.
    aggregate.process(vec![status(2, 6, 400)], 0, &mut out);
    aggregate.process(vec![status(1, 1, 700)], 0, &mut out);
    let found: Vec<(String, i64, u64)> = results(&out.records)
        .iter()
        .map(|value| {
            (value["window_start"].as_str().unwrap().to_owned(), value["bikes"].as_i64().unwrap(), value["stations"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(found, vec![("1970-01-01T00:00:00.000Z".to_owned(), 9, 2), ("1970-01-01T00:05:00.000Z".to_owned(), 11, 2)]);
    assert_eq!(out.records[0].key.as_deref(), Some(b"75015".as_slice()));
}

#[test]
fn every_function_computes_over_the_window() {
    let mut aggregate = Aggregate::new(&options(&[
        ("size", "1m"),
        ("group_by", "device"),
        ("aggregations", "count,n=count(t),sum(t),avg(t),min(t),max(t),first(t),last(t),distinct_count(t)"),
    ]))
    .unwrap();
    let reading = |t: Value, time: i64| valued(json!({"device": "d1", "t": t}), time);
    let mut out = Processed::default();
    aggregate.process(
        vec![reading(json!(3), 3_000), reading(json!(1.5), 1_000), reading(Value::Null, 2_000), reading(json!(3), 4_000)],
        0,
        &mut out,
    );
    aggregate.process(vec![reading(json!(0), 60_000)], 0, &mut out);
    let result = &results(&out.records)[0];
    assert_eq!(result["device"], json!("d1"));
    assert_eq!(
        (result["count"].clone(), result["n"].clone(), result["sum_t"].clone(), result["avg_t"].clone()),
        (json!(4), json!(3), json!(7.5), json!(2.5))
    );
    assert_eq!((result["min_t"].clone(), result["max_t"].clone()), (json!(1.5), json!(3)));
    assert_eq!((result["first_t"].clone(), result["last_t"].clone(), result["distinct_count_t"].clone()), (json!(1.5), json!(3), json!(2)));
}

#[test]
fn records_without_a_group_or_a_time_are_failed_with_the_reason() {
    let mut aggregate = Aggregate::new(&options(&[("size", "1m"), ("group_by", "device"), ("time_field", "at")])).unwrap();
    let mut out = Processed::default();
    aggregate.process(
        vec![valued(json!({"at": 5}), 0), valued(json!({"device": "d"}), 0), valued(json!({"device": "d", "at": "noon"}), 0)],
        0,
        &mut out,
    );
    let reasons: Vec<&str> = out.failed.iter().map(|(_, reason)| reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "the value has no field device (group_by)",
            "the value has no field at",
            "the field at is not a time (epoch number or RFC 3339 text)"
        ]
    );
}

#[test]
fn bad_options_are_all_reported_with_what_to_change() {
    let problems =
        Aggregate::new(&options(&[("window", "sliding"), ("advance", "0s"), ("aggregations", "median(x),sum"), ("emit", "sometimes")]))
            .err()
            .unwrap();
    let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, vec!["window", "size", "advance", "advance", "aggregations", "aggregations", "emit"], "{problems:?}");
}

#[test]
fn a_processor_restarted_from_its_checkpoints_emits_what_an_uninterrupted_one_does() {
    let settings = [("size", "10s"), ("window", "hopping"), ("advance", "5s"), ("grace", "3s"), ("aggregations", "count,max(v)")];
    let mut next = seeded(7);
    let input: Vec<Record> = (0..2_000)
        .map(|n| {
            let key = format!("k{}", next() % 17);
            let time = n * 100 - (next() % 2_500) as i64;
            Record { value: Some(json!({"v": next() % 1000}).to_string().into_bytes()), ..keyed(&key, (next() % 3) as i32, time) }
        })
        .collect();
    let build = || Aggregate::new(&options(&settings)).unwrap();
    let (straight, straight_state) = run_with_restarts(build, &input, 37, &[]);
    let (restarted, restarted_state) = run_with_restarts(build, &input, 37, &[1, 5, 6, 20, 33, 50]);
    assert!(straight.len() > 500, "{} results", straight.len());
    assert_eq!(restarted, straight);
    assert_eq!(restarted_state.0, straight_state.0);
}

#[test]
fn having_emits_only_the_windows_that_meet_it_a_count_per_card_above_n() {
    let settings = options(&[("size", "1m"), ("group_by", "card"), ("having", "payments >= 3"), ("aggregations", "payments=count")]);
    let mut aggregate = Aggregate::new(&settings).unwrap();
    let mut out = Processed::default();
    let payment = |card: &str, time: i64| valued(json!({"card": card}), time);
    let input = vec![payment("c1", 1_000), payment("c2", 2_000), payment("c1", 3_000), payment("c1", 4_000), payment("c2", 5_000)];
    aggregate.process(input, 0, &mut out);
    aggregate.process(vec![payment("c3", 60_000)], 0, &mut out);
    assert_eq!(
        results(&out.records),
        vec![json!({"card": "c1", "window_start": "1970-01-01T00:00:00.000Z", "window_end": "1970-01-01T00:01:00.000Z", "payments": 3})]
    );
    let problems = |having: &str| Aggregate::new(&options(&[("size", "1m"), ("having", having)])).err().unwrap()[0].1.clone();
    assert_eq!(problems("total > 3"), "\"total\" is not one of the aggregations (count)");
    assert_eq!(problems("count > many"), "\"many\" is not a number");
    assert!(problems("count").contains("must be `<aggregation> <op> <number>`"));
}

#[test]
fn state_built_under_other_options_is_refused_at_restore_with_what_to_do() {
    let build = |size: &str, grace: &str| Aggregate::new(&options(&[("size", size), ("grace", grace)])).unwrap();
    let mut aggregate = build("1m", "0s");
    aggregate.process(vec![keyed("k", 0, 1_000)], 0, &mut Processed::default());
    let mut durable = Durable::default();
    durable.apply(aggregate.take_changes());
    // grace shapes no state: taken back; nor does an aggregation's name.
    build("1m", "30s").restore(durable.entries()).unwrap();
    Aggregate::new(&options(&[("size", "1m"), ("aggregations", "records=count")])).unwrap().restore(durable.entries()).unwrap();
    let refused = build("5m", "0s").restore(durable.entries()).err().unwrap();
    assert!(refused.starts_with("its options changed since its state was stored"), "{refused}");
    assert!(
        refused.contains("\"size\":60000") && refused.contains("\"size\":300000") && refused.contains("reset its offsets"),
        "{refused}"
    );
}

#[test]
fn grouping_by_fields_waits_for_every_partition_and_then_no_longer_for_a_quiet_one() {
    let mut aggregate = Aggregate::new(&options(&[("size", "10s"), ("group_by", "site"), ("wall_clock_timeout", "1m")])).unwrap();
    aggregate.assign(&[0, 1], 0);
    let reading = |partition: i32, time: i64| Record { partition: Some(partition), ..valued(json!({"site": "north"}), time) };
    let mut out = Processed::default();
    // Partition 0 is read a minute ahead of partition 1, as one batch per partition
    // reads a backlog: partition 1's records are not late, every window counts both.
    aggregate.process((0..6).map(|second| reading(0, second * 10_000 + 1)).collect(), 1_000, &mut out);
    assert!(out.records.is_empty(), "partition 1 has not been read yet: {:?}", results(&out.records));
    aggregate.process((0..6).map(|second| reading(1, second * 10_000 + 2)).collect(), 2_000, &mut out);
    assert!(out.late.is_empty(), "{:?}", out.late);
    let counts: Vec<u64> = results(&out.records).iter().map(|value| value["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![2; 5], "the five windows both partitions passed, each with a record of both");
    // Partition 1 falls quiet: after the wall-clock timeout it holds nothing back.
    aggregate.process(vec![reading(0, 70_001)], 30_000, &mut out);
    assert_eq!(out.records.len(), 5, "partition 1 was heard 28 s ago");
    aggregate.process(vec![reading(0, 80_001)], 62_001, &mut out);
    let closed: Vec<String> = results(&out.records[5..]).iter().map(|value| value["window_start"].as_str().unwrap().to_owned()).collect();
    assert_eq!(closed, vec!["1970-01-01T00:00:50.000Z", "1970-01-01T00:01:10.000Z"], "nothing fell in the minute's first ten seconds");
}

#[test]
fn a_session_holds_a_groups_records_less_than_a_gap_apart_and_closes_a_gap_after_its_last() {
    let settings = options(&[
        ("window", "session"),
        ("gap", "10s"),
        ("grace", "10s"),
        ("aggregations", "count,sum(v),min(v),max(v),first(v),last(v),distinct_count(v)"),
    ]);
    let mut aggregate = Aggregate::new(&settings).unwrap();
    let reading = |key: &str, v: i64, time: i64| Record { value: Some(json!({"v": v}).to_string().into_bytes()), ..keyed(key, 0, time) };
    let mut out = Processed::default();
    // a: 0 s and 15 s are two sessions until 8 s bridges them; b: one session at 3 s.
    aggregate.process(vec![reading("a", 5, 0), reading("b", 1, 3_000), reading("a", 7, 15_000)], 0, &mut out);
    assert!(out.records.is_empty());
    aggregate.process(vec![reading("a", 2, 8_000)], 0, &mut out);
    // Stream time 24 s: b's session (last 3 s) closed at 23 s; a's (last 15 s) is open
    // until 35 s.
    aggregate.process(vec![reading("c", 0, 24_000)], 0, &mut out);
    assert_eq!(
        results(&out.records),
        vec![json!({"key": "b", "window_start": "1970-01-01T00:00:03.000Z", "window_end": "1970-01-01T00:00:03.000Z",
            "count": 1, "sum_v": 1, "min_v": 1, "max_v": 1, "first_v": 1, "last_v": 1, "distinct_count_v": 1})]
    );
    aggregate.process(vec![reading("c", 0, 34_999)], 0, &mut out);
    assert_eq!(out.records.len(), 1);
    aggregate.process(vec![reading("c", 0, 35_000)], 0, &mut out);
    assert_eq!(
        results(&out.records)[1],
        json!({"key": "a", "window_start": "1970-01-01T00:00:00.000Z", "window_end": "1970-01-01T00:00:15.000Z",
            "count": 3, "sum_v": 14, "min_v": 2, "max_v": 7, "first_v": 5, "last_v": 7, "distinct_count_v": 3})
    );
    assert_eq!(out.records[1].key.as_deref(), Some(b"a@1970-01-01T00:00:00.000Z".as_slice()));
    // Late: b at 10 s would start a session closed already (10 + 10 + 10 <= 35 s).
    // c at 30 s joins c's open session (24 s, closing at 44 s).
    aggregate.process(vec![reading("b", 1, 10_000), reading("c", 1, 30_000)], 0, &mut out);
    assert_eq!(out.late.len(), 1, "{:?}", out.late);
    assert_eq!(out.records.len(), 2);
    // a at 20 s is less than a gap after a's emitted session (last record 15 s): late.
    aggregate.process(vec![reading("a", 1, 20_000)], 0, &mut out);
    assert_eq!(out.late.len(), 2, "{:?}", out.late);
}

#[test]
fn sessions_restarted_from_their_checkpoints_emit_what_an_uninterrupted_run_does() {
    let settings = [("window", "session"), ("gap", "2s"), ("grace", "1s"), ("aggregations", "count,sum(v),max(v)")];
    let mut next = seeded(11);
    // Bursts per key with pauses longer and shorter than the gap, a little out of order.
    let input: Vec<Record> = (0..2_000)
        .map(|n| {
            let key = format!("k{}", next() % 7);
            let time = n * 150 + n / 50 * 3_000 - (next() % 800) as i64;
            Record { value: Some(json!({"v": next() % 100}).to_string().into_bytes()), ..keyed(&key, (next() % 2) as i32, time) }
        })
        .collect();
    let build = || Aggregate::new(&options(&settings)).unwrap();
    let (straight, straight_state) = run_with_restarts(build, &input, 29, &[]);
    let (restarted, restarted_state) = run_with_restarts(build, &input, 29, &[2, 9, 10, 31, 60]);
    assert!(straight.len() > 20, "{} sessions", straight.len());
    assert_eq!(restarted, straight);
    assert_eq!(restarted_state.0, straight_state.0);
    // Every record is in one emitted session or still open (or late).
    let counted: u64 = straight.iter().map(|result| result["count"].as_u64().unwrap()).sum();
    assert!(counted > 1_500 && counted <= 2_000, "{counted}");
}

#[test]
fn session_options_say_what_to_change() {
    let problems = |pairs: &[(&str, &str)]| -> Vec<String> {
        Aggregate::new(&options(pairs)).err().unwrap_or_default().into_iter().map(|(key, message)| format!("{key}: {message}")).collect()
    };
    assert_eq!(
        problems(&[("window", "session")]),
        vec!["gap: is required for session windows: how long without a record ends a session, e.g. 30m"]
    );
    assert_eq!(
        problems(&[("window", "session"), ("gap", "1m"), ("size", "1m")]),
        vec!["size: is for tumbling and hopping windows: a session's length is set by gap"]
    );
    assert_eq!(problems(&[("size", "1m"), ("gap", "1m")]), vec!["gap: is for session windows: set window: session, or leave gap out"]);
    assert_eq!(problems(&[("window", "session"), ("gap", "1m"), ("latest_by", "station")]).len(), 1);
}

#[test]
fn the_shared_clock_never_goes_back_when_a_quiet_partition_returns_or_after_a_restart() {
    let settings = options(&[("size", "10s"), ("group_by", "site"), ("wall_clock_timeout", "1m")]);
    let reading = |partition: i32, site: &str, time: i64| Record { partition: Some(partition), ..valued(json!({"site": site}), time) };
    let mut durable = Durable::default();
    let mut aggregate = Aggregate::new(&settings).unwrap();
    aggregate.assign(&[0, 1], 0);
    let mut out = Processed::default();
    aggregate.process(vec![reading(0, "north", 1_000), reading(1, "north", 2_000)], 1_000, &mut out);
    // Partition 1 falls quiet; a minute later partition 0 alone moves the clock, and
    // north's window closes (north, with nothing open, is forgotten).
    aggregate.process(vec![reading(0, "south", 35_000)], 61_001, &mut out);
    durable.apply(aggregate.take_changes());
    assert_eq!(results(&out.records).len(), 1, "north [0, 10 s) closed: {:?}", results(&out.records));
    // Partition 1 comes back with a record of that window: late, not a second result.
    aggregate.process(vec![reading(1, "north", 3_000)], 61_002, &mut out);
    assert_eq!((out.records.len(), out.late.len()), (1, 1));
    // A restart assigns both partitions again (heard now): the clock stays where it was.
    let mut restarted = Aggregate::new(&settings).unwrap();
    restarted.restore(durable.entries()).unwrap();
    restarted.assign(&[0, 1], 70_000);
    let mut after = Processed::default();
    restarted.process(vec![reading(0, "north", 4_000)], 70_001, &mut after);
    assert_eq!((after.records.len(), after.late.len()), (0, 1), "{:?}", results(&after.records));
}

#[test]
fn a_live_session_stays_open_while_records_come_and_closes_a_timeout_after_its_newest() {
    let settings = options(&[("window", "session"), ("gap", "10s"), ("wall_clock_timeout", "1m")]);
    let mut aggregate = Aggregate::new(&settings).unwrap();
    let mut out = Processed::default();
    aggregate.process(vec![keyed("a", 0, 0)], 0, &mut out);
    aggregate.process(vec![keyed("a", 0, 5_000)], 50_000, &mut out);
    aggregate.fire_timers(70_000, &mut out);
    assert!(out.records.is_empty(), "the newest record came 20 s ago");
    aggregate.fire_timers(110_000, &mut out);
    assert_eq!(results(&out.records)[0]["count"], json!(2));
}

#[test]
fn a_record_touching_a_session_stream_time_closed_is_late_however_the_input_is_batched() {
    let settings = options(&[("window", "session"), ("gap", "10s")]);
    let input = [keyed("a", 0, 0), keyed("b", 0, 25_000), keyed("a", 0, 5_000), keyed("b", 0, 60_000)];
    let mut outcomes = Vec::new();
    for batch in [1, 2, 3, 4] {
        let mut aggregate = Aggregate::new(&settings).unwrap();
        let mut out = Processed::default();
        for chunk in input.chunks(batch) {
            aggregate.process(chunk.to_vec(), 0, &mut out);
        }
        outcomes.push((results(&out.records), out.late.len()));
    }
    assert!(outcomes.iter().all(|outcome| *outcome == outcomes[0]), "{outcomes:?}");
    assert_eq!(outcomes[0].1, 1, "a at 5 s touches a's session, closed at stream time 10 s");
}

#[test]
fn with_updates_a_merged_session_retracts_its_key_and_a_closing_window_gets_its_last_update() {
    let settings = options(&[("window", "session"), ("gap", "10s"), ("grace", "30s"), ("emit", "update")]);
    let mut aggregate = Aggregate::new(&settings).unwrap();
    let mut out = Processed::default();
    aggregate.process(vec![keyed("a", 0, 0)], 0, &mut out);
    aggregate.process(vec![keyed("a", 0, 15_000)], 0, &mut out);
    // 8 s bridges the sessions at 0 s and 15 s: the one at 15 s is retracted.
    aggregate.process(vec![keyed("a", 0, 8_000)], 0, &mut out);
    let keys: Vec<(String, bool)> =
        out.records.iter().map(|record| (String::from_utf8(record.key.clone().unwrap()).unwrap(), record.value.is_some())).collect();
    assert_eq!(
        keys,
        vec![
            ("a@1970-01-01T00:00:00.000Z".to_owned(), true),
            ("a@1970-01-01T00:00:15.000Z".to_owned(), true),
            ("a@1970-01-01T00:00:15.000Z".to_owned(), false),
            ("a@1970-01-01T00:00:00.000Z".to_owned(), true),
        ]
    );
    // A record that changes the session in the batch whose stream time closes it.
    aggregate.process(vec![keyed("a", 0, 16_000), keyed("b", 0, 100_000)], 0, &mut out);
    let last = results(&out.records[4..]);
    assert_eq!(
        last.iter().filter(|value| value["key"] == json!("a")).map(|value| value["count"].clone()).collect::<Vec<_>>(),
        vec![json!(4)]
    );
}

#[test]
fn a_sessions_group_is_kept_two_gaps_after_it_emitted_and_then_forgotten() {
    let settings = options(&[("window", "session"), ("gap", "10s")]);
    let input = [keyed("a", 0, 0), keyed("c", 0, 10_000), keyed("a", 0, 5_000), keyed("c", 0, 19_000), keyed("c", 0, 20_000)];
    let mut outcomes = Vec::new();
    for batch in [1, 2, 3, 5] {
        let mut aggregate = Aggregate::new(&settings).unwrap();
        let mut durable = Durable::default();
        let mut out = Processed::default();
        for chunk in input.chunks(batch) {
            aggregate.process(chunk.to_vec(), 0, &mut out);
            durable.apply(aggregate.take_changes());
        }
        let groups: Vec<Vec<u8>> = durable.0.keys().filter(|(store, _, _)| store == GROUPS).map(|(_, _, key)| key.clone()).collect();
        outcomes.push((results(&out.records), out.late.len(), groups));
    }
    assert!(outcomes.iter().all(|outcome| *outcome == outcomes[0]), "{outcomes:#?}");
    let (emitted, late, groups) = &outcomes[0];
    assert_eq!((emitted.len(), *late), (1, 1), "a's session once; a at 5 s late: {emitted:?}");
    // a emitted [0, 0] and stream time reached 20 s (0 + two gaps): a is forgotten.
    assert_eq!(groups, &vec![b"c".to_vec()]);
}
