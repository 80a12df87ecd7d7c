//! Plugins while running, over HTTP against the real binary: components built from
//! `plugins/` uploaded (raw; a multipart form is refused), refused when they are not plugins, too
//! large or a different build under a taken version; a connector moved from one
//! version to another and back while records flow, with no record lost or repeated;
//! removal refused while in use; and uploads surviving a restart.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, http_request, read_sink_output, repo_root, test_plugins_dir, write_config};

const WAIT: Duration = Duration::from_secs(60);

fn config(directory: &Path) -> PathBuf {
    write_config(
        directory,
        &format!(
            "version: 1
data_dir: {data}
admin:
  listen: 127.0.0.1:0
plugins:
  dir: {shipped}
  max_upload_mib: 1
connectors:
  - name: files
    plugin: file-sink
    topics: [counts]
    config:
      directory: {output}
",
            data = directory.join("data").display(),
            shipped = repo_root().join("plugins/dist").display(),
            output = directory.join("out").display(),
        ),
    )
}

fn upload(host: &Host, content_type: &str, body: &[u8]) -> (u16, Value) {
    let response = http_request("POST", &format!("{}/plugins", host.admin_url()), &[("Content-Type", content_type)], body);
    let value = serde_json::from_str(&response.body).unwrap_or(Value::String(response.body.clone()));
    (response.status, value)
}

