//! What the host tells about its Kafka clients: librdkafka's log lines and errors in
//! words that name the setting to fix (secrets hidden), the check of the `kafka.client`
//! settings that `validate` runs, and metadata requests that report why a cluster
//! cannot be reached while they wait.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

use super::REQUEST_TIMEOUT;

/// The context of every client the host creates: librdkafka's errors are logged in
/// words that name the setting to fix, each the first time and then at most once a
/// minute while it repeats (librdkafka reports it at every reconnection, per client).
#[derive(Clone, Copy, Default)]
pub struct Reporting;

impl ClientContext for Reporting {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        log_client_line(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_client_error(&error, reason);
    }
}

impl ConsumerContext for Reporting {}

/// Forwards a librdkafka log line to the host's log (target `librdkafka`); a line
/// about a refused password or a failed TLS handshake is reported instead, naming
/// the setting to fix. librdkafka queues these lines; whoever polls the client (or
/// waits in [`fetch_metadata`]) hands them over.
pub(super) fn log_client_line(level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as Level;
    // A malformed `sasl.oauthbearer.config` is quoted from where it goes wrong.
    let message = match message.split_once("sasl.oauthbearer.config beginning at: ") {
        Some((before, _)) => format!("{before}sasl.oauthbearer.config beginning at: [redacted]"),
        None => message.to_owned(),
    };
    let message = message.as_str();
    if message.contains("Failed to retrieve OIDC token") || message.contains("Failed to retrieve JWT token") {
        return report_client_problem(ClientProblem::Token, message);
    }
    if message.contains("SASL authentication error") || message.contains("Authentication failed") {
        return report_client_problem(ClientProblem::Credentials, message);
    }
    // A broker that wants a client certificate refuses one without it with an alert,
    // or (TLS 1.3) closes the connection before the first answer. A connection closed
    // later (an idle one, a broker restarting) is no TLS problem.
    let closed_before_answering = message.contains("SSL connection closed by peer") && message.contains("in state APIVERSION_QUERY");
    if message.contains("SSL handshake failed") || message.contains("certificate required") || closed_before_answering {
        return report_client_problem(ClientProblem::Tls, message);
    }
    // librdkafka's own guess when a plaintext client meets a TLS listener.
    if message.contains("incorrect security.protocol") {
        return report_client_problem(ClientProblem::Unreachable, message);
    }
    match level {
        Level::Emerg | Level::Alert | Level::Critical | Level::Error => tracing::error!(target: "librdkafka", facility, "{message}"),
        Level::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        Level::Notice => tracing::info!(target: "librdkafka", facility, "{message}"),
        Level::Info => tracing::debug!(target: "librdkafka", facility, "{message}"),
        Level::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// Why a cluster cannot be used, as far as the clients tell.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientProblem {
    Credentials,
    /// No OAUTHBEARER token from the OIDC provider.
    Token,
    Tls,
    Unreachable,
    /// One broker connection failed (refused, closed, timed out); librdkafka reconnects.
    Connection,
    Other,
}

impl ClientProblem {
    fn of(error: &KafkaError) -> Self {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => Self::Credentials,
            Some(RDKafkaErrorCode::SSL) => Self::Tls,
            Some(RDKafkaErrorCode::AllBrokersDown) => Self::Unreachable,
            Some(RDKafkaErrorCode::BrokerTransportFailure) => Self::Connection,
            _ => Self::Other,
        }
    }

    /// What to do about it, naming the settings.
    fn advice(self) -> &'static str {
        match self {
            Self::Credentials => {
                "The Kafka cluster refused the host's credentials: check kafka.client's sasl.username and sasl.password \
                 (and sasl.mechanisms: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, as the cluster expects; for \
                 OAUTHBEARER, the sasl.oauthbearer settings)."
            }
            Self::Token => {
                "The host could not get an OAUTHBEARER token from the OIDC provider: check kafka.client's \
                 sasl.oauthbearer.token.endpoint.url, sasl.oauthbearer.client.id and sasl.oauthbearer.client.secret \
                 (and https.ca.location when the provider's certificate comes from a private CA)."
            }
            Self::Tls => {
                "The TLS connection to the Kafka cluster failed: if the broker's certificate is not trusted, set \
                 kafka.client's ssl.ca.location to the CA that signed it; if the broker asks for a client certificate, \
                 set ssl.certificate.location and ssl.key.location."
            }
            Self::Unreachable => {
                "No Kafka broker can be reached: check kafka.bootstrap_servers, the network, and kafka.client's \
                 security.protocol (a TLS listener needs SSL or SASL_SSL)."
            }
            Self::Connection => "A connection to a Kafka broker failed; the client connects again by itself.",
            Self::Other => "The Kafka client reported an error.",
        }
    }
}

