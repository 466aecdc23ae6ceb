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
//! With `--workload car` a quarter of the kills aim at imports: 0-15 ms after one starts
//! (reading, hashing, journal appends, `put_many`), and others 0-2 ms into a commit or 0-3
//! ms into a rollback (a faulty file's abort, or the rollback of an earlier child's journal
//! right after the open). If the awaited moment does not come within 3 s the child is killed
//! anyway.
//!
//! After a kill the parent reopens the store (timed), reads every block the model has an
//! opinion on and a sample of deleted ones, lists the whole store, checks (see
//! [`crate::torture::check`]), proves the store writable, trims it to the live cap, and
//! closes it cleanly. About one kill in four skips all that, so the next child opens a
//! crashed store (and rolls back the import it left); the last kill is always checked, and so
//! is a kill during a commit (the check must see the import whole or absent before another
//! child changes its blocks).
//!
//! Before the reads, a check counts the import journals against the log and rolls them back
//! with [`crate::import::recover`], which is what `ipfrs-store` runs when it opens a
//! repository (there with pins spared, and a campaign's store has none).

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

use crate::import as importer;
use crate::torture::car;
use crate::torture::check::{Observation, Read, Violation, check, check_imports};
use crate::torture::error::{Error, Result};
use crate::torture::model::{Model, State};
use crate::torture::protocol::Event;
use crate::torture::workload::{Mode, Workload, block, config};

/// Longest a child may take to open the store before the campaign calls it hung.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest the parent waits for the moment a kill aims at (a compaction, an import, a
/// commit, a rollback) before killing the child anyway.
const TRIGGER_WAIT: Duration = Duration::from_secs(3);

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
    /// What the children do.
    pub workload: Workload,
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

    /// Where imports into the store keep their journals (as `ipfrs-store` would).
    pub fn journal_dir(&self) -> PathBuf {
        importer::default_journal_dir(&self.store())
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
    /// CAR imports the children started.
    pub imports_started: u64,
    /// Imports committed (acknowledged).
    pub imports_committed: u64,
    /// Faulty imports refused and rolled back by the child itself.
    pub imports_aborted: u64,
    /// Kills that landed while a child was importing (before its commit).
    pub in_import: u64,
    /// Kills that landed during a commit.
    pub in_commit: u64,
    /// Kills that landed during a rollback (an abort, or a journal left by an earlier child).
    pub in_rollback: u64,
    /// Of those, kills during the rollback of an earlier child's journal (at open).
    pub in_recovery: u64,
    /// Journals of interrupted imports that checks rolled back.
    pub journals_recovered: u64,
    /// Of those, journals whose last record was torn.
    pub journals_torn: u64,
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

/// The moment after which a kill's delay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The child's start.
    Spawn,
    /// The store is open.
    Ready,
    /// `Engine::compact` started.
    Compaction,
    /// A CAR import started.
    Import,
    /// An import's commit started.
    Commit,
    /// A rollback started (a faulty import's abort, or an earlier child's journal).
    Rollback,
}

#[derive(Debug, Clone, Copy)]
struct KillAt {
    after: Trigger,
    delay: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    at: KillAt,
    child_seed: u64,
    check: bool,
}

