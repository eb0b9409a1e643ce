//! `[rules]`: windows, timings, demand and suspension settings, checked
//! with every problem's key path. The limits themselves are presets in
//! `quality::limits`.

use super::problems::{Problems, duration, section};
use super::raw;
use crate::quality::limits::{Overrides, Presets};
use crate::quality::rules::Timing;
use std::time::Duration;

/// Validated `[rules]`.
#[derive(Debug, Clone)]
pub struct RulesCfg {
    pub enabled: bool,
    pub presets: Presets,
    /// Preset and limits for meters and customers that set none.
    pub defaults: Overrides,
    pub short_window: Duration,
    pub long_window: Duration,
    pub demand_window: Duration,
    pub min_completeness: f64,
    pub voltage: Timing,
    pub harmonics: Timing,
    pub suspension: Timing,
    pub demand: Timing,
    pub suspension_factor: f64,
    pub noise_floor_kw: f64,
    pub demand_factor: f64,
    /// Demand values end on multiples of this: the slide (1 minute by
    /// default), or the demand window itself in block mode.
    pub demand_slide: Duration,
    /// The load a suspension is judged on is averaged over this.
    pub suspension_window: Duration,
    /// Interruption threshold, % of the voltage reference.
    pub interruption_pct: f64,
    /// kW demand from the energy counter where the meter has one (true,
    /// the default), or always from polled power.
    pub demand_from_energy: bool,
}

/// A `[rules]` duration with its default in seconds.
fn d(v: &Option<String>, def: u64, key: &str, p: &mut Problems) -> Duration {
    duration(
        v.as_deref(),
        Duration::from_secs(def),
        &format!("rules.{key}"),
        p,
    )
}

/// A `[rules]` non-negative number (a percentage or a factor).
fn pct(v: Option<f64>, def: f64, key: &str, p: &mut Problems) -> f64 {
    let x = v.unwrap_or(def);
    if !(x.is_finite() && x >= 0.0) {
        p.push(&format!("rules.{key}"), "must be a non-negative number");
    }
    x
}

/// Demand is built from short-window means: its lengths must be whole
/// multiples of `short_window`.
fn multiple(d: Duration, short_window: Duration, key: &str, p: &mut Problems) {
    let short_ms = short_window.as_millis().max(1);
    if !d.as_millis().is_multiple_of(short_ms) || d.is_zero() {
        p.push(
            &format!("rules.{key}"),
            format!(
                "must be a whole multiple of short_window ({}s): demand is built from its means",
                short_window.as_secs_f64()
            ),
        );
    }
}

