//! The common loop of a source that polls an HTTP API: wait for the schedule, spend
//! the request budget, fetch, then hand out the items over as many polls as the
//! host's batch size needs, and save all of it (schedule, budget, last position per
//! key) in the source position with each batch. A rate-limit answer, or a budget used
//! up, pauses the source through `source-status` instead of failing it.
//!
//! A plugin supplies the fetch: the requests of one cycle and the items they yield.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{self, Request, Response};
use crate::polling::{RequestBudget, Schedule, Watermarks, now_ms};
use crate::{BatchWriter, Error, PollStatus};

/// Longest the host is asked to wait before polling again while nothing is due.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// One item to emit.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A record for the topic; once emitted, `mark` (key, position) is remembered.
    Record {
        /// Record key.
        key: String,
        /// Record value (JSON).
        value: Vec<u8>,
        /// Event time, ms since the epoch.
        timestamp: Option<i64>,
        /// The watermark to advance once the record is in a batch.
        mark: Option<(String, Value)>,
    },
    /// An item that could not be converted: it goes to the dead-letter topic.
    DeadLetter {
        /// The item's key, if it has one.
        key: Option<String>,
        /// The item as received.
        value: Vec<u8>,
        /// Why it could not be converted.
        reason: String,
        /// Remembered once it is sent, so the same bad item is dead-lettered once.
        mark: Option<(String, Value)>,
    },
}

impl Item {
    /// A record whose `(key, position)` is remembered once it is emitted.
    pub fn record(key: String, value: &Value, timestamp: Option<i64>, position: Option<Value>) -> Self {
        let mark = position.map(|position| (key.clone(), position));
        Item::Record { key, value: serde_json::to_vec(value).unwrap_or_default(), timestamp, mark }
    }

    /// The same record, remembered under `mark_key` at `position` once emitted
    /// (instead of under its own key): for records of one series keyed by symbol.
    pub fn marked(self, mark_key: &str, position: Value) -> Self {
        match self {
            Item::Record { key, value, timestamp, .. } => {
                Item::Record { key, value, timestamp, mark: Some((mark_key.to_owned(), position)) }
            }
            other => other,
        }
    }

    /// An item for the dead-letter topic, sent once: not again while `marks` remember it.
    pub fn dead_letter(key: Option<String>, value: &Value, reason: impl Into<String>, marks: &Watermarks) -> Option<Self> {
        let value = serde_json::to_vec(value).unwrap_or_default();
        let fingerprint = format!("dead-letter:{:016x}", fnv1a(&value));
        marks.get(&fingerprint).is_none().then(|| Item::DeadLetter {
            key,
            value,
            reason: reason.into(),
            mark: Some((fingerprint, json!(1))),
        })
    }
}

/// The requests of one fetch: each spends one unit of the budget first.
pub struct Requests<'a> {
    budget: &'a mut RequestBudget,
    throttle: Option<(String, Duration)>,
}

impl Requests<'_> {
    /// Sends `request`, or refuses it when the budget is spent (then the fetch should
    /// return what it has: the source pauses until the budget frees up).
    pub fn send(&mut self, request: &Request) -> Result<Response, Error> {
        if let Err(wait) = self.budget.take(1, now_ms()) {
            let limit = self.budget.limit();
            self.throttle(&format!("the connector's request budget ({limit} requests per budget_window) is used up"), wait);
            return Err(Error::Retriable("request budget used up".to_owned()));
        }
        http::send(request)
    }

    /// The provider refuses more requests (a rate limit or quota answer): pause the
    /// source for `wait`.
    pub fn throttle(&mut self, reason: &str, wait: Duration) {
        self.throttle = Some((reason.to_owned(), wait.max(Duration::from_secs(1))));
    }

    /// True once the fetch was throttled.
    pub fn throttled(&self) -> bool {
        self.throttle.is_some()
    }
}

/// The polling state of an API source.
#[derive(Debug, Clone)]
pub struct ApiPoller {
    /// When the next fetch is due.
    pub schedule: Schedule,
    /// The requests allowed per window.
    pub budget: RequestBudget,
    /// The last position emitted per key.
    pub marks: Watermarks,
    outbox: VecDeque<Item>,
}

