//! Configuration: every class of error has a fixture with its exact message (file,
//! line, column, connector, key), the shipped `connectors.yaml` round-trips and
//! validates, and substitution reads variables and files.

mod support;

use std::path::Path;
use std::process::Command;

use wasm_connect::config;

#[test]
fn every_error_fixture_reports_its_exact_message() {
    let fixtures = support::repo_root().join("tests/fixtures/config");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&fixtures).unwrap().map(|entry| entry.unwrap().path()).collect();
    entries.sort();
    for fixture in entries.iter().filter(|path| path.extension().is_some_and(|extension| extension == "yaml")) {
        let name = fixture.file_name().unwrap().to_str().unwrap();
        let expected =
            std::fs::read_to_string(fixture.with_extension("expected")).unwrap_or_else(|_| panic!("{name} has no .expected file"));
        let output = support::command()
            .args(["validate", name])
            .current_dir(&fixtures)
            .env_remove("WASM_CONNECT_FIXTURE_UNSET_DIRECTORY")
            .env_remove("WASM_CONNECT_FIXTURE_UNSET_FLAG")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{name} must fail validation");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end(), expected.trim_end(), "message for {name}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures found in {}", fixtures.display());
}

#[test]
fn the_shipped_connectors_yaml_round_trips() {
    let path = support::repo_root().join("connectors.yaml");
    let loaded = config::load(&path).unwrap();
    let written = serde_yaml::to_string(&loaded.config).unwrap();
    let reloaded = config::parse(&written, "round-trip.yaml", Path::new("")).unwrap();
    assert_eq!(reloaded.config, loaded.config);
    let names: Vec<&str> = loaded.config.connectors.iter().map(|connector| connector.name.as_str()).collect();
    assert_eq!(names, ["flights-sim", "iot-sim", "weblog-sim", "payments-sim", "everything-to-files"]);
    assert!(loaded.config.kafka.is_none(), "the default pipeline must run without Kafka");
}

#[test]
fn the_shipped_connectors_yaml_validates_against_its_plugins() {
    let root = support::repo_root();
    let data_dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root.join("connectors.yaml"))
        .unwrap()
        .replace("data_dir: ./data", &format!("data_dir: {}", data_dir.path().display()));
    let copy = support::write_config(data_dir.path(), &text.replace("./plugins/dist", &root.join("plugins/dist").display().to_string()));
    let output = support::command().arg("validate").arg(&copy).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("valid, 5 connector(s)"), "{stdout}");
}

#[test]
fn a_shared_compiled_plugin_cache_is_filled_once_pruned_of_what_nobody_loads_and_refused_when_others_could_write_to_it() {
    use std::os::unix::fs::PermissionsExt;
    let root = support::repo_root();
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let cache = directory.path().join("shared/compiled");
    let config = support::write_config(
        directory.path(),
        &format!(
            "version: 1\ndata_dir: {}\nplugins:\n  dir: {}\nconnectors:\n  - name: files\n    plugin: file-sink\n    topics: [t]\n    config:\n      directory: {}\n",
            data_dir.display(),
            root.join("plugins/dist").display(),
            directory.path().join("out").display()
        ),
    );
    let validate = || Command::new(support::binary()).arg("validate").arg(&config).env("WASM_CONNECT_CACHE_DIR", &cache).output().unwrap();
    let compiled = || {
        let mut names: Vec<String> =
            std::fs::read_dir(&cache).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    let output = validate();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Every shipped plugin compiled into the shared cache (made owner-only), whole, and
    // nothing written under data_dir: validate leaves the host's own state alone.
    let shipped = std::fs::read_dir(root.join("plugins/dist"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|e| e == "wasm"))
        .count();
    let first = compiled();
    assert_eq!(first.len(), shipped, "{first:?}");
    assert!(first.iter().all(|name| name.ends_with(".cwasm")), "{first:?}");
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(!data_dir.join("cache").exists(), "validate wrote into data_dir");
    // A second run loads them: the same files, none rewritten (a rewrite renames a new
    // file into place), each marked used by its modification time.
    use std::os::unix::fs::MetadataExt;
    let inode = |name: &String| std::fs::metadata(cache.join(name)).unwrap().ino();
    let modified = |name: &String| std::fs::metadata(cache.join(name)).unwrap().modified().unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
    let age = |path: &std::path::Path| std::fs::File::options().write(true).open(path).unwrap().set_modified(long_ago).unwrap();
    for name in &first {
        age(&cache.join(name));
    }
    // And a component no plugin of this configuration is, unused as long, and a file the
    // cache did not name.
    let (orphan, foreign) = (cache.join(format!("{}.cwasm", "ab".repeat(32))), cache.join("notes.txt"));
    for path in [&orphan, &foreign] {
        std::fs::write(path, b"old").unwrap();
        age(path);
    }
    let before: Vec<_> = first.iter().map(inode).collect();
    assert!(validate().status.success());
    assert!(!orphan.exists(), "a compiled plugin unused for 40 days was kept");
    assert!(foreign.exists(), "pruning removed a file the cache did not write");
    std::fs::remove_file(&foreign).unwrap();
    assert_eq!(compiled(), first);
    assert_eq!(first.iter().map(inode).collect::<Vec<_>>(), before, "a cached plugin was compiled again");
    assert!(
        first.iter().all(|name| modified(name) > long_ago + std::time::Duration::from_secs(39 * 86_400)),
        "a load did not mark its file used"
    );
    // A directory someone else could write to is refused: its files would run unchecked.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = validate();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("WASM_CONNECT_CACHE_DIR names") && stderr.contains("mode 777") && stderr.contains("mode 700"), "{stderr}");
    // So is a symbolic link to a good one (whoever owns the link could point it elsewhere).
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = directory.path().join("link");
    std::os::unix::fs::symlink(&cache, &link).unwrap();
    let output = Command::new(support::binary()).arg("validate").arg(&config).env("WASM_CONNECT_CACHE_DIR", &link).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("which is a symbolic link"), "{stderr}");
}

