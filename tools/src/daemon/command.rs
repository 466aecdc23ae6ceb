//! `POST /api/v0/ipfrs/command`: an `ipfrs-store` command handed to the daemon whole, run by
//! the same code as without a daemon ([`crate::store::dispatch`]) over the engine the daemon
//! holds. Kubo's endpoints serve the commands they have a shape for (see `client`); this one
//! serves the rest (`version ...`, `repo compact`, `repo gc` with roots, a pins file or
//! `--dry-run`, `car import --partial`, `car export` of several roots or CARv2), and its
//! output is byte for byte what the command prints without a daemon.
//!
//! Files a command reads or writes (`version commit FILE`, `version checkout -o FILE`, `car
//! export -o FILE`) are opened by the daemon itself, by path: the request carries the caller's
//! working directory (absolute) and relative paths resolve against it, so the files are the
//! caller's on this machine; its stdin comes in the request. That is why the endpoint answers loopback peers only (a remote
//! client with a token must not make the daemon read or write its files), only for the
//! repository the daemon serves, and only to a caller that can read the repository's
//! `api.secret` (written 0600 by the daemon at start, sent back in [`SECRET_HEADER`]): another
//! user of this machine reaches the loopback port too, but must not get the daemon to open
//! files with the daemon's rights.
//!
//! The request body is a [`Handed`] as one line of JSON, then the caller's stdin when the
//! command reads it (`block put` without a file, `car import -`), streamed to the command as
//! it reads. The answer (200) is a sequence of frames, each
//! one kind byte, a big-endian u32 length and that many bytes: [`STDOUT`] and [`STDERR`]
//! frames in the order the command wrote them, then one [`EXIT`] frame holding an
//! [`Exit`] as JSON. A body that ends without the exit frame was cut short.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::store::caller::Caller;
use crate::store::cli::Command;
use crate::store::error::Error as CliError;
use crate::store::repo::Repo;

use super::error::{Error, Result};
use super::http::{self, Body, ChannelReader};
use super::node::Node;

/// The endpoint's path below `/api/v0/`.
pub const PATH: &str = "ipfrs/command";
/// The request's media type: the [`Handed`] command as one line of JSON, then the stdin
/// the command reads (nothing for a command that reads none).
pub const REQUEST_MEDIA_TYPE: &str = "application/vnd.ipfrs.command";
/// The answer's media type.
pub const MEDIA_TYPE: &str = "application/vnd.ipfrs.command-output";
/// A frame of bytes the command wrote to its stdout.
pub const STDOUT: u8 = 1;
/// A frame of bytes the command wrote to its stderr.
pub const STDERR: u8 = 2;
/// The last frame: the command's [`Exit`].
pub const EXIT: u8 = 3;

/// The request header carrying the contents of `<repo>/api.secret`.
pub const SECRET_HEADER: &str = "X-Ipfrs-Command-Secret";

/// The file holding the secret a caller of this endpoint must send.
pub fn secret_file(repo: &Repo) -> PathBuf {
    repo.root().join("api.secret")
}

/// Draws a new secret and writes it to [`secret_file`], readable by the owner only (a file
/// left by a daemon that was killed is replaced, not reused).
pub fn write_secret(repo: &Repo) -> std::result::Result<String, CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = secret_file(repo);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(CliError::io("cannot replace", &path, e));
        }
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(secret.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| CliError::io("cannot write", &path, e))?;
    Ok(secret)
}

/// Largest request body: a parsed command line, so a few KB in practice.
const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// Largest frame: bigger writes are split, so a reader never buffers more than this.
pub const MAX_FRAME: usize = 1 << 20;

/// A command as the caller parsed it, and what it needs of the caller's side.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handed {
    /// The subcommand and its arguments, paths as the user wrote them.
    pub command: Command,
    /// `--json`.
    pub json: bool,
    /// The caller's working directory (absolute): relative paths resolve against it.
    pub cwd: PathBuf,
    /// The caller's $USER (a commit's default author).
    pub user: Option<String>,
    /// The repository as the caller named it (`--repo`, maybe relative to `cwd`).
    pub repo: PathBuf,
    /// The caller's umask: the files the command creates get the caller's mode.
    pub umask: u32,
}

/// How the command ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct Exit {
    /// `None` on success, else the error's one-line text as `ipfrs-store` prints it.
    pub error: Option<String>,
    /// The process exit code the caller exits with (0, 1 or 2).
    pub code: u8,
}

