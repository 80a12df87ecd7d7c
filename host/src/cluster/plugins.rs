//! Plugins follow: a plugin uploaded to one host of a cluster runs on every host.
//!
//! The host that takes the upload writes the component's bytes to the cluster's
//! compacted plugins topic in chunks of [`CHUNK_BYTES`] (brokers refuse messages of a
//! few MiB), each keyed `<name>@<version>/<digest>/<index>`, then its metadata to the
//! config topic as `plugin-<name>@<version>`: `{"digest", "size", "chunks"}`, or
//! `{"deleted": true}` once it is removed. Every host follows the config topic; one
//! that lacks that version reads its chunks back, checks their size and SHA-256
//! against the record, and loads the component as if it had been uploaded to it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::runtime::sha256_hex;
use crate::transport::{KafkaTransport, Transport};

/// The prefix of plugin records in the config topic.
pub const PLUGIN_KEY: &str = "plugin-";
/// The size of each chunk of a plugin's bytes: well under the 1 MiB that brokers
/// accept in one message by default.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// A `plugin-<name>@<version>` record of the config topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SharedPlugin {
    /// The component is in the plugins topic.
    Published {
        /// The lowercase hex SHA-256 of its bytes.
        digest: String,
        /// Its size in bytes.
        size: u64,
        /// How many chunks hold it.
        chunks: u32,
        /// Where in the plugins topic its chunks were written, so that a host reads
        /// only that stretch; none when they went to several partitions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        span: Option<Span>,
    },
    /// It was removed from the cluster.
    Deleted {
        /// Always true.
        deleted: bool,
    },
}

/// The offsets `from..to` of one partition of the plugins topic that hold a
/// component's chunks, as written (compaction keeps offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// The partition.
    pub partition: i32,
    /// The first chunk's offset.
    pub from: i64,
    /// One past the last chunk's offset.
    pub to: i64,
}

impl SharedPlugin {
    /// The record of a component of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        SharedPlugin::Published {
            digest: sha256_hex(bytes),
            size: bytes.len() as u64,
            chunks: bytes.len().div_ceil(CHUNK_BYTES) as u32,
            span: None,
        }
    }

    /// Whether both records name the same component (wherever its chunks were
    /// written), or both say it was deleted.
    pub fn same_component(&self, other: &SharedPlugin) -> bool {
        match (self, other) {
            (
                SharedPlugin::Published { digest, size, chunks, .. },
                SharedPlugin::Published { digest: other_digest, size: other_size, chunks: other_chunks, .. },
            ) => (digest, size, chunks) == (other_digest, other_size, other_chunks),
            (SharedPlugin::Deleted { .. }, SharedPlugin::Deleted { .. }) => true,
            _ => false,
        }
    }

    /// The record a config topic value holds, checked: a digest that is one, a size
    /// within `max_bytes`, as many chunks as that size takes.
    pub fn parse(document: &str, max_bytes: u64) -> Result<Self, String> {
        let mut record: SharedPlugin = serde_json::from_str(document).map_err(|error| format!("it is not a plugin record: {error}"))?;
        if record == (SharedPlugin::Deleted { deleted: false }) {
            return Err("it is not a plugin record: \"deleted\" is false".to_owned());
        }
        if let SharedPlugin::Published { digest, size, chunks, span } = &mut record {
            if digest.len() != 64 || !digest.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)) {
                return Err("its digest is not a lowercase hex SHA-256".to_owned());
            }
            if *size == 0 || *size > max_bytes {
                return Err(format!(
                    "its size, {size} bytes, is not between 1 byte and plugins.max_upload_mib ({} MiB): raise that setting on this host",
                    max_bytes >> 20
                ));
            }
            if u64::from(*chunks) != size.div_ceil(CHUNK_BYTES as u64) {
                return Err(format!("{chunks} chunks cannot hold {size} bytes in chunks of {CHUNK_BYTES}"));
            }
            // A span that cannot hold the chunks is no reason to refuse the component:
            // the whole topic is read instead.
            if let Some(Span { partition, from, to }) = *span
                && (partition < 0 || from < 0 || to.checked_sub(from).is_none_or(|length| length < i64::from(*chunks)))
            {
                tracing::warn!(
                    partition,
                    from,
                    to,
                    chunks = *chunks,
                    "A plugin record's span cannot hold its chunks; the whole plugins topic is read for it."
                );
                *span = None;
            }
        }
        Ok(record)
    }

    /// The digest of a published component.
    pub fn digest(&self) -> Option<&str> {
        match self {
            SharedPlugin::Published { digest, .. } => Some(digest),
            SharedPlugin::Deleted { .. } => None,
        }
    }
}

