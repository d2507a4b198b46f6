//! How a bench reports: latencies kept in HDR histograms (microseconds, 3 significant digits),
//! a block for people on stdout, and one JSON line at the very end for machines, so that runs
//! can be compared (`ferropay bench … | tail -1 | jq`).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// The longest latency a histogram keeps apart from the others, in µs (an hour); longer ones
/// are counted as an hour.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Latencies of one step, in microseconds.
#[derive(Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self(
            Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .expect("1 µs to 1 h at 3 significant digits is a valid histogram"),
        )
    }
}

impl Latency {
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.clamp(1, LATENCY_MAX_US));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        self.0
            .add(&other.0)
            .expect("histograms with the same bounds add up");
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    fn at_us(&self, quantile: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(quantile)
        }
    }

    /// `{count, p50_us, p99_us, p999_us, max_us, mean_us}`.
    pub fn json(&self) -> Value {
        json!({
            "count": self.count(),
            "p50_us": self.at_us(0.50),
            "p99_us": self.at_us(0.99),
            "p999_us": self.at_us(0.999),
            "max_us": if self.0.is_empty() { 0 } else { self.0.max() },
            "mean_us": self.0.mean().round() as u64,
        })
    }

    /// One line for people: `label  p50 1.23 ms  p99 …  p99.9 …  max …  (n = …)`.
    pub fn line(&self, label: &str) -> String {
        if self.0.is_empty() {
            return format!("  {label:<34} no samples");
        }
        format!(
            "  {label:<34} p50 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}  (n = {})",
            ms(self.at_us(0.50)),
            ms(self.at_us(0.99)),
            ms(self.at_us(0.999)),
            ms(self.0.max()),
            self.count()
        )
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// A rate rounded for people and machines alike (per second, one decimal).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        return 0.0;
    }
    (count as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0
}

/// Prints a titled block of `name  value` lines.
pub fn print_block(title: &str, lines: &[(&str, String)]) {
    println!("{title}");
    for (name, value) in lines {
        println!("  {name:<14} {value}");
    }
}

/// The machine-readable result: the last line of stdout.
pub fn print_json_line(result: &Value) {
    println!("{result}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_what_was_recorded() {
        let mut latency = Latency::default();
        for ms in 1..=1000_u64 {
            latency.record(Duration::from_millis(ms));
        }
        let json = latency.json();
        assert_eq!(json["count"], 1000);
        let p50 = json["p50_us"].as_u64().unwrap();
        let p99 = json["p99_us"].as_u64().unwrap();
        let max = json["max_us"].as_u64().unwrap();
        // Three significant digits: within 0.1 % of the exact value.
        assert!((499_500..=500_500).contains(&p50), "{p50}");
        assert!((989_000..=991_000).contains(&p99), "{p99}");
        assert!((999_000..=1_001_000).contains(&max), "{max}");

        let mut other = Latency::default();
        other.record(Duration::from_secs(7200));
        latency.merge(&other);
        assert_eq!(latency.count(), 1001);
        assert!(latency.json()["max_us"].as_u64().unwrap() >= 3_590_000_000);
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        let json = Latency::default().json();
        assert_eq!(json["count"], 0);
        assert_eq!(json["p99_us"], 0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        assert_eq!(per_second(5, Duration::from_millis(2500)), 2.0);
    }
}
