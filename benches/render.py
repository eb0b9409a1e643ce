#!/usr/bin/python3
"""Turn benches/results/*.json into the generated sections of BENCHMARKS.md.

    render.py --collect-criterion target/criterion --results benches/results
        reads criterion's estimates (median of its samples) into
        results/hotpaths.json
    render.py --results benches/results --write BENCHMARKS.md
        replaces every block between `<!-- bench:NAME -->` and
        `<!-- /bench:NAME -->` with freshly generated text; everything else
        in the file (the prose, the Gaps section) is kept as written.
    render.py --results benches/results --print NAME
        prints one block.

Figures are medians over runs (min–max where it matters); nothing is
rounded in pqwatch's favour: percentages of polls on time are truncated,
costs are rounded up at the shown precision.
"""

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load(results, name):
    p = os.path.join(results, name + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def up(x, nd=0):
    """Round up at nd decimals (costs)."""
    if x is None:
        return None
    f = 10 ** nd
    return math.ceil(x * f - 1e-9) / f


def down(x, nd=0):
    """Round down (what counts in our favour)."""
    if x is None:
        return None
    f = 10 ** nd
    return math.floor(x * f + 1e-9) / f


def fmt(x, nd=0, how=None):
    if x is None:
        return "—"
    if how == "up":
        x = up(x, nd)
    elif how == "down":
        x = down(x, nd)
    s = f"{x:,.{nd}f}"
    return s


def rng(xs, nd=0, how=None):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    m = fmt(statistics.median(xs), nd, how)
    if len(xs) == 1:
        return m
    return f"{m} ({fmt(min(xs), nd, how)}–{fmt(max(xs), nd, how)})"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------


def collect_criterion(cdir, results):
    out = {}
    for est in glob.glob(os.path.join(cdir, "**", "new", "estimates.json"), recursive=True):
        d = os.path.dirname(est)
        with open(est) as f:
            e = json.load(f)
        try:
            with open(os.path.join(d, "benchmark.json")) as f:
                b = json.load(f)
        except OSError:
            continue
        tp = b.get("throughput") or {}
        elems = tp.get("Elements") or tp.get("elements")
        out[b["full_id"]] = {
            "median_ns": e["median"]["point_estimate"],
            "lower_ns": e["median"]["confidence_interval"]["lower_bound"],
            "upper_ns": e["median"]["confidence_interval"]["upper_bound"],
            "elements": elems,
        }
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "hotpaths.json"), "w") as f:
        json.dump({"benches": out}, f, indent=1, sort_keys=True)
    print(f"render.py: {len(out)} criterion estimates → {results}/hotpaths.json", file=sys.stderr)


def ns(x):
    if x >= 1e6:
        return f"{x / 1e6:,.2f} ms"
    if x >= 1e3:
        return f"{x / 1e3:,.2f} µs"
    return f"{x:,.0f} ns"


def block_machine(R):
    f = load(R, "fleet") or load(R, "gateway") or {}
    m = f.get("machine")
    if not m:
        return "_(no results yet)_"
    return table(["", ""], [
        ["CPU", f"`nproc` = {m['nproc']}; `lscpu` model name: {m['cpu_model']}"],
        ["RAM", f"MemTotal: {m['mem_total']}"],
        ["Kernel", m["kernel"]],
        ["Rust", m["rustc"]],
        ["Peers", f"pymodbus {m['pymodbus']} (Debian's python3-pymodbus, /usr/bin/python3), libmodbus {m['libmodbus']}, "
                  f"victoria-metrics {m['victoria_metrics']}, all on the same 2 cores"],
        ["Code", f"commit `{m['commit']}`" + (" plus uncommitted changes in the work tree" if m.get("dirty") else "")],
        ["Date", m["date"]],
    ])


def block_hotpaths(R):
    h = load(R, "hotpaths")
    if not h:
        return "_(no results yet)_"
    b = h["benches"]
    rows = []
    order = ["plan", "decode", "line", "outbox", "watch", "rules", "ledger"]
    what = {
        "plan": "plan every field of the profile (`MeterPlan::new`)",
        "decode": "one poll's registers → values (`MeterPlan::assemble`)",
        "line": "one reading → one line-protocol line",
        "outbox": "`Outbox::push` (one fsync'd commit) + `delete` of one batch",
        "watch": "one reading into the 1-minute aggregator",
        "rules": "all rules of one meter on one 1-minute window",
        "ledger": "`from_short_window` + merge into the day, per minute",
    }
    for k in sorted(b, key=lambda k: (order.index(k.split("/")[0]) if k.split("/")[0] in order else 99, k)):
        e = b[k]
        per = ""
        if e.get("elements"):
            per = f"{ns(e['median_ns'] / e['elements'])} × {e['elements']:,}"
        w = "one f32 register pair → f64 (`decode::decode`)" if k == "decode/f32_word" else what.get(k.split("/")[0], "")
        rows.append([f"`{k}`", w, ns(e["median_ns"]),
                     f"{ns(e['lower_ns'])} – {ns(e['upper_ns'])}", per])
    return table(["benchmark", "what", "median", "95 % CI of the median", "per element × elements"], rows)


