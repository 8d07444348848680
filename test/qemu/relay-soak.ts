// The agent's QMP relay (runQmpRelay, vchanChannel, unixTransport) serving dom0 clients one
// after the other, with libxenvchan's rings in memory and its event channel a socket pair, and
// QEMU's monitor a small QMP server: everything PID 1 does per client except the Xen libraries.
// Run as its own process so that its RssAnon is its own:
//   bun test/qemu/relay-soak.ts [--mode normal|spurious|eagain|half] [--sessions N | --seconds S]
// normal: greeting, qmp_capabilities, query-status, leave. spurious: also 200 notifications
// with nothing in the ring. eagain: every 2nd client's ring reads fail with EAGAIN. half: every
// 2nd client leaves in the middle of a command. Prints one JSON line: sessions, those served and
// those broken on purpose, RssAnon after a full collection at session --warmup and at the end.
// test/qemu/relay-bounds.test.ts runs each mode; dom0 runs it under nested Xen (--bun-stress).
import net from "node:net";
import { readFileSync, rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { close, readNow, setNonBlocking, SysError, socketPair, write } from "../../ffi/libc.ts";
import type { VchanServer } from "../../ffi/vchan.ts";
import { createLogger } from "../../agent/log.ts";
import { vchanChannel } from "../../agent/qemu/channels.ts";
import { runQmpRelay } from "../../agent/qemu/relay.ts";
import { unixTransport } from "../../agent/qemu/unix-transport.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    mode: { type: "string", default: "normal" },
    sessions: { type: "string" },
    seconds: { type: "string" },
    /** The session after which the first RssAnon sample is taken (the heap warms up before). */
    warmup: { type: "string", default: "10" },
  },
});
const mode = values.mode as "normal" | "spurious" | "eagain" | "half";
const maxSessions = values.sessions ? Number(values.sessions) : Infinity;
const end = Date.now() + (values.seconds ? Number(values.seconds) * 1000 : 3_600_000);
const sock = `/tmp/relay-soak-${process.pid}.sock`;
const NOTIFY = new Uint8Array([7, 0, 0, 0]);
const EAGAIN = 11;

// QEMU's relay monitor: a greeting per connection, a reply per command.
const qemu = net.createServer((c) => {
  c.on("error", () => undefined);
  c.write(`${JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } })}\r\n`);
  let buf = "";
  c.on("data", (d) => {
    buf += d.toString();
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const m = JSON.parse(buf.slice(0, nl)) as { execute: string; id?: unknown };
      buf = buf.slice(nl + 1);
      c.write(`${JSON.stringify({ return: m.execute === "query-status" ? { status: "running", running: true } : {}, id: m.id })}\r\n`);
    }
  });
});
await new Promise<void>((r) => qemu.listen(sock, r));

// libxenvchan's server: rings in memory, the event channel a socket pair ("peer" notifies).
const [eventFd, peer] = socketPair();
setNonBlocking(peer, true);
let state = 2;
let failReads = false;
const toServer: number[] = [];
let toClient = "";
const srv: VchanServer = {
  eventFd,
  state: () => state,
  dataReady: () => toServer.length,
  bufferSpace: () => 4096,
  read: (max) => {
    if (failReads) throw new SysError("libxenvchan_read", EAGAIN, "fake");
    return new Uint8Array(toServer.splice(0, max));
  },
  write: (data) => ((toClient += new TextDecoder().decode(data)), data.length),
  close: () => close(eventFd),
};
const notify = () => {
  write(peer, NOTIFY);
  readNow(peer, 64); // what the relay wrote back to unmask
};
const send = (text: string) => (toServer.push(...new TextEncoder().encode(text)), notify());

const log: string[] = [];
void runQmpRelay({
  channel: vchanChannel(() => srv),
  connectQemu: () => unixTransport(sock),
  log: createLogger({ sink: { write: (l) => void (log.push(l), log.length > 50 && log.shift()) } }),
  retryMs: 5,
});

async function until(re: RegExp, ms = 2000): Promise<boolean> {
  for (const t = Date.now(); !re.test(toClient) && Date.now() - t < ms; ) await Bun.sleep(1);
  return re.test(toClient);
}

const anonAfterGc = () => {
  Bun.gc(true);
  return Number(/^RssAnon:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1]);
};
let sessions = 0;
let broken = 0;
let served = 0;
const warmup = Number(values.warmup);
let anonStart = 0;
while (sessions < maxSessions && Date.now() < end) {
  const sabotage = mode !== "normal" && sessions % 2 === 1;
  toClient = "";
  state = 1;
  notify();
  if (!(await until(/"QMP"/))) throw new Error(`session ${sessions + 1}: no greeting\n${log.join("")}`);
  if (sabotage && mode === "eagain") {
    failReads = true;
    send('{"execute":"qmp_capabilities","id":"c"}\n');
    await Bun.sleep(5);
    failReads = false;
    toServer.splice(0);
    broken++;
  } else if (sabotage && mode === "half") {
    send('{"execute":"qmp_capab');
    await Bun.sleep(2);
    broken++;
  } else {
    if (sabotage && mode === "spurious") for (let i = 0; i < 200; i++) notify();
    for (const cmd of ["qmp_capabilities", "query-status"]) {
      send(`${JSON.stringify({ execute: cmd, id: cmd })}\n`);
      if (!(await until(new RegExp(`"id":"${cmd}"`)))) throw new Error(`session ${sessions + 1}: no reply to ${cmd}\n${log.join("")}`);
    }
    served++;
    if (sabotage) broken++;
  }
  state = 0;
  notify();
  sessions++;
  if (sessions === warmup) anonStart = anonAfterGc();
  await Bun.sleep(1);
}
const anonEnd = anonAfterGc();
qemu.close();
rmSync(sock, { force: true });
console.log(JSON.stringify({ mode, sessions, served, broken, warmup, anonStart, anonEnd }));
process.exit(0);
