//! The meter simulator (`pqwatch simulate`, and the demo).
//!
//! Serves simulated meters over Modbus/TCP with tokio-modbus's server: one
//! listener per gateway address, many unit ids behind each, every meter
//! answering with its profile's register map. Register contents are encoded
//! from the same profile data pqwatch decodes with (type, word order, scale,
//! unit, PT/CT), from values produced by `model` and bent by a
//! [`scenario`]. An optional per-request latency mimics an RS-485 gateway;
//! tokio-modbus answers one request at a time per connection, as a serial
//! bus would.
//!
//! The simulator is for demos, tests and benchmarks; an independent Modbus
//! server (pymodbus) checks pqwatch against someone else's encoding.

mod latency;
pub(crate) mod model;
pub mod scenario;

use crate::config::Config;
use crate::modbus::assemble::Ratios;
use crate::modbus::decode::encode;
use crate::profile::{FunctionCode, Profile};
use crate::schema::Ratio;
use model::MeterModel;
use scenario::{Effect, Scenario};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// One simulated meter.
#[derive(Debug, Clone)]
pub struct SimMeter {
    pub address: String,
    pub(crate) unit: u8,
    pub(crate) profile: Arc<Profile>,
    pub model: MeterModel,
    pub(crate) ratios: Ratios,
}

/// Typical peak load for a customer at this nominal voltage, kW.
fn rated_kw(nominal_voltage: f64) -> f64 {
    match nominal_voltage {
        v if v >= 30_000.0 => 8000.0,
        v if v >= 6_000.0 => 2000.0,
        v if v >= 300.0 => 250.0,
        _ => 15.0,
    }
}

