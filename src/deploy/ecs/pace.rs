//! When to ask AWS again while waiting on a deployment. Right after a change (the update, a
//! task started, a new event) the next question comes soon, since the next change is likely
//! close; while nothing changes the pause grows. Every pause carries jitter, so parallel
//! targets do not ask in step; throttling doubles the pause; and no more than the budget of
//! calls goes out in any minute (the SDK waiter's fixed 15 s gives a 15 s detection latency,
//! polling every second would spend the account's API rate on one service).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;

/// The calls one waiting deploy may make in any 60 s.
pub const CALLS_PER_MINUTE: usize = 20;
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct PollPace {
    fastest: Duration,
    slowest: Duration,
    current: Duration,
    throttled: Option<Duration>,
    budget: usize,
    calls: VecDeque<Instant>,
}

impl Default for PollPace {
    fn default() -> Self {
        PollPace::new(
            Duration::from_millis(750),
            Duration::from_secs(10),
            CALLS_PER_MINUTE,
        )
    }
}

impl PollPace {
    /// Pauses between `fastest` and `slowest`, at most `budget` calls a minute.
    pub fn new(fastest: Duration, slowest: Duration, budget: usize) -> Self {
        PollPace {
            fastest,
            slowest: slowest.max(fastest),
            current: fastest,
            throttled: None,
            budget: budget.max(1),
            calls: VecDeque::new(),
        }
    }

    /// Something changed: ask again soon.
    pub fn on_change(&mut self) {
        self.current = self.fastest;
        self.throttled = None;
    }

    /// Nothing changed: wait half as long again next time, up to the slowest pause.
    pub fn on_quiet(&mut self) {
        self.current = (self.current.mul_f64(1.5)).min(self.slowest);
        self.throttled = None;
    }

    /// AWS said slow down: double the pause, from 2 s up to 32 s.
    pub fn on_throttled(&mut self) {
        let next = self
            .throttled
            .map_or(Duration::from_secs(2), |pause| pause * 2)
            .min(Duration::from_secs(32));
        self.throttled = Some(next);
    }

    /// Counts `count` calls made at `now` against the budget.
    pub fn record_calls(&mut self, now: Instant, count: usize) {
        for _ in 0..count {
            self.calls.push_back(now);
        }
        self.forget_before(now);
    }

    /// How many calls went out in the minute before `now`.
    pub fn calls_in_last_minute(&mut self, now: Instant) -> usize {
        self.forget_before(now);
        self.calls.len()
    }

    /// How long to wait from `now` before the next poll, which will make `next_calls` calls:
    /// the pace's pause with ±20 % jitter, or longer when the budget would be exceeded.
    pub fn next_delay(&mut self, now: Instant, next_calls: usize) -> Duration {
        let base = self.throttled.unwrap_or(self.current);
        let jitter = rand::rng().random_range(0.8..1.2);
        let paced = base.mul_f64(jitter);
        paced.max(self.budget_wait(now, next_calls))
    }

    /// The wait until `next_calls` more calls fit in the budget.
    fn budget_wait(&mut self, now: Instant, next_calls: usize) -> Duration {
        self.forget_before(now);
        let next_calls = next_calls.clamp(1, self.budget);
        let over = (self.calls.len() + next_calls).saturating_sub(self.budget);
        if over == 0 {
            return Duration::ZERO;
        }
        // The `over`-th oldest call must leave the window first.
        let leaves = self.calls[over - 1] + WINDOW;
        leaves.saturating_duration_since(now)
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .calls
            .front()
            .is_some_and(|call| now.saturating_duration_since(*call) >= WINDOW)
        {
            self.calls.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace() -> PollPace {
        PollPace::new(Duration::from_secs(1), Duration::from_secs(10), 20)
    }

    #[test]
    fn the_pause_grows_while_nothing_changes_and_resets_on_a_change() {
        let mut pace = pace();
        let now = Instant::now();
        let first = pace.next_delay(now, 1);
        assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
        for _ in 0..20 {
            pace.on_quiet();
        }
        let slow = pace.next_delay(now, 1);
        assert!(
            slow >= Duration::from_secs(8) && slow <= Duration::from_secs(12),
            "{slow:?}"
        );
        pace.on_change();
        assert!(pace.next_delay(now, 1) <= Duration::from_millis(1200));
    }

    #[test]
    fn throttling_doubles_the_pause_up_to_32_seconds() {
        let mut pace = pace();
        let now = Instant::now();
        let mut pauses = Vec::new();
        for _ in 0..6 {
            pace.on_throttled();
            pauses.push(pace.throttled.unwrap());
        }
        assert_eq!(
            pauses,
            [2, 4, 8, 16, 32, 32].map(Duration::from_secs).to_vec()
        );
        assert!(pace.next_delay(now, 1) >= Duration::from_secs(25));
        pace.on_change();
        assert!(pace.next_delay(now, 1) <= Duration::from_millis(1200));
    }

    #[test]
    fn no_more_calls_than_the_budget_in_any_minute() {
        // A deploy that always sees a change would poll every second: the budget holds it.
        let mut pace = pace();
        let mut now = Instant::now();
        let mut times: Vec<Instant> = Vec::new();
        for _ in 0..200 {
            pace.record_calls(now, 1);
            times.push(now);
            pace.on_change();
            now += pace.next_delay(now, 1);
        }
        for (i, first) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|t| t.duration_since(*first) < WINDOW)
                .count();
            assert!(in_window <= 20, "{in_window} calls within a minute");
        }
    }

    #[test]
    fn a_poll_of_several_calls_waits_until_all_of_them_fit() {
        let mut pace = pace();
        let now = Instant::now();
        pace.record_calls(now, 18);
        assert!(pace.next_delay(now, 2) <= Duration::from_millis(1200));
        let wait = pace.next_delay(now, 3);
        assert!(wait >= Duration::from_secs(59), "{wait:?}");
        assert_eq!(pace.calls_in_last_minute(now + WINDOW), 0);
    }
}
