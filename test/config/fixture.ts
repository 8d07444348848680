// Guests as libxl would describe them to a stub domain (xen-stubdom-protocol.md §2-5), written
// into the in-memory xenstore and read back with readSnapshot, so golden snapshots are what
// the real reader produces.
import { readSnapshot } from "../../agent/config/read.ts";
import type { Snapshot } from "../../agent/config/types.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";

export interface VifFixture {
  front: Record<string, string | Uint8Array>;
  backendDomid: number;
  back: Record<string, string | Uint8Array>;
}

export interface Fixture {
  stub: number;
  guest: number;
  /** Raw writes on top of the generated ones (null removes the key). */
  extra: Record<string, string | Uint8Array | null>;
  target: string | Uint8Array | null;
  vm: string | Uint8Array;
  name: string | Uint8Array;
  /** dm-argv child name -> value; the default numbering is 001, 002, ... */
  argv: [string, string | Uint8Array][];
  vifs: Map<number, VifFixture>;
  consoles: number[];
  vbds: number[];
}

export const numbered = (args: (string | Uint8Array)[]): [string, string | Uint8Array][] =>
  args.map((a, i) => [String(i + 1).padStart(3, "0"), a]);

export const BASE_ARGS = [
  "-xen-domid", "3", "-no-shutdown", "-nodefaults", "-no-user-config", "-name", "win10",
  "-display", "none", "-device", "VGA,vgamem_mb=16", "-machine", "xenfv,suppress-vmdesc=on",
  "-m", "4080", "-boot", "order=cd", "-smp", "2,maxcpus=2", "-serial", "/dev/hvc3",
  "-smbios", "type=11,value=Gäst ☃ with spaces = signs,, and commas",
  "-device", "rtl8139,id=nic0,netdev=net0,mac=00:16:3E:5e:6c:00",
  "-netdev", "type=tap,id=net0,ifname=vif3.0-emu,br=xenbr0,script=no,downscript=no",
  "-drive", "file=/dev/xvda,if=ide,index=0,media=disk,format=raw,cache=writeback",
  "-drive", "if=none,readonly=on,id=ide-5632,file=/dev/xvdc,format=raw",
  "-device", "ide-cd,drive=ide-5632,bus=ide.1,unit=0",
  "-incoming", "$STUBDOM_RESTORE_INCOMING_ARG",
  "-qubes-net:client_ip=10.137.0.5,dns_0=10.139.1.1,dns_1=10.139.1.2,gw=10.137.0.1,netmask=255.255.255.255",
  "-qubes-audio:audiovm_xid=0",
];

export function baseFixture(): Fixture {
  return {
    stub: 4,
    guest: 3,
    extra: {},
    target: "3",
    vm: "/vm/6a1c7a1e-2f0b-4c39-9e7a-58d0a1f6a003",
    name: "win10",
    argv: numbered(BASE_ARGS),
    vifs: new Map([
      [
        0,
        {
          front: { mac: "00:16:3e:5e:6c:00", handle: "0", "backend-id": "0", backend: "/local/domain/0/backend/vif/4/0" },
          backendDomid: 0,
          back: { mac: "00:16:3e:5e:6c:00", ip: "10.137.0.5 fd09:24ef:4179::a89:5", bridge: "xenbr0" },
        },
      ],
    ]),
    consoles: [1, 2],
    vbds: [51712, 51744],
  };
}

/** Writes the fixture into a fresh store as the toolstack (dom0) would. */
export function storeOf(f: Fixture): MemoryXenStore {
  const xs = new MemoryXenStore();
  const s = `/local/domain/${f.stub}`;
  const g = `/local/domain/${f.guest}`;
  xs.write(`${s}/domid`, String(f.stub));
  xs.write(`${s}/name`, "win10-dm");
  if (f.target !== null) xs.write(`${s}/target`, f.target);
  xs.write(`${g}/vm`, f.vm);
  xs.write(`${g}/name`, f.name);
  const vm = typeof f.vm === "string" ? f.vm : "/vm/raw";
  if (/^\/[A-Za-z0-9/_@-]+$/.test(vm)) {
    xs.mkdir(`${vm}/image/dm-argv`);
    for (const [k, v] of f.argv) xs.write(`${vm}/image/dm-argv/${k}`, v);
  }
  for (const [n, vif] of f.vifs) {
    for (const [k, v] of Object.entries(vif.front)) xs.write(`${s}/device/vif/${n}/${k}`, v);
    for (const [k, v] of Object.entries(vif.back))
      xs.write(`/local/domain/${vif.backendDomid}/backend/vif/${f.stub}/${n}/${k}`, v);
  }
  for (const c of f.consoles) xs.write(`${s}/device/console/${c}/type`, "ioemu");
  for (const d of f.vbds) xs.write(`${s}/device/vbd/${d}/virtual-device`, String(d));
  for (const [k, v] of Object.entries(f.extra)) {
    if (v === null) xs.rm(k);
    else xs.write(k, v);
  }
  return xs;
}

export function snapshotOf(f: Fixture, domid: number | null = f.stub): Snapshot {
  return readSnapshot(storeOf(f), { domid });
}
