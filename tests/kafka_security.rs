//! Secured Kafka clusters and compression: the host's librdkafka speaks TLS (with and
//! without a client certificate), SASL PLAIN, SCRAM-SHA-512 and OAUTHBEARER (with an
//! unsecured JWT, and with tokens fetched from an OIDC token endpoint) to a broker process,
//! names the setting to fix when the password or the CA is wrong, and never logs a
//! secret; every codec is produced and consumed.
//!
//! The secured broker is tansu behind a TLS/SASL front (`support::kafka`): no broker
//! installable here speaks TLS and SASL itself. The codec test uses librdkafka's mock
//! cluster, or the cluster named by `WASM_CONNECT_TEST_KAFKA_BOOTSTRAP`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::kafka::{Listener, OIDC_CLIENT, OIDC_SECRET, PASSWORD, SecuredBroker, USER};
use support::{Host, read_sink_output, run_to_exit, simulated_values, sorted_texts, write_config};

const START: &str = "2024-05-01T00:00:00Z";
const RECORDS: usize = 300;

/// A host on `bootstrap` with `client` settings (YAML lines under `client:`), and a
/// sensor simulator whose `RECORDS` readings a file sink writes under `directory/output`.
/// The connectors are named after the topic: hosts running side by side on one broker
/// must not share the sink's consumer group.
fn pipeline(directory: &Path, bootstrap: &str, client: &str, topic: &str) -> std::path::PathBuf {
    let text = format!(
        "version: 1\ndata_dir: {data}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {plugins}\n\
         kafka:\n  bootstrap_servers: {bootstrap}\n  offsets_topic: {topic}-offsets\n  config_topic: {topic}-configs\n  client:\n{client}    session.timeout.ms: 6000\n\
         connectors:\n  - name: sensors-{topic}\n    plugin: iot-sensor-simulator\n    topic: {topic}\n    config:\n      seed: 21\n      rate: 0\n      start: {START}\n      limit: {RECORDS}\n  - name: files-{topic}\n\
         \x20   plugin: file-sink\n    topics: [{topic}]\n    config:\n      directory: {output}\n",
        data = directory.join("data").display(),
        plugins = support::test_plugins_dir().display(),
        output = directory.join("output").display(),
    );
    write_config(directory, &text)
}

/// Runs the pipeline until the file sink holds every reading; its log.
fn deliver_every_record(config: &Path, output: &Path, topic: &str) -> String {
    let host = Host::start(config);
    let count = || read_sink_output(output).get(topic).map_or(0, Vec::len);
    host.wait_until("every reading in the file sink", Duration::from_secs(120), || count() >= RECORDS);
    std::thread::sleep(Duration::from_millis(500));
    let log = host.stop();
    let written = read_sink_output(output);
    let expected = simulated_values("iot-sensor-simulator", "21", START, RECORDS);
    assert_eq!(sorted_texts(written[topic].iter().map(|line| &line.value)), sorted_texts(&expected), "{topic}: every reading once");
    log
}

/// The error a host that did not start printed last (log lines aside).
fn start_up_error(stderr: &str) -> &str {
    stderr.lines().rev().find(|line| line.starts_with("error: ")).unwrap_or_default()
}

fn password_file(directory: &Path, password: &str) -> String {
    let path = directory.join("kafka-password");
    std::fs::write(&path, password).unwrap();
    path.display().to_string()
}

fn sasl_client(mechanism: &str, password_file: &str, ca: &Path) -> String {
    format!(
        "    security.protocol: SASL_SSL\n    sasl.mechanisms: {mechanism}\n    sasl.username: {USER}\n    sasl.password: ${{file:{password_file}}}\n    ssl.ca.location: {}\n",
        ca.display()
    )
}

