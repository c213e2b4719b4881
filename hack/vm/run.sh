#!/usr/bin/env bash
# `make vm-test`: peapod's end-to-end tests as root on a pure cgroup v2 host, in a qemu VM.
#
#   hack/vm/run.sh            build on the host, boot the guest, run the plan, exit with its status
#
# The guest boots Debian's kernel with an initramfs (hack/vm/build.sh) whose init mounts the
# host's root filesystem read-only over 9p (under a tmpfs overlay) and this repository
# read-write, so the guest runs the host's own runc, crun, python3, gcc and the test binaries
# built here, with no root filesystem image. Its serial console streams to this terminal (and
# target/vm/console.log); its result marker becomes this script's exit status. It has no
# network device.
#
# Environment:
#   VM_TESTS     integration test binaries to run, in order (default: all, cgroup_v2 first);
#                a name may carry libtest arguments after a colon, e.g.
#                "cgroup_v2 pod_lifecycle:remove_leaves" (several: "security:--exact,oom_kill_is_reported")
#   VM_TIMEOUT   wall-clock bound of the whole VM run in seconds (default 2700)
#   VM_ACCEL     auto (probe KVM with a short boot, else TCG), tcg or kvm (default auto)
#   VM_CPUS, VM_MEM_MB   guest size (default 2 vCPUs, 3072 MiB)
#   VM_TEST_THREADS      libtest threads per binary in the guest (default 1)
#   VM_LANES             test binaries run at the same time in the guest (default 2)
#   VM_BIN_TIMEOUT       bound of each test binary in the guest in seconds (default 600)
#   VM_NO_BUILD=1        skip the cargo build (use what target/ holds)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$(pwd)"
CARGO="${CARGO:-cargo}"
OUT="$REPO/target/vm"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO/$TARGET_DIR" ;; esac
case "$REPO" in *[[:space:],]*)
	echo "vm-test: the repository path must have no spaces or commas (qemu and kernel options): $REPO" >&2
	exit 1 ;;
esac

# Default: every test binary of the workspace's integration tests (integration/tests/*.rs,
# shim/tests/*.rs), cgroup_v2 first: the tests only this VM can run.
VM_TESTS="${VM_TESTS:-}"
VM_TIMEOUT="${VM_TIMEOUT:-2700}"
VM_ACCEL="${VM_ACCEL:-auto}"
VM_CPUS="${VM_CPUS:-2}"
VM_MEM_MB="${VM_MEM_MB:-3072}"
VM_TEST_THREADS="${VM_TEST_THREADS:-1}"

log() { echo "vm-test: $*" >&2; }
mkdir -p "$OUT"
# One VM run per repository at a time: the guest writes target/vm.
exec 9>"$OUT/.lock"
flock -n 9 || { log "another vm-test is running in this repository"; exit 1; }

# 1. The host builds everything the guest runs.
if [ "${VM_NO_BUILD:-}" != 1 ]; then
	$CARGO build --workspace
	$CARGO test --workspace --no-run --message-format=json-render-diagnostics >"$OUT/artifacts.json"
fi
[ -s "$OUT/artifacts.json" ] || { log "no $OUT/artifacts.json: run without VM_NO_BUILD=1 once"; exit 1; }
python3 hack/fixtures.py "$REPO/target/fixtures" >/dev/null

# 2. The plan: one line per test binary, absolute path and libtest arguments.
# shellcheck disable=SC2086 # VM_TESTS is a list of names, split on purpose
python3 - "$OUT/artifacts.json" "$VM_TEST_THREADS" $VM_TESTS >"$OUT/plan" <<'EOF'
import json, sys
path, threads, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
exes = {}
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["kind"] == ["test"]:
        exes[m["target"]["name"]] = m["executable"]
# The longest binaries first (seconds under TCG, as last measured), so that the lanes of the
# guest end together rather than one running a long binary alone at the end; cgroup_v2 leads,
# as the tests only this VM can run.
slow = {"cve": 275, "static_pods": 182, "crash": 155, "events": 143, "probes": 128,
        "streaming": 83, "node": 63, "cli": 60, "grpc_interop": 58, "examples": 55,
        "pod_lifecycle": 54, "log_reopen": 52, "systemd": 46, "security": 45, "stats": 41,
        "sandbox_image": 40, "runtime_info": 39, "images": 38, "runc": 35, "pod_network": 34}
if not wanted:
    wanted = ["cgroup_v2"] + sorted((n for n in exes if n != "cgroup_v2"),
                                    key=lambda n: (-slow.get(n, 30), n))
