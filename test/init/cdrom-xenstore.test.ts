// The CD-ROM watch against the real xenstore stack: the project's xenstored (a separate
// process), the real libxenstore through ffi/xenstore.ts (watch events through its poll()
// Worker), the stub domain connected as domain 3 without privileges, and dom0 writing the
// frontend nodes as libxl does. Events go through the supervisor's EventQueue and Listeners.
import { afterAll, beforeAll, expect, test } from "vitest";
import { CDROM_WATCH_TOKEN, watchCdroms, type CdromFdsets, type CdromQmp } from "../../agent/init/cdrom.ts";
import { watchLoop } from "./watch-loop.ts";
import { createLogger } from "../../agent/log.ts";
import { openXenStore, type FfiXenStore } from "../../ffi/xenstore.ts";
import { startServer, type ServerProc } from "../xenstore/harness.ts";

const STUB = 3;
const VBD = `/local/domain/${STUB}/device/vbd`;
let server: ServerProc;
let dom0: FfiXenStore;
let stub: FfiXenStore;
const calls: Array<{ command: string; args?: Record<string, unknown>; fds?: number[] }> = [];
const lines: string[] = [];
const reports: string[] = [];
let onCall = () => {};
let attaches = 0;
let cd: CdromFdsets;

/** Resolves once `n` QMP commands were sent; the bound only keeps a broken run from hanging. */
const commands = (n: number) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${calls.length} of ${n} QMP commands: ${JSON.stringify(calls)}\n${lines.join("")}`)), 10_000);
    onCall = () => {
      if (calls.length < n) return;
      clearTimeout(timer);
      resolve();
    };
    onCall();
  });

beforeAll(async () => {
  server = await startServer({ domains: [STUB] });
  dom0 = openXenStore({ path: server.socket });
  dom0.mkdir(`/local/domain/${STUB}`);
  dom0.setPermissions(`/local/domain/${STUB}`, [{ domid: STUB, perm: "n" }]);
  // A CD-ROM attached at boot: on QEMU's command line, no fdset wanted.
  for (const [k, v] of Object.entries({ "virtual-device": "5632", "device-type": "cdrom", state: "4" })) dom0.write(`${VBD}/5632/${k}`, v);
  stub = openXenStore({ path: server.domainSocket(STUB) });
  const fdsets: Array<{ "fdset-id": number; fds: Array<{ fd: number; opaque: string }> }> = [];
  const qmp: CdromQmp = {
    async execute(command, args, _t, fds) {
      calls.push({ command, ...(args ? { args } : {}), ...(fds ? { fds } : {}) });
      onCall();
      if (command === "add-fd") {
        fdsets.push({ "fdset-id": 0, fds: [{ fd: 40, opaque: String(args?.opaque) }] });
        return { "fdset-id": 0, fd: 40 };
      }
      if (command === "query-fdsets") return fdsets;
      if (command === "remove-fd") return void fdsets.splice(0);
      throw new Error(command);
    },
  };
  const listeners = watchLoop(stub, (err) => reports.push(String(err)));
  cd = watchCdroms({
    xs: stub, stubDomid: STUB, listeners, qmp: () => qmp,
    // blkfront's /dev/xvdc: present from boot, a new node after each re-attach.
    devices: { waitFor: async () => {}, identity: () => `xvdc#${attaches}`, openReadOnly: () => 77, close: () => {} },
    log: createLogger({ sink: { write: (l) => lines.push(l) }, level: "debug" }), report: (m) => reports.push(m),
  });
});

afterAll(async () => {
  stub?.close();
  dom0?.close();
  await server?.stop();
});

test("dom0 re-attaching the CD-ROM vbd fires the watch and the handler does one add-fd; a block-detach removes it", async () => {
  expect(lines.join("")).toContain(`cdrom: watching ${VBD}`);
  // libxl's cd-insert: detach (state 5, 6, directory removed) ...
  dom0.write(`${VBD}/5632/state`, "5");
  dom0.write(`${VBD}/5632/state`, "6");
  dom0.rm(`${VBD}/5632`);
  // ... and attach in one transaction, then blkfront connects.
  const tx = dom0.transactionStart();
  for (const [k, v] of Object.entries({ "backend-id": "0", "virtual-device": "5632", "device-type": "cdrom", state: "1" })) dom0.write(`${VBD}/5632/${k}`, v, tx);
  expect(dom0.transactionEnd(tx, false)).toBe(true);
  dom0.write(`${VBD}/5632/state`, "4");
  attaches++;
  await commands(1);
  await cd.idle();
  expect(calls).toEqual([{ command: "add-fd", args: { opaque: "stub-devid:5632" }, fds: [77] }]);
  expect(lines.join("")).toContain("cdrom: add-fd /dev/xvdc (vbd 5632, read-only) as fdset 0, opaque stub-devid:5632");

  dom0.write(`${VBD}/5632/state`, "5");
  await commands(3);
  await cd.idle();
  expect(calls.slice(1)).toEqual([{ command: "query-fdsets" }, { command: "remove-fd", args: { "fdset-id": 0 } }]);
  expect(reports).toEqual([]);
  expect(CDROM_WATCH_TOKEN).toBe("stubdom-init:cdrom");
});
