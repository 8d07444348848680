// libxl's CD-ROM change against a real qemu-system-x86_64, with the CD-ROM drive exactly as
// libxl_dm.c writes it for a stub domain (hdc = devid 5632, empty at start), a loop device
// standing in for blkfront's /dev/xvdc, and the agent's CdromFdsets doing the add-fd through
// the real QMP client (SCM_RIGHTS). libxl's side is replayed from libxl_disk.c: find the fdset
// by opaque in query-fdsets, then blockdev-change-medium /dev/fdset/N as host_device.
import { mkdtempSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CdromFdsets, holdsOpaque } from "../../agent/init/cdrom.ts";
import { devNodes } from "../../agent/init/cdrom-devices.ts";
import { createLogger } from "../../agent/log.ts";
import { buildQemuArgv } from "../../agent/qemu/argv.ts";
import { QmpClient } from "../../agent/qemu/qmp.ts";
import { unixTransport } from "../../agent/qemu/unix-transport.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { close, listenUnixForChild, O, open } from "../../ffi/libc.ts";

import { spawnConfinedQemu } from "./real-qemu.ts";
const isRoot = process.getuid?.() === 0;
const DEVID = 5632;
const VBD = "/local/domain/3/device/vbd";

if (!isRoot) console.warn("SKIPPED test/qemu/cdrom-real.test.ts: a loop device needs root (CI runs it as root)");

interface FdsetInfo { "fdset-id": number; fds: Array<{ fd: number; opaque?: string }> }
interface BlockInfo { device: string; qdev?: string; inserted?: { file: string; ro: boolean; drv: string } }

describe.skipIf(!isRoot)("CD-ROM change with a real QEMU", () => {
  let dir: string;
  let loop = "";
  let proc: ReturnType<typeof Bun.spawn>;
  let qmp: QmpClient;
  const lines: string[] = [];
  const reports: string[] = [];
  const dom0 = new MemoryXenStore();
  let cd: CdromFdsets;

  const sh = async (...cmd: string[]) => {
    const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`${cmd.join(" ")}: ${err}`);
    return out.trim();
  };
  /** Whether QEMU's fd number `fd` is open on the loop device. */
  const holdsLoop = (fd: number) => {
    try {
      return readlinkSync(`/proc/${proc.pid}/fd/${fd}`) === loop;
    } catch {
      return false;
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(`${tmpdir()}/cdrom-real-`);
    writeFileSync(`${dir}/disc.iso`, new Uint8Array(1 << 20).fill(0x43));
    loop = await sh("losetup", "--find", "--show", "--read-only", `${dir}/disc.iso`);
    // blkfront's node for devid 5632, as the agent would find it under /dev.
    symlinkSync(loop, `${dir}/xvdc`);
    const built = buildQemuArgv({
      dmArgv: [
        "-machine", "pc", "-accel", "tcg", "-m", "16", "-S", "-nodefaults", "-no-user-config", "-display", "none",
        "-drive", `if=none,readonly=on,id=ide-${DEVID}`,
        "-device", `ide-cd,id=ide-${DEVID},drive=ide-${DEVID},bus=ide.1,unit=0`,
      ],
      restoreArgIndex: null,
      monitors: ["qmp-agent"],
      restoreFd: false,
      sandbox: true,
    });
    if (!built.ok) throw new Error(built.reason);
    const fd = listenUnixForChild(`${dir}/agent.sock`);
    proc = spawnConfinedQemu(built.argv, [fd], dir);
    close(fd);
    qmp = await QmpClient.connect(unixTransport(`${dir}/agent.sock`), 15_000);
    const stub = new MemoryXenStore({ store: dom0.store, domid: 3, privileged: true });
    cd = new CdromFdsets({
      xs: stub, vbdDir: VBD, qmp: () => qmp, devices: devNodes, devDir: dir,
      log: createLogger({ sink: { write: (l) => lines.push(l) } }), report: (m) => reports.push(m),
    });
    stub.onWatch((e) => cd.onWatch(e.path));
    stub.watch(VBD, "cdrom");
  });

  afterAll(async () => {
    proc?.kill("SIGKILL");
    await proc?.exited;
    if (loop) await sh("losetup", "--detach", loop).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  const settle = async () => {
    await Bun.sleep(0);
    await cd.idle();
  };

  test("the re-attached vbd's add-fd shows up in query-fdsets with libxl's opaque, and libxl's change-medium takes it", async () => {
    for (const [k, v] of Object.entries({ "virtual-device": String(DEVID), "device-type": "cdrom", state: "1" })) dom0.write(`${VBD}/${DEVID}/${k}`, v);
    await settle();
    dom0.write(`${VBD}/${DEVID}/state`, "4");
    await settle();
    expect(reports).toEqual([]);
    const sets = (await qmp.execute("query-fdsets")) as FdsetInfo[];
    const ours = sets.find((s) => s.fds.some((f) => f.opaque === `stub-devid:${DEVID}`));
    expect(ours, JSON.stringify(sets)).toBeDefined();
    expect(lines.join("")).toContain(`as fdset ${ours!["fdset-id"]}, opaque stub-devid:${DEVID}`);
    // libxl's next step; QEMU dups the fdset's fd only when its access mode matches the
    // read-only drive's, so this also proves the fd was opened O_RDONLY.
    await qmp.execute("blockdev-change-medium", { id: `ide-${DEVID}`, filename: `/dev/fdset/${ours!["fdset-id"]}`, format: "host_device" });
    const block = ((await qmp.execute("query-block")) as BlockInfo[]).find((b) => b.qdev?.includes(`ide-${DEVID}`));
    expect(block?.inserted).toMatchObject({ file: `/dev/fdset/${ours!["fdset-id"]}`, ro: true, drv: "host_device" });
    expect(holdsLoop(ours!.fds[0]!.fd)).toBe(true);
  });

  test("an fd opened read-write is refused for the read-only drive (the access mode matters)", async () => {
    const fd = open(loop, O.RDWR | O.CLOEXEC);
    let id: number;
    try {
      id = ((await qmp.execute("add-fd", { opaque: "rw-probe" }, 5000, [fd])) as { "fdset-id": number })["fdset-id"];
    } finally {
      close(fd);
    }
    await expect(qmp.execute("blockdev-change-medium", { id: `ide-${DEVID}`, filename: `/dev/fdset/${id}`, format: "host_device" })).rejects.toThrow();
    await qmp.execute("remove-fd", { "fdset-id": id });
  });

  test("a plain block-detach: the agent removes its fdset, QEMU closes the device once the guest runs", async () => {
    await qmp.execute("eject", { id: `ide-${DEVID}` });
    const before = (await qmp.execute("query-fdsets")) as FdsetInfo[];
    const ours = before.find((s) => s.fds.some((f) => f.opaque === `stub-devid:${DEVID}`))!;
    // QEMU closes removed fdset fds only while the VM runs (monitor_fdset_cleanup).
    await qmp.execute("cont");
    dom0.write(`${VBD}/${DEVID}/state`, "5");
    await settle();
    dom0.rm(`${VBD}/${DEVID}`);
    await settle();
    expect(reports).toEqual([]);
    expect(lines.join("")).toContain(`cdrom: vbd ${DEVID} went away; remove-fd fdset ${ours["fdset-id"]}`);
    const after = (await qmp.execute("query-fdsets")) as FdsetInfo[];
    expect(holdsOpaque(after, ours["fdset-id"], `stub-devid:${DEVID}`)).toBe(false);
    expect(holdsLoop(ours.fds[0]!.fd)).toBe(false);
  });
});