pub(super) fn rules(p: &mut Problems) -> RulesCfg {
    let r: raw::Rules = section("rules", p);
    let presets = Presets::builtin();
    if let Some(name) = &r.preset
        && !presets.names().any(|n| n == name)
    {
        let known: Vec<_> = presets.names().collect();
        p.push(
            "rules.preset",
            format!("unknown preset \"{name}\" (known: {})", known.join(", ")),
        );
    }
    let short_window = d(&r.short_window, 60, "short_window", p);
    let long_window = d(&r.long_window, 600, "long_window", p);
    let demand_window = d(&r.demand_window, 900, "demand_window", p);
    if !long_window
        .as_millis()
        .is_multiple_of(short_window.as_millis().max(1))
    {
        p.push("rules.long_window", "must be a multiple of short_window");
    }
    let completeness = r.min_window_completeness.unwrap_or(0.75);
    if !(0.0..=1.0).contains(&completeness) {
        p.push("rules.min_window_completeness", "must be between 0 and 1");
    }
    let [voltage, harmonics, suspension, demand] = timings(&r, demand_window, p);
    multiple(demand_window, short_window, "demand_window", p);
    let demand_slide = demand_slide(&r, short_window, demand_window, p);
    let demand_from_energy = match r.demand_basis.as_deref() {
        None | Some("energy") => true,
        Some("power") => false,
        Some(other) => {
            p.push(
                "rules.demand_basis",
                format!("\"{other}\" is not \"energy\" or \"power\""),
            );
            true
        }
    };
    let suspension_window = match &r.suspension_window {
        None => demand_window,
        Some(_) => {
            let w = d(&r.suspension_window, 900, "suspension_window", p);
            multiple(w, short_window, "suspension_window", p);
            w
        }
    };
    let interruption_pct = r.interruption_threshold.unwrap_or(10.0);
    if !(interruption_pct.is_finite() && (0.0..50.0).contains(&interruption_pct)) {
        p.push(
            "rules.interruption_threshold",
            "must be a percentage of the reference voltage below 50 (GB/T 30137: 10)",
        );
    }
    RulesCfg {
        enabled: r.enabled.unwrap_or(true),
        presets,
        defaults: Overrides {
            preset: r.preset.clone(),
            unbalance: r.unbalance_limit,
            ..Default::default()
        },
        short_window,
        long_window,
        demand_window,
        min_completeness: completeness,
        voltage,
        harmonics,
        suspension,
        demand,
        suspension_factor: pct(r.suspension_factor, 1.0, "suspension_factor", p),
        noise_floor_kw: pct(
            r.suspension_noise_floor_kw,
            5.0,
            "suspension_noise_floor_kw",
            p,
        ),
        demand_factor: pct(r.demand_factor, 1.05, "demand_factor", p),
        demand_slide,
        suspension_window,
        interruption_pct,
        demand_from_energy,
    }
}

/// How long a violation must last to open an event and how long it must
/// be gone to close it, with the hysteresis margin: voltage, harmonics,
/// suspension load, demand (one demand window each way, no margin).
fn timings(r: &raw::Rules, demand_window: Duration, p: &mut Problems) -> [Timing; 4] {
    let voltage = Timing {
        min_duration: d(&r.voltage_min_duration, 180, "voltage_min_duration", p),
        clear_after: d(&r.voltage_clear_after, 180, "voltage_clear_after", p),
        margin: pct(r.voltage_hysteresis, 0.5, "voltage_hysteresis", p),
    };
    let harmonics = Timing {
        min_duration: d(&r.harmonic_min_duration, 600, "harmonic_min_duration", p),
        clear_after: d(&r.harmonic_clear_after, 600, "harmonic_clear_after", p),
        margin: pct(r.harmonic_hysteresis, 5.0, "harmonic_hysteresis", p),
    };
    let suspension = Timing {
        min_duration: d(
            &r.suspension_min_duration,
            300,
            "suspension_min_duration",
            p,
        ),
        clear_after: d(&r.suspension_clear_after, 300, "suspension_clear_after", p),
        margin: 5.0,
    };
    let demand = Timing {
        min_duration: demand_window,
        clear_after: demand_window,
        margin: 0.0,
    };
    [voltage, harmonics, suspension, demand]
}

/// Where demand values end: every `demand_slide` (sliding, the default),
/// or every demand window (block).
fn demand_slide(
    r: &raw::Rules,
    short_window: Duration,
    demand_window: Duration,
    p: &mut Problems,
) -> Duration {
    match r.demand_mode.as_deref() {
        None | Some("sliding") => {
            let s = d(&r.demand_slide, short_window.as_secs(), "demand_slide", p);
            multiple(s, short_window, "demand_slide", p);
            if !s.is_zero() && !demand_window.as_millis().is_multiple_of(s.as_millis()) {
                p.push("rules.demand_slide", "must divide demand_window");
            }
            s
        }
        Some("block") => {
            if r.demand_slide.is_some() {
                p.push(
                    "rules.demand_slide",
                    "applies to demand_mode = \"sliding\" only",
                );
            }
            demand_window
        }
        Some(other) => {
            p.push(
                "rules.demand_mode",
                format!("\"{other}\" is not \"sliding\" or \"block\""),
            );
            demand_window
        }
    }
}