/// `name@version` of a plugin record's key (after [`PLUGIN_KEY`]), when both keep to
/// their alphabets.
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let (name, version) = reference.split_once('@')?;
    (crate::names::check_name(name).is_ok() && crate::names::check_version(version).is_ok()).then_some((name, version))
}

/// The key of chunk `index` of `name@version` with `digest`.
fn chunk_key(name: &str, version: &str, digest: &str, index: u32) -> String {
    format!("{name}@{version}/{digest}/{index}")
}

/// The cluster's plugins topic.
#[derive(Clone)]
pub struct PluginShare {
    transport: KafkaTransport,
    topic: String,
    /// `plugins.max_upload_mib`: the largest component this host takes.
    max_bytes: u64,
}

impl PluginShare {
    /// The plugins topic `topic` of the cluster `transport` reaches, for components of
    /// at most `max_bytes`.
    pub fn new(transport: KafkaTransport, topic: &str, max_bytes: u64) -> Self {
        PluginShare { transport, topic: topic.to_owned(), max_bytes }
    }

    /// The largest component this host takes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Writes the chunks of `name@version` (`bytes`) and returns the record that
    /// names them, once the cluster acknowledged every one.
    pub async fn publish(&self, name: &str, version: &str, bytes: &[u8]) -> Result<SharedPlugin, String> {
        self.transport
            .ensure_topics(std::slice::from_ref(&self.topic))
            .await
            .map_err(|error| format!("cannot create the plugins topic {}: {error}", self.topic))?;
        let SharedPlugin::Published { digest, size, chunks, .. } = SharedPlugin::of(bytes) else { unreachable!("a published record") };
        let writes = bytes.chunks(CHUNK_BYTES).enumerate().map(|(index, chunk)| {
            let key = chunk_key(name, version, &digest, index as u32);
            async move { self.transport.write_compacted_bytes(&self.topic, None, &key, Some(chunk)).await }
        });
        let positions = futures::future::try_join_all(writes)
            .await
            .map_err(|error| format!("cannot write the plugin's bytes to the plugins topic {}: {error}", self.topic))?;
        let partitions: BTreeSet<i32> = positions.iter().map(|position| position.partition).collect();
        let span = match partitions.into_iter().collect::<Vec<_>>()[..] {
            [partition] if positions.iter().all(|position| position.offset >= 0) => {
                let offsets = positions.iter().map(|position| position.offset);
                Some(Span { partition, from: offsets.clone().min().unwrap_or(0), to: offsets.max().map_or(0, |last| last + 1) })
            }
            _ => None,
        };
        Ok(SharedPlugin::Published { digest, size, chunks, span })
    }

    /// Reads the component `record` names back from the plugins topic and checks it.
    pub async fn fetch(&self, name: &str, version: &str, record: &SharedPlugin) -> Result<Vec<u8>, String> {
        let SharedPlugin::Published { digest, size, chunks, span } = record.clone() else {
            return Err("the plugin was deleted".to_owned());
        };
        // Only the stretch its record names, first; the whole topic if the chunks are
        // not all there (written again since, by a repair or another host).
        if let Some(span) = span {
            match assemble(self.read_chunks(name, version, &digest, chunks, Some(span)).await?, &digest, size, chunks) {
                Ok(bytes) => return Ok(bytes),
                Err(reason) => tracing::info!(
                    plugin = name,
                    version,
                    %reason,
                    "A plugin's chunks were not all where its record says (written again since?); reading the whole plugins topic."
                ),
            }
        }
        assemble(self.read_chunks(name, version, &digest, chunks, None).await?, &digest, size, chunks)
    }

