// The pure half of the configuration: a snapshot (read.ts) plus the agent's options become one
// immutable StubdomConfig, or the list of every problem found, each naming its exact key.
// Every value here may come from a hostile guest or toolstack, so nothing is trusted and
// nothing throws. Each loop visits each input element a bounded number of times: the parse is
// linear in the snapshot's size (the optional meter lets a test check this by counting).
import IPCIDR from "ip-cidr";
import { z } from "zod";
import {
  argNumber,
  argvDir,
  devNumber,
  domidFromText,
  guestKeys,
  isVmPath,
  MAX_DOMID,
  stubKeys,
  vifBackend,
  vifFront,
} from "./keys.ts";
import { parseQemuOpts } from "./qemu-opts.ts";
import {
  LIMITS,
  SNAPSHOT_FORMAT,
  type AgentOptions,
  type ConfigError,
  type Disk,
  type Nic,
  type ParseResult,
  type QubesNet,
  type SnapshotDir,
  type SnapshotValue,
  type StubdomConfig,
} from "./types.ts";

export const RESTORE_PLACEHOLDER = "$STUBDOM_RESTORE_INCOMING_ARG";
const MIN_MTU = 68; // RFC 791's minimum; netfront refuses less
const MAX_MTU = 65535;
// Enough for the largest honest snapshot: every argument, vif and directory the reader visits.
const MAX_SNAPSHOT_KEYS = LIMITS.maxArgs + LIMITS.maxDirEntries * 12 + 16;

const errorEntry = z.object({ error: z.string().max(256) }).strict();
const valueSchema = z.union([
  z.null(),
  z.string().max(LIMITS.maxValueBytes),
  z.object({ b64: z.string().max(Math.ceil(LIMITS.maxValueBytes / 3) * 4) }).strict(),
  errorEntry,
]);
const dirSchema = z.union([z.null(), z.array(z.string().max(256)).max(LIMITS.maxArgs + 1), errorEntry]);
const bounded = <T extends z.ZodType>(value: T) =>
  z
    .record(z.string().max(1024), value)
    .refine((r) => Object.keys(r).length <= MAX_SNAPSHOT_KEYS, `more than ${MAX_SNAPSHOT_KEYS} keys`);
const snapshotSchema = z
  .object({
    format: z.literal(SNAPSHOT_FORMAT),
    domid: z.number().int().min(0).max(MAX_DOMID).nullable(),
    values: bounded(valueSchema),
    dirs: bounded(dirSchema),
  })
  .strict();

/** Counts loop iterations, so tests can check the work grows linearly with the input. */
export interface Meter {
  steps: number;
}

