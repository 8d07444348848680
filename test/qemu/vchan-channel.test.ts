// The vchan relay channel over a stand-in for libxenvchan whose event channel is one end of a
// real UNIX socket pair: the other end notifies, as the dom0 client's event channel would.
// One server serves every client in turn (state 2 -> 1 -> 0 -> 1 ...), as under Xen.
import { expect, test } from "vitest";
import { close, readNow, socketPair, write } from "../../ffi/libc.ts";
import type { VchanServer } from "../../ffi/vchan.ts";
import { RELAY_PENDING_LIMIT, vchanChannel } from "../../agent/qemu/channels.ts";

const NOTIFY = new Uint8Array([7, 0, 0, 0]); // one pending port, as /dev/xen/evtchn returns it

/** A libxenvchan server stand-in: rings as arrays, the event channel as a socket pair. */
function fakeServer() {
  const [eventFd, peer] = socketPair();
  let state = 2;
  const toServer: number[] = [];
  const toClient: number[] = [];
  let closed = false;
  let space = 4096;
  const srv: VchanServer = {
    eventFd,
    state: () => state,
    dataReady: () => toServer.length,
    bufferSpace: () => Math.min(space, 4096 - toClient.length),
    read: (max) => new Uint8Array(toServer.splice(0, max)),
    write: (data) => {
      const n = Math.min(data.length, 4096 - toClient.length);
      toClient.push(...data.subarray(0, n));
      return n;
    },
    close: () => {
      if (closed) return;
      closed = true;
      close(eventFd);
    },
  };
  return {
    srv,
    eventFd,
    connect: () => ((state = 1), write(peer, NOTIFY)),
    send: (text: string) => (toServer.push(...new TextEncoder().encode(text)), write(peer, NOTIFY)),
    leave: () => ((state = 0), write(peer, NOTIFY)),
    /** Written to the ring without a notification. */
    sendQuietly: (text: string) => toServer.push(...new TextEncoder().encode(text)),
    pendingIn: () => toServer.length,
    setBufferSpace: (n: number) => void (space = n),
    received: () => new TextDecoder().decode(new Uint8Array(toClient)),
    clearReceived: () => void toClient.splice(0),
    unmasked: () => readNow(peer, 64)?.length ?? 0,
    isClosed: () => closed,
    dispose: () => close(peer),
  };
}

test("one server serves every client in turn; what a client leaves unread is not the next one's", async () => {
  const servers: ReturnType<typeof fakeServer>[] = [];
  const channel = vchanChannel(() => {
    const s = fakeServer();
    servers.push(s);
    return s.srv;
  });
  for (let client = 1; client <= 3; client++) {
    const accepted = channel.accept();
    await Bun.sleep(20); // the server waits for its client
    const s = servers[0]!;
    s.connect();
    const session = await accepted;
    session.write(new TextEncoder().encode(`greeting ${client}`));
    expect(s.received()).toBe(`greeting ${client}`);
    s.clearReceived();

    const chunks: string[] = [];
    const reading = (async () => {
      for await (const c of session.chunks()) chunks.push(new TextDecoder().decode(c));
    })();
    await Bun.sleep(20);
    s.send(`command ${client}`);
    await Bun.sleep(50);
    expect(chunks.join("")).toBe(`command ${client}`);
    s.sendQuietly("left behind"); // written, but the client leaves before we read it
    s.leave();
    await reading; // the session ends when the client leaves
    expect(s.unmasked()).toBeGreaterThan(0); // notifications consumed were written back
    await session.close();
    expect(s.pendingIn()).toBe(0);
    expect(s.isClosed()).toBe(false);
  }
  expect(servers.length).toBe(1);
  servers[0]!.dispose();
});

test("a client that stops reading ends its session instead of making us hold QEMU's output", async () => {
  const s = fakeServer();
  s.setBufferSpace(0); // the client's ring is full and stays full
  const channel = vchanChannel(() => s.srv);
  const accepted = channel.accept();
  await Bun.sleep(20);
  s.connect();
  const session = await accepted;
  const chunk = new Uint8Array(4096);
  let written = 0;
  expect(() => {
    for (;;) {
      session.write(chunk);
      written += chunk.length;
    }
  }).toThrow(/does not read/);
  expect(written).toBeLessThanOrEqual(RELAY_PENDING_LIMIT);
  await session.close();
  s.dispose();
});
