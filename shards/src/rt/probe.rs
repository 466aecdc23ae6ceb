//! The io_uring probe: does, once and on the calling thread, what glommio 0.9 does with
//! io_uring when an executor starts, so that an environment that refuses any of it is a typed
//! error naming the refused call and its fix, never a panic in a shard thread.
//!
//! glommio starts an executor with three calls, any of which a seccomp profile or a security
//! module can refuse on its own:
//! - `io_uring_setup` for each of its rings;
//! - `io_uring_register(IORING_REGISTER_PROBE)` once per process, to check the kernel's
//!   operations: when it fails glommio panics and stays poisoned for the whole process, and when
//!   an operation is missing it exits the process (`check_supported_operations` in its
//!   `sys/uring.rs`); its later `IORING_REGISTER_BUFFERS` may fail (it goes on without them);
//! - `io_uring_enter` to submit and wait: refused, the shard thread panics once it runs.
//!
//! The probe makes each call: a one-entry ring, the operation probe (checked against the
//! operations glommio needs), and a NOP submitted and waited for through the mapped rings.
//! The layouts are the kernel's (include/uapi/linux/io_uring.h), stable since Linux 5.1.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use glommio::{GlommioError, ReactorErrorKind};

use crate::{Error, ExecutorFailure};

/// The io_uring system calls, named in errors: a policy may refuse any one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// `io_uring_setup`: creating a ring (also where glommio's own setup errors come from).
    Setup,
    /// `io_uring_register`: the operation probe.
    Register,
    /// `io_uring_enter`: submitting and waiting.
    Enter,
    /// `mmap` of a ring's queues.
    Mmap,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Setup => "io_uring_setup",
            Call::Register => "io_uring_register",
            Call::Enter => "io_uring_enter",
            Call::Mmap => "mmap of the io_uring queues",
        }
    }
}

// struct io_uring_params, read as 30 u32 words: sq_entries, cq_entries, flags, sq_thread_cpu,
// sq_thread_idle, features, wq_fd, resv[3], then sq_off (10 words) and cq_off (10 words).
const PARAMS_WORDS: usize = 30;
const P_SQ_ENTRIES: usize = 0;
const P_CQ_ENTRIES: usize = 1;
const P_FEATURES: usize = 5;
const SQ_OFF_TAIL: usize = 11;
const SQ_OFF_RING_MASK: usize = 12;
const SQ_OFF_ARRAY: usize = 16;
const CQ_OFF_HEAD: usize = 20;
const CQ_OFF_TAIL: usize = 21;
const CQ_OFF_RING_MASK: usize = 22;
const CQ_OFF_CQES: usize = 25;

/// The SQ and CQ rings share one mapping.
const IORING_FEAT_SINGLE_MMAP: u32 = 1;
const IORING_OFF_SQ_RING: libc::off_t = 0;
const IORING_OFF_CQ_RING: libc::off_t = 0x0800_0000;
const IORING_OFF_SQES: libc::off_t = 0x1000_0000;
const SQE_BYTES: usize = 64;
const CQE_BYTES: usize = 16;
/// Where `user_data` sits in an SQE.
const SQE_USER_DATA: usize = 32;
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_REGISTER_PROBE: u32 = 8;
/// Entries asked of the operation probe (as liburing asks); the kernel fills those it knows.
const PROBE_OPS: usize = 256;
/// struct io_uring_probe's header, then one 8-byte struct io_uring_probe_op per operation.
const PROBE_HEADER_BYTES: usize = 16;
const IO_URING_OP_SUPPORTED: u16 = 1;
/// Marks the probe's NOP, to recognise its completion.
const NOP_USER_DATA: u64 = 0x1970_0101_1f00_d00d;

/// The operations glommio 0.9 refuses to start without (`GLOMMIO_URING_OPS` in its
/// `sys/uring.rs`), by number and name.
const GLOMMIO_OPS: &[(u8, &str)] = &[
    (0, "NOP"),
    (1, "READV"),
    (2, "WRITEV"),
    (3, "FSYNC"),
    (4, "READ_FIXED"),
    (5, "WRITE_FIXED"),
    (6, "POLL_ADD"),
    (7, "POLL_REMOVE"),
    (9, "SENDMSG"),
    (10, "RECVMSG"),
    (11, "TIMEOUT"),
    (12, "TIMEOUT_REMOVE"),
    (13, "ACCEPT"),
    (15, "LINK_TIMEOUT"),
    (16, "CONNECT"),
    (17, "FALLOCATE"),
    (18, "OPENAT"),
    (19, "CLOSE"),
    (21, "STATX"),
    (22, "READ"),
    (23, "WRITE"),
    (26, "SEND"),
    (27, "RECV"),
];

