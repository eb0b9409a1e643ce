//! `pqwatch simulate`: serve simulated meters over Modbus/TCP, those of a
//! config or a generated fleet.

use super::run::spawn_signal_handler;
use anyhow::{Context as _, bail};
use pqwatch::config::{self, ConfigError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub(crate) struct SimulateArgs {
    /// Simulate the meters of this config (those at local addresses).
    #[arg(short, long, conflicts_with = "fleet")]
    config: Option<PathBuf>,
    /// Script of deviations (see docs/simulator.md).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Delay before every reply, like an RS-485 gateway (e.g. "40ms").
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    latency: Duration,
    /// Generate a fleet of this many meters instead of reading a config.
    #[arg(long)]
    fleet: Option<usize>,
    /// Gateways (ports) the fleet is spread over.
    #[arg(long, default_value_t = 10, requires = "fleet")]
    gateways: usize,
    /// Profile of the fleet's meters.
    #[arg(long, default_value = "eastron-sdm630", requires = "fleet")]
    profile: String,
    /// First port of the fleet's gateways on 127.0.0.1.
    #[arg(long, default_value_t = 15020, requires = "fleet")]
    base_port: u16,
    /// Poll interval written into the fleet config.
    #[arg(long, default_value = "5s", requires = "fleet")]
    interval: String,
    /// Write the fleet's pqwatch config to this file.
    #[arg(long, requires = "fleet")]
    write_config: Option<PathBuf>,
}

pub(crate) async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let scenario = match &args.scenario {
        Some(p) => load_scenario(p)?,
        None => Default::default(),
    };
    let cfg = match (&args.config, args.fleet) {
        (Some(path), _) => config::load(path)?,
        (None, Some(n)) => {
            let text = pqwatch::sim::fleet_config(
                n,
                args.gateways,
                &args.profile,
                args.base_port,
                &args.interval,
            );
            if let Some(out) = &args.write_config {
                std::fs::write(out, &text).with_context(|| format!("write {}", out.display()))?;
                out!("wrote {}", out.display());
            }
            config::from_str(&text, Path::new("."))?
        }
        (None, None) => bail!("give --config FILE (simulate its meters) or --fleet N"),
    };
    let meters = pqwatch::sim::SimMeter::from_config(&cfg);
    let sim = pqwatch::sim::Simulator::bind(meters, scenario, args.latency).await?;
    for a in sim.local_addrs() {
        tracing::debug!(address = %a, "listening");
    }
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    sim.serve(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn load_scenario(p: &Path) -> anyhow::Result<pqwatch::sim::scenario::Scenario> {
    let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    pqwatch::sim::scenario::Scenario::parse(&text).map_err(|errs| {
        ConfigError {
            problems: errs
                .into_iter()
                .map(|e| format!("{}: {e}", p.display()))
                .collect(),
        }
        .into()
    })
}
