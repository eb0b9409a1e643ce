//! `[[customers]]` and `[[meters]]`: the fleet. Each meter is checked
//! against its customer, its profile, the other meters (ids, units) and the
//! sections read before it; its limits are resolved here, once.

use super::daemon::{GatewaySettings, Polling, check_interval};
use super::mail::Alerts;
use super::problems::{Problems, check_address, check_id, check_tags, duration, entries};
use super::raw;
use super::reports::Reports;
use super::rules::RulesCfg;
use crate::modbus::assemble::{MeterPlan, Ratios};
use crate::profile::{Profile, Registry};
use crate::quality::limits::{Limits, Overrides};
use crate::schema::{did_you_mean, did_you_mean_hint};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub(crate) name: String,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) contracted_kva: Option<f64>,
    pub(crate) max_demand_kw: Option<f64>,
    /// Minimum short-circuit capacity at the PCC, MVA.
    pub short_circuit_mva: Option<f64>,
    /// Maximum demand load current I_L, A.
    pub max_demand_current_a: Option<f64>,
    /// Supply capacity of the PCC, MVA.
    pub supply_capacity_mva: Option<f64>,
    pub(crate) suspensions: Vec<super::sections::SuspensionPeriod>,
    pub(crate) limits: crate::quality::limits::Overrides,
    pub(crate) language: super::sections::Language,
    pub(crate) alert_group: Option<String>,
    /// Report recipients (may be empty: then no report is sent).
    pub recipients: Vec<String>,
    /// Report schedule; None when reports are off for this customer.
    pub report: Option<super::reports::ReportSchedule>,
}

#[derive(Debug, Clone)]
pub struct Meter {
    pub id: String,
    pub customer: String,
    /// Gateway (or native meter) address, `host:port`.
    pub address: String,
    pub unit: u8,
    pub profile: Arc<Profile>,
    pub plan: Arc<MeterPlan>,
    pub interval: Duration,
    /// Per-request timeout (from the meter, else its gateway, else `[polling]`).
    pub timeout: Duration,
    pub pt_ratio: f64,
    pub ct_ratio: f64,
    /// IEC convention: line-to-line for three-phase, phase voltage for single-phase.
    pub nominal_voltage: f64,
    pub(crate) phases: u8,
    /// Tags written with every point: user tags, then `meter` and `customer`.
    pub tags: BTreeMap<String, String>,
    /// What the meter's supply is judged against (preset + overrides).
    pub limits: crate::quality::limits::Limits,
    /// Counts in the customer's total demand and suspension load.
    pub billing: bool,
    /// 50 or 60 Hz.
    pub nominal_frequency: f64,
    /// (phase, field, nominal reference in V) the voltage rules judge.
    pub voltage_refs: Vec<(String, String, f64)>,
    /// Bounds of plausible values (`[plausibility]`, nominal voltage,
    /// contracted capacity).
    pub plausibility: crate::modbus::plausible::Bounds,
}

impl Meter {
    /// Canonical unit of one of this meter's output fields ("" if unknown).
    pub fn profile_unit(&self, field: &str) -> &'static str {
        if let Some(r) = self.profile.register(field) {
            return r.unit.canonical;
        }
        self.profile
            .derived
            .iter()
            .find(|d| d.name == field)
            .map(|d| d.unit)
            .unwrap_or("")
    }
}

pub(super) fn ratio(v: Option<&raw::RatioValue>, key: &str, p: &mut Problems) -> f64 {
    let r = match v {
        None => return 1.0,
        Some(raw::RatioValue::Number(n)) => Some(*n),
        Some(raw::RatioValue::Text(s)) => match s.split_once('/') {
            Some((a, b)) => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                (Ok(a), Ok(b)) if b != 0.0 => Some(a / b),
                _ => None,
            },
            None => s.trim().parse::<f64>().ok(),
        },
    };
    match r {
        Some(r) if r.is_finite() && r > 0.0 => r,
        _ => {
            p.push(
                key,
                "must be a positive number or \"primary/secondary\" like \"10000/100\"",
            );
            1.0
        }
    }
}

