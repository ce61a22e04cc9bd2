//! When to poll next: the poll interval, and exponential backoff after failures.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How often the remote is fetched when all is well. Default: 1 minute.
///
/// Parsed from and shown as a human duration (`30s`, `1m`, `5m 30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PollInterval(Duration);

impl PollInterval {
    /// The shortest interval accepted: polling faster only loads the git server.
    pub const MIN: Duration = Duration::from_secs(5);
    /// The default, 1 minute.
    pub const DEFAULT: PollInterval = PollInterval(Duration::from_secs(60));

    /// An interval; `None` when shorter than [`PollInterval::MIN`].
    pub fn new(every: Duration) -> Option<Self> {
        (every >= Self::MIN).then_some(Self(every))
    }

    /// The interval as a duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl Default for PollInterval {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for PollInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl FromStr for PollInterval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("invalid poll interval {s:?}: {e} (write e.g. 30s, 1m, 5m)"))?;
        Self::new(d).ok_or_else(|| {
            format!(
                "poll interval {s:?} is shorter than the minimum {}",
                humantime::format_duration(Self::MIN)
            )
        })
    }
}

/// Exponential backoff over consecutive failures, capped.
///
/// With no failure the delay is the poll interval; after `n` consecutive failures it is
/// `interval * 2^(n-1)`, never more than the cap (default 30 minutes): 1m, 2m, 4m, 8m, 16m,
/// 30m, 30m... A success resets it. Deterministic (no jitter): Slipway is one poller per
/// remote, there is no herd to spread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    interval: PollInterval,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// The default cap on the delay between retries.
    pub const DEFAULT_CAP: Duration = Duration::from_secs(30 * 60);

    /// A backoff starting at `interval`, never waiting more than `cap` (nor less than the
    /// interval, should the cap be set below it).
    pub fn new(interval: PollInterval, cap: Duration) -> Self {
        Self {
            interval,
            cap: cap.max(interval.get()),
            failures: 0,
        }
    }

    /// Record one more failure; returns the delay before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay()
    }

    /// Record a success: back to the plain interval.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next attempt.
    pub fn delay(&self) -> Duration {
        let base = self.interval.get();
        if self.failures == 0 {
            return base;
        }
        // 2^(n-1), saturating long before it could overflow: the cap is reached by then.
        let shift = (self.failures - 1).min(20);
        base.saturating_mul(1u32 << shift).min(self.cap)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(PollInterval::DEFAULT, Self::DEFAULT_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_parses_human_durations_and_refuses_tiny_ones() {
        assert_eq!(PollInterval::default().get(), Duration::from_secs(60));
        let p: PollInterval = "2m 30s".parse().unwrap();
        assert_eq!(p.get(), Duration::from_secs(150));
        assert_eq!(p.to_string(), "2m 30s");
        assert!("1s"
            .parse::<PollInterval>()
            .unwrap_err()
            .contains("minimum"));
        assert!("soon".parse::<PollInterval>().unwrap_err().contains("30s"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.delay(), Duration::from_secs(60));
        let minutes: Vec<u64> = (0..8).map(|_| b.failed().as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.failures(), 8);
        b.succeeded();
        assert_eq!(b.delay(), Duration::from_secs(60));
    }

    #[test]
    fn backoff_survives_a_huge_failure_count() {
        let mut b = Backoff::new(PollInterval::DEFAULT, Duration::from_secs(3600));
        for _ in 0..10_000 {
            b.failed();
        }
        assert_eq!(b.delay(), Duration::from_secs(3600));
    }
}
