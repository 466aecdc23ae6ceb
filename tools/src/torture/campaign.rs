//! The parent: plans each kill, runs a child, kills it, reopens the store and checks it.
//!
//! Kill plan (a function of the seed and the kill number only):
//! - early: SIGKILL 0-40 ms after spawn, ready or not, so often while the child is still
//!   opening the store; since the check before it is sometimes skipped (below), that open is
//!   a recovery from the previous crash, and recovery itself gets killed;
//! - in compaction: after the child says `Engine::compact` started, wait 0-20 ms;
//! - running: 5-200 ms after the child is ready (background compaction runs on its own,
//!   as the hot budget is small).
//!
//! After a kill the parent reopens the store (timed), reads every block the model has an
//! opinion on and a sample of deleted ones, lists the whole store, checks (see
//! [`crate::torture::check`]), proves the store writable, trims it to the live cap, and
//! closes it cleanly. About one kill in four skips all that, so the next child opens a
//! crashed store; the last kill is always checked.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use ipfrs_storage::{BackendKind, BlockingStore, Cid, Engine};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::torture::check::{Observation, Read, Violation, check};
use crate::torture::error::{Error, Result};
use crate::torture::model::{Model, State};
use crate::torture::protocol::Event;
use crate::torture::workload::{Mode, block, config};

/// Longest a child may take to open the store before the campaign calls it hung.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest the parent waits for a child to start a compaction before killing it anyway.
const COMPACT_WAIT: Duration = Duration::from_secs(3);

/// Deleted blocks read back by each check besides those touched since the last one: the
/// listing covers every deleted block already, the reads go through the index and bloom
/// filter paths the listing does not.
const ABSENT_SAMPLE: usize = 500;

/// Blocks per `get_many` of a check.
const READ_CHUNK: usize = 128;

/// A campaign's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed of the workload and the kill plan.
    pub seed: u64,
    /// Number of kills.
    pub kills: u64,
    /// Durability mode under test.
    pub mode: Mode,
    /// Cold backend.
    pub backend: BackendKind,
    /// The campaign directory (exists, empty): the store is `dir/store`.
    pub dir: PathBuf,
    /// Stored blocks kept at most.
    pub live_cap: usize,
    /// The binary to run as the child (this one).
    pub exe: PathBuf,
}

impl Options {
    /// The engine's data directory.
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn stderr_log(&self) -> PathBuf {
        self.dir.join("child-stderr.log")
    }
}

/// What a campaign did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Children killed.
    pub kills: u64,
    /// Kills that landed before the child had opened the store.
    pub before_ready: u64,
    /// Kills that landed during an explicit `Engine::compact`.
    pub in_compaction: u64,
    /// Explicit compactions the children started.
    pub compactions: u64,
    /// Checks made (reopen, read, list).
    pub checks: u64,
    /// Acknowledged puts (children and parent).
    pub acked_puts: u64,
    /// Acknowledged deletes (children and parent).
    pub acked_deletes: u64,
    /// Block reads checked, summed over checks.
    pub blocks_checked: u64,
    /// Sum of the reopen times after kills.
    pub reopen_total: Duration,
    /// Longest reopen after a kill.
    pub reopen_max: Duration,
}

/// A campaign that found a problem.
#[derive(Debug)]
pub struct Failure {
    /// The kill after which it was found (0-based).
    pub kill: u64,
    /// What went wrong.
    pub problems: Vec<String>,
    /// What the campaign did until then.
    pub summary: Summary,
}

