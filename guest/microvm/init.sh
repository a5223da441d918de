#!/bin/busybox sh
# PID 1 of the micro-VM's initramfs. Loads the modules, builds the root file system (the
# image's read-only squashfs under an overlay whose writable layer is a tmpfs capped at the
# sandbox's disk size), realises the sandbox's mounts, then switch_roots into it with the
# agent as the new PID 1 (the agent reaps orphans). Instructions come from the kernel command
# line (matchlock.*), written by the engine; paths there are hex-encoded.
# Any failure powers the VM off: the engine then reports the console output it captured.
# /bin holds busybox and a symlink per applet, made when the initramfs was built.
# Under TCG every process costs ~20 ms: shell builtins (read, printf, case) are used where they
# can replace a command or a $(...) subshell.
export PATH=/bin

fail() {
  echo "matchlock-init: $*" >&2
  poweroff -f
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"

read -r cmdline </proc/cmdline
# The values init itself needs, in one pass without subshells.
for word in $cmdline; do
  case "$word" in
    matchlock.mounts=*) mounts=${word#*=} ;;
    matchlock.hostname=*) hostname_hex=${word#*=} ;;
    matchlock.disk_mb=*) disk_mb=${word#*=} ;;
    matchlock.port=*) port=${word#*=} ;;
    matchlock.trace=*) trace_on=${word#*=} ;;
    matchlock.net=*) net=${word#*=} ;;
  esac
done
# matchlock.trace=1 (MATCHLOCK_TRACE_STARTUP=1 on the engine): guest uptime at each step.
trace() {
  [ "$trace_on" = 1 ] || return 0
  # /proc moves into the new root on the way.
  read -r up _ </proc/uptime 2>/dev/null || read -r up _ </newroot/proc/uptime
  echo "matchlock-init: +${up}s $*"
  return 0
}
trace "init started"

# Module loading is the largest part of the boot under TCG: the NIC's driver and the 9p stack
# only when needed.
lists=/lib/modules/order
[ -n "$net" ] && lists="$lists /lib/modules/order-net"
case ",$mounts" in *,9:*) lists="$lists /lib/modules/order-9p" ;; esac
# The lists are in dependency order; one modprobe loads them all (one process instead of one
# insmod each: every process costs ~20 ms under TCG).
names=
for list in $lists; do
  while read -r m; do names="$names $m"; done <"$list"
done
modprobe -a $names || fail "loading the kernel modules:$names"
trace "modules loaded"
# Prints the bytes a hex string encodes (printf and the loop are builtins: no process).
unhex() {
  hex=$1 escaped=
  while [ -n "$hex" ]; do
    tail=${hex#??}
    escaped="$escaped\\x${hex%"$tail"}"
    hex=$tail
  done
  printf "$escaped"
}

unhex "$hostname_hex" >/proc/sys/kernel/hostname

# Loopback always (as in gVisor); the sealed network's one NIC only when the engine gives one:
# matchlock.net=<guest ip>/<prefix>,<host end>, the host end being the only route.
ip link set lo up || fail "loopback"
if [ -n "$net" ]; then
  for i in $(seq 200); do [ -e /sys/class/net/eth0 ] && break; usleep 10000; done
  ip addr add "${net%,*}" dev eth0 && ip link set eth0 up && ip route add default via "${net#*,}" || fail "network $net"
fi

# The virtio block device shows up asynchronously after insmod.
waited=0
while [ ! -b /dev/vda ] && [ $waited -lt 200 ]; do usleep 10000; waited=$((waited + 1)); done
trace "/dev/vda present"
mkdir /ro /rw /newroot
mount -t squashfs -o ro /dev/vda /ro || fail "mount the image (/dev/vda)"
mount -t tmpfs -o "size=${disk_mb}m,mode=755" tmpfs /rw || fail "mount the writable layer"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "mount the overlay root"

# The agent (and, while we set up, busybox) in a private tmpfs at /.matchlock, read-only later.
mkdir -p /newroot/.matchlock /newroot/proc /newroot/sys /newroot/dev /newroot/tmp
mount -t tmpfs -o size=8m,mode=755 tmpfs /newroot/.matchlock
cp /matchlock-agent /newroot/.matchlock/agent
[ -n "$mounts" ] && cp /bin/busybox /newroot/.matchlock/busybox
# The initramfs's /proc and /dev move into the new root (a move costs nothing, a fresh mount
# plus an unmount costs two processes); /sys is mounted afresh, read-only.
mount --move /proc /newroot/proc
mount --move /dev /newroot/dev
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
[ -n "$mounts" ] && rm /newroot/.matchlock/busybox
mount -o remount,ro /newroot/.matchlock

channel=
for p in /newroot/sys/class/virtio-ports/*; do
  name=
  read -r name <"$p/name" 2>/dev/null
  [ "$name" = "$port" ] && channel=/dev/${p##*/}
done
[ -n "$channel" ] || fail "no virtio-serial port named $port"

# Every exec starts the image's /bin/sh: run it once now, in the background, so that reading it
# (and its libraries) from the image's disk overlaps the agent's start instead of delaying the
# first command. The agent, as PID 1, reaps it.
chroot /newroot /bin/sh -c : </newroot/dev/null >/newroot/dev/null 2>&1 &
trace "root and mounts ready, starting the agent"
# The initramfs's own /sys; the new root has its own.
umount /sys
exec switch_root /newroot /.matchlock/agent --channel "$channel"
