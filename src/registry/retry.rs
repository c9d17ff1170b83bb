//! The one retry loop of the registry adapter: every registry and ECR call that can fail for a
//! passing reason goes through `retry`, with exponential backoff, jitter, and the server's
//! Retry-After when it gave one.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often and how patiently a call is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second try; doubled for each later one.
    pub base_delay: Duration,
    /// No delay is longer than this, whatever Retry-After says.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// For registry calls: five tries over about six seconds, so a registry restart or a burst
    /// of 503s is ridden out, but an unreachable host fails within seconds.
    pub(crate) const REGISTRY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(400),
        max_delay: Duration::from_secs(20),
    };
}

/// What a failed call means for the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retryable {
    /// Worth trying again (reset connection, 5xx, 429), after `retry_after` when known.
    Transient { retry_after: Option<Duration> },
    /// Trying again cannot help (bad credentials, rejected manifest, 404).
    Permanent,
}

/// Delay before try number `attempt + 1` (attempt counts from 1). `jitter` in [0, 1) spreads
/// concurrent uploads so they do not retry in lockstep; it scales the delay by 0.5–1.0.
pub(crate) fn backoff_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let exponential = policy.base_delay.saturating_mul(1u32 << exponent);
    let jittered = exponential.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    // The server's Retry-After is a floor: coming back earlier only earns another 429.
    let delay = match retry_after {
        Some(after) => jittered.max(after),
        None => jittered,
    };
    delay.min(policy.max_delay)
}

/// Why `retry` gave up.
#[derive(Debug)]
pub(crate) enum RetryFailure<E> {
    /// The last error, with the number of tries made.
    Failed { error: E, attempts: u32 },
    /// The cancellation token fired while waiting.
    Cancelled,
}

/// Runs `op` until it succeeds, fails permanently, runs out of tries, or `cancel` fires.
/// `on_retry` hears about each failure that will be retried (for progress messages).
pub(crate) async fn retry<T, E, Op, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    classify: impl Fn(&E) -> Retryable,
    mut on_retry: impl FnMut(u32, &E, Duration),
    mut op: Op,
) -> Result<T, RetryFailure<E>>
where
    Op: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(RetryFailure::Cancelled),
            outcome = op(attempt) => outcome,
        };
        let error = match outcome {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let retry_after = match classify(&error) {
            Retryable::Transient { retry_after } if attempt < policy.max_attempts => retry_after,
            _ => {
                return Err(RetryFailure::Failed {
                    error,
                    attempts: attempt,
                });
            }
        };
        let delay = backoff_delay(policy, attempt, retry_after, rand::random::<f64>());
        on_retry(attempt, &error, delay);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(RetryFailure::Cancelled),
            _ = tokio::time::sleep(delay) => {}
        }
        attempt += 1;
    }
}

/// Waits `delay` unless `cancel` fires first; false when cancelled.
pub(crate) async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const FAST: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };

    #[test]
    fn delays_double_and_stop_at_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let full = |attempt| backoff_delay(&policy, attempt, None, 1.0);
        assert_eq!(full(1), Duration::from_millis(100));
        assert_eq!(full(2), Duration::from_millis(200));
        assert_eq!(full(3), Duration::from_millis(400));
        assert_eq!(full(5), Duration::from_secs(1));
        assert_eq!(full(40), Duration::from_secs(1));
        assert_eq!(
            backoff_delay(&policy, 1, None, 0.0),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn retry_after_is_a_floor_below_the_cap() {
        let policy = RetryPolicy::REGISTRY;
        let after = Some(Duration::from_secs(3));
        assert_eq!(
            backoff_delay(&policy, 1, after, 0.0),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff_delay(&policy, 1, Some(Duration::from_secs(3600)), 0.0),
            policy.max_delay
        );
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let mut heard = vec![];
        let result: Result<u32, RetryFailure<&str>> = retry(
            &FAST,
            &CancellationToken::new(),
            |_| Retryable::Transient { retry_after: None },
            |attempt, _, _| heard.push(attempt),
            |attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 3 {
                        Err("reset")
                    } else {
                        Ok(attempt)
                    }
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(heard, vec![1, 2]);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(
            &FAST,
            &CancellationToken::new(),
            |_| Retryable::Permanent,
            |_, _, _| {},
            |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err("denied") }
            },
        )
        .await;
        assert!(matches!(
            result,
            Err(RetryFailure::Failed {
                error: "denied",
                attempts: 1
            })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let result: Result<(), _> = retry(
            &FAST,
            &CancellationToken::new(),
            |_| Retryable::Transient { retry_after: None },
            |_, _, _| {},
            |_| async { Err("503") },
        )
        .await;
        assert!(matches!(
            result,
            Err(RetryFailure::Failed { attempts: 4, .. })
        ));
    }

    #[tokio::test]
    async fn cancellation_stops_the_wait() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let result: Result<(), RetryFailure<&str>> = retry(
            &RetryPolicy::REGISTRY,
            &cancel,
            |_| Retryable::Transient { retry_after: None },
            |_, _, _| {},
            |_| std::future::pending(),
        )
        .await;
        assert!(matches!(result, Err(RetryFailure::Cancelled)));
    }
}
