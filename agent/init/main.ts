// Placeholder until the PID 1 issue lands: log, then power off is not available yet.
export async function runInit(): Promise<never> {
  process.stdout.write("stubdom-init: PID 1 started\n");
  for (;;) await Bun.sleep(1 << 30);
}
