//! `pqwatch status`: print the outbox state from the state directory (works
//! while the daemon runs).

use pqwatch::config::Config;
use std::process::ExitCode;
use std::time::Duration;

pub(crate) fn status(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let dir = super::state_dir(cfg)?;
    let db = pqwatch::state::StateDb::open_readonly(dir)?;
    let version = db.schema_version()?;
    let dropped = db.counter("points_dropped")?;
    let outbox = pqwatch::sink::outbox::Outbox::new(db)?;
    let d = outbox.depth();
    let (dead_batches, dead_points) = outbox.dead_letters()?;
    let now = pqwatch::clock::now_ms();
    let age_s = d.oldest_ms.map(|t| (now - t).max(0) / 1000);
    if json {
        let v = serde_json::json!({
            "state_db": outbox.db().path.display().to_string(),
            "schema_version": version,
            "outbox": {
                "batches": d.batches, "points": d.points, "bytes": d.bytes,
                "oldest_age_seconds": age_s,
            },
            "dead_letter": { "batches": dead_batches, "points": dead_points },
            "points_dropped_total": dropped,
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        out!(
            "state database  {} (schema {version})",
            outbox.db().path.display()
        );
        out!(
            "outbox          {} batches, {} points, {:.1} MiB{}",
            d.batches,
            d.points,
            d.bytes as f64 / 1048576.0,
            age_s
                .map(|a| format!(
                    ", oldest {}",
                    humantime::format_duration(Duration::from_secs(a as u64))
                ))
                .unwrap_or_default()
        );
        out!(
            "dead letters    {dead_batches} batches, {dead_points} points (rejected by InfluxDB as invalid)"
        );
        out!(
            "dropped         {dropped} points (outbox bound, or memory bound while the disk was full), since the state database was created"
        );
    }
    Ok(ExitCode::SUCCESS)
}
