//! Java's `SimpleDateFormat` patterns, as Kafka Connect's TimestampConverter and
//! TimestampRouter take them, always in UTC (as Kafka Connect sets them): `yyyy`,
//! `yy`, `MM`, `MMM`, `dd`, `D`, `HH`, `hh`, `kk`, `KK`, `mm`, `ss`, `SSS`, `a`,
//! `EEE`, `Z`, `X`/`XXX` and `z`, with `'quoted'` text and `''` for a quote.

use wasm_connect_protocol::time::{days_to_ms, utc_date};

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Text(String),
    Field(char, usize),
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    tokens: Vec<Token>,
}

impl DateFormat {
    /// Reads `pattern`; letters it does not support are refused.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut index = 0;
        while index < chars.len() {
            let c = chars[index];
            if c == '\'' {
                let mut text = String::new();
                index += 1;
                loop {
                    match chars.get(index) {
                        None => return Err(format!("the pattern {pattern:?} has an unclosed quote")),
                        Some('\'') if chars.get(index + 1) == Some(&'\'') => {
                            text.push('\'');
                            index += 2;
                        }
                        Some('\'') => {
                            index += 1;
                            break;
                        }
                        Some(other) => {
                            text.push(*other);
                            index += 1;
                        }
                    }
                }
                if text.is_empty() {
                    text.push('\'');
                }
                tokens.push(Token::Text(text));
            } else if c.is_ascii_alphabetic() {
                let count = chars[index..].iter().take_while(|&&next| next == c).count();
                if !"yMdDHhkKmsSaEZXzu".contains(c) {
                    return Err(format!("the pattern {pattern:?} uses the letter {c:?}, which this host does not support"));
                }
                tokens.push(Token::Field(c, count));
                index += count;
            } else {
                tokens.push(Token::Text(c.to_string()));
                index += 1;
            }
        }
        Ok(Self { tokens })
    }

    /// `ms` since the epoch, formatted in UTC.
    pub fn format(&self, ms: i64) -> String {
        let (year, month, day) = utc_date(ms);
        let millis_of_day = ms.rem_euclid(86_400_000);
        let (hour, minute, second, millis) =
            (millis_of_day / 3_600_000, millis_of_day / 60_000 % 60, millis_of_day / 1000 % 60, millis_of_day % 1000);
        let days = ms.div_euclid(86_400_000);
        let mut out = String::new();
        for token in &self.tokens {
            match token {
                Token::Text(text) => out.push_str(text),
                Token::Field(letter, count) => {
                    let number = |value: i64, out: &mut String| out.push_str(&format!("{value:0width$}", width = *count));
                    match letter {
                        'y' if *count == 2 => out.push_str(&format!("{:02}", year.rem_euclid(100))),
                        'y' => number(year, &mut out),
                        'u' => number((days + 3).rem_euclid(7) + 1, &mut out),
                        'M' if *count >= 4 => out.push_str(MONTHS[month as usize - 1]),
                        'M' if *count == 3 => out.push_str(&MONTHS[month as usize - 1][..3]),
                        'M' => number(month, &mut out),
                        'd' => number(day, &mut out),
                        'D' => number(days - days_to_ms(year, 1, 1).div_euclid(86_400_000) + 1, &mut out),
                        'H' => number(hour, &mut out),
                        'k' => number(if hour == 0 { 24 } else { hour }, &mut out),
                        'K' => number(hour % 12, &mut out),
                        'h' => number(if hour % 12 == 0 { 12 } else { hour % 12 }, &mut out),
                        'm' => number(minute, &mut out),
                        's' => number(second, &mut out),
                        'S' => number(millis, &mut out),
                        'a' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
                        'E' => {
                            let name = DAYS[days.rem_euclid(7) as usize];
                            out.push_str(if *count >= 4 { name } else { &name[..3] });
                        }
                        'Z' => out.push_str("+0000"),
                        'X' => out.push('Z'),
                        'z' => out.push_str("UTC"),
                        _ => {}
                    }
                }
            }
        }
        out
    }

    /// Reads `text` as a UTC time (or at the offset it states) into ms since the epoch.
    pub fn parse_time(&self, text: &str) -> Result<i64, String> {
        let fail = || "the text does not match the format".to_owned();
        let (mut year, mut month, mut day, mut hour, mut minute, mut second, mut millis) = (1970, 1, 1, 0, 0, 0, 0);
        let mut pm: Option<bool> = None;
        let mut twelve_hour = false;
        let mut offset_minutes = 0i64;
        let mut rest = text;
        for (position, token) in self.tokens.iter().enumerate() {
            match token {
                Token::Text(literal) => rest = rest.strip_prefix(literal.as_str()).ok_or_else(fail)?,
                Token::Field(letter, count) => {
                    // Digits run on unless the next token is a number too: then the count is the width.
                    let next_is_number =
                        matches!(self.tokens.get(position + 1), Some(Token::Field(next, _)) if "yMdDHhkKmsSu".contains(*next));
                    let take_number = |rest: &mut &str, signed: bool| -> Result<i64, String> {
                        let digits = rest
                            .chars()
                            .enumerate()
                            .take_while(|(index, c)| c.is_ascii_digit() || (signed && *index == 0 && *c == '-'))
                            .count();
                        let digits = if next_is_number { digits.min(*count) } else { digits };
                        if digits == 0 {
                            return Err(fail());
                        }
                        let (number, tail) = rest.split_at(digits);
                        *rest = tail;
                        number.parse::<i64>().map_err(|_| fail())
                    };
                    match letter {
                        'y' => {
                            year = take_number(&mut rest, true)?;
                            if *count == 2 && (0..100).contains(&year) {
                                year += 2000;
                            }
                        }
                        'M' if *count >= 3 => {
                            let found = MONTHS.iter().position(|name| {
                                let name = if *count == 3 { &name[..3] } else { name };
                                rest.get(..name.len()).is_some_and(|head| head.eq_ignore_ascii_case(name))
                            });
                            let index = found.ok_or_else(fail)?;
                            rest = &rest[if *count == 3 { 3 } else { MONTHS[index].len() }..];
                            month = index as i64 + 1;
                        }
                        'M' => month = take_number(&mut rest, false)?,
                        'd' => day = take_number(&mut rest, false)?,
                        'H' | 'k' => hour = take_number(&mut rest, false)? % 24,
                        'h' | 'K' => {
                            hour = take_number(&mut rest, false)? % 12;
                            twelve_hour = true;
                        }
                        'm' => minute = take_number(&mut rest, false)?,
                        's' => second = take_number(&mut rest, false)?,
                        'S' => millis = take_number(&mut rest, false)?,
                        'a' => {
                            let head = rest.get(..2).ok_or_else(fail)?.to_ascii_uppercase();
                            pm = Some(match head.as_str() {
                                "AM" => false,
                                "PM" => true,
                                _ => return Err(fail()),
                            });
                            rest = &rest[2..];
                        }
                        'E' => {
                            let found = DAYS.iter().find(|name| {
                                let name: &str = if *count >= 4 { name } else { &name[..3] };
                                rest.get(..name.len()).is_some_and(|head| head.eq_ignore_ascii_case(name))
                            });
                            let name = found.ok_or_else(fail)?;
                            rest = &rest[if *count >= 4 { name.len() } else { 3 }..];
                        }
                        'D' | 'u' => {
                            take_number(&mut rest, false)?;
                        }
                        'Z' | 'X' | 'z' => offset_minutes = take_offset(&mut rest).ok_or_else(fail)?,
                        _ => return Err(fail()),
                    }
                }
            }
        }
        if !rest.is_empty() {
            return Err(format!("{text:?} has {:?} left after the format", rest));
        }
        if twelve_hour && pm == Some(true) {
            hour += 12;
        }
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return Err(format!("{text:?} is not a valid date and time"));
        }
        let ms = days_to_ms(year, month, day) + ((hour * 60 + minute) * 60 + second) * 1000 + millis;
        Ok(ms - offset_minutes * 60_000)
    }
}

