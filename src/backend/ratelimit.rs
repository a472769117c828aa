//! Client-side token bucket, one per ProviderConfig, so the operator stays below the vendor's
//! documented limits instead of learning them from 429s.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate` tokens per second, at most `burst` saved up.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate: rate.max(0.001),
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn burst(&self) -> u32 {
        self.burst as u32
    }

    /// Wait until a request may be sent. Waiters queue on the mutex, so they are served in order.
    /// Tokens are counted from the clock after every sleep: a timer that fires late (it always
    /// does, by up to a millisecond or more on a busy machine) must not cost the rate the time it
    /// overslept, or a bucket paced at 95/s delivers 88/s.
    pub async fn acquire(&self) {
        let mut bucket = self.state.lock().await;
        loop {
            let now = Instant::now();
            bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * self.rate).min(self.burst);
            bucket.last = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                return;
            }
            tokio::time::sleep(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn late_timers_do_not_lower_the_rate() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let limiter = Arc::new(RateLimiter::new(100.0, 10));
        for _ in 0..10 {
            limiter.acquire().await; // the burst
        }
        let done = Arc::new(AtomicUsize::new(0));
        let task = {
            let (limiter, done) = (limiter.clone(), done.clone());
            tokio::spawn(async move {
                loop {
                    limiter.acquire().await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // The clock moves in 13 ms steps, so every 10 ms sleep wakes 3 ms late (a busy machine).
        for _ in 0..100 {
            tokio::time::advance(Duration::from_millis(13)).await;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        task.abort();
        let sent = done.load(Ordering::SeqCst);
        assert!(
            (125..=131).contains(&sent),
            "1.3 s at 100/s allow 130 requests whatever the timer's lateness, sent {sent}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let limiter = RateLimiter::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes out at once");
        for _ in 0..10 {
            limiter.acquire().await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (0.99..=1.01).contains(&elapsed),
            "10 more at 10/s take a second, took {elapsed}"
        );
    }
}
