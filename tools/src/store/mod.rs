//! `ipfrs-store`, the admin command line of an ipfrs block store.
//!
//! Each subcommand lives in its own file and returns a [`output::Report`] (text for people,
//! `--json` for scripts); every error ends as one line on stderr and a non-zero exit code
//! (2 for bad usage, 1 for failures). The pieces are public so tests and tools can run a
//! subcommand's logic against any [`ipfrs_storage::BlockStore`].
//!
//! [`dispatch`] runs a parsed command over an open engine for a [`caller::Caller`]: in this
//! process, or, when a daemon holds the store, in the daemon it is handed to (see
//! `daemon::client` and `daemon::command`), so both print the same bytes.

pub mod block;
pub mod caller;
pub mod cli;
pub mod dag;
pub mod error;
pub mod export;
pub mod gc;
pub mod import;
pub mod init;
pub mod migrate;
pub mod output;
pub mod progress;
pub mod repair;
pub mod repo;
pub mod stat;
pub mod verify;
pub mod version;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use futures_lite::future::block_on;
use ipfrs_storage::BlockStore;

use crate::daemon::{self, Node};
use caller::Caller;
use cli::{
    Args, BlockCommand, CarCommand, Command, InitArgs, ReplicaCommand, RepoCommand, VersionCommand,
};
use error::{Error, Result};
use repo::Repo;

/// Parses the command line, runs the subcommand, prints its result; errors become one line
/// on stderr and exit code 1 (2 for bad usage).
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => return clap_exit(&err),
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let text = err.to_string();
            let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("ipfrs-store: error: {line}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Prints clap's `--help`/`--version` in full, and a parse error as its first line only.
fn clap_exit(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `ipfrs-store --help | head` closes the pipe early: not an error, and print!
            // would panic on it.
            let _ = write!(std::io::stdout().lock(), "{}", err.render());
            ExitCode::SUCCESS
        }
        _ => {
            let text = err.render().to_string();
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid arguments");
            let line = line.strip_prefix("error: ").unwrap_or(line);
            eprintln!("ipfrs-store: error: {line} (see --help)");
            ExitCode::from(2)
        }
    }
}

/// Runs one parsed command line.
pub fn run(args: Args) -> Result<()> {
    // A replica has no repository: only the configuration file's [remote] section.
    if let Command::Replica(ReplicaCommand::Serve(serve)) = &args.command {
        let config = args.config.as_deref().ok_or_else(|| {
            Error::Usage(
                "replica serve needs --config FILE.toml with a [remote] section (the bucket \
                 the primary uploads its packs to)"
                    .into(),
            )
        })?;
        return daemon::replica::run(config, serve);
    }
    let repo = Repo::locate(args.repo, args.config)?;
    let json = args.json;
    let mut caller = Caller::this_process();
    if let Command::Init(init) = &args.command {
        return caller.print(&init::run(&repo, init)?, json);
    }
    // Repair works on the closed store: it swaps backend directories.
    if let Command::Repo(RepoCommand::Repair) = &args.command {
        let report = repair::run(&repo).map_err(|e| held_by_daemon(&repo, e, &args.command))?;
        return caller.print(&report, json);
    }
    // So does migrate: the engine does not open a store of an older format.
    if let Command::Repo(RepoCommand::Migrate) = &args.command {
        let report = migrate::run(&repo).map_err(|e| held_by_daemon(&repo, e, &args.command))?;
        return caller.print(&report, json);
    }
    // `version init` makes the block store too when there is none (as `init` would, with the
    // configuration in force), then opens it like every other command.
    let mut created_store = false;
    if let Command::Version(VersionCommand::Init { .. }) = &args.command
        && !repo.is_initialized()
    {
        let defaults = InitArgs {
            backend: None,
            shards: None,
        };
        init::run(&repo, &defaults)?;
        created_store = true;
    }
    let tune = |config: &mut ipfrs_storage::Config| {
        if let Command::Car(CarCommand::Import { .. }) = &args.command {
            crate::import::tune_for_import(config);
        }
    };
    let engine = match repo.open_tuned(tune) {
        Ok(engine) => engine,
        // A running daemon holds the store: hand it the command (see `daemon::client`).
        Err(err @ Error::Engine(ipfrs_storage::Error::Locked { .. })) => {
            let Some(client) = daemon::client::Client::for_repo(&repo) else {
                return Err(err);
            };
            if needs_closed_store(&args.command).is_some() {
                return Err(held_by_daemon(&repo, err, &args.command));
            }
            return daemon::client::forward(&client, &repo, &args.command, json);
        }
        Err(err) => return Err(err),
    };
    let node = Node::new(repo.clone(), engine.clone());
    // A CAR import killed mid-way left a journal: roll it back before anything reads.
    let result = import::recover_interrupted(&engine)
        .and_then(|()| dispatch(&node, args.command, json, created_store, &mut caller));
    // Close even after a failure, so every acknowledged write is flushed; the first error
    // wins.
    let closed = block_on(engine.close());
    result?;
    Ok(closed?)
}