function firstControl(s: string): number {
  // C0, DEL and C1: never meaningful in an argument or a name, and they garble logs.
  return s.search(/[\u0000-\u001f\u007f-\u009f]/);
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
function macReason(text: string): string | null {
  if (!MAC.test(text)) return `${JSON.stringify(text)} is not a MAC address (six hex octets separated by ':')`;
  if (Number.parseInt(text.slice(0, 2), 16) & 1) return `${text} is a multicast address`;
  return null;
}

// Linux's dev_valid_name(): at most 15 bytes, no '/', ':' or whitespace, not "." or "..".
function ifnameReason(text: string): string | null {
  if (!/^[\x21-\x7e]{1,15}$/.test(text) || /[/:]/.test(text) || text === "." || text === "..")
    return `${JSON.stringify(text)} is not a valid interface name`;
  return null;
}

function mtuOf(text: string): number | string {
  if (!/^[0-9]{1,6}$/.test(text)) return `${JSON.stringify(text)} is not a number`;
  const n = Number(text);
  return n < MIN_MTU || n > MAX_MTU ? `${n} is outside ${MIN_MTU}..${MAX_MTU}` : n;
}

/** A backend `ip` entry as a canonical CIDR; a bare address becomes a host route. */
function cidrOf(text: string): string | { reason: string } {
  if (!/^[0-9A-Fa-f:.]{2,39}(\/[0-9]{1,3})?$/.test(text)) return { reason: `${JSON.stringify(text)} is not an IP address or CIDR` };
  const slash = text.indexOf("/");
  const withPrefix = slash >= 0 ? text : `${text}/${text.includes(":") ? 128 : 32}`;
  if (!IPCIDR.isValidCIDR(withPrefix)) return { reason: `${JSON.stringify(text)} is not an IP address or CIDR` };
  const cidr = new IPCIDR(withPrefix);
  const addr = cidr.address as unknown as { bigInteger(): bigint; correctForm(): string; subnetMask: number };
  const start = cidr.addressStart as unknown as { bigInteger(): bigint };
  if (BigInt(addr.bigInteger()) !== BigInt(start.bigInteger()))
    return { reason: `${text} has host bits set (the network is ${cidr.start()}/${addr.subnetMask})` };
  return `${addr.correctForm()}/${addr.subnetMask}`;
}

function ipv4Reason(text: string): string | null {
  return /^[0-9.]{7,15}$/.test(text) && IPCIDR.isValidAddress(text) ? null : `${JSON.stringify(text)} is not an IPv4 address`;
}

function netmaskReason(text: string): string | null {
  if (ipv4Reason(text)) return `${JSON.stringify(text)} is not an IPv4 netmask`;
  const bits = text.split(".").reduce((acc, o) => (acc << 8) | Number(o), 0) >>> 0;
  const inverted = ~bits >>> 0;
  return (inverted & (inverted + 1)) === 0 ? null : `${text} is not a contiguous netmask`;
}

/**
 * The whole disk a vbd device number becomes in the stub domain, or null for partitions and
 * unknown majors. xen-blkfront (xen_translate_vdev) names every disk xvd<letters>, whatever
 * the guest called it: xvd* (202), hda/hdb (3), hdc/hdd (22), sd* (8, 65-71), or the extended
 * form (bit 28).
 */
function vbdName(devid: number): string | null {
  const major = devid >>> 8;
  const minor = devid & 0xff;
  let disk: number;
  let part: number;
  if (devid >= 1 << 28) [disk, part] = [(devid >>> 8) & 0xfffff, minor];
  else if (major === 202 || major === 8) [disk, part] = [minor >> 4, minor & 15];
  else if (major === 3 || major === 22) [disk, part] = [(minor >> 6) + (major === 22 ? 2 : 0), minor & 63];
  else if (major >= 65 && major <= 71) [disk, part] = [(minor >> 4) + (major - 64) * 16, minor & 15];
  else return null;
  if (part !== 0) return null;
  let letters = "";
  for (let d = disk + 1; d > 0; d = Math.floor((d - 1) / 26)) letters = String.fromCharCode(97 + ((d - 1) % 26)) + letters;
  return `/dev/xvd${letters}`;
}

// QEMU options whose next argument is their value, so a value such as a guest named "-serial"
// is not read as an option. Options not listed are taken as flags, which is what libxl emits.
const TAKES_VALUE = new Set([
  "-xen-domid", "-name", "-display", "-vga", "-device", "-drive", "-netdev", "-net", "-serial",
  "-chardev", "-mon", "-machine", "-M", "-m", "-smp", "-boot", "-k", "-vnc", "-spice", "-global",
  "-usbdevice", "-soundhw", "-audiodev", "-cpu", "-smbios", "-acpitable", "-kernel", "-initrd",
  "-append", "-incoming", "-xen-attach", "-uuid", "-rtc", "-trace", "-object", "-parallel",
  "-monitor", "-qmp", "-option-rom", "-bios", "-accel", "-L", "-fw_cfg", "-pidfile", "-runas",
]);

type Fail = (key: string, reason: string) => void;

/** Typed access to the snapshot; every refusal is reported against its exact key. */
interface Lookups {
  /** Text of a value that must exist. undefined: reported. */
  required(key: string): string | undefined;
  /** Text of a value that may be absent (null). undefined: reported. */
  optional(key: string): string | null | undefined;
  /** Child names; [] when absent. undefined: reported. */
  list(key: string, max: number): readonly string[] | undefined;
  domid(key: string, text: string | undefined): number | undefined;
  fail: Fail;
  tick(): void;
  errorCount(): number;
}

function lookups(values: Map<string, SnapshotValue>, dirs: Map<string, SnapshotDir>, errors: ConfigError[], meter: Meter): Lookups {
  const fail: Fail = (key, reason) => void errors.push({ key, reason });
  const text = (key: string, required: boolean): string | null | undefined => {
    if (!values.has(key)) {
      fail(key, "not in the snapshot (the reader did not get that far)");
      return undefined;
    }
    const v = values.get(key)!;
    if (v === null) {
      if (required) fail(key, "missing");
      return null;
    }
    if (typeof v !== "string") {
      fail(key, "b64" in v ? "not valid UTF-8" : `read failed: ${v.error}`);
      return undefined;
    }
    if (utf8Length(v) > LIMITS.maxValueBytes) {
      fail(key, `longer than ${LIMITS.maxValueBytes} bytes`);
      return undefined;
    }
    return v;
  };
  return {
    required: (key) => text(key, true) ?? undefined,
    optional: (key) => text(key, false),
    list(key, max) {
      if (!dirs.has(key)) {
        fail(key, "directory not in the snapshot (the reader did not get that far)");
        return undefined;
      }
      const d = dirs.get(key)!;
      if (d === null) return [];
      if (!Array.isArray(d)) {
        fail(key, `directory read failed: ${(d as { error: string }).error}`);
        return undefined;
      }
      if (d.length > max) {
        fail(key, `more than ${max} entries`);
        return undefined;
      }
      return d;
    },
    domid(key, t) {
      if (t === undefined) return undefined;
      const n = domidFromText(t);
      if (n === null) fail(key, `${JSON.stringify(t)} is not a domid`);
      return n ?? undefined;
    },
    fail,
    tick: () => void meter.steps++,
    errorCount: () => errors.length,
  };
}

interface Arg {
  /** The dm-argv key it came from, for error reports. */
  readonly key: string;
  readonly arg: string;
}

export function parseConfig(input: unknown, options: AgentOptions, meter: Meter = { steps: 0 }): ParseResult {
  const errors: ConfigError[] = [];
  const shape = snapshotSchema.safeParse(input);
  if (!shape.success) {
    for (const issue of shape.error.issues.slice(0, 16)) {
      errors.push({ key: `snapshot:${issue.path.join("/") || "."}`, reason: issue.message });
    }
    return { ok: false, errors };
  }
  // Maps, so that a key such as "__proto__" or "constructor" is just a key.
  const l = lookups(new Map(Object.entries(shape.data.values)), new Map(Object.entries(shape.data.dirs)), errors, meter);
  const failed = (): ParseResult => ({ ok: false, errors });

  const stubDomid = shape.data.domid ?? l.domid("domid", l.required("domid"));
  if (stubDomid === undefined) return failed();
  const sk = stubKeys(stubDomid);
  const targetText = l.optional(sk.target);
  if (targetText === null) l.fail(sk.target, "missing: without a target this domain is not a stub domain");
  const guestDomid = l.domid(sk.target, targetText ?? undefined);

  const consoleNames = l.list(sk.consoleDir, LIMITS.maxDirEntries) ?? [];
  const consoles = Object.freeze({ save: consoleNames.includes("1"), restore: consoleNames.includes("2") });
  const attached = attachedDisks(l, sk.vbdDir);
  const vifs = vifNumbers(l, sk.vifDir);

  if (guestDomid === undefined) return failed();
  const gk = guestKeys(guestDomid);
  const guestName = l.required(gk.name);
  if (guestName === "") l.fail(gk.name, "empty");
  else if (guestName !== undefined && firstControl(guestName) >= 0) {
    l.fail(gk.name, `control character at offset ${firstControl(guestName)}`);
  }
  const vmPath = l.required(gk.vm);
  if (vmPath === undefined) return failed();
  if (!isVmPath(vmPath)) {
    l.fail(gk.vm, `${JSON.stringify(vmPath)} is not a path directly under /vm/`);
    return failed();
  }

  const rawArgs = readArgv(l, argvDir(vmPath));
  if (rawArgs === undefined) return failed();
  const { args, qubes } = takeQubesArgs(l, rawArgs);
  const scan = scanArgs(l, args);
  if (scan.restore && !consoles.restore) l.fail(sk.consoleDir, "restoring (-incoming) needs device/console/2");
  const disks = scan.drives.map((d): Disk => {
    l.tick();
    return Object.freeze({
      path: d.file,
      argIndex: d.index,
      cdrom: d.cdrom || (d.id !== undefined && scan.cdDrives.has(d.id)),
      attached: attached.has(d.file),
    });
  });
  const nics = matchNics(l, scan, vifs, stubDomid, guestDomid, argvDir(vmPath));

  if (errors.length > 0 || guestName === undefined) return failed();
  const config: StubdomConfig = {
    stubDomid,
    guestDomid,
    vmPath,
    guestName,
    dmArgv: Object.freeze(args.map((a) => a.arg)),
    restore: scan.restore ? Object.freeze(scan.restore) : null,
    qubes: Object.freeze(qubes),
    nics: Object.freeze(nics),
    disks: Object.freeze(disks),
    consoles,
    serials: Object.freeze(scan.serials),
    options,
  };
  return { ok: true, config: Object.freeze(config) };
}

/** The whole-disk names of the vbd frontends present (device/vbd/<devid>). */
function attachedDisks(l: Lookups, dir: string): Set<string> {
  const out = new Set<string>();
  for (const name of l.list(dir, LIMITS.maxDirEntries) ?? []) {
    l.tick();
    const n = /^[0-9]{1,10}$/.test(name) ? vbdName(Number(name)) : null;
    if (n) out.add(n);
  }
  return out;
}

/** The vif device numbers present; null when the directory itself could not be used (reported). */
function vifNumbers(l: Lookups, dir: string): Set<number> | null {
  const names = l.list(dir, LIMITS.maxDirEntries);
  if (names === undefined) return null;
  const out = new Set<number>();
  for (const name of names) {
    l.tick();
    const n = devNumber(name);
    if (n === null) l.fail(`${dir}/${name}`, "vif device number is not a decimal number");
    else out.add(n);
  }
  return out;
}

/** dm-argv in numeric order. A slot per number makes ordering and gap detection linear. */
function readArgv(l: Lookups, dir: string): Arg[] | undefined {
  const names = l.list(dir, LIMITS.maxArgs);
  if (names === undefined) return undefined;
  if (names.length === 0) l.fail(dir, "no arguments");
  const slots: (string | undefined)[] = new Array(names.length + 1);
  for (const name of names) {
    l.tick();
    const n = argNumber(name);
    const key = `${dir}/${name}`;
    if (n === null) l.fail(key, "not a decimal argument number");
    else if (n === 0) l.fail(key, "argument numbers start at 1");
    else if (n > names.length) l.fail(key, `number ${n} but only ${names.length} arguments: some numbers are missing`);
    else if (slots[n] !== undefined) l.fail(key, `duplicate of ${dir}/${slots[n]} (both are number ${n})`);
    else slots[n] = name;
  }
  const args: Arg[] = [];
  for (let i = 1; i < slots.length; i++) {
    l.tick();
    const name = slots[i];
    if (name === undefined) {
      l.fail(`${dir}/${String(i).padStart(3, "0")}`, `missing: arguments must be numbered 1..${names.length} without gaps`);
      continue;
    }
    const key = `${dir}/${name}`;
    const arg = l.required(key);
    if (arg === undefined) continue;
    const c = firstControl(arg);
    if (arg === "") l.fail(key, "empty argument");
    else if (c >= 0) l.fail(key, `control character U+${arg.charCodeAt(c).toString(16).padStart(4, "0").toUpperCase()} at offset ${c}`);
    else args.push({ key, arg });
  }
  return args;
}

/** Qubes smuggles its own settings through dm-argv; QEMU must never see them. */
function takeQubesArgs(l: Lookups, raw: Arg[]): { args: Arg[]; qubes: StubdomConfig["qubes"] } {
  let net: QubesNet | null = null;
  let audio: { audiovmXid: number } | null = null;
  let seenNet = false;
  let seenAudio = false;
  const args: Arg[] = [];
  for (const a of raw) {
    l.tick();
    if (a.arg.startsWith("-qubes-net:")) {
      if (seenNet) l.fail(a.key, "a second -qubes-net: argument");
      else net = parseQubesNet(l, a.key, a.arg.slice("-qubes-net:".length));
      seenNet = true;
    } else if (a.arg.startsWith("-qubes-audio:")) {
      if (seenAudio) l.fail(a.key, "a second -qubes-audio: argument");
      else audio = parseQubesAudio(l, a.key, a.arg.slice("-qubes-audio:".length));
      seenAudio = true;
    } else if (a.arg.startsWith("-qubes-")) l.fail(a.key, "unknown Qubes pseudo-argument");
    else args.push(a);
  }
  return { args, qubes: { net, audio } };
}

interface Scan {
  restore: { argIndex: number } | null;
  serials: string[];
  netdevs: { key: string; id: string; ifname: string }[];
  /** netdev id -> the -device that uses it. */
  nicDevices: Map<string, { key: string; model: string; mac: string | undefined }>;
  drives: { index: number; file: string; id: string | undefined; cdrom: boolean }[];
  /** Drive ids that an ide-cd/scsi-cd device uses. */
  cdDrives: Set<string>;
}

/** One pass over the arguments, picking out the options the init acts on. */
function scanArgs(l: Lookups, args: Arg[]): Scan {
  const scan: Scan = { restore: null, serials: [], netdevs: [], nicDevices: new Map(), drives: [], cdDrives: new Set() };
  const netdevIds = new Map<string, string>(); // id -> key of its first -netdev
  for (let i = 0; i < args.length; i++) {
    l.tick();
    const { key, arg } = args[i]!;
    if (arg === RESTORE_PLACEHOLDER) {
      l.fail(key, `${RESTORE_PLACEHOLDER} not after -incoming`);
      continue;
    }
    if (!TAKES_VALUE.has(arg)) continue;
    const next = args[i + 1];
    if (next === undefined) {
      l.fail(key, `${arg} needs a value`);
      break;
    }
    i++;
    const value = next.arg;
    switch (arg) {
      case "-incoming":
        if (value !== RESTORE_PLACEHOLDER) l.fail(next.key, `-incoming in a stub domain must be followed by ${RESTORE_PLACEHOLDER}`);
        else if (scan.restore) l.fail(next.key, "a second -incoming");
        else scan.restore = { argIndex: i };
        break;
      case "-serial":
        scan.serials.push(value);
        break;
      case "-netdev": {
        const o = parseQemuOpts(value);
        if ((o.opts.get("type") ?? o.implied) !== "tap") break;
        const id = o.opts.get("id");
        const ifname = o.opts.get("ifname");
        const ifnameBad = ifname === undefined ? "tap -netdev without ifname=" : ifnameReason(ifname);
        if (!id) l.fail(next.key, "tap -netdev without id=");
        else if (netdevIds.has(id)) l.fail(next.key, `two -netdev with id ${JSON.stringify(id)} (the other is ${netdevIds.get(id)})`);
        else if (ifnameBad || ifname === undefined) l.fail(next.key, `ifname: ${ifnameBad}`);
        else scan.netdevs.push({ key: next.key, id, ifname });
        if (id && !netdevIds.has(id)) netdevIds.set(id, next.key);
        break;
      }
      case "-device": {
        const o = parseQemuOpts(value);
        const driver = o.opts.get("driver") ?? o.implied;
        const netdev = o.opts.get("netdev");
        if (netdev !== undefined && driver) {
          if (scan.nicDevices.has(netdev)) l.fail(next.key, `a second -device for netdev ${JSON.stringify(netdev)}`);
          else scan.nicDevices.set(netdev, { key: next.key, model: driver, mac: o.opts.get("mac") });
        }
        const drive = o.opts.get("drive");
        if (drive !== undefined && (driver === "ide-cd" || driver === "scsi-cd")) scan.cdDrives.add(drive);
        break;
      }
      case "-drive": {
        const o = parseQemuOpts(value);
        const file = o.opts.get("file");
        // Other files are dom0 paths libxl did not rewrite; they are not the stub domain's disks.
        if (file === undefined || !file.startsWith("/dev/xvd")) break;
        if (!/^\/dev\/xvd[a-z]{1,3}$/.test(file)) l.fail(next.key, `${JSON.stringify(file)} is not a whole xvd disk`);
        else scan.drives.push({ index: i, file, id: o.opts.get("id"), cdrom: o.opts.get("media") === "cdrom" });
        break;
      }
    }
  }
  return scan;
}

/** Tap netdev n + the -device that uses it + the stub domain's vif n. */
function matchNics(l: Lookups, scan: Scan, vifs: Set<number> | null, stubDomid: number, guestDomid: number, dir: string): Nic[] {
  const nics: Nic[] = [];
  const byIndex = new Map<number, string>();
  if (scan.netdevs.length > LIMITS.maxNics) l.fail(dir, `more than ${LIMITS.maxNics} tap netdevs`);
  // Netfronts are named eth0, eth1... in probe order, which follows the vif directory's
  // creation order; libxl creates vifs in device-number order, so vif n is eth<rank of n>.
  const ethNames = new Map([...(vifs ?? [])].sort((a, b) => a - b).map((n, rank) => [n, `eth${rank}`]));
  // libxl names the tap vif<G>.<n>-emu and the netdev net<n>, n being the vif's device number.
  const tapName = new RegExp(`^vif${guestDomid}\\.([0-9]{1,4})-emu$`);
  for (const nd of scan.netdevs.slice(0, LIMITS.maxNics)) {
    l.tick();
    const byName = tapName.exec(nd.ifname);
    const byId = /^net([0-9]{1,4})$/.exec(nd.id);
    const index = byName ? Number(byName[1]) : byId ? Number(byId[1]) : null;
    if (index === null) {
      l.fail(nd.key, `cannot tell the vif of netdev ${nd.id}: ifname is not vif${guestDomid}.<n>-emu and id is not net<n>`);
      continue;
    }
    if (byIndex.has(index)) {
      l.fail(nd.key, `netdev ${nd.id} and ${byIndex.get(index)} both use vif ${index}`);
      continue;
    }
    byIndex.set(index, nd.id);
    const dev = scan.nicDevices.get(nd.id);
    if (!dev) l.fail(nd.key, `no -device uses netdev ${nd.id}`);
    else if (dev.mac === undefined) l.fail(dev.key, `-device for netdev ${nd.id} has no mac=`);
    else {
      const r = macReason(dev.mac);
      if (r) l.fail(dev.key, `mac: ${r}`);
    }
    // When the vif directory itself failed (vifs null), that error already says why.
    if (vifs === null) continue;
    if (!vifs.has(index)) {
      l.fail(nd.key, `ifname ${nd.ifname} matches no vif: ${vifFront(stubDomid, index)} is missing`);
      continue;
    }
    const nic = parseVif(index, ethNames.get(index)!, nd, dev, stubDomid, l);
    if (nic) nics.push(nic);
  }
  return nics;
}


/** `k=v,k=v` with known keys only; unknown or repeated items are reported and left out. */
function keyValues(l: Lookups, key: string, text: string, known: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of text.split(",")) {
    l.tick();
    const eq = item.indexOf("=");
    const k = eq < 0 ? item : item.slice(0, eq);
    if (eq < 0 || !known.includes(k)) l.fail(key, `unknown item ${JSON.stringify(item)}`);
    else if (out.has(k)) l.fail(key, `${k} given twice`);
    else out.set(k, item.slice(eq + 1));
  }
  return out;
}

