// What libxl writes into xenstore when it creates an HVM guest G whose device model runs in a
// Linux stub domain S (xen-stubdom-protocol.md §1-5), as a pure list of writes. Read from
// tools/libs/light in xen-project/xen (staging): libxl__domain_make (libxl_create.c),
// libxl__build_post (libxl_dom.c), libxl__spawn_stub_dm, libxl__write_stub_dmargs and
// libxl__build_device_model_args_new (libxl_dm.c), libxl__set_xenstore_nic (libxl_nic.c) and
// the disk/console device adds. Values libxl learns from the hypervisor (ring pages, event
// channels) are fixed placeholders here; nothing in the stub domain's contract reads them.
import { domainPath } from "../xenstore/model.ts";
import type { XsPermission } from "../xenstore/types.ts";
import type { GuestDescription } from "./guest.ts";

export interface XsWrite {
  path: string;
  value: string;
  /** Set after the write; absent = inherited from the parent. */
  perms?: XsPermission[];
}

export interface Domids {
  guestDomid: number;
  stubDomid: number;
}

const n = (domid: number): XsPermission => ({ domid, perm: "n" });
const r = (domid: number): XsPermission => ({ domid, perm: "r" });

/** STUBDOM_CONSOLE_SERIAL: consoles 0-2 are log, save and restore; serial ports follow. */
export const STUBDOM_CONSOLE_SERIAL = 3;
/** LIBXL_STUBDOM_START_TIMEOUT, seconds. */
export const STUBDOM_START_TIMEOUT = 30;

/** A stub domain's vm path: libxl generates a fresh UUID for it; ours is derived, so stable. */
export function stubUuid(guestUuid: string): string {
  return `${guestUuid.slice(0, 24)}5${guestUuid.slice(25)}`;
}

export function videoRamMiB(g: GuestDescription): number {
  if (g.vga === "none") return 0;
  return g.videoram ?? (g.vga === "cirrus" ? 8 : 16);
}

/** libxl__device_disk_dev_number: the disk index (letter) and the xenstore device number. */
export function diskNumber(vdev: string): { disk: number; devnum: number } {
  const letter = vdev.charCodeAt(vdev.length - 1) - 97;
  if (vdev.startsWith("xvd")) {
    // Past xvdp the 8-bit minor is full: libxl switches to the extended numbering.
    return { disk: letter, devnum: letter < 16 ? (202 << 8) | (letter << 4) : (1 << 28) | (letter << 8) };
  }
  if (vdev.startsWith("sd")) return { disk: letter, devnum: (8 << 8) | (letter << 4) };
  // IDE: hda/hdb on major 3, hdc/hdd on major 22, 64 minors per unit.
  const major = letter < 2 ? 3 : 22;
  return { disk: letter, devnum: (major << 8) | ((letter % 2) << 6) };
}

/** The tap QEMU creates for emulated NIC `devid` (libxl__device_nic_devname, VIF_IOEMU). */
export const tapName = (guestDomid: number, devid: number) => `vif${guestDomid}.${devid}-emu`;

/**
 * The device model's arguments as libxl__build_device_model_args_new (libxl_dm.c) builds them
 * for qemu-xen in a stub domain, without argv[0] (libxl__write_stub_dmargs starts at 1):
 * no QMP/monitor options (the stub domain's init adds its own), no VNC/SDL/spice, serial ports
 * on /dev/hvc3+, disks as /dev/xvdX host devices, `-incoming $STUBDOM_RESTORE_INCOMING_ARG`
 * on restore. Not modelled: channels, keymap, USB, sound, PCI, COLO, ACPI off, AHCI, vnuma.
 */
