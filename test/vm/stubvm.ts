// The development VM: the stub domain's real kernel and dev rootfs booted in QEMU (TCG), with
// host stand-ins for what Xen and dom0 would provide:
//   hvc0 (kernel + agent log)  the serial console, ttyS0, captured here
//   /dev/xen/xenbus            a virtio-serial port named `xenstore`, connected to the domain
//                              socket of `stubdom-init xenstored` that acts as domain 2
//   the QMP vchan              a virtio-serial port named `qmp`, a UNIX socket on the host
//   netfront 0 (eth0)          a virtio-net NIC on a tap in a namespace playing the backend
//   blkfront (/dev/xvdX)       a virtio-blk disk per guest disk (/dev/vdX, named in the guest
//                              description's stubdomDevice), backed by an image made here
//   hvc1..hvc3                 virtconsoles (save/restore streams, the guest's serial port)
//   libxl                      `stubdom-init simulate-toolstack` with a guest description
//   xl shutdown                the outer VM's ACPI power button (QMP system_powerdown)
// The agent is told its transports and domid on the kernel command line; nothing else differs.
// The demo guest's DHCP lease comes from the agent's own responder (`-qubes-net:` in dm-argv);
// the backend namespace runs no DHCP server.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./debian.ts";
import {
  type Child, diskMarker, FATAL_CONSOLE, HarnessError, Netns, Qmp, reap, requireFile, spawnChild, VmLock, withDeadline,
  writeDiskImage,
} from "./harness.ts";

export const GUEST_DOMID = 1;
export const STUB_DOMID = 2;
/** The backend namespace's address: the router in the demo guest's lease (demo-guest.json). */
export const BACKEND_IP = "10.0.2.2";
export const GUEST_IP = "10.0.2.15";
/** The lease's DNS server: in no other DHCP server's offer, so seeing it proves the agent served it. */
export const GUEST_DNS = "10.0.2.3";
export const DEMO_GUEST = join(repoRoot, "test/vm/demo-guest.json");

export interface StubVmOptions {
  /** Directory for sockets and logs; created, and removed by stop() unless `keep`. */
  dir: string;
  guest?: string;
  memMiB?: number;
  /** Extra kernel command line options (stubdom.crash=..., ...). */
  cmdline?: string[];
  /** Live copy of the serial console (make run shows it on request). */
  echo?: (s: string) => void;
  /** Another dev rootfs than dist/'s (a developer's experiment). */
  rootfs?: string;
  /** Seconds the simulator waits for `running` (libxl's 30 s is too short under TCG). */
  startTimeout?: number;
}

const dist = (f: string) => join(repoRoot, "dist", f);

interface GuestFile {
  nics?: { mac?: string }[];
  disks?: { vdev?: string; target?: string; stubdomDevice?: string }[];
}

/**
 * What the harness needs from a guest description: the MAC of NIC 0 (libxl gives netfront the
 * guest NIC's MAC) and the disks the stub domain sees as /dev/vdX. Each of those gets an image
 * with a marker in `dir`, attached to the outer VM as the X-th virtio-blk disk; the copy of the
 * description handed to the simulator names the image as the disk's target, as an xl.cfg would.
 */
async function prepareGuest(guestFile: string, dir: string): Promise<{ mac: string; description: string; disks: VmDisk[] }> {
  const g = (await Bun.file(guestFile).json()) as GuestFile;
  const mac = g.nics?.[0]?.mac;
  if (!mac) throw new HarnessError(`${guestFile}: no nics[0].mac`);
  const disks: VmDisk[] = [];
  for (const d of g.disks ?? []) {
    if (d.stubdomDevice === undefined) continue;
    const expected = `/dev/vd${String.fromCharCode(97 + disks.length)}`;
    if (d.stubdomDevice !== expected || !d.vdev) {
      throw new HarnessError(`${guestFile}: disk ${d.vdev}: stubdomDevice ${d.stubdomDevice}, but the next virtio-blk disk is ${expected}`);
    }
    const image = join(dir, `disk-${d.vdev}.img`);
    const marker = diskMarker(d.vdev);
    writeDiskImage(image, marker);
    d.target = image;
    disks.push({ vdev: d.vdev, image, marker });
  }
  const description = join(dir, "guest.json");
  writeFileSync(description, `${JSON.stringify(g, null, 1)}\n`);
  return { mac, description, disks };
}