/// The name of a command that must have the store to itself (no daemon may hold it), and
/// what to do about a daemon that does; `None` for the commands a daemon can be handed.
pub fn needs_closed_store(command: &Command) -> Option<(&'static str, &'static str)> {
    match command {
        Command::Daemon(_) => Some((
            "daemon",
            "it already serves the store; one daemon per repository",
        )),
        Command::Init(_) => Some(("init", "the repository is initialized already")),
        Command::Repo(RepoCommand::Repair) => Some(("repo repair", STOP_FIRST)),
        Command::Repo(RepoCommand::Migrate) => Some(("repo migrate", STOP_FIRST)),
        _ => None,
    }
}

/// `err`, or, when it is the engine's lock and `<repo>/api` names a running daemon,
/// [`Error::HeldByDaemon`] naming it and `command`.
fn held_by_daemon(repo: &Repo, err: Error, command: &Command) -> Error {
    if !matches!(err, Error::Engine(ipfrs_storage::Error::Locked { .. })) {
        return err;
    }
    let Some(client) = daemon::client::Client::for_repo(repo) else {
        return err;
    };
    let (name, advice) = needs_closed_store(command).unwrap_or(("this command", STOP_FIRST));
    Error::HeldByDaemon {
        api: client.base().to_string(),
        command: name,
        advice,
    }
}

/// The advice for a command a daemon cannot take.
const STOP_FIRST: &str = "stop the daemon (Ctrl-C or SIGTERM) and run it again";

