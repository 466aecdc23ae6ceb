//! Which blocks a gateway CAR response carries, and in which order (the trustless gateway
//! spec's `/ipfs/{cid}/{path}` with `dag-scope`, `entity-bytes` and `dups`):
//!
//! 1. the blocks that resolve the path, root first (each directory on the way);
//! 2. then, from the block the path ends at (the terminal), depth first in link order:
//!    - `block`: the terminal alone;
//!    - `entity`: a UnixFS file whole (or, with `entity-bytes`, only the blocks that hold the
//!      range), a directory's own block (a HAMT's shard nodes), any other block alone;
//!    - `all`: everything the terminal links to.
//!
//! Identity CIDs are never written (their data is in their CID). With `dups=n` a block is
//! written once; with `dups=y` every time the walk meets it. Path resolution runs before the
//! response starts, so a bad path is a 4xx; a block missing below the terminal can only cut
//! the stream short.

use std::collections::HashSet;

use bytes::Bytes;
use futures_lite::future::block_on;
use ipfrs_storage::key::identity_data;
use ipfrs_storage::{BlockStore, Cid};

use crate::store::dag::{self, OnMissing};

use super::car_stream::Car;
use super::error::{Error, Result};
use super::unixfs::{self, Kind};

/// `dag-scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The terminal block only.
    Block,
    /// The terminal UnixFS entity (file, directory) or block.
    Entity,
    /// The whole DAG under the terminal.
    All,
}

impl Scope {
    /// Parses the `dag-scope` value.
    pub fn parse(text: &str) -> Result<Scope> {
        match text {
            "block" => Ok(Scope::Block),
            "entity" => Ok(Scope::Entity),
            "all" => Ok(Scope::All),
            other => Err(Error::BadRequest(format!(
                "bad dag-scope {other:?} (block, entity or all)"
            ))),
        }
    }

    /// Its name, as the request spells it.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Block => "block",
            Scope::Entity => "entity",
            Scope::All => "all",
        }
    }
}

/// `entity-bytes=from:to`: inclusive byte offsets, negative ones from the end, `to` may be
/// `*` (the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// The first byte (negative: from the end).
    pub from: i64,
    /// The last byte (negative: from the end; `None`: the last byte of the entity).
    pub to: Option<i64>,
}

impl ByteRange {
    /// Parses `from:to`.
    pub fn parse(text: &str) -> Result<ByteRange> {
        let bad = || {
            Error::BadRequest(format!(
                "bad entity-bytes {text:?} (from:to, integers, `to` may be *)"
            ))
        };
        let (from, to) = text.split_once(':').ok_or_else(bad)?;
        let from: i64 = from.parse().map_err(|_| bad())?;
        let to = match to {
            "*" => None,
            t => Some(t.parse::<i64>().map_err(|_| bad())?),
        };
        // Both from the start, and backwards: never satisfiable, whatever the entity.
        if let Some(to) = to
            && from >= 0
            && to >= 0
            && to < from
        {
            return Err(Error::BadRequest(format!(
                "bad entity-bytes {text:?}: the range ends before it starts"
            )));
        }
        Ok(ByteRange { from, to })
    }

    /// The inclusive range within an entity of `size` bytes, clamped to it; `None` when
    /// nothing of it falls inside (zero-length or wholly outside).
    pub fn resolve(&self, size: u64) -> Option<(u64, u64)> {
        let size = i128::from(size);
        let at = |n: i64| {
            let n = i128::from(n);
            if n < 0 { size + n } else { n }
        };
        let from = at(self.from).max(0);
        let to = self.to.map_or(size - 1, at).min(size - 1);
        if size == 0 || from > to || from >= size {
            return None;
        }
        // Both within 0..size here.
        Some((from as u64, to as u64))
    }

    /// Whether the range starts past the end of an entity of `size` bytes (the spec's 400,
    /// when the gateway knows it up front).
    pub fn starts_past(&self, size: u64) -> bool {
        self.from >= 0 && self.from as u64 >= size && size > 0
    }
}

/// What a CAR response was asked for.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The scope below the terminal.
    pub scope: Scope,
    /// `entity-bytes` (implies the entity scope).
    pub range: Option<ByteRange>,
    /// `dups=y`.
    pub dups: bool,
}

/// A path resolved from the root CID: the blocks on the way, the terminal last.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// (CID, data) from the root to the terminal, both included.
    pub blocks: Vec<(Cid, Bytes)>,
}

impl Resolved {
    /// The block the path ends at.
    pub fn terminal(&self) -> &(Cid, Bytes) {
        // `resolve` always puts the root in, so the list is never empty.
        self.blocks
            .last()
            .unwrap_or_else(|| unreachable!("a resolved path has its root"))
    }
}

/// The data of `cid` (inline for identity CIDs); `None` when it is not stored.
async fn load<S: BlockStore>(store: &S, cid: &Cid) -> Result<Option<Bytes>> {
    if let Some(data) = identity_data(cid) {
        return Ok(Some(Bytes::copy_from_slice(data)));
    }
    Ok(store.get(cid).await?)
}

