//! CARv1 export and import of a commit's whole DAG.
//!
//! CARv1 is small enough to write here rather than add a crate: a varint-prefixed DAG-CBOR
//! header `{roots: [CID], version: 1}` (encoded with serde_ipld_dagcbor, like the objects),
//! then sections of `varint(len) | CID | data`. The reader bounds every length, refuses
//! trailing garbage inside a section and verifies each block's hash, so a hostile file is a
//! typed error. (rs-car-sync would read the format too, but it is one more dependency for
//! ~100 lines, and we need the writer anyway.)

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use cid::Cid;
use ipfrs_storage::{Block, BlockStore};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::refs::RefStore;
use crate::repo::{Repo, branch_ref};
use crate::revision::Revision;

/// Largest section accepted: a block of the engine's 2 MiB limit plus its CID, with margin.
const MAX_SECTION: u64 = 4 << 20;
/// Largest header accepted.
const MAX_HEADER: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Header {
    roots: Vec<Cid>,
    version: u64,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint at `*at`, advancing it.
fn get_varint(data: &[u8], at: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data
            .get(*at)
            .ok_or_else(|| Error::Car(format!("truncated varint at byte {at}")))?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::Car(format!("varint too long before byte {at}")))
}

/// Encodes a CARv1 file from roots and blocks.
pub fn encode_car(roots: &[Cid], blocks: &[(Cid, &[u8])], out: &mut impl Write) -> Result<u64> {
    let header = serde_ipld_dagcbor::to_vec(&Header {
        roots: roots.to_vec(),
        version: 1,
    })
    .map_err(|e| Error::Encode {
        what: "CAR header",
        reason: e.to_string(),
    })?;
    let mut buf = Vec::new();
    put_varint(&mut buf, header.len() as u64);
    buf.extend_from_slice(&header);
    let mut written = 0u64;
    let io = |e| Error::Car(format!("write: {e}"));
    for (cid, data) in blocks {
        let cid_bytes = cid.to_bytes();
        put_varint(&mut buf, (cid_bytes.len() + data.len()) as u64);
        buf.extend_from_slice(&cid_bytes);
        buf.extend_from_slice(data);
        if buf.len() > 1 << 20 {
            out.write_all(&buf).map_err(io)?;
            written += buf.len() as u64;
            buf.clear();
        }
    }
    out.write_all(&buf).map_err(io)?;
    Ok(written + buf.len() as u64)
}

/// Decodes a CARv1 file: its roots and verified blocks.
pub fn decode_car(data: &[u8]) -> Result<(Vec<Cid>, Vec<Block>)> {
    let mut at = 0;
    let header_len = get_varint(data, &mut at)?;
    if header_len == 0 || header_len > MAX_HEADER {
        return Err(Error::Car(format!(
            "header length {header_len} out of range"
        )));
    }
    let header_bytes = data
        .get(at..at + header_len as usize)
        .ok_or_else(|| Error::Car("truncated header".into()))?;
    let header: Header = serde_ipld_dagcbor::from_slice(header_bytes)
        .map_err(|e| Error::Car(format!("header: {e}")))?;
    if header.version != 1 {
        return Err(Error::Car(format!(
            "version {} (only 1 is read)",
            header.version
        )));
    }
    at += header_len as usize;
    let mut blocks = Vec::new();
    while at < data.len() {
        let start = at;
        let len = get_varint(data, &mut at)?;
        if len == 0 || len > MAX_SECTION {
            return Err(Error::Car(format!(
                "section at byte {start}: length {len} out of range"
            )));
        }
        let section = data
            .get(at..at + len as usize)
            .ok_or_else(|| Error::Car(format!("section at byte {start} is truncated")))?;
        let mut reader = section;
        let cid = Cid::read_bytes(&mut reader)
            .map_err(|e| Error::Car(format!("section at byte {start}: CID: {e}")))?;
        let block_data = bytes::Bytes::copy_from_slice(reader);
        let block = Block::from_parts(cid, block_data)
            .map_err(|e| Error::Car(format!("section at byte {start}: {e}")))?;
        blocks.push(block);
        at += len as usize;
    }
    Ok((header.roots, blocks))
}

/// What an export or import moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarSummary {
    /// The root commit.
    pub root: Cid,
    /// Blocks in the file.
    pub blocks: usize,
    /// Bytes of the file (export) or blocks new to the store (import).
    pub bytes: u64,
}

impl fmt::Display for CarSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} blocks, {} bytes",
            self.root, self.blocks, self.bytes
        )
    }
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// Writes the commit `rev` names and everything it reaches (history, states, tensors,
    /// chunks) as a CARv1 file with that commit as root. Written to a temporary file and
    /// renamed, so a missing block leaves no file.
    pub async fn export_car(&self, rev: &Revision, path: &Path) -> Result<CarSummary> {
        let root = self.resolve(rev).await?;
        let dag = self.reachable(&[root]).await?;
        let leaves = self.blocks(&dag.leaves).await?;
        let mut blocks: Vec<(Cid, &[u8])> =
            dag.objects.iter().map(|(c, d)| (*c, d.as_ref())).collect();
        blocks.extend(
            dag.leaves
                .iter()
                .copied()
                .zip(leaves.iter().map(|d| d.as_ref())),
        );
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| -> Result<u64> {
            let file = File::create(&tmp).map_err(Error::io(&tmp))?;
            let mut w = BufWriter::new(file);
            let bytes = encode_car(&[root], &blocks, &mut w)?;
            let file = w
                .into_inner()
                .map_err(|e| Error::io(&tmp)(e.into_error()))?;
            file.sync_all().map_err(Error::io(&tmp))?;
            fs::rename(&tmp, path).map_err(Error::io(path))?;
            Ok(bytes)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        Ok(CarSummary {
            root,
            blocks: blocks.len(),
            bytes: result?,
        })
    }

    /// Imports a CARv1 file whose single root is a commit. Every block is verified, stored
    /// and recorded in the ledger; then the DAG under the root must be complete (an error
    /// names the first missing block). With `branch`, the branch is created at the root or
    /// fast-forwarded to it ([`Error::NotFastForward`] otherwise); without, no ref moves and
    /// the blocks stay until gc unless something refers to them.
    pub async fn import_car(&self, path: &Path, branch: Option<&str>) -> Result<CarSummary> {
        let data = fs::read(path).map_err(Error::io(path))?;
        let (roots, blocks) = decode_car(&data)?;
        let [root] = roots[..] else {
            return Err(Error::Car(format!(
                "{} roots; expected one commit",
                roots.len()
            )));
        };
        if let Some(b) = branch {
            crate::refs::validate_name(&branch_ref(b))?;
        }
        let _guard = self.ledger.writer()?;
        let (_, new_bytes) = self.put_new(&blocks).await?;
        self.commit_object(&root).await?;
        let dag = self.reachable(&[root]).await?;
        for batch in dag.leaves.chunks(1024) {
            let present = self.store.has_many(batch).await?;
            if let Some((cid, _)) = batch.iter().zip(present).find(|(_, here)| !here) {
                return Err(Error::MissingBlock { cid: *cid });
            }
        }
        if let Some(b) = branch {
            let name = branch_ref(b);
            let current = self.refs.get(&name)?;
            if let Some(cur) = current
                && !self.is_ancestor(&cur, &root).await?
            {
                return Err(Error::NotFastForward {
                    ours: Box::new(cur),
                    theirs: Box::new(root),
                });
            }
            self.refs.compare_and_swap(&name, current, Some(root))?;
        }
        Ok(CarSummary {
            root,
            blocks: blocks.len(),
            bytes: new_bytes,
        })
    }
}
