//! For sinks that write a batch in bulk and learn only afterwards which records the
//! store refused. The host's contract is one bad record at a time: a sink returns
//! `BadRecord`, the host dead-letters that record and calls `write` again with the
//! rest. [`PartialWrites`] remembers across those calls which records are already
//! stored and which were refused, so a retried batch is not written twice and every
//! refused record is reported without another request.

use std::collections::{HashMap, HashSet};

use crate::{Error, RecordView};

/// Where a record sits in its topic: what identifies it across the host's calls.
type Coordinates = (String, i32, i64);

fn coordinates(record: &RecordView<'_>) -> Option<Coordinates> {
    Some((record.topic.to_owned(), record.partition?, record.offset?))
}

/// What is known of the batch in hand.
#[derive(Debug, Default)]
pub struct PartialWrites {
    written: HashSet<Coordinates>,
    refused: HashMap<Coordinates, String>,
}

impl PartialWrites {
    /// The indices of the records still to write. Fails with the first record that
    /// the store refused in an earlier call for this batch.
    pub fn to_write(&mut self, records: &[RecordView<'_>]) -> Result<Vec<usize>, Error> {
        if !self.refused.is_empty() {
            for (index, record) in records.iter().enumerate() {
                if let Some(reason) = coordinates(record).and_then(|key| self.refused.remove(&key)) {
                    return Err(Error::BadRecord { index: index as u32, reason });
                }
            }
        }
        Ok((0..records.len()).filter(|index| coordinates(&records[*index]).is_none_or(|key| !self.written.contains(&key))).collect())
    }

    /// Records the outcome of writing `attempted` (indices into `records`), of which
    /// the store refused `refused` (index, reason). Ok when nothing was refused; else
    /// the first refused record, the others kept for the next calls.
    pub fn settle(&mut self, records: &[RecordView<'_>], attempted: &[usize], mut refused: Vec<(usize, String)>) -> Result<(), Error> {
        if refused.is_empty() {
            self.written.clear();
            self.refused.clear();
            return Ok(());
        }
        refused.sort_by_key(|(index, _)| *index);
        let refused_indices: HashSet<usize> = refused.iter().map(|(index, _)| *index).collect();
        for index in attempted.iter().filter(|index| !refused_indices.contains(index)) {
            self.written.extend(coordinates(&records[*index]));
        }
        let (first, reason) = refused.remove(0);
        for (index, reason) in refused {
            if let Some(key) = coordinates(&records[index]) {
                self.refused.insert(key, reason);
            }
        }
        Err(Error::BadRecord { index: first as u32, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(offsets: &[i64]) -> Vec<RecordView<'static>> {
        offsets
            .iter()
            .map(|offset| RecordView {
                topic: "t",
                partition: Some(0),
                offset: Some(*offset),
                timestamp: None,
                key: None,
                value: Some(b"{}"),
                headers: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn each_refused_record_is_reported_once_and_nothing_is_written_twice() {
        let mut partial = PartialWrites::default();
        let first = batch(&[0, 1, 2, 3]);
        let attempted = partial.to_write(&first).unwrap();
        assert_eq!(attempted, vec![0, 1, 2, 3]);
        let outcome = partial.settle(&first, &attempted, vec![(3, "bad three".into()), (1, "bad one".into())]);
        assert_eq!(outcome, Err(Error::BadRecord { index: 1, reason: "bad one".into() }));
        // The host dead-letters offset 1 and calls again with 0, 2, 3.
        let second = batch(&[0, 2, 3]);
        assert_eq!(partial.to_write(&second), Err(Error::BadRecord { index: 2, reason: "bad three".into() }));
        // Then with 0, 2: both were written by the first request.
        let third = batch(&[0, 2]);
        let attempted = partial.to_write(&third).unwrap();
        assert!(attempted.is_empty());
        assert_eq!(partial.settle(&third, &attempted, Vec::new()), Ok(()));
        // A new batch starts clean.
        assert_eq!(partial.to_write(&batch(&[0])).unwrap(), vec![0]);
    }
}
