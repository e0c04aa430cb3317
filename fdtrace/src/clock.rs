//! Event timestamps are CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`);
//! this turns them into wall-clock time for display.
use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC now, in nanoseconds: the clock events are stamped with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Converts monotonic stamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Unix-epoch ns minus monotonic ns, taken at start.
    offset_ns: i128,
    /// Local time zone offset from UTC, in seconds, at start.
    tz_offset_s: i64,
}

impl Clock {
    pub fn new() -> Clock {
        let mono = monotonic_ns() as i128;
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        Clock { offset_ns: wall - mono, tz_offset_s: local_utc_offset() }
    }

    /// A clock with a given offset and time zone (tests: output that does
    /// not depend on when or where it runs).
    #[cfg(test)]
    pub fn fixed(offset_ns: i128, tz_offset_s: i64) -> Clock {
        Clock { offset_ns, tz_offset_s }
    }

    pub fn unix_ns(&self, mono_ns: u64) -> i128 {
        mono_ns as i128 + self.offset_ns
    }

    /// `HH:MM:SS.mmm` local time.
    pub fn time_of_day(&self, mono_ns: u64) -> String {
        let ns = self.unix_ns(mono_ns) + self.tz_offset_s as i128 * 1_000_000_000;
        let ms_of_day = (ns / 1_000_000).rem_euclid(86_400_000) as u64;
        let (h, m, s, ms) =
            (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
        format!("{h:02}:{m:02}:{s:02}.{ms:03}")
    }

    /// RFC 3339 UTC with microseconds, e.g. `2026-11-25T09:14:03.512345Z`.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        rfc3339_from_unix_ns(self.unix_ns(mono_ns))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

pub fn rfc3339_from_unix_ns(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let micros = (ns.rem_euclid(1_000_000_000) / 1000) as u32;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, sod / 60 % 60, sod % 60)
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn local_utc_offset() -> i64 {
    let now: libc::time_t =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as libc::time_t);
    // SAFETY: zeroed tm is a valid out-parameter for localtime_r.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_from_unix_ns(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_from_unix_ns(1_764_062_043_512_345_678), "2025-11-25T09:14:03.512345Z");
        assert_eq!(rfc3339_from_unix_ns(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
    }
}
