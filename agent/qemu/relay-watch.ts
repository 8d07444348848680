// Watches one relay session's QMP traffic for one command, and runs a hook before QEMU's
// success answer to it goes on to the client: the save stream (init/save-stream.ts) must be on
// console 1 before libxl, told the save is done, goes on. Everything else passes unchanged and
// unparsed beyond finding line ends. Bounds: a line longer than MAX_LINE is skipped (QMP
// commands and answers are far shorter), at most MAX_PENDING commands are remembered.
import type { Logger } from "../log.ts";

const MAX_LINE = 64 * 1024;
const MAX_PENDING = 16;

/** Splits a byte stream into lines, bounded; an overlong line is dropped whole. */
export class LineSplitter {
  private buf = "";
  private skipping = false;
  private readonly dec = new TextDecoder();

  push(chunk: Uint8Array): string[] {
    const text = this.dec.decode(chunk, { stream: true });
    const out: string[] = [];
    let start = 0;
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
      if (!this.skipping) out.push(this.buf + text.slice(start, nl));
      this.buf = "";
      this.skipping = false;
      start = nl + 1;
    }
    if (!this.skipping) this.buf += text.slice(start);
    if (this.buf.length > MAX_LINE) {
      this.buf = "";
      this.skipping = true;
    }
    return out;
  }
}

function parse(line: string): Record<string, unknown> | null {
  const t = line.trim();
  if (!t.startsWith("{")) return null;
  try {
    const v = JSON.parse(t) as unknown;
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export interface RelayWatch {
  /** Bytes the client sent to QEMU. */
  fromClient(chunk: Uint8Array): void;
  /** Resolves when `chunk`, from QEMU, may go on to the client. */
  beforeClient(chunk: Uint8Array): Promise<void>;
}

/** A watch that runs `hook` once QEMU answered `command` successfully, before the answer is forwarded. */
export function replyHook(command: string, hook: () => Promise<void>, log: Logger): RelayWatch {
  const fromClient = new LineSplitter();
  const fromQemu = new LineSplitter();
  const pending: string[] = [];
  return {
    fromClient(chunk) {
      for (const line of fromClient.push(chunk)) {
        const msg = parse(line);
        if (msg?.execute !== command) continue;
        if (pending.length >= MAX_PENDING) pending.shift();
        pending.push(JSON.stringify(msg.id ?? null));
      }
    },
    async beforeClient(chunk) {
      const lines = fromQemu.push(chunk);
      if (pending.length === 0) return;
      for (const line of lines) {
        const msg = parse(line);
        if (!msg || !("return" in msg || "error" in msg)) continue;
        const at = pending.indexOf(JSON.stringify(msg.id ?? null));
        if (at < 0) continue;
        pending.splice(at, 1);
        if ("error" in msg) continue;
        try {
          await hook();
        } catch (e) {
          log.error(`${command}: ${(e as Error).message}`);
        }
      }
    },
  };
}
