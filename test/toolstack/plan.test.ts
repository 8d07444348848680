import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseGuest } from "../../agent/toolstack/guest.ts";
import { diskNumber, dmArgv, toolstackWrites } from "../../agent/toolstack/plan.ts";
import { createDomains } from "../../agent/toolstack/simulate.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { XenStoreError } from "../../agent/xenstore/types.ts";

const dir = new URL("../guests", import.meta.url).pathname;
const guest = (name: string) => parseGuest(JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")), name);
const ids = { guestDomid: 1, stubDomid: 2 };
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const errno = (f: () => unknown) => {
  try {
    f();
    return "ok";
  } catch (e) {
    if (e instanceof XenStoreError) return e.errno;
    throw e;
  }
};

describe("guest descriptions", () => {
  it("all files in test/guests parse", () => {
    const files = readdirSync(dir).filter((f) => f.endsWith(".json"));
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const f of files) expect(() => parseGuest(JSON.parse(readFileSync(join(dir, f), "utf8")), f)).not.toThrow();
  });

  it("names every invalid field", () => {
    const bad = {
      name: "bad name", uuid: "x", memory: 1, nics: [{ mac: "zz" }, { mac: "00:16:3e:00:00:01", mtu: 10 }],
      disks: [{ vdev: "hda", target: "/a" }, { vdev: "hda", target: "/b" }], surprise: 1,
    };
    let msg = "";
    try {
      parseGuest(bad, "bad.json");
    } catch (e) {
      msg = (e as Error).message;
    }
    for (const field of ["name", "uuid", "memory", "nics.0.mac", "nics.1.mtu", "(root)"]) expect(msg).toContain(`  ${field}:`);
    expect(() => parseGuest({ ...guest("minimal"), disks: [{ vdev: "hda", target: "/a" }, { vdev: "hda", target: "/b" }] }, "d"))
      .toThrow("disks.1.vdev: duplicate vdev hda");
  });
});

describe("dm-argv as libxl__build_device_model_args_new builds it for a stub domain", () => {
  it("minimal guest: no NIC means -net none, -m excludes video RAM", () => {
    expect(dmArgv(guest("minimal"), 1)).toEqual([
      "-xen-domid", "1", "-no-shutdown", "-nodefaults", "-no-user-config", "-name", "minimal", "-display", "none",
      "-device", "VGA,vgamem_mb=16", "-boot", "order=cd", "-net", "none",
      "-machine", "xenfv,suppress-vmdesc=on", "-m", "240",
    ]);
  });

  it("full guest: serial on hvc3, cirrus, smp, two NICs with taps, IDE disk and CD-ROM", () => {
    expect(dmArgv(guest("full"), 7)).toEqual([
      "-xen-domid", "7", "-no-shutdown", "-nodefaults", "-no-user-config", "-name", "full", "-display", "none",
      "-serial", "/dev/hvc3",
      "-device", "cirrus-vga,vgamem_mb=8", "-boot", "order=dc", "-smp", "2,maxcpus=2",
      "-device", "rtl8139,id=nic0,netdev=net0,mac=00:16:3e:5a:00:01",
      "-netdev", "type=tap,id=net0,ifname=vif7.0-emu,br=xenbr0,script=no,downscript=no",
      "-device", "e1000,id=nic1,netdev=net1,mac=00:16:3e:5a:00:02",
      "-netdev", "type=tap,id=net1,ifname=vif7.1-emu,br=xenbr1,script=no,downscript=no",
      "-machine", "xenfv,suppress-vmdesc=on", "-m", "1016",
      "-drive", "file=/dev/xvda,if=ide,index=0,media=disk,format=host_device,cache=writeback",
      "-drive", "if=none,readonly=on,id=ide-5632,file=/dev/xvdc,format=host_device",
      "-device", "ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0",
    ]);
  });

  it("restore adds the placeholder the init must replace; extra args keep their places", () => {
    const r = dmArgv(guest("restore"), 1);
    expect(r.slice(r.indexOf("-incoming"), r.indexOf("-incoming") + 2)).toEqual(["-incoming", "$STUBDOM_RESTORE_INCOMING_ARG"]);
    const q = dmArgv(guest("qubes"), 1);
    const m = q.indexOf("-machine");
    expect(q[m - 2]).toMatch(/^-qubes-net:client_ip=10\.138\.17\.90,/);
    expect(q[m - 1]).toBe("-qubes-audio:audiovm_xid=0");
    expect(q.slice(m + 2, m + 4)).toEqual(["-device", "qemu-xhci"]);
    expect(q).not.toContain("VGA,vgamem_mb=16");
  });

  it("the development VM's device model runs without Xen: no -xen-domid, TCG machine", () => {
    const d = dmArgv(guest("demo"), 1);
    expect(d).not.toContain("-xen-domid");
    expect(d.slice(d.indexOf("-machine"), d.indexOf("-machine") + 2)).toEqual(["-machine", "pc,accel=tcg"]);
  });

  it("the development VM's demo guest: its disk is the stub domain's /dev/vda, its lease a -qubes-net: argument", () => {
    const demo = parseGuest(JSON.parse(readFileSync(new URL("../vm/demo-guest.json", import.meta.url), "utf8")), "demo-guest.json");
    const d = dmArgv(demo, 1);
    expect(d).toContain("file=/dev/vda,if=ide,index=0,media=disk,format=host_device,cache=writeback");
    expect(d.filter((a) => a.includes("/dev/xvd"))).toEqual([]);
    expect(d.filter((a) => a.startsWith("-qubes-net:"))).toEqual(["-qubes-net:client_ip=10.0.2.15,gw=10.0.2.2,netmask=255.255.255.0,dns_0=10.0.2.3"]);
    // The disk is still attached to S as libxl would (the vbd keys), only the device name differs.
    const w = toolstackWrites(demo, ids);
    expect(w.find((x) => x.path === "/local/domain/0/backend/vbd/2/768/dev")?.value).toBe("hda");
    expect(() => parseGuest({ ...demo, disks: [{ vdev: "hda", target: "/a", stubdomDevice: "/dev/../x" }] }, "d")).toThrow("disks.0.stubdomDevice");
  });

  it("numbers disks like libxl__device_disk_dev_number", () => {
    expect(diskNumber("hda")).toEqual({ disk: 0, devnum: 768 });
    expect(diskNumber("hdb")).toEqual({ disk: 1, devnum: 832 });
    expect(diskNumber("hdd")).toEqual({ disk: 3, devnum: 5696 });
    expect(diskNumber("xvdb")).toEqual({ disk: 1, devnum: 51728 });
    expect(diskNumber("xvdq")).toEqual({ disk: 16, devnum: 268439552 });
    expect(diskNumber("sda")).toEqual({ disk: 0, devnum: 2048 });
  });
});

