//! Read planning: which register reads fetch a meter's fields. Pure.
//!
//! A gateway serialises requests, so every read costs a round trip of
//! 20–100 ms on RS-485: the number of reads per poll sets how many meters a
//! gateway can carry. The planner coalesces the registers a meter needs into
//! the fewest reads per function code, reading and discarding gaps of up to
//! `max_gap` registers, never exceeding the profile's `max_registers`, and
//! keeping counts even where the device demands it (Eastron).
//!
//! It works on register indices of a [`Profile`] and knows nothing of
//! connections or timing.

use crate::profile::{FunctionCode, Profile};

/// One Modbus read request and the registers it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub function: FunctionCode,
    pub start: u16,
    pub count: u16,
    /// Indices into [`Profile::registers`] decoded from this read.
    pub items: Vec<usize>,
}

impl ReadRequest {
    pub fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// Plan reads for `wanted` register indices of `profile` (any order,
/// duplicates allowed). Returns requests sorted by function then address.
pub fn plan(profile: &Profile, wanted: &[usize]) -> Vec<ReadRequest> {
    plan_with(profile, wanted, profile.max_gap)
}

/// As [`plan`], with an explicit gap limit (0 = never read unused registers;
/// used after a device rejects a bridged read).
pub fn plan_with(profile: &Profile, wanted: &[usize], max_gap: u16) -> Vec<ReadRequest> {
    let mut idx: Vec<usize> = wanted.to_vec();
    idx.sort_by_key(|&i| {
        let r = &profile.registers[i];
        (r.function, r.address, i)
    });
    idx.dedup();

    // An odd limit cannot hold an even count that large.
    let max = u32::from(
        if profile.even_count {
            profile.max_registers & !1
        } else {
            profile.max_registers
        }
        .max(1),
    );

    let mut out: Vec<ReadRequest> = Vec::new();
    for i in idx {
        let r = &profile.registers[i];
        let (start, end) = (u32::from(r.address), r.end());
        if let Some(cur) = out.last_mut()
            && cur.function == r.function
        {
            let cur_start = u32::from(cur.start);
            let cur_end = cur.end();
            let new_end = end.max(cur_end);
            // Registers may share words (a harmonic read twice by two
            // series); `start < cur_end` is then an overlap, not a gap.
            let gap = start.saturating_sub(cur_end);
            if gap <= u32::from(max_gap)
                && padded(cur_start, new_end - cur_start, profile.even_count) <= max
            {
                cur.count = (new_end - cur_start) as u16;
                cur.items.push(i);
                continue;
            }
        }
        out.push(ReadRequest {
            function: r.function,
            start: r.address,
            count: (end - start) as u16,
            items: vec![i],
        });
    }
    if profile.even_count {
        for req in &mut out {
            if req.count % 2 == 1 {
                if req.end() < 65536 {
                    req.count += 1;
                } else {
                    // At the top of the address space, grow downwards.
                    req.start -= 1;
                    req.count += 1;
                }
            }
        }
    }
    out
}

fn padded(_start: u32, count: u32, even: bool) -> u32 {
    if even { count + (count & 1) } else { count }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::parse;

    fn profile(
        max_registers: u16,
        max_gap: u16,
        even: bool,
        fields: &[(u8, u16, &str)],
    ) -> Profile {
        let mut t = format!(
            "name = \"t\"\nmax_registers = {max_registers}\nmax_gap = {max_gap}\neven_count = {even}\n"
        );
        for (k, (fc, addr, ty)) in fields.iter().enumerate() {
            t += &format!(
                "[[field]]\nname = \"x{k}\"\nfunction = {fc}\naddress = {addr}\ntype = \"{ty}\"\nunit = \"\"\n"
            );
        }
        parse(&t, "test").unwrap()
    }

    fn all(p: &Profile) -> Vec<usize> {
        (0..p.registers.len()).collect()
    }

    fn shape(reqs: &[ReadRequest]) -> Vec<(u8, u16, u16)> {
        reqs.iter()
            .map(|r| (r.function.code(), r.start, r.count))
            .collect()
    }

    #[test]
    fn contiguous_fields_make_one_read() {
        let p = profile(
            125,
            0,
            false,
            &[(4, 0, "f32"), (4, 2, "f32"), (4, 4, "f32")],
        );
        assert_eq!(shape(&plan(&p, &all(&p))), vec![(4, 0, 6)]);
    }

    #[test]
    fn small_gaps_are_bridged_large_ones_split() {
        let p = profile(
            125,
            4,
            false,
            &[(3, 0, "f32"), (3, 6, "f32"), (3, 20, "u16")],
        );
        // 0..2, gap 4 → bridged to 0..8; gap 12 to 20 → new read.
        assert_eq!(shape(&plan(&p, &all(&p))), vec![(3, 0, 8), (3, 20, 1)]);
        assert_eq!(
            shape(&plan_with(&p, &all(&p), 0)),
            vec![(3, 0, 2), (3, 6, 2), (3, 20, 1)]
        );
    }

    #[test]
    fn function_codes_are_never_mixed() {
        let p = profile(
            125,
            8,
            false,
            &[(3, 0, "f32"), (4, 2, "f32"), (3, 2, "f32")],
        );
        let reqs = plan(&p, &all(&p));
        assert_eq!(shape(&reqs), vec![(3, 0, 4), (4, 2, 2)]);
        assert_eq!(reqs[0].items, vec![0, 2]);
    }

    #[test]
    fn request_size_limit_holds() {
        // 40 consecutive f32 = 80 registers with a 30-register limit → 30, 30, 20.
        let fields: Vec<_> = (0..40).map(|k| (4u8, k * 2, "f32")).collect();
        let p = profile(30, 8, false, &fields);
        let reqs = plan(&p, &all(&p));
        assert_eq!(shape(&reqs), vec![(4, 0, 30), (4, 30, 30), (4, 60, 20)]);
        let served: usize = reqs.iter().map(|r| r.items.len()).sum();
        assert_eq!(served, 40, "every field is served exactly once");
        for r in &reqs {
            for &i in &r.items {
                let reg = &p.registers[i];
                assert!(reg.address >= r.start && reg.end() <= r.end());
            }
        }
    }

    #[test]
    fn a_value_is_never_split_across_reads() {
        // f64 at 28..32 does not fit in the first 30-register read.
        let p = profile(
            30,
            30,
            false,
            &[(3, 0, "f64"), (3, 24, "f32"), (3, 28, "f64")],
        );
        assert_eq!(shape(&plan(&p, &all(&p))), vec![(3, 0, 26), (3, 28, 4)]);
    }

    #[test]
    fn even_counts_when_the_device_demands_them() {
        let p = profile(61, 8, true, &[(4, 0, "f32"), (4, 10, "u16")]);
        // 0..11 is 11 registers → padded to 12.
        assert_eq!(shape(&plan(&p, &all(&p))), vec![(4, 0, 12)]);
        // An odd limit of 61 acts as 60.
        let fields: Vec<_> = (0..31).map(|k| (4u8, k * 2, "f32")).collect();
        let p = profile(61, 8, true, &fields);
        assert_eq!(shape(&plan(&p, &all(&p))), vec![(4, 0, 60), (4, 60, 2)]);
    }

    #[test]
    fn top_of_the_address_space() {
        let p = profile(125, 0, true, &[(3, 65535, "u16")]);
        assert_eq!(shape(&plan(&p, &all(&p))), vec![(3, 65534, 2)]);
    }

    #[test]
    fn only_wanted_registers_are_read() {
        let p = profile(
            125,
            0,
            false,
            &[(4, 0, "f32"), (4, 100, "f32"), (4, 200, "f32")],
        );
        assert_eq!(shape(&plan(&p, &[2, 0])), vec![(4, 0, 2), (4, 200, 2)]);
    }

    #[test]
    fn builtin_profiles_need_few_reads() {
        let reg = crate::profile::Registry::builtin();
        for p in reg.iter() {
            let reqs = plan(p, &all(p));
            for r in &reqs {
                assert!(r.count <= p.max_registers, "{}: {r:?}", p.name);
                if p.even_count {
                    assert_eq!(r.count % 2, 0);
                }
            }
            let fields = p.registers.len();
            assert!(
                reqs.len() * 4 <= fields.max(4),
                "{}: {} reads for {fields} registers",
                p.name,
                reqs.len()
            );
        }
    }
}
