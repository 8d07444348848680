import { expect, test } from "vitest";
import { onNicUnplug, type NicPairNames } from "../../agent/init/nic-unplug.ts";
import { createLogger } from "../../agent/log.ts";

test("DEVICE_DELETED of an emulated NIC unlinks its pair once; other devices are ignored", async () => {
  const unlinked: NicPairNames[] = [];
  const lines: string[] = [];
  const pairs = new Map([
    ["nic0", { netfront: "eth0", tap: "vif5.0-emu" }],
    ["nic1", { netfront: "eth1", tap: "vif5.1-emu" }],
  ]);
  const listener = onNicUnplug(pairs, async (p) => void unlinked.push(p), createLogger({ sink: { write: (l) => lines.push(l) } }));
  const deleted = (device: unknown) => listener({ kind: "qmp", event: { event: "DEVICE_DELETED", data: { device, path: "/x" } } });
  deleted("nic0");
  deleted("nic0");
  deleted("ide-5632");
  deleted(42);
  listener({ kind: "qmp", event: { event: "RESUME" } });
  await Bun.sleep(0);
  expect(unlinked).toEqual([{ netfront: "eth0", tap: "vif5.0-emu" }]);
  expect([...pairs.keys()]).toEqual(["nic1"]);
  expect(lines.join("")).toMatch(/nic0 unplugged: eth0 <-> vif5.0-emu removed/);
});