def fleet_groups(f, poller, sink):
    g = {}
    for r in f["runs"]:
        if r.get("poller") == poller and (sink is None or r.get("sink") == sink):
            g.setdefault((r["n"], r["interval_s"]), []).append(r)
    return g


def block_fleet(R, sink):
    f = load(R, "fleet")
    if not f:
        return "_(no results yet)_"
    g = fleet_groups(f, "pqwatch", sink)
    if not g:
        return "_(no runs)_"
    p = f["params"]
    rows1, rows2 = [], []
    for (n, iv), rs in sorted(g.items(), key=lambda x: (x[0][1], x[0][0]), reverse=False):
        gw = rs[0]["gateways"]
        rows1.append([
            f"{n:,}", f"{iv:g} s", f"{gw}", len(rs),
            f"{fmt(med([r['achieved'] for r in rs]))} / {fmt(med([r['scheduled'] for r in rs]))}",
            rng([r["on_time_pct"] for r in rs], 2, "down"),
            fmt(med([r["skipped"] for r in rs])), fmt(med([r["failed"] for r in rs])),
            f"{fmt(med([r['poll_p50_ms'] for r in rs]))} / {fmt(med([r['poll_p99_ms'] for r in rs]))}",
            f"{fmt(med([r['delay_p50_ms'] for r in rs]))} / {fmt(med([r['delay_p99_ms'] for r in rs]))}",
            rtt(rs),
        ])
        rows2.append([
            f"{n:,}", f"{iv:g} s",
            rng([r["cores"] for r in rs], 3, "up"),
            fmt(med([r["cpu_s_per_1000_polls"] for r in rs]), 3, "up"),
            fmt(med([r["cpu_us_per_read"] for r in rs]), 1, "up"),
            rng([r["rss_peak_mib"] for r in rs], 0, "up") + ("" if all("rss_peak_after_api_mib" in r for r in rs) else " †"),
            fmt(med([r["sim_cores"] for r in rs]), 2),
            fmt(med([r.get("vm_cores") for r in rs]), 2) if sink != "none" else "—",
            fmt(med([r.get("vm_rss_peak_mib") for r in rs]), 0) if sink != "none" else "—",
            rng([r["other_cores"] for r in rs], 2),
            rng([r["load_before"][0] for r in rs], 2),
        ])
    t1 = table(["meters", "interval", "gateways", "runs", "polls achieved / scheduled", "on time % (min–max)",
                "skipped", "failed", "poll duration p50 / p99 ms", "start delay p50 / p99 ms",
                "request round trip p50 / p99 (histogram bucket)"], rows1)
    t2 = table(["meters", "interval", "pqwatch cores (min–max)", "CPU s per 1,000 polls", "CPU µs per read",
                "pqwatch peak RSS MiB (min–max)", "simulator cores", "VictoriaMetrics cores",
                "VictoriaMetrics peak RSS MiB", "other processes, cores", "load average before"], rows2)
    notes = []
    if any("rss_peak_after_api_mib" not in r for rs in g.values() for r in rs):
        notes.append("† measured after the three `/api/meters` scrapes that follow the window, which add to the "
                     "peak (one scrape of 10,000 meters: +146 MiB); the other rows are the peak of polling alone, "
                     "read before the scrapes.")
    after = [(n, iv, med([r["rss_peak_after_api_mib"] for r in rs])) for (n, iv), rs in sorted(g.items())
             if all("rss_peak_after_api_mib" in r for r in rs)]
    if after:
        notes.append("Peak RSS after the `/api/meters` scrapes: " + "; ".join(
            f"{n:,} @ {iv:g} s: {fmt(x, 0, 'up')} MiB" for n, iv, x in after) + ".")
    return t1 + "\n\n" + t2 + ("\n\n" + "\n".join(notes) if notes else "")


