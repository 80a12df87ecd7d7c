//! Reading a configuration file: YAML parse, `${...}` substitution, typed
//! deserialization and validation, each error located in the file.

use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::{ConfigError, ConfigErrors, HostConfig, SourceMap, validate};

/// A configuration ready to build from, with what is needed to locate later errors
/// (such as a plugin refusing an option) in its file.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration, relative paths resolved against the file's directory.
    pub config: HostConfig,
    /// The file name as given, for error messages.
    pub file: String,
    /// Positions of the file's keys.
    pub source_map: SourceMap,
    /// Directory relative paths in plugin options (such as `directory`) start from.
    pub base_dir: PathBuf,
}

impl LoadedConfig {
    /// Turns `(path, message)` problems into located errors naming the connector and key.
    pub fn errors(&self, problems: Vec<(String, String)>) -> ConfigErrors {
        let value = serde_yaml::to_value(&self.config).unwrap_or(Value::Null);
        locate_all(&self.file, &self.source_map, &value, problems)
    }

    /// Resolves a path from the configuration against the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            position: None,
            message: format!("cannot read the configuration file: {error}"),
        }])
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &file, &base_dir)
}

/// Checks a configuration given as text; `file` names it in errors.
pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let fail = |position, message: String| ConfigErrors(vec![ConfigError { file: file.to_owned(), position, message }]);
    let mut value: Value = serde_yaml::from_str(text).map_err(|error| {
        let (position, message) = yaml_syntax_error(&error);
        fail(position, message)
    })?;
    if value.is_null() {
        return Err(fail(None, "the file is empty: it needs at least `version: 1`".to_owned()));
    }
    let source_map = SourceMap::new(text);
    let mut problems = Vec::new();
    substitute(&mut value, String::new(), base_dir, &mut problems);
    let located_all = |problems: Vec<(String, String)>| locate_all(file, &source_map, &value, problems);
    if !problems.is_empty() {
        return Err(located_all(problems));
    }
    // Every problem at once: an unknown key is reported, taken out and the rest read
    // again, so the problems behind it are reported with it.
    let mut readable = value.clone();
    let mut problems = Vec::new();
    let mut config: Option<HostConfig> = None;
    for _ in 0..MAX_UNKNOWN_KEYS {
        match serde_path_to_error::deserialize::<_, HostConfig>(readable.clone()) {
            Ok(read) => {
                config = Some(read);
                break;
            }
            Err(error) => {
                let segments: Vec<Segment> = error.path().iter().cloned().collect();
                let path = error.path().to_string();
                let message = error.into_inner().to_string();
                let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()).map(str::to_owned);
                let (path, message) = unknown_key_path(&path, &humane_types(&message));
                let removed = unknown.is_some_and(|key| remove_key(&mut readable, &segments, &key));
                problems.push((path, message));
                if !removed {
                    break;
                }
            }
        }
    }
    if let Some(config) = &config {
        problems.extend(validate(config));
    }
    let (Some(mut config), true) = (config, problems.is_empty()) else {
        return Err(located_all(problems));
    };
    config.data_dir = base_dir.join(&config.data_dir);
    config.plugins.dir = base_dir.join(&config.plugins.dir);
    if let Some(tls) = &mut config.admin.tls {
        tls.cert_file = base_dir.join(&tls.cert_file);
        tls.key_file = base_dir.join(&tls.key_file);
    }
    Ok(LoadedConfig { config, file: file.to_owned(), source_map, base_dir: base_dir.to_path_buf() })
}

/// The most unknown keys reported from one file.
const MAX_UNKNOWN_KEYS: usize = 50;

/// Removes the unknown `key` from the map at `segments` (where serde_path_to_error
/// stopped: the map holding it, or the key itself); false when it is not there.
fn remove_key(value: &mut Value, segments: &[Segment], key: &str) -> bool {
    fn at<'a>(mut value: &'a mut Value, segments: &[Segment]) -> Option<&'a mut Value> {
        for segment in segments {
            value = match segment {
                Segment::Seq { index } => value.get_mut(*index)?,
                Segment::Map { key } => value.get_mut(key.as_str())?,
                Segment::Enum { .. } | Segment::Unknown => return None,
            };
        }
        Some(value)
    }
    let holds_key = |value: &Value| value.as_mapping().is_some_and(|mapping| mapping.contains_key(key));
    let target = match at(value, segments) {
        Some(map) if holds_key(map) => segments,
        _ if matches!(segments.last(), Some(Segment::Map { key: last }) if last == key) => &segments[..segments.len() - 1],
        _ => return false,
    };
    at(value, target).and_then(Value::as_mapping_mut).and_then(|mapping| mapping.remove(key)).is_some()
}

