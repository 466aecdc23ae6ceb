//! A bounded load test of a running daemon over loopback: `clients` threads, each a
//! keep-alive HTTP client, for `duration`, doing a mix of block reads (half through the RPC
//! API, half through the gateway), block puts and CAR imports; then every block a put or an
//! import acknowledged is checked present. Reports per-operation latency percentiles, errors
//! (any non-2xx or transport failure), blocks lost, and the daemon's resident memory before
//! and after when its pid is known.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ipfrs_storage::{Block, Cid, Codec, HashAlgorithm};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::car::CarWriter;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http://127.0.0.1:PORT` of the RPC API.
    pub api: String,
    /// `http://127.0.0.1:PORT` of the gateway.
    pub gateway: String,
    /// Concurrent clients.
    pub clients: usize,
    /// How long they run.
    pub duration: Duration,
    /// Per cent of operations that are block puts.
    pub put_percent: u32,
    /// Per cent that are CAR imports (the rest are gets).
    pub import_percent: u32,
    /// Bytes of each put block.
    pub block_bytes: usize,
    /// Blocks per imported CAR (one dag-cbor root over raw leaves of `block_bytes`).
    pub car_blocks: usize,
    /// The daemon's pid, for its memory figures.
    pub daemon_pid: Option<u32>,
}

/// One operation's figures.
#[derive(Debug, Serialize, Default)]
pub struct OpFigures {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Latency percentiles of the successful ones, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// Clients.
    pub clients: usize,
    /// Seconds run.
    pub seconds: f64,
    /// Operations per second, all kinds.
    pub ops_per_second: f64,
    /// Block reads through `/api/v0/block/get`.
    pub rpc_get: OpFigures,
    /// Block reads through the gateway (`?format=raw`).
    pub gateway_get: OpFigures,
    /// `/api/v0/block/put`.
    pub block_put: OpFigures,
    /// `/api/v0/dag/import`.
    pub dag_import: OpFigures,
    /// Acknowledged blocks checked after the run.
    pub checked: u64,
    /// Acknowledged blocks missing after the run.
    pub lost: u64,
    /// The first few error messages.
    pub first_errors: Vec<String>,
    /// The daemon's VmRSS at the start and the end, KiB (includes the mapped segment files'
    /// pages, which grow with the data written).
    pub daemon_rss_kib: Option<(u64, u64)>,
    /// The daemon's RssAnon (heap and stacks, no file pages) at the start and the end, KiB.
    pub daemon_anon_kib: Option<(u64, u64)>,
}

#[derive(Clone, Copy)]
enum Op {
    RpcGet,
    GatewayGet,
    Put,
    Import,
}

struct ClientResult {
    hist: [Histogram<u64>; 4],
    errors: [u64; 4],
    messages: Vec<String>,
    acked: Vec<Cid>,
}

fn multipart(data: &[u8]) -> (String, Vec<u8>) {
    const B: &str = "ipfrs-load-boundary";
    let mut body = format!(
        "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{B}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={B}"), body)
}

fn random_bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut data = vec![0u8; n];
    rng.fill(&mut data[..]);
    data
}

/// A CAR of one dag-cbor root over `n` random raw leaves; returns (bytes, every CID).
fn random_car(rng: &mut StdRng, n: usize, leaf: usize) -> Option<(Vec<u8>, Vec<Cid>)> {
    let leaves: Vec<Block> = (0..n)
        .map(|_| Block::new(random_bytes(rng, leaf)))
        .collect::<Result<_, _>>()
        .ok()?;
    // dag-cbor: a list of links, tag 42 over the CID bytes with the identity multibase prefix.
    let mut cbor = Vec::new();
    push_cbor_len(&mut cbor, 4, leaves.len() as u64);
    for b in &leaves {
        let mut cid = vec![0u8];
        cid.extend_from_slice(&b.cid().to_bytes());
        cbor.extend_from_slice(&[0xd8, 42]);
        push_cbor_len(&mut cbor, 2, cid.len() as u64);
        cbor.extend_from_slice(&cid);
    }
    let root = Block::with(Codec::DagCbor, HashAlgorithm::Sha2_256, cbor).ok()?;
    let mut w = CarWriter::new(Vec::new(), &[*root.cid()]).ok()?;
    w.write_block(root.cid(), root.data()).ok()?;
    let mut cids = vec![*root.cid()];
    for b in &leaves {
        w.write_block(b.cid(), b.data()).ok()?;
        cids.push(*b.cid());
    }
    Some((w.finish().ok()?, cids))
}

