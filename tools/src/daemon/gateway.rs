//! The trustless gateway (IPFS HTTP gateway spec, trustless subset), read-only:
//! `GET`/`HEAD /ipfs/{cid}` as a raw block (`?format=raw`, `Accept: application/vnd.ipld.raw`)
//! and `/ipfs/{cid}[/{path}]` as a CARv1 stream (`?format=car`, `Accept:
//! application/vnd.ipld.car`), the path resolved through UnixFS directories and the blocks
//! chosen by `dag-scope` (block, entity, all) and `entity-bytes` (see [`super::car_selection`]).
//! CAR variants: `version=1` only, `order=dfs` (also answered for `unk`), `dups=n` (default)
//! or `y`, from `Accept` parameters or the `car-version`/`car-order`/`car-dups` query
//! parameters (which win); anything else is a 400 naming what is not served.
//!
//! Headers as the spec says: strong `ETag` `"<cid>.raw"` for blocks, weak
//! `W/"<cid>.car.<hash of path, scope, range, order, dups>"` for CARs,
//! `Cache-Control: public, max-age=29030400, immutable`, `Content-Type` with the CAR's
//! `version=1; order=dfs; dups=n|y`, `Content-Disposition: attachment`,
//! `X-Content-Type-Options: nosniff`. 404 when the root block (or a path segment) is absent,
//! 412 for that under `Cache-Control: only-if-cached`; 400 for a request that does not ask
//! for a verifiable type (strict trustless mode), a bad CID, a path on a raw block request, or
//! a byte range past the end of the file. A block missing below the terminal cuts the CAR
//! short: the chunked body is left unterminated, or, for a client that sent `TE: trailers`,
//! ended with an `X-Stream-Error` trailer. The identity probe CID (`bafkqaaa`) answers 200.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ipfrs_storage::BlockStore;
use ipfrs_storage::key::identity_data;

use crate::store::error::parse_cid;

use super::car_selection::{self, ByteRange, Scope, Selection};
use super::car_stream;
use super::error::Error;
use super::http::{self, Body, Query};

const RAW: &str = "application/vnd.ipld.raw";
const CAR: &str = "application/vnd.ipld.car";
/// Immutable content: one year, as the path gateway spec says for `/ipfs/`.
const CACHE_CONTROL: &str = "public, max-age=29030400, immutable";
/// Query parameters that only mean something for a CAR response.
const CAR_ONLY: [&str; 5] = [
    "dag-scope",
    "entity-bytes",
    "car-version",
    "car-order",
    "car-dups",
];

/// The gateway over a block store: the daemon's engine, or a read replica
/// (`ipfrs-store replica serve`). It only reads.
pub struct Gateway<S> {
    /// The store.
    pub store: Arc<S>,
}

/// What the response is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Format {
    Raw,
    Car(CarParams),
}

/// The CAR variant asked for (only one version and order are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CarParams {
    dups: bool,
}

