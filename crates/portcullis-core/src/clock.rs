use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// The source of "now" for every time-dependent check.
///
/// Layers take a [`SharedClock`]; production uses [`SystemClock`], tests a
/// [`ManualClock`] they can move.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// A clock shared between layers.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until told to move; for tests.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use portcullis_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(1_060));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// A clock reading the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: SystemTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Milliseconds since the Unix epoch, the stores' time unit (0 before the
/// epoch, saturating far after it).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(portcullis_core::epoch_millis(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
/// ```
pub fn epoch_millis(at: SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH).map_or(0, duration_millis)
}

/// A duration in whole milliseconds, saturating.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(portcullis_core::duration_millis(Duration::from_secs(2)), 2000);
/// assert_eq!(portcullis_core::duration_millis(Duration::MAX), u64::MAX);
/// ```
pub fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `N` bytes from the system's secure random generator (aws-lc-rs): ids,
/// secrets and token nonces all come from here.
///
/// ```
/// let a: [u8; 32] = portcullis_core::random_bytes();
/// let b: [u8; 32] = portcullis_core::random_bytes();
/// assert_ne!(a, b);
/// ```
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Nothing here can be made safely without randomness, and aws-lc aborts
    // rather than fail in practice: an error is unrecoverable.
    aws_lc_rs::rand::fill(&mut bytes).unwrap_or_else(|_| unreachable!("system RNG failure"));
    bytes
}
