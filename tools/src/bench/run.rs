//! A benchmark run: rounds of every target (A B C A B C ...), each target opened fresh in its
//! own directory, running the workloads in order (ingest first: the reads need the blocks),
//! its memory peak measured around it, then closed and removed. Interleaving keeps the ratios
//! honest while the machine's speed drifts (other tenants, thermal limits, page cache).
//!
//! The `car` workload runs last, in a second fresh store of the same target (an ingest of the
//! CAR file's blocks into an empty store, as the ingest workload does with generated ones);
//! the file is read into memory before the first round.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ipfrs_remote::{RequestCounts, process_requests};

use super::car;
use super::cli::Plan;
use super::disk;
use super::doc::{Document, RoundFigures, Settings, TargetFigures, WorkloadReport};
use super::driver::Measurement;
use super::error::{BenchError, Result};
use super::html;
use super::machine::Machine;
use super::markdown;
use super::report;
use super::rss;
use super::s3::S3Service;
use super::sync_ceiling;
use super::target::TargetKind;
use super::usage::Usage;
use super::workload::{Dataset, Op, SizeSpec, WorkloadKind, mixed_extra, ops_of};

/// What this version does not measure, said in every report.
pub const MISSING: [&str; 0] = [];

/// Runs the benchmark described by `plan` (`command` is the command line, for the report).
pub fn run(plan: &Plan, command: Vec<String>) -> Result<()> {
    let started = Instant::now();
    // The engine sets the allocator when it first opens; set it now so the targets before
    // that one (and the raw backends) run with the same settings.
    ipfrs_storage::tune_allocator();
    // Fail on an unusable --json or --dir before spending a minute measuring.
    let json_file = match &plan.json {
        Some(path) => Some((
            path,
            File::create(path).map_err(|e| BenchError::io("cannot create --json", path, e))?,
        )),
        None => None,
    };
    let markdown_file = match &plan.markdown {
        Some(path) => Some((
            path,
            File::create(path).map_err(|e| BenchError::io("cannot create --markdown", path, e))?,
        )),
        None => None,
    };
    let report_file = match &plan.report {
        Some(path) => Some((path, html::create(path, "--report")?)),
        None => None,
    };
    let root = run_directory(plan)?;
    let machine = Machine::probe(root.path());
    let disk_unavailable = plan
        .ceilings
        .then(|| disk::probe(root.path(), &machine.fs_type))
        .flatten();
    let sync_unavailable = (plan.ceilings && plan.workloads.contains(&WorkloadKind::Put))
        .then(|| sync_ceiling::probe(root.path(), &machine.fs_type))
        .flatten();
    // The bucket (and Garage) before any target: a bad endpoint fails the run at once.
    let s3 = plan
        .s3
        .map(|source| {
            S3Service::start(
                source,
                plan.s3_bucket.as_deref(),
                plan.s3_reuse_connections,
                plan.s3_garage_block_size,
                root.path(),
            )
        })
        .transpose()?;
    let targets: Vec<TargetKind> = TargetKind::all(plan)
        .into_iter()
        .filter(|t| match t {
            TargetKind::Disk => disk_unavailable.is_none(),
            TargetKind::SyncWrite { .. } => sync_unavailable.is_none(),
            _ => true,
        })
        .collect();

    // The CAR file's blocks, read (and verified) before anything is measured.
    let car_data = plan.car.as_deref().map(car::load).transpose()?;
    // Workloads over generated blocks; without any (only `car`), none are generated.
    let synthetic = plan.workloads.iter().any(|w| *w != WorkloadKind::Car);
    let ops = plan.read_ops;
    let extra = if plan.workloads.contains(&WorkloadKind::Mixed) {
        mixed_extra(ops, plan.read_ratio, plan.blocks)
    } else {
        0
    };
    let wants = |kinds: &[WorkloadKind]| kinds.iter().any(|k| plan.workloads.contains(k));
    let absent = if wants(&[WorkloadKind::HasAbsent, WorkloadKind::HasManyAbsent]) {
        ops
    } else {
        0
    };
    let sampled = if wants(&[WorkloadKind::GetMany]) {
        ops
    } else {
        0
    };
    let sequential = if wants(&[WorkloadKind::GetManySeq]) {
        ops
    } else {
        0
    };
    let stored = if synthetic { plan.blocks } else { 0 };
    let data = Dataset::generate(
        plan.size,
        stored,
        extra,
        absent,
        (sampled, sequential),
        plan.seed,
    )?;
    // Ingest always runs first: the other workloads read what it stores. Car runs last, in a
    // store of its own. Only chosen workloads report.
    let mut sequence = Vec::new();
    if synthetic {
        sequence.push(WorkloadKind::Ingest);
        sequence.extend(
            plan.workloads
                .iter()
                .filter(|w| !matches!(w, WorkloadKind::Ingest | WorkloadKind::Car)),
        );
    }
    if car_data.is_some() {
        sequence.push(WorkloadKind::Car);
    }
    let op_lists: Vec<Vec<Op>> = sequence
        .iter()
        .map(|&w| {
            let over = match (w, &car_data) {
                (WorkloadKind::Car, Some(car)) => car,
                _ => &data,
            };
            ops_of(
                w,
                over,
                plan.batch,
                ops,
                plan.zipf_skew,
                plan.read_ratio,
                plan.seed,
            )
        })
        .collect();

    let settings = settings(plan, &data, car_data.as_ref());
    let out = Printer { quiet: plan.quiet };
    out.line(&report::header(
        &settings,
        &machine,
        root.path(),
        &targets,
        disk_unavailable.as_deref(),
        sync_unavailable.as_deref(),
    ));
    if let Some(s3) = &s3 {
        out.line(&format!(
            "s3: {}; engine+s3 keeps {} bytes of uploaded packs locally, reads ahead {} \
             bytes past a sequential read and, after ingest, waits (untimed) for its \
             uploader to go idle before the reads",
            s3.describe(),
            plan.local_pack_bytes,
            plan.s3_readahead.map_or_else(
                || format!(
                    "{} (default)",
                    ipfrs_storage::RemoteTier::DEFAULT_READAHEAD_BYTES
                ),
                |b| b.to_string()
            )
        ));
    }

    let progress = progress_bar(plan, (plan.rounds as usize * targets.len()) as u64);
    // rounds[target][workload in sequence] = figures per round.
    let mut figures: Vec<Vec<Vec<RoundFigures>>> =
        vec![vec![Vec::new(); sequence.len()]; targets.len()];
    for round in 0..plan.rounds {
        for (t, &target) in targets.iter().enumerate() {
            progress.set_message(format!(
                "round {}/{}: {}",
                round + 1,
                plan.rounds,
                target.name()
            ));
            let dir = root
                .path()
                .join(format!("r{round}-{}", target.name().replace('/', "-")));
            let rss_start = rss::start();
            let usage_start = Usage::now();
            let sets = Datasets {
                data: &data,
                car: car_data.as_ref(),
            };
            let measured = target_round(
                plan,
                (target, s3.as_ref()),
                sets,
                &sequence,
                &op_lists,
                &dir,
            )?;
            let peak = rss::finish(rss_start);
            let used = Usage::now()
                .zip(usage_start)
                .map(|(now, start)| now.since(start));
            for (w, m, requests) in measured {
                let mut round = RoundFigures::new(&m, peak, used);
                round.s3_requests = requests.map(Into::into);
                figures[t][w].push(round);
            }
            remove_dir(&dir)?;
            progress.inc(1);
        }
    }
    progress.finish_and_clear();

    let mut workloads = Vec::new();
    for (w, &workload) in sequence.iter().enumerate() {
        if !plan.workloads.contains(&workload) {
            continue;
        }
        let mut report = WorkloadReport {
            name: workload.name().into(),
            description: describe(workload, plan, &data, car_data.as_ref()),
            ceiling: None,
            results: targets
                .iter()
                .zip(figures.iter_mut())
                .filter(|(_, f)| !f[w].is_empty())
                .map(|(target, f)| {
                    TargetFigures::new(
                        target.name(),
                        target.is_ceiling(),
                        std::mem::take(&mut f[w]),
                    )
                })
                .collect(),
        };
        report.compute_ratios(&plan.baseline);
        workloads.push(report);
    }
    let doc = Document {
        tool: "ipfrs-bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command,
        settings,
        machine,
        disk_ceiling_unavailable: disk_unavailable,
        sync_ceiling_unavailable: sync_unavailable,
        targets: targets.iter().map(|t| t.name()).collect(),
        workloads,
        missing: MISSING.iter().map(|s| s.to_string()).collect(),
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    for w in &doc.workloads {
        out.line(&report::table(w));
        if let Some(requests) = report::s3_requests(w) {
            out.line(&requests);
        }
    }
    out.line(&report::resources(&doc));
    out.line(&report::footer(&doc));
    if let Some((path, mut file)) = json_file {
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| BenchError::Internal(format!("cannot encode the report: {e}")))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| BenchError::io("cannot write --json", path, e))?;
    }
    if let Some((path, mut file)) = markdown_file {
        file.write_all(markdown::table(&doc).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| BenchError::io("cannot write --markdown", path, e))?;
    }
    if let Some((path, file)) = report_file {
        html::write(file, path, "--report", &html::run_page(&doc)?)?;
    }
    // Garage stops before its directory goes.
    drop(s3);
    let root_path = root.path().to_path_buf();
    root.close()
        .map_err(|e| BenchError::io("cannot remove", root_path, e))?;
    Ok(())
}

