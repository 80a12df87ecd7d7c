//! `payment-simulator`: card and transfer transactions between accounts and merchants,
//! with occasional suspicious patterns (very large amounts, round amounts, rapid
//! repeats, foreign merchants at night) flagged in the record. Keyed by `account_id`.

use serde_json::json;
use wasm_connect_sdk::simulation::{self, Rng, Simulator, Timeline, format_rfc3339};
use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, Settings, export_source};

/// Name, category (ISO 18245 merchant category code), country.
const MERCHANTS: &[(&str, &str, &str)] = &[
    ("Green Grocer", "5411", "FR"),
    ("City Fuel", "5541", "FR"),
    ("Bistro du Coin", "5812", "FR"),
    ("Rail Europe", "4112", "FR"),
    ("Book Nook", "5942", "DE"),
    ("Pharma Plus", "5912", "BE"),
    ("Electro Mega", "5732", "DE"),
    ("Sky Airlines", "4511", "NL"),
    ("Grand Hotel", "7011", "IT"),
    ("Streamflix", "4899", "US"),
    ("Crypto Swap", "6051", "SC"),
    ("Lucky Casino", "7995", "MT"),
];
const CURRENCIES: &[(&str, u32)] = &[("EUR", 80), ("USD", 10), ("GBP", 7), ("CHF", 3)];
const CHANNELS: &[(&str, u32)] = &[("card_present", 45), ("card_online", 40), ("transfer", 15)];

/// The simulator task.
pub struct PaymentSimulator {
    timeline: Timeline,
    accounts: u64,
    suspicious_probability: f64,
}

impl PaymentSimulator {
    /// Transaction `n`.
    pub fn transaction(&self, n: u64) -> (String, serde_json::Value) {
        let mut rng = self.timeline.rng(n);
        let account = rng.index(self.accounts as usize) as u64;
        let account_id = format!("ACC{:08}", account);
        let mut merchant = MERCHANTS[rng.index(MERCHANTS.len() - 3)];
        let mut amount = rng.normal(3.2, 1.0).exp().clamp(0.5, 5_000.0);
        let pattern = if rng.chance(self.suspicious_probability) {
            Some(*rng.weighted(&[("high_amount", 3), ("round_amount", 2), ("rapid_repeat", 2), ("risky_merchant", 2)]))
        } else {
            None
        };
        match pattern {
            Some("high_amount") => amount = rng.between(9_000.0, 49_000.0),
            Some("round_amount") => amount = (1 + rng.index(10)) as f64 * 1000.0,
            Some("risky_merchant") => merchant = MERCHANTS[MERCHANTS.len() - 1 - rng.index(3)],
            _ => {}
        }
        let transaction = json!({
            "transaction_id": transaction_id(self.timeline.seed, n),
            "timestamp": format_rfc3339(self.timeline.timestamp_ms(n)),
            "account_id": account_id,
            "merchant": { "name": merchant.0, "mcc": merchant.1, "country": merchant.2 },
            "amount": (amount * 100.0).round() / 100.0,
            "currency": rng.weighted(CURRENCIES),
            "channel": rng.weighted(CHANNELS),
            // A rapid repeat is the same account paying again within the same second.
            "repeat_count": if pattern == Some("rapid_repeat") { 2 + rng.index(6) } else { 0 },
            "suspicious": pattern.is_some(),
            "pattern": pattern,
        });
        (account_id, transaction)
    }
}

fn transaction_id(seed: u64, n: u64) -> String {
    let mut rng = Rng::new(seed.wrapping_mul(977).wrapping_add(n));
    let (high, low) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xfff,
        (low >> 48) & 0x3fff | 0x8000,
        low & 0xffff_ffff_ffff
    )
}

impl Plugin for PaymentSimulator {
    fn description() -> Description {
        let description = Description::new(
            "payment-simulator",
            env!("CARGO_PKG_VERSION"),
            "Financial transactions (account, merchant, amount, currency, channel) with occasional flagged suspicious patterns; keyed by account_id.",
        )
        .option(ConfigOption::new("accounts", OptionType::Integer, "Number of accounts.").default("1000"))
        .option(
            ConfigOption::new("suspicious_probability", OptionType::Float, "Share of suspicious transactions (0 to 1).")
                .default("0.005"),
        );
        simulation::options("20").into_iter().fold(description, Description::option)
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut issues = simulation::validate(settings);
        if settings.integer("accounts").is_ok_and(|accounts| accounts < 1) {
            issues.push(("accounts".to_owned(), "must be at least 1".to_owned()));
        }
        if settings.float("suspicious_probability").is_ok_and(|p| !(0.0..=1.0).contains(&p)) {
            issues.push(("suspicious_probability".to_owned(), "must be between 0 and 1".to_owned()));
        }
        issues
    }
}

impl Simulator for PaymentSimulator {
    fn start(settings: &Settings, timeline: Timeline) -> Result<Self, Error> {
        Ok(Self {
            timeline,
            accounts: settings.integer("accounts")?.max(1) as u64,
            suspicious_probability: settings.float("suspicious_probability")?,
        })
    }

    fn timeline(&mut self) -> &mut Timeline {
        &mut self.timeline
    }

    fn record(&self, n: u64, key: &mut Vec<u8>, value: &mut Vec<u8>) {
        let (record_key, record_value) = self.transaction(n);
        key.extend_from_slice(record_key.as_bytes());
        serde_json::to_writer(value, &record_value).expect("a JSON tree always serialises");
    }
}

export_source!(PaymentSimulator);
