#!/bin/sh
# Regenerates hack/daemon.order (read by build.rs), which lists the functions a release daemon
# runs so that the linker puts them together. Run as root on a quiet machine after
# `make release`, and commit the new order; `make text-order` does both.
#
# 1. A profiling build of the daemon with every function on a page of its own
#    (-align-all-functions=12), so that a touched page names one function.
# 2. `make bench` against it, with each daemon's touched text pages recorded
#    (hack/text-profile.c: fault-around off, a page counts only once it was touched). The
#    figures of this run are not meaningful.
# 3. hack/text-order.py: those functions, under the release binary's names (the profiling
#    build's symbol hashes differ, its flags being other).
# 4. The release build linked with that order, and the CRI part of the bench (`start,scale`:
#    the path kubelet drives) against it with its touched pages recorded; `text-order.py
#    --refine` puts the functions on those pages first, the ones step 3 could not name too.
set -eu
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
prof="$TARGET_DIR/text-profile"
out=$(mktemp -d /tmp/peapod-text-profile.XXXXXX)
RUSTFLAGS="-C llvm-args=-align-all-functions=12" \
  cargo build --release -p peapod --bin peapod --target-dir "$prof"
cp "$TARGET_DIR/release/peapod-shim" "$prof/release/peapod-shim"
cc -O2 -Wall -shared -fPIC -o "$out/text-profile.so" hack/text-profile.c -lpthread
cargo build --release -p peapod-integration --bin peapod-bench
LD_PRELOAD="$out/text-profile.so" PEAPOD_TEXT_PROFILE_DIR="$out" PEAPOD_IT_LOG_LEVEL=info \
  PEAPOD_BIN_DIR="$(pwd)/$prof/release" "$TARGET_DIR/release/peapod-bench" >"$out/bench.log" 2>&1 ||
  { tail -20 "$out/bench.log"; exit 1; }
set -- "$out"/pages.*
[ -e "$1" ] || { echo "no daemon recorded its pages (see $out/bench.log)"; exit 1; }
python3 hack/text-order.py "$prof/release/peapod" "$TARGET_DIR/release/peapod" hack/daemon.order "$@"
rm -f "$out"/pages.*
cargo build --release -p peapod --bin peapod
LD_PRELOAD="$out/text-profile.so" PEAPOD_TEXT_PROFILE_DIR="$out" PEAPOD_IT_LOG_LEVEL=info \
  PEAPOD_BENCH_ONLY=start,scale PEAPOD_BIN_DIR="$(pwd)/$TARGET_DIR/release" \
  "$TARGET_DIR/release/peapod-bench" >"$out/bench.log" 2>&1 || { tail -20 "$out/bench.log"; exit 1; }
set -- "$out"/pages.*
[ -e "$1" ] || { echo "no daemon recorded its pages (see $out/bench.log)"; exit 1; }
python3 hack/text-order.py --refine "$TARGET_DIR/release/peapod" hack/daemon.order "$@"
rm -rf "$out"
echo "hack/daemon.order written: make release links with it"
