// The stub domain in the development VM, in `make test`: clean shutdown and a broken dm-argv.
// The boot that still fails (crash report) is in stubdom.vmtest.ts (`make vm-test`).
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, test } from "vitest";
import { StubVm, STUB_DOMID, type StatusReport } from "./stubvm.ts";

let vm: StubVm | undefined;

async function boot(name: string, opts: { cmdline?: string[]; guest?: string } = {}): Promise<StubVm> {
  vm = await StubVm.start({ dir: join(tmpdir(), `stubvm-${name}-${process.pid}`), ...opts });
  return vm;
}

/** Runs `body`; on failure prints everything the VM left behind, then rethrows. */
async function withTranscript(v: StubVm, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    console.error(v.transcript());
    throw e;
  }
}

const running = (r: StatusReport) => r.values.phase === "running";
const BOOT_MS = 300_000;

afterEach(async () => {
  await vm?.stop();
  vm = undefined;
});

test("Ctrl-Alt-Del on the VM's keyboard (SIGINT to PID 1) stops QEMU and powers off cleanly", async () => {
  const v = await boot("sigint");
  await withTranscript(v, async () => {
    await v.alive(v.status.waitFor("phase running", running, BOOT_MS));
    await v.ctrlAltDel();
    await v.status.waitFor("phase stopping", (x) => x.values.phase === "stopping", 60_000);
    expect(await v.waitPoweroff(90_000)).toBe(true);
    expect(v.console.text).toMatch(/reboot: Power down/);
    expect(v.console.text).not.toMatch(/Kernel panic/);
    expect(v.toolstack.out.text).not.toMatch(/hypervisor: shutdown/);
  });
}, 900_000);

test("a broken dm-argv is reported in xenstore and on the console, then the VM powers off without a panic", async () => {
  const v = await boot("broken", { guest: new URL("broken-guest.json", import.meta.url).pathname });
  await withTranscript(v, async () => {
    const failed = await v.alive(v.status.waitFor("phase failed", (x) => x.values.phase === "failed", BOOT_MS)).catch(async (e) => {
      // The report may be written and the VM gone before a frame was drawn: read the console.
      if (!/powered off/.test(String(e))) throw e;
      return null;
    });
    await v.console.waitFor(/boot failed \(config\)/, 60_000);
    if (failed) expect(String(failed.values.error)).toMatch(/dm-argv|argument/);
    expect(await v.waitPoweroff(60_000)).toBe(true);
    expect(v.console.text).not.toMatch(/Kernel panic/);
    expect(v.read(`/local/domain/${STUB_DOMID}/data/stubdom/phase`) ?? "failed").toBe("failed");
  });
}, 900_000);