def rtt(rs):
    def b(key):
        vals = [tuple(r[key]) for r in rs if r.get(key)]
        if not vals:
            return "—"
        lo, hi = max(vals)  # the worst run's bucket
        return f"≤ {hi:g} ms" if lo == 0 else f"{lo:g}–{hi:g} ms"
    return f"{b('rtt_p50_bucket_ms')} / {b('rtt_p99_bucket_ms')} (mean {fmt(med([r['rtt_mean_ms'] for r in rs]), 2)} ms)"


def peers_rows(f):
    """Per fleet config with a Python run: pqwatch (same session), Python, C."""
    by = {}
    for r in f["runs"]:
        key = (r["n"], r["interval_s"], r["run"])
        by.setdefault(key, {})
        if r["poller"] == "pqwatch" and r.get("sink") != "victoria-metrics":
            continue
        by[key][r["poller"]] = r
    cfgs = {}
    for (n, iv, run), d in by.items():
        if "python" in d and "pqwatch" in d:
            cfgs.setdefault((n, iv), []).append(d)
    return cfgs


def block_peers(R):
    f = load(R, "fleet")
    if not f:
        return "_(no results yet)_"
    cfgs = peers_rows(f)
    rows = []
    for (n, iv), ds in sorted(cfgs.items(), key=lambda x: (x[0][1], x[0][0])):
        pq = [d["pqwatch"] for d in ds]
        py = [d["python"] for d in ds]
        c = [d["libmodbus-c"] for d in ds if "libmodbus-c" in d]
        ratio = med([b["cpu_us_per_read"] / a["cpu_us_per_read"] for a, b in zip(pq, py)])
        vs_c = med([a["cpu_us_per_read"] / d["libmodbus-c"]["cpu_us_per_request"] for a, d in zip(pq, ds)
                    if "libmodbus-c" in d])
        for name, rs in (("pqwatch", pq), ("Python (pymodbus asyncio)", py)):
            rows.append([f"{n:,} @ {iv:g} s", name, len(rs), rng([r["on_time_pct"] for r in rs], 2, "down"),
                         fmt(med([r["cores"] for r in rs]), 3, "up"),
                         fmt(med([r["cpu_s_per_1000_polls"] for r in rs]), 3, "up"),
                         fmt(med([r["cpu_us_per_read"] for r in rs]), 1, "up"),
                         fmt(med([r["rss_peak_mib"] for r in rs]), 1, "up"),
                         f"{fmt(med([r['poll_p50_ms'] for r in rs]))} / {fmt(med([r['poll_p99_ms'] for r in rs]))}",
                         ""])
        rows[-1][-1] = f"Python/pqwatch CPU per read: **{fmt(ratio, 1, 'down')}×**"
        if c:
            rows.append([f"{n:,} @ {iv:g} s", "C, libmodbus (1 connection, blocking loop)", len(c), "—", "—",
                         "—", fmt(med([r["cpu_us_per_request"] for r in c]), 1),
                         "—",
                         f"RTT {fmt(med([r['rtt_p50_ms'] for r in c]), 2)} / {fmt(med([r['rtt_p99_ms'] for r in c]), 2)}",
                         f"pqwatch/C CPU per read: **{fmt(vs_c, 2, 'up')}×**"])
    return table(["fleet", "poller", "runs", "on time %", "cores", "CPU s per 1,000 polls", "CPU µs per read",
                  "peak RSS MiB", "poll p50 / p99 ms", ""], rows)


def block_gateway(R):
    g = load(R, "gateway")
    if not g:
        return "_(no results yet)_"
    rows = [[f"`{p['profile']}`", p["fields"], p["registers"], p["reads"],
             f"{p['registers'] / p['reads']:.1f}×"] for p in g["profiles"]]
    t1 = table(["profile", "fields written (incl. derived)", "registers read (one read per field)",
                "reads per poll (pqwatch's plan)", "fewer requests"], rows)
    rows = []
    for r in sorted(g["runs"], key=lambda r: (r["latency_ms"], r["profile"])):
        rows.append([f"`{r['profile']}`", f"{r['latency_ms']} ms", r["k"], r["reads_per_poll"],
                     fmt(r["floor_nominal_s"], 3), f"{fmt(r['floor_measured_s'], 3)} ({fmt(r['c_rtt_mean_ms'], 2)} ms)",
                     fmt(r["cycle_s"], 3, "up"), f"{r['gap_nominal_pct']:+.1f} %", f"{r['gap_measured_pct']:+.1f} %",
                     fmt(r["pq_rtt_mean_ms"], 2), fmt(r["pq_cores"], 3, "up")])
    t2 = table(["profile", "latency L", "meters k", "reads r", "floor k·r·L s",
                "floor k·r·RTT(C) s (C client's mean RTT)", "achieved cycle s", "vs k·r·L", "vs k·r·RTT(C)",
                "pqwatch mean RTT ms", "pqwatch cores"], rows)
    return t1 + "\n\n" + t2


