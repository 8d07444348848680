import { describe, expect, test } from "vitest";
import { decode, encode, split, extAckMessage, CodecError, type Message } from "../../agent/net/codec.ts";
import { bytes, fixtures } from "./fixtures.ts";
import { filterDumpPart, linkReply, qdiscDump } from "./captured.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("fixtures captured from ip/tc", () => {
  for (const f of fixtures) {
    test(`${f.name}: decode(raw) = expected`, () => {
      expect(decode(bytes(f.hex))).toEqual(f.expected);
    });
    test(`${f.name}: encode(expected) = raw`, () => {
      expect(hex(encode(f.expected))).toBe(hex(bytes(f.hex)));
    });
  }

  test("extended-ack text is the kernel's", () => {
    const f = fixtures.find((x) => x.name.includes("filter without a qdisc"))!;
    expect(extAckMessage(decode(bytes(f.hex)))).toBe("Parent Qdisc doesn't exists");
  });
});

describe("kernel replies", () => {
  test("link reply: modelled fields decoded, unknown attributes kept, re-encodes to the same bytes", () => {
    const raw = bytes(linkReply);
    const m = decode(raw);
    expect(m.kind).toBe("link");
    if (m.kind !== "link") return;
    expect(m.ifi.index).toBe(3);
    expect(m.attrs).toContainEqual({ kind: "ifname", value: "nf0" });
    expect(m.attrs).toContainEqual({ kind: "mtu", value: 1400 });
    expect(m.attrs).toContainEqual({ kind: "address", value: "3e:6c:0d:fb:27:da" });
    expect(m.attrs.filter((a) => a.kind === "other").length).toBeGreaterThan(10);
    const af = m.attrs.find((a) => a.kind === "afSpec");
    const inet6 = af?.kind === "afSpec" ? af.value.find((f) => f.kind === "inet6") : undefined;
    expect(inet6?.kind === "inet6" && inet6.value).toContainEqual({ kind: "addrGenMode", value: 0 });
    expect(hex(encode(m))).toBe(hex(raw));
  });

  test("filter dump: three messages; the knode carries the mirred redirect to ifindex 4 and its stats", () => {
    const { messages, rest } = split(bytes(filterDumpPart));
    expect(rest.length).toBe(0);
    expect(messages.length).toBe(3);
    const decoded = messages.map(decode);
    decoded.forEach((m, i) => expect(hex(encode(m))).toBe(hex(messages[i]!)));
    const knode = decoded[2]!;
    expect(knode.kind === "tc" && knode.tcm.handle).toBe(0x80000800);
    const u32 = knode.kind === "tc" ? knode.attrs.find((a) => a.kind === "u32") : undefined;
    const acts = u32?.kind === "u32" ? u32.value.find((a) => a.kind === "actions") : undefined;
    const act = acts?.kind === "actions" ? acts.value[0] : undefined;
    expect(act?.attrs).toContainEqual({ kind: "kind", value: "mirred" });
    const mirred = act?.attrs.find((a) => a.kind === "mirred");
    expect(mirred?.kind === "mirred" && mirred.value[0]).toMatchObject({ kind: "parms", value: { eaction: 1, ifindex: 4, action: 4 } });
    const stats = act?.attrs.find((a) => a.kind === "stats");
    expect(stats?.kind === "stats" && stats.value).toContainEqual({ kind: "basic", bytes: 0, packets: 0 });
  });

  test("qdisc dump: three qdiscs in one datagram, ingress on ifindex 3 and 4 with queue stats", () => {
    const { messages } = split(bytes(qdiscDump));
    const ms = messages.map(decode);
    messages.forEach((raw, i) => expect(hex(encode(ms[i]!))).toBe(hex(raw)));
    const ingress = ms.filter((m): m is Extract<Message, { kind: "tc" }> => m.kind === "tc" && m.attrs.some((a) => a.kind === "kind" && a.value === "ingress"));
    expect(ingress.map((m) => m.tcm.ifindex)).toEqual([3, 4]);
    expect(ingress[0]!.attrs.find((a) => a.kind === "stats2")).toMatchObject({ value: expect.arrayContaining([{ kind: "queue", qlen: 0, backlog: 0, drops: 0, requeues: 0, overlimits: 0 }]) });
  });
});

describe("malformed input", () => {
  test("an attribute longer than its message is reported with where and how long", () => {
    const raw = bytes(fixtures[0]!.hex);
    raw[32] = 0x40; // IFLA_EXT_MASK claims 64 bytes
    expect(() => decode(raw)).toThrow(/attribute 29 has length 64 at offset 0 of 16/);
  });
  test("nlmsg_len that disagrees with the buffer is refused", () => {
    const raw = bytes(fixtures[0]!.hex);
    expect(() => decode(raw.subarray(0, 40))).toThrow(CodecError);
  });
  test("split keeps an incomplete trailing message for the next chunk", () => {
    const a = encode(fixtures[0]!.expected);
    const b = encode(fixtures[1]!.expected);
    const both = new Uint8Array([...a, ...b]);
    const first = split(both.subarray(0, a.length + 10));
    expect(first.messages.length).toBe(1);
    expect(first.rest.length).toBe(10);
  });
  test("an nlmsg_len below the header size is an error, not a loop", () => {
    expect(() => split(new Uint8Array(16))).toThrow(/nlmsg_len 0/);
  });
});

describe("robustness", () => {
  test("5,000 seeded mutations of captured messages decode or fail with a CodecError, never anything else", () => {
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const samples = [bytes(linkReply), ...split(bytes(filterDumpPart)).messages, ...split(bytes(qdiscDump)).messages, ...fixtures.map((f) => bytes(f.hex))];
    let decoded = 0;
    for (let i = 0; i < 5000; i++) {
      const m = samples[rand(samples.length)]!.slice();
      for (let k = 1 + rand(4); k > 0; k--) m[16 + rand(m.length - 16)] = rand(256);
      try {
        decode(m);
        decoded++;
      } catch (e) {
        expect(e).toBeInstanceOf(CodecError);
      }
    }
    expect(decoded).toBeGreaterThan(0);
  });
});
