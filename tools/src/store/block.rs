//! `block put | get | stat | rm | ls`.

use std::io::Read;
use std::path::{Path, PathBuf};

use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockError, BlockStore, Cid, Codec, Engine, HashAlgorithm};
use serde::Serialize;

use super::caller::Caller;
use super::error::{Error, Result, parse_cid};
use super::output::Report;
use crate::car::links;

/// A block's CID and size (`put` and `stat`).
#[derive(Debug, Serialize)]
pub struct BlockInfo {
    /// The CID.
    pub cid: String,
    /// Bytes.
    pub size: u64,
}

impl Report for BlockInfo {
    fn human(&self) -> String {
        format!("{}\t{}\n", self.cid, self.size)
    }
}

/// Multicodec names accepted by `--cid-codec` (the common IPLD ones).
const CODECS: [(&str, u64); 8] = [
    ("raw", 0x55),
    ("dag-pb", 0x70),
    ("dag-cbor", 0x71),
    ("dag-json", 0x0129),
    ("json", 0x0200),
    ("cbor", 0x51),
    ("libp2p-key", 0x72),
    ("git-raw", 0x78),
];

/// A codec from its multicodec name or number (`0x55`, `85`).
pub fn parse_codec(text: &str) -> Result<u64> {
    if let Some(&(_, code)) = CODECS.iter().find(|(name, _)| *name == text) {
        return Ok(code);
    }
    let number = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    number.ok_or_else(|| {
        let names: Vec<&str> = CODECS.iter().map(|(n, _)| *n).collect();
        Error::Usage(format!(
            "unknown --cid-codec {text:?} (expected {} or a number such as 0x55)",
            names.join(", ")
        ))
    })
}

/// Reads the block from `file` (stdin for none or `-`), at most `limit` bytes.
fn read_input(file: Option<&Path>, limit: usize, caller: &mut Caller) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let cap = limit as u64 + 1;
    match file
        .filter(|p| p.as_os_str() != "-")
        .map(|p| caller.path(p))
    {
        Some(path) => std::fs::File::open(&path)
            .and_then(|f| f.take(cap).read_to_end(&mut data))
            .map_err(|e| Error::io("cannot read", &path, e))?,
        None => caller
            .stdin()
            .take(cap)
            .read_to_end(&mut data)
            .map_err(|e| Error::io("cannot read", "stdin", e))?,
    };
    if data.len() > limit {
        return Err(BlockError::TooLarge {
            size: data.len(),
            limit,
        }
        .into());
    }
    Ok(data)
}

/// `block put`: hash the input with `mhtype`, label it `codec`, store it.
pub fn put(
    engine: &Engine,
    file: Option<&PathBuf>,
    codec: &str,
    mhtype: HashAlgorithm,
    caller: &mut Caller,
) -> Result<BlockInfo> {
    let codec = parse_codec(codec)?;
    let data = read_input(
        file.map(PathBuf::as_path),
        engine.config().max_block_size,
        caller,
    )?;
    let raw = Block::with(Codec::Raw, mhtype, data)?;
    let (raw_cid, data) = raw.into_parts();
    let cid = Cid::new_v1(codec, *raw_cid.hash());
    // The hash was just computed over these bytes; from_parts checks it once more.
    let block = Block::from_parts(cid, data)?;
    // A block labelled dag-pb or dag-cbor must decode, or export and gc could not follow it.
    links(block.cid(), block.data())?;
    block_on(engine.put(&block))?;
    Ok(BlockInfo {
        cid: cid.to_string(),
        size: block.len() as u64,
    })
}

