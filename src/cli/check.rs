//! `pqwatch check`: validate the config and print the polling plan (per
//! gateway and per meter), and this shard's share of a cluster.

use pqwatch::config::{self, Config};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub(crate) fn check(config: &Path) -> anyhow::Result<ExitCode> {
    let all = config::load(config)?;
    let cfg = all.for_shard();
    print_plan(config, &cfg);
    if all.cluster.shards > 1 {
        out!();
        out!(
            "cluster: shard {} of {} (0-based) polls {} of {} customers and {} of {} meters",
            all.cluster.shard,
            all.cluster.shards,
            cfg.customers.len(),
            all.customers.len(),
            cfg.meters.len(),
            all.meters.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(path: &Path, cfg: &Config) {
    out!("config {} is valid", path.display());
    match &cfg.influx {
        Some(i) => out!(
            "influxdb: {} (api {})",
            pqwatch::secret::redact_url(&i.url),
            match i.api {
                config::Api::V2 { .. } => "v2",
                config::Api::V1 { .. } => "v1",
            }
        ),
        None => out!("influxdb: not configured (readings will not be stored)"),
    }
    out!(
        "{} customers, {} meters, {} gateways",
        cfg.customers.len(),
        cfg.meters.len(),
        cfg.gateways.len()
    );
    print_gateways(cfg);
    print_meters(cfg);
}

/// One line per gateway: its meters, reads per cycle, and the time a cycle
/// needs at 50 ms per read.
fn print_gateways(cfg: &Config) {
    let mut by_gw: BTreeMap<&str, Vec<&config::Meter>> = BTreeMap::new();
    for m in &cfg.meters {
        by_gw.entry(&m.address).or_default().push(m);
    }
    out!();
    out!(
        "{:<24} {:>6} {:>12} {:>14}  note",
        "gateway",
        "meters",
        "reads/cycle",
        "cycle @50ms"
    );
    for (gw, meters) in &by_gw {
        let reads: usize = meters.iter().map(|m| m.plan.requests.len()).sum();
        let need = Duration::from_millis(50 * reads as u64);
        let shortest = meters.iter().map(|m| m.interval).min().unwrap_or_default();
        let note = if need > shortest {
            format!(
                "may overrun the {}s interval on a slow RS-485 bus",
                shortest.as_secs_f64()
            )
        } else {
            String::new()
        };
        out!(
            "{:<24} {:>6} {:>12} {:>13.2}s  {note}",
            gw,
            meters.len(),
            reads,
            need.as_secs_f64()
        );
    }
}

/// One line per meter: its profile, unit, interval, reads and fields.
fn print_meters(cfg: &Config) {
    out!();
    out!(
        "{:<16} {:<12} {:<20} {:>4} {:>8} {:>6} {:>6}",
        "meter",
        "customer",
        "profile",
        "unit",
        "interval",
        "reads",
        "fields"
    );
    for m in &cfg.meters {
        out!(
            "{:<16} {:<12} {:<20} {:>4} {:>7}s {:>6} {:>6}",
            m.id,
            m.customer,
            m.profile.name,
            m.unit,
            m.interval.as_secs_f64(),
            m.plan.requests.len(),
            m.plan.field_count()
        );
    }
}
