//! CPU time and major page faults of the whole process around a target's round
//! (`getrusage(RUSAGE_SELF)`): targets run one at a time, so the difference is the target's.
//!
//! Major faults are what DESIGN.md asks the benchmark to watch: a record written with O_DIRECT
//! and then read through mmap faults from the disk on the shard's core.

use std::time::Duration;

/// A snapshot of the process's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// User plus system CPU time of every thread so far.
    pub cpu: Duration,
    /// Page faults that needed I/O so far.
    pub major_faults: u64,
}

impl Usage {
    /// The process's use now; `None` if the kernel refuses (never on Linux).
    pub fn now() -> Option<Usage> {
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
            return None;
        }
        let time = |t: libc::timeval| {
            Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000)
        };
        Some(Usage {
            cpu: time(ru.ru_utime) + time(ru.ru_stime),
            major_faults: ru.ru_majflt.max(0) as u64,
        })
    }

    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            major_faults: self.major_faults.saturating_sub(earlier.major_faults),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        // Spin until the kernel has charged 20 ms of CPU (however busy the machine, that comes
        // within seconds); a Usage that never grew would hit the deadline.
        let before = Usage::now().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        let used = loop {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            let used = Usage::now().unwrap().since(before);
            if used.cpu >= Duration::from_millis(20) || std::time::Instant::now() > deadline {
                break used;
            }
        };
        assert!(used.cpu >= Duration::from_millis(20), "{used:?}");
        assert_eq!(before.since(Usage::now().unwrap()).cpu, Duration::ZERO);
    }
}
