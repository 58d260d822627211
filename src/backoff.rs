//! The one backoff: the Quay client's retries and the controllers'
//! requeues after a failure both wait this long.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff with equal jitter: after failure number `failures`
/// (1-based), `base · 2^(failures-1)` capped at `max`, of which a random
/// half is jittered away, so concurrent callers spread out but still back
/// off.
pub fn delay(base: Duration, max: Duration, failures: u32, rng: &mut impl Rng) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let step = base.saturating_mul(1u32 << exp).min(max);
    let half = step / 2;
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if jitter_nanos == 0 {
        0
    } else {
        rng.random_range(0..=jitter_nanos)
    };
    half + Duration::from_nanos(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_keeps_at_least_half() {
        let mut rng = rand::rng();
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for _ in 0..100 {
            let first = delay(base, max, 1, &mut rng);
            assert!(
                (Duration::from_millis(50)..=base).contains(&first),
                "{first:?}"
            );
            let third = delay(base, max, 3, &mut rng);
            assert!(
                (Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third),
                "{third:?}"
            );
            let late = delay(base, max, 40, &mut rng);
            assert!((max / 2..=max).contains(&late), "{late:?}");
        }
        assert_eq!(delay(Duration::ZERO, max, 5, &mut rng), Duration::ZERO);
    }
}
