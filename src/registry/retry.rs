//! The one retry policy of the registry adapter: every registry call that can fail for a passing
//! reason goes through `retry` (or, for a blob upload that makes progress between failures,
//! through a `Backoff` of its own), with exponential backoff and jitter, or the wait the server
//! asked for in `Retry-After` when it gave one.
//!
//! The decisions are pure (`parse_retry_after`, `Backoff::on_failure`) and tested on fixtures;
//! only `retry` and `sleep_or_cancel` touch the clock.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

/// How often and how patiently a call is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second try; doubled for each later one.
    pub base_delay: Duration,
    /// No backoff delay is longer than this.
    pub max_delay: Duration,
    /// The longest single wait a server's Retry-After may ask for; asking for more ends the
    /// call at once (waiting an hour inside a pipeline helps nobody).
    pub max_retry_after: Duration,
    /// All the waits of one call (or one stretch of an upload without progress) together.
    pub wait_budget: Duration,
}

impl RetryPolicy {
    /// For registry calls: five tries over about six seconds when the server says nothing, so
    /// a registry restart or a burst of 503s is ridden out but an unreachable host fails within
    /// seconds; a rate limit's Retry-After is honoured up to a minute a wait, two in all.
    pub(crate) const REGISTRY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(400),
        max_delay: Duration::from_secs(20),
        max_retry_after: Duration::from_secs(60),
        wait_budget: Duration::from_secs(120),
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

/// Reads a `Retry-After` header: delay-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2015
/// 07:28:00 GMT`, and the two obsolete forms RFC 9110 tells recipients to accept). A date is
/// measured from the server's own `Date` header when it sent one, so a skewed local clock does
/// not shorten or stretch the wait; a date in the past means "now". None when unreadable.
pub(crate) fn parse_retry_after(
    value: &str,
    server_date: Option<&str>,
    local_now: SystemTime,
) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long numbers saturate; the cap turns them into a clear error later.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = parse_http_date(value)?;
    let now = server_date.and_then(parse_http_date).unwrap_or(local_now);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An HTTP-date in any of its three forms (RFC 9110 §5.6.7), always GMT.
pub(crate) fn parse_http_date(text: &str) -> Option<SystemTime> {
    use chrono::{NaiveDateTime, TimeZone as _, Utc};
    let text = text.trim();
    let naive = [
        "%a, %d %b %Y %H:%M:%S GMT", // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        "%A, %d-%b-%y %H:%M:%S GMT", // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT
        "%a %b %e %H:%M:%S %Y",      // asctime:     Sun Nov  6 08:49:37 1994
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())?;
    Some(Utc.from_utc_datetime(&naive).into())
}

/// Why a call was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// The failure cannot be helped by trying again.
    Permanent,
    /// Every try failed.
    OutOfAttempts,
    /// The server asked for a wait longer than `RetryPolicy::max_retry_after`.
    WaitTooLong { asked: Duration, cap: Duration },
    /// Waiting as asked would take the call past `RetryPolicy::wait_budget`.
    OverBudget {
        asked: Duration,
        waited: Duration,
        budget: Duration,
    },
}

impl GiveUp {
    /// A sentence to append to the failure's reason, when the reason alone does not say why
    /// shipit stopped trying.
    pub(crate) fn note(&self) -> Option<String> {
        match *self {
            GiveUp::Permanent | GiveUp::OutOfAttempts => None,
            GiveUp::WaitTooLong { asked, cap } => Some(format!(
                "the registry asked to wait {} before trying again (Retry-After), longer than \
                 the {} shipit waits; try again later",
                seconds(asked),
                seconds(cap)
            )),
            GiveUp::OverBudget {
                asked,
                waited,
                budget,
            } => Some(format!(
                "the registry asked to wait {} more (Retry-After) after {} of waiting, past the \
                 {} shipit waits in all; try again later",
                seconds(asked),
                seconds(waited),
                seconds(budget)
            )),
        }
    }
}

fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs >= 10.0 || secs.fract() == 0.0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{secs:.1}s")
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Try again after this long; `honoured` when the delay is the server's Retry-After.
    Wait {
        delay: Duration,
        honoured: bool,
    },
    GiveUp(GiveUp),
}

/// The retry state of one call: how many tries failed in a row and how long was waited.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    failures: u32,
    waited: Duration,
}

impl Backoff {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
            waited: Duration::ZERO,
        }
    }

    /// The call got further (an upload chunk was acknowledged): later failures start a fresh
    /// run of tries and a fresh wait budget.
    pub(crate) fn progressed(&mut self) {
        self.failures = 0;
        self.waited = Duration::ZERO;
    }

    /// Records a failure and decides. `jitter` in [0, 1) spreads concurrent uploads so they do
    /// not retry in lockstep: it scales the backoff delay by 0.5–1.0. A Retry-After is waited
    /// in full (coming back earlier only earns another 429), never capped below what was asked.
    pub(crate) fn on_failure(&mut self, retry: Retryable, jitter: f64) -> Decision {
        self.failures += 1;
        let retry_after = match retry {
            Retryable::Permanent => return Decision::GiveUp(GiveUp::Permanent),
            Retryable::Transient { retry_after } => retry_after,
        };
        if let Some(asked) = retry_after
            && asked > self.policy.max_retry_after
        {
            return Decision::GiveUp(GiveUp::WaitTooLong {
                asked,
                cap: self.policy.max_retry_after,
            });
        }
        if self.failures >= self.policy.max_attempts {
            return Decision::GiveUp(GiveUp::OutOfAttempts);
        }
        let exponent = (self.failures - 1).min(16);
        let exponential = self
            .policy
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.policy.max_delay);
        let jittered = exponential.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        let (delay, honoured) = match retry_after {
            Some(asked) if asked >= jittered => (asked, true),
            _ => (jittered, false),
        };
        if honoured && self.waited + delay > self.policy.wait_budget {
            return Decision::GiveUp(GiveUp::OverBudget {
                asked: delay,
                waited: self.waited,
                budget: self.policy.wait_budget,
            });
        }
        self.waited += delay;
        Decision::Wait { delay, honoured }
    }
}

/// Why `retry` gave up.
#[derive(Debug)]
pub(crate) enum RetryFailure<E> {
    /// The last error, with the number of tries made and why there was no other.
    Failed {
        error: E,
        attempts: u32,
        gave_up: GiveUp,
    },
    /// The cancellation token fired while waiting.
    Cancelled,
}

/// One retry, for progress messages: which try failed, how long until the next, and whether
/// that wait is the server's Retry-After.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryNote {
    pub attempt: u32,
    pub delay: Duration,
    pub honoured: bool,
}

impl RetryNote {
    /// "retry 1 in 2.0s" plus, when the server asked for the wait, a word saying so.
    pub(crate) fn describe(&self) -> String {
        let asked = if self.honoured {
            " as the registry's Retry-After asks"
        } else {
            ""
        };
        format!(
            "retry {} in {:.1}s{asked}",
            self.attempt,
            self.delay.as_secs_f64()
        )
    }
}