fn push_cbor_len(out: &mut Vec<u8>, major: u8, len: u64) {
    let m = major << 5;
    match len {
        0..=23 => out.push(m | len as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, len as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Runs the load; `seed` blocks are put first so reads have something to find.
pub fn run(config: &LoadConfig) -> Result<LoadReport, String> {
    let rss = |field: &str| {
        config
            .daemon_pid
            .and_then(|p| ipfrs_storage::proc_status::kib_of(p, field))
    };
    let (rss_start, anon_start) = (rss("VmRSS:"), rss("RssAnon:"));
    let seed_agent = agent();
    let mut rng = StdRng::seed_from_u64(0x10ad);
    let mut seeded = Vec::new();
    for _ in 0..256 {
        let data = random_bytes(&mut rng, config.block_bytes);
        let (ct, body) = multipart(&data);
        let mut r = seed_agent
            .post(&format!("{}/api/v0/block/put", config.api))
            .header("Content-Type", &ct)
            .send(&body[..])
            .map_err(|e| format!("seeding: {e}"))?;
        let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        seeded.push(v["Key"].as_str().ok_or(text.clone())?.to_string());
    }
    let seeded = Arc::new(seeded);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..config.clients)
        .map(|i| {
            let (config, seeded, stop) = (config.clone(), seeded.clone(), stop.clone());
            std::thread::spawn(move || client(i as u64, &config, &seeded, &stop))
        })
        .collect();
    std::thread::sleep(config.duration);
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for t in threads {
        results.push(
            t.join()
                .map_err(|_| "a client thread panicked".to_string())?,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut hist: [Histogram<u64>; 4] = std::array::from_fn(|_| new_hist());
    let mut errors = [0u64; 4];
    let mut messages = Vec::new();
    let mut acked = Vec::new();
    for r in results {
        for k in 0..4 {
            hist[k].add(&r.hist[k]).map_err(|e| e.to_string())?;
            errors[k] += r.errors[k];
        }
        messages.extend(r.messages);
        acked.extend(r.acked);
    }
    // Nothing acknowledged may be missing.
    let mut lost = 0;
    for chunk in acked.chunks(64) {
        for cid in chunk {
            let r = seed_agent
                .post(&format!("{}/api/v0/block/stat?arg={cid}", config.api))
                .send_empty()
                .map_err(|e| e.to_string())?;
            if r.status() != 200 {
                lost += 1;
            }
        }
    }
    let (rss_end, anon_end) = (rss("VmRSS:"), rss("RssAnon:"));
    let figures = |k: usize| OpFigures {
        ok: hist[k].len(),
        errors: errors[k],
        p50_ms: hist[k].value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist[k].value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: hist[k].max() as f64 / 1000.0,
    };
    let total: u64 = hist.iter().map(Histogram::len).sum();
    messages.truncate(5);
    Ok(LoadReport {
        clients: config.clients,
        seconds,
        ops_per_second: total as f64 / seconds,
        rpc_get: figures(0),
        gateway_get: figures(1),
        block_put: figures(2),
        dag_import: figures(3),
        checked: acked.len() as u64,
        lost,
        first_errors: messages,
        daemon_rss_kib: rss_start.zip(rss_end),
        daemon_anon_kib: anon_start.zip(anon_end),
    })
}

fn new_hist() -> Histogram<u64> {
    // Microseconds up to 10 minutes, 3 significant digits: the bounds are constants that
    // hdrhistogram accepts.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn client(id: u64, config: &LoadConfig, seeded: &[String], stop: &AtomicBool) -> ClientResult {
    let agent = agent();
    let mut rng = StdRng::seed_from_u64(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed);
    let mut out = ClientResult {
        hist: std::array::from_fn(|_| new_hist()),
        errors: [0; 4],
        messages: Vec::new(),
        acked: Vec::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.random_range(0..100u32);
        let op = if roll < config.import_percent {
            Op::Import
        } else if roll < config.import_percent + config.put_percent {
            Op::Put
        } else if roll % 2 == 0 {
            Op::RpcGet
        } else {
            Op::GatewayGet
        };
        let started = Instant::now();
        let mut new_cids = Vec::new();
        let result: Result<(), String> = (|| {
            let response = match op {
                Op::RpcGet | Op::GatewayGet => {
                    let cid = &seeded[rng.random_range(0..seeded.len())];
                    if matches!(op, Op::RpcGet) {
                        agent
                            .post(&format!("{}/api/v0/block/get?arg={cid}", config.api))
                            .send_empty()
                    } else {
                        agent
                            .get(&format!("{}/ipfs/{cid}?format=raw", config.gateway))
                            .call()
                    }
                }
                Op::Put => {
                    let data = random_bytes(&mut rng, config.block_bytes);
                    let block = Block::new(data.clone()).map_err(|e| e.to_string())?;
                    new_cids.push(*block.cid());
                    let (ct, body) = multipart(&data);
                    agent
                        .post(&format!("{}/api/v0/block/put?pin=true", config.api))
                        .header("Content-Type", &ct)
                        .send(&body[..])
                }
                Op::Import => {
                    let (car, cids) = random_car(&mut rng, config.car_blocks, config.block_bytes)
                        .ok_or("cannot build a CAR")?;
                    new_cids = cids;
                    let (ct, body) = multipart(&car);
                    agent
                        .post(&format!("{}/api/v0/dag/import", config.api))
                        .header("Content-Type", &ct)
                        .send(&body[..])
                }
            };
            let mut response = response.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            Ok(())
        })();
        let k = op as usize;
        match result {
            Ok(()) => {
                let micros = started.elapsed().as_micros().max(1) as u64;
                let _ = out.hist[k].record(micros.min(600_000_000));
                out.acked.extend(new_cids);
            }
            Err(e) => {
                out.errors[k] += 1;
                if out.messages.len() < 5 {
                    out.messages.push(e);
                }
            }
        }
    }
    out
}