function parseQubesNet(l: Lookups, key: string, text: string): QubesNet | null {
  const kv = keyValues(l, key, text, ["client_ip", "gw", "netmask", "dns_0", "dns_1"]);
  let ok = true;
  const check = (k: string, reason: (v: string) => string | null, needed: boolean) => {
    const v = kv.get(k);
    const r = v === undefined ? (needed ? `-qubes-net: lacks ${k}=` : null) : reason(v);
    if (r) l.fail(key, v === undefined ? r : `${k}: ${r}`);
    ok &&= r === null;
  };
  check("client_ip", ipv4Reason, true);
  check("gw", ipv4Reason, true);
  check("netmask", netmaskReason, true);
  check("dns_0", ipv4Reason, false);
  check("dns_1", ipv4Reason, false);
  if (!ok) return null;
  const dns = ["dns_0", "dns_1"].flatMap((k) => (kv.has(k) ? [kv.get(k)!] : []));
  return Object.freeze({
    clientIp: kv.get("client_ip")!,
    gateway: kv.get("gw")!,
    netmask: kv.get("netmask")!,
    dns: Object.freeze(dns),
  });
}

function parseQubesAudio(l: Lookups, key: string, text: string): { audiovmXid: number } | null {
  const kv = keyValues(l, key, text, ["audiovm_xid"]);
  const v = kv.get("audiovm_xid");
  const n = v === undefined ? null : domidFromText(v);
  if (n === null) {
    l.fail(key, `-qubes-audio: needs audiovm_xid=<domid>, got ${JSON.stringify(v ?? "")}`);
    return null;
  }
  return Object.freeze({ audiovmXid: n });
}