export function dmArgv(g: GuestDescription, guestDomid: number): string[] {
  const a: string[] = [];
  // The development VM's QEMU has no Xen accelerator: the Xen-only options go.
  if (!g.dm) a.push("-xen-domid", String(guestDomid));
  a.push("-no-shutdown", "-nodefaults", "-no-user-config", "-name", g.name, "-display", "none");
  if (g.disks.some((d) => !d.cdrom && d.vdev.startsWith("sd"))) a.push("-device", "lsi53c895a");
  g.serial.forEach((_, i) => a.push("-serial", `/dev/hvc${STUBDOM_CONSOLE_SERIAL + i}`));
  const vram = videoRamMiB(g);
  if (g.vga === "stdvga") a.push("-device", `VGA,vgamem_mb=${vram}`);
  if (g.vga === "cirrus") a.push("-device", `cirrus-vga,vgamem_mb=${vram}`);
  a.push("-boot", `order=${g.boot}`);
  // xl always fills avail_vcpus, so libxl takes the "N,maxcpus=N" form.
  if (g.vcpus > 1) a.push("-smp", `${g.vcpus},maxcpus=${g.vcpus}`);
  g.nics.forEach((nic, devid) => {
    a.push("-device", `${nic.model},id=nic${devid},netdev=net${devid},mac=${nic.mac}`);
    a.push("-netdev", `type=tap,id=net${devid},ifname=${tapName(guestDomid, devid)},br=${nic.bridge},script=no,downscript=no`);
  });
  if (g.nics.length === 0) a.push("-net", "none");
  if (g.restore) a.push("-incoming", "$STUBDOM_RESTORE_INCOMING_ARG");
  a.push(...g.extraArgs);
  a.push("-machine", g.dm ? `pc,accel=${g.dm.accel}` : "xenfv,suppress-vmdesc=on");
  a.push(...g.extraArgsHvm);
  a.push("-m", String(g.memory - vram));
  for (const d of g.disks) {
    const { disk, devnum } = diskNumber(d.vdev);
    const file = d.stubdomDevice ?? `/dev/xvd${String.fromCharCode(97 + disk)}`;
    if (d.cdrom) {
      if (disk > 4) continue; // libxl: an emulated CD-ROM must be one of the first 4 disks
      const id = `ide-${devnum}`;
      a.push("-drive", `if=none,readonly=on,id=${id},file=${file},format=host_device`);
      a.push("-device", `ide-cd,id=${id},drive=${id},bus=ide.${Math.floor(disk / 2)},unit=${disk % 2}`);
    } else if (d.vdev.startsWith("sd")) {
      a.push("-drive", `file=${file},if=none,id=scsidisk-${disk},format=host_device,cache=writeback`);
      a.push("-device", `scsi-hd,drive=scsidisk-${disk},scsi-id=${disk}`);
    } else if (disk < 4) {
      a.push("-drive", `file=${file},if=ide,index=${disk},media=disk,format=host_device,cache=writeback`);
    }
    // Disks past the fourth IDE one reach the guest through PV drivers only.
  }
  return a;
}

/** libxl__domain_make + libxl__build_post for one domain. */
function domainKeys(
  w: XsWrite[],
  d: { domid: number; name: string; uuid: string; hvm: boolean; maxMemKiB: number; targetMemKiB: number; videoKiB: number },
): void {
  const dom = domainPath(d.domid);
  const vm = `/vm/${d.uuid}`;
  const ro = [n(0), r(d.domid)];
  const rw = [n(d.domid)];
  w.push({ path: dom, value: "", perms: ro });
  w.push({ path: vm, value: "", perms: ro });
  w.push({ path: `/libxl/${d.domid}`, value: "", perms: [n(0)] });
  w.push({ path: `/libxl/${d.domid}/device`, value: "", perms: [n(0)] });
  w.push({ path: `${dom}/vm`, value: vm });
  w.push({ path: `${dom}/name`, value: d.name });
  w.push({ path: `${vm}/name`, value: d.name });
  w.push({ path: `${dom}/cpu`, value: "", perms: ro });
  w.push({ path: `${dom}/memory`, value: "", perms: ro });
  w.push({ path: `${dom}/device`, value: "", perms: ro });
  w.push({ path: `${dom}/device/suspend/event-channel`, value: "", perms: rw });
  w.push({ path: `${dom}/control`, value: "", perms: ro });
  if (d.hvm) w.push({ path: `${dom}/hvmloader`, value: "", perms: ro });
  const controls = ["shutdown", "feature-poweroff", "feature-reboot", "feature-suspend"];
  if (d.hvm) controls.push("feature-s3", "feature-s4");
  controls.push("sysrq");
  for (const c of controls) w.push({ path: `${dom}/control/${c}`, value: "", perms: rw });
  for (const c of ["data", "drivers", "feature", "attr", "error"]) w.push({ path: `${dom}/${c}`, value: "", perms: rw });
  w.push({ path: `${vm}/uuid`, value: d.uuid });
  w.push({ path: `${dom}/control/platform-feature-multiprocessor-suspend`, value: "1" });
  w.push({ path: `${dom}/control/platform-feature-xs_reset_watches`, value: "1" });
  w.push({ path: `/libxl/${d.domid}/type`, value: d.hvm ? "hvm" : "pv" });
  // libxl__build_post
  w.push({ path: `${dom}/memory/static-max`, value: String(d.maxMemKiB) });
  w.push({ path: `${dom}/memory/target`, value: String(d.targetMemKiB) });
  w.push({ path: `${dom}/memory/videoram`, value: String(d.videoKiB) });
  w.push({ path: `${dom}/domid`, value: String(d.domid) });
  w.push({ path: `${dom}/store/port`, value: "1" });
  w.push({ path: `${dom}/store/ring-ref`, value: "1044476" });
  w.push({ path: `${dom}/cpu/0/availability`, value: "online" });
}

