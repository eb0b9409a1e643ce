//! Property tests of read planning (`modbus::plan`): arbitrary register
//! maps, written as profile TOML and loaded through `profile::parse` (so
//! the planner sees exactly what a user profile can give it), with any
//! addresses, types, gaps, `max_registers`, `max_gap` and `even_count`,
//! and any subset of wanted registers.
//!
//! `PROPTEST_CASES=20000 cargo test --test prop_plan` for a long run
//! (docs/fuzzing.md).

use pqwatch::modbus::plan::{ReadRequest, plan, plan_with};
use pqwatch::profile::{Profile, parse};
use proptest::prelude::*;
mod prop_support;
use prop_support::cases;

const TYPES: [(&str, u32); 8] = [
    ("u16", 1),
    ("i16", 1),
    ("u32", 2),
    ("i32", 2),
    ("f32", 2),
    ("u64", 4),
    ("i64", 4),
    ("f64", 4),
];

#[derive(Debug, Clone)]
struct Field {
    function: u8,
    ty: usize,
    /// Registers left unused before this field (0 = contiguous).
    gap: u32,
    /// Read at the previous field's address as well (shared words, as two
    /// harmonic series reading one register do).
    same_as_previous: bool,
}

#[derive(Debug, Clone)]
struct Map {
    start: u32,
    fields: Vec<Field>,
    max_registers: u16,
    max_gap: u16,
    even_count: bool,
    /// Order of the fields in the file.
    shuffle: Vec<usize>,
}

fn map() -> impl Strategy<Value = Map> {
    let field = (
        prop_oneof![Just(3u8), Just(4u8)],
        0..TYPES.len(),
        prop_oneof![4 => Just(0u32), 4 => 0u32..12, 1 => 0u32..400],
        prop::bool::weighted(0.05),
    )
        .prop_map(|(function, ty, gap, same_as_previous)| Field {
            function,
            ty,
            gap,
            same_as_previous,
        });
    (
        prop_oneof![0u32..100, 65_300u32..65_536],
        prop::collection::vec(field, 1..40),
        prop_oneof![1u16..=8, 1u16..=125],
        prop_oneof![Just(0u16), 0u16..=16, 0u16..=125],
        prop::bool::ANY,
    )
        .prop_flat_map(|(start, fields, max_registers, max_gap, even_count)| {
            let n = fields.len();
            (
                Just(Map {
                    start,
                    fields,
                    max_registers,
                    max_gap,
                    even_count,
                    shuffle: Vec::new(),
                }),
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            )
        })
        .prop_map(|(mut m, shuffle)| {
            m.shuffle = shuffle;
            m
        })
}

/// The profile TOML for a map. Fields that would start past 65535 are
/// left out (an address is a u16 in the file); one that starts below and
/// ends past it is written, for `parse` to reject.
fn toml(m: &Map) -> String {
    let mut addr = m.start;
    let mut prev: Option<u32> = None;
    let mut entries = Vec::new();
    for (k, f) in m.fields.iter().enumerate() {
        let (ty, words) = TYPES[f.ty];
        let a = match (f.same_as_previous, prev) {
            (true, Some(p)) => p,
            _ => {
                let a = addr + f.gap;
                addr = a + words;
                a
            }
        };
        if a > 65_535 {
            break;
        }
        prev = Some(a);
        let ty = if f.same_as_previous { "u16" } else { ty };
        entries.push(format!(
            "[[field]]\nname = \"x{k}\"\nfunction = {}\naddress = {a}\ntype = \"{ty}\"\nunit = \"\"\n",
            f.function
        ));
    }
    let mut t = format!(
        "name = \"p\"\nmax_registers = {}\nmax_gap = {}\neven_count = {}\n",
        m.max_registers, m.max_gap, m.even_count
    );
    for &i in &m.shuffle {
        if let Some(e) = entries.get(i) {
            t += e;
        }
    }
    t
}

