//! Kafka Connect's transforms of the topic: RegexRouter and TimestampRouter; and the
//! two that change nothing of a schemaless record's data: Filter (drops every record
//! it is applied to, so it is used with a predicate) and SetSchemaMetadata.

use regex::Regex;

use super::date_format::DateFormat;
use super::options::{OptionProblem, Options};
use super::record::WorkingRecord;
use super::{Outcome, Transform};

/// `RegexRouter`: a topic the regular expression matches in full is renamed to the
/// replacement, where `$1` stands for the first group (Java's syntax).
pub struct RegexRouter {
    regex: Regex,
    replacement: String,
}

impl RegexRouter {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["regex", "replacement"];

    /// Reads the options.
    pub fn build(options: &Options) -> Result<Self, OptionProblem> {
        let pattern = options.required("regex")?;
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|error| ("regex".to_owned(), format!("is not a regular expression: {error}")))?;
        let replacement = options.get("replacement").ok_or_else(|| ("replacement".to_owned(), "is required".to_owned()))?;
        Ok(Self { regex, replacement: java_replacement(replacement) })
    }
}

impl Transform for RegexRouter {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        if self.regex.is_match(&record.topic) {
            record.topic = self.regex.replace(&record.topic, self.replacement.as_str()).into_owned();
        }
        Ok(Outcome::Keep)
    }

    fn routes(&self) -> bool {
        true
    }
}

/// Java's replacement syntax (`$1`, `${name}`, `\$`) in the regex crate's (`${1}`, `$$`).
fn java_replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 4);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut group = String::new();
                while let Some(digit) = chars.peek().filter(|c| c.is_ascii_digit()) {
                    group.push(*digit);
                    chars.next();
                }
                out.push_str(&format!("${{{group}}}"));
            }
            other => out.push(other),
        }
    }
    out
}

/// `TimestampRouter`: the topic becomes `topic.format` with `${topic}` and
/// `${timestamp}` (the record's timestamp as `timestamp.format`, in UTC).
pub struct TimestampRouter {
    topic_format: String,
    timestamp_format: DateFormat,
}

impl TimestampRouter {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["topic.format", "timestamp.format"];

    /// Reads the options.
    pub fn build(options: &Options) -> Result<Self, OptionProblem> {
        let topic_format = options.get("topic.format").unwrap_or("${topic}-${timestamp}").to_owned();
        let timestamp_format = DateFormat::parse(options.get("timestamp.format").unwrap_or("yyyyMMdd"))
            .map_err(|message| ("timestamp.format".to_owned(), message))?;
        Ok(Self { topic_format, timestamp_format })
    }
}

impl Transform for TimestampRouter {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        let timestamp = record.timestamp.ok_or("the record has no timestamp to route by")?;
        record.topic =
            self.topic_format.replace("${topic}", &record.topic).replace("${timestamp}", &self.timestamp_format.format(timestamp));
        Ok(Outcome::Keep)
    }

    fn routes(&self) -> bool {
        true
    }
}

/// `Filter`: drops the record (with a predicate: the records it matches).
pub struct Filter;

impl Filter {
    /// No options.
    pub const OPTIONS: &[&str] = &[];
}

impl Transform for Filter {
    fn apply(&self, _record: &mut WorkingRecord) -> Result<Outcome, String> {
        Ok(Outcome::Drop)
    }
}

/// `SetSchemaMetadata`: records here carry no schema, so there is nothing to set; the
/// options are checked and the record passes unchanged.
pub struct SetSchemaMetadata;

impl SetSchemaMetadata {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["schema.name", "schema.version", "replace.null.with.default"];

    /// Reads the options.
    pub fn build(options: &Options) -> Result<Self, OptionProblem> {
        if let Some(version) = options.get("schema.version")
            && version.trim().parse::<i32>().is_err()
        {
            return Err(("schema.version".to_owned(), format!("must be a whole number, not {version:?}")));
        }
        Ok(Self)
    }
}

impl Transform for SetSchemaMetadata {
    fn apply(&self, _record: &mut WorkingRecord) -> Result<Outcome, String> {
        Ok(Outcome::Keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_replacements_read_as_the_regex_crate_expects() {
        assert_eq!(java_replacement("$1"), "${1}");
        assert_eq!(java_replacement("prefix-$1-$2x"), "prefix-${1}-${2}x");
        assert_eq!(java_replacement("cost\\$"), "cost$$");
    }
}
