//! `ipfrs-torture`: a crash campaign against the engine (SIGKILL a writing child at random
//! moments, reopen, check every acknowledgement). `--help` lists the options; the logic lives
//! in the library (`ipfrs_tools::torture`).

fn main() -> std::process::ExitCode {
    ipfrs_tools::torture::main()
}
