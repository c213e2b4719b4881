//! Exponential back-off per key, as client-go's `flowcontrol.Backoff` that kubelet uses for
//! container restarts (CrashLoopBackOff) and image pulls (ImagePullBackOff).
//!
//! What is implemented, exactly as `k8s.io/client-go/util/flowcontrol/backoff.go` without
//! jitter (kubelet creates both back-offs with `NewBackOff(10s, 300s)`, no jitter):
//!
//! - `next(key, event, now)`: a key with no entry, or whose entry has *expired* (the event is
//!   more than 2 × max after the entry's last update), starts at the initial delay; otherwise
//!   the delay doubles, capped at max. The entry's last update becomes `now`.
//! - `in_backoff_since(key, event, now)`: in back-off while `now - event` is shorter than the
//!   entry's delay, unless the entry has expired. For a container the event is its last
//!   finishedAt and the entry was updated just before that instance started (kubelet's
//!   `doBackOff`), so "expired" means the container ran for more than 2 × 300 s = 10 minutes:
//!   the next crash starts again at 10 s.
//! - `in_backoff_since_update(key, now)`: the image puller's check, measured from the
//!   last failed pull (the entry's last update) instead of an event.
//! - `gc(now)`: entries not updated for more than 2 × max are dropped.
//!
//! The sequence of delays is therefore 10 s, 20 s, 40 s, 80 s, 160 s, 300 s, 300 s ...; the
//! first restart after the first exit is immediate (no entry yet), as in kubelet.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use super::clock::Instant;

/// kubelet's `backOffPeriod`: the first delay of a container restart or image pull.
pub const INITIAL_DELAY: Duration = Duration::from_secs(10);
/// kubelet's `MaxContainerBackOff` and `MaxImageBackOff`: 5 minutes.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// The key of a back-off entry: the pod and the container name (restarts) or image (pulls),
/// as kubelet keys restarts by pod and container and pulls by pod UID and image.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackoffKey {
    /// The pod's UID.
    pub pod_uid: String,
    /// The container name, or the image for pull back-off.
    pub name: String,
}

