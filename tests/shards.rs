//! Scale-out: two instances with `[cluster] shards = 2` and the same config
//! poll every meter exactly once between them (each meter's readings come
//! from one instance only), and together write every meter to the same
//! VictoriaMetrics.

mod common;
mod e2e;

use common::{TestConfig, VictoriaMetrics, free_port};
use e2e::{Daemon, Sim};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

fn config(vm: &str, ports: &[u16], shard: u32) -> String {
    let mut t = TestConfig::fast(vm)
        .set("cluster", "shard", shard)
        .set("cluster", "shards", 2u32)
        .to_string();
    for (g, port) in ports.iter().enumerate() {
        for c in 0..6 {
            let _ = write!(t, "\n[[customers]]\nid = \"C{g}{c}\"\n");
            for m in 0..2 {
                let _ = write!(
                    t,
                    "\n[[meters]]\nid = \"C{g}{c}-M{m}\"\ncustomer = \"C{g}{c}\"\naddress = \"127.0.0.1:{port}\"\nunit = {}\nprofile = \"eastron-sdm630\"\nnominal_voltage = 400\n",
                    c * 2 + m + 1
                );
            }
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_poll_every_meter_exactly_once() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let ports = [free_port(), free_port()];
    let c0 = e2e::config(&config(&vm.url(), &ports, 0));
    let c1 = e2e::config(&config(&vm.url(), &ports, 1));
    let all: BTreeSet<String> = c0.meters.iter().map(|m| m.id.clone()).collect();
    assert_eq!(all.len(), 24);
    let sim = Sim::start(&c0, "").await;
    let d0 = Daemon::start(c0);
    let d1 = Daemon::start(c1);
    let polled = |d: &Daemon| -> BTreeSet<String> {
        d.handles.latest.lock().unwrap().keys().cloned().collect()
    };
    let together = e2e::wait_until(Duration::from_secs(20), || {
        let (a, b) = (polled(&d0), polled(&d1));
        a.union(&b).count() == all.len()
    })
    .await;
    // Keep polling a while: a meter polled by both would show up in both.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a, b) = (polled(&d0), polled(&d1));
    let stored = vm
        .wait_for_series(
            r#"meter_voltage_l1_n"#,
            |s| {
                s.iter()
                    .filter_map(|s| s.label("meter"))
                    .collect::<BTreeSet<_>>()
                    .len()
                    == 24
            },
            Duration::from_secs(20),
        )
        .await;
    d0.stop().await;
    d1.stop().await;
    sim.stop().await;
    assert!(together, "shard 0 polled {a:?}, shard 1 {b:?}");
    assert!(a.is_disjoint(&b), "polled twice: {:?}", a.intersection(&b));
    assert_eq!(a.union(&b).cloned().collect::<BTreeSet<_>>(), all);
    assert!(!a.is_empty() && !b.is_empty(), "both shards work");
    // A customer's meters stay together.
    for set in [&a, &b] {
        for id in set {
            let sibling = if id.ends_with("M0") {
                id.replace("M0", "M1")
            } else {
                id.replace("M1", "M0")
            };
            assert!(set.contains(&sibling), "{id} without {sibling}");
        }
    }
    assert!(stored.ok, "{stored}");
    Ok(())
}
