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
        let expected = std::fs::read_to_string(fixture.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{name} has no .expected file"));
        let output = Command::new(support::binary())
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
    let output = Command::new(support::binary()).arg("validate").arg(&copy).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("valid, 5 connector(s)"), "{stdout}");
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
        let output = Command::new(support::binary()).arg("validate").arg(&path).env("OWM_KEY", "example-key").output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("valid, 2 connector(s)"), "{}: {stdout}", path.display());
        checked += 1;
    }
    assert!(checked >= 2, "the examples are missing");
}
