// The agent's QMP relay code (runQmpRelay, vchanChannel, unixTransport) serving many clients,
// with libxenvchan replaced by rings in memory and its event channel by a socket pair, and
// QEMU's monitor by a small QMP server: everything PID 1 does per dom0 client except the Xen
// libraries. Bundled and run in dom0 under nested Xen by `bun test/xen/run.ts --relay-stress`
// (`BUN_BE_BUN=1 stubdom-init relay-stress.js SECONDS`), and on the host by the same command
// line with Bun: a crash here is our code or the runtime, not libxenvchan.
import net from "node:net";
import { readFileSync, rmSync } from "node:fs";
import { close, readNow, setNonBlocking, socketPair, write } from "../../ffi/libc.ts";
import type { VchanServer } from "../../ffi/vchan.ts";
import { createLogger } from "../../agent/log.ts";
import { vchanChannel } from "../../agent/qemu/channels.ts";
import { runQmpRelay } from "../../agent/qemu/relay.ts";
import { unixTransport } from "../../agent/qemu/unix-transport.ts";

const seconds = Number(process.argv[2] ?? 30);
const sock = `/tmp/relay-stress-${process.pid}.sock`;
const NOTIFY = new Uint8Array([7, 0, 0, 0]);

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
const toServer: number[] = [];
let toClient = "";
const srv: VchanServer = {
  eventFd,
  state: () => state,
  dataReady: () => toServer.length,
  bufferSpace: () => 4096,
  read: (max) => new Uint8Array(toServer.splice(0, max)),
  write: (data) => ((toClient += new TextDecoder().decode(data)), data.length),
  close: () => close(eventFd),
};
const notify = () => {
  write(peer, NOTIFY);
  readNow(peer, 64); // the unmask written back
};

const lines: string[] = [];
void runQmpRelay({
  channel: vchanChannel(() => srv),
  connectQemu: () => unixTransport(sock),
  log: createLogger({ level: "debug", sink: { write: (l) => void (process.env.RS_DEBUG ? process.stderr.write(l) : lines.length < 100 ? lines.push(l) : lines.shift() && lines.push(l)) } }),
});

async function until(re: RegExp): Promise<void> {
  for (let i = 0; i < 2000 && !re.test(toClient); i++) await Bun.sleep(1);
  if (!re.test(toClient)) throw new Error(`no ${re} from the relay; got ${toClient.slice(0, 200)}\n${lines.join("")}`);
}

const anon = () => Number(/^RssAnon:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1]);
const end = Date.now() + seconds * 1000;
let sessions = 0;
let first = 0;
while (Date.now() < end) {
  toClient = "";
  state = 1;
  notify();
  await until(/"QMP"/);
  for (const cmd of ["qmp_capabilities", "query-status"]) {
    toServer.push(...new TextEncoder().encode(`${JSON.stringify({ execute: cmd, id: cmd })}\n`));
    notify();
    await until(new RegExp(`"id":"${cmd}"`));
  }
  state = 0;
  notify();
  sessions++;
  if (sessions === 10) first = anon();
  if (process.env.RS_SAMPLE && sessions % 2000 === 0) {
    Bun.gc(true);
    console.log(`session ${sessions}: RssAnon ${anon()} KiB after a full collection`);
  }
  await Bun.sleep(2);
}
qemu.close();
rmSync(sock, { force: true });
console.log(`relay-stress ok: ${sessions} sessions in ${seconds} s; RssAnon ${first} -> ${anon()} KiB from session 10`);
process.exit(0);
