//! `pqwatch demo`: the simulator and the daemon in one process, on the
//! embedded demo config and scenario, printing the latest readings.

use super::run::spawn_signal_handler;
use super::simulate::load_scenario;
use anyhow::Context as _;
use pqwatch::config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
const DEMO_SCENARIO: &str = include_str!("../../config/demo-scenario.toml");

pub(crate) async fn demo(
    config_path: Option<PathBuf>,
    scenario: Option<PathBuf>,
    duration: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let cfg = match &config_path {
        Some(p) => config::load(p)?,
        None => config::from_str_with_env(DEMO_CONFIG, Path::new("."))?,
    };
    // Before the simulator binds its ports: one daemon per state directory.
    let lock = std::sync::Arc::new(pqwatch::state::lock_dir(&cfg.daemon.state_dir)?);
    let scenario = match &scenario {
        Some(p) => load_scenario(p)?,
        None => pqwatch::sim::scenario::Scenario::parse(DEMO_SCENARIO)
            .map_err(|e| anyhow::anyhow!("embedded demo scenario: {}", e.join("; ")))?,
    };
    tracing::info!(
        meters = cfg.meters.len(),
        "pqwatch demo: simulated meters on 127.0.0.1 and the daemon polling them (Ctrl-C to stop)"
    );
    if cfg.influx.is_none() {
        tracing::warn!(
            "demo: no InfluxDB configured, readings are shown here but not stored; set PQWATCH__INFLUXDB__URL, __ORG, __BUCKET and __TOKEN (or run with -c) to write them"
        );
    }
    let sim = pqwatch::sim::Simulator::bind(
        pqwatch::sim::SimMeter::from_config(&cfg),
        scenario,
        Duration::from_millis(20),
    )
    .await
    .context("starting the simulator (is another demo running?)")?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    if let Some(d) = duration {
        let t = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            t.cancel();
        });
    }
    let sim_stop = CancellationToken::new();
    let sim_task = tokio::spawn(sim.serve(sim_stop.clone()));
    let handles = pqwatch::app::Handles::default();
    let show = tokio::spawn(show_latest(handles.clone(), shutdown.clone()));
    let opts = pqwatch::app::Options {
        status_every: Duration::from_secs(30),
        lock: Some(lock),
        ..Default::default()
    };
    pqwatch::app::run(cfg, shutdown, opts, handles).await?;
    sim_stop.cancel();
    let _ = sim_task.await;
    let _ = show.await;
    Ok(ExitCode::SUCCESS)
}

/// Every 10 s, print one line per meter with its latest key values.
async fn show_latest(h: pqwatch::app::Handles, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let latest = h.latest.lock().expect("latest").clone();
        let mut ids: Vec<_> = latest.keys().cloned().collect();
        ids.sort();
        for id in ids {
            let r = &latest[&id];
            let get = |n: &str| r.values.iter().find(|(k, _)| &**k == n).map(|x| x.1);
            let fmt = |v: Option<f64>, unit: &str, div: f64| {
                v.map(|x| format!("{:.1}{unit}", x / div))
                    .unwrap_or_else(|| "-".into())
            };
            tracing::info!(
                meter = %id,
                fields = r.values.len(),
                u_l1 = %fmt(get("voltage_l1_n"), "V", 1.0),
                p_total = %fmt(get("active_power_total"), "kW", 1000.0),
                thd_u_l1 = %fmt(get("thd_voltage_l1_n"), "%", 1.0),
                f = %fmt(get("frequency"), "Hz", 1.0),
                "latest reading"
            );
        }
    }
}
