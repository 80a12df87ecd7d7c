//! Property tests of the inputs that come from outside, bounded so they run in CI on
//! stable Rust: the batch decoder (bytes a plugin returns), the configuration loader
//! (YAML text), the name and version alphabets, and uploaded components. None may
//! panic, and none may allocate in proportion to a count it was merely told.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use wasm_connect::runtime::{PluginOrigin, Runtime, TaskLimits, load_component};
use wasm_connect_protocol::{BatchWriter, Record, decode};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A valid batch of `records` records with the given payloads.
fn batch(values: &[Vec<u8>]) -> Vec<u8> {
    let mut writer = BatchWriter::default();
    for (index, value) in values.iter().enumerate() {
        let record = Record {
            topic: "t".to_owned(),
            partition: Some(index as i32 % 3),
            offset: Some(index as i64),
            timestamp: Some(1_700_000_000_000 + index as i64),
            key: Some(format!("k{index}").into_bytes()),
            value: Some(value.clone()),
            headers: vec![("h".to_owned(), Some(b"v".to_vec()))],
        };
        writer.push(&record);
    }
    writer.finish()
}

proptest! {
    #![proptest_config(config(2_000))]

    /// Any bytes: an error or records, never a panic.
    #[test]
    fn the_batch_decoder_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let mut prefixed = b"WCB1".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = decode(&prefixed);
    }

    /// A valid batch with bytes flipped, cut or a count that lies.
    #[test]
    fn the_batch_decoder_takes_damaged_batches(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        claimed in prop_oneof![Just(u32::MAX), Just(1u32 << 31), any::<u32>()],
    ) {
        let original = batch(&values);
        let decoded = decode(&original).unwrap();
        prop_assert_eq!(decoded.len(), values.len());
        for (record, value) in decoded.iter().zip(&values) {
            prop_assert_eq!(record.value, Some(value.as_slice()));
        }
        let mut damaged = original.clone();
        for (position, byte) in flips {
            let position = position % damaged.len();
            damaged[position] ^= byte;
        }
        let _ = decode(&damaged);
        let _ = decode(&original[..cut % (original.len() + 1)]);
        let mut lying = original.clone();
        lying[4..8].copy_from_slice(&claimed.to_le_bytes());
        match decode(&lying) {
            Ok(records) => prop_assert_eq!(records.len() as u32, claimed),
            Err(_) => prop_assert_ne!(claimed as usize, values.len()),
        }
    }
}

/// YAML-ish text built from the configuration's own keys and values, so that the
/// loader's paths past the YAML parser are reached.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("version"),
        Just("data_dir"),
        Just("admin"),
        Just("listen"),
        Just("token"),
        Just("kafka"),
        Just("plugins"),
        Just("dir"),
        Just("connectors"),
        Just("name"),
        Just("plugin"),
        Just("topic"),
        Just("topics"),
        Just("tasks_max"),
        Just("config"),
        Just("errors"),
        Just("tolerance"),
        Just("egress"),
        Just("allowed_origins"),
        Just("header_timeout"),
        Just("bogus"),
        Just("enabled"),
    ];
    let value = prop_oneof![
        Just("1".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("\"\"".to_owned()),
        Just("[a, b]".to_owned()),
        Just("{a: 1}".to_owned()),
        Just("${UNSET_FUZZ_VARIABLE}".to_owned()),
        Just("${file:/nonexistent}".to_owned()),
        Just("10s".to_owned()),
        Just("all".to_owned()),
        Just("../..".to_owned()),
        Just("[".to_owned()),
        Just("~".to_owned()),
        Just("4294967296".to_owned()),
        Just("127.0.0.1:0".to_owned()),
        "[a-z0-9@/. -]{0,12}",
    ];
    let line = (0usize..4, key, value, any::<bool>())
        .prop_map(|(depth, key, value, list)| format!("{}{}{key}: {value}", "  ".repeat(depth), if list { "- " } else { "" }));
    proptest::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(config(3_000))]

    /// Any text: a loaded configuration or located errors, never a panic.
    #[test]
    fn the_config_loader_takes_any_text(text in config_text(), raw in "\\PC{0,200}") {
        for text in [text, raw] {
            if let Err(errors) = wasm_connect::config::parse(&text, "fuzz.yaml", Path::new("/nonexistent")) {
                prop_assert!(!errors.0.is_empty());
                prop_assert!(errors.0.len() <= 200, "{} errors", errors.0.len());
            }
        }
    }

    /// The name and version alphabets: what they accept is safe as one path part.
    #[test]
    fn accepted_names_are_single_path_parts(name in "\\PC{0,20}", version in "[0-9a-z.+/-]{0,12}") {
        if wasm_connect::names::check_name(&name).is_ok() {
            let mut parts = Path::new(&name).components();
            prop_assert!(matches!((parts.next(), parts.next()), (Some(std::path::Component::Normal(_)), None)), "{name:?}");
            prop_assert!(!name.contains('@') && !name.contains('\n'));
        }
        if wasm_connect::names::check_version(&version).is_ok() {
            prop_assert!(!version.contains('/') && !version.starts_with('.'), "{version:?}");
        }
    }
}

#[test]
fn damaged_components_are_refused_without_a_panic() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(cache.path(), TaskLimits { memory_bytes: 64 << 20, call_timeout: Duration::from_secs(5) }).unwrap();
    let component = Arc::new(std::fs::read(support::test_plugins_dir().join("counter-source.wasm")).unwrap());
    let mut runner = proptest::test_runner::TestRunner::new(config(40));
    let strategy = (proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4), any::<usize>());
    runner
        .run(&strategy, |(flips, cut)| {
            let mut damaged = component.to_vec();
            for (position, byte) in flips {
                let position = position % damaged.len();
                damaged[position] ^= byte.max(1);
            }
            let _ = load_component(&runtime, &damaged, Path::new("(fuzz)"), PluginOrigin::Uploaded);
            let _ = load_component(&runtime, &component[..cut % component.len()], Path::new("(fuzz)"), PluginOrigin::Uploaded);
            Ok(())
        })
        .unwrap();
}
