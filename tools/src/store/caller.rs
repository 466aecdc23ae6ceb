//! [`Caller`]: the process a command runs for, seen from the code that runs it.
//!
//! A command's body runs either in the `ipfrs-store` process that parsed it (over the engine
//! it opened) or in a running daemon that was handed the command (over the engine the daemon
//! holds, see `daemon::command`). What differs between the two is only where the command's
//! stdin comes from and its output goes, against which directory its relative paths resolve,
//! who runs it and with which umask; all of that is here, so the command bodies are the same
//! code in both places and print the same bytes.
//!
//! Paths stay as the user wrote them in everything a command prints (`version checkout -o
//! m.safetensors` reports `m.safetensors` in both places); only the file system calls go
//! through [`Caller::path`]. Error messages may name the resolved (absolute) path when the
//! daemon ran the command.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::output::Report;
use super::repo::Repo;

/// Where a command's output goes and how its paths and defaults resolve.
pub struct Caller<'a> {
    out: Box<dyn Write + Send + 'a>,
    err: Box<dyn Write + Send + 'a>,
    /// The caller's working directory when the command runs in another process (the
    /// daemon), absolute; `None` in the caller's own process, where relative paths already
    /// resolve against it.
    cwd: Option<PathBuf>,
    /// The caller's login name ($USER), the default author of commits.
    user: Option<String>,
    /// The repository as the caller named it (`--repo`), when another process runs the
    /// command: what reports show, where that process may know it by another name.
    repo: Option<PathBuf>,
    /// The caller's stdin: this process's, or what the caller sent with the command.
    stdin: Option<Box<dyn Read + Send>>,
    /// The caller's umask when another process runs the command: files it creates get the
    /// mode they would get in the caller's process.
    umask: Option<u32>,
}

impl<'a> Caller<'a> {
    /// The current process: stdout, stderr, its working directory, $USER, its stdin.
    pub fn this_process() -> Caller<'static> {
        Caller {
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
            cwd: None,
            user: std::env::var("USER").ok(),
            repo: None,
            stdin: None,
            umask: None,
        }
    }

    /// Another process: output to `out` and `err`, relative paths against `cwd` (which must
    /// be absolute), `user` as $USER, `repo` the repository as it named it, `umask` its
    /// umask, `stdin` what it sent as its stdin.
    pub fn remote(
        out: Box<dyn Write + Send + 'a>,
        err: Box<dyn Write + Send + 'a>,
        cwd: PathBuf,
        user: Option<String>,
        repo: PathBuf,
        umask: u32,
        stdin: Box<dyn Read + Send>,
    ) -> Result<Caller<'a>> {
        if !cwd.is_absolute() {
            return Err(Error::Usage(format!(
                "the caller's working directory {} is not absolute",
                cwd.display()
            )));
        }
        Ok(Caller {
            out,
            err,
            cwd: Some(cwd),
            user,
            repo: Some(repo),
            stdin: Some(stdin),
            umask: Some(umask & 0o777),
        })
    }

    /// `path` as the file system must see it: relative paths against the caller's working
    /// directory. `-` (stdin/stdout) is left alone.
    pub fn path(&self, path: &Path) -> PathBuf {
        match &self.cwd {
            Some(cwd) if path.as_os_str() != "-" => cwd.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The repository's directory as the caller named it (`repo`'s own when it runs here).
    pub fn repo_root(&self, repo: &Repo) -> PathBuf {
        self.repo
            .clone()
            .unwrap_or_else(|| repo.root().to_path_buf())
    }

    /// The caller's login name, else "unknown": who a commit is by when --author is not
    /// given.
    pub fn user(&self) -> String {
        self.user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".into())
    }

    /// The caller's stdin. Read twice (`car import - -`), the second read finds it at its
    /// end, as this process's own stdin would be.
    pub fn stdin(&mut self) -> Box<dyn Read + Send> {
        match &mut self.stdin {
            None => Box::new(std::io::stdin()),
            Some(sent) => std::mem::replace(sent, Box::new(std::io::empty())),
        }
    }

    /// The mode `open(2)` gives a new file in the caller's process: 0666 less its umask.
    pub fn new_file_mode(&self) -> u32 {
        0o666 & !self.umask.unwrap_or_else(super::export::umask)
    }

    /// Gives `path`, a file the command has just created (by path, so with this process's
    /// umask), the mode it would have got in the caller's process. Nothing to do there.
    pub fn adopt_new_file(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if self.umask.is_none() {
            return Ok(());
        }
        let path = self.path(path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(self.new_file_mode()))
            .map_err(|e| Error::io("cannot chmod", &path, e))
    }

    /// The command's stdout.
    pub fn out(&mut self) -> &mut (dyn Write + Send + 'a) {
        &mut *self.out
    }

    /// Prints a report in the chosen form (text, or pretty JSON with `json`).
    pub fn print(&mut self, report: &impl Report, json: bool) -> Result<()> {
        let text = if json {
            let mut text = serde_json::to_string_pretty(report)
                .map_err(|e| Error::Usage(format!("cannot render JSON: {e}")))?;
            text.push('\n');
            text
        } else {
            report.human()
        };
        self.write(text.as_bytes())
    }

    /// Writes bytes to stdout; a closed pipe (`| head`) is not an error worth a message.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self.out.write_all(bytes).and_then(|()| self.out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(Error::io("cannot write to", "stdout", e))
            }
            _ => Ok(()),
        }
    }

    /// A line on stderr (`ipfrs-store: note: ...` and the like), for people.
    pub fn note(&mut self, line: &str) {
        // stderr gone (a closed terminal) leaves nobody to tell.
        let _ = writeln!(self.err, "{line}").and_then(|()| self.err.flush());
    }
}
