//! The host attacked as a hostile client, a hostile plugin author and a web page
//! would, over HTTP against the real binary: plugin names that try to leave the
//! plugin store, cross-site requests in the exact shapes browsers send, credentials,
//! huge error answers, connections that never finish their request, a second host on
//! the same data directory, an admin port that is taken, the data directory's
//! permissions, a secret with every logger at TRACE, and TLS on the admin listener
//! with a certificate renewed while the host runs.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::replay::{Answer, ReplayServer};
use support::{Host, HttpResponse, http_request, run_to_exit, test_plugins_dir, write_config};

const WAIT: Duration = Duration::from_secs(60);

/// A host configuration with `admin` lines (indented by two spaces) added to the
/// admin block, every test plugin, and `connectors` (a YAML list).
fn config(directory: &Path, admin: &str, connectors: &str) -> PathBuf {
    write_config(
        directory,
        &format!(
            "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\n{admin}plugins:\n  dir: {}\n  restart_backoff: 200ms\nconnectors:\n{connectors}",
            directory.join("data").display(),
            test_plugins_dir().display()
        ),
    )
}

fn request(host: &Host, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    http_request(method, &format!("{}{path}", host.admin_url()), headers, body)
}

fn message(response: &HttpResponse) -> String {
    let error: Value = serde_json::from_str(&response.body).unwrap_or_else(|_| panic!("not a JSON error: {}", response.body));
    assert_eq!(error["error_code"], response.status, "{}", response.body);
    error["message"].as_str().unwrap().to_owned()
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> Option<&'a str> {
    response.headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn plugin_names_and_versions_never_reach_the_filesystem_unchecked() {
    let directory = tempfile::tempdir().unwrap();
    let host = Host::start(&config(directory.path(), "", "  []\n"));
    let counter = std::fs::read(test_plugins_dir().join("counter-source.wasm")).unwrap();
    let wasm = [("Content-Type", "application/wasm")];
    let hostile = [
        ("../../escaped", "`/` at position 3"),
        ("/tmp/absolute", "`/` at position 1"),
        ("counter\nsourc", "the character \\n at position 8"),
        ("counter@sourc", "`@` at position 8"),
        ("counter sourc", "a space at position 8"),
    ];
    for (name, says) in hostile {
        // "counter-source" is 14 bytes: keep the length, change the name.
        let padded = format!("{name:-<14}");
        let response = request(&host, "POST", "/plugins", &wasm, &support::renamed_component(&counter, "counter-source", &padded));
        assert_eq!(response.status, 400, "{name:?}: {}", response.body);
        let message = message(&response);
        assert!(message.contains("describes itself with the name") && message.contains(says), "{name:?}: {message}");
        assert!(!message.contains('\n'), "a raw newline in {message:?}");
    }
    assert!(!directory.path().join("escaped-@1.0.0.wasm").exists());
    assert!(!Path::new("/tmp/absolute-@1.0.0.wasm").exists());
    let stored: Vec<String> = std::fs::read_dir(directory.path().join("data/plugins"))
        .map(|entries| entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "refused uploads were stored: {stored:?}");
    assert!(!host.log().contains("counter\nsourc"), "a name split a log line");

    // Names and versions in URLs keep to the same alphabets.
    let victim = directory.path().join("victim@1.0.0.wasm");
    std::fs::write(&victim, b"keep me").unwrap();
    for (path, says) in [
        ("/plugins/%2E%2E", "the plugin name in the URL starts with `.`"),
        ("/plugins/..%2F..%2Fvictim", "the plugin name in the URL has `/` at position 3"),
        ("/plugins/victim/..%2F1.0.0", "the plugin version in the URL has `/` at position 3"),
        ("/plugins/x%0Ay/1.0.0", "the character \\n at position 2"),
    ] {
        let response = request(&host, "DELETE", path, &[], b"");
        assert_eq!(response.status, 400, "{path}: {}", response.body);
        assert!(message(&response).contains(says), "{path}: {}", response.body);
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");

    // A good upload lands inside the store, under its checked name.
    let response = request(&host, "POST", "/plugins", &wasm, &support::renamed_component(&counter, "counter-source", "counter-upload"));
    assert_eq!(response.status, 201, "{}", response.body);
    let stored = directory.path().join("data/plugins/counter-upload@1.0.0.wasm");
    assert!(stored.is_file());
    // DELETE /plugins/{name} removes every uploaded version, or refuses before
    // removing anything.
    let response = request(&host, "DELETE", "/plugins/counter-upload", &[], b"");
    assert_eq!(response.status, 204, "{}", response.body);
    assert!(!stored.exists());
    assert_eq!(request(&host, "GET", "/plugins/counter-upload", &[], b"").status, 404);
    let response = request(&host, "DELETE", "/plugins/counter-source", &[], b"");
    assert_eq!(response.status, 409, "only plugins.dir has it: {}", response.body);
    assert!(message(&response).contains("comes only from plugins.dir"), "{}", response.body);
    assert_eq!(request(&host, "GET", "/plugins/counter-source", &[], b"").status, 200);
    host.stop();
}

#[test]
fn a_web_page_on_another_origin_cannot_change_anything() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("anywhere");
    let host = Host::start(&config(directory.path(), "  allowed_origins: [\"https://ui.example.com\"]\n", "  []\n"));
    let connector =
        json!({"name": "planted", "config": {"connector.class": "file-sink", "topics": "t", "directory": output.display().to_string()}});
    let body = connector.to_string();
    let evil = "https://evil.example";

    // The preflight a browser sends before a cross-site JSON POST: refused, and no
    // CORS header lets the browser go on.
    let preflight = [("Origin", evil), ("Access-Control-Request-Method", "POST"), ("Access-Control-Request-Headers", "content-type")];
    let response = request(&host, "OPTIONS", "/connectors", &preflight, b"");
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    // The same POST sent anyway (a browser would not), with the page's Origin.
    let response = request(&host, "POST", "/connectors", &[("Origin", evil), ("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(response.status, 403, "{}", response.body);
    assert!(message(&response).contains("admin.allowed_origins"), "{}", response.body);
    // "Simple" requests, which browsers send without a preflight: a form post, a
    // text/plain fetch, a multipart upload, each with and without the Origin a
    // browser adds.
    for content_type in ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        for origin in [Some(evil), None] {
            let mut headers = vec![("Content-Type", content_type)];
            headers.extend(origin.map(|origin| ("Origin", origin)));
            let response = request(&host, "POST", "/connectors", &headers, body.as_bytes());
            assert!([403, 415].contains(&response.status), "{content_type} {origin:?}: {} {}", response.status, response.body);
            let response = request(&host, "POST", "/plugins", &headers, b"\0asm");
            assert!([403, 415].contains(&response.status), "{content_type} {origin:?}: {}", response.body);
            let response = request(&host, "PUT", "/admin/loggers/root", &headers, br#"{"level":"TRACE"}"#);
            assert!([403, 415].contains(&response.status), "{content_type} {origin:?}: {}", response.body);
        }
    }
    // A body-less state change as a form would send it.
    let response = request(&host, "POST", "/connectors/x/restart", &[("Content-Type", "application/x-www-form-urlencoded")], b"");
    assert_eq!(response.status, 415, "{}", response.body);
    // JSON endpoints take only JSON, uploads only application/wasm (Kafka Connect answers 415 too).
    let response = request(&host, "POST", "/connectors", &[], body.as_bytes());
    assert_eq!(response.status, 415, "{}", response.body);
    assert!(message(&response).contains("Content-Type: application/json"), "{}", response.body);
    let response = request(&host, "POST", "/plugins", &[("Content-Type", "application/octet-stream")], b"\0asm");
    assert_eq!(response.status, 415, "{}", response.body);
    assert!(message(&response).contains("application/wasm"), "{}", response.body);
    // Nothing was created, and the root logger kept its level.
    assert_eq!(host.call("GET", "/connectors", None).1, json!([]));
    assert_ne!(host.call("GET", "/admin/loggers/root", None).1["level"], "TRACE");
    assert!(!output.exists());

    // The allowed origin's page works, with the CORS headers its browser needs.
    let ui = "https://ui.example.com";
    let response = request(&host, "OPTIONS", "/connectors", &[("Origin", ui), ("Access-Control-Request-Method", "POST")], b"");
    assert_eq!(response.status, 204, "{}", response.body);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(ui));
    assert!(header(&response, "access-control-allow-headers").unwrap().contains("Content-Type"));
    let response = request(&host, "POST", "/connectors", &[("Origin", ui), ("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(ui));
    assert_eq!(host.call("GET", "/connectors", None).1, json!(["planted"]));
    host.stop();
}

#[test]
fn bearer_and_basic_credentials_in_any_case() {
    let directory = tempfile::tempdir().unwrap();
    let config = config(directory.path(), "", "  []\n");
    let token = "planted-admin-token-0c9a1f";
    let host = Host::start_with_env(&config, &[("WASM_CONNECT_ADMIN_TOKEN", token)]);
    let basic = |user_and_password: &str| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_and_password))
    };
    for (authorization, status) in [
        (format!("Bearer {token}"), 200),
        (format!("bearer {token}"), 200),
        (format!("BEARER {token}"), 200),
        (basic(&format!("admin:{token}")), 200),
        (basic(&format!(":{token}")), 200),
        (basic("admin:wrong"), 401),
        (basic(token), 401),
        ("Bearer wrong".to_owned(), 401),
    ] {
        let response = request(&host, "GET", "/connectors", &[("Authorization", &authorization)], b"");
        assert_eq!(response.status, status, "{authorization}: {}", response.body);
    }
    let response = request(&host, "GET", "/connectors", &[], b"");
    assert_eq!(response.status, 401);
    let challenges: Vec<&str> = response.headers.lines().filter(|line| line.to_ascii_lowercase().starts_with("www-authenticate")).collect();
    // Bearer only: a Basic challenge would make browsers remember credentials.
    assert!(
        challenges.iter().any(|line| line.contains("Bearer")) && !challenges.iter().any(|line| line.contains("Basic")),
        "{challenges:?}"
    );
    assert!(!host.log().contains(token), "the token reached the log");
    host.stop();
}

#[test]
fn a_config_with_thousands_of_bad_keys_gets_a_short_answer() {
    let directory = tempfile::tempdir().unwrap();
    let host = Host::start(&config(directory.path(), "", "  []\n"));
    let mut config = serde_json::Map::new();
    config.insert("connector.class".into(), json!("log-sink"));
    config.insert("topics".into(), json!("t"));
    for index in 0..80_000 {
        config.insert(format!("unknown-key-{index:05}"), json!("v"));
    }
    let body = json!({"name": "many", "config": config}).to_string();
    assert!(body.len() > 1_800_000 && body.len() < 2_000_000, "{}", body.len());
    let response = request(&host, "POST", "/connectors", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(response.status, 400);
    assert!(response.body.len() < 4_096, "a {} byte answer", response.body.len());
    assert!(message(&response).contains("at most 1000"), "{}", response.body);

    // 1,000 keys are read, and the answer lists 50 problems and says how many more.
    let mut config = serde_json::Map::new();
    config.insert("connector.class".into(), json!("log-sink"));
    config.insert("topics".into(), json!("t"));
    for index in 0..998 {
        config.insert(format!("unknown-key-{index:03}"), json!("v"));
    }
    let body = json!({"name": "many", "config": config}).to_string();
    let response = request(&host, "POST", "/connectors", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(response.status, 400);
    let text = message(&response);
    assert!(text.contains("998 error(s)") && text.contains("... and 948 more"), "{text}");
    assert_eq!(text.lines().count(), 52, "{text}");
    let flat = json!(config).to_string();
    let response =
        request(&host, "PUT", "/connector-plugins/log-sink/config/validate", &[("Content-Type", "application/json")], flat.as_bytes());
    assert_eq!(response.status, 200);
    let answer: Value = serde_json::from_str(&response.body).unwrap();
    assert!(answer["error_count"].as_u64().unwrap() >= 998, "{}", answer["error_count"]);
    assert!(answer["configs"].as_array().unwrap().len() < 80, "{} configs", answer["configs"].as_array().unwrap().len());
    assert!(response.body.len() < 64 << 10, "a {} byte answer", response.body.len());
    host.stop();
}

#[test]
fn connections_that_never_finish_a_request_are_closed_and_bounded() {
    let directory = tempfile::tempdir().unwrap();
    let host = Host::start(&config(directory.path(), "  max_connections: 40\n  header_timeout: 1s\n", "  []\n"));
    let address = host.admin_url().trim_start_matches("http://").to_owned();
    let before = support::open_descriptors(host.pid());
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream.write_all(b"GET /connectors HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    let during = support::open_descriptors(host.pid());
    assert!(during <= before + 45, "{before} descriptors before, {during} with 300 slow clients");
    // The first ones were closed by the host after the header timeout.
    slow[0].set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buffer = [0u8; 1024];
    let closed = match slow[0].read(&mut buffer) {
        Ok(0) => true,
        Ok(read) => String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 408"),
        Err(_) => true,
    };
    assert!(closed, "a slow client was kept open");
    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(&address).unwrap();
    drop(slow.drain(..));
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = idle.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() < Duration::from_secs(9), "the idle connection was kept {:?}", started.elapsed());
    // And the host answers everyone else.
    assert_eq!(host.call("GET", "/connectors", None).0, 200);
    host.stop();
}

#[test]
fn one_host_per_data_dir_an_owner_only_data_dir_and_nothing_started_without_the_admin_port() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let connectors = format!(
        "  - name: sim\n    plugin: counter-source\n    topic: counts\n    config: {{ rate: 100 }}\n  - name: files\n    plugin: file-sink\n    topics: [counts]\n    config:\n      directory: {}\n",
        output.display()
    );
    let config = config(directory.path(), "", &connectors);
    let host = Host::start(&config);
    host.wait_until("records written", WAIT, || std::fs::read_dir(&output).is_ok_and(|mut entries| entries.next().is_some()));
    let (started, stderr) = run_to_exit(&config);
    assert!(!started);
    assert!(stderr.contains("another wasm-connect host is running on the data directory"), "{stderr}");
    let data = directory.path().join("data");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for database in ["state.sqlite3", "topics.sqlite3"] {
        assert_eq!(mode(&data.join(database)), 0o600, "{database}");
    }
    host.stop();

    // A taken admin port: the host refuses before any task, transport or state.
    let fresh = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fresh_config = config.to_str().unwrap().to_owned();
    let text = std::fs::read_to_string(&fresh_config)
        .unwrap()
        .replace("127.0.0.1:0", &taken.local_addr().unwrap().to_string())
        .replace(&directory.path().display().to_string(), &fresh.path().display().to_string());
    let taken_config = write_config(fresh.path(), &text);
    let (started, stderr) = run_to_exit(&taken_config);
    assert!(!started);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!fresh.path().join("out").exists(), "a task ran");
    assert!(!fresh.path().join("data/topics.sqlite3").exists(), "the transport was opened");
}

#[test]
fn a_secret_stays_out_of_the_log_with_every_logger_at_trace() {
    const KEY: &str = "planted-trace-key-4b2a76d5";
    let server = ReplayServer::start();
    server.serve("/api/v9/flights", Answer::json(200, r#"{"request":{},"response":[]}"#));
    let directory = tempfile::tempdir().unwrap();
    let host = Host::start(&config(directory.path(), "", "  []\n"));
    let (status, _) = host.call("PUT", "/admin/loggers/root", Some(&json!({"level": "TRACE"})));
    assert_eq!(status, 200);
    let connector = json!({"name": "airlabs", "config": {
        "connector.class": "airlabs-source", "topic": "flights", "base_url": format!("{}/api/v9", server.url()),
        "api_key": KEY, "bbox": "48.5,2.0,49.2,2.8", "interval": "200ms",
    }});
    assert_eq!(host.call("POST", "/connectors", Some(&connector)).0, 201);
    host.wait_until("three polls", WAIT, || server.received("/api/v9/flights").len() >= 3);
    assert_eq!(server.received("/api/v9/flights")[0].param("api_key").as_deref(), Some(KEY));
    let log = host.stop();
    assert!(log.lines().count() > 100, "TRACE logged almost nothing:\n{log}");
    assert!(log.contains("[redacted]"), "the key was never where a log line could show it");
    assert!(!log.contains(KEY) && !log.contains("planted-trace-key"), "the key reached the log");
}

/// A self-signed certificate for 127.0.0.1 and its key, written by openssl.
fn self_signed(directory: &Path, name: &str) {
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", &format!("/CN={name}"), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(directory.join("key.pem"))
        .arg("-out")
        .arg(directory.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running openssl");
    assert!(status.success());
}

/// `curl` over HTTPS trusting only `ca`: (exit success, HTTP status, body).
fn curl_https(url: &str, ca: &Path, token: &str) -> (bool, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("Authorization: Bearer {token}"), url])
        .output()
        .expect("running curl");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn tls_on_the_admin_listener_with_a_certificate_renewed_while_running() {
    let directory = tempfile::tempdir().unwrap();
    let tls = directory.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    self_signed(&tls, "first");
    let first_ca = directory.path().join("first.pem");
    std::fs::copy(tls.join("cert.pem"), &first_ca).unwrap();
    let config = config(directory.path(), "  tls:\n    cert_file: tls/cert.pem\n    key_file: tls/key.pem\n", "  []\n");
    let token = "planted-tls-token-77aa01";
    let host = Host::start_with_env(&config, &[("WASM_CONNECT_ADMIN_TOKEN", token)]);
    let url = host.admin_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let (ok, answer) = curl_https(&format!("{url}/connectors"), &first_ca, token);
    assert!(ok && answer.ends_with("\n200") && answer.starts_with("[]"), "{answer}");
    // Plain HTTP on the TLS port gets no answer from the API.
    let plain = url.replace("https://", "http://");
    let output = Command::new("curl")
        .args(["-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", &format!("{plain}/connectors")])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&output.stdout), "200");

    // A renewed certificate is used without a restart; the old one is no longer served.
    std::thread::sleep(Duration::from_millis(1100));
    self_signed(&tls, "second");
    let second_ca = tls.join("cert.pem");
    let deadline = Instant::now() + WAIT;
    while !curl_https(&format!("{url}/connectors"), &second_ca, token).0 {
        assert!(Instant::now() < deadline, "the renewed certificate was not served:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!curl_https(&format!("{url}/connectors"), &first_ca, token).0, "the old certificate is still served");
    // A broken renewal keeps the certificate in use.
    std::fs::write(tls.join("key.pem"), b"not a key").unwrap();
    host.wait_for_log("cannot be used; the certificate in use stays", WAIT);
    assert!(curl_https(&format!("{url}/connectors"), &second_ca, token).0);
    assert!(!host.log().contains(token));
    host.stop();

    // Files that are not a usable pair stop the host at start, saying which.
    let (started, stderr) = run_to_exit(&config);
    assert!(!started);
    assert!(stderr.contains("admin.tls.key_file"), "{stderr}");
}

/// A GET whose `Host` header is `name`, as a browser sends it to a page's own origin.
fn get_as(host: &Host, name: &str, authorization: Option<&str>) -> (u16, String) {
    let address = host.admin_url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let credentials = authorization.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    write!(stream, "GET /connectors HTTP/1.1\r\nHost: {name}\r\n{credentials}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}

#[test]
fn without_a_token_a_page_on_a_name_of_its_own_cannot_read_the_api() {
    let directory = tempfile::tempdir().unwrap();
    let connector = "  - name: planted\n    plugin: counter-source\n    topic: t\n";
    let host = Host::start(&config(directory.path(), "  allowed_hosts: [wasm-connect]\n", connector));
    let port = host.admin_url().rsplit(':').next().unwrap().to_owned();
    // DNS rebinding: the page's own name now resolves to the host; the browser sends
    // that name, and no Origin on a GET.
    for rebound in [format!("attacker.example:{port}"), "attacker.example".to_owned(), format!("wasm-connect.attacker.example:{port}")] {
        let (status, response) = get_as(&host, &rebound, None);
        assert_eq!(status, 403, "{rebound}: {response}");
        assert!(response.contains("admin.allowed_hosts") && !response.contains("planted"), "{response}");
    }
    // Addresses, localhost and the listed name are served.
    for served in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("WASM-CONNECT:{port}"),
        "wasm-connect".to_owned(),
    ] {
        let (status, response) = get_as(&host, &served, None);
        assert_eq!(status, 200, "{served}: {response}");
        assert!(response.contains("planted"), "{response}");
    }
    host.stop();

    // With a token, a page cannot present it: any name is served to whoever has it.
    let directory = tempfile::tempdir().unwrap();
    let host = Host::start_with_env(&config(directory.path(), "", connector), &[("WASM_CONNECT_ADMIN_TOKEN", "a-token-for-the-host-test")]);
    assert_eq!(get_as(&host, "connect.example.com", Some("a-token-for-the-host-test")).0, 200);
    assert_eq!(get_as(&host, "connect.example.com", None).0, 401);
    host.stop();
}
