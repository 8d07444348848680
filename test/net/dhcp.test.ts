import { describe, expect, test } from "vitest";
import { parseRequest, reply, serveDhcp, validateLease, type FramePort, type ValidLease } from "../../agent/net/dhcp.ts";
import { startDhcp } from "../../agent/net/index.ts";

const lease = { clientIp: "10.137.0.42", netmask: "255.255.255.0", gateway: "10.137.0.1", dns: ["10.139.1.1", "10.139.1.2"] };
const valid = validateLease(lease) as ValidLease;
const MAC = "00:16:3e:5e:6c:00";

/** A client request as udhcpc would send it. */
function request(type: number, opts: number[] = [], flags = 0): Uint8Array {
  const options = [53, 1, type, ...opts, 255];
  const bootp = new Uint8Array(240 + options.length);
  bootp[0] = 1; bootp[1] = 1; bootp[2] = 6;
  bootp.set([0xde, 0xad, 0xbe, 0xef], 4);
  bootp[10] = flags >> 8;
  bootp.set(MAC.split(":").map((h) => Number.parseInt(h, 16)), 28);
  bootp.set([0x63, 0x82, 0x53, 0x63], 236);
  bootp.set(options, 240);
  const udpLen = 8 + bootp.length;
  const total = 20 + udpLen;
  const f = new Uint8Array(14 + total);
  f.fill(0xff, 0, 6);
  f[12] = 8;
  f.set([0x45, 0, total >> 8, total & 0xff, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255], 14);
  f.set([0, 68, 0, 67, udpLen >> 8, udpLen & 0xff, 0, 0], 34);
  f.set(bootp, 42);
  return f;
}

function options(frame: Uint8Array): Map<number, number[]> {
  const out = new Map<number, number[]>();
  let o = 42 + 240;
  while (frame[o] !== 255) {
    out.set(frame[o]!, [...frame.subarray(o + 2, o + 2 + frame[o + 1]!)]);
    o += 2 + frame[o + 1]!;
  }
  return out;
}

describe("lease validation", () => {
  test("a good lease", () => expect(validateLease(lease)).toMatchObject({ clientIp: 0x0a89002a, leaseSeconds: 86400 }));
  test("every problem is reported", () => {
    expect(validateLease({ clientIp: "10.0.0.300", netmask: "255.0.255.0", gateway: "x", dns: ["1.1.1.1", "2", "3", "4", "5"] })).toEqual([
      "client address '10.0.0.300' is not an IPv4 address", "gateway 'x' is not an IPv4 address", "5 DNS servers (at most 4)",
      "dns 1 '2' is not an IPv4 address", "dns 2 '3' is not an IPv4 address", "dns 3 '4' is not an IPv4 address", "dns 4 '5' is not an IPv4 address",
      "netmask '255.0.255.0' is not contiguous",
    ]);
  });
  test("gateway outside the client's subnet (checked with ip-cidr)", () => {
    expect(validateLease({ ...lease, gateway: "10.137.1.1" })).toEqual(["gateway 10.137.1.1 is outside 10.137.0.0/24, the client's subnet"]);
  });
  test("startDhcp refuses a bad lease before opening anything", () => {
    expect(() => startDhcp({ tap: "vif1.0-emu", lease: { ...lease, gateway: lease.clientIp } })).toThrow(/vif1.0-emu: client address and gateway are both 10.137.0.42/);
  });
});

describe("requests and replies", () => {
  const ctx = { lease: valid, serverMac: "fe:ff:ff:ff:ff:ff" };
  test("DISCOVER gets an OFFER with the lease, unicast to the client's MAC", () => {
    const req = parseRequest(request(1));
    if (typeof req === "string") throw new Error(req);
    const r = reply(req, ctx);
    if (typeof r === "string") throw new Error(r);
    expect(r.type).toBe(2);
    expect([...r.frame.subarray(0, 6)]).toEqual([0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00]);
    expect([...r.frame.subarray(42 + 16, 42 + 20)]).toEqual([10, 137, 0, 42]); // yiaddr
    const o = options(r.frame);
    expect(o.get(1)).toEqual([255, 255, 255, 0]);
    expect(o.get(3)).toEqual([10, 137, 0, 1]);
    expect(o.get(6)).toEqual([10, 139, 1, 1, 10, 139, 1, 2]);
    expect(o.get(54)).toEqual([10, 137, 0, 1]);
    expect(o.get(51)).toEqual([0, 1, 0x51, 0x80]);
  });
  test("REQUEST for the leased address gets an ACK; for another address a broadcast NAK", () => {
    const ack = reply(parseRequest(request(3, [50, 4, 10, 137, 0, 42])) as never, ctx);
    expect(typeof ack !== "string" && ack.type).toBe(5);
    const nak = reply(parseRequest(request(3, [50, 4, 10, 137, 0, 99])) as never, ctx);
    expect(typeof nak !== "string" && nak.type).toBe(6);
    expect(typeof nak !== "string" && [...nak.frame.subarray(0, 6)]).toEqual([255, 255, 255, 255, 255, 255]);
  });
  test("only the configured client MAC is served when one is given", () => {
    expect(reply(parseRequest(request(1)) as never, { ...ctx, clientMac: "00:16:3e:00:00:01" })).toMatch(/is not this NIC's/);
  });
  test.each([
    ["truncated frame", (f: Uint8Array) => f.subarray(0, 200), /too short/],
    ["option running past the packet", (f: Uint8Array) => { f[f.length - 1] = 50; return f; }, /runs past|no DHCP message type|option/],
    ["IPv4 length larger than the frame", (f: Uint8Array) => { f[16] = 0xff; return f; }, /does not fit/],
    ["a BOOTREPLY", (f: Uint8Array) => { f[42] = 2; return f; }, /not a BOOTREQUEST/],
  ])("malformed: %s", (_n, mutate, reason) => {
    expect(parseRequest(mutate(request(1)))).toMatch(reason);
  });
  test("serveDhcp answers through its port and counts", () => {
    const sent: Uint8Array[] = [];
    let deliver: (f: Uint8Array) => void = () => {};
    const port: FramePort = { send: (f) => void sent.push(f), onFrame: (fn) => { deliver = fn; }, close: () => {} };
    const s = serveDhcp(port, ctx);
    deliver(request(1));
    deliver(request(3, [50, 4, 10, 137, 0, 42]));
    deliver(new Uint8Array(10));
    expect(sent.length).toBe(2);
    expect(s.counters).toMatchObject({ offers: 1, acks: 1, naks: 0, ignored: 1 });
  });
});
