//! Tests of `limits`.

use super::*;

#[test]
fn bands_of_one_sign_only_at_35_kv_and_the_sum_checked() {
    let p = Presets::builtin();
    let band = |kv: f64, up: f64, lo: f64| {
        p.resolve(
            kv * 1000.0,
            3,
            &Overrides {
                voltage_upper: Some(up),
                voltage_lower: Some(lo),
                ..Default::default()
            },
        )
    };
    // 35 kV: +7 / -3 (sum 10) and +10 / +3 (one sign, larger 10) pass.
    assert!(band(35.0, 7.0, -3.0).is_ok());
    let b = band(110.0, 10.0, 3.0).unwrap().voltage.unwrap();
    let (lo, up) = b.volts(110_000.0);
    assert!((lo - 113_300.0).abs() < 1e-6 && (up - 121_000.0).abs() < 1e-6);
    // The sum above 10 %, or one sign beyond 10 %.
    let e = band(35.0, 8.0, -3.0).unwrap_err();
    assert!(e.contains("sum to 11 %"), "{e}");
    assert!(band(35.0, 11.0, 2.0).is_err());
    // Below 35 kV a band must straddle the nominal voltage.
    let e = band(10.0, 7.0, 1.0).unwrap_err();
    assert!(
        e.contains("one sign are allowed at 35 kV and above only"),
        "{e}"
    );
    assert!(band(10.0, -1.0, -2.0).is_err());
}

#[test]
fn ansi_range_a_above_600_v_is_plus_five_minus_two_and_a_half() {
    let b = r("ieee519", 13_200.0, 3).voltage.unwrap();
    assert_eq!((b.upper_pct, b.lower_pct), (5.0, -2.5));
    let (lo, up) = b.volts(13_200.0);
    assert!((lo - 12_870.0).abs() < 1e-6 && (up - 13_860.0).abs() < 1e-6);
    let b = r("ieee519", 480.0, 3).voltage.unwrap();
    assert_eq!((b.upper_pct, b.lower_pct), (5.0, -5.0));
}

#[test]
fn every_note_has_chinese_text_and_sources_read_in_chinese() {
    let p = Presets::builtin();
    for (name, preset) in &p.presets {
        for b in &preset.voltage {
            assert!(b.note_zh.is_some(), "{name} voltage row {:?}", b.note);
        }
        for h in &preset.harmonics {
            assert!(h.note_zh.is_some(), "{name} harmonics row {:?}", h.note);
        }
    }
    let zh = source_zh("GB/T 12325-2008 (20 kV and below, three-phase: ±7 %)");
    assert_eq!(zh, "GB/T 12325-2008 (20 kV 及以下三相：±7 %)");
    assert_eq!(
        source_zh("contracted maximum demand 300 kW × 1.05 = 315 kW"),
        "合同最大需量 300 kW × 1.05 = 315 kW"
    );
    assert_eq!(
        source_zh("suspension of 1250 kVA of 2000 kVA contracted: allowed 750 kVA"),
        "暂停 1250 kVA，合同容量 2000 kVA：允许 750 kVA"
    );
    assert!(!source_zh("configured THDi limit").is_ascii());
}

#[test]
fn computed_limit_notes_read_in_chinese() {
    // The notes built for one customer, as the config builds them.
    let p = Presets::builtin();
    let cl = p.current_limits("ieee519", 35.0).unwrap();
    let hc = cl.order_amps(300.0, false);
    let t2 = p
        .harmonic_current_limits("gb", 380.0, 10.0, Some((0.5, 5.0)))
        .unwrap();
    let t2_alone = p.harmonic_current_limits("gb", 380.0, 10.0, None).unwrap();
    assert_eq!(
        source_zh(&format!("IEEE 519-2014/2022 ({})", cl.note)),
        "IEEE 519-2014/2022 (短路比 Isc/IL 35 属于 20–50：TDD 限值 8 %)"
    );
    assert_eq!(
        source_zh(&hc.note),
        "短路比 Isc/IL 35 属于 20–50：TDD 限值 8 %；各次谐波限值按 I_L 的百分数（I_L = 300 A），偶次按 IEEE 519-2022"
    );
    assert_eq!(
        source_zh(&format!("GB/T 14549-1993 ({})", t2.note)),
        "GB/T 14549-1993 (0.38 kV 表 2（基准短路容量 10 MVA）按最小短路容量 10 MVA 换算，分摊比 Si/St = 0.5/5 MVA)"
    );
    assert_eq!(
        source_zh(&t2_alone.note),
        "0.38 kV 表 2（基准短路容量 10 MVA）按最小短路容量 10 MVA 换算（未配置供电设备容量，不分摊）"
    );
    // No English word is left in any of them.
    for note in [&cl.note, &hc.note, &t2.note, &t2_alone.note] {
        let zh = source_zh(note);
        for word in [
            "Table", "scaled", "shared", "orders", "even", " in ", "supply",
        ] {
            assert!(!zh.contains(word), "{word:?} in {zh}");
        }
    }
}

