// Splits one of our initramfs images into its two parts, as the kernel and stage 0 see them:
// the detached squashfs (mounted on /usr) and the zstd cpio the kernel unpacks.
import { join } from "node:path";
import { detachedFileExtent } from "../../agent/build/cpio.ts";
import { USR_PAYLOAD } from "../../agent/build/image.ts";

export async function splitInitramfs(image: string, dir: string): Promise<{ squashfs: string; cpioZst: string }> {
  const bytes = await Bun.file(image).bytes();
  const { offset, size, end } = detachedFileExtent(bytes, USR_PAYLOAD);
  const out = { squashfs: join(dir, "usr.squashfs"), cpioZst: join(dir, "rootfs.cpio.zst") };
  await Bun.write(out.squashfs, bytes.subarray(offset, offset + size));
  let start = end;
  while (start < bytes.length && bytes[start] === 0) start++; // the kernel skips zero padding too
  await Bun.write(out.cpioZst, bytes.subarray(start));
  return out;
}
