//! External services the store tests need, installed and started by the tests
//! themselves: Elasticsearch-compatible servers (osmem-server, OpenSearch-flavoured;
//! noida-db, Elasticsearch-8-flavoured) and a MongoDB-compatible server (SecantusDB,
//! a separate process: it is GPL and never linked). They come from PyPI at pinned
//! versions into a virtualenv cached under the target directory, listen on
//! 127.0.0.1 on a free port, and are killed when the test's handle drops, also when
//! the test fails. With `ES_URL` or `MONGO_URI` set, the tests use that server instead.
//! Prometheus and promtool come from Debian's pinned package, unpacked (not installed)
//! into the same cache; `PROMETHEUS_BIN_DIR` points at other binaries instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned PyPI packages: the test servers, and a validator of OpenAPI documents.
const PACKAGES: &[&str] = &["osmem-server==0.1.6", "noida-db==0.2.3", "secantusdb==0.7.0b3", "openapi-spec-validator==0.7.1"];

/// The virtualenv with the test servers, created once and reused by later runs.
pub fn venv() -> PathBuf {
    cached_venv(&format!("venv-{}", PACKAGES.join("-")), &[PACKAGES])
}

/// The API fuzzer and its dependencies, pinned, for a virtualenv of their own.
const SCHEMATHESIS_REQUIREMENTS: &str = include_str!("../fixtures/schemathesis/requirements.txt");

/// The `schemathesis` command, installed on first use.
pub fn schemathesis() -> PathBuf {
    let pinned: Vec<&str> = SCHEMATHESIS_REQUIREMENTS.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()).collect();
    let version = pinned.iter().find(|line| line.starts_with("schemathesis==")).expect("schemathesis is pinned");
    // Named after the pins (FNV-1a of their text): any change installs afresh.
    let digest = pinned
        .iter()
        .flat_map(|line| line.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    cached_venv(&format!("{version}-{digest:016x}"), &[&pinned]).join("bin/schemathesis")
}

/// A Kafka Connect REST client from PyPI (kafka-connect-py, the `kc` command) and its
/// dependencies, pinned.
const KAFKA_CONNECT_CLIENT: &[&str] = &[
    "kafka-connect-py==1.0.0",
    "click==8.1.8",
    "requests==2.32.3",
    "urllib3==2.2.3",
    "certifi==2024.8.30",
    "idna==3.10",
    "charset-normalizer==3.4.0",
];

/// The `kc` command of kafka-connect-py, installed on first use.
pub fn kafka_connect_client() -> PathBuf {
    cached_venv(&format!("kc-{}", KAFKA_CONNECT_CLIENT[0]), &[KAFKA_CONNECT_CLIENT]).join("bin/kc")
}

/// A virtualenv under the target directory named after what it holds, created once
/// and reused by later runs: each entry of `installs` is one `pip install`, in order.
/// Several test binaries may ask at once: one installs, the others wait.
pub fn cached_venv(name: &str, installs: &[&[&str]]) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-services");
    std::fs::create_dir_all(&root).unwrap();
    let name = name.replace(['=', '.'], "_");
    let venv = root.join(&name);
    let complete = venv.join(".complete");
    let lock = std::fs::File::create(root.join(format!("{name}.lock"))).unwrap();
    lock.lock().unwrap();
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        for packages in installs {
            run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "--disable-pip-version-check"]).args(*packages));
        }
        std::fs::write(&complete, format!("{installs:?}")).unwrap();
    }
    lock.unlock().unwrap();
    venv
}

/// Compose's reference implementation (docker-compose 1.29, Python) and the
/// dependencies it runs with. It pins PyYAML below 6, which no longer builds on this
/// Python, so it is installed without its own pins; PyYAML 6 works with it (Debian
/// ships the same pair).
const COMPOSE_PACKAGES: &[&str] = &[
    "PyYAML==6.0.2",
    "docker==6.1.3",
    "dockerpty==0.4.1",
    "docopt==0.6.2",
    "python-dotenv==0.21.1",
    "jsonschema==3.2.0",
    "requests==2.31.0",
    "texttable==1.7.0",
    "websocket-client==0.59.0",
    "distro==1.9.0",
];
const COMPOSE: &str = "docker-compose==1.29.2";

