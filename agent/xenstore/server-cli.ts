// `stubdom-init xenstored`: the development/test xenstore server (Debian's xenstored cannot run
// without a hypervisor). Runs until SIGTERM or SIGINT, then saves the tree if asked to.
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Store } from "./model.ts";
import { type SocketSpec, XenStoreServer } from "./server.ts";

const usage = "usage: stubdom-init xenstored --socket PATH [--domain-socket DOMID:PATH]... " +
  "[--load FILE] [--save FILE] [--trace]\n";

export function parseDomainSocket(spec: string): SocketSpec {
  const m = /^(\d{1,5}):(.+)$/.exec(spec);
  if (!m || Number(m[1]) > 0xfff0) throw new Error(`--domain-socket ${spec}: expected DOMID:PATH`);
  const domid = Number(m[1]);
  return { path: m[2]!, domid, privileged: domid === 0 };
}

export async function run(argv: string[]): Promise<number> {
  let sockets: SocketSpec[];
  let values: { socket?: string; "domain-socket"?: string[]; load?: string; save?: string; trace?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        socket: { type: "string" },
        "domain-socket": { type: "string", multiple: true },
        load: { type: "string" },
        save: { type: "string" },
        trace: { type: "boolean" },
      },
      strict: true,
    }));
    sockets = (values["domain-socket"] ?? []).map(parseDomainSocket);
    if (values.socket) sockets.unshift({ path: values.socket, domid: 0, privileged: true });
    if (sockets.length === 0) throw new Error("no --socket or --domain-socket given");
  } catch (e) {
    process.stderr.write(`stubdom-init xenstored: ${(e as Error).message}\n${usage}`);
    return 2;
  }

  const store = new Store();
  if (values.load) {
    try {
      store.load(JSON.parse(readFileSync(values.load, "utf8")));
    } catch (e) {
      process.stderr.write(`stubdom-init xenstored: --load ${values.load}: ${(e as Error).message}\n`);
      return 1;
    }
  }
  const trace = values.trace ? (line: string) => void process.stderr.write(`xenstored: ${line}\n`) : undefined;
  const server = new XenStoreServer({ store, sockets, trace });
  try {
    server.start();
  } catch (e) {
    process.stderr.write(`stubdom-init xenstored: cannot listen: ${(e as Error).message}\n`);
    return 1;
  }
  const names = sockets.map((s) => `${s.path} (domain ${s.domid}${s.privileged ? ", privileged" : ""})`);
  process.stderr.write(`xenstored: listening on ${names.join(", ")}\n`);

  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      server.stop();
      let code = 0;
      if (values.save) {
        try {
          writeFileSync(values.save, `${JSON.stringify(store.dump(), null, 1)}\n`);
        } catch (e) {
          process.stderr.write(`stubdom-init xenstored: --save ${values.save}: ${(e as Error).message}\n`);
          code = 1;
        }
      }
      process.stderr.write(`xenstored: stopped by ${signal}\n`);
      resolve(code);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
