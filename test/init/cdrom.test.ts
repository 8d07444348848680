import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { afterAll, afterEach, describe, expect, test } from "vitest";
import { CdromFdsets, decide, holdsOpaque, isPlaceholder, vbdDiskName, wantsFdset, type BlockDevices, type CdromQmp } from "../../agent/init/cdrom.ts";
import { devNodes } from "../../agent/init/cdrom-devices.ts";
import { createLogger } from "../../agent/log.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";

test("blkfront's names: libxl's hd/sd/xvd devids become xvd disks; partitions and unknown majors have none", () => {
  const cases: Array<[number, string | null]> = [
    [768, "xvda"], // hda (3 << 8)
    [832, "xvdb"], // hdb
    [5632, "xvdc"], // hdc (22 << 8): libxl's usual CD-ROM
    [5696, "xvdd"], // hdd
    [2048, "xvda"], // sda
    [2080, "xvdc"], // sdc, the example in libxl's comment
    [51712, "xvda"], // xvda (202 << 8)
    [51744, "xvdc"],
    [51952, "xvdp"],
    [(65 << 8) | 0, "xvdq"], // sdq
    [(1 << 28) | (26 << 8), "xvdaa"], // extended xvdaa
    [5633, null], // hdc1: a partition
    [51745, null], // xvdc1
    [(9 << 8), null], // an unknown major
    [-1, null],
    [(1 << 29), null],
  ];
  for (const [devid, name] of cases) expect(vbdDiskName(devid), String(devid)).toBe(name);
});

test("the decision table: the boot node needs nothing, a later node gets exactly one fdset, a vanished one loses it", () => {
  expect(decide(false, null, undefined, undefined)).toBe("keep");
  expect(decide(true, "n1", "n1", undefined)).toBe("keep"); // on QEMU's command line
  expect(decide(true, "n2", "n1", undefined)).toBe("add"); // re-attached: a new node
  expect(decide(true, "n2", undefined, "n2")).toBe("keep"); // handed over already
  expect(decide(true, "n3", undefined, "n2")).toBe("replace"); // re-attached again, events late
  expect(decide(false, null, undefined, "n2")).toBe("release"); // closing, closed, gone
  expect(decide(true, null, undefined, "n2")).toBe("release"); // the node went away
});

test("only a connected CD-ROM wants an fdset", () => {
  expect(wantsFdset({ kind: "present", state: 4, cdrom: true })).toBe(true);
  expect(wantsFdset({ kind: "present", state: 4, cdrom: false })).toBe(false);
  expect(wantsFdset({ kind: "present", state: 3, cdrom: true })).toBe(false);
  expect(wantsFdset({ kind: "present", state: 5, cdrom: true })).toBe(false);
  expect(wantsFdset({ kind: "gone" })).toBe(false);
  expect(wantsFdset({ kind: "invalid", key: "k", reason: "r" })).toBe(false);
});

test("holdsOpaque reads query-fdsets' answer and tolerates garbage", () => {
  const sets = [{ "fdset-id": 1, fds: [{ fd: 30, opaque: "hvc1" }] }, { "fdset-id": 0, fds: [{ fd: 31, opaque: "stub-devid:5632" }] }];
  expect(holdsOpaque(sets, 0, "stub-devid:5632")).toBe(true);
  expect(holdsOpaque(sets, 1, "stub-devid:5632")).toBe(false);
  expect(holdsOpaque(null, 0, "x")).toBe(false);
  expect(holdsOpaque([null, 3, { fds: "no" }], 0, "x")).toBe(false);
});

const STUB = 3;
const VBD = `/local/domain/${STUB}/device/vbd`;