impl<S: BlockStore + 'static> Gateway<S> {
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
            Err(e) => {
                let status = if only_if_cached(&req) && matches!(e, Error::NotFound(_)) {
                    StatusCode::PRECONDITION_FAILED
                } else {
                    http::status_of(&e)
                };
                http::text(status, &http::one_line(&e))
            }
        };
        if head {
            *response.body_mut() = http::empty();
        }
        response
    }

    async fn respond(&self, req: &Request<Incoming>) -> Result<Response<Body>, Error> {
        let path = req.uri().path();
        let Some(rest) = path.strip_prefix("/ipfs/") else {
            return Err(Error::NotFound(format!(
                "404 page not found: {path} (only /ipfs/{{cid}}[/path] is served)"
            )));
        };
        let (cid_text, below) = rest.split_once('/').unwrap_or((rest, ""));
        let cid = parse_cid(cid_text)?;
        let segments = below
            .split('/')
            .filter(|s| !s.is_empty())
            .map(http::decode_path_segment)
            .collect::<Result<Vec<_>, _>>()?;
        let query = Query::parse(req.uri().query())?;
        let format = negotiate(req, &query)?;
        let store = &*self.store;
        let ipfs_path = std::iter::once(cid.to_string())
            .chain(segments.iter().cloned())
            .collect::<Vec<_>>()
            .join("/");
        let (mut response, etag, roots) = match format {
            Format::Raw => {
                if !segments.is_empty() {
                    return Err(Error::BadRequest(format!(
                        "a raw block is served for /ipfs/{{cid}} only, not below it \
                         (/{below}): ask for format=car to resolve a path"
                    )));
                }
                if let Some(name) = CAR_ONLY.iter().find(|n| query.get(n).is_some()) {
                    return Err(Error::BadRequest(format!(
                        "{name} is only for CAR responses (format=car), not raw blocks"
                    )));
                }
                let etag = format!("\"{cid}.raw\"");
                let data = match identity_data(&cid) {
                    Some(data) => bytes::Bytes::copy_from_slice(data),
                    None => store.get(&cid).await?.ok_or_else(|| {
                        Error::NotFound(format!("block {cid} is not in this gateway's store"))
                    })?,
                };
                let mut r = Response::new(http::full(data));
                set(&mut r, header::CONTENT_TYPE, RAW);
                set(
                    &mut r,
                    header::CONTENT_DISPOSITION,
                    &format!("attachment; filename=\"{cid}.bin\""),
                );
                (r, etag, cid.to_string())
            }
            Format::Car(params) => {
                let range = query
                    .get("entity-bytes")
                    .map(ByteRange::parse)
                    .transpose()?;
                let scope = match (query.get("dag-scope").map(Scope::parse).transpose()?, range) {
                    (None, _) => {
                        if range.is_some() {
                            Scope::Entity
                        } else {
                            Scope::All
                        }
                    }
                    (Some(Scope::Entity), _) => Scope::Entity,
                    (Some(other), Some(_)) => {
                        return Err(Error::BadRequest(format!(
                            "entity-bytes implies dag-scope=entity, not dag-scope={}",
                            other.name()
                        )));
                    }
                    (Some(scope), None) => scope,
                };
                let resolved = car_selection::resolve(store, cid, &segments).await?;
                if let Some(range) = range
                    && let Some(size) = car_selection::file_size(resolved.terminal())
                    && range.starts_past(size)
                {
                    return Err(Error::BadRequest(format!(
                        "entity-bytes starts at {} but /ipfs/{ipfs_path} has {size} bytes",
                        range.from
                    )));
                }
                let tag = format!(
                    "{ipfs_path}|{}|{}|dfs|{}",
                    scope.name(),
                    range.map_or("-".into(), |r| format!(
                        "{}:{}",
                        r.from,
                        r.to.map_or("*".into(), |t| t.to_string())
                    )),
                    if params.dups { "y" } else { "n" }
                );
                let etag = format!(
                    "W/\"{cid}.car.{:016x}\"",
                    xxhash_rust::xxh3::xxh3_64(tag.as_bytes())
                );
                let roots = resolved
                    .blocks
                    .iter()
                    .map(|(c, _)| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                let selection = Selection {
                    scope,
                    range,
                    dups: params.dups,
                };
                let mut r = car_stream::response(
                    self.store.clone(),
                    vec![cid],
                    http::wants_trailers(req),
                    &format!(
                        "{CAR}; version=1; order=dfs; dups={}",
                        if params.dups { "y" } else { "n" }
                    ),
                    move |store, car| {
                        car_selection::write_selection(store, car, &resolved, &selection)
                    },
                );
                set(
                    &mut r,
                    header::CONTENT_DISPOSITION,
                    &format!("attachment; filename=\"{cid}.car\""),
                );
                (r, etag, roots)
            }
        };
        if if_none_match(req, &etag) {
            response = Response::new(http::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
        }
        set(&mut response, header::ETAG, &etag);
        set(&mut response, header::CACHE_CONTROL, CACHE_CONTROL);
        set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        set(&mut response, header::VARY, "Accept");
        set(&mut response, "X-Ipfs-Path", &format!("/ipfs/{ipfs_path}"));
        set(&mut response, "X-Ipfs-Roots", &roots);
        Ok(response)
    }
}

fn set(response: &mut Response<Body>, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

/// The response format: `format` wins over `Accept`; neither is a bad request (strict
/// trustless mode: nothing is deserialized here). `Accept` entries are taken in order and
/// the first one served wins; CAR entries whose parameters are not served are passed over,
/// and if nothing else is acceptable the request is a 400 naming them.
fn negotiate<B>(req: &Request<B>, query: &Query) -> Result<Format, Error> {
    let accept: Vec<(String, Vec<(String, String)>)> = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|entry| {
            let mut parts = entry.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let params = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| {
                    (
                        k.trim().to_ascii_lowercase(),
                        v.trim().trim_matches('"').to_ascii_lowercase(),
                    )
                })
                .collect();
            (media, params)
        })
        .collect();
    let car_params = |accepted: &[(String, String)]| -> Result<CarParams, Error> {
        let pick = |query_name: &str, param: &str| {
            query.get(query_name).map(str::to_string).or_else(|| {
                accepted
                    .iter()
                    .find(|(k, _)| k == param)
                    .map(|(_, v)| v.clone())
            })
        };
        if let Some(v) = pick("car-version", "version")
            && v != "1"
        {
            return Err(Error::BadRequest(format!(
                "CAR version {v:?} is not served: version=1 only"
            )));
        }
        if let Some(o) = pick("car-order", "order")
            && o != "dfs"
            && o != "unk"
            && !o.is_empty()
        {
            return Err(Error::BadRequest(format!(
                "CAR order {o:?} is not served: order=dfs (or unk, answered as dfs)"
            )));
        }
        let dups = match pick("car-dups", "dups").as_deref() {
            None | Some("n") => false,
            Some("y") => true,
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "CAR dups {other:?} is not y or n"
                )));
            }
        };
        Ok(CarParams { dups })
    };
    if let Some(format) = query.get("format") {
        return match format {
            "raw" => Ok(Format::Raw),
            "car" => {
                // Accept's CAR parameters still count (the query's win over them).
                let accepted = accept
                    .iter()
                    .find(|(m, _)| m == CAR)
                    .map(|(_, p)| p.as_slice())
                    .unwrap_or(&[]);
                car_params(accepted).map(Format::Car)
            }
            other => Err(Error::BadRequest(format!(
                "format {other:?} is not served by this trustless gateway (raw or car)"
            ))),
        };
    }
    let mut refused = None;
    for (media, params) in &accept {
        match media.as_str() {
            RAW => return Ok(Format::Raw),
            CAR => match car_params(params) {
                Ok(p) => return Ok(Format::Car(p)),
                Err(e) => refused = refused.or(Some(e)),
            },
            _ => {}
        }
    }
    Err(refused.unwrap_or_else(|| {
        Error::BadRequest(
            "this is a trustless gateway: ask for application/vnd.ipld.raw or \
             application/vnd.ipld.car (Accept header or ?format=raw|car)"
                .into(),
        )
    }))
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
