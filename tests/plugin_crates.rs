//! The plugin workspace's own unit tests (record codec, option values, simulator
//! time and geometry, the file sink's lines), run natively so that the one test
//! command covers them. Each package gets its own cargo invocation: the SDK's kind
//! features must not unify.

mod support;

use std::process::Command;

fn run_unit_tests(package: &str, features: &[&str]) {
    let target_dir = std::env::current_exe().unwrap().ancestors().nth(3).unwrap().join("wasm-plugins");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command
        .current_dir(support::repo_root().join("plugins"))
        // Unoptimised: the release profile builds plugins at opt-level 3, which took
        // twice as long to compile as these tests take to run in a debug build.
        .args(["test", "-p", package])
        .arg("--target-dir")
        .arg(&target_dir);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key.starts_with("RUSTC") || key == "RUSTFLAGS" {
            command.env_remove(key.as_ref());
        }
    }
    let output = command.output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "unit tests of {package} failed:\n{report}");
    let passed: usize = report
        .lines()
        .filter_map(|line| line.strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed > 0, "no unit test ran for {package}:\n{report}");
}

#[test]
fn protocol_unit_tests_pass() {
    run_unit_tests("wasm-connect-protocol", &[]);
}

#[test]
fn sdk_unit_tests_pass() {
    run_unit_tests("wasm-connect-sdk", &["http"]);
}

#[test]
fn file_sink_unit_tests_pass() {
    run_unit_tests("file-sink", &[]);
}

#[test]
fn flight_simulator_unit_tests_pass() {
    run_unit_tests("flight-simulator", &[]);
}

#[test]
fn http_poll_source_unit_tests_pass() {
    run_unit_tests("http-poll-source", &[]);
}

#[test]
fn api_source_unit_tests_pass() {
    for package in ["airlabs-source", "openaq-source", "alphavantage-source"] {
        run_unit_tests(package, &[]);
    }
}

#[test]
fn geo_transform_unit_tests_pass() {
    run_unit_tests("geo-transform", &[]);
}

#[test]
fn jq_transform_unit_tests_pass() {
    run_unit_tests("jq-transform", &[]);
}
