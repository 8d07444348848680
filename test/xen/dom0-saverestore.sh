# Save, restore and migration (issue 18), sourced by dom0-test.sh in e2e.mode=saverestore: xl
# save and restore, xl migrate to this host, xl shutdown, and restores that must fail (a corrupt
# save file, a stream that stops). Uses dom0-test.sh's helpers (pass, fail, ms, status_once,
# watch_status, serial and stamped logs).
# The guest's stub domain ID; "dom0" when QEMU runs there (e2e.dm=dom0), so that the save,
# restore and migration checks read the same for both.
stub_of() { if [ "$dm" = dom0 ]; then echo dom0; else xl domid $guest-dm 2>/dev/null; fi; }
# xl save, then xl restore (issue 18): libxl stops QEMU and has it write its device state into
# the stub domain's console 1, which dom0's QEMU copies to /var/lib/xen/qemu-save.<domid>; on
# restore the new stub domain's QEMU reads it from console 2 (`-incoming`). Each step has a
# deadline, so a stream that never arrives is a FAIL with the logs, not a hang.
save_restore() {
  old_stub=$(stub_of)
  # The guest OS must be up (lease taken, ticking) before its state is worth saving.
  if l=$(guest_line "lease 10\.99\.0\." 300); then
    guest_ip=$(echo "$l" | awk '{ print $3 }')
    echo "E2E INFO guest up before save: $l"
  else
    echo "E2E INFO guest never took a lease before save; serial: $(serial_tail)"
  fi
  t=$(ms)
  saved=0
  if timeout 240 xl save $guest /e2e/guest.save > /e2e/xl-save.log 2>&1; then
    gone=yes
    xl domid $guest > /dev/null 2>&1 && gone="no: the guest is still there"
    [ "$dm" != dom0 ] && xl domid $guest-dm > /dev/null 2>&1 && gone="no: its stub domain is still there"
    size=$(stat -c %s /e2e/guest.save 2>/dev/null || echo 0)
    if [ "$gone" = yes ] && [ "$size" -gt 0 ]; then pass save "$size bytes in $(( $(ms) - t )) ms"; saved=1
    else fail save "file $size bytes; gone: $gone"; fi
  else
    fail save "exit $?: $(tail -n 3 /e2e/xl-save.log | tr '\n' ' ')"
  fi
  sed 's/^/XL-SAVE| /' /e2e/xl-save.log
  dm_log
  # Only a guest that was saved and is gone can be restored; the later checks need the restore.
  [ $saved = 1 ] || return
  mark=$(wc -l < $stamped)
  before=$(last_tick)
  t=$(ms)
  if timeout 240 xl restore /e2e/guest.save > /e2e/xl-restore.log 2>&1 && new_stub=$(stub_of); then
    pass restore "guest $(xl domid $guest) with stub domain $new_stub (was $old_stub) in $(( $(ms) - t )) ms"
  else
    fail restore "exit $?: $(tail -n 3 /e2e/xl-restore.log | tr '\n' ' ')"
    sed 's/^/XL-RESTORE| /' /e2e/xl-restore.log
    return
  fi
  sed 's/^/XL-RESTORE| /' /e2e/xl-restore.log
  arrived restore
  continues restore "$mark" "$before" "$(ms)"
  nic_after restore
  migrate
  guest_shutdown
  [ "$kind" = ours ] && restore_corrupt
}
last_tick() { grep -a -o "E2E-GUEST tick [0-9]*" $stamped | tail -n 1 | awk '{ print $3 }'; }
# $1-continues: the guest went on where it stopped. The ticks stamped after line $2 of the
# stamped serial log, starting from tick $3, never go back and no new boot line appears; one is
# stamped after $4 (the operation's end) within 60 s. A tick seen twice in a row is allowed and
# counted: bytes still in the emulated UART's FIFO travel in QEMU's migrated state and can be
# sent by both the old and the new stub domain. The longest gap between two ticks from line $2
# on, in dom0 ms, is the downtime for a migration (±1 s: tail's poll).
continues() {
  n=0
  while [ $n -lt 60 ]; do
    newest=$(tail -n +$(( $2 + 1 )) $stamped | grep -a " E2E-GUEST tick " | tail -n 1 | awk '{ print $1 }')
    [ -n "$newest" ] && [ "$newest" -gt "$4" ] && break
    n=$((n + 1)); sleep 1
  done
  set -- "$1" "$2" "${3:-0}" "$4" $(tail -n +$(( $2 + 1 )) $stamped | awk -v prev="${3:-0}" -v end="$4" '
    / E2E-GUEST boot / { boots++ }
    / E2E-GUEST tick [0-9]+$/ { v = $NF + 0; if (v < prev) back++; if (v == prev) again++; if (pt != "" && $1 - pt > gap) gap = $1 - pt; prev = v; pt = $1; if ($1 > end) after++ }
    END { printf "%d %d %d %d %d %d\n", back, boots, after, gap, prev, again }')
  # $5 ticks that went back, $6 boot lines, $7 ticks after the end, $8 longest gap, $9 last tick
  seq=$(tail -n +$(( $2 + 1 )) $stamped | awk '/ E2E-GUEST tick [0-9]+$/ { printf "%s@%s ", $NF, $1 }' | tail -c 600)
  if [ "$5" = 0 ] && [ "$6" = 0 ] && [ "$7" -gt 0 ]; then
    pass $1-continues "tick $3 before, $9 now, no restart; longest gap between ticks $8 ms; ticks seen twice: ${10}"
  else
    fail $1-continues "tick $3 before, ${9:-none} now; ticks that went back: $5, boot lines: $6, ticks after the end: $7; tick@ms: $seq"
  fi
  echo "E2E TIME $1-tick-gap-ms $8"
}
# $1-nic: dom0 still reaches the guest at the address of its lease.
nic_after() {
  if [ -n "$guest_ip" ] && ping -c 3 -W 5 "$guest_ip" > /e2e/ping.log 2>&1; then pass $1-nic "$(grep -a packets /e2e/ping.log)"
  else fail $1-nic "guest ${guest_ip:-without a lease}: $(tr '\n' ' ' < /e2e/ping.log 2>/dev/null)"; fi
}
# guest-shutdown: xl shutdown ends the guest OS the normal way (ACPI power button, or Xen's PV
# control), with reason poweroff (xl's code 0), both domains go, and our stub domain reported
# no crash. Whether its agent logged the guest's SHUTDOWN event is printed, not required:
# QEMU tells Xen of the power-off before it sends the event, and libxl destroys the stub domain
# at once (no graceful stop exists for it), so the line often never reaches the log.
guest_shutdown() {
  t=$(ms)
  timeout 120 xl shutdown -F -w $guest > /e2e/xl-shutdown.log 2>&1; rc=$?
  n=0
  while [ $n -lt 60 ] && xl list | grep -q "$guest"; do n=$((n + 1)); sleep 1; done
  left=$(xl list | grep -c "$guest")
  how=$(grep -a -o "E2E-GUEST poweroff [a-z]*" $stamped | tail -n 1)
  reason=$(sed -n "s/^Domain [0-9]* has been shut down, reason code \([0-9]*\).*/\1/p" /e2e/xl-shutdown.log | tail -n 1)
  seen=$(cat /var/log/xen/qemu-dm-$guest*.log 2>/dev/null | grep -c "the guest shut itself down (guest-shutdown)")
  crashed=$(cat /var/log/xen/qemu-dm-$guest*.log 2>/dev/null | grep -c "crash policy")
  if [ $rc = 0 ] && [ "$left" = 0 ] && [ -n "$how" ] && [ "$reason" = 0 ] && [ "$crashed" = 0 ]; then
    pass guest-shutdown "${how#E2E-GUEST } in $(( $(ms) - t )) ms, xl reason code 0, both domains gone, no crash report"
    echo "E2E INFO guest-shutdown: our agent logged the guest's SHUTDOWN before its domain was destroyed: $seen time(s)"
  else
    fail guest-shutdown "xl shutdown exit $rc; domains left: $left; guest said: ${how:-nothing}; xl reason ${reason:-?}; stub domain saw it: $seen, crash reports: $crashed"
  fi
  sed 's/^/XL-SHUTDOWN| /' /e2e/xl-shutdown.log
  grep -h -a "QEMU\|powering off\|shut" /var/log/xen/qemu-dm-$guest*.log 2>/dev/null | tail -n 8 | sed 's/^/STUB| /'
}
# xl migrate to this same host, without ssh (`-s ""` runs the "host" argument as the receiver's
# command): the receiver's libxl builds a new stub domain and streams QEMU's state into its
# console 2, as on restore, while the sender's guest keeps running until the last round.
migrate() {
  old_guest=$(xl domid $guest)
  old_stub=$(stub_of)
  mark=$(wc -l < $stamped)
  before=$(last_tick)
  t=$(ms)
  if timeout 300 xl migrate -s "" $guest "xl migrate-receive" > /e2e/xl-migrate.log 2>&1 &&
    new_guest=$(xl domid $guest 2>/dev/null) && new_stub=$(stub_of); then
    left=$(xl list | grep -c -- "--migratedaway")
    if [ "$new_guest" != "$old_guest" ] && { [ "$new_stub" != "$old_stub" ] || [ "$dm" = dom0 ]; } && [ "$left" = 0 ]; then
      pass migrate "guest $old_guest -> $new_guest, stub domain $old_stub -> $new_stub in $(( $(ms) - t )) ms"
    else
      fail migrate "guest $old_guest -> $new_guest, stub domain $old_stub -> $new_stub, $left left behind"
    fi
  else
    fail migrate "exit $?: $(tail -n 3 /e2e/xl-migrate.log | tr '\n' ' ')"
    sed 's/^/XL-MIGRATE| /' /e2e/xl-migrate.log
    return
  fi
  sed 's/^/XL-MIGRATE| /' /e2e/xl-migrate.log
  arrived migrate
  continues migrate "$mark" "$before" "$(ms)"
  nic_after migrate
}
# After a restore or a migration ($1): QMP answers `running` through the new stub domain
# ($1-qmp) and, for ours, status shows it running with the agent's qemu_restored boot phase:
# it saw QEMU leave "inmigrate" ($1-status).
arrived() {
  out=$(timeout 60 xl qemu-monitor-command $guest "info status" 2>&1 || echo "exit $? (124: no answer in 60 s)")
  case "$out" in
    *running*) pass $1-qmp "$out" ;;
    *) fail $1-qmp "$out" ;;
  esac
  [ "$kind" = ours ] || return 0
  if status_once /e2e/status.json "$(xl domid $guest)" --json && grep -q '"phase": *"running"' /e2e/status.json &&
    grep -q '"qemu_restored": *[0-9]' /e2e/status.json; then
    pass $1-status
  else
    fail $1-status "$(head -c 300 /e2e/status.json)"
  fi
  sed 's/^/STATUS| /' /e2e/status.json
}
# A save file whose QEMU state is corrupt (the last "QEVM" magic in it, the start of QEMU's
# state, changed): xl restore must fail, QEMU's reason must reach our health report (seen by
# status --watch before the stub domain's keys go) and dom0's log, and no domain may be left.
restore_corrupt() {
  timeout 60 xl destroy $guest > /dev/null 2>&1
  # In place: dom0's root has no room for a second copy.
  at=$(BUN_BE_BUN=1 stubdom-init -e '
    const fs = require("node:fs");
    const at = Buffer.from(await Bun.file("/e2e/guest.save").arrayBuffer()).lastIndexOf("QEVM");
    if (at >= 0) { const fd = fs.openSync("/e2e/guest.save", "r+"); fs.writeSync(fd, Buffer.from("X"), 0, 1, at + 3); fs.closeSync(fd); }
    console.log(at);' 2>&1)
  case "$at" in ''|-1|*[!0-9]*) fail restore-corrupt "no QEMU state found in the save file: $at"; return ;; esac
  refused_restore restore-corrupt "Not a migration stream"
  restore_stalled
  rm -f /e2e/guest.save
}
# A save file whose QEMU state stops after its first 8 bytes (magic and version): its emulator
# record (libxl_sr_stream_format.h: type 3, QEMU upstream, index 0) is cut short with libxl's
# framing intact, so libxl streams it whole into the new stub domain's console 2 and QEMU waits
# there for the rest, which never comes. xl restore must fail by libxl's stub domain start
# timeout (30 s), our report must say before then that the state never arrived (restore-watch.ts),
# and no domain may be left.
restore_stalled() {
  cut=$(BUN_BE_BUN=1 stubdom-init -e '
    const fs = require("node:fs");
    const f = "/e2e/guest.save", keep = 8;
    const buf = fs.readFileSync(f);
    const at = buf.lastIndexOf("QEV"), hdr = at - 16;
    if (at < 16 || buf.readUInt32LE(hdr) !== 3 || buf.readUInt32LE(hdr + 8) !== 2 || buf.readUInt32LE(hdr + 12) !== 0) {
      console.log(`no QEMU emulator record before ${at}`);
      process.exit(0);
    }
    const len = buf.readUInt32LE(hdr + 4), next = hdr + 8 + Math.ceil(len / 8) * 8;
    buf.write("QEVM", at);
    buf.writeUInt32LE(8 + keep, hdr + 4);
    const fd = fs.openSync(f, "r+");
    fs.writeSync(fd, buf, hdr, 16 + keep, hdr);
    fs.writeSync(fd, buf, next, buf.length - next, at + keep);
    fs.ftruncateSync(fd, at + keep + buf.length - next);
    fs.closeSync(fd);
    console.log(`cut ${len - 8 - keep}`);' 2>&1)
  case "$cut" in "cut "[0-9]*) echo "E2E INFO restore-stalled: QEMU's record $cut bytes shorter" ;;
    *) fail restore-stalled "could not cut the save file: $cut"; return ;; esac
  refused_restore restore-stalled "no guest state on /dev/hvc2 yet"
}
# xl restore of the doctored save file must fail ($1, the check), with $2 (QEMU's words or our
# agent's) in our health report, seen by status --watch before the stub domain's keys go, and in
# dom0's log of the stub domain; and no domain may be left.
refused_restore() {
  : > /e2e/status-watch.log
  watch_status & watch_pid=$!
  sleep 2
  t=$(ms)
  timeout 240 xl restore /e2e/guest.save > /e2e/xl-$1.log 2>&1; rc=$?
  dt=$(( $(ms) - t ))
  sleep 2
  pkill -f 'status --all --watch' 2>/dev/null; sleep 1; pkill -KILL -f 'status --all --watch' 2>/dev/null
  kill $watch_pid 2>/dev/null
  left=$(xl list | grep -c "$guest")
  dom0_log=$(grep -c "$2" /var/log/xen/qemu-dm-$guest.log 2>/dev/null)
  report=$(grep -c "$2" /e2e/status-watch.log)
  if [ $rc != 0 ] && [ "$left" = 0 ] && [ "${dom0_log:-0}" -gt 0 ] && [ "$report" -gt 0 ]; then
    pass $1 "xl restore failed in $dt ms; '$2' in the health report and the dom0 log; no domain left"
  else
    fail $1 "xl restore exit $rc after $dt ms; domains left: $left; in the dom0 log: ${dom0_log:-0}; in the health report: $report"
  fi
  echo "E2E TIME $1-ms $dt"
  sed "s/^/XL-$1| /" /e2e/xl-$1.log
  sed 's/^/STATUS| /' /e2e/status-watch.log
}
