//! `ipfrs-torture`: a crash campaign against the engine.
//!
//! A child process (this binary, hidden `child` subcommand) opens a store with small segments
//! and a small hot budget (so segments roll over and background compaction runs), then puts
//! blocks of mixed sizes, deletes, puts deleted blocks back and calls `Engine::compact`,
//! logging each intent and acknowledgement on a pipe ([`protocol`]). The parent SIGKILLs it at
//! planned moments — before it finished opening (recovery), during compaction, while it
//! writes — then reopens the store and checks it against the log ([`model`], [`check`]).
//!
//! What each durability mode promises, and what is checked (SIGKILL, not power loss: the
//! kernel keeps what was written, so this tests the engine's ordering and recovery, not the
//! disk's cache):
//! - `sync`, `batch`: an acknowledged put is durable and an acknowledged delete is durable.
//!   Checked: every block whose last acknowledged operation was a put is stored bit-exact and
//!   listed; no block whose last acknowledged operation was a delete is read or listed
//!   (resurrection); no read fails or reports `Error::Corrupt`; the store reopens, takes a
//!   put and a delete, and closes cleanly.
//! - `none`: an acknowledgement promises nothing across a crash, so acknowledged puts may be
//!   lost and acknowledged deletes undone. Checked: no corruption (every block served is
//!   bit-exact, no `Error::Corrupt`, no failed read), nothing listed that was never put, and
//!   nothing that a previous check saw and the parent closed cleanly since (which is durable
//!   in every mode) has changed; the store reopens and is writable.
//!
//! In every mode an operation in flight at the kill may or may not have happened; a check
//! settles it to what it saw, and from then on it must stay so.
//!
//! `--workload car` mixes CAR imports ([`car`]) into the child's work and kills it also
//! while it imports (hashing, journaling, `put_many`), commits, or rolls back (a faulty
//! file's abort, or an earlier child's journal at open). The check first counts the journals
//! (one must be there if the log says an import was begun and not finished, none if every
//! import ended), rolls them back as the next `ipfrs-store` command would
//! ([`crate::import::recover`]), and then holds imports to their promise in every mode:
//! every block of an acknowledged import is stored bit-exact; a block only an interrupted or
//! failed import stored is absent; a block stored before is kept even if the import held
//! it too; an import killed during its commit is whole or absent ([`check::check_imports`]).
//!
//! The workload and the kill plan are a function of `--seed`; where a kill lands in the
//! child's work depends on timing, so a replay repeats the same plan, not the same instant.

pub mod campaign;
pub mod car;
pub mod check;
pub mod child;
pub mod cli;
pub mod error;
pub mod model;
pub mod protocol;
pub mod workload;

use std::process::ExitCode;

use clap::Parser;

use campaign::{Failure, Options, Outcome, Summary};
use child::ChildArgs;
use cli::{Args, Command};
pub use error::{Error, Result};
use workload::Workload;

/// Parses the command line and runs a campaign (or, hidden, the child). Exit codes: 0 the
/// campaign passed, 1 a check failed, 2 bad usage, 3 the campaign could not run.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(Command::Child {
        store,
        child_seed,
        next,
    }) = &args.command
    {
        return child::run(&ChildArgs {
            store: store.clone(),
            backend: args.backend,
            mode: args.durability,
            seed: *child_seed,
            next: *next,
            live_cap: args.live_cap,
            workload: args.workload,
        });
    }
    match campaign_main(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ipfrs-torture: error: {e}");
            ExitCode::from(3)
        }
    }
}