fn seed(id: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl SimMeter {
    pub fn from_config(cfg: &Config) -> Vec<SimMeter> {
        cfg.meters
            .iter()
            .map(|m| SimMeter {
                address: m.address.clone(),
                unit: m.unit,
                profile: m.profile.clone(),
                model: MeterModel {
                    id: m.id.clone(),
                    nominal_voltage: m.nominal_voltage,
                    phases: m.phases,
                    rated_kw: rated_kw(m.nominal_voltage),
                    seed: seed(&m.id),
                },
                ratios: Ratios {
                    pt: m.pt_ratio,
                    ct: m.ct_ratio,
                },
            })
            .collect()
    }
}

/// A meter's values at one instant, by field (and internal register) name.
type Values = Arc<HashMap<String, f64>>;

struct Unit {
    meter: SimMeter,
    /// Values of the current second, so several reads of one poll see one
    /// consistent state and a large fleet does not recompute per request.
    cache: Mutex<Option<(i64, Values)>>,
    /// The active import counter integrating the load served: (instant,
    /// kW then, kWh). So the counter and the power agree whatever a
    /// scenario sets, as a real meter's do (pqwatch computes demand from
    /// the counter).
    energy: Mutex<Option<(i64, f64, f64)>>,
}

impl Unit {
    /// The values at `now_ms`, their energy counters the integral of the
    /// active power served so far (left Riemann sum over the evaluations:
    /// exact for the piecewise-constant loads scenarios set). A scenario
    /// that forces an energy field keeps it.
    fn evaluate(&self, now_ms: i64, effects: &[&Effect]) -> HashMap<String, f64> {
        let mut v = self.meter.model.values(now_ms, effects);
        let forced = effects
            .iter()
            .any(|e| matches!(e, Effect::Value { field, .. } if field.starts_with("energy_")));
        let kw = v.get("active_power_total").copied().unwrap_or(0.0).max(0.0) / 1000.0;
        let mut e = self.energy.lock().expect("energy lock");
        let kwh = match *e {
            Some((t, last_kw, kwh)) if now_ms >= t => kwh + last_kw * (now_ms - t) as f64 / 3.6e6,
            Some((_, _, kwh)) => kwh,
            None => v.get("energy_active_import_total").copied().unwrap_or(0.0),
        };
        *e = Some((now_ms, kw, kwh));
        if !forced {
            model::with_active_energy(&mut v, kwh);
        }
        v
    }
}

struct Port {
    units: HashMap<u8, Unit>,
    scenario: Arc<Scenario>,
    started: Instant,
    latency: Duration,
}

impl Port {
    fn effects<'a>(&'a self, id: &'a str) -> Vec<&'a Effect> {
        self.scenario.active(id, self.started.elapsed()).collect()
    }

    fn answer(&self, unit: u8, req: &Request<'_>) -> Result<Option<Response>, ExceptionCode> {
        let Some(u) = self.units.get(&unit) else {
            // What a gateway says when nothing answers at that unit id.
            return Err(ExceptionCode::GatewayTargetDevice);
        };
        let effects = self.effects(&u.meter.model.id);
        for e in &effects {
            match e {
                Effect::Silent => return Ok(None),
                Effect::Exception(code) => return Err(ExceptionCode::new(*code)),
                _ => {}
            }
        }
        let (fc, start, count) = match req {
            Request::ReadHoldingRegisters(a, c) => (FunctionCode::Holding, *a, *c),
            Request::ReadInputRegisters(a, c) => (FunctionCode::Input, *a, *c),
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        if count == 0 || count > 125 || u32::from(start) + u32::from(count) > 65536 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let now_ms = crate::clock::now_ms();
        let values = {
            let mut cache = u.cache.lock().expect("cache lock");
            match &*cache {
                Some((slot, v)) if *slot == now_ms / 1000 => v.clone(),
                _ => {
                    let v = Arc::new(u.evaluate(now_ms, &effects));
                    *cache = Some((now_ms / 1000, v.clone()));
                    v
                }
            }
        };
        let strict = effects.iter().any(|e| matches!(e, Effect::StrictAddresses));
        if strict && !fully_defined(&u.meter.profile, fc, start, count) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let words = encode_range(&u.meter, &values, fc, start, count)
            .ok_or(ExceptionCode::IllegalDataAddress)?;
        Ok(Some(match fc {
            FunctionCode::Holding => Response::ReadHoldingRegisters(words),
            FunctionCode::Input => Response::ReadInputRegisters(words),
        }))
    }
}

/// Whether every register in the range belongs to a field of the profile.
fn fully_defined(profile: &Profile, fc: FunctionCode, start: u16, count: u16) -> bool {
    let end = u32::from(start) + u32::from(count);
    let mut covered = vec![false; count as usize];
    for reg in profile.registers.iter().filter(|r| r.function == fc) {
        for a in u32::from(reg.address)..reg.end() {
            if a >= u32::from(start) && a < end {
                covered[(a - u32::from(start)) as usize] = true;
            }
        }
    }
    covered.iter().all(|c| *c)
}

/// The register words a meter holds in `[start, start+count)`, or `None`
/// when no register of its profile lies in that range.
pub fn encode_range(
    meter: &SimMeter,
    values: &HashMap<String, f64>,
    fc: FunctionCode,
    start: u16,
    count: u16,
) -> Option<Vec<u16>> {
    let end = u32::from(start) + u32::from(count);
    let mut words = vec![0u16; count as usize];
    let mut hit = false;
    for reg in &meter.profile.registers {
        if reg.function != fc || reg.end() <= u32::from(start) || u32::from(reg.address) >= end {
            continue;
        }
        hit = true;
        let primary = values.get(&reg.name).copied().unwrap_or(0.0);
        let ratio = match reg.unit.ratio {
            Ratio::Pt => meter.ratios.pt,
            Ratio::Ct => meter.ratios.ct,
            Ratio::PtCt => meter.ratios.pt * meter.ratios.ct,
            Ratio::None => 1.0,
        };
        let raw = primary / ratio / reg.unit.factor / reg.scale;
        let w = encode(raw, reg.dtype, reg.order);
        for (k, word) in w.iter().enumerate() {
            let addr = u32::from(reg.address) + k as u32;
            if addr >= u32::from(start) && addr < end {
                words[(addr - u32::from(start)) as usize] = *word;
            }
        }
    }
    hit.then_some(words)
}

#[derive(Clone)]
struct SimService(Arc<Port>);

impl Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let port = self.0.clone();
        // From the request's arrival, exactly: see [`latency`].
        let due = Instant::now() + port.latency;
        Box::pin(async move {
            if !port.latency.is_zero() {
                latency::until(due).await;
            }
            port.answer(req.slave, &req.request)
        })
    }
}

