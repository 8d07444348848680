#!/bin/sh
# PID 1 of the end-to-end dom0: bring up the Xen toolstack daemons (vm-harness.md, "dom0 init"),
# run the test script, then power off so that the outer QEMU exits.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/lib/xen-$(cat /e2e/xen-release)/bin
mount -t proc proc /proc
# The root is the initramfs's tmpfs, sized at half of the RAM left while the archive was still
# in memory: with Debian 13's kernel (more reserved) our package no longer fit in what remained.
mount -o remount,size=75% / || echo "E2E FAIL dom0-root cannot resize /"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /var/run/xen /var/run/xenstored /var/lib/xen /var/lib/xenstored /var/log/xen /tmp
mount -t devpts devpts /dev/pts
# udev would create these; the hotplug scripts' locking (locking.sh) stats /dev/stdin.
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t tmpfs tmpfs /dev/shm
for m in xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc xen-netback xen-blkback llc stp bridge loop tun; do
  insmod /lib/modules/$m.ko || echo "E2E FAIL dom0-insmod $m"
done
mount -t xenfs xenfs /proc/xen
xenstored --pid-file=/var/run/xenstored.pid
xen-init-dom0
xenconsoled --log=all --log-dir=/var/log/xen
sh /e2e/test.sh
echo "E2E DONE $(cat /e2e/results 2>/dev/null | wc -l)"
sync
poweroff -f