/// The blocks a round replays: generated ones, and the CAR file's for `car`.
#[derive(Clone, Copy)]
struct Datasets<'a> {
    data: &'a Dataset,
    car: Option<&'a Dataset>,
}

/// What a target measured in a round: (index in `sequence`, figures, S3 requests of the
/// measured pass for the S3 targets).
type Measured = Vec<(usize, Measurement, Option<RequestCounts>)>;

/// One target's round in `dir`: the workloads over generated blocks in one fresh store
/// (`dir/store`), then `car` in another (`dir/car`).
fn target_round(
    plan: &Plan,
    target: (TargetKind, Option<&S3Service>),
    sets: Datasets<'_>,
    sequence: &[WorkloadKind],
    op_lists: &[Vec<Op>],
    dir: &Path,
) -> Result<Measured> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io("cannot create", dir, e))?;
    let mut measured = Vec::new();
    let generated: Vec<usize> = (0..sequence.len())
        .filter(|&w| sequence[w] != WorkloadKind::Car)
        .collect();
    if !generated.is_empty() {
        let store = dir.join("store");
        measured.extend(session_round(
            plan, target, sets.data, sequence, op_lists, &generated, &store,
        )?);
    }
    let car: Vec<usize> = (0..sequence.len())
        .filter(|&w| sequence[w] == WorkloadKind::Car)
        .collect();
    if let (Some(car_data), false) = (sets.car, car.is_empty()) {
        let store = dir.join("car");
        measured.extend(session_round(
            plan, target, car_data, sequence, op_lists, &car, &store,
        )?);
    }
    Ok(measured)
}

