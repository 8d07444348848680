// Placeholder until its issue lands.
export async function run(_argv: string[]): Promise<number> {
  process.stderr.write("stubdom-init: 'config/cli' is not implemented yet\n");
  return 1;
}
