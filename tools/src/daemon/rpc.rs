//! The Kubo RPC subset: `/api/v0/...`, POST only (and `/metrics`, the engine's metrics in
//! the Prometheus text format, for scrapers' GETs), Kubo's parameters and JSON shapes, so Kubo
//! clients (`kubo-rpc-client`, `ipfs --api`) work unchanged.
//!
//! Errors are Kubo's `{"Message": ..., "Code": 0|1, "Type": "error"}` with a 4xx status when
//! the request is at fault (code 1, Kubo's client error) and 5xx when the store is. Streamed
//! outputs (`dag/export`, `repo/gc`, `block/rm`, `pin/ls?stream=true`) are newline-delimited
//! JSON or raw bytes as Kubo sends them; an error after the status was sent cuts the stream
//! short (and, for `dag/export` to a client that sent `TE: trailers`, is told in Kubo's
//! `X-Stream-Error` trailer).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ipfrs_storage::{Block, BlockStore, Cid, Codec, HashAlgorithm, MetadataStore};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::car::links;
use crate::store::block::parse_codec;
use crate::store::dag::{self, OnMissing};
use crate::store::error::parse_cid;

use super::auth::Authorizations;
use super::car_stream;
use super::command;
use super::error::{Error, Result};
use super::http::{self, Body, ChannelReader, ChannelWriter, Query};
use super::limits::Limits;
use super::node::Node;
use super::pins::{self, PinKind};
use super::server::Peer;

/// What the RPC handlers share.
pub struct Rpc {
    /// The store.
    pub node: Arc<Node>,
    /// Who may call (None: anyone who can connect, i.e. loopback).
    pub auth: Option<Authorizations>,
    /// Body sizes and timeouts.
    pub limits: Limits,
    /// `id`'s peer ID.
    pub peer_id: String,
    /// What callers of `ipfrs/command` must send (see [`command::write_secret`]).
    pub command_secret: String,
}

/// Kubo's largest block without `allow-big-block` (what bitswap peers accept).
const SOFT_BLOCK_LIMIT: usize = 1 << 20;
/// Kubo's protocol version string, as `id` reports it.
const PROTOCOL_VERSION: &str = "ipfs/0.1.0";
/// The repository version `version` and `repo/stat` report (Kubo's fs-repo number).
const REPO_VERSION: &str = "16";

