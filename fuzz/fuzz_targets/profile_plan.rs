//! Any text as a device profile; a profile that loads is planned within
//! its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwatch::modbus::plan::{plan, plan_with};

fuzz_target!(|text: &str| {
    let Ok(p) = pqwatch::profile::parse(text, "fuzz") else {
        return;
    };
    let all: Vec<usize> = (0..p.registers.len()).collect();
    for reqs in [plan(&p, &all), plan_with(&p, &all, 0)] {
        let mut served = vec![0u32; p.registers.len()];
        for r in &reqs {
            assert!(r.count >= 1 && r.count <= p.max_registers, "{r:?}");
            assert!(!p.even_count || r.count % 2 == 0, "{r:?}");
            assert!(r.end() <= 65_536, "{r:?}");
            for &i in &r.items {
                let reg = &p.registers[i];
                assert!(reg.function == r.function);
                assert!(reg.address >= r.start && reg.end() <= r.end(), "{r:?}");
                served[i] += 1;
            }
        }
        assert!(served.iter().all(|&n| n == 1), "{served:?}");
    }
});
