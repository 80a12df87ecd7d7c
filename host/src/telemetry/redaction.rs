//! No secret reaches a log line, at any level, whoever writes it: every line the
//! process logs (ours, a dependency's such as wasmtime-wasi-http's request traces,
//! librdkafka's) passes through one writer that replaces each secret value the host
//! knows of, plain or percent-encoded as it appears in a URL, with `[redacted]`.
//!
//! The host registers the values when it learns them: connectors' secret options
//! when a connector is planned (released with the plan), the admin token and the
//! Kafka client's passwords at start.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::RwLock;

use wasm_connect_protocol::url::{QUERY_KEPT, percent_encode};

use tracing_subscriber::fmt::MakeWriter;

/// Shorter values are not treated as secrets in logs: replacing a one- or
/// two-letter value everywhere would wipe ordinary words from every line.
pub const MIN_SECRET_LENGTH: usize = 4;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Every secret value known now, with how many registrations hold it, and the same
/// values longest first, the order they are replaced in (kept at registration, not
/// sorted on every log line).
struct Secrets {
    counts: BTreeMap<String, usize>,
    longest_first: Vec<String>,
}

impl Secrets {
    fn reorder(&mut self) {
        self.longest_first = self.counts.keys().cloned().collect();
        self.longest_first.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    }
}

static SECRETS: RwLock<Secrets> = RwLock::new(Secrets { counts: BTreeMap::new(), longest_first: Vec::new() });

/// Secret values kept out of the logs for as long as this lives.
#[derive(Default)]
pub struct SecretRegistration {
    values: Vec<String>,
}

impl std::fmt::Debug for SecretRegistration {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "SecretRegistration({} values)", self.values.len())
    }
}

impl SecretRegistration {
    /// Registers `values` (those shorter than [`MIN_SECRET_LENGTH`] are ignored), each
    /// also in the forms it takes in a URL (percent-encoded in upper or lower case,
    /// `+` for a space) and in a Rust debug string (escaped).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut registered: Vec<String> = Vec::new();
        for value in values.into_iter().filter(|value| value.len() >= MIN_SECRET_LENGTH) {
            let mut forms = vec![value.to_owned(), value.escape_debug().to_string()];
            // Encoded wholly, or as the SDK encodes a query component (`,` kept).
            for kept in [&b""[..], QUERY_KEPT] {
                let encoded = percent_encode(value, kept);
                forms.extend([lower_case_escapes(&encoded), encoded.replace("%20", "+"), encoded]);
            }
            for form in forms {
                if !registered.contains(&form) {
                    registered.push(form);
                }
            }
        }
        let mut secrets = SECRETS.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for value in &registered {
            *secrets.counts.entry(value.clone()).or_default() += 1;
        }
        secrets.reorder();
        Self { values: registered }
    }

    /// Registers `values` for the life of the process.
    pub fn forever<'a>(values: impl IntoIterator<Item = &'a str>) {
        std::mem::forget(Self::new(values));
    }
}

impl Drop for SecretRegistration {
    fn drop(&mut self) {
        let mut secrets = SECRETS.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for value in &self.values {
            if let Some(count) = secrets.counts.get_mut(value) {
                *count -= 1;
                if *count == 0 {
                    secrets.counts.remove(value);
                }
            }
        }
        secrets.reorder();
    }
}

/// `text` with every registered secret replaced by [`REDACTED`], longest first (so a
/// secret that contains another is removed whole).
pub fn redact(text: &str) -> String {
    let secrets = SECRETS.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut text = text.to_owned();
    for secret in &secrets.longest_first {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    text
}

/// `encoded` with the hex digits of its `%XX` escapes in lower case.
fn lower_case_escapes(encoded: &str) -> String {
    let mut output = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(index) = rest.find('%') {
        output.push_str(&rest[..index]);
        let escape = rest.get(index..index + 3).unwrap_or(&rest[index..]);
        output.push_str(&escape.to_ascii_lowercase());
        rest = &rest[index + escape.len()..];
    }
    output.push_str(rest);
    output
}

/// Standard error, one redacted line at a time: `tracing`'s formatter writes an
/// event into one [`RedactedLine`], which is redacted and written out when dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactedLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine { buffer: Vec::with_capacity(256) }
    }
}

/// One log event being written.
#[derive(Debug)]
pub struct RedactedLine {
    buffer: Vec<u8>,
}

impl Write for RedactedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let line = redact(&String::from_utf8_lossy(&self.buffer));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::{SecretRegistration, redact};

    #[test]
    fn registered_secrets_are_redacted_plain_and_url_encoded_until_released() {
        let registration = SecretRegistration::new(["k3y/with+chars", "abc-123-unit-test", "", "ab", "sp ace\"q"]);
        assert_eq!(
            redact("GET /v9/flights?api_key=k3y%2Fwith%2Bchars&x=1 and abc-123-unit-test, k3y/with+chars, k3y%2fwith%2bchars"),
            "GET /v9/flights?api_key=[redacted]&x=1 and [redacted], [redacted], [redacted]"
        );
        assert_eq!(redact("q=sp+ace%22q and sp%20ace%22q and \"sp ace\\\"q\""), "q=[redacted] and [redacted] and \"[redacted]\"");
        assert_eq!(redact("ab stays"), "ab stays", "too short to be treated as a secret");
        // As the plugins' SDK encodes a query component: `,` left plain.
        let listed = SecretRegistration::new(["a b,c/d"]);
        let sent = wasm_connect_protocol::url::percent_encode("a b,c/d", wasm_connect_protocol::url::QUERY_KEPT);
        assert_eq!(redact(&format!("?key={sent}&x")), "?key=[redacted]&x");
        drop(listed);
        let second = SecretRegistration::new(["abc-123-unit-test"]);
        drop(registration);
        assert_eq!(redact("k3y/with+chars abc-123-unit-test"), "k3y/with+chars [redacted]", "still held by the second");
        drop(second);
        assert_eq!(redact("abc-123-unit-test"), "abc-123-unit-test");
    }
}
