// Every guest description of the toolstack simulator, written as libxl writes it (keys, values
// and permissions), then read the way the stub domain reads it: as domain S, unprivileged, its
// own domid taken from the relative `domid` key. The parse must succeed and agree with the
// description.
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { parseCmdline } from "../../agent/config/cmdline.ts";
import { loadConfig } from "../../agent/config/load.ts";
import { parseGuest } from "../../agent/toolstack/guest.ts";
import { dmArgv, tapName } from "../../agent/toolstack/plan.ts";
import { createDomains } from "../../agent/toolstack/simulate.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";

const GUESTS = new URL("../guests/", import.meta.url).pathname;
const files = readdirSync(GUESTS).filter((f) => f.endsWith(".json")).sort();
const ids = { guestDomid: 7, stubDomid: 8 };

test("there are simulator guests to check", () => {
  expect(files.length).toBeGreaterThanOrEqual(3);
});

describe.each(files)("simulator guest %s", (file) => {
  const g = parseGuest(JSON.parse(readFileSync(`${GUESTS}${file}`, "utf8")), file);

  test("parses, read as the stub domain itself, and matches the description", () => {
    const dom0 = new MemoryXenStore();
    createDomains(dom0, g, ids);
    const stub = new MemoryXenStore({ store: dom0.store, domid: ids.stubDomid });
    const { snapshot, result } = loadConfig(stub, parseCmdline("").options);
    if (!result.ok) throw new Error(`${file}: ${JSON.stringify(result.errors, null, 1)}`);
    const c = result.config;
    expect(snapshot.values.domid).toBe(String(ids.stubDomid));
    expect(c.stubDomid).toBe(ids.stubDomid);
    expect(c.guestDomid).toBe(ids.guestDomid);
    expect(c.vmPath).toBe(`/vm/${g.uuid}`);
    expect(c.guestName).toBe(g.name);
    expect(c.dmArgv).toEqual(dmArgv(g, ids.guestDomid).filter((a) => !a.startsWith("-qubes-")));
    expect(c.restore !== null).toBe(g.restore);
    expect(c.consoles).toEqual({ save: true, restore: true });
    expect(c.serials.length).toBe(g.serial.length);
    expect(c.disks.map((d) => d.attached)).toEqual(g.disks.map(() => true));
    expect(c.disks.map((d) => d.cdrom)).toEqual(g.disks.map((d) => d.cdrom));
    expect(c.nics.map((n) => [n.index, n.ifname, n.guestMac, n.netfront.mac, n.model, n.backend.bridge])).toEqual(
      g.nics.map((nic, i) => [i, tapName(ids.guestDomid, i), nic.mac, nic.mac, nic.model, nic.bridge]),
    );
    expect(c.nics.map((n) => n.mtu)).toEqual(g.nics.map((nic) => nic.mtu ?? 1500));
    expect(c.nics.map((n) => n.allowedSources.length)).toEqual(g.nics.map((nic) => (nic.ip ? nic.ip.trim().split(/ +/).length : 0)));
    const qubesNet = g.extraArgs.some((a) => a.startsWith("-qubes-net:"));
    expect(c.qubes.net !== null).toBe(qubesNet);
  });
});
