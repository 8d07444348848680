// The power button: ACPI's "Power Button" (what a host's power key or QEMU's QMP
// `system_powerdown` press) reaches us as a Linux input device, /dev/input/eventN (the `button`
// and `evdev` modules, devtmpfs). A press is the same graceful stop as SIGTERM: QMP quit, TERM,
// KILL with deadlines, sync, power off. Nobody else listens (no acpid, no logind), and the
// kernel itself does nothing on the key.
//
// Which devices: every input device whose key capabilities include KEY_POWER, the test
// logind applies; in a VM that is the ACPI button and the AT keyboard. Under Xen a stub domain
// has no ACPI and no keyboard: the list is empty and `xl shutdown` arrives through
// /sbin/poweroff instead (stage 0's poweroff mode, agent/stage0/stage0.c).
import { constants, openSync, readdirSync, readFileSync } from "node:fs";
import { readLoop } from "../../ffi/readloop.ts";
import type { Logger } from "../log.ts";

export const EV_KEY = 1;
export const KEY_POWER = 116;
/** struct input_event on a 64-bit kernel: struct timeval (16), u16 type, u16 code, s32 value. */
export const INPUT_EVENT_SIZE = 24;

export interface InputEvent {
  type: number;
  code: number;
  value: number;
}

/** evdev reads whole events, but a stream may merge or split reads: keep what a chunk cut off. */
export class InputEventDecoder {
  private rest = new Uint8Array(0);

  push(chunk: Uint8Array): InputEvent[] {
    const buf = this.rest.length ? concat(this.rest, chunk) : chunk;
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const events: InputEvent[] = [];
    let at = 0;
    for (; at + INPUT_EVENT_SIZE <= buf.length; at += INPUT_EVENT_SIZE) {
      events.push({ type: view.getUint16(at + 16, true), code: view.getUint16(at + 18, true), value: view.getInt32(at + 20, true) });
    }
    this.rest = buf.slice(at);
    return events;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Key down (1); auto-repeat (2) and release (0) are not presses. */
export const isPowerPress = (e: InputEvent): boolean => e.type === EV_KEY && e.code === KEY_POWER && e.value === 1;

/**
 * Whether bit `code` is set in a sysfs capability bitmap (`capabilities/key`): hex words of
 * `wordBits` bits, most significant first, leading zero words left out ("10000000000000 0" is
 * KEY_POWER alone). Text that is not such a bitmap has no bits.
 */
export function hasCapability(text: string, code: number, wordBits = 64): boolean {
  const words = text.trim().split(/\s+/).filter((w) => w !== "");
  if (words.length === 0 || words.some((w) => !/^[0-9a-f]{1,16}$/i.test(w))) return false;
  const word = words[words.length - 1 - Math.floor(code / wordBits)];
  if (word === undefined) return false;
  return ((BigInt(`0x${word}`) >> BigInt(code % wordBits)) & 1n) === 1n;
}

export interface InputDevice {
  /** sysfs name (input3), its `name` file, its `capabilities/key`, its event handlers (event2). */
  id: string;
  name: string;
  keys: string;
  handlers: string[];
}

/** The /dev/input nodes of the devices that can report KEY_POWER. */
export function powerButtonNodes(devices: readonly InputDevice[]): Array<{ path: string; name: string }> {
  return devices
    .filter((d) => hasCapability(d.keys, KEY_POWER))
    .flatMap((d) => d.handlers.filter((h) => /^event\d{1,4}$/.test(h)).map((h) => ({ path: `/dev/input/${h}`, name: d.name })));
}

export interface PowerButtonSys {
  inputDevices(): InputDevice[];
  /** Reads `path` without blocking the event loop until the returned stop is called. */
  read(path: string, onChunk: (c: Uint8Array) => void, onError: (e: unknown, fatal: boolean) => void): () => void;
}

/**
 * Watches every power button; `onPress` runs once per press. A device that cannot be opened
 * or read is logged and left alone: the SIGTERM and Ctrl-Alt-Del paths still work.
 */
export function watchPowerButtons(sys: PowerButtonSys, onPress: (device: string) => void, log: Logger): { devices: string[]; stop(): void } {
  let nodes: Array<{ path: string; name: string }>;
  try {
    nodes = powerButtonNodes(sys.inputDevices());
  } catch (e) {
    log.warn(`power button: cannot list input devices: ${(e as Error).message}`);
    nodes = [];
  }
  if (nodes.length === 0) log.info("power button: no input device reports KEY_POWER");
  const stops: Array<() => void> = [];
  const devices: string[] = [];
  for (const { path, name } of nodes) {
    const decoder = new InputEventDecoder();
    try {
      stops.push(sys.read(path, (chunk) => {
        for (const e of decoder.push(chunk)) if (isPowerPress(e)) onPress(`${path} (${name})`);
      }, (e, fatal) => log.warn(`power button ${path}: ${(e as Error).message ?? String(e)}${fatal ? "; no longer watched" : ""}`)));
      devices.push(path);
      log.info(`power button: watching ${path} (${name})`);
    } catch (e) {
      log.warn(`power button ${path} (${name}): ${(e as Error).message}`);
    }
  }
  return { devices, stop: () => stops.forEach((s) => s()) };
}

/** Input devices as sysfs lists them (/sys/class/input/inputN/{name,capabilities/key,eventM}). */
export function sysfsInputDevices(root = "/sys/class/input"): InputDevice[] {
  // A device unplugged while we look reads as empty: it then has no capabilities and no nodes.
  const text = (p: string) => {
    try {
      return readFileSync(p, "utf8").trim().slice(0, 4096);
    } catch {
      return "";
    }
  };
  const entries = (p: string) => {
    try {
      return readdirSync(p);
    } catch {
      return [];
    }
  };
  return readdirSync(root)
    .filter((id) => /^input\d{1,6}$/.test(id))
    .map((id) => ({
      id,
      name: text(`${root}/${id}/name`),
      keys: text(`${root}/${id}/capabilities/key`),
      handlers: entries(`${root}/${id}`).filter((h) => /^event\d{1,4}$/.test(h)),
    }));
}

/** Linux's O_CLOEXEC (x86-64, arm64): node:fs does not export it, and QEMU must not inherit the fd. */
const O_CLOEXEC = 0o2000000;

/** The real machine: sysfs, and the device node opened O_NONBLOCK and read in Bun's poller. */
export function realPowerButtonSys(root = "/sys/class/input"): PowerButtonSys {
  return {
    inputDevices: () => sysfsInputDevices(root),
    // A blocking character device fd would freeze the event loop (bun-as-pid1.md).
    read: (path, onChunk, onError) => readLoop(openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | O_CLOEXEC), onChunk, onError),
  };
}