impl BackoffKey {
    /// The key of `name` in the pod `pod_uid`.
    pub fn new(pod_uid: impl Into<String>, name: impl Into<String>) -> Self {
        BackoffKey {
            pod_uid: pod_uid.into(),
            name: name.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

/// Per-key exponential back-off.
#[derive(Clone, Debug)]
pub struct Backoff<K = BackoffKey> {
    initial: Duration,
    max: Duration,
    entries: HashMap<K, Entry>,
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    /// A back-off starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            entries: HashMap::new(),
        }
    }

    /// kubelet's container restart back-off: 10 s doubling to 300 s.
    pub fn container_restart() -> Self {
        Self::new(INITIAL_DELAY, MAX_DELAY)
    }

    /// kubelet's image pull back-off: 10 s doubling to 300 s.
    pub fn image_pull() -> Self {
        Self::new(INITIAL_DELAY, MAX_DELAY)
    }

    /// The current delay of `key` (`Backoff.Get`), shown in kubelet's CrashLoopBackOff message.
    pub fn delay(&self, key: &K) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// The largest delay this back-off reaches.
    pub fn max_delay(&self) -> Duration {
        self.max
    }

    /// How much longer `key` stays in back-off after `event`, or `None` when it may go ahead.
    pub fn in_backoff_since(&self, key: &K, event: Instant, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if self.expired(event, entry.last_update) {
            return None;
        }
        let elapsed = now.saturating_since(event);
        (elapsed < entry.delay).then(|| entry.delay - elapsed)
    }

    /// How much longer `key` stays in back-off counted from its last update (the last failed
    /// image pull), or `None` when it may go ahead.
    pub fn in_backoff_since_update(&self, key: &K, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if self.expired(now, entry.last_update) {
            return None;
        }
        let elapsed = now.saturating_since(entry.last_update);
        (elapsed < entry.delay).then(|| entry.delay - elapsed)
    }

    /// Records one more back-off step for `key` after `event`; returns the new delay.
    pub fn next(&mut self, key: &K, event: Instant, now: Instant) -> Duration {
        let delay = match self.entries.get(key) {
            Some(e) if !self.expired(event, e.last_update) => {
                e.delay.saturating_mul(2).min(self.max)
            }
            _ => self.initial,
        };
        self.entries.insert(
            key.clone(),
            Entry {
                delay,
                last_update: now,
            },
        );
        delay
    }

    /// Forgets `key` (a successful image pull, a pod removed).
    pub fn reset(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Drops the entries not updated for more than 2 × max.
    pub fn gc(&mut self, now: Instant) {
        let horizon = self.max.saturating_mul(2);
        self.entries
            .retain(|_, e| now.saturating_since(e.last_update) <= horizon);
    }

    /// Drops every entry `keep` refuses (for example those of pods that no longer exist).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }

    /// The number of keys with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    // client-go's hasExpired: eventTime.Sub(lastUpdate) > maxDuration*2.
    fn expired(&self, event: Instant, last_update: Instant) -> bool {
        event.saturating_since(last_update) > self.max.saturating_mul(2)
    }
}

/// A duration as Go's `time.Duration.String` prints it ("10s", "1m20s", "5m0s"), the form of
/// kubelet's "back-off 40s restarting failed container=..." message.
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let total_ms = d.as_millis();
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    if h == 0 && m == 0 && s == 0 {
        return format!("{ms}ms");
    }
    let secs = if ms == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{ms:03}");
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Instant {
        Instant::from_origin(Duration::from_secs(s))
    }

    fn key() -> BackoffKey {
        BackoffKey::new("uid-1", "app")
    }

    #[test]
    fn delays_double_from_ten_seconds_to_five_minutes() {
        let mut b = Backoff::container_restart();
        let mut t = 0;
        let mut seen = Vec::new();
        for _ in 0..8 {
            // Each crash follows shortly after the previous start: never long enough to reset.
            seen.push(b.next(&key(), at(t), at(t)).as_secs());
            t += 5;
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn no_entry_means_no_backoff() {
        let b: Backoff = Backoff::container_restart();
        assert_eq!(b.in_backoff_since(&key(), at(0), at(1)), None);
        assert_eq!(b.delay(&key()), None);
    }

    #[test]
    fn remaining_delay_counts_from_the_event() {
        // (delay steps taken, seconds from the event to now, expected remaining seconds)
        let cases: &[(u32, u64, Option<u64>)] = &[
            (1, 0, Some(10)),
            (1, 4, Some(6)),
            (1, 10, None),
            (2, 19, Some(1)),
            (2, 20, None),
            (3, 0, Some(40)),
        ];
        for &(steps, elapsed, want) in cases {
            let mut b = Backoff::container_restart();
            for _ in 0..steps {
                b.next(&key(), at(100), at(100));
            }
            let got = b.in_backoff_since(&key(), at(100), at(100 + elapsed));
            assert_eq!(
                got.map(|d| d.as_secs()),
                want,
                "steps {steps} elapsed {elapsed}"
            );
        }
    }

    #[test]
    fn a_container_that_ran_ten_minutes_starts_over() {
        let mut b = Backoff::container_restart();
        for _ in 0..5 {
            b.next(&key(), at(0), at(0));
        }
        assert_eq!(b.delay(&key()), Some(Duration::from_secs(160)));
        // Started at 0 (the last update), crashed after exactly 600 s: not yet expired.
        assert!(b.in_backoff_since(&key(), at(600), at(600)).is_some());
        assert_eq!(b.next(&key(), at(600), at(600)).as_secs(), 300);
        // Started at 600, crashed at 1201 (601 s of running): the entry has expired.
        assert_eq!(b.in_backoff_since(&key(), at(1201), at(1201)), None);
        assert_eq!(b.next(&key(), at(1201), at(1201)).as_secs(), 10);
    }

    #[test]
    fn image_pull_backoff_counts_from_the_failed_pull() {
        let mut b = Backoff::image_pull();
        let k = BackoffKey::new("uid-1", "busybox:latest");
        b.next(&k, at(50), at(50));
        assert_eq!(
            b.in_backoff_since_update(&k, at(55)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(b.in_backoff_since_update(&k, at(60)), None);
        assert_eq!(b.next(&k, at(60), at(60)).as_secs(), 20);
        assert_eq!(
            b.in_backoff_since_update(&k, at(79)),
            Some(Duration::from_secs(1))
        );
        b.reset(&k);
        assert_eq!(b.in_backoff_since_update(&k, at(79)), None);
    }

    #[test]
    fn gc_drops_entries_idle_for_twice_the_maximum() {
        let mut b = Backoff::container_restart();
        let other = BackoffKey::new("uid-2", "app");
        b.next(&key(), at(0), at(0));
        b.next(&other, at(500), at(500));
        b.gc(at(600));
        assert_eq!(b.len(), 2);
        b.gc(at(601));
        assert_eq!(b.len(), 1);
        assert!(b.delay(&other).is_some());
        b.retain(|k| k.pod_uid != "uid-2");
        assert!(b.is_empty());
    }

    #[test]
    fn keys_are_independent() {
        let mut b = Backoff::container_restart();
        let sidecar = BackoffKey::new("uid-1", "sidecar");
        b.next(&key(), at(0), at(0));
        b.next(&key(), at(1), at(1));
        assert_eq!(b.next(&sidecar, at(1), at(1)).as_secs(), 10);
        assert_eq!(b.delay(&key()), Some(Duration::from_secs(20)));
    }

    #[test]
    fn durations_print_as_go_does() {
        let cases = [
            (0, "0s"),
            (10_000, "10s"),
            (40_000, "40s"),
            (80_000, "1m20s"),
            (160_000, "2m40s"),
            (300_000, "5m0s"),
            (3_600_000, "1h0m0s"),
            (1_500, "1.5s"),
            (250, "250ms"),
        ];
        for (ms, want) in cases {
            assert_eq!(go_duration(Duration::from_millis(ms)), want);
        }
    }
}
