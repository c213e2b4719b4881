#!/usr/bin/env bash
# Installs Debian's podman for `make bench` (the static-pod rows compare `podman kube play`),
# from Debian's packages only; catatonit is its infra container's init. Idempotent. The bench
# runs podman on a private root, runroot and cgroupfs, never the system's storage.
set -euo pipefail
if ! command -v podman >/dev/null; then
  echo "hack/bench-podman.sh: installing podman" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends podman catatonit >/dev/null
fi