/// Runs `op` until it succeeds, fails permanently, runs out of tries or patience, or `cancel`
/// fires. `on_retry` hears about each failure that will be retried (for progress messages).
pub(crate) async fn retry<T, E, Op, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    classify: impl Fn(&E) -> Retryable,
    mut on_retry: impl FnMut(RetryNote, &E),
    mut op: Op,
) -> Result<T, RetryFailure<E>>
where
    Op: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(*policy);
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
        let (delay, honoured) = match backoff.on_failure(classify(&error), rand::random::<f64>()) {
            Decision::Wait { delay, honoured } => (delay, honoured),
            Decision::GiveUp(gave_up) => {
                return Err(RetryFailure::Failed {
                    error,
                    attempts: attempt,
                    gave_up,
                });
            }
        };
        on_retry(
            RetryNote {
                attempt,
                delay,
                honoured,
            },
            &error,
        );
        if !sleep_or_cancel(delay, cancel).await {
            return Err(RetryFailure::Cancelled);
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
        max_retry_after: Duration::from_millis(50),
        wait_budget: Duration::from_millis(100),
    };

    const TRANSIENT: Retryable = Retryable::Transient { retry_after: None };

    fn after(secs: u64) -> Retryable {
        Retryable::Transient {
            retry_after: Some(Duration::from_secs(secs)),
        }
    }

    fn delays(policy: RetryPolicy, failures: &[Retryable], jitter: f64) -> Vec<Decision> {
        let mut backoff = Backoff::new(policy);
        failures
            .iter()
            .map(|retry| backoff.on_failure(*retry, jitter))
            .collect()
    }

    fn wait(ms: u64) -> Decision {
        Decision::Wait {
            delay: Duration::from_millis(ms),
            honoured: false,
        }
    }

    fn honoured(secs: u64) -> Decision {
        Decision::Wait {
            delay: Duration::from_secs(secs),
            honoured: true,
        }
    }

    #[test]
    fn delays_double_stop_at_the_cap_and_end_with_the_attempts() {
        let policy = RetryPolicy {
            max_attempts: 7,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::REGISTRY
        };
        assert_eq!(
            delays(policy, &[TRANSIENT; 7], 1.0),
            vec![
                wait(100),
                wait(200),
                wait(400),
                wait(800),
                wait(1000),
                wait(1000),
                Decision::GiveUp(GiveUp::OutOfAttempts)
            ]
        );
        // Jitter scales a delay down to half, never up.
        assert_eq!(delays(policy, &[TRANSIENT], 0.0), vec![wait(50)]);
        assert_eq!(delays(policy, &[TRANSIENT], 7.0), vec![wait(100)]);
    }

    #[test]
    fn permanent_failures_end_at_once() {
        assert_eq!(
            delays(RetryPolicy::REGISTRY, &[Retryable::Permanent], 0.5),
            vec![Decision::GiveUp(GiveUp::Permanent)]
        );
    }

    #[test]
    fn retry_after_is_waited_in_full_even_past_the_backoff_cap() {
        let policy = RetryPolicy::REGISTRY;
        assert_eq!(delays(policy, &[after(3)], 0.0), vec![honoured(3)]);
        // Longer than max_delay (20 s) but within max_retry_after (60 s): still honoured.
        assert_eq!(delays(policy, &[after(45)], 0.9), vec![honoured(45)]);
        // Shorter than the backoff: the backoff wins (it is still no sooner than asked).
        let mut backoff = Backoff::new(policy);
        for _ in 0..3 {
            backoff.on_failure(TRANSIENT, 1.0);
        }
        assert_eq!(
            backoff.on_failure(
                Retryable::Transient {
                    retry_after: Some(Duration::ZERO)
                },
                1.0
            ),
            wait(3200)
        );
    }

    #[test]
    fn a_wait_longer_than_the_cap_gives_up_at_once_with_a_clear_note() {
        let decisions = delays(RetryPolicy::REGISTRY, &[after(3600)], 0.5);
        let Decision::GiveUp(gave_up) = decisions[0] else {
            panic!("{decisions:?}")
        };
        assert_eq!(
            gave_up,
            GiveUp::WaitTooLong {
                asked: Duration::from_secs(3600),
                cap: Duration::from_secs(60)
            }
        );
        assert_eq!(
            gave_up.note().unwrap(),
            "the registry asked to wait 3600s before trying again (Retry-After), longer than \
             the 60s shipit waits; try again later"
        );
    }

    #[test]
    fn waits_past_the_budget_give_up_with_what_was_waited() {
        let decisions = delays(
            RetryPolicy::REGISTRY,
            &[after(50), after(50), after(50)],
            0.5,
        );
        assert_eq!(decisions[..2], [honoured(50), honoured(50)]);
        let Decision::GiveUp(gave_up) = decisions[2] else {
            panic!("{decisions:?}")
        };
        assert_eq!(
            gave_up,
            GiveUp::OverBudget {
                asked: Duration::from_secs(50),
                waited: Duration::from_secs(100),
                budget: Duration::from_secs(120)
            }
        );
        assert!(gave_up.note().unwrap().contains("after 100s of waiting"));
    }

    #[test]
    fn progress_starts_a_fresh_run_of_tries() {
        let mut backoff = Backoff::new(FAST);
        for _ in 0..3 {
            assert!(matches!(
                backoff.on_failure(TRANSIENT, 0.5),
                Decision::Wait { .. }
            ));
        }
        backoff.progressed();
        for _ in 0..3 {
            assert!(matches!(
                backoff.on_failure(TRANSIENT, 0.5),
                Decision::Wait { .. }
            ));
        }
        assert_eq!(
            backoff.on_failure(TRANSIENT, 0.5),
            Decision::GiveUp(GiveUp::OutOfAttempts)
        );
    }

    fn at(text: &str) -> SystemTime {
        parse_http_date(text).unwrap()
    }

    #[test]
    fn retry_after_reads_seconds_and_all_three_date_forms() {
        let now = at("Sun, 06 Nov 1994 08:49:30 GMT");
        assert_eq!(
            parse_retry_after("120", None, now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", None, now), Some(Duration::ZERO));
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(form, None, now),
                Some(Duration::from_secs(7)),
                "{form}"
            );
        }
        // A date already past means "now"; nonsense is ignored.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", None, now),
            Some(Duration::ZERO)
        );
        for junk in ["", "soon", "-5", "1.5", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(junk, None, now), None, "{junk:?}");
        }
        assert_eq!(
            parse_retry_after("99999999999999999999999", None, now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn a_retry_after_date_is_measured_from_the_servers_clock() {
        // The local clock runs an hour ahead; the server's Date header keeps the wait right.
        let local = at("Sun, 06 Nov 1994 09:49:30 GMT");
        assert_eq!(
            parse_retry_after(
                "Sun, 06 Nov 1994 08:49:40 GMT",
                Some("Sun, 06 Nov 1994 08:49:30 GMT"),
                local
            ),
            Some(Duration::from_secs(10))
        );
        // An unreadable Date header falls back to the local clock.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 09:49:40 GMT", Some("yesterday"), local),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn retry_notes_say_when_the_wait_is_the_servers() {
        let note = RetryNote {
            attempt: 1,
            delay: Duration::from_secs(2),
            honoured: true,
        };
        assert_eq!(
            note.describe(),
            "retry 1 in 2.0s as the registry's Retry-After asks"
        );
        let note = RetryNote {
            honoured: false,
            ..note
        };
        assert_eq!(note.describe(), "retry 1 in 2.0s");
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let mut heard = vec![];
        let result: Result<u32, RetryFailure<&str>> = retry(
            &FAST,
            &CancellationToken::new(),
            |_| TRANSIENT,
            |note, _| heard.push(note.attempt),
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
            |_, _| {},
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
                attempts: 1,
                gave_up: GiveUp::Permanent
            })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let result: Result<(), _> = retry(
            &FAST,
            &CancellationToken::new(),
            |_| TRANSIENT,
            |_, _| {},
            |_| async { Err("503") },
        )
        .await;
        assert!(matches!(
            result,
            Err(RetryFailure::Failed {
                attempts: 4,
                gave_up: GiveUp::OutOfAttempts,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_too_long_retry_after_ends_the_call_without_waiting() {
        let started = std::time::Instant::now();
        let result: Result<(), _> = retry(
            &RetryPolicy::REGISTRY,
            &CancellationToken::new(),
            |_| after(3600),
            |_, _| {},
            |_| async { Err("429") },
        )
        .await;
        assert!(matches!(
            result,
            Err(RetryFailure::Failed {
                attempts: 1,
                gave_up: GiveUp::WaitTooLong { .. },
                ..
            })
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn cancellation_stops_the_wait() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let result: Result<(), RetryFailure<&str>> = retry(
            &RetryPolicy::REGISTRY,
            &cancel,
            |_| TRANSIENT,
            |_, _| {},
            |_| std::future::pending(),
        )
        .await;
        assert!(matches!(result, Err(RetryFailure::Cancelled)));
    }
}
