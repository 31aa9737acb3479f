//! A byte-rate limit shared by all uploads of a backup (`--limit-upload`), so a laptop's backup leaves
//! bandwidth for everything else.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Paces callers so that, on average, no more than `bytes_per_sec` pass.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: u64,
    state: Mutex<(Instant, u64)>,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimit { bytes_per_sec: bytes_per_sec.max(1), state: Mutex::new((Instant::now(), 0)) }
    }

    /// How long to wait before sending `bytes` more.
    pub fn delay_for(&self, bytes: u64) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 += bytes;
        let due = state.0 + Duration::from_secs_f64(state.1 as f64 / self.bytes_per_sec as f64);
        due.saturating_duration_since(Instant::now())
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
        assert!(r.delay_for(0) <= Duration::from_millis(1));
        let d = r.delay_for(2000);
        assert!(d > Duration::from_millis(1900) && d <= Duration::from_millis(2000), "{d:?}");
    }
}