def block_floor(R):
    fl = load(R, "floor")
    if not fl:
        return "_(no results yet)_"
    rows = [[f"{r['latency_ms']} ms", f"{r['requests']:,}", fmt(r["wall_s"], 1), fmt(r["cpu_us_per_request"], 1),
             fmt(r["rtt_mean_ms"], 3), fmt(r["rtt_p50_ms"], 3), fmt(r["rtt_p99_ms"], 3)] for r in fl["runs"]]
    return table(["simulator latency", "requests", "seconds", "CPU µs per request", "RTT mean ms", "p50 ms", "p99 ms"], rows)


def block_reports(R):
    r = load(R, "reports")
    if not r:
        return "_(no results yet)_"
    p = r["parts_s"]
    return table(["", ""], [
        ["customers (one meter each)", f"{r['customers']:,} × `{r['profile']}`"],
        ["ledger", f"{r['days']} days × 1,440 minutes; {r['ledger_rows']:,} rows (one per meter and day, "
                   f"{r['ledger_row_kib']:.1f} KiB each), {r['events']:,} events; state DB {r['db_mib']:,.0f} MiB"],
        ["compute and render all reports (median of {})".format(len(r["runs_s"])),
         f"**{fmt(r['median_s'], 2, 'up')} s** ({', '.join(fmt(x, 2, 'up') for x in r['runs_s'])}); "
         f"{fmt(r['per_customer_ms'], 1, 'up')} ms per customer"],
        ["where it goes (one pass each)", f"ledger read + decode + merge {fmt(p['ledger_read'], 2)} s; events query "
         f"{fmt(p['events_query'], 2)} s ({p['events_rows_read']:,} event rows read); model {fmt(p['model_build'], 2)} s; "
         f"render (HTML, text, CSV) {fmt(p['render'], 2)} s"],
        ["ledger update per minute", f"{fmt(r['ledger_minute_us'], 2, 'up')} µs (`from_short_window` + merge, "
                                     f"`{r['profile']}`)"],
    ])


def targets(R):
    f = load(R, "fleet")
    g = load(R, "gateway")
    rows = []

    def fleet_target(n, iv):
        if not f:
            return
        rs = [r for r in f["runs"] if r["poller"] == "pqwatch" and r["n"] == n and r["interval_s"] == iv]
        for sink in ("victoria-metrics", "none"):
            s = [r for r in rs if r["sink"] == sink]
            if not s:
                continue
            on = med([r["on_time_pct"] for r in s])
            co = med([r["cores"] for r in s])
            mem = med([r["rss_peak_mib"] for r in s])
            label = f"{n:,} meters @ {iv:g} s, sink {sink}"
            rows.append([label, "≥ 99.9 % polls on time", f"{fmt(on, 2, 'down')} %", "met" if on >= 99.9 else "**missed**"])
            rows.append([label, "≤ 0.5 core", fmt(co, 3, "up"), "met" if co <= 0.5 else "**missed**"])
            rows.append([label, "≤ 256 MiB peak RSS", f"{fmt(mem, 0, 'up')} MiB", "met" if mem <= 256 else "**missed**"])

    fleet_target(10000, 5)
    fleet_target(2000, 1)
    if f:
        for (n, iv), ds in sorted(peers_rows(f).items()):
            vs_c = med([d["pqwatch"]["cpu_us_per_read"] / d["libmodbus-c"]["cpu_us_per_request"] for d in ds
                        if "libmodbus-c" in d])
            vs_py = med([d["python"]["cpu_us_per_read"] / d["pqwatch"]["cpu_us_per_read"] for d in ds])
            pq = med([d["pqwatch"]["cpu_us_per_read"] for d in ds])
            c = med([d["libmodbus-c"]["cpu_us_per_request"] for d in ds if "libmodbus-c" in d])
            if vs_c is not None:
                rows.append([f"{n:,} @ {iv:g} s", "CPU per read ≤ libmodbus C client's",
                             f"{fmt(pq, 1, 'up')} vs {fmt(c, 1)} µs ({fmt(vs_c, 2, 'up')}×)",
                             "met" if vs_c <= 1 else "**missed**"])
            nos = [r for r in f["runs"] if r["poller"] == "pqwatch" and r["sink"] == "none"
                   and r["n"] == n and r["interval_s"] == iv]
            if nos and c is not None:
                pn = med([r["cpu_us_per_read"] for r in nos])
                rows.append([f"{n:,} @ {iv:g} s", "… polling alone (sink none, same harness run) vs the C client",
                             f"{fmt(pn, 1, 'up')} vs {fmt(c, 1)} µs ({fmt(pn / c, 2, 'up')}×)",
                             "met" if pn <= c else "**missed**"])
            rows.append([f"{n:,} @ {iv:g} s", "CPU per read ≥ 4× lower than Python's",
                         f"{fmt(vs_py, 1, 'down')}× lower", "met" if vs_py >= 4 else "**missed**"])
    if g:
        for L in sorted({r["latency_ms"] for r in g["runs"]}):
            rs = [r for r in g["runs"] if r["latency_ms"] == L]
            worst = max(rs, key=lambda r: r["gap_nominal_pct"])
            worst_m = max(rs, key=lambda r: r["gap_measured_pct"])
            rows.append([f"one gateway, k = {worst['k']}, L = {L} ms", "cycle within 5 % of k × r × L",
                         f"worst {worst['gap_nominal_pct']:+.1f} % (`{worst['profile']}`); against the simulator's "
                         f"measured RTT worst {worst_m['gap_measured_pct']:+.1f} %",
                         ("met" if worst_m["gap_measured_pct"] <= 5 else "**missed**") + " against the measured L; "
                         + ("met" if worst["gap_nominal_pct"] <= 5 else "**missed**") + " against the nominal L"])
    rows.append(["outbox, one-hour backlog of 1,000 meters (part 6, not re-run)", "drain ≥ 200,000 points/s",
                 "776,563 points/s, 67 s for the hour (`ca217fa`)", "met"])
    r = load(R, "reports")
    if r:
        rows.append([f"{r['customers']:,} customers, 30 days of ledger (part 7)", "no target",
                     f"{fmt(r['median_s'], 2, 'up')} s to compute and render all reports", ""])
    return table(["configuration", "target", "measured (median)", ""], rows)


