//! `pqwatch profiles`: list the built-in (and user) device profiles, or show
//! one's registers.

use anyhow::bail;
use clap::Subcommand;
use pqwatch::config;
use pqwatch::profile::Registry;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum ProfilesCmd {
    /// Print one profile's registers.
    Show { name: String },
}

pub(crate) fn profiles(
    config: Option<&Path>,
    action: Option<ProfilesCmd>,
) -> anyhow::Result<ExitCode> {
    let reg = match config {
        Some(path) => config::load(path)?.profiles,
        None => Registry::load(Some(Path::new("/etc/pqwatch/profiles"))).unwrap_or_else(|errs| {
            for e in errs {
                eprintln!("warning: {e}");
            }
            Registry::builtin()
        }),
    };
    match action {
        None => print_profiles(&reg),
        Some(ProfilesCmd::Show { name }) => {
            let Some(p) = reg.get(&name) else {
                let hint = pqwatch::schema::did_you_mean_hint(&name, reg.names());
                bail!("unknown profile \"{name}\"{hint}");
            };
            print_profile(p);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_profiles(reg: &Registry) {
    out!(
        "{:<22} {:<18} {:>7} {:>6}  description",
        "name",
        "vendor",
        "fields",
        "reads"
    );
    for p in reg.iter() {
        let plan = pqwatch::modbus::assemble::MeterPlan::new(
            p.clone(),
            None,
            pqwatch::modbus::assemble::Ratios::ONE,
        );
        let reads = plan.map(|p| p.requests.len()).unwrap_or(0);
        out!(
            "{:<22} {:<18} {:>7} {:>6}  {}{}",
            p.name,
            p.vendor,
            p.output_names().count(),
            reads,
            p.description,
            if p.origin.starts_with("built-in") {
                ""
            } else {
                " [user]"
            }
        );
    }
}

fn print_profile(p: &pqwatch::profile::Profile) {
    out!("{} — {} {}", p.name, p.vendor, p.model);
    if !p.description.is_empty() {
        out!("{}", p.description);
    }
    if !p.source.is_empty() {
        out!("source: {}", p.source);
    }
    out!(
        "max {} registers per read, gaps up to {} bridged{}; from {}",
        p.max_registers,
        p.max_gap,
        if p.even_count { ", even counts" } else { "" },
        p.origin
    );
    for n in &p.notes {
        out!("note: {n}");
    }
    out!();
    out!(
        "{:<34} {:>4} {:>6} {:<5} {:<5} {:>8} {:<6} {:<5} {:<6}",
        "field",
        "fc",
        "addr",
        "type",
        "order",
        "scale",
        "unit",
        "conf",
        "doc"
    );
    for r in &p.registers {
        let name = if r.emit {
            r.name.clone()
        } else {
            format!("({})", r.name)
        };
        out!(
            "{:<34} {:>4} {:>6} {:<5} {:<5} {:>8} {:<6} {:<5} {:<6}",
            name,
            r.function.code(),
            r.address,
            r.dtype.name(),
            r.order.name(),
            r.scale,
            r.unit.symbol,
            r.confidence.map(|c| format!("{c:?}")).unwrap_or_default(),
            r.doc.clone().unwrap_or_default()
        );
    }
    for d in &p.derived {
        let inputs: Vec<&str> = d
            .inputs
            .iter()
            .map(|&i| p.registers[i].name.as_str())
            .collect();
        out!(
            "{:<34} derived {:?}({}) in \"{}\"",
            d.name,
            d.op,
            inputs.join(", "),
            d.unit
        );
    }
    out!("\n(fields in parentheses are read as inputs only)");
}