/// Runs `docker-compose -f FILE config -q`, which checks a compose file against the
/// Compose schema without an engine; its report when the file is refused.
pub fn compose_config_errors(file: &Path) -> Option<String> {
    let venv = cached_venv(&format!("compose-{COMPOSE}"), &[&["--no-deps", COMPOSE], COMPOSE_PACKAGES]);
    let output = Command::new(venv.join("bin/docker-compose")).arg("-f").arg(file).args(["config", "-q"]).output().unwrap();
    (!output.status.success()).then(|| format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

/// Checks an OpenAPI document with `openapi-spec-validator`; panics with its report.
pub fn validate_openapi(document: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), document).unwrap();
    run(Command::new(venv().join("bin/openapi-spec-validator")).arg(file.path()));
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn site_packages(venv: &Path) -> PathBuf {
    let lib = venv.join("lib");
    let python = std::fs::read_dir(&lib)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.file_name().unwrap().to_string_lossy().starts_with("python"));
    python.expect("a pythonX.Y directory in the venv").join("site-packages")
}

/// Debian's Prometheus package, pinned: the server and `promtool`.
const PROMETHEUS_PACKAGE: &str = "prometheus=2.42.0+ds-5+deb12u1";

/// The path of `tool` (`prometheus` or `promtool`): from `PROMETHEUS_BIN_DIR`, or from
/// the pinned Debian package, downloaded once with `apt-get download` and unpacked
/// into the cache (nothing is installed on the machine).
pub fn prometheus_tool(tool: &str) -> PathBuf {
    if let Some(directory) = std::env::var_os("PROMETHEUS_BIN_DIR") {
        return PathBuf::from(directory).join(tool);
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-services");
    std::fs::create_dir_all(&root).unwrap();
    let unpacked = root.join(PROMETHEUS_PACKAGE.replace(['=', '+', '.'], "_"));
    let lock = std::fs::File::create(root.join("prometheus.lock")).unwrap();
    lock.lock().unwrap();
    if !unpacked.join(".complete").exists() {
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked).unwrap();
        let download = || Command::new("apt-get").args(["download", "-q", PROMETHEUS_PACKAGE]).current_dir(&unpacked).output();
        // A fresh machine may have no package lists yet.
        if !download().is_ok_and(|output| output.status.success()) {
            run(Command::new("apt-get").args(["update", "-q"]));
            run(Command::new("apt-get").args(["download", "-q", PROMETHEUS_PACKAGE]).current_dir(&unpacked));
        }
        let package = std::fs::read_dir(&unpacked)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|extension| extension == "deb"))
            .expect("apt-get download left a .deb");
        run(Command::new("dpkg-deb").arg("-x").arg(&package).arg(unpacked.join("root")));
        std::fs::write(unpacked.join(".complete"), PROMETHEUS_PACKAGE).unwrap();
    }
    lock.unlock().unwrap();
    unpacked.join("root/usr/bin").join(tool)
}

/// Runs promtool with `arguments` (and `stdin`); its output, or a panic with its report.
pub fn promtool(arguments: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new(prometheus_tool("promtool"))
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    child.stdin.take().unwrap().write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {arguments:?} failed:\n{text}");
    text
}

