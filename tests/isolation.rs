//! Plugin isolation through the real binary: components that trap, loop forever or
//! exhaust memory fail only their own task, are restarted with backoff and counted,
//! while a healthy pipeline beside them keeps delivering.

mod support;

use std::time::Duration;

use support::{Host, metric, read_sink_output, write_config};

fn misbehaving(name: &str, behaviour: &str) -> String {
    format!(
        "  - name: {name}\n    plugin: misbehaving-source\n    topic: {name}-out\n    config:\n      behaviour: {behaviour}\n      good_polls: 1\n"
    )
}

#[test]
fn broken_plugins_fail_only_their_own_task_and_are_restarted() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("output");
    let mut config = format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {}\n  memory_limit_mib: 32\n  call_timeout: 500ms\n  restart_backoff: 100ms\n  max_restart_backoff: 400ms\nconnectors:\n",
        directory.path().join("data").display(),
        support::test_plugins_dir().display()
    );
    config.push_str("  - name: healthy\n    plugin: iot-sensor-simulator\n    topic: readings\n    config:\n      rate: 400\n");
    config.push_str(&format!(
        "  - name: healthy-files\n    plugin: file-sink\n    topics: [readings]\n    config:\n      directory: {}\n",
        output.display()
    ));
    config.push_str(&misbehaving("trapper", "trap"));
    config.push_str(&misbehaving("looper", "loop"));
    config.push_str(&misbehaving("hoarder", "oom"));
    let host = Host::start(&write_config(directory.path(), &config));

    let failures = |connector: &str, outcome: &str| {
        metric(&host.get_text("/metrics"), "wasm_connect_task_failures_total", &[("connector", connector), ("outcome", outcome)])
    };
    let restarts = |connector: &str| metric(&host.get_text("/metrics"), "wasm_connect_task_restarts_total", &[("connector", connector)]);
    host.wait_until("each broken plugin to fail and restart twice", Duration::from_secs(60), || {
        failures("trapper", "trap") >= 2.0
            && failures("looper", "timeout") >= 2.0
            && failures("hoarder", "out_of_memory") >= 2.0
            && ["trapper", "looper", "hoarder"].iter().all(|name| restarts(name) >= 2.0)
    });

    // Each failure is recorded in the task's status with its reason.
    for (connector, reason) in [("trapper", "trapped"), ("looper", "interrupted"), ("hoarder", "memory limit")] {
        host.wait_until(&format!("{connector} to show why it is restarting"), Duration::from_secs(20), || {
            let status = host.get_json(&format!("/connectors/{connector}/status"));
            let task = &status["tasks"][0];
            task["state"] == "RESTARTING" && task["trace"].as_str().is_some_and(|trace| trace.contains(reason))
        });
    }

    // Meanwhile the healthy pipeline never failed and keeps delivering.
    let count = || read_sink_output(&output).get("readings").map_or(0, Vec::len);
    let before = count();
    host.wait_until("the healthy pipeline to keep delivering", Duration::from_secs(20), || count() >= before + 200);
    let metrics = host.get_text("/metrics");
    for healthy in ["healthy", "healthy-files"] {
        assert_eq!(metric(&metrics, "wasm_connect_task_failures_total", &[("connector", healthy)]), 0.0, "{healthy} failed");
        assert_eq!(metric(&metrics, "wasm_connect_task_state", &[("connector", healthy), ("state", "RUNNING")]), 1.0);
    }
    let status = host.get_json("/connectors/healthy-files/status");
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    let log = host.stop();
    assert!(log.contains("The task failed."), "failures are logged:\n{log}");
}
