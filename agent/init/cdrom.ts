// CD-ROM changes with libxl >= 4.20 (xen.git a18b50614d, docs/misc/stubdom.txt "CD-ROM
// changing"). For `xl cd-insert`/`cd-eject` libxl: QMP `eject` of `ide-<devid>`; looks in
// query-fdsets for an fd whose opaque is `stub-devid:<devid>` and `remove-fd`s it; detaches the
// stub domain's PV disk; attaches the new one (an empty placeholder for an eject); then polls
// query-fdsets every 200 ms until that opaque shows up again and sends `blockdev-change-medium
// id=ide-<devid> filename=/dev/fdset/<N> format=host_device` (not for an empty disk, but it
// polls for the fdset all the same). The add-fd in between is ours: when the re-attached vbd
// connects, open its /dev/xvdX read-only (QEMU matches the fd's access mode, and the drive is
// readonly=on) and hand it to QEMU with that opaque; any fdset-id will do, libxl finds it by
// the opaque.
//
// What we see in xenstore: libxl (re)writes the stub domain's frontend directory
// device/vbd/<devid>/ (virtual-device, device-type = cdrom, state = 1); the stub domain's
// blkfront moves `state` to 4 (Connected) just before it adds the disk, so the device node
// appears a moment later; on detach `state` goes to 5/6 and libxl removes the directory, and
// the node goes with the disk. A re-attached disk is a new node (devtmpfs gives it a new
// inode): the node QEMU was started with needs no fdset, any later one gets exactly one. When
// the vbd stops being a connected CD-ROM while our fdset still holds it (a plain
// block-detach, where libxl removes nothing), the fdset is removed here, since an open fd
// would keep blkfront from closing the device.
//
// `xl cd-eject` attaches libxl's empty placeholder (params: a 0-byte
// /var/run/xen/empty-cdrom.<domid>, served by dom0's QEMU as qdisk; its vbd never connects) and
// then waits for that opaque all the same, until "cdrom insertion timed out" (seen on nested
// Xen 4.20). So a placeholder gets an fdset holding /dev/null: libxl sends no medium change for
// an empty drive, and removes the fdset itself at the next cd-insert.
import type { Logger } from "../log.ts";
import { XenStoreError, type XenStore } from "../xenstore/types.ts";
import type { Listeners } from "./events.ts";

/** XenbusState values (xen/include/public/io/xenbus.h) that matter here. */
export const XENBUS = { connected: 4 } as const;
const MAX_XENBUS_STATE = 8;
/** Extended vbd numbers (1 << 28 | disk << 8 | partition), as libxl and blkfront use them. */
const EXTENDED = 1 << 28;

/** a, b, ..., z, aa, ab, ...: Linux's disk name suffix for disk index n. */
export function diskLetters(n: number): string {
  return (n >= 26 ? diskLetters(Math.floor(n / 26) - 1) : "") + String.fromCharCode(97 + (n % 26));
}

/**
 * How Linux's xen-blkfront names a vbd from its devid (xen_translate_vdev): every emulated
 * major (hd, sd) becomes an xvd name, so libxl's hdc (devid 5632) is /dev/xvdc. Whole disks
 * only: a partition (or an unknown major, which blkfront refuses) gives null.
 */
export function vbdDiskName(devid: number): string | null {
  if (!Number.isInteger(devid) || devid < 0) return null;
  if (devid & EXTENDED) {
    const minor = devid - EXTENDED;
    return devid < 2 * EXTENDED && minor % 256 === 0 ? `xvd${diskLetters(minor / 256)}` : null;
  }
  if (devid > 0xffff) return null;
  const major = devid >> 8;
  const minor = devid & 0xff;
  const whole = (perDisk: number, offset: number) => (minor % perDisk === 0 ? `xvd${diskLetters(offset + minor / perDisk)}` : null);
  const byMajor: Record<number, () => string | null> = {
    3: () => whole(64, 0), // hda, hdb
    22: () => whole(64, 2), // hdc, hdd
    8: () => whole(16, 0), // sda..sdp
    202: () => whole(16, 0), // xvda..xvdp
  };
  if (byMajor[major]) return byMajor[major]!();
  if (major >= 65 && major <= 71) return whole(16, (major - 64) * 16);
  if (major >= 128 && major <= 135) return whole(16, (major - 128 + 8) * 16);
  return null;
}

export const stubDevidOpaque = (devid: number) => `stub-devid:${devid}`;

/** The part of the QMP client this needs. */
export interface CdromQmp {
  execute(command: string, args?: Record<string, unknown>, timeoutMs?: number, fds?: number[]): Promise<unknown>;
}

