// `stubdom-init exporter --listen ADDR:PORT`: serves /metrics (Prometheus text format) from
// dom0. The reports are kept up to date by xenstore watches (watch.ts), never read per scrape:
// a scrape renders the last frame held in memory, so its cost is bounded by the number of stub
// domains (at most MAX_DOMAINS) whatever the scrape rate, and memory holds one frame only.
import { parseArgs } from "node:util";
import type { XenStore } from "../xenstore/types.ts";
import { guestNames, renderPrometheus } from "./prometheus.ts";
import { systemClock, type HeartbeatSeen, type StubReport } from "./reader.ts";
import { escapeText } from "./sanitize.ts";
import { watchStatus } from "./watch.ts";

const USAGE = "usage: stubdom-init exporter --listen ADDR:PORT\n";

/** "127.0.0.1:9714", "[::1]:9714" or ":9714" (every address); port 0 picks a free one. Undefined if malformed. */
export function parseListen(s: string): { hostname: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):([0-9]{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { hostname: m[1] ?? (m[2] || "0.0.0.0"), port };
}

export interface Exporter {
  url: string;
  stop(): Promise<void>;
}

/** Starts watching and serving; `xs` must deliver watch events on its own (watchWakeups "loop"). */
export function startExporter(xs: XenStore, listen: { hostname: string; port: number }): Exporter {
  let reports: StubReport[] = [];
  let notes: string[] = [];
  let names = new Map<number, string>();
  let frames = 0;
  const seen = new Map<number, HeartbeatSeen>();
  const watch = watchStatus({
    xs,
    selection: { all: true },
    seen,
    onFrame: (frame) => {
      reports = frame.reports;
      // A remark is logged when it appears, not on every frame.
      for (const n of frame.notes) if (!notes.includes(n)) process.stderr.write(`stubdom-init exporter: ${n}\n`);
      notes = frame.notes;
      names = guestNames(xs, frame.reports);
      frames++;
    },
  });
  const server = Bun.serve({
    hostname: listen.hostname,
    port: listen.port,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path !== "/metrics") return new Response("stubdom-init exporter: see /metrics\n", { status: 404 });
      const body =
        renderPrometheus(reports, { clock: systemClock, names, seen }) +
        `# HELP xen_stubdom_exporter_frames_total Frames the exporter read after xenstore watch events.\n` +
        `# TYPE xen_stubdom_exporter_frames_total counter\nxen_stubdom_exporter_frames_total ${frames}\n` +
        `# HELP xen_stubdom_exporter_notes Remarks on the last frame (a truncated scan, a watch that failed); the exporter's log says which.\n` +
        `# TYPE xen_stubdom_exporter_notes gauge\nxen_stubdom_exporter_notes ${notes.length}\n`;
      return new Response(body, { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
    },
  });
  return {
    url: `http://${server.hostname?.includes(":") ? `[${server.hostname}]` : server.hostname}:${server.port}/metrics`,
    async stop() {
      await server.stop(true);
      watch.stop();
    },
  };
}

export async function run(argv: string[]): Promise<number> {
  let listenArg: string | undefined;
  try {
    listenArg = parseArgs({ args: argv, options: { listen: { type: "string" } }, strict: true }).values.listen;
  } catch (e) {
    process.stderr.write(`stubdom-init exporter: ${escapeText((e as Error).message)}\n${USAGE}`);
    return 2;
  }
  const listen = listenArg === undefined ? undefined : parseListen(listenArg);
  if (!listen) {
    process.stderr.write(`stubdom-init exporter: --listen ADDR:PORT is required${listenArg ? `, not "${escapeText(listenArg)}"` : ""}\n${USAGE}`);
    return 2;
  }
  let xs: XenStore;
  try {
    const { openXenStore } = await import("../../ffi/xenstore.ts");
    xs = openXenStore({ watchWakeups: "loop" });
  } catch (e) {
    process.stderr.write(`stubdom-init exporter: cannot reach xenstore: ${escapeText((e as Error).message)}\n`);
    return 1;
  }
  let exporter: Exporter;
  try {
    exporter = startExporter(xs, listen);
  } catch (e) {
    xs.close();
    process.stderr.write(`stubdom-init exporter: cannot listen on ${escapeText(listenArg ?? "")}: ${escapeText((e as Error).message)}\n`);
    return 1;
  }
  process.stderr.write(`stubdom-init exporter: serving ${exporter.url}\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await exporter.stop();
  xs.close();
  return 0;
}
