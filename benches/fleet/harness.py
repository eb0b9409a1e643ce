#!/usr/bin/python3
"""pqwatch benchmark harness: the fleet, gateway-bound, Python-peer and
libmodbus-floor parts of `benches/run.sh`. Standard library only (Debian's
/usr/bin/python3); writes benches/results/*.json, which benches/render.py
turns into BENCHMARKS.md sections.

Every process it starts (simulator, pqwatch, VictoriaMetrics, the Python
poller, the C client) is its own process, measured separately:

* CPU: utime + stime from /proc/<pid>/stat (all threads; Linux scales the
  tick-sampled split so that the sum is the scheduler's exact runtime),
  read at the start and the end of the measurement window;
* memory: VmHWM (peak RSS) from /proc/<pid>/status, read just before the
  process is stopped;
* everything else on the machine: /proc/stat busy time minus ours ("other
  CPU"), so a disturbed run shows.

Polls achieved, skipped, failed and the request-latency histogram come from
pqwatch's own /metrics ([http] listen on a free loopback port). Poll start
delays (poll start − scheduled instant) and poll durations come from
/api/meters (`last_poll_ms` of every meter; consecutive meters of one
gateway are polled one after the other, so the gap between their starts is
the first one's poll duration), scraped right after the window so that the
scrapes cost nothing inside it.

All traffic stays on 127.0.0.1. Every child is stopped on exit (atexit and
SIGTERM/SIGINT handlers).
"""

import argparse
import atexit
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))  # benches/fleet
BENCHES = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCHES)
RESULTS = os.environ.get("PQWATCH_BENCH_RESULTS") or os.path.join(BENCHES, "results")
TICK = os.sysconf("SC_CLK_TCK")
PY = "/usr/bin/python3"
VM_BIN = "/usr/bin/victoria-metrics"

PQ = None  # pqwatch release binary, set in main()
FLOOR = None  # modbus_floor binary