fn multipart(file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "wasm-connect-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"plugin.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Every counted record the file sink wrote: (n, version).
fn counted(directory: &Path) -> Vec<(u64, String)> {
    read_sink_output(&directory.join("out"))
        .remove("counts")
        .unwrap_or_default()
        .into_iter()
        .map(|line| (line.value["n"].as_u64().unwrap(), line.value["version"].as_str().unwrap().to_owned()))
        .collect()
}

fn count_of(directory: &Path, version: &str) -> usize {
    counted(directory).iter().filter(|(_, made_by)| made_by == version).count()
}

#[test]
fn a_plugin_uploaded_while_running_is_upgraded_and_downgraded_without_losing_a_record() {
    let directory = tempfile::tempdir().unwrap();
    let directory = directory.path();
    let config = config(directory);
    let host = Host::start(&config);
    let version_one = std::fs::read(test_plugins_dir().join("counter-source.wasm")).unwrap();
    let version_two = std::fs::read(test_plugins_dir().join("counter-source-v2.wasm")).unwrap();

    let (status, added) = upload(&host, "application/wasm", &version_one);
    assert_eq!(status, 201, "{added}");
    assert_eq!(
        (added["name"].as_str(), added["version"].as_str(), added["kind"].as_str()),
        (Some("counter-source"), Some("1.0.0"), Some("source"))
    );
    assert_eq!(added["origin"], "uploaded");
    assert!(added["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(added["options"][0]["name"], "rate");
    assert_eq!(upload(&host, "application/wasm", &version_one).0, 200, "the same component again is no change");
    // A multipart form is what a web page can post across sites: refused.
    let (content_type, form) = multipart(&version_one);
    let (status, refused) = upload(&host, &content_type, &form);
    assert_eq!(status, 415, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("Content-Type: application/wasm"), "{refused}");
    assert_eq!(upload(&host, "application/wasm", &version_two).0, 201);
    let (_, versions) = host.call("GET", "/plugins/counter-source", None);
    let listed: Vec<&str> = versions["versions"].as_array().unwrap().iter().map(|plugin| plugin["version"].as_str().unwrap()).collect();
    assert_eq!(listed, vec!["1.0.0", "2.0.0"]);
    assert!(
        host.call("GET", "/connector-plugins", None)
            .1
            .as_array()
            .unwrap()
            .contains(&json!({"class": "counter-source", "type": "source", "version": "2.0.0"}))
    );

    // What is not a usable plugin is refused, saying why.
    let (status, refused) = upload(&host, "application/wasm", b"\0asm not really");
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().unwrap().contains("not a valid WebAssembly component"), "{refused}");
    // An empty component: valid, but none of our worlds.
    let (status, refused) = upload(&host, "application/wasm", b"\0asm\x0d\0\x01\0");
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().unwrap().contains("exports no wasm-connect:connector world"), "{refused}");
    let trapping = std::fs::read(repo_root().join("plugins/test-broken/trapping-describe.wasm")).unwrap();
    let (status, refused) = upload(&host, "application/wasm", &trapping);
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().unwrap().contains("describe failed"), "{refused}");
    let (status, refused) = upload(&host, "application/wasm", &support::rebuilt_component(&version_one));
    assert_eq!(status, 409, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("already loaded with different content"), "{refused}");
    let (status, refused) = upload(&host, "application/wasm", &vec![0u8; 2 << 20]);
    assert_eq!(status, 413, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("plugins.max_upload_mib"), "{refused}");
    let (status, refused) = upload(&host, "application/wasm", b"");
    assert_eq!(status, 400, "{refused}");

    // A connector on version 1, moved to version 2 and back while it counts.
    let counter = json!({"name": "counter", "config": {"connector.class": "counter-source@1.0.0", "topic": "counts", "rate": "300"}});
    assert_eq!(host.call("POST", "/connectors", Some(&counter)).0, 201);
    host.wait_until("records of version 1", WAIT, || count_of(directory, "1.0.0") >= 300);
    let moved = host.call("PATCH", "/connectors/counter/config", Some(&json!({"connector.class": "counter-source@2.0.0"})));
    assert_eq!(moved.0, 200, "{}", moved.1);
    host.wait_until("records of version 2", WAIT, || count_of(directory, "2.0.0") >= 300);
    let (status, in_use) = host.call("DELETE", "/plugins/counter-source/2.0.0", None);
    assert_eq!(status, 409);
    assert!(in_use["message"].as_str().unwrap().contains("used by connector(s) counter"), "{in_use}");
    let before_back = count_of(directory, "1.0.0");
    assert_eq!(host.call("PATCH", "/connectors/counter/config", Some(&json!({"connector.class": "counter-source@1.0.0"}))).0, 200);
    host.wait_until("records of version 1 again", WAIT, || count_of(directory, "1.0.0") >= before_back + 300);
    assert_eq!(host.call("DELETE", "/plugins/counter-source/2.0.0", None).0, 204);
    assert_eq!(host.call("GET", "/plugins/counter-source/2.0.0", None).0, 404);
    let (status, shipped) = host.call("DELETE", "/plugins/file-sink/0.1.0", None);
    assert_eq!(status, 409);
    assert!(shipped["message"].as_str().unwrap().contains("plugins.dir"), "{shipped}");

    // Stopped, everything counted is written: 0..N, each once, versions 1, 2, 1.
    assert_eq!(host.call("PUT", "/connectors/counter/stop", None).0, 204);
    let (_, offsets) = host.call("GET", "/connectors/counter/offsets", None);
    let next: u64 = offsets["offsets"][0]["offset"]["position"].as_str().unwrap().parse().unwrap();
    host.wait_until("the sink to write every counted record", WAIT, || counted(directory).len() as u64 >= next);
    let mut records = counted(directory);
    records.sort();
    let numbers: Vec<u64> = records.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (0..next).collect::<Vec<_>>(), "records were lost or repeated across the version changes");
    let mut runs: Vec<&str> = records.iter().map(|(_, version)| version.as_str()).collect();
    runs.dedup();
    assert_eq!(runs, vec!["1.0.0", "2.0.0", "1.0.0"]);
    host.stop();

    // The upload and the connector on it survive a restart.
    let host = Host::start(&config);
    let (_, plugin) = host.call("GET", "/plugins/counter-source/1.0.0", None);
    assert_eq!(plugin["origin"], "uploaded");
    assert_eq!(plugin["used_by"], json!(["counter"]));
    assert_eq!(host.call("GET", "/connectors/counter/config", None).1["connector.class"], "counter-source@1.0.0");
    assert_eq!(host.call("GET", "/connectors/counter/status", None).1["connector"]["state"], "STOPPED");
    assert_eq!(host.call("PUT", "/connectors/counter/resume", None).0, 202);
    host.stop();

    // Its plugin gone, the connector is FAILED with no tasks, in its info as in its status.
    std::fs::remove_file(directory.join("data/plugins/counter-source@1.0.0.wasm")).unwrap();
    let host = Host::start(&config);
    let (_, status) = host.call("GET", "/connectors/counter/status", None);
    assert_eq!(status["connector"]["state"], "FAILED", "{status}");
    assert_eq!(status["tasks"], json!([]), "{status}");
    assert_eq!(host.call("GET", "/connectors/counter", None).1["tasks"], json!([]));
    host.stop();
}