/// Answers one handed command from `peer`, which must send `secret`, and its request body
/// without pausing longer than `idle` and at most `stdin_limit` bytes of stdin.
pub async fn handle(
    node: Arc<Node>,
    req: Request<Incoming>,
    peer: Option<SocketAddr>,
    secret: &str,
    idle: Duration,
    stdin_limit: u64,
) -> Result<Response<Body>> {
    if !peer.is_some_and(|p| p.ip().is_loopback()) {
        return Err(Error::Forbidden(
            "ipfrs/command opens the caller's files by path, so only clients on this machine \
             (loopback) may call it"
                .into(),
        ));
    }
    let sent = req
        .headers()
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok());
    // Compared as the API's bearer tokens are: no timing hint of a matching prefix.
    if !sent.is_some_and(|sent| super::auth::constant_time_eq(sent.as_bytes(), secret.as_bytes())) {
        return Err(Error::Forbidden(format!(
            "ipfrs/command needs the {SECRET_HEADER} header holding <repo>/api.secret (only \
             whoever can read the repository may hand it commands)"
        )));
    }
    // The command up to the first newline; what follows is the caller's stdin.
    let mut chunks = Box::pin(http::body_stream(req.into_body(), idle, stdin_limit));
    let mut head = Vec::new();
    let rest = loop {
        // A body without the newline is a command with no stdin.
        let Some(chunk) = futures_lite::StreamExt::next(&mut chunks).await else {
            break Bytes::new();
        };
        let chunk = chunk?;
        if let Some(at) = chunk.iter().position(|b| *b == b'\n') {
            head.extend_from_slice(&chunk[..at]);
            break chunk.slice(at + 1..);
        }
        head.extend_from_slice(&chunk);
        if head.len() as u64 > MAX_REQUEST_BYTES {
            return Err(Error::TooLarge(format!(
                "a handed command over {MAX_REQUEST_BYTES} bytes"
            )));
        }
    };
    let body = head;
    let handed: Handed = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("not a handed command: {e}")))?;
    if let Some((name, _)) = crate::store::needs_closed_store(&handed.command) {
        return Err(Error::BadRequest(format!(
            "`{name}` cannot run while the daemon holds the store"
        )));
    }
    if !handed.cwd.is_absolute() {
        return Err(Error::BadRequest(
            "cwd must be an absolute directory".into(),
        ));
    }
    let theirs = handed.cwd.join(&handed.repo);
    if !same_dir(&theirs, node.repo().root()) {
        return Err(Error::BadRequest(format!(
            "this daemon serves {}, not {}",
            node.repo().root().display(),
            theirs.display()
        )));
    }
    // The stdin the command reads, pumped from the request body as the command asks.
    let (stdin_tx, stdin_rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut next = Some(Ok(rest));
        while let Some(chunk) = next {
            let chunk = chunk.map_err(|e: Error| io::Error::other(http::one_line(&e)));
            if stdin_tx.send(chunk).await.is_err() {
                break; // the command is done with it
            }
            next = futures_lite::StreamExt::next(&mut chunks).await;
        }
    });
    let stdin = Box::new(ChannelReader::new(stdin_rx));
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || run(&node, handed, stdin, tx));
    let mut response = Response::new(http::channel_body(rx));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    Ok(response)
}

/// Whether two paths name one directory (symlinks and `..` resolved).
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Runs the command on this (blocking) thread, its output framed into `tx`, then the exit.
fn run(
    node: &Node,
    handed: Handed,
    stdin: Box<dyn Read + Send>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    // This blocking thread is the pool's: no bar may draw on the daemon's terminal.
    let _quiet = crate::store::progress::hide_on_this_thread();
    let out = Box::new(FrameWriter::new(STDOUT, tx.clone()));
    let err = Box::new(FrameWriter::new(STDERR, tx.clone()));
    let result = Caller::remote(
        out,
        err,
        handed.cwd,
        handed.user,
        handed.repo,
        handed.umask,
        stdin,
    )
    .and_then(|mut caller| {
        // A panic in a command must still end the answer with an error, not a cut stream
        // the client would report as a lost daemon.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::store::dispatch(node, handed.command, handed.json, false, &mut caller)
        }))
        .unwrap_or_else(|_| {
            Err(CliError::Daemon(Box::new(Error::Internal(
                "the command panicked in the daemon".into(),
            ))))
        })
    });
    let exit = match result {
        Ok(()) => Exit {
            error: None,
            code: 0,
        },
        Err(e) => Exit {
            error: Some(http::one_line(&e)),
            code: e.exit_code(),
        },
    };
    // The caller went away: nobody is left to tell.
    let _ = FrameWriter::new(EXIT, tx).write_all(&serde_json::to_vec(&exit).unwrap_or_default());
}

/// A `Write` whose every write becomes frames of one kind sent to an async response body.
struct FrameWriter {
    kind: u8,
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl FrameWriter {
    fn new(kind: u8, tx: mpsc::Sender<io::Result<Bytes>>) -> FrameWriter {
        FrameWriter { kind, tx }
    }
}

impl Write for FrameWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(MAX_FRAME);
        let mut frame = Vec::with_capacity(5 + n);
        frame.push(self.kind);
        // n <= MAX_FRAME, far below u32::MAX.
        frame.extend_from_slice(&(n as u32).to_be_bytes());
        frame.extend_from_slice(&data[..n]);
        self.tx
            .blocking_send(Ok(Bytes::from(frame)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the caller went away"))?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the next frame of an answer: `None` at the end of the body.
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    let mut data = vec![0; len];
    input.read_exact(&mut data)?;
    Ok(Some((head[0], data)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn frames_read_back_as_written_and_a_cut_one_is_an_error() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut w = FrameWriter::new(STDOUT, tx.clone());
        w.write_all(b"hello").unwrap();
        FrameWriter::new(EXIT, tx).write_all(b"{}").unwrap();
        let mut wire = Vec::new();
        while let Ok(Ok(chunk)) = rx.try_recv() {
            wire.extend_from_slice(&chunk);
        }
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some((EXIT, b"{}".to_vec())));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let mut cut = &wire[..7];
        assert!(read_frame(&mut cut).is_err());
    }
}
