// `stubdom-init config`: read a stub domain's configuration through whatever xenstore
// XENSTORED_PATH points at (or a saved snapshot) and print it, or its errors with exit 1.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { XenStore } from "../xenstore/types.ts";
import { parseCmdline } from "./cmdline.ts";
import { domidFromText } from "./keys.ts";
import { loadConfig } from "./load.ts";
import { parseConfig } from "./parse.ts";
import type { ParseResult, Snapshot, StubdomConfig } from "./types.ts";

const USAGE = `usage: stubdom-init config [--domid S] [--cmdline TEXT] [--json] [--snapshot] [--from FILE]
  --domid S       the stub domain's domid (needed unless run inside the stub domain)
  --cmdline TEXT  parse these stubdom.* kernel options too (default: none, all defaults)
  --json          print the result as JSON
  --snapshot      print the raw snapshot read from xenstore instead of the config
  --from FILE     parse a saved snapshot (JSON) instead of reading xenstore
`;

export interface CliIo {
  openXenStore(): XenStore | Promise<XenStore>;
  readFile(path: string): string;
  out(text: string): void;
  err(text: string): void;
}

function describe(c: StubdomConfig): string {
  const lines = [
    `stub domain ${c.stubDomid} for guest ${c.guestDomid} (${JSON.stringify(c.guestName)}), vm ${c.vmPath}`,
    `dm-argv: ${c.dmArgv.length} arguments${c.restore ? `, restore placeholder at ${c.restore.argIndex}` : ""}`,
    `consoles: save ${c.consoles.save ? "yes" : "no"}, restore ${c.consoles.restore ? "yes" : "no"}; serials: ${c.serials.join(" ") || "none"}`,
  ];
  for (const d of c.disks) lines.push(`disk ${d.path}${d.cdrom ? " (cdrom)" : ""}${d.attached ? "" : " (no vbd attached)"}`);
  for (const n of c.nics) {
    lines.push(
      `nic ${n.index}: ${n.model} ${n.guestMac} via tap ${n.ifname} <-> ${n.netfront.name} ${n.netfront.mac}, mtu ${n.mtu}, ` +
        `backend dom${n.backend.domid}${n.backend.bridge ? ` bridge ${n.backend.bridge}` : ""}` +
        `, sources ${n.allowedSources.join(" ") || "any"}`,
    );
  }
  if (c.qubes.net) lines.push(`qubes net: ${c.qubes.net.clientIp} gw ${c.qubes.net.gateway} mask ${c.qubes.net.netmask} dns ${c.qubes.net.dns.join(" ")}`);
  if (c.qubes.audio) lines.push(`qubes audio: audiovm ${c.qubes.audio.audiovmXid}`);
  lines.push(`argv: ${c.dmArgv.map((a) => JSON.stringify(a)).join(" ")}`);
  return `${lines.join("\n")}\n`;
}

export async function runConfig(argv: string[], io: CliIo): Promise<number> {
  let flags;
  try {
    flags = parseArgs({
      args: argv,
      options: {
        domid: { type: "string" },
        cmdline: { type: "string" },
        json: { type: "boolean" },
        snapshot: { type: "boolean" },
        from: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    io.err(`stubdom-init config: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const cmd = parseCmdline(flags.cmdline ?? "");
  if (cmd.errors.length > 0) {
    for (const e of cmd.errors) io.err(`${e.key}: ${e.reason}\n`);
    return 1;
  }
  let options = cmd.options;
  if (flags.domid !== undefined) {
    const d = domidFromText(flags.domid);
    if (d === null) {
      io.err(`stubdom-init config: --domid ${JSON.stringify(flags.domid)} is not a domid\n`);
      return 2;
    }
    options = { ...options, domid: d };
  }

  let snapshot: Snapshot | unknown;
  let result: ParseResult;
  try {
    if (flags.from !== undefined) {
      snapshot = JSON.parse(io.readFile(flags.from)) as unknown;
      result = parseConfig(snapshot, options);
    } else {
      const xs = await io.openXenStore();
      try {
        ({ snapshot, result } = loadConfig(xs, options));
      } finally {
        xs.close();
      }
    }
  } catch (e) {
    io.err(`stubdom-init config: ${(e as Error).message}\n`);
    return 1;
  }

  if (flags.snapshot) io.out(`${JSON.stringify(snapshot, null, 1)}\n`);
  else if (flags.json) io.out(`${JSON.stringify(result, null, 1)}\n`);
  else if (result.ok) io.out(describe(result.config));
  if (!result.ok) {
    if (!flags.json) for (const e of result.errors) io.err(`${e.key}: ${e.reason}\n`);
    return 1;
  }
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  return runConfig(argv, {
    openXenStore: async () => (await import("../../ffi/xenstore.ts")).openXenStore(),
    readFile: (path) => readFileSync(path, "utf8"),
    out: (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
  });
}
