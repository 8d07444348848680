// The subcommands of `stubdom-init` when it is not PID 1. Each lives in its own module and is
// loaded only when asked for, so PID 1 does not pay for the dom0 tools' code at start-up.

export interface Command {
  summary: string;
  usage: string;
  load: () => Promise<{ run(argv: string[]): Promise<number> }>;
}

export const commands: Record<string, Command> = {
  status: {
    summary: "show the health of stub domains (dom0 side)",
    usage: "status [GUEST_DOMID...|--all] [--json|--prometheus] [--watch]",
    load: () => import("./health/cli.ts"),
  },
  exporter: {
    summary: "serve stub domain health as Prometheus metrics over HTTP (dom0 side)",
    usage: "exporter --listen ADDR:PORT",
    load: () => import("./health/exporter.ts"),
  },
  console0: {
    summary: "drain stub domains' console 0 where dom0's QEMU 8.2+ does not (dom0 side, Xen 4.20 on Debian 13)",
    usage: "console0 [--once]",
    load: () => import("./console0/cli.ts"),
  },
  config: {
    summary: "read and validate a stub domain's configuration from xenstore",
    usage: "config --domid S [--json]",
    load: () => import("./config/cli.ts"),
  },
  net: {
    summary: "join a netfront to a tap with kernel redirects, or show them",
    usage: "net link --netfront IF --tap IF [--mtu N] [--allow-ip CIDR]... | net unlink ... | net show",
    load: () => import("./net/cli.ts"),
  },
  xenstored: {
    summary: "run a xenstore server on a UNIX socket (development and tests)",
    usage: "xenstored --socket PATH [--domain-socket S:PATH]... [--load FILE] [--save FILE] [--trace]",
    load: () => import("./xenstore/server-cli.ts"),
  },
  "simulate-toolstack": {
    summary: "write what libxl writes for a Linux stub domain, then wait for it",
    usage:
      "simulate-toolstack --socket PATH --guest FILE [--guest-domid G] [--stub-domid S] [--timeout SECS] [--exit-when-running] [--destroy]",
    load: () => import("./toolstack/cli.ts"),
  },
  init: {
    summary: "run the PID 1 logic as a subreaper (tests and debugging)",
    usage: "init --plan FILE [--subreaper] [--run-dir D] [--health-file F] [--hypervisor-log F] [--console1 P] [--console2 P] [--loglevel L]",
    load: () => import("./init/cli.ts"),
  },
};

export function helpText(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    "stubdom-init: PID 1 for Xen Linux device-model stub domains",
    "",
    "As PID 1 it boots the stub domain and supervises QEMU. Otherwise:",
    "  stubdom-init COMMAND [ARGS...]",
    "",
    "Commands:",
    ...lines,
    "",
    "Run `stubdom-init COMMAND --help` for a command's usage.",
    "",
  ].join("\n");
}

export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(helpText());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`stubdom-init: unknown command '${name}'\n\n${helpText()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`usage: stubdom-init ${command.usage}\n`);
    return 0;
  }
  const mod = await command.load();
  return mod.run(rest);
}