/// Runs `command` over `node`'s open engine for `caller`: in the process that parsed it, or
/// in a daemon it was handed to (`daemon::command`), the same code either way. Commands that
/// need the store closed (see [`needs_closed_store`]) are refused.
pub fn dispatch(
    node: &Node,
    command: Command,
    json: bool,
    created_store: bool,
    caller: &mut Caller,
) -> Result<()> {
    let (engine, repo) = (node.engine(), node.repo());
    match command {
        Command::Init(_) => Err(Error::Usage("init runs before the store is opened".into())),
        Command::Block(cmd) => match cmd {
            BlockCommand::Put {
                file,
                cid_codec,
                mhtype,
            } => {
                let put = block::put(engine, file.as_ref(), &cid_codec, mhtype, caller)?;
                caller.print(&put, json)
            }
            BlockCommand::Get { cids, output } => {
                if output.is_some() && cids.len() > 1 {
                    return Err(Error::Usage(
                        "--output takes one block: give one CID, or none of --output to \
                         write the blocks one after the other to stdout"
                            .into(),
                    ));
                }
                for cid in &cids {
                    if let Some(info) = block::get(engine, cid, output.as_deref(), caller)? {
                        caller.print(&info, json)?;
                    }
                }
                Ok(())
            }
            BlockCommand::Stat { cids } => {
                let stats = cids
                    .iter()
                    .map(|c| block::stat(engine, c))
                    .collect::<Result<Vec<_>>>()?;
                block::print_stats(stats, json, caller)
            }
            BlockCommand::Rm { cids, force } => {
                // As the daemon's block/rm (and Kubo): a block a pin keeps stays, and the
                // check and the removal are one step for gc and pinning.
                let _exclusive = node.gc_lock().blocking_gc();
                let parsed = cids
                    .iter()
                    .map(|c| error::parse_cid(c))
                    .collect::<Result<Vec<_>>>()?;
                let pinned = daemon::gc::pin_reasons(repo, engine, &parsed)?;
                if let Some((cid, reason)) = parsed.iter().find_map(|c| {
                    pinned
                        .get(&ipfrs_storage::key::key_of(c))
                        .map(|r| (*c, r.clone()))
                }) {
                    return Err(Error::Pinned {
                        cid: Box::new(cid),
                        reason,
                    });
                }
                caller.print(&block::rm(engine, &cids, force)?, json)
            }
            BlockCommand::Ls => block::ls(engine, json, caller),
        },
        Command::Car(cmd) => match cmd {
            CarCommand::Import {
                files,
                partial,
                pin_roots,
            } => {
                // The import and the pinning of its roots are one write for gc.
                let _write = node.gc_lock().blocking_write();
                let (report, failure) = import::run_for(engine, &files, partial, caller)?;
                if pin_roots {
                    let roots = report
                        .files
                        .iter()
                        .flat_map(|f| f.roots.iter())
                        .map(|r| error::parse_cid(r))
                        .collect::<Result<Vec<_>>>()?;
                    for root in daemon::node::pin_present_roots(engine, &roots)? {
                        if !root.error.is_empty() {
                            caller.note(&format!("ipfrs-store: note: {}", root.error));
                        }
                    }
                }
                caller.print(&report, json)?;
                failure.map_or(Ok(()), Err)
            }
            CarCommand::Export { roots, output, v2 } => {
                let report = export::run(engine, &roots, &output, v2, caller)?;
                // With `-o -`, stdout is the CAR: nothing else may be printed there.
                if output.as_os_str() == "-" {
                    Ok(())
                } else {
                    caller.print(&report, json)
                }
            }
        },
        Command::Repo(cmd) => match cmd {
            RepoCommand::Repair => Err(Error::Usage(
                "repo repair runs before the store is opened".into(),
            )),
            RepoCommand::Migrate => Err(Error::Usage(
                "repo migrate runs before the store is opened".into(),
            )),
            RepoCommand::Stat { prometheus: true } => {
                let metrics = block_on(engine.metrics())?;
                caller.write(metrics.to_prometheus().as_bytes())
            }
            RepoCommand::Stat { prometheus: false } => {
                let stats = block_on(BlockStore::stats(engine))?;
                caller.print(&stat::RepoStat::new(caller.repo_root(repo), &stats), json)
            }
            RepoCommand::Compact => {
                let segments = block_on(engine.compact())?;
                let stats = block_on(BlockStore::stats(engine))?;
                caller.print(&stat::Compacted::new(segments, &stats), json)
            }
            RepoCommand::Verify => {
                let total = block_on(BlockStore::stats(engine))?.blocks;
                let damage = || {
                    let mut places = block_on(engine.damage())?;
                    places.extend(engine.cold_damage_places());
                    Ok(places)
                };
                let report = verify::verify(engine, damage, Some(total))?;
                caller.print(&report, json)?;
                if report.is_clean() {
                    Ok(())
                } else {
                    Err(Error::Damaged {
                        corrupt: report.corrupt.len(),
                        missing: report.missing.len(),
                        places: report.damaged.len(),
                    })
                }
            }
            RepoCommand::Gc {
                roots,
                pins,
                dry_run,
            } => {
                let mut cids = roots
                    .iter()
                    .map(|r| error::parse_cid(r))
                    .collect::<Result<Vec<_>>>()?;
                // The repository's own pins file is read by the collection itself.
                if let Some(path) = pins {
                    cids.extend(gc::read_pins(&caller.path(&path))?);
                }
                let collected =
                    daemon::gc::collect(repo, engine, node.gc_lock(), &cids, true, dry_run)?;
                caller.print(&collected, json)
            }
        },
        Command::Pin(cmd) => caller.print(&daemon::pin_command::run(node, cmd)?, json),
        Command::Daemon(args) => daemon::run::run(Node::new(repo.clone(), engine.clone()), &args),
        Command::Version(cmd) => version::run(node, cmd, json, created_store, caller),
        Command::Replica(_) => Err(Error::Usage(
            "replica serve runs without a store (ipfrs-store --config FILE.toml replica serve)"
                .into(),
        )),
    }
}
