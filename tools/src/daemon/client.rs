//! Another `ipfrs-store` while the daemon runs: the engine's directory lock keeps a second
//! process out of the store, so when the lock is held and `<repo>/api` names a daemon, the
//! command is sent to that daemon's RPC API instead (as Kubo's CLI does). Commands it takes:
//! `block put|get|stat|rm|ls`, `car import` (each file streamed, all or nothing per file),
//! `car export` (one root, CARv1, to a file or stdout), `pin add|rm|ls`, `repo stat` (also
//! `--prometheus`), `repo gc|verify`. Others fail with a message that names the daemon and
//! says to stop it first. `IPFRS_STORE_API_TOKEN` is sent as a bearer token when set.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use crate::store::cli::{BlockCommand, CarCommand, Command, PinCommand, RepoCommand};
use crate::store::error::{Error, Result};
use crate::store::output::{self, Report, print};
use crate::store::repo::Repo;

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
            None => req.send_empty(),
            Some(mut upload) => req
                .header("Content-Type", &upload.content_type())
                .send(ureq::SendBody::from_reader(&mut upload)),
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

    /// GET of a path beside the API (`/metrics`).
    fn call_path(&self, path: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let root = self.base.trim_end_matches("/api/v0");
        let mut req = self.agent.get(&format!("{root}{path}"));
        if let Some(token) = &self.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        let response = req
            .call()
            .map_err(|e| daemon_error(&self.base, &e.to_string()))?;
        if !response.status().is_success() {
            return Err(daemon_error(
                &self.base,
                &format!("{path} answered {}", response.status()),
            ));
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

/// Sends `command` to the daemon; `None` when the daemon does not take this command (the
/// caller reports the lock error).
pub fn forward(client: &Client, command: &Command, json: bool) -> Option<Result<()>> {
    let result = match command {
        Command::Block(BlockCommand::Put {
            file,
            cid_codec,
            mhtype,
        }) => (|| {
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
        Command::Block(BlockCommand::Get { cids, output }) => (|| {
            if output.is_some() && cids.len() > 1 {
                return Err(Error::Usage(
                    "--output takes one block: give one CID, or none of --output to write the \
                     blocks one after the other to stdout"
                        .into(),
                ));
            }
            for cid in cids {
                let mut response = client.call("block/get", &[("arg", cid.clone())], None)?;
                let data = response
                    .body_mut()
                    .with_config()
                    .limit(u64::MAX)
                    .read_to_vec()
                    .map_err(|e| daemon_error(client.base(), &e.to_string()))?;
                match output {
                    Some(path) => {
                        std::fs::write(path, &data)
                            .map_err(|e| Error::io("cannot write", path, e))?;
                        let value = json!({"cid": cid, "size": data.len()});
                        print(
                            &Forwarded {
                                human: format!("{cid}\t{}\n", data.len()),
                                value,
                            },
                            json,
                        )?;
                    }
                    None => output::write_stdout(&data)?,
                }
            }
            Ok(())
        })(),
        Command::Block(BlockCommand::Stat { cids }) => (|| {
            let mut infos = Vec::new();
            for cid in cids {
                let v = first(client.json("block/stat", &[("arg", cid.clone())], None)?);
                infos.push(crate::store::block::BlockInfo {
                    cid: str_of(&v["Key"]),
                    size: v["Size"].as_u64().unwrap_or(0),
                });
            }
            crate::store::block::print_stats(infos, json)
        })(),
        Command::Block(BlockCommand::Ls) => (|| {
            let lines = client.json("refs/local", &[], None)?;
            let mut cids = Vec::with_capacity(lines.len());
            for line in &lines {
                let err = str_of(&line["Err"]);
                if !err.is_empty() {
                    return Err(daemon_error(client.base(), &err));
                }
                cids.push(str_of(&line["Ref"]));
            }
            let text = if json {
                let mut t = serde_json::to_string_pretty(&cids)
                    .map_err(|e| Error::Usage(format!("cannot render JSON: {e}")))?;
                t.push('\n');
                t
            } else {
                cids.iter().map(|c| format!("{c}\n")).collect()
            };
            output::write_stdout(text.as_bytes())
        })(),
        Command::Block(BlockCommand::Rm { cids, force }) => (|| {
            let mut query: Vec<(&str, String)> = cids.iter().map(|c| ("arg", c.clone())).collect();
            query.push(("force", force.to_string()));
            let lines = client.json("block/rm", &query, None)?;
            let mut removed = Vec::new();
            for line in &lines {
                let error = line["Error"].as_str().unwrap_or("").to_string();
                if !error.is_empty() {
                    let hash = str_of(&line["Hash"]);
                    // The same error (and exit code) as without a daemon.
                    if error.starts_with("pinned")
                        && let Ok(cid) = crate::store::error::parse_cid(&hash)
                    {
                        return Err(Error::Pinned {
                            cid: Box::new(cid),
                            reason: error,
                        });
                    }
                    return Err(Error::Usage(format!("{hash}: {error}")));
                }
                removed.push(str_of(&line["Hash"]));
            }
            let human = removed.iter().map(|c| format!("removed {c}\n")).collect();
            print(
                &Forwarded {
                    value: json!({"removed": removed, "absent": []}),
                    human,
                },
                json,
            )
        })(),
        Command::Car(CarCommand::Import {
            files,
            partial: false,
            pin_roots,
        }) => (|| {
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
        Command::Car(CarCommand::Export {
            roots,
            output,
            v2: false,
        }) if roots.len() == 1 => export(client, &roots[0], output, json),
        Command::Pin(cmd) => (|| {
            let (command, query, kind) = match cmd {
                PinCommand::Add { cids, recursive } => (
                    "pin/add",
                    with_args(cids, "recursive", *recursive),
                    kind_name(*recursive),
                ),
                PinCommand::Rm { cids, recursive } => {
                    ("pin/rm", with_args(cids, "recursive", *recursive), "")
                }
                PinCommand::Ls => ("pin/ls", vec![("stream", "true".to_string())], ""),
            };
            let lines = client.json(command, &query, None)?;
            let mut pins = Vec::new();
            for line in &lines {
                if let Some(listed) = line["Pins"].as_array() {
                    pins.extend(listed.iter().map(|c| json!({"cid": c, "type": kind})));
                } else if line.get("Cid").is_some() {
                    pins.push(json!({"cid": line["Cid"], "type": line["Type"]}));
                }
            }
            let human = pins
                .iter()
                .map(|p| format!("{} {}\n", str_of(&p["cid"]), str_of(&p["type"])))
                .collect();
            print(
                &Forwarded {
                    value: json!({"pins": pins}),
                    human,
                },
                json,
            )
        })(),
        Command::Repo(RepoCommand::Stat { prometheus: true }) => (|| {
            let mut response = client.call_path("/metrics")?;
            let text = response
                .body_mut()
                .read_to_string()
                .map_err(|e| daemon_error(client.base(), &e.to_string()))?;
            output::write_stdout(text.as_bytes())
        })(),
        Command::Repo(RepoCommand::Stat { prometheus: false }) => (|| {
            let v = first(client.json("repo/stat", &[], None)?);
            let out = json!({"repo": v["RepoPath"], "blocks": v["NumObjects"], "bytes": v["RepoSize"], "daemon": client.base()});
            let human = format!(
                "{}: {} blocks, {} (from the running daemon)\n",
                str_of(&out["repo"]),
                out["blocks"],
                output::bytes(out["bytes"].as_u64().unwrap_or(0))
            );
            print(&Forwarded { value: out, human }, json)
        })(),
        Command::Repo(RepoCommand::Gc {
            roots,
            pins: None,
            dry_run: false,
        }) if roots.is_empty() => (|| {
            // The CLI's rule: no pin at all means no gc (the daemon's own follows Kubo).
            let pinned = client.json("pin/ls", &[("stream", "true".into())], None)?;
            if pinned.is_empty() {
                return Err(Error::NoRoots);
            }
            let removed = client.json("repo/gc", &[], None)?;
            let cids: Vec<String> = removed.iter().map(|l| str_of(&l["Key"]["/"])).collect();
            let human = format!("removed {} blocks (by the running daemon)\n", cids.len());
            print(
                &Forwarded {
                    value: json!({"removed": cids.len(), "cids": cids}),
                    human,
                },
                json,
            )
        })(),
        Command::Repo(RepoCommand::Verify) => (|| {
            let lines = client.json("repo/verify", &[], None)?;
            let last = lines.last().map(|l| str_of(&l["Msg"])).unwrap_or_default();
            let clean = last.contains("all blocks validated");
            let human = format!("{last}\n");
            print(
                &Forwarded {
                    value: json!({"messages": lines, "clean": clean}),
                    human,
                },
                json,
            )?;
            if clean {
                Ok(())
            } else {
                Err(Error::Usage(last))
            }
        })(),
        _ => return None,
    };
    Some(result)
}

fn kind_name(recursive: bool) -> &'static str {
    if recursive { "recursive" } else { "direct" }
}

fn with_args(cids: &[String], flag: &'static str, value: bool) -> Vec<(&'static str, String)> {
    let mut query: Vec<(&str, String)> = cids.iter().map(|c| ("arg", c.clone())).collect();
    query.push((flag, value.to_string()));
    query
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

/// `car export` through the daemon: streamed to a temporary file beside `output`, renamed
/// over it once complete.
fn export(client: &Client, root: &str, output: &PathBuf, json: bool) -> Result<()> {
    let mut response = client.call("dag/export", &[("arg", root.to_string())], None)?;
    if output.as_os_str() == "-" {
        // stdout is the CAR; a cut stream is an error after what was written.
        let mut reader = response.body_mut().as_reader();
        let mut stdout = std::io::stdout().lock();
        std::io::copy(&mut reader, &mut stdout)
            .and_then(|_| stdout.flush())
            .map_err(|e| daemon_error(client.base(), &format!("export cut short: {e}")))?;
        return Ok(());
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| Error::io("cannot create a file in", &dir, e))?;
    crate::store::export::set_new_file_mode(temp.as_file())
        .map_err(|e| Error::io("cannot chmod", temp.path(), e))?;
    let mut reader = response.body_mut().as_reader();
    let written = std::io::copy(&mut reader, temp.as_file_mut())
        .map_err(|e| daemon_error(client.base(), &format!("export cut short: {e}")))?;
    temp.as_file_mut()
        .flush()
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| Error::io("cannot write", output, e))?;
    // A stream cut mid-way would still be a readable prefix: check it is a whole CAR.
    let blocks = crate::car::read(
        File::open(temp.path()).map_err(|e| Error::io("cannot read", temp.path(), e))?,
    )
    .map_err(|e| daemon_error(client.base(), &format!("bad CAR: {e}")))?
    .try_fold(0u64, |n, b| b.map(|_| n + 1))
    .map_err(|e| daemon_error(client.base(), &format!("bad CAR: {e}")))?;
    temp.persist(output)
        .map_err(|e| Error::io("cannot write", output, e.error))?;
    let human = format!(
        "{}: CARv1, {blocks} blocks, {} (via the daemon)\n",
        output.display(),
        output::bytes(written)
    );
    print(
        &Forwarded {
            value: json!({"output": output, "version": "v1", "roots": [root], "blocks": blocks, "bytes": written}),
            human,
        },
        json,
    )
}