/// `Z`, `UTC`, `GMT`, `+hh`, `+hhmm` or `+hh:mm`, in minutes east of UTC.
fn take_offset(rest: &mut &str) -> Option<i64> {
    for zero in ["Z", "UTC", "GMT"] {
        if let Some(tail) = rest.strip_prefix(zero) {
            *rest = tail;
            return Some(0);
        }
    }
    let sign = match rest.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let body: String = rest[1..].chars().take_while(|c| c.is_ascii_digit() || *c == ':').collect();
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (digits[..2].parse::<i64>().ok()?, digits[2..].parse::<i64>().ok()?),
        _ => return None,
    };
    *rest = &rest[1 + body.len()..];
    Some(sign * (hours * 60 + minutes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_connect_protocol::time::parse_rfc3339;

    #[test]
    fn formats_in_utc_as_java_does() {
        let ms = parse_rfc3339("2017-01-05T14:07:09.123Z").unwrap();
        let format = |pattern: &str| DateFormat::parse(pattern).unwrap().format(ms);
        assert_eq!(format("yyyyMMdd"), "20170105");
        assert_eq!(format("yyyy-MM-dd'T'HH:mm:ss.SSSXXX"), "2017-01-05T14:07:09.123Z");
        assert_eq!(format("yyyy-MM-dd HH:mm:ss.SSS Z"), "2017-01-05 14:07:09.123 +0000");
        assert_eq!(format("EEE, d MMM yy hh:mm a"), "Thu, 5 Jan 17 02:07 PM");
        assert_eq!(format("EEEE MMMM D 'o''clock'"), "Thursday January 5 o'clock");
        assert!(DateFormat::parse("yyyy-MM-dd 'open").is_err());
        assert!(DateFormat::parse("yyyy-MM-dd G").is_err());
    }

    #[test]
    fn parses_what_it_formats_and_stated_offsets() {
        let ms = parse_rfc3339("2017-01-05T14:07:09.123Z").unwrap();
        let parse = |pattern: &str, text: &str| DateFormat::parse(pattern).unwrap().parse_time(text);
        assert_eq!(parse("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2017-01-05T14:07:09.123Z"), Ok(ms));
        assert_eq!(parse("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2017-01-05T16:07:09.123+02:00"), Ok(ms));
        assert_eq!(parse("yyyyMMddHHmmssSSS", "20170105140709123"), Ok(ms));
        assert_eq!(parse("EEE, d MMM yy hh:mm:ss.SSS a", "Thu, 5 Jan 17 02:07:09.123 PM"), Ok(ms));
        assert_eq!(parse("yyyy-MM-dd", "2017-01-05"), Ok(parse_rfc3339("2017-01-05T00:00:00Z").unwrap()));
        assert!(parse("yyyy-MM-dd", "2017-13-05").is_err());
        assert!(parse("yyyy-MM-dd", "2017-01-05 extra").is_err());
        assert!(parse("yyyy-MM-dd", "yesterday").is_err());
    }
}