#[derive(Debug, Clone, Copy)]
enum KillAt {
    AfterSpawn(Duration),
    InCompaction(Duration),
    Running(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    at: KillAt,
    child_seed: u64,
    check: bool,
}

fn plan(seed: u64, kill: u64, last: bool) -> Plan {
    // Each kill's plan from its own stream: the plan never depends on timing.
    let mut rng = StdRng::seed_from_u64(seed ^ kill.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let roll = rng.random_range(0..100u32);
    let at = if roll < 15 {
        KillAt::AfterSpawn(Duration::from_millis(rng.random_range(0..40)))
    } else if roll < 35 {
        KillAt::InCompaction(Duration::from_millis(rng.random_range(0..20)))
    } else {
        KillAt::Running(Duration::from_millis(rng.random_range(5..200)))
    };
    Plan {
        at,
        child_seed: rng.random(),
        check: last || rng.random_range(0..4u32) != 0,
    }
}

/// How a campaign ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every check passed.
    Passed(Summary),
    /// A check failed.
    Failed(Failure),
}

/// Runs a campaign. An error means it could not run (a child could not be started, its log
/// was unreadable); the store may still hold useful evidence.
pub fn run(opts: &Options) -> Result<Outcome> {
    let mut c = Campaign {
        opts,
        model: Model::new(opts.mode.acks_are_durable()),
        cids: Vec::new(),
        index_of: HashMap::new(),
        summary: Summary::default(),
        rng: StdRng::seed_from_u64(opts.seed.rotate_left(17) ^ 0x5EED),
    };
    for kill in 0..opts.kills {
        let plan = plan(opts.seed, kill, kill + 1 == opts.kills);
        let problems = c.kill_one(plan)?;
        let problems = if problems.is_empty() && plan.check {
            c.check()?
        } else {
            problems
        };
        c.summary.kills = kill + 1;
        (c.summary.acked_puts, c.summary.acked_deletes) = c.model.acks();
        if !problems.is_empty() {
            return Ok(Outcome::Failed(Failure {
                kill,
                problems,
                summary: c.summary,
            }));
        }
    }
    Ok(Outcome::Passed(c.summary))
}

struct Campaign<'a> {
    opts: &'a Options,
    model: Model,
    /// The CID of every index below `cids.len()`.
    cids: Vec<Cid>,
    index_of: HashMap<Cid, u64>,
    summary: Summary,
    /// For the parent's own choices (samples, trims), which may depend on timing.
    rng: StdRng,
}

