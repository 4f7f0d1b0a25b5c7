#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Build a small bootable x86-64 raw disk image for the VM-boot integration
# tests: MBR (syslinux mbr.bin) + one bootable ext4 partition at 1 MiB with
# extlinux, the Debian kernel and a tiny busybox initramfs whose /init mounts
# the partition read-only, hashes the data files (sha256 of the sorted
# files' `sha256sum` lines), prints on the serial console one line
#   LAZYIMG-BOOT-OK <sha256>   (or LAZYIMG-BOOT-FAIL <reason>)
# ("LAZYIMG-INIT" when /init starts; before the last line it writes
# "LAZYIMG-WROTE <sha256>" into sector 2047 of the disk, the gap before the
# partition, so that tests can see where guest writes land)
# and powers the VM off. OUT.sha256 holds the expected <sha256>.
#   mkbootimg.sh OUT.raw [--size MiB] [--seed N] [--read K]
#   mkbootimg.sh OUT.raw --from BASE.raw --change N [--seed N] [--read K]
#       copy of BASE with N data files rewritten in place (same sizes)
#   --read K: the init hashes only the first K data files (sorted), as a boot
#       that reads part of its disk (boot/read-files holds K; default: all)
# The data files are pseudo-random (from --seed), ~15% of the disk, spread
# over the partition; the rest stays zero (mostly all-zero 4 MiB chunks).
# Needs root (loop devices, mount) and the Debian packages: extlinux,
# syslinux-common, busybox-static, e2fsprogs, util-linux, fdisk (sfdisk),
# kmod, dpkg, apt, openssl, gzip, coreutils. The kernel is NOT installed on
# the host: the linux-image-<abi>-amd64 package named by linux-image-amd64 is
# fetched once with `apt-get download` into $LAZYIMG_TEST_CACHE (default
# /var/tmp/lazyimg-test-cache) and unpacked there with dpkg-deb -x; later
# runs need no network.
set -euo pipefail

die() { echo "mkbootimg: $*" >&2; exit 1; }
usage() { sed -n '13,17s/^# \{0,1\}//p' "$0" >&2; exit 2; }

OUT='' SIZE=512 SEED=1 FROM='' CHANGE='' READ=''
while [ $# -gt 0 ]; do
	case $1 in
	--size) SIZE=${2:?}; shift 2 ;;
	--seed) SEED=${2:?}; shift 2 ;;
	--read) READ=${2:?}; shift 2 ;;
	--from) FROM=${2:?}; shift 2 ;;
	--change) CHANGE=${2:?}; shift 2 ;;
	-h|--help) usage ;;
	-*) die "unknown option $1" ;;
	*) [ -z "$OUT" ] || usage; OUT=$1; shift ;;
	esac
done
[ -n "$OUT" ] || usage
[[ $SIZE =~ ^[0-9]+$ && $SIZE -ge 64 ]] || die "--size must be >= 64 (MiB)"
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a number"
[[ -z $READ || $READ =~ ^[1-9][0-9]*$ ]] || die "--read must be a positive number"
if [ -n "$FROM" ]; then
	[[ $CHANGE =~ ^[0-9]+$ ]] || die "--from needs --change N"
	[ -f "$FROM" ] || die "no such base image: $FROM"
elif [ -n "$CHANGE" ]; then die "--change needs --from"; fi
[ "$(id -u)" = 0 ] || die "must run as root (loop devices, mount)"

for t in sfdisk:fdisk losetup:util-linux fallocate:util-linux flock:util-linux \
	mkfs.ext4:e2fsprogs extlinux:extlinux busybox:busybox-static modprobe:kmod \
	depmod:kmod dpkg-deb:dpkg apt-get:apt apt-cache:apt openssl:openssl gzip:gzip; do
	command -v "${t%:*}" >/dev/null || die "missing tool ${t%:*} (Debian package ${t#*:})"
done
MBR=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$MBR" ] || die "missing $MBR (Debian package: syslinux-common)"
ldd "$(command -v busybox)" >/dev/null 2>&1 &&
	die "busybox is dynamically linked; install busybox-static"

