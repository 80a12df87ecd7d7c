//! Calendar arithmetic without a time-zone database: RFC 3339 timestamps and the
//! date patterns sinks use to name time-based indices (`flights-{yyyy.MM.dd}`).

/// Formats milliseconds since the epoch as `2024-01-01T00:00:00.000Z`.
pub fn format_rfc3339(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        ms.rem_euclid(1000)
    )
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.fff]Z` into milliseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.split('-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (date_parts.next()??, date_parts.next()??, date_parts.next()??);
    let (time, millis) = match time.split_once('.') {
        Some((time, fraction)) => (time, format!("{fraction:0<3}")[..3].parse::<i64>().ok()?),
        None => (time, 0),
    };
    let mut time_parts = time.split(':').map(|part| part.parse::<i64>().ok());
    let (hour, minute, second) = (time_parts.next()??, time_parts.next()??, time_parts.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + millis)
}

/// Milliseconds since the epoch of the first instant of the UTC month after the one `ms` is in.
pub fn start_of_next_month(ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(ms.div_euclid(86_400_000));
    let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    days_from_civil(year, month, 1) * 86_400_000
}

/// Milliseconds since the epoch of midnight UTC at the start of `year-month-day`.
pub fn days_to_ms(year: i64, month: i64, day: i64) -> i64 {
    days_from_civil(year, month, day) * 86_400_000
}

/// The UTC date (year, month, day) of `ms`.
pub fn utc_date(ms: i64) -> (i64, i64, i64) {
    civil_from_days(ms.div_euclid(86_400_000))
}

/// Reads an exchange-local `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD` (no offset) as
/// milliseconds since the epoch as if it were UTC; [`local_to_utc`] then applies a zone.
pub fn parse_local(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = text.split_once([' ', 'T']).unwrap_or((text, "00:00:00"));
    let mut date_parts = date.split('-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (date_parts.next()??, date_parts.next()??, date_parts.next()??);
    let mut time_parts = time.split(':').map(|part| part.parse::<i64>().ok());
    let hour = time_parts.next().flatten()?;
    let minute = time_parts.next().flatten().unwrap_or(0);
    let second = time_parts.next().flatten().unwrap_or(0);
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some((days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second) * 1000)
}

/// The UTC instant of wall-clock time `local_ms` (from [`parse_local`]) in `zone`.
/// Knows UTC and the US zones Alpha Vantage names (`US/Eastern` and its aliases,
/// Central, Mountain, Pacific) with today's daylight-saving rule (since 2007: from the
/// second Sunday of March, 02:00, to the first Sunday of November, 02:00). In the
/// repeated autumn hour the daylight-time reading is taken. None: an unknown zone.
pub fn local_to_utc(zone: &str, local_ms: i64) -> Option<i64> {
    let standard_hours: i64 = match zone.trim() {
        "UTC" | "GMT" | "Etc/UTC" | "Z" => return Some(local_ms),
        "US/Eastern" | "America/New_York" | "EST5EDT" => -5,
        "US/Central" | "America/Chicago" | "CST6CDT" => -6,
        "US/Mountain" | "America/Denver" | "MST7MDT" => -7,
        "US/Pacific" | "America/Los_Angeles" | "PST8PDT" => -8,
        _ => return None,
    };
    let (year, _, _) = civil_from_days(local_ms.div_euclid(86_400_000));
    let nth_sunday = |month: i64, nth: i64| {
        let first = days_from_civil(year, month, 1);
        // 1970-01-01 was a Thursday: (days + 4) mod 7 is the weekday, Sunday = 0.
        let first_sunday = first + (7 - (first + 4).rem_euclid(7)).rem_euclid(7);
        (first_sunday + 7 * (nth - 1)) * 86_400_000 + 2 * 3_600_000
    };
    let daylight = (nth_sunday(3, 2)..nth_sunday(11, 1)).contains(&local_ms);
    let offset_hours = if daylight { standard_hours + 1 } else { standard_hours };
    Some(local_ms - offset_hours * 3_600_000)
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Replaces `{...}` date patterns in `template` with the UTC date of `ms`: inside the
/// braces `yyyy`, `MM`, `dd` and `HH` stand for year, month, day and hour, anything
/// else is kept (`flights-{yyyy.MM.dd}` -> `flights-2024.01.15`). Text outside braces
/// is kept as it is.
pub fn format_date_pattern(template: &str, ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let hour = seconds.rem_euclid(86_400) / 3600;
    let mut output = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|close| open + close) else { break };
        output.push_str(&rest[..open]);
        output.push_str(
            &rest[open + 1..close]
                .replace("yyyy", &format!("{year:04}"))
                .replace("MM", &format!("{month:02}"))
                .replace("dd", &format!("{day:02}"))
                .replace("HH", &format!("{hour:02}")),
        );
        rest = &rest[close + 1..];
    }
    output.push_str(rest);
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_month_starts_at_its_first_midnight() {
        let mid_january = parse_rfc3339("2024-01-15T12:00:00Z").unwrap();
        assert_eq!(start_of_next_month(mid_january), parse_rfc3339("2024-02-01T00:00:00Z").unwrap());
        let december = parse_rfc3339("2024-12-31T23:59:59Z").unwrap();
        assert_eq!(start_of_next_month(december), parse_rfc3339("2025-01-01T00:00:00Z").unwrap());
        assert_eq!(utc_date(december), (2024, 12, 31));
    }

    #[test]
    fn exchange_local_times_become_utc() {
        let utc = |text: &str| parse_rfc3339(text).unwrap();
        let local = |text: &str| parse_local(text).unwrap();
        // Summer: EDT, UTC-4; winter: EST, UTC-5.
        assert_eq!(local_to_utc("US/Eastern", local("2024-08-02 19:55:00")), Some(utc("2024-08-02T23:55:00Z")));
        assert_eq!(local_to_utc("US/Eastern", local("2024-01-15 16:00:00")), Some(utc("2024-01-15T21:00:00Z")));
        assert_eq!(local_to_utc("US/Eastern", local("2024-01-15")), Some(utc("2024-01-15T05:00:00Z")));
        // 2024's switches: 10 March 02:00 and 3 November 02:00.
        assert_eq!(local_to_utc("US/Eastern", local("2024-03-10 01:59:00")), Some(utc("2024-03-10T06:59:00Z")));
        assert_eq!(local_to_utc("US/Eastern", local("2024-03-10 03:00:00")), Some(utc("2024-03-10T07:00:00Z")));
        assert_eq!(local_to_utc("US/Eastern", local("2024-11-03 01:30:00")), Some(utc("2024-11-03T05:30:00Z")));
        assert_eq!(local_to_utc("US/Eastern", local("2024-11-03 02:00:00")), Some(utc("2024-11-03T07:00:00Z")));
        assert_eq!(local_to_utc("UTC", local("2024-02-07 15:35:01")), Some(utc("2024-02-07T15:35:01Z")));
        assert_eq!(local_to_utc("Europe/Paris", 0), None);
        assert_eq!(parse_local("2024-13-01"), None);
    }

    #[test]
    fn rfc3339_round_trips() {
        let ms = parse_rfc3339("2024-02-29T23:59:58.250Z").unwrap();
        assert_eq!(format_rfc3339(ms), "2024-02-29T23:59:58.250Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn date_patterns_take_the_record_day() {
        let ms = parse_rfc3339("2024-01-15T22:10:00Z").unwrap();
        assert_eq!(format_date_pattern("flights-{yyyy.MM.dd}", ms), "flights-2024.01.15");
        assert_eq!(format_date_pattern("m-{yyyy-MM}-{HH}h", ms), "m-2024-01-22h");
        assert_eq!(format_date_pattern("plain", ms), "plain");
    }
}