/** Block device nodes: the real ones under /dev (cdrom-devices.ts) or a fake. */
export interface BlockDevices {
  /** Resolves once `path` exists; rejects after timeoutMs. Event driven, never polls. */
  waitFor(path: string, timeoutMs: number): Promise<void>;
  /**
   * Which node `path` is now (devtmpfs gives a re-created node a new inode), or null when it
   * does not exist: how a re-attached disk is told from the one QEMU already has.
   */
  identity(path: string): string | null;
  /** An O_RDONLY | O_CLOEXEC fd on `path`, or throws. */
  openReadOnly(path: string): number;
  close(fd: number): void;
}

export interface CdromDeps {
  xs: Pick<XenStore, "read" | "directory">;
  /** The stub domain's frontend vbd directory, /local/domain/<S>/device/vbd (the watched path). */
  vbdDir: string;
  /** QEMU's monitor while QEMU runs, else undefined. */
  qmp(): CdromQmp | undefined;
  devices: BlockDevices;
  log: Logger;
  /** A failure for the health report (it never stops the agent). */
  report(message: string): void;
  /** Where blkfront's nodes appear; default /dev. */
  devDir?: string;
  /** Default 10 s: libxl gives the whole change LIBXL_HOTPLUG_TIMEOUT. */
  nodeTimeoutMs?: number;
  qmpTimeoutMs?: number;
}

/** What one read of a vbd's frontend says. */
export type VbdView =
  | { kind: "gone" }
  | { kind: "invalid"; key: string; reason: string }
  /** empty: libxl's placeholder for an ejected CD-ROM (isPlaceholder). */
  | { kind: "present"; state: number; cdrom: boolean; empty?: boolean };

/**
 * Whether a CD-ROM vbd's backend `params` is an empty drive: libxl >= 4.20's placeholder
 * (LIBXL_STUBDOM_EMPTY_CDROM ".<domid>") or nothing. A qdisk backend's params carry the
 * format first (libxl__device_disk_string_of_format: "aio:" for an empty drive); phy's do not.
 */
export const isPlaceholder = (params: string): boolean => {
  const path = params.replace(/^(aio|qcow|qcow2|vhd|qed):/, "");
  return path === "" || /(^|\/)empty-cdrom\.(0|[1-9][0-9]{0,4})$/.test(path);
};
/** What a placeholder's fdset holds: nothing QEMU will read (libxl changes no medium for it). */
export const PLACEHOLDER_FILE = "/dev/null";
const PLACEHOLDER = "placeholder";

/** Whether QEMU should hold an fdset for this vbd (given what the node is, see decide). */
export const wantsFdset = (v: VbdView): boolean => v.kind === "present" && v.cdrom && v.state === XENBUS.connected;

export type Step = "keep" | "add" | "release" | "replace";

/**
 * What to do, from the current node and what we know: the disk QEMU got on its command line
 * (`boot`) needs no fdset; a node we already handed over needs nothing more; any other
 * connected CD-ROM node gets one, replacing ours for an older node.
 */
export function decide(want: boolean, node: string | null, boot: string | undefined, ours: string | undefined): Step {
  if (!want || node === null || node === boot) return ours === undefined ? "keep" : "release";
  if (node === ours) return "keep";
  return ours === undefined ? "add" : "replace";
}

interface Ours {
  /** devices.identity() of the node our fdset's fd is open on. */
  node: string;
  fdset: number;
}

const DEVID = /^(0|[1-9][0-9]{0,9})$/;

/**
 * Keeps QEMU's fdsets in step with the stub domain's CD-ROM vbds. Every watch event only
 * schedules a look at that vbd as it is NOW (xenstore and /dev), on one queue in event order:
 * events handled late, or several for one change, converge to the same result.
 */
export class CdromFdsets {
  /** Per devid: the node QEMU was started with. */
  private readonly boot = new Map<number, string>();
  private readonly ours = new Map<number, Ours>();
  private chain: Promise<void> = Promise.resolve();
  private readonly nodeTimeoutMs: number;
  private readonly qmpTimeoutMs: number;

  constructor(private readonly deps: CdromDeps) {
    this.nodeTimeoutMs = deps.nodeTimeoutMs ?? 10_000;
    this.qmpTimeoutMs = deps.qmpTimeoutMs ?? 5000;
  }

