//! Pins: the roots `repo gc` keeps, stored durably in the engine's metadata store.
//!
//! One metadata entry per pin, `pins/<cid>` -> `recursive` or `direct` (the CID as text, so
//! `pin ls` gives back what was pinned). Every change is a compare-and-swap, durable when it
//! returns, so pins survive a crash and a restart, and two writers (the daemon's requests)
//! cannot lose each other's pins. A recursive pin keeps the block and every block it links to
//! (dag-pb, dag-cbor, raw); a direct pin keeps the block alone, as Kubo's.

use ipfrs_storage::{Cid, MetadataStore, Swap};
use serde::Serialize;

use crate::store::error::parse_cid;

use super::error::{Error, Result};

/// The metadata key prefix of every pin.
pub const PREFIX: &str = "pins/";

/// What a pin keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinKind {
    /// The block alone.
    Direct,
    /// The block and everything it links to.
    Recursive,
}

impl PinKind {
    /// The stored (and Kubo's) name: `direct` or `recursive`.
    pub fn name(self) -> &'static str {
        match self {
            PinKind::Direct => "direct",
            PinKind::Recursive => "recursive",
        }
    }

    fn parse(value: &[u8]) -> Option<PinKind> {
        match value {
            b"direct" => Some(PinKind::Direct),
            b"recursive" => Some(PinKind::Recursive),
            _ => None,
        }
    }
}

/// One pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The pinned CID.
    pub cid: Cid,
    /// What it keeps.
    pub kind: PinKind,
}

fn key(cid: &Cid) -> String {
    format!("{PREFIX}{cid}")
}

/// The pin on `cid`, if any.
pub async fn get<M: MetadataStore>(meta: &M, cid: &Cid) -> Result<Option<PinKind>> {
    let value = meta.meta_get(key(cid).as_bytes()).await?;
    Ok(value.and_then(|v| PinKind::parse(&v)))
}

/// Pins `cid`. A recursive pin replaces a direct one; a direct pin on a recursively pinned
/// CID changes nothing (the block is kept either way). Returns whether anything changed.
pub async fn add<M: MetadataStore>(meta: &M, cid: &Cid, kind: PinKind) -> Result<bool> {
    let key = key(cid);
    let mut expected = meta.meta_get(key.as_bytes()).await?;
    loop {
        let current = expected.as_deref().and_then(PinKind::parse);
        if current == Some(kind) || current == Some(PinKind::Recursive) {
            return Ok(false);
        }
        match meta
            .meta_compare_and_swap(
                key.as_bytes(),
                expected.as_deref(),
                Some(kind.name().as_bytes()),
            )
            .await?
        {
            Swap::Done => return Ok(true),
            // Another request changed this pin meanwhile: decide again on what it wrote.
            Swap::Conflict { current } => expected = current,
        }
    }
}

/// Removes the pin on `cid`. `recursive == false` refuses to remove a recursive pin (as
/// Kubo's `pin rm --recursive=false`).
pub async fn rm<M: MetadataStore>(meta: &M, cid: &Cid, recursive: bool) -> Result<PinKind> {
    let key = key(cid);
    let mut expected = meta.meta_get(key.as_bytes()).await?;
    loop {
        let Some(kind) = expected.as_deref().and_then(PinKind::parse) else {
            return Err(Error::NotPinned {
                cid: Box::new(*cid),
            });
        };
        if kind == PinKind::Recursive && !recursive {
            return Err(Error::PinnedRecursively {
                cid: Box::new(*cid),
            });
        }
        match meta
            .meta_compare_and_swap(key.as_bytes(), expected.as_deref(), None)
            .await?
        {
            Swap::Done => return Ok(kind),
            Swap::Conflict { current } => expected = current,
        }
    }
}

/// Every pin, in key order. An entry that does not parse (written by something else under
/// the prefix) is an error: gc must not run on a pin set it cannot read whole.
pub async fn ls<M: MetadataStore>(meta: &M) -> Result<Vec<Pin>> {
    let entries = meta.meta_list(PREFIX.as_bytes()).await?;
    let mut pins = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let text = String::from_utf8_lossy(&key[PREFIX.len()..]).into_owned();
        let bad = |reason: String| Error::BadPinEntry {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason,
        };
        let cid = parse_cid(&text).map_err(|e| bad(e.to_string()))?;
        let kind = PinKind::parse(&value)
            .ok_or_else(|| bad(format!("value {:?}", String::from_utf8_lossy(&value))))?;
        pins.push(Pin { cid, kind });
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures_lite::future::block_on;
    use ipfrs_storage::{Block, BlockStore, Engine};

    use super::*;

    #[test]
    fn pins_survive_reopen_and_follow_kubo_rules() {
        let dir = tempfile::tempdir().unwrap();
        let a = *Block::new(&b"a"[..]).unwrap().cid();
        let b = *Block::new(&b"b"[..]).unwrap().cid();
        {
            let engine = Engine::open(dir.path()).unwrap();
            block_on(async {
                assert!(add(&engine, &a, PinKind::Direct).await.unwrap());
                // Direct -> recursive upgrades; recursive -> direct changes nothing.
                assert!(add(&engine, &a, PinKind::Recursive).await.unwrap());
                assert!(!add(&engine, &a, PinKind::Direct).await.unwrap());
                assert!(add(&engine, &b, PinKind::Direct).await.unwrap());
                engine.close().await.unwrap();
            });
        }
        let engine = Engine::open(dir.path()).unwrap();
        block_on(async {
            let mut listed = ls(&engine).await.unwrap();
            listed.sort_by_key(|p| p.cid.to_string());
            let mut want = vec![
                Pin {
                    cid: a,
                    kind: PinKind::Recursive,
                },
                Pin {
                    cid: b,
                    kind: PinKind::Direct,
                },
            ];
            want.sort_by_key(|p| p.cid.to_string());
            assert_eq!(listed, want);
            assert!(matches!(
                rm(&engine, &a, false).await,
                Err(Error::PinnedRecursively { .. })
            ));
            assert_eq!(rm(&engine, &a, true).await.unwrap(), PinKind::Recursive);
            assert!(matches!(
                rm(&engine, &a, true).await,
                Err(Error::NotPinned { .. })
            ));
            assert_eq!(get(&engine, &b).await.unwrap(), Some(PinKind::Direct));
            engine.close().await.unwrap();
        });
    }
}
