//! The pack tier's transport against one object per block, on a Garage node it starts on
//! 127.0.0.1: what packs save in requests and time before the engine is in the picture.
//!
//! ```text
//! cargo run --release -p ipfrs-remote --example bucket_bench -- [--mib 256] [--block-kib 256] [--in-flight 8] [--reads 2000]
//! ```
//! Uploads the same generated blocks twice: packed (64 MiB packs through `PackBucket`, one
//! manifest) and as one object each (`concurrency` PUTs in flight). Then random single reads
//! (a ranged GET of the block's bytes in its pack against a GET of its object) and batches of
//! 32 (the batch's ranges of each pack in one `read_ranges`, against 32 GETs in flight).
//! Prints rates, medians and the requests each made. `--fresh-connections true`: one
//! connection per request on both sides (see `RemoteConfig::reuse_connections`). Needs a
//! `garage` binary (`scripts/ensure-garage` installs a debug one for tests; measure with a
//! release one named by `IPFRS_GARAGE`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipfrs_garage::Garage;
use ipfrs_remote::{Manifest, PackBucket, RemoteConfig};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const PACK_BYTES: usize = 64 << 20;

struct Args {
    mib: usize,
    block: usize,
    in_flight: usize,
    reads: usize,
    fresh_connections: bool,
}

