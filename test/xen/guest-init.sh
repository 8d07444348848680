#!/bin/busybox sh
# /init of the nested-Xen test guest: a Linux HVM guest whose every device is emulated by the
# QEMU in the stub domain under test. SeaBIOS boots it from its IDE disk (syslinux), so it
# proves the disk path from the firmware on. Each result is one "E2E-GUEST <what> ..." line on
# its serial port (the stub domain's hvc3, a file in dom0), which dom0-test.sh reads:
#   boot <kernel>     | disk <marker read from the disk's FAT>
#   lease <ip> <router> | ping <router> ok|lost   | tick <n> (every second, for save/restore)
#   poweroff button|signal (xl shutdown: the ACPI power button or Xen's PV control)
#   cd <marker>|none  (the medium in the CD-ROM drive, whenever it changes: xl cd-insert/eject)
#   pci <vendor:device,...>  (the PCI devices it sees, whenever they change: passthrough)
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "E2E-GUEST $*"; }
say "boot $(uname -r)"

# xl shutdown: the ACPI power button (an input event; any event on it powers off) or, when the
# kernel speaks Xen's PV control protocol, its orderly_poweroff, whose /sbin/poweroff (busybox)
# signals PID 1 with SIGUSR2.
trap 'say "poweroff signal"; sync; poweroff -f' USR2
for ev in /sys/class/input/event*; do
	case "$(cat "$ev/device/name" 2>/dev/null)" in
	*"Power Button"*)
		( dd if="/dev/input/${ev##*/}" of=/dev/null bs=24 count=1 2>/dev/null && say "poweroff button" && sync && poweroff -f ) &
		;;
	esac
done

n=0
while [ ! -b /dev/sda ] && [ "$n" -lt 100 ]; do n=$((n + 1)); sleep 0.2; done
if mount -t vfat -o ro,codepage=437,iocharset=iso8859-1 /dev/sda /mnt 2>/tmp/mount.err; then
	say "disk $(tr -cd 'A-Za-z0-9_.:-' < /mnt/marker.txt)"
	umount /mnt
else
	say "disk-error $(tr '\n' ' ' < /tmp/mount.err)"
fi

n=0
while ! ip link show eth0 > /dev/null 2>&1; do
	n=$((n + 1))
	if [ "$n" -gt 100 ]; then say "no-eth0"; break; fi
	sleep 0.2
done
ip link set lo up
ip link set eth0 up
n=0
until udhcpc -i eth0 -s /bin/lease -n -q -t 5 -T 2 > /dev/null 2>&1; do
	n=$((n + 1))
	say "no-lease-yet $n"
done
read -r ip router dns server < /tmp/lease
say "lease $ip $router"

# The CD-ROM drive's medium, read every 2 s (mounting it makes the kernel ask the drive), and
# printed whenever it changes: "none" for an empty drive or none at all. The kernel would lock
# the tray while the medium is mounted, and an xl cd-eject landing then is refused ("is locked
# ... wait for tray to open"): this guest's probing is not what the check is about.
echo 0 > /proc/sys/dev/cdrom/lock
( last=""; while true; do
	m=none
	if mount -t vfat -o ro /dev/sr0 /mnt 2>/dev/null; then
		m=$(tr -cd 'A-Za-z0-9_.:-' < /mnt/marker.txt)
		umount /mnt
	fi
	[ "$m" != "$last" ] && say "cd $m" && last=$m
	sleep 2
done ) &

# The hotplug slots ACPI gave the kernel (xl pci-attach/detach need them), then the PCI
# devices' IDs, sorted, whenever they change (xl pci-attach/detach of a passed-through
# device arrives as an ACPI hotplug event).
say "pci-slots $(ls /sys/bus/pci/slots 2>/dev/null | tr '\n' ' ')"
( last=""; while true; do
	# Shell builtins only in the loop: a process per file costs the guest seconds under TCG.
	ids=$(for d in /sys/bus/pci/devices/*; do read -r v < $d/vendor && read -r p < $d/device && echo "${v#0x}:${p#0x}"; done 2>/dev/null | sort | tr '\n' ',')
	[ "$ids" != "$last" ] && say "pci ${ids%,}" && last=$ids
	sleep 2
done ) &

# A counter whose gaps show a pause (save, restore, migrate), and the router's reachability
# whenever it changes.
( i=0; while true; do i=$((i + 1)); say "tick $i"; sleep 1; done ) &
last=""
while true; do
	if ping -c 1 -W 3 "$router" > /dev/null 2>&1; then now=ok; else now=lost; fi
	[ "$now" != "$last" ] && say "ping $router $now" && last=$now
	sleep 1
done
