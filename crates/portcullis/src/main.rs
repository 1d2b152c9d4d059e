//! `portcullis`: the one binary. It owns argument parsing, logging setup and process
//! lifecycle, and hands everything else to the library crates: the approver and gateway
//! daemons, the SSH client for the thin clients, the store and the audit crate for offline
//! verification. No policy lives here.

mod cli;
mod client_cmd;
mod init;
mod logging;
mod login;
mod profile;
mod quickstart;
mod setup;
mod verify;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Whatever portcullis creates (stores, spools, recordings, keys, configs) is 0600/0700,
    // whatever umask it was started with.
    portcullis_ssh::keyfile::private_umask();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::from(1)
        }
    }
}
