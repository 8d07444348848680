// Entry point of the one binary. As PID 1 (exec'd by stage 0 with /proc already mounted) it is
// the stub domain's init; otherwise it is the CLI whose commands are listed in cli.ts.
import { runCli } from "./cli.ts";

if (process.pid === 1) {
  const { runInit } = await import("./init/main.ts");
  await runInit();
} else {
  const code = await runCli(process.argv.slice(2));
  process.exit(code);
}