/// Checks of a limits table where it is written (a customer's or a
/// meter's), so a typo is reported under the key that holds it.
pub(super) fn check_overrides(
    o: &crate::quality::limits::Overrides,
    rules: &super::rules::RulesCfg,
    key: &str,
    p: &mut Problems,
) {
    if let Some(name) = &o.preset
        && !rules.presets.names().any(|n| n == name)
    {
        let hint = did_you_mean(name, rules.presets.names())
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_else(|| {
                format!(
                    " (known: {})",
                    rules.presets.names().collect::<Vec<_>>().join(", ")
                )
            });
        p.push(
            &format!("{key}.preset"),
            format!("unknown limits preset \"{name}\"{hint}"),
        );
    }
    if let Some(e) = &o.ieee519_edition
        && e != "2014"
        && e != "2022"
    {
        p.push(
            &format!("{key}.ieee519_edition"),
            format!("\"{e}\" is not \"2014\" or \"2022\""),
        );
    }
}

/// `[[customers]]`, and what the meters need to find theirs.
pub(super) struct Customers {
    pub(super) list: Vec<Customer>,
    pub(super) ids: BTreeSet<String>,
    /// Each customer's key path ("customers[2]"), for problems found later.
    pub(super) keys: HashMap<String, String>,
}

/// `[[customers]]`: ids, contract figures, suspensions, report settings.
pub(super) fn customers(
    v1: bool,
    tz: &jiff::tz::TimeZone,
    rules: &RulesCfg,
    alerts: &Alerts,
    reports: &Reports,
    p: &mut Problems,
) -> Customers {
    let mut customers = Vec::new();
    let mut customer_ids = BTreeSet::new();
    let mut customer_keys: HashMap<String, String> = HashMap::new();
    for (key, c) in entries::<raw::Customer>("customers", p) {
        check_id(&c.id, &format!("{key}.id"), v1, p);
        check_tags(&c.tags, &key, v1, p);
        customer_keys
            .entry(c.id.clone())
            .or_insert_with(|| key.clone());
        if !customer_ids.insert(c.id.clone()) {
            p.push(
                &format!("{key}.id"),
                format!("\"{}\" is used by another customer", c.id),
            );
        }
        let suspensions = super::sections::suspensions(&c.suspensions, tz, &key, p);
        let language =
            super::sections::language(c.language.as_deref(), &format!("{key}.language"), p);
        for (k, v) in [
            ("contracted_kva", c.contracted_kva),
            ("max_demand_kw", c.max_demand_kw),
            ("short_circuit_mva", c.short_circuit_mva),
            ("max_demand_current_a", c.max_demand_current_a),
            ("supply_capacity_mva", c.supply_capacity_mva),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                p.push(&format!("{key}.{k}"), "must be positive");
            }
        }
        if !suspensions.is_empty() && c.contracted_kva.is_none() {
            p.push(
                &format!("{key}.contracted_kva"),
                "is needed to judge load during the suspensions",
            );
        }
        if let Some(g) = &c.alert_group
            && !alerts.groups.contains_key(g)
        {
            p.push(
                &format!("{key}.alert_group"),
                format!("no [[alerts.groups]] named \"{g}\""),
            );
        }
        if let Some(o) = &c.limits {
            check_overrides(o, rules, &format!("{key}.limits"), p);
        }
        let (recipients, report) =
            super::reports::customer_report(&c.recipients, c.report.as_ref(), reports, &key, p);
        customers.push(Customer {
            recipients,
            report,
            name: c.name.unwrap_or_else(|| c.id.clone()),
            id: c.id,
            tags: c.tags,
            contracted_kva: c.contracted_kva,
            short_circuit_mva: c.short_circuit_mva,
            max_demand_current_a: c.max_demand_current_a,
            supply_capacity_mva: c.supply_capacity_mva,
            max_demand_kw: c.max_demand_kw,
            suspensions,
            limits: c.limits.unwrap_or_default(),
            language,
            alert_group: c.alert_group,
        });
    }
    Customers {
        list: customers,
        ids: customer_ids,
        keys: customer_keys,
    }
}

/// What each meter is checked against: the sections read before it.
pub(super) struct MeterContext<'a> {
    pub(super) v1: bool,
    pub(super) customers: &'a Customers,
    pub(super) profiles: &'a Registry,
    pub(super) polling: &'a Polling,
    pub(super) gateways: &'a BTreeMap<String, GatewaySettings>,
    pub(super) rules: &'a RulesCfg,
    pub(super) plausibility: &'a crate::modbus::plausible::Settings,
}

/// Meters with the same profile, fields and ratios share one plan.
pub(super) type PlanKey = (String, Option<Vec<String>>, u64, u64);