/// A ring made for the probe: closed and unmapped when dropped, on every path.
struct ProbeRing {
    fd: libc::c_int,
    maps: Vec<(*mut c_void, usize)>,
}

impl Drop for ProbeRing {
    fn drop(&mut self) {
        for &(addr, len) in &self.maps {
            // SAFETY: each entry is a mapping this ring made and nobody else holds.
            unsafe { libc::munmap(addr, len) };
        }
        // SAFETY: the ring's fd, owned by this struct alone.
        unsafe { libc::close(self.fd) };
    }
}

impl ProbeRing {
    fn map(&mut self, len: usize, offset: libc::off_t) -> std::io::Result<*mut u8> {
        // SAFETY: a new shared mapping of the ring's fd at one of the offsets the kernel
        // defines for it; the address is checked before use and unmapped on drop.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                self.fd,
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        self.maps.push((addr, len));
        Ok(addr.cast())
    }

    /// The kernel's operation probe, as glommio asks for it; names the operations it lacks.
    fn missing_operations(&self) -> std::io::Result<Vec<&'static str>> {
        // u64 words keep the buffer aligned for the kernel's u16/u32 fields; it must be zeroed.
        let mut probe = [0u64; (PROBE_HEADER_BYTES + PROBE_OPS * 8) / 8];
        // SAFETY: the buffer holds a struct io_uring_probe with PROBE_OPS operation entries,
        // the count passed; the kernel writes within it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.fd,
                IORING_REGISTER_PROBE,
                probe.as_mut_ptr().cast::<c_void>(),
                PROBE_OPS as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let bytes: Vec<u8> = probe.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let supported = |op: u8| {
            let at = PROBE_HEADER_BYTES + usize::from(op) * 8;
            let flags = u16::from_ne_bytes([bytes[at + 2], bytes[at + 3]]);
            bytes[at] == op && flags & IO_URING_OP_SUPPORTED != 0
        };
        Ok(GLOMMIO_OPS
            .iter()
            .filter(|&&(op, _)| !supported(op))
            .map(|&(_, name)| name)
            .collect())
    }
}

/// What a ring setup returned: the probe's ring and its parameters.
fn setup() -> std::io::Result<(ProbeRing, [u32; PARAMS_WORDS])> {
    let mut params = [0u32; PARAMS_WORDS];
    // SAFETY: io_uring_setup reads and writes the struct io_uring_params it is given (120
    // bytes, all zero: the defaults) and returns a new file descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            1u32,
            params.as_mut_ptr().cast::<c_void>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let ring = ProbeRing {
        fd: fd as libc::c_int,
        maps: Vec::new(),
    };
    Ok((ring, params))
}

/// A word of a mapped ring, shared with the kernel.
///
/// # Safety
/// `base + offset` lies in a live mapping of the ring and is 4-byte aligned (the kernel's
/// offsets are).
unsafe fn ring_word<'a>(base: *mut u8, offset: u32) -> &'a AtomicU32 {
    // SAFETY: per this function's contract.
    unsafe { AtomicU32::from_ptr(base.add(offset as usize).cast::<u32>()) }
}