function parseVif(
  index: number,
  ethName: string,
  nd: { key: string; id: string; ifname: string },
  dev: { model: string; mac: string | undefined } | undefined,
  stubDomid: number,
  l: Lookups,
): Nic | null {
  const errorsBefore = l.errorCount();
  const front = vifFront(stubDomid, index);
  const mac = l.required(`${front}/mac`);
  if (mac !== undefined) {
    const r = macReason(mac);
    if (r) l.fail(`${front}/mac`, r);
  }
  // An invalid value has been reported; null keeps the types simple and the result is discarded.
  const mtuAt = (key: string): number | null => {
    const t = l.optional(key);
    const m = t == null ? null : mtuOf(t);
    if (typeof m === "string") l.fail(key, m);
    return typeof m === "number" ? m : null;
  };
  const frontMtu = mtuAt(`${front}/mtu`);
  const handle = l.optional(`${front}/handle`);
  if (handle != null && handle !== String(index)) l.fail(`${front}/handle`, `${JSON.stringify(handle)} is not ${index}`);
  const backendDomid = l.domid(`${front}/backend-id`, l.required(`${front}/backend-id`));
  const backend = l.required(`${front}/backend`);
  if (backendDomid === undefined || backend === undefined) return null;
  const expected = vifBackend(backendDomid, stubDomid, index);
  if (backend !== expected) {
    l.fail(`${front}/backend`, `${JSON.stringify(backend)} is not ${expected}`);
    return null;
  }
  const backMac = l.optional(`${backend}/mac`);
  if (backMac != null) {
    const r = macReason(backMac);
    if (r) l.fail(`${backend}/mac`, r);
  }
  const backMtu = mtuAt(`${backend}/mtu`);
  const bridge = l.optional(`${backend}/bridge`);
  if (bridge != null) {
    const r = ifnameReason(bridge);
    if (r) l.fail(`${backend}/bridge`, r);
  }
  const ipText = l.optional(`${backend}/ip`);
  let ip: string[] | null = null;
  if (ipText != null) {
    const entries = ipText.split(/[ \t]+/).filter((e) => e !== "");
    if (entries.length === 0) l.fail(`${backend}/ip`, "empty");
    else if (entries.length > LIMITS.maxDirEntries) l.fail(`${backend}/ip`, `more than ${LIMITS.maxDirEntries} entries`);
    else {
      ip = [];
      for (const e of entries) {
        const c = cidrOf(e);
        if (typeof c === "string") ip.push(c);
        else l.fail(`${backend}/ip`, c.reason);
      }
    }
  }
  if (!dev || dev.mac === undefined || mac === undefined || l.errorCount() !== errorsBefore) return null;
  return Object.freeze({
    index,
    id: nd.id,
    ifname: nd.ifname,
    model: dev.model,
    guestMac: dev.mac.toLowerCase(),
    netfront: Object.freeze({ name: ethName, mac: mac.toLowerCase(), mtu: frontMtu }),
    backend: Object.freeze({ domid: backendDomid, path: backend, ip: ip ? Object.freeze(ip) : null, mtu: backMtu, bridge: bridge ?? null }),
    mtu: backMtu ?? frontMtu ?? 1500,
    allowedSources: Object.freeze(ip ?? []),
  });
}