CACHE=${LAZYIMG_TEST_CACHE:-/var/tmp/lazyimg-test-cache}
PSTART=2048                       # partition start, 512-byte sectors (1 MiB)
W=$(mktemp -d /var/tmp/mkbootimg.XXXXXX)
TMP=$OUT.tmp.$$ MNT=$W/mnt LOOP='' OK=''
cleanup() {
	set +e
	mountpoint -q "$MNT" && umount "$MNT"; [ -n "$LOOP" ] && losetup -d "$LOOP"
	rm -rf "$W"
	[ -n "$OK" ] || rm -f "$TMP" "$TMP.sha256"
}
trap cleanup EXIT; trap 'exit 130' INT TERM
mkdir -p "$MNT" "$CACHE"

# Deterministic pseudo-random bytes: gen KEY SIZE (AES-CTR keystream).
gen() { head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -iv "$(printf %032d 0)" \
	-K "$(printf 'lazyimg:%s' "$1" | sha256sum | cut -c1-32)"; }
# Overwrite FILE in place (no truncation: keeps its blocks).
wr() { dd of="$1" bs=1M iflag=fullblock conv=notrunc status=none; }
# Small LCG for sizes/choices: rnd MOD -> $R in [0, MOD)
RS=$SEED
rnd() { RS=$(( (RS * 1103515245 + 12345) % 2147483648 )); R=$(( (RS >> 4) % $1 )); }
# Data checksum, as the guest computes it: sha256 of the `sha256sum` lines
# of data/* in sorted order (a plain `cat | sha256sum` is 2.5x slower in TCG).
# Only the first K files when boot/read-files (next to data/) says K.
datasum() {
	(cd "$1" && LC_ALL=C && set -- * &&
		if [ -f ../boot/read-files ]; then set -- "${@:1:$(cat ../boot/read-files)}"; fi &&
		sha256sum "$@" | sha256sum | cut -d' ' -f1)
}
attach() { LOOP=$(losetup -f --show -o $((PSTART * 512)) "$1") || die "losetup failed"; }
detach() { umount "$MNT"; losetup -d "$LOOP"; LOOP=; }

