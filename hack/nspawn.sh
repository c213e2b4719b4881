#!/usr/bin/env bash
# Puts systemd-nspawn under target/nspawn/ without installing anything, and prints its path:
# the systemd-container package of exactly the installed systemd's version (its binaries link
# the installed libsystemd-shared-NNN.so, which must match), fetched with `apt-get download`
# and unpacked with `dpkg-deb -x`. Installing the package instead could upgrade the host's
# systemd. Idempotent: a matching unpacked copy is reused, so it runs offline once fetched
# (integration/tests/systemd.rs calls it; `make vm-test` fetches through hack/deps.sh, as the
# guest has no network).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$(pwd)/target/nspawn"
ver=$(dpkg-query -W -f '${Version}' libsystemd-shared 2>/dev/null) ||
	{ echo "hack/nspawn.sh: libsystemd-shared is not installed (no systemd here)" >&2; exit 1; }
bin="$OUT/usr/bin/systemd-nspawn"
if [ -x "$bin" ] && [ "$(cat "$OUT/version" 2>/dev/null)" = "$ver" ]; then
	echo "$bin"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Root downloads into a private directory (apt's _apt user could not write there).
(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "systemd-container=$ver" >&2) ||
	{ echo "hack/nspawn.sh: cannot download systemd-container=$ver" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"
dpkg-deb -x "$tmp"/systemd-container_*.deb "$OUT"
echo "$ver" >"$OUT/version"
echo "$bin"
