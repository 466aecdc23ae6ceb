//! io_uring blocked by a seccomp filter (as container profiles do). With the default
//! `IoDriver::Auto` the engine runs on the fallback driver, reads, writes, closes and reopens
//! there, and the store opens under io_uring afterwards. Asked for io_uring
//! (`IoDriver::IoUring`), `Engine::open` must fail
//! within a bounded time with `Error::IoUringUnavailable` naming the refused call and the
//! cause, never panic or hang, and leave the directory usable. Profiles refuse any of the
//! three io_uring calls on its own: `io_uring_setup` (EPERM, ENOSYS, or EACCES from a security
//! module), or `io_uring_enter` / `io_uring_register` while `io_uring_setup` is allowed (glommio
//! then panicked in the shard threads). A panic while a shard starts, whatever its cause,
//! must surface as a typed error too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::time::{Duration, Instant};

use ipfrs_storage::{Block, Config, Engine, Error, ExecutorFailure, IoDriver};

mod common;

use common::seccomp::{
    ALL_IO_URING, SYS_IO_URING_ENTER, SYS_IO_URING_REGISTER, SYS_IO_URING_SETUP, refuse, try_refuse,
};

/// The errno of `syscall` made with arguments it refuses (a bad fd, no params): the filter's
/// errno where the filter is in force, EBADF, EFAULT or EINVAL from the kernel otherwise.
fn errno_of_bad_call(syscall: u32) -> i32 {
    // SAFETY: every io_uring call given fd -1 / a zero entry count and null pointers fails
    // without touching memory.
    let rc = unsafe { libc::syscall(i64::from(syscall), -1i64, 0i64, 0i64, 0i64, 0i64, 0i64) };
    assert!(rc < 0, "syscall {syscall} accepted bad arguments");
    std::io::Error::last_os_error().raw_os_error().unwrap()
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

fn config(dir: &std::path::Path, driver: IoDriver) -> Config {
    let mut config = Config::new(dir);
    config.io_driver = driver;
    config.shards = Some(2);
    config.cache_bytes = 1 << 20;
    config
}

/// Opens the engine from a thread where `syscall` fails with `errno`; returns the error. The
/// process's other threads are not filtered.
fn open_with_refused(dir: &std::path::Path, syscall: u32, errno: i32) -> Error {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        refuse(syscall, errno);
        assert_eq!(errno_of_bad_call(syscall), errno, "the filter is in force");
        if syscall != SYS_IO_URING_SETUP {
            // Rings can still be created: only the later call is refused.
            assert_eq!(
                raw_io_uring_setup_errno(),
                None,
                "io_uring_setup is allowed"
            );
        }
        match Engine::open(config(&dir, IoDriver::IoUring)) {
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
    let engine = Engine::open(config(dir, IoDriver::Auto)).unwrap();
    assert_eq!(engine.io_driver(), IoDriver::IoUring);
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

/// The error names the refused call, its errno, and a fix for the profile that refused it.
fn check_refused(err: &Error, call: &str, errno: &str) {
    let Error::IoUringUnavailable { reason } = err else {
        panic!("expected IoUringUnavailable naming {call}, got {err:?}: {err}");
    };
    assert!(reason.contains(call), "{reason}");
    assert!(reason.contains(errno), "{reason}");
    assert!(reason.contains("seccomp"), "{reason}");
    if call != "io_uring_setup" {
        assert!(reason.contains("io_uring_setup was allowed"), "{reason}");
    }
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
    // "warm-...": an engine has run in this process before (glommio's one-time probe of the
    // kernel has passed); "cold-...": nothing in the process has used io_uring yet.
    let (warmth, case) = scenario.split_once('-').unwrap();
    if warmth == "warm" {
        let other = tempfile::tempdir().unwrap();
        let engine = Engine::open(config(other.path(), IoDriver::IoUring)).unwrap();
        engine.blocking().close().unwrap();
    }
    let setup = SYS_IO_URING_SETUP;
    match case {
        "eperm" => check_eperm(&open_with_refused(dir.path(), setup, libc::EPERM)),
        "enosys" => check_enosys(&open_with_refused(dir.path(), setup, libc::ENOSYS)),
        "setup-eacces" => {
            let err = open_with_refused(dir.path(), setup, libc::EACCES);
            check_refused(&err, "io_uring_setup", "EACCES");
            assert!(err.to_string().contains("security module"), "{err}");
        }
        "enter-eperm" => check_refused(
            &open_with_refused(dir.path(), SYS_IO_URING_ENTER, libc::EPERM),
            "io_uring_enter",
            "EPERM",
        ),
        "register-eperm" => check_refused(
            &open_with_refused(dir.path(), SYS_IO_URING_REGISTER, libc::EPERM),
            "io_uring_register",
            "EPERM",
        ),
        "register-eacces" => check_refused(
            &open_with_refused(dir.path(), SYS_IO_URING_REGISTER, libc::EACCES),
            "io_uring_register",
            "EACCES",
        ),
        // Whatever panics while a shard starts (here a fail point where glommio builds the
        // executor), Engine::open returns an error saying so.
        "shard-panic" => {
            fail::cfg("shard-start", "panic(glommio fell over)").unwrap();
            let Err(err) = Engine::open(config(dir.path(), IoDriver::IoUring)) else {
                panic!("the engine opened although a shard panicked at start");
            };
            fail::remove("shard-start");
            assert!(
                matches!(&err, Error::Executor { cause: ExecutorFailure::Panicked(m), .. }
                    if m.contains("glommio fell over"))
                    && err.to_string().contains("panicked while starting"),
                "{err:?}: {err}"
            );
        }
        "auto-all" => runs_on_the_fallback(dir.path(), &ALL_IO_URING, libc::EPERM),
        "auto-enter" => runs_on_the_fallback(dir.path(), &[SYS_IO_URING_ENTER], libc::EPERM),
        "auto-register" => runs_on_the_fallback(dir.path(), &[SYS_IO_URING_REGISTER], libc::EACCES),
        other => panic!("unknown scenario {other}"),
    }
    directory_still_usable(dir.path());
}

/// Blocks of sizes on both sides of the writer's direct-write limit (128 KiB): small appends
/// are written on the shard's thread, large ones on the blocking pool.
fn mixed_blocks() -> Vec<Block> {
    (0..48usize)
        .map(|i| {
            let len = [100, 5000, 70_000, 300_000][i % 4] + i;
            Block::new(
                (0..len)
                    .map(|j| (i * 13 + j * 7) as u8)
                    .collect::<Vec<u8>>(),
            )
            .unwrap()
        })
        .collect()
}

/// From a thread where `syscalls` fail with `errno`: the default driver opens the engine on
/// the fallback, which stores, serves, closes and reopens; then (unfiltered) the same store
/// opens under io_uring with every block.
fn runs_on_the_fallback(dir: &std::path::Path, syscalls: &'static [u32], errno: i32) {
    let owned = dir.to_path_buf();
    let blocks = mixed_blocks();
    let stored = blocks.clone();
    std::thread::spawn(move || {
        try_refuse(syscalls, errno).unwrap();
        let engine = Engine::open(config(&owned, IoDriver::Auto)).unwrap();
        assert_eq!(engine.io_driver(), IoDriver::Fallback);
        let metrics = futures_lite::future::block_on(engine.metrics())
            .unwrap()
            .to_prometheus();
        assert!(
            metrics.contains("ipfrs_io_driver_info{driver=\"fallback\"} 1"),
            "{metrics}"
        );
        let store = engine.blocking();
        store.put_many(&stored[..24]).unwrap();
        for b in &stored[24..] {
            store.put(b).unwrap();
        }
        let cids: Vec<_> = stored.iter().map(|b| *b.cid()).collect();
        for (b, got) in stored.iter().zip(store.get_many(&cids).unwrap()) {
            assert_eq!(got.as_ref(), Some(b.data()));
        }
        assert!(store.delete(stored[0].cid()).unwrap());
        store.close().unwrap();
        // io_uring asked for explicitly: still refused, nothing changed.
        assert!(matches!(
            Engine::open(config(&owned, IoDriver::IoUring)),
            Err(Error::IoUringUnavailable { .. })
        ));
        let engine = Engine::open(config(&owned, IoDriver::Auto)).unwrap();
        let store = engine.blocking();
        assert!(!store.has(stored[0].cid()).unwrap());
        for b in &stored[1..] {
            assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
        }
        store.close().unwrap();
    })
    .join()
    .expect("the fallback run panicked");
    let engine = Engine::open(config(dir, IoDriver::IoUring)).unwrap();
    let store = engine.blocking();
    assert!(!store.has(blocks[0].cid()).unwrap());
    for b in &blocks[1..] {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    store.close().unwrap();
}

/// How long a scenario may take: opening fails at once (a second or two on a loaded
/// machine); only a hang comes near this.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `child_process` for `scenario` in a new process of this test binary, killed if it has
/// not finished by the deadline.
fn run_scenario(scenario: &str) {
    let out = tempfile::tempdir().unwrap();
    let stdout_path = out.path().join("stdout");
    let stderr_path = out.path().join("stderr");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--ignored", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCENARIO_DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let Some(status) = status else {
        panic!("scenario {scenario} hung for {SCENARIO_DEADLINE:?}:\n{stdout}\n{stderr}");
    };
    assert!(
        status.success() && stdout.contains("1 passed"),
        "scenario {scenario} failed ({status}):\n{stdout}\n{stderr}"
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

/// io_uring_setup refused with EACCES, as a security module (SELinux) refuses it.
#[test]
fn eacces_from_setup_is_io_uring_unavailable() {
    run_scenario("cold-setup-eacces");
}

/// Rings can be created but not entered: glommio panicked in the shard threads ("the engine is
/// closed"); the probe's NOP round trip names io_uring_enter.
#[test]
fn enter_refused_before_any_executor_names_io_uring_enter() {
    run_scenario("cold-enter-eperm");
}

/// See `enter_refused_before_any_executor_names_io_uring_enter`; glommio's one-time probe has
/// passed in this process, so nothing of glommio's own would catch it.
#[test]
fn enter_refused_after_an_engine_has_run_names_io_uring_enter() {
    run_scenario("warm-enter-eperm");
}

/// Rings can be created but not registered: glommio's operation probe panicked and stayed
/// poisoned for the whole process.
#[test]
fn register_refused_before_any_executor_names_io_uring_register() {
    run_scenario("cold-register-eperm");
}

/// See `register_refused_before_any_executor_names_io_uring_register`, with EACCES, after an
/// engine has run.
#[test]
fn register_refused_after_an_engine_has_run_names_io_uring_register() {
    run_scenario("warm-register-eacces");
}

/// Docker's default profile: all three io_uring calls refused. The default driver falls back.
#[test]
fn all_io_uring_calls_refused_runs_on_the_fallback() {
    run_scenario("cold-auto-all");
}

/// Only `io_uring_enter` refused, after an engine has run on io_uring in this process.
#[test]
fn enter_refused_after_an_engine_has_run_runs_on_the_fallback() {
    run_scenario("warm-auto-enter");
}

/// Only `io_uring_register` refused (EACCES), before any ring of the process exists.
#[test]
fn register_refused_runs_on_the_fallback() {
    run_scenario("cold-auto-register");
}

/// A panic while a shard starts is an error of `Engine::open`, not a panic or a hang.
#[test]
fn a_panic_while_a_shard_starts_is_an_error() {
    run_scenario("cold-shard-panic");
}
