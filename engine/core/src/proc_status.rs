//! Fields of `/proc/self/status`: the process's resident memory as the kernel counts it, read
//! by the benchmark's memory figures and by the tests and examples that hold the engine to its
//! memory budgets.

/// A `kB` field of `/proc/self/status` (`"VmHWM:"`, `"VmRSS:"`, `"RssAnon:"`, ...), in KiB;
/// `None` where the file or the field is missing (not Linux, /proc not mounted).
pub fn kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib(&status, field)
}

/// [`kib`] of another process, by its pid (`/proc/<pid>/status`).
pub fn kib_of(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kib(&status, field)
}

/// The value of `field` in the text of a status file.
fn parse_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t  999 kB\n";
        assert_eq!(parse_kib(status, "VmHWM:"), Some(12345));
        assert_eq!(parse_kib(status, "VmRSS:"), Some(999));
        assert_eq!(parse_kib(status, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_set() {
        assert!(kib("VmRSS:").unwrap() > 0);
        // The same process by its pid; a pid that cannot exist has no status.
        assert!(kib_of(std::process::id(), "VmRSS:").unwrap() > 0);
        assert_eq!(kib_of(u32::MAX, "VmRSS:"), None);
    }
}
