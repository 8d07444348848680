// Placeholder boot; the supervisor is reachable as PID 1 of a namespace (see cli.ts).
import { run } from "./cli.ts";

export async function runInit(): Promise<never> {
  const argv = process.argv.slice(2);
  if (argv[0] === "init") process.exit(await run(argv.slice(1)));
  process.stdout.write("stubdom-init: PID 1 started\n");
  for (;;) await Bun.sleep(1 << 30);
}
