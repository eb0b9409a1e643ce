//! Scenario files: scripted deviations for the simulator. Pure.
//!
//! ```toml
//! repeat = "30m"            # optional: the script loops with this period
//! [[event]]
//! meter = "M001"            # a meter id, or "*" for every meter
//! at = "2m"                 # offset from simulator start (or loop start)
//! duration = "10m"          # optional; omitted = until the end
//! kind = "voltage"          # voltage | thd_voltage | thd_current | load | unbalance | value | silent | exception | strict_addresses
//! factor = 1.09             # voltage: × nominal (1.09 = +9 %)
//! phases = [1, 2, 3]        # optional, voltage only
//! ```
//! Other kinds take `value` (thd_voltage / thd_current / unbalance in %,
//! load in kW primary total, `value` with `field = "frequency"`), or `code`
//! (exception: the Modbus exception code to answer with).

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    repeat: Option<String>,
    #[serde(default)]
    event: Vec<RawEvent>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    meter: String,
    at: String,
    duration: Option<String>,
    kind: String,
    factor: Option<f64>,
    value: Option<f64>,
    field: Option<String>,
    code: Option<u8>,
    phases: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Phase voltages × factor (on the listed phases, 1-based).
    Voltage {
        factor: f64,
        phases: Vec<u8>,
    },
    ThdVoltage(f64),
    ThdCurrent(f64),
    /// Total active power in kW, primary side.
    Load(f64),
    Unbalance(f64),
    /// Force one output field to a value (canonical units, primary side).
    Value {
        field: String,
        value: f64,
    },
    /// Answer nothing (the gateway times out).
    Silent,
    /// Answer with this Modbus exception code.
    Exception(u8),
    /// Reject (0x02) any read that covers a register the profile does not
    /// define, as some meters do.
    StrictAddresses,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) meter: String,
    pub(crate) from: Duration,
    pub(crate) until: Option<Duration>,
    pub(crate) effect: Effect,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    pub(crate) repeat: Option<Duration>,
    pub(crate) events: Vec<Event>,
}

fn dur(s: &str, key: &str, errs: &mut Vec<String>) -> Duration {
    if s == "0" {
        return Duration::ZERO;
    }
    humantime::parse_duration(s).unwrap_or_else(|e| {
        errs.push(format!("{key}: \"{s}\" is not a duration ({e})"));
        Duration::ZERO
    })
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errs = Vec::new();
        let repeat = raw.repeat.as_deref().map(|s| dur(s, "repeat", &mut errs));
        let mut events = Vec::new();
        for (i, e) in raw.event.iter().enumerate() {
            let key = format!("event[{i}]");
            let need = |v: Option<f64>, what: &str, errs: &mut Vec<String>| {
                v.unwrap_or_else(|| {
                    errs.push(format!("{key}.{what}: required for kind \"{}\"", e.kind));
                    0.0
                })
            };
            let effect = match e.kind.as_str() {
                "voltage" => Effect::Voltage {
                    factor: need(e.factor, "factor", &mut errs),
                    phases: e.phases.clone().unwrap_or_else(|| vec![1, 2, 3]),
                },
                "thd_voltage" => Effect::ThdVoltage(need(e.value, "value", &mut errs)),
                "thd_current" => Effect::ThdCurrent(need(e.value, "value", &mut errs)),
                "load" => Effect::Load(need(e.value, "value", &mut errs)),
                "unbalance" => Effect::Unbalance(need(e.value, "value", &mut errs)),
                "value" => Effect::Value {
                    field: e.field.clone().unwrap_or_else(|| {
                        errs.push(format!("{key}.field: required for kind \"value\""));
                        String::new()
                    }),
                    value: need(e.value, "value", &mut errs),
                },
                "silent" => Effect::Silent,
                "exception" => Effect::Exception(e.code.unwrap_or(4)),
                "strict_addresses" => Effect::StrictAddresses,
                other => {
                    errs.push(format!("{key}.kind: unknown kind \"{other}\""));
                    continue;
                }
            };
            let from = dur(&e.at, &format!("{key}.at"), &mut errs);
            let until = e
                .duration
                .as_deref()
                .map(|d| from + dur(d, &format!("{key}.duration"), &mut errs));
            events.push(Event {
                meter: e.meter.clone(),
                from,
                until,
                effect,
            });
        }
        if errs.is_empty() {
            Ok(Scenario { repeat, events })
        } else {
            Err(errs)
        }
    }

    /// Effects active for `meter` at `elapsed` since the simulator started.
    pub(crate) fn active<'a>(
        &'a self,
        meter: &'a str,
        elapsed: Duration,
    ) -> impl Iterator<Item = &'a Effect> + 'a {
        let t = match self.repeat {
            Some(r) if !r.is_zero() => {
                Duration::from_nanos((elapsed.as_nanos() % r.as_nanos()) as u64)
            }
            _ => elapsed,
        };
        self.events
            .iter()
            .filter(move |e| {
                (e.meter == "*" || e.meter == meter) && t >= e.from && e.until.is_none_or(|u| t < u)
            })
            .map(|e| &e.effect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_apply_in_their_window() {
        let s = Scenario::parse(
            r#"
            [[event]]
            meter = "M1"
            at = "1m"
            duration = "2m"
            kind = "voltage"
            factor = 1.09
            [[event]]
            meter = "*"
            at = "0"
            kind = "thd_voltage"
            value = 6.0
        "#,
        )
        .unwrap();
        let at = |m: &str, secs: u64| {
            s.active(m, Duration::from_secs(secs))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(at("M1", 30), vec![Effect::ThdVoltage(6.0)]);
        assert_eq!(at("M1", 60).len(), 2);
        assert_eq!(at("M1", 179).len(), 2);
        assert_eq!(at("M1", 180), vec![Effect::ThdVoltage(6.0)]);
        assert_eq!(at("M2", 90), vec![Effect::ThdVoltage(6.0)]);
    }

    #[test]
    fn repeat_loops_the_script() {
        let s = Scenario::parse(
            "repeat = \"10m\"\n[[event]]\nmeter = \"M\"\nat = \"1m\"\nduration = \"1m\"\nkind = \"silent\"\n",
        )
        .unwrap();
        assert_eq!(s.active("M", Duration::from_secs(11 * 60 + 30)).count(), 1);
        assert_eq!(s.active("M", Duration::from_secs(13 * 60)).count(), 0);
    }

    #[test]
    fn errors_name_the_event() {
        let e = Scenario::parse("[[event]]\nmeter = \"M\"\nat = \"soon\"\nkind = \"voltage\"\n")
            .unwrap_err();
        let all = e.join("\n");
        assert!(all.contains("event[0].factor"), "{all}");
        assert!(all.contains("event[0].at"), "{all}");
    }
}
