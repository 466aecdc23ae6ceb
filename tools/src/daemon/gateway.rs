//! The trustless gateway (IPFS HTTP gateway spec, trustless subset), read-only:
//! `GET`/`HEAD /ipfs/{cid}` as a raw block (`?format=raw`, `Accept: application/vnd.ipld.raw`)
//! or a CARv1 stream (`?format=car`, `Accept: application/vnd.ipld.car`; `dag-scope=all`
//! or `block`), with the spec's headers: strong `ETag` `"<cid>.raw"` for blocks, weak
//! `W/"<cid>.car.<scope>"` for CARs (streamed, byte-for-byte stable only by our own walk),
//! `Cache-Control: public, max-age=29030400, immutable`, `Content-Type` with the CAR's
//! `version=1; order=dfs; dups=n`, `Content-Disposition: attachment`, `X-Content-Type-Options:
//! nosniff`. 404 when the root block is absent; 400 for a request that does not ask for a
//! verifiable type (strict trustless mode), a bad CID, or a path below the CID (no UnixFS
//! traversal here).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ipfrs_storage::BlockStore;

use crate::store::error::parse_cid;

use super::http::{self, Body, Query};
use super::node::Node;
use super::rpc::stream_car;

const RAW: &str = "application/vnd.ipld.raw";
const CAR: &str = "application/vnd.ipld.car";
/// The CAR we write: version 1, depth-first, each block once.
const CAR_TYPE: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";
/// Immutable content: one year, as the path gateway spec says for `/ipfs/`.
const CACHE_CONTROL: &str = "public, max-age=29030400, immutable";

/// The gateway.
pub struct Gateway {
    /// The store.
    pub node: Arc<Node>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Car { block_only: bool },
}

impl Gateway {
    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        if req.method() != Method::GET && !head {
            let mut r = http::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 - Method Not Allowed: the gateway is read-only (GET, HEAD)",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let mut response = match self.respond(&req).await {
            Ok(r) => r,
            Err((status, line)) => http::text(status, &line),
        };
        if head {
            *response.body_mut() = http::empty();
        }
        response
    }

    async fn respond(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let bad = |line: String| (StatusCode::BAD_REQUEST, line);
        let path = req.uri().path();
        let Some(rest) = path.strip_prefix("/ipfs/") else {
            return Err((
                StatusCode::NOT_FOUND,
                format!("404 page not found: {path} (only /ipfs/{{cid}} is served)"),
            ));
        };
        let (cid_text, below) = rest.split_once('/').unwrap_or((rest, ""));
        let cid = parse_cid(cid_text).map_err(|e| bad(http::one_line(&e)))?;
        if !below.is_empty() {
            return Err(bad(format!(
                "paths below a CID are not supported by this gateway: /{below}"
            )));
        }
        let query = Query::parse(req.uri().query()).map_err(|e| bad(http::one_line(&e)))?;
        let format = negotiate(req, &query).map_err(bad)?;
        let engine = self.node.engine();
        let etag = match format {
            Format::Raw => format!("\"{cid}.raw\""),
            Format::Car { block_only } => {
                format!(
                    "W/\"{cid}.car.{}\"",
                    if block_only { "block" } else { "all" }
                )
            }
        };
        let present = engine
            .has(&cid)
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, http::one_line(&e)))?;
        if !present {
            let status = if only_if_cached(req) {
                StatusCode::PRECONDITION_FAILED
            } else {
                StatusCode::NOT_FOUND
            };
            return Err((
                status,
                format!("block {cid} is not in this gateway's store"),
            ));
        }
        let mut response = if if_none_match(req, &etag) {
            let mut r = Response::new(http::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            match format {
                Format::Raw => {
                    let data = engine
                        .get(&cid)
                        .await
                        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, http::one_line(&e)))?
                        .ok_or((StatusCode::NOT_FOUND, format!("block {cid} is gone")))?;
                    let mut r = Response::new(http::full(data));
                    set(&mut r, header::CONTENT_TYPE, RAW);
                    set(
                        &mut r,
                        header::CONTENT_DISPOSITION,
                        &format!("attachment; filename=\"{cid}.bin\""),
                    );
                    r
                }
                Format::Car { block_only } => {
                    let rx = stream_car(self.node.clone(), cid, block_only);
                    let mut r = Response::new(http::channel_body(rx));
                    set(&mut r, header::CONTENT_TYPE, CAR_TYPE);
                    set(
                        &mut r,
                        header::CONTENT_DISPOSITION,
                        &format!("attachment; filename=\"{cid}.car\""),
                    );
                    r
                }
            }
        };
        set(&mut response, header::ETAG, &etag);
        set(&mut response, header::CACHE_CONTROL, CACHE_CONTROL);
        set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        set(&mut response, header::VARY, "Accept");
        set(&mut response, "X-Ipfs-Path", &format!("/ipfs/{cid}"));
        set(&mut response, "X-Ipfs-Roots", &cid.to_string());
        Ok(response)
    }
}

fn set(response: &mut Response<Body>, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

/// The response format: `format` wins over `Accept`; neither is a bad request (strict
/// trustless mode: nothing is deserialized here).
fn negotiate<B>(req: &Request<B>, query: &Query) -> Result<Format, String> {
    let scope = match query.get("dag-scope") {
        None | Some("all") => false,
        Some("block") => true,
        // entity: a whole UnixFS file or directory; served as all (a superset the client
        // verifies block by block).
        Some("entity") => false,
        Some(other) => return Err(format!("bad dag-scope {other:?} (block, entity or all)")),
    };
    if let Some(format) = query.get("format") {
        return match format {
            "raw" => Ok(Format::Raw),
            "car" => Ok(Format::Car { block_only: scope }),
            other => Err(format!(
                "format {other:?} is not served by this trustless gateway (raw or car)"
            )),
        };
    }
    let accept = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect::<Vec<_>>();
    for media in &accept {
        match media.as_str() {
            RAW => return Ok(Format::Raw),
            CAR => return Ok(Format::Car { block_only: scope }),
            _ => {}
        }
    }
    Err("this is a trustless gateway: ask for application/vnd.ipld.raw or application/vnd.ipld.car (Accept header or ?format=raw|car)".into())
}

fn only_if_cached<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("only-if-cached"))
}

fn if_none_match<B>(req: &Request<B>, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t == etag || t.trim_start_matches("W/") == etag.trim_start_matches("W/")
        })
}
