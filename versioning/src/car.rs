//! CARv1 export and import of a commit's whole DAG.
//!
//! The framing (header, sections, varints, limits) is the workspace's one CAR codec,
//! `ipfrs-car`: this module only chooses what goes in a file (a commit and everything it
//! reaches) and what an import must find there (one root, a complete DAG). The reader bounds
//! every length and verifies each block's hash, so a hostile file is a typed error.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use cid::Cid;
use ipfrs_car::{CarWriter, ReadOptions};
use ipfrs_storage::{Block, BlockStore};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::refs::RefStore;
use crate::repo::{Repo, branch_ref};
use crate::revision::Revision;

/// Largest block accepted on import: twice the engine's default 2 MiB limit, so a store
/// configured for larger chunks can still take back what it exported; the engine refuses
/// anything over its own configured limit when the block is stored.
const MAX_BLOCK: usize = 4 << 20;

/// Encodes a CARv1 file from roots and blocks, in the order given; returns the bytes written.
pub fn encode_car(roots: &[Cid], blocks: &[(Cid, &[u8])], out: &mut impl Write) -> Result<u64> {
    let mut writer = CarWriter::new(out, roots)?;
    for (cid, data) in blocks {
        writer.write_block(cid, data)?;
    }
    let written = writer.bytes_written();
    writer.finish()?;
    Ok(written)
}

/// Decodes a CAR file (CARv1, or the CARv1 payload of a CARv2): its roots and its blocks,
/// each verified against its CID. The first malformed byte is an [`Error::Car`] naming its
/// offset.
pub fn decode_car(data: &[u8]) -> Result<(Vec<Cid>, Vec<Block>)> {
    let options = ReadOptions {
        max_block_size: MAX_BLOCK,
    };
    let reader = ipfrs_car::read_with(data, options)?;
    let roots = reader.header().roots.clone();
    let blocks = reader.collect::<std::result::Result<Vec<Block>, _>>()?;
    Ok((roots, blocks))
}

/// What an export or import moved. Serialises with CIDs as text ([`crate::cid_text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CarSummary {
    /// The root commit.
    #[serde(with = "crate::cid_text")]
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

    /// Imports a CAR file (CARv1, or CARv2 as [`decode_car`] reads it) whose single root is a
    /// commit ([`Error::CarRoots`] otherwise). Every block is verified, stored and recorded in
    /// the ledger; then the DAG under the root must be complete (an error names the first
    /// missing block). With `branch`, the branch is created at the root or
    /// fast-forwarded to it ([`Error::NotFastForward`] otherwise); without, no ref moves and
    /// the blocks stay until gc unless something refers to them.
    pub async fn import_car(&self, path: &Path, branch: Option<&str>) -> Result<CarSummary> {
        let data = fs::read(path).map_err(Error::io(path))?;
        let (roots, blocks) = decode_car(&data)?;
        let [root] = roots[..] else {
            return Err(Error::CarRoots { roots: roots.len() });
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn blocks() -> Vec<Block> {
        (0..3u8)
            .map(|i| Block::new(vec![i; 100]).unwrap())
            .collect()
    }

    #[test]
    fn a_carv2_payload_decodes_like_the_carv1_it_holds() {
        let want = blocks();
        let root = *want[0].cid();
        let mut writer =
            ipfrs_car::CarV2Writer::new(std::io::Cursor::new(Vec::new()), &[root]).unwrap();
        for b in &want {
            writer.write_block(b.cid(), b.data()).unwrap();
        }
        let v2 = writer.finish().unwrap().into_inner();
        let pairs: Vec<(Cid, &[u8])> = want.iter().map(|b| (*b.cid(), b.data().as_ref())).collect();
        let mut v1 = Vec::new();
        let written = encode_car(&[root], &pairs, &mut v1).unwrap();
        assert_eq!(written, v1.len() as u64);
        assert_eq!(decode_car(&v2).unwrap(), (vec![root], want.clone()));
        assert_eq!(decode_car(&v1).unwrap(), (vec![root], want));
    }

    #[test]
    fn codec_errors_keep_their_cause_and_offset() {
        let want = blocks();
        let pairs: Vec<(Cid, &[u8])> = want.iter().map(|b| (*b.cid(), b.data().as_ref())).collect();
        let mut file = Vec::new();
        encode_car(&[], &pairs, &mut file).unwrap();
        let last = file.len() - 1;
        file[last] ^= 1;
        let err = decode_car(&file).unwrap_err();
        let Error::Car(car) = &err else {
            panic!("{err}");
        };
        assert!(matches!(car, ipfrs_car::CarError::BadBlock { .. }), "{car}");
        // The last section starts 100 bytes of data and a 36-byte CID and a 2-byte length
        // before the end.
        assert_eq!(car.offset(), file.len() as u64 - 100 - 36 - 2);
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<ipfrs_car::CarError>().is_some());
    }
}
