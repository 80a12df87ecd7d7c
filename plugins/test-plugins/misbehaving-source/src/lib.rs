//! `misbehaving-source`: produces `good_polls` polls of well-formed records, then
//! misbehaves as `behaviour` says, to prove that one broken plugin fails only its own
//! task: `trap` (panics), `loop` (never returns), `oom` (allocates without end),
//! `slow` (busy for `slow_millis` per poll), `fatal` (returns a fatal error),
//! `log-flood` (logs 1 GiB in 8 KiB lines per poll), `big-batch` (returns a batch of
//! `batch_mib` MiB).

use wasm_connect_sdk::{BatchWriter, ConfigOption, Description, Error, OptionType, Plugin, PollStatus, Settings, Source, export_source};

/// The task.
pub struct MisbehavingSource {
    behaviour: String,
    good_polls: i64,
    slow_millis: u64,
    batch_mib: usize,
    polls: i64,
}

impl Plugin for MisbehavingSource {
    fn description() -> Description {
        Description::new("misbehaving-source", env!("CARGO_PKG_VERSION"), "Misbehaves on purpose, for tests.")
            .option(ConfigOption::new("behaviour", OptionType::String, "trap, loop, oom, slow, fatal, log-flood or big-batch.").required())
            .option(ConfigOption::new("good_polls", OptionType::Integer, "Well-behaved polls first.").default("1"))
            .option(ConfigOption::new("slow_millis", OptionType::Integer, "Busy time per poll for `slow`.").default("100"))
            .option(ConfigOption::new("batch_mib", OptionType::Integer, "Size of the batch for `big-batch`.").default("60"))
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        match settings.get("behaviour") {
            Some("trap" | "loop" | "oom" | "slow" | "fatal" | "log-flood" | "big-batch") | None => Vec::new(),
            Some(other) => vec![("behaviour".to_owned(), format!("unknown behaviour \"{other}\""))],
        }
    }
}

impl Source for MisbehavingSource {
    fn open(settings: &Settings, _position: Option<&str>) -> Result<Self, Error> {
        Ok(Self {
            behaviour: settings.string("behaviour")?,
            good_polls: settings.integer("good_polls")?,
            slow_millis: settings.integer("slow_millis")? as u64,
            batch_mib: settings.integer("batch_mib")?.max(0) as usize,
            polls: 0,
        })
    }

    fn poll(&mut self, _max_records: usize, batch: &mut BatchWriter) -> Result<PollStatus, Error> {
        self.polls += 1;
        if self.polls > self.good_polls {
            match self.behaviour.as_str() {
                "trap" => panic!("misbehaving-source traps on purpose"),
                "loop" => {
                    let mut spins = 0u64;
                    loop {
                        spins = std::hint::black_box(spins.wrapping_add(1));
                    }
                }
                "oom" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "slow" => {
                    let until = std::time::Instant::now() + std::time::Duration::from_millis(self.slow_millis);
                    while std::time::Instant::now() < until {
                        std::hint::black_box(0);
                    }
                }
                "log-flood" => {
                    let line = "x".repeat(8 * 1024);
                    for _ in 0..(1 << 17) {
                        wasm_connect_sdk::log::info(&line);
                    }
                }
                "big-batch" => {
                    let value = vec![b'7'; 1 << 20];
                    for _ in 0..self.batch_mib {
                        batch.push_keyed(None, Some(b"big"), &value);
                    }
                    return Ok(PollStatus::default());
                }
                _ => return Err(Error::Fatal("misbehaving-source fails on purpose".to_owned())),
            }
        }
        batch.push_keyed(None, Some(b"misbehaving"), format!("{{\"poll\":{}}}", self.polls).as_bytes());
        Ok(PollStatus { idle: std::time::Duration::from_millis(20), ..PollStatus::default() })
    }
}

export_source!(MisbehavingSource);
