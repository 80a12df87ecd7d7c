//! What every source that polls an API needs: a schedule, a request budget that
//! respects the provider's quota across restarts, and a bounded memory of the last
//! position emitted per key, so that each item is emitted once. All of it is saved in
//! the source position (JSON) and restored from it.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

/// Buckets a budget window is split into: a request counts until its whole bucket
/// has left the window, so the budget errs on the safe side by at most one bucket.
const BUDGET_BUCKETS: i64 = 96;

/// At most `limit` requests in any `window` (a sliding window, so it holds whatever
/// the provider's own window is aligned to: calendar days, rolling hours).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBudget {
    limit: u32,
    bucket_ms: i64,
    /// Requests per bucket, by bucket number (time / bucket_ms).
    counts: BTreeMap<i64, u32>,
}

impl RequestBudget {
    /// A budget of `limit` requests per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        let bucket_ms = (window.as_millis() as i64 / BUDGET_BUCKETS).max(1);
        Self { limit, bucket_ms, counts: BTreeMap::new() }
    }

    fn forget_old(&mut self, now_ms: i64) {
        let oldest_kept = now_ms / self.bucket_ms - BUDGET_BUCKETS;
        self.counts.retain(|bucket, _| *bucket >= oldest_kept);
    }

    /// Requests counted in the window ending at `now_ms`.
    pub fn used(&mut self, now_ms: i64) -> u32 {
        self.forget_old(now_ms);
        self.counts.values().sum()
    }

    /// Takes `requests` from the budget at `now_ms`, or says how long until they fit.
    pub fn take(&mut self, requests: u32, now_ms: i64) -> Result<(), Duration> {
        if self.used(now_ms) + requests <= self.limit {
            *self.counts.entry(now_ms / self.bucket_ms).or_default() += requests;
            return Ok(());
        }
        // Wait until enough old buckets leave the window.
        let mut freed = 0;
        let excess = self.used(now_ms) + requests - self.limit;
        for (bucket, count) in &self.counts {
            freed += count;
            if freed >= excess {
                let leaves_at = (bucket + BUDGET_BUCKETS + 1) * self.bucket_ms;
                return Err(Duration::from_millis((leaves_at - now_ms).max(1) as u64));
            }
        }
        Err(Duration::from_millis((BUDGET_BUCKETS * self.bucket_ms) as u64))
    }

    /// The budget limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// For the position.
    pub fn to_json(&self) -> Value {
        let counts: Map<String, Value> = self.counts.iter().map(|(bucket, count)| (bucket.to_string(), json!(count))).collect();
        json!({"bucket_ms": self.bucket_ms, "counts": counts})
    }

    /// Restores the counts saved in a position (ignored when the window changed).
    pub fn restore(&mut self, saved: Option<&Value>) {
        let Some(saved) = saved else { return };
        if saved.get("bucket_ms").and_then(Value::as_i64) != Some(self.bucket_ms) {
            return;
        }
        if let Some(counts) = saved.get("counts").and_then(Value::as_object) {
            self.counts = counts.iter().filter_map(|(bucket, count)| Some((bucket.parse().ok()?, count.as_u64()? as u32))).collect();
        }
    }
}

/// When the next poll is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    interval_ms: i64,
    next_ms: i64,
}

impl Schedule {
    /// Every `interval`, the first right away.
    pub fn every(interval: Duration) -> Self {
        Self { interval_ms: interval.as_millis() as i64, next_ms: 0 }
    }

    /// None when a poll is due at `now_ms`, else how long to wait.
    pub fn wait(&self, now_ms: i64) -> Option<Duration> {
        (now_ms < self.next_ms).then(|| Duration::from_millis((self.next_ms - now_ms) as u64))
    }

    /// A poll ran at `now_ms`.
    pub fn ran(&mut self, now_ms: i64) {
        self.next_ms = now_ms + self.interval_ms;
    }

    /// A poll could not run; try again after `delay`.
    pub fn retry_after(&mut self, now_ms: i64, delay: Duration) {
        self.next_ms = now_ms + delay.as_millis() as i64;
    }

    /// For the position: when the next poll is due, so a restart does not poll early.
    pub fn to_json(&self) -> Value {
        json!(self.next_ms)
    }

    /// Restores the due time saved in a position, capped at one interval from now.
    pub fn restore(&mut self, saved: Option<&Value>, now_ms: i64) {
        if let Some(next) = saved.and_then(Value::as_i64) {
            self.next_ms = next.min(now_ms + self.interval_ms);
        }
    }
}

/// Orders two position values: numbers numerically, strings as text (RFC 3339 times
/// sort right), anything else not at all.
pub fn compare(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => left.as_f64()?.partial_cmp(&right.as_f64()?),
        (Value::String(left), Value::String(right)) => Some(left.cmp(right)),
        _ => None,
    }
}