/// serde_path_to_error stops at the map that holds an unknown key: point at the key.
fn unknown_key_path(path: &str, message: &str) -> (String, String) {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return (path.to_owned(), message.to_owned());
    };
    let key = rest.split('`').next().unwrap_or_default();
    let expected = rest.split_once(", expected ").map(|(_, expected)| expected).unwrap_or("no other keys");
    let key_path = if path == "." || path.is_empty() {
        key.to_owned()
    } else if path.ends_with(&format!(".{key}")) || path == key {
        path.to_owned()
    } else {
        format!("{path}.{key}")
    };
    (key_path, format!("unknown key; expected {}", expected.replace('`', "")))
}

/// serde names Rust types; say what to write instead.
fn humane_types(message: &str) -> String {
    let mut message = message.to_owned();
    for (rust, human) in [
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected a sequence", "expected a list such as [a, b]"),
        ("expected struct", "expected a map of keys for"),
    ] {
        message = message.replace(rust, human);
    }
    message
}

fn strip_location(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

/// Where a YAML syntax error is and what it says. The parser notices an unclosed
/// `[`, `{` or quote only where it gives up (often the end of the file), so when it
/// names the construct it was inside, the error points at where that construct starts.
fn yaml_syntax_error(error: &serde_yaml::Error) -> (Option<(usize, usize)>, String) {
    let text = error.to_string();
    let stopped = error.location().map(|location| (location.line(), location.column()));
    let problem = strip_location(&text);
    let construct = text.split_once(", while ").and_then(|(_, context)| {
        let (what, mark) = context.rsplit_once(" at line ")?;
        let (line, column) = mark.split_once(" column ")?;
        Some((what.to_owned(), (line.trim().parse().ok()?, column.trim().parse().ok()?)))
    });
    match (construct, stopped) {
        // An unclosed `[`, `{` or quote: the fix is where it starts.
        (Some((what, start)), Some((line, column)))
            if start != (line, column) && (what.contains("flow") || what.contains("quoted scalar")) =>
        {
            (
                Some(start),
                format!("invalid YAML: {problem} while {what} that starts here; it is not closed (the parser stopped at {line}:{column})"),
            )
        }
        // Anything else (such as a bad indentation) is where the parser stopped.
        (Some((what, (start_line, start_column))), stopped) => {
            (stopped, format!("invalid YAML: {problem} while {what} started at {start_line}:{start_column}"))
        }
        (None, stopped) => (stopped, format!("invalid YAML: {problem}")),
    }
}

/// Replaces `${VAR}`, `${VAR:-default}` (the default when VAR is unset or empty) and
/// `${file:PATH}` in every string value; `$${` stays a literal `${`.
fn substitute(value: &mut Value, path: String, base_dir: &Path, problems: &mut Vec<(String, String)>) {
    match value {
        Value::String(text) if text.contains("${") => match substitute_text(text, base_dir) {
            Ok(replaced) => *text = replaced,
            Err(message) => problems.push((path, message)),
        },
        Value::Mapping(mapping) => {
            for (key, item) in mapping.iter_mut() {
                let key = key.as_str().map(str::to_owned).unwrap_or_else(|| format!("{key:?}"));
                let child = if path.is_empty() { key } else { format!("{path}.{key}") };
                substitute(item, child, base_dir, problems);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute(item, format!("{path}[{index}]"), base_dir, problems);
            }
        }
        _ => {}
    }
}

fn substitute_text(text: &str, base_dir: &Path) -> Result<String, String> {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            output.push_str(&rest[..start - 1]);
            output.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        output.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or("unclosed `${`: close it with `}` or write `$${` for a literal")?;
        let reference = &rest[start + 2..start + end];
        output.push_str(&resolve_reference(reference, base_dir)?);
        rest = &rest[start + end + 1..];
    }
    output.push_str(rest);
    Ok(output)
}