/// Every invariant a plan must keep, or a description of the first broken.
fn check(p: &Profile, wanted: &[usize], reqs: &[ReadRequest], max_gap: u16) -> Result<(), String> {
    let limit = u32::from(p.max_registers);
    let mut served = vec![0usize; p.registers.len()];
    for (k, r) in reqs.iter().enumerate() {
        if r.count == 0 {
            return Err(format!("request {k} reads nothing: {r:?}"));
        }
        if u32::from(r.count) > limit {
            return Err(format!(
                "request {k} reads {} > max_registers {limit}: {r:?}",
                r.count
            ));
        }
        if p.even_count && r.count % 2 == 1 {
            return Err(format!(
                "request {k} has an odd count on an even-count device: {r:?}"
            ));
        }
        if r.end() > 65_536 {
            return Err(format!("request {k} runs past register 65535: {r:?}"));
        }
        if r.items.is_empty() {
            return Err(format!("request {k} serves no register: {r:?}"));
        }
        for &i in &r.items {
            let reg = &p.registers[i];
            if reg.function != r.function {
                return Err(format!("request {k} mixes function codes: {r:?}"));
            }
            if reg.address < r.start || reg.end() > r.end() {
                return Err(format!(
                    "request {k} {}..{} does not cover {} at {}..{}",
                    r.start,
                    r.end(),
                    reg.name,
                    reg.address,
                    reg.end()
                ));
            }
            if !wanted.contains(&i) {
                return Err(format!("request {k} serves unwanted {}", reg.name));
            }
            served[i] += 1;
        }
        // No unused stretch longer than max_gap (plus the one padding
        // register of an even count) is read.
        let mut used: Vec<(u32, u32)> = r
            .items
            .iter()
            .map(|&i| (u32::from(p.registers[i].address), p.registers[i].end()))
            .collect();
        used.sort();
        let mut covered = u32::from(r.start);
        let slack = if p.even_count { 1 } else { 0 };
        for (a, e) in used {
            if a > covered && a - covered > u32::from(max_gap) + slack {
                return Err(format!(
                    "request {k} bridges {} unused registers: {r:?}",
                    a - covered
                ));
            }
            covered = covered.max(e);
        }
        if r.end() - covered > slack {
            return Err(format!("request {k} reads past its last register: {r:?}"));
        }
        if k > 0 {
            let q = &reqs[k - 1];
            if (q.function, q.start) > (r.function, r.start) {
                return Err(format!("requests out of order: {q:?} before {r:?}"));
            }
        }
    }
    for &i in wanted {
        if served[i] != 1 {
            return Err(format!(
                "{} is served by {} requests, not exactly one",
                p.registers[i].name, served[i]
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(1000, "proptest-regressions/prop_plan.txt"))]

    /// A profile that loads is planned within its limits: every wanted
    /// register in exactly one read, no read over `max_registers` or past
    /// register 65535, gaps within `max_gap`.
    #[test]
    fn plans_keep_every_limit(
        (m, pick) in map().prop_flat_map(|m| {
            let n = m.fields.len();
            (Just(m), prop::collection::vec(0..n, 0..60))
        })
    ) {
        let text = toml(&m);
        let p = match parse(&text, "proptest") {
            Ok(p) => p,
            Err(e) => {
                // Only the rejections a user profile can earn.
                for problem in &e.problems {
                    prop_assert!(
                        problem.contains("runs past 65535")
                            || problem.contains("overlaps")
                            || problem.contains("max_registers")
                            || problem.contains("needs at least one field"),
                        "unexpected rejection: {problem}\n{text}"
                    );
                }
                return Ok(());
            }
        };
        let n = p.registers.len();
        let pick: Vec<usize> = pick.into_iter().filter(|&i| i < n).collect();
        let wanted: Vec<usize> = if pick.is_empty() { (0..n).collect() } else { pick };
        let reqs = plan(&p, &wanted);
        if let Err(e) = check(&p, &wanted, &reqs, p.max_gap) {
            return Err(TestCaseError::fail(format!("{e}\nprofile:\n{text}wanted {wanted:?}\nplan {reqs:?}")));
        }
        let strict = plan_with(&p, &wanted, 0);
        if let Err(e) = check(&p, &wanted, &strict, 0) {
            return Err(TestCaseError::fail(format!("gapless: {e}\nprofile:\n{text}wanted {wanted:?}\nplan {strict:?}")));
        }
    }
}

/// Found by `plans_keep_every_limit`: `max_registers = 1` with an f32
/// field loaded, and the planner then asked for 2 registers in one read,
/// which such a device refuses on every poll. The profile is now rejected
/// at load, naming `max_registers`.
#[test]
fn a_value_wider_than_max_registers_is_rejected_at_load() {
    let t = "name = \"p\"\nmax_registers = 1\n[[field]]\nname = \"x0\"\nfunction = 3\naddress = 0\ntype = \"f32\"\nunit = \"\"\n";
    let e = parse(t, "t").expect_err("an f32 cannot be read 1 register at a time");
    assert!(
        e.problems.iter().any(|p| p.starts_with("max_registers")),
        "{e:?}"
    );
}

/// Found by `plans_keep_every_limit`: `even_count = true` with
/// `max_registers = 1` loaded, and every read was padded to 2 registers.
#[test]
fn an_even_count_device_needs_a_limit_of_at_least_two() {
    let t = "name = \"p\"\nmax_registers = 1\neven_count = true\n[[field]]\nname = \"x0\"\nfunction = 4\naddress = 7\ntype = \"u16\"\nunit = \"\"\n";
    let e = parse(t, "t").expect_err("an even count of at most 1 register");
    assert!(
        e.problems.iter().any(|p| p.starts_with("max_registers")),
        "{e:?}"
    );
    // An odd limit acts as the even one below it: f64 with max 5 → 4 is fine.
    let t = "name = \"p\"\nmax_registers = 5\neven_count = true\n[[field]]\nname = \"x0\"\nfunction = 4\naddress = 7\ntype = \"f64\"\nunit = \"\"\n";
    let p = parse(t, "t").unwrap();
    assert_eq!(plan(&p, &[0])[0].count, 4);
}

/// The top of the address space: a u16 at 65535 on an even-count device
/// grows downwards, and the read still serves it.
#[test]
fn top_register_on_an_even_count_device() {
    let t = "name = \"p\"\nmax_registers = 2\neven_count = true\n[[field]]\nname = \"x0\"\nfunction = 3\naddress = 65535\ntype = \"u16\"\nunit = \"\"\n";
    let p = parse(t, "t").unwrap();
    let reqs = plan(&p, &[0]);
    assert_eq!((reqs[0].start, reqs[0].count), (65_534, 2));
    check(&p, &[0], &reqs, p.max_gap).unwrap();
}
