#!/usr/bin/env bash
# pqwatch's benchmarks, one command:   ./benches/run.sh
#
#   ./benches/run.sh            every part (about an hour on 2 cores)
#   ./benches/run.sh --quick    a short smoke run of every part (a few minutes;
#                               its figures are NOT written to BENCHMARKS.md)
#   ./benches/run.sh --parts hotpaths,fleet,gateway,floor,profile,reports,outbox
#                               only these parts (default: all but outbox,
#                               whose 6-minute run is already in BENCHMARKS.md)
#   ./benches/run.sh --no-render   measure, but leave BENCHMARKS.md alone
#
# 1. Installs what it needs if missing (Debian: libmodbus-dev, gcc,
#    pkg-config, python3-pymodbus and what its client imports,
#    victoria-metrics, linux-perf for the profile part; criterion comes
#    with `cargo bench`).
# 2. Builds the release binary, the benches and the libmodbus C client
#    (benches/fleet/peers/modbus_floor.c → target/bench/modbus_floor).
# 3. Runs the parts:
#      hotpaths  criterion: plan, decode, line protocol, outbox commit, the
#                watch's aggregation, rules and ledger (benches/hotpaths.rs)
#      fleet     the simulator (its own process) serving N meters over N/50
#                gateways, pqwatch polling them; and on the same fleet, side
#                by side, the Python poller
#                (benches/fleet/peers/python_poller.py) and the C client
#                (benches/fleet/harness.py)
#      gateway   one gateway's achieved cycle against k × reads × latency,
#                per built-in profile
#      floor     the C client's CPU per request, alone
#      profile   where pqwatch's CPU per read goes: perf stat (syscalls and
#                context switches per read) and a flat perf profile, 2,000
#                meters at 1 s with and without the sink; the C client's
#                syscalls per request
#      reports   1,000 customers' monthly reports from 30 days of ledger
#                (benches/reports.rs)
#      outbox    the existing outbox benchmark (benches/outbox.rs)
#    Results go to benches/results/*.json (criterion's to target/criterion).
# 4. benches/render.py writes the figures into BENCHMARKS.md (between its
#    `<!-- bench:... -->` markers; the text around them is kept).
#
# Environment: HARNESS_ARGS is passed to benches/fleet/harness.py (e.g.
# "--window 30 --runs 3 --fleet 10000@5"). Every process the run starts is
# stopped when it ends or is interrupted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'benches/run.sh: error: %s\n' "$*" >&2; exit 1; }

QUICK=0
RENDER=1
PARTS="hotpaths,fleet,gateway,floor,profile,reports"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-render) RENDER=0 ;;
    --parts) shift; PARTS="${1:?--parts needs a list}" ;;
    --parts=*) PARTS="${1#--parts=}" ;;
    -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
has_part() { [[ ",$PARTS," == *",$1,"* ]]; }

# Children of this script (cargo bench, the harness) are stopped on exit;
# the harness stops its own children (simulator, pqwatch, servers, peers).
CHILD=""
cleanup() {
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
run() { "$@" & CHILD=$!; wait "$CHILD"; local rc=$?; CHILD=""; return $rc; }

# 1. Debian packages
PACKAGES=(libmodbus-dev gcc pkg-config python3-pymodbus python3-serial python3-serial-asyncio victoria-metrics)
has_part profile && PACKAGES+=(linux-perf)
missing=()
for p in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing Debian packages: ${missing[*]} (not root and no sudo)"
    SUDO=(sudo)
  fi
  log "installing missing Debian packages: ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || die "apt-get update failed"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"
fi
/usr/bin/python3 -c 'import pymodbus.client' 2>/dev/null || die "/usr/bin/python3 cannot import pymodbus"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH"

# 2. Builds
TARGET="${CARGO_TARGET_DIR:-target}"
log "cargo build --release (pqwatch) and the benches"
cargo build --release --bin pqwatch
cargo bench --no-run --bench hotpaths --bench reports --bench outbox
mkdir -p "$TARGET/bench"
log "gcc: benches/fleet/peers/modbus_floor.c"
gcc -O2 -Wall -o "$TARGET/bench/modbus_floor" benches/fleet/peers/modbus_floor.c \
  $(pkg-config --cflags --libs libmodbus) -lm
export PQWATCH_BIN="$TARGET/release/pqwatch" MODBUS_FLOOR_BIN="$TARGET/bench/modbus_floor"

RESULTS=benches/results
if [ "$QUICK" -eq 1 ]; then
  RESULTS=$(mktemp -d /tmp/pqwatch-bench-quick-XXXXXX)
  log "quick run: results in $RESULTS (BENCHMARKS.md is not touched)"
  RENDER=0
fi
mkdir -p "$RESULTS"
export PQWATCH_BENCH_RESULTS="$RESULTS"

# 3. Parts
if has_part hotpaths; then
  log "part 1: hot paths (criterion)"
  if [ "$QUICK" -eq 1 ]; then
    run cargo bench --bench hotpaths -- --quick
  else
    run cargo bench --bench hotpaths -- --warm-up-time 1 --measurement-time 3
  fi
  /usr/bin/python3 benches/render.py --collect-criterion "$TARGET/criterion" --results "$RESULTS"
fi
harness=()
has_part fleet && harness+=(fleet)
has_part gateway && harness+=(gateway)
has_part floor && harness+=(floor)
has_part profile && harness+=(profile)
if [ "${#harness[@]}" -gt 0 ]; then
  log "parts 2-5: ${harness[*]} (benches/fleet/harness.py)"
  q=()
  [ "$QUICK" -eq 1 ] && q=(--quick)
  # shellcheck disable=SC2086
  run /usr/bin/python3 benches/fleet/harness.py "${harness[@]}" "${q[@]}" ${HARNESS_ARGS:-}
fi
if has_part reports; then
  log "part 7: reports"
  if [ "$QUICK" -eq 1 ]; then
    run env PQWATCH_BENCH_CUSTOMERS=50 PQWATCH_BENCH_TEMPLATES=1 PQWATCH_BENCH_REPS=1 \
      PQWATCH_BENCH_JSON="$RESULTS/reports.json" cargo bench --bench reports
  else
    run env PQWATCH_BENCH_JSON="$RESULTS/reports.json" cargo bench --bench reports
  fi
fi
if has_part outbox; then
  log "part 6: outbox (benches/outbox.rs; its figures are kept by hand in BENCHMARKS.md)"
  if [ "$QUICK" -eq 1 ]; then
    run env PQWATCH_BENCH_SECTIONS=commit PQWATCH_BENCH_REPS=1 cargo bench --bench outbox
  else
    run cargo bench --bench outbox
  fi
  cp target/bench-outbox.md "$RESULTS/outbox.md" 2>/dev/null || true
fi

# 4. BENCHMARKS.md
if [ "$RENDER" -eq 1 ]; then
  log "benches/render.py: BENCHMARKS.md"
  /usr/bin/python3 benches/render.py --results "$RESULTS" --write BENCHMARKS.md
fi
log "done; results in $RESULTS"
