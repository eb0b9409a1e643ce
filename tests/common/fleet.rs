//! The fleet several end-to-end tests share, as config and scenario text:
//! a 10 kV meter (M-HV), 0.38 kV meters (M-LV), and a customer whose
//! transformer is suspended (SUSP with M-SUSP), with the scenario snippets
//! that make them deviate. tests/rules_e2e.rs, tests/grafana_dashboard.rs
//! and tests/http_endpoint.rs use it; what each test asserts about these
//! meters follows from the numbers documented here.
//!
//! Text only: a test appends it with `TestConfig::push` (config) or joins
//! it into its simulator scenario.

/// A 10 kV meter on PT/CT secondaries: a Janitza UMG 96RM behind PT
/// 10000/100 and CT 300/5 (GB/T 12325 ±7 %: limit 10 700 V).
pub(crate) fn hv_meter(id: &str, customer: &str, gw: u16, unit: u8) -> String {
    format!(
        r#"
[[meters]]
id = "{id}"
customer = "{customer}"
address = "127.0.0.1:{gw}"
unit = {unit}
profile = "janitza-umg96rm"
nominal_voltage = 10000
pt_ratio = "10000/100"
ct_ratio = "300/5"
"#
    )
}

/// A 0.38 kV meter: a Janitza UMG 96RM on CT 1000/5 (GB/T 14549: THDu
/// 5 %, odd orders 4 %).
pub(crate) fn lv_meter(id: &str, customer: &str, gw: u16, unit: u8) -> String {
    format!(
        r#"
[[meters]]
id = "{id}"
customer = "{customer}"
address = "127.0.0.1:{gw}"
unit = {unit}
profile = "janitza-umg96rm"
nominal_voltage = 380
ct_ratio = "1000/5"
"#
    )
}

/// Customer SUSP: 2000 kVA contracted, 1500 kVA of it suspended from 2020
/// to 2099 (always, for a test): 500 kVA allowed.
pub(crate) const SUSP_CUSTOMER: &str = r#"
[[customers]]
id = "SUSP"
contracted_kva = 2000
suspensions = [{ from = "2020-01-01", to = "2099-01-01", kva = 1500 }]
"#;

/// SUSP's meter, M-SUSP: a 10 kV meter ([`hv_meter`]).
pub(crate) fn susp_meter(gw: u16, unit: u8) -> String {
    hv_meter("M-SUSP", "SUSP", gw, unit)
}

/// M-LV's THDu at 6 % from 1 s to 16 s: THDu and 5th-harmonic events
/// that open and close.
pub(crate) const LV_THD: &str = r#"
[[event]]
meter = "M-LV"
at = "1s"
duration = "15s"
kind = "thd_voltage"
value = 6.0
"#;

/// M-SUSP's load: 200 kW from the start, 900 kW (≈ 968 kVA at PF ≈ 0.93,
/// against 500 kVA allowed) from 4 s to 12 s: a suspension_load event that
/// opens and closes.
pub(crate) const SUSP_LOAD: &str = r#"
[[event]]
meter = "M-SUSP"
at = "0"
kind = "load"
value = 200.0

[[event]]
meter = "M-SUSP"
at = "4s"
duration = "8s"
kind = "load"
value = 900.0
"#;
