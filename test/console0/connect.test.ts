// `stubdom-init console0` (agent/console0): the pass on a store laid out as libxl lays out a stub
// domain's consoles (libxl_console.c libxl__device_console_add, libxl__device_generic_add) with
// the backend as dom0's QEMU 10 leaves it, then the real command through libxenstore against
// our server, the stub domain's frontend watched as QEMU's xen-bus watches it.
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { BACKEND_ROOT, FrontendWatches, connectUndrained } from "../../agent/console0/connect.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import type { XenStoreAdmin } from "../../agent/xenstore/types.ts";
import { openXenStore } from "../../ffi/xenstore.ts";
import { BUN, ROOT, startServer, type ServerProc } from "../xenstore/harness.ts";

const STUB = 7;
const FE = `/local/domain/${STUB}/console`;
const BE = `${BACKEND_ROOT}/${STUB}/0`;
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Console 0 and console 1 of stub domain 7, backends in the given states. */
function layOut(xs: XenStoreAdmin, console0: string, console1 = "4"): void {
  xs.write(`${FE}/type`, "ioemu");
  xs.write(`${FE}/ring-ref`, "473640");
  xs.write(`${FE}/port`, "2");
  // Read-only for the domain: console 0's frontend directory is dom0's.
  xs.setPermissions(FE, [{ domid: 0, perm: "n" }, { domid: STUB, perm: "r" }]);
  xs.write(`${BE}/state`, console0);
  xs.write(`${BE}/frontend`, FE);
  xs.write(`/local/domain/${STUB}/device/console/1/state`, "4");
  xs.write(`${BACKEND_ROOT}/${STUB}/1/state`, console1);
}

describe("one pass", () => {
  it("a console 0 left in InitWait is told its frontend is connected; nothing else is written", () => {
    const xs = new MemoryXenStore();
    layOut(xs, "2", "2");
    const r = connectUndrained(xs);
    expect(r).toEqual([{ domid: STUB, frontend: FE, connected: true, line: expect.stringMatching(/^domain 7: console 0's backend is in InitWait: wrote \/local\/domain\/7\/console\/state = 4 \(Connected; it was absent\), so that dom0's QEMU drains it$/) }]);
    expect(text(xs.read(`${FE}/state`))).toBe("4");
    // Console 1 speaks xenbus states itself: only console 0 is touched.
    expect(text(xs.read(`/local/domain/${STUB}/device/console/1/state`))).toBe("4");
    // Once written, a second pass has nothing to do.
    expect(connectUndrained(xs)).toEqual([]);
  });

  it("a backend already Connected, or not yet in InitWait, is left alone", () => {
    for (const state of ["4", "1"]) {
      const xs = new MemoryXenStore();
      layOut(xs, state);
      expect(connectUndrained(xs)).toEqual([]);
      expect(() => xs.read(`${FE}/state`)).toThrow(/ENOENT/);
    }
  });

  it("a backend naming another frontend is reported and not followed; a console for xenconsoled is skipped", () => {
    const xs = new MemoryXenStore();
    layOut(xs, "2");
    xs.write(`${BE}/frontend`, "/local/domain/0/control");
    expect(connectUndrained(xs)).toEqual([{ domid: STUB, frontend: FE, connected: false, line: expect.stringMatching(/names frontend "\/local\/domain\/0\/control", not \/local\/domain\/7\/console; left alone$/) }]);
    expect(() => xs.read("/local/domain/0/control/state")).toThrow(/ENOENT/);
    xs.write(`${BE}/frontend`, FE);
    xs.write(`${FE}/type`, "xenconsoled");
    expect(connectUndrained(xs)).toEqual([]);
  });

  it("a value too long to be a console type is reported for its domain, and nothing is written", () => {
    const xs = new MemoryXenStore();
    layOut(xs, "2");
    xs.write(`${FE}/type`, "ioemu".repeat(10));
    expect(connectUndrained(xs)).toEqual([{ domid: STUB, frontend: FE, connected: false, line: expect.stringMatching(/^domain 7: .*E2BIG.*50 bytes, limit 16/) }]);
    expect(() => xs.read(`${FE}/state`)).toThrow(/ENOENT/);
  });

  it("no console backends at all, and entries that are not domain ids, are nothing to do", () => {
    const xs = new MemoryXenStore();
    expect(connectUndrained(xs)).toEqual([]);
    xs.write(`${BACKEND_ROOT}/x7/0/state`, "2");
    xs.write(`${BACKEND_ROOT}/007/0/state`, "2");
    expect(connectUndrained(xs)).toEqual([]);
  });
});

