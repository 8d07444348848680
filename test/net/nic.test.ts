import { expect, test } from "vitest";
import { FakeNetlink } from "../../agent/net/fake.ts";
import { linkNic, nicStats, NicConfigError, validateLink } from "../../agent/net/nic.ts";
import { NetlinkError } from "../../agent/net/types.ts";
import { DUMP_INTERRUPTED, EINTR } from "../../agent/net/errno.ts";
import { RTM_NEWTFILTER } from "../../agent/net/codec.ts";

function setup() {
  const nl = new FakeNetlink();
  const nf = nl.addLink("eth0");
  const tap = nl.addLink("vif7.0-emu");
  return { nl, nf, tap };
}

test("the guard is in place on the tap before any redirect carries the guest's frames", async () => {
  const { nl, tap } = setup();
  await linkNic(nl, { netfront: "eth0", tap: "vif7.0-emu", allowedSources: ["10.0.0.2"] });
  const filters = nl.requests.flatMap((m) => (m.kind === "tc" && m.header.type === RTM_NEWTFILTER ? [`${m.tcm.ifindex === tap ? "tap" : "nf"}:${m.tcm.info >>> 16}`] : []));
  expect(filters).toEqual(["tap:1", "tap:2", "nf:2"]);
});

test("linking twice converges to one guard and one redirect per link", async () => {
  const { nl } = setup();
  await linkNic(nl, { netfront: "eth0", tap: "vif7.0-emu", allowedSources: ["10.0.0.2"], mtu: 9000 });
  await linkNic(nl, { netfront: "eth0", tap: "vif7.0-emu", allowedSources: ["10.0.0.2"], mtu: 9000 });
  expect(nl.snapshot()).toEqual({
    eth0: { up: true, mtu: 9000, ingress: true, filters: ["2:u32"] },
    "vif7.0-emu": { up: true, mtu: 9000, ingress: true, filters: ["1:bpf", "2:u32"] },
  });
});

test("a bad configuration is refused with every problem and before any request", async () => {
  const { nl } = setup();
  const p = linkNic(nl, { netfront: "eth0/x", tap: "eth0/x", mtu: 70000, allowedSources: ["10.0.0.1/8", "nope"] });
  await expect(p).rejects.toThrow(NicConfigError);
  await expect(p).rejects.toThrow(/netfront 'eth0\/x' is not an interface name.*same interface.*mtu 70000.*host bits set.*'nope' is not an IPv4/);
  expect(nl.requests).toEqual([]);
});

test("too many allowed sources are refused", () => {
  expect(() => validateLink({ netfront: "eth0", tap: "t", allowedSources: Array.from({ length: 33 }, (_, i) => `10.0.${i}.0/24`) })).toThrow(/33 allowed sources \(at most 32\)/);
});

test("link events reach subscribers (netfront losing and regaining its backend)", async () => {
  const { nl } = setup();
  await linkNic(nl, { netfront: "eth0", tap: "vif7.0-emu" });
  const seen: string[] = [];
  nl.onLink((e) => seen.push(`${e.type} ${e.name} lowerUp=${e.lowerUp}`));
  nl.setCarrier("eth0", false);
  nl.setCarrier("eth0", true);
  nl.removeLink("vif7.0-emu");
  expect(seen).toEqual(["new eth0 lowerUp=false", "new eth0 lowerUp=true", "del vif7.0-emu lowerUp=true"]);
});

test("a dump the kernel reports interrupted is asked again, at most three times", async () => {
  const { nl } = setup();
  const real = nl.request.bind(nl);
  let failures = 2;
  nl.request = async (m) => (m.header.flags & 0x300 && failures-- > 0 ? Promise.reject(new NetlinkError("netlink dump", EINTR, DUMP_INTERRUPTED)) : real(m));
  expect((await nicStats(nl, ["eth0"]))[0]!.name).toBe("eth0");
  failures = 3;
  await expect(nicStats(nl, ["eth0"])).rejects.toThrow(/list links: EINTR .*dump interrupted/);
});

test("without cls_bpf: anti-spoofing fails closed (no redirect), DHCP-only links anyway with a warning", async () => {
  const { nl } = setup();
  const real = nl.request.bind(nl);
  nl.request = async (m) =>
    m.kind === "tc" && m.attrs.some((a) => a.kind === "kind" && a.value === "bpf") ? Promise.reject(new NetlinkError("netlink request", 2, "TC classifier not found")) : real(m);
  await expect(linkNic(nl, { netfront: "eth0", tap: "vif7.0-emu", allowedSources: ["10.0.0.2"] })).rejects.toThrow(/add guard filter on vif7.0-emu: ENOENT .*TC classifier not found/);
  expect(nl.snapshot()["vif7.0-emu"]!.filters).toEqual([]);
  const r = await linkNic(nl, { netfront: "eth0", tap: "vif7.0-emu", localDhcp: true });
  expect(r.guard).toBe(false);
  expect(r.warnings).toEqual([expect.stringMatching(/TC classifier not found \(is cls_bpf loaded\?\); the guest's DHCP requests also reach eth0/)]);
  expect(nl.snapshot()["vif7.0-emu"]!.filters).toEqual(["2:u32"]);
});