for w in wanted:
    name, _, filt = w.partition(":")
    if name not in exes:
        sys.exit(f"vm-test: no test binary {name!r}; built: {sorted(exes)}")
    args = filt.replace(",", " ").split()
    if name == "cgroup_v2":
        # Its tests are #[ignore]d (they need a pure cgroup v2 host): this guest is one. Only
        # this binary, so other ignored tests stay ignored.
        if "--ignored" not in args and "--include-ignored" not in args:
            args.append("--include-ignored")
        # It prints the pod start latency per runtime handler: let it reach the console.
        if "--nocapture" not in args:
            args.append("--nocapture")
    if name in ("systemd", "package") and "--nocapture" not in args:
        # A skip is a pass to libtest: its "skipped: ..." line must reach the log.
        args.append("--nocapture")
    print(exes[name], f"--test-threads={threads}", *args)
EOF
# Where the guest finds peapod and peapod-shim (the harness's PEAPOD_BIN_DIR).
printf 'PEAPOD_BIN_DIR=%q\nVM_BIN_TIMEOUT=%q\nVM_LANES=%q\n' "$TARGET_DIR/debug" "${VM_BIN_TIMEOUT:-900}" "${VM_LANES:-2}" >"$OUT/plan.env"
log "plan:"
sed 's/^/  /' "$OUT/plan" >&2

# 3. Kernel and initramfs (cached under target/vm/).
hack/vm/build.sh "$OUT"

KERNEL_ARGS="console=ttyS0 quiet panic=1 cgroup_no_v1=all mitigations=off random.trust_cpu=on"
# shellcheck disable=SC2054 # the commas are qemu's option syntax
qemu_base=(
	qemu-system-x86_64 -machine q35 -cpu max -smp "$VM_CPUS" -m "$VM_MEM_MB"
	-nodefaults -no-user-config -display none -no-reboot -nic none
	-chardev stdio,id=console,signal=off -serial chardev:console
	-kernel "$OUT/vmlinuz" -initrd "$OUT/initramfs.cpio.gz"
)

# 4. KVM only when a short probe boot proves it works (nested KVM often hangs or aborts);
#    the verdict is cached per host kernel, qemu and guest kernel.
accel=tcg
if [ "$VM_ACCEL" = kvm ]; then
	accel=kvm
elif [ "$VM_ACCEL" = auto ] && [ -w /dev/kvm ]; then
	key="$(uname -r) $(qemu-system-x86_64 --version | head -1) $(cat "$OUT/initramfs.key")"
	if [ -f "$OUT/kvm-probe" ] && [ "$(head -1 "$OUT/kvm-probe")" = "$key" ]; then
		accel=$(sed -n 2p "$OUT/kvm-probe")
	else
		log "probing KVM with a short boot (at most ${VM_KVM_PROBE_SECS:-20}s)"
		timeout -k 5 "${VM_KVM_PROBE_SECS:-20}" "${qemu_base[@]}" -accel kvm \
			-append "console=ttyS0 quiet peapod.probe=1" </dev/null >"$OUT/kvm-probe.log" 2>&1 || true
		if tr -d '\r' <"$OUT/kvm-probe.log" | grep -q '^PEAPOD-VM-PROBE-OK'; then
			accel=kvm
		fi
		printf '%s\n%s\n' "$key" "$accel" >"$OUT/kvm-probe"
	fi
fi
log "accelerator: $accel"
# TCG: one host thread per vCPU.
[ "$accel" != tcg ] || accel=tcg,thread=multi

# 5. The VM: console to this terminal and console.log; the marker is the result.
#    multidevs=remap: the host root spans several filesystems (/proc, /sys, /dev have the same
#    inode numbers); without it the guest's 9p aliases their directories and a mount on
#    /proc lands on /sys.
rm -rf "$OUT/results" "$OUT/console.log" "$OUT/logs"
start=$(date +%s)
set +e
timeout -k 10 "$VM_TIMEOUT" "${qemu_base[@]}" -accel "$accel" \
	-append "$KERNEL_ARGS peapod.repo=$REPO" \
	-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap,id=hostroot" \
	-virtfs "local,path=$REPO,mount_tag=repo,security_model=none,multidevs=remap,id=repo" \
	</dev/null 2>&1 | tee "$OUT/console.log"
qemu_status=${PIPESTATUS[0]}
set -e
took=$(($(date +%s) - start))

result=$(tr -d '\r' <"$OUT/console.log" | sed -n 's/^PEAPOD-VM-RESULT: exit=\([0-9]*\)$/\1/p' | tail -1)
if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
	log "FAILED: the VM did not finish within VM_TIMEOUT=${VM_TIMEOUT}s (killed after ${took}s)"
	exit 1
fi
if [ -z "$result" ]; then
	log "FAILED: the guest gave no result (qemu status $qemu_status after ${took}s); see $OUT/console.log"
	exit 1
fi
log "guest exit $result after ${took}s of VM time ($accel)"
[ -f "$OUT/results" ] && sed 's/^/  /' "$OUT/results" >&2
exit "$result"
