//! A memlock limit too low for io_uring: asked for io_uring, `Engine::open` fails with
//! `Error::MemlockTooLow` and says how to fix it; the default driver runs on the fallback,
//! which registers no memory. Its own test binary, because the limit is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(target_os = "linux")]

use ipfrs_storage::{Block, Config, Engine, Error, IoDriver};

fn memlock() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) },
        0
    );
    limit
}

fn set_memlock(limit: libc::rlimit) -> std::io::Result<()> {
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The only test of this binary: nothing else runs while the limit is lowered.
///
/// glommio 0.9 reports its memlock error as an untyped `io::Error`
/// ("MemLockLimit(65536/524288)"); the shards check the limit themselves before glommio, so
/// the engine answers `MemlockTooLow` with the fix.
#[test]
fn a_low_memlock_limit_is_reported_with_its_fix() {
    const LOW: u64 = 64 << 10;
    let original = memlock();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.shards = Some(2);
    config.io_driver = IoDriver::IoUring;

    set_memlock(libc::rlimit {
        rlim_cur: LOW,
        rlim_max: LOW,
    })
    .unwrap();
    assert_eq!(memlock().rlim_cur, LOW);
    // Root too: glommio checks the limit itself (it wants at least 512 KiB), whatever
    // CAP_IPC_LOCK would allow.
    let err = match Engine::open(config.clone()) {
        Ok(_) => panic!("opened with a {LOW}-byte memlock limit"),
        Err(e) => e,
    };
    let Error::MemlockTooLow { have, need } = err else {
        panic!("expected MemlockTooLow, got {err:?}: {err}");
    };
    assert_eq!(have, LOW);
    assert!(need > LOW, "need {need}");
    let message = err.to_string();
    assert!(message.contains("ulimit -l"), "{message}");
    assert!(message.contains("io_memory_per_shard"), "{message}");
    assert!(message.contains(&LOW.to_string()), "{message}");
    // Refused before anything was written: the directory is still empty.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // The default driver does not need locked memory: it runs on the fallback.
    let auto = Config {
        io_driver: IoDriver::Auto,
        ..config.clone()
    };
    let engine = Engine::open(auto).expect("the default driver opens on the fallback");
    assert_eq!(engine.io_driver(), IoDriver::Fallback);
    let block = Block::new(&b"memlock raised"[..]).unwrap();
    engine.blocking().put(&block).unwrap();
    engine.blocking().close().unwrap();

    // Raising a hard limit needs CAP_SYS_RESOURCE: only then can the fix be checked here.
    match set_memlock(original) {
        Ok(()) => {
            let engine = Engine::open(config).expect("opens once the limit is raised");
            assert_eq!(engine.io_driver(), IoDriver::IoUring);
            assert!(engine.blocking().has(block.cid()).unwrap());
            engine.blocking().close().unwrap();
        }
        Err(e) => eprintln!("cannot restore the memlock limit ({e}); reopen not checked"),
    }
}
