//! The `pqwatch` command line: parse arguments, set up logging, load the
//! config, run, and map the outcome to an exit code (78 = bad config).

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use pqwatch::config::{self, Config, ConfigError};
use pqwatch::profile::Registry;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// EX_CONFIG from sysexits.h: systemd and operators know it means "fix the config".
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "pqwatch",
    version,
    about = "Power-quality watch for key-account customers: Modbus/TCP meters → InfluxDB"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PQWATCH_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log level or filter (e.g. "debug", "pqwatch=debug,info"); RUST_LOG wins if set.
    #[arg(long, global = true, default_value = "info", env = "PQWATCH_LOG")]
    log_level: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Copy, Clone, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
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

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Html,
    Text,
    Csv,
}

#[derive(Subcommand)]
enum ProfilesCmd {
    /// Print one profile's registers.
    Show { name: String },
}

#[derive(clap::Args)]
struct SimulateArgs {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pqwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                eprintln!("pqwatch: {ce}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("pqwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
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

async fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run { config } => {
            let cfg = config::load(&config)?;
            // Before anything else: one daemon per state directory.
            let lock = std::sync::Arc::new(pqwatch::state::lock_dir(&cfg.daemon.state_dir)?);
            let shutdown = CancellationToken::new();
            spawn_signal_handler(shutdown.clone());
            let opts = pqwatch::app::Options {
                grace: cfg.daemon.shutdown_grace,
                lock: Some(lock),
                ..Default::default()
            };
            let reloads = spawn_reload_handler(config.clone());
            pqwatch::app::run_with_reload(cfg, shutdown, opts, Default::default(), reloads).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Events {
            config,
            open,
            limit,
            json,
        } => {
            let cfg = config::load(&config)?;
            events(&cfg, open, limit, json)
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
            let period = match (period, from, to) {
                (Some(p), _, _) => Some(
                    pqwatch::calendar::Period::parse(&p)
                        .map_err(|e| anyhow::anyhow!("--period: {e}"))?,
                ),
                (None, Some(f), Some(t)) => Some(
                    pqwatch::calendar::Period::range(f, t)
                        .map_err(|e| anyhow::anyhow!("--from/--to: {e}"))?,
                ),
                _ => None,
            };
            report(&cfg, &customer, period, format, out.as_deref(), send)
        }
        Cmd::Status { config, json } => {
            let cfg = config::load(&config)?;
            status(&cfg, json)
        }
        Cmd::Check { config } => {
            let all = config::load(&config)?;
            let cfg = all.for_shard();
            print_plan(&config, &cfg);
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
        Cmd::Probe {
            config,
            meter,
            json,
        } => {
            let cfg = config::load(&config)?;
            probe(&cfg, &meter, json).await
        }
        Cmd::Profiles { config, action } => {
            let reg = match &config {
                Some(path) => config::load(path)?.profiles,
                None => Registry::load(Some(Path::new("/etc/pqwatch/profiles"))).unwrap_or_else(
                    |errs| {
                        for e in errs {
                            eprintln!("warning: {e}");
                        }
                        Registry::builtin()
                    },
                ),
            };
            match action {
                None => print_profiles(&reg),
                Some(ProfilesCmd::Show { name }) => {
                    let Some(p) = reg.get(&name) else {
                        let hint = pqwatch::schema::did_you_mean(&name, reg.names())
                            .map(|s| format!(" (did you mean \"{s}\"?)"))
                            .unwrap_or_default();
                        bail!("unknown profile \"{name}\"{hint}");
                    };
                    print_profile(p);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Simulate(args) => simulate(args).await,
        Cmd::Demo {
            config,
            scenario,
            duration,
        } => demo(config, scenario, duration).await,
    }
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install SIGTERM handler");
                    return;
                }
            };
        for n in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            if n == 0 {
                tracing::info!("signal received: shutting down (send again to exit immediately)");
                token.cancel();
            } else {
                tracing::warn!("second signal: exiting immediately");
                std::process::exit(130);
            }
        }
    });
}

/// SIGHUP: read and validate the config file again. A valid config is
/// handed to the daemon; an invalid one is rejected with every problem
/// logged, and the running config stays.
fn spawn_reload_handler(path: PathBuf) -> tokio::sync::mpsc::Receiver<Config> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGHUP handler: no live reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!(path = %path.display(), "SIGHUP: reloading the config");
            match config::load(&path) {
                Ok(cfg) => {
                    if tx.send(cfg).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    for p in &e.problems {
                        tracing::error!(problem = %p, "config reload rejected");
                    }
                    tracing::error!(
                        problems = e.problems.len(),
                        "config reload rejected: the running config stays"
                    );
                }
            }
        }
    });
    rx
}

fn print_plan(path: &Path, cfg: &Config) {
    use std::collections::BTreeMap;
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

fn print_profiles(reg: &Registry) {
    out!(
        "{:<22} {:<18} {:>7} {:>6}  description",
        "name",
        "vendor",
        "fields",
        "reads"
    );
    for p in reg.iter() {
        let plan = pqwatch::modbus::reading::MeterPlan::new(
            p.clone(),
            None,
            pqwatch::modbus::reading::Ratios::ONE,
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
    for r in p.registers.iter() {
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

async fn probe(cfg: &Config, meter: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some(m) = cfg.meters.iter().find(|m| m.id == meter) else {
        let hint = pqwatch::schema::did_you_mean(meter, cfg.meters.iter().map(|m| m.id.as_str()))
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_default();
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

fn report(
    cfg: &Config,
    customer: &str,
    period: Option<pqwatch::calendar::Period>,
    format: ReportFormat,
    out: Option<&Path>,
    send: bool,
) -> anyhow::Result<ExitCode> {
    use pqwatch::calendar::{Period, PeriodKind};
    let Some(c) = cfg.customers.iter().find(|c| c.id == customer) else {
        let hint =
            pqwatch::schema::did_you_mean(customer, cfg.customers.iter().map(|c| c.id.as_str()))
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
        bail!("no customer \"{customer}\" in the config{hint}");
    };
    let dir = &cfg.daemon.state_dir;
    if !dir.join(pqwatch::state::FILE).exists() {
        bail!(
            "no state database in {} (has pqwatch run with this config yet?)",
            dir.display()
        );
    }
    let now = pqwatch::clock::now_ms();
    let period = period.unwrap_or_else(|| {
        let kind = c.report.as_ref().map_or(PeriodKind::Month, |s| s.period);
        Period::last_complete_before(kind, pqwatch::calendar::local_date(now, &cfg.timezone))
    });
    if send {
        let mut db = pqwatch::state::StateDb::open(dir)?;
        let entry = pqwatch::report::scheduler::queue_report(cfg, &mut db, c, &period, now, true)
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
    let r = pqwatch::report::assemble(cfg, &db, c, &period, now)?;
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

fn events(cfg: &Config, open: bool, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    let dir = &cfg.daemon.state_dir;
    if !dir.join(pqwatch::state::FILE).exists() {
        bail!(
            "no state database in {} (has pqwatch run with this config yet?)",
            dir.display()
        );
    }
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

fn status(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let dir = &cfg.daemon.state_dir;
    if !dir.join(pqwatch::state::FILE).exists() {
        bail!(
            "no state database in {} (has pqwatch run with this config yet?)",
            dir.display()
        );
    }
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

async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
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

fn load_scenario(p: &Path) -> anyhow::Result<pqwatch::sim::scenario::Scenario> {
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

const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
const DEMO_SCENARIO: &str = include_str!("../config/demo-scenario.toml");

async fn demo(
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
