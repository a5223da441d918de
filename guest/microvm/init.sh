#!/bin/busybox sh
# PID 1 of the micro-VM's initramfs. Loads the modules, builds the root file system (the
# image's read-only ext4 under an overlay whose writable layer is a tmpfs capped at the
# sandbox's disk size), realises the sandbox's mounts, then switch_roots into it with the
# agent as the new PID 1 (the agent reaps orphans). Instructions come from the kernel command
# line (matchlock.*), written by the engine; paths there are hex-encoded.
# Any failure powers the VM off: the engine then reports the console output it captured.
# /bin holds busybox and a symlink per applet, made when the initramfs was built.
export PATH=/bin

fail() {
  echo "matchlock-init: $*" >&2
  poweroff -f
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"

cmdline=$(cat /proc/cmdline)
param() {
  for word in $cmdline; do
    case "$word" in "matchlock.$1="*) echo "${word#*=}"; return ;; esac
  done
}
mounts=$(param mounts)

# Module loading is the largest part of the boot under TCG: the 9p stack only when needed.
modules=$(cat /lib/modules/order)
case ",$mounts" in *,9:*) modules="$modules $(cat /lib/modules/order-9p)" ;; esac
for m in $modules; do
  insmod "/lib/modules/$m" || fail "insmod $m"
done
unhex() {
  printf "$(echo "$1" | sed 's/../\\x&/g')"
}

disk_mb=$(param disk_mb)
hostname "$(unhex "$(param hostname)")"

# Loopback always (as in gVisor); the sealed network's one NIC only when the engine gives one:
# matchlock.net=<guest ip>/<prefix>,<host end>, the host end being the only route.
ip link set lo up || fail "loopback"
net=$(param net)
if [ -n "$net" ]; then
  for i in $(seq 200); do [ -e /sys/class/net/eth0 ] && break; usleep 10000; done
  ip addr add "${net%,*}" dev eth0 && ip link set eth0 up && ip route add default via "${net#*,}" || fail "network $net"
fi

# The virtio block device shows up asynchronously after insmod.
for i in $(seq 200); do [ -b /dev/vda ] && break; usleep 10000; done
mkdir -p /ro /rw /newroot
mount -t ext4 -o ro,noload /dev/vda /ro || fail "mount the image (/dev/vda)"
mount -t tmpfs -o "size=${disk_mb}m,mode=755" tmpfs /rw || fail "mount the writable layer"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "mount the overlay root"

# The agent (and, while we set up, busybox) in a private tmpfs at /.matchlock, read-only later.
mkdir -p /newroot/.matchlock /newroot/proc /newroot/sys /newroot/dev /newroot/tmp
mount -t tmpfs -o size=8m,mode=755 tmpfs /newroot/.matchlock
cp /matchlock-agent /newroot/.matchlock/agent
cp /bin/busybox /newroot/.matchlock/busybox
mount -t proc proc /newroot/proc
mount -t devtmpfs devtmpfs /newroot/dev
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /newroot/sys
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /newroot/tmp

# User mounts run chrooted, so that symlinks in the image resolve inside the sandbox's root.
in_root() { chroot /newroot /.matchlock/busybox "$@"; }
for spec in $(echo "$mounts" | tr , ' '); do
  case "$spec" in
    t:*)
      path=$(unhex "${spec#t:}")
      in_root mkdir -p "$path" && in_root mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs "$path" || fail "tmpfs at $path"
      ;;
    9:*)
      rest=${spec#9:}; tag=${rest%%:*}; rest=${rest#*:}; mode=${rest%%:*}; path=$(unhex "${rest#*:}")
      in_root mkdir -p "$path" &&
        in_root mount -t 9p -o "trans=virtio,version=9p2000.L,msize=524288,$mode" "$tag" "$path" || fail "9p share $tag at $path"
      ;;
    *) fail "bad mount spec $spec" ;;
  esac
done
rm /newroot/.matchlock/busybox
mount -o remount,ro /newroot/.matchlock

port=$(param port)
channel=
for p in /newroot/sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = "$port" ] && channel=/dev/${p##*/}
done
[ -n "$channel" ] || fail "no virtio-serial port named $port"

# The initramfs's own instances; the new root has its own.
umount /proc /sys
umount -l /dev
exec switch_root /newroot /.matchlock/agent --channel "$channel"
