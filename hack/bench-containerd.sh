#!/usr/bin/env bash
# Installs what `make bench` needs to run Debian's containerd beside peapod, from Debian's
# packages only. Idempotent: skips apt when everything is there.
#   containerd                   containerd, ctr and containerd-shim-runc-v2 (Debian 12: 1.6.20)
#   containernetworking-plugins  /usr/lib/cni/loopback, the only CNI plugin the bench uses
# The bench never uses the system's containerd: it runs its own on a private config, socket and
# directories. Debian ships only a systemd unit, so where PID 1 is not systemd (this project's
# machines) installing starts nothing; under systemd the package's postinst would start
# containerd.service, which the bench leaves alone.
# Exits non-zero (and says why on stderr) when they cannot be installed.
set -euo pipefail
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v ctr >/dev/null || need+=(containerd)
command -v containerd-shim-runc-v2 >/dev/null || need+=(containerd)
[ -x /usr/lib/cni/loopback ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t pkgs < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "hack/bench-containerd.sh: installing ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
