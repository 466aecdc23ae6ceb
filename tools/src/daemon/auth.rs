//! Who may call the RPC API when it listens beyond loopback: Kubo's `API.Authorizations`.
//!
//! The file given to `--api-auth` holds Kubo's shape, either the whole configuration or the
//! map alone:
//!
//! ```json
//! {"API": {"Authorizations": {
//!   "ingest": {"AuthSecret": "bearer:s3cret", "AllowedPaths": ["/api/v0/dag/import"]}
//! }}}
//! ```
//!
//! A request must carry `Authorization: Bearer <secret>` of an entry whose `AllowedPaths`
//! has a prefix of the request path (`/api/v0` allows every command). As in Kubo, a secret
//! without the `bearer:` prefix is a bearer token; `basic:` secrets are not supported.

use std::collections::BTreeMap;
use std::path::Path;

use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use super::error::{Error, Result};
use super::http::{self, Body};

/// One entry of `API.Authorizations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Authorization {
    /// `bearer:<token>` (or the token alone).
    pub auth_secret: String,
    /// Path prefixes this token may call.
    pub allowed_paths: Vec<String>,
}

/// The tokens the API accepts.
#[derive(Debug, Clone)]
pub struct Authorizations {
    /// (token, allowed path prefixes).
    entries: Vec<(String, Vec<String>)>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(rename = "API")]
    api: Api,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Api {
    authorizations: BTreeMap<String, Authorization>,
}

impl Authorizations {
    /// Reads Kubo's `API.Authorizations` (the whole config, or the map alone) from `path`.
    pub fn load(path: &Path) -> Result<Authorizations> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::store::error::Error::io("cannot read", path, e))?;
        let bad = |e: String| Error::BadRequest(format!("{}: {e}", path.display()));
        let map = match serde_json::from_str::<Config>(&text) {
            Ok(config) => config.api.authorizations,
            Err(_) => serde_json::from_str::<BTreeMap<String, Authorization>>(&text)
                .map_err(|e| bad(format!("not Kubo's API.Authorizations: {e}")))?,
        };
        Authorizations::new(map).map_err(bad)
    }

    /// From Kubo's map; refuses an empty one (it would lock everyone out) and basic auth.
    pub fn new(map: BTreeMap<String, Authorization>) -> Result<Authorizations, String> {
        let mut entries = Vec::new();
        for (name, auth) in map {
            let token = match auth.auth_secret.split_once(':') {
                Some(("bearer", token)) => token.to_string(),
                Some(("basic", _)) => {
                    return Err(format!(
                        "{name}: basic: secrets are not supported, use bearer:"
                    ));
                }
                _ => auth.auth_secret.clone(),
            };
            if token.is_empty() {
                return Err(format!("{name}: empty AuthSecret"));
            }
            entries.push((token, auth.allowed_paths));
        }
        if entries.is_empty() {
            return Err("no authorizations".into());
        }
        Ok(Authorizations { entries })
    }

    /// Lets the request through, or answers 401 (no or unknown token) / 403 (path not
    /// allowed for it).
    #[allow(clippy::result_large_err)]
    pub fn check<B>(&self, req: &Request<B>, path: &str) -> Result<(), Response<Body>> {
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let Some(given) = given else {
            return Err(http::text(
                StatusCode::UNAUTHORIZED,
                "401 - Unauthorized: an Authorization: Bearer token is required",
            ));
        };
        let Some((_, allowed)) = self
            .entries
            .iter()
            .find(|(token, _)| constant_time_eq(token.as_bytes(), given.as_bytes()))
        else {
            return Err(http::text(
                StatusCode::UNAUTHORIZED,
                "401 - Unauthorized: unknown token",
            ));
        };
        let permitted = allowed.iter().any(|prefix| {
            let prefix = prefix.trim_end_matches('/');
            path == prefix || path.starts_with(&format!("{prefix}/"))
        });
        if permitted {
            Ok(())
        } else {
            Err(http::text(
                StatusCode::FORBIDDEN,
                &format!("403 - Forbidden: this token may not call {path}"),
            ))
        }
    }
}

/// Compares without stopping at the first difference (no timing hint of the prefix).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