/// One session of a target, opened fresh in `dir` over `data`: the workloads of `sequence`
/// at `indices` that it supports, in order, then closed.
///
/// An S3 target's requests are the process's during each measured pass (one target runs at
/// a time). The engine's pack tier uploads in the background: after ingest, engine+s3
/// waits for its uploader to go idle ([`super::target::Session::settle`]), so the reads'
/// counts are the reads' own, unless an upload or a compaction comes later.
fn session_round(
    plan: &Plan,
    (target, s3): (TargetKind, Option<&S3Service>),
    data: &Dataset,
    sequence: &[WorkloadKind],
    op_lists: &[Vec<Op>],
    indices: &[usize],
    dir: &Path,
) -> Result<Measured> {
    let mut session = target.open(plan, data, dir, s3)?;
    let mut run_all = || -> Result<Measured> {
        let mut measured = Vec::new();
        for &w in indices {
            let workload = sequence[w];
            if !target.supports(workload) {
                continue;
            }
            let timed = workload.is_timed();
            if timed && !plan.warmup.is_zero() {
                session.run(workload, &op_lists[w], Some(plan.warmup))?;
            }
            let duration = if timed { plan.duration } else { None };
            // The engine imports the CAR file the way users do; other targets replay it.
            let imported = match (workload, &plan.car) {
                (WorkloadKind::Car, Some(car)) => session.import_car(car, plan.batch, dir),
                _ => None,
            };
            let before = process_requests();
            let measurement = match imported {
                Some(m) => m?,
                None => session.run(workload, &op_lists[w], duration)?,
            };
            let requests = target.uses_s3().then(|| process_requests().since(&before));
            measured.push((w, measurement, requests));
            if workload == WorkloadKind::Ingest && !session.settle(plan.local_pack_bytes)? {
                eprintln!(
                    "ipfrs-bench: {}: packs still uploading when the reads start",
                    target.name()
                );
            }
        }
        Ok(measured)
    };
    let measured = run_all();
    // Close even after a failure, so the engine's shards stop before the error is reported.
    let closed = session.close();
    let measured = measured?;
    closed?;
    Ok(measured)
}

