//! Retries of outbound calls (MLflow, Prometheus, the advisor): capped exponential backoff with
//! jitter (`backon`), for errors the caller calls transient. Jitter keeps many resources that
//! failed together from retrying together.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total number of attempts, including the first (0 is treated as 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry (plus up to as much again
    /// of jitter).
    pub base: Duration,
    /// Upper bound of a single delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, about 200 ms, 400 ms, 800 ms apart (capped at 5 s).
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A single attempt, no retry.
    pub const fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            base: Duration::ZERO,
            max: Duration::ZERO,
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.attempts.max(1).saturating_sub(1) as usize)
    }

    /// The delays this policy waits between attempts (random: jittered).
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        self.backoff().build()
    }
}

/// Runs `op` until it succeeds, fails with an error `transient` rejects, or the policy's
/// attempts are used up; the last error is returned.
pub async fn retry_if<T, E, F, Fut, P>(policy: RetryPolicy, transient: P, op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    P: Fn(&E) -> bool,
    E: std::fmt::Display,
{
    op.retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(transient)
        .notify(|error, delay| {
            tracing::warn!(
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                %error,
                "transient error, retrying"
            );
        })
        .await
}

/// The delay before the next reconcile of a resource that failed `failures` times in a row:
/// exponential from `base`, capped at `max`, jittered.
pub fn reconcile_backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let policy = ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    policy
        .build()
        .nth(failures.saturating_sub(1) as usize)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::cell::Cell;

    use super::*;

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        }
    }

    #[test]
    fn delays_grow_jittered_and_capped() {
        let policy = RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 5, "attempts - 1 retries");
        for (i, d) in delays.iter().enumerate() {
            let floor = Duration::from_millis(100 << i).min(Duration::from_millis(500));
            assert!(*d >= floor, "{i}: {d:?}");
            assert!(*d <= floor * 2, "{i}: {d:?} (jitter at most doubles)");
        }
        assert_eq!(RetryPolicy::none().delays().count(), 0);
    }

    #[test]
    fn reconcile_backoff_grows_to_its_cap() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(300);
        let first = reconcile_backoff(1, base, max);
        assert!(first >= base && first <= base * 2, "{first:?}");
        let tenth = reconcile_backoff(10, base, max);
        assert!(tenth >= max && tenth <= max * 2, "{tenth:?}");
    }

    #[tokio::test]
    async fn retries_transient_until_success() {
        let calls = Cell::new(0);
        let out = retry_if(
            fast(5),
            |_: &String| true,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Err("busy".to_string())
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(out, 3);
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_attempts_and_never_retries_permanent_errors() {
        let calls = Cell::new(0);
        let err = retry_if(
            fast(3),
            |_: &String| true,
            || {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("busy".to_string()) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err, "busy");
        assert_eq!(calls.get(), 3);
        calls.set(0);
        let _ = retry_if(
            fast(5),
            |e: &String| e != "gone",
            || {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("gone".to_string()) }
            },
        )
        .await;
        assert_eq!(calls.get(), 1);
        calls.set(0);
        let _ = retry_if(
            fast(0),
            |_: &String| true,
            || {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("busy".to_string()) }
            },
        )
        .await;
        assert_eq!(calls.get(), 1, "0 attempts means one");
    }
}
