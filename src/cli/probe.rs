//! `pqwatch probe`: poll one meter once and print its decoded values.

use anyhow::{Context as _, bail};
use pqwatch::config::Config;
use std::process::ExitCode;

pub(crate) async fn probe(cfg: &Config, meter: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some(m) = cfg.meters.iter().find(|m| m.id == meter) else {
        let hint =
            pqwatch::schema::did_you_mean_hint(meter, cfg.meters.iter().map(|m| m.id.as_str()));
        bail!("no meter \"{meter}\" in the config{hint}");
    };
    let settings = cfg.gateways[&m.address].clone();
    let result = pqwatch::modbus::gateway::probe(settings, m.clone()).await;
    if json {
        let values: serde_json::Map<String, serde_json::Value> = result
            .values
            .iter()
            .map(|(n, v)| (n.to_string(), serde_json::json!(v)))
            .collect();
        let out = serde_json::json!({
            "meter": m.id,
            "customer": m.customer,
            "address": m.address,
            "unit": m.unit,
            "profile": m.profile.name,
            "reads": result.reads.iter().map(|(req, outcome)| serde_json::json!({
                "function": req.function.code(), "start": req.start, "count": req.count, "result": outcome.to_string(),
            })).collect::<Vec<_>>(),
            "values": values,
            "dropped": result.dropped.iter().map(|(n, r)| serde_json::json!({"field": n.to_string(), "reason": r.as_str()})).collect::<Vec<_>>(),
        });
        out!("{}", serde_json::to_string_pretty(&out).context("json")?);
    } else {
        out!(
            "meter {} (customer {}) at {} unit {}, profile {}",
            m.id,
            m.customer,
            m.address,
            m.unit,
            m.profile.name
        );
        for (req, outcome) in &result.reads {
            out!(
                "  read {} {}+{}: {}",
                req.function,
                req.start,
                req.count,
                outcome
            );
        }
        out!();
        out!("{:<34} {:>18} unit", "field", "value");
        for (n, v) in &result.values {
            out!("{:<34} {:>18.6} {}", n, v, m.profile_unit(n));
        }
        for (n, r) in &result.dropped {
            out!("{:<34} {:>18} (dropped: {r})", n, "-");
        }
    }
    Ok(if result.values.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
