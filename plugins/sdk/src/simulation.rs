//! What every data simulator shares: a seeded, deterministic timeline of records.
//!
//! Record `n` of a simulator is a pure function of `(seed, n)` and carries the
//! simulated time `start + n / rate`. It is due once that time has passed on the wall
//! clock, so a `start` in the past replays as fast as the host polls and `start: now`
//! produces at `rate` records per second. The position stored with each batch is
//! `{"next":N,"start_ms":T}`: a restarted task carries on where the delivered data
//! ended, with the same timeline.

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{BatchWriter, ConfigOption, Error, OptionType, Plugin, PollStatus, Settings, Source};

pub use crate::time::{format_rfc3339, parse_rfc3339};

/// The options every simulator accepts besides its own.
pub fn options(default_rate: &str) -> Vec<ConfigOption> {
    vec![
        ConfigOption::new("seed", OptionType::Integer, "Seed of the generator: the same seed gives the same records.").default("42"),
        ConfigOption::new("rate", OptionType::Float, "Records per second; 0 produces as fast as the host polls.").default(default_rate),
        ConfigOption::new(
            "start",
            OptionType::String,
            "Simulated time of the first record: `now`, or RFC 3339 such as 2024-01-01T00:00:00Z (reproducible timestamps).",
        )
        .default("now"),
        ConfigOption::new("limit", OptionType::Integer, "Stop after this many records; 0 never stops.").default("0"),
    ]
}

/// Checks the shared options; simulators add their own checks.
pub fn validate(settings: &Settings) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    if settings.float("rate").is_ok_and(|rate| rate < 0.0) {
        issues.push(("rate".to_owned(), "must not be negative".to_owned()));
    }
    if settings.integer("limit").is_ok_and(|limit| limit < 0) {
        issues.push(("limit".to_owned(), "must not be negative".to_owned()));
    }
    if let Some(start) = settings.get("start")
        && start != "now"
        && parse_rfc3339(start).is_none()
    {
        issues.push(("start".to_owned(), format!("expected `now` or a time such as 2024-01-01T00:00:00Z, found \"{start}\"")));
    }
    issues
}

/// A data simulator: record `n` is a pure function of the seed and `n`. Implementing
/// it makes the type a [`Source`] that paces, positions and resumes its timeline.
pub trait Simulator: Plugin {
    /// Starts the simulator on `timeline` (already positioned).
    fn start(settings: &Settings, timeline: Timeline) -> Result<Self, Error>;
    /// The simulator's timeline.
    fn timeline(&mut self) -> &mut Timeline;
    /// Writes the key and the value of record `n` into `key` and `value` (both empty when
    /// called). The buffers are reused for every record of a poll, so writing straight
    /// into them (e.g. `serde_json::to_writer` of a struct) allocates nothing per record.
    fn record(&self, n: u64, key: &mut Vec<u8>, value: &mut Vec<u8>);
    /// The settings the timeline reads (`seed`, `rate`, `start`, `limit`); override to
    /// derive them from the simulator's own options.
    fn timeline_settings(settings: &Settings) -> Result<Settings, Error> {
        Ok(settings.clone())
    }
}

impl<T: Simulator> Source for T {
    fn open(settings: &Settings, position: Option<&str>) -> Result<Self, Error> {
        let timeline = Timeline::open(&T::timeline_settings(settings)?, position)?;
        T::start(settings, timeline)
    }

    fn poll(&mut self, max_records: usize, batch: &mut BatchWriter) -> Result<PollStatus, Error> {
        let mut timeline = self.timeline().clone();
        let status = timeline.fill(max_records, batch, |n, key, value| self.record(n, key, value));
        *self.timeline() = timeline;
        Ok(status)
    }
}

/// A simulator's position in its timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The generator seed.
    pub seed: u64,
    rate: f64,
    start_ms: i64,
    next: u64,
    limit: Option<u64>,
}

