// The stub domain's configuration as the rest of the agent sees it: one immutable record built
// from a xenstore snapshot (xen-stubdom-protocol.md §2-5) plus the kernel command line. Nothing
// here is read from the outside world. The functions, each in its own module:
//   parseCmdline(text: string): CmdlineResult                          cmdline.ts (pure)
//   readSnapshot(xs: XenStore, opts: ReadOptions): Snapshot            read.ts (I/O, never throws)
//   parseConfig(snapshot: unknown, options: AgentOptions): ParseResult  parse.ts (pure, never throws)
//   loadConfig(xs, options) = parseConfig(readSnapshot(xs, {domid: options.domid}), options)
import type { Level } from "../log.ts";

/** A parse problem: `key` is the exact xenstore path (or `cmdline:stubdom.<name>`). */
export interface ConfigError {
  readonly key: string;
  readonly reason: string;
}

export type CrashPolicy = "shutdown-guest" | "poweroff" | "hold";

/** Where the agent reaches xenstore. `default` lets libxenstore choose (/dev/xen/xenbus). */
export type XenStoreTransport =
  | { readonly kind: "default" }
  | { readonly kind: "path"; readonly path: string }
  | { readonly kind: "virtio"; readonly name: string }; // port whose /sys/class/virtio-ports/*/name is `name`

/** Where dom0's QMP relay connects: the libxenvchan server, or a virtio-serial port (development). */
export type QmpTransport = { readonly kind: "vchan" } | { readonly kind: "virtio"; readonly name: string };

/** The agent's own options, from `stubdom.*` keys on /proc/cmdline. */
export interface AgentOptions {
  readonly loglevel: Level;
  readonly crash: CrashPolicy;
  /**
   * ms between the crash report's flush and telling the hypervisor, 0..60000: with
   * on_crash="destroy" the toolstack removes this domain's keys at once, and dom0 watchers
   * need a moment to read why QEMU died.
   */
  readonly crashGraceMs: number;
  /** Seconds between health reports, 1..3600. */
  readonly healthInterval: number;
  readonly xenstore: XenStoreTransport;
  /** Own domid when not under Xen (development); null = read it from xenstore. */
  readonly domid: number | null;
  readonly qmp: QmpTransport;
  /** Device-model binary. */
  readonly qemu: string;
  /** Debug shell on the console. */
  readonly shell: boolean;
  /** Seconds per run of the JavaScript-only self-test child (agent/init/selftest.ts); 0 = off. */
  readonly selftest: number;
  /** Start QEMU under our seccomp filter and Landlock rules (stubdom-confine); 0 only to debug. */
  readonly confine: boolean;
}

/** Never throws: unknown or malformed keys become errors and their option keeps its default. */
export interface CmdlineResult {
  readonly options: AgentOptions;
  readonly errors: readonly ConfigError[];
}

export interface QubesNet {
  readonly clientIp: string;
  readonly gateway: string;
  readonly netmask: string;
  readonly dns: readonly string[];
}

export interface Nic {
  /** Position n: netdev `net<n>`'s peer is the stub domain's vif n (netfront `eth<n>`). */
  readonly index: number;
  /** The `-netdev id=`. */
  readonly id: string;
  /** The tap QEMU creates (`-netdev ifname=`). */
  readonly ifname: string;
  /** The `-device` driver of the emulated NIC (e1000, rtl8139, ...). */
  readonly model: string;
  /** The emulated NIC's MAC (`-device mac=`), lower case. */
  readonly guestMac: string;
  readonly netfront: {
    /**
     * The expected kernel name: eth<rank of n among the vif numbers>, as netfronts probe in
     * creation order. Code that can should confirm it via /sys/bus/xen/devices/vif-<n>/net/.
     */
    readonly name: string;
    readonly mac: string; // lower case
    readonly mtu: number | null; // device/vif/n/mtu if present
  };
  readonly backend: {
    readonly domid: number;
    readonly path: string;
    /** The backend's `ip` entries as CIDRs (a bare address becomes /32 or /128). */
    readonly ip: readonly string[] | null;
    readonly mtu: number | null;
    readonly bridge: string | null;
  };
  /** The MTU to use on both sides: backend mtu, else frontend mtu, else 1500. */
  readonly mtu: number;
  /** Source CIDRs the guest may send from; empty = no filtering (no `ip` configured). */
  readonly allowedSources: readonly string[];
}

