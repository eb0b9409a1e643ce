#!/usr/bin/python3
"""A usual alternative to pqwatch, for the benchmarks: a small Python poller.

pymodbus (asyncio, Debian's python3-pymodbus) with one task per gateway,
polling every meter behind it on the same wall-clock schedule as pqwatch
(instants aligned to multiples of the interval, missed instants skipped and
counted, never queued), issuing the same reads as pqwatch's plan for the
profile, decoding every register of the profile's map (type, word order,
scale), and writing one InfluxDB line-protocol line per poll over HTTP
(gzip, flushed every second or at 5,000 points) to the same
VictoriaMetrics. What it does not do, and pqwatch does: unit conversion and
derived fields, a durable outbox, rules, the report ledger, metrics.

It is driven by benches/fleet/harness.py:

    python_poller.py SPEC.json STATS.json

SPEC: {"interval_s", "timeout_s", "influx_url" (or null), "reads":
[[fc, start, count], ...], "layout": [[name, fc, address, type, order,
scale], ...], "gateways": [{"host", "port", "meters": [{"id", "unit",
"customer"}]}]}.

On SIGUSR1 it writes its counters, and the poll start delays and poll
durations seen since the previous SIGUSR1, to STATS (atomically), so the
harness can take a measurement window. SIGTERM stops it.
"""

import asyncio
import gzip
import json
import os
import signal
import struct
import sys
import time
import urllib.request

from pymodbus.client import AsyncModbusTcpClient

WORDS = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "u64": 4, "i64": 4, "f64": 4}
FMT = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "f32": ">f",
       "u64": ">Q", "i64": ">q", "f64": ">d"}


def word_perm(order, n):
    """Wire word index for each big-endian position, and byte swap."""
    if order in ("ABCD", "BADC"):
        idx = list(range(n))
    else:  # CDAB, DCBA: low word first
        idx = list(reversed(range(n)))
    return idx, order in ("BADC", "DCBA")


class Decoder:
    """Per read: the fields it serves, with precomputed offsets."""

    def __init__(self, reads, layout):
        self.plan = []
        for fc, start, count in reads:
            items = []
            for name, lfc, addr, typ, order, scale in layout:
                n = WORDS[typ]
                if lfc == fc and addr >= start and addr + n <= start + count:
                    idx, swap = word_perm(order, n)
                    items.append((name, addr - start, idx, swap, struct.Struct(FMT[typ]), scale))
            self.plan.append(((fc, start, count), items))

    @staticmethod
    def decode(items, regs, out):
        for name, off, idx, swap, st, scale in items:
            b = bytearray()
            for i in idx:
                w = regs[off + i]
                if swap:
                    b += bytes((w & 0xFF, w >> 8))
                else:
                    b += bytes((w >> 8, w & 0xFF))
            v = st.unpack(b)[0] * scale
            if v == v and v not in (float("inf"), float("-inf")):
                out.append((name, v))


class Stats:
    def __init__(self):
        self.polls_ok = 0
        self.polls_failed = 0
        self.reads_ok = 0
        self.reads_failed = 0
        self.skipped = 0
        self.points_written = 0
        self.batches_failed = 0
        self.delays_ms = []
        self.durations_ms = []


def line_for(meter, ts_ms, values):
    fields = ",".join(f"{k}={v!r}" for k, v in values)
    return f"meter,customer={meter['customer']},meter={meter['id']} {fields} {ts_ms}"


async def gateway_task(gw, spec, dec, stats, buf, stop):
    interval_ms = int(spec["interval_s"] * 1000)
    timeout = spec["timeout_s"]
    client = None
    now = int(time.time() * 1000)
    nxt = [(now // interval_ms + 1) * interval_ms for _ in gw["meters"]]
    while not stop.is_set():
        due = min(nxt)
        wait = (due - time.time() * 1000) / 1000
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), wait)
                break
            except asyncio.TimeoutError:
                pass
        for k, meter in enumerate(gw["meters"]):
            if stop.is_set():
                break
            now = int(time.time() * 1000)
            if nxt[k] > now:
                continue
            at = nxt[k]
            if now >= at + interval_ms:
                missed = (now - at) // interval_ms
                stats.skipped += missed
                at += missed * interval_ms
            nxt[k] = at + interval_ms
            stats.delays_ms.append(now - at)
            t0 = time.monotonic()
            if client is None or not client.connected:
                client = AsyncModbusTcpClient(gw["host"], port=gw["port"], timeout=timeout, retries=0)
                await client.connect()
            values = []
            ok = 0
            for (fc, start, count), items in dec.plan:
                try:
                    if fc == 4:
                        rr = await client.read_input_registers(start, count, slave=meter["unit"])
                    else:
                        rr = await client.read_holding_registers(start, count, slave=meter["unit"])
                except Exception:  # timeout or transport error: drop the connection
                    stats.reads_failed += 1
                    await client.close()
                    client = None
                    break
                if rr.isError() or len(rr.registers) < count:
                    stats.reads_failed += 1
                    continue
                stats.reads_ok += 1
                ok += 1
                dec.decode(items, rr.registers, values)
            stats.durations_ms.append((time.monotonic() - t0) * 1000)
            if ok == 0:
                stats.polls_failed += 1
                continue
            stats.polls_ok += 1
            if values:
                buf.append((line_for(meter, at, values), len(values)))
    if client is not None:
        await client.close()


def post(url, body):
    req = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


async def writer_task(spec, stats, buf, stop):
    url = spec.get("influx_url")
    if url:
        url = url.rstrip("/") + "/api/v2/write?org=o&bucket=b&precision=ms"
    last = time.monotonic()
    while True:
        stopping = stop.is_set()
        points = sum(n for _, n in buf)
        if buf and (points >= 5000 or time.monotonic() - last >= 1.0 or stopping):
            batch = buf[:]
            buf.clear()
            last = time.monotonic()
            n = sum(k for _, k in batch)
            if url:
                body = gzip.compress("\n".join(l for l, _ in batch).encode(), compresslevel=1)
                try:
                    await asyncio.to_thread(post, url, body)
                    stats.points_written += n
                except Exception:
                    stats.batches_failed += 1
            else:
                stats.points_written += n
        if stopping and not buf:
            return
        await asyncio.sleep(0.05)


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def main():
    spec = json.load(open(sys.argv[1]))
    stats_path = sys.argv[2]
    dec = Decoder(spec["reads"], spec["layout"])
    stats = Stats()
    buf = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def dump():
        d, u = stats.delays_ms, stats.durations_ms
        stats.delays_ms, stats.durations_ms = [], []
        out = {
            "t": time.time(), "polls_ok": stats.polls_ok, "polls_failed": stats.polls_failed,
            "reads_ok": stats.reads_ok, "reads_failed": stats.reads_failed,
            "skipped": stats.skipped, "points_written": stats.points_written,
            "batches_failed": stats.batches_failed, "samples": len(d),
            "delay_p50_ms": pct(d, 0.5), "delay_p99_ms": pct(d, 0.99),
            "duration_p50_ms": pct(u, 0.5), "duration_p99_ms": pct(u, 0.99),
        }
        tmp = stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.replace(tmp, stats_path)

    loop.add_signal_handler(signal.SIGUSR1, dump)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks = [asyncio.create_task(gateway_task(gw, spec, dec, stats, buf, stop))
             for gw in spec["gateways"]]
    w = asyncio.create_task(writer_task(spec, stats, buf, stop))
    print("python poller running", len(tasks), "gateways", flush=True)
    await asyncio.gather(*tasks)
    await w


if __name__ == "__main__":
    asyncio.run(main())
