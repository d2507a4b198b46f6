//! The retry policy: how long a job waits after a retryable failure (exponential backoff with
//! full jitter), and how many attempts it gets before it moves to the dead-letter queue.
//!
//! Full jitter (a uniform wait in `0..=min(cap, base * 2^(attempt-1))`) spreads the retries of
//! many jobs that failed together (a PSP outage) instead of sending them back in one burst.
//!
//! A job is dead-lettered after a passing failure only when it has used its attempts AND is
//! older than the retry window (a day by default): a PSP down for an hour, or a night, delays a
//! refund or a payout but never leaves it to an operator; the service recovers by itself.

/// When and how often a failed job is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The backoff's base: the first retry waits up to this long.
    pub base_delay_ms: u64,
    /// The backoff's cap: no retry waits longer than this.
    pub max_delay_ms: u64,
    /// A job that has failed this many attempts moves to the dead-letter queue (at least 1)...
    pub max_attempts: u32,
    /// ...once it is also this old: within the window a passing failure is always retried
    /// (at most `max_delay_ms` apart). 0: the attempts alone decide.
    pub retry_window_ms: u64,
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
            retry_window_ms: 24 * 60 * 60 * 1000,
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

    /// Whether a job that has made `attempts` attempts, the last one failed for a passing
    /// reason, may try again, `age_ms` after it was enqueued.
    pub fn may_retry(&self, attempts: u32, age_ms: u64) -> bool {
        attempts < self.max_attempts.max(1) || age_ms < self.retry_window_ms
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
            retry_window_ms: 0,
        };
        let ceilings: Vec<u64> = (1..=6).map(|a| policy.ceiling_ms(a)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(policy.ceiling_ms(0), 100);
        assert_eq!(policy.ceiling_ms(u32::MAX), 1_000);
        let huge = RetryPolicy {
            base_delay_ms: u64::MAX,
            max_delay_ms: u64::MAX,
            max_attempts: 1,
            retry_window_ms: 0,
        };
        assert_eq!(huge.ceiling_ms(40), u64::MAX);
    }

    #[test]
    fn backoff_is_fully_jittered_below_the_ceiling() {
        let policy = RetryPolicy {
            base_delay_ms: 100,
            max_delay_ms: 10_000,
            max_attempts: 5,
            retry_window_ms: 0,
        };
        let waits: Vec<u64> = (0..2_000).map(|_| policy.backoff_ms(4)).collect();
        assert!(waits.iter().all(|w| *w <= 800));
        // Full jitter: the waits cover the whole range, short ones included.
        assert!(waits.iter().any(|w| *w < 100), "no short wait");
        assert!(waits.iter().any(|w| *w > 700), "no long wait");
    }

    #[test]
    fn attempts_are_bounded_once_the_window_has_passed() {
        let day_ms = 24 * 60 * 60 * 1000;
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.retry_window_ms, day_ms, "a day by default");
        let old_ms = day_ms;
        assert!(policy.may_retry(1, old_ms));
        assert!(policy.may_retry(2, old_ms));
        assert!(!policy.may_retry(3, old_ms));
        // Within the window (an hour-long outage) every passing failure is retried.
        assert!(policy.may_retry(3, 60 * 60 * 1000));
        assert!(policy.may_retry(500, day_ms - 1));
        let zero = RetryPolicy {
            max_attempts: 0,
            retry_window_ms: 0,
            ..RetryPolicy::default()
        };
        assert!(!zero.may_retry(1, 0), "zero is taken as one attempt");
    }
}
