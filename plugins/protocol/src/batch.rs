//! The flat byte encoding of a record batch, the only way records cross the
//! WebAssembly boundary between the wasm-connect host and its plugins.
//!
//! A batch is one `list<u8>` rather than a WIT `list<record>`: lifting nested lists
//! costs about 0.6 µs per record in wasmtime, this buffer about 0.1 µs (see
//! BENCHMARKS.md). Both sides link this module, so the layout is written once.
//!
//! Layout, all integers little-endian:
//! ```text
//! batch   := "WCB1" count:u32 record{count}
//! record  := timestamp:i64 partition:i32 offset:i64 topic:bytes key:opt value:opt
//!            header_count:u32 (name:bytes value:opt){header_count}
//! bytes   := len:u32 data{len}
//! opt     := len:u32 data{len}        (len = u32::MAX means absent)
//! ```
//! `timestamp = i64::MIN`, `partition = -1` and `offset = -1` mean "not set".

use std::fmt;

const MAGIC: &[u8; 4] = b"WCB1";
const ABSENT: u32 = u32::MAX;

/// One record, owned. Sources fill `topic` (empty: the connector's topic), `key`,
/// `value`, `headers` and `timestamp`; the host fills `partition` and `offset` for sinks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Topic the record belongs to; empty means the connector's configured topic.
    pub topic: String,
    /// Partition within the topic, when known.
    pub partition: Option<i32>,
    /// Offset within the partition, when known.
    pub offset: Option<i64>,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Record key; decides the partition.
    pub key: Option<Vec<u8>>,
    /// Record payload; none is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in order; names may repeat.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record borrowed from an encoded batch, without copying its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// See [`Record::topic`].
    pub topic: &'a str,
    /// See [`Record::partition`].
    pub partition: Option<i32>,
    /// See [`Record::offset`].
    pub offset: Option<i64>,
    /// See [`Record::timestamp`].
    pub timestamp: Option<i64>,
    /// See [`Record::key`].
    pub key: Option<&'a [u8]>,
    /// See [`Record::value`].
    pub value: Option<&'a [u8]>,
    /// See [`Record::headers`].
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

impl RecordView<'_> {
    /// Copies the borrowed record into an owned one.
    pub fn to_owned(&self) -> Record {
        Record {
            topic: self.topic.to_owned(),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self.headers.iter().map(|(name, value)| ((*name).to_owned(), value.map(<[u8]>::to_vec))).collect(),
        }
    }
}

/// Why a buffer is not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte position where decoding stopped.
    pub position: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "invalid record batch at byte {}: {}", self.position, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// Builds an encoded batch record by record.
#[derive(Debug, Clone)]
pub struct BatchWriter {
    buffer: Vec<u8>,
    count: u32,
}

impl Default for BatchWriter {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl BatchWriter {
    /// An empty batch with room for `bytes` bytes before reallocating.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buffer = Vec::with_capacity(bytes + 8);
        buffer.extend_from_slice(MAGIC);
        buffer.extend_from_slice(&0u32.to_le_bytes());
        Self { buffer, count: 0 }
    }

    /// Number of records written so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when no record was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends an owned record.
    pub fn push(&mut self, record: &Record) {
        self.push_parts(
            &record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            record.headers.iter().map(|(name, value)| (name.as_str(), value.as_deref())),
        );
    }

    /// Appends a record with a key, a value and a timestamp, and nothing else: what
    /// most sources produce.
    pub fn push_keyed(&mut self, timestamp: Option<i64>, key: Option<&[u8]>, value: &[u8]) {
        self.push_parts("", None, None, timestamp, key, Some(value), std::iter::empty());
    }

    /// Appends an item the source could not convert: the host sends it to the
    /// connector's dead-letter topic with `reason` instead of writing it to the topic
    /// (see [`crate::DEAD_LETTER_REASON_HEADER`]). `value` is the item as received.
    pub fn push_dead_letter(&mut self, key: Option<&[u8]>, value: &[u8], reason: &str) {
        let headers = [(crate::DEAD_LETTER_REASON_HEADER, Some(reason.as_bytes()))];
        self.push_parts("", None, None, None, key, Some(value), headers.into_iter());
    }

