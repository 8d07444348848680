// `stubdom-init net ...` run as a user would, in a throwaway namespace.
import { afterAll, expect, test } from "vitest";
import { isRoot, must, Namespaces, run } from "./netns.ts";

const main = new URL("../../agent/main.ts", import.meta.url).pathname;
const cli = (...args: string[]) => run([process.execPath, main, "net", ...args]);

test("usage errors exit 2 with the usage text, without touching the kernel", async () => {
  const r = await cli("link", "--netfront", "eth0");
  expect(r.code).toBe(2);
  expect(r.err).toMatch(/--netfront and --tap are required\nusage:\n  stubdom-init net link --netfront IF --tap IF/);
  expect((await cli("frobnicate")).code).toBe(2);
});

if (!isRoot) console.warn("SKIPPED live half of test/net/cli.test.ts: needs root (CI runs it as root)");

const ns = new Namespaces();
afterAll(() => ns.cleanup());

test.skipIf(!isRoot)("link, show, a refused configuration, unlink", async () => {
  const n = await ns.add("cli");
  await must("ip", "-n", n, "link", "add", "name", "nf", "type", "veth", "peer", "name", "nfp");
  await must("ip", "-n", n, "tuntap", "add", "dev", "tp", "mode", "tap");
  const inNs = (...args: string[]) => run(["ip", "netns", "exec", n, process.execPath, main, "net", ...args]);
  const link = await inNs("link", "--netfront", "nf", "--tap", "tp", "--mtu", "1400", "--allow-ip", "10.0.0.2", "--allow-ip", "10.1.0.0/16");
  expect(link.code, link.err).toBe(0);
  expect(link.out).toMatch(/^linked nf \(\d+\) <-> tp \(\d+\) mtu 1400 with guard in [\d.]+ ms\n$/);
  const show = await inNs("show");
  expect(show.out).toMatch(/^nf \(\d+\) up no-carrier mtu 1400 -> tp\n/m);
  expect(show.out).toMatch(/^tp \(\d+\) up no-carrier mtu 1400 -> nf guarded\n/m);
  const json = JSON.parse((await inNs("show", "--json", "tp")).out) as { name: string; guard: boolean }[];
  expect(json.map((s) => [s.name, s.guard])).toEqual([["tp", true]]);
  const bad = await inNs("link", "--netfront", "nf", "--tap", "tp", "--allow-ip", "10.0.0.3/8");
  expect(bad.code).toBe(1);
  expect(bad.err).toBe("stubdom-init net link: bad NIC configuration: allowed source '10.0.0.3/8' has host bits set (network is 10.0.0.0/8)\n");
  const missing = await inNs("link", "--netfront", "nf", "--tap", "nosuch");
  expect(missing.err).toBe("stubdom-init net link: find tap 'nosuch': ENODEV (No such device)\n");
  expect((await inNs("unlink", "--netfront", "nf", "--tap", "tp")).out).toBe("unlinked nf <-> tp\n");
  expect((await inNs("show")).out).toBe("no links with an ingress redirect\n");
});