/// Submits one NOP through the mapped queues and waits for its completion with
/// `io_uring_enter`, as every shard does for all its I/O.
/// A failure names the call and carries its error (an errno, or what went wrong without one).
fn nop_round_trip(
    ring: &mut ProbeRing,
    p: &[u32; PARAMS_WORDS],
) -> Result<(), (Call, std::io::Error)> {
    let os = |call: Call| move |e: std::io::Error| (call, e);
    let sq_len = p[SQ_OFF_ARRAY] as usize + p[P_SQ_ENTRIES] as usize * 4;
    let cq_len = p[CQ_OFF_CQES] as usize + p[P_CQ_ENTRIES] as usize * CQE_BYTES;
    let single = p[P_FEATURES] & IORING_FEAT_SINGLE_MMAP != 0;
    let sq = ring
        .map(
            if single { sq_len.max(cq_len) } else { sq_len },
            IORING_OFF_SQ_RING,
        )
        .map_err(os(Call::Mmap))?;
    let cq = if single {
        sq
    } else {
        ring.map(cq_len, IORING_OFF_CQ_RING)
            .map_err(os(Call::Mmap))?
    };
    let sqes = ring
        .map(p[P_SQ_ENTRIES] as usize * SQE_BYTES, IORING_OFF_SQES)
        .map_err(os(Call::Mmap))?;
    // SAFETY: the offsets come from the kernel's io_uring_params for these mappings, which
    // were made large enough for them above; the ring has no other user, so the SQE slot and
    // the array entry written here are ours until the tail is published.
    unsafe {
        let tail = ring_word(sq, p[SQ_OFF_TAIL]);
        let mask = ring_word(sq, p[SQ_OFF_RING_MASK]).load(Ordering::Relaxed);
        let slot = tail.load(Ordering::Relaxed) & mask;
        let sqe = sqes.add(slot as usize * SQE_BYTES);
        // Opcode 0 is NOP; every other field zero.
        ptr::write_bytes(sqe, 0, SQE_BYTES);
        ptr::write_unaligned(sqe.add(SQE_USER_DATA).cast::<u64>(), NOP_USER_DATA);
        ring_word(sq, p[SQ_OFF_ARRAY] + slot * 4).store(slot, Ordering::Relaxed);
        tail.fetch_add(1, Ordering::Release);
    }
    // SAFETY: io_uring_enter on our ring: submit 1, wait for 1, no signal mask.
    let submitted = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            ring.fd,
            1u32,
            1u32,
            IORING_ENTER_GETEVENTS,
            ptr::null::<c_void>(),
            0usize,
        )
    };
    if submitted < 0 {
        return Err(os(Call::Enter)(std::io::Error::last_os_error()));
    }
    // SAFETY: as above, for the completion queue; the kernel published the tail with
    // release ordering, read here with acquire before the entry it covers.
    let (user_data, res) = unsafe {
        let head = ring_word(cq, p[CQ_OFF_HEAD]).load(Ordering::Relaxed);
        let tail = ring_word(cq, p[CQ_OFF_TAIL]).load(Ordering::Acquire);
        if submitted != 1 || head == tail {
            return Err((
                Call::Enter,
                std::io::Error::other(format!(
                    "the probe's NOP did not complete (submitted {submitted})"
                )),
            ));
        }
        let mask = ring_word(cq, p[CQ_OFF_RING_MASK]).load(Ordering::Relaxed);
        let cqe = cq.add(p[CQ_OFF_CQES] as usize + (head & mask) as usize * CQE_BYTES);
        (
            ptr::read_unaligned(cqe.cast::<u64>()),
            ptr::read_unaligned(cqe.add(8).cast::<i32>()),
        )
    };
    if user_data != NOP_USER_DATA || res != 0 {
        return Err((
            Call::Enter,
            std::io::Error::other(format!(
                "the probe's NOP completed wrongly (user data {user_data:#x}, result {res})"
            )),
        ));
    }
    Ok(())
}

/// Makes each io_uring call glommio will make (see the module docs), so a refused one is
/// reported with its cause and fix before any executor exists.
pub(crate) fn probe_io_uring(shard: usize) -> crate::Result<()> {
    let (mut ring, params) = setup().map_err(|e| classify_errno(shard, Call::Setup, e))?;
    let missing = ring
        .missing_operations()
        .map_err(|e| classify_errno(shard, Call::Register, e))?;
    if !missing.is_empty() {
        return Err(Error::IoUringUnavailable {
            reason: format!(
                "the kernel's io_uring lacks operations the executor needs ({}): Linux 5.8 or \
                 later is required",
                missing.join(", ")
            ),
        });
    }
    nop_round_trip(&mut ring, &params).map_err(|(call, e)| classify_errno(shard, call, e))
}

/// Turns an executor construction failure into an error that names its cause and its fix.
pub(crate) fn classify(shard: usize, err: GlommioError<()>) -> Error {
    let io = match err {
        GlommioError::ReactorError(ReactorErrorKind::MemLockLimit(have, need)) => {
            return Error::MemlockTooLow { have, need };
        }
        GlommioError::IoError(io) => io,
        GlommioError::EnhancedIoError { source, .. } => source,
        other => {
            return Error::Executor {
                shard,
                cause: ExecutorFailure::Runtime(other.to_string()),
            };
        }
    };
    // glommio's construction errors are its rings' setup errors (a failed buffer
    // registration it skips).
    classify_errno(shard, Call::Setup, io)
}

