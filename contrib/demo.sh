#!/bin/bash
# Quick start #1: installs dependencies, builds lazyimg, writes a small demo
# Proxmox Backup Server datastore and mounts it, then prints what to try.
#   DEMO_DIR   where the datastore and mountpoint go (default /tmp/lazyimg-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
contrib/install-deps.sh
contrib/build.sh >/dev/null

B=$PWD/build
DEMO=${DEMO_DIR:-/tmp/lazyimg-demo}
STORE=$DEMO/datastore
MNT=$DEMO/mnt

if mountpoint -q "$MNT" 2>/dev/null; then
  "$B/fs/lazyimg" umount "$MNT"
  sleep 0.5
fi
rm -rf "$DEMO"
mkdir -p "$DEMO/src/files/etc" "$DEMO/src/files/docs" "$MNT"

echo "== making demo disk images in $DEMO/src"
# a filesystem image with real files, for file-level browsing
cp -r /usr/share/common-licenses "$DEMO/src/files/docs/" 2>/dev/null || true
printf 'hello from inside a backup\n' > "$DEMO/src/files/README.txt"
head -c 3M /dev/urandom > "$DEMO/src/files/etc/random.bin"
mkfs.ext4 -q -F -b 4096 -L demo -d "$DEMO/src/files" "$DEMO/src/disk0.raw" 256M
# a mixed image: random, zero (aligned and not), repeated and text regions
"$B/contrib/lazyimg-mkimage" "$DEMO/src/disk1.raw" \
  'rand:24M,zero:64M,text:8M,zero:30M,repeat:4M,rand:2M'
"$B/contrib/lazyimg-mkimage" --seed 2 "$DEMO/src/disk1b.raw" \
  'rand:24M,zero:64M,text:8M,zero:30M,repeat:4M,rand:3M'
printf 'boot: order=scsi0\ncores: 2\nmemory: 2048\nscsi0: demo:vm-100-disk-0,size=256M\n' \
  > "$DEMO/src/qemu-server.conf"

echo "== writing snapshots into $STORE"
"$B/contrib/lazyimg-mkpbs" --type vm --id 100 --time 2025-07-10T12:00:00Z "$STORE" \
  drive-scsi0.img="$DEMO/src/disk0.raw" drive-scsi1.img="$DEMO/src/disk1.raw" \
  qemu-server.conf="$DEMO/src/qemu-server.conf"
"$B/contrib/lazyimg-mkpbs" --type vm --id 100 --time 2025-07-11T12:00:00Z "$STORE" \
  drive-scsi0.img="$DEMO/src/disk0.raw" drive-scsi1.img="$DEMO/src/disk1b.raw" \
  qemu-server.conf="$DEMO/src/qemu-server.conf"
"$B/contrib/lazyimg-mkpbs" --ns prod --type ct --id 200 --time 2025-07-11T13:00:00Z \
  --chunk-size 1M "$STORE" root.img="$DEMO/src/disk1.raw"

echo "== lazyimg ls $STORE"
"$B/fs/lazyimg" ls "$STORE"
echo "== lazyimg mount --cache-dir $DEMO/cache $STORE $MNT"
"$B/fs/lazyimg" mount --cache-dir "$DEMO/cache" "$STORE" "$MNT"
find "$MNT" | sed "s|^$MNT|  mnt|" | sort

L=$B/fs/lazyimg
IMG=$MNT/vm/100/latest/drive-scsi1.img
cat <<EOT

Mounted. Things to try:
  ls -ls $MNT/vm/100/latest/                     # sizes and (sparse) allocated blocks
  cat $MNT/vm/100/latest/qemu-server.conf
  qemu-img map -f raw $IMG             # data and zero extents, from SEEK_DATA/SEEK_HOLE
  cp --sparse=always $IMG /tmp/scsi1.raw && du -h --apparent-size /tmp/scsi1.raw && du -h /tmp/scsi1.raw
  cmp $IMG $DEMO/src/disk1b.raw && echo identical
  # browse files inside the backup (as root):
  dev=\$(losetup -r -f --show $MNT/vm/100/latest/drive-scsi0.img); mkdir -p /tmp/demo-fs
  mount -o ro,noload \$dev /tmp/demo-fs && ls -l /tmp/demo-fs && cat /tmp/demo-fs/README.txt
  umount /tmp/demo-fs; losetup -d \$dev
  $L cache stats --cache-dir $DEMO/cache          # what the chunk cache holds now
  $L umount $MNT                  # when done
EOT
