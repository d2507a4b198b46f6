//! The retry policy: how long a job waits after a retryable failure (exponential backoff with
//! full jitter), and how many attempts it gets before it moves to the dead-letter queue.
//!
//! Full jitter (a uniform wait in `0..=min(cap, base * 2^(attempt-1))`) spreads the retries of
//! many jobs that failed together (a PSP outage) instead of sending them back in one burst.

/// When and how often a failed job is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The backoff's base: the first retry waits up to this long.
    pub base_delay_ms: u64,
    /// The backoff's cap: no retry waits longer than this.
    pub max_delay_ms: u64,
    /// A job that has failed this many attempts moves to the dead-letter queue (at least 1).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // About half an hour of retrying (on average) before a job is dead-lettered: long enough
        // to ride out a PSP's passing outage, short enough that an operator hears of it the same
        // day.
        Self {
            base_delay_ms: 500,
            max_delay_ms: 5 * 60 * 1000,
            max_attempts: 20,
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the wait after failed attempt number `attempt` (1-based):
    /// `min(max_delay_ms, base_delay_ms * 2^(attempt-1))`, without overflow.
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(63);
        self.base_delay_ms
            .saturating_mul(1_u64 << doublings)
            .min(self.max_delay_ms)
    }

    /// The wait after failed attempt number `attempt`: uniform in `0..=ceiling_ms(attempt)`.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        rand::random_range(0..=self.ceiling_ms(attempt))
    }

    /// Whether a job that has made `attempts` attempts, the last one failed, may try again.
    pub fn may_retry(&self, attempts: u32) -> bool {
        attempts < self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_the_base_up_to_the_cap() {
        let policy = RetryPolicy {
            base_delay_ms: 100,
            max_delay_ms: 1_000,
            max_attempts: 5,
        };
        let ceilings: Vec<u64> = (1..=6).map(|a| policy.ceiling_ms(a)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(policy.ceiling_ms(0), 100);
        assert_eq!(policy.ceiling_ms(u32::MAX), 1_000);
        let huge = RetryPolicy {
            base_delay_ms: u64::MAX,
            max_delay_ms: u64::MAX,
            max_attempts: 1,
        };
        assert_eq!(huge.ceiling_ms(40), u64::MAX);
    }

    #[test]
    fn backoff_is_fully_jittered_below_the_ceiling() {
        let policy = RetryPolicy {
            base_delay_ms: 100,
            max_delay_ms: 10_000,
            max_attempts: 5,
        };
        let waits: Vec<u64> = (0..2_000).map(|_| policy.backoff_ms(4)).collect();
        assert!(waits.iter().all(|w| *w <= 800));
        // Full jitter: the waits cover the whole range, short ones included.
        assert!(waits.iter().any(|w| *w < 100), "no short wait");
        assert!(waits.iter().any(|w| *w > 700), "no long wait");
    }

    #[test]
    fn attempts_are_bounded() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(policy.may_retry(1));
        assert!(policy.may_retry(2));
        assert!(!policy.may_retry(3));
        let zero = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert!(!zero.may_retry(1), "zero is taken as one attempt");
    }
}