describe("the keys and permissions libxl writes", () => {
  const writes = toolstackWrites(guest("full"), ids);
  const find = (p: string) => writes.find((w) => w.path === p);

  it("writes dm-argv as 3-digit keys from 001, readable by dom0 and S only", () => {
    expect(find("/vm/6a3c0e1e-7f3a-4d2b-9c55-0d1e2f3a4b02/image/dm-argv")?.perms).toEqual([
      { domid: 0, perm: "n" }, { domid: 2, perm: "r" },
    ]);
    expect(find("/vm/6a3c0e1e-7f3a-4d2b-9c55-0d1e2f3a4b02/image/dm-argv/001")?.value).toBe("-xen-domid");
    expect(find("/local/domain/1/image/device-model-domid")?.value).toBe("2");
    expect(find("/local/domain/2/target")?.value).toBe("1");
    expect(find("/local/domain/2/device-model/1")?.perms).toEqual([{ domid: 2, perm: "n" }, { domid: 1, perm: "r" }]);
    expect(find("/local/domain/2/data")?.perms).toEqual([{ domid: 2, perm: "n" }]);
  });

  it("writes vif backend ip and mtu only when set, and frontends owned by S", () => {
    expect(find("/local/domain/0/backend/vif/2/0/ip")?.value).toBe("10.137.0.5");
    expect(find("/local/domain/0/backend/vif/2/0/mtu")?.value).toBe("1400");
    expect(find("/local/domain/0/backend/vif/2/1/ip")).toBeUndefined();
    expect(find("/local/domain/0/backend/vif/2/1/mtu")).toBeUndefined();
    expect(find("/local/domain/2/device/vif/1/mac")?.value).toBe("00:16:3e:5a:00:02");
    expect(find("/local/domain/2/device/vif/0")?.perms).toEqual([{ domid: 2, perm: "n" }, { domid: 0, perm: "r" }]);
    // Read-only frontend keys belong to the backend domain (libxl__device_generic_add).
    expect(find("/local/domain/2/device/vif/0/mtu")).toEqual({
      path: "/local/domain/2/device/vif/0/mtu", value: "1400", perms: [{ domid: 0, perm: "n" }, { domid: 2, perm: "r" }],
    });
    expect(find("/local/domain/2/device/console/3/output")?.value).toBe("pty");
    expect(find("/local/domain/2/device/console/1/name")?.value).toBe("save");
    expect(find("/local/domain/2/console")?.perms).toEqual([{ domid: 0, perm: "n" }, { domid: 2, perm: "r" }]);
  });

  it("gives S and G exactly the access a stub domain has under Xen", () => {
    const dom0 = new MemoryXenStore();
    createDomains(dom0, guest("full"), ids);
    const stub = new MemoryXenStore({ store: dom0.store, domid: 2 });
    const g = new MemoryXenStore({ store: dom0.store, domid: 1 });
    expect(text(stub.read("target"))).toBe("1");
    expect(text(stub.read("/local/domain/1/vm"))).toBe("/vm/6a3c0e1e-7f3a-4d2b-9c55-0d1e2f3a4b02");
    expect(stub.directory("/vm/6a3c0e1e-7f3a-4d2b-9c55-0d1e2f3a4b02/image/dm-argv").length).toBeGreaterThan(20);
    expect(text(stub.read("/local/domain/0/backend/vif/2/0/bridge"))).toBe("xenbr0");
    stub.write("device-model/1/state", "running");
    stub.write("data/health/phase", "running");
    expect(text(g.read("/local/domain/2/device-model/1/state"))).toBe("running");
    expect(errno(() => g.read("/local/domain/2/data/health/phase"))).toBe("EACCES");
    expect(errno(() => g.read("/vm/6a3c0e1e-7f3a-4d2b-9c55-0d1e2f3a4b02/image/dm-argv/001"))).toBe("EACCES");
    expect(errno(() => g.write("/local/domain/2/device-model/1/state", "x"))).toBe("EACCES");
    expect(errno(() => stub.write("/local/domain/0/backend/vif/2/0/ip", "6.6.6.6"))).toBe("EACCES");
    expect(errno(() => stub.write("device/vif/0/mtu", "9000"))).toBe("EACCES");
    expect(errno(() => stub.write("console/output", "file:/etc/passwd"))).toBe("EACCES");
    stub.write("device/vif/0/state", "4");
    // SET_TARGET: S may write what G owns.
    g.write("/local/domain/1/data/from-guest", "x");
    stub.write("/local/domain/1/data/from-guest", "y");
  });
});