export interface VmDisk {
  vdev: string;
  image: string;
  /** The image's first line, which the demo guest prints. */
  marker: string;
}

/** `stubdom-init status --watch --json` as a stream of parsed frames. */
export class StatusWatch {
  frames: StatusReport[][] = [];
  private listeners = new Set<() => void>();
  private buf = "";

  constructor(readonly child: Child) {}

  static start(binary: string, socket: string, logPath: string): StatusWatch {
    const child = spawnChild("status --watch", [binary, "status", String(GUEST_DOMID), "--watch", "--json"], {
      logPath,
      env: { XENSTORED_PATH: socket },
    });
    const w = new StatusWatch(child);
    const push = child.out.push.bind(child.out);
    child.out.push = (s: string) => {
      push(s);
      w.onText(s);
    };
    return w;
  }

  private onText(s: string): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (!line.startsWith("[")) continue;
      try {
        this.frames.push(JSON.parse(line) as StatusReport[]);
      } catch {
        continue; // a line that is not a frame (a note): frames are what the waits look at
      }
      for (const l of this.listeners) l();
    }
  }

  /** The first report (past or future) for which `pred` holds. */
  waitFor(what: string, pred: (r: StatusReport) => boolean, ms: number): Promise<StatusReport> {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (const f of this.frames) {
          const r = f[0];
          if (r && pred(r)) {
            cleanup();
            resolve(r);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        const last = this.frames.at(-1)?.[0];
        reject(new HarnessError(`status: no ${what} within ${ms / 1000} s (last: ${JSON.stringify(last?.values ?? last ?? null)})`));
      }, ms);
      const cleanup = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }
}

export interface StatusReport {
  stubdom: number | null;
  guest: number | null;
  health: string;
  reasons: string[];
  values: Record<string, unknown>;
  nics: Record<string, unknown>[];
}

export class StubVm {
  private closed = false;

  private constructor(
    readonly opts: StubVmOptions,
    readonly binary: string,
    readonly ns: Netns,
    readonly xenstored: Child,
    readonly toolstack: Child,
    readonly lock: VmLock,
    readonly qemu: Child,
    readonly guestSerial: Child,
    readonly disks: VmDisk[],
    readonly status: StatusWatch,
    readonly qmp: Qmp,
    readonly startedAt: number,
    /** Undo steps of start(), run in reverse by stop(). */
    private readonly cleanups: (() => Promise<void> | void)[],
  ) {}

  get dir(): string {
    return this.opts.dir;
  }
  get console() {
    return this.qemu.out;
  }
  get xsSocket(): string {
    return join(this.dir, "xenstored.sock");
  }

