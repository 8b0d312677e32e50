//! Wall-clock time in the metadata format: [`Time`] from and to
//! [`std::time::SystemTime`] (times before 1970 included: `nanos` is
//! always the non-negative part after `secs`).
//!
//! [`Clock`]: the engine's source of "now" where a rule depends on
//! elapsed time (the age of this client's own content objects, for the
//! collection race rule), injectable by tests.
//!
//! Imports only `format::meta::Time`.

use crate::format::meta::Time;
use std::sync::Arc;
use std::time::SystemTime;

/// Where "now" comes from: the system clock, or a function (tests).
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that reads `f` (tests: a clock that jumps ahead).
    pub fn from_fn(f: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Some(Arc::new(f)))
    }

    pub fn now(&self) -> SystemTime {
        match &self.0 {
            Some(f) => f(),
            None => SystemTime::now(),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(injected)"
        } else {
            "Clock(system)"
        })
    }
}

/// Current time as a metadata [`Time`].
pub fn now() -> Time {
    to_time(std::time::SystemTime::now())
}

/// A [`SystemTime`](std::time::SystemTime) as a metadata [`Time`].
pub fn to_time(t: std::time::SystemTime) -> Time {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => Time {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            if d.subsec_nanos() == 0 {
                Time {
                    secs: -(d.as_secs() as i64),
                    nanos: 0,
                }
            } else {
                Time {
                    secs: -(d.as_secs() as i64) - 1,
                    nanos: 1_000_000_000 - d.subsec_nanos(),
                }
            }
        }
    }
}

/// A metadata [`Time`] as a [`SystemTime`](std::time::SystemTime).
pub fn from_time(t: Time) -> std::time::SystemTime {
    let base = std::time::UNIX_EPOCH;
    if t.secs >= 0 {
        base + std::time::Duration::new(t.secs as u64, t.nanos)
    } else {
        base - std::time::Duration::from_secs((-t.secs) as u64)
            + std::time::Duration::from_nanos(t.nanos as u64)
    }
}
