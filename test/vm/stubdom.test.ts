// The stub domain in the development VM, in `make test`: each test boots the real kernel and dev
// rootfs, has a deadline, and prints the serial console and the host-side logs on failure.
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, test } from "vitest";
import { BACKEND_IP, GUEST_DNS, GUEST_IP, StubVm, STUB_DOMID, type StatusReport } from "./stubvm.ts";

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
const re = (s: string) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
const BOOT_MS = 300_000;

afterEach(async () => {
  await vm?.stop();
  vm = undefined;
});

test("boots to running with every boot phase and QEMU confined; the guest reads its disk, gets the agent's lease, its traffic crosses the redirect both ways; SIGKILL of QEMU is a crash", async () => {
  const v = await boot("crash");
  await withTranscript(v, async () => {
    const r = await v.alive(v.status.waitFor("phase running", running, BOOT_MS));
    const phases = Object.keys((r.values.boot_ms ?? {}) as Record<string, number>);
    for (const p of ["setup", "detect", "options", "modules", "xenstore", "config", "network", "scrub"]) expect(phases).toContain(p);
    console.log(`running after ${v.elapsed().toFixed(1)} s; MemTotal ${r.values.mem_total_kib} KiB, MemAvailable ${r.values.mem_available_kib} KiB`);
    // The real QEMU runs the guest below under our seccomp filter and Landlock rules (README, QEMU's confinement).
    expect(r.values.confinement).toMatchObject({ seccomp: true, landlock_abi: expect.any(Number) });
    expect((r.values.confinement as { landlock_abi: number }).landlock_abi).toBeGreaterThan(0);

    // Host image -> outer virtio-blk -> the stub domain's /dev/vda -> QEMU's IDE disk -> the guest.
    const [disk] = v.disks;
    expect(disk?.vdev).toBe("hda");
    await v.alive(v.guestSerial.out.waitFor(re(`DEMO-GUEST: disk /dev/sda ${disk!.marker}`), BOOT_MS));
    // The lease is the -qubes-net: one, served by the agent (the backend runs no DHCP server):
    // the agent logs the exchange, and only its offer carries that DNS server.
    await v.alive(v.guestSerial.out.waitFor(re(`DEMO-GUEST: lease ${GUEST_IP} router ${BACKEND_IP} dns ${GUEST_DNS} server ${BACKEND_IP}`), BOOT_MS));
    expect(v.console.text).toMatch(re(`REQUEST from 00:16:3e:de:00:01 -> ACK ${GUEST_IP}`));
    await v.alive(v.guestSerial.out.waitFor(re(`DEMO-GUEST: ping ${BACKEND_IP} ok`), BOOT_MS));
    expect(v.ns.icmpCounters().InEchos).toBeGreaterThan(0);
    expect(v.ns.exec(["busybox", "ping", "-c", "1", "-W", "10", GUEST_IP])).toMatch(/1 packets received/);

    const pid = r.values.qemu_pid;
    await v.sysrqOomKill();
    await v.alive(v.console.waitFor(new RegExp(`Killed process ${pid} `), 60_000));
    const crashed = await v.status.waitFor("phase crashed", (x) => x.values.phase === "crashed", 60_000);
    expect(crashed.values.exit_signal).toMatch(/KILL|9/);
    await v.toolstack.out.waitFor(/hypervisor: shutdown of domain 1 requested: crash/, 60_000);
    expect(await v.waitPoweroff(60_000)).toBe(true);
    expect(v.console.text).not.toMatch(/Kernel panic/);
  });
}, 900_000);

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

test("the VM's ACPI power button (QMP system_powerdown) is a graceful stop: QMP quit, QEMU exits 0, clean poweroff", async () => {
  const v = await boot("powerbutton");
  await withTranscript(v, async () => {
    await v.alive(v.status.waitFor("phase running", running, BOOT_MS));
    expect(v.console.text).toMatch(/power button: watching \/dev\/input\/event\d+ \(Power Button\)/);
    const t0 = v.elapsed();
    await v.powerButton();
    await v.alive(v.console.waitFor(/power button pressed \(\/dev\/input\/event\d+ \(Power Button\)\): stopping as for SIGTERM/, 60_000));
    await v.status.waitFor("phase stopping", (x) => x.values.phase === "stopping", 60_000);
    expect(await v.waitPoweroff(90_000)).toBe(true);
    console.log(`powered off ${(v.elapsed() - t0).toFixed(1)} s after the button`);
    const text = v.console.text;
    expect(text).toMatch(/asking QEMU to quit \(QMP quit\)/);
    expect(text).toMatch(/QEMU \(pid \d+\) exit code 0/);
    expect(text).toMatch(/powering off \(shutdown\)/);
    expect(text).toMatch(/reboot: Power down/);
    expect(text).not.toMatch(/sending SIGKILL|crash policy|fatal:|Kernel panic/);
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
