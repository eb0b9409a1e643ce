//! Tests of `profile`.

use super::*;

const MINI: &str = r#"
    name = "mini"
    max_registers = 10
    [defaults]
    function = 3
    type = "f32"
    [[field]]
    name = "voltage_l1_n"
    address = 0
    unit = "kV"
    [[field]]
    name = "active_power_total"
    address = 2
    unit = "kW"
    type = "i32"
    word_order = "CDAB"
    scale = 0.1
    [[harmonics]]
    name = "harmonic_voltage_l1_n"
    base = 100
    stride = 2
    orders = [2, 3]
    value = "absolute"
    [[derived]]
    name = "energy_active_import_total"
    op = "sum"
    inputs = ["energy_active_import_t1", "energy_active_import_t2"]
    [[field]]
    name = "energy_active_import_t1"
    address = 10
    unit = "Wh"
    type = "f64"
    [[field]]
    name = "energy_active_import_t2"
    address = 14
    unit = "Wh"
    type = "f64"
"#;

#[test]
fn parses_fields_harmonics_and_derived() {
    let p = parse(MINI, "test").unwrap();
    let v = p.register("voltage_l1_n").unwrap();
    assert_eq!(
        (v.function, v.address, v.dtype),
        (FunctionCode::Holding, 0, DataType::F32)
    );
    assert_eq!(v.unit.factor, 1000.0);
    let pw = p.register("active_power_total").unwrap();
    assert_eq!(
        (pw.order, pw.scale, pw.dtype),
        (WordOrder::CDAB, 0.1, DataType::I32)
    );
    // Fundamental at base, order n at base + stride·(n−1).
    assert_eq!(p.register("harmonic_voltage_l1_n_h1").unwrap().address, 100);
    assert_eq!(
        p.register("harmonic_voltage_l1_n_h3_abs").unwrap().address,
        104
    );
    let names: Vec<_> = p.output_names().collect();
    assert!(names.contains(&"harmonic_voltage_l1_n_h3"));
    assert!(!names.contains(&"harmonic_voltage_l1_n_h1"));
    let sum = p.derived.iter().find(|d| d.op == DerivedOp::Sum).unwrap();
    assert_eq!(sum.unit, "kWh");
    assert_eq!(sum.inputs.len(), 2);
}

#[test]
fn reports_every_problem_with_its_key() {
    let bad = r#"
        name = "Bad Name"
        max_registers = 200
        [[field]]
        name = "voltage_l1_n"
        address = 0
        unit = "kW"
        type = "f32"
        function = 3
        [[field]]
        name = "current_l1"
        address = 1
        unit = "A"
        type = "f32"
        function = 5
        [[field]]
        name = "voltage_l1_n"
        address = 4
        unit = "V"
        type = "f32"
        function = 3
        [[derived]]
        name = "voltage_unbalance"
        op = "ratio_percent"
        inputs = ["voltage_neg_seqq", "voltage_l1_n"]
    "#;
    let e = parse(bad, "bad.toml").unwrap_err();
    let all = e.problems.join("\n");
    for needle in [
        "name: \"Bad Name\"",
        "max_registers: 200",
        "field[0].unit: \"kW\" converts to \"W\", but voltage_l1_n is measured in \"V\"",
        "field[1].function: function code 5",
        "field[2].name: \"voltage_l1_n\" is also defined at field[0]",
        "derived[0].inputs[0]: \"voltage_neg_seqq\" is not a field",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn overlapping_registers_are_rejected() {
    let t = r#"
        name = "o"
        max_registers = 10
        [defaults]
        function = 4
        type = "f32"
        [[field]]
        name = "voltage_l1_n"
        address = 0
        unit = "V"
        [[field]]
        name = "voltage_l2_n"
        address = 1
        unit = "V"
    "#;
    let e = parse(t, "o").unwrap_err();
    assert!(e.problems[0].contains("overlaps"), "{e}");
}

#[test]
fn builtin_profiles_parse() {
    let r = Registry::builtin();
    for name in [
        "eastron-sdm630",
        "janitza-umg96rm",
        "siemens-pac3200",
        "schneider-pm5100",
        "carlo-gavazzi-em24",
    ] {
        let p = r.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(p.name, name);
        assert!(p.output_names().count() > 5, "{name}");
    }
}

#[test]
fn user_directory_adds_and_replaces_profiles() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mini.toml"), MINI).unwrap();
    let r = Registry::load(Some(dir.path())).unwrap();
    assert!(r.get("mini").is_some());
    assert!(r.get("eastron-sdm630").is_some());
    std::fs::write(dir.path().join("other.toml"), MINI).unwrap();
    let e = Registry::load(Some(dir.path())).unwrap_err();
    assert!(
        e[0].problems[0].contains("differs from the file name"),
        "{e:?}"
    );
}
