//! Reading tensor data back: full tensors directly, deltas against their base.

use bytes::{Bytes, BytesMut};
use cid::Cid;
use ipfrs_storage::{Block, BlockStore};

use crate::chunking::tensor_len;
use crate::delta;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::objects::{ChunkSource, Delta, Tensor, TensorObject};
use crate::refs::RefStore;
use crate::repo::Repo;
use crate::tensors::TensorData;

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// The logical bytes of the chunks at `indices` of a tensor object (every index must be
    /// below its chunk count), reconstructed bit for bit. Delta chunks are verified against
    /// their recorded CIDs.
    pub async fn read_chunks(
        &self,
        cid: &Cid,
        obj: &TensorObject,
        indices: &[usize],
    ) -> Result<Vec<Bytes>> {
        match obj {
            TensorObject::Full(t) => {
                let cids: Vec<Cid> = indices.iter().map(|&i| t.chunks[i]).collect();
                self.blocks(&cids).await
            }
            TensorObject::Delta(d) => {
                let base = self.full_tensor(&d.base).await?;
                check_delta(cid, d, &base)?;
                self.read_delta_chunks(d, &base, indices).await
            }
        }
    }

    async fn read_delta_chunks(
        &self,
        d: &Delta,
        base: &Tensor,
        indices: &[usize],
    ) -> Result<Vec<Bytes>> {
        let elem = d.dtype.size();
        let mut out = Vec::with_capacity(indices.len());
        for batch in indices.chunks(self.config.batch_blocks.max(1)) {
            // One request for the batch: stored chunks, and base + payload for XOR chunks.
            let mut wanted = Vec::with_capacity(batch.len() * 2);
            for &i in batch {
                let c = &d.chunks[i];
                match c.from {
                    ChunkSource::Base => wanted.push(base.chunks[i]),
                    ChunkSource::Raw => wanted.push(c.chunk),
                    ChunkSource::Xor(x) | ChunkSource::Sub(x) => {
                        wanted.push(base.chunks[i]);
                        wanted.push(x);
                    }
                }
            }
            let mut got = self.blocks(&wanted).await?.into_iter();
            for &i in batch {
                let c = &d.chunks[i];
                let first = got.next().unwrap_or_default();
                let Some((transform, x)) = c.from.payload() else {
                    out.push(first);
                    continue;
                };
                let payload = got.next().unwrap_or_default();
                let data = delta::decode(transform, &payload, &first, elem).map_err(|reason| {
                    Error::BadDelta {
                        cid: Box::new(x),
                        reason: format!("chunk {i}: {reason}"),
                    }
                })?;
                // The recorded CID makes the reconstruction self-checking.
                let block = Block::from_parts(c.chunk, data)
                    .map_err(|_| Error::ChunkMismatch { cid: c.chunk })?;
                out.push(block.into_parts().1);
            }
        }
        Ok(out)
    }

    /// A whole tensor, reconstructed.
    pub async fn read_tensor(&self, cid: &Cid) -> Result<TensorData> {
        let obj = self.tensor_object(cid).await?;
        let indices: Vec<usize> = (0..obj.chunk_cids().len()).collect();
        let len = tensor_len(obj.dtype(), obj.shape()).ok_or_else(|| Error::Decode {
            cid: Box::new(*cid),
            expected: "tensor",
            reason: "shape overflows".into(),
        })?;
        let mut data = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
        for part in self.read_chunks(cid, &obj, &indices).await? {
            data.extend_from_slice(&part);
        }
        if data.len() as u64 != len {
            return Err(Error::Decode {
                cid: Box::new(*cid),
                expected: "tensor",
                reason: format!("chunks hold {} bytes, shape needs {len}", data.len()),
            });
        }
        Ok(TensorData {
            dtype: obj.dtype(),
            shape: obj.shape().to_vec(),
            data: data.freeze(),
        })
    }
}

/// A delta must describe the same layout as its base.
pub(crate) fn check_delta(cid: &Cid, d: &Delta, base: &Tensor) -> Result<()> {
    let bad = |reason: String| {
        Err(Error::BadDelta {
            cid: Box::new(*cid),
            reason,
        })
    };
    if d.encoding != delta::ENCODING {
        return bad(format!("unknown encoding {:?}", d.encoding));
    }
    if d.dtype != base.dtype || d.shape != base.shape {
        return bad(format!(
            "delta is {} {:?} but its base {} is {} {:?}",
            d.dtype, d.shape, d.base, base.dtype, base.shape
        ));
    }
    if d.chunk_bytes != base.chunk_bytes || d.chunks.len() != base.chunks.len() {
        return bad(format!(
            "delta has {} chunks of {} bytes, its base {} of {}",
            d.chunks.len(),
            d.chunk_bytes,
            base.chunks.len(),
            base.chunk_bytes
        ));
    }
    Ok(())
}