/// How often one kind of client problem is logged again while it lasts (librdkafka
/// reports it at every reconnection, for every client).
const PROBLEM_REPEAT_INTERVAL: Duration = Duration::from_secs(60);

/// The last problem the clients reported: its kind, the whole text, when.
static LAST_CLIENT_PROBLEM: Mutex<Option<(ClientProblem, String, std::time::Instant)>> = Mutex::new(None);

/// What the clients reported last, in words that name the setting to fix.
/// Nothing once the last one is older than a minute.
pub fn last_client_error() -> Option<String> {
    let last = LAST_CLIENT_PROBLEM.lock().expect("last client problem lock");
    last.as_ref().filter(|(_, _, at)| at.elapsed() < PROBLEM_REPEAT_INTERVAL).map(|(_, text, _)| text.clone())
}

pub(super) fn report_client_error(error: &KafkaError, reason: &str) {
    // The end of a partition, for readers that asked to be told (`enable.partition.eof`):
    // rdkafka hands every error event to the context too, this one included.
    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
        return;
    }
    if reason.contains("Failed to acquire SASL OAUTHBEARER token") {
        return report_client_problem(ClientProblem::Token, reason);
    }
    report_client_problem(ClientProblem::of(error), reason);
}

fn report_client_problem(problem: ClientProblem, reason: &str) {
    if problem == ClientProblem::Other {
        // Each is its own story (a fatal producer error, a fenced member): all logged.
        tracing::error!(reason, "{}", problem.advice());
        return;
    }
    {
        let mut last = LAST_CLIENT_PROBLEM.lock().expect("last client problem lock");
        if let Some((kind, _, at)) = last.as_ref()
            && at.elapsed() < PROBLEM_REPEAT_INTERVAL
        {
            // "All brokers are down" follows every refused login: the refusal says more.
            // A failed connection follows each of those, and comes with every reconnect.
            let less_specific = match problem {
                ClientProblem::Unreachable => matches!(kind, ClientProblem::Credentials | ClientProblem::Token | ClientProblem::Tls),
                ClientProblem::Credentials => *kind == ClientProblem::Token,
                ClientProblem::Connection => *kind != ClientProblem::Other,
                _ => false,
            };
            if *kind == problem || less_specific {
                return;
            }
        }
        *last = Some((problem, format!("{} librdkafka says: {reason}", problem.advice()), std::time::Instant::now()));
    }
    if problem == ClientProblem::Connection {
        // Idle connections closed by a broker, a broker restarting: routine.
        tracing::warn!(reason, "{}", problem.advice());
    } else {
        tracing::error!(reason, "{}", problem.advice());
    }
}

/// Whether a librdkafka setting holds a secret (a password, a key, a token): its value
/// is registered for redaction and never shown in an error.
pub fn is_secret_setting(key: &str) -> bool {
    ["password", "secret", ".key", "key.pem", "jaas", "token", "sasl.oauthbearer.config"].iter().any(|word| key.contains(word))
}

/// A client context that keeps librdkafka's own log lines to itself: the check below
/// creates clients that are never meant to connect.
struct Silent;

impl ClientContext for Silent {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _facility: &str, _message: &str) {}
}

impl ConsumerContext for Silent {}