    /// The latest value of each chunk of `name@version` with `digest` in `span` of the
    /// plugins topic, or in all of it.
    async fn read_chunks(
        &self,
        name: &str,
        version: &str,
        digest: &str,
        chunks: u32,
        span: Option<Span>,
    ) -> Result<BTreeMap<u32, Option<Vec<u8>>>, String> {
        let prefix = format!("{name}@{version}/{digest}/");
        let stretch = span.map(|span| (span.partition, span.from..span.to));
        self.transport
            .scan(&self.topic, "the plugins", stretch, BTreeMap::new(), move |found: &mut BTreeMap<u32, Option<Vec<u8>>>, key, value| {
                let index = key.strip_prefix(prefix.as_bytes()).and_then(|index| std::str::from_utf8(index).ok()?.parse::<u32>().ok());
                // Only this component's chunks are kept, each at most a chunk long.
                if let Some(index) = index.filter(|index| *index < chunks) {
                    found.insert(index, value.filter(|value| value.len() <= CHUNK_BYTES).map(<[u8]>::to_vec));
                }
            })
            .await
            .map_err(|error| format!("cannot read the plugins topic {}: {error}", self.topic))
    }

    /// Removes the chunks of `name@version` that `record` names from the plugins
    /// topic (tombstones, which compaction acts on).
    pub async fn forget(&self, name: &str, version: &str, record: &SharedPlugin) -> Result<(), String> {
        let SharedPlugin::Published { digest, chunks, .. } = record else { return Ok(()) };
        let writes = (0..*chunks).map(|index| {
            let key = chunk_key(name, version, digest, index);
            async move { self.transport.write_compacted_bytes(&self.topic, None, &key, None).await }
        });
        futures::future::try_join_all(writes)
            .await
            .map(|_| ())
            .map_err(|error| format!("cannot remove the plugin's bytes from the plugins topic {}: {error}", self.topic))
    }
}