fn args() -> Args {
    let mut a = Args {
        mib: 256,
        block: 256 << 10,
        in_flight: 8,
        reads: 2000,
        fresh_connections: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = || {
            pair.get(1)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        match pair[0].as_str() {
            "--mib" => a.mib = value(),
            "--block-kib" => a.block = value() << 10,
            "--in-flight" => a.in_flight = value().max(1),
            "--reads" => a.reads = value(),
            "--fresh-connections" => a.fresh_connections = pair.get(1).is_some_and(|v| v == "true"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// xorshift bytes: incompressible, reproducible.
fn data(len: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v.into()
}

fn median_us(mut d: Vec<Duration>) -> f64 {
    d.sort_unstable();
    d.get(d.len() / 2).map_or(0.0, |m| m.as_secs_f64() * 1e6)
}

fn rng(state: &mut u64) -> usize {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*state >> 33) as usize
}

fn main() {
    let a = args();
    let binary = ipfrs_garage::garage_binary()
        .expect("IPFRS_GARAGE")
        .expect("no garage binary: run scripts/ensure-garage");
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::start_with(&binary, dir.path()).expect("garage starts");
    let mut config = RemoteConfig::new(Some(&garage.endpoint()), garage.bucket());
    config.region = ipfrs_garage::REGION.to_owned();
    config.prefix = "packed".into();
    config.access_key_id = Some(garage.access_key().to_owned());
    config.secret_access_key = Some(garage.secret_key().to_owned());
    config.reuse_connections = !a.fresh_connections;
    let bucket = PackBucket::open(&config).expect("bucket opens");
    let raw: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(garage.endpoint())
            .with_bucket_name(garage.bucket())
            .with_region(ipfrs_garage::REGION)
            .with_access_key_id(garage.access_key())
            .with_secret_access_key(garage.secret_key())
            .with_allow_http(true)
            .with_client_options({
                // Set here, the builder's own allow_http is replaced by the options'.
                let options = object_store::ClientOptions::new().with_allow_http(true);
                if a.fresh_connections {
                    options.with_pool_max_idle_per_host(0)
                } else {
                    options
                }
            })
            .build()
            .expect("client"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let total = a.mib << 20;
    let blocks = total / a.block;
    let all = data(blocks * a.block);
    let per_pack = PACK_BYTES / a.block;
    println!(
        "{blocks} blocks of {} KiB ({} MiB), {} per pack, {} in flight; garage at {}",
        a.block >> 10,
        a.mib,
        per_pack,
        a.in_flight,
        garage.endpoint()
    );

    // Packed: each pack's bytes are its blocks back to back (the transport's view; a real
    // pack's records add 28 bytes and a key each).
    let start = Instant::now();
    let pending: Vec<_> = (0..blocks.div_ceil(per_pack))
        .map(|p| {
            let from = p * per_pack * a.block;
            let to = ((p + 1) * per_pack * a.block).min(all.len());
            bucket.upload_pack(0, p as u32, all.slice(from..to), Bytes::from(vec![0u8; 64]))
        })
        .collect();
    let packs = pending.len();
    let entries: Vec<_> = pending
        .into_iter()
        .map(|p| p.wait().expect("upload"))
        .collect();
    bucket
        .publish(&Manifest {
            shard: 0,
            generation: 1,
            packs: entries,
            dead: Vec::new(),
        })
        .wait()
        .expect("publish");
    let packed_s = start.elapsed().as_secs_f64();
    // HEAD + PUT (or HEAD + create, parts, complete) per pack and per hint, HEAD + PUT for
    // the manifest.
    let parts = (PACK_BYTES.min(all.len()) / (8 << 20)).max(1);
    let pack_requests = if PACK_BYTES > 16 << 20 {
        1 + 1 + parts + 1
    } else {
        2
    };
    let packed_requests = packs * (pack_requests + 2) + 2;

    // One object per block, in_flight PUTs at once.
    let start = Instant::now();
    rt.block_on(async {
        let mut set: tokio::task::JoinSet<object_store::Result<()>> = tokio::task::JoinSet::new();
        for i in 0..blocks {
            if set.len() >= a.in_flight {
                set.join_next()
                    .await
                    .expect("task")
                    .expect("join")
                    .expect("put");
            }
            let raw = Arc::clone(&raw);
            let bytes = all.slice(i * a.block..(i + 1) * a.block);
            set.spawn(async move {
                raw.put(
                    &Path::from(format!("objects/{i:08}")),
                    PutPayload::from(bytes),
                )
                .await
                .map(drop)
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("join").expect("put");
        }
    });
    let objects_s = start.elapsed().as_secs_f64();

    println!("\ningest: {} MiB", a.mib);
    println!("  target            MiB/s   blocks/s  requests");
    let row = |name: &str, s: f64, requests: usize| {
        println!(
            "  {name:<16} {:>6.1} {:>10.0} {:>9}",
            a.mib as f64 / s,
            blocks as f64 / s,
            requests
        );
    };
    row("packs", packed_s, packed_requests);
    row("object/block", objects_s, blocks);
    println!("  packs / object-per-block: {:.2}x", objects_s / packed_s);

    // Single reads, in_flight at once.
    let mut state = 7u64;
    let picks: Vec<usize> = (0..a.reads).map(|_| rng(&mut state) % blocks).collect();
    let mut packed_lat = Vec::new();
    let start = Instant::now();
    for wave in picks.chunks(a.in_flight) {
        let t = Instant::now();
        let calls: Vec<_> = wave
            .iter()
            .map(|&i| {
                let (p, k) = (i / per_pack, i % per_pack);
                let from = (k * a.block) as u64;
                bucket.read_ranges(
                    0,
                    p as u32,
                    std::iter::once(from..from + a.block as u64).collect(),
                )
            })
            .collect();
        for (call, &i) in calls.into_iter().zip(wave) {
            let got = call.wait().expect("read");
            assert_eq!(got[0], all.slice(i * a.block..(i + 1) * a.block));
        }
        packed_lat.push(t.elapsed());
    }
    let packed_reads = a.reads as f64 / start.elapsed().as_secs_f64();
    let mut object_lat = Vec::new();
    let start = Instant::now();
    rt.block_on(async {
        for wave in picks.chunks(a.in_flight) {
            let t = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for &i in wave {
                let raw = Arc::clone(&raw);
                set.spawn(async move {
                    let got = raw
                        .get(&Path::from(format!("objects/{i:08}")))
                        .await?
                        .bytes()
                        .await?;
                    Ok::<_, object_store::Error>((i, got))
                });
            }
            while let Some(r) = set.join_next().await {
                let (i, got) = r.expect("join").expect("get");
                assert_eq!(got, all.slice(i * a.block..(i + 1) * a.block));
            }
            object_lat.push(t.elapsed());
        }
    });
    let object_reads = a.reads as f64 / start.elapsed().as_secs_f64();
    println!(
        "\nsingle gets, {} in flight: {} reads",
        a.in_flight, a.reads
    );
    println!("  target           blocks/s  wave p50 us");
    println!(
        "  {:<16} {:>8.0} {:>12.0}",
        "packs (range)",
        packed_reads,
        median_us(packed_lat)
    );
    println!(
        "  {:<16} {:>8.0} {:>12.0}",
        "object/block",
        object_reads,
        median_us(object_lat)
    );

    // Batches of 32: the packed side sends each pack's ranges of the batch in one call.
    let batches = (a.reads / 32).max(1);
    let start = Instant::now();
    let mut packed_calls = 0;
    for b in 0..batches {
        let mut batch: Vec<usize> = picks[(b * 32) % picks.len()..]
            .iter()
            .take(32)
            .copied()
            .collect();
        batch.sort_unstable();
        let mut by_pack: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for i in batch {
            by_pack.entry(i / per_pack).or_default().push(i);
        }
        let calls: Vec<_> = by_pack
            .iter()
            .map(|(&p, is)| {
                let ranges = is
                    .iter()
                    .map(|&i| {
                        let from = ((i % per_pack) * a.block) as u64;
                        from..from + a.block as u64
                    })
                    .collect();
                (is.clone(), bucket.read_ranges(0, p as u32, ranges))
            })
            .collect();
        packed_calls += calls.len();
        for (is, call) in calls {
            for (i, got) in is.iter().zip(call.wait().expect("ranges")) {
                assert_eq!(got, all.slice(i * a.block..(i + 1) * a.block));
            }
        }
    }
    let packed_many = (batches * 32) as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    rt.block_on(async {
        for b in 0..batches {
            let mut set = tokio::task::JoinSet::new();
            for &i in picks[(b * 32) % picks.len()..].iter().take(32) {
                let raw = Arc::clone(&raw);
                set.spawn(async move {
                    raw.get(&Path::from(format!("objects/{i:08}")))
                        .await?
                        .bytes()
                        .await
                });
            }
            while let Some(r) = set.join_next().await {
                r.expect("join").expect("get");
            }
        }
    });
    let object_many = (batches * 32) as f64 / start.elapsed().as_secs_f64();
    println!("\nget_many(32): {batches} batches");
    println!("  target           blocks/s  calls");
    println!(
        "  {:<16} {:>8.0} {:>6}",
        "packs (ranges)", packed_many, packed_calls
    );
    println!(
        "  {:<16} {:>8.0} {:>6}",
        "object/block",
        object_many,
        batches * 32
    );
    println!(
        "  packs / object-per-block: {:.2}x",
        packed_many / object_many
    );
}
