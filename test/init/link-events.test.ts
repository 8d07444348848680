import { expect, test } from "vitest";
import { Listeners } from "../../agent/init/events.ts";
import { LINK_STEPS, NicLinks } from "../../agent/init/link-events.ts";
import { Supervisor, type SupervisorDeps } from "../../agent/init/supervisor.ts";
import { readReport } from "../../agent/health/reader.ts";
import { renderTable } from "../../agent/health/render.ts";
import { healthDir, NicSchema } from "../../agent/health/schema.ts";
import { createHealthWriter } from "../../agent/health/writer.ts";
import { createLogger } from "../../agent/log.ts";
import { FakeNetlink } from "../../agent/net/fake.ts";
import { linkNic } from "../../agent/net/nic.ts";
import { GUEST, libxlLayout, manualTimer, memLogger, STUB, testClock } from "../health/helpers.ts";

const memLog = () => {
  const lines: string[] = [];
  return { lines, log: createLogger({ sink: { write: (l) => lines.push(l) }, level: "debug" }) };
};

test("the link table: only a delete of the known index loses a side; a new index or a return re-links", () => {
  expect(LINK_STEPS).toEqual({
    del: { same: "lost", other: "none", gone: "none" },
    new: { same: "none", other: "back", gone: "back" },
  });
});

async function rig() {
  const nl = new FakeNetlink();
  nl.addLink("eth0");
  nl.addLink("vif5.0-emu");
  const options = { netfront: "eth0", tap: "vif5.0-emu", localDhcp: true };
  const first = await linkNic(nl, options);
  const { lines, log } = memLog();
  const reports: string[] = [];
  const relinked: string[] = [];
  const links = new NicLinks({ nl, log, report: (m) => reports.push(m), relinked: (d) => void relinked.push(d) });
  links.track("nic0", options, first);
  nl.onLink((e) => links.onLink(e), (e) => links.onLost(String(e)));
  return { nl, links, lines, reports, relinked };
}

test("a tap that disappears is logged, reported and shown in the NIC entry; when it comes back it is linked again, guard included", async () => {
  const { nl, links, lines, reports, relinked } = await rig();
  expect((await links.health())[0]).not.toHaveProperty("redirect");
  nl.removeLink("vif5.0-emu");
  expect(reports).toEqual(["net: nic0: tap vif5.0-emu disappeared: eth0 <-> vif5.0-emu is not linked"]);
  const gone = (await links.health())[0]!;
  expect(gone).toMatchObject({ name: "eth0", link: "down", redirect: "tap_gone" });
  expect(gone).not.toHaveProperty("tap");
  expect(NicSchema.safeParse(gone).success).toBe(true);

  nl.addLink("vif5.0-emu"); // QEMU re-creates it: a new ifindex
  await links.idle();
  expect(nl.snapshot()["vif5.0-emu"]).toEqual({ up: true, mtu: 1500, ingress: true, filters: ["1:bpf", "2:u32"] });
  expect(nl.snapshot().eth0!.filters).toEqual(["2:u32"]);
  const back = (await links.health())[0]!;
  expect(back).toMatchObject({ name: "eth0", tap: "vif5.0-emu", link: "up" });
  expect(back).not.toHaveProperty("redirect");
  expect(lines.join("")).toMatch(/tap vif5.0-emu is back \(index 3\): linking eth0 <-> vif5.0-emu again[\s\S]*linked again/);
  expect(relinked).toEqual(["nic0"]);
});

test("our own changes and carrier flaps re-link nothing; the netfront's loss waits for both sides", async () => {
  const { nl, links, reports, relinked } = await rig();
  const before = nl.requests.length;
  nl.setCarrier("eth0", false);
  nl.setCarrier("eth0", true);
  await links.idle();
  expect(nl.requests.length).toBe(before);
  expect(relinked).toEqual([]);
  nl.removeLink("eth0");
  nl.removeLink("vif5.0-emu");
  expect(reports).toHaveLength(2);
  expect((await links.health())[0]).toMatchObject({ redirect: "tap_gone", link: "down", rx_packets: 0 });
  nl.addLink("eth0");
  await links.idle();
  expect(nl.requests.length).toBe(before + 1); // the health dump only
  nl.addLink("vif5.0-emu");
  await links.idle();
  expect((await links.health())[0]).not.toHaveProperty("redirect");
});

test("lost notifications: the links are read again and a re-created tap is linked again", async () => {
  const { nl, links, lines } = await rig();
  nl.quietly(() => {
    nl.removeLink("vif5.0-emu");
    nl.addLink("vif5.0-emu");
  });
  expect(nl.snapshot()["vif5.0-emu"]!.filters).toEqual([]);
  nl.loseEvents();
  await links.idle();
  await links.idle();
  expect(nl.snapshot()["vif5.0-emu"]!.filters).toEqual(["1:bpf", "2:u32"]);
  expect(lines.join("")).toMatch(/link notifications lost \(Error: ENOBUFS\)/);
});

test("a failed re-link is reported as relink_failed and the pair is tried again on the next return", async () => {
  const nl = new FakeNetlink();
  nl.addLink("eth0");
  nl.addLink("tap0");
  const options = { netfront: "eth0", tap: "tap0" };
  const first = await linkNic(nl, options);
  const reports: string[] = [];
  let fail = true;
  const links = new NicLinks({
    nl, log: memLog().log, report: (m) => reports.push(m),
    relink: (n, o) => (fail ? Promise.reject(new Error("EBUSY")) : linkNic(n, o)),
  });
  links.track("nic0", options, first);
  nl.onLink((e) => links.onLink(e));
  nl.removeLink("tap0");
  nl.addLink("tap0");
  await links.idle();
  expect(reports.at(-1)).toBe("net: nic0: linking eth0 <-> tap0 again failed: EBUSY");
  expect((await links.health())[0]).toMatchObject({ redirect: "relink_failed" });
  fail = false;
  nl.removeLink("tap0");
  nl.addLink("tap0");
  await links.idle();
  expect((await links.health())[0]).not.toHaveProperty("redirect");
  links.forget({ netfront: "eth0", tap: "tap0" });
  expect(await links.health()).toEqual([]);
});

