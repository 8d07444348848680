// Sizes of a stub domain rootfs image: the bytes libxl hands over (stubdomain_ramdisk) and the
// bytes of its files once unpacked. A squashfs inside the initramfs (the agent's /usr) is
// counted expanded, so the two layouts compare file for file rather than compressed against
// uncompressed.
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export interface RootfsSize {
  compressed: number;
  unpacked: number;
}

async function run(cmd: string[], cwd?: string): Promise<void> {
  const p = Bun.spawn(cmd, { cwd, stdout: "ignore", stderr: "pipe" });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`\`${cmd.join(" ")}\` exited ${code}: ${err.trim()}`);
}

function decompressor(image: string): string[] {
  const m = readFileSync(image).subarray(0, 6);
  if (m[0] === 0x28 && m[1] === 0xb5 && m[2] === 0x2f && m[3] === 0xfd) return ["zstd", "-dc"];
  if (m[0] === 0x1f && m[1] === 0x8b) return ["gzip", "-dc"];
  if (m[0] === 0xfd && m[1] === 0x37 && m[2] === 0x7a && m[3] === 0x58) return ["xz", "-dc"];
  if (new TextDecoder().decode(m) === "070701") return ["cat"];
  throw new Error(`${image}: not a zstd, gzip or xz compressed cpio, nor a plain newc cpio`);
}

const isSquashfs = (path: string) => readFileSync(path).subarray(0, 4).toString() === "hsqs";

/** Regular file bytes under `dir`; squashfs images are unpacked and counted by their contents. */
async function treeBytes(dir: string, scratch: string): Promise<number> {
  let total = 0;
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, name);
    const st = lstatSync(path);
    if (!st.isFile()) continue;
    if (st.size > 4 && isSquashfs(path)) {
      const out = join(scratch, `sq${total}-${st.ino}`);
      await run(["unsquashfs", "-q", "-n", "-d", out, path]);
      total += await treeBytes(out, scratch);
      rmSync(out, { recursive: true, force: true });
    } else total += st.size;
  }
  return total;
}

export async function rootfsSize(image: string): Promise<RootfsSize> {
  const compressed = statSync(image).size;
  const scratch = mkdtempSync(join(tmpdir(), "bench-rootfs-"));
  try {
    const root = join(scratch, "root");
    await run(["mkdir", root]);
    await run(["sh", "-c", `${decompressor(image).join(" ")} "$1" | cpio -id --quiet --no-absolute-filenames`, "sh", resolve(image)], root);
    return { compressed, unpacked: await treeBytes(root, scratch) };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