/**
 * libxl__device_generic_add (libxl_device.c): frontend keys owned by the frontend domain and
 * readable by the backend; "read-only frontend" keys (and console 0's whole directory) owned
 * by the backend domain and readable by the frontend; backend keys owned by the backend.
 */
function device(
  w: XsWrite[],
  kind: string,
  front: { domid: number; path: string; keys: Record<string, string>; ro?: Record<string, string>; roDir?: boolean },
  back: { domid: number; devid: number; keys: Record<string, string> },
): void {
  const backPath = `${domainPath(back.domid)}/backend/${kind}/${front.domid}/${back.devid}`;
  const frontPerms = [n(front.domid), r(back.domid)];
  const roPerms = [n(back.domid), r(front.domid)];
  w.push({ path: front.path, value: "", perms: front.roDir ? roPerms : frontPerms });
  w.push({ path: `${front.path}/backend`, value: backPath, perms: frontPerms });
  for (const [k, v] of Object.entries(front.keys)) w.push({ path: `${front.path}/${k}`, value: v, perms: frontPerms });
  for (const [k, v] of Object.entries(front.ro ?? {})) w.push({ path: `${front.path}/${k}`, value: v, perms: roPerms });
  w.push({ path: backPath, value: "", perms: [n(back.domid), r(front.domid)] });
  const backKeys = { frontend: front.path, "frontend-id": String(front.domid), online: "1", state: "1", ...back.keys };
  for (const [k, v] of Object.entries(backKeys)) w.push({ path: `${backPath}/${k}`, value: v });
}

/**
 * Every key libxl writes for guest G and its Linux stub domain S, in libxl's order, with the
 * permissions it sets. Apply them with a privileged connection; then libxl calls
 * xs_introduce_domain for both and xs_set_target(S, G).
 */
