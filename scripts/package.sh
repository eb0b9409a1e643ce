#!/usr/bin/env bash
# Build the Debian package: target/debian/pqwatch_<version>-1_<arch>.deb.
#
#   ./scripts/package.sh            # release build + .deb
#   sudo apt install ./target/debian/pqwatch_*.deb
#
# Installs cargo-deb (from crates.io, with cargo) when it is missing. The
# package holds /usr/bin/pqwatch, the systemd units (installed, not
# enabled), /etc/pqwatch/pqwatch.toml (a conffile: upgrades keep local
# edits), the docs and the Grafana dashboard; its postinst creates the
# `pqwatch` system user.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "==> installing cargo-deb" >&2
  cargo install cargo-deb --locked
fi
cargo deb "$@"
deb=$(ls -t target/debian/pqwatch_*.deb | head -1)
echo "==> built $deb" >&2
dpkg-deb --info "$deb" >&2
dpkg-deb --contents "$deb" >&2
