//! Per-token rate limiting: a token bucket per caller, charged one unit per event (a telemetry
//! batch of 500 lines costs 500), refilled continuously, with one second's worth of burst.
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Rate limiter shared by all requests; one lock per request, not per event.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes `cost` events from `caller`'s bucket (`rate` events/s). On refusal, returns how long
    /// until the request would fit.
    pub fn take(&self, caller: &str, rate: u32, cost: u32) -> Result<(), Duration> {
        self.take_at(caller, rate, cost, Instant::now())
    }

    fn take_at(&self, caller: &str, rate: u32, cost: u32, now: Instant) -> Result<(), Duration> {
        if rate == 0 {
            return Ok(());
        }
        let rate = f64::from(rate);
        let cost = f64::from(cost);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(caller.to_string()).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate.max(cost));
        b.updated = now;
        if b.tokens >= cost {
            b.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost - b.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_second_passes_then_the_rate_applies() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        assert!(l.take_at("a", 100, 60, t0).is_ok());
        assert!(l.take_at("a", 100, 40, t0).is_ok());
        let wait = l.take_at("a", 100, 10, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(l
            .take_at("a", 100, 10, t0 + Duration::from_millis(100))
            .is_ok());
        // Other callers have their own bucket.
        assert!(l.take_at("b", 100, 100, t0).is_ok());
    }

    #[test]
    fn a_batch_larger_than_the_burst_passes_once_the_bucket_is_full() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        assert!(l.take_at("a", 100, 500, t0).is_err());
        assert!(l
            .take_at("a", 100, 500, t0 + Duration::from_secs(5))
            .is_ok());
    }

    #[test]
    fn zero_rate_means_unlimited() {
        assert!(RateLimiter::default().take("a", 0, 1_000_000).is_ok());
    }
}