function rig(opts: { qmp?: boolean; nodeMissing?: boolean; bootCdrom?: number; late?: boolean } = {}) {
  const dom0 = new MemoryXenStore();
  /** blkfront's nodes: path -> identity; each attach makes a new one, as devtmpfs does. */
  const nodes = new Map<string, string>();
  let generation = 0;
  const node = (devid: number) => `/dev/${vbdDiskName(devid)}`;
  if (opts.bootCdrom !== undefined) {
    for (const [k, v] of Object.entries({ state: "4", "virtual-device": String(opts.bootCdrom), "device-type": "cdrom" })) dom0.write(`${VBD}/${opts.bootCdrom}/${k}`, v);
    nodes.set(node(opts.bootCdrom), `inode${++generation}`);
  }
  const stub = new MemoryXenStore({ store: dom0.store, domid: STUB, privileged: true });
  const lines: string[] = [];
  const reports: string[] = [];
  const calls: Array<{ command: string; args?: Record<string, unknown>; fds?: number[] }> = [];
  const fdsets: Array<{ "fdset-id": number; fds: Array<{ fd: number; opaque: string; node: string }> }> = [];
  let nextFdset = 0;
  const opened = new Map<number, string>();
  const qmp: CdromQmp = {
    async execute(command, args, _timeout, fds) {
      calls.push({ command, ...(args ? { args } : {}), ...(fds ? { fds } : {}) });
      if (command === "add-fd") {
        const id = nextFdset++;
        fdsets.push({ "fdset-id": id, fds: [{ fd: 100 + id, opaque: String(args?.opaque), node: opened.get(fds![0]!)! }] });
        return { "fdset-id": id, fd: 100 + id };
      }
      if (command === "query-fdsets") return structuredClone(fdsets);
      if (command === "remove-fd") {
        fdsets.splice(fdsets.findIndex((s) => s["fdset-id"] === args?.["fdset-id"]), 1);
        return {};
      }
      throw new Error(`unexpected ${command}`);
    },
  };
  const closed: number[] = [];
  let nextFd = 40;
  const devices: BlockDevices = {
    waitFor: async (path) => {
      if (opts.nodeMissing || !nodes.has(path)) throw new Error(`${path} did not appear within 10 ms`);
    },
    identity: (path) => nodes.get(path) ?? null,
    openReadOnly: (path) => {
      const fd = ++nextFd;
      opened.set(fd, nodes.get(path)!);
      return fd;
    },
    close: (fd) => void closed.push(fd),
  };
  const cd = new CdromFdsets({
    xs: stub,
    vbdDir: VBD,
    qmp: () => (opts.qmp === false ? undefined : qmp),
    devices,
    log: createLogger({ sink: { write: (l) => lines.push(l) } }),
    report: (m) => reports.push(m),
  });
  cd.recordBoot();
  // late: events wait until settle(), as when the loop was busy while libxl wrote.
  const held: string[] = [];
  stub.onWatch((e) => (opts.late ? held.push(e.path) : cd.onWatch(e.path)));
  stub.watch(VBD, "cdrom");
  const settle = async () => {
    await stub.settled();
    for (const p of held.splice(0)) cd.onWatch(p);
    await cd.idle();
  };
  const step = async () => {
    if (!opts.late) await settle();
  };
  /** libxl's frontend write for a (re)attached vbd, then blkfront connecting and adding the disk. */
  const attach = async (devid: number, type = "cdrom") => {
    const tx = dom0.transactionStart();
    for (const [k, v] of Object.entries({ "backend-id": "0", state: "1", "virtual-device": String(devid), "device-type": type })) {
      dom0.write(`${VBD}/${devid}/${k}`, v, tx);
    }
    dom0.transactionEnd(tx, false);
    await step();
    dom0.write(`${VBD}/${devid}/state`, "3");
    await step();
    dom0.write(`${VBD}/${devid}/state`, "4");
    nodes.set(node(devid), `inode${++generation}`);
    await step();
  };
  const detach = async (devid: number, libxlRemovesFdset: boolean) => {
    if (libxlRemovesFdset) {
      const i = fdsets.findIndex((s) => s.fds.some((f) => f.opaque === `stub-devid:${devid}`));
      if (i >= 0) fdsets.splice(i, 1);
    }
    dom0.write(`${VBD}/${devid}/state`, "5");
    await step();
    dom0.write(`${VBD}/${devid}/state`, "6");
    nodes.delete(node(devid));
    await step();
    dom0.rm(`${VBD}/${devid}`);
    await step();
  };
  /** xl cd-eject's empty placeholder: libxl's frontend write, its backend's params; it never connects. */
  const attachPlaceholder = async (devid: number) => {
    const be = `/local/domain/0/backend/qdisk/${STUB}/${devid}`;
    dom0.write(`${be}/params`, "aio:/var/run/xen/empty-cdrom.1");
    const tx = dom0.transactionStart();
    for (const [k, v] of Object.entries({ backend: be, state: "1", "virtual-device": String(devid), "device-type": "cdrom" })) {
      dom0.write(`${VBD}/${devid}/${k}`, v, tx);
    }
    dom0.transactionEnd(tx, false);
    await step();
  };
  return { dom0, stub, cd, calls, fdsets, closed, lines, reports, attach, attachPlaceholder, detach, settle };
}