/// `block get`: the bytes to the caller's stdout or `output`.
pub fn get(
    engine: &Engine,
    cid: &str,
    output: Option<&Path>,
    caller: &mut Caller,
) -> Result<Option<BlockInfo>> {
    let cid = parse_cid(cid)?;
    let data = block_on(engine.get(&cid))?.ok_or(Error::NotFound { cid: Box::new(cid) })?;
    match output {
        Some(shown) => {
            let path = caller.path(shown);
            let existed = path.exists();
            std::fs::write(&path, &data).map_err(|e| Error::io("cannot write", &path, e))?;
            // A file this command created gets the caller's mode (an existing one keeps its).
            if !existed {
                caller.adopt_new_file(shown)?;
            }
            Ok(Some(BlockInfo {
                cid: cid.to_string(),
                size: data.len() as u64,
            }))
        }
        None => {
            caller.write(&data)?;
            Ok(None)
        }
    }
}

/// `block stat`.
pub fn stat(engine: &Engine, cid: &str) -> Result<BlockInfo> {
    let cid = parse_cid(cid)?;
    let size = block_on(engine.get_size(&cid))?.ok_or(Error::NotFound { cid: Box::new(cid) })?;
    Ok(BlockInfo {
        cid: cid.to_string(),
        size,
    })
}

/// Several blocks' CIDs and sizes (`block stat` of several CIDs).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct BlockInfos(pub Vec<BlockInfo>);

impl Report for BlockInfos {
    fn human(&self) -> String {
        self.0.iter().map(Report::human).collect()
    }
}

/// Prints `block stat`'s result: one CID keeps the single object it always printed, several
/// print an array (for --json; text is one line each either way).
pub fn print_stats(mut stats: Vec<BlockInfo>, json: bool, caller: &mut Caller) -> Result<()> {
    if stats.len() == 1 {
        let one = stats.remove(0);
        return caller.print(&one, json);
    }
    caller.print(&BlockInfos(stats), json)
}

/// What `block rm` did.
#[derive(Debug, Serialize)]
pub struct Removed {
    /// Blocks removed.
    pub removed: Vec<String>,
    /// Blocks that were not stored (only with --force).
    pub absent: Vec<String>,
}

impl Report for Removed {
    fn human(&self) -> String {
        let mut out = String::new();
        for cid in &self.removed {
            out.push_str(&format!("removed {cid}\n"));
        }
        for cid in &self.absent {
            out.push_str(&format!("absent {cid}\n"));
        }
        out
    }
}

/// `block rm`: every CID is parsed and, without `force`, checked present before any is
/// removed, so a typo removes nothing.
pub fn rm(engine: &Engine, cids: &[String], force: bool) -> Result<Removed> {
    let cids = cids
        .iter()
        .map(|c| parse_cid(c))
        .collect::<Result<Vec<_>>>()?;
    if !force {
        let present = block_on(engine.has_many(&cids))?;
        if let Some((cid, _)) = cids.iter().zip(&present).find(|(_, p)| !**p) {
            return Err(Error::NotFound {
                cid: Box::new(*cid),
            });
        }
    }
    let was = block_on(engine.delete_many(&cids))?;
    let (mut removed, mut absent) = (Vec::new(), Vec::new());
    for (cid, was) in cids.iter().zip(was) {
        if was { &mut removed } else { &mut absent }.push(cid.to_string());
    }
    Ok(Removed { removed, absent })
}

/// `block ls`: every stored CID, streamed page by page (one per line, or a JSON array).
pub fn ls(engine: &Engine, json: bool, caller: &mut Caller) -> Result<()> {
    let store = engine.blocking();
    let mut out = String::new();
    let mut first = true;
    if json {
        out.push('[');
    }
    for cid in store.cids() {
        let cid = cid?;
        if json {
            out.push_str(if first { "\n  \"" } else { ",\n  \"" });
            out.push_str(&cid.to_string());
            out.push('"');
        } else {
            out.push_str(&cid.to_string());
            out.push('\n');
        }
        first = false;
        // Bounded memory: hand the text to stdout every few thousand CIDs.
        if out.len() > 1 << 16 {
            caller.write(out.as_bytes())?;
            out.clear();
        }
    }
    if json {
        out.push_str(if first { "]\n" } else { "\n]\n" });
    }
    caller.write(out.as_bytes())
}
