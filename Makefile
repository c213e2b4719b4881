# peapod: the two commands a new user needs are `make run` and `make test`.
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RELEASE_DIR := $(TARGET_DIR)/release

.PHONY: all build release deps run test test-long unit e2e lint bench clean-test deb fuzz text-order

all: build

deps:
	hack/deps.sh

build:
	$(CARGO) build --workspace

# The monitor is linked statically (non-PIE): one runs per container, and a static binary's
# pages are its own file pages, shared by all monitors (about 1.1 MiB RSS, 60 KiB private).
SHIM_TARGET := x86_64-unknown-linux-gnu
release:
	$(CARGO) build --workspace --release
	RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
	  $(CARGO) build -p peapod-shim --release --target $(SHIM_TARGET) --target-dir $(TARGET_DIR)/shim-static
	rm -f $(RELEASE_DIR)/peapod-shim  # a hard link into deps/: replace, never write through
	cp $(TARGET_DIR)/shim-static/$(SHIM_TARGET)/release/peapod-shim $(RELEASE_DIR)/peapod-shim

# Run the daemon with embedded defaults: CRI socket /run/peapod/peapod.sock, data in
# /var/lib/peapod, state in /run/peapod. Needs root.
run: deps release
	$(RELEASE_DIR)/peapod daemon

# Every test: unit tests beside the code, then the root-only end-to-end suite against real
# daemons, runc, namespaces and cgroups.
# The kill -9 churn of integration/tests/crash.rs runs 20 kills here and 1000 in test-long.
test: deps build
	PEAPOD_CHURN_KILLS=$${PEAPOD_CHURN_KILLS:-20} $(CARGO) test --workspace --no-fail-fast

# The kill -9 churn at ten times its usual length (integration/tests/crash.rs); replay a failed
# run with PEAPOD_CHURN_SEED=N from its output.
test-long: deps build
	PEAPOD_CHURN_KILLS=$${PEAPOD_CHURN_KILLS:-1000} $(CARGO) test -p peapod-integration --test crash -- --nocapture

unit:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The Debian package (target/deb/peapod_<version>_<arch>.deb): peapod, the static monitor, the
# systemd unit, the default config and the manifest directory. Install it with
# `apt-get install ./target/deb/peapod_*.deb`.
deb: release
	hack/deb.sh $(RELEASE_DIR) $(TARGET_DIR)/deb

# Long fuzz runs of the targets in tests/fuzz (cargo test runs each for 2 s): FUZZ_TIME seconds
# per target. With cargo-bolero and a nightly toolchain each runs under libFuzzer, coverage
# guided, growing its corpus in tests/fuzz/__fuzz__ (commit only small, interesting additions);
# otherwise the same tests run on stable with random inputs for that long. Lints are capped there:
# cargo-bolero builds with --cfg fuzzing, which turns on h2's undocumented fuzz module, and the
# vendored h2 denies missing docs.
FUZZ_TIME ?= 600
FUZZ_TARGETS := tar_layer::raw_tar tar_layer::tar_entries image_json::manifest_or_index \
  reference::reference_string reference::reference_parts reference::basic_auth \
  cri_spec::container_config cri_spec::container_edits cri_spec::sandbox_config \
  cri_spec::image_config_json manifest::manifest_file
fuzz:
	@if command -v cargo-bolero >/dev/null && rustup run nightly rustc -V >/dev/null 2>&1; then \
	  for t in $(FUZZ_TARGETS); do \
	    echo "== $$t (libFuzzer, $(FUZZ_TIME) s)"; \
	    RUSTFLAGS="--cap-lints=warn" \
	      $(CARGO) bolero test --toolchain nightly -p peapod --target-dir $(TARGET_DIR)/fuzz \
	      -T $(FUZZ_TIME)s $$t || exit 1; \
	  done; \
	else \
	  echo "cargo-bolero or nightly missing: random inputs on stable, $(FUZZ_TIME) s per target"; \
	  BOLERO_RANDOM_TEST_TIME_MS=$$(( $(FUZZ_TIME) * 1000 )) $(CARGO) test --test fuzz; \
	fi

# Benchmarks (not tests): peapod beside containerd and the floors under both (bare runc, tar -xzf):
# pod start, memory and List at 20 to 250 pods, exec, image pull, pod network, static pods.
# `make bench PEAPOD_BENCH_ONLY=pull,scale` runs only the parts named (start, scale, exec, pull,
# net, static; see integration/src/bench/parts.rs).
bench: deps release
	$(CARGO) build --release -p peapod-integration --bin peapod-bench
	PEAPOD_IT_LOG_LEVEL=$${PEAPOD_IT_LOG_LEVEL:-info} PEAPOD_BIN_DIR=$(abspath $(RELEASE_DIR)) \
	  $(RELEASE_DIR)/peapod-bench

# The end-to-end suite in a qemu VM on a pure cgroup v2 host.
include hack/vm/vm.mk

# The release daemon's code layout (hack/daemon.order, read by build.rs): a bench run with each
# daemon's touched code pages recorded, so that the code a daemon runs is linked together.
text-order: deps release
	hack/text-profile.sh
