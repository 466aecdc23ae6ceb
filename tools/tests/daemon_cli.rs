//! `ipfrs-store` commands that work alike with and without a running daemon: `car export -o -`
//! (stdout) and exported files made with the umask's mode, `block stat` / `block get` of
//! several CIDs, `block ls` and `repo stat --prometheus` handed to the daemon, the commands
//! that need the store closed failing with a message that names it, and `block rm` of a block
//! inside a pinned DAG refused (Kubo's behaviour) by the daemon's API and by the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use daemon_common::{Daemon, car, dag, init_repo, post, post_files, read_car, store};

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&ok(out).stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `ipfrs-store --repo REPO ARGS` run under `umask` (octal).
fn under_umask(repo: &Path, umask: &str, args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let mask = libc::mode_t::from_str_radix(umask, 8).unwrap();
    let mut cmd = store(repo);
    cmd.args(args);
    // SAFETY: umask is async-signal-safe and only sets the child's own mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
    cmd.output().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The checks that must hold with and without a daemon in front of the store.
fn cli_checks(repo: &Path, dir: &Path, label: &str) {
    let blocks = dag(label, 12, 3000);
    let root = blocks[0].cid().to_string();
    let car_path = dir.join(format!("{label}.car"));
    std::fs::write(&car_path, car(&blocks)).unwrap();
    ok(&store(repo)
        .args(["car", "import", car_path.to_str().unwrap()])
        .output()
        .unwrap());

    // export to stdout: the DAG, root first, and nothing else on stdout
    let out = ok(&store(repo)
        .args(["car", "export", &root, "-o", "-"])
        .output()
        .unwrap())
    .stdout
    .clone();
    let (roots, exported) = read_car(&out);
    assert_eq!(roots, vec![*blocks[0].cid()], "{label}");
    assert_eq!(exported, blocks, "{label}");

    // exported files: 0666 less the umask
    for (umask, want) in [("022", 0o644), ("027", 0o640), ("077", 0o600)] {
        let file = dir.join(format!("{label}-{umask}.car"));
        ok(&under_umask(
            repo,
            umask,
            &["car", "export", &root, "-o", file.to_str().unwrap()],
        ));
        assert_eq!(mode(&file), want, "{label} umask {umask}");
        assert_eq!(read_car(&std::fs::read(&file).unwrap()).1, blocks);
    }

    // several CIDs at once
    let (a, b) = (blocks[1].cid().to_string(), blocks[2].cid().to_string());
    let stats = json(
        &store(repo)
            .args(["--json", "block", "stat", &a, &b])
            .output()
            .unwrap(),
    );
    assert_eq!(stats[0]["cid"], a.as_str(), "{label}: {stats}");
    assert_eq!(stats[1]["size"], blocks[2].len(), "{label}: {stats}");
    let text = ok(&store(repo)
        .args(["block", "stat", &a, &b])
        .output()
        .unwrap())
    .stdout
    .clone();
    assert_eq!(String::from_utf8(text).unwrap().lines().count(), 2);
    let got = ok(&store(repo).args(["block", "get", &a, &b]).output().unwrap())
        .stdout
        .clone();
    let mut want = blocks[1].data().to_vec();
    want.extend_from_slice(blocks[2].data());
    assert!(got == want, "{label}: block get of two CIDs");
    let absent = ipfrs_storage::Block::new(&b"absent"[..]).unwrap();
    let out = store(repo)
        .args(["block", "stat", &a, &absent.cid().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{label}");

    // a block inside the pinned DAG stays
    let out = store(repo).args(["block", "rm", &a]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{label}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pinned via {root}")),
        "{label}: {err}"
    );
    ok(&store(repo).args(["block", "stat", &a]).output().unwrap());
}

#[test]
fn cli_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    cli_checks(&repo, dir.path(), "alone");
    // --v2 cannot go to stdout.
    let out = store(&repo)
        .args([
            "car",
            "export",
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            "-o",
            "-",
            "--v2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn cli_through_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &[]);
    cli_checks(&repo, dir.path(), "daemon");

    // block ls (Kubo's refs/local) and the metrics, from the daemon
    let listed = json(
        &store(&repo)
            .args(["--json", "block", "ls"])
            .output()
            .unwrap(),
    );
    assert_eq!(listed.as_array().unwrap().len(), 13, "{listed}");
    let refs = post(&format!("{}/api/v0/refs/local", daemon.api)).lines();
    assert_eq!(refs.len(), 13);
    assert_eq!(refs[0]["Err"], "");
    let metrics = ok(&store(&repo)
        .args(["repo", "stat", "--prometheus"])
        .output()
        .unwrap())
    .stdout
    .clone();
    assert!(String::from_utf8_lossy(&metrics).contains("# TYPE"));

    // a command that needs the store closed names the daemon, and the command, and says
    // what to do
    for (args, named) in [
        (&["repo", "repair"][..], "`repo repair`"),
        (&["repo", "migrate"][..], "`repo migrate`"),
    ] {
        let out = store(&repo).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&daemon.api), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
        assert!(err.contains("stop the daemon"), "{args:?}: {err}");
    }
    let out = store(&repo)
        .args(["daemon", "--api", "127.0.0.1:0", "--gateway", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already serves"), "{err}");
    assert!(daemon.stop().success());
}

#[test]
fn block_rm_keeps_the_blocks_of_a_pinned_dag() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &[]);
    let api = format!("{}/api/v0", daemon.api);
    let blocks = dag("pinned dag", 6, 500);
    let root = blocks[0].cid().to_string();
    let leaf = blocks[3].cid().to_string();
    assert_eq!(
        post_files(&format!("{api}/dag/import"), &[&car(&blocks)]).status,
        200
    );
    let loose = post_files(&format!("{api}/block/put"), &[b"loose"]).json()["Key"]
        .as_str()
        .unwrap()
        .to_string();

    // One call: the pinned ones are refused with Kubo's reasons, the loose one goes.
    let rm = post(&format!(
        "{api}/block/rm?arg={leaf}&arg={root}&arg={loose}&force=true"
    ))
    .lines();
    assert_eq!(rm[0]["Error"], format!("pinned via {root}"), "{rm:?}");
    assert_eq!(rm[1]["Error"], "pinned: recursive", "{rm:?}");
    assert!(rm[2].get("Error").is_none(), "{rm:?}");
    assert_eq!(post(&format!("{api}/block/stat?arg={leaf}")).status, 200);
    assert_eq!(post(&format!("{api}/block/stat?arg={loose}")).status, 404);
    // The CLI through the daemon says the same.
    let out = store(&repo).args(["block", "rm", &leaf]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pinned via"));

    // Unpinned, it can go.
    assert_eq!(post(&format!("{api}/pin/rm?arg={root}")).status, 200);
    let rm = post(&format!("{api}/block/rm?arg={leaf}")).lines();
    assert!(rm[0].get("Error").is_none(), "{rm:?}");
    assert_eq!(post(&format!("{api}/block/stat?arg={leaf}")).status, 404);
    assert!(daemon.stop().success());
}
