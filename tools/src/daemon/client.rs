//! Another `ipfrs-store` while the daemon runs: the engine's directory lock keeps a second
//! process out of the store, so when the lock is held and `<repo>/api` names a daemon, the
//! command is sent to that daemon instead (as Kubo's CLI does).
//!
//! Every command goes whole to `ipfrs/command` (see [`super::command`]): the daemon runs the
//! CLI's own code, opens the caller's files by path and reads the caller's stdin from the
//! request body (for `block put` without a file and `car import -`), so the output is the one
//! the command prints without a daemon. `repo repair` and `repo migrate` need the store closed
//! and fail (in [`crate::store::run`]) with a message that names the daemon and says to stop
//! it first. `IPFRS_STORE_API_TOKEN` is sent as a bearer token when set.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::store::cli::{BlockCommand, CarCommand, Command};
use crate::store::error::{Error, Result};
use crate::store::repo::Repo;

use super::command::{self, Handed};
use super::run::{api_file, parse_addr};

/// The environment variable holding a bearer token for a daemon that requires one.
pub const TOKEN_ENV: &str = "IPFRS_STORE_API_TOKEN";

/// A daemon's API as a client sees it.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Client {
    /// The client of the daemon whose address is in `<repo>/api`, if that file exists.
    pub fn for_repo(repo: &Repo) -> Option<Client> {
        let text = std::fs::read_to_string(api_file(repo)).ok()?;
        let addr = parse_addr(text.trim()).ok()?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Some(Client {
            base: format!("http://{addr}/api/v0"),
            agent,
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
        })
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// POSTs `body` to `ipfrs/command` with `secret`; a non-2xx answer is an error (4xx: a
    /// usage error, as the daemon found the request at fault).
    fn post_command(
        &self,
        secret: &str,
        body: impl Read,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut req = self
            .agent
            .post(format!("{}/{}", self.base, command::PATH))
            .header("Content-Type", command::REQUEST_MEDIA_TYPE)
            .header(command::SECRET_HEADER, secret);
        if let Some(token) = &self.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        let mut body = body;
        let mut response = req
            .send(ureq::SendBody::from_reader(&mut body))
            .map_err(|e| daemon_error(&self.base, &e.to_string()))?;
        if !response.status().is_success() {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["Message"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.trim().to_string());
            return Err(if response.status().is_client_error() {
                Error::Usage(message)
            } else {
                daemon_error(&self.base, &message)
            });
        }
        Ok(response)
    }
}

fn daemon_error(base: &str, message: &str) -> Error {
    Error::Usage(format!("the daemon at {base}: {message}"))
}

/// Whether `command` reads stdin (`block put` without a file or with `-`, `car import -`).
fn reads_stdin(command: &Command) -> bool {
    let dash = |p: &Path| p.as_os_str() == "-";
    match command {
        Command::Block(BlockCommand::Put { file, .. }) => file.as_deref().is_none_or(dash),
        Command::Car(CarCommand::Import { files, .. }) => files.iter().any(|f| dash(f)),
        _ => false,
    }
}

/// Hands `command` whole to the daemon's `ipfrs/command`: its stdout and stderr frames are
/// copied to ours as they come, its error returned with its exit code. The caller has refused
/// the commands that need the store closed.
pub fn forward(client: &Client, repo: &Repo, command: &Command, json: bool) -> Result<()> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::io("cannot read the working directory", ".", e))?;
    let handed = Handed {
        command: command.clone(),
        json,
        cwd,
        user: std::env::var("USER").ok(),
        repo: repo.root().to_path_buf(),
        umask: crate::store::export::umask(),
    };
    let mut head = serde_json::to_vec(&handed)
        .map_err(|e| Error::Usage(format!("cannot encode the command: {e}")))?;
    head.push(b'\n');
    let secret_path = command::secret_file(repo);
    let secret = std::fs::read_to_string(&secret_path).map_err(|e| {
        Error::io(
            "cannot hand the command to the daemon: cannot read",
            &secret_path,
            e,
        )
    })?;
    // The command line, then (streamed, never held whole) the stdin it reads.
    let stdin: Box<dyn Read> = if reads_stdin(command) {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::io::empty())
    };
    let body = std::io::Cursor::new(head).chain(stdin);
    let mut response = client.post_command(secret.trim(), body)?;
    let mut reader = response.body_mut().as_reader();
    let mut stdout = std::io::stdout().lock();
    let mut stdout_open = true;
    let cut = |e: std::io::Error| daemon_error(client.base(), &format!("answer cut short: {e}"));
    while let Some((kind, data)) = command::read_frame(&mut reader).map_err(cut)? {
        match kind {
            command::STDOUT if stdout_open => {
                // A closed pipe (`| head`) stops our copy, not the command.
                if let Err(e) = stdout.write_all(&data).and_then(|()| stdout.flush()) {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        return Err(Error::io("cannot write to", "stdout", e));
                    }
                    stdout_open = false;
                }
            }
            command::STDERR => {
                let mut stderr = std::io::stderr().lock();
                let _ = stderr.write_all(&data).and_then(|()| stderr.flush());
            }
            command::EXIT => {
                let exit: command::Exit = serde_json::from_slice(&data)
                    .map_err(|e| daemon_error(client.base(), &format!("bad exit frame: {e}")))?;
                return match exit.error {
                    None => Ok(()),
                    Some(message) => Err(Error::Handed {
                        message,
                        code: exit.code,
                    }),
                };
            }
            _ => {}
        }
    }
    Err(daemon_error(
        client.base(),
        "answer cut short: the daemon stopped before the command ended",
    ))
}