/// What the meters read so far claim: ids, (address, unit) pairs, and the
/// plans they share.
#[derive(Default)]
pub(super) struct Claimed {
    pub(super) ids: BTreeSet<String>,
    pub(super) units: BTreeMap<(String, u8), String>,
    pub(super) plans: HashMap<PlanKey, Arc<MeterPlan>>,
}

/// `[[meters]]`, the enabled ones.
pub(super) fn meters(cx: &MeterContext, p: &mut Problems) -> Vec<Arc<Meter>> {
    // Each meter's customer, found once (validation of 10,000 meters
    // scanned the customer list three times per meter).
    let by_id: HashMap<&str, &Customer> = cx
        .customers
        .list
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    let mut claimed = Claimed::default();
    let mut meters = Vec::new();
    for (key, m) in entries::<raw::Meter>("meters", p) {
        if m.enabled == Some(false) {
            continue;
        }
        let customer = by_id.get(m.customer.as_str()).copied();
        if let Some(meter) = meter(&key, m, customer, cx, &mut claimed, p) {
            meters.push(Arc::new(meter));
        }
    }
    meters
}

/// One meter entry; None when it cannot be polled or judged (unknown
/// profile, fields the profile lacks, no limits), after its every problem
/// is reported.
pub(super) fn meter(
    key: &str,
    m: raw::Meter,
    customer: Option<&Customer>,
    cx: &MeterContext,
    claimed: &mut Claimed,
    p: &mut Problems,
) -> Option<Meter> {
    let MeterContext {
        v1,
        profiles,
        polling,
        gateways,
        rules,
        plausibility,
        ..
    } = *cx;
    let unit = meter_identity(key, &m, cx, claimed, p);
    let profile = meter_profile(key, &m, profiles, p);
    let interval = duration(
        m.interval.as_deref(),
        polling.interval,
        &format!("{key}.interval"),
        p,
    );
    check_interval(interval, &format!("{key}.interval"), p);
    let gw_timeout = gateways
        .get(&m.address)
        .map(|g| g.timeout)
        .unwrap_or(polling.timeout);
    let timeout = duration(
        m.timeout.as_deref(),
        gw_timeout,
        &format!("{key}.timeout"),
        p,
    );
    let pt_ratio = ratio(m.pt_ratio.as_ref(), &format!("{key}.pt_ratio"), p);
    let ct_ratio = ratio(m.ct_ratio.as_ref(), &format!("{key}.ct_ratio"), p);
    let phases = m.phases.unwrap_or(3);
    if phases != 1 && phases != 3 {
        p.push(&format!("{key}.phases"), "must be 1 or 3");
    }
    if !(m.nominal_voltage.is_finite() && m.nominal_voltage > 0.0) {
        p.push(
            &format!("{key}.nominal_voltage"),
            "must be a positive voltage in V",
        );
    } else if m.nominal_voltage < 50.0 {
        // Catches "10" meant as kV: the IEC convention here is volts.
        p.push(
            &format!("{key}.nominal_voltage"),
            format!(
                "{} V is implausible: give volts, e.g. 10000 for 10 kV",
                m.nominal_voltage
            ),
        );
    }
    check_tags(&m.tags, key, v1, p);
    let profile = profile?;
    let plan = meter_plan(key, &m, &profile, (pt_ratio, ct_ratio), claimed, p)?;
    let mut tags = customer.map(|c| c.tags.clone()).unwrap_or_default();
    tags.extend(m.tags.clone());
    tags.insert("meter".into(), m.id.clone());
    tags.insert("customer".into(), m.customer.clone());
    let (mut limits, overrides) = meter_limits(key, &m, customer, phases, cx, p)?;
    let nominal_frequency = meter_voltages(key, &m, phases, p);
    current_limits(&mut limits, &overrides, customer, m.nominal_voltage, rules);
    let voltage_refs = super::sections::voltage_refs(
        &super::sections::VoltageBasis {
            basis: m.voltage_basis.as_deref(),
            nominal: m.nominal_voltage,
            declared: m.declared_voltage,
            phase_reference: m.nominal_voltage_ln,
            phases,
        },
        &plan,
        key,
        p,
    );
    let contracted = customer.and_then(|c| c.contracted_kva);
    Some(Meter {
        plausibility: crate::modbus::plausible::Bounds::new(
            plausibility,
            m.nominal_voltage,
            phases,
            contracted,
        ),
        limits,
        voltage_refs,
        billing: m.billing.unwrap_or(true),
        nominal_frequency,
        id: m.id,
        customer: m.customer,
        address: m.address,
        unit,
        profile,
        plan,
        interval,
        timeout,
        pt_ratio,
        ct_ratio,
        nominal_voltage: m.nominal_voltage,
        phases,
        tags,
    })
}

