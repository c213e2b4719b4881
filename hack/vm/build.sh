#!/usr/bin/env bash
# Builds (or reuses) the vm-test guest's kernel and initramfs:
#
#   hack/vm/build.sh OUT      -> OUT/vmlinuz, OUT/initramfs.cpio.gz
#
# The kernel is Debian's: the versioned package that linux-image-amd64 depends on (or
# $VM_KERNEL_PKG), fetched with `apt-get download` into OUT/kernel/<package>_<version>/ and
# unpacked there with `dpkg-deb -x` only while an initramfs is built (no root filesystem
# install; the package ships no modules.dep, so `depmod -b`). The initramfs holds only
# busybox-static, hack/vm/init and the modules it loads, with their dependencies, in dependency
# order. Both are rebuilt only when an input changes: the kernel package version, this script,
# hack/vm/init, or the busybox binary.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:?usage: build.sh OUTDIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# Modules the guest loads: virtio PCI transport, the 9p stack, overlayfs. The rest are optional
# (loaded when the kernel has them): veth, bridge, nf_tables (whose libcrc32c asks the crypto
# API for crc32c) and the conntrack, NAT, masquerade and fib expressions the built-in pod
# network's rules use (the guest has no modprobe to load them on demand).
REQUIRED_MODULES="virtio_pci 9pnet_virtio 9p overlay"
OPTIONAL_MODULES="veth bridge crc32c_generic nf_tables nf_conntrack nf_nat nft_chain_nat nft_nat nft_masq nft_ct nft_fib nft_fib_inet nft_fib_ipv4 nft_fib_ipv6"

log() { echo "vm-build: $*" >&2; }

# The versioned kernel package and its version, from apt's lists (updated once if empty).
resolve_kernel() {
	local pkg="${VM_KERNEL_PKG:-}"
	if [ -z "$pkg" ]; then
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
			awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	fi
	local ver=""
	[ -z "$pkg" ] || ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '/^Version:/ {print $2; exit}')
	echo "$pkg" "$ver"
}
read -r KPKG KVER < <(resolve_kernel) || true
if [ -z "${KVER:-}" ]; then
	log "apt lists lack the kernel package: apt-get update"
	apt-get update -qq
	read -r KPKG KVER < <(resolve_kernel) || true
fi
if [ -z "${KVER:-}" ]; then
	# Offline with a cache: use the kernel already unpacked.
	cached=$(find "$OUT/kernel" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-*' 2>/dev/null | sort | tail -1)
	[ -n "$cached" ] || { log "cannot resolve Debian's linux-image-amd64"; exit 1; }
	KPKG=$(basename "$cached" | cut -d_ -f1)
	KVER=$(basename "$cached" | cut -d_ -f2-)
fi
KDIR="$OUT/kernel/${KPKG}_${KVER}"
KREL="${KPKG#linux-image-}" # 6.1.0-56-amd64: the modules directory name

# Only the .deb is kept (about 70 MB); it is unpacked (about 400 MB) while an initramfs is built.
if ! ls "$KDIR"/*.deb >/dev/null 2>&1; then
	log "fetching $KPKG $KVER"
	rm -rf "$KDIR"
	mkdir -p "$KDIR/dl"
	(cd "$KDIR/dl" && apt-get download -q -o APT::Sandbox::User=root "$KPKG=$KVER" >&2)
	mv "$KDIR"/dl/*.deb "$KDIR/"
	rm -rf "$KDIR/dl"
	# Older kernels are dead weight.
	find "$OUT/kernel" -mindepth 1 -maxdepth 1 -type d ! -path "$KDIR" -exec rm -rf {} +
fi

BUSYBOX=/bin/busybox
KEY="$KPKG $KVER $(cat "$0" "$HERE/init" "$BUSYBOX" | sha256sum | cut -c1-16)"
if [ -f "$OUT/initramfs.key" ] && [ "$(cat "$OUT/initramfs.key")" = "$KEY" ] &&
	[ -f "$OUT/initramfs.cpio.gz" ] && [ -f "$OUT/vmlinuz" ]; then
	exit 0
fi
log "building the initramfs ($KEY)"
rm -rf "$KDIR/root"
dpkg-deb -x "$KDIR"/*.deb "$KDIR/root"
trap 'rm -rf "$KDIR/root"' EXIT
# The package ships no modules.dep.
depmod -b "$KDIR/root" "$KREL"
MODROOT="$KDIR/root/lib/modules/$KREL"
[ -d "$MODROOT" ] || { log "no modules at $MODROOT"; exit 1; }

# Module files in load order: each module after its dependencies (modules.dep lists a
# module's dependencies, every one of them, transitively; insmod needs them loaded first).
module_order() {
	python3 - "$MODROOT" "$@" <<'EOF'
import sys
root, names = sys.argv[1], sys.argv[2:]
deps, byname = {}, {}
for line in open(f"{root}/modules.dep"):
    mod, _, rest = line.partition(":")
    deps[mod] = rest.split()
    base = mod.rsplit("/", 1)[-1].split(".ko")[0]
    byname[base] = mod
    byname[base.replace("-", "_")] = mod
order = []
def visit(mod):
    if mod in order:
        return
    for d in deps.get(mod, []):
        visit(d)
    order.append(mod)
for n in names:
    optional = n.startswith("?")
    mod = byname.get(n.lstrip("?"))
    if mod is None:
        if optional:
            continue
        sys.exit(f"module {n} not in this kernel (built in? check its config)")
    visit(mod)
print("\n".join(order))
EOF
}
opt=()
for m in $OPTIONAL_MODULES; do opt+=("?$m"); done
# shellcheck disable=SC2086
mods=$(module_order $REQUIRED_MODULES "${opt[@]}")

stage="$OUT/initramfs.d"
rm -rf "$stage"
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$BUSYBOX" "$stage/bin/busybox"
cp "$HERE/init" "$stage/init"
chmod 0755 "$stage/init" "$stage/bin/busybox"
mknod -m 600 "$stage/dev/console" c 5 1
mknod -m 666 "$stage/dev/null" c 1 3
: >"$stage/modules.load"
for m in $mods; do
	mkdir -p "$stage/lib/modules/$(dirname "$m")"
	case "$m" in
	*.ko.xz) xz -dc "$MODROOT/$m" >"$stage/lib/modules/${m%.xz}"; m=${m%.xz} ;;
	*.ko.zst) zstd -qdc "$MODROOT/$m" >"$stage/lib/modules/${m%.zst}"; m=${m%.zst} ;;
	*) cp "$MODROOT/$m" "$stage/lib/modules/$m" ;;
	esac
	echo "$m" >>"$stage/modules.load"
done
log "modules: $(xargs -n1 basename <"$stage/modules.load" | tr '\n' ' ')"

(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -1 >"$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
cp "$KDIR/root/boot/vmlinuz-$KREL" "$OUT/vmlinuz"
rm -rf "$stage"
echo "$KEY" >"$OUT/initramfs.key"
log "kernel $KREL, initramfs $(du -k "$OUT/initramfs.cpio.gz" | cut -f1) KiB"