/// The component whose chunks (latest value of each index; none for a tombstone or
/// an oversized chunk) were `found`, checked against the record's `digest`, `size`
/// and `chunks`.
fn assemble(found: BTreeMap<u32, Option<Vec<u8>>>, digest: &str, size: u64, chunks: u32) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    for index in 0..chunks {
        match found.get(&index) {
            Some(Some(chunk)) => bytes.extend_from_slice(chunk),
            Some(None) => return Err(format!("chunk {index} of {chunks} was removed from the plugins topic or is not a chunk")),
            None => return Err(format!("chunk {index} of {chunks} is missing from the plugins topic")),
        }
    }
    if bytes.len() as u64 != size {
        return Err(format!("its chunks hold {} bytes, not the {size} its record says", bytes.len()));
    }
    let actual = sha256_hex(&bytes);
    if actual != digest {
        return Err(format!("its bytes have the SHA-256 {actual}, not the {digest} its record says"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{CHUNK_BYTES, SharedPlugin, Span, assemble, parse_reference};

    fn split(bytes: &[u8]) -> BTreeMap<u32, Option<Vec<u8>>> {
        bytes.chunks(CHUNK_BYTES).enumerate().map(|(index, chunk)| (index as u32, Some(chunk.to_vec()))).collect()
    }

    #[test]
    fn a_component_comes_back_whole_from_its_chunks_or_not_at_all() {
        let bytes: Vec<u8> = (0..CHUNK_BYTES * 2 + 10).map(|index| (index % 251) as u8).collect();
        let record = SharedPlugin::of(&bytes);
        let SharedPlugin::Published { digest, size, chunks, .. } = record.clone() else { unreachable!() };
        assert_eq!((size, chunks), (bytes.len() as u64, 3));
        assert_eq!(assemble(split(&bytes), &digest, size, chunks).unwrap(), bytes);
        let mut missing = split(&bytes);
        missing.remove(&1);
        assert!(assemble(missing, &digest, size, chunks).unwrap_err().contains("chunk 1 of 3 is missing"));
        let mut removed = split(&bytes);
        removed.insert(2, None);
        assert!(assemble(removed, &digest, size, chunks).unwrap_err().contains("chunk 2 of 3 was removed"));
        let mut corrupted = split(&bytes);
        corrupted.get_mut(&0).unwrap().as_mut().unwrap()[7] ^= 1;
        assert!(assemble(corrupted, &digest, size, chunks).unwrap_err().contains("SHA-256"));
        let mut short = split(&bytes);
        short.get_mut(&2).unwrap().as_mut().unwrap().pop();
        assert!(assemble(short, &digest, size, chunks).unwrap_err().contains("not the"));
    }

    #[test]
    fn plugin_records_are_checked_before_anything_is_read() {
        let max = 4 * 1024 * 1024;
        let record = SharedPlugin::of(b"component");
        let document = serde_json::to_string(&record).unwrap();
        assert_eq!(SharedPlugin::parse(&document, max).unwrap(), record);
        let deleted = SharedPlugin::parse(r#"{"deleted":true}"#, max).unwrap();
        assert_eq!(deleted, SharedPlugin::Deleted { deleted: true });
        let digest = record.digest().unwrap();
        for (document, problem) in [
            (format!(r#"{{"digest":"{digest}","size":{},"chunks":1}}"#, max + 1), "plugins.max_upload_mib"),
            (format!(r#"{{"digest":"{digest}","size":0,"chunks":0}}"#), "between 1 byte"),
            (format!(r#"{{"digest":"{digest}","size":10,"chunks":4000000000}}"#), "cannot hold"),
            (r#"{"digest":"../../etc","size":10,"chunks":1}"#.to_owned(), "digest"),
            (format!(r#"{{"digest":"{}","size":10,"chunks":1}}"#, digest.to_uppercase()), "digest"),
            ("[1]".to_owned(), "not a plugin record"),
            (r#"{"deleted":false}"#.to_owned(), "not a plugin record"),
        ] {
            let error = SharedPlugin::parse(&document, max).unwrap_err();
            assert!(error.contains(problem), "{document}: {error}");
        }
        let SharedPlugin::Published { digest, size, chunks, .. } = record.clone() else { unreachable!() };
        let spanned = |partition: i32, from: i64, to: i64| SharedPlugin::Published {
            digest: digest.clone(),
            size,
            chunks,
            span: Some(Span { partition, from, to }),
        };
        let placed = spanned(0, 7, 8);
        assert_eq!(SharedPlugin::parse(&serde_json::to_string(&placed).unwrap(), max).unwrap(), placed);
        assert!(placed.same_component(&record) && !placed.same_component(&deleted), "where its chunks are is not what it is");
        for (partition, from, to) in [(0, 7, 7), (0, -1, 3), (-1, 0, 5), (0, 5, 2), (0, i64::MIN, i64::MAX)] {
            let document = serde_json::to_string(&spanned(partition, from, to)).unwrap();
            assert_eq!(SharedPlugin::parse(&document, max).unwrap(), record, "a span that cannot be is dropped: {document}");
        }
        assert_eq!(parse_reference("counter-source@1.0.0"), Some(("counter-source", "1.0.0")));
        for hostile in ["counter-source", "../x@1.0.0", "x@../1", "@1.0.0", "x@"] {
            assert_eq!(parse_reference(hostile), None, "{hostile}");
        }
    }
}
