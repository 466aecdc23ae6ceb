//! A `Blockstore` wrapper that counts the blocks its inner store accepted, so a fetch can
//! tell when beetswap has stored what it received (it stores after it reports a block, and
//! drops a failed store's error).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use blockstore::Blockstore;
use blockstore::cond_send::{CondSend, CondSync};
use cid::CidGeneric;

/// `S` with a count of the blocks stored through it (`put_keyed`, `put_many_keyed`).
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: S,
    stored: Arc<AtomicU64>,
}

impl<S> CountingStore<S> {
    /// Wraps `inner`, counting from zero.
    pub fn new(inner: S) -> CountingStore<S> {
        CountingStore {
            inner,
            stored: Arc::default(),
        }
    }

    /// Blocks stored through this wrapper so far (a block stored twice counts twice).
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Acquire)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Blockstore> Blockstore for CountingStore<S> {
    async fn get<const N: usize>(
        &self,
        cid: &CidGeneric<N>,
    ) -> blockstore::Result<Option<Vec<u8>>> {
        self.inner.get(cid).await
    }

    async fn put_keyed<const N: usize>(
        &self,
        cid: &CidGeneric<N>,
        data: &[u8],
    ) -> blockstore::Result<()> {
        self.inner.put_keyed(cid, data).await?;
        self.stored.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    async fn remove<const N: usize>(&self, cid: &CidGeneric<N>) -> blockstore::Result<()> {
        self.inner.remove(cid).await
    }

    async fn has<const N: usize>(&self, cid: &CidGeneric<N>) -> blockstore::Result<bool> {
        self.inner.has(cid).await
    }

    async fn put_many_keyed<const N: usize, D, I>(&self, blocks: I) -> blockstore::Result<()>
    where
        D: AsRef<[u8]> + CondSync,
        I: IntoIterator<Item = (CidGeneric<N>, D)> + CondSend,
        <I as IntoIterator>::IntoIter: Send,
    {
        // Counted as the inner store pulls them, added only once it has stored them all.
        let count = AtomicU64::new(0);
        let counted = blocks.into_iter().inspect(|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        self.inner.put_many_keyed(counted).await?;
        self.stored.fetch_add(count.into_inner(), Ordering::AcqRel);
        Ok(())
    }

    async fn close(self) -> blockstore::Result<()> {
        self.inner.close().await
    }
}