fn plan(seed: u64, kill: u64, last: bool, workload: Workload) -> Plan {
    // Each kill's plan from its own stream: the plan never depends on timing.
    let mut rng = StdRng::seed_from_u64(seed ^ kill.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let roll = rng.random_range(0..100u32);
    let ms = |rng: &mut StdRng, r: std::ops::Range<u64>| Duration::from_millis(rng.random_range(r));
    let us = |rng: &mut StdRng, r: std::ops::Range<u64>| Duration::from_micros(rng.random_range(r));
    let (after, delay) = match workload {
        Workload::Ops if roll < 15 => (Trigger::Spawn, ms(&mut rng, 0..40)),
        Workload::Ops if roll < 35 => (Trigger::Compaction, ms(&mut rng, 0..20)),
        Workload::Ops => (Trigger::Ready, ms(&mut rng, 5..200)),
        Workload::Car => match roll {
            0..12 => (Trigger::Spawn, ms(&mut rng, 0..40)),
            12..20 => (Trigger::Compaction, ms(&mut rng, 0..20)),
            20..45 => (Trigger::Import, ms(&mut rng, 0..15)),
            45..57 => (Trigger::Commit, us(&mut rng, 0..2000)),
            57..77 => (Trigger::Rollback, us(&mut rng, 0..3000)),
            _ => (Trigger::Ready, ms(&mut rng, 5..200)),
        },
    };
    let at = KillAt { after, delay };
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
        journals: Journals::None,
        model: Model::new(opts.mode.acks_are_durable()),
        cids: Vec::new(),
        index_of: HashMap::new(),
        summary: Summary::default(),
        rng: StdRng::seed_from_u64(opts.seed.rotate_left(17) ^ 0x5EED),
    };
    for kill in 0..opts.kills {
        let plan = plan(opts.seed, kill, kill + 1 == opts.kills, opts.workload);
        let problems = c.kill_one(plan)?;
        let problems = if problems.is_empty() && (plan.check || !c.model.groups().is_empty()) {
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

/// How many import journals the log says the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Journals {
    /// None: no import is unfinished.
    None,
    /// One: an import was begun and neither its commit nor its rollback has started.
    One,
    /// None or one: the kill may have landed before the journal's creation or removal.
    Either,
}

struct Campaign<'a> {
    opts: &'a Options,
    /// What the log says about the import journals.
    journals: Journals,
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
            .args(["--workload", opts.workload.name()])
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
        match log.import {
            Some(Trigger::Import) => self.summary.in_import += 1,
            Some(Trigger::Commit) => self.summary.in_commit += 1,
            Some(Trigger::Rollback) => {
                self.summary.in_rollback += 1;
                self.summary.in_recovery += u64::from(log.recovering);
            }
            _ => {}
        }
        Ok(problems)
    }

    /// Applies one event to the model and the log; returns the moment it marks, if any.
    fn apply(&mut self, event: Event, log: &mut Log) -> Option<Trigger> {
        let trigger = match &event {
            Event::Ready => {
                log.ready = true;
                Some(Trigger::Ready)
            }
            Event::CompactStarted => {
                log.compacting = true;
                self.summary.compactions += 1;
                Some(Trigger::Compaction)
            }
            Event::CompactDone(_) => {
                log.compacting = false;
                None
            }
            Event::ImportStarted { .. } => {
                self.summary.imports_started += 1;
                self.journals = Journals::Either;
                log.import = Some(Trigger::Import);
                log.import
            }
            Event::ImportBegun => {
                self.journals = Journals::One;
                None
            }
            Event::ImportCommitting => {
                self.journals = Journals::Either;
                log.import = Some(Trigger::Commit);
                log.import
            }
            Event::ImportCommitted => {
                self.summary.imports_committed += 1;
                self.journals = Journals::None;
                log.import = None;
                None
            }
            Event::ImportAborting | Event::RollbackStarted => {
                log.recovering = matches!(event, Event::RollbackStarted);
                // A rollback removes the journal last, after the blocks and a flush: the kill
                // may land on either side of that removal, before the child says it is done.
                self.journals = Journals::Either;
                log.import = Some(Trigger::Rollback);
                log.import
            }
            Event::ImportAborted(_) | Event::RollbackDone { .. } => {
                self.summary.imports_aborted += u64::from(matches!(event, Event::ImportAborted(_)));
                self.journals = Journals::None;
                log.import = None;
                None
            }
            Event::Failed(msg) => {
                log.failed = Some(msg.clone());
                None
            }
            Event::Opening | Event::PutIssued(_) | Event::PutAcked(_) => None,
            Event::DeleteIssued(_) | Event::DeleteAcked(_) => None,
        };
        self.model.apply(&event);
        trigger
    }

    fn wait_for_kill(
        &mut self,
        at: KillAt,
        spawned: Instant,
        events: &Receiver<Result<Event>>,
        log: &mut Log,
    ) -> Result<Waited> {
        // Until `armed`, the deadline bounds the wait for the trigger, not the kill's time.
        let mut armed = at.after == Trigger::Spawn;
        let mut deadline = if armed {
            spawned + at.delay
        } else {
            spawned + OPEN_TIMEOUT
        };
        loop {
            let event =
                match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(event) => event?,
                    Err(RecvTimeoutError::Timeout) => {
                        return Ok(if at.after != Trigger::Spawn && !log.ready {
                            Waited::OpenTimeout
                        } else {
                            Waited::Deadline
                        });
                    }
                    Err(RecvTimeoutError::Disconnected) => return Ok(Waited::ChildExited),
                };
            match self.apply(event, log) {
                _ if armed => {}
                Some(t) if t == at.after => {
                    deadline = Instant::now() + at.delay;
                    armed = true;
                }
                Some(Trigger::Ready) => deadline = Instant::now() + TRIGGER_WAIT,
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
        let mut problems = self.roll_back_imports(&engine);
        if !problems.is_empty() {
            let _ = engine.blocking().close();
            return Ok(problems);
        }
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
        let mut violations = check(&self.model, &observations, &listed, &self.index_of);
        violations.extend(check_imports(&self.model, &observations));
        if !violations.is_empty() {
            return Ok(violations.iter().map(Violation::to_string).collect());
        }
        for o in &observations {
            self.model
                .settle(o.index, matches!(o.read, Read::Present(_)));
        }
        self.model.clear_touched();
        self.model.clear_groups();
        problems = self.exercise(&store);
        if let Err(e) = store.close() {
            problems.push(format!("closing the store after the check failed: {e}"));
        }
        Ok(problems)
    }

    /// Counts the import journals against the log, then rolls them back as the next
    /// `ipfrs-store` command would; after that the store holds none.
    fn roll_back_imports(&mut self, engine: &Engine) -> Vec<String> {
        let dir = self.opts.journal_dir();
        let found = match car::journals(&dir) {
            Ok(n) => n,
            Err(e) => return vec![format!("listing {}: {e}", dir.display())],
        };
        let mut problems = Vec::new();
        let expected = match self.journals {
            Journals::None => 0..=0,
            Journals::One => 1..=1,
            Journals::Either => 0..=1,
        };
        if !expected.contains(&found) {
            problems.push(format!(
                "{found} import journal(s) after the kill, where the log allows {expected:?}"
            ));
        }
        match importer::recover(engine, &dir) {
            Ok(done) => {
                self.summary.journals_recovered += done.journals as u64;
                self.summary.journals_torn += done.torn as u64;
                if done.live > 0 {
                    problems.push(format!(
                        "{} import journal(s) still locked though the child is dead",
                        done.live
                    ));
                }
            }
            Err(e) => problems.push(format!("rolling back interrupted imports failed: {e}")),
        }
        match car::journals(&dir) {
            Ok(0) => self.journals = Journals::None,
            Ok(n) => problems.push(format!("{n} import journal(s) left after the rollback")),
            Err(e) => problems.push(format!("listing {}: {e}", dir.display())),
        }
        problems
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
    /// The import step under way: `Import`, `Commit` or `Rollback`.
    import: Option<Trigger>,
    /// The rollback under way is of an earlier child's journal.
    recovering: bool,
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
