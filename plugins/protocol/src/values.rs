//! The syntax of configuration option values. The host checks a connector's values
//! against the plugin's declared option types with these functions before the plugin
//! starts, and the SDK reads them with the same functions, so both agree on what
//! `1m30s`, `yes` or `a, b` mean.

use std::time::Duration;

/// Parses a whole number.
pub fn parse_integer(text: &str) -> Result<i64, String> {
    text.trim().parse().map_err(|_| format!("expected a whole number, found \"{text}\""))
}

/// Parses a decimal number.
pub fn parse_float(text: &str) -> Result<f64, String> {
    text.trim().parse::<f64>().ok().filter(|value| value.is_finite()).ok_or_else(|| format!("expected a number, found \"{text}\""))
}

/// Parses `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`), ignoring case.
pub fn parse_boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("expected true or false, found \"{text}\"")),
    }
}

/// Parses a human duration: one or more `<number><unit>` parts with units `ms`, `s`,
/// `m`, `h`, `d` (`1m30s`, `250ms`, `0.5s`). A bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("expected a duration such as 500ms, 10s, 1m30s or 2h, found \"{text}\"");
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = trimmed;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(invalid)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(invalid()),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// Parses a comma-separated list; blank items are dropped and items are trimmed.
pub fn parse_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_compound_and_fractional_forms() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10 seconds"), Err("expected a duration such as 500ms, 10s, 1m30s or 2h, found \"10 seconds\"".into()));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn booleans_lists_and_numbers() {
        assert_eq!(parse_boolean("Yes"), Ok(true));
        assert_eq!(parse_boolean("off"), Ok(false));
        assert!(parse_boolean("maybe").is_err());
        assert_eq!(parse_list(" a, b,,c "), vec!["a", "b", "c"]);
        assert_eq!(parse_integer(" 42"), Ok(42));
        assert!(parse_integer("4.2").is_err());
        assert!(parse_float("NaN").is_err());
    }
}
