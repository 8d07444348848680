# PCI passthrough through the stub domain (issue 22), sourced by dom0-test.sh in e2e.mode=pci.
# The outer machine has an emulated IOMMU and a spare e1000e (harness.ts); dom0 hands that
# device to pciback, the guest's config passes it, and these checks follow it into the guest:
#   pci-create  the guest's OS lists the device's vendor:device (guest-init.sh's "pci" lines)
#   pci-status  our status shows it present in the stub domain (ours only)
#   pci-detach  xl pci-detach: gone from the guest (and from our status)
#   pci-attach  xl pci-attach: back in the guest (and present in our status)
PCI_ID=8086:10d3

# Sets pci_bdf to the spare e1000e's address and makes it assignable. pciback in passthrough
# mode shows a device to pcifront at its host address, the one libxl gives QEMU (QEMU 7.2 opens
# that address in the stub domain's sysfs).
pci_prepare() {
  pci_bdf=
  insmod /lib/modules/xen-pciback.ko passthrough=1 || { fail pci-prepare "insmod xen-pciback failed"; return 1; }
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor):$(cat $d/device)" = "0x8086:0x10d3" ] && pci_bdf=${d##*/}
  done
  [ -n "$pci_bdf" ] || { fail pci-prepare "no e1000e ($PCI_ID) in dom0: $(ls /sys/bus/pci/devices | tr '\n' ' ')"; return 1; }
  xl pci-assignable-add "$pci_bdf" > /e2e/pci-assignable.log 2>&1 ||
    { fail pci-prepare "xl pci-assignable-add $pci_bdf: $(tr '\n' ' ' < /e2e/pci-assignable.log)"; return 1; }
  echo "E2E INFO pci device $pci_bdf ($PCI_ID), assignable: $(xl pci-assignable-list | tr '\n' ' ')"
  dmesg | grep -i -E 'DMAR|IOMMU|pciback' | tail -n 8 | sed 's/^/DMESG| /'
}

# The guest's last "pci" line within $1 s that does (want=yes) or does not (want=no) list the
# device. The guest prints its device list whenever it changes.
pci_in_guest() {
  n=0
  while [ $n -lt $1 ]; do
    l=$(serial_lines | grep -a -o "E2E-GUEST pci .*" | tail -n 1)
    case "$l" in
      *"$PCI_ID"*) [ "$2" = yes ] && { echo "$l"; return 0; } ;;
      ?*) [ "$2" = no ] && { echo "$l"; return 0; } ;;
    esac
    n=$((n + 1)); sleep 1
  done
  echo "${l:-no pci line}"
  return 1
}

# Our status's line for the device ("pci <bdf> 8086:10d3 present ..."), or nothing.
pci_status_line() {
  status_once /e2e/pci-status.log "$(xl domid $guest)"
  grep -a "pci $pci_bdf" /e2e/pci-status.log | head -n 1 | sed 's/^ *//'
}

pci_checks() {
  if l=$(pci_in_guest 300 yes); then pass pci-create "$l"; else fail pci-create "$l; serial: $(serial_tail)"; fi
  if [ "$kind" = ours ]; then
    s=$(pci_status_line)
    case "$s" in *"$PCI_ID present"*) pass pci-status "$s" ;; *) fail pci-status "${s:-no pci line}: $(tr '\n' ' ' < /e2e/pci-status.log | head -c 400)" ;; esac
  fi
  t=$(ms)
  if timeout 120 xl pci-detach $guest "$pci_bdf" > /e2e/pci-detach.log 2>&1 && l=$(pci_in_guest 60 no); then
    pass pci-detach "$(( $(ms) - t )) ms: $l"
  else
    fail pci-detach "$(tr '\n' ' ' < /e2e/pci-detach.log) guest: ${l:-?}"
  fi
  sed 's/^/XL-PCI-DETACH| /' /e2e/pci-detach.log
  t=$(ms)
  if timeout 120 xl pci-attach $guest "$pci_bdf" > /e2e/pci-attach.log 2>&1 && l=$(pci_in_guest 60 yes); then
    s=
    [ "$kind" = ours ] && s=$(pci_status_line)
    case "$kind:$s" in
      baseline:*|*"$PCI_ID present"*) pass pci-attach "$(( $(ms) - t )) ms: $l${s:+; status: $s}" ;;
      *) fail pci-attach "the guest sees it ($l), status does not: ${s:-no pci line}" ;;
    esac
  else
    fail pci-attach "$(tr '\n' ' ' < /e2e/pci-attach.log) guest: ${l:-?}"
  fi
  sed 's/^/XL-PCI-ATTACH| /' /e2e/pci-attach.log
  xl pci-list $guest 2>&1 | sed 's/^/XL-PCI-LIST| /'
  sed 's/^/STATUS| /' /e2e/pci-status.log 2>/dev/null
  sed 's/^/GUEST| /' $serial | grep -av "E2E-GUEST tick" | tr -d '\r' | tail -n 40
}