    /// Appends a borrowed record.
    pub fn push_view(&mut self, record: &RecordView<'_>) {
        self.push_parts(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.key,
            record.value,
            record.headers.iter().copied(),
        );
    }

    /// Appends a record given field by field, so callers need not build a [`Record`].
    #[allow(clippy::too_many_arguments)]
    pub fn push_parts<'h>(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        offset: Option<i64>,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl ExactSizeIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) {
        let buffer = &mut self.buffer;
        buffer.extend_from_slice(&timestamp.unwrap_or(i64::MIN).to_le_bytes());
        buffer.extend_from_slice(&partition.unwrap_or(-1).to_le_bytes());
        buffer.extend_from_slice(&offset.unwrap_or(-1).to_le_bytes());
        put_bytes(buffer, topic.as_bytes());
        put_optional(buffer, key);
        put_optional(buffer, value);
        buffer.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        for (name, header_value) in headers {
            put_bytes(buffer, name.as_bytes());
            put_optional(buffer, header_value);
        }
        self.count += 1;
    }

    /// Finishes the batch and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buffer[4..8].copy_from_slice(&self.count.to_le_bytes());
        self.buffer
    }
}

fn put_bytes(buffer: &mut Vec<u8>, data: &[u8]) {
    buffer.extend_from_slice(&(data.len() as u32).to_le_bytes());
    buffer.extend_from_slice(data);
}

fn put_optional(buffer: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        Some(data) => put_bytes(buffer, data),
        None => buffer.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Encodes owned records into one batch.
pub fn encode(records: &[Record]) -> Vec<u8> {
    let size = records
        .iter()
        .map(|record| 40 + record.topic.len() + record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len))
        .sum();
    let mut writer = BatchWriter::with_capacity(size);
    for record in records {
        writer.push(record);
    }
    writer.finish()
}

/// The fewest bytes one record takes: timestamp, partition, offset, and the lengths
/// of topic, key, value and the header count.
const MIN_RECORD_BYTES: usize = 8 + 4 + 8 + 4 + 4 + 4 + 4;

/// Decodes a whole batch into borrowed records.
pub fn decode(batch: &[u8]) -> Result<Vec<RecordView<'_>>, DecodeError> {
    let mut reader = BatchReader::new(batch)?;
    // The count was checked against the bytes: it bounds the reservation.
    let mut records = Vec::with_capacity(reader.remaining());
    while let Some(record) = reader.next_record()? {
        records.push(record);
    }
    Ok(records)
}

/// Decodes a batch one record at a time.
#[derive(Debug)]
pub struct BatchReader<'a> {
    data: &'a [u8],
    position: usize,
    remaining: u32,
}

impl<'a> BatchReader<'a> {
    /// Checks the header of `data`.
    pub fn new(data: &'a [u8]) -> Result<Self, DecodeError> {
        if data.len() < 8 || &data[..4] != MAGIC {
            return Err(DecodeError { position: 0, reason: "missing WCB1 header" });
        }
        let count = u32::from_le_bytes(data[4..8].try_into().expect("four bytes"));
        // A count the bytes cannot hold is refused before any record is read.
        if count as usize > (data.len() - 8) / MIN_RECORD_BYTES {
            return Err(DecodeError { position: 4, reason: "the header claims more records than the batch's bytes can hold" });
        }
        Ok(Self { data, position: 8, remaining: count })
    }

    /// Records not yet read.
    pub fn remaining(&self) -> usize {
        self.remaining as usize
    }

