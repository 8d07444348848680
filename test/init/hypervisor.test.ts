import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { expect, test } from "vitest";
import { devHypervisor, devHypervisorKey, xenHypervisor } from "../../agent/init/hypervisor.ts";
import { findVirtioPort } from "../../agent/init/virtio.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";

test("development hypervisor writes the reason where the toolstack simulator watches", () => {
  const dom0 = new MemoryXenStore();
  const stub = new MemoryXenStore({ store: dom0.store, domid: 7 });
  dom0.mkdir("/local/domain/7/data");
  dom0.setPermissions("/local/domain/7/data", [{ domid: 7, perm: "n" }]);
  devHypervisor(stub, 7).shutdownGuest(8, "crash");
  expect(new TextDecoder().decode(dom0.read(devHypervisorKey(7)))).toBe("crash");
});

test("Xen hypervisor calls the real libxendevicemodel, which fails cleanly without Xen", () => {
  // On a machine without /dev/xen/privcmd the library is loaded and called, and the open fails.
  expect(() => xenHypervisor.shutdownGuest(5, "crash")).toThrow(/xendevicemodel_open: (ENOENT|EACCES|errno)/);
});

test("virtio-serial ports are found by their sysfs name", () => {
  const dir = mkdtempSync(`${tmpdir()}/vports-`);
  try {
    for (const [port, name] of [["vport1p1", "xenstore"], ["vport1p2", "qmp"], ["vport1p3", ""]]) {
      mkdirSync(`${dir}/${port}`);
      writeFileSync(`${dir}/${port}/name`, `${name}\n`);
    }
    expect(findVirtioPort("qmp", dir)).toBe("/dev/vport1p2");
    expect(findVirtioPort("nope", dir)).toBeNull();
    expect(findVirtioPort("qmp", `${dir}/absent`)).toBeNull();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the vchan binding loads the real libxenvchan, whose server init fails cleanly without Xen", async () => {
  const { vchanServer } = await import("../../ffi/vchan.ts");
  expect(() => vchanServer(0, "/local/domain/1/device-model/2/qmp-vchan")).toThrow(
    /libxenvchan_server_init \/local\/domain\/1\/device-model\/2\/qmp-vchan: (ENOENT|EACCES|errno)/,
  );
});