#[test]
fn sasl_ssl_with_scram_plain_and_oauthbearer_carries_a_pipeline_and_never_logs_the_password() {
    let directory = tempfile::tempdir().unwrap();
    let broker = SecuredBroker::start(Listener::SaslSsl, &directory.path().join("certificates"));
    let ca = broker.certificates.join("ca.pem");
    let cases =
        [("SCRAM-SHA-512", "readings-scram"), ("PLAIN", "readings-plain"), ("OAUTHBEARER", "readings-oauth"), ("OIDC", "readings-oidc")];
    // The mechanisms run side by side, one host each on its own topic: most of a run is
    // spent waiting on the broker, and one after the other took minutes of the test run.
    let issued_before = broker.issued_tokens();
    let run_case = |(mechanism, topic): (&str, &str)| {
        let run = directory.path().join(topic);
        std::fs::create_dir(&run).unwrap();
        let secret = password_file(&run, if mechanism == "OIDC" { OIDC_SECRET } else { PASSWORD });
        // zstd on the wire as well: what a managed cluster's users ask for.
        let client = match mechanism {
            // librdkafka's own unsecured JWT for the principal: what the front accepts.
            "OAUTHBEARER" => {
                sasl_client(mechanism, &secret, &ca)
                    + "    sasl.oauthbearer.config: principal=connect-host\n    enable.sasl.oauthbearer.unsecure.jwt: true\n"
            }
            "OIDC" => oidc_client(&broker, &secret),
            _ => sasl_client(mechanism, &secret, &ca),
        } + "    compression.type: zstd\n";
        let config = pipeline(&run, &broker.bootstrap, &client, topic);
        let validate = support::command().arg("validate").arg(&config).output().unwrap();
        assert!(validate.status.success(), "validate refused {mechanism}: {}", String::from_utf8_lossy(&validate.stderr));
        let log = deliver_every_record(&config, &run.join("output"), topic);
        assert!(!log.contains(PASSWORD) && !log.contains(OIDC_SECRET), "{mechanism}: the secret reached the log");
    };
    let run_case = &run_case;
    std::thread::scope(|scope| {
        for case in cases {
            scope.spawn(move || run_case(case));
        }
    });
    // Only the OIDC run fetches tokens from the endpoint.
    assert!(broker.issued_tokens() > issued_before, "the OIDC pipeline ran without a token from the OIDC endpoint");
}

/// OAUTHBEARER with tokens librdkafka fetches from the front's OIDC token endpoint
/// (client credentials; the secret in `secret_file`), trusting the test CA for both.
fn oidc_client(broker: &SecuredBroker, secret_file: &str) -> String {
    let ca = broker.certificates.join("ca.pem");
    format!(
        "    security.protocol: SASL_SSL\n    ssl.ca.location: {ca}\n    sasl.mechanisms: OAUTHBEARER\n    sasl.oauthbearer.method: oidc\n\
         \x20   sasl.oauthbearer.client.id: {OIDC_CLIENT}\n    sasl.oauthbearer.client.secret: ${{file:{secret_file}}}\n\
         \x20   sasl.oauthbearer.token.endpoint.url: {}\n    https.ca.location: {ca}\n",
        broker.token_endpoint,
        ca = ca.display(),
    )
}

#[test]
fn a_wrong_password_and_an_untrusted_certificate_each_name_the_setting_to_fix() {
    let directory = tempfile::tempdir().unwrap();
    let broker = SecuredBroker::start(Listener::SaslSsl, &directory.path().join("certificates"));
    let wrong_password = "planted-wrong-password-9a3e";
    let cases = [
        ("wrong-password", wrong_password, broker.certificates.join("ca.pem"), "check kafka.client's sasl.username and sasl.password"),
        ("untrusted", PASSWORD, broker.certificates.join("other-ca.pem"), "set kafka.client's ssl.ca.location to the CA that signed it"),
        (
            "wrong-oidc-secret",
            wrong_password,
            broker.certificates.join("ca.pem"),
            "sasl.oauthbearer.client.id and sasl.oauthbearer.client.secret",
        ),
    ];
    // Side by side, as above: each host waits out its own refusal.
    let run_case = |(topic, password, ca, advice): (&str, &str, std::path::PathBuf, &str)| {
        let run = directory.path().join(topic);
        std::fs::create_dir(&run).unwrap();
        let secret = password_file(&run, password);
        let client = match topic {
            "wrong-oidc-secret" => oidc_client(&broker, &secret),
            _ => sasl_client("SCRAM-SHA-512", &secret, &ca),
        };
        let config = pipeline(&run, &broker.bootstrap, &client, topic);
        // The host cannot check its topics, so it does not start, and says why.
        let (started, stderr) = run_to_exit(&config);
        assert!(!started);
        assert!(start_up_error(&stderr).contains(advice), "{topic}: {stderr}");
        assert!(!stderr.contains(password), "{topic}: the password was printed");
        assert!(read_sink_output(&run.join("output")).is_empty(), "{topic}: something was delivered");
    };
    let run_case = &run_case;
    std::thread::scope(|scope| {
        for case in cases {
            scope.spawn(move || run_case(case));
        }
    });
}

