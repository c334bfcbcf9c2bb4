//! MLflow's retry rule: transient errors ([`MlflowError::is_transient`]) are retried with the
//! shared policy of [`crate::retry`].

use std::future::Future;

use super::error::MlflowError;
pub use crate::retry::{RetryPolicy, retry_if};

/// Runs `op` until it succeeds, fails with a non-transient error, or `policy.attempts` are used
/// up; the last error is returned.
pub async fn retry_with_backoff<T, F, Fut>(policy: RetryPolicy, op: F) -> Result<T, MlflowError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MlflowError>>,
{
    retry_if(policy, MlflowError::is_transient, op).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn server_errors_are_retried_not_found_is_not() {
        let policy = RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let calls = Cell::new(0);
        let err = retry_with_backoff(policy, || {
            calls.set(calls.get() + 1);
            async {
                Err::<(), _>(MlflowError::Server {
                    status: 503,
                    message: "busy".into(),
                })
            }
        })
        .await
        .unwrap_err();
        assert_eq!(err.category(), "mlflow_server_error");
        assert_eq!(calls.get(), 3);
        calls.set(0);
        let err = retry_with_backoff(policy, || {
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
}
