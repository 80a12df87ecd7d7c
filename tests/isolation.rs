//! Plugin isolation through the real binary: components that trap, loop forever or
//! exhaust memory fail only their own task, are restarted with backoff and counted,
//! while a healthy pipeline beside them keeps delivering; hostile ones that flood the
//! log, return a batch larger than their memory limit or one whose header claims 2^32
//! records, or call a store capability in a tight loop, are throttled or fail alone.

mod support;

use std::time::Duration;

use support::{Host, metric, read_sink_output, write_config};

fn misbehaving(name: &str, behaviour: &str) -> String {
    format!(
        "  - name: {name}\n    plugin: misbehaving-source\n    topic: {name}-out\n    config:\n      behaviour: {behaviour}\n      good_polls: 1\n"
    )
}

/// A host configuration (32 MiB per task, `call_timeout`, quick restarts) with a
/// healthy pipeline of a sensor simulator into files under `output`.
fn with_healthy_pipeline(directory: &std::path::Path, call_timeout: &str, output: &std::path::Path) -> String {
    let mut config = format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {}\n  memory_limit_mib: 32\n  call_timeout: {call_timeout}\n  restart_backoff: 100ms\n  max_restart_backoff: 400ms\nconnectors:\n",
        directory.join("data").display(),
        support::test_plugins_dir().display()
    );
    config.push_str("  - name: healthy\n    plugin: iot-sensor-simulator\n    topic: readings\n    config:\n      rate: 400\n");
    config.push_str(&format!(
        "  - name: healthy-files\n    plugin: file-sink\n    topics: [readings]\n    config:\n      directory: {}\n",
        output.display()
    ));
    config
}

/// The healthy pipeline of [`with_healthy_pipeline`] never failed, is RUNNING and keeps
/// delivering.
fn assert_healthy_pipeline_keeps_delivering(host: &Host, output: &std::path::Path) {
    let count = || read_sink_output(output).get("readings").map_or(0, Vec::len);
    let before = count();
    host.wait_until("the healthy pipeline to keep delivering", Duration::from_secs(20), || count() >= before + 200);
    let metrics = host.get_text("/metrics");
    for healthy in ["healthy", "healthy-files"] {
        assert_eq!(metric(&metrics, "wasm_connect_task_failures_total", &[("connector", healthy)]), 0.0, "{healthy} failed");
        assert_eq!(
            metric(&metrics, "wasm_connect_task_state", &[("connector", healthy), ("state", "RUNNING")]),
            1.0,
            "{healthy} is not RUNNING"
        );
    }
}

#[test]
fn broken_plugins_fail_only_their_own_task_and_are_restarted() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("output");
    let mut config = with_healthy_pipeline(directory.path(), "500ms", &output);
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
    assert_healthy_pipeline_keeps_delivering(&host, &output);
    let status = host.get_json("/connectors/healthy-files/status");
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    let log = host.stop();
    assert!(log.contains("The task failed."), "failures are logged:\n{log}");
}

