//! A byte-rate limit shared by all uploads of a backup (`--limit-upload`), so a laptop's backup leaves
//! bandwidth for everything else.
//!
//! The limit schedules each send on a virtual clock: a send of `n` bytes takes `n / rate` of it, starting
//! when the previous send's slot ended or now, whichever is later. Time spent not sending (a long scan of
//! unchanged files, say) earns at most [`BURST`] of credit, so uploads after a pause do not burst at full
//! speed until the average over the whole backup is back at the limit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Idle time that may be made up for by sending faster than the rate afterwards.
pub const BURST: Duration = Duration::from_millis(250);

/// Paces callers so that no more than `bytes_per_sec` pass, give or take [`BURST`] worth.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: u64,
    /// When the bytes scheduled so far will have been sent at the rate.
    next_free: Mutex<Instant>,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimit { bytes_per_sec: bytes_per_sec.max(1), next_free: Mutex::new(Instant::now()) }
    }

    /// How long to wait before sending `bytes` more.
    pub fn delay_for(&self, bytes: u64) -> Duration {
        self.delay_at(bytes, Instant::now())
    }

    fn delay_at(&self, bytes: u64, now: Instant) -> Duration {
        let mut next_free = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*next_free).max(now.checked_sub(BURST).unwrap_or(now));
        *next_free = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        start.saturating_duration_since(now)
    }

    /// Waits until `bytes` more may be sent.
    pub async fn wait(&self, bytes: u64) {
        let d = self.delay_for(bytes);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_follow_the_rate() {
        let r = RateLimit::new(1000);
        let now = Instant::now();
        assert_eq!(r.delay_at(2000, now), Duration::ZERO, "the first send goes at once");
        let d = r.delay_at(1000, now);
        assert!(d > Duration::from_millis(1700) && d <= Duration::from_millis(2000), "{d:?}");
        let d = r.delay_at(0, now);
        assert!(d > Duration::from_millis(2700) && d <= Duration::from_millis(3000), "{d:?}");
    }

    #[test]
    fn an_idle_minute_earns_no_more_than_the_burst() {
        let r = RateLimit::new(1000);
        let start = Instant::now();
        assert_eq!(r.delay_at(1000, start), Duration::ZERO);
        // A minute of scanning unchanged files, then uploads resume: sixty seconds' worth of bytes must take
        // about sixty seconds again, not go out at once because the average since the start allows it.
        let resumed = start + Duration::from_secs(61);
        let mut waited = Duration::ZERO;
        for _ in 0..60 {
            waited = r.delay_at(1000, resumed);
        }
        let expected = Duration::from_secs(59) - BURST;
        assert!(waited >= expected && waited <= Duration::from_secs(59), "the 60th second waits {waited:?}");
    }
}