def log(*a):
    print("[harness]", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

CHILDREN = []


def spawn(cmd, logfile, **kw):
    f = open(logfile, "ab")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    p._logfile = logfile
    CHILDREN.append(p)
    return p


def stop(p, grace=15.0):
    if p is None:
        return
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in CHILDREN:
        CHILDREN.remove(p)


def stop_all():
    for p in list(CHILDREN):
        try:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        except Exception:
            pass
    CHILDREN.clear()


atexit.register(stop_all)


def _on_signal(sig, _frame):
    stop_all()
    sys.exit(128 + sig)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICK  # utime, stime


def hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    idle = v[3] + v[4]
    return (total - idle) / TICK


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


_next_port = [20000 + (os.getpid() * 37) % 20000]


def free_ports(n):
    """n consecutive free loopback ports (never reused within a harness run)."""
    for _ in range(2000):
        base = _next_port[0]
        _next_port[0] += n + 1
        if _next_port[0] > 60000:
            _next_port[0] = 20000
        if all(port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range")


def wait_port(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait_http(url, proc, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited ({tail(proc._logfile)})")
        try:
            http_get(url, 2)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


QUIET_BUDGET = [0.0]


def wait_quiet(max_wait, threshold):
    """Wait (polling every 30 s) until the 1-minute load
    average is below `threshold`, or until a 10-s sample of /proc/stat shows
    the machine idle (< 0.15 cores busy), which happens first: with nothing
    of ours running, the load average may only be the decay of our previous
    run. All waits of one harness run share one budget (--quiet-wait,
    20 minutes): once it is spent, runs go ahead and the load is recorded
    with their figures. Returns what was seen."""
    t0 = time.time()
    if QUIET_BUDGET[0] <= 0:
        la = loadavg()
        return {"load1": la[0], "busy_cores_10s": None, "waited_s": 0, "budget_left_s": 0}
    while True:
        la = loadavg()
        b0 = machine_busy_s()
        time.sleep(10)
        busy = (machine_busy_s() - b0) / 10
        waited = time.time() - t0
        if la[0] < threshold or busy < 0.15 or waited >= QUIET_BUDGET[0]:
            QUIET_BUDGET[0] -= waited
            return {"load1": la[0], "busy_cores_10s": round(busy, 3), "waited_s": round(waited),
                    "budget_left_s": round(max(QUIET_BUDGET[0], 0))}
        log(f"machine busy (load {la[0]:.2f}, {busy:.2f} cores over 10 s); waiting")
        time.sleep(20)


def sleep_until_phase(interval_s, phase=0.9):
    """Sleep until wall time ≡ phase·interval (mod interval): all polls of the
    last instant are done and none of the next one has started."""
    t = time.time()
    target = (t // interval_s) * interval_s + phase * interval_s
    while target <= t + 0.05:
        target += interval_s
    time.sleep(target - t)
    return target


# ---------------------------------------------------------------------------
# pqwatch output
# ---------------------------------------------------------------------------

METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$")
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """name → list of (labels dict, value)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        if not m:
            continue
        labels = dict(LABEL_RE.findall(m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


def msum(mt, name, **match):
    return sum(v for l, v in mt.get(name, []) if all(l.get(k) == x for k, x in match.items()))


def metrics_summary(mt):
    h = {}
    for l, v in mt.get("pqwatch_modbus_request_duration_seconds_bucket", []):
        h[l["le"]] = h.get(l["le"], 0) + v
    return {
        "polls_ok": msum(mt, "pqwatch_polls_total", outcome="ok"),
        "polls_partial": msum(mt, "pqwatch_polls_total", outcome="partial"),
        "polls_failed": msum(mt, "pqwatch_polls_total", outcome="failed"),
        "reads_ok": msum(mt, "pqwatch_reads_total", outcome="ok"),
        "reads_all": msum(mt, "pqwatch_reads_total"),
        "skipped": msum(mt, "pqwatch_cycles_skipped_total"),
        "backed_off": msum(mt, "pqwatch_polls_backed_off_total"),
        "points_written": msum(mt, "pqwatch_points_written_total"),
        "points_discarded": msum(mt, "pqwatch_points_discarded_total"),
        "outbox_points": msum(mt, "pqwatch_outbox_points"),
        "rtt_count": msum(mt, "pqwatch_modbus_request_duration_seconds_count"),
        "rtt_sum": msum(mt, "pqwatch_modbus_request_duration_seconds_sum"),
        "rtt_buckets": h,
    }


def hist_quantile(b0, b1, q):
    """Quantile of the histogram delta: (lower bound, upper bound) of the
    bucket holding it, seconds (the histogram's resolution)."""
    les = sorted((float(k) if k != "+Inf" else float("inf"), k) for k in b1)
    total = b1.get("+Inf", 0) - b0.get("+Inf", 0)
    if total <= 0:
        return None
    lower = 0.0
    for le, k in les:
        if b1[k] - b0.get(k, 0) >= q * total:
            return (lower, le)
        lower = le
    return (lower, float("inf"))


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def meter_index(mid):
    return int(mid.lstrip("F"))


def schedule_samples(meters_json, interval_ms, gateways):
    """Poll start delays and poll durations (ms) from one /api/meters scrape."""
    delays, durs = [], []
    by_gw = {}
    for m in meters_json:
        t = m.get("last_poll_ms")
        if not t:
            continue
        delays.append(t % interval_ms)
        by_gw.setdefault(m["gateway"], []).append((meter_index(m["id"]), t))
    for lst in by_gw.values():
        lst.sort()
        for (i, a), (j, b) in zip(lst, lst[1:]):
            if j == i + gateways and a // interval_ms == b // interval_ms and b >= a:
                durs.append(b - a)
    return delays, durs


def profile_layout(profile):
    """[name, fc, address, type, order, scale] of every register of a
    profile, from `pqwatch profiles show` (series expanded)."""
    out = subprocess.run([PQ, "profiles", "show", profile], capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines():
        p = line.split()
        if len(p) >= 6 and p[1].isdigit() and p[2].isdigit():
            rows.append([p[0], int(p[1]), int(p[2]), p[3], p[4], float(p[5])])
    return rows


def profiles_table():
    out = subprocess.run([PQ, "profiles"], capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines()[1:]:
        p = line.split()
        if len(p) < 4:
            continue
        # name vendor(…words) fields reads description: find the two ints.
        ints = [i for i, x in enumerate(p) if x.isdigit()]
        if len(ints) < 2:
            continue
        fields, reads = int(p[ints[0]]), int(p[ints[1]])
        layout = profile_layout(p[0])
        rows.append({
            "profile": p[0], "fields": fields, "reads": reads,
            "registers": len(layout),
            "words": sum({"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2}.get(r[3], 4) for r in layout),
        })
    return rows


def fleet_meters(cfg_text):
    """[(id, address, unit)] in config order."""
    ids = re.findall(r'^id = "(F\d+)"', cfg_text, re.M)
    addrs = re.findall(r'^address = "([^"]+)"', cfg_text, re.M)
    units = [int(u) for u in re.findall(r"^unit = (\d+)", cfg_text, re.M)]
    return list(zip(ids, addrs, units))


# ---------------------------------------------------------------------------
# One simulator session
# ---------------------------------------------------------------------------


class Session:
    """A simulated fleet in its own process (and optionally a VictoriaMetrics)."""

    def __init__(self, n, gateways, interval_s, latency_ms, profile, vm, tmp):
        self.n, self.gateways, self.interval_s = n, gateways, interval_s
        self.latency_ms, self.profile, self.tmp = latency_ms, profile, tmp
        self.base = free_ports(gateways)
        self.cfg = os.path.join(tmp, "fleet.toml")
        ival = f"{int(interval_s * 1000)}ms"
        self.sim = spawn([PQ, "simulate", "--fleet", str(n), "--gateways", str(gateways),
                          "--profile", profile, "--base-port", str(self.base),
                          "--interval", ival, "--latency", f"{latency_ms}ms",
                          "--write-config", self.cfg, "--log-level", "warn"],
                         os.path.join(tmp, "sim.log"))
        for g in range(gateways):
            wait_port(self.base + g)
        self.vm = None
        self.vm_port = None
        if vm:
            self.vm_port = free_ports(1)
            d = os.path.join(tmp, "vm")
            self.vm = spawn([VM_BIN, f"-storageDataPath={d}", f"-httpListenAddr=127.0.0.1:{self.vm_port}",
                             "-retentionPeriod=100y", "-loggerLevel=WARN"], os.path.join(tmp, "vm.log"))
            wait_http(f"http://127.0.0.1:{self.vm_port}/health", self.vm)
        with open(self.cfg) as f:
            self.cfg_text = f.read()
        self.meters = fleet_meters(self.cfg_text)
        assert len(self.meters) == n, (len(self.meters), n)
        self._reads = None

    def reads(self):
        """pqwatch's plan for the profile, as it reads it (probe)."""
        if self._reads is None:
            out = subprocess.run([PQ, "probe", "-c", self.cfg, "--meter", self.meters[0][0], "--json"],
                                 capture_output=True, text=True, check=True)
            d = json.loads(out.stdout)
            self._reads = [[r["function"], r["start"], r["count"]] for r in d["reads"]]
            bad = [r for r in d["reads"] if not r["result"].startswith("ok")]
            if bad:
                raise RuntimeError(f"probe: {bad}")
        return self._reads

    def close(self):
        stop(self.vm)
        stop(self.sim, 5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- pqwatch -------------------------------------------------------------

    def pqwatch_config(self, sink, http_port, state):
        extra = f"""
[daemon]
state_dir = "{state}"
timezone = "UTC"

[http]
listen = "127.0.0.1:{http_port}"

[reports]
enabled = false
"""
        if sink:
            extra += f"""
[influxdb]
url = "http://127.0.0.1:{self.vm_port}"
org = "o"
bucket = "b"
token = "t"
"""
        path = os.path.join(self.tmp, f"pqwatch-{http_port}.toml")
        with open(path, "w") as f:
            f.write(self.cfg_text + extra)
        return path

    def measure_pqwatch(self, sink, warmup, window, scrapes=3):
        http_port = free_ports(1)
        state = tempfile.mkdtemp(prefix="state-", dir=self.tmp)
        cfg = self.pqwatch_config(sink, http_port, state)
        base = f"http://127.0.0.1:{http_port}"
        pq = spawn([PQ, "run", "-c", cfg, "--log-level", "warn"], os.path.join(self.tmp, f"pqwatch-{http_port}.log"))
        try:
            wait_http(base + "/healthz", pq)
            time.sleep(warmup)
            t0 = sleep_until_phase(self.interval_s)
            m0 = metrics_summary(parse_metrics(http_get(base + "/metrics").decode()))
            c0 = self.cpus(pq)
            k = max(1, round(window / self.interval_s))
            time.sleep(max(0.0, t0 + k * self.interval_s - time.time()))
            c1 = self.cpus(pq)
            m1 = metrics_summary(parse_metrics(http_get(base + "/metrics").decode()))
            wall = c1["t"] - c0["t"]
            # Peak RSS of polling alone, before /api/meters (whose JSON of
            # every meter's latest values costs memory of its own).
            hwm_window = hwm_kib(pq.pid)
            # Poll schedule samples, after the window.
            delays, durs = [], []
            ims = int(self.interval_s * 1000)
            for s in range(scrapes):
                time.sleep(self.interval_s * 0.73 + 0.31 * s)
                d, u = schedule_samples(json.loads(http_get(base + "/api/meters", 60)), ims, self.gateways)
                delays += d
                durs += u
            hwm = {"pqwatch": hwm_kib(pq.pid), "sim": hwm_kib(self.sim.pid),
                   "vm": hwm_kib(self.vm.pid) if self.vm else None}
        finally:
            stop(pq)
        d = {key: m1[key] - m0[key] for key in m0 if key != "rtt_buckets"}
        achieved = d["polls_ok"] + d["polls_partial"]
        scheduled = self.n * k
        cpu_pq = c1["pqwatch"] - c0["pqwatch"]
        q50 = hist_quantile(m0["rtt_buckets"], m1["rtt_buckets"], 0.5)
        q99 = hist_quantile(m0["rtt_buckets"], m1["rtt_buckets"], 0.99)
        return {
            "poller": "pqwatch", "sink": "victoria-metrics" if sink else "none",
            "window_s": round(wall, 2), "instants": k, "scheduled": scheduled,
            "achieved": achieved, "failed": d["polls_failed"], "skipped": d["skipped"],
            "backed_off": d["backed_off"], "on_time_pct": 100.0 * achieved / scheduled,
            "reads": d["reads_all"], "reads_ok": d["reads_ok"],
            "points_written": d["points_written"], "outbox_points_end": m1["outbox_points"],
            "cpu_s": cpu_pq, "cores": cpu_pq / wall,
            "cpu_s_per_1000_polls": 1000 * cpu_pq / max(achieved, 1),
            "cpu_us_per_read": 1e6 * cpu_pq / max(d["reads_all"], 1),
            "rss_peak_mib": hwm_window / 1024, "rss_peak_after_api_mib": hwm["pqwatch"] / 1024,
            "sim_cores": (c1["sim"] - c0["sim"]) / wall, "sim_rss_peak_mib": hwm["sim"] / 1024,
            "vm_cores": ((c1["vm"] - c0["vm"]) / wall) if self.vm else None,
            "vm_rss_peak_mib": (hwm["vm"] / 1024) if hwm["vm"] else None,
            "other_cores": (c1["other"] - c0["other"]) / wall,
            "rtt_mean_ms": 1000 * d["rtt_sum"] / max(d["rtt_count"], 1),
            "rtt_p50_bucket_ms": [1000 * x for x in q50] if q50 else None,
            "rtt_p99_bucket_ms": [1000 * x for x in q99] if q99 else None,
            "delay_p50_ms": pct(delays, 0.5), "delay_p99_ms": pct(delays, 0.99),
            "poll_p50_ms": pct(durs, 0.5), "poll_p99_ms": pct(durs, 0.99),
            "schedule_samples": len(delays), "poll_samples": len(durs),
        }

    def cpus(self, main):
        t = time.time()
        ours = {"pqwatch": cpu_s(main.pid), "sim": cpu_s(self.sim.pid),
                "vm": cpu_s(self.vm.pid) if self.vm else 0.0, "harness": cpu_s(os.getpid())}
        ours["other"] = machine_busy_s() - sum(ours.values())
        ours["t"] = t
        return ours

    # -- the Python poller -----------------------------------------------------

    def measure_python(self, warmup, window):
        gws = {}
        for mid, addr, unit in self.meters:
            host, port = addr.rsplit(":", 1)
            gws.setdefault(addr, {"host": host, "port": int(port), "meters": []})["meters"].append(
                {"id": mid, "unit": unit, "customer": "FLEET"})
        spec = {"interval_s": self.interval_s, "timeout_s": 1.0,
                "influx_url": f"http://127.0.0.1:{self.vm_port}" if self.vm else None,
                "reads": self.reads(), "layout": profile_layout(self.profile),
                "gateways": list(gws.values())}
        sp = os.path.join(self.tmp, "python-spec.json")
        st = os.path.join(self.tmp, "python-stats.json")
        with open(sp, "w") as f:
            json.dump(spec, f)
        py = spawn([PY, os.path.join(HERE, "peers", "python_poller.py"), sp, st],
                   os.path.join(self.tmp, "python.log"))

        def snap():
            try:
                os.remove(st)
            except FileNotFoundError:
                pass
            py.send_signal(signal.SIGUSR1)
            for _ in range(600):
                if os.path.exists(st):
                    with open(st) as f:
                        return json.load(f)
                if py.poll() is not None:
                    raise RuntimeError("python poller died: " + tail(py._logfile))
                time.sleep(0.01)
            raise RuntimeError("python poller: no stats")

        try:
            time.sleep(1.0)
            if py.poll() is not None:
                raise RuntimeError("python poller died: " + tail(py._logfile))
            time.sleep(warmup)
            t0 = sleep_until_phase(self.interval_s)
            c0 = self.cpus(py)
            s0 = snap()
            k = max(1, round(window / self.interval_s))
            time.sleep(max(0.0, t0 + k * self.interval_s - time.time()))
            c1 = self.cpus(py)
            s1 = snap()
            hwm = hwm_kib(py.pid)
        finally:
            stop(py)
        wall = c1["t"] - c0["t"]
        achieved = s1["polls_ok"] - s0["polls_ok"]
        reads = (s1["reads_ok"] + s1["reads_failed"]) - (s0["reads_ok"] + s0["reads_failed"])
        cpu = c1["pqwatch"] - c0["pqwatch"]
        scheduled = self.n * k
        return {
            "poller": "python", "sink": "victoria-metrics" if self.vm else "none",
            "window_s": round(wall, 2), "instants": k, "scheduled": scheduled,
            "achieved": achieved, "failed": s1["polls_failed"] - s0["polls_failed"],
            "skipped": s1["skipped"] - s0["skipped"], "on_time_pct": 100.0 * achieved / scheduled,
            "reads": reads, "points_written": s1["points_written"] - s0["points_written"],
            "cpu_s": cpu, "cores": cpu / wall,
            "cpu_s_per_1000_polls": 1000 * cpu / max(achieved, 1),
            "cpu_us_per_read": 1e6 * cpu / max(reads, 1),
            "rss_peak_mib": hwm / 1024,
            "sim_cores": (c1["sim"] - c0["sim"]) / wall,
            "vm_cores": ((c1["vm"] - c0["vm"]) / wall) if self.vm else None,
            "other_cores": (c1["other"] - c0["other"]) / wall,
            "delay_p50_ms": s1["delay_p50_ms"], "delay_p99_ms": s1["delay_p99_ms"],
            "poll_p50_ms": s1["duration_p50_ms"], "poll_p99_ms": s1["duration_p99_ms"],
            "schedule_samples": s1["samples"],
        }

    # -- the C client ----------------------------------------------------------

    def measure_floor(self, seconds, gateway=0, units=None):
        reads = ",".join(f"{fc}:{s}:{c}" for fc, s, c in self.reads())
        units = units or min(self.n, max(1, self.n // self.gateways))
        out = subprocess.run([FLOOR, "127.0.0.1", str(self.base + gateway), str(units), reads, str(seconds)],
                             capture_output=True, text=True, timeout=seconds + 30)
        if out.returncode != 0 and not out.stdout:
            raise RuntimeError("modbus_floor: " + out.stderr)
        d = json.loads(out.stdout)
        d["poller"] = "libmodbus-c"
        return d


# ---------------------------------------------------------------------------
# Parts
# ---------------------------------------------------------------------------


def machine_info():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except Exception:
            return ""
    model = sh("lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1")
    mem = sh("sed -n 's/^MemTotal:[[:space:]]*//p' /proc/meminfo")
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "mem_total": mem,
        "kernel": platform.release(), "rustc": sh("rustc --version"),
        "pymodbus": sh(f"{PY} -c 'import pymodbus; print(pymodbus.__version__)'"),
        "libmodbus": sh("pkg-config --modversion libmodbus"),
        "victoria_metrics": sh("dpkg-query -W -f='${Version}' victoria-metrics"),
        "commit": sh(f"git -C {ROOT} rev-parse --short HEAD"),
        "dirty": bool(sh(f"git -C {ROOT} status --porcelain --untracked-files=no")),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def save(name, data):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    log("wrote", os.path.relpath(path, ROOT))


def part_fleet(a):
    """Part 2 and, side by side on the same simulator, parts 4 and 5."""
    configs = [(1000, 5), (1000, 1), (2000, 1), (5000, 5), (5000, 1), (10000, 5), (10000, 1)]
    python_at = {(1000, 1), (2000, 1), (10000, 5)}
    if a.quick:
        configs = [(200, 1), (1000, 5)]
        python_at = {(200, 1)}
    if a.fleet:
        configs = [tuple(int(x) for x in c.split("@")) for c in a.fleet.split(",")]
    out = {"machine": machine_info(), "params": {
        "profile": a.profile, "latency_ms": a.latency_ms, "per_gateway": a.per_gateway,
        "warmup_s": a.warmup, "window_s": a.window, "runs": a.runs,
        "runs_nosink": a.runs_nosink, "quiet_threshold": a.quiet_load, "quiet_max_wait_s": a.quiet_wait},
        "runs": []}
    prev = os.path.join(RESULTS, "fleet.json")
    if a.fleet and os.path.exists(prev):
        # Re-running some configurations: keep the others' runs.
        with open(prev) as f:
            old = json.load(f)
        keep = [r for r in old["runs"] if (r["n"], r["interval_s"]) not in set(configs)]
        out["runs"] = keep
        out["earlier"] = old.get("earlier", []) + [{"machine": old["machine"], "params": old["params"],
                                                     "configs": sorted({(r["n"], r["interval_s"]) for r in keep})}]
    for n, ival in configs:
        g = max(1, n // a.per_gateway)
        for r in range(max(a.runs, a.runs_nosink)):
            modes = []
            if r < a.runs:
                modes.append(True)
            if r < a.runs_nosink:
                modes.append(False)
            for sink in modes:
                quiet = wait_quiet(a.quiet_wait, a.quiet_load)
                la = loadavg()
                tmp = tempfile.mkdtemp(prefix="pqwatch-bench-")
                log(f"fleet N={n} G={g} interval={ival}s sink={'vm' if sink else 'none'} run {r + 1} (load {la[0]:.2f})")
                s = Session(n, g, ival, a.latency_ms, a.profile, sink, tmp)
                try:
                    res = s.measure_pqwatch(sink, a.warmup, a.window)
                    base = {"n": n, "gateways": g, "interval_s": ival, "run": r + 1,
                            "load_before": la, "quiet": quiet}
                    res.update(base)
                    out["runs"].append(res)
                    log(f"  pqwatch: {res['achieved']:.0f}/{res['scheduled']} polls, skipped {res['skipped']:.0f}, "
                        f"{res['cores']:.3f} cores, {res['cpu_us_per_read']:.1f} µs/read, "
                        f"RSS {res['rss_peak_mib']:.1f} MiB, sim {res['sim_cores']:.2f} cores, other {res['other_cores']:.2f}")
                    if sink and (n, ival) in python_at:
                        res = s.measure_python(a.warmup, a.window)
                        res.update(base)
                        out["runs"].append(res)
                        log(f"  python: {res['achieved']:.0f}/{res['scheduled']} polls, skipped {res['skipped']:.0f}, "
                            f"{res['cores']:.3f} cores, {res['cpu_us_per_read']:.1f} µs/read, RSS {res['rss_peak_mib']:.1f} MiB")
                        res = s.measure_floor(a.floor_seconds)
                        res.update(base)
                        out["runs"].append(res)
                        log(f"  libmodbus C: {res['requests']} requests, {res['cpu_us_per_request']:.1f} µs/request")
                finally:
                    s.close()
                save("fleet", out)
    return out


def part_gateway(a):
    """Part 3: one gateway, k meters, interval shorter than the cycle so the
    gateway polls back to back; the achieved cycle against k × reads × L."""
    profiles = profiles_table()
    lat = [3, 20] if not a.quick else [3]
    k = a.gateway_meters
    window = 15 if not a.quick else 5
    out = {"machine": machine_info(), "profiles": profiles, "k": k, "window_s": window, "runs": []}
    for L in lat:
        for p in profiles:
            quiet = wait_quiet(a.quiet_wait, a.quiet_load)
            tmp = tempfile.mkdtemp(prefix="pqwatch-bench-")
            log(f"gateway profile={p['profile']} k={k} L={L}ms")
            s = Session(k, 1, 0.1, L, p["profile"], False, tmp)
            try:
                http_port = free_ports(1)
                cfg = s.pqwatch_config(False, http_port, tempfile.mkdtemp(dir=tmp))
                base = f"http://127.0.0.1:{http_port}"
                pq = spawn([PQ, "run", "-c", cfg, "--log-level", "warn"], os.path.join(tmp, "pq.log"))
                try:
                    wait_http(base + "/healthz", pq)
                    time.sleep(3)
                    m0 = metrics_summary(parse_metrics(http_get(base + "/metrics").decode()))
                    c0, t0 = cpu_s(pq.pid), time.time()
                    time.sleep(window)
                    m1 = metrics_summary(parse_metrics(http_get(base + "/metrics").decode()))
                    c1, t1 = cpu_s(pq.pid), time.time()
                finally:
                    stop(pq)
                polls = sum(m1[x] - m0[x] for x in ("polls_ok", "polls_partial", "polls_failed"))
                reads = m1["reads_all"] - m0["reads_all"]
                r = len(s.reads())
                fl = s.measure_floor(3, units=k)
                cycle = k * (t1 - t0) / max(polls, 1)
                res = {
                    "profile": p["profile"], "latency_ms": L, "k": k, "reads_per_poll": r,
                    "polls": polls, "reads": reads, "window_s": t1 - t0,
                    "cycle_s": cycle, "floor_nominal_s": k * r * L / 1000,
                    "c_rtt_mean_ms": fl["rtt_mean_ms"], "floor_measured_s": k * r * fl["rtt_mean_ms"] / 1000,
                    "pq_rtt_mean_ms": 1000 * (m1["rtt_sum"] - m0["rtt_sum"]) / max(m1["rtt_count"] - m0["rtt_count"], 1),
                    "pq_cores": (c1 - c0) / (t1 - t0), "quiet": quiet,
                }
                res["gap_nominal_pct"] = 100 * (cycle / res["floor_nominal_s"] - 1)
                res["gap_measured_pct"] = 100 * (cycle / res["floor_measured_s"] - 1)
                out["runs"].append(res)
                log(f"  cycle {cycle:.3f}s, floor {res['floor_nominal_s']:.3f}s nominal "
                    f"({res['gap_nominal_pct']:+.1f} %), {res['floor_measured_s']:.3f}s measured "
                    f"({res['gap_measured_pct']:+.1f} %)")
            finally:
                s.close()
            save("gateway", out)
    return out


def part_floor(a):
    """Part 5 alone: the C client's CPU per request, and pqwatch's, polling
    one 50-meter gateway at 0 ms and at the fleet's latency."""
    out = {"machine": machine_info(), "runs": []}
    for L in ([0, a.latency_ms] if not a.quick else [a.latency_ms]):
        tmp = tempfile.mkdtemp(prefix="pqwatch-bench-")
        s = Session(a.per_gateway, 1, 1, L, a.profile, False, tmp)
        try:
            res = s.measure_floor(10 if not a.quick else 3)
            res["latency_ms"] = L
            out["runs"].append(res)
            log(f"floor L={L}ms: {res['cpu_us_per_request']:.1f} µs/request, rtt {res['rtt_mean_ms']:.2f} ms")
        finally:
            s.close()
    save("floor", out)


def perf_stat(pid_or_cmd, seconds):
    """Syscalls, context switches and task-clock of a process (perf stat)."""
    ev = "raw_syscalls:sys_enter,context-switches,task-clock"
    if isinstance(pid_or_cmd, int):
        cmd = ["perf", "stat", "-x", ",", "-e", ev, "-p", str(pid_or_cmd), "--", "sleep", str(seconds)]
    else:
        cmd = ["perf", "stat", "-x", ",", "-e", ev, "--"] + pid_or_cmd
    out = subprocess.run(cmd, capture_output=True, text=True)
    d = {}
    for line in out.stderr.splitlines():
        p = line.split(",")
        if len(p) >= 3 and p[0].replace(".", "").isdigit():
            d[p[2]] = float(p[0])
    return d, out.stdout


def part_profile(a):
    """Where pqwatch's CPU per read goes: perf stat (syscalls and context
    switches per read) and a flat perf profile by library and symbol, for
    one fleet configuration (default 2,000 meters at 1 s), with and without
    the sink; and the C client's syscalls per request."""
    n, iv = (int(x) for x in (a.fleet or "2000@1").split(",")[0].split("@"))
    g = max(1, n // a.per_gateway)
    secs = 15 if not a.quick else 5
    out = {"machine": machine_info(), "n": n, "interval_s": iv, "seconds": secs, "runs": []}
    for sink in (True, False):
        tmp = tempfile.mkdtemp(prefix="pqwatch-bench-")
        s = Session(n, g, iv, a.latency_ms, a.profile, sink, tmp)
        try:
            hp = free_ports(1)
            cfg = s.pqwatch_config(sink, hp, tempfile.mkdtemp(dir=tmp))
            base = f"http://127.0.0.1:{hp}"
            pq = spawn([PQ, "run", "-c", cfg, "--log-level", "warn"], os.path.join(tmp, "pq.log"))
            try:
                wait_http(base + "/healthz", pq)
                time.sleep(a.warmup)
                m0 = metrics_summary(parse_metrics(http_get(base + "/metrics").decode()))
                st, _ = perf_stat(pq.pid, secs)
                m1 = metrics_summary(parse_metrics(http_get(base + "/metrics").decode()))
                data = os.path.join(tmp, "perf.data")
                subprocess.run(["perf", "record", "-q", "-F", "999", "-o", data, "-p", str(pq.pid), "--",
                                "sleep", str(secs)], capture_output=True)
            finally:
                stop(pq)
            reads = m1["reads_all"] - m0["reads_all"]
            rep = {}
            for sort in ("dso", "dso,sym"):
                r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", sort,
                                    "--percent-limit", "0.5"], capture_output=True, text=True)
                rep[sort] = "\n".join(l for l in r.stdout.splitlines() if l and not l.startswith("#"))
            name = f"profile-pqwatch-{'vm' if sink else 'nosink'}"
            with open(os.path.join(RESULTS, name + ".txt"), "w") as f:
                f.write(f"# perf record -F 999 -p <pqwatch>, {secs} s, {n} meters @ {iv} s, sink "
                        f"{'victoria-metrics' if sink else 'none'}, {reads:.0f} reads\n\n## by dso\n"
                        + rep["dso"] + "\n\n## by dso,symbol (>= 0.5 %)\n" + rep["dso,sym"] + "\n")
            res = {"sink": "victoria-metrics" if sink else "none", "reads": reads,
                   "syscalls_per_read": st.get("raw_syscalls:sys_enter", 0) / max(reads, 1),
                   "context_switches_per_read": st.get("context-switches", 0) / max(reads, 1),
                   "cpu_us_per_read": 1000 * st.get("task-clock", 0) / max(reads, 1),
                   "profile": name + ".txt"}
            out["runs"].append(res)
            log(f"profile sink={res['sink']}: {res['syscalls_per_read']:.2f} syscalls/read, "
                f"{res['context_switches_per_read']:.2f} cs/read, {res['cpu_us_per_read']:.1f} µs/read")
            if sink:
                reads_spec = ",".join(f"{fc}:{st_}:{c}" for fc, st_, c in s.reads())
                cst, cout = perf_stat([FLOOR, "127.0.0.1", str(s.base), str(min(n, a.per_gateway)), reads_spec,
                                       str(secs)], secs)
                c = json.loads(cout)
                out["c_client"] = {"requests": c["requests"],
                                   "syscalls_per_request": cst.get("raw_syscalls:sys_enter", 0) / c["requests"],
                                   "context_switches_per_request": cst.get("context-switches", 0) / c["requests"],
                                   "cpu_us_per_request": c["cpu_us_per_request"]}
                log(f"profile C client: {out['c_client']}")
        finally:
            s.close()
    save("profile", out)


def main():
    global PQ, FLOOR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", default=["fleet", "gateway", "floor"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pqwatch", default=os.environ.get("PQWATCH_BIN"))
    ap.add_argument("--floor-bin", default=os.environ.get("MODBUS_FLOOR_BIN"))
    ap.add_argument("--profile", default="siemens-pac3200")
    ap.add_argument("--latency-ms", type=int, default=3)
    ap.add_argument("--per-gateway", type=int, default=50)
    ap.add_argument("--gateway-meters", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--runs-nosink", type=int, default=1)
    ap.add_argument("--floor-seconds", type=float, default=10)
    ap.add_argument("--fleet", help="N@interval_s,... (default: the full matrix)")
    ap.add_argument("--quiet-load", type=float, default=0.5)
    ap.add_argument("--quiet-wait", type=float, default=1200)
    a = ap.parse_args()
    QUIET_BUDGET[0] = a.quiet_wait
    if a.quick:
        a.warmup, a.window, a.runs, a.runs_nosink, a.floor_seconds = 3, 10, 1, 1, 3
        QUIET_BUDGET[0] = 0
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    PQ = a.pqwatch or os.path.join(target, "release", "pqwatch")
    FLOOR = a.floor_bin or os.path.join(target, "bench", "modbus_floor")
    for p in a.parts:
        {"fleet": part_fleet, "gateway": part_gateway, "floor": part_floor, "profile": part_profile}[p](a)


if __name__ == "__main__":
    main()