def block_profile(R):
    pr = load(R, "profile")
    if not pr:
        return "_(no results yet)_"
    rows = [[f"pqwatch, sink {r['sink']}", f"{r['reads']:,.0f}", fmt(r["cpu_us_per_read"], 1, "up"),
             fmt(r["syscalls_per_read"], 2), fmt(r["context_switches_per_read"], 2)] for r in pr["runs"]]
    c = pr.get("c_client")
    if c:
        rows.append(["C client (libmodbus)", f"{c['requests']:,}", fmt(c["cpu_us_per_request"], 1),
                     fmt(c["syscalls_per_request"], 2), fmt(c["context_switches_per_request"], 2)])
    t = table(["process", "requests", "CPU µs per request (perf task-clock; C: getrusage)", "syscalls per request",
               "context switches per request"], rows)
    parts = [t]
    for r in pr["runs"]:
        path = os.path.join(R, r["profile"])
        if os.path.exists(path):
            with open(path) as f:
                txt = f.read()
            dso = txt.split("## by dso\n", 1)[1].split("\n\n", 1)[0]
            dso = "\n".join(line.strip() for line in dso.splitlines())
            parts.append(f"Where pqwatch's CPU goes, sink {r['sink']} (`perf report --sort dso`, "
                         f"full profile in `benches/results/{r['profile']}`):\n\n```\n{dso.strip()}\n```")
    return "\n\n".join(parts)


BLOCKS = {
    "machine": block_machine,
    "hotpaths": block_hotpaths,
    "fleet-vm": lambda R: block_fleet(R, "victoria-metrics"),
    "fleet-none": lambda R: block_fleet(R, "none"),
    "peers": block_peers,
    "gateway": block_gateway,
    "floor": block_floor,
    "reports": block_reports,
    "targets": targets,
    "profile": block_profile,
}


def write(path, R):
    with open(path) as f:
        text = f.read()
    n = 0
    for name, fn in BLOCKS.items():
        pat = re.compile(rf"(<!-- bench:{re.escape(name)} -->\n).*?(<!-- /bench:{re.escape(name)} -->)", re.S)
        if pat.search(text):
            body = fn(R)
            text = pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
            n += 1
    with open(path, "w") as f:
        f.write(text)
    print(f"render.py: {n} blocks written to {path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--collect-criterion")
    ap.add_argument("--write")
    ap.add_argument("--print", dest="show")
    a = ap.parse_args()
    if a.collect_criterion:
        collect_criterion(a.collect_criterion, a.results)
    if a.write:
        write(a.write, a.results)
    if a.show:
        print(BLOCKS[a.show](a.results))


if __name__ == "__main__":
    main()
