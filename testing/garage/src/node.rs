//! One `garage server` process: spawned with its log in a file, polled until its S3 endpoint
//! answers HTTP, killed and reaped on stop or drop; and the bounded CLI calls made against it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::config::NodeConfig;

/// How long a server may take to answer on its S3 port. A debug-built Garage opens its
/// database and answers in about a second here; the rest is room for a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one CLI call may take. Each is one RPC to a local node; a layout apply waits for
/// the other nodes' acknowledgements, still under a second on loopback.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between polls of the S3 port or of a CLI child.
const POLL: Duration = Duration::from_millis(50);

/// Lines of the server's log quoted in a start-up error.
const LOG_TAIL_LINES: usize = 30;

/// A node's configuration and, while it runs, its server process.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) config: NodeConfig,
    binary: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Writes the node's `garage.toml`; the server is not started yet.
    pub(crate) fn new(binary: &Path, config: NodeConfig) -> Result<Self, Error> {
        config.write()?;
        Ok(Self {
            config,
            binary: binary.to_path_buf(),
            child: None,
        })
    }

    /// Starts `garage server` with `args` after it and `envs` added to the environment,
    /// and waits until its S3 endpoint answers. A running server is left as it is.
    pub(crate) fn start(&mut self, args: &[&str], envs: &[(&str, &str)]) -> Result<(), Error> {
        if self.child.is_some() {
            return Ok(());
        }
        let log_path = self.config.log_path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| Error::Io {
                what: "opening the server log",
                path: log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| Error::Io {
            what: "duplicating the server log handle",
            path: log_path.clone(),
            source,
        })?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.config.path())
            .arg("server")
            .args(args)
            .envs(envs.iter().copied())
            // The log is read as text in error messages: no colour escapes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| Error::Io {
                what: "spawning garage server",
                path: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);
        if let Err(e) = self.wait_ready() {
            self.stop();
            return Err(e);
        }
        Ok(())
    }

    /// Whether the server process was started and not stopped since.
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL: a crash, not a clean shutdown) and reaps it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Both fail only when the child is already gone and reaped, which is the goal.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls the S3 port with a bare HTTP request until any HTTP answer comes back. Garage
    /// opens the port only after single-node set-up (layout, key, bucket) is done, so an
    /// answer means the bucket exists.
    fn wait_ready(&mut self) -> Result<(), Error> {
        let start = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.config.s3_port));
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Exited {
                    status,
                    log: self.config.log_path(),
                    tail: log_tail(&self.config.log_path()),
                });
            }
            if answers_http(addr) {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::NotReady {
                    endpoint: self.config.endpoint(),
                    waited: start.elapsed(),
                    log: self.config.log_path(),
                    tail: log_tail(&self.config.log_path()),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs `garage -c <this node's config> <args>` and returns its standard output. The
    /// CLI talks to this node over RPC, so the node must be running.
    pub(crate) fn cli(&self, args: &[&str]) -> Result<String, Error> {
        let shown = args.join(" ");
        // Output goes to files, not pipes, so that waiting with a time bound cannot block on
        // a full pipe.
        let out_path = self.config.dir.join("cli.out");
        let err_path = self.config.dir.join("cli.err");
        let create = |path: &Path| {
            File::create(path).map_err(|source| Error::Io {
                what: "creating a CLI output file",
                path: path.to_path_buf(),
                source,
            })
        };
        let mut child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.config.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(create(&out_path)?)
            .stderr(create(&err_path)?)
            .spawn()
            .map_err(|source| Error::Io {
                what: "spawning the garage CLI",
                path: self.binary.clone(),
                source,
            })?;
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() > COMMAND_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(source) => {
                    return Err(Error::Io {
                        what: "waiting for the garage CLI",
                        path: self.binary.clone(),
                        source,
                    });
                }
            }
        };
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        match status {
            Some(status) if status.success() => Ok(stdout),
            outcome => Err(Error::Command {
                args: shown,
                outcome: match outcome {
                    Some(status) => status.to_string(),
                    None => format!("killed after {COMMAND_TIMEOUT:?}"),
                },
                output: format!("{stderr}{stdout}"),
            }),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether something on `addr` answers a bare HTTP request with an HTTP status line.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// The last lines of a log file, or why it could not be read.
pub(crate) fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(log unreadable: {e})"),
    }
}
