//! The subcommands of the `pqwatch` binary, one file each: the clap
//! definitions ([`args`]), logging set-up, and [`dispatch`], a match that
//! calls each command's function (loading the config first for the commands
//! that need nothing else from it before they start).
//!
//! Not here: mapping errors to exit codes (`main` does: 78 for a
//! [`ConfigError`](pqwatch::config::ConfigError)), and the daemon itself,
//! which is the library's ([`pqwatch::app`]).

/// `println!` that ends the process quietly when stdout is closed
/// (`pqwatch check | head`) instead of panicking on a broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}

mod args;
mod check;
mod demo;
mod events;
mod probe;
mod profiles;
mod report;
mod run;
mod simulate;
mod status;

pub(crate) use args::Cli;
use args::{Cmd, LogFormat};
use pqwatch::config;
use std::process::ExitCode;

pub(crate) fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd, the journal stamps every line; ours would be noise.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journal && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    match (format, journal) {
        (LogFormat::Json, _) => b.json().flatten_event(true).init(),
        (LogFormat::Text, true) => b.without_time().init(),
        (LogFormat::Text, false) => b.init(),
    }
}

/// Runs one command.
pub(crate) async fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run { config } => run::run(config).await,
        Cmd::Events {
            config,
            open,
            limit,
            json,
        } => {
            let cfg = config::load(&config)?;
            events::events(&cfg, open, limit, json)
        }
        Cmd::Report {
            config,
            customer,
            period,
            from,
            to,
            format,
            out,
            send,
        } => {
            let cfg = config::load(&config)?;
            let period = report::period(period, from, to)?;
            report::report(&cfg, &customer, period, format, out.as_deref(), send)
        }
        Cmd::Status { config, json } => {
            let cfg = config::load(&config)?;
            status::status(&cfg, json)
        }
        Cmd::Check { config } => check::check(&config),
        Cmd::Probe {
            config,
            meter,
            json,
        } => {
            let cfg = config::load(&config)?;
            probe::probe(&cfg, &meter, json).await
        }
        Cmd::Profiles { config, action } => profiles::profiles(config.as_deref(), action),
        Cmd::Simulate(args) => simulate::simulate(args).await,
        Cmd::Demo {
            config,
            scenario,
            duration,
        } => demo::demo(config, scenario, duration).await,
    }
}

/// The config's state directory, when pqwatch has made its database there;
/// the commands that read it say so plainly otherwise.
pub(crate) fn state_dir(cfg: &pqwatch::config::Config) -> anyhow::Result<&std::path::Path> {
    let dir = &cfg.daemon.state_dir;
    if !dir.join(pqwatch::state::FILE).exists() {
        anyhow::bail!(
            "no state database in {} (has pqwatch run with this config yet?)",
            dir.display()
        );
    }
    Ok(dir)
}