#[test]
fn mutual_tls_with_an_encrypted_client_key_carries_a_pipeline() {
    let directory = tempfile::tempdir().unwrap();
    let broker = SecuredBroker::start(Listener::MutualTls, &directory.path().join("certificates"));
    let certificates = &broker.certificates;
    let secret = password_file(directory.path(), PASSWORD);
    let client = format!(
        "    security.protocol: SSL\n    ssl.ca.location: {}\n    ssl.certificate.location: {}\n    ssl.key.location: {}\n    ssl.key.password: ${{file:{secret}}}\n",
        certificates.join("ca.pem").display(),
        certificates.join("client.pem").display(),
        certificates.join("client.key").display(),
    );
    let config = pipeline(directory.path(), &broker.bootstrap, &client, "readings-mtls");
    let log = deliver_every_record(&config, &directory.path().join("output"), "readings-mtls");
    assert!(!log.contains(PASSWORD), "the key's password reached the log");

    // Without its certificate the host is refused, and told which settings to set.
    let run = directory.path().join("no-certificate");
    std::fs::create_dir(&run).unwrap();
    let client = format!("    security.protocol: SSL\n    ssl.ca.location: {}\n", certificates.join("ca.pem").display());
    let (started, stderr) = run_to_exit(&pipeline(&run, &broker.bootstrap, &client, "readings-refused"));
    assert!(!started);
    assert!(start_up_error(&stderr).contains("set ssl.certificate.location and ssl.key.location"), "{stderr}");
}

#[test]
fn every_compression_codec_is_produced_and_consumed() {
    let external = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP").ok();
    let mock = match external {
        Some(_) => None,
        None => Some(rdkafka::mocking::MockCluster::new(1).expect("starting librdkafka's mock cluster")),
    };
    let bootstrap = external.unwrap_or_else(|| mock.as_ref().unwrap().bootstrap_servers());
    let directory = tempfile::tempdir().unwrap();
    let suffix = std::process::id();
    let codecs = ["zstd", "lz4", "snappy", "gzip"];
    let topic = |codec: &str| format!("readings-{codec}-{suffix}");
    if let Some(mock) = &mock {
        for codec in codecs {
            mock.create_topic(&topic(codec), 2, 1).unwrap();
            for own in ["offsets", "configs", "configs-assignments", "configs-status", "configs-plugins"] {
                mock.create_topic(&format!("{}-{own}", topic(codec)), 1, 1).unwrap();
            }
        }
    }
    // One host per codec, side by side (each on its own topics).
    let (directory, bootstrap, topic) = (directory.path(), bootstrap.as_str(), &topic);
    std::thread::scope(|scope| {
        for codec in codecs {
            scope.spawn(move || {
                let (run, topic) = (directory.join(codec), topic(codec));
                std::fs::create_dir(&run).unwrap();
                let client = format!("    compression.type: {codec}\n    topic.metadata.refresh.interval.ms: 500\n");
                deliver_every_record(&pipeline(&run, bootstrap, &client, &topic), &run.join("output"), &topic);
            });
        }
    });
}

#[test]
fn validate_reports_kafka_client_settings_this_build_or_librdkafka_refuses() {
    let directory = tempfile::tempdir().unwrap();
    let client =
        "    compression.type: zstd\n    security.protocol: SASL_SSLL\n    sasl.mechanism: SCRAM-SHA-512\n    ssl.keystore.passwrod: x\n";
    let config = pipeline(directory.path(), "127.0.0.1:9", client, "readings");
    let output = support::command().arg("validate").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    // Each refused setting, located in the file: the codec and mechanism are fine.
    assert!(stderr.contains(":13:") && stderr.contains("key \"kafka.client.security.protocol\": librdkafka refuses it"), "{stderr}");
    assert!(stderr.contains(":15:") && stderr.contains("key \"kafka.client.ssl.keystore.passwrod\""), "{stderr}");
    assert!(!stderr.contains("compression.type") && !stderr.contains("sasl.mechanism\""), "{stderr}");
    // `run` refuses the same file before it starts anything.
    let output = support::command().arg("run").arg(&config).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("kafka.client.security.protocol"));
}
