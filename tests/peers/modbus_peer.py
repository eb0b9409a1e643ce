#!/usr/bin/python3
"""Independent Modbus/TCP test peer for pqwatch's tests.

Runs with Debian's /usr/bin/python3 and python3-pymodbus (3.0.0), NOT with a
pyenv/venv python. It shares no code and no data with pqwatch: register
contents are encoded here with Python's `struct`, so a test that reads them
back through pqwatch checks pqwatch's decoder against an independent encoder.

Usage:
    /usr/bin/python3 tests/peers/modbus_peer.py --port 0 --spec spec.json

--port 0 lets the OS pick a free port. Once the socket is listening the
script prints `READY <port>` (the real port) on stdout and flushes.

Spec (JSON):
    {"units": {
        "1": {"holding": [ENTRY, ...], "input": [ENTRY, ...]},
        "7": {...}}}

ENTRY is either a typed value
    {"address": 19000, "type": "f32", "word_order": "ABCD", "value": 230.5}
or raw register words
    {"address": 19000, "raw": [65535, 65535]}   (ints, or strings "0xFFFF")

- address: the 0-based PDU ("wire") register address, 0..65535, exactly what
  a client puts in its request. (mbpoll's -r is 1-based: -r 19001 = wire 19000.)
- type: u16 i16 u32 i32 u64 i64 f32 f64. Integers must fit the type.
- word_order (default ABCD), named by where the bytes of the big-endian value
  A B C D (A..H for 64-bit) land on the wire:
    ABCD  big-endian, high word first          (f32 230.5 -> 0x4366 0x8000)
    CDAB  word order reversed (all words; for 64-bit GH EF CD AB)
                                                (f32 230.5 -> 0x8000 0x4366)
    BADC  bytes swapped inside each word, words big-endian
                                                (f32 230.5 -> 0x6643 0x0080)
    DCBA  fully little-endian                   (f32 230.5 -> 0x0080 0x6643)
  For 16-bit types ABCD/CDAB leave the word alone, BADC/DCBA swap its bytes.

Behaviour:
- Every unit has a full 65536-register holding and input table; registers not
  given in the spec read as 0. FC3 reads holding, FC4 reads input registers.
  Writes (FC6/FC16) are accepted and change the holding table.
- A request for a unit id that is NOT in the spec gets NO answer at all (the
  client times out). This is pymodbus's behaviour for unknown units when the
  spec has no unit 0 or 255; tests can rely on it to simulate a dead device.

pymodbus address quirk: by default (zero_mode=False) ModbusSlaveContext adds 1
to every request address before indexing the data block, so a value stored at
block index A is served for wire address A-1. This peer sets zero_mode=True so
block index == wire address; verified with mbpoll (see tests/harness_selftest.rs
which checks the same thing with a hand-written client).
"""

import argparse
import asyncio
import json
import logging
import signal
import struct
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server.async_io import ModbusTcpServer

REGISTERS = 65536

# type -> (struct format, number of 16-bit words)
TYPES = {
    "u16": (">H", 1),
    "i16": (">h", 1),
    "u32": (">I", 2),
    "i32": (">i", 2),
    "u64": (">Q", 4),
    "i64": (">q", 4),
    "f32": (">f", 2),
    "f64": (">d", 4),
}
WORD_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")


def encode(value, typ, word_order):
    """Encode value as a list of wire words (ints 0..65535)."""
    if typ not in TYPES:
        raise ValueError(f"unknown type {typ!r}; expected one of {sorted(TYPES)}")
    if word_order not in WORD_ORDERS:
        raise ValueError(f"unknown word_order {word_order!r}; expected one of {WORD_ORDERS}")
    fmt, nwords = TYPES[typ]
    if typ.startswith("f"):
        value = float(value)
    else:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{typ} value {value!r} is not an integer")
            value = int(value)
    try:
        be = struct.pack(fmt, value)  # big-endian bytes: A B C D ...
    except struct.error as exc:
        raise ValueError(f"cannot encode {value!r} as {typ}: {exc}") from exc
    assert len(be) == 2 * nwords
    # Big-endian words, high word first (ABCD).
    pairs = [(be[2 * i], be[2 * i + 1]) for i in range(nwords)]
    if word_order in ("CDAB", "DCBA"):
        pairs.reverse()
    if word_order in ("BADC", "DCBA"):
        pairs = [(lo, hi) for (hi, lo) in pairs]
    return [(hi << 8) | lo for (hi, lo) in pairs]


def parse_word(w):
    if isinstance(w, str):
        w = int(w, 0)
    if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= 0xFFFF:
        raise ValueError(f"raw word {w!r} is not an integer in 0..65535")
    return w


def entry_words(entry):
    if "raw" in entry:
        return [parse_word(w) for w in entry["raw"]]
    return encode(entry["value"], entry["type"], entry.get("word_order", "ABCD"))


def build_table(entries, where):
    table = [0] * REGISTERS
    owner = {}
    for entry in entries or []:
        try:
            address = int(entry["address"])
            words = entry_words(entry)
        except (KeyError, ValueError, TypeError) as exc:
            raise SystemExit(f"modbus_peer: bad entry {entry!r} in {where}: {exc}")
        if address < 0 or address + len(words) > REGISTERS:
            raise SystemExit(f"modbus_peer: entry {entry!r} in {where} is out of 0..65535")
        for i, w in enumerate(words):
            a = address + i
            if a in owner:
                raise SystemExit(
                    f"modbus_peer: register {a} in {where} set twice "
                    f"({owner[a]!r} and {entry!r})"
                )
            owner[a] = entry
            table[a] = w
    return table


def build_context(spec):
    units = spec.get("units")
    if not isinstance(units, dict) or not units:
        raise SystemExit('modbus_peer: spec needs a non-empty "units" object')
    slaves = {}
    for unit, tables in units.items():
        unit_id = int(unit)
        if not 0 <= unit_id <= 255:
            raise SystemExit(f"modbus_peer: unit id {unit!r} out of 0..255")
        holding = build_table(tables.get("holding"), f"unit {unit} holding")
        inputs = build_table(tables.get("input"), f"unit {unit} input")
        slaves[unit_id] = ModbusSlaveContext(
            di=ModbusSequentialDataBlock(0, [0] * REGISTERS),
            co=ModbusSequentialDataBlock(0, [0] * REGISTERS),
            hr=ModbusSequentialDataBlock(0, holding),
            ir=ModbusSequentialDataBlock(0, inputs),
            # Block index == wire address (see module docstring).
            zero_mode=True,
        )
    return ModbusServerContext(slaves=slaves, single=False)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--spec", required=True, help="JSON spec file")
    parser.add_argument("--verbose", action="store_true", help="pymodbus debug logging")
    args = parser.parse_args()

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pymodbus 3.0.0 logs every ordinary client disconnect at ERROR level
    # ("Handler for stream [...] has been canceled"); keep the log readable.
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda rec: "has been canceled" not in rec.getMessage())

    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    context = build_context(spec)

    loop = asyncio.get_running_loop()
    server = ModbusTcpServer(
        context,
        address=(args.host, args.port),
        allow_reuse_address=True,
        loop=loop,
    )
    task = asyncio.create_task(server.serve_forever())
    # `serving` resolves once the listening socket exists (or the task fails).
    done, _ = await asyncio.wait(
        {task, server.serving}, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        task.result()  # raises the bind error
        raise SystemExit("modbus_peer: server stopped before it was ready")
    port = server.server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.wait(
        {task, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    await server.server_close()
    task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
