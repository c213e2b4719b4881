#!/bin/bash
# Stage 2 of the vm-test guest, PID 1 after hack/vm/init's switch_root: runs the test plan that
# hack/vm/run.sh wrote into the repository share, prints the result marker the host waits
# for, and powers the guest off. Read from the share at boot, so it needs no image rebuild.
#
# The plan (target/vm/plan) is one test run per line: an executable (absolute path) and its
# libtest arguments. Every run goes to the console and target/vm/logs/NAME.log (the daemons'
# logs to target/vm/logs/daemons/), its libtest summary into target/vm/results.
REPO="${1:?usage: guest.sh REPO}"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

finish() {
	echo "PEAPOD-VM-RESULT: exit=$1"
	sync
	# -f: no init to ask; the kernel powers off and qemu exits with status 0.
	exec /bin/busybox poweroff -f
}
cd "$REPO" || finish 125
VM="$REPO/target/vm"
[ -r "$VM/plan" ] || { echo "vm-guest: $VM/plan missing"; finish 125; }
# PEAPOD_BIN_DIR: the host's target/debug (CARGO_TARGET_DIR may lie outside the repository;
# the guest sees the host's whole root read-only at the same paths).
PEAPOD_BIN_DIR="$REPO/target/debug"
# shellcheck disable=SC1091
[ -r "$VM/plan.env" ] && . "$VM/plan.env"
export PEAPOD_BIN_DIR
# The kill -9 churn of integration/tests/crash.rs: fewer kills under TCG, where each daemon
# restart takes ten times as long as on the host.
export PEAPOD_CHURN_KILLS="${PEAPOD_CHURN_KILLS:-10}"
# And fewer log rotations in integration/tests/log_reopen.rs.
export PEAPOD_REOPEN_ROTATIONS="${PEAPOD_REOPEN_ROTATIONS:-200}"
# The 10,000 failing tty requests of streaming.rs take minutes under TCG: 2,000 here.
export PEAPOD_TTY_FAILURES="${PEAPOD_TTY_FAILURES:-2000}"
# Each daemon's log, kept by the harness for a look after the run.
export PEAPOD_IT_KEEP_LOGS="$VM/logs/daemons"
# One hung test binary is reported as such and the rest still run (the host's VM_TIMEOUT
# bounds the whole guest).
BIN_TIMEOUT="${VM_BIN_TIMEOUT:-900}"
hostname peapod-vm 2>/dev/null || true
ip link set lo up 2>/dev/null || true

echo "vm-guest: kernel $(uname -r), $(nproc) vCPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
echo "vm-guest: cgroup: $(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "vm-guest: subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
echo "vm-guest: network devices: $(cd /sys/class/net && echo *) (no NIC: tests stay inside)"
echo "vm-guest: runtimes: $(command -v crun) $(crun --version | head -1); $(command -v runc) $(runc --version | head -1)"
echo "vm-guest: boot to first test: $(cut -d' ' -f1 /proc/uptime) s"

results="$VM/results"
: >"$results"
mkdir -p "$VM/logs"
# The plan runs in VM_LANES lanes (default 2): each lane takes the next test binary when it is
# free. Most of the suite waits on timers (probe periods, grace periods, back-offs, restarts),
# so two binaries at a time use the vCPUs far better than one; with one lane the console
# shows each binary's output as it runs, with more only a line per binary (and the whole log
# of a failed one), the full output being in target/vm/logs/NAME.log either way.
LANES="${VM_LANES:-2}"
grep -Ev '^[[:space:]]*(#|$)' "$VM/plan" >"$VM/plan.run" || true
echo 0 >"$VM/plan.next"

# Prints the plan's next line, or fails when every line is taken.
take() {
	local n
	exec 8>>"$VM/plan.lock"
	flock 8
	n=$(cat "$VM/plan.next")
	echo $((n + 1)) >"$VM/plan.next"
	exec 8>&-
	sed -n "$((n + 1))p" "$VM/plan.run" | grep .
}

run_one() {
	local exe=$1 args=$2 name t0 t1 st summary
	name=$(basename "$exe")
	name=${name%-*}
	t0=$(cut -d' ' -f1 /proc/uptime)
	echo "===== vm-guest: $name $args (at ${t0} s)"
	if [ "$LANES" -eq 1 ]; then
		# shellcheck disable=SC2086 # args are libtest flags and filters, split on purpose
		timeout -k 10 "$BIN_TIMEOUT" "$exe" $args </dev/null 2>&1 | tee "$VM/logs/$name.log"
		st=${PIPESTATUS[0]}
	else
		# shellcheck disable=SC2086
		timeout -k 10 "$BIN_TIMEOUT" "$exe" $args </dev/null >"$VM/logs/$name.log" 2>&1
		st=$?
	fi
	[ "$st" -ne 124 ] || echo "vm-guest: $name killed after ${BIN_TIMEOUT}s (VM_BIN_TIMEOUT)"
	t1=$(cut -d' ' -f1 /proc/uptime)
	summary=$(grep -E '^test result:' "$VM/logs/$name.log" | tail -1)
	echo "$name exit=$st seconds=$(awk "BEGIN {print $t1 - $t0}") ${summary:-no summary}" >>"$results"
	echo "===== vm-guest: $name exit=$st after $(awk "BEGIN {print $t1 - $t0}") s: ${summary:-no summary}"
	if [ "$st" -ne 0 ] && [ "$LANES" -ne 1 ]; then
		echo "----- vm-guest: $name failed; its output:"
		cat "$VM/logs/$name.log"
		echo "----- vm-guest: end of $name"
	fi
	return "$st"
}

lane() {
	local line exe args rc=0
	while line=$(take); do
		exe=${line%% *}
		args=${line#"$exe"}
		run_one "$exe" "${args# }" || rc=1
	done
	return "$rc"
}

pids=()
for _ in $(seq "$LANES"); do
	lane &
	pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
	wait "$p" || rc=1
done

echo "===== vm-guest: summary (uptime $(cut -d' ' -f1 /proc/uptime) s)"
cat "$results"
passed=$(grep -o '[0-9]* passed' "$results" | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' "$results" | awk '{s += $1} END {print s + 0}')
echo "vm-guest: $passed passed, $failed failed"
finish "$rc"
