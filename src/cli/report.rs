//! `pqwatch report`: build a customer's voltage-quality report from the
//! state database, preview it or queue it for the running daemon to send.

use anyhow::bail;
use clap::ValueEnum;
use pqwatch::config::Config;
use std::path::Path;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReportFormat {
    Html,
    Text,
    Csv,
}

/// The period of `--period`, or of `--from`/`--to`; `None`: the default.
pub(crate) fn period(
    period: Option<String>,
    from: Option<jiff::civil::Date>,
    to: Option<jiff::civil::Date>,
) -> anyhow::Result<Option<pqwatch::calendar::Period>> {
    Ok(match (period, from, to) {
        (Some(p), _, _) => Some(
            pqwatch::calendar::Period::parse(&p).map_err(|e| anyhow::anyhow!("--period: {e}"))?,
        ),
        (None, Some(f), Some(t)) => Some(
            pqwatch::calendar::Period::range(f, t)
                .map_err(|e| anyhow::anyhow!("--from/--to: {e}"))?,
        ),
        _ => None,
    })
}

pub(crate) fn report(
    cfg: &Config,
    customer: &str,
    period: Option<pqwatch::calendar::Period>,
    format: ReportFormat,
    out: Option<&Path>,
    send: bool,
) -> anyhow::Result<ExitCode> {
    use pqwatch::calendar::{Period, PeriodKind};
    let Some(c) = cfg.customers.iter().find(|c| c.id == customer) else {
        let hint = pqwatch::schema::did_you_mean_hint(
            customer,
            cfg.customers.iter().map(|c| c.id.as_str()),
        );
        bail!("no customer \"{customer}\" in the config{hint}");
    };
    let dir = super::state_dir(cfg)?;
    let now = pqwatch::clock::now_ms();
    let period = period.unwrap_or_else(|| {
        let kind = c.report.as_ref().map_or(PeriodKind::Month, |s| s.period);
        Period::last_complete_before(kind, pqwatch::calendar::local_date(now, &cfg.timezone))
    });
    if send {
        let mut db = pqwatch::state::StateDb::open(dir)?;
        let entry = pqwatch::report::scheduler::queue_report(
            &pqwatch::report::Settings::of(cfg),
            &mut db,
            c,
            &period,
            now,
            true,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .expect("replace always queues");
        eprintln!(
            "queued \"{}\" for {}; the running daemon delivers it (within 30 s), or its next start does",
            entry.subject,
            entry.recipients.join(", ")
        );
    }
    if send && out.is_none() {
        return Ok(ExitCode::SUCCESS);
    }
    let db = pqwatch::state::StateDb::open_readonly(dir)?;
    let r = pqwatch::report::assemble(&pqwatch::report::Settings::of(cfg), &db, c, &period, now)?;
    let rendered = pqwatch::report::render::render(&r);
    let body = match format {
        ReportFormat::Html => rendered.html,
        ReportFormat::Text => rendered.text,
        ReportFormat::Csv => rendered.csv,
    };
    match out {
        Some(path) => {
            std::fs::write(path, body)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!(
                "{} ({}) written to {}",
                rendered.subject,
                period.label(),
                path.display()
            );
        }
        None => out!("{body}"),
    }
    Ok(ExitCode::SUCCESS)
}
