#!/usr/bin/env bash
# The one test command of pqwatch: ./scripts/test.sh
#
# 1. Installs the Debian packages the tests need, if missing (idempotent; runs
#    `apt-get update` only when something has to be installed).
# 2. Checks that Debian's /usr/bin/python3 can import pymodbus (the Modbus
#    test peer runs on it, not on a pyenv/venv python).
# 3. cargo build --all-targets (benches included), then cargo test on the
#    library, binaries and integration tests (benches run with `cargo bench`).
# Extra arguments are passed to `cargo test` (e.g. ./scripts/test.sh -- --nocapture).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'scripts/test.sh: error: %s\n' "$*" >&2; exit 1; }

# Debian packages used by the tests (test servers, the Modbus peer, tools).
#   python3-serial{,-asyncio}: pymodbus' server module imports them, but
#   python3-pymodbus only *recommends* them, so name them explicitly.
#   faketime: the scheduled-report test runs the daemon at the end of a month.
#   chromium, fonts-wqy-microhei: the report HTML is rendered and checked as
#   a person would see it, Chinese text included.
#   python3-prometheus-client: an independent parser of the /metrics text.
PACKAGES=(
  victoria-metrics
  influxdb
  python3-pymodbus
  python3-serial
  python3-serial-asyncio
  mbpoll
  python3-aiosmtpd
  faketime
  chromium
  fonts-wqy-microhei
  python3-prometheus-client
)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [ "$status" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
    die "missing Debian packages: ${missing[*]} (not root and no sudo: install them by hand)"
  fi
  log "installing missing Debian packages: ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
    || die "apt-get update failed"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"
  log "installed: ${missing[*]}"
else
  log "Debian packages present: ${PACKAGES[*]}"
fi

# The Modbus peer (tests/peers/modbus_peer.py) runs on Debian's python.
if ! err=$(/usr/bin/python3 -c 'import pymodbus, pymodbus.server.async_io, pymodbus.datastore' 2>&1); then
  printf '%s\n' "$err" >&2
  die "/usr/bin/python3 cannot import pymodbus (packages python3-pymodbus, python3-serial-asyncio)"
fi
log "pymodbus $(/usr/bin/python3 -c 'import pymodbus; print(pymodbus.__version__)') OK on /usr/bin/python3"

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH"

log "cargo build --all-targets"
cargo build --all-targets

log "cargo test --lib --bins --tests $*  (benches are built above; run them with cargo bench)"
cargo test --lib --bins --tests "$@"
