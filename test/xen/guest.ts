// The nested test guest's disk: a FAT file system with SYSLINUX in its boot sector (no partition
// table: SeaBIOS boots sector 0 of the IDE disk), our kernel (agent/build/kernel/guest.config
// gives it the guest's drivers), a busybox initramfs running guest-init.sh, and a marker file
// the guest prints. Everything the guest does goes through the stub domain's QEMU: the
// firmware's disk reads, the kernel's IDE and NIC, its serial port. Cached with dom0's image.
import { mkdtemp, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Rootfs, writeCpioImage } from "../../agent/build/image.ts";
import type { KernelBuild } from "../../agent/build/kernel.ts";
import { run as runTool } from "../../agent/build/debian.ts";

const HERE = fileURLToPath(new URL(".", import.meta.url));

/** Built-in drivers the guest needs for what libxl's dm-argv gives it (modules.builtin names). */
const GUEST_DRIVERS = ["ata_piix", "sd_mod", "sr_mod", "e1000", "vfat", "nls_cp437", "nls_iso8859_1", "button", "evdev"];

/**
 * The guest's kernel command line. nopv: a plain HVM guest, no Xen PV features. As a PVHVM guest
 * the kernel would unplug the emulated disk and NIC (their I/O would bypass the stub domain),
 * and it printed nothing at all under nested Xen. earlyprintk: a failure before the console is up
 * still reaches the serial log (quiet keeps the rest out: each byte is an I/O request).
 */
export const GUEST_CMDLINE = "console=ttyS0,115200 earlyprintk=serial,ttyS0,115200 nopv panic=-1 quiet";

/** The host tools the disk is made with (Makefile's APT_PACKAGES: dosfstools, mtools, syslinux). */
const TOOLS = { mkfs: "mkfs.fat", syslinux: "syslinux", mcopy: "mcopy" };

export interface GuestDisk {
  image: string;
  marker: string;
}

/** A CD-ROM medium: FAT in 2048-byte sectors (a CD's), holding marker.txt. */
export interface GuestCd {
  image: string;
  marker: string;
}

const run = (argv: string[]) => runTool(argv, "test guest disk").then(() => {});

/** The files whose content decides the disk, for the dom0 image's cache key. */
export const GUEST_INPUTS = [join(HERE, "guest.ts"), join(HERE, "guest-init.sh"), join(HERE, "../vm/guest/lease")];

export async function buildGuestDisk(opts: { out: string; kernel: KernelBuild; busybox: string; key: string }): Promise<GuestDisk> {
  const missing = GUEST_DRIVERS.filter((d) => !opts.kernel.builtin.includes(d));
  if (missing.length > 0) throw new Error(`test guest: the kernel lacks ${missing.join(", ")} (agent/build/kernel/guest.config)`);

  const fs = new Rootfs();
  for (const d of ["bin", "dev", "proc", "sys", "tmp", "mnt"]) fs.dir(d, 0o755);
  fs.charDev("dev/console", 0o600, 5, 1);
  fs.file("bin/busybox", { file: opts.busybox }, 0o755);
  fs.file("init", { file: join(HERE, "guest-init.sh") }, 0o755);
  fs.file("bin/lease", { file: join(HERE, "../vm/guest/lease") }, 0o755);

  const work = await mkdtemp(join(opts.out, "..", "guest-"));
  try {
    const initrd = join(work, "initrd");
    await writeCpioImage(fs.records, initrd, { compression: "zstd" });
    const marker = `e2e-disk-${opts.key}`;
    await Bun.write(join(work, "marker.txt"), `${marker}\n`);
    await Bun.write(join(work, "syslinux.cfg"), `SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL vmlinuz\n  INITRD initrd\n  APPEND ${GUEST_CMDLINE}\n`);
    await Bun.write(join(work, "vmlinuz"), Bun.file(opts.kernel.bzImage));
    const payload = (await stat(opts.kernel.bzImage)).size + (await stat(initrd)).size;
    const kib = Math.ceil(payload / 1024 / 1024 + 4) * 1024;
    const image = join(work, "disk.img");
    // FAT16 (one sector a cluster): mkfs.fat picks FAT12 for images this small, which syslinux refuses.
    await run([TOOLS.mkfs, "-C", "-F", "16", "-s", "1", "-n", "E2EGUEST", image, String(kib)]);
    await run([TOOLS.syslinux, "--install", image]);
    await run([TOOLS.mcopy, "-i", image, ...["vmlinuz", "initrd", "syslinux.cfg", "marker.txt"].map((f) => join(work, f)), "::/"]);
    await Bun.write(opts.out, Bun.file(image));
    return { image: opts.out, marker };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The media of the cdrom-change check (Xen >= 4.20: `xl cd-eject`, `xl cd-insert`): FAT with a
 * CD's 2048-byte sectors (Linux refuses a FAT whose sectors are smaller than the device's), so
 * the guest mounts /dev/sr0 and reads marker.txt as it reads its disk's.
 */
export async function buildGuestCd(opts: { out: string; marker: string }): Promise<GuestCd> {
  const work = await mkdtemp(join(opts.out, "..", "cd-"));
  try {
    await Bun.write(join(work, "marker.txt"), `${opts.marker}\n`);
    const image = join(work, "cd.img");
    await run([TOOLS.mkfs, "-C", "-S", "2048", "-n", "E2ECD", image, "1024"]);
    await run([TOOLS.mcopy, "-i", image, join(work, "marker.txt"), "::/"]);
    await Bun.write(opts.out, Bun.file(image));
    return { image: opts.out, marker: opts.marker };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
