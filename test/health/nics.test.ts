import { expect, test } from "vitest";
import { nicHealth } from "../../agent/health/nics.ts";
import { NicSchema } from "../../agent/health/schema.ts";
import type { NicStats } from "../../agent/net/index.ts";

const link = (over: Partial<NicStats>): NicStats => ({
  index: 2,
  name: "eth0",
  up: true,
  lowerUp: true,
  mtu: 1500,
  rxPackets: 100,
  txPackets: 50,
  rxBytes: 150_000,
  txBytes: 4_000,
  rxDropped: 1,
  txDropped: 2,
  ingress: true,
  redirectedPackets: 0,
  redirectedBytes: 0,
  redirectFailures: 0,
  guard: false,
  spoofDrops: 0,
  ...over,
});

test("a pair: the netfront's counters, drops of each direction summed over both links, spoofed frames from the guard", () => {
  const h = nicHealth(link({}), link({ index: 3, name: "vif4.0-emu", rxDropped: 10, txDropped: 20, guard: true, spoofDrops: 7 }));
  expect(h).toEqual({
    name: "eth0",
    tap: "vif4.0-emu",
    link: "up",
    rx_packets: 100,
    rx_bytes: 150_000,
    rx_dropped: 21,
    tx_packets: 50,
    tx_bytes: 4_000,
    tx_dropped: 12,
    spoofed_dropped: 7,
  });
  expect(NicSchema.safeParse(h).success).toBe(true);
});

test("down when either side is down or the tap does not exist yet", () => {
  expect(nicHealth(link({}), link({ name: "t", lowerUp: false })).link).toBe("down");
  expect(nicHealth(link({ up: false }), link({ name: "t" })).link).toBe("down");
  const alone = nicHealth(link({}), undefined);
  expect(alone.link).toBe("down");
  expect(alone.tap).toBeUndefined();
  expect(NicSchema.safeParse(alone).success).toBe(true);
});