fn campaign_main(args: &Args) -> Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let exe = std::env::current_exe().map_err(|e| Error::io("finding this executable", e))?;
    // The campaign directory: the store and the child's stderr log live in it.
    let (dir, temp) = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let mut entries = std::fs::read_dir(dir)
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            if entries.next().is_some() {
                return Err(Error::DirNotEmpty(dir.clone()));
            }
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("ipfrs-torture-")
                .tempdir()
                .map_err(|e| Error::io("creating a temporary directory", e))?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let opts = Options {
        seed,
        kills: args.kills,
        mode: args.durability,
        workload: args.workload,
        backend: args.backend,
        dir,
        live_cap: args.live_cap.max(1),
        exe,
    };
    eprintln!(
        "ipfrs-torture: {} kills, workload {}, durability {}, backend {}, seed {seed}, store {}",
        opts.kills,
        opts.workload.name(),
        opts.mode.name(),
        opts.backend,
        opts.store().display()
    );
    let result = campaign::run(&opts);
    let passed = matches!(result, Ok(Outcome::Passed(_)));
    let code = match &result {
        Ok(Outcome::Passed(_)) => ExitCode::SUCCESS,
        Ok(Outcome::Failed(_)) => ExitCode::from(1),
        Err(_) => ExitCode::from(3),
    };
    match result {
        Ok(Outcome::Passed(summary)) => println!("{}", summary_line(&opts, &summary)),
        Ok(Outcome::Failed(failure)) => report_failure(&opts, &failure),
        Err(e) => {
            eprintln!("ipfrs-torture: error (seed {seed}): {e}");
            eprintln!("  replay: {}", replay(&opts, opts.kills));
        }
    }
    if passed && !args.keep {
        // Disk is shared: a passing campaign leaves nothing behind.
        drop(temp);
        if args.dir.is_some() {
            let _ = std::fs::remove_dir_all(opts.store());
            let _ = std::fs::remove_dir_all(opts.journal_dir());
            let _ = std::fs::remove_file(opts.dir.join("child-stderr.log"));
        }
    } else if let Some(temp) = temp {
        let kept = temp.keep();
        eprintln!("ipfrs-torture: kept {}", kept.display());
    }
    Ok(code)
}

fn replay(opts: &Options, kills: u64) -> String {
    format!(
        "{} --seed {} --kills {kills} --workload {} --durability {} --backend {} --live-cap {}",
        opts.exe.display(),
        opts.seed,
        opts.workload.name(),
        opts.mode.name(),
        opts.backend,
        opts.live_cap
    )
}

fn summary_line(opts: &Options, s: &Summary) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mean = if s.checks == 0 {
        0.0
    } else {
        ms(s.reopen_total) / s.checks as f64
    };
    let imports = if opts.workload == Workload::Car {
        format!(
            ", imports: {} started, {} committed, {} faulty rolled back, kills: {} in import, \
             {} in commit, {} in rollback ({} of an earlier child's journal); {} journals rolled \
             back by checks ({} torn)",
            s.imports_started,
            s.imports_committed,
            s.imports_aborted,
            s.in_import,
            s.in_commit,
            s.in_rollback,
            s.in_recovery,
            s.journals_recovered,
            s.journals_torn
        )
    } else {
        String::new()
    };
    format!(
        "ipfrs-torture: passed: workload {} durability {} backend {} seed {}: {} kills ({} \
         before ready, {} during compact, {} checks), {} acked puts, {} acked deletes, {} \
         blocks checked, reopen mean {mean:.1} ms max {:.1} ms{imports}",
        opts.workload.name(),
        opts.mode.name(),
        opts.backend,
        opts.seed,
        s.kills,
        s.before_ready,
        s.in_compaction,
        s.checks,
        s.acked_puts,
        s.acked_deletes,
        s.blocks_checked,
        ms(s.reopen_max)
    )
}

/// Most problems printed for one failure; the rest are counted.
const SHOWN_PROBLEMS: usize = 20;

fn report_failure(opts: &Options, f: &Failure) {
    eprintln!(
        "ipfrs-torture: FAILED after kill {} of {} (durability {}, backend {}, seed {}):",
        f.kill + 1,
        opts.kills,
        opts.mode.name(),
        opts.backend,
        opts.seed
    );
    for p in f.problems.iter().take(SHOWN_PROBLEMS) {
        eprintln!("  - {p}");
    }
    if f.problems.len() > SHOWN_PROBLEMS {
        eprintln!("  ... and {} more", f.problems.len() - SHOWN_PROBLEMS);
    }
    eprintln!("  replay: {}", replay(opts, f.kill + 1));
    eprintln!(
        "  (same workload and kill plan; where a kill lands depends on timing, so a replay \
         may need a few runs)"
    );
    println!(
        "{}",
        summary_line(opts, &f.summary).replace("passed", "FAILED")
    );
}
