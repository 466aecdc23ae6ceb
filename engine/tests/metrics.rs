//! The facade records every public operation: counts, items, bytes, errors, latency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore, Config, Engine, Op};

#[test]
fn operations_are_counted_and_exposed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.shards = Some(2);
    config.max_block_size = 1000;
    let engine = Engine::open(config).unwrap();
    let a = Block::new(vec![1u8; 100]).unwrap();
    let b = Block::new(vec![2u8; 200]).unwrap();
    let big = Block::new(vec![3u8; 2000]).unwrap();
    let missing = Block::new(&b"absent"[..]).unwrap();
    block_on(async {
        engine.put_many(&[a.clone(), b.clone()]).await.unwrap();
        assert!(engine.put(&big).await.is_err());
        engine.get_many(&[*a.cid(), *missing.cid()]).await.unwrap();
        engine.has(b.cid()).await.unwrap();
        engine.delete(b.cid()).await.unwrap();
    });
    let snap = block_on(engine.metrics()).unwrap();
    let op = |op: Op| snap.ops.iter().find(|o| o.op == op).unwrap().clone();
    let put = op(Op::Put);
    assert_eq!(
        (put.calls, put.errors, put.items, put.bytes),
        (2, 1, 3, 300)
    );
    let get = op(Op::Get);
    assert_eq!((get.calls, get.items, get.bytes), (1, 2, 100));
    assert_eq!(op(Op::Has).calls, 1);
    assert_eq!(op(Op::Delete).items, 1);
    assert_eq!(put.latency_micros.len(), 2);
    assert_eq!(snap.stats.blocks, 1);
    let text = snap.to_prometheus();
    assert!(
        text.contains("ipfrs_operations_total{op=\"put\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("ipfrs_blocks 1\n"), "{text}");
    block_on(engine.close()).unwrap();
}
