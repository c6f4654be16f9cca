#!/usr/bin/env bash
# make test-kernels: the kernel tests on the kernels users run (docs/kernels.md).
#
# Boots each kernel of a list in qemu (KVM when /dev/kvm works, TCG
# otherwise), 2 vCPUs, 4 GiB, with this machine's root filesystem shared
# read-only into the guest over virtiofs (a tmpfs overlay above it makes it
# writable there, so the guest has every tool the tests use: gcc, nginx,
# python, node, java, perf) and a results directory shared read-write. The
# guest runs scripts/test-kernels-guest.sh as PID 1 with the test binaries
# built here; this machine's own kernel runs the same script natively.
# It prints one line per kernel and probe set, and a Markdown table.
#
#   BPFSNAP_KERNELS="host 6.1 6.12"  host: this machine's kernel, natively; a
#                               series: the newest Debian cloud image of it; or
#                               exact package names (linux-image-6.1.0-47-cloud-amd64)
#   BPFSNAP_KERNEL_SUITE=quick  quick: the tests chosen per probe set; all: every kernel test
#   BPFSNAP_KERNEL_SETS="cpu http"  only these probe sets (and doctor): to debug one
#   BPFSNAP_KERNELS_DIR=build/kernels  cache of images, binaries and results
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
repo=$PWD
kernels=${BPFSNAP_KERNELS:-"host 6.1 6.12"}
suite=${BPFSNAP_KERNEL_SUITE:-quick}
sets=${BPFSNAP_KERNEL_SETS:-}
work=$(realpath -m "${BPFSNAP_KERNELS_DIR:-build/kernels}")
mem=4G

if [ "$(id -u)" != 0 ]; then
	echo "test-kernels installs packages and loads eBPF programs: run it as root" >&2
	exit 1
fi

# What it needs: qemu (its package also ships virtiofsd), busybox for the
# initramfs, jq for doctor's JSON, and what `make test` needs.
./scripts/deps.sh
need=()
for p in qemu-system-x86 busybox-static jq; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
virtiofsd=/usr/lib/qemu/virtiofsd
[ -x /usr/libexec/virtiofsd ] && virtiofsd=/usr/libexec/virtiofsd

mkdir -p "$work/images" "$work/bin" "$work/results"

# A series ("6.1") names the newest signed Debian cloud image of it.
package_of() {
	case $1 in
	linux-image-*) echo "$1" ;;
	*)
		local re
		re="^linux-image-${1//./\\.}[.-][0-9][^ ]*-cloud-amd64\$"
		apt-cache search --names-only "$re" | awk '{print $1}' | grep -v -e -unsigned -e -dbg | sort -V | tail -n 1
		;;
	esac
}

