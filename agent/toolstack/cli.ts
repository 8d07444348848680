// `stubdom-init simulate-toolstack`: play libxl (and, in the development VM, Xen) for one
// guest and its Linux stub domain against a xenstore server.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { openXenStore } from "../../ffi/xenstore.ts";
import { parseGuest } from "./guest.ts";
import { type Domids, STUBDOM_START_TIMEOUT } from "./plan.ts";
import { createDomains, destroyDomains, waitForRunning, watchShutdownRequests } from "./simulate.ts";

const usage = "usage: stubdom-init simulate-toolstack --socket PATH --guest FILE [--guest-domid G] " +
  "[--stub-domid S] [--timeout SECONDS] [--exit-when-running] [--destroy]\n";

function domid(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined) return fallback;
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) > 0x7fef) throw new Error(`--${name} ${text}: not a domid`);
  return Number(text);
}

export async function run(argv: string[]): Promise<number> {
  const out = (line: string) => void process.stdout.write(`${line}\n`);
  let opts;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        socket: { type: "string" },
        guest: { type: "string" },
        "guest-domid": { type: "string" },
        "stub-domid": { type: "string" },
        timeout: { type: "string" },
        "exit-when-running": { type: "boolean" },
        destroy: { type: "boolean" },
      },
      strict: true,
    });
    if (!values.socket || !values.guest) throw new Error("--socket and --guest are required");
    const ids: Domids = {
      guestDomid: domid(values["guest-domid"], 1, "guest-domid"),
      stubDomid: domid(values["stub-domid"], 2, "stub-domid"),
    };
    if (ids.guestDomid === ids.stubDomid || ids.guestDomid === 0 || ids.stubDomid === 0) {
      throw new Error("guest and stub domids must differ and not be 0");
    }
    const timeout = values.timeout === undefined ? STUBDOM_START_TIMEOUT : Number(values.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 3600) throw new Error(`--timeout ${values.timeout}: 1..3600 seconds`);
    const guest = parseGuest(JSON.parse(readFileSync(values.guest, "utf8")), values.guest);
    opts = { socket: values.socket, ids, timeout, guest, exitWhenRunning: !!values["exit-when-running"], destroy: !!values.destroy };
  } catch (e) {
    process.stderr.write(`stubdom-init simulate-toolstack: ${(e as Error).message}\n${usage}`);
    return 2;
  }
  const { ids, guest } = opts;
  const G = ids.guestDomid;

  let xs;
  try {
    xs = openXenStore({ path: opts.socket });
  } catch (e) {
    process.stderr.write(`stubdom-init simulate-toolstack: ${(e as Error).message}\n`);
    return 1;
  }
  try {
    if (opts.destroy) {
      destroyDomains(xs, guest, ids);
      out(`destroyed guest ${G} and stub domain ${ids.stubDomid}`);
      return 0;
    }
    const count = createDomains(xs, guest, ids);
    out(`created guest ${G} (${guest.name}) and stub domain ${ids.stubDomid} (${guest.name}-dm): ${count} keys`);
    if (guest.dm) out(`development VM: boot the stub domain with stubdom.qemu=${guest.dm.binary}`);

    let shutdown: ((reason: string) => void) | undefined;
    const requested = new Promise<string>((resolve) => {
      shutdown = resolve;
    });
    const stopWatching = watchShutdownRequests(xs, ids, (reason) => shutdown?.(reason));
    const onRequest = async (): Promise<number> => {
      const reason = await requested;
      out(`hypervisor: shutdown of domain ${G} requested: ${reason}`);
      stopWatching();
      if (guest.onCrash === "preserve") {
        out(`on_crash=preserve: keeping guest ${G} and stub domain ${ids.stubDomid}`);
        return 0;
      }
      // on_crash=destroy: libxl tears down the guest and its stub domain together.
      destroyDomains(xs, guest, ids);
      out(`destroyed guest ${G} and stub domain ${ids.stubDomid}`);
      return 0;
    };
    const early = onRequest();

    const waited = await Promise.race([
      waitForRunning(xs, ids, opts.timeout * 1000),
      early.then(() => ({ ok: false as const, reason: "shut down before the device model started" })),
    ]);
    if (!waited.ok) {
      if (waited.reason === "startup timed out") {
        out("startup timed out");
        out("device model did not start: -9");
        stopWatching();
        destroyDomains(xs, guest, ids);
        return 1;
      }
      return await early;
    }
    out(`device model running after ${(waited.elapsedMs / 1000).toFixed(3)} s`);
    if (opts.exitWhenRunning) {
      stopWatching();
      return 0;
    }
    const stopped = new Promise<number>((resolve) => {
      process.once("SIGTERM", () => resolve(0));
      process.once("SIGINT", () => resolve(0));
    });
    return await Promise.race([early, stopped]);
  } catch (e) {
    process.stderr.write(`stubdom-init simulate-toolstack: ${(e as Error).message}\n`);
    return 1;
  } finally {
    xs.close();
  }
}
