//! `pqwatch events`: list power-quality events from the state database.

use pqwatch::config::Config;
use std::process::ExitCode;
use std::time::Duration;

pub(crate) fn events(
    cfg: &Config,
    open: bool,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dir = super::state_dir(cfg)?;
    let store = pqwatch::events::EventStore::new(pqwatch::state::StateDb::open_readonly(dir)?);
    let list = store.recent(open, limit)?;
    let local = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| {
                t.to_zoned_datetime(cfg.timezone.clone())
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default()
    };
    if json {
        let v: Vec<_> = list
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id, "meter": e.meter, "customer": e.customer, "kind": e.kind.as_str(),
                    "phase": e.phase, "order": e.order,
                    "open": e.state == pqwatch::quality::rules::State::Open,
                    "start": local(e.start_ms), "end": local(e.end_ms),
                    "start_ms": e.start_ms, "end_ms": e.end_ms,
                    "duration_s": e.duration_ms() / 1000,
                    "value": e.value, "peak": e.peak, "peak_time": local(e.peak_ms),
                    "limit": e.limit, "unit": e.unit, "source": e.source,
                    "close_reason": store.close_reason(&e.id).ok().flatten(),
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        out!("no {}events", if open { "open " } else { "" });
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<6} {:<19} {:>9} {:<14} {:<10} {:<18} {:>7} {:>12} {:>12} {:>12}",
        "state",
        "start",
        "duration",
        "meter",
        "customer",
        "kind",
        "phase",
        "value",
        "peak",
        "limit"
    );
    for e in &list {
        let kind = if e.order > 0 {
            format!("{} h{}", e.kind.as_str(), e.order)
        } else {
            e.kind.as_str().to_string()
        };
        out!(
            "{:<6} {:<19} {:>9} {:<14} {:<10} {:<18} {:>7} {:>12} {:>12} {:>12}",
            if e.state == pqwatch::quality::rules::State::Open {
                "OPEN"
            } else {
                "closed"
            },
            local(e.start_ms),
            humantime::format_duration(Duration::from_secs((e.duration_ms() / 1000).max(0) as u64))
                .to_string(),
            e.meter,
            e.customer,
            kind,
            e.phase,
            format!("{:.2} {}", e.value, e.unit),
            format!("{:.2} {}", e.peak, e.unit),
            format!("{:.2} {}", e.limit, e.unit),
        );
    }
    Ok(ExitCode::SUCCESS)
}
