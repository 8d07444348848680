import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, test } from "vitest";
import {
  EV_KEY, hasCapability, InputEventDecoder, isPowerPress, KEY_POWER, powerButtonNodes, realPowerButtonSys,
  sysfsInputDevices, watchPowerButtons, type InputDevice, type PowerButtonSys,
} from "../../agent/init/power-button.ts";
import { createLogger } from "../../agent/log.ts";

const EV_SYN = 0;

/** struct input_event as a 64-bit kernel writes it (time is ignored by the parser, so nonzero here). */
function event(type: number, code: number, value: number): Uint8Array {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, 1_700_000_000n, true);
  v.setBigUint64(8, 123_456n, true);
  v.setUint16(16, type, true);
  v.setUint16(18, code, true);
  v.setInt32(20, value, true);
  return b;
}
const join2 = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
};
/** What the ACPI button driver sends for one press: key down, sync, key up, sync. */
const press = () => join2(event(EV_KEY, KEY_POWER, 1), event(EV_SYN, 0, 0), event(EV_KEY, KEY_POWER, 0), event(EV_SYN, 0, 0));

const lines: string[] = [];
const log = createLogger({ sink: { write: (l) => lines.push(l) }, level: "debug" });
const dirs: string[] = [];
afterEach(() => {
  lines.length = 0;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("the decoder reads 24-byte events whether reads merge them or cut them anywhere", () => {
  const bytes = join2(press(), event(EV_KEY, 30, 2));
  for (const cuts of [[], [1], [23, 24, 25], [47, 50, 95, 96, 97]]) {
    const d = new InputEventDecoder();
    const got = [];
    let from = 0;
    for (const to of [...cuts, bytes.length]) {
      got.push(...d.push(bytes.subarray(from, to)));
      from = to;
    }
    expect(got, `cuts ${cuts}`).toEqual([
      { type: EV_KEY, code: KEY_POWER, value: 1 }, { type: EV_SYN, code: 0, value: 0 },
      { type: EV_KEY, code: KEY_POWER, value: 0 }, { type: EV_SYN, code: 0, value: 0 },
      { type: EV_KEY, code: 30, value: 2 },
    ]);
  }
  expect(new InputEventDecoder().push(event(EV_KEY, KEY_POWER, -1))).toEqual([{ type: EV_KEY, code: KEY_POWER, value: -1 }]);
});

test("only KEY_POWER going down is a press: release, auto-repeat, other keys and types are not", () => {
  expect(isPowerPress({ type: EV_KEY, code: KEY_POWER, value: 1 })).toBe(true);
  expect(isPowerPress({ type: EV_KEY, code: KEY_POWER, value: 0 })).toBe(false);
  expect(isPowerPress({ type: EV_KEY, code: KEY_POWER, value: 2 })).toBe(false);
  expect(isPowerPress({ type: EV_KEY, code: 142 /* KEY_SLEEP */, value: 1 })).toBe(false);
  expect(isPowerPress({ type: 4 /* EV_MSC */, code: KEY_POWER, value: 1 })).toBe(false);
});

test("capability bitmaps: hex words, most significant first, leading zero words left out", () => {
  expect(hasCapability("10000000000000 0", KEY_POWER)).toBe(true); // the ACPI Power Button
  expect(hasCapability("10000000000000 0", 142)).toBe(false);
  // The ACPI Sleep Button: KEY_SLEEP is bit 142, i.e. bit 14 of word 2.
  expect(hasCapability("4000 0 0", 142)).toBe(true);
  expect(hasCapability("4000 0 0", KEY_POWER)).toBe(false);
  expect(hasCapability("4000 0 0", 14)).toBe(false);
  expect(hasCapability("1 0", 64)).toBe(true);
  expect(hasCapability("1 0", 0)).toBe(false);
  expect(hasCapability("0", KEY_POWER)).toBe(false);
  expect(hasCapability("", KEY_POWER)).toBe(false);
  expect(hasCapability("zz 0", KEY_POWER)).toBe(false);
  expect(hasCapability("10000000000000 0\n", KEY_POWER)).toBe(true);
  // A compat (32-bit) kernel prints 32-bit words: KEY_POWER is bit 20 of word 3.
  expect(hasCapability("100000 0 0 0", KEY_POWER, 32)).toBe(true);
  expect(hasCapability("100000 0 0", KEY_POWER, 32)).toBe(false);
});

test("power button nodes: every event handler of a device that can report KEY_POWER", () => {
  const devices: InputDevice[] = [
    { id: "input0", name: "Power Button", keys: "10000000000000 0", handlers: ["event0"] },
    { id: "input1", name: "Sleep Button", keys: "4000 0 0", handlers: ["event1"] },
    { id: "input2", name: "AT Translated Set 2 keyboard", keys: "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe", handlers: ["event2", "mouse9"] },
    { id: "input3", name: "ImExPS/2 Generic Explorer Mouse", keys: "1f0000 0 0 0 0", handlers: ["event3", "mouse0"] },
    { id: "input4", name: "no handler", keys: "10000000000000 0", handlers: [] },
  ];
  expect(powerButtonNodes(devices)).toEqual([
    { path: "/dev/input/event0", name: "Power Button" },
    { path: "/dev/input/event2", name: "AT Translated Set 2 keyboard" },
  ]);
});

function fakeSys(devices: InputDevice[], failOpen: string[] = []): PowerButtonSys & { feed(path: string, b: Uint8Array): void } {
  const readers = new Map<string, (c: Uint8Array) => void>();
  return {
    inputDevices: () => devices,
    read(path, onChunk) {
      if (failOpen.includes(path)) throw new Error("ENOENT: no such file");
      readers.set(path, onChunk);
      return () => readers.delete(path);
    },
    feed: (path, b) => readers.get(path)?.(b),
  };
}

test("each press on any watched device calls onPress once; a device that cannot be opened is logged and skipped", () => {
  const sys = fakeSys([
    { id: "input0", name: "Power Button", keys: "10000000000000 0", handlers: ["event0"] },
    { id: "input1", name: "Power Button", keys: "10000000000000 0", handlers: ["event1"] },
    { id: "input2", name: "Gone", keys: "10000000000000 0", handlers: ["event5"] },
  ], ["/dev/input/event5"]);
  const pressed: string[] = [];
  const w = watchPowerButtons(sys, (d) => pressed.push(d), log);
  expect(w.devices).toEqual(["/dev/input/event0", "/dev/input/event1"]);
  const bytes = press();
  sys.feed("/dev/input/event0", bytes.subarray(0, 30));
  expect(pressed).toEqual(["/dev/input/event0 (Power Button)"]);
  sys.feed("/dev/input/event0", bytes.subarray(30));
  sys.feed("/dev/input/event1", join2(press(), press()));
  expect(pressed).toEqual(["/dev/input/event0 (Power Button)", "/dev/input/event1 (Power Button)", "/dev/input/event1 (Power Button)"]);
  expect(lines.join("")).toMatch(/power button \/dev\/input\/event5 \(Gone\): ENOENT/);
  w.stop();
  sys.feed("/dev/input/event0", press());
  expect(pressed).toHaveLength(3);
});

test("no power button (a Xen stub domain) is one log line, not an error", () => {
  const w = watchPowerButtons(fakeSys([]), () => undefined, log);
  expect(w.devices).toEqual([]);
  expect(lines.join("")).toMatch(/info .*no input device reports KEY_POWER/);
});

test("real implementation: sysfs-shaped directories and a non-blocking FIFO read through Bun's poller", async () => {
  const root = mkdtempSync(join(tmpdir(), "power-button-"));
  dirs.push(root);
  const sysfs = join(root, "class-input");
  const device = (id: string, name: string, keys: string, handlers: string[]) => {
    mkdirSync(join(sysfs, id, "capabilities"), { recursive: true });
    writeFileSync(join(sysfs, id, "name"), `${name}\n`);
    writeFileSync(join(sysfs, id, "capabilities", "key"), `${keys}\n`);
    for (const h of handlers) mkdirSync(join(sysfs, id, h));
  };
  device("input0", "Power Button", "10000000000000 0", ["event0"]);
  device("input1", "Sleep Button", "4000 0 0", ["event1"]);
  mkdirSync(join(sysfs, "event0")); // sysfs lists the handlers beside the devices: not devices
  mkdirSync(join(sysfs, "mice"));
  expect(sysfsInputDevices(sysfs).sort((a, b) => a.id.localeCompare(b.id))).toEqual([
    { id: "input0", name: "Power Button", keys: "10000000000000 0", handlers: ["event0"] },
    { id: "input1", name: "Sleep Button", keys: "4000 0 0", handlers: ["event1"] },
  ]);

  const fifo = join(root, "event0");
  const mk = Bun.spawnSync(["mkfifo", fifo]);
  expect(mk.exitCode).toBe(0);
  // O_RDWR keeps a writer on the FIFO, so the reader never sees end-of-file.
  const writer = openSync(fifo, constants.O_RDWR);
  const sys = realPowerButtonSys(sysfs);
  const pressed: string[] = [];
  const real: PowerButtonSys = { inputDevices: sys.inputDevices, read: (_path, onChunk, onError) => sys.read(fifo, onChunk, onError) };
  const w = watchPowerButtons(real, (d) => pressed.push(d), log);
  try {
    expect(w.devices).toEqual(["/dev/input/event0"]);
    writeSync(writer, press());
    for (let i = 0; i < 200 && pressed.length === 0; i++) await Bun.sleep(5);
    expect(pressed).toEqual(["/dev/input/event0 (Power Button)"]);
  } finally {
    w.stop();
    closeSync(writer);
  }
});
