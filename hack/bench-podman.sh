#!/usr/bin/env bash
# Installs Debian's podman for `make bench` (the static-pod rows compare `podman kube play`),
# from Debian's packages only; catatonit is its infra container's init. Idempotent. The bench
# runs podman on a private root, runroot, network config dir and cgroupfs, never the system's.
# Debian's package also drops a CNI config (/etc/cni/net.d/87-podman-bridge.conflist) that any
# CNI runtime on the machine would then pick up, peapod's own "auto" network mode included:
# when the install put it there, it is removed again.
set -euo pipefail
conf=/etc/cni/net.d/87-podman-bridge.conflist
if ! command -v podman >/dev/null; then
  had_conf=0; [ -e "$conf" ] && had_conf=1
  had_dir=0; [ -d /etc/cni ] && had_dir=1
  echo "hack/bench-podman.sh: installing podman" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends podman catatonit >/dev/null
  if [ "$had_conf" = 0 ]; then
    rm -f "$conf"
    if [ "$had_dir" = 0 ]; then
      rmdir /etc/cni/net.d /etc/cni 2>/dev/null || true
    fi
  fi
fi