export interface Disk {
  /** Block device inside the stub domain, e.g. /dev/xvda. */
  readonly path: string;
  /** Index in dmArgv of the argument that names it. */
  readonly argIndex: number;
  readonly cdrom: boolean;
  /** A vbd frontend for it exists (device/vbd/<devid>); the toolstack attaches disks before unpausing. */
  readonly attached: boolean;
}

export interface StubdomConfig {
  readonly stubDomid: number;
  readonly guestDomid: number;
  /** The guest's /vm/<uuid> path. */
  readonly vmPath: string;
  readonly guestName: string;
  /** QEMU's arguments, Qubes pseudo-arguments removed, the restore placeholder still in place. */
  readonly dmArgv: readonly string[];
  /** Index in dmArgv of the literal `$STUBDOM_RESTORE_INCOMING_ARG` after `-incoming`. */
  readonly restore: { readonly argIndex: number } | null;
  readonly qubes: {
    readonly net: QubesNet | null;
    readonly audio: { readonly audiovmXid: number } | null;
  };
  readonly nics: readonly Nic[];
  readonly disks: readonly Disk[];
  /** device/console/1 (save stream) and device/console/2 (restore stream) present. */
  readonly consoles: { readonly save: boolean; readonly restore: boolean };
  /** The `-serial` targets in dmArgv, e.g. /dev/hvc3. */
  readonly serials: readonly string[];
  readonly options: AgentOptions;
}

export type ParseResult =
  | { readonly ok: true; readonly config: StubdomConfig }
  | { readonly ok: false; readonly errors: readonly ConfigError[] };

/**
 * What was read from xenstore, exactly, as plain JSON. Keys are absolute paths (except the
 * relative `domid` read when the own domid is not known). A value is the node's bytes as a
 * string when they are valid UTF-8, else `{b64}`; `null` means ENOENT; `{error}` any other
 * failure (EACCES, ...) or a bound the reader enforced (`E2BIG`).
 */
export type SnapshotValue = string | { readonly b64: string } | { readonly error: string } | null;
/** A directory listing: child names in the server's order, or null (ENOENT), or `{error}`. */
export type SnapshotDir = readonly string[] | { readonly error: string } | null;

export const SNAPSHOT_FORMAT = "stubdom-config-snapshot/1";

export interface Snapshot {
  readonly format: typeof SNAPSHOT_FORMAT;
  /** The own domid the reader was given (ReadOptions.domid); null: it read the relative `domid`. */
  readonly domid: number | null;
  readonly values: Readonly<Record<string, SnapshotValue>>;
  readonly dirs: Readonly<Record<string, SnapshotDir>>;
}

export interface ReadOptions {
  /** Own domid if known (cmdline `stubdom.domid`, CLI `--domid`); else read relative `domid`. */
  readonly domid: number | null;
}

/** Bounds that make a hostile xenstore unable to blow memory or time. */
export const LIMITS = {
  /** dm-argv entries (libxl writes one key per argument). */
  maxArgs: 4096,
  /** Bytes per value: xenstore's message payload limit. */
  maxValueBytes: 4096,
  /** Children listed per directory other than dm-argv (vifs, consoles, vbds). */
  maxDirEntries: 64,
  /** NICs. */
  maxNics: 16,
  /** Bytes of /proc/cmdline considered. */
  maxCmdlineBytes: 4096,
} as const;

export type { Level };
