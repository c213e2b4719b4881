//! Time as the lifecycle sees it: a monotonic instant for delays and a wall time for timestamps.
//!
//! Back-off and probe schedules are measured on the monotonic clock so that a wall clock step
//! never shortens or stretches a delay; timestamps shown to a user (startedAt, conditions) are
//! wall time. A [`Now`] carries both read at one moment, so the pure functions see a single
//! consistent "now".

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// A point on the monotonic clock: the time elapsed since the clock's own origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The instant `d` after the clock's origin.
    pub const fn from_origin(d: Duration) -> Self {
        Instant(d)
    }

    /// Time since the clock's origin.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }

    /// `self - d`, saturating at the origin.
    pub fn minus(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d))
    }

    /// Time from `earlier` to `self`, zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// Both clocks read at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The monotonic reading.
    pub mono: Instant,
    /// The wall-clock reading.
    pub wall: Timestamp,
}

impl Now {
    /// The monotonic instant of a past wall-clock `t` (an engine timestamp such as a
    /// container's finishedAt), found by going back from now by how long ago `t` was.
    /// A `t` in the future maps to now.
    pub fn instant_of(&self, t: Timestamp) -> Instant {
        self.mono.minus(self.wall_since(t))
    }

    /// How long ago the wall-clock `t` was, zero if it is in the future.
    pub fn wall_since(&self, t: Timestamp) -> Duration {
        let nanos = self.wall.as_nanosecond() - t.as_nanosecond();
        if nanos <= 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A source of [`Now`]. Real in the daemon, fake in tests.
pub trait Clock: Send + Sync {
    /// Both clocks, read together.
    fn now(&self) -> Now;
}

/// The system clocks: `std::time::Instant` from construction and the system wall time.
#[derive(Debug)]
pub struct RealClock {
    origin: std::time::Instant,
}

impl RealClock {
    /// A clock whose monotonic origin is this moment.
    pub fn new() -> Self {
        RealClock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Now {
        Now {
            mono: Instant(self.origin.elapsed()),
            wall: system_wall(),
        }
    }
}

/// The system's wall time (k8s-openapi builds jiff without its `std` clock).
pub fn system_wall() -> Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let nanos = i128::try_from(since_epoch.as_nanos()).unwrap_or(i128::MAX);
    Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A clock that moves only when told to; both readings advance together.
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<Now>,
}

impl FakeClock {
    /// A clock at monotonic zero and the given wall time.
    pub fn new(wall: Timestamp) -> Self {
        FakeClock {
            now: Mutex::new(Now {
                mono: Instant::default(),
                wall,
            }),
        }
    }

    /// A clock at monotonic zero and wall time `seconds` after the Unix epoch.
    pub fn at_unix(seconds: i64) -> Self {
        Self::new(Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        now.mono = now.mono.plus(d);
        let step = k8s_openapi::jiff::SignedDuration::try_from(d)
            .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
        now.wall = now.wall.saturating_add(step).unwrap_or(now.wall);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Now {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_both_readings_together() {
        let clock = FakeClock::at_unix(1_000);
        let start = clock.now();
        clock.advance(Duration::from_secs(90));
        let later = clock.now();
        assert_eq!(
            later.mono.saturating_since(start.mono),
            Duration::from_secs(90)
        );
        assert_eq!(later.wall.as_second() - start.wall.as_second(), 90);
    }

    #[test]
    fn instant_of_a_past_wall_time() {
        let clock = FakeClock::at_unix(1_000);
        clock.advance(Duration::from_secs(100));
        let now = clock.now();
        let t = Timestamp::from_second(1_060).unwrap();
        assert_eq!(
            now.instant_of(t),
            Instant::from_origin(Duration::from_secs(60))
        );
        // A timestamp after now is now; one before the origin is the origin.
        let future = Timestamp::from_second(5_000).unwrap();
        assert_eq!(now.instant_of(future), now.mono);
        let ancient = Timestamp::from_second(10).unwrap();
        assert_eq!(now.instant_of(ancient), Instant::default());
    }

    #[test]
    fn real_clock_is_monotonic() {
        let clock = RealClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b.mono >= a.mono);
    }
}