/// Resolves `path` (already percent-decoded segments) from `root` through UnixFS
/// directories. Errors: 404 for the root or a segment that is not there, 400 for a path
/// through a file or a non-UnixFS block, 501 through a HAMT-sharded directory.
pub async fn resolve<S: BlockStore>(store: &S, root: Cid, path: &[String]) -> Result<Resolved> {
    let data = load(store, &root)
        .await?
        .ok_or_else(|| Error::NotFound(format!("block {root} is not in this gateway's store")))?;
    let mut blocks = vec![(root, data)];
    let mut walked = format!("/ipfs/{root}");
    for segment in path {
        let (cid, data) = blocks.last().cloned().unwrap_or_else(|| unreachable!());
        let node = unixfs::decode(&cid, &data).map_err(|e| Error::Internal(e.to_string()))?;
        let next = match node.kind {
            Kind::Directory => node.child(segment).ok_or_else(|| {
                Error::NotFound(format!("no link named {segment:?} under {walked}"))
            })?,
            Kind::HamtShard => {
                return Err(Error::NotImplemented(format!(
                    "{walked} is a HAMT-sharded directory: paths through it are not served \
                     (ask for {walked}?format=car and resolve {segment:?} client-side)"
                )));
            }
            Kind::File | Kind::Raw => {
                return Err(Error::BadRequest(format!(
                    "{walked} is a file: it has no {segment:?} below it"
                )));
            }
            Kind::Other | Kind::NotUnixFs => {
                return Err(Error::BadRequest(format!(
                    "{walked} is not a UnixFS directory (codec 0x{:x}): only paths through \
                     UnixFS directories are served",
                    cid.codec()
                )));
            }
        };
        walked.push('/');
        walked.push_str(segment);
        let data = load(store, &next)
            .await?
            .ok_or_else(|| Error::NotFound(format!("block {next} ({walked}) is not stored")))?;
        blocks.push((next, data));
    }
    Ok(Resolved { blocks })
}

/// The size of the terminal entity when it reads as bytes (a UnixFS file or raw block).
pub fn file_size(terminal: &(Cid, Bytes)) -> Option<u64> {
    let node = unixfs::decode(&terminal.0, &terminal.1).ok()?;
    matches!(node.kind, Kind::File | Kind::Raw).then_some(node.filesize)
}

/// Writes the blocks of `selection` over `resolved` into `car` (see the module docs), for
/// [`super::car_stream::response`].
pub fn write_selection<S: BlockStore>(
    store: &S,
    car: &mut Car,
    resolved: &Resolved,
    selection: &Selection,
) -> Result<()> {
    let mut out = Out {
        car,
        seen: HashSet::new(),
        dups: selection.dups,
        repeats: 0,
    };
    write(store, &mut out, resolved, selection)
}

/// Most repeated blocks one `dups=y` response sends: a DAG that links the same node twice
/// at each of 40 levels is a few KB stored but 2^40 blocks walked with repeats, an
/// amplification rather than data, so the stream is cut past this with an error.
const MAX_REPEATS: u64 = 1 << 20;

/// The CAR being written, and what it holds.
struct Out<'a> {
    car: &'a mut Car,
    seen: HashSet<Cid>,
    dups: bool,
    repeats: u64,
}

impl Out<'_> {
    /// Writes a block unless it is an identity CID, or already written and duplicates are
    /// not wanted. Returns whether the walk should go below it (not for a repeat with
    /// `dups=n`: its children were sent already).
    fn emit(&mut self, cid: &Cid, data: &[u8]) -> Result<bool> {
        let first = self.seen.insert(*cid);
        if !first {
            if !self.dups {
                return Ok(false);
            }
            self.repeats += 1;
            if self.repeats > MAX_REPEATS {
                return Err(Error::TooLarge(format!(
                    "dups=y: over {MAX_REPEATS} repeated blocks; ask for dups=n"
                )));
            }
        }
        if identity_data(cid).is_none() {
            self.car
                .write_block(cid, data)
                .map_err(|e| Error::Internal(format!("write: {e}")))?;
        }
        Ok(true)
    }
}

fn fetch<S: BlockStore>(store: &S, cid: &Cid, parent: &Cid) -> Result<Bytes> {
    block_on(load(store, cid))?.ok_or_else(|| {
        Error::Store(crate::store::error::Error::MissingBlock {
            cid: Box::new(*cid),
            parent: Box::new(*parent),
        })
    })
}

