// Round trips through the FFI binding (Debian's libxenstore) against the wire server, and the
// server's throughput with 50 concurrent clients. Prints numbers, asserts nothing; the goal
// (issue 3) is at least 20,000 small READs per second from one client.
// Run: ./node_modules/.bin/bun test/bench/xenstore.ts [seconds-per-phase]
import { openXenStore } from "../../ffi/xenstore.ts";
import { MsgType, strings } from "../../agent/xenstore/wire.ts";
import { RawClient, startServer } from "../xenstore/harness.ts";

const seconds = Number(process.argv[2] ?? 2);
const server = await startServer();

function timed(label: string, op: () => void): void {
  for (let i = 0; i < 500; i++) op(); // warm-up: JIT, library thread, server paths
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) op();
    n += 100;
  }
  const s = (performance.now() - t0) / 1000;
  console.log(`${label.padEnd(42)} ${String(Math.round(n / s)).padStart(8)} /s  (${n} in ${s.toFixed(2)} s, ${(1e6 * s / n).toFixed(1)} us each)`);
}

const xs = openXenStore({ path: server.socket });
xs.write("/bench/small", "running");
xs.write("/bench/big", "x".repeat(2000));
timed("FFI READ, 7 bytes, one client", () => xs.read("/bench/small"));
timed("FFI READ, 2000 bytes, one client", () => xs.read("/bench/big"));
let i = 0;
timed("FFI WRITE, 8 bytes, one client", () => xs.write("/bench/w", `v${(i++ % 1e6).toString().padStart(7, "0")}`));
xs.close();

// 50 clients, each with one request in flight at a time, as libxenstore clients behave.
const clients = await Promise.all(Array.from({ length: 50 }, () => RawClient.connect(server.socket)));
const payload = strings("/bench/small");
let total = 0;
const t0 = performance.now();
const end = t0 + seconds * 1000;
await Promise.all(clients.map(async (c) => {
  while (performance.now() < end) {
    const r = await c.request(MsgType.READ, payload);
    if (!r || r.type !== MsgType.READ) throw new Error("bad reply in the 50-client phase");
    total++;
  }
}));
const s = (performance.now() - t0) / 1000;
console.log(`${"wire READ, 50 concurrent clients (total)".padEnd(42)} ${String(Math.round(total / s)).padStart(8)} /s  (${total} in ${s.toFixed(2)} s; clients and server share ${navigator.hardwareConcurrency} cores)`);
for (const c of clients) c.close();
await server.stop();
