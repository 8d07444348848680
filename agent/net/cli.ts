// `stubdom-init net link|unlink|show`: the agent's own networking code, run by hand.
import { parseArgs } from "node:util";
import { linkNic, nicStats, NicConfigError, NetlinkError, openNetlink, unlinkNic, type NicStats } from "./index.ts";

const usage = `usage:
  stubdom-init net link --netfront IF --tap IF [--mtu N] [--allow-ip CIDR]... [--local-dhcp]
  stubdom-init net unlink --netfront IF --tap IF [--delete-tap]
  stubdom-init net show [--json] [IF...]
`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: sub === "show",
      options: {
        netfront: { type: "string" },
        tap: { type: "string" },
        mtu: { type: "string" },
        "allow-ip": { type: "string", multiple: true },
        "local-dhcp": { type: "boolean" },
        "delete-tap": { type: "boolean" },
        json: { type: "boolean" },
      },
    });
  } catch (e) {
    process.stderr.write(`stubdom-init net: ${(e as Error).message}\n${usage}`);
    return 2;
  }
  const o = parsed.values;
  if ((sub === "link" || sub === "unlink") && (!o.netfront || !o.tap)) {
    process.stderr.write(`stubdom-init net ${sub}: --netfront and --tap are required\n${usage}`);
    return 2;
  }
  if (sub !== "link" && sub !== "unlink" && sub !== "show") {
    process.stderr.write(usage);
    return 2;
  }
  const mtu = o.mtu === undefined ? undefined : /^\d+$/.test(o.mtu) ? Number(o.mtu) : Number.NaN;
  const nl = openNetlink();
  try {
    if (sub === "link") {
      const t0 = performance.now();
      const r = await linkNic(nl, { netfront: o.netfront!, tap: o.tap!, mtu, allowedSources: o["allow-ip"], localDhcp: o["local-dhcp"] });
      const ms = (performance.now() - t0).toFixed(1);
      for (const w of r.warnings) process.stderr.write(`stubdom-init net link: warning: ${w}\n`);
      process.stdout.write(`linked ${r.netfront.name} (${r.netfront.index}) <-> ${r.tap.name} (${r.tap.index})${r.mtu ? ` mtu ${r.mtu}` : ""}${r.guard ? " with guard" : ""} in ${ms} ms\n`);
    } else if (sub === "unlink") {
      await unlinkNic(nl, { netfront: o.netfront!, tap: o.tap!, deleteTap: o["delete-tap"] });
      process.stdout.write(`unlinked ${o.netfront} <-> ${o.tap}\n`);
    } else {
      const stats = await nicStats(nl, parsed.positionals);
      process.stdout.write(o.json ? `${JSON.stringify(stats, null, 2)}\n` : formatStats(stats));
    }
    return 0;
  } catch (e) {
    if (e instanceof NicConfigError || e instanceof NetlinkError) {
      process.stderr.write(`stubdom-init net ${sub}: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    nl.close();
  }
}

export function formatStats(stats: NicStats[]): string {
  if (stats.length === 0) return "no links with an ingress redirect\n";
  const byIndex = new Map(stats.map((s) => [s.index, s.name]));
  return stats.map((s) => {
    const peer = s.redirectTo === undefined ? "-" : byIndex.get(s.redirectTo) ?? `ifindex ${s.redirectTo}`;
    return [
      `${s.name} (${s.index}) ${s.up ? "up" : "down"}${s.lowerUp ? "" : " no-carrier"} mtu ${s.mtu} -> ${peer}${s.guard ? " guarded" : ""}`,
      `  rx ${s.rxPackets} pkts ${s.rxBytes} B, tx ${s.txPackets} pkts ${s.txBytes} B, dropped rx ${s.rxDropped} tx ${s.txDropped}`,
      `  redirected ${s.redirectedPackets} pkts ${s.redirectedBytes} B, failures ${s.redirectFailures}, spoofed dropped ${s.spoofDrops}`,
    ].join("\n");
  }).join("\n") + "\n";
}