/// The meter's profile; None (reported, with the nearest names) when no
/// profile has its name.
pub(super) fn meter_profile(
    key: &str,
    m: &raw::Meter,
    profiles: &Registry,
    p: &mut Problems,
) -> Option<Arc<Profile>> {
    let profile = profiles.get(&m.profile).cloned();
    if profile.is_none() {
        let hint = did_you_mean(&m.profile, profiles.names())
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_else(|| {
                format!(
                    " (known: {})",
                    profiles.names().collect::<Vec<_>>().join(", ")
                )
            });
        p.push(
            &format!("{key}.profile"),
            format!("unknown profile \"{}\"{hint}", m.profile),
        );
    }
    profile
}

/// The declared and phase voltages' and the frequency's plausibility; the
/// nominal frequency.
pub(super) fn meter_voltages(key: &str, m: &raw::Meter, phases: u8, p: &mut Problems) -> f64 {
    for (name, v) in [
        ("declared_voltage", m.declared_voltage),
        ("nominal_voltage_ln", m.nominal_voltage_ln),
    ] {
        match v {
            Some(v) if !(v.is_finite() && v >= 50.0) => p.push(
                &format!("{key}.{name}"),
                format!("{v} V is implausible: give volts, e.g. 220 or 10500"),
            ),
            _ => {}
        }
    }
    let nominal_frequency = m.nominal_frequency.unwrap_or(50.0);
    if nominal_frequency != 50.0 && nominal_frequency != 60.0 {
        p.push(
            &format!("{key}.nominal_frequency"),
            format!("{nominal_frequency} is not 50 or 60 (Hz)"),
        );
    }
    if m.nominal_voltage_ln.is_some() && phases == 1 {
        p.push(
            &format!("{key}.nominal_voltage_ln"),
            "applies to three-phase meters; a single-phase meter's nominal_voltage is its phase voltage",
        );
    }
    nominal_frequency
}

/// A meter's id, customer, address and unit, checked against the other
/// meters'; the unit id (0 when it is not one).
pub(super) fn meter_identity(
    key: &str,
    m: &raw::Meter,
    cx: &MeterContext,
    claimed: &mut Claimed,
    p: &mut Problems,
) -> u8 {
    let (v1, customers) = (cx.v1, cx.customers);
    check_id(&m.id, &format!("{key}.id"), v1, p);
    if m.id.starts_with('*') {
        // "*" names a customer's total (demand, suspension events).
        p.push(
            &format!("{key}.id"),
            "must not start with \"*\": pqwatch names a customer's total load \"*\"",
        );
    }
    if !claimed.ids.insert(m.id.clone()) {
        p.push(
            &format!("{key}.id"),
            format!("\"{}\" is used by another meter", m.id),
        );
    }
    if !customers.ids.contains(&m.customer) {
        let hint = did_you_mean_hint(&m.customer, customers.ids.iter().map(String::as_str));
        p.push(
            &format!("{key}.customer"),
            format!(
                "unknown customer \"{}\"{hint}: add it under [[customers]]",
                m.customer
            ),
        );
    }
    check_address(&m.address, &format!("{key}.address"), p);
    let unit = match u8::try_from(m.unit) {
        Ok(u) => u,
        Err(_) => {
            p.push(
                &format!("{key}.unit"),
                format!("{} is not a Modbus unit id (0–255)", m.unit),
            );
            0
        }
    };
    if let Some(other) = claimed
        .units
        .insert((m.address.clone(), unit), m.id.clone())
    {
        p.push(
            &format!("{key}.unit"),
            format!("unit {unit} at {} is already meter \"{other}\"", m.address),
        );
    }
    unit
}