impl Rpc {
    /// Answers one request; never fails (errors become Kubo error replies).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        if let Some(auth) = &self.auth
            && let Err(reply) = auth.check(&req, &path)
        {
            return reply;
        }
        if path == "/metrics" {
            return self.metrics().await.unwrap_or_else(|e| error(&e));
        }
        if !path.starts_with("/api/v0/") {
            return error_reply(
                StatusCode::NOT_FOUND,
                &format!("404 page not found: {path}"),
            );
        }
        if req.method() != Method::POST {
            // As Kubo: every RPC call is a POST (browsers cannot be tricked into GETs).
            return error_reply(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("405 - Method Not Allowed: use POST for {path}"),
            );
        }
        let query = match Query::parse(req.uri().query()) {
            Ok(q) => q,
            Err(e) => return error(&e),
        };
        let command = &path["/api/v0/".len()..];
        let result = match command {
            "block/put" => self.block_put(&query, req).await,
            "block/get" => self.block_get(&query).await,
            "block/stat" => self.block_stat(&query).await,
            "block/rm" => self.block_rm(&query).await,
            "dag/import" => self.dag_import(&query, req).await,
            "dag/export" => self.dag_export(&query, http::wants_trailers(&req)).await,
            "pin/add" => self.pin_add(&query).await,
            "pin/rm" => self.pin_rm(&query).await,
            "pin/ls" => self.pin_ls(&query).await,
            "repo/stat" => self.repo_stat(&query).await,
            "repo/gc" => self.repo_gc(&query).await,
            "repo/verify" => self.repo_verify().await,
            "refs/local" => Ok(self.refs_local()),
            command::PATH => {
                let peer = req.extensions().get::<Peer>().map(|p| p.0);
                let (idle, limit) = (self.limits.body_idle, self.limits.max_import_bytes);
                let secret = &self.command_secret;
                command::handle(self.node.clone(), req, peer, secret, idle, limit).await
            }
            "id" => Ok(self.id()),
            "version" => Ok(version()),
            _ => Err(Error::NotFound(format!("unknown command {command:?}"))),
        };
        result.unwrap_or_else(|e| error(&e))
    }

    async fn block_put(&self, query: &Query, req: Request<Incoming>) -> Result<Response<Body>> {
        let mut parts = None;
        let result = self.block_put_parts(query, req, &mut parts).await;
        drain_on_error(result, parts).await
    }

    async fn block_put_parts(
        &self,
        query: &Query,
        req: Request<Incoming>,
        slot: &mut Option<multer::Multipart<'static>>,
    ) -> Result<Response<Body>> {
        let codec = parse_codec(query.get("cid-codec").unwrap_or("raw"))?;
        let mhtype: HashAlgorithm = query
            .get("mhtype")
            .unwrap_or("sha2-256")
            .parse()
            .map_err(Error::BadRequest)?;
        let pin = query.flag("pin", false)?;
        // Kubo's rule: blocks over 1 MiB cannot travel over bitswap, so they need
        // allow-big-block; never past the store's own limit.
        let store_max = self.node.engine().config().max_block_size;
        let max = if query.flag("allow-big-block", false)? {
            store_max
        } else {
            store_max.min(SOFT_BLOCK_LIMIT)
        };
        let parts = slot.insert(self.multipart(req, max as u64 + self.limits.multipart_overhead)?);
        let mut out = String::new();
        while let Some(mut field) = parts.next_field().await.map_err(multipart_error)? {
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if data.len() + chunk.len() > max {
                    return Err(Error::BadRequest(if max < store_max {
                        format!(
                            "produced block is over {max} bytes: pass allow-big-block=true \
                             (up to the store's max_block_size of {store_max})"
                        )
                    } else {
                        format!("block over the store's max_block_size of {max} bytes")
                    }));
                }
                data.extend_from_slice(&chunk);
            }
            let raw = Block::with(Codec::Raw, mhtype, data).map_err(block_error)?;
            let (raw_cid, data) = raw.into_parts();
            let cid = Cid::new_v1(codec, *raw_cid.hash());
            let block = Block::from_parts(cid, data).map_err(block_error)?;
            // A block labelled dag-pb or dag-cbor must decode, or export and gc could not
            // follow its links.
            links(block.cid(), block.data()).map_err(|e| Error::BadRequest(http::one_line(&e)))?;
            self.node.put_block(&block, pin).await?;
            out.push_str(&json!({"Key": cid.to_string(), "Size": block.len()}).to_string());
            out.push('\n');
        }
        if out.is_empty() {
            return Err(Error::BadRequest("no file in the request body".into()));
        }
        Ok(json_lines(out))
    }

    async fn block_get(&self, query: &Query) -> Result<Response<Body>> {
        let cid = parse_cid(query.arg()?)?;
        let data = self
            .node
            .engine()
            .get(&cid)
            .await?
            .ok_or_else(|| not_found(&cid))?;
        let mut response = Response::new(http::full(data));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(response)
    }

    async fn block_stat(&self, query: &Query) -> Result<Response<Body>> {
        let cid = parse_cid(query.arg()?)?;
        let size = self
            .node
            .engine()
            .get_size(&cid)
            .await?
            .ok_or_else(|| not_found(&cid))?;
        Ok(http::json(
            StatusCode::OK,
            &json!({"Key": cid.to_string(), "Size": size}),
        ))
    }

    async fn block_rm(&self, query: &Query) -> Result<Response<Body>> {
        let force = query.flag("force", false)?;
        let quiet = query.flag("quiet", false)?;
        let cids = query
            .all("arg")
            .into_iter()
            .map(parse_cid)
            .collect::<crate::store::error::Result<Vec<_>>>()?;
        if cids.is_empty() {
            return Err(Error::BadRequest("argument \"arg\" is required".into()));
        }
        let node = self.node.clone();
        let out = blocking(move || {
            // A removal is gc's kind of write: no pin may be added while the pins are
            // checked and the blocks go.
            let _exclusive = node.gc_lock().blocking_gc();
            let engine = node.engine();
            // As Kubo: a pinned block, or one inside a recursively pinned DAG, is not
            // removed, whatever --force says.
            let pinned = super::gc::pin_reasons(node.repo(), engine, &cids)?;
            let mut out = String::new();
            for cid in cids {
                let error = if let Some(reason) = pinned.get(&ipfrs_storage::key::key_of(&cid)) {
                    reason.clone()
                } else if futures_lite::future::block_on(engine.delete(&cid))? || force {
                    String::new()
                } else {
                    format!("ipld: could not find {cid}")
                };
                // Kubo omits an empty Error (`omitempty`): kubo-rpc-client turns any Error
                // field, even "", into an error.
                let line = if error.is_empty() {
                    json!({"Hash": cid.to_string()})
                } else {
                    json!({"Hash": cid.to_string(), "Error": error})
                };
                if !quiet || !error.is_empty() {
                    out.push_str(&line.to_string());
                    out.push('\n');
                }
            }
            Ok(out)
        })
        .await?;
        Ok(json_lines(out))
    }

    async fn dag_import(&self, query: &Query, req: Request<Incoming>) -> Result<Response<Body>> {
        let mut parts = None;
        let result = self.dag_import_parts(query, req, &mut parts).await;
        drain_on_error(result, parts).await
    }

    async fn dag_import_parts(
        &self,
        query: &Query,
        req: Request<Incoming>,
        slot: &mut Option<multer::Multipart<'static>>,
    ) -> Result<Response<Body>> {
        let pin_roots = query.flag("pin-roots", true)?;
        let stats = query.flag("stats", false)?;
        let silent = query.flag("silent", false)?;
        let parts = slot.insert(self.multipart(req, self.limits.max_import_bytes)?);
        let (mut roots, mut blocks, mut bytes) = (Vec::new(), 0u64, 0u64);
        while let Some(mut field) = parts.next_field().await.map_err(multipart_error)? {
            // The import reads on a plain thread (it hashes on several): the body reaches it
            // through a small channel, so memory stays bounded and a slow import slows the
            // upload rather than buffering it.
            let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
            let node = self.node.clone();
            let import = tokio::task::spawn_blocking(move || {
                node.import_car(ChannelReader::new(rx), pin_roots)
            });
            let mut upload: Result<()> = Ok(());
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        if tx.send(Ok(chunk)).await.is_err() {
                            break; // the import stopped early; its error says why
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let e = multipart_error(e);
                        // The import sees a read error and rolls back: nothing of a cut
                        // upload is kept.
                        let _ = tx
                            .send(Err(io::Error::other(format!("upload failed: {e}"))))
                            .await;
                        upload = Err(e);
                        break;
                    }
                }
            }
            drop(tx);
            let imported = import
                .await
                .map_err(|e| Error::Internal(format!("import task: {e}")))?;
            upload?;
            let imported = imported?;
            blocks += imported.blocks;
            bytes += imported.bytes;
            roots.extend(imported.roots);
        }
        let mut out = String::new();
        if !silent {
            for root in &roots {
                if pin_roots {
                    out.push_str(
                        &json!({"Root": {"Cid": {"/": root.cid}, "PinErrorMsg": root.error}})
                            .to_string(),
                    );
                    out.push('\n');
                }
            }
            if stats {
                out.push_str(
                    &json!({"Stats": {"BlockCount": blocks, "BlockBytesCount": bytes}}).to_string(),
                );
                out.push('\n');
            }
        }
        Ok(json_lines(out))
    }

    /// `dag/export`: the CARv1 of the DAG, streamed. A block missing mid-way cuts the
    /// stream; a client that sent `TE: trailers` also gets Kubo's `X-Stream-Error` trailer.
    async fn dag_export(&self, query: &Query, trailers: bool) -> Result<Response<Body>> {
        let root = parse_cid(query.arg()?)?;
        // 404 before the 200: once streaming starts, a missing block can only cut it short.
        if !self.node.engine().has(&root).await? {
            return Err(not_found(&root));
        }
        Ok(car_stream::response(
            self.node.clone(),
            vec![root],
            trailers,
            "application/vnd.ipld.car",
            move |node, car| {
                // Depth first, each block once, as `car export` writes it.
                dag::walk(node.engine(), &[root], OnMissing::Fail, |cid, data| {
                    car.write_block(cid, data)
                        .map_err(|e| crate::store::error::Error::Usage(format!("write: {e}")))
                })?;
                Ok(())
            },
        ))
    }

    async fn pin_add(&self, query: &Query) -> Result<Response<Body>> {
        let recursive = query.flag("recursive", true)?;
        let cids = args(query)?;
        let node = self.node.clone();
        let added = cids.clone();
        blocking(move || {
            for cid in &added {
                node.pin_add(cid, recursive)?;
            }
            Ok(())
        })
        .await?;
        let pins: Vec<String> = cids.iter().map(ToString::to_string).collect();
        Ok(http::json(StatusCode::OK, &json!({ "Pins": pins })))
    }

    async fn pin_rm(&self, query: &Query) -> Result<Response<Body>> {
        let recursive = query.flag("recursive", true)?;
        let cids = args(query)?;
        for cid in &cids {
            self.node.pin_rm(cid, recursive).await?;
        }
        let pins: Vec<String> = cids.iter().map(ToString::to_string).collect();
        Ok(http::json(StatusCode::OK, &json!({ "Pins": pins })))
    }

    async fn pin_ls(&self, query: &Query) -> Result<Response<Body>> {
        let kind = query.get("type").unwrap_or("all");
        let wanted: &[&str] = match kind {
            "all" => &["direct", "recursive"],
            "direct" => &["direct"],
            "recursive" => &["recursive"],
            // Blocks below recursive pins are not listed one by one.
            "indirect" => &[],
            other => {
                return Err(Error::BadRequest(format!(
                    "invalid type {other:?}, must be one of {{direct, indirect, recursive, all}}"
                )));
            }
        };
        let stream = query.flag("stream", false)?;
        let quiet = query.flag("quiet", false)?;
        let filter = query
            .all("arg")
            .into_iter()
            .map(parse_cid)
            .collect::<crate::store::error::Result<Vec<_>>>()?;
        let mut listed: Vec<(String, PinKind)> = Vec::new();
        if filter.is_empty() {
            for pin in pins::ls(self.node.engine()).await? {
                listed.push((pin.cid.to_string(), pin.kind));
            }
        } else {
            for cid in &filter {
                match pins::get(self.node.engine(), cid).await? {
                    Some(kind) => listed.push((cid.to_string(), kind)),
                    None => return Err(Error::BadRequest(format!("path '{cid}' is not pinned"))),
                }
            }
        }
        listed.retain(|(_, kind)| wanted.contains(&kind.name()));
        if stream {
            let mut out = String::new();
            for (cid, kind) in &listed {
                let line = if quiet {
                    json!({"Cid": cid})
                } else {
                    json!({"Cid": cid, "Type": kind.name(), "Name": ""})
                };
                out.push_str(&line.to_string());
                out.push('\n');
            }
            return Ok(json_lines(out));
        }
        let keys: serde_json::Map<String, Value> = listed
            .into_iter()
            .map(|(cid, kind)| (cid, json!({"Type": kind.name(), "Name": ""})))
            .collect();
        Ok(http::json(StatusCode::OK, &json!({ "Keys": keys })))
    }

    async fn repo_stat(&self, query: &Query) -> Result<Response<Body>> {
        let size_only = query.flag("size-only", false)?;
        query.flag("human", false)?;
        let stats = self.node.engine().stats().await?;
        let max = storage_max(self.node.repo().root());
        let value = if size_only {
            json!({"RepoSize": stats.bytes, "StorageMax": max})
        } else {
            json!({
                "RepoSize": stats.bytes,
                "StorageMax": max,
                "NumObjects": stats.blocks,
                "RepoPath": self.node.repo().root().display().to_string(),
                "Version": format!("fs-repo@{REPO_VERSION}"),
            })
        };
        Ok(http::json(StatusCode::OK, &value))
    }

    async fn repo_gc(&self, query: &Query) -> Result<Response<Body>> {
        let quiet = query.flag("quiet", false)?;
        let node = self.node.clone();
        let (_, swept) = blocking(move || node.gc_swept(false)).await?;
        let mut out = String::new();
        if !quiet {
            for key in swept {
                let cid = ipfrs_storage::key::cid_of_key(&key)
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                out.push_str(&json!({"Key": {"/": cid}}).to_string());
                out.push('\n');
            }
        }
        Ok(json_lines(out))
    }

    async fn repo_verify(&self) -> Result<Response<Body>> {
        let node = self.node.clone();
        let report = blocking(move || {
            let engine = node.engine();
            let damage = || {
                let mut places = futures_lite::future::block_on(engine.damage())?;
                places.extend(engine.cold_damage_places());
                Ok(places)
            };
            Ok(crate::store::verify::verify(engine, damage, None)?)
        })
        .await?;
        let mut out = String::new();
        for cid in report.corrupt.iter().chain(&report.missing) {
            out.push_str(
                &json!({"Msg": format!("block {cid} was corrupt"), "Progress": 0}).to_string(),
            );
            out.push('\n');
        }
        let msg = if report.is_clean() {
            "verify complete, all blocks validated.".to_string()
        } else {
            format!(
                "verify complete, some blocks were corrupt: {} corrupt, {} missing, {} damaged places",
                report.corrupt.len(),
                report.missing.len(),
                report.damaged.len()
            )
        };
        out.push_str(&json!({"Msg": msg, "Progress": report.checked}).to_string());
        out.push('\n');
        Ok(json_lines(out))
    }

    /// Kubo's `refs local`: every stored block, `{"Ref": cid, "Err": ""}` a line, streamed
    /// (a read error becomes a line with `Err` set, as Kubo reports one).
    fn refs_local(&self) -> Response<Body> {
        let (tx, rx) = mpsc::channel(8);
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            let mut sink = ChannelWriter::new(tx.clone());
            let result = (|| -> io::Result<()> {
                for cid in node.engine().blocking().cids() {
                    let line = match cid {
                        Ok(cid) => json!({"Ref": cid.to_string(), "Err": ""}),
                        Err(e) => json!({"Ref": "", "Err": http::one_line(&e)}),
                    };
                    io::Write::write_all(&mut sink, format!("{line}\n").as_bytes())?;
                }
                sink.flush_rest()
            })();
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let mut response = Response::new(http::channel_body(rx));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("X-Chunked-Output", HeaderValue::from_static("1"));
        response
    }

    /// The engine's metrics in the Prometheus text format (any method, as scrapers use GET).
    async fn metrics(&self) -> Result<Response<Body>> {
        let metrics = self.node.engine().metrics().await?;
        let mut response = Response::new(http::full(metrics.to_prometheus()));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        Ok(response)
    }

    fn id(&self) -> Response<Body> {
        http::json(
            StatusCode::OK,
            &json!({
                "ID": self.peer_id,
                "PublicKey": "",
                "Addresses": [],
                "AgentVersion": agent_version(),
                "ProtocolVersion": PROTOCOL_VERSION,
                "Protocols": [],
            }),
        )
    }

    fn multipart(&self, req: Request<Incoming>, limit: u64) -> Result<multer::Multipart<'static>> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let boundary = multer::parse_boundary(content_type).map_err(|_| {
            Error::BadRequest(
                "expected a multipart/form-data body (Content-Type with a boundary)".into(),
            )
        })?;
        let stream = http::body_stream(req.into_body(), self.limits.body_idle, limit);
        Ok(multer::Multipart::new(stream, boundary))
    }
}

