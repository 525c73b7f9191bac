//! One retry policy for everything herokurds retries: the transfer's
//! tables, slices, post-data entries and large objects, and the Heroku API
//! client's requests. Both used to have their own type, one counting
//! attempts in all and the other retries after the first; here there is one
//! count, attempts in all (the first included), and one backoff.
//!
//! What is worth retrying is each user's business (a lost connection for the
//! transfer, a 429 or 503 for the Heroku client); the policy says only how
//! often and how patiently.

use std::time::Duration;

/// How often and how patiently a failed operation is tried again.
///
/// Attempt 1 is the first try. After attempt `n` fails, another follows
/// only while [`RetryPolicy::may_retry`]`(n)` (that is, `n < attempts`),
/// after waiting [`RetryPolicy::backoff`]`(n + 1)`: `first_backoff`,
/// doubling per attempt up to `max_backoff`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 4; at least 1).
    pub attempts: u32,
    /// Wait before the second attempt (default 1 s); doubled after each.
    pub first_backoff: Duration,
    /// The longest wait (default 30 s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// `attempts` in all (at least 1) with `first_backoff` doubling up to
    /// `max_backoff`.
    pub fn new(attempts: u32, first_backoff: Duration, max_backoff: Duration) -> Self {
        RetryPolicy {
            attempts: attempts.max(1),
            first_backoff,
            max_backoff,
        }
    }

    /// No retries: the first failure is final.
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            ..Self::default()
        }
    }

    /// Retries after the first attempt (`attempts - 1`).
    pub fn retries(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }

    /// Whether another attempt may follow the failed attempt `attempt`
    /// (1 for the first).
    pub fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.attempts
    }

    /// The wait before attempt `attempt` (2 for the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(20);
        self.first_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::new(5, Duration::from_secs(1), Duration::from_secs(3));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(3), Duration::from_secs(2));
        assert_eq!(p.backoff(4), Duration::from_secs(3));
        assert_eq!(p.backoff(40), Duration::from_secs(3));
        assert_eq!(RetryPolicy::none().attempts, 1);
    }

    /// The transfer and the Heroku client both count attempts in all: a
    /// policy of 3 lets each try three times, never a fourth.
    #[test]
    fn the_transfer_and_the_heroku_client_count_attempts_alike() {
        let three = RetryPolicy::new(3, Duration::from_millis(5), Duration::from_millis(5));
        let transfer = crate::transfer::TransferOptions::new().retry(three.clone());
        let heroku = crate::heroku::ClientBuilder::new().retry(three.clone());
        for policy in [transfer.get_retry(), heroku.get_retry()] {
            let tries = (1..).take_while(|&n| n == 1 || policy.may_retry(n - 1));
            assert_eq!(tries.count(), 3, "{policy:?}");
            assert_eq!(policy.retries(), 2);
        }
        assert!(!RetryPolicy::none().may_retry(1));
        assert_eq!(
            RetryPolicy::new(0, Duration::ZERO, Duration::ZERO).attempts,
            1
        );
    }
}