impl ApiPoller {
    /// A poller fetching every `interval` within `budget`, remembering up to `capacity` keys.
    pub fn new(interval: Duration, budget: RequestBudget, capacity: usize) -> Self {
        Self { schedule: Schedule::every(interval), budget, marks: Watermarks::new(capacity), outbox: VecDeque::new() }
    }

    /// A poller configured by the options every API source declares: `interval`,
    /// `request_budget` (0: none) and `budget_window`; restored from `position`.
    pub fn from_settings(settings: &crate::Settings, capacity: usize, position: Option<&str>) -> Result<Self, Error> {
        let limit = match settings.integer("request_budget")? {
            0 => u32::MAX,
            limit => limit.clamp(1, i64::from(u32::MAX)) as u32,
        };
        let budget = RequestBudget::new(limit, settings.duration("budget_window")?);
        let mut poller = Self::new(settings.duration("interval")?, budget, capacity.max(1));
        poller.restore(position)?;
        Ok(poller)
    }

    /// Restores what `position` saved.
    pub fn restore(&mut self, position: Option<&str>) -> Result<(), Error> {
        let Some(position) = position else { return Ok(()) };
        let saved: Value = serde_json::from_str(position)
            .map_err(|error| Error::Fatal(format!("the stored source position is not JSON ({error}); reset the connector's offsets")))?;
        self.schedule.restore(saved.get("next"), now_ms());
        self.budget.restore(saved.get("budget"));
        self.marks.restore(saved.get("seen"));
        Ok(())
    }

    /// The position to store: schedule, budget and watermarks.
    pub fn position(&self) -> String {
        json!({"next": self.schedule.to_json(), "budget": self.budget.to_json(), "seen": self.marks.to_json()}).to_string()
    }

    /// Hands out pending items; fetches with `fetch` when nothing is pending and a
    /// cycle is due.
    pub fn poll(
        &mut self,
        max_records: usize,
        batch: &mut BatchWriter,
        fetch: impl FnOnce(&mut Requests<'_>, &Watermarks) -> Result<Vec<Item>, Error>,
    ) -> Result<PollStatus, Error> {
        if self.outbox.is_empty() {
            let now = now_ms();
            if let Some(wait) = self.schedule.wait(now) {
                return Ok(PollStatus { position: None, idle: wait.min(MAX_IDLE), finished: false });
            }
            let mut requests = Requests { budget: &mut self.budget, throttle: None };
            let fetched = fetch(&mut requests, &self.marks);
            let throttle = requests.throttle.take();
            match (fetched, throttle) {
                (fetched, Some((reason, wait))) => {
                    if let Ok(items) = fetched {
                        self.outbox.extend(items);
                    }
                    crate::status::throttled(&reason, wait);
                    self.schedule.retry_after(now, wait);
                }
                (Ok(items), None) => {
                    self.outbox.extend(items);
                    self.schedule.ran(now);
                }
                // The schedule stays due: the host retries the poll with backoff. The
                // budget spent stays counted in memory and is saved with the next batch.
                (Err(error), None) => return Err(error),
            }
            if self.outbox.is_empty() {
                return Ok(PollStatus { position: Some(self.position()), idle: Duration::ZERO, finished: false });
            }
        }
        let mut written = 0;
        while written < max_records {
            let Some(item) = self.outbox.pop_front() else { break };
            match item {
                Item::Record { key, value, timestamp, mark } => {
                    batch.push_keyed(timestamp, Some(key.as_bytes()), &value);
                    if let Some((key, position)) = mark {
                        self.marks.advance(&key, position);
                    }
                }
                Item::DeadLetter { key, value, reason, mark } => {
                    batch.push_dead_letter(key.as_deref().map(str::as_bytes), &value, &reason);
                    if let Some((key, position)) = mark {
                        self.marks.advance(&key, position);
                    }
                }
            }
            written += 1;
        }
        Ok(PollStatus { position: Some(self.position()), idle: Duration::ZERO, finished: false })
    }
}

/// 64-bit FNV-1a: a stable fingerprint of an item's bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Seconds to wait from a rate-limit answer's headers: `Retry-After`, or
/// `x-ratelimit-reset` (seconds until the window resets), else `fallback`.
pub fn reset_wait(response: &Response, fallback: Duration) -> Duration {
    response
        .retry_after()
        .or_else(|| response.header_number("x-ratelimit-reset").filter(|seconds| *seconds >= 0.0).map(Duration::from_secs_f64))
        .unwrap_or(fallback)
}