/// A bound simulator, ready to serve.
pub struct Simulator {
    listeners: Vec<(TcpListener, Arc<Port>)>,
}

impl Simulator {
    /// Bind one listener per distinct meter address. Addresses that cannot
    /// be bound here (another host's IP) are skipped with a warning.
    pub async fn bind(
        meters: Vec<SimMeter>,
        scenario: Scenario,
        latency: Duration,
    ) -> io::Result<Self> {
        let scenario = Arc::new(scenario);
        let started = Instant::now();
        let mut by_addr: BTreeMap<String, HashMap<u8, Unit>> = BTreeMap::new();
        for m in meters {
            by_addr.entry(m.address.clone()).or_default().insert(
                m.unit,
                Unit {
                    meter: m,
                    cache: Mutex::new(None),
                    energy: Mutex::new(None),
                },
            );
        }
        let mut listeners = Vec::new();
        for (addr, units) in by_addr {
            let n = units.len();
            match TcpListener::bind(addr.as_str()).await {
                Ok(l) => {
                    debug!(address = %addr, meters = n, "simulated gateway listening");
                    listeners.push((
                        l,
                        Arc::new(Port {
                            units,
                            scenario: scenario.clone(),
                            started,
                            latency,
                        }),
                    ));
                }
                Err(e) => {
                    warn!(address = %addr, error = %e, meters = n, "cannot listen here; these meters are not simulated");
                }
            }
        }
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no meter address could be bound (the simulator serves loopback/local addresses)",
            ));
        }
        Ok(Simulator { listeners })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    pub(crate) fn meter_count(&self) -> usize {
        self.listeners.iter().map(|(_, p)| p.units.len()).sum()
    }

    /// Serve until `cancel` fires.
    pub async fn serve(self, cancel: CancellationToken) {
        info!(
            gateways = self.listeners.len(),
            meters = self.meter_count(),
            "simulator serving"
        );
        let mut tasks = tokio::task::JoinSet::new();
        for (listener, port) in self.listeners {
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let server = Server::new(listener);
                let on_connected = |stream, addr| {
                    let svc = SimService(port.clone());
                    async move { accept_tcp_connection(stream, addr, move |_| Ok(Some(svc.clone()))) }
                };
                let on_error = |e: io::Error| debug!(error = %e, "simulator connection ended");
                let _ = server
                    .serve_until(&on_connected, on_error, async move { cancel.cancelled().await })
                    .await;
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Write a fleet config: `meters` meters of `profile` spread over
/// `gateways` loopback ports from `base_port`, for benchmarks.
pub fn fleet_config(
    meters: usize,
    gateways: usize,
    profile: &str,
    base_port: u16,
    interval: &str,
) -> String {
    let gateways = gateways.max(1);
    let mut s = format!(
        "# Generated by `pqwatch simulate --fleet {meters} --gateways {gateways}`\n[polling]\ninterval = \"{interval}\"\n\n[[customers]]\nid = \"FLEET\"\nname = \"Simulated fleet\"\n\n"
    );
    for k in 0..meters {
        let g = k % gateways;
        let unit = k / gateways + 1;
        s += &format!(
            "[[meters]]\nid = \"F{k:05}\"\ncustomer = \"FLEET\"\naddress = \"127.0.0.1:{}\"\nunit = {unit}\nprofile = \"{profile}\"\nnominal_voltage = 400\n\n",
            base_port as usize + g
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::assemble::MeterPlan;
    use crate::profile::Registry;

    /// The served energy counter integrates the load a scenario sets, as a
    /// real meter's does: 120 kW for a minute is 2 kWh, and a forced
    /// counter value stays forced.
    #[test]
    fn the_energy_counter_integrates_the_load_served() {
        let reg = Registry::builtin();
        let unit = Unit {
            meter: SimMeter {
                address: String::new(),
                unit: 1,
                profile: reg.get("eastron-sdm630").unwrap().clone(),
                model: MeterModel {
                    id: "M".into(),
                    nominal_voltage: 400.0,
                    phases: 3,
                    rated_kw: 500.0,
                    seed: 1,
                },
                ratios: Ratios { pt: 1.0, ct: 1.0 },
            },
            cache: Mutex::new(None),
            energy: Mutex::new(None),
        };
        let load = Effect::Load(120.0);
        let t0 = 1_700_000_000_000;
        let e = |v: &HashMap<String, f64>| v["energy_active_import_total"];
        let a = unit.evaluate(t0, &[&load]);
        // Second method: kW × h, by hand; polled every 5 s for a minute.
        let mut last = a.clone();
        for k in 1..=12 {
            last = unit.evaluate(t0 + k * 5_000, &[&load]);
        }
        assert!(
            (e(&last) - e(&a) - 2.0).abs() < 1e-9,
            "{} → {}",
            e(&a),
            e(&last)
        );
        assert!((last["energy_active_total"] - e(&last)).abs() < 1e-12);
        let forced = Effect::Value {
            field: "energy_active_import_total".into(),
            value: 7.0,
        };
        assert_eq!(e(&unit.evaluate(t0 + 65_000, &[&load, &forced])), 7.0);
    }

    /// Every built-in profile round-trips: values the simulator encodes
    /// decode back to the model's values through pqwatch's own plan.
    #[test]
    fn every_builtin_profile_round_trips_through_the_simulator() {
        let reg = Registry::builtin();
        for p in reg.iter() {
            let ratios = Ratios {
                pt: 100.0,
                ct: 40.0,
            };
            let meter = SimMeter {
                address: String::new(),
                unit: 1,
                profile: p.clone(),
                model: MeterModel {
                    id: "M".into(),
                    nominal_voltage: 10_000.0,
                    phases: 3,
                    rated_kw: 2000.0,
                    seed: 1,
                },
                ratios,
            };
            let values = meter.model.values(1_700_000_000_000, &[]);
            let plan = MeterPlan::new(p.clone(), None, ratios).unwrap();
            let results: Vec<_> = plan
                .requests
                .iter()
                .map(|r| encode_range(&meter, &values, r.function, r.start, r.count))
                .collect();
            let a = plan.assemble(&results);
            assert!(a.dropped.is_empty(), "{}: {:?}", p.name, a.dropped);
            assert_eq!(a.values.len(), plan.field_count(), "{}", p.name);
            let v = a
                .values
                .iter()
                .find(|(n, _)| &**n == "voltage_l1_n")
                .map(|x| x.1);
            if let Some(v) = v {
                let want = values["voltage_l1_n"];
                // Integer registers quantise (EM24: 0.1 V secondary × PT 100 = 10 V).
                assert!(
                    (v - want).abs() <= 10.0 + want * 1e-6,
                    "{}: {v} vs {want}",
                    p.name
                );
            }
        }
    }

    #[test]
    fn fleet_config_is_valid() {
        let text = fleet_config(10, 3, "eastron-sdm630", 15020, "5s");
        let cfg = crate::config::from_str(&text, std::path::Path::new("/nonexistent")).unwrap();
        assert_eq!(cfg.meters.len(), 10);
        assert_eq!(cfg.gateways.len(), 3);
    }
}
