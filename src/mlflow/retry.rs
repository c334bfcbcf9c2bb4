//! Bounded exponential backoff for transient errors.

use std::future::Future;
use std::time::Duration;

use super::error::MlflowError;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total number of attempts, including the first (0 is treated as 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub base: Duration,
    /// Upper bound of a single delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 200 ms, 400 ms, 800 ms between them (capped at 5 s).
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

    /// Delay before retry number `retry` (0-based): `base * 2^retry`, at most `max`.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Run `op` until it succeeds, fails with a non-transient error
/// ([`MlflowError::is_transient`]), or `policy.attempts` are used up; the last error is returned.
pub async fn retry_with_backoff<T, F, Fut>(policy: RetryPolicy, op: F) -> Result<T, MlflowError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MlflowError>>,
{
    retry_if(policy, MlflowError::is_transient, op).await
}

/// Like [`retry_with_backoff`] for any error type, with the retry decision made by `transient`.
pub async fn retry_if<T, E, F, Fut, P>(policy: RetryPolicy, transient: P, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    P: Fn(&E) -> bool,
    E: std::fmt::Display,
{
    let attempts = policy.attempts.max(1);
    let mut retry = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(err) if retry + 1 < attempts && transient(&err) => {
                let delay = policy.delay(retry);
                tracing::warn!(
                    attempt = retry + 1,
                    of = attempts,
                    delay_ms = delay.as_millis() as u64,
                    error = %err,
                    "transient error, retrying"
                );
                tokio::time::sleep(delay).await;
                retry += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn server_error() -> MlflowError {
        MlflowError::Server {
            status: 503,
            message: "busy".into(),
        }
    }

    #[test]
    fn delays_grow_and_cap() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        assert_eq!(p.delay(0), Duration::from_millis(100));
        assert_eq!(p.delay(1), Duration::from_millis(200));
        assert_eq!(p.delay(2), Duration::from_millis(400));
        assert_eq!(p.delay(3), Duration::from_millis(500));
        assert_eq!(p.delay(200), Duration::from_millis(500));
    }

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn retries_transient_until_success() {
        let calls = Cell::new(0);
        let out = retry_with_backoff(fast(5), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n < 3 { Err(server_error()) } else { Ok(n) } }
        })
        .await
        .unwrap();
        assert_eq!(out, 3);
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_attempts() {
        let calls = Cell::new(0);
        let err = retry_with_backoff(fast(3), || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(server_error()) }
        })
        .await
        .unwrap_err();
        assert_eq!(err.category(), "mlflow_server_error");
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let calls = Cell::new(0);
        let err = retry_with_backoff(fast(5), || {
            calls.set(calls.get() + 1);
            async {
                Err::<(), _>(MlflowError::NotFound {
                    what: "x".into(),
                    message: "gone".into(),
                })
            }
        })
        .await
        .unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn zero_attempts_means_one() {
        let calls = Cell::new(0);
        let _ = retry_with_backoff(
            RetryPolicy {
                attempts: 0,
                ..fast(0)
            },
            || {
                calls.set(calls.get() + 1);
                async { Err::<(), _>(server_error()) }
            },
        )
        .await;
        assert_eq!(calls.get(), 1);
    }
}