/// Names the cause of a failed io_uring call and its fix.
pub(crate) fn classify_errno(shard: usize, call: Call, io: std::io::Error) -> Error {
    const CONTAINERS: &str = "containers: allow io_uring_setup, io_uring_enter and \
                              io_uring_register in the seccomp profile, or run with \
                              --security-opt seccomp=unconfined";
    let name = call.name();
    let reason = match (io.raw_os_error(), call) {
        (Some(libc::EPERM), Call::Setup) => format!(
            "io_uring_setup was refused (EPERM): the sysctl kernel.io_uring_disabled is set \
             (set it to 0), or a seccomp profile blocks io_uring ({CONTAINERS})"
        ),
        (Some(libc::EACCES), Call::Setup) => format!(
            "io_uring_setup was refused (EACCES): a security module (SELinux, AppArmor) or a \
             seccomp profile denies io_uring to this process; allow it in that policy \
             ({CONTAINERS})"
        ),
        (Some(errno @ (libc::EPERM | libc::EACCES)), _) => format!(
            "{name} was refused ({}) although io_uring_setup was allowed: a seccomp profile or \
             a security module lets rings be created but not used; allow all three io_uring \
             calls ({CONTAINERS})",
            if errno == libc::EPERM {
                "EPERM"
            } else {
                "EACCES"
            }
        ),
        (Some(libc::ENOSYS), _) => format!(
            "the kernel has no {name} (ENOSYS): Linux 5.8 or later built with CONFIG_IO_URING \
             is required, or a seccomp profile hides the syscall ({CONTAINERS})"
        ),
        (Some(libc::EOPNOTSUPP), _) => {
            format!("this host does not support io_uring ({name}: EOPNOTSUPP)")
        }
        (Some(libc::ENOMEM), _) => format!(
            "io_uring could not lock its memory ({name}: ENOMEM): raise the memlock limit \
             (`ulimit -l`) or lower Config::io_memory_per_shard"
        ),
        // Kernels before 5.6 have no operation probe, which glommio requires.
        (Some(libc::EINVAL), Call::Register) => "the kernel is too old for io_uring's \
             operation probe (io_uring_register: EINVAL): Linux 5.8 or later is required"
            .to_string(),
        _ => {
            return Error::Executor {
                shard,
                cause: ExecutorFailure::IoUring {
                    call: name,
                    source: std::sync::Arc::new(io),
                },
            };
        }
    };
    Error::IoUringUnavailable { reason }
}

/// The error for a shard thread that panicked before it was ready. An environment that
/// refuses io_uring is named by the probe (asked again here: the panic may have come from a
/// call the first probe could not foresee, or from a ring the environment took away since);
/// anything else is reported as the panic it was.
pub(crate) fn start_panic_error(shard: usize, panic: &(dyn std::any::Any + Send)) -> Error {
    if let Err(err @ (Error::IoUringUnavailable { .. } | Error::MemlockTooLow { .. })) =
        probe_io_uring(shard)
    {
        return err;
    }
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    Error::Executor {
        shard,
        cause: ExecutorFailure::Panicked(message.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On this machine io_uring works: the whole probe passes, the NOP included.
    #[test]
    fn the_probe_passes_where_io_uring_works() {
        if let Err(e) = probe_io_uring(0) {
            panic!("probe failed on a machine that runs the engine's tests: {e}");
        }
    }

    #[test]
    fn each_refused_call_is_named_with_its_errno() {
        for (call, errno, word) in [
            (Call::Setup, libc::EACCES, "EACCES"),
            (Call::Enter, libc::EPERM, "EPERM"),
            (Call::Register, libc::EACCES, "EACCES"),
            (Call::Enter, libc::ENOSYS, "ENOSYS"),
            (Call::Register, libc::EOPNOTSUPP, "EOPNOTSUPP"),
            (Call::Mmap, libc::ENOMEM, "ENOMEM"),
        ] {
            let err = classify_errno(3, call, std::io::Error::from_raw_os_error(errno));
            let Error::IoUringUnavailable { reason } = &err else {
                panic!("{call:?} {word}: {err}");
            };
            assert!(reason.contains(call.name()), "{reason}");
            assert!(reason.contains(word), "{reason}");
        }
        // An errno with no known environment cause stays an executor error, naming the call.
        let err = classify_errno(
            3,
            Call::Enter,
            std::io::Error::from_raw_os_error(libc::EBADF),
        );
        assert!(
            matches!(&err, Error::Executor { shard: 3, cause: ExecutorFailure::IoUring { call, .. } } if *call == "io_uring_enter"),
            "{err}"
        );
    }
}
