//! A second `ipfrs-store` while the daemon holds the store: its commands go to the daemon's
//! API (found in `<repo>/api`) instead of failing on the engine's lock, and what they did is
//! in the store once the daemon stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::io::Write;
use std::process::{Output, Stdio};

use daemon_common::{Daemon, car, dag, init_repo, read_car, store};

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn cli_commands_go_to_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &[]);
    assert!(repo.join("api").is_file());
    let cli = |args: &[&str]| store(&repo).arg("--json").args(args).output().unwrap();

    // block put from a file, stat, get to a file
    let file = dir.path().join("block.bin");
    std::fs::write(&file, b"forwarded block").unwrap();
    let put = json(&cli(&["block", "put", file.to_str().unwrap()]));
    let cid = put["cid"].as_str().unwrap().to_string();
    assert_eq!(put["size"], 15);
    assert_eq!(json(&cli(&["block", "stat", &cid]))["size"], 15);
    let got = dir.path().join("got.bin");
    json(&cli(&["block", "get", &cid, "-o", got.to_str().unwrap()]));
    assert_eq!(std::fs::read(&got).unwrap(), b"forwarded block");

    // car import from a file and from a pipe (stdin), roots pinned by default
    let first = dag("forward one", 10, 2000);
    let second = dag("forward two", 10, 2000);
    let car_path = dir.path().join("one.car");
    std::fs::write(&car_path, car(&first)).unwrap();
    let imported = json(&cli(&["car", "import", car_path.to_str().unwrap()]));
    assert_eq!(imported["files"][0]["blocks"], 11, "{imported}");
    let mut child = store(&repo)
        .args(["--json", "car", "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&car(&second))
        .unwrap();
    let imported = json(&child.wait_with_output().unwrap());
    assert_eq!(
        imported["files"][0]["roots"][0],
        second[0].cid().to_string()
    );

    // pins
    let pins = json(&cli(&["pin", "ls"]));
    assert_eq!(pins["pins"].as_array().unwrap().len(), 2, "{pins}");
    json(&cli(&["pin", "add", "--recursive=false", &cid]));
    assert_eq!(
        json(&cli(&["pin", "ls"]))["pins"].as_array().unwrap().len(),
        3
    );

    // car export through the daemon, checked block by block
    let out = dir.path().join("export.car");
    let root = first[0].cid().to_string();
    let exported = json(&cli(&["car", "export", &root, "-o", out.to_str().unwrap()]));
    assert_eq!(exported["blocks"], 11);
    assert_eq!(read_car(&std::fs::read(&out).unwrap()).1, first);

    // repo stat, gc (keeps all pinned), verify
    assert_eq!(json(&cli(&["repo", "stat"]))["blocks"], 23);
    let loose = dir.path().join("loose.bin");
    std::fs::write(&loose, b"nobody pins me").unwrap();
    let loose_cid = json(&cli(&["block", "put", loose.to_str().unwrap()]))["cid"]
        .as_str()
        .unwrap()
        .to_string();
    let gc = json(&cli(&["repo", "gc"]));
    assert_eq!(gc["removed"], 1, "{gc}");
    assert_eq!(cli(&["block", "stat", &loose_cid]).status.code(), Some(1));
    json(&cli(&["repo", "verify"]));

    // A command that needs the store closed says so, naming the daemon.
    let out = cli(&["repo", "repair"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be sent to it"), "{err}");

    // Stopped by Ctrl-C: the same commands open the store themselves and see the daemon's
    // work.
    assert!(daemon.stop_with(libc::SIGINT).success());
    assert!(!repo.join("api").exists());
    assert_eq!(json(&cli(&["repo", "stat"]))["blocks"], 23);
    assert_eq!(
        json(&cli(&["pin", "ls"]))["pins"].as_array().unwrap().len(),
        3
    );
    json(&cli(&["block", "stat", &cid]));
}
