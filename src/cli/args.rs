//! The clap definitions of the command line: global options and the
//! subcommands. Their doc comments are the `--help` text. The arguments of
//! `simulate`, `report --format` and `profiles show` live beside their
//! commands.

use super::profiles::ProfilesCmd;
use super::report::ReportFormat;
use super::simulate::SimulateArgs;
use clap::{Parser, Subcommand, ValueEnum};
use pqwatch::config;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "pqwatch",
    version,
    about = "Power-quality watch for key-account customers: Modbus/TCP meters → InfluxDB"
)]
pub(crate) struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PQWATCH_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Log level or filter (e.g. "debug", "pqwatch=debug,info"); RUST_LOG wins if set.
    #[arg(long, global = true, default_value = "info", env = "PQWATCH_LOG")]
    pub(crate) log_level: String,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Copy, Clone, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Run the daemon.
    Run {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Validate the config and print the polling plan.
    Check {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print the outbox state from the state directory (works while the daemon runs).
    Status {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List power-quality events from the state database.
    Events {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Only events that are still open.
        #[arg(long)]
        open: bool,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Build a customer's voltage-quality report from the state database:
    /// preview it, or (re)send it.
    Report {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Customer id.
        #[arg(long)]
        customer: String,
        /// "2026-10" (a month), "2026-W44" (an ISO week) or "2026-10-05" (a
        /// day); default: the last complete period of the customer's schedule.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        period: Option<String>,
        /// First day of a custom period (local date, inclusive).
        #[arg(long, requires = "to")]
        from: Option<jiff::civil::Date>,
        /// Last day of a custom period (local date, inclusive).
        #[arg(long, requires = "from")]
        to: Option<jiff::civil::Date>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Queue it for the customer's recipients (again, if it was sent
        /// before); the running daemon delivers it.
        #[arg(long)]
        send: bool,
    },
    /// Poll one meter once and print its decoded values.
    Probe {
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Meter id.
        #[arg(long)]
        meter: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List built-in (and user) device profiles, or show one.
    Profiles {
        /// Read user profiles from this config's profile_dir too.
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<ProfilesCmd>,
    },
    /// Serve simulated meters over Modbus/TCP.
    Simulate(SimulateArgs),
    /// Simulator and daemon in one process, on the shipped demo config.
    Demo {
        /// Use this config instead of the embedded demo config.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Use this scenario instead of the embedded demo scenario.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Stop after this long (default: run until Ctrl-C).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
}