describe("frontend watches", () => {
  it("a frontend state written is watched while its backend is in InitWait, then let go", () => {
    const xs = new MemoryXenStore();
    layOut(xs, "2");
    const w = new FrontendWatches(xs, "t");
    w.update(connectUndrained(xs));
    expect(w.paths).toEqual([`${FE}/state`]);
    // Still InitWait: kept, and not watched twice.
    w.update(connectUndrained(xs));
    expect(w.paths).toEqual([`${FE}/state`]);
    xs.write(`${BE}/state`, "4");
    w.update(connectUndrained(xs));
    expect(w.paths).toEqual([]);
  });

  it("nothing written, nothing watched; a domain that went away is let go", () => {
    const xs = new MemoryXenStore();
    layOut(xs, "4");
    const w = new FrontendWatches(xs, "t");
    w.update(connectUndrained(xs));
    expect(w.paths).toEqual([]);
    xs.write(`${BE}/state`, "2");
    w.update(connectUndrained(xs));
    expect(w.paths).toEqual([`${FE}/state`]);
    xs.rm(`${BACKEND_ROOT}/${STUB}`);
    xs.rm(FE);
    w.update(connectUndrained(xs));
    expect(w.paths).toEqual([]);
  });
});

describe("the command, through libxenstore", () => {
  let server: ServerProc;
  beforeAll(async () => {
    server = await startServer({ domains: [STUB] });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const spawn = (args: string[]) =>
    Bun.spawn([BUN, "agent/main.ts", "console0", ...args], { cwd: ROOT, env: { ...process.env, XENSTORED_PATH: server.socket }, stdout: "pipe", stderr: "pipe" });

  it("--once connects the console and says so; the domain itself may not write that node", async () => {
    const dom0 = openXenStore({ path: server.socket });
    layOut(dom0, "2");
    const stub = openXenStore({ path: server.domainSocket(STUB) });
    // Why dom0 has to do it: the stub domain is refused.
    expect(() => stub.write(`${FE}/state`, "4")).toThrow(/EACCES/);
    stub.close();
    const p = spawn(["--once"]);
    const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    expect(code).toBe(0);
    expect(out).toMatch(/^stubdom-init console0: domain 7: console 0's backend is in InitWait: wrote/);
    expect(text(dom0.read(`${FE}/state`))).toBe("4");
    dom0.rm(FE);
    dom0.rm(`${BACKEND_ROOT}/${STUB}`);
    dom0.close();
  });

  it("watching: a console 0 that reaches InitWait later is connected within the watch event, until SIGTERM", async () => {
    const dom0 = openXenStore({ path: server.socket });
    const p = spawn([]);
    onTestFinished(() => p.kill("SIGKILL")); // a failed expectation must not leave it running
    const reader = p.stdout.getReader();
    let out = "";
    const until = async (re: RegExp) => {
      const deadline = Date.now() + 10_000;
      while (!re.test(out) && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
      expect(out).toMatch(re);
    };
    await until(/watching \/local\/domain\/0\/backend\/console/);
    layOut(dom0, "1");
    dom0.write(`${BE}/state`, "2"); // QEMU's realize
    await until(/domain 7: console 0's backend is in InitWait: wrote/);
    expect(text(dom0.read(`${FE}/state`))).toBe("4");
    // The frontend state set back while the backend still waits, and no backend change after it
    // (1 create in 7 on nested 4.20): the watch on the frontend state writes it again.
    const first = out.length;
    dom0.write(`${FE}/state`, "1");
    const again = async () => {
      const deadline = Date.now() + 10_000;
      while (!/console 0's backend is in InitWait: wrote/.test(out.slice(first)) && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
    };
    await again();
    expect(out.slice(first)).toMatch(/domain 7: console 0's backend is in InitWait: wrote .*it was "1"/);
    expect(text(dom0.read(`${FE}/state`))).toBe("4");
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    dom0.close();
  });
});
