//! Shared by the daemon tests: an `ipfrs-store daemon` child on OS-chosen loopback ports
//! (killed on drop), a small blocking HTTP client, multipart bodies, and test DAGs as CARs.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipfrs_storage::{Block, Cid, Codec, HashAlgorithm};
use ipfrs_tools::car::CarWriter;

pub mod handoff;
pub mod unixfs;

/// How long a daemon may take to say it is ready (a cold, busy CI machine).
const READY_TIMEOUT: Duration = Duration::from_secs(40);

/// `ipfrs-store` with the user's environment kept out.
pub fn store(repo: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipfrs-store"));
    c.env_remove("IPFRS_STORE_REPO")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", "/nonexistent-home-for-tests")
        .arg("--repo")
        .arg(repo)
        .stdin(Stdio::null());
    c
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>` of the RPC API.
    pub api: String,
    /// `http://127.0.0.1:<port>` of the gateway.
    pub gateway: String,
    /// The repository.
    pub repo: PathBuf,
}

/// A fresh repository (2 shards) in `dir`.
pub fn init_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    let out = store(&repo)
        .args(["init", "--shards", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    repo
}

impl Daemon {
    /// Starts `ipfrs-store daemon` on port 0 for both listeners, plus `extra` arguments;
    /// returns once it printed its addresses.
    pub fn start(repo: &Path, extra: &[&str]) -> Daemon {
        let mut child = store(repo)
            .args(["daemon", "--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let rx = lines_of(child.stdout.take().unwrap());
        let mut daemon = Daemon {
            child: Some(child),
            api: String::new(),
            gateway: String::new(),
            repo: repo.to_path_buf(),
        };
        loop {
            let line = rx
                .recv_timeout(READY_TIMEOUT)
                .expect("the daemon did not become ready");
            let url = |l: &str| {
                let port = l.rsplit("/tcp/").next().unwrap();
                format!("http://127.0.0.1:{port}")
            };
            if line.starts_with("RPC API server listening on") {
                daemon.api = url(&line);
            } else if line.starts_with("Gateway server listening on") {
                daemon.gateway = url(&line);
            } else if line == "Daemon is ready" {
                return daemon;
            }
        }
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// SIGTERM, then waits for its exit.
    pub fn stop(self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` (SIGINT: Ctrl-C), then waits for its exit.
    pub fn stop_with(mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lines a child prints on `stdout`, read on a thread of their own so that a wait for
/// one can time out.
pub fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A blocking client that returns every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(50)))
        .build()
        .into()
}

/// A response: status, headers we look at, body.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header values by lower-case name.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as newline-delimited JSON.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn reply(mut r: ureq::http::Response<ureq::Body>) -> Reply {
    let headers = r
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap_or_default();
    Reply {
        status: r.status().as_u16(),
        headers,
        body,
    }
}

/// POST with no body.
pub fn post(url: &str) -> Reply {
    reply(agent().post(url).send_empty().unwrap())
}

/// POST a multipart body with one `file` part per item.
pub fn post_files(url: &str, files: &[&[u8]]) -> Reply {
    let (content_type, body) = multipart(files);
    reply(
        agent()
            .post(url)
            .header("Content-Type", &content_type)
            .send(&body[..])
            .unwrap(),
    )
}

/// GET with extra headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().get(url);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    reply(req.call().unwrap())
}

/// HEAD.
pub fn head(url: &str) -> Reply {
    reply(agent().head(url).call().unwrap())
}

/// The boundary our multipart bodies use.
pub const BOUNDARY: &str = "ipfrs-test-boundary-7d2f";

/// A multipart/form-data body (as Kubo clients send files); returns (Content-Type, body).
pub fn multipart(files: &[&[u8]]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for data in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"file\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// A dag-cbor node linking to `links`.
pub fn cbor_node(tag: &str, links: &[Cid]) -> Block {
    use ipld_core::ipld::Ipld;
    let value = Ipld::Map(
        [
            ("tag".to_string(), Ipld::String(tag.into())),
            (
                "links".to_string(),
                Ipld::List(links.iter().map(|c| Ipld::Link(*c)).collect()),
            ),
        ]
        .into_iter()
        .collect(),
    );
    let bytes = serde_ipld_dagcbor::to_vec(&value).unwrap();
    Block::with(Codec::DagCbor, HashAlgorithm::Sha2_256, bytes).unwrap()
}

/// A DAG: root -> `width` raw leaves of `leaf_bytes` each; blocks root first.
pub fn dag(tag: &str, width: usize, leaf_bytes: usize) -> Vec<Block> {
    let leaves: Vec<Block> = (0..width)
        .map(|i| {
            let mut data = format!("{tag} leaf {i} ").into_bytes();
            data.resize(leaf_bytes.max(data.len()), b'x');
            Block::new(data).unwrap()
        })
        .collect();
    let cids: Vec<Cid> = leaves.iter().map(|b| *b.cid()).collect();
    let mut all = vec![cbor_node(tag, &cids)];
    all.extend(leaves);
    all
}

/// A CARv1 of `blocks` with the first as root.
pub fn car(blocks: &[Block]) -> Vec<u8> {
    let mut w = CarWriter::new(Vec::new(), &[*blocks[0].cid()]).unwrap();
    for b in blocks {
        w.write_block(b.cid(), b.data()).unwrap();
    }
    w.finish().unwrap()
}

/// The roots and blocks of a CAR, in order, every block checked against its CID.
pub fn read_car(bytes: &[u8]) -> (Vec<Cid>, Vec<Block>) {
    let reader = ipfrs_tools::car::read(bytes).unwrap();
    let roots = reader.header().roots.clone();
    let blocks = reader.map(|b| b.unwrap()).collect();
    (roots, blocks)
}

/// A CARv1 of `blocks` under `root`.
pub fn car_under(root: &Cid, blocks: &[Block]) -> Vec<u8> {
    let mut w = CarWriter::new(Vec::new(), &[*root]).unwrap();
    for b in blocks {
        w.write_block(b.cid(), b.data()).unwrap();
    }
    w.finish().unwrap()
}

/// The folder of the daemon tests' npm packages (tools/js/daemon), installed by
/// scripts/ensure-node-packages-daemon (reused when present, bounded to 45 s so a test stays
/// under a minute); `None`, after saying the test named `test` is skipped and why, only
/// where node or npm is absent.
pub fn node_packages(test: &str) -> Option<PathBuf> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-node-packages-daemon");
    let install = Command::new("bash")
        .arg(&script)
        .env(
            "ENSURE_NODE_PACKAGES_TIMEOUT",
            std::env::var("ENSURE_NODE_PACKAGES_TIMEOUT").unwrap_or_else(|_| "45".into()),
        )
        .output()
        .unwrap();
    if install.status.code() == Some(3) {
        eprintln!(
            "SKIPPED {test}: {}",
            String::from_utf8_lossy(&install.stderr).trim()
        );
        return None;
    }
    assert!(
        install.status.success(),
        "installing the npm packages failed: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let folder = String::from_utf8(install.stdout).unwrap();
    Some(PathBuf::from(folder.trim()))
}

/// The output of `child` (stdout and stderr piped), read while it runs so a large output
/// cannot fill a pipe; the child is killed and the test fails if it runs over `limit`.
pub fn output_within(child: std::process::Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: our own child, by its pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} ran over {limit:?}");
        }
    }
}
