//! [`Backoff`]: the one capped exponential backoff every transport waits
//! with between reconnects and retries.
//!
//! Hand-written rather than taken from a crate: `backoff` is unmaintained,
//! and the maintained ones (`backon`, `tokio-retry`) draw jitter on top of
//! the delay (between it and twice it) where the IRC transport draws it
//! below (between half of it and it), and know no reset short of building
//! the strategy again.

use std::time::Duration;

/// Delays that start at `initial` and double after each attempt, capped at
/// `max`; with [`jitter`](Backoff::jitter), each drawn between half and all
/// of its value, so that a fleet does not retry in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: Option<fastrand::Rng>,
    /// Attempts since the last reset.
    attempts: u32,
}

impl Backoff {
    /// `initial` first (even when above `max`), then doubled after each
    /// attempt, up to `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            jitter: None,
            attempts: 0,
        }
    }

    /// Draws each delay between half and all of its value with `rng`.
    #[cfg_attr(not(feature = "irc"), allow(dead_code))] // IRC's only
    pub(crate) fn jitter(mut self, rng: fastrand::Rng) -> Backoff {
        self.jitter = Some(rng);
        self
    }

    /// The delay before the next attempt, counting the attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let full = match self.attempts {
            0 => self.initial,
            n => self
                .initial
                .saturating_mul(2u32.saturating_pow(n.min(30)))
                .min(self.max),
        };
        self.attempts = self.attempts.saturating_add(1);
        match &mut self.jitter {
            Some(rng) => full / 2 + full.mul_f64(rng.f64() / 2.0),
            None => full,
        }
    }

    /// Back to `initial`: the last attempt went well.
    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10))
            .jitter(fastrand::Rng::with_seed(1));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let full = Duration::from_secs(1 << i.min(4)).min(Duration::from_secs(10));
            assert!(
                *d >= full / 2 && *d <= full,
                "attempt {i}: {d:?} for {full:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn without_jitter_the_delays_are_exact() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let delays: Vec<u64> = (0..9)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(500));
        // The first delay is `initial` even above the cap, as the Matrix
        // transport has always waited.
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(backoff.next_delay(), Duration::from_secs(60));
        assert_eq!(backoff.next_delay(), Duration::from_secs(30));
    }
}
