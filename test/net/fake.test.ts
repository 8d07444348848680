// FakeNetlink against the kernel: the same script (contract.ts) must observe the same things.
import { afterAll, expect, test } from "vitest";
import { FakeNetlink } from "../../agent/net/fake.ts";
import { runContract } from "./contract.ts";
import { isRoot, must, Namespaces, scenario } from "./netns.ts";

async function onFake(): Promise<Record<string, unknown>> {
  const fake = new FakeNetlink();
  fake.addLink("lo");
  fake.addLink("nf");
  fake.addLink("tp");
  return runContract(fake);
}

test("the contract script passes on the fake (what it observes is pinned here)", async () => {
  const obs = await onFake();
  expect(obs.filterWithoutQdisc).toBe("NetlinkError: netlink request: EINVAL (Invalid argument): Parent Qdisc doesn't exists");
  expect(obs.missingNetfront).toBe("NetlinkError: find netfront 'nosuch0': ENODEV (No such device)");
  expect(obs.afterLink).toEqual([
    { name: "nf", up: true, mtu: 1450, ingress: true, guard: false, redirectTo: "tp", redirectedPackets: 0, spoofDrops: 0 },
    { name: "tp", up: true, mtu: 1450, ingress: true, guard: true, redirectTo: "nf", redirectedPackets: 0, spoofDrops: 0 },
  ]);
  expect(obs.afterRelink).toMatchObject([{ name: "nf", guard: false }, { name: "tp", guard: false, redirectTo: "nf" }]);
  expect(obs.deleteMissingPrio).toMatch(/ENOENT/);
  expect(obs.unlinkAgain).toBe("ok");
  expect(obs.afterUnlink).toMatchObject([{ name: "nf", ingress: false, guard: false }, { name: "tp", ingress: false, guard: false }]);
});

if (!isRoot) console.warn("SKIPPED kernel half of test/net/fake.test.ts: needs root (CI runs it as root)");

const ns = new Namespaces();
afterAll(() => ns.cleanup());

test.skipIf(!isRoot)("the kernel observes exactly what the fake does", async () => {
  const n = await ns.add("c");
  await must("ip", "-n", n, "link", "add", "name", "nf", "type", "veth", "peer", "name", "nfp");
  const real = await scenario<Record<string, unknown>>(n, "contract");
  expect(await onFake()).toEqual(real);
});
