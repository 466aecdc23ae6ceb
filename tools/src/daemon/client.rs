//! Another `ipfrs-store` while the daemon runs: the engine's directory lock keeps a second
//! process out of the store, so when the lock is held and `<repo>/api` names a daemon, the
//! command is sent to that daemon's RPC API instead (as Kubo's CLI does).
//!
//! Every command goes whole to `ipfrs/command` (see [`super::command`]): the daemon runs the
//! CLI's own code and opens the caller's files by path, so the output is the one the command
//! prints without a daemon. The exception is a command that reads stdin, which the daemon
//! cannot open: `block put` from stdin and `car import` with `-` upload the bytes to Kubo's
//! `block/put` and `dag/import` (each file all or nothing on its own, the roots pinned as
//! asked), and print those endpoints' figures. `repo repair` and `repo migrate` need the store
//! closed and fail with a message that names the daemon and says to stop it first.
//! `IPFRS_STORE_API_TOKEN` is sent as a bearer token when set.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use crate::store::cli::{BlockCommand, CarCommand, Command};
use crate::store::error::{Error, Result};
use crate::store::output::{self, Report, print};
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

/// A daemon's answer, printed as the CLI prints its own reports.
struct Forwarded {
    value: Value,
    human: String,
}

impl Serialize for Forwarded {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl Report for Forwarded {
    fn human(&self) -> String {
        self.human.clone()
    }
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

    fn call(
        &self,
        command: &str,
        query: &[(&str, String)],
        body: Option<Upload>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let payload = match body {
            None => Payload::None,
            Some(upload) => Payload::Upload(upload),
        };
        self.call_with(command, query, payload)
    }

    fn call_with(
        &self,
        command: &str,
        query: &[(&str, String)],
        body: Payload,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut url = format!("{}/{command}", self.base);
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(name);
            url.push('=');
            url.push_str(&encode(value));
        }
        let mut req = self.agent.post(&url);
        if let Some(token) = &self.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        let sent = match body {
            Payload::None => req.send_empty(),
            Payload::Upload(mut upload) => req
                .header("Content-Type", &upload.content_type())
                .send(ureq::SendBody::from_reader(&mut upload)),
            Payload::Json { body, secret } => req
                .header("Content-Type", "application/json")
                .header(command::SECRET_HEADER, &secret)
                .send(&body),
        };
        let mut response = sent.map_err(|e| daemon_error(&self.base, &e.to_string()))?;
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

    fn json(
        &self,
        command: &str,
        query: &[(&str, String)],
        body: Option<Upload>,
    ) -> Result<Vec<Value>> {
        let mut response = self.call(command, query, body)?;
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| daemon_error(&self.base, &e.to_string()))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| daemon_error(&self.base, &e.to_string())))
            .collect()
    }
}

fn daemon_error(base: &str, message: &str) -> Error {
    Error::Usage(format!("the daemon at {base}: {message}"))
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request's body.
enum Payload {
    None,
    /// A file or stdin, as multipart/form-data.
    Upload(Upload),
    /// A handed command (JSON) and the secret that lets it through.
    Json {
        body: Vec<u8>,
        secret: String,
    },
}

/// A file sent as one multipart/form-data part, streamed (never read whole into memory).
struct Upload {
    head: std::io::Cursor<Vec<u8>>,
    body: Box<dyn Read + Send>,
    tail: std::io::Cursor<Vec<u8>>,
}

const BOUNDARY: &str = "ipfrs-store-upload-boundary-5c1e";

impl Upload {
    fn new(body: Box<dyn Read + Send>) -> Upload {
        Upload {
            head: std::io::Cursor::new(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"file\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .into_bytes(),
            ),
            body,
            tail: std::io::Cursor::new(format!("\r\n--{BOUNDARY}--\r\n").into_bytes()),
        }
    }

    fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={BOUNDARY}")
    }
}

impl Read for Upload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        let n = self.body.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        self.tail.read(buf)
    }
}

