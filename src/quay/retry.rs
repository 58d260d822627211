//! Bounded exponential backoff with jitter, honouring Quay's Retry-After.

use super::error::QuayError;
use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// How the client repeats failed requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 disables retries).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles with each further one.
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
    /// Longest Retry-After the client waits for inside one call; a longer
    /// one is returned to the caller (whose controller requeues instead of
    /// holding a worker).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The backoff after failed attempt number `attempt` (1-based): the
    /// exponential step `base * 2^(attempt-1)` capped at `max_delay`, of which
    /// a random half is jittered away ("equal jitter"), so concurrent callers
    /// spread out but still back off.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        crate::backoff::delay(self.base_delay, self.max_delay, attempt, rng)
    }

    /// The wait before attempt `attempt + 1` after `err`, or `None` to give up.
    pub fn next_delay(
        &self,
        attempt: u32,
        err: &QuayError,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        match err.retry_after() {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(attempt, rng)),
        }
    }
}

/// Runs `op` until it succeeds, fails with an error `retryable` rejects, or
/// the policy gives up. `op` gets the 1-based attempt number.
pub async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    retryable: impl Fn(&QuayError) -> bool,
    mut op: F,
) -> Result<T, QuayError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, QuayError>>,
{
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) => {
                if !retryable(&err) {
                    return Err(err);
                }
                let Some(delay) = policy.next_delay(attempt, &err, &mut rand::rng()) else {
                    return Err(err);
                };
                tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying Quay request");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quay::endpoint::ORG_GET;
    use rand::SeedableRng;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::time::Instant;

    fn server(status: u16) -> QuayError {
        QuayError::Server {
            endpoint: ORG_GET,
            status,
            message: String::new(),
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(30),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let d1 = policy.backoff(1, &mut rng);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = policy.backoff(3, &mut rng);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d9 = policy.backoff(9, &mut rng);
            assert!(
                d9 >= Duration::from_millis(500) && d9 <= Duration::from_secs(1),
                "{d9:?}"
            );
            // Huge attempt numbers neither overflow nor exceed the cap.
            assert!(policy.backoff(u32::MAX, &mut rng) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let policy = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let delays: std::collections::HashSet<_> =
            (0..50).map(|_| policy.backoff(2, &mut rng)).collect();
        assert!(
            delays.len() > 40,
            "jitter produced only {} distinct delays",
            delays.len()
        );
    }

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        let policy = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let limited = |secs| QuayError::RateLimited {
            endpoint: ORG_GET,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            policy.next_delay(1, &limited(7), &mut rng),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            policy.next_delay(1, &limited(3600), &mut rng),
            None,
            "too long to hold a worker"
        );
        assert_eq!(
            policy.next_delay(policy.max_attempts, &limited(1), &mut rng),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success() {
        let calls = Arc::new(AtomicU32::new(0));
        let start = Instant::now();
        let policy = RetryPolicy::default();
        let c = calls.clone();
        let result = run(&policy, QuayError::is_transient, move |attempt| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                if attempt < 3 {
                    Err(server(503))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let waited = start.elapsed();
        // backoff(1) in [100,200] ms + backoff(2) in [200,400] ms
        assert!(
            waited >= Duration::from_millis(300) && waited <= Duration::from_millis(600),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_with_last_error() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let result: Result<(), _> = run(&policy, QuayError::is_transient, move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err(server(502)) }
        })
        .await;
        assert!(matches!(result, Err(QuayError::Server { status: 502, .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_exactly_retry_after() {
        let start = Instant::now();
        let result = run(
            &RetryPolicy::default(),
            QuayError::is_transient,
            |attempt| async move {
                if attempt == 1 {
                    Err(QuayError::RateLimited {
                        endpoint: ORG_GET,
                        retry_after: Some(Duration::from_secs(7)),
                    })
                } else {
                    Ok(())
                }
            },
        )
        .await;
        assert!(result.is_ok());
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let calls = Arc::new(AtomicU32::new(0));
        for err in [
            server(500),
            QuayError::NotFound {
                endpoint: ORG_GET,
                message: String::new(),
            },
            QuayError::Forbidden {
                endpoint: ORG_GET,
                message: String::new(),
            },
        ] {
            calls.store(0, Ordering::SeqCst);
            let c = calls.clone();
            let mut slot = Some(err);
            let start = Instant::now();
            let result: Result<(), _> = run(
                &RetryPolicy::default(),
                QuayError::is_transient,
                move |_| {
                    c.fetch_add(1, Ordering::SeqCst);
                    let e = slot
                        .take()
                        .unwrap_or(QuayError::Config("called twice".into()));
                    async move { Err(e) }
                },
            )
            .await;
            assert!(result.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(start.elapsed(), Duration::ZERO);
        }
    }
}