#[test]
fn substitution_reads_variables_and_files_and_keeps_escapes() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("secret.txt"), "s3cr3t\n").unwrap();
    let text = r#"
version: 1
kafka:
  bootstrap_servers: ${HOME}
  client:
    sasl.password: ${file:secret.txt}
    linger.ms: 5
    note: "literal $${NOT_A_VARIABLE} stays"
connectors: []
"#;
    let loaded = config::parse(text, "inline.yaml", directory.path()).unwrap();
    let kafka = loaded.config.kafka.unwrap();
    assert_eq!(kafka.bootstrap_servers, std::env::var("HOME").unwrap());
    assert_eq!(kafka.client["sasl.password"].0, "s3cr3t");
    assert_eq!(kafka.client["linger.ms"].0, "5");
    assert_eq!(kafka.client["note"].0, "literal ${NOT_A_VARIABLE} stays");
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let loaded = config::parse("version: 1\ndata_dir: state\nplugins:\n  dir: p\n", "x.yaml", Path::new("/etc/wc")).unwrap();
    assert_eq!(loaded.config.data_dir, Path::new("/etc/wc/state"));
    assert_eq!(loaded.config.plugins.dir, Path::new("/etc/wc/p"));
}

#[test]
fn human_durations_and_defaults() {
    let loaded = config::parse("version: 1\nplugins:\n  call_timeout: 1m30s\n", "x.yaml", Path::new("")).unwrap();
    assert_eq!(loaded.config.plugins.call_timeout, std::time::Duration::from_secs(90));
    assert_eq!(loaded.config.plugins.memory_limit_mib, 64);
    assert_eq!(loaded.config.admin.listen.to_string(), "127.0.0.1:8083");
    let error = config::parse("version: 1\nplugins:\n  call_timeout: soon\n", "x.yaml", Path::new("")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "x.yaml:3:3: key \"plugins.call_timeout\": expected a duration such as 500ms, 10s, 1m30s or 2h, found \"soon\""
    );
}

#[test]
fn every_example_validates_against_its_plugins() {
    let mut checked = 0;
    for entry in std::fs::read_dir(support::repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "yaml") {
            continue;
        }
        let keys = [("OWM_KEY", "k"), ("AIRLABS_KEY", "k"), ("OPENAQ_KEY", "k"), ("ALPHAVANTAGE_KEY", "k")];
        let output = support::command().arg("validate").arg(&path).envs(keys).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
        let example: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let connectors = example["connectors"].as_sequence().unwrap().len();
        assert!(connectors >= 2 && stdout.contains(&format!("valid, {connectors} connector(s)")), "{}: {stdout}", path.display());
        checked += 1;
    }
    assert!(checked >= 7, "the examples are missing");
}

#[test]
fn examples_run_beside_the_compose_host_without_sharing_its_state() {
    let root = support::repo_root();
    let read = |path: &Path| -> serde_yaml::Value { serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap() };
    let names = |config: &serde_yaml::Value| -> Vec<String> {
        config["connectors"].as_sequence().unwrap().iter().map(|connector| connector["name"].as_str().unwrap().to_owned()).collect()
    };
    let compose_host = read(&root.join("compose/connectors.yaml"));
    let mut connector_names: Vec<String> = names(&compose_host);
    let port = |listen: &str| listen.rsplit(':').next().unwrap().to_owned();
    let mut admin_ports = vec![port(compose_host["admin"]["listen"].as_str().unwrap())];
    let mut state_topics = vec!["wasm-connect-offsets".to_owned(), "wasm-connect-config".to_owned()];
    let mut on_the_stack = 0;
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "yaml") {
            continue;
        }
        let example = read(&path);
        connector_names.extend(names(&example));
        admin_ports.push(port(example["admin"]["listen"].as_str().unwrap()));
        let Some(kafka) = example["kafka"].as_mapping() else { continue };
        on_the_stack += 1;
        assert_eq!(kafka["bootstrap_servers"], "localhost:9094", "{}: the stack's Kafka", path.display());
        state_topics.extend(
            ["offsets_topic", "config_topic"]
                .map(|key| kafka[key].as_str().unwrap_or_else(|| panic!("{} sets {key}", path.display())).to_owned()),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for url in ["http://elasticsearch", "mongodb://mongodb", "cassandra:9042", "kafka:9092"] {
            assert!(!text.contains(url), "{}: {url} is a name inside the stack; use localhost", path.display());
        }
    }
    assert!(on_the_stack >= 6, "the seed pipelines run against the stack");
    // Each consumer group, admin port and state topic belongs to one host only.
    for (what, values) in [("connector name", &connector_names), ("admin port", &admin_ports), ("state topic", &state_topics)] {
        let mut sorted = values.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), values.len(), "every {what} is unique: {values:?}");
    }
}