fn write<S: BlockStore>(
    store: &S,
    out: &mut Out,
    resolved: &Resolved,
    sel: &Selection,
) -> Result<()> {
    let (path, terminal) = resolved.blocks.split_at(resolved.blocks.len() - 1);
    for (cid, data) in path {
        out.emit(cid, data)?;
    }
    let (cid, data) = &terminal[0];
    let scope = if sel.range.is_some() {
        Scope::Entity
    } else {
        sel.scope
    };
    match scope {
        Scope::Block => {
            out.emit(cid, data)?;
        }
        Scope::All if !out.dups && identity_data(cid).is_none() => {
            // The batched walk of `dag export`; blocks already written are skipped by emit.
            dag::walk(store, &[*cid], OnMissing::Fail, |c, d| {
                out.emit(c, d)
                    .map(|_| ())
                    .map_err(|e| crate::store::error::Error::Usage(e.to_string()))
            })?;
        }
        Scope::All => everything(store, out, cid, data)?,
        Scope::Entity => {
            let node = unixfs::decode(cid, data).map_err(|e| Error::Internal(e.to_string()))?;
            match node.kind {
                Kind::File | Kind::Raw => match sel.range {
                    None => everything(store, out, cid, data)?,
                    Some(range) => match range.resolve(node.filesize) {
                        Some((from, to)) => file_range(store, out, cid, data, from, to)?,
                        // Zero-length or outside: the root alone, from which the client
                        // can tell why (its blocksizes).
                        None => {
                            out.emit(cid, data)?;
                        }
                    },
                },
                Kind::HamtShard => hamt(store, out, cid, data)?,
                Kind::Directory | Kind::Other | Kind::NotUnixFs => {
                    out.emit(cid, data)?;
                }
            }
        }
    }
    Ok(())
}

/// Depth first below `cid`, every link followed (the `dups=y` walk: no batching, repeats
/// written again).
fn everything<S: BlockStore>(store: &S, out: &mut Out, cid: &Cid, data: &Bytes) -> Result<()> {
    let mut stack = vec![(*cid, *cid, Some(data.clone()))];
    while let Some((cid, parent, data)) = stack.pop() {
        let data = match data {
            Some(d) => d,
            None => fetch(store, &cid, &parent)?,
        };
        if !out.emit(&cid, &data)? {
            continue;
        }
        let children = crate::car::links(&cid, &data)
            .map_err(|e| Error::Store(e.into()))?
            .unwrap_or_default();
        stack.extend(children.into_iter().rev().map(|c| (c, cid, None)));
    }
    Ok(())
}

/// A HAMT directory's shard nodes (not the entries they list).
fn hamt<S: BlockStore>(store: &S, out: &mut Out, cid: &Cid, data: &Bytes) -> Result<()> {
    let mut stack = vec![(*cid, data.clone())];
    while let Some((cid, data)) = stack.pop() {
        if !out.emit(&cid, &data)? {
            continue;
        }
        let node = unixfs::decode(&cid, &data).map_err(|e| Error::Internal(e.to_string()))?;
        if node.kind != Kind::HamtShard {
            continue;
        }
        let shards: Vec<Cid> = node.shard_links().collect();
        for child in shards.into_iter().rev() {
            let data = fetch(store, &child, &cid)?;
            stack.push((child, data));
        }
    }
    Ok(())
}

/// The blocks of a UnixFS file that hold bytes `from..=to` (offsets in the file), depth
/// first from `cid` (at file offset 0). A loop with its own stack, not recursion: a stored
/// DAG may be arbitrarily deep.
fn file_range<S: BlockStore>(
    store: &S,
    out: &mut Out,
    cid: &Cid,
    data: &Bytes,
    from: u64,
    to: u64,
) -> Result<()> {
    // (block, its parent, its data when at hand, the file offset it starts at)
    let mut stack = vec![(*cid, *cid, Some(data.clone()), 0u64)];
    while let Some((cid, parent, data, offset)) = stack.pop() {
        let data = match data {
            Some(d) => d,
            None => fetch(store, &cid, &parent)?,
        };
        if !out.emit(&cid, &data)? {
            continue;
        }
        let node = unixfs::decode(&cid, &data).map_err(|e| Error::Internal(e.to_string()))?;
        if node.kind != Kind::File {
            continue;
        }
        // Block sizes come from stored (untrusted) nodes: saturate rather than overflow.
        let mut at = offset.saturating_add(node.inline_len);
        let mut wanted = Vec::new();
        for ((_, child), size) in node.links.iter().zip(&node.blocksizes) {
            let end = at.saturating_add(*size);
            if at > to {
                break;
            }
            // [at, end) overlaps [from, to]?
            if *size > 0 && end > from {
                wanted.push((*child, cid, None, at));
            }
            at = end;
        }
        stack.extend(wanted.into_iter().rev());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn byte_ranges_resolve_as_the_spec_says() {
        let r = |t: &str| ByteRange::parse(t).unwrap();
        assert_eq!(r("0:*").resolve(100), Some((0, 99)));
        assert_eq!(r("-10:*").resolve(100), Some((90, 99)));
        assert_eq!(r("499:-1000").resolve(2000), Some((499, 1000)));
        assert_eq!(r("10:500").resolve(100), Some((10, 99)));
        assert_eq!(r("-500:10").resolve(100), Some((0, 10)));
        assert_eq!(r("100:*").resolve(100), None);
        assert_eq!(r("50:-60").resolve(100), None);
        assert_eq!(r("0:*").resolve(0), None);
        assert!(r("100:200").starts_past(100));
        assert!(!r("99:200").starts_past(100));
        assert!(ByteRange::parse("5:1").is_err());
        assert!(ByteRange::parse("a:1").is_err());
        assert!(ByteRange::parse("5").is_err());
    }
}
