// A Bun program that does nothing Xen-specific: allocation churn that keeps JavaScriptCore's
// collector busy, on the main thread and (with "worker") in a Worker that also calls poll()
// through bun:ffi, as the agent's Workers do. Run in dom0 (a Xen PV domain) under nested TCG by
// `bun test/xen/run.ts --bun-stress`: a crash here cannot be the agent's code.
//   BUN_BE_BUN=1 stubdom-init bun-stress.js SECONDS [worker]
const seconds = Number(process.argv[2] ?? 20);
const withWorker = process.argv[3] === "worker";

function churn(ms) {
  const end = Date.now() + ms;
  let keep = [];
  let n = 0;
  while (Date.now() < end) {
    const o = { a: [n, String(n), { b: new Uint8Array(64 + (n % 512)) }], s: `x${n}`.repeat(n % 7) };
    keep.push(o);
    if (keep.length > 5000) keep = keep.slice(2500);
    n++;
  }
  return n;
}

const workerSource = `
import { dlopen, FFIType } from "bun:ffi";
const { poll } = dlopen("libc.so.6", { poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 } }).symbols;
self.onmessage = (e) => {
  const end = Date.now() + e.data;
  let keep = [], n = 0;
  const pfd = new Int32Array(2);
  while (Date.now() < end) {
    keep.push({ n, s: "y" + n, b: new Uint8Array(n % 300) });
    if (keep.length > 3000) keep = keep.slice(1500);
    if (n % 1000 === 0) { pfd[0] = -1; poll(pfd, 1, 1); }
    n++;
  }
  postMessage(n);
};`;

let workerDone = Promise.resolve(0);
if (withWorker) {
  const w = new Worker(URL.createObjectURL(new Blob([workerSource], { type: "application/typescript" })));
  workerDone = new Promise((r) => (w.onmessage = (e) => (r(e.data), w.terminate())));
  w.postMessage(seconds * 1000);
}
let total = 0;
for (let s = 0; s < seconds; s++) {
  total += churn(900);
  await Bun.sleep(100); // let the event loop and timers run, as the agent's does
}
const w = await workerDone;
console.log(`bun-stress ok: ${total} main iterations, ${w} worker iterations in ${seconds} s`);
