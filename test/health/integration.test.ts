// The writer and the reader through the real client library (Debian's libxenstore via the FFI
// binding) against the wire server in its own process, with `stubdom-init status` run as the
// real command. The writer connects as the stub domain, so xenstored's permission checks are
// the ones a stub domain meets under Xen.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { healthDir } from "../../agent/health/schema.ts";
import { createHealthWriter, type HealthWriter } from "../../agent/health/writer.ts";
import { openXenStore, type FfiXenStore } from "../../ffi/xenstore.ts";
import { BUN, ROOT, startServer, type ServerProc } from "../xenstore/harness.ts";
import { parseExposition, sampleOf } from "./exposition.ts";
import { GUEST, layOut, memLogger, STUB } from "./helpers.ts";

let server: ServerProc;
const cleanup: (() => void)[] = [];

beforeAll(async () => {
  server = await startServer({ domains: [STUB] });
  const dom0 = openXenStore({ path: server.socket });
  layOut(dom0);
  dom0.close();
});
afterEach(() => {
  while (cleanup.length > 0) cleanup.pop()?.();
});
afterAll(async () => {
  await server?.stop();
});

function writer(): HealthWriter {
  const stub: FfiXenStore = openXenStore({ path: server.domainSocket(STUB) });
  const w = createHealthWriter({ xs: stub, domid: STUB, log: memLogger().log, clock: () => performance.now() / 1000, intervalMs: 5000 });
  w.start();
  cleanup.push(() => {
    w.stop();
    stub.close();
  });
  return w;
}

async function status(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([BUN, "agent/main.ts", "status", ...args], {
    cwd: ROOT,
    env: { ...process.env, XENSTORED_PATH: server.socket },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

const tick = () => new Promise<void>((r) => setTimeout(r, 0));

describe("health through libxenstore and the wire server", () => {
  test("round trip: the stub domain writes, `status` in dom0 reads it back", async () => {
    const w = writer();
    w.qemuStarted(process.pid);
    w.setPhase("running");
    await tick();
    const json = await status([String(GUEST), "--json"]);
    expect(json.err).toBe("");
    expect(json.code).toBe(0);
    const [r] = JSON.parse(json.out);
    expect(r).toMatchObject({ stubdom: STUB, guest: GUEST, health: "ok", values: { schema: 1, phase: "running", qemu_pid: process.pid }, invalid: {} });
    expect(r.values.mem_total_kib).toBeGreaterThan(0); // the real /proc source
    const table = await status(["--all"]);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(new RegExp(`^${STUB} +${GUEST} +ok +running `, "m"));
    const prom = await status(["--all", "--prometheus"]);
    expect(prom.code).toBe(0);
    const { samples } = parseExposition(prom.out);
    expect(sampleOf(samples, "xen_stubdom_up", { stub_domid: String(STUB), guest_domid: String(GUEST) })).toBe(1);
    expect(sampleOf(samples, "xen_stubdom_phase", { stub_domid: String(STUB), phase: "running" })).toBe(1);
  });

  test("the stub domain cannot write outside its data directory; dom0 still reads its report", async () => {
    const w = writer();
    w.setPhase("running");
    await tick();
    const stub = openXenStore({ path: server.domainSocket(STUB) });
    cleanup.push(() => stub.close());
    expect(() => stub.write(`/local/domain/${GUEST}/image/device-model-domid`, "0")).toThrow(/EACCES/);
    // Its own report it may fill with anything: shown escaped and invalid.
    stub.write(`${healthDir(STUB)}/qmp_status`, "\x1b]0;owned\x07");
    const out = await status([String(GUEST)]);
    expect(out.code).toBe(1);
    expect(out.out).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f]/);
    expect(out.out).toContain('invalid qmp_status: not a QMP run state: "\\x1b]0;owned\\x07"');
  });

  test("--watch redraws on each phase change, pushed by xenstore watches", async () => {
    const w = writer();
    await tick();
    const p = Bun.spawn([BUN, "agent/main.ts", "status", String(GUEST), "--watch", "--json"], {
      cwd: ROOT,
      env: { ...process.env, XENSTORED_PATH: server.socket },
      stdout: "pipe",
      stderr: "pipe",
    });
    cleanup.push(() => p.kill("SIGKILL"));
    const lines = p.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    const nextPhase = async (phase: string) => {
      for (;;) {
        const nl = buf.indexOf("\n");
        if (nl >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (JSON.parse(line)[0]?.values?.phase === phase) return;
          continue;
        }
        const { value, done } = await lines.read();
        if (done) throw new Error(`status --watch ended before phase ${phase}: ${await new Response(p.stderr).text()}`);
        buf += value;
      }
    };
    await nextPhase("booting");
    for (const phase of ["configuring", "starting", "running", "crashed"] as const) {
      w.setPhase(phase);
      await nextPhase(phase);
    }
    p.kill("SIGINT");
    // SIGINT ends the watch cleanly: stdout closes and the exit status is 0.
    while (!(await lines.read()).done);
    expect(await p.exited).toBe(0);
  });

  test("5,000 unknown keys through libxenstore (DIRECTORY_PART) are counted, not shown", async () => {
    writer();
    await tick();
    const dom0 = openXenStore({ path: server.socket });
    cleanup.push(() => dom0.close());
    for (let i = 0; i < 5000; i++) dom0.write(`${healthDir(STUB)}/unknown_key_${i}`, "\x1b[2J");
    const out = await status([String(GUEST)]);
    expect(out.code).toBe(0);
    expect(out.out).toMatch(/\n    5000 unknown keys ignored \((unknown_key_\d+, ){3}…\)\n/);
    expect(out.out.length).toBeLessThan(2000);
  });

  test("a crashed stub domain exits 1 although its report is healthy", async () => {
    const w = writer();
    w.qemuExited({ signal: "SIGKILL", stderr: [] });
    w.setPhase("crashed");
    await tick();
    const out = await status([String(GUEST)]);
    expect(out.code).toBe(1);
    expect(out.out).toMatch(new RegExp(`^${STUB} +${GUEST} +ok +crashed `, "m"));
  });

  test("a guest without a stub domain is unreachable, exit status 1", async () => {
    const out = await status(["77"]);
    expect(out.code).toBe(1);
    expect(out.out).toContain("unreachable: no stub domain: /local/domain/77/image/device-model-domid does not exist");
  });

  test("usage errors exit 2", async () => {
    expect((await status(["--all", "4"])).code).toBe(2);
    expect((await status(["x"])).code).toBe(2);
    expect((await status(["--bogus"])).code).toBe(2);
  });
});
