//! `connectors.yaml` edited while the host runs: a valid edit applies only the diff
//! (the unchanged connector keeps its tasks), an invalid one changes nothing and is
//! reported in `GET /health` with its file:line:column, host-level keys are reported
//! as needing a restart, and a name taken by the API is refused.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, host_config, read_sink_output};

const WAIT: Duration = Duration::from_secs(30);

fn connectors(output: &Path, extra: &str) -> String {
    format!(
        "  - name: sim
    plugin: flight-simulator
    topic: flights
    config: {{ rate: 50 }}
  - name: files
    plugin: file-sink
    topics: [flights]
    config:
      directory: {}
{extra}",
        output.display()
    )
}

/// How often the host started `connector`'s tasks so far.
fn starts(host: &Host, connector: &str) -> usize {
    host.log()
        .lines()
        .filter(|line| line.contains("Started the connector's tasks.") && line.contains(&format!("connector={connector} ")))
        .count()
}

fn health(host: &Host) -> Value {
    host.call("GET", "/health", None).1
}

fn names(host: &Host) -> Value {
    host.call("GET", "/connectors", None).1
}

#[test]
fn edits_to_the_file_apply_as_a_diff_and_bad_edits_change_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let config = host_config(directory.path(), &connectors(&output, ""));
    let original = std::fs::read_to_string(&config).unwrap();
    let host = Host::start(&config);
    host.wait_until("records written", WAIT, || !read_sink_output(&output).is_empty());
    assert_eq!((starts(&host, "sim"), starts(&host, "files")), (1, 1));
    assert_eq!(health(&host)["config_file"]["errors"], Value::Null);

    // Added and changed; the source is untouched.
    let logs = "  - name: logs\n    plugin: log-sink\n    topics: [flights]\n";
    let edited = original.replace("    topics: [flights]\n    config:", "    topics: [flights]\n    batch_size: 50\n    config:");
    assert_ne!(edited, original);
    std::fs::write(&config, format!("{edited}{logs}")).unwrap();
    host.wait_until("the edit applied", WAIT, || names(&host) == json!(["files", "logs", "sim"]));
    host.wait_until("files restarted", WAIT, || starts(&host, "files") == 2);
    assert_eq!(starts(&host, "sim"), 1, "an unchanged connector was restarted");
    assert_eq!(host.call("GET", "/connectors/files/config", None).1["batch.size"], "50");
    assert_eq!(host.call("GET", "/connectors/logs/status", None).0, 200);

    // Invalid: an unclosed bracket. Nothing changes; health says where.
    let broken = format!("{edited}  - name: more\n    plugin: log-sink\n    topics: [flights\n");
    std::fs::write(&config, &broken).unwrap();
    host.wait_until("the error reported", WAIT, || health(&host)["config_file"]["errors"].is_array());
    let errors = health(&host)["config_file"]["errors"].to_string();
    let line = broken.lines().position(|line| line.contains("topics: [flights") && !line.contains(']')).unwrap() + 1;
    assert!(errors.contains(&format!("connectors.yaml:{line}:13")), "{errors}");
    assert!(errors.contains("not closed"), "{errors}");
    assert_eq!(names(&host), json!(["files", "logs", "sim"]), "an invalid edit changed the connectors");
    // The log is read from the host's output by a thread of its own: wait for the line.
    host.wait_for_log("The edited configuration file is invalid; nothing was changed.", WAIT);
    // Invalid: a plugin option that does not exist, reported with its position.
    std::fs::write(&config, edited.replace("rate: 50", "rate: 50, colour: red")).unwrap();
    host.wait_until("the option error reported", WAIT, || health(&host)["config_file"]["errors"].to_string().contains("colour"));
    assert!(health(&host)["config_file"]["errors"].to_string().contains("connectors.yaml:"), "{}", health(&host));
    assert_eq!(names(&host), json!(["files", "logs", "sim"]));

    // Removed, with a host-level key changed: the key is reported, not applied.
    let moved = edited.replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1");
    std::fs::write(&config, &moved).unwrap();
    host.wait_until("logs removed", WAIT, || names(&host) == json!(["files", "sim"]));
    assert_eq!(health(&host)["config_file"]["restart_required"], json!(["admin"]));
    assert_eq!(health(&host)["config_file"]["errors"], Value::Null);
    assert_eq!(starts(&host, "sim"), 1);

    // A file connector may not take the name of one the API made.
    let api = json!({"name": "mine", "config": {"connector.class": "log-sink", "topics": "flights"}});
    assert_eq!(host.call("POST", "/connectors", Some(&api)).0, 201);
    std::fs::write(&config, format!("{moved}  - name: mine\n    plugin: log-sink\n    topics: [flights]\n")).unwrap();
    host.wait_until("the clash reported", WAIT, || health(&host)["config_file"]["errors"].to_string().contains("mine"));
    assert_eq!(names(&host), json!(["files", "mine", "sim"]));
    assert_eq!(host.call("GET", "/connectors/mine/config", None).1["connector.class"], "log-sink");
    host.stop();
}
