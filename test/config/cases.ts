// The golden cases: each is the base guest with one change. update-golden.ts turns them into
// test/config/golden/<name>.json (snapshot + expected result), which are reviewed and committed.
import { baseFixture, BASE_ARGS, numbered, type Fixture } from "./fixture.ts";

export interface Case {
  description: string;
  cmdline?: string;
  change: (f: Fixture) => void;
}

const setArg = (f: Fixture, index: number, value: string | Uint8Array) => {
  f.argv[index] = [f.argv[index]![0], value];
};
const argIndex = (arg: string) => BASE_ARGS.indexOf(arg);
const vif0 = (f: Fixture) => f.vifs.get(0)!;

export const cases: Record<string, Case> = {
  "base": { description: "a Qubes-style HVM guest: one NIC, disk + CD-ROM, serial, restore", change: () => {} },
  "minimal": {
    description: "no NIC (-net none), no disks, no consoles 1/2, no Qubes arguments",
    cmdline: "console=hvc0 stubdom.loglevel=debug stubdom.crash=poweroff",
    change: (f) => {
      f.argv = numbered(["-xen-domid", "3", "-no-shutdown", "-nodefaults", "-name", "tiny", "-net", "none"]);
      f.vifs.clear();
      f.consoles = [];
      f.vbds = [];
      f.name = "tiny";
    },
  },
  "missing-target": { description: "no target key: not a stub domain", change: (f) => void (f.target = null) },
  "target-not-a-number": { description: "target is not a domid", change: (f) => void (f.target = "3a") },
  "target-reserved-domid": { description: "target is DOMID_SELF (0x7ff0)", change: (f) => void (f.target = "32752") },
  "vm-outside-vm": {
    description: "the guest's vm path points outside /vm/",
    change: (f) => void (f.vm = "/local/domain/0/evil"),
  },
  "vm-nested": { description: "the vm path is not one component under /vm/", change: (f) => void (f.vm = "/vm/a/b") },
  "args-1500": {
    description: "1,500 arguments: numeric, not lexical, order past 999",
    change: (f) => {
      const extra: string[] = [];
      for (let i = 0; extra.length + BASE_ARGS.length + 2 <= 1500; i++) extra.push("-global", `isa-debugcon.iobase=${i}`);
      if (extra.length + BASE_ARGS.length < 1500) extra.push("-no-hpet");
      f.argv = numbered([...BASE_ARGS, ...extra]);
      // Listed in reverse to prove the order comes from the numbers, not the server.
      f.argv.reverse();
    },
  },
  "arg-empty": { description: "an empty argument", change: (f) => setArg(f, 6, "") },
  "arg-4000-bytes": {
    description: "an argument of 4,000 bytes is accepted byte-exact",
    change: (f) => setArg(f, argIndex("-smbios") + 1, `type=11,value=${"é".repeat(1993)}`),
  },
  "arg-control-chars": {
    description: "arguments with a newline and an escape character",
    change: (f) => {
      setArg(f, 6, "win10\nrm -rf /");
      setArg(f, 8, "none\u001b[2J");
    },
  },
  "arg-invalid-utf8": {
    description: "an argument that is not valid UTF-8 (kept as base64 in the snapshot)",
    change: (f) => setArg(f, 6, new Uint8Array([0x77, 0x69, 0x6e, 0xff, 0xfe, 0x31])),
  },
  "argv-duplicate-number": {
    description: "dm-argv has both 1 and 001",
    change: (f) => void f.argv.push(["1", "-S"]),
  },
  "argv-missing-number": {
    description: "dm-argv skips 003",
    change: (f) => void (f.argv = f.argv.filter(([k]) => k !== "003")),
  },
  "argv-non-numeric": {
    description: "dm-argv has a key that is not a number, and a 000",
    change: (f) => void f.argv.push(["abc", "-S"], ["000", "-S"]),
  },
  "argv-too-many": {
    description: "4,097 dm-argv entries",
    change: (f) => {
      f.argv = numbered(Array.from({ length: 4097 }, () => "-S"));
    },
  },
  "argv-empty": { description: "dm-argv exists but is empty", change: (f) => void (f.argv = []) },
  "netdev-duplicate-id": {
    description: "two netdevs with the same id",
    change: (f) =>
      void f.argv.push(...numbered([...BASE_ARGS, "-netdev", "type=tap,id=net0,ifname=vif3.1-emu,script=no"]).slice(BASE_ARGS.length)),
  },
  "netdev-no-vif": {
    description: "a netdev whose ifname matches no vif",
    change: (f) => {
      const i = argIndex("-netdev") + 1;
      setArg(f, i, "type=tap,id=net1,ifname=vif3.1-emu,script=no,downscript=no");
      setArg(f, argIndex("-netdev") - 1, "rtl8139,id=nic1,netdev=net1,mac=00:16:3e:5e:6c:01");
    },
  },
  "netdev-no-device": {
    description: "a tap netdev that no -device uses",
    change: (f) => setArg(f, argIndex("-netdev") - 1, "rtl8139,id=nic0,mac=00:16:3e:5e:6c:00"),
  },
  "mac-7-octets": {
    description: "the vif's MAC has 7 octets; the emulated NIC's is multicast",
    change: (f) => {
      vif0(f).front.mac = "00:16:3e:5e:6c:00:01";
      setArg(f, argIndex("-netdev") - 1, "rtl8139,id=nic0,netdev=net0,mac=01:00:5e:00:00:01");
    },
  },
  "ip-host-bits": {
    description: "backend ip is a CIDR with host bits set",
    change: (f) => void (vif0(f).back.ip = "10.137.0.5/24"),
  },
  "ip-garbage": {
    description: "backend ip entries that are not addresses",
    change: (f) => void (vif0(f).back.ip = "10.137.0.300 fe80::1%eth0 10.0.0.0/33"),
  },
  "mtu-70000": { description: "backend mtu 70000", change: (f) => void (vif0(f).back.mtu = "70000") },
  "mtu-9000": {
    description: "jumbo frames: backend mtu wins over the frontend's",
    change: (f) => {
      vif0(f).back.mtu = "9000";
      vif0(f).front.mtu = "1500";
    },
  },
  "backend-elsewhere": {
    description: "the vif's backend points at another domain's vif",
    change: (f) => void (vif0(f).front.backend = "/local/domain/0/backend/vif/9/0"),
  },
  "bridge-bad": { description: "backend bridge name longer than 15 bytes", change: (f) => void (vif0(f).back.bridge = "a-very-long-bridge0") },
  "qubes-net-bad": {
    description: "a -qubes-net: with a non-contiguous netmask and an unknown item",
    change: (f) =>
      setArg(f, argIndex("-incoming") + 2, "-qubes-net:client_ip=10.137.0.5,gw=10.137.0.1,netmask=255.0.255.0,evil=1"),
  },
  "qubes-unknown": { description: "an unknown -qubes- pseudo-argument", change: (f) => setArg(f, argIndex("-incoming") + 3, "-qubes-usb:x=1") },
  "incoming-no-console": {
    description: "restore requested but device/console/2 is missing",
    change: (f) => void (f.consoles = [1]),
  },
  "incoming-other": {
    description: "-incoming followed by something other than the placeholder",
    change: (f) => setArg(f, argIndex("-incoming") + 1, "tcp:0:4444"),
  },
  "name-invalid-utf8": {
    description: "the guest name is not valid UTF-8",
    change: (f) => void (f.name = new Uint8Array([0xc3, 0x28])),
  },
};

export function fixtureFor(name: string): Fixture {
  const f = baseFixture();
  cases[name]!.change(f);
  return f;
}
