//! Wall-clock time in the metadata format: [`Time`] from and to
//! [`std::time::SystemTime`] (times before 1970 included: `nanos` is
//! always the non-negative part after `secs`).
//!
//! Imports only `format::meta::Time`.

use crate::format::meta::Time;

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