/// Starts a Prometheus server with the configuration file `config`, its data in a
/// temporary directory, on a free port of 127.0.0.1.
pub fn prometheus(config: &Path) -> Server {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(prometheus_tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.path().display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus");
    wait_for_port(port, &mut child, "prometheus");
    // It listens before it is ready, answering 503 meanwhile.
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http("GET", &format!("{url}/-/ready"), None).0 != 200 {
        assert!(Instant::now() < deadline, "prometheus was not ready within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Server { child: Some(child), _data: Some(data), url: format!("http://127.0.0.1:{port}"), flavour: "prometheus" }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` different ports nobody listens on right now (each held until all are picked).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|index| listeners[index].local_addr().unwrap().port())
}

/// A server process, killed on drop.
pub struct Server {
    child: Option<Child>,
    _data: Option<tempfile::TempDir>,
    /// Its address (`http://127.0.0.1:PORT` or `mongodb://...`).
    pub url: String,
    /// Which implementation it is, for messages.
    pub flavour: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening on port {port}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on port {port} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another process may have taken the port between its pick and the start.
    std::thread::sleep(Duration::from_millis(50));
    if let Ok(Some(status)) = child.try_wait() {
        panic!("{what} exited ({status}) as port {port} answered: if it could not bind, another process took the port after it was picked");
    }
}

/// The Elasticsearch-compatible servers to run a suite against: the one in `ES_URL`,
/// or both local implementations (`osmem`, OpenSearch-flavoured, documents visible at
/// once; `noida`, Elasticsearch-8-flavoured with refresh semantics).
pub fn elasticsearch_servers() -> Vec<&'static str> {
    if std::env::var_os("ES_URL").is_some() { vec!["external"] } else { vec!["osmem", "noida"] }
}

/// Starts (or, for `external`, points at) an Elasticsearch-compatible server.
pub fn elasticsearch(flavour: &'static str) -> Server {
    if flavour == "external" {
        let url = std::env::var("ES_URL").unwrap().trim_end_matches('/').to_owned();
        return Server { child: None, _data: None, url, flavour };
    }
    let site = site_packages(&venv());
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut command = match flavour {
        "osmem" => {
            let mut command = Command::new(site.join("osmem_server/bin/osmem-server"));
            // osmem exits when its stdin closes: the pipe held by `Server` closes with
            // the test process, so the server goes even if the test is killed.
            command.args(["-addr", &format!("127.0.0.1:{port}"), "-no-ja"]).stdin(Stdio::piped());
            command
        }
        "noida" => {
            let mut command = Command::new(site.join("noida_db/noida-db"));
            command.arg("start").arg("--data-dir").arg(data.path()).args([
                "--only",
                "elasticsearch",
                "--elasticsearch-port",
                &port.to_string(),
            ]);
            command
        }
        other => panic!("unknown Elasticsearch flavour {other}"),
    };
    if flavour == "noida" {
        command.stdin(Stdio::null());
    }
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_port(port, &mut child, flavour);
    Server { child: Some(child), _data: Some(data), url: format!("http://127.0.0.1:{port}"), flavour }
}

/// Starts (or, with `MONGO_URI`, points at) a MongoDB-compatible server.
pub fn mongodb() -> Server {
    if let Ok(uri) = std::env::var("MONGO_URI") {
        return Server { child: None, _data: None, url: uri, flavour: "external" };
    }
    let venv = venv();
    let port = free_port();
    let mut child = Command::new(venv.join("bin/python"))
        .arg(venv.join("bin/secantusd-py"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--storage-path", ":memory:"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "secantusd");
    Server { child: Some(child), _data: None, url: format!("mongodb://127.0.0.1:{port}/?directConnection=true"), flavour: "secantus" }
}

/// One HTTP/1.1 request over loopback with a JSON body: (status, body).
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let response = http_request(method, url, &[("Content-Type", "application/json")], body.unwrap_or("").as_bytes());
    (response.status, response.body)
}

/// A response of [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header lines, as sent.
    pub headers: String,
    /// The body, dechunked.
    pub body: String,
}

/// A minimal HTTP/1.1 request over loopback, with extra `headers` and a raw `body`.
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (address, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(address).expect("connecting over loopback");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let (headers, body) = response.split_once("\r\n\r\n").map(|(headers, body)| (headers.to_owned(), body.to_owned())).unwrap_or_default();
    let body = if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
    HttpResponse { status, headers, body }
}

/// The body of a chunked HTTP response, joined.
pub fn dechunk(body: &str) -> String {
    let mut output = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        output.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    output
}
