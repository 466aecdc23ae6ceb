//! [`Replica`] as a [`BlockStore`]: a read replica behind the embedder's contract, so code
//! written against the trait (a gateway, an export) serves a bucket's packs unchanged.
//!
//! Reads are the replica's own (ranged reads of the bucket, every record checked; `has` and
//! `get_size` from the in-memory index). Writes are refused with [`Error::ReadOnly`] before
//! anything is looked at: the primary that uploads the packs is the only writer.
//!
//! The listing walks the indexed packs in order (shard, pack, record offset) and names a
//! block at the record a read of it is served from, so every served block is listed once. The
//! index keeps no keys, so a page reads them from the pack's hint (the pack itself when the
//! hint is missing or damaged, as indexing does); the last pack read is kept for the next
//! page. The cursor is the primary's shard number and the last record listed (pack and
//! offset): a listing that spans a [`Replica::refresh`] goes on from that place in the new
//! index, and new packs (numbered above the old ones) come at the end of their shard.

use bytes::Bytes;
use ipfrs_core_types::key::cid_of_key;
use ipfrs_core_types::{Block, Cid};

use crate::replica::{Replica, ReplicaError};
use crate::store::{BlockStore, CidPage, Cursor};
use crate::{Error, Result, Stats};

/// Bytes of a replica cursor's place: the pack number and the record's offset, big-endian.
const PLACE_LEN: usize = 8;

impl From<ReplicaError> for Error {
    fn from(err: ReplicaError) -> Error {
        match err {
            ReplicaError::Corrupt {
                key,
                shard,
                pack,
                offset,
                reason,
            } => Error::Corrupt {
                key,
                reason: format!(
                    "in the bucket's shard {shard} pack {pack} at offset {offset}: {reason}"
                ),
            },
            ReplicaError::Remote(source) => Error::ReplicaBucket { source },
        }
    }
}

impl Replica {
    /// `Err(Error::Closed)` once the trait's `close` ran.
    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// One page of the listing (the work behind `cid_page`; see the module docs).
    async fn list_page(&self, cursor: Cursor, limit: usize) -> Result<CidPage> {
        let limit = limit.max(1);
        let done = CidPage {
            cids: Vec::new(),
            next: None,
        };
        // Shard numbers are u32 in the bucket: a cursor past them is past the end.
        let Ok(from) = u32::try_from(cursor.shard) else {
            return Ok(done);
        };
        let after = match cursor.after.as_deref() {
            None => None,
            Some(&[p0, p1, p2, p3, o0, o1, o2, o3]) => Some((
                u32::from_be_bytes([p0, p1, p2, p3]),
                u32::from_be_bytes([o0, o1, o2, o3]),
            )),
            Some(other) => {
                return Err(Error::Internal(format!(
                    "a replica's listing was given a cursor it did not make ({} bytes of \
                     place, not {PLACE_LEN})",
                    other.len()
                )));
            }
        };
        let mut cids = Vec::new();
        for (shard, packs) in self.packs_from(from) {
            let after = if shard == from { after } else { None };
            for entry in packs {
                if after.is_some_and(|(pack, _)| entry.pack < pack) {
                    continue;
                }
                let records = self.pack_records(shard, entry).await?;
                for (offset, key) in records.iter() {
                    if after.is_some_and(|(pack, at)| entry.pack == pack && *offset <= at) {
                        continue;
                    }
                    if !self.serves_from(shard, entry.pack, *offset, key) {
                        continue;
                    }
                    cids.push(cid_of_key(key)?);
                    if cids.len() == limit {
                        let mut place = Vec::with_capacity(PLACE_LEN);
                        place.extend_from_slice(&entry.pack.to_be_bytes());
                        place.extend_from_slice(&offset.to_be_bytes());
                        let next = Cursor {
                            shard: shard as usize,
                            after: Some(place),
                        };
                        return Ok(CidPage {
                            cids,
                            next: Some(next),
                        });
                    }
                }
            }
        }
        Ok(CidPage { cids, ..done })
    }
}

/// A replica answers reads from its index and the bucket and refuses every write: see the
/// module docs. `close` needs no work (a replica holds nothing unwritten); it only makes the
/// trait's later calls fail with [`Error::Closed`].
impl BlockStore for Replica {
    async fn put_many(&self, _blocks: &[Block]) -> Result<()> {
        self.check_open()?;
        Err(Error::ReadOnly { operation: "put" })
    }

    async fn put_data(&self, _cid: &Cid, _data: Bytes) -> Result<()> {
        self.check_open()?;
        Err(Error::ReadOnly { operation: "put" })
    }

    async fn get(&self, cid: &Cid) -> Result<Option<Bytes>> {
        self.check_open()?;
        Ok(Replica::get(self, cid).await?)
    }

    async fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Bytes>>> {
        self.check_open()?;
        Ok(Replica::get_many(self, cids).await?)
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        self.check_open()?;
        Ok(Replica::has(self, cid))
    }

    async fn has_many(&self, cids: &[Cid]) -> Result<Vec<bool>> {
        self.check_open()?;
        Ok(cids.iter().map(|cid| Replica::has(self, cid)).collect())
    }

    async fn get_size(&self, cid: &Cid) -> Result<Option<u64>> {
        self.check_open()?;
        Ok(Replica::get_size(self, cid))
    }

    async fn delete_many(&self, _cids: &[Cid]) -> Result<Vec<bool>> {
        self.check_open()?;
        Err(Error::ReadOnly {
            operation: "delete",
        })
    }

    async fn cid_page(&self, cursor: Cursor, limit: usize) -> Result<CidPage> {
        self.check_open()?;
        self.list_page(cursor, limit).await
    }

    /// `blocks` and `bytes` are the blocks served and their sizes (all of them only in the
    /// bucket: `cold_bytes` too), `remote_packs` the packs indexed; the engine's other
    /// counters (caches, hot tier, uploads) have no replica counterpart and stay 0.
    async fn stats(&self) -> Result<Stats> {
        self.check_open()?;
        let (blocks, bytes) = self.served();
        Ok(Stats {
            blocks,
            bytes,
            cold_bytes: bytes,
            remote_packs: self.pack_count(),
            ..Stats::default()
        })
    }

    async fn flush(&self) -> Result<()> {
        self.check_open()
    }

    async fn close(&self) -> Result<()> {
        self.mark_closed();
        Ok(())
    }
}