# ---- kernel + module kit, cached -------------------------------------------
kernel_kit() {
	local pkg deb log=$W/apt.log
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1=="Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}') || true
	if [ -z "$pkg" ]; then  # no apt lists: use whatever the cache holds
		pkg=$(printf '%s\n' "$CACHE"/kit2-*/ok | sort -V | tail -1)
		[ -f "$pkg" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
		pkg=${pkg%/ok}; pkg=${pkg##*/kit2-}
	fi
	KIT=$CACHE/kit2-$pkg   # kit2: kit layout version
	[ -f "$KIT/ok" ] && return
	exec 9>"$CACHE/.lock"; flock 9
	[ -f "$KIT/ok" ] && return
	lastdeb() { printf '%s\n' "$CACHE/${pkg}_"*.deb | sort -V | tail -1; }
	deb=$(lastdeb)
	if [ ! -f "$deb" ]; then
		(cd "$CACHE" && apt-get -q download "$pkg") >"$log" 2>&1 ||
			{ cat "$log" >&2; die "apt-get download $pkg failed"; }
		deb=$(lastdeb)
	fi
	local x=$W/deb kver m
	dpkg-deb -x "$deb" "$x"
	kver=$(basename "$(echo "$x"/lib/modules/*)")
	depmod -b "$x" "$kver"
	rm -rf "$KIT.new"; mkdir -p "$KIT.new/mod"
	cp "$x/boot/vmlinuz-$kver" "$KIT.new/vmlinuz"
	# Modules (with dependencies and soft dependencies, in load order) to
	# mount ext4 from virtio-blk, and, loaded only without virtio, from
	# PIIX IDE / AHCI.
	modlist() {
		modprobe -d "$x" -S "$kver" --show-depends -a "$@" |
			awk '$1=="insmod" {print $2}'
	}
	{ modlist virtio_pci virtio_blk ext4 crc32c_generic | sed 's/^/virtio /'
	  modlist ata_piix ahci sd_mod | sed 's/^/ata /'; } | awk '!seen[$2]++' >"$W/mods"
	while read -r g m; do
		cp "$m" "$KIT.new/mod/"
		basename "$m" >>"$KIT.new/$g.list"
	done <"$W/mods"
	echo "$kver" >"$KIT.new/ok"
	rm -rf "$KIT" "$x"; mv "$KIT.new" "$KIT"
}

# ---- initramfs ---------------------------------------------------------------
make_initrd() {
	local i=$W/initrd a
	mkdir -p "$i"/{bin,dev,proc,sys,mnt,lib/modules}
	cp "$(command -v busybox)" "$i/bin/busybox"
	for a in $(busybox --list); do
		[ "$a" = busybox ] || ln -sf busybox "$i/bin/$a"
	done
	cp "$KIT"/mod/* "$KIT"/*.list "$i/lib/modules/"
	cat >"$i/init" <<'EOF'
#!/bin/sh
export PATH=/bin
fail() { echo "LAZYIMG-BOOT-FAIL $*"; poweroff -f; sleep 10; exit 1; }
mount -t proc proc /proc && mount -t sysfs sysfs /sys || fail "mount proc/sys"
echo "LAZYIMG-INIT"
if ! mount -t devtmpfs dev /dev 2>/dev/null; then
	mount -t tmpfs dev /dev || fail "mount /dev"; MDEV=1
fi
load() { while read -r m; do insmod "/lib/modules/$m" 2>/dev/null; done <"/lib/modules/$1.list"; }
load virtio
[ -b /dev/vda1 ] || load ata
n=0 dev=
while [ $n -lt 400 ]; do
	[ -n "${MDEV:-}" ] && mdev -s
	for d in /dev/vda1 /dev/sda1; do [ -b $d ] && dev=$d && break 2; done
	sleep 0.05; n=$((n + 1))
done
[ -n "$dev" ] || fail "no root disk (/dev/vda1 or /dev/sda1)"
mount -t ext4 -o ro,noload "$dev" /mnt || fail "cannot mount $dev"
cd /mnt/data || fail "no /data on $dev"
set -- *
[ -f "$1" ] || fail "no data files"
if [ -f /mnt/boot/read-files ]; then # only the first K (a boot reading part of its disk)
	k=$(cat /mnt/boot/read-files) keep=
	for f in "$@"; do [ "$k" -gt 0 ] && keep="$keep $f" && k=$((k - 1)); done
	set -- $keep
fi
sums=$(sha256sum "$@") || fail "read error"
sum=$(echo "$sums" | sha256sum)
# a guest write, in the gap between the MBR and the partition (sector 2047):
# where it lands (overlay, live-restore target) tells the tests
echo "LAZYIMG-WROTE ${sum%% *}" | dd of="${dev%1}" bs=512 seek=2047 conv=notrunc 2>/dev/null && sync
echo "LAZYIMG-BOOT-OK ${sum%% *}"
poweroff -f; sleep 10
EOF
	chmod 755 "$i/init"
	(cd "$i" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) |
		gzip -6n >"$W/initrd.gz"
}

# ---- new image ---------------------------------------------------------------
build_new() {
	local h uuid avail n i f total=0 gap
	h=$(printf 'lazyimg-seed-%s' "$SEED" | sha256sum)
	uuid=${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}
	truncate -s "${SIZE}M" "$TMP"
	printf 'label: dos\nlabel-id: 0x%s\nstart=%s, type=83, bootable\n' \
		"${h:32:8}" "$PSTART" | sfdisk -q "$TMP" || die "sfdisk failed"
	dd if="$MBR" of="$TMP" bs=440 count=1 conv=notrunc status=none
	attach "$TMP"
	mkfs.ext4 -q -F -b 4096 -T default -m 0 -L lazyimg-boot -U "$uuid" \
		-E "hash_seed=$uuid,lazy_itable_init=1,lazy_journal_init=1" "$LOOP" >/dev/null ||
		die "mkfs.ext4 failed"
	mount -t ext4 -o noinit_itable "$LOOP" "$MNT"
	mkdir "$MNT/boot" "$MNT/data"
	cp "$KIT/vmlinuz" "$W/initrd.gz" "$MNT/boot/"
	cat >"$MNT/boot/extlinux.conf" <<-EOF
	DEFAULT lazyimg
	PROMPT 0
	TIMEOUT 0
	LABEL lazyimg
	  LINUX /boot/vmlinuz
	  INITRD /boot/initrd.gz
	  APPEND console=ttyS0 quiet panic=1
	EOF
	extlinux --install "$MNT/boot" >/dev/null 2>"$W/ext.log" ||
		{ cat "$W/ext.log" >&2; die "extlinux --install failed"; }
	# Data: N files of 1..5 MiB (odd sizes), interleaved with preallocated
	# pads (freed afterwards) so that the allocator spreads them out.
	n=$(( SIZE / 20 )); [ $n -lt 4 ] && n=4; [ $n -gt 40 ] && n=40
	for ((i = 0; i < n; i++)); do
		rnd $((4 << 20)); SZ[i]=$(( (1 << 20) + R )); total=$((total + SZ[i]))
	done
	avail=$(df -B1 --output=avail "$MNT" | tail -1)
	gap=$(( (avail - total - avail / 25) / n / 4096 * 4096 ))
	[ $gap -ge 0 ] || die "--size too small for the data"
	for ((i = 0; i < n; i++)); do
		[ $gap -gt 0 ] && fallocate -l $gap "$MNT/data/.pad$i"
		f=$(printf '%s/data/f%02d' "$MNT" $i)
		fallocate -l "${SZ[i]}" "$f"   # allocate now, right after the pad
		gen "$SEED:$i" "${SZ[i]}" | wr "$f"
	done
	rm -f "$MNT"/data/.pad*
	NFILES=$n DATA=$total
}

# ---- next backup of an existing image ----------------------------------------
build_from() {
	local base files i k n
	cp --sparse=always "$FROM" "$TMP"
	attach "$TMP"
	mount -t ext4 -o noinit_itable "$LOOP" "$MNT" || die "cannot mount $FROM"
	[ -d "$MNT/data" ] || die "$FROM was not made by this script"
	base=$(datasum "$MNT/data")
	files=("$MNT"/data/*); files=("${files[@]##*/}"); n=${#files[@]}
	[ "$CHANGE" -le "$n" ] || die "--change $CHANGE > $n data files"
	declare -A picked=()
	for ((k = 0; k < CHANGE; k++)); do
		rnd "$n"; i=$R
		while [ -n "${picked[$i]:-}" ]; do i=$(( (i + 1) % n )); done
		picked[$i]=1
		gen "$base:$SEED:$i" "$(stat -c %s "$MNT/data/${files[i]}")" |
			wr "$MNT/data/${files[i]}"
	done
	NFILES=$n DATA=$(du -scb "$MNT"/data/* | tail -1 | cut -f1)
}

if [ -n "$FROM" ]; then
	build_from
else
	kernel_kit
	make_initrd
	build_new
fi
[ -z "$READ" ] || echo "$READ" >"$MNT/boot/read-files"
# Re-read the data from disk (fresh ro mount) for the expected sum.
umount "$MNT"; mount -t ext4 -o ro,noload "$LOOP" "$MNT"
SUM=$(datasum "$MNT/data")
[ ${#SUM} -eq 64 ] || die "checksum failed"
detach
fallocate --dig-holes "$TMP"
echo "$SUM" >"$TMP.sha256"
mv -f "$TMP" "$OUT"; mv -f "$TMP.sha256" "$OUT.sha256"; OK=1
echo "mkbootimg: $OUT ($(( $(stat -c %s "$OUT") >> 20 )) MiB, $NFILES files," \
	"$(( DATA >> 20 )) MiB data) sha256 $SUM"
