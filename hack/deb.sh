#!/usr/bin/env bash
# Builds peapod's Debian package from already built binaries, with dpkg-deb (no packaging
# toolchain beyond dpkg itself).
#
#   hack/deb.sh BIN_DIR OUT_DIR    -> OUT_DIR/peapod_<version>_<arch>.deb
#
# BIN_DIR holds peapod and peapod-shim: `make deb` passes the release build, whose shim is
# static; the package test passes the debug build it runs everywhere else.
# DEB_COMPRESS: dpkg-deb's compressor (default gzip; the test uses none, to spend no time on it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR="${1:?usage: hack/deb.sh BIN_DIR OUT_DIR}"
OUT_DIR="${2:?usage: hack/deb.sh BIN_DIR OUT_DIR}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
ARCH="$(dpkg --print-architecture)"
for b in peapod peapod-shim; do
	[ -x "$BIN_DIR/$b" ] || { echo "deb: $BIN_DIR/$b missing: build first" >&2; exit 1; }
done
mkdir -p "$OUT_DIR"
STAGE="$(mktemp -d "$OUT_DIR/.stage.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
chmod 0755 "$STAGE"  # the package's root: what dpkg records for /

install -D -m 0755 "$BIN_DIR/peapod" "$STAGE/usr/bin/peapod"
install -D -m 0755 "$BIN_DIR/peapod-shim" "$STAGE/usr/bin/peapod-shim"
install -D -m 0644 contrib/peapod.service "$STAGE/lib/systemd/system/peapod.service"
install -D -m 0644 contrib/config.toml "$STAGE/etc/peapod/config.toml"
install -d -m 0755 "$STAGE/etc/peapod/manifests"
install -D -m 0644 README.md "$STAGE/usr/share/doc/peapod/README.md"
install -D -m 0644 examples/README.md "$STAGE/usr/share/doc/peapod/examples/README.md"
for f in examples/*.yaml; do
	install -m 0644 "$f" "$STAGE/usr/share/doc/peapod/examples/"
done
# Stripped: the package carries no debug info (a debug build's binaries are hundreds of MiB).
strip --strip-debug "$STAGE/usr/bin/peapod" "$STAGE/usr/bin/peapod-shim"

install -d "$STAGE/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "contrib/deb/$s" "$STAGE/DEBIAN/$s"
done
echo /etc/peapod/config.toml >"$STAGE/DEBIAN/conffiles"
SIZE_KB="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
cat >"$STAGE/DEBIAN/control" <<CONTROL
Package: peapod
Version: $VERSION
Architecture: $ARCH
Maintainer: peapod developers <peapod@localhost>
Installed-Size: $SIZE_KB
Depends: runc | crun, init-system-helpers (>= 1.54~)
Recommends: nftables
Section: admin
Priority: optional
Description: single-node pod runtime: a CRI server and static pods
 peapod runs Kubernetes pods on one node: kubelet (or crictl) talks to its
 CRI socket at /run/peapod/peapod.sock, and Pod manifests in
 /etc/peapod/manifests run with kubelet's lifecycle, managed with the
 kubectl-like peapod CLI. Containers run through an OCI runtime (runc, crun,
 youki) under a small per-container monitor.
CONTROL
DEB="$OUT_DIR/peapod_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group "-Z${DEB_COMPRESS:-gzip}" --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