/// Bytes of an upload read past an error before the reply, so that a client still sending
/// the end of its body reads the reply instead of a reset connection.
const DRAIN_BYTES: u64 = 1 << 20;
/// Time allowed for that.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// On an error, reads what is left of the upload (up to [`DRAIN_BYTES`]) first.
async fn drain_on_error(
    result: Result<Response<Body>>,
    parts: Option<multer::Multipart<'static>>,
) -> Result<Response<Body>> {
    if let (Err(_), Some(mut parts)) = (&result, parts) {
        let _ = tokio::time::timeout(DRAIN_TIME, async move {
            let mut read = 0u64;
            while let Ok(Some(mut field)) = parts.next_field().await {
                while let Ok(Some(chunk)) = field.chunk().await {
                    read += chunk.len() as u64;
                    if read > DRAIN_BYTES {
                        return;
                    }
                }
            }
        })
        .await;
    }
    result
}

/// `ipfrs-store/<version>`.
fn agent_version() -> String {
    format!("ipfrs-store/{}", env!("CARGO_PKG_VERSION"))
}

fn version() -> Response<Body> {
    http::json(
        StatusCode::OK,
        &json!({
            "Version": env!("CARGO_PKG_VERSION"),
            "Commit": "",
            "Repo": REPO_VERSION,
            "System": format!("{}/{}", std::env::consts::ARCH, std::env::consts::OS),
            "Golang": "",
        }),
    )
}

