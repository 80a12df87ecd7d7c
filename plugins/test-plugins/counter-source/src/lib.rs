//! `counter-source`: record `n` is `{"n": n, "version": "<plugin version>"}`, keyed
//! by `n`, at `rate` records per second; its position is the next `n`. Two packages
//! build it, as versions 1.0.0 and 2.0.0, so tests can move a connector from one
//! version to the other and check that the count goes on without a gap or a repeat.

use std::time::{Duration, Instant};

use wasm_connect_sdk::{BatchWriter, ConfigOption, Description, Error, OptionType, Plugin, PollStatus, Settings, Source, export_source};

/// The task.
pub struct CounterSource {
    next: u64,
    rate: f64,
    started: Instant,
    first: u64,
}

impl Plugin for CounterSource {
    fn description() -> Description {
        Description::new("counter-source", env!("CARGO_PKG_VERSION"), "Counts, saying which version counted, for tests.")
            .option(ConfigOption::new("rate", OptionType::Float, "Records per second.").default("200"))
    }
}

impl Source for CounterSource {
    fn open(settings: &Settings, position: Option<&str>) -> Result<Self, Error> {
        let next = match position {
            Some(position) => position.parse().map_err(|_| Error::Fatal(format!("unreadable position {position:?}")))?,
            None => 0,
        };
        Ok(Self { next, rate: settings.float("rate")?, started: Instant::now(), first: next })
    }

    fn poll(&mut self, max_records: usize, batch: &mut BatchWriter) -> Result<PollStatus, Error> {
        let due = self.first + (self.started.elapsed().as_secs_f64() * self.rate) as u64 + 1;
        let end = due.min(self.next + max_records as u64);
        for n in self.next..end {
            let value = format!("{{\"n\":{n},\"version\":\"{}\"}}", env!("CARGO_PKG_VERSION"));
            batch.push_keyed(None, Some(n.to_string().as_bytes()), value.as_bytes());
        }
        let produced = end > self.next;
        self.next = self.next.max(end);
        Ok(PollStatus {
            position: produced.then(|| self.next.to_string()),
            idle: if produced { Duration::ZERO } else { Duration::from_millis(5) },
            finished: false,
        })
    }
}

export_source!(CounterSource);