#[test]
fn hostile_plugins_that_flood_the_log_or_return_huge_or_lying_batches_fail_or_throttle_only_themselves() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("output");
    let mut config = with_healthy_pipeline(directory.path(), "5s", &output);
    config.push_str(&misbehaving("flooder", "log-flood"));
    config.push_str(&misbehaving("bigbatch", "big-batch"));
    // Each batch holds a few records and claims 4,294,967,295.
    config.push_str(
        "  - name: liar\n    plugin: legacy-source\n    topic: liar-out\n    config:\n      count: 1000000\n      claim: 4294967295\n",
    );
    // Plugins' info lines are logged, so a flood would reach the log.
    let host = Host::start_with_env(&write_config(directory.path(), &config), &[("WASM_CONNECT_LOG", "info")]);

    // A 60 MiB batch does not fit the 32 MiB the task may use: that task fails, saying so.
    host.wait_until("the big batch to fail its task", Duration::from_secs(60), || {
        let status = host.get_json("/connectors/bigbatch/status");
        status["tasks"][0]["trace"].as_str().is_some_and(|trace| trace.contains("memory limit"))
    });
    // A batch that claims 2^32 - 1 records is refused for what it is, without trusting
    // the count (the task's restarts read the same lie again, and fail the same way).
    host.wait_until("the lying batch to fail its task", Duration::from_secs(60), || {
        let status = host.get_json("/connectors/liar/status");
        status["tasks"][0]["trace"]
            .as_str()
            .is_some_and(|trace| trace.contains("the header claims more records than the batch's bytes can hold"))
    });
    let lies = metric(&host.get_text("/metrics"), "wasm_connect_task_failures_total", &[("connector", "liar")]);
    assert!(lies >= 1.0, "the lying task's failures are not counted");
    assert!(
        host.get_json("/connectors/liar/offsets")["offsets"].as_array().is_some_and(Vec::is_empty),
        "a record of a lying batch was kept"
    );
    // 1 GiB of log lines per poll: at most 100 lines a second reach the log, the drops
    // are said, and a plugin that goes on is stopped and its task failed, saying why.
    host.wait_for_log("lines were dropped", Duration::from_secs(60));
    host.wait_until("the flood to fail its task", Duration::from_secs(60), || {
        let status = host.get_json("/connectors/flooder/status");
        status["tasks"][0]["trace"].as_str().is_some_and(|trace| trace.contains("kept logging far beyond its allowance"))
    });
    let flooded = || host.log().lines().filter(|line| line.contains("flooder") && line.contains("xxxxxxxxxxxxxxxx")).count();
    let restarts = || metric(&host.get_text("/metrics"), "wasm_connect_task_restarts_total", &[("connector", "flooder")]);
    let (before, restarts_before, since) = (flooded(), restarts(), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let (after, restarted, elapsed) = (flooded(), restarts() - restarts_before, since.elapsed().as_secs_f64());
    // Each instance starts with a burst of 200 lines, then 100 a second.
    let allowed = 100.0 * elapsed + 200.0 * (restarted + 1.0) + 50.0;
    assert!((after - before) as f64 <= allowed, "{} flood lines in {elapsed:.1} s over {restarted} restarts", after - before);
    assert!(host.log().len() < 64 << 20, "the log grew to {} bytes", host.log().len());

    // The healthy pipeline never failed and keeps delivering.
    assert_healthy_pipeline_keeps_delivering(&host, &output);
    host.stop();
}

#[test]
fn plugins_calling_a_store_capability_in_a_tight_loop_are_stopped_and_hold_few_descriptors() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("output");
    let mut config = with_healthy_pipeline(directory.path(), "2s", &output);
    for call in ["size", "append-new-files"] {
        config.push_str(&format!(
            "  - name: hammer-{call}\n    plugin: hammering-sink\n    topics: [readings]\n    config:\n      call: {call}\n      directory: {}\n",
            directory.path().join(call).display()
        ));
    }
    let host = Host::start(&write_config(directory.path(), &config));
    let descriptors_at_start = support::open_descriptors(host.pid());

    // Each write never returns. The size loop passes 10,000 capability calls within
    // milliseconds and is stopped for it; the appends (each new file opened, synced in
    // turns of 64) are stopped for the same reason or at call_timeout, whichever comes
    // first. Only those tasks fail, saying why, again after each restart.
    let flood = "called the files and store capabilities more than 10,000 times in one call";
    host.wait_until("hammer-size to be stopped", Duration::from_secs(60), || {
        let status = host.get_json("/connectors/hammer-size/status");
        status["tasks"][0]["trace"].as_str().is_some_and(|trace| trace.contains(flood))
    });
    host.wait_until("hammer-append-new-files to be stopped", Duration::from_secs(60), || {
        let status = host.get_json("/connectors/hammer-append-new-files/status");
        status["tasks"][0]["trace"]
            .as_str()
            .is_some_and(|trace| trace.contains(flood) || trace.contains("ran longer than 2s and was interrupted"))
    });
    host.wait_until("a second interruption of each", Duration::from_secs(60), || {
        let metrics = host.get_text("/metrics");
        ["hammer-size", "hammer-append-new-files"]
            .iter()
            .all(|name| metric(&metrics, "wasm_connect_task_failures_total", &[("connector", name)]) >= 2.0)
    });
    // Thousands of files were written, and the host held at most a few dozen of them
    // open at a time.
    let written = std::fs::read_dir(directory.path().join("append-new-files")).unwrap().count();
    assert!(written > 1000, "only {written} files were written: the loop did not run");
    let descriptors = support::open_descriptors(host.pid());
    assert!(descriptors < descriptors_at_start + 100, "{descriptors} descriptors open, {descriptors_at_start} at start");

    // The healthy pipeline never failed and keeps delivering.
    assert_healthy_pipeline_keeps_delivering(&host, &output);
    host.stop();
}