describe("CdromFdsets against the in-memory xenstore", () => {
  test("a CD-ROM present at boot gets nothing; after libxl's re-attach, one add-fd with libxl's opaque and our fd closed", async () => {
    const r = rig({ bootCdrom: 5632 });
    r.dom0.write(`${VBD}/5632/state`, "4");
    await r.settle();
    expect(r.calls).toEqual([]);
    // cd-insert: libxl found no fdset of ours to remove, detaches and re-attaches.
    await r.detach(5632, false);
    expect(r.calls).toEqual([]);
    await r.attach(5632);
    expect(r.calls).toEqual([{ command: "add-fd", args: { opaque: "stub-devid:5632" }, fds: [41] }]);
    expect(r.fdsets).toEqual([{ "fdset-id": 0, fds: [{ fd: 100, opaque: "stub-devid:5632", node: "inode2" }] }]);
    expect(r.closed).toEqual([41]);
    expect(r.lines.join("")).toMatch(/cdrom: add-fd \/dev\/xvdc \(vbd 5632, read-only\) as fdset 0, opaque stub-devid:5632/);
    expect(r.reports).toEqual([]);
  });

  test("libxl's cd-insert (it removes the fdset itself): nothing left to remove, the new vbd gets a new fdset", async () => {
    const r = rig();
    await r.attach(5632);
    r.calls.length = 0;
    await r.detach(5632, true);
    expect(r.calls).toEqual([{ command: "query-fdsets" }]);
    expect(r.lines.join("")).toMatch(/vbd 5632 went away; fdset 0 was already removed \(by libxl\)/);
    await r.attach(5632);
    expect(r.calls.at(-1)).toEqual({ command: "add-fd", args: { opaque: "stub-devid:5632" }, fds: [42] });
    expect(r.closed).toEqual([41, 42]);
    expect(r.fdsets.map((s) => s["fdset-id"])).toEqual([1]);
  });

  test("xl cd-eject: libxl's empty placeholder gets one fdset of /dev/null; cd-insert removes it and the medium gets its own", async () => {
    const r = rig();
    await r.attach(5632);
    await r.detach(5632, true); // cd-eject: libxl removes our fdset and detaches the medium
    r.calls.length = 0;
    await r.attachPlaceholder(5632);
    // Watch events for the same placeholder (its state, libxl's other writes) add nothing more.
    r.dom0.write(`${VBD}/5632/state`, "1");
    await r.settle();
    // Each event looks again (query-fdsets); only the first adds.
    expect(r.calls.filter((c) => c.command === "add-fd")).toEqual([{ command: "add-fd", args: { opaque: "stub-devid:5632" }, fds: [42] }]);
    expect(new Set(r.calls.map((c) => c.command))).toEqual(new Set(["add-fd", "query-fdsets"]));
    expect(r.lines.join("")).toMatch(/cdrom: add-fd \/dev\/null \(vbd 5632, libxl's empty placeholder \(xl cd-eject\), read-only\) as fdset 1, opaque stub-devid:5632/);
    // cd-insert: libxl removes the placeholder's fdset itself, detaches it, attaches the medium.
    await r.detach(5632, true);
    await r.attach(5632);
    expect(r.fdsets).toEqual([{ "fdset-id": 2, fds: [{ fd: 102, opaque: "stub-devid:5632", node: "inode2" }] }]);
    expect(r.closed).toEqual([41, 42, 43]);
    expect(r.reports).toEqual([]);
  });

  test("a placeholder whose fdset libxl removed while events were pending gets a new one", async () => {
    const r = rig();
    await r.attachPlaceholder(5632);
    r.fdsets.splice(0); // libxl's remove-fd, the detach and re-attach not yet seen
    r.dom0.write(`${VBD}/5632/state`, "1");
    await r.settle();
    expect(r.calls.filter((c) => c.command === "add-fd")).toHaveLength(2);
    r.dom0.write(`${VBD}/5632/state`, "1"); // a later look keeps it
    await r.settle();
    expect(r.calls.filter((c) => c.command === "add-fd")).toHaveLength(2);
    expect(r.fdsets.map((s) => s["fdset-id"])).toEqual([1]);
  });

  test("the placeholder is told by its backend's params, libxl's empty-cdrom.<domid> or nothing", () => {
    expect(isPlaceholder("/var/run/xen/empty-cdrom.1")).toBe(true);
    expect(isPlaceholder("aio:/var/run/xen/empty-cdrom.1")).toBe(true); // qdisk, as on Xen 4.20
    expect(isPlaceholder("aio:")).toBe(true);
    expect(isPlaceholder("aio:/dev/loop2")).toBe(false);
    expect(isPlaceholder("/run/xen/empty-cdrom.32752")).toBe(true);
    expect(isPlaceholder("/dev/loop2")).toBe(false);
    expect(isPlaceholder("/srv/empty-cdrom.iso")).toBe(false);
    expect(isPlaceholder("/var/run/xen/empty-cdrom.01")).toBe(false);
    expect(isPlaceholder("")).toBe(true);
  });

  test("a plain block-detach (libxl removes nothing): our stale fdset is removed once", async () => {
    const r = rig();
    await r.attach(5632);
    await r.detach(5632, false);
    expect(r.calls.map((c) => c.command)).toEqual(["add-fd", "query-fdsets", "remove-fd"]);
    expect(r.calls[2]).toEqual({ command: "remove-fd", args: { "fdset-id": 0 } });
    expect(r.fdsets).toEqual([]);
    expect(r.lines.join("")).toMatch(/cdrom: vbd 5632 went away; remove-fd fdset 0/);
  });

  test("events handled late (detach and re-attach all written before the first is handled) still give exactly one fdset, on the new node", async () => {
    const r = rig({ late: true });
    await r.attach(5632);
    await r.settle();
    expect(r.fdsets.map((f) => f.fds[0]!.node)).toEqual(["inode1"]);
    await r.detach(5632, true); // libxl removed fdset 0
    await r.attach(5632);
    await r.detach(5632, true); // nothing of ours to remove yet: nothing was handled
    await r.attach(5632);
    expect(r.calls).toHaveLength(1);
    await r.settle();
    expect(r.fdsets).toEqual([{ "fdset-id": 1, fds: [{ fd: 101, opaque: "stub-devid:5632", node: "inode3" }] }]);
    expect(r.calls.map((c) => c.command)).toEqual(["add-fd", "query-fdsets", "add-fd"]);
    expect(r.reports).toEqual([]);
  });

  test("disks are not CD-ROMs; hostile values are reported with their key and ignored", async () => {
    const r = rig();
    await r.attach(51712, "disk");
    r.dom0.write(`${VBD}/5632/virtual-device`, "5632");
    r.dom0.write(`${VBD}/5632/state`, "4\u0007");
    await r.settle();
    r.dom0.write(`${VBD}/5632/state`, "44");
    r.dom0.write(`${VBD}/5632/device-type`, "cdrom".repeat(10));
    await r.settle();
    r.dom0.write(`${VBD}/999999999999/state`, "4");
    r.dom0.write(`${VBD}/5633/state`, "4");
    await r.settle();
    expect(r.calls).toEqual([]);
    expect(r.reports).toEqual(expect.arrayContaining([
      `cdrom: ${VBD}/5632/state: not printable ASCII; ignored`,
      `cdrom: ${VBD}/5632/state: not a XenbusState (0..8); ignored`,
      `cdrom: ${VBD}/999999999999: not a whole-disk vbd number; ignored`,
      `cdrom: ${VBD}/5633: not a whole-disk vbd number; ignored`,
    ]));
    r.dom0.write(`${VBD}/5632/state`, "4");
    await r.settle();
    expect(r.reports.at(-1)).toBe(`cdrom: ${VBD}/5632/device-type: 50 bytes, at most 16; ignored`);
  });

  test("no monitor, or no device node: reported into health, no fd leaked, the next attach still works", async () => {
    const noQmp = rig({ qmp: false });
    await noQmp.attach(5632);
    expect(noQmp.reports.join("")).toMatch(/vbd 5632 \(\/dev\/xvdc\) connected while QEMU's monitor is not usable/);
    expect(noQmp.closed).toEqual([]);
    const noNode = rig({ nodeMissing: true });
    await noNode.attach(5632);
    expect(noNode.reports).toEqual(["cdrom: /dev/xvdc did not appear within 10 ms"]);
    expect(noNode.calls).toEqual([]);
  });
});

describe("devNodes, the real BlockDevices (inotify on a directory)", () => {
  const dir = mkdtempSync(`${tmpdir()}/cdrom-dev-`);
  afterEach(() => rmSync(`${dir}/xvdc`, { force: true }));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("waitFor resolves when the node appears later, at once when it exists, and rejects after its timeout; a re-created node has a new identity", async () => {
    const waiting = devNodes.waitFor(`${dir}/xvdc`, 5000);
    setTimeout(() => writeFileSync(`${dir}/xvdc`, "iso"), 50);
    await expect(waiting).resolves.toBeUndefined();
    await expect(devNodes.waitFor(`${dir}/xvdc`, 5000)).resolves.toBeUndefined();
    await expect(devNodes.waitFor(`${dir}/xvdd`, 100)).rejects.toThrow(/xvdd did not appear within 100 ms/);
    const first = devNodes.identity(`${dir}/xvdc`);
    expect(first).toMatch(/^\d+:\d+:\d+$/);
    expect(devNodes.identity(`${dir}/xvdc`)).toBe(first);
    rmSync(`${dir}/xvdc`);
    expect(devNodes.identity(`${dir}/xvdc`)).toBeNull();
    writeFileSync(`${dir}/other`, "keeps the old inode number in use");
    writeFileSync(`${dir}/xvdc`, "iso 2");
    expect(devNodes.identity(`${dir}/xvdc`)).not.toBe(first);
    const fd = devNodes.openReadOnly(`${dir}/xvdc`);
    expect(fd).toBeGreaterThan(2);
    devNodes.close(fd);
    expect(() => devNodes.openReadOnly(`${dir}/absent`)).toThrow();
  });
});