/// The meter's read plan, shared with every meter of the same profile,
/// fields and ratios: at 10,000 meters, a plan each was 40 MB
/// (BENCHMARKS.md). None when its fields do not fit the profile.
pub(super) fn meter_plan(
    key: &str,
    m: &raw::Meter,
    profile: &Arc<Profile>,
    (pt_ratio, ct_ratio): (f64, f64),
    claimed: &mut Claimed,
    p: &mut Problems,
) -> Option<Arc<MeterPlan>> {
    let plan_key = (
        profile.name.clone(),
        m.fields.clone(),
        pt_ratio.to_bits(),
        ct_ratio.to_bits(),
    );
    let plan = match claimed.plans.entry(plan_key) {
        std::collections::hash_map::Entry::Occupied(o) => Arc::clone(o.get()),
        std::collections::hash_map::Entry::Vacant(v) => match MeterPlan::new(
            profile.clone(),
            m.fields.as_deref(),
            Ratios {
                pt: pt_ratio,
                ct: ct_ratio,
            },
        ) {
            Ok(plan) => Arc::clone(v.insert(Arc::new(plan))),
            Err(errs) => {
                for e in errs {
                    p.push(&format!("{key}.fields"), e);
                }
                return None;
            }
        },
    };
    Some(plan)
}

/// The meter's limits (its preset and overrides over its customer's and
/// `[rules]`' defaults, resolved for its voltage) and the overrides.
pub(super) fn meter_limits(
    key: &str,
    m: &raw::Meter,
    customer: Option<&Customer>,
    phases: u8,
    cx: &MeterContext,
    p: &mut Problems,
) -> Option<(Limits, Overrides)> {
    let (rules, customers) = (cx.rules, cx.customers);
    let customer_limits = customer.map(|c| c.limits.clone()).unwrap_or_default();
    let overrides = m
        .limits
        .clone()
        .unwrap_or_default()
        .over(&customer_limits.over(&rules.defaults));
    if let Some(o) = &m.limits {
        check_overrides(o, rules, &format!("{key}.limits"), p);
    }
    // A mistake in the customer's or [rules]' limits is reported there
    // (once, by check_overrides), not under each of its meters.
    let limits_key = if m.limits.is_some() {
        format!("{key}.limits")
    } else if let Some(ck) = customers.keys.get(m.customer.as_str())
        && customer.is_some_and(|c| c.limits != Default::default())
    {
        format!("{ck}.limits")
    } else {
        "rules".to_string()
    };
    let limits = match rules.presets.resolve(m.nominal_voltage, phases, &overrides) {
        Ok(l) => l,
        Err(e) => {
            if !e.starts_with("unknown limits preset")
                && !p.is_muted(&format!("{key}.nominal_voltage"))
            {
                p.push(&limits_key, e);
            }
            // The meter's other settings are still checked, on the
            // default preset (the config is refused anyway).
            match rules
                .presets
                .resolve(m.nominal_voltage, phases, &Default::default())
            {
                Ok(l) => l,
                Err(_) => return None,
            }
        }
    };
    Some((limits, overrides))
}

/// Harmonic current limits that depend on the customer's supply: IEEE 519's
/// by Isc/I_L, GB/T 14549's Table 2 scaled to the short-circuit capacity.
pub(super) fn current_limits(
    limits: &mut Limits,
    overrides: &Overrides,
    customer: Option<&Customer>,
    nominal_voltage: f64,
    rules: &RulesCfg,
) {
    // IEEE 519: Isc = Sk / (√3 · U), the row by Isc / I_L.
    if let (Some(c), Some(sk)) = (customer, customer.and_then(|c| c.short_circuit_mva))
        && let Some(il) = c.max_demand_current_a
    {
        let isc = sk * 1e6 / (3f64.sqrt() * nominal_voltage);
        limits.current = rules.presets.current_limits(&limits.preset, isc / il);
        let edition = overrides.ieee519_edition.as_deref();
        // IEEE 519's individual orders, in A of I_L.
        if let Some(cl) = &limits.current {
            limits.harmonic_current = Some(cl.order_amps(il, edition == Some("2014")));
        }
    }
    // GB/T 14549: Table 2 scaled to Sk and shared by Si/St.
    if let Some(c) = customer
        && let Some(sk) = c.short_circuit_mva
    {
        let share = c
            .contracted_kva
            .zip(c.supply_capacity_mva)
            .map(|(si, st)| (si / 1000.0, st));
        // (The IEEE 519 preset has no Table 2: its order limits stay.)
        if let Some(h) =
            rules
                .presets
                .harmonic_current_limits(&limits.preset, nominal_voltage, sk, share)
        {
            limits.harmonic_current = Some(h);
        }
    }
}
