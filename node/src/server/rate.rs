//! Rate limits for requests that cost the cluster more than the bytes they carry: joins (a signature and Raft
//! writes) and a tenant's catalog writes (each one a Raft log entry every replica keeps until a snapshot).
//!
//! Token buckets: a limit of `n` per minute lets a burst of `n` through, then one every `60/n` seconds.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// One token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_minute: u32, now: Instant) -> Self {
        Bucket { tokens: f64::from(per_minute), at: now }
    }

    fn take(&mut self, per_minute: u32, now: Instant) -> bool {
        let capacity = f64::from(per_minute);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * capacity / 60.0).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A limit of `per_minute` events, shared by all callers.
#[derive(Debug)]
pub struct Rate {
    per_minute: u32,
    bucket: Mutex<Bucket>,
}

impl Rate {
    /// A limit of `per_minute` events a minute.
    pub fn per_minute(per_minute: u32) -> Self {
        Rate { per_minute, bucket: Mutex::new(Bucket::full(per_minute, Instant::now())) }
    }

    /// Takes one event if the limit allows it.
    pub fn try_take(&self) -> bool {
        self.bucket.lock().unwrap_or_else(|e| e.into_inner()).take(self.per_minute, Instant::now())
    }
}

/// A limit of `per_minute` events per key (a tenant). Idle keys are forgotten once the map grows large.
#[derive(Debug)]
pub struct KeyedRate<K> {
    per_minute: u32,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// Keys tracked before full (idle) buckets are dropped.
const MAX_KEYS: usize = 10_000;

impl<K: Hash + Eq + Copy> KeyedRate<K> {
    /// A limit of `per_minute` events a minute for each key.
    pub fn per_minute(per_minute: u32) -> Self {
        KeyedRate { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one event for `key` if its limit allows it.
    pub fn try_take(&self, key: K) -> bool {
        self.try_take_at(key, Instant::now())
    }

    fn try_take_at(&self, key: K, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(&key) {
            // A bucket that refilled completely carries no information: drop those.
            let per_minute = self.per_minute;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * f64::from(per_minute) / 60.0 < f64::from(per_minute));
        }
        buckets.entry(key).or_insert_with(|| Bucket::full(self.per_minute, now)).take(self.per_minute, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_lets_a_burst_through_then_refills() {
        let start = Instant::now();
        let mut b = Bucket::full(6, start);
        assert!((0..6).all(|_| b.take(6, start)));
        assert!(!b.take(6, start), "the burst is spent");
        assert!(!b.take(6, start + Duration::from_secs(5)), "one event every 10 s");
        assert!(b.take(6, start + Duration::from_secs(11)));
    }

    #[test]
    fn keys_have_limits_of_their_own() {
        let r = KeyedRate::per_minute(2);
        let now = Instant::now();
        assert!(r.try_take_at(1u64, now) && r.try_take_at(1, now));
        assert!(!r.try_take_at(1, now));
        assert!(r.try_take_at(2, now), "another tenant is not limited by the first");
    }

    #[test]
    fn idle_keys_are_forgotten_when_the_map_is_full() {
        let r = KeyedRate::per_minute(1);
        let now = Instant::now();
        for k in 0..MAX_KEYS as u64 {
            assert!(r.try_take_at(k, now));
        }
        // A minute later every bucket is full again and may be dropped to make room.
        assert!(r.try_take_at(u64::MAX, now + Duration::from_secs(61)));
        assert!(r.buckets.lock().unwrap().len() < 10);
    }
}
