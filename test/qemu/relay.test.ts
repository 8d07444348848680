// The dom0 QMP relay against a real QEMU's dedicated monitor, with an in-memory channel
// standing in for the vchan: each client gets a fresh greeting, one client at a time.
import { afterAll, beforeAll, expect, test } from "vitest";
import { runQmpRelay, type RelayChannel } from "../../agent/qemu/relay.ts";
import { unixTransport } from "../../agent/qemu/unix-transport.ts";
import { createLogger } from "../../agent/log.ts";
import { FakeClient, startRealQemu, type RealQemu } from "./real-qemu.ts";

let qemu: RealQemu;

beforeAll(() => {
  qemu = startRealQemu("relay");
});

afterAll(async () => {
  await qemu.stop();
});

test("two clients in turn each get a fresh greeting and working commands", async () => {
  const clients = [new FakeClient(), new FakeClient()];
  const queue = [...clients];
  const channel: RelayChannel = { accept: async () => queue.shift() ?? new Promise<never>(() => undefined) };
  const lines: string[] = [];
  const relay = runQmpRelay({
    channel,
    connectQemu: () => unixTransport(qemu.relaySocket),
    log: createLogger({ sink: { write: (l) => lines.push(l) } }),
    sessions: 2,
  });
  for (const c of clients) {
    await c.waitFor(/"QMP"/);
    c.send('{"execute":"qmp_capabilities"}\n');
    await c.waitFor(/"return": \{\}/);
    c.send('{"execute":"query-status","id":"x"}\n');
    await c.waitFor(/"status": "\w+".*"id": "x"|"id": "x".*"status"/);
    expect(c.received.match(/"QMP"/g)?.length).toBe(1);
    c.leave();
  }
  await relay;
  expect(clients.every((c) => c.closedByRelay)).toBe(true);
  expect(lines.join("")).toMatch(/client 2 done/);
});