# fetch PACKAGE: downloads and unpacks the image once; prints its directory.
fetch() {
	local dir=$work/images/$1
	if [ ! -f "$dir/.done" ]; then
		rm -rf "$dir" && mkdir -p "$dir"
		(cd "$dir" && apt-get download -q "$1" >/dev/null 2>&1 && dpkg-deb -x ./*.deb root && rm -f ./*.deb)
		touch "$dir/.done"
	fi
	echo "$dir"
}

# initramfs DIR VERSION: busybox and the modules that reach the shared root
# (virtio PCI, virtiofs, overlayfs), unpacked from the kernel's own package.
initramfs() {
	local dir=$1 ver=$2 mods=$1/root/lib/modules/$2
	local ir=$dir/initramfs
	rm -rf "$ir" && mkdir -p "$ir/bin" "$ir/mod" "$ir/dev" "$ir/proc" "$ir/sys" "$ir/lower" "$ir/rw" "$ir/newroot"
	cp /bin/busybox "$ir/bin/busybox"
	local order=()
	for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci fuse virtiofs overlay; do
		local f
		f=$(find "$mods/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
		if [ -z "$f" ]; then
			grep -q "/$m.ko\$" "$mods/modules.builtin" || { echo "test-kernels: $ver has no $m module and it is not built in" >&2; return 1; }
			continue
		fi
		case $f in
		*.xz) xz -dc "$f" >"$ir/mod/$m.ko" ;;
		*.zst) zstd -qdc "$f" >"$ir/mod/$m.ko" ;;
		*) cp "$f" "$ir/mod/$m.ko" ;;
		esac
		order+=("$m")
	done
	cat >"$ir/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in ${order[*]}; do insmod /mod/\$m.ko || echo "initramfs: insmod \$m failed"; done
fail() { echo "initramfs: \$*"; poweroff -f; }
mount -t virtiofs -o ro hostroot /lower || fail "no virtiofs root"
mount -t tmpfs -o mode=755 rw /rw && mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work root /newroot || fail "overlay failed"
mkdir -p /newroot/run/kout && mount -t virtiofs out /newroot/run/kout || fail "no results share"
mount --move /dev /newroot/dev; mount --move /proc /newroot/proc; mount --move /sys /newroot/sys
exec switch_root /newroot /bin/bash $repo/scripts/test-kernels-guest.sh guest /run/kout
EOF
	chmod +x "$ir/init"
	(cd "$ir" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$dir/initramfs.gz"
}

accel=tcg
timeout=5400 # TCG runs a guest about 10x slower than the host
if [ -c /dev/kvm ] && { exec 3<>/dev/kvm; } 2>/dev/null; then
	exec 3>&-
	accel=kvm
	timeout=1800
fi

echo "== building bpfsnap and the test binaries"
CGO_ENABLED=0 go build -trimpath -o "$work/bin/bpfsnap" ./cmd/bpfsnap
go test -c -o "$work/bin/capture.test" ./capture/
go test -c -o "$work/bin/cmd.test" ./cmd/bpfsnap/

# boot DIR PACKAGE OUT: runs the guest script in the kernel of DIR.
boot() {
	local dir=$1 pkg=$2 out=$3
	local vmlinuz ver
	vmlinuz=$(ls "$dir"/root/boot/vmlinuz-*)
	ver=${vmlinuz##*/vmlinuz-}
	initramfs "$dir" "$ver"
	local ro=$work/rootview sock=$work/vm
	mkdir -p "$ro" "$sock"
	rm -f "$sock/root.sock" "$sock/out.sock"
	# The guest's root is a read-only bind of / (without the mounts below
	# it), made in a mount namespace of the virtiofsd's own.
	unshare -m --propagation private sh -c "mount --bind / '$ro' && mount -o remount,bind,ro '$ro' && exec $virtiofsd --socket-path='$sock/root.sock' -o source='$ro' -o cache=auto -o sandbox=chroot" >"$out/virtiofsd-root.log" 2>&1 &
	local v1=$!
	"$virtiofsd" --socket-path="$sock/out.sock" -o source="$out" -o cache=none -o sandbox=chroot >"$out/virtiofsd-out.log" 2>&1 &
	local v2=$!
	for _ in $(seq 50); do [ -S "$sock/root.sock" ] && [ -S "$sock/out.sock" ] && break; sleep 0.1; done
	local cpu=max
	[ $accel = kvm ] && cpu=host
	local rc=0
	timeout "$timeout" qemu-system-x86_64 -nodefaults -no-user-config -display none \
		-machine q35,accel=$accel -cpu $cpu -smp 2 -m $mem \
		-object memory-backend-memfd,id=mem,size=$mem,share=on -numa node,memdev=mem \
		-chardev socket,id=root,path="$sock/root.sock" -device vhost-user-fs-pci,chardev=root,tag=hostroot \
		-chardev socket,id=out,path="$sock/out.sock" -device vhost-user-fs-pci,chardev=out,tag=out \
		-kernel "$vmlinuz" -initrd "$dir/initramfs.gz" \
		-append "console=ttyS0 panic=-1 quiet" -no-reboot \
		-serial file:"$out/console.log" || rc=$?
	kill "$v1" "$v2" 2>/dev/null || true
	wait "$v1" "$v2" 2>/dev/null || true
	[ $rc = 124 ] && echo "timeout after ${timeout}s" >>"$out/console.log"
	return 0
}

# Guest runs read their settings from the results share.
settings() {
	cat >"$1/settings" <<EOF
repo=$repo
bin=$work/bin
suite=$suite
sets="$sets"
accel=$2
EOF
}

labels=()
run_start=$(date +%s)
for k in $kernels; do
	if [ "$k" = host ]; then
		echo "== host $(uname -r) (no VM: the same tests, natively)"
		out=$work/results/host
		rm -rf "$out" && mkdir -p "$out"
		settings "$out" native
		t0=$(date +%s)
		./scripts/test-kernels-guest.sh host "$out" || true
		echo "$(($(date +%s) - t0))" >"$out/seconds"
		labels+=(host)
		continue
	fi
	pkg=$(package_of "$k")
	if [ -z "$pkg" ]; then
		echo "test-kernels: no Debian cloud kernel package for $k" >&2
		exit 1
	fi
	echo "== $pkg (qemu, $accel)"
	dir=$(fetch "$pkg")
	out=$work/results/$pkg
	rm -rf "$out" && mkdir -p "$out"
	settings "$out" $accel
	t0=$(date +%s)
	boot "$dir" "$pkg" "$out"
	echo "$(($(date +%s) - t0))" >"$out/seconds"
	[ -f "$out/done" ] || printf 'guest\tfailed\tdid not finish: see %s\n' "$out/console.log" >>"$out/results.tsv"
	labels+=("$pkg")
done

# One line per kernel and probe set, then the Markdown table of docs/kernels.md.
echo
echo "== results ($(date -u +%F), $accel, suite $suite, $(($(date +%s) - run_start)) s)"
failed=0
for l in "${labels[@]}"; do
	out=$work/results/$l
	kernel=$(cat "$out/kernel" 2>/dev/null || echo "$l")
	while IFS=$'\t' read -r set verdict detail; do
		printf '%-34s %-8s %s%s\n' "$kernel" "$set" "$verdict" "${detail:+: $detail}"
		[ "$verdict" = failed ] && failed=1
	done <"$out/results.tsv"
	echo "$kernel: $(cat "$out/seconds") s"
done
./scripts/test-kernels-guest.sh table "$work/results" "${labels[@]}" >"$work/table.md"
echo
echo "Markdown table: $work/table.md"
exit $failed