  static async start(opts: StubVmOptions): Promise<StubVm> {
    const binary = requireFile(dist("stubdom-init"), "run `make build`");
    const kernel = requireFile(dist("qemu-stubdom-linux-kernel"), "run `make build`");
    const rootfs = requireFile(opts.rootfs ?? dist("qemu-stubdom-linux-rootfs-dev"), "run `make build` (without --no-dev)");
    const dir = opts.dir;
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const p = (f: string) => join(dir, f);
    const { mac, description, disks } = await prepareGuest(opts.guest ?? DEMO_GUEST, dir);

    const cleanups: (() => Promise<void> | void)[] = [];
    const undo = async () => {
      for (const c of cleanups.reverse()) await c();
    };
    try {
      const ns = Netns.create(`stubvm-${process.pid}`);
      cleanups.push(() => ns.destroy());
      ns.addTap("be0", `${BACKEND_IP}/24`);

      const xenstored = spawnChild(
        "xenstored",
        [binary, "xenstored", "--socket", p("xenstored.sock"), "--domain-socket", `${STUB_DOMID}:${p("xenstored-dom2.sock")}`],
        { logPath: p("xenstored.log") },
      );
      cleanups.push(async () => void (xenstored.proc.kill("SIGTERM"), await reap(xenstored, 5000)));
      await xenstored.out.waitFor(/listening on/, 15_000);

      const toolstack = spawnChild(
        "simulate-toolstack",
        [binary, "simulate-toolstack", "--socket", p("xenstored.sock"), "--guest", description,
          "--timeout", String(opts.startTimeout ?? 600)],
        { logPath: p("toolstack.log") },
      );
      cleanups.push(async () => void (toolstack.proc.kill("SIGTERM"), await reap(toolstack, 5000)));
      await toolstack.out.waitFor(/created guest/, 15_000);
      const status = StatusWatch.start(binary, p("xenstored.sock"), p("status.log"));
      cleanups.push(async () => void (status.child.proc.kill("SIGTERM"), await reap(status.child, 5000)));

      const lock = await VmLock.acquire();
      cleanups.push(() => lock.release());
      for (const f of ["hvc0.log", "guest-serial.log"]) await Bun.write(p(f), "");
      const cmdline = [
        "console=ttyS0", "panic=-1", "sysrq_always_enabled=1",
        "stubdom.xenstore=virtio:xenstore", `stubdom.domid=${STUB_DOMID}`, "stubdom.qmp=virtio:qmp",
        "stubdom.qemu=/usr/bin/qemu-system-x86_64", ...(opts.cmdline ?? []),
      ];
      const startedAt = performance.now();
      const qemu = spawnChild("stub domain console", ns.wrap([
        "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", String(opts.memMiB ?? 512), "-smp", "1",
        "-display", "none", "-no-reboot", "-monitor", "none", "-nodefaults", "-serial", "stdio",
        "-kernel", kernel, "-initrd", rootfs, "-append", cmdline.join(" "),
        "-qmp", `unix:${p("outer-qmp.sock")},server=on,wait=off`,
        "-device", "virtio-serial-pci,id=vser0",
        // Console 0 first, so that the virtconsoles are hvc0..hvc3 as in a stub domain.
        "-chardev", `file,id=hvc0,path=${p("hvc0.log")}`, "-device", "virtconsole,chardev=hvc0",
        "-chardev", "null,id=hvc1", "-device", "virtconsole,chardev=hvc1",
        "-chardev", "null,id=hvc2", "-device", "virtconsole,chardev=hvc2",
        "-chardev", `file,id=hvc3,path=${p("guest-serial.log")}`, "-device", "virtconsole,chardev=hvc3",
        "-chardev", `socket,id=xs,path=${p("xenstored-dom2.sock")},reconnect=1`,
        "-device", "virtserialport,chardev=xs,name=xenstore",
        "-chardev", `socket,id=qmprelay,path=${p("qmp-relay.sock")},server=on,wait=off`,
        "-device", "virtserialport,chardev=qmprelay,name=qmp",
        "-netdev", "tap,id=nf0,ifname=be0,script=no,downscript=no",
        "-device", `virtio-net-pci,netdev=nf0,mac=${mac}`,
        ...disks.flatMap((d, i) => [
          "-drive", `file=${d.image},if=none,id=vd${i},format=raw`, "-device", `virtio-blk-pci,drive=vd${i}`,
        ]),
      ]), { logPath: p("console.log"), fatal: FATAL_CONSOLE, ...(opts.echo ? { echo: opts.echo } : {}) });
      cleanups.push(async () => void (qemu.proc.kill("SIGKILL"), await reap(qemu, 5000)));
      const guestSerial = spawnChild("demo guest serial", ["tail", "-c", "+1", "-F", p("guest-serial.log")], { logPath: null });
      cleanups.push(async () => void (guestSerial.proc.kill("SIGTERM"), await reap(guestSerial, 5000)));
      const qmp = await Qmp.connect(p("outer-qmp.sock"));
      cleanups.push(() => qmp.close());
      return new StubVm(opts, binary, ns, xenstored, toolstack, lock, qemu, guestSerial, disks, status, qmp, startedAt, cleanups);
    } catch (e) {
      await undo();
      throw e;
    }
  }

