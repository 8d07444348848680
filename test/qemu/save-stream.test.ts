// The save stream against a real QEMU (Debian's qemu-system-x86_64, which has Xen's
// xen-save-devices-state): what libxl sends through the relay makes QEMU write its device state
// into our memory file, and the answer reaches the client only once the state is on "console 1"
// (a file here). Also why the descriptor is write-only: QEMU picks an fd of a set by access mode.
import { readFileSync, statSync } from "node:fs";
import { afterAll, beforeAll, expect, test } from "vitest";
import { close } from "../../ffi/libc.ts";
import { memfdCreate } from "../../ffi/memfd.ts";
import { QmpClient, QmpError } from "../../agent/qemu/qmp.ts";
import { runQmpRelay, type RelayChannel } from "../../agent/qemu/relay.ts";
import { replyHook } from "../../agent/qemu/relay-watch.ts";
import { unixTransport } from "../../agent/qemu/unix-transport.ts";
import { copySaveStream } from "../../agent/init/save-stream.ts";
import { openSaveStream } from "../../agent/init/wiring.ts";
import { createLogger } from "../../agent/log.ts";
import { FakeClient, startRealQemu, type RealQemu } from "./real-qemu.ts";

let qemu: RealQemu;
let qmp: QmpClient;

beforeAll(async () => {
  // A PC with its devices, stopped before it runs (-S): a device state worth saving.
  qemu = startRealQemu("save-stream", ["-machine", "pc", "-S"]);
  qmp = await QmpClient.connect(unixTransport(qemu.agentSocket), 10_000);
});

afterAll(async () => {
  await qemu.stop();
});

test("a read-write descriptor in the set does not serve QEMU's write-only open (EACCES): ours is write-only", async () => {
  const rw = memfdCreate("rw");
  try {
    await qmp.execute("add-fd", { "fdset-id": 7 }, 5000, [rw]);
  } finally {
    close(rw);
  }
  const err = await qmp.execute("xen-save-devices-state", { filename: "/dev/fdset/7", live: false }).catch((e) => e);
  expect(err).toBeInstanceOf(QmpError);
  expect(String(err)).toMatch(/Permission denied/);
});

test("libxl's save through the relay: QEMU's answer reaches the client after its whole state is on console 1", async () => {
  const consolePath = `${qemu.dir}/console1`;
  Bun.spawnSync(["touch", consolePath]);
  const stream = openSaveStream(consolePath);
  const fd = stream.qemuFd();
  try {
    await qmp.execute("add-fd", { "fdset-id": 1, opaque: "hvc1" }, 5000, [fd]);
  } finally {
    close(fd);
  }
  const log = createLogger({ sink: { write: () => undefined } });
  let atReply = -1;
  const client = new FakeClient();
  const channel: RelayChannel = { accept: async () => client };
  const relay = runQmpRelay({
    channel,
    connectQemu: () => unixTransport(qemu.relaySocket),
    log,
    sessions: 1,
    watch: () => replyHook("xen-save-devices-state", async () => void (await copySaveStream(stream.io, log)), log),
  });
  await client.waitFor(/"QMP"/);
  client.send('{"execute":"qmp_capabilities","id":1}\r\n{"execute":"stop","id":2}\r\n');
  await client.waitFor(/"id": 2/);
  // libxl sends the command in one write; the id comes last, as in libxl's JSON.
  client.send('{"execute":"xen-save-devices-state","arguments":{"live":false,"filename":"/dev/fdset/1"},"id":3}\r\n');
  await client.waitFor(/"return": \{\}, "id": 3/);
  atReply = statSync(consolePath).size;
  client.leave();
  await relay;
  const saved = readFileSync(consolePath);
  expect(atReply).toBeGreaterThan(1000);
  expect(saved.length).toBe(atReply);
  expect(new TextDecoder().decode(saved.subarray(0, 4))).toBe("QEVM");
  expect(stream.io.size()).toBe(0); // emptied for the next save
});
