//! The compose stack, checked without an engine (none runs here): Compose's reference
//! implementation validates `compose/docker-compose.yml`, the file wires what the
//! README promises (every service, health checks, start order, the host built from
//! this repository), the host's `compose/connectors.yaml` validates against the real
//! plugins with and without API keys, and Prometheus and Grafana point at the
//! services that exist.

mod support;

use std::path::Path;
use std::process::Command;

use support::services;

fn compose_file() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(support::repo_root().join("compose/docker-compose.yml")).unwrap()).unwrap()
}

#[test]
fn compose_validates_the_stack_and_refuses_a_broken_copy() {
    let file = support::repo_root().join("compose/docker-compose.yml");
    if let Some(report) = services::compose_config_errors(&file) {
        panic!("docker-compose refused compose/docker-compose.yml:\n{report}");
    }
    // The validator is not a no-op: a misspelt health condition is refused.
    let directory = tempfile::tempdir().unwrap();
    let broken = std::fs::read_to_string(&file).unwrap().replacen("condition: service_healthy", "condition: service_is_healthy", 1);
    let copy = directory.path().join("docker-compose.yml");
    std::fs::write(&copy, broken).unwrap();
    let report = services::compose_config_errors(&copy).expect("a broken compose file is refused");
    assert!(report.contains("service_is_healthy"), "{report}");
}

