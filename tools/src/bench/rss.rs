//! Peak resident memory per target: the kernel's high-water mark (`VmHWM`), reset before each
//! target by writing "5" to `/proc/self/clear_refs` (Linux 4.0+), so a target's figure is its
//! own peak, not an earlier target's. Before the reset, glibc is asked to hand freed memory
//! back to the kernel (`malloc_trim`): otherwise the memory an earlier target freed but the
//! allocator kept would count as this target's starting point.

/// A target's memory, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peak {
    /// Resident memory when measuring began (the generated blocks, earlier leftovers).
    pub start_kib: u64,
    /// The highest resident memory since then.
    pub peak_kib: u64,
}

impl Peak {
    /// What the target added at its peak, KiB.
    pub fn growth_kib(&self) -> u64 {
        self.peak_kib.saturating_sub(self.start_kib)
    }
}

/// Starts a measurement: resets the high-water mark. `None` where the kernel does not allow
/// it (not Linux, or /proc not mounted): then no peak is reported rather than a wrong one.
pub fn start() -> Option<u64> {
    trim();
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_kib("VmRSS:")
}

/// Returns freed heap memory to the kernel where the allocator supports it.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it takes no pointers and is
    // thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Ends a measurement begun at `start_kib`.
pub fn finish(start_kib: Option<u64>) -> Option<Peak> {
    Some(Peak {
        start_kib: start_kib?,
        peak_kib: status_kib("VmHWM:")?,
    })
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> Option<u64> {
    ipfrs_storage::proc_status::kib(field)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_sees_a_large_allocation() {
        let Some(start_kib) = start() else { return };
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        drop(big);
        let peak = finish(Some(start_kib)).unwrap();
        assert!(peak.peak_kib >= peak.start_kib + (60 << 10), "{peak:?}");
    }
}
