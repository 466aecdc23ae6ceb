//! io_uring blocked by a seccomp filter (as container profiles do): `Engine::open` must fail
//! with `Error::IoUringUnavailable` naming the cause, and leave the directory usable.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use ipfrs_storage::{Block, Config, Engine, Error};

/// `io_uring_setup` on x86_64.
const SYS_IO_URING_SETUP: u32 = 425;
/// EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE (linux/audit.h).
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20)
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP (0x05) | BPF_JEQ (0x10) | BPF_K (0x00)
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Offsets in struct seccomp_data.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Installs, on the calling thread (and the threads it spawns from now on), a seccomp filter
/// that makes `io_uring_setup` fail with `errno` and allows every other syscall.
fn block_io_uring_setup(errno: i32) {
    let mut program = [
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        // Another architecture (e.g. a 32-bit syscall): allow, do not guess its numbers.
        insn(BPF_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        insn(BPF_JEQ_K, 0, 1, SYS_IO_URING_SETUP),
        insn(
            BPF_RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
        ),
        insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `prog` and the program it points to outlive the call, and
    // the kernel copies the filter.
    unsafe {
        assert_eq!(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            0,
            "no_new_privs"
        );
        let rc = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        );
        assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}

/// What a raw `io_uring_setup` call returns on this thread now.
fn raw_io_uring_setup_errno() -> Option<i32> {
    let mut params = [0u8; 120]; // struct io_uring_params
    // SAFETY: io_uring_setup(1, params) with a zeroed, large enough params struct; a ring fd
    // that is returned is closed at once.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            1u32,
            params.as_mut_ptr().cast::<libc::c_void>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the fd was just returned to us and is not used elsewhere.
        unsafe { libc::close(fd as i32) };
        None
    } else {
        std::io::Error::last_os_error().raw_os_error()
    }
}

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    config.cache_bytes = 1 << 20;
    config
}

/// Opens the engine from a thread whose io_uring_setup fails with `errno`; returns the
/// error. The process's other threads are not filtered.
fn open_with_io_uring_blocked(dir: &std::path::Path, errno: i32) -> Error {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        block_io_uring_setup(errno);
        assert_eq!(
            raw_io_uring_setup_errno(),
            Some(errno),
            "the filter is in force"
        );
        match Engine::open(config(&dir)) {
            Ok(_) => panic!("the engine opened without io_uring"),
            Err(e) => e,
        }
    })
    .join()
    .expect("Engine::open panicked instead of returning an error")
}

/// After the failed open, an unfiltered thread opens the same directory and uses it: the
/// failure left no lock held, no thread behind, and no process-wide state broken.
fn directory_still_usable(dir: &std::path::Path) {
    assert_eq!(
        raw_io_uring_setup_errno(),
        None,
        "this thread is not filtered"
    );
    let engine = Engine::open(config(dir)).unwrap();
    let block = Block::new(&b"after the failure"[..]).unwrap();
    engine.blocking().put(&block).unwrap();
    assert_eq!(
        engine.blocking().get(block.cid()).unwrap().as_ref(),
        Some(block.data())
    );
    engine.blocking().close().unwrap();
}

fn check_eperm(err: &Error) {
    let Error::IoUringUnavailable { reason } = err else {
        panic!("expected IoUringUnavailable, got {err:?}: {err}");
    };
    assert!(err.to_string().contains("io_uring"), "{err}");
    assert!(reason.contains("kernel.io_uring_disabled"), "{reason}");
    assert!(reason.contains("seccomp"), "{reason}");
    assert!(reason.contains("EPERM"), "{reason}");
}

fn check_enosys(err: &Error) {
    let Error::IoUringUnavailable { reason } = err else {
        panic!("expected IoUringUnavailable, got {err:?}: {err}");
    };
    assert!(reason.contains("ENOSYS"), "{reason}");
    assert!(reason.contains("seccomp"), "{reason}");
    assert!(reason.contains("CONFIG_IO_URING"), "{reason}");
}

/// Environment variable naming the scenario the child process runs.
const SCENARIO: &str = "IPFRS_IO_URING_BLOCKED_SCENARIO";

/// The child's side: runs one scenario in a fresh process, so glommio's process-wide state
/// (it probes io_uring once per process, on the first ring it creates) starts clean.
#[test]
#[ignore = "helper: run in a fresh process by the tests below"]
fn child_process() {
    // Run by hand (`--ignored`) without a scenario: nothing to do.
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    match scenario.as_str() {
        // io_uring blocked before anything in the process has used it.
        "cold-eperm" => check_eperm(&open_with_io_uring_blocked(dir.path(), libc::EPERM)),
        "cold-enosys" => check_enosys(&open_with_io_uring_blocked(dir.path(), libc::ENOSYS)),
        // An engine has run in this process before; then a thread without io_uring opens.
        "warm-eperm" | "warm-enosys" => {
            let other = tempfile::tempdir().unwrap();
            let engine = Engine::open(config(other.path())).unwrap();
            engine.blocking().close().unwrap();
            if scenario == "warm-eperm" {
                check_eperm(&open_with_io_uring_blocked(dir.path(), libc::EPERM));
            } else {
                check_enosys(&open_with_io_uring_blocked(dir.path(), libc::ENOSYS));
            }
        }
        other => panic!("unknown scenario {other}"),
    }
    directory_still_usable(dir.path());
}

/// Runs `child_process` for `scenario` in a new process of this test binary.
fn run_scenario(scenario: &str) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--ignored", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "scenario {scenario} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

#[test]
fn eperm_after_an_engine_has_run_names_the_sysctl_and_seccomp() {
    run_scenario("warm-eperm");
}

#[test]
fn enosys_after_an_engine_has_run_names_the_kernel_and_seccomp() {
    run_scenario("warm-enosys");
}

/// io_uring refused before any ring of the process exists. glommio 0.9 would panic in its
/// one-time probe (`IO_URING_RECENT_ENOUGH` in sys/uring.rs) and stay poisoned for the whole
/// process; the shards probe io_uring themselves first, so this is a clean typed error.
#[test]
fn eperm_before_any_executor_names_the_sysctl_and_seccomp() {
    run_scenario("cold-eperm");
}

/// See `eperm_before_any_executor_names_the_sysctl_and_seccomp`.
#[test]
fn enosys_before_any_executor_names_the_kernel_and_seccomp() {
    run_scenario("cold-enosys");
}