fn r(preset: &str, un: f64, phases: u8) -> Limits {
    Presets::builtin()
        .resolve(
            un,
            phases,
            &Overrides {
                preset: Some(preset.into()),
                ..Default::default()
            },
        )
        .unwrap()
}

#[test]
fn gb_bands_by_voltage_class() {
    // Values from GB/T 12325-2008 as summarised in power-quality-limits.md.
    let single = r("gb", 220.0, 1).voltage.unwrap();
    assert_eq!((single.upper_pct, single.lower_pct), (7.0, -10.0));
    let lv = r("gb", 380.0, 3).voltage.unwrap();
    assert_eq!((lv.upper_pct, lv.lower_pct), (7.0, -7.0));
    let mv = r("gb", 10_000.0, 3).voltage.unwrap();
    assert_eq!((mv.upper_pct, mv.lower_pct), (7.0, -7.0));
    let hv = r("gb", 35_000.0, 3).voltage.unwrap();
    assert_eq!((hv.upper_pct, hv.lower_pct), (7.0, -3.0));
    assert_eq!(r("gb", 380.0, 3).voltage_window, Span::Short);
}

#[test]
fn gb_harmonics_by_voltage_class() {
    // GB/T 14549-1993 Table 1.
    for (un, thd, odd, even) in [
        (380.0, 5.0, 4.0, 2.0),
        (10_000.0, 4.0, 3.2, 1.6),
        (35_000.0, 3.0, 2.4, 1.2),
        (110_000.0, 2.0, 1.6, 0.8),
    ] {
        let h = r("gb", un, 3).harmonics.unwrap();
        assert_eq!(
            (h.thd, h.orders[&5], h.orders[&4]),
            (thd, odd, even),
            "{un}"
        );
    }
}

#[test]
fn gb14549_table_2_scaled_and_shared_by_hand() {
    let p = Presets::builtin();
    // 0.38 kV at the 10 MVA reference: Table 2 as in our reference.
    let t = p.harmonic_current_limits("gb", 380.0, 10.0, None).unwrap();
    for (n, a) in [
        (2, 78.0),
        (3, 62.0),
        (5, 62.0),
        (7, 44.0),
        (11, 28.0),
        (13, 24.0),
        (25, 12.0),
    ] {
        assert_eq!(t.amps[&n], a, "h{n}");
    }
    // 10 kV, Sk 150 MVA (reference 100): × 1.5; a 2 MVA customer of a
    // 20 MVA supply: h5 = 20 × 1.5 × 0.1^(1/1.2) = 4.4 A (by hand:
    // 0.1^(0.8333) = 0.14678).
    let t = p
        .harmonic_current_limits("gb", 10_000.0, 150.0, Some((2.0, 20.0)))
        .unwrap();
    assert!(
        (t.amps[&5] - 20.0 * 1.5 * 0.146_78).abs() < 1e-4,
        "{}",
        t.amps[&5]
    );
    assert!((t.amps[&2] - 26.0 * 1.5 * 0.1f64.sqrt()).abs() < 1e-9);
    assert!(t.note.contains("Si/St = 2/20"), "{}", t.note);
    assert!(
        p.harmonic_current_limits("ieee519", 380.0, 10.0, None)
            .is_none()
    );
}

