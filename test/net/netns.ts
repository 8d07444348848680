// Throwaway network namespaces for live tests: unique names (parallel test files do not clash),
// removed in afterAll even when a test failed.
export const isRoot = process.getuid?.() === 0;

export async function run(cmd: string[], env?: Record<string, string>, timeoutMs = 15_000): Promise<{ code: number; out: string; err: string }> {
  // A hung child is killed rather than left behind in a namespace that afterAll deletes.
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env }, timeout: timeoutMs, killSignal: "SIGKILL" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

export async function must(...cmd: string[]): Promise<string> {
  const r = await run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.code}: ${r.err.trim()}`);
  return r.out;
}

export class Namespaces {
  private readonly names: string[] = [];
  private readonly prefix = `sdn${process.pid % 100000}${Math.random().toString(36).slice(2, 6)}`;

  async add(tag: string, opts: { ipv6?: boolean } = {}): Promise<string> {
    const name = `${this.prefix}${tag}`;
    await must("ip", "netns", "add", name);
    this.names.push(name);
    if (opts.ipv6) return name;
    // No IPv6 chatter (router solicitations, MLD): only the tests' own frames move.
    // (through sh, not sysctl: procps may be missing on a minimal CI machine)
    await must("ip", "netns", "exec", name, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6");
    return name;
  }

  async cleanup(): Promise<void> {
    for (const n of this.names.splice(0)) await run(["ip", "netns", "del", n]);
  }
}

/** Runs a scenario of live-driver.ts inside namespace ns; returns its JSON. */
export async function scenario<T>(ns: string, name: string, env?: Record<string, string>): Promise<T> {
  const driver = new URL("./live-driver.ts", import.meta.url).pathname;
  const r = await run(["ip", "netns", "exec", ns, process.execPath, driver, name], env);
  if (r.code !== 0) throw new Error(`scenario ${name} in ${ns} failed (exit ${r.code}):\n${r.err}`);
  return JSON.parse(r.out) as T;
}