impl Campaign<'_> {
    /// Runs one child and kills it as planned; returns the problems seen in its log.
    fn kill_one(&mut self, plan: Plan) -> Result<Vec<String>> {
        let opts = self.opts;
        let mut live = self.model.indices(State::Present);
        live.extend(self.model.indices(State::Unknown));
        let stderr = File::create(opts.stderr_log())
            .map_err(|e| Error::io(format!("creating {}", opts.stderr_log().display()), e))?;
        let mut child = Command::new(&opts.exe)
            .args(["--backend", opts.backend.name()])
            .args(["--durability", opts.mode.name()])
            .args(["--live-cap", &opts.live_cap.to_string()])
            .arg("child")
            .arg("--store")
            .arg(opts.store())
            .args(["--child-seed", &plan.child_seed.to_string()])
            .args(["--next", &self.model.next().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", opts.exe.display()), e))?;
        let spawned = Instant::now();
        let mut line = live
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        line.push('\n');
        if let Some(mut stdin) = child.stdin.take() {
            // A child that already died is found out below, from its log.
            let _ = stdin.write_all(line.as_bytes());
        }
        let events = spawn_reader(&mut child);
        let mut log = Log::default();
        let outcome = self.wait_for_kill(plan.at, spawned, &events, &mut log);
        // SIGKILL; a child that already exited (its failure is in the log) is fine to kill.
        let _ = child.kill();
        let status = child
            .wait()
            .map_err(|e| Error::io("waiting for the child", e))?;
        // Everything the child wrote before it died is still in the pipe: acknowledgements
        // made after the kill decision are acknowledgements too.
        for event in events.iter() {
            self.apply(event?, &mut log);
        }
        let mut problems = Vec::new();
        match outcome? {
            Waited::Deadline => {}
            Waited::ChildExited => problems.push(format!(
                "the child exited by itself ({status}){}",
                stderr_tail(&opts.stderr_log())
            )),
            Waited::OpenTimeout => problems.push(format!(
                "the child did not open the store within {OPEN_TIMEOUT:?}"
            )),
        }
        if let Some(msg) = log.failed.take() {
            problems.insert(0, format!("the child's operation failed: {msg}"));
        }
        self.summary.before_ready += u64::from(!log.ready);
        self.summary.in_compaction += u64::from(log.compacting);
        Ok(problems)
    }

    fn apply(&mut self, event: Event, log: &mut Log) {
        match &event {
            Event::Ready => log.ready = true,
            Event::CompactStarted => {
                log.compacting = true;
                self.summary.compactions += 1;
            }
            Event::CompactDone(_) => log.compacting = false,
            Event::Failed(msg) => log.failed = Some(msg.clone()),
            _ => {}
        }
        self.model.apply(&event);
    }

    fn wait_for_kill(
        &mut self,
        at: KillAt,
        spawned: Instant,
        events: &Receiver<Result<Event>>,
        log: &mut Log,
    ) -> Result<Waited> {
        let mut deadline = match at {
            KillAt::AfterSpawn(d) => spawned + d,
            KillAt::InCompaction(_) | KillAt::Running(_) => spawned + OPEN_TIMEOUT,
        };
        let mut waiting_for_compaction = false;
        loop {
            let event =
                match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(event) => event?,
                    Err(RecvTimeoutError::Timeout) => {
                        return Ok(match at {
                            KillAt::InCompaction(_) | KillAt::Running(_) if !log.ready => {
                                Waited::OpenTimeout
                            }
                            _ => Waited::Deadline,
                        });
                    }
                    Err(RecvTimeoutError::Disconnected) => return Ok(Waited::ChildExited),
                };
            let (was_ready, was_compacting) = (log.ready, log.compacting);
            self.apply(event, log);
            match at {
                KillAt::Running(d) if log.ready && !was_ready => deadline = Instant::now() + d,
                KillAt::InCompaction(_) if log.ready && !was_ready => {
                    deadline = Instant::now() + COMPACT_WAIT;
                    waiting_for_compaction = true;
                }
                KillAt::InCompaction(d)
                    if waiting_for_compaction && log.compacting && !was_compacting =>
                {
                    deadline = Instant::now() + d;
                    waiting_for_compaction = false;
                }
                _ => {}
            }
        }
    }

    /// Reopens the store and checks it; returns the problems found.
    fn check(&mut self) -> Result<Vec<String>> {
        self.summary.checks += 1;
        for index in self.cids.len() as u64..self.model.next() + 1 {
            let cid = *block(index).cid();
            self.cids.push(cid);
            self.index_of.insert(cid, index);
        }
        let started = Instant::now();
        let engine = match Engine::open(config(
            &self.opts.store(),
            self.opts.backend,
            self.opts.mode,
        )) {
            Ok(engine) => engine,
            Err(e) => {
                return Ok(vec![format!(
                    "reopening the store after the kill failed: {e}"
                )]);
            }
        };
        let reopen = started.elapsed();
        self.summary.reopen_total += reopen;
        self.summary.reopen_max = self.summary.reopen_max.max(reopen);
        let store = engine.blocking();

        let mut indices = self.model.indices(State::Present);
        indices.extend(self.model.indices(State::Unknown));
        indices.extend(self.model.touched());
        let absent = self.model.indices(State::Absent);
        indices.extend(absent.choose_multiple(&mut self.rng, ABSENT_SAMPLE));
        indices.sort_unstable();
        indices.dedup();
        let observations = self.observe(&store, &indices);
        self.summary.blocks_checked += observations.len() as u64;
        let listed = match store.cids().collect::<ipfrs_storage::Result<Vec<Cid>>>() {
            Ok(listed) => listed,
            Err(e) => return Ok(vec![format!("listing the store failed: {e}")]),
        };
        let violations = check(&self.model, &observations, &listed, &self.index_of);
        if !violations.is_empty() {
            return Ok(violations.iter().map(Violation::to_string).collect());
        }
        for o in &observations {
            self.model
                .settle(o.index, matches!(o.read, Read::Present(_)));
        }
        self.model.clear_touched();
        let mut problems = self.exercise(&store);
        if let Err(e) = store.close() {
            problems.push(format!("closing the store after the check failed: {e}"));
        }
        Ok(problems)
    }

    /// Proves the store writable (a put read back, a delete seen), then trims it to the live
    /// cap. Every operation here is made durable by the clean close that follows.
    fn exercise(&mut self, store: &BlockingStore) -> Vec<String> {
        let probe = self.model.next();
        let b = block(probe);
        match store.put(&b).and_then(|()| store.get(b.cid())) {
            Ok(Some(data)) if data == b.data() => self.model.record_firm(probe, true),
            Ok(got) => {
                return vec![format!(
                    "after recovery, block {probe} put and read back: {}",
                    if got.is_some() {
                        "wrong bytes"
                    } else {
                        "absent"
                    }
                )];
            }
            Err(e) => return vec![format!("the store is not writable after recovery: {e}")],
        }
        let mut present = self.model.indices(State::Present);
        present.shuffle(&mut self.rng);
        let excess = present.len().saturating_sub(self.opts.live_cap * 3 / 4);
        let victims: Vec<u64> = present.into_iter().take(excess.max(1)).collect();
        let cids: Vec<Cid> = victims.iter().map(|&i| *block(i).cid()).collect();
        match store.delete_many(&cids) {
            Ok(_) => victims
                .iter()
                .for_each(|&i| self.model.record_firm(i, false)),
            Err(e) => return vec![format!("deleting after recovery failed: {e}")],
        }
        match store.has_many(&cids) {
            Ok(has) if has.iter().any(|&h| h) => {
                vec!["after recovery, deleted blocks are still there".to_owned()]
            }
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("has after recovery failed: {e}")],
        }
    }

    fn observe(&self, store: &BlockingStore, indices: &[u64]) -> Vec<Observation> {
        let mut out = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(READ_CHUNK) {
            let cids: Vec<Cid> = chunk.iter().map(|&i| self.cid(i)).collect();
            match store.get_many(&cids) {
                Ok(reads) => out.extend(chunk.iter().zip(reads).map(|(&index, r)| Observation {
                    index,
                    read: r.map_or(Read::Absent, Read::Present),
                })),
                // One bad block fails the whole batch: find which, one read at a time.
                Err(_) => out.extend(chunk.iter().zip(&cids).map(|(&index, cid)| Observation {
                    index,
                    read: match store.get(cid) {
                        Ok(Some(data)) => Read::Present(data),
                        Ok(None) => Read::Absent,
                        Err(ipfrs_storage::Error::Corrupt { reason, .. }) => Read::Corrupt(reason),
                        Err(e) => Read::Failed(e.to_string()),
                    },
                })),
            }
        }
        out
    }

    fn cid(&self, index: u64) -> Cid {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.cids.get(i).copied())
            .unwrap_or_else(|| *block(index).cid())
    }
}

#[derive(Debug, Default)]
struct Log {
    ready: bool,
    compacting: bool,
    failed: Option<String>,
}

enum Waited {
    Deadline,
    ChildExited,
    OpenTimeout,
}

/// Reads the child's stdout on a thread, so the parent can wait with a deadline.
fn spawn_reader(child: &mut Child) -> Receiver<Result<Event>> {
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let event = line
                    .map_err(|e| Error::io("reading the child's log", e))
                    .and_then(|l| Event::parse(&l));
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// The last lines of the child's stderr, for a report.
fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("\n    ");
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its stderr ends:\n    {tail}")
    }
}
