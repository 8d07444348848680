// xenstored snapshots a node when a transaction first touches it, so a report read while the
// writer commits can mix old and new keys unless the reader commits its read-only transaction
// and starts over on EAGAIN. The development VM caught exactly that: `crashed` without the exit.
import { expect, test } from "vitest";
import { readReport } from "../../agent/health/reader.ts";
import { healthDir } from "../../agent/health/schema.ts";
import { createHealthWriter } from "../../agent/health/writer.ts";
import type { XenStore } from "../../agent/xenstore/types.ts";
import { GUEST, libxlLayout, manualTimer, memLogger, STUB, testClock } from "./helpers.ts";

test("a report committed while the reader is half-way through is read whole, never torn", async () => {
  const { dom0, stub } = libxlLayout();
  const clock = testClock();
  const w = createHealthWriter({ xs: stub, domid: STUB, log: memLogger().log, clock: clock.boot, wallClock: clock.wall, every: manualTimer().every });
  w.start();
  w.qemuStarted(312);
  w.setPhase("running");
  await Promise.resolve();

  // The writer's crash report lands right after the reader has read `phase` (and before it
  // reaches the exit keys, which come later in the report).
  let crashedMidRead = false;
  const racing = new Proxy(dom0, {
    get(target, prop) {
      if (prop === "read") {
        return (path: string, tx?: number) => {
          const value = target.read(path, tx);
          if (!crashedMidRead && tx && path === `${healthDir(STUB)}/phase`) {
            crashedMidRead = true;
            w.qemuExited({ signal: "SIGKILL", stderr: ["last words"] });
            w.setPhase("crashed");
            expect(w.flush()).toBe(true);
          }
          return value;
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as XenStore;

  const r = readReport(racing, { stubdom: STUB, guest: GUEST }, { wallMs: clock.wall, monoMs: () => 0 });
  expect(crashedMidRead).toBe(true);
  expect(r.fields.phase).toMatchObject({ state: "ok", value: "crashed" });
  expect(r.fields.exit_signal).toMatchObject({ state: "ok", value: "SIGKILL" });
});