fn resolve_reference(reference: &str, base_dir: &Path) -> Result<String, String> {
    if let Some(file) = reference.strip_prefix("file:") {
        let path = base_dir.join(file.trim());
        return std::fs::read_to_string(&path)
            .map(|content| content.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|error| format!("cannot read ${{file:{file}}} ({}): {error}", path.display()));
    }
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name.trim(), Some(default)),
        None => (reference.trim(), None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`${{{reference}}}` is not a variable name; use ${{NAME}}, ${{NAME:-default}} or ${{file:PATH}}"));
    }
    match (std::env::var(name), default) {
        (Ok(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Ok(value), _) => Ok(value),
        (Err(_), Some(default)) => Ok(default.to_owned()),
        (Err(_), None) => {
            Err(format!("environment variable {name} is not set; set it, give a default with ${{{name}:-default}}, or remove ${{{name}}}"))
        }
    }
}

/// Locates every problem, in file order.
fn locate_all(file: &str, source_map: &SourceMap, value: &Value, problems: Vec<(String, String)>) -> ConfigErrors {
    let mut errors: Vec<ConfigError> =
        problems.into_iter().map(|(path, message)| located(file, source_map, value, &path, &message)).collect();
    errors.sort_by_key(|error| error.position.unwrap_or((usize::MAX, 0)));
    ConfigErrors(errors)
}

/// Locates a problem and prefixes it with the connector and key it is about.
fn located(file: &str, source_map: &SourceMap, value: &Value, path: &str, message: &str) -> ConfigError {
    let position = source_map.locate(&aliased_item_path(value, path).unwrap_or_else(|| path.to_owned()));
    ConfigError { file: file.to_owned(), position, message: describe(value, path, message) }
}

/// A transform's or predicate's problem is keyed by its alias, as Kafka Connect's flat
/// keys are (`connectors[0].transforms.mask.fields`); in the file it is the list item
/// of that name (`connectors[0].transforms[1].fields`).
fn aliased_item_path(value: &Value, path: &str) -> Option<String> {
    let (index, rest) = path.strip_prefix("connectors[")?.split_once("].")?;
    let connector = value.get("connectors")?.get(index.parse::<usize>().ok()?)?;
    let (list, rest) = rest.split_once('.')?;
    if list != "transforms" && list != "predicates" {
        return None;
    }
    // The longest alias the key starts with (an alias may contain dots).
    let (item, alias) = connector
        .get(list)?
        .as_sequence()?
        .iter()
        .enumerate()
        .filter_map(|(item, entry)| Some((item, entry.get("name")?.as_str()?)))
        .filter(|(_, alias)| rest.strip_prefix(alias).is_some_and(|key| key.is_empty() || key.starts_with('.')))
        .max_by_key(|(_, alias)| alias.len())?;
    Some(format!("connectors[{index}].{list}[{item}]{}", &rest[alias.len()..]))
}