/// The free space of the repository's filesystem plus what the store holds: what it could
/// grow to (Kubo reports its configured limit).
fn storage_max(path: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) == 0 {
            (st.f_blocks as u64).saturating_mul(st.f_frsize as u64)
        } else {
            0
        }
    }
}

fn args(query: &Query) -> Result<Vec<Cid>> {
    let cids = query
        .all("arg")
        .into_iter()
        .map(parse_cid)
        .collect::<crate::store::error::Result<Vec<_>>>()?;
    if cids.is_empty() {
        return Err(Error::BadRequest("argument \"arg\" is required".into()));
    }
    Ok(cids)
}

fn not_found(cid: &Cid) -> Error {
    Error::NotFound(format!(
        "block was not found locally (offline): ipld: could not find {cid}"
    ))
}

/// Runs blocking store work (walks, imports, gc) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("worker: {e}")))?
}

/// Newline-delimited JSON, as Kubo streams its command outputs.
fn json_lines(text: String) -> Response<Body> {
    let mut response = Response::new(http::full(text));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("X-Chunked-Output", HeaderValue::from_static("1"));
    response
}

/// Kubo's error reply for `err`.
pub fn error(err: &Error) -> Response<Body> {
    error_reply(http::status_of(err), &http::one_line(err))
}

