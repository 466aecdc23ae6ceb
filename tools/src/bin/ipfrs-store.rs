//! `ipfrs-store`: the admin command line of an ipfrs block store: blocks, CAR import and
//! export, statistics and metrics, verification and garbage collection. `--help` lists the
//! subcommands; the logic lives in the library (`ipfrs_tools::store`).

fn main() -> std::process::ExitCode {
    ipfrs_tools::store::main()
}
