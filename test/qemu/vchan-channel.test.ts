// The vchan relay channel over a stand-in for libxenvchan whose event channel is one end of a
// real UNIX socket pair: the other end notifies, as the dom0 client's event channel would.
// What it must survive is what broke under nested Xen: a new server per client whose event fd
// reuses the previous one's number. ffi/fd-waiter.ts is tested on real pipes below too.
import { afterAll, expect, test } from "vitest";
import { createFdWaiter } from "../../ffi/fd-waiter.ts";
import { close, readNow, socketPair, write } from "../../ffi/libc.ts";
import type { VchanServer } from "../../ffi/vchan.ts";
import { vchanChannel } from "../../agent/qemu/channels.ts";

const waiter = createFdWaiter();
afterAll(() => waiter.stop());

const NOTIFY = new Uint8Array([7, 0, 0, 0]); // one pending port, as /dev/xen/evtchn returns it

/** A libxenvchan server stand-in: rings as arrays, the event channel as a socket pair. */
function fakeServer() {
  const [eventFd, peer] = socketPair();
  let state = 2;
  const toServer: number[] = [];
  const toClient: number[] = [];
  let closed = false;
  const srv: VchanServer = {
    eventFd,
    state: () => state,
    dataReady: () => toServer.length,
    bufferSpace: () => 4096 - toClient.length,
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
    received: () => new TextDecoder().decode(new Uint8Array(toClient)),
    unmasked: () => readNow(peer, 64)?.length ?? 0,
    isClosed: () => closed,
    dispose: () => close(peer),
  };
}

test("one server per client: every client is heard, also when the event fd number is reused", async () => {
  const servers: ReturnType<typeof fakeServer>[] = [];
  const channel = vchanChannel(() => {
    const s = fakeServer();
    servers.push(s);
    return s.srv;
  }, waiter);
  const fds: number[] = [];
  for (let client = 1; client <= 3; client++) {
    const accepted = channel.accept();
    await Bun.sleep(20); // the server waits for its client
    const s = servers[client - 1]!;
    fds.push(s.eventFd);
    s.connect();
    const session = await accepted;
    session.write(new TextEncoder().encode(`greeting ${client}`));
    expect(s.received()).toBe(`greeting ${client}`);

    const chunks: string[] = [];
    const reading = (async () => {
      for await (const c of session.chunks()) chunks.push(new TextDecoder().decode(c));
    })();
    await Bun.sleep(20);
    s.send(`command ${client}`);
    await Bun.sleep(50);
    expect(chunks.join("")).toBe(`command ${client}`);
    s.leave();
    await reading; // the session ends when the client leaves
    expect(s.unmasked()).toBeGreaterThan(0); // notifications consumed were written back
    await session.close();
    expect(s.isClosed()).toBe(true);
    s.dispose();
  }
  // The point of the test: the kernel hands the next server the same fd numbers.
  expect(new Set(fds).size).toBeLessThan(fds.length);
});

test("fd waiter: readable, cancelled, and a reused fd number after close", async () => {
  const [a, b] = socketPair();
  const first = waiter.readable(a);
  write(b, NOTIFY);
  expect(await first).toBe(true);
  expect(readNow(a, 64)?.length).toBe(4);

  const cancelled = waiter.readable(a);
  waiter.cancel();
  expect(await cancelled).toBe(false);

  close(a);
  close(b);
  const [c, d] = socketPair();
  expect([c, d]).toContain(a); // the number came back
  const reused = c === a ? c : d;
  const other = reused === c ? d : c;
  const again = waiter.readable(reused);
  write(other, NOTIFY);
  expect(await again).toBe(true);
  close(c);
  close(d);
});
