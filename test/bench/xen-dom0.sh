#!/bin/sh
# The nested-Xen benchmarks, run in dom0 by test/xen/dom0-init.sh (in place of its test script)
# once the toolstack is up: every `xl create` of the run in one dom0 boot, so that a probe costs
# a domain build, not a Xen boot. The host (test/bench/nested.ts) prepends the plan:
#   BOOT_MEM     stub domain memory (MiB) of the timed boots, the same for both kinds
#   BOOT_ORDER   kinds to boot at BOOT_MEM, in order (ours/baseline alternating)
#   AT144_KINDS  kinds to boot once at libxl's default memory (128 + 16 MiB video) for MemAvailable
#   FLOOR_KINDS  kinds whose memory floor to search; FLOOR_LO (assumed to fail), FLOOR_HI, STEP
# Output, one console line each: "BENCH <kind> <name> <value...>".
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
n=0

ip link add xenbr0 type bridge && ip link set xenbr0 up || echo "BENCH all error dom0-bridge"

# Polls (the shell has no watch): when the stub domain leaves the paused state its kernel
# starts; then when QEMU writes device-model/<guest>/state=running. Both in dom0's clock.
probe() {
  name=$1 out=$2 sid= gid=
  while :; do
    now=$(ms)
    if [ -z "$sid" ]; then
      st=$(xl list "$name-dm" 2>/dev/null | awk 'NR == 2 { print $2, $5 }')
      case "$st" in
        "" | *p*) ;;
        *) sid=${st%% *}; gid=$(xl domid "$name"); echo "unpause $now $sid $gid" >> "$out" ;;
      esac
    elif [ "$(xenstore-read /local/domain/$sid/device-model/$gid/state 2>/dev/null)" = running ]; then
      echo "running $now" >> "$out"
      return
    fi
    sleep 0.05
  done
}

# create KIND MEM(MiB|default) MODE(boot|at144|floor): one xl create and destroy.
create() {
  kind=$1 mem=$2 mode=$3
  n=$((n + 1))
  name=bench$n
  {
    echo "name=\"$name\""
    echo 'type="hvm"'
    echo 'memory=64'
    echo 'vcpus=1'
    echo 'device_model_version="qemu-xen"'
    echo 'device_model_stubdomain_override=1'
    echo "stubdomain_kernel=\"/e2e/$kind-kernel\""
    echo "stubdomain_ramdisk=\"/e2e/$kind-rootfs\""
    [ "$mem" != default ] && echo "stubdomain_memory=$mem"
    # libxl adds the video RAM to the stub domain: 128 + 16 = 144 MiB by default.
    echo 'vga="stdvga"'
    echo 'videoram=16'
    echo "vif=[\"bridge=xenbr0,mac=00:16:3e:be:00:$(printf %02x $((n % 256))),model=rtl8139\"]"
    echo 'boot="n"'
    echo 'vnc=0'
    echo 'on_crash="destroy"'
  } > /e2e/$name.cfg
  rm -f /e2e/$name.probe
  probe "$name" /e2e/$name.probe &
  ppid=$!
  t0=$(ms)
  if timeout 150 xl create /e2e/$name.cfg > /e2e/$name.log 2>&1; then ok=1; else ok=0; fi
  t1=$(ms)
  kill $ppid 2>/dev/null
  wait $ppid 2>/dev/null
  echo "BENCH $kind create mem=$mem mode=$mode ok=$ok xl_create_ms=$((t1 - t0)) $(tr '\n' ' ' < /e2e/$name.probe)"
  if [ $ok = 0 ]; then
    grep -m 3 error /e2e/$name.log | sed "s/^/BENCH $kind xl-log /"
    # How the stub domain's memory looked at boot, and its last words.
    { grep -E 'Memory:|RAMDISK|Initramfs|Out of memory' /var/log/xen/qemu-dm-$name.log; tail -n 12 /var/log/xen/qemu-dm-$name.log; } 2>/dev/null |
      sed "s/^/BENCH $kind stub-log /"
  fi
  if [ "$mode" != floor ] && grep -q '^running' /e2e/$name.probe 2>/dev/null; then
    # One heartbeat of the health report (5 s) after running, so memory is sampled while idle.
    sleep 6
    gid=$(xl domid "$name")
    if [ "$kind" = ours ]; then
      # Retried when killed by a signal: dom0 programs crash at random under nested TCG
      # (test/xen/README.md, Known problems).
      for try in 1 2 3; do
        json=$(stubdom-init status "$gid" --json 2>&1); rc=$?
        [ $rc -lt 128 ] && break
        echo "BENCH ours status-retry died by signal $((rc - 128))"
      done
      echo "BENCH ours status mode=$mode $(echo "$json" | tr '\n' ' ')"
    fi
    # An init that prints /proc/meminfo's MemAvailable line on its console (hvc0, logged by
    # xenconsoled) reports its memory that way; the health report is ours only.
    kib=$(sed -n 's/.*MemAvailable: *\([0-9]*\) kB.*/\1/p' /var/log/xen/qemu-dm-$name.log 2>/dev/null | tail -n 1)
    [ -n "$kib" ] && echo "BENCH $kind meminfo mode=$mode $kib"
  fi
  xl destroy "$name" > /dev/null 2>&1
  for i in $(seq 40); do
    xl list | awk 'NR > 1 && $1 != "Domain-0" { found = 1 } END { exit !found }' || break
    sleep 0.5
  done
}

for kind in $BOOT_ORDER; do
  create "$kind" "$BOOT_MEM" boot
done
for kind in $AT144_KINDS; do
  create "$kind" default at144
done

# Bisection: create succeeds at hi, is assumed to fail at lo; `ok` is left by create.
for kind in $FLOOR_KINDS; do
  lo=$FLOOR_LO hi=$FLOOR_HI
  create "$kind" "$hi" floor
  if [ $ok = 0 ]; then
    echo "BENCH $kind floor above $FLOOR_HI"
    continue
  fi
  while [ $((hi - lo)) -gt "$STEP" ]; do
    mid=$((lo + (hi - lo) / STEP / 2 * STEP))
    create "$kind" "$mid" floor
    if [ $ok = 1 ]; then hi=$mid; else lo=$mid; fi
  done
  echo "BENCH $kind floor $hi"
done
