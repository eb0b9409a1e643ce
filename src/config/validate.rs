//! Raw config tree → typed, checked [`Config`]: the order in which the
//! sections are read (each gets what it is checked against) and the
//! [`Config`] they make. The sections' rules live in their files (`daemon`,
//! `influx`, `fleet`, `sections`); every violation is collected with its key
//! path by `problems`.

use super::daemon::{Daemon, GatewaySettings, daemon, gateways, polling, profiles};
use super::fleet::{Customer, Meter, MeterContext, customers, meters};
use super::influx::{Api, Influx, influx};
use super::problems::Problems;
use super::{ConfigError, Tree};
use crate::profile::Registry;
use crate::schema::did_you_mean_hint;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
/// Sections pqwatch knows; any other top-level key is an error.
pub const SECTIONS: &[&str] = &[
    "rules",
    "smtp",
    "alerts",
    "reports",
    "http",
    "cluster",
    "plausibility",
    "daemon",
    "influxdb",
    "polling",
    "gateways",
    "customers",
    "meters",
];

#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: Daemon,
    /// `None` when no `[influxdb]` section is configured or it is disabled.
    pub influx: Option<Influx>,
    pub customers: Vec<Customer>,
    pub meters: Vec<Arc<Meter>>,
    /// Per gateway address: its settings (defaults from `[polling]`).
    pub gateways: BTreeMap<String, GatewaySettings>,
    pub profiles: Registry,
    pub rules: super::rules::RulesCfg,
    pub smtp: super::mail::Smtp,
    pub alerts: super::mail::Alerts,
    pub reports: super::reports::Reports,
    pub http: super::sections::Http,
    pub cluster: super::sections::Cluster,
    /// `[daemon] timezone`, or the system's.
    pub timezone: jiff::tz::TimeZone,
}

impl Config {
    /// This instance's part of the fleet under `[cluster]`: the customers
    /// its shard owns and their meters (a customer's meters stay together,
    /// so one instance holds everything its reports, suspension and demand
    /// rules need). With one shard, everything.
    pub fn for_shard(&self) -> Config {
        if self.cluster.shards <= 1 {
            return self.clone();
        }
        let mut c = self.clone();
        c.customers.retain(|x| self.cluster.owns(&x.id));
        c.meters.retain(|m| self.cluster.owns(&m.customer));
        let used: BTreeSet<&str> = c.meters.iter().map(|m| m.address.as_str()).collect();
        c.gateways.retain(|a, _| used.contains(a.as_str()));
        c
    }
}

pub fn validate_tree(tree: &Tree) -> Result<Config, ConfigError> {
    let mut p = Problems::new(tree);
    unknown_sections(tree, &mut p);
    let daemon = daemon(tree, &mut p);
    let profiles = profiles(&daemon, &mut p);
    let polling = polling(&mut p);
    let influx = influx(&mut p);
    let tz = super::sections::timezone(daemon.timezone.as_deref(), &mut p);
    let rules = super::rules::rules(&mut p);
    let smtp = super::mail::smtp(&tree.base_dir, &mut p);
    let alerts = super::mail::alerts(&mut p);
    let reports = super::reports::reports(&mut p);
    let http = super::sections::http(&mut p);
    let cluster = super::sections::cluster(&mut p);
    let plausibility = super::sections::plausibility(&mut p);
    let v1 = matches!(
        influx,
        Some(Influx {
            api: Api::V1 { .. },
            ..
        })
    );

    let mut gateways = gateways(&polling, &mut p);
    let customers = customers(v1, &tz, &rules, &alerts, &reports, &mut p);
    let meters = meters(
        &MeterContext {
            v1,
            customers: &customers,
            profiles: &profiles,
            polling: &polling,
            gateways: &gateways,
            rules: &rules,
            plausibility: &plausibility,
        },
        &mut p,
    );
    let customers = customers.list;
    // Gateways without a [[gateways]] entry get the [polling] defaults.
    for m in &meters {
        gateways
            .entry(m.address.clone())
            .or_insert_with(|| GatewaySettings {
                address: m.address.clone(),
                timeout: polling.timeout,
                connect_timeout: polling.connect_timeout,
                reconnect_max: polling.reconnect_max,
                delay_between_requests: polling.delay_between_requests,
            });
    }

    p.finish()?;
    Ok(Config {
        daemon,
        influx,
        customers,
        meters,
        gateways,
        profiles,
        rules,
        smtp,
        alerts,
        reports,
        http,
        cluster,
        timezone: tz,
    })
}

/// Every top-level key that is not a section pqwatch knows.
fn unknown_sections(tree: &Tree, p: &mut Problems) {
    for k in tree.root.keys() {
        if !SECTIONS.contains(&k.as_str()) {
            let hint = did_you_mean_hint(k, SECTIONS.iter().copied());
            p.push(k, format!("unknown section{hint}"));
        }
    }
}