fn open_input(path: Option<&Path>) -> Result<Box<dyn Read + Send>> {
    match path.filter(|p| p.as_os_str() != "-") {
        Some(p) => Ok(Box::new(
            File::open(p).map_err(|e| Error::io("cannot open", p, e))?,
        )),
        None => Ok(Box::new(std::io::stdin())),
    }
}

/// Sends `command` to the daemon: through Kubo's endpoints when one fits, else whole to
/// `ipfrs/command`. The caller has refused the commands that need the store closed.
pub fn forward(client: &Client, repo: &Repo, command: &Command, json: bool) -> Result<()> {
    match through_kubo(client, command, json) {
        Some(result) => result,
        None => hand(client, repo, command, json),
    }
}

/// `command` handed whole to the daemon's `ipfrs/command`; its stdout and stderr frames
/// copied to ours as they come, its error returned with its exit code.
fn hand(client: &Client, repo: &Repo, command: &Command, json: bool) -> Result<()> {
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
    let body = serde_json::to_vec(&handed)
        .map_err(|e| Error::Usage(format!("cannot encode the command: {e}")))?;
    let secret_path = command::secret_file(repo);
    let secret = std::fs::read_to_string(&secret_path).map_err(|e| {
        Error::io(
            "cannot hand the command to the daemon: cannot read",
            &secret_path,
            e,
        )
    })?;
    let mut response = client.call_with(
        command::PATH,
        &[],
        Payload::Json {
            body,
            secret: secret.trim().to_string(),
        },
    )?;
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

/// Whether `path` names stdin.
fn is_stdin(path: Option<&Path>) -> bool {
    path.is_none_or(|p| p.as_os_str() == "-")
}

/// Sends a command that reads stdin through Kubo's endpoints, which take the bytes as an
/// upload (the daemon cannot read the caller's stdin by path); `None` for other commands.
fn through_kubo(client: &Client, command: &Command, json: bool) -> Option<Result<()>> {
    let result = match command {
        Command::Block(BlockCommand::Put {
            file,
            cid_codec,
            mhtype,
        }) if is_stdin(file.as_deref()) => (|| {
            let body = Upload::new(open_input(file.as_deref())?);
            let query = [
                ("cid-codec", cid_codec.clone()),
                ("mhtype", mhtype.to_string()),
            ];
            let v = first(client.json("block/put", &query, Some(body))?);
            let out = json!({"cid": v["Key"], "size": v["Size"]});
            let human = format!("{}\t{}\n", str_of(&out["cid"]), out["size"]);
            print(&Forwarded { value: out, human }, json)
        })(),
        Command::Car(CarCommand::Import {
            files,
            partial: false,
            pin_roots,
        }) if files.iter().any(|f| is_stdin(Some(f))) => (|| {
            let mut reports = Vec::new();
            let mut human = String::new();
            for path in files {
                let body = Upload::new(open_input(Some(path))?);
                let query = [
                    ("pin-roots", pin_roots.to_string()),
                    ("stats", "true".into()),
                ];
                let lines = client.json("dag/import", &query, Some(body))?;
                let roots: Vec<String> = lines
                    .iter()
                    .filter_map(|l| l["Root"]["Cid"]["/"].as_str().map(str::to_string))
                    .collect();
                let stats = lines
                    .iter()
                    .find(|l| l.get("Stats").is_some())
                    .cloned()
                    .unwrap_or(Value::Null);
                let blocks = stats["Stats"]["BlockCount"].as_u64().unwrap_or(0);
                let bytes = stats["Stats"]["BlockBytesCount"].as_u64().unwrap_or(0);
                human.push_str(&format!(
                    "{}: {blocks} blocks, {}, roots {} (via the daemon)\n",
                    path.display(),
                    output::bytes(bytes),
                    roots.join(" ")
                ));
                reports
                    .push(json!({"path": path, "roots": roots, "blocks": blocks, "bytes": bytes}));
            }
            print(
                &Forwarded {
                    value: json!({"files": reports}),
                    human,
                },
                json,
            )
        })(),
        _ => return None,
    };
    Some(result)
}

fn first(mut lines: Vec<Value>) -> Value {
    if lines.is_empty() {
        Value::Null
    } else {
        lines.swap_remove(0)
    }
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}