impl Timeline {
    /// Opens the timeline from the settings, continuing from `position` if given.
    pub fn open(settings: &Settings, position: Option<&str>) -> Result<Self, Error> {
        let seed = settings.integer("seed")? as u64;
        let rate = settings.float("rate")?;
        let limit = settings.integer("limit")?;
        let (next, start_ms) = match position {
            Some(position) => parse_position(position).ok_or_else(|| Error::Fatal(format!("unreadable stored position {position:?}")))?,
            None => {
                let start = settings.string("start")?;
                let start_ms = if start == "now" {
                    now_ms()
                } else {
                    parse_rfc3339(&start).ok_or_else(|| Error::BadConfig(format!("config key \"start\": cannot read \"{start}\"")))?
                };
                (0, start_ms)
            }
        };
        Ok(Self { seed, rate, start_ms, next, limit: (limit > 0).then_some(limit as u64) })
    }

    /// The record numbers due now, at most `max` of them; advances the timeline.
    pub fn take_due(&mut self, max: usize) -> Range<u64> {
        let mut end = self.next + max as u64;
        if let Some(limit) = self.limit {
            end = end.min(limit);
        }
        if self.rate > 0.0 {
            let elapsed_ms = (now_ms() - self.start_ms).max(0) as f64;
            let due = (elapsed_ms / 1000.0 * self.rate).floor() as u64 + 1;
            end = end.min(due);
        }
        let range = self.next..end.max(self.next);
        self.next = range.end;
        range
    }

    /// Writes the records due now (at most `max`) to `batch`: `make(n, key, value)`
    /// writes the key and value of record `n` into the two (emptied) buffers. Returns
    /// the poll outcome.
    pub fn fill(&mut self, max: usize, batch: &mut BatchWriter, make: impl Fn(u64, &mut Vec<u8>, &mut Vec<u8>)) -> PollStatus {
        let due = self.take_due(max);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for n in due.clone() {
            key.clear();
            value.clear();
            make(n, &mut key, &mut value);
            batch.push_keyed(Some(self.timestamp_ms(n)), Some(&key), &value);
        }
        self.status(&due)
    }

    /// The simulated time of record `n`, in milliseconds since the epoch.
    pub fn timestamp_ms(&self, n: u64) -> i64 {
        if self.rate > 0.0 { self.start_ms + (n as f64 * 1000.0 / self.rate) as i64 } else { self.start_ms + n as i64 }
    }

    /// The poll outcome after the records of `produced` were written.
    pub fn status(&self, produced: &Range<u64>) -> PollStatus {
        let finished = self.limit.is_some_and(|limit| self.next >= limit);
        let idle = if produced.is_empty() && !finished && self.rate > 0.0 {
            let next_due_ms = self.timestamp_ms(self.next);
            Duration::from_millis((next_due_ms - now_ms()).clamp(1, 1000) as u64)
        } else {
            Duration::ZERO
        };
        PollStatus {
            position: (!produced.is_empty()).then(|| format!("{{\"next\":{},\"start_ms\":{}}}", self.next, self.start_ms)),
            idle,
            finished,
        }
    }

    /// A generator for record `n`, independent of every other record.
    pub fn rng(&self, n: u64) -> Rng {
        Rng::new(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

fn parse_position(position: &str) -> Option<(u64, i64)> {
    let number_after = |key: &str| -> Option<&str> {
        let start = position.find(key)? + key.len();
        let rest = &position[start..];
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
        Some(&rest[..end])
    };
    Some((number_after("\"next\":")?.parse().ok()?, number_after("\"start_ms\":")?.parse().ok()?))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// A small deterministic generator (SplitMix64): reproducible across platforms.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[low, high)`.
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform index below `len` (which must not be zero).
    pub fn index(&mut self, len: usize) -> usize {
        (self.next_u64() % len as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Picks from `(item, weight)` pairs.
    pub fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u32 = items.iter().map(|(_, weight)| weight).sum();
        let mut ticket = (self.next_u64() % u64::from(total)) as u32;
        for (item, weight) in items {
            if ticket < *weight {
                return item;
            }
            ticket -= weight;
        }
        &items[items.len() - 1].0
    }

    /// Approximately normal with the given mean and standard deviation.
    pub fn normal(&mut self, mean: f64, deviation: f64) -> f64 {
        let sum: f64 = (0..6).map(|_| self.unit()).sum();
        mean + (sum - 3.0) * deviation * std::f64::consts::SQRT_2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        assert_eq!(parse_position("{\"next\":17,\"start_ms\":-5}"), Some((17, -5)));
        assert_eq!(parse_position("garbage"), None);
    }
}