  /** Remembers the CD-ROMs connected now: they are on QEMU's command line. */
  recordBoot(): void {
    let ids: string[];
    try {
      ids = this.deps.xs.directory(this.deps.vbdDir);
    } catch (e) {
      if (!(e instanceof XenStoreError && e.errno === "ENOENT")) this.problem(`cdrom: ${this.deps.vbdDir}: ${(e as Error).message}`);
      return;
    }
    for (const id of ids) {
      const devid = this.devid(id);
      if (devid === null || !wantsFdset(this.view(devid))) continue;
      const node = this.deps.devices.identity(this.nodePath(devid));
      if (node !== null) this.boot.set(devid, node);
    }
  }

  /** One xenstore watch event under vbdDir: schedules a look at that vbd. */
  onWatch(path: string): void {
    const { vbdDir } = this.deps;
    if (!path.startsWith(`${vbdDir}/`)) return;
    const devid = this.devid(path.slice(vbdDir.length + 1).split("/")[0]!);
    if (devid !== null) this.enqueue(() => this.reconcile(devid));
  }

  /** Resolves when every scheduled look has run (tests, and a clean stop). */
  idle(): Promise<void> {
    return this.chain;
  }

  private devid(id: string): number | null {
    if (DEVID.test(id) && vbdDiskName(Number(id)) !== null) return Number(id);
    this.problem(`cdrom: ${this.deps.vbdDir}/${id.slice(0, 40)}: not a whole-disk vbd number; ignored`);
    return null;
  }

  private nodePath(devid: number): string {
    return `${this.deps.devDir ?? "/dev"}/${vbdDiskName(devid)}`;
  }

  private async reconcile(devid: number): Promise<void> {
    const view = this.view(devid);
    if (view.kind === "invalid") return this.problem(`cdrom: ${view.key}: ${view.reason}; ignored`);
    if (view.kind === "gone") this.boot.delete(devid);
    // Until it closes (libxl detaches it at the next cd-insert, and removes its fdset first).
    if (view.kind === "present" && view.cdrom && view.empty && view.state <= XENBUS.connected) return this.placeholder(devid);
    const want = wantsFdset(view);
    const path = this.nodePath(devid);
    // blkfront says Connected just before it adds the disk: the node may follow a moment later.
    if (want) await this.deps.devices.waitFor(path, this.nodeTimeoutMs);
    const node = want ? this.deps.devices.identity(path) : null;
    const ours = this.ours.get(devid);
    const step = decide(want, node, this.boot.get(devid), ours?.node);
    if ((step === "release" || step === "replace") && ours) await this.release(devid, ours);
    if ((step === "add" || step === "replace") && node !== null) await this.add(devid, path, node);
  }

  /** libxl's empty placeholder: an fdset of /dev/null, once per attach (libxl removes it). */
  private async placeholder(devid: number): Promise<void> {
    const ours = this.ours.get(devid);
    const qmp = this.deps.qmp();
    if (ours?.node === PLACEHOLDER && qmp) {
      const sets = await qmp.execute("query-fdsets", undefined, this.qmpTimeoutMs);
      if (holdsOpaque(sets, ours.fdset, stubDevidOpaque(devid))) return;
      this.ours.delete(devid);
    } else if (ours) await this.release(devid, ours);
    await this.add(devid, PLACEHOLDER_FILE, PLACEHOLDER);
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((e: unknown) => this.problem(`cdrom: ${(e as Error).message}`));
  }

  private problem(message: string): void {
    this.deps.log.error(message);
    this.deps.report(message);
  }

  private view(devid: number): VbdView {
    const dir = `${this.deps.vbdDir}/${devid}`;
    const state = this.readText(`${dir}/state`, 4);
    if (state === null) return { kind: "gone" };
    if (typeof state !== "string") return state;
    if (!/^[0-9]$/.test(state) || Number(state) > MAX_XENBUS_STATE) return { kind: "invalid", key: `${dir}/state`, reason: `not a XenbusState (0..${MAX_XENBUS_STATE})` };
    const type = this.readText(`${dir}/device-type`, 16);
    if (type === null) return { kind: "present", state: Number(state), cdrom: false };
    if (typeof type !== "string") return type;
    if (type !== "cdrom") return { kind: "present", state: Number(state), cdrom: false };
    // The backend (dom0's, readable by this domain) says what is in the drive.
    const backend = this.readText(`${dir}/backend`, 256);
    if (backend !== null && typeof backend !== "string") return backend;
    const params = backend ? this.readText(`${backend}/params`, 1024) : null;
    if (params !== null && typeof params !== "string") return params;
    return { kind: "present", state: Number(state), cdrom: true, ...(params !== null && isPlaceholder(params) ? { empty: true } : {}) };
  }