export function toolstackWrites(g: GuestDescription, ids: Domids): XsWrite[] {
  const G = ids.guestDomid;
  const S = ids.stubDomid;
  const w: XsWrite[] = [];
  const videoKiB = videoRamMiB(g) * 1024;
  const guestVm = `/vm/${g.uuid}`;
  domainKeys(w, {
    domid: G, name: g.name, uuid: g.uuid, hvm: true,
    maxMemKiB: g.memory * 1024, targetMemKiB: g.memory * 1024 - videoKiB, videoKiB,
  });
  // libxl__spawn_stub_dm: a PV domain of stubdomain_memory plus the guest's video RAM.
  const stubKiB = (g.stubdomMemory + videoRamMiB(g)) * 1024;
  domainKeys(w, {
    domid: S, name: `${g.name}-dm`, uuid: stubUuid(g.uuid), hvm: false,
    maxMemKiB: stubKiB, targetMemKiB: stubKiB, videoKiB: 0,
  });
  const S_ = domainPath(S);
  const G_ = domainPath(G);
  w.push({ path: `/libxl/${G}/dm-version`, value: "qemu_xen" });
  // libxl__write_stub_dmargs: one key per argument, readable by dom0 and S only.
  w.push({ path: `${guestVm}/image/dm-argv`, value: "", perms: [n(0), r(S)] });
  dmArgv(g, G).forEach((arg, i) => {
    w.push({ path: `${guestVm}/image/dm-argv/${String(i + 1).padStart(3, "0")}`, value: arg });
  });
  w.push({ path: `${G_}/image/device-model-domid`, value: String(S) });
  w.push({ path: `${S_}/target`, value: String(G) });
  w.push({ path: `${G_}/hvmloader/bios`, value: "seabios" });
  w.push({ path: `${G_}/hvmloader/allow-memory-relocate`, value: "0" });
  w.push({ path: `${S_}/device-model/${G}`, value: "", perms: [n(S), r(G)] });

  // The guest's disks, attached to S under the same virtual device names.
  for (const d of g.disks) {
    const { devnum } = diskNumber(d.vdev);
    const type = d.cdrom ? "cdrom" : "disk";
    device(w, "vbd",
      {
        domid: S, path: `${S_}/device/vbd/${devnum}`,
        keys: { "backend-id": "0", state: "1", "virtual-device": String(devnum), "device-type": type },
      },
      {
        domid: 0, devid: devnum, keys: {
          "device-type": type, removable: d.cdrom ? "1" : "0", bootable: "1", dev: d.vdev, type: "phy",
          mode: d.readwrite && !d.cdrom ? "w" : "r", params: d.target, script: "/etc/xen/scripts/block",
        },
      });
  }

  // Consoles (libxl__device_console_add, spawn_stub_launch_dm): 0 is the PV console served
  // by xenconsoled (the stub domain's log) at S/console; 1+ are ioemu consoles under
  // device/console: save, restore, then the guest's serial ports.
  const consoles: Array<{ name: string; output: string }> = [
    { name: `qemu-dm-${g.name}`, output: `file:/var/log/xen/qemu-dm-${g.name}.log` },
    { name: "save", output: `file:/var/lib/xen/qemu-save.${G}` },
    { name: "restore", output: g.restore ? `pipe:/var/lib/xen/qemu-resume.${G}` : "none" },
    ...g.serial.map((s, i) => ({ name: `serial${i}`, output: s })),
  ];
  consoles.forEach((c, devid) => {
    const ro: Record<string, string> = {
      name: c.name, limit: "1048576", type: devid === 0 ? "xenconsoled" : "ioemu", output: c.output, tty: "",
    };
    if (devid === 0) Object.assign(ro, { port: "2", "ring-ref": "1044475" });
    device(w, "console",
      { domid: S, path: devid === 0 ? `${S_}/console` : `${S_}/device/console/${devid}`, keys: { "backend-id": "0" }, ro, roDir: devid === 0 },
      { domid: 0, devid, keys: { protocol: "vt100", name: c.name } });
  });

  // One PV vif of S per guest NIC, same MAC; QEMU's tap n is joined to it by the init.
  g.nics.forEach((nic, devid) => {
    // libxl__set_xenstore_nic (libxl_nic.c).
    const backKeys: Record<string, string> = { script: "/etc/xen/scripts/vif-bridge", mac: nic.mac };
    if (nic.ip !== undefined) backKeys.ip = nic.ip;
    // The backend gets mtu only when the admin set one other than the default 1500.
    if (nic.mtu !== undefined && nic.mtu !== 1500) backKeys.mtu = String(nic.mtu);
    Object.assign(backKeys, { bridge: nic.bridge, handle: String(devid), type: "vif", "hotplug-status": "" });
    device(w, "vif",
      {
        domid: S, path: `${S_}/device/vif/${devid}`,
        keys: { "backend-id": String(nic.backendDomid), state: "1", handle: String(devid), mac: nic.mac, trusted: "1" },
        ro: { mtu: String(nic.mtu ?? 1500) },
      },
      { domid: nic.backendDomid, devid, keys: backKeys });
  });
  return w;
}

/** Key the simulator watches for the stub domain's request to shut the guest down (dev VM). */
export const devShutdownKey = (stubDomid: number) => `${domainPath(stubDomid)}/data/dev-hypervisor/shutdown`;
