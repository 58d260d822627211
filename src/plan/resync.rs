//! The periodic resync: every bridged namespace is reconciled once per
//! resync interval, at a fixed phase of it (its slot), so the reads a
//! resync costs Quay are spread evenly over the interval instead of
//! following the bursts in which namespaces first converged, and no timer
//! is kept per namespace (at 10,000 namespaces the controller's
//! per-namespace requeue entries were about 5 MB).

use std::time::Duration;

/// How many slots an interval is divided into: a tick every 1/60 of it
/// (10 s at the default 600 s) triggers the namespaces of one slot.
pub const SLOTS: u64 = 60;

/// The time between two ticks.
pub fn tick(resync: Duration) -> Duration {
    (resync / u32::try_from(SLOTS).unwrap_or(u32::MAX)).max(Duration::from_millis(1))
}

/// A namespace's slot: a stable hash of its name (FNV-1a), the same in
/// every process and release.
pub fn slot(namespace: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % SLOTS
}

/// Whether tick number `tick` (counted from the first) resyncs `namespace`.
pub fn due(namespace: &str, tick: u64) -> bool {
    slot(namespace) == tick % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespace_is_due_once_in_any_round() {
        for start in [0, 7, SLOTS * 3 + 11] {
            for n in 0..500 {
                let name = format!("team-{n:05}");
                let times = (start..start + SLOTS).filter(|t| due(&name, *t)).count();
                assert_eq!(times, 1, "{name} from tick {start}");
            }
        }
    }

    #[test]
    fn namespaces_spread_over_the_slots() {
        let mut per_slot = [0u32; SLOTS as usize];
        for n in 0..6_000 {
            per_slot[usize::try_from(slot(&format!("team-{n:05}"))).unwrap_or(0)] += 1;
        }
        // 100 on average: none empty, none holding a burst.
        assert!(
            per_slot.iter().all(|c| (50..=150).contains(c)),
            "{per_slot:?}"
        );
    }

    #[test]
    fn a_slot_is_stable_and_ticks_divide_the_interval() {
        assert_eq!(slot("openshift"), slot("openshift"));
        assert_eq!(tick(Duration::from_secs(600)), Duration::from_secs(10));
        assert_eq!(tick(Duration::from_millis(30)), Duration::from_millis(1));
    }
}