  /** A short untrusted value: the text, null when absent, or why it is unusable. */
  private readText(key: string, maxBytes: number): string | null | VbdView {
    let raw: Uint8Array;
    try {
      raw = this.deps.xs.read(key);
    } catch (e) {
      if (e instanceof XenStoreError && e.errno === "ENOENT") return null;
      return { kind: "invalid", key, reason: `unreadable: ${(e as Error).message}` };
    }
    if (raw.length > maxBytes) return { kind: "invalid", key, reason: `${raw.length} bytes, at most ${maxBytes}` };
    const text = new TextDecoder().decode(raw);
    return /^[\x20-\x7e]*$/.test(text) ? text : { kind: "invalid", key, reason: "not printable ASCII" };
  }

  private async add(devid: number, path: string, node: string): Promise<void> {
    const { devices, log } = this.deps;
    const qmp = this.deps.qmp();
    if (!qmp) throw new Error(`vbd ${devid} (${path}) connected while QEMU's monitor is not usable: no add-fd, libxl's CD-ROM change will time out`);
    const fd = devices.openReadOnly(path);
    let reply: unknown;
    try {
      reply = await qmp.execute("add-fd", { opaque: stubDevidOpaque(devid) }, this.qmpTimeoutMs, [fd]);
    } finally {
      // QEMU holds its own copy now (or nothing, on failure).
      devices.close(fd);
    }
    const fdset = (reply as { "fdset-id"?: unknown } | null)?.["fdset-id"];
    if (!Number.isSafeInteger(fdset) || (fdset as number) < 0) throw new Error(`add-fd for vbd ${devid}: QEMU answered without an fdset-id`);
    this.ours.set(devid, { node, fdset: fdset as number });
    const what = node === PLACEHOLDER ? ", libxl's empty placeholder (xl cd-eject)" : "";
    log.info(`cdrom: add-fd ${path} (vbd ${devid}${what}, read-only) as fdset ${fdset}, opaque ${stubDevidOpaque(devid)}`);
  }

  /** Removes our fdset unless libxl already did (it does, before detaching, for cd-insert). */
  private async release(devid: number, ours: Ours): Promise<void> {
    this.ours.delete(devid);
    const qmp = this.deps.qmp();
    if (!qmp) return; // no QEMU, no fdsets
    const sets = await qmp.execute("query-fdsets", undefined, this.qmpTimeoutMs);
    if (!holdsOpaque(sets, ours.fdset, stubDevidOpaque(devid))) {
      this.deps.log.info(`cdrom: vbd ${devid} went away; fdset ${ours.fdset} was already removed (by libxl)`);
      return;
    }
    await qmp.execute("remove-fd", { "fdset-id": ours.fdset }, this.qmpTimeoutMs);
    this.deps.log.info(`cdrom: vbd ${devid} went away; remove-fd fdset ${ours.fdset}`);
  }
}

/** Whether query-fdsets' answer lists `opaque` in fdset `id` (QEMU's reply, validated loosely). */
export function holdsOpaque(sets: unknown, id: number, opaque: string): boolean {
  if (!Array.isArray(sets)) return false;
  return sets.some((s: unknown) => {
    const set = s as { "fdset-id"?: unknown; fds?: unknown };
    return set?.["fdset-id"] === id && Array.isArray(set.fds) && set.fds.some((f: unknown) => (f as { opaque?: unknown })?.opaque === opaque);
  });
}

export const CDROM_WATCH_TOKEN = "stubdom-init:cdrom";

export interface CdromWatchOptions extends Omit<CdromDeps, "xs" | "vbdDir"> {
  xs: Pick<XenStore, "read" | "directory" | "watch">;
  stubDomid: number;
  /** Watch events come back out of the supervisor's loop here (queueWatchEvents, events.ts). */
  listeners: Listeners;
}

/**
 * Watches the stub domain's vbd frontends through the supervisor's loop. A watch that cannot
 * be set is reported and leaves the agent running: only CD-ROM changes are lost.
 */
export function watchCdroms(o: CdromWatchOptions): CdromFdsets {
  const vbdDir = `/local/domain/${o.stubDomid}/device/vbd`;
  const cdrom = new CdromFdsets({ ...o, vbdDir });
  cdrom.recordBoot();
  o.listeners.on("xenstore", (e) => {
    if (e.token === CDROM_WATCH_TOKEN) cdrom.onWatch(e.path);
  });
  try {
    o.xs.watch(vbdDir, CDROM_WATCH_TOKEN);
    o.log.info(`cdrom: watching ${vbdDir} for libxl's CD-ROM changes`);
  } catch (e) {
    const msg = `cdrom: cannot watch ${vbdDir}: ${(e as Error).message}; CD-ROM changes will time out in libxl`;
    o.log.error(msg);
    o.report(msg);
  }
  return cdrom;
}
