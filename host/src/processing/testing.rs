//! What the processors' unit tests share: records, options, and a checkpointing
//! transport's view of the state, to restart a processor from its checkpoints alone.

use std::collections::BTreeMap;

use serde_json::Value;
use wasm_connect_protocol::Record;

use super::{Processed, Processor};
use crate::transport::{StateChange, StateEntry};

/// A seeded generator (a linear congruential one) for reproducible test inputs.
pub fn seeded(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    }
}

pub fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
}

pub fn keyed(key: &str, partition: i32, time: i64) -> Record {
    Record {
        topic: "in".into(),
        partition: Some(partition),
        key: Some(key.as_bytes().to_vec()),
        value: Some(b"{}".to_vec()),
        timestamp: Some(time),
        ..Record::default()
    }
}

pub fn valued(value: Value, time: i64) -> Record {
    Record {
        topic: "in".into(),
        partition: Some(0),
        value: Some(value.to_string().into_bytes()),
        timestamp: Some(time),
        ..Record::default()
    }
}

pub fn results(records: &[Record]) -> Vec<Value> {
    records.iter().map(|record| serde_json::from_slice(record.value.as_deref().unwrap()).unwrap()).collect()
}

/// The state as a checkpointing transport keeps it.
#[derive(Default)]
pub struct Durable(pub BTreeMap<(String, i32, Vec<u8>), Vec<u8>>);

impl Durable {
    pub fn apply(&mut self, changes: Vec<StateChange>) {
        for change in changes {
            let key = (change.store, change.partition, change.key);
            match change.value {
                Some(value) => self.0.insert(key, value),
                None => self.0.remove(&key),
            };
        }
    }

    pub fn entries(&self) -> Vec<StateEntry> {
        self.0
            .iter()
            .map(|((store, partition, key), value)| StateEntry {
                store: store.clone(),
                partition: *partition,
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }
}

/// Runs `input` in batches of `batch`, checkpointing after each and, at the batch
/// numbers in `restarts`, starting a new processor from the checkpoint alone; the
/// results emitted and the state left.
pub fn run_with_restarts<P: Processor>(build: impl Fn() -> P, input: &[Record], batch: usize, restarts: &[usize]) -> (Vec<Value>, Durable) {
    let mut durable = Durable::default();
    let mut processor = build();
    let mut emitted = Vec::new();
    for (number, chunk) in input.chunks(batch).enumerate() {
        if restarts.contains(&number) {
            processor = build();
            processor.restore(durable.entries()).unwrap();
        }
        let mut out = Processed::default();
        processor.process(chunk.to_vec(), 0, &mut out);
        durable.apply(processor.take_changes());
        emitted.extend(results(&out.records));
    }
    (emitted, durable)
}
