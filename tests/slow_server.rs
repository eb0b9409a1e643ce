//! A server that takes 2.5 s per write, with `flush_interval = 1s`: one
//! batch per request could never keep up (the backlog grew without end,
//! with zero errors). Replay merges the oldest batches into one request,
//! so the backlog stays bounded and drains at the server's pace, and every
//! poll reaches VictoriaMetrics exactly once. The slow server is a Python
//! `http.server` stub that forwards each write to VictoriaMetrics after
//! the delay.

mod common;
mod e2e;

use common::{TestConfig, VictoriaMetrics};
use e2e::{Daemon, Sim};
use pqwatch::metrics::Metrics;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const STUB: &str = r#"
import http.server, sys, time, urllib.request
target, delay = sys.argv[1], float(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(delay)
        req = urllib.request.Request(target + self.path, data=body, method="POST")
        for k in ("Content-Encoding", "Content-Type"):
            if self.headers.get(k):
                req.add_header(k, self.headers[k])
        try:
            code = urllib.request.urlopen(req, timeout=10).status
        except urllib.error.HTTPError as e:
            code = e.code
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("READY", s.server_address[1], flush=True)
s.serve_forever()
"#;

struct Stub(Child, u16);

impl Stub {
    fn start(target: &str, delay_s: f64) -> Stub {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", STUB, target, &delay_s.to_string()])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("stub did not start: {line:?}"));
        Stub(child, port)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_taking_2_5_s_per_write_is_drained_at_its_pace() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let stub = Stub::start(&vm.url(), 2.5);
    let port = common::free_port();
    let cfg = e2e::config(
        &TestConfig::fast(&format!("http://127.0.0.1:{}", stub.1))
            .influx("flush_interval", "1s")
            .push(&format!(
                r#"
[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{port}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
"#
            ))
            .to_string(),
    );
    let sim = Sim::start(&cfg, "").await;
    let d = Daemon::start_with_grace(cfg, Duration::from_secs(15));
    // 30 s: 30 batches sealed; one batch per 2.5 s request would leave 18.
    let mut depth = Vec::new();
    for s in 1..=30 {
        d.run_until(s * 1000).await;
        depth.push(Metrics::get(&d.metrics().sink.outbox_batches));
    }
    let last = &depth[20..];
    eprintln!("outbox batches per second: {depth:?}");
    assert!(
        last.iter().all(|b| *b <= 8),
        "the backlog stays bounded: {depth:?}"
    );
    let stopped = d.stop().await;
    sim.stop().await;
    assert_eq!(
        stopped.get(|m| &m.sink.outbox_batches),
        0,
        "drained at shutdown"
    );
    assert_eq!(stopped.get(|m| &m.sink.batches_failed), 0);
    // Every poll, exactly once, in VictoriaMetrics.
    let s = vm.export(r#"meter_voltage_l1_n{meter="M1"}"#).await?;
    assert_eq!(s.len(), 1);
    let from = stopped.started_ms + 1_000;
    let to = stopped.stopped_ms - 1_000;
    e2e::check_aligned(&s[0], 500, &e2e::instants(from, to, 500)).map_err(anyhow::Error::msg)?;
    Ok(())
}