fn error_reply(status: StatusCode, message: &str) -> Response<Body> {
    // Kubo: code 1 is a client error, 0 a normal one.
    let code = u8::from(status.is_client_error());
    http::json(
        status,
        &json!({"Message": message, "Code": code, "Type": "error"}),
    )
}

fn multipart_error(err: multer::Error) -> Error {
    if let multer::Error::StreamReadFailed(source) = err {
        return match source.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => Error::BadRequest(format!("request body: {}", http::one_line(&other))),
        };
    }
    Error::BadRequest(format!("multipart body: {}", http::one_line(&err)))
}

/// The node's peer ID for `id`: a libp2p identity-multihash ID (base58btc) over 32 random
/// bytes drawn once and kept in the store's metadata, so it is stable across restarts and
/// parses as a peer ID in clients. The daemon does not speak libp2p: there is no key behind it.
pub async fn peer_id(node: &Node) -> Result<String> {
    const KEY: &[u8] = b"daemon/peer-id";
    let engine = node.engine();
    if let Some(id) = engine.meta_get(KEY).await? {
        return Ok(String::from_utf8_lossy(&id).into_owned());
    }
    let mut key = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut key);
    // PublicKey protobuf {Type: Ed25519 (1), Data: 32 bytes}, under an identity multihash.
    let mut proto = vec![0x08, 0x01, 0x12, 0x20];
    proto.extend_from_slice(&key);
    let mut mh = vec![0x00, proto.len() as u8];
    mh.extend_from_slice(&proto);
    let id = base58btc(&mh);
    match engine
        .meta_compare_and_swap(KEY, None, Some(id.as_bytes()))
        .await?
    {
        ipfrs_storage::Swap::Done => Ok(id),
        ipfrs_storage::Swap::Conflict { current } => Ok(current
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or(id)),
    }
}

/// Base58 (Bitcoin alphabet) of `bytes`, as libp2p writes peer IDs.
fn base58btc(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    // Little-endian base-58 digits of the big-endian number.
    let mut digits: Vec<u8> = Vec::new();
    for &byte in &bytes[zeros..] {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = "1".repeat(zeros);
    out.extend(digits.iter().rev().map(|d| ALPHABET[*d as usize] as char));
    out
}

fn block_error(err: ipfrs_storage::BlockError) -> Error {
    Error::BadRequest(http::one_line(&err))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base58btc_matches_known_values() {
        assert_eq!(super::base58btc(b"hello world"), "StV1DL6CwTryKyV");
        assert_eq!(super::base58btc(&[0, 0, 1]), "112");
    }
}
