#!/usr/bin/env bash
# Installs what peapod needs on a Debian machine, from Debian's packages only. Idempotent:
# skips apt entirely when everything is already there.
#   runc            the default OCI runtime handler
#   busybox-static  the fixture images' userland (hack/fixtures.py)
#   gcc libc6-dev   static test helpers (System V IPC tool)
#   python3         hack/fixtures.py, hack/push.py
#   python3-venv    the grpcio client test's venv, where python3 has no venv of its own
#   golang-go golang-google-grpc-dev  the grpc-go client test (built offline, GOPATH mode)
#   golang-github-docker-spdystream-dev  moby/spdystream, for the SPDY streaming client test
#   docker-registry a registry on loopback for the image tests
#   apache2-utils   htpasswd, for the registry with basic auth
#   iproute2 util-linux  inspection in tests and on nodes
#   containernetworking-plugins  the reference CNI plugins (bridge, host-local, loopback,
#                   portmap; in /usr/lib/cni) for the CNI client test
#   iptables        what portmap drives (a dependency of the plugins; the test reads it too)
#   nftables        nft, with which tests read peapod's table (peapod itself speaks nf_tables
#                   over netlink and needs no nft)
set -euo pipefail
need=()
command -v runc >/dev/null || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/google.golang.org/grpc ] || need+=(golang-google-grpc-dev)
[ -d /usr/share/gocode/src/github.com/moby/spdystream ] || need+=(golang-github-docker-spdystream-dev)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
for p in bridge host-local loopback portmap; do
  [ -x "/usr/lib/cni/$p" ] || { need+=(containernetworking-plugins); break; }
done
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need+=(iptables)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
  echo "hack/deps.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# systemd-nspawn for integration/tests/systemd.rs, unpacked under target/nspawn by
# hack/nspawn.sh and never installed (the package would pull in a systemd upgrade). Fetched
# here because the vm-test guest has no network; without it that test says why it skipped.
if dpkg-query -W libsystemd-shared >/dev/null 2>&1; then
  "$(dirname "$0")/nspawn.sh" >/dev/null ||
    echo "hack/deps.sh: no systemd-nspawn; integration/tests/systemd.rs will skip" >&2
fi
