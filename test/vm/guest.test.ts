// The demo guest on its own, booted by the host's QEMU on a tap in a throwaway namespace with a
// DHCP server (busybox udhcpd, the reference) and an IDE disk as libxl's dm-argv gives it: if
// this fails, the stub domain tests cannot tell a broken guest from a broken redirect or disk.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { buildDemoGuest } from "./guest/build.ts";
import { diskMarker, FATAL_CONSOLE, Netns, reap, spawnChild, VmLock, writeDiskImage, type Child } from "./harness.ts";

const dir = mkdtempSync(join(tmpdir(), "demo-guest-"));
let ns: Netns;
let dhcpd: Child;
let vm: Child;
let lock: VmLock;
const marker = diskMarker("hda");

// Long hook deadline: it includes waiting for another VM on the machine to finish.
beforeAll(async () => {
  const guest = await buildDemoGuest();
  writeDiskImage(join(dir, "disk.img"), marker);
  lock = await VmLock.acquire();
  ns = Netns.create(`demo-guest-${process.pid}`);
  ns.addTap("demo-tap", "10.77.0.1/24");
  const conf = join(dir, "udhcpd.conf");
  writeFileSync(
    conf,
    [
      "interface demo-tap",
      "start 10.77.0.10",
      "end 10.77.0.10",
      `lease_file ${join(dir, "leases")}`,
      `pidfile ${join(dir, "udhcpd.pid")}`,
      "option subnet 255.255.255.0",
      "option router 10.77.0.1",
      "",
    ].join("\n"),
  );
  writeFileSync(join(dir, "leases"), "");
  dhcpd = spawnChild("udhcpd", ns.wrap(["busybox", "udhcpd", "-f", conf]), { logPath: join(dir, "udhcpd.log") });
  vm = spawnChild(
    "demo guest",
    ns.wrap([
      "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "128", "-display", "none", "-no-reboot",
      "-monitor", "none", "-serial", "stdio", "-nodefaults",
      "-kernel", guest.kernel, "-initrd", guest.initrd, "-append", "console=ttyS0 panic=-1 quiet",
      "-netdev", "tap,id=n0,ifname=demo-tap,script=no,downscript=no",
      "-device", "e1000,netdev=n0,mac=00:16:3e:00:00:01",
      "-drive", `file=${join(dir, "disk.img")},if=ide,index=0,media=disk,format=raw`,
    ]),
    { logPath: join(dir, "console.log"), fatal: FATAL_CONSOLE },
  );
}, 900_000);

afterAll(async () => {
  vm?.proc.kill("SIGKILL");
  dhcpd?.proc.kill("SIGTERM");
  if (vm) await reap(vm, 5000);
  if (dhcpd) await reap(dhcpd, 5000);
  ns?.destroy();
  await lock?.release();
  rmSync(dir, { recursive: true, force: true });
});

test("prints its disk's first line, takes the DHCP lease on its e1000 and pings the router, which can ping it back", async () => {
  try {
    await vm.out.waitFor(new RegExp(`DEMO-GUEST: disk /dev/sda ${marker}`), 60_000);
    await vm.out.waitFor(/DEMO-GUEST: eth0 00:16:3e:00:00:01/, 60_000);
    await vm.out.waitFor(/DEMO-GUEST: lease 10\.77\.0\.10 router 10\.77\.0\.1 dns none server 10\.77\.0\.1\b/, 60_000);
    await vm.out.waitFor(/DEMO-GUEST: ping 10\.77\.0\.1 ok/, 30_000);
    expect(ns.icmpCounters().InEchos).toBeGreaterThan(0);
    expect(ns.exec(["busybox", "ping", "-c", "1", "-W", "5", "10.77.0.10"])).toMatch(/1 packets received/);
  } catch (e) {
    console.error(`demo guest console:\n${vm.out.text}`);
    throw e;
  }
}, 150_000);