impl rdkafka::producer::ProducerContext for Silent {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// Why the host sets `key` itself, if `value` differs from what the host sets: these
/// make its delivery guarantees (see the README's "Delivery guarantees").
fn host_owned(key: &str, value: &str) -> Option<&'static str> {
    let is = |expected: &[&str]| expected.iter().any(|wanted| value.eq_ignore_ascii_case(wanted));
    match key {
        "group.id" => Some("each sink connector is the consumer group connect-<name>"),
        "group.instance.id" => Some("each sink task is a static member named after data_dir/host-id and its task number"),
        "transactional.id" => Some("each stream processor task produces under its own id, wasm-connect-<connector>-<task>"),
        "enable.auto.commit" | "enable.auto.offset.store" if !is(&["false"]) => {
            Some("offsets are committed once the sink acknowledged their batch, never before")
        }
        "enable.idempotence" if !is(&["true"]) => Some("producers are idempotent, so that retries duplicate nothing"),
        "acks" | "request.required.acks" if !is(&["all", "-1"]) => Some("every record is acknowledged by all in-sync replicas"),
        _ => None,
    }
}

/// The problems librdkafka finds in `client` (the `kafka.client` settings), as
/// `(key, message)`; an empty key is about the settings together. Each setting is
/// tried on its own (unknown keys, bad values, features this build lacks), then a
/// producer and a consumer are created with all of them and no broker to reach, so
/// unreadable certificates and keys are found too. Nothing connects; no value of a
/// secret setting appears in a message.
pub fn client_problems(client: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let secrets: Vec<&str> =
        client.iter().filter(|(key, value)| is_secret_setting(key) && value.len() >= 4).map(|(_, value)| value.as_str()).collect();
    let hide = |message: String| secrets.iter().fold(message, |message, secret| message.replace(secret, "[redacted]"));
    let mut problems = Vec::new();
    for (key, value) in client {
        if key == "bootstrap.servers" {
            problems.push((key.clone(), "is set by kafka.bootstrap_servers; remove it here".to_owned()));
            continue;
        }
        if let Some(why) = host_owned(key, value) {
            problems.push((key.clone(), format!("is set by the host ({why}); remove it here")));
            continue;
        }
        let mut single = ClientConfig::new();
        single.set(key, value);
        if let Err(KafkaError::ClientConfig(_, description, _, _)) = single.create_native_config() {
            problems.push((key.clone(), hide(format!("librdkafka refuses it: {description}"))));
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    let mut config = ClientConfig::new();
    for (key, value) in client {
        // An OIDC client fetches its first token as it is created: check its settings
        // without the fetch.
        if key == "sasl.oauthbearer.method" && value.eq_ignore_ascii_case("oidc") {
            continue;
        }
        config.set(key, value);
    }
    // A processor's producer is transactional: its timeout must cover the others
    // (the host derives one that does unless it is set here).
    if client.contains_key("transaction.timeout.ms") {
        let transactional = config.clone().set("transactional.id", "wasm-connect-validate").clone();
        if let Err(KafkaError::ClientCreation(reason)) =
            transactional.create_with_context::<_, rdkafka::producer::BaseProducer<Silent>>(Silent).map(drop)
        {
            problems
                .push(("transaction.timeout.ms".to_owned(), hide(format!("librdkafka refuses it for a transactional producer: {reason}"))));
        }
    }
    let producer = config.create_with_context::<_, rdkafka::producer::BaseProducer<Silent>>(Silent).map(drop);
    let consumer = config.clone().set("group.id", "wasm-connect-validate").create_with_context::<_, BaseConsumer<Silent>>(Silent).map(drop);
    if let Err(error) = producer.and(consumer) {
        let reason = match error {
            KafkaError::ClientCreation(reason) => reason,
            KafkaError::ClientConfig(_, description, _, _) => description,
            other => other.to_string(),
        };
        problems.push((String::new(), hide(format!("librdkafka cannot create a client with these settings: {reason}"))));
    }
    problems
}

/// The most queued events (log lines, errors) served between two metadata requests.
const QUEUED_EVENTS_PER_TURN: usize = 200;

/// The cluster's metadata (of `topic` only, if given), within `REQUEST_TIMEOUT`. While
/// the cluster cannot be reached the request is repeated in turns of 1, 2, 4... s, and
/// the client's queue served between them, so that what librdkafka queues meanwhile (a
/// refused password, a failed handshake) is reported while the caller waits. Only for
/// clients that read no messages (no subscription, no assignment): serving their queue
/// must not take one.
pub(super) fn fetch_metadata<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: Option<&str>,
) -> KafkaResult<rdkafka::metadata::Metadata> {
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    let mut turn = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let result = consumer.fetch_metadata(topic, turn.min(deadline.saturating_duration_since(started)));
        for _ in 0..QUEUED_EVENTS_PER_TURN {
            let _ = consumer.poll(Duration::ZERO);
        }
        let unreachable = matches!(
            &result,
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
            ))
        );
        if !unreachable || std::time::Instant::now() >= deadline {
            return result;
        }
        // An answer that came at once (no broker up) is not asked again at once.
        std::thread::sleep(Duration::from_millis(200).saturating_sub(started.elapsed()));
        turn *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn this_build_speaks_tls_every_sasl_mechanism_and_every_codec() {
        let features = ClientConfig::new().create_native_config().unwrap().get("builtin.features").unwrap();
        let features: Vec<&str> = features.split(',').collect();
        // `http` and `oidc`: librdkafka found libcurl (see .cargo/config.toml).
        for wanted in ["gzip", "snappy", "ssl", "sasl", "sasl_plain", "sasl_scram", "sasl_oauthbearer", "http", "oidc", "zstd", "lz4"] {
            assert!(features.contains(&wanted), "librdkafka lacks {wanted}: {features:?}");
        }
    }

    #[test]
    fn secured_clusters_and_every_codec_pass_the_client_check() {
        for client in [
            settings(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.username", "u"),
                ("sasl.password", "p4ssw0rd"),
            ]),
            settings(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "u"),
                ("sasl.password", "p4ssw0rd"),
            ]),
            settings(&[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanisms", "SCRAM-SHA-256"),
                ("sasl.username", "u"),
                ("sasl.password", "p4ssw0rd"),
            ]),
            settings(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "OAUTHBEARER"),
                ("sasl.oauthbearer.config", "principal=connect"),
            ]),
            settings(&[("compression.type", "zstd")]),
            settings(&[("compression.type", "lz4")]),
            settings(&[("compression.type", "snappy")]),
            settings(&[("compression.type", "gzip")]),
        ] {
            assert_eq!(client_problems(&client), Vec::<(String, String)>::new(), "{client:?}");
        }
    }

    #[test]
    fn the_client_check_names_each_bad_setting_and_never_shows_a_secret() {
        let problems = client_problems(&settings(&[
            ("compression.typo", "zstd"),
            ("security.protocol", "SASL_SSLL"),
            ("bootstrap.servers", "elsewhere:9092"),
            ("sasl.password", "p4ssw0rd-planted"),
        ]));
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["bootstrap.servers", "compression.typo", "security.protocol"], "{problems:?}");
        assert!(problems[1].1.contains("No such configuration property"), "{problems:?}");
        assert!(problems[2].1.contains("Invalid value"), "{problems:?}");

        // A transaction timeout shorter than a message's is refused (processors are transactional).
        let problems = client_problems(&settings(&[("transaction.timeout.ms", "10000"), ("message.timeout.ms", "30000")]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "transaction.timeout.ms", "{problems:?}");
        assert!(problems[0].1.contains("message.timeout.ms"), "{problems:?}");
        assert_eq!(client_problems(&settings(&[("transaction.timeout.ms", "120000"), ("message.timeout.ms", "30000")])), vec![]);

        // Settings the host's guarantees rest on are the host's, unless set as it sets them.
        let problems = client_problems(&settings(&[
            ("transactional.id", "mine"),
            ("group.id", "mine"),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("acks", "1"),
            ("enable.idempotence", "true"),
            ("auto.offset.reset", "latest"),
        ]));
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["acks", "enable.auto.commit", "group.id", "transactional.id"], "{problems:?}");
        assert!(problems.iter().all(|(_, problem)| problem.contains("is set by the host")), "{problems:?}");

        // A certificate that cannot be read fails client creation, which is reported
        // for the settings together, with the secret hidden wherever it would appear.
        let problems = client_problems(&settings(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/nonexistent/ca.pem"),
            ("ssl.key.password", "p4ssw0rd-planted"),
        ]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "");
        assert!(problems[0].1.contains("ssl.ca.location"), "{problems:?}");
        assert!(!format!("{problems:?}").contains("p4ssw0rd-planted"));
    }
}
