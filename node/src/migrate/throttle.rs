//! A byte-rate limiter shared by the partition moves of one node: each batch reserves its share of time on a
//! virtual clock and waits for its slot, so the long-run rate never exceeds the limit whatever the batch sizes.

use std::time::{Duration, Instant};

/// Limits bytes per second across every caller.
#[derive(Debug)]
pub struct Throttle {
    next_free: tokio::sync::Mutex<Instant>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle { next_free: tokio::sync::Mutex::new(Instant::now()) }
    }
}

impl Throttle {
    /// How long a batch of `bytes` must wait at `rate` bytes per second (0 = unlimited), reserving its slot.
    pub async fn reserve(&self, bytes: u64, rate: u64) -> Duration {
        if rate == 0 || bytes == 0 {
            return Duration::ZERO;
        }
        let mut next = self.next_free.lock().await;
        let now = Instant::now();
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
        start - now
    }

    /// Waits until `bytes` may be sent at `rate`.
    pub async fn take(&self, bytes: u64, rate: u64) {
        let wait = self.reserve(bytes, rate).await;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_queue_up_at_the_rate() {
        let t = Throttle::default();
        assert_eq!(t.reserve(1000, 0).await, Duration::ZERO);
        assert_eq!(t.reserve(1000, 1000).await, Duration::ZERO);
        // The next second is taken: the second batch waits about a second, the third about two.
        let second = t.reserve(500, 1000).await;
        let third = t.reserve(500, 1000).await;
        assert!(second > Duration::from_millis(900) && second <= Duration::from_secs(1), "{second:?}");
        assert!(third > Duration::from_millis(1400) && third <= Duration::from_millis(1500), "{third:?}");
    }
}
