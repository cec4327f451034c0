//! A token bucket: a burst, then a steady rate. IRC's send rate (which
//! slows down when the server says we flooded) and the node's answers to
//! newcomers (which a flood of new names must not drive).

use std::time::Duration;

use tokio::time::Instant;

/// The slowest a flood response may make the send rate, in lines per second.
#[cfg_attr(not(feature = "irc"), allow(dead_code))] // IRC's only
const MIN_RATE: f64 = 0.05;

/// Tokens (lines, posts) may be taken at `rate` per second after a burst
/// of `burst`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Whether a token may be taken now.
    pub(crate) fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Takes a token, if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let ready = self.ready(now);
        if ready {
            self.tokens -= 1.0;
        }
        ready
    }

    /// When the next token is there.
    #[cfg_attr(not(feature = "irc"), allow(dead_code))] // IRC's only
    pub(crate) fn next_token(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        let wait = (1.0 - self.tokens) / self.rate;
        now + Duration::from_secs_f64(wait.min(3_600.0)) + Duration::from_millis(1)
    }

    /// The server said we flooded: half the rate, and start from empty.
    #[cfg_attr(not(feature = "irc"), allow(dead_code))] // IRC's only
    pub(crate) fn slow_down(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.rate = (self.rate / 2.0).max(MIN_RATE.min(self.rate));
        self.tokens = 0.0;
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 3, t0);
        assert!(bucket.take(t0) && bucket.take(t0) && bucket.take(t0));
        assert!(!bucket.take(t0));
        let next = bucket.next_token(t0);
        assert!(next > t0 + Duration::from_millis(490) && next < t0 + Duration::from_millis(520));
        assert!(!bucket.take(t0 + Duration::from_millis(400)));
        assert!(bucket.take(t0 + Duration::from_millis(500)));
        // Ten seconds idle refill to the burst, not beyond.
        let later = t0 + Duration::from_secs(10);
        assert_eq!((0..5).filter(|_| bucket.take(later)).count(), 3);
        // A flood complaint halves the rate and empties the bucket.
        assert_eq!(bucket.slow_down(later), 1.0);
        assert!(!bucket.take(later));
        assert!(bucket.take(later + Duration::from_secs(1)));
        for _ in 0..20 {
            bucket.slow_down(later);
        }
        assert_eq!(bucket.rate, MIN_RATE);
    }
}