#[test]
fn the_stack_has_every_service_with_health_checks_and_start_order() {
    let compose = compose_file();
    let services = compose["services"].as_mapping().unwrap();
    for name in ["kafka", "elasticsearch", "kibana", "mongodb", "cassandra", "prometheus", "grafana", "wasm-connect", "monitoring"] {
        let service = services.get(name).unwrap_or_else(|| panic!("service {name} is missing"));
        assert!(service["healthcheck"]["test"].is_sequence(), "{name} has a health check");
    }
    // Kafka runs in KRaft mode: no ZooKeeper anywhere.
    assert!(!services.keys().any(|name| name.as_str().unwrap().contains("zookeeper")));
    assert_eq!(services.get("kafka").unwrap()["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller");
    let host = services.get("wasm-connect").unwrap();
    assert_eq!(host["build"]["dockerfile"], "compose/Dockerfile");
    assert!(support::repo_root().join("compose/Dockerfile").is_file());
    for (dependency, condition) in [
        ("kafka", "service_healthy"),
        ("elasticsearch", "service_healthy"),
        ("mongodb", "service_healthy"),
        ("cassandra-init", "service_completed_successfully"),
    ] {
        assert_eq!(host["depends_on"][dependency]["condition"], condition, "the host waits for {dependency}");
    }
    // No key or password is written into the file: they come from the environment.
    for (name, value) in host["environment"].as_mapping().unwrap() {
        let value = value.as_str().unwrap_or_default();
        if name.as_str().unwrap().ends_with("_KEY") {
            assert_eq!(value, format!("${{{}:-}}", name.as_str().unwrap()), "{name:?} comes from the environment");
        }
    }
}

#[test]
fn prometheus_and_grafana_point_at_the_compose_services() {
    let root = support::repo_root();
    let scrape: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("compose/prometheus/prometheus.yml")).unwrap()).unwrap();
    assert_eq!(scrape["scrape_configs"][0]["static_configs"][0]["targets"][0], "wasm-connect:8083");
    assert_eq!(scrape["scrape_configs"][0]["static_configs"][0]["targets"][1], "monitoring:8092");
    for rules in scrape["rule_files"].as_sequence().unwrap() {
        assert!(root.join("compose/prometheus").join(rules.as_str().unwrap()).is_file(), "{rules:?}");
    }
    let host: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(root.join("compose/connectors.yaml")).unwrap()).unwrap();
    assert_eq!(host["admin"]["listen"], "0.0.0.0:8083", "the host listens where Prometheus scrapes");
    let datasource = std::fs::read_to_string(root.join("compose/grafana/provisioning/datasources/prometheus.yml")).unwrap();
    assert!(datasource.contains("url: http://prometheus:9090") && datasource.contains("uid: prometheus"), "{datasource}");
    for entry in std::fs::read_dir(root.join("compose/grafana/dashboards")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
        let panels = dashboard["panels"].as_array().unwrap();
        let mut cells = std::collections::HashSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap();
            assert_eq!(panel["datasource"]["uid"], "prometheus", "{title}");
            assert!(!panel["targets"].as_array().unwrap().is_empty(), "{title} has queries");
            // Panels tile the 24-column grid without overlapping.
            let position = |key: &str| panel["gridPos"][key].as_u64().unwrap();
            assert!(position("x") + position("w") <= 24, "{title} fits the grid");
            for x in position("x")..position("x") + position("w") {
                for y in position("y")..position("y") + position("h") {
                    assert!(cells.insert((x, y)), "{title} overlaps another panel at {x},{y}");
                }
            }
        }
        let ids: std::collections::HashSet<u64> = panels.iter().map(|panel| panel["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    }
}

/// `wasm-connect validate` on the compose host's configuration, with its paths moved
/// to this machine, and `environment` set: how many connectors would run.
fn validate_compose_connectors(environment: &[(&str, &str)]) -> String {
    let root = support::repo_root();
    let directory = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root.join("compose/connectors.yaml"))
        .unwrap()
        .replace("/var/lib/wasm-connect", &directory.path().join("data").display().to_string())
        .replace("/opt/wasm-connect/plugins", &root.join("plugins/dist").display().to_string());
    let config = support::write_config(directory.path(), &text);
    copy_dir(&root.join("compose/mappings"), &directory.path().join("mappings"));
    let mut command = support::command();
    command.arg("validate").arg(&config);
    for name in [
        "AIRLABS_ENABLED",
        "FLIGHT_SIMULATOR_ENABLED",
        "OPENAQ_ENABLED",
        "ALPHAVANTAGE_ENABLED",
        "AIRLABS_KEY",
        "OPENAQ_KEY",
        "ALPHAVANTAGE_KEY",
    ] {
        command.env_remove(name);
    }
    let output = command.envs(environment.iter().copied()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Runs the host service's entrypoint script as Compose would (`$$` is a literal `$`)
/// with a stand-in `wasm-connect` that prints the switches it was given.
fn entrypoint_switches(keys: &[(&str, &str)]) -> Vec<(String, String)> {
    let compose = compose_file();
    let entrypoint = compose["services"]["wasm-connect"]["entrypoint"].as_sequence().unwrap();
    assert_eq!(entrypoint[0], "/bin/sh");
    let script = entrypoint[2].as_str().unwrap().replace("$$", "$");
    let directory = tempfile::tempdir().unwrap();
    let stand_in = directory.path().join("wasm-connect");
    std::fs::write(&stand_in, "#!/bin/sh\nenv | grep _ENABLED= | sort\necho \"args: $*\"\n").unwrap();
    Command::new("chmod").arg("+x").arg(&stand_in).status().unwrap();
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(&script).env_clear().env("PATH", format!("{}:/usr/bin:/bin", directory.path().display()));
    let output = command.envs(keys.iter().copied()).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("args: run /etc/wasm-connect/connectors.yaml"), "{stdout}");
    stdout.lines().filter_map(|line| line.split_once('=')).map(|(name, value)| (name.to_owned(), value.to_owned())).collect()
}

#[test]
fn the_entrypoint_turns_on_each_api_source_whose_key_is_set() {
    assert_eq!(entrypoint_switches(&[("AIRLABS_KEY", ""), ("OPENAQ_KEY", "")]), Vec::<(String, String)>::new());
    let switches = entrypoint_switches(&[("AIRLABS_KEY", "k"), ("OPENAQ_KEY", "k"), ("ALPHAVANTAGE_KEY", "")]);
    let expected = [("AIRLABS_ENABLED", "true"), ("FLIGHT_SIMULATOR_ENABLED", "false"), ("OPENAQ_ENABLED", "true")];
    assert_eq!(switches, expected.map(|(name, value)| (name.to_owned(), value.to_owned())));
}

#[test]
fn the_compose_pipelines_validate_with_and_without_api_keys() {
    // No keys: the flight simulator instead of AirLabs, no OpenAQ, no Alpha Vantage.
    let without = validate_compose_connectors(&[]);
    assert!(without.contains("valid, 16 connector(s)"), "{without}");
    // Every key given: what the host's entrypoint then switches on.
    let keys = [("AIRLABS_KEY", "k"), ("OPENAQ_KEY", "k"), ("ALPHAVANTAGE_KEY", "k")];
    let switches = entrypoint_switches(&keys);
    let mut environment: Vec<(&str, &str)> = switches.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    environment.extend(keys);
    let with = validate_compose_connectors(&environment);
    // AirLabs replaces the simulator; OpenAQ and Alpha Vantage join.
    assert!(with.contains("valid, 18 connector(s)"), "{with}");
}

/// The `monitoring` service runs examples/monitoring-platform.yaml against the stack:
/// the file it mounts is the one its command runs, its environment points the file at
/// the stack's services and the image's plugins, Prometheus scrapes where it listens,
/// and with that environment the example validates.
#[test]
fn the_monitoring_service_runs_the_example_against_the_stack() {
    let root = support::repo_root();
    let compose = compose_file();
    let service = &compose["services"]["monitoring"];
    assert_eq!(service["image"], compose["services"]["wasm-connect"]["image"], "the image the stack builds");
    let config = service["command"][1].as_str().unwrap();
    let mount = format!("../examples/monitoring-platform.yaml:{config}:ro");
    assert!(service["volumes"].as_sequence().unwrap().iter().any(|volume| volume.as_str() == Some(mount.as_str())), "{mount}");
    let environment = service["environment"].as_mapping().unwrap();
    let variable = |name: &str| environment.get(name).and_then(serde_yaml::Value::as_str).unwrap().to_owned();
    assert_eq!(variable("MONITORING_LISTEN"), "0.0.0.0:8092", "where Prometheus scrapes (monitoring:8092)");
    assert_eq!(variable("MONITORING_PLUGINS_DIR"), "/opt/wasm-connect/plugins", "where compose/Dockerfile puts the plugins");
    assert_eq!(variable("CASSANDRA_CONTACT_POINTS"), "cassandra:9042");
    assert!(variable("MONGODB_URI").starts_with("mongodb://mongodb:27017/"));
    let example = std::fs::read_to_string(root.join("examples/monitoring-platform.yaml")).unwrap();
    for name in ["MONITORING_LISTEN", "MONITORING_DATA_DIR", "MONITORING_PLUGINS_DIR", "CASSANDRA_CONTACT_POINTS", "MONGODB_URI"] {
        assert!(example.contains(&format!("${{{name}:-")), "the example reads {name}");
    }
    let directory = tempfile::tempdir().unwrap();
    let output = support::command()
        .arg("validate")
        .arg(root.join("examples/monitoring-platform.yaml"))
        .env("MONITORING_LISTEN", variable("MONITORING_LISTEN"))
        .env("MONITORING_DATA_DIR", directory.path())
        .env("MONITORING_PLUGINS_DIR", root.join("plugins/dist"))
        .env("CASSANDRA_CONTACT_POINTS", variable("CASSANDRA_CONTACT_POINTS"))
        .env("MONGODB_URI", variable("MONGODB_URI"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("valid, 10 connector(s)"), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
}
