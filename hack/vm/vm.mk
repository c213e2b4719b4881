# `make vm-test`: the end-to-end suite as root in a qemu VM on a pure cgroup v2 host, from this
# host's own build (hack/vm/run.sh says how). Included by the Makefile, whose `deps` installs
# what the tests need; hack/vm/deps.sh adds qemu, crun, kmod and cpio.
#   make vm-test                              every test binary, cgroup_v2 first
#   make vm-test VM_TESTS="cgroup_v2 restart" some of them
#   make vm-test VM_TIMEOUT=900               the wall-clock bound of the VM (default 2700 s)
.PHONY: vm-test vm-deps

vm-deps:
	hack/vm/deps.sh

vm-test: deps vm-deps
	CARGO="$(CARGO)" hack/vm/run.sh