/// The last position emitted per key (an aircraft's `updated`, a sensor's last
/// measurement time), bounded: past `capacity` keys the ones with the oldest
/// positions are forgotten, and `floor` remembers the newest forgotten position, so
/// that an item at or before it is not emitted again.
#[derive(Debug, Clone, PartialEq)]
pub struct Watermarks {
    capacity: usize,
    marks: BTreeMap<String, Value>,
    floor: Option<Value>,
}

impl Watermarks {
    /// An empty memory of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), marks: BTreeMap::new(), floor: None }
    }

    /// True when an item of `key` at `position` is newer than what was emitted.
    pub fn is_new(&self, key: &str, position: &Value) -> bool {
        let above_floor = self.floor.as_ref().is_none_or(|floor| compare(position, floor) == Some(Ordering::Greater));
        match self.marks.get(key) {
            Some(last) => compare(position, last) == Some(Ordering::Greater),
            None => above_floor,
        }
    }

    /// The last position emitted for `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.marks.get(key)
    }

    /// Records that `key` was emitted at `position`.
    pub fn advance(&mut self, key: &str, position: Value) {
        self.marks.insert(key.to_owned(), position);
        if self.marks.len() > self.capacity {
            self.evict();
        }
    }

    fn evict(&mut self) {
        let mut by_position: Vec<(&String, &Value)> = self.marks.iter().collect();
        by_position.sort_by(|left, right| compare(left.1, right.1).unwrap_or(Ordering::Equal));
        let excess = self.marks.len() - self.capacity;
        let forgotten: Vec<String> = by_position[..excess].iter().map(|(key, _)| (*key).clone()).collect();
        let newest_forgotten = by_position[excess - 1].1.clone();
        if self.floor.as_ref().is_none_or(|floor| compare(&newest_forgotten, floor) == Some(Ordering::Greater)) {
            self.floor = Some(newest_forgotten);
        }
        for key in forgotten {
            self.marks.remove(&key);
        }
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// For the position.
    pub fn to_json(&self) -> Value {
        json!({"marks": self.marks, "floor": self.floor})
    }

    /// Restores what a position saved.
    pub fn restore(&mut self, saved: Option<&Value>) {
        let Some(saved) = saved else { return };
        if let Some(marks) = saved.get("marks").and_then(Value::as_object) {
            self.marks = marks.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
        }
        self.floor = saved.get("floor").filter(|floor| !floor.is_null()).cloned();
        while self.marks.len() > self.capacity {
            self.evict();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_slides_and_survives_a_restart() {
        let day = Duration::from_secs(86_400);
        let mut budget = RequestBudget::new(25, day);
        let start = 1_700_000_000_000;
        for request in 0..25 {
            assert_eq!(budget.take(1, start + request * 60_000), Ok(()));
        }
        let wait = budget.take(1, start + 30 * 60_000).unwrap_err();
        assert!(wait > Duration::from_secs(23 * 3600) && wait <= day, "{wait:?}");
        let mut restored = RequestBudget::new(25, day);
        restored.restore(Some(&budget.to_json()));
        assert!(restored.take(1, start + 3_600_000).is_err(), "a restart does not reset the budget");
        assert_eq!(restored.take(1, start + day.as_millis() as i64 + 3_600_000), Ok(()), "a day later it is free again");
    }

    #[test]
    fn watermarks_emit_each_position_once_and_stay_bounded() {
        let mut marks = Watermarks::new(2);
        assert!(marks.is_new("a", &json!(10)));
        marks.advance("a", json!(10));
        assert!(!marks.is_new("a", &json!(10)));
        assert!(marks.is_new("a", &json!(11)));
        marks.advance("b", json!(20));
        marks.advance("c", json!(30));
        assert_eq!(marks.len(), 2);
        assert!(!marks.is_new("a", &json!(10)), "forgotten, but at or below the floor");
        assert!(marks.is_new("d", &json!(11)));
        let mut restored = Watermarks::new(2);
        restored.restore(Some(&marks.to_json()));
        assert_eq!(restored, marks);
        let mut times = Watermarks::new(2);
        times.advance("t", json!("2024-01-01T00:00:00Z"));
        assert!(times.is_new("t", &json!("2024-01-01T00:00:01Z")), "strings compare as text");
        assert!(!times.is_new("t", &json!("2023-12-31T23:59:59Z")));
    }

    #[test]
    fn a_schedule_restored_does_not_poll_early() {
        let mut schedule = Schedule::every(Duration::from_secs(60));
        assert_eq!(schedule.wait(1_000), None);
        schedule.ran(1_000);
        assert_eq!(schedule.wait(31_000), Some(Duration::from_secs(30)));
        let mut restored = Schedule::every(Duration::from_secs(60));
        restored.restore(Some(&schedule.to_json()), 31_000);
        assert_eq!(restored.wait(31_000), Some(Duration::from_secs(30)));
    }
}
