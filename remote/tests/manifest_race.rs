//! A reader of a shard's newest manifest while the writer replaces it and deletes the one
//! before (its grace period at zero): the generation it listed may be gone before it reads
//! it, and the read must then find the newer one, never fail.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipfrs_remote::{Manifest, PackBucket, RemoteConfig};

fn manifest(generation: u64) -> Manifest {
    Manifest {
        shard: 0,
        generation,
        packs: Vec::new(),
        dead: Vec::new(),
    }
}

#[test]
fn the_newest_manifest_is_read_while_the_writer_replaces_and_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bucket")).unwrap();
    let config = RemoteConfig::new(Some(&format!("file://{}", dir.path().display())), "bucket");
    let writer = PackBucket::open(&config).unwrap();
    let reader = PackBucket::open(&config).unwrap();
    writer.publish(&manifest(1)).wait().unwrap();
    let stop = AtomicBool::new(false);
    let (reads, published) = std::thread::scope(|scope| {
        let publishing = scope.spawn(|| {
            let mut generation = 1;
            // Bounded on its own too: a reader that panics never sets `stop`.
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(5) {
                generation += 1;
                writer.publish(&manifest(generation)).wait().unwrap();
                writer.delete_manifest(0, generation - 1).wait().unwrap();
            }
            generation
        });
        let start = Instant::now();
        let (mut reads, mut last) = (0, 0);
        while start.elapsed() < Duration::from_millis(1500) {
            let read = reader.latest_manifest(0).wait();
            let read = read.unwrap_or_else(|e| panic!("read {reads}: {e}"));
            let generation = read.unwrap().generation;
            assert!(generation >= last, "generation {generation} after {last}");
            (reads, last) = (reads + 1, generation);
        }
        stop.store(true, Ordering::Relaxed);
        (reads, publishing.join().unwrap())
    });
    // Both sides really ran against each other.
    assert!(
        reads > 10 && published > 10,
        "{reads} reads, {published} generations"
    );
}