  /**
   * `p`, or a rejection as soon as the VM's QEMU exits: a VM that powered off will not produce
   * what a wait is waiting for, so the wait must not run to its deadline.
   */
  alive<T>(p: Promise<T>): Promise<T> {
    const gone = this.qemu.exited.then((code) => {
      throw new HarnessError(`the stub domain VM powered off (QEMU exit ${code}) after ${this.elapsed().toFixed(1)} s`);
    });
    return Promise.race([p, gone]);
  }

  /** Seconds since QEMU was started. */
  elapsed(): number {
    return (performance.now() - this.startedAt) / 1000;
  }

  /** `stubdom-init status 1` once, as a person would run it in dom0. */
  statusOnce(json = false): { code: number; out: string } {
    const p = Bun.spawnSync([this.binary, "status", String(GUEST_DOMID), ...(json ? ["--json"] : [])], {
      env: { ...process.env, XENSTORED_PATH: this.xsSocket },
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: p.exitCode ?? -1, out: p.stdout.toString() + p.stderr.toString() };
  }

  /** A node of the server's tree, or null. */
  read(path: string): string | null {
    const p = Bun.spawnSync(["xenstore-read", path], { env: { ...process.env, XENSTORED_PATH: this.xsSocket }, stdout: "pipe", stderr: "pipe" });
    return p.exitCode === 0 ? p.stdout.toString().replace(/\n$/, "") : null;
  }

  /** Ctrl-Alt-Del on the outer VM's keyboard: the kernel turns it into SIGINT for PID 1 (CAD off). */
  async ctrlAltDel(): Promise<void> {
    await this.qmp.execute("send-key", { keys: ["ctrl", "alt", "delete"].map((k) => ({ type: "qcode", data: k })) });
  }

  /** The outer VM's ACPI power button, as a host's power key or `virsh shutdown` presses it. */
  async powerButton(): Promise<void> {
    await this.qmp.execute("system_powerdown");
  }

  /** SysRq-F: the kernel's manual OOM kill, which sends SIGKILL to the largest process (QEMU). */
  async sysrqOomKill(): Promise<void> {
    await this.qmp.execute("send-key", { keys: ["alt", "sysrq", "f"].map((k) => ({ type: "qcode", data: k })) });
  }

  /** Waits for the VM to power itself off; true if it did within `ms`. */
  async waitPoweroff(ms: number): Promise<boolean> {
    try {
      await withDeadline(this.qemu.exited, ms, "stub domain poweroff");
      return true;
    } catch {
      return false;
    }
  }

  /** Everything a failure report needs, newest last. */
  transcript(): string {
    const section = (name: string, text: string) => `----- ${name} -----\n${text.trimEnd()}\n`;
    return [
      section("stub domain serial console (hvc0 stand-in)", this.console.text),
      section("demo guest serial (hvc3)", this.guestSerial.out.text),
      section("simulate-toolstack", this.toolstack.out.text),
      section("xenstored", this.xenstored.out.text),
      section("last status frame", JSON.stringify(this.status.frames.at(-1) ?? null, null, 1)),
    ].join("");
  }

  /** Clean shutdown (Ctrl-Alt-Del), then force; tears down every host-side piece. */
  async stop(opts: { keep?: boolean } = {}): Promise<{ clean: boolean }> {
    if (this.closed) return { clean: true };
    this.closed = true;
    let clean = this.qemu.proc.exitCode !== null || this.qemu.proc.signalCode !== null;
    if (!clean) {
      await this.ctrlAltDel().catch(() => undefined);
      clean = await this.waitPoweroff(60_000);
    }
    for (const c of this.cleanups.reverse()) await c();
    if (!opts.keep) rmSync(this.dir, { recursive: true, force: true });
    return { clean };
  }
}

/** MemTotal/MemAvailable as the stub domain reported them, in MiB. */
export function memoryOf(r: StatusReport): { totalMiB: number; availableMiB: number } | null {
  const t = r.values.mem_total_kib;
  const a = r.values.mem_available_kib;
  if (typeof t !== "number" || typeof a !== "number") return null;
  return { totalMiB: Math.round(t / 1024), availableMiB: Math.round(a / 1024) };
}