fn describe(value: &Value, path: &str, message: &str) -> String {
    let Some(rest) = path.strip_prefix("connectors[") else {
        return if path.is_empty() || path == "." { message.to_owned() } else { format!("key \"{path}\": {message}") };
    };
    let (index, key) = rest.split_once(']').unwrap_or((rest, ""));
    let name = index.parse::<usize>().ok().and_then(|index| value.get("connectors")?.get(index)?.get("name")?.as_str().map(str::to_owned));
    let connector = match name {
        Some(name) => format!("connector \"{name}\""),
        None => format!("connector #{}", index.parse::<usize>().map_or(0, |index| index + 1)),
    };
    let key = key.trim_start_matches('.');
    match key.strip_prefix("config.") {
        Some(option) => format!("{connector}: config key \"{option}\": {message}"),
        None if key.is_empty() => format!("{connector}: {message}"),
        None => format!("{connector}: key \"{key}\": {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_reported_with_the_problems_behind_them() {
        let text = "version: 1\n\"admin.token\": x\nadmin:\n  token: t\n  tls:\n    tls: 1\n    cert_file: c\n    key_file: k\nembedded:\n  partitions: 0\nconnectors:\n  - name: a\n    plugin: p\n    topic: t\n    colour: red\n";
        let errors = parse(text, "x.yaml", Path::new(".")).unwrap_err().to_string();
        for expected in [
            "\"admin.token\": unknown key",
            "\"admin.tls.tls\": unknown key",
            "\"embedded.partitions\": must be between",
            "key \"colour\": unknown key",
        ] {
            assert!(errors.contains(expected), "{expected} missing from:\n{errors}");
        }
        assert_eq!(errors.matches("admin.token").count(), 1, "{errors}");
    }

    #[test]
    fn a_transform_problem_points_at_its_line() {
        // (A jq expression is compiled by its component when the connector is planned:
        // tests/wasm_transforms.rs checks that its problem points at its line too.)
        let text = "version: 1\nconnectors:\n  - name: a\n    plugin: p\n    topic: t\n    transforms:\n      - name: keep\n        type: Filter\n      - name: mask\n        type: MaskField$Value\n        fieldz: card\n      - name: big\n        type: Jq$Value\n        expresion: '.amount >'\n";
        let errors = parse(text, "x.yaml", Path::new(".")).unwrap_err();
        let shown = errors.to_string();
        assert!(shown.contains("x.yaml:11"), "{shown}");
        assert!(shown.contains("key \"transforms.mask.fieldz\": is not an option of this transform"), "{shown}");
        assert!(shown.contains("x.yaml:14"), "{shown}");
        assert!(shown.contains("transforms.big.expresion"), "{shown}");
    }

    #[test]
    fn the_cluster_topics_follow_the_group_unless_named() {
        let kafka = |block: &str| {
            let text = format!("version: 1\nkafka:\n  bootstrap_servers: k:9092\n{block}");
            parse(&text, "x.yaml", Path::new(".")).unwrap().config.kafka.unwrap()
        };
        let default = kafka("");
        assert_eq!((default.cluster.group_id.as_str(), default.config_topic()), ("wasm-connect", "wasm-connect-configs".to_owned()));
        assert_eq!(default.offsets_topic(), "wasm-connect-offsets");
        let grouped = kafka("  cluster:\n    group.id: etl\n");
        assert_eq!((grouped.config_topic(), grouped.offsets_topic()), ("etl-configs".to_owned(), "etl-offsets".to_owned()));
        assert_eq!((grouped.assignments_topic(), grouped.membership_group()), ("etl-assignments".to_owned(), "etl".to_owned()));
        let older = kafka("  config_topic: c\n  offsets_topic: o\n  cluster:\n    group.id: etl\n");
        assert_eq!((older.config_topic(), older.offsets_topic()), ("c".to_owned(), "o".to_owned()));
        // Hosts that each named their own config topic stay clusters of their own.
        assert_eq!((older.assignments_topic(), older.membership_group()), ("c-assignments".to_owned(), "etl.c".to_owned()));
        let assigned = kafka("  cluster:\n    assignment.storage.topic: a\n    status.storage.topic: s\n");
        assert_eq!((assigned.assignments_topic(), assigned.status_topic()), ("a".to_owned(), "s".to_owned()));
        assert_eq!((grouped.status_topic(), older.status_topic()), ("etl-status".to_owned(), "c-status".to_owned()));
        assert_eq!((grouped.plugins_topic(), older.plugins_topic()), ("etl-plugins".to_owned(), "c-plugins".to_owned()));
        assert_eq!(kafka("  cluster:\n    plugin.storage.topic: p\n").plugins_topic(), "p");
        let named = kafka("  cluster:\n    config.storage.topic: c2\n    offset.storage.topic: o2\n");
        assert_eq!((named.config_topic(), named.offsets_topic()), ("c2".to_owned(), "o2".to_owned()));
        let same =
            "version: 1\nkafka:\n  bootstrap_servers: k:9092\n  cluster:\n    config.storage.topic: t\n    offset.storage.topic: t\n";
        let errors = parse(same, "x.yaml", Path::new(".")).unwrap_err().to_string();
        assert!(errors.contains("the config, offsets, assignments, status and plugins topics must be five different topics"), "{errors}");
    }

    #[test]
    fn defaults_stand_in_for_unset_and_empty_variables() {
        let base = Path::new(".");
        assert_eq!(substitute_text("${WASM_CONNECT_TEST_NEVER_SET:-fallback}/x", base).unwrap(), "fallback/x");
        assert_eq!(substitute_text("${WASM_CONNECT_TEST_NEVER_SET:-}", base).unwrap(), "");
        assert_eq!(substitute_text("${PATH:-unused}", base).unwrap(), std::env::var("PATH").unwrap());
        let error = substitute_text("${WASM_CONNECT_TEST_NEVER_SET}", base).unwrap_err();
        assert!(error.contains("give a default with ${WASM_CONNECT_TEST_NEVER_SET:-default}"), "{error}");
        assert!(substitute_text("${not a name:-x}", base).is_err());
    }
}