    /// The next record, or none at the end of the batch.
    pub fn next_record(&mut self) -> Result<Option<RecordView<'a>>, DecodeError> {
        if self.remaining == 0 {
            return if self.position == self.data.len() { Ok(None) } else { Err(self.error("trailing bytes after the last record")) };
        }
        let timestamp = i64::from_le_bytes(self.take_array()?);
        let partition = i32::from_le_bytes(self.take_array()?);
        let offset = i64::from_le_bytes(self.take_array()?);
        let topic = self.take_str()?;
        let key = self.take_optional()?;
        let value = self.take_optional()?;
        let header_count = u32::from_le_bytes(self.take_array()?);
        let mut headers = Vec::with_capacity(header_count.min(64) as usize);
        for _ in 0..header_count {
            let name = self.take_str()?;
            headers.push((name, self.take_optional()?));
        }
        self.remaining -= 1;
        Ok(Some(RecordView {
            topic,
            partition: (partition >= 0).then_some(partition),
            offset: (offset >= 0).then_some(offset),
            timestamp: (timestamp != i64::MIN).then_some(timestamp),
            key,
            value,
            headers,
        }))
    }

    fn error(&self, reason: &'static str) -> DecodeError {
        DecodeError { position: self.position, reason }
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.position.checked_add(length).filter(|end| *end <= self.data.len()).ok_or_else(|| self.error("truncated batch"))?;
        let slice = &self.data[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn take_optional(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let length = u32::from_le_bytes(self.take_array()?);
        if length == ABSENT { Ok(None) } else { self.take(length as usize).map(Some) }
    }

    fn take_str(&mut self) -> Result<&'a str, DecodeError> {
        let length = u32::from_le_bytes(self.take_array()?);
        let bytes = self.take(length as usize)?;
        std::str::from_utf8(bytes).map_err(|_| self.error("a topic or header name is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record {
                topic: "flights".into(),
                partition: Some(3),
                offset: Some(42),
                timestamp: Some(1_700_000_000_000),
                key: Some(b"4ca7b5".to_vec()),
                value: Some(br#"{"lat":1.5}"#.to_vec()),
                headers: vec![("trace".into(), Some(b"abc".to_vec())), ("empty".into(), None)],
            },
            Record::default(),
            Record { value: Some(Vec::new()), ..Record::default() },
        ]
    }

    #[test]
    fn round_trips_every_field_including_absent_and_empty_values() {
        let records = sample();
        let encoded = encode(&records);
        let decoded: Vec<Record> = decode(&encoded).unwrap().iter().map(RecordView::to_owned).collect();
        assert_eq!(decoded, records);
    }

    #[test]
    fn rejects_truncated_and_padded_batches() {
        let encoded = encode(&sample());
        let truncated = decode(&encoded[..encoded.len() - 1]).unwrap_err();
        assert_eq!(truncated.reason, "truncated batch");
        let mut padded = encoded.clone();
        padded.push(0);
        assert_eq!(decode(&padded).unwrap_err().reason, "trailing bytes after the last record");
        assert_eq!(decode(b"nope").unwrap_err().reason, "missing WCB1 header");
    }

    #[test]
    fn a_count_the_bytes_cannot_hold_is_refused_before_reading() {
        let mut encoded = encode(&sample());
        encoded[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = decode(&encoded).unwrap_err();
        assert_eq!((error.position, error.reason), (4, "the header claims more records than the batch's bytes can hold"));
        // One more than the records present, but within what the bytes could hold: the
        // reader runs out of bytes instead.
        let mut one_more = encode(&sample());
        let claimed = sample().len() as u32 + 1;
        one_more[4..8].copy_from_slice(&claimed.to_le_bytes());
        one_more.extend_from_slice(&[0; MIN_RECORD_BYTES - 1]);
        assert_eq!(decode(&one_more).unwrap_err().reason, "truncated batch");
    }

    #[test]
    fn a_huge_declared_length_is_an_error_not_a_panic() {
        let mut encoded = encode(&sample()[..1]);
        // The topic length field sits after timestamp, partition and offset.
        encoded[8 + 20..8 + 24].copy_from_slice(&(u32::MAX - 1).to_le_bytes());
        assert_eq!(decode(&encoded).unwrap_err().reason, "truncated batch");
    }
}
