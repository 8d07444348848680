// The QMP client against a real qemu-system-x86_64 (TCG, -machine none), started the way the
// supervisor starts QEMU: the monitor's listening socket is ours, inherited as fd 3.
import { afterAll, beforeAll, expect, test } from "vitest";
import { close, O, open } from "../../ffi/libc.ts";
import { QmpClient, QmpError } from "../../agent/qemu/qmp.ts";
import { unixTransport } from "../../agent/qemu/unix-transport.ts";
import { startRealQemu, type RealQemu } from "./real-qemu.ts";

let qemu: RealQemu;
let qmp: QmpClient;

beforeAll(async () => {
  qemu = startRealQemu("qmp-real");
  qmp = await QmpClient.connect(unixTransport(qemu.agentSocket), 10_000);
});

afterAll(async () => {
  await qemu.stop();
});

test("greeting and capabilities negotiated with the real QEMU (sandbox on)", async () => {
  expect(qmp.greetingMessage).toMatchObject({ version: { qemu: { major: expect.any(Number) } } });
  expect(await qmp.execute("query-status")).toMatchObject({ status: expect.any(String) });
});

test("add-fd passes a file descriptor by SCM_RIGHTS, and query-fdsets shows it in fdset 1", async () => {
  const fd = open("/dev/null", O.RDWR | O.CLOEXEC);
  try {
    const r = (await qmp.execute("add-fd", { "fdset-id": 1, opaque: "hvc1" }, 5000, [fd])) as Record<string, unknown>;
    expect(r["fdset-id"]).toBe(1);
  } finally {
    close(fd);
  }
  const sets = (await qmp.execute("query-fdsets")) as Array<{ "fdset-id": number; fds: Array<{ opaque?: string }> }>;
  const set1 = sets.find((s) => s["fdset-id"] === 1);
  expect(set1?.fds.map((f) => f.opaque)).toContain("hvc1");
});

test("add-fd without a descriptor is refused by QEMU with an error reply", async () => {
  await expect(qmp.execute("add-fd", { "fdset-id": 2 })).rejects.toBeInstanceOf(QmpError);
});

test("the second monitor greets independently (the dom0 relay's monitor)", async () => {
  const relay = await QmpClient.connect(unixTransport(qemu.relaySocket), 10_000);
  expect(await relay.execute("query-status")).toMatchObject({ status: expect.any(String) });
  relay.close();
  // A reconnecting client gets a fresh greeting: QEMU accepts the next connection anew.
  const again = await QmpClient.connect(unixTransport(qemu.relaySocket), 10_000);
  expect(again.greetingMessage).toBeDefined();
  again.close();
});

test("quit ends QEMU with exit code 0 and the client sees the close", async () => {
  const events: string[] = [];
  qmp.onEvent((e) => events.push(e.event));
  await qmp.execute("quit");
  expect(await qemu.proc.exited).toBe(0);
  expect(await qmp.closed).toBeInstanceOf(Error);
  expect(events).toContain("SHUTDOWN");
});