#[test]
fn ieee519_order_limits_in_amperes_with_both_even_rules() {
    let c = Presets::builtin().current_limits("ieee519", 35.0).unwrap();
    // Isc/IL 20–50: 7.0, 3.5, 2.5, 1.0, 0.5 % of I_L = 200 A.
    let t = c.order_amps(200.0, false);
    for (h, a) in [
        (3, 14.0),
        (5, 14.0),
        (11, 7.0),
        (13, 7.0),
        (17, 5.0),
        (25, 2.0),
        (35, 1.0),
        (49, 1.0),
    ] {
        assert!((t.amps[&h] - a).abs() < 1e-9, "h{h}: {}", t.amps[&h]);
    }
    // 2022: h ≤ 6 at 50 %, above at 100 %; 2014: every even at 25 %.
    assert!((t.amps[&2] - 7.0).abs() < 1e-9 && (t.amps[&8] - 14.0).abs() < 1e-9);
    let t14 = c.order_amps(200.0, true);
    assert!((t14.amps[&2] - 3.5).abs() < 1e-9 && (t14.amps[&8] - 3.5).abs() < 1e-9);
    assert!((t14.amps[&12] - 1.75).abs() < 1e-9);
    assert!(t14.note.contains("IEEE 519-2014"), "{}", t14.note);
}

#[test]
fn ieee519_current_rows_by_short_circuit_ratio() {
    let p = Presets::builtin();
    // IEEE 519-2014 Table 2, by Isc/IL.
    for (ratio, tdd, h3) in [
        (10.0, 5.0, 4.0),
        (20.0, 8.0, 7.0),
        (35.0, 8.0, 7.0),
        (75.0, 12.0, 10.0),
        (500.0, 15.0, 12.0),
        (2000.0, 20.0, 15.0),
    ] {
        let c = p.current_limits("ieee519", ratio).unwrap();
        assert_eq!((c.tdd, c.odd[0]), (tdd, h3), "{ratio}");
    }
    assert_eq!(
        p.current_limits("ieee519", 35.0).unwrap().note,
        "Isc/IL 35 in 20–50: TDD 8 %"
    );
    assert!(p.current_limits("gb", 35.0).is_none());
}

#[test]
fn en50160_weekly_ranges_for_lv_and_mv() {
    let lv = r("en50160", 400.0, 3).voltage.unwrap().weekly.unwrap();
    assert_eq!(
        (lv.range2_lower_pct, lv.range2_upper_pct, lv.share),
        (-15.0, 10.0, 95.0)
    );
    let mv = r("en50160", 20_000.0, 3).voltage.unwrap().weekly.unwrap();
    assert_eq!(
        (mv.range2_lower_pct, mv.range2_upper_pct, mv.share),
        (-15.0, 15.0, 99.0)
    );
    assert!(r("gb", 400.0, 3).voltage.unwrap().weekly.is_none());
}

#[test]
fn en50160_and_ieee519() {
    let h = r("en50160", 400.0, 3).harmonics.unwrap();
    assert_eq!(
        (
            h.thd,
            h.orders[&5],
            h.orders[&3],
            h.orders[&9],
            h.orders[&6]
        ),
        (8.0, 6.0, 5.0, 1.5, 0.5)
    );
    assert_eq!(r("en50160", 400.0, 3).voltage_window, Span::Long);
    let i = r("ieee519", 13_800.0, 3).harmonics.unwrap();
    assert_eq!((i.thd, i.orders[&5]), (5.0, 3.0));
    let i = r("ieee519", 400.0, 3).harmonics.unwrap();
    assert_eq!((i.thd, i.orders[&7]), (8.0, 5.0));
}

#[test]
fn overrides_win() {
    let p = Presets::builtin();
    let o = Overrides {
        voltage_upper: Some(5.0),
        thd_voltage: Some(3.5),
        thd_current: Some(15.0),
        ..Default::default()
    };
    let l = p.resolve(10_000.0, 3, &o).unwrap();
    assert_eq!(l.preset, "gb", "gb is the default preset");
    let b = l.voltage.unwrap();
    assert_eq!((b.upper_pct, b.lower_pct), (5.0, -7.0));
    assert_eq!(l.harmonics.unwrap().thd, 3.5);
    assert_eq!(l.thd_current, Some(15.0));
    assert_eq!(l.unbalance, 2.0);
    let e = p
        .resolve(
            400.0,
            3,
            &Overrides {
                preset: Some("en5016".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(e.contains("did you mean \"en50160\""), "{e}");
    let merged = Overrides {
        thd_current: Some(8.0),
        ..Default::default()
    }
    .over(&o);
    assert_eq!(
        (merged.thd_current, merged.voltage_upper),
        (Some(8.0), Some(5.0))
    );
}