test("Listeners: per kind, in order, a throwing listener is reported and the others still run", () => {
  const l = new Listeners();
  const seen: string[] = [];
  const errors: unknown[] = [];
  l.on("xenstore", (e) => seen.push(`a ${e.path}`));
  l.on("xenstore", () => {
    throw new Error("boom");
  });
  const off = l.on("xenstore", (e) => seen.push(`c ${e.token}`));
  l.on("link", (e) => seen.push(`link ${e.event.name}`));
  l.dispatch({ kind: "xenstore", path: "/p", token: "t" }, (e) => errors.push(e));
  off();
  l.dispatch({ kind: "xenstore", path: "/q", token: "t" }, (e) => errors.push(e));
  l.dispatch({ kind: "link", event: { type: "del", index: 3, name: "tap0", up: false, lowerUp: false, attrs: [] } }, (e) => errors.push(e));
  expect(seen).toEqual(["a /p", "c t", "a /q", "link tap0"]);
  expect(errors).toHaveLength(2);
});

test("the supervisor's loop hands xenstore and link events to their listeners, whatever QEMU's state", async () => {
  const { lines, log } = memLog();
  const errors: string[] = [];
  const never = new Promise<never>(() => {});
  const deps: SupervisorDeps = {
    log,
    processes: {
      spawn: () => ({ pid: 4242, exited: never, stderr: new ReadableStream({ start: (c) => c.close() }), kill: () => {} }),
      isOwn: () => true,
    },
    hypervisor: { shutdownGuest: () => {} },
    machine: { sync: () => {}, powerOff: () => {} },
    health: {
      setPhase: () => {}, bootPhase: () => {}, agentOverhead: () => {}, confinement: () => {}, qemuStarted: () => {}, qemuExited: () => {},
      qmpStatus: () => {}, error: (m) => void errors.push(m), flush: () => true,
    },
    listen: () => 100,
    connectQmp: () => never,
    openRestoreConsole: () => 101,
    saveStreamFd: () => 102,
    policyFd: () => 103,
    closeFd: () => {},
    reapOrphans: () => 0,
    nowMs: () => 1000,
    entryMs: 0,
  };
  const sup = new Supervisor(
    { binary: "/bin/qemu", sandbox: false, confine: null, dmArgv: [], restoreArgIndex: null, guestDomid: 5, crash: "hold", crashGraceMs: 0, runDir: "/tmp", saveConsole: false, qmpTimeoutMs: 1000, restoreStallAtMs: 0, probeMs: 0, reapSweepMs: 0 },
    deps,
  );
  const got: string[] = [];
  sup.listeners.on("xenstore", (e) => got.push(`xenstore ${e.path} ${e.token}`));
  sup.listeners.on("link", (e) => got.push(`link ${e.event.type} ${e.event.name}`));
  sup.listeners.on("linksLost", (e) => {
    got.push(`lost ${e.reason}`);
    throw new Error("listener bug");
  });
  void sup.run();
  sup.queue.push({ kind: "xenstore", path: "/local/domain/3/device/vbd/5632/state", token: "cdrom" });
  sup.queue.push({ kind: "linksLost", reason: "ENOBUFS" });
  sup.queue.push({ kind: "link", event: { type: "del", index: 7, name: "vif5.0-emu", up: false, lowerUp: false, attrs: [] } });
  for (let i = 0; i < 20 && got.length < 3; i++) await Bun.sleep(1);
  expect(got).toEqual(["xenstore /local/domain/3/device/vbd/5632/state cdrom", "lost ENOBUFS", "link del vif5.0-emu"]);
  expect(sup.state).toBe("starting");
  expect(sup.monitor).toBeUndefined();
  expect(errors).toEqual([expect.stringMatching(/^linksLost listener failed: Error: listener bug/)]);
  expect(lines.join("")).not.toMatch(/fatal/);
});

test("the redirect problem reaches dom0: written by the health writer, read back valid, shown by status", async () => {
  const { nl, links } = await rig();
  nl.removeLink("vif5.0-emu");
  const { dom0, stub } = libxlLayout();
  const clock = testClock();
  const w = createHealthWriter({ xs: stub, domid: STUB, log: memLogger().log, clock: clock.boot, wallClock: clock.wall, every: manualTimer().every, sources: { nics: () => links.health() } });
  w.start();
  for (let i = 0; i < 50 && w.stats().transactions === 0; i++) await Bun.sleep(1);
  expect(dom0.directory(`${healthDir(STUB)}/nic`)).toEqual(["0"]);
  const report = readReport(dom0, { stubdom: STUB, guest: GUEST }, { wallMs: clock.wall, monoMs: () => 0 });
  expect(report.nics[0]?.field).toMatchObject({ state: "ok", value: { name: "eth0", link: "down", redirect: "tap_gone" } });
  const table = renderTable([report]);
  expect(table).toMatch(/ eth0 tap_gone /);
  expect(table).toContain("nic0 eth0 down (redirect: tap_gone): rx 0 pkts");
});
