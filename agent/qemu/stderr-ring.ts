// QEMU's stderr: the last lines are kept for the health report (why did it die?), and echoed
// to the console at a bounded rate so a flooding QEMU cannot drown hvc0 or the agent.

export interface RingOptions {
  /** Lines kept. */
  lines: number;
  /** Bytes kept per line (longer lines are cut). */
  lineBytes: number;
  /** Lines echoed per window; the rest are counted and summarised. */
  echoPerWindow: number;
  windowMs: number;
}

export const DEFAULT_RING: RingOptions = { lines: 20, lineBytes: 200, echoPerWindow: 50, windowMs: 1000 };

export class StderrRing {
  private readonly ring: string[] = [];
  private partial = "";
  private windowStart = -Infinity;
  private echoed = 0;
  private suppressed = 0;
  total = 0;

  constructor(
    private readonly opts: RingOptions,
    private readonly echo: (line: string) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  push(text: string): void {
    const parts = (this.partial + text).split("\n");
    this.partial = parts.pop() ?? "";
    if (this.partial.length > this.opts.lineBytes * 4) {
      parts.push(this.partial);
      this.partial = "";
    }
    for (const p of parts) this.line(p);
  }

  /** Reports lines held back in the current window (call when the stream ends). */
  flush(): void {
    if (this.suppressed > 0) this.echo(`(${this.suppressed} lines of stderr not shown)`);
    this.suppressed = 0;
  }

  /** The last lines, oldest first, including an unterminated tail. */
  tail(): string[] {
    const out = [...this.ring];
    if (this.partial) out.push(cut(this.partial, this.opts.lineBytes));
    return out.slice(-this.opts.lines);
  }

  private line(raw: string): void {
    const line = cut(raw.replace(/\r$/, ""), this.opts.lineBytes);
    this.total++;
    this.ring.push(line);
    if (this.ring.length > this.opts.lines) this.ring.shift();
    const t = this.now();
    if (t - this.windowStart >= this.opts.windowMs) {
      if (this.suppressed > 0) this.echo(`(${this.suppressed} lines of stderr not shown)`);
      this.windowStart = t;
      this.echoed = 0;
      this.suppressed = 0;
    }
    if (this.echoed < this.opts.echoPerWindow) {
      this.echoed++;
      this.echo(line);
    } else {
      this.suppressed++;
    }
  }
}

function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
