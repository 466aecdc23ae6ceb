//! The load mode in small: a few clients for a few seconds of mixed reads, pinned puts and
//! CAR imports against a daemon; no operation fails and no acknowledged block is missing
//! (the full-size run is `examples/daemon_load.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::time::Duration;

use daemon_common::{Daemon, init_repo};
use ipfrs_tools::daemon::load::{LoadConfig, run};

#[test]
fn mixed_load_loses_nothing_and_fails_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let mut daemon = Daemon::start(&repo, &[]);
    let config = LoadConfig {
        api: daemon.api.clone(),
        gateway: daemon.gateway.clone(),
        clients: 8,
        duration: Duration::from_secs(3),
        put_percent: 25,
        import_percent: 10,
        block_bytes: 4096,
        car_blocks: 8,
        daemon_pid: Some(daemon.pid()),
    };
    let report = run(&config).unwrap();
    let errors = report.rpc_get.errors
        + report.gateway_get.errors
        + report.block_put.errors
        + report.dag_import.errors;
    assert_eq!(errors, 0, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert!(
        report.block_put.ok > 0 && report.dag_import.ok > 0,
        "{report:?}"
    );
    assert!(
        report.rpc_get.ok > 0 && report.gateway_get.ok > 0,
        "{report:?}"
    );
    assert!(daemon.alive());
    assert!(daemon.stop().success());
}
