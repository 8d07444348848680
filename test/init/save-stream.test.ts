// The save stream's copy (init/save-stream.ts) and the relay's reply hook (qemu/relay-watch.ts)
// with fakes: partial console writes, a console that stops taking bytes, bounds, chunk splits.
import { expect, test } from "vitest";
import { copySaveStream, MAX_SAVE_BYTES, SAVE_STALL_MS, type SaveStreamIo } from "../../agent/init/save-stream.ts";
import { LineSplitter, replyHook } from "../../agent/qemu/relay-watch.ts";
import { createLogger } from "../../agent/log.ts";

const log = createLogger({ sink: { write: () => undefined } });
const enc = (s: string) => new TextEncoder().encode(s);

function fakeIo(state: Uint8Array, takes: (n: number) => number, size = state.length) {
  let clock = 0;
  const out: number[] = [];
  let truncated = 0;
  const io: SaveStreamIo = {
    size: () => size,
    readAt: (off, max) => state.subarray(off, off + max),
    writeConsole: (d) => {
      const n = Math.min(d.length, takes(d.length));
      out.push(...d.subarray(0, n));
      return n;
    },
    truncate: () => void truncated++,
    sleep: async (ms) => void (clock += ms),
    nowMs: () => clock,
  };
  return { io, out, truncated: () => truncated };
}

test("the whole state reaches the console through short writes and full buffers, then the file is emptied", async () => {
  const state = Uint8Array.from({ length: 200_000 }, (_, i) => i % 251);
  let call = 0;
  const f = fakeIo(state, () => (++call % 3 === 0 ? 0 : 777));
  expect(await copySaveStream(f.io, log)).toBe(state.length);
  expect(Uint8Array.from(f.out)).toEqual(state);
  expect(f.truncated()).toBe(1);
});

test("a console that takes nothing fails the copy after the stall limit, naming where it stopped", async () => {
  let taken = 0;
  const f = fakeIo(new Uint8Array(100_000), (n) => {
    const k = Math.min(n, 10_000, 70_000 - taken);
    taken += k;
    return k;
  });
  await expect(copySaveStream(f.io, log)).rejects.toThrow(new RegExp(`took nothing for ${SAVE_STALL_MS} ms at 70000 of 100000 bytes`));
  expect(f.truncated()).toBe(1);
});

test("no state and an oversized state are refused", async () => {
  await expect(copySaveStream(fakeIo(new Uint8Array(0), (n) => n).io, log)).rejects.toThrow(/no device state/);
  await expect(copySaveStream(fakeIo(new Uint8Array(10), (n) => n, MAX_SAVE_BYTES + 1).io, log)).rejects.toThrow(/limit/);
});

test("lines split across chunks are joined; an overlong line is dropped whole, the next one kept", () => {
  const s = new LineSplitter();
  expect(s.push(enc('{"a":'))).toEqual([]);
  expect(s.push(enc('1}\r\n{"b"'))).toEqual(['{"a":1}\r']);
  expect(s.push(enc(":2}\n"))).toEqual(['{"b":2}']);
  expect(s.push(enc("x".repeat(70_000)))).toEqual([]);
  expect(s.push(enc('yyy\n{"c":3}\n'))).toEqual(['{"c":3}']);
});

test("the hook runs before the success answer to the watched command, and only then", async () => {
  const events: string[] = [];
  const w = replyHook("xen-save-devices-state", async () => void events.push("hook"), log);
  const forward = async (s: string) => {
    await w.beforeClient(enc(s));
    events.push(`fwd ${s.trim()}`);
  };
  w.fromClient(enc('{"execute":"stop","id":1}\r\n'));
  await forward('{"return": {}, "id": 1}\r\n');
  w.fromClient(enc('{"execute":"xen-save-devices-state","arguments":{"filename":"/dev/fdset/1"},'));
  w.fromClient(enc('"id":2}\r\n'));
  await forward('{"timestamp": {}, "event": "STOP"}\r\n{"return": {},');
  await forward(' "id": 2}\r\n');
  w.fromClient(enc('{"execute":"xen-save-devices-state","id":3}\n'));
  await forward('{"error": {"class": "GenericError", "desc": "Unable to open"}, "id": 3}\n');
  expect(events).toEqual([
    'fwd {"return": {}, "id": 1}',
    'fwd {"timestamp": {}, "event": "STOP"}\r\n{"return": {},',
    "hook",
    'fwd "id": 2}',
    'fwd {"error": {"class": "GenericError", "desc": "Unable to open"}, "id": 3}',
  ]);
});
