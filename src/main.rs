//! The `pqwatch` command line: parse arguments, set up logging, load the
//! config, run, and map the outcome to an exit code (78 = bad config).
//! The commands are in [`cli`], one file each.

mod cli;

use clap::Parser;
use pqwatch::config::ConfigError;
use std::process::ExitCode;

/// EX_CONFIG from sysexits.h: systemd and operators know it means "fix the config".
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(cli.log_format, &cli.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pqwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::dispatch(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                eprintln!("pqwatch: {ce}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("pqwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