/// The settings part of the report.
fn settings(plan: &Plan, data: &Dataset, car: Option<&Dataset>) -> Settings {
    Settings {
        blocks: data.stored,
        size: match plan.size {
            SizeSpec::Ipfs => "ipfs".into(),
            SizeSpec::Fixed(n) => n.to_string(),
        },
        size_description: plan.size.describe(),
        stored_bytes: data.stored_bytes(),
        duration_s: plan.duration.map(|d| d.as_secs_f64()),
        warmup_s: plan.warmup.as_secs_f64(),
        rounds: plan.rounds,
        threads: plan.threads,
        in_flight: plan.in_flight,
        batch: plan.batch,
        rate: plan.rate,
        zipf_skew: plan.zipf_skew,
        read_ratio: plan.read_ratio,
        durability: plan.durability.name().into(),
        shards: plan.shards,
        cache_bytes: plan.cache.map(|c| c as u64),
        seed: plan.seed,
        baseline: plan.baseline.clone(),
        backends: plan.backends.iter().map(|b| b.name().to_string()).collect(),
        car_file: plan.car.as_ref().map(|p| p.display().to_string()),
        car_blocks: car.map(|c| c.stored),
        car_bytes: car.map(Dataset::stored_bytes),
    }
}

/// A workload's title line.
fn describe(workload: WorkloadKind, plan: &Plan, data: &Dataset, car: Option<&Dataset>) -> String {
    let amount = match plan.duration {
        Some(d) if workload.is_timed() && d.as_millis() < 10_000 => {
            format!("for {} ms", d.as_millis())
        }
        Some(d) if workload.is_timed() => format!("for {:.1} s", d.as_secs_f64()),
        _ if workload.is_batched() && workload.is_timed() => format!("{} keys", plan.read_ops),
        _ => format!("{} ops", plan.read_ops),
    };
    let loop_kind = match plan.rate {
        Some(rate) => format!("open loop at {rate:.0} ops/s"),
        None => "closed loop".into(),
    };
    let mib = data.stored_bytes() as f64 / (1 << 20) as f64;
    match workload {
        WorkloadKind::Ingest => format!(
            "ingest: {} blocks ({mib:.0} MiB) in batches of {}, hashing included; latency per batch",
            data.stored, plan.batch
        ),
        WorkloadKind::Get => format!("get: uniform random single gets, {amount}, {loop_kind}"),
        WorkloadKind::GetMany => format!(
            "get-many: get_many of {} uniform random blocks per call (raw: a get per key; disk: \
             the batch's reads at once), {amount}, {loop_kind}; ops = blocks, latency per call",
            plan.batch
        ),
        WorkloadKind::GetManySeq => format!(
            "get-many-seq: get_many of {} blocks stored one after the other per call (runs of {} \
             from random starts: what was written together, read back together), {amount}, \
             {loop_kind}; ops = blocks, latency per call",
            plan.batch,
            super::workload::RUN_BLOCKS
        ),
        WorkloadKind::GetZipf => format!(
            "get-zipf: zipfian single gets (skew {}), {amount}, {loop_kind}",
            plan.zipf_skew
        ),
        WorkloadKind::HasAbsent => {
            format!("has-absent: has() of never-stored CIDs, {amount}, {loop_kind}")
        }
        WorkloadKind::HasManyAbsent => format!(
            "has-many-absent: has_many of {} never-stored CIDs per call (raw: a contains per \
             key), {amount}, {loop_kind}; ops = CIDs, latency per call",
            plan.batch
        ),
        WorkloadKind::Mixed => format!(
            "mixed: {:.0}% gets / {:.0}% puts of {} new blocks (cycled), {amount}, {loop_kind}",
            plan.read_ratio * 100.0,
            (1.0 - plan.read_ratio) * 100.0,
            data.len() - data.stored
        ),
        WorkloadKind::Put => format!(
            "put: single puts of new blocks, each acknowledged before the lane's next call \
             (durability {}; raw: sled insert + flush, parity-db one commit, acknowledged before \
             durable, rocksdb write + WAL sync{}), {amount}, {loop_kind}; ceiling {}",
            plan.durability.name(),
            if plan.durability.syncs() {
                ""
            } else {
                "; --durability none: no flush"
            },
            if plan.durability.syncs() {
                "disk/write+fdatasync: one O_DIRECT write + fdatasync per call, queue depth 1 \
                 per lane, a file per lane"
            } else {
                "disk/write: one O_DIRECT write per call, queue depth 1 per lane, a file per lane"
            }
        ),
        WorkloadKind::Scan => format!(
            "scan: list every stored CID, one thread, latency per page of {}",
            1024
        ),
        WorkloadKind::Delete => format!(
            "delete: every ingested block in batches of {}; latency per batch",
            plan.batch
        ),
        WorkloadKind::Car => {
            let (blocks, bytes) = car.map_or((0, 0), |c| (c.stored, c.stored_bytes()));
            format!(
                "car: ingest of {} ({blocks} blocks, {:.1} MiB) into a fresh store in batches of \
                 {}, each block verified against its CID; the engine runs `ipfrs-store car \
                 import`'s path (file read once, hashed across cores, journaled, all or nothing), \
                 the others replay the blocks from memory (cpu: their hashes alone); latency per \
                 batch",
                plan.car
                    .as_ref()
                    .map_or_else(|| "?".into(), |p| p.display().to_string()),
                bytes as f64 / (1 << 20) as f64,
                plan.batch
            )
        }
    }
}

/// Prints to stdout unless quiet.
struct Printer {
    quiet: bool,
}

impl Printer {
    fn line(&self, text: &str) {
        if !self.quiet {
            super::emit(text);
        }
    }
}

/// A progress bar on stderr, hidden when quiet or when stderr is not a terminal.
fn progress_bar(plan: &Plan, steps: u64) -> ProgressBar {
    if plan.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Removes a target's directory after its round.
fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(BenchError::io("cannot remove", dir, e))
        }
        _ => Ok(()),
    }
}

/// A fresh directory for the run (inside --dir if given), removed when dropped.
fn run_directory(plan: &Plan) -> Result<tempfile::TempDir> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("ipfrs-bench-");
        b
    };
    match &plan.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| BenchError::io("cannot create --dir", dir, e))?;
            builder
                .tempdir_in(dir)
                .map_err(|e| BenchError::io("cannot write in --dir", dir, e))
        }
        None => builder
            .tempdir()
            .map_err(|e| BenchError::io("cannot create a directory in", std::env::temp_dir(), e)),
    }
}
