// The guest description the toolstack simulator reads: the few xl.cfg settings that shape what
// libxl writes for a Linux stub domain. Validated with zod; every error names its field.
import { z } from "zod";

const mac = z.string().regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, "expected a MAC like 00:16:3e:00:00:01")
  .transform((m) => m.toLowerCase());
// xenstore path characters only, since names end up in keys and values libxl builds paths from.
const ident = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "1-64 characters from [A-Za-z0-9_.-]");

const disk = z.object({
  /** Guest device name as in xl.cfg `vdev=`: hda..hdd (IDE has four), xvda..xvdz, sda..sdz. */
  vdev: z.string().regex(/^(hd[a-d]|xvd[a-z]|sd[a-z])$/, "hda..hdd, xvdX or sdX"),
  /** The dom0 path of the backing image or device (libxl `target=`). */
  target: z.string().min(1).max(1024),
  cdrom: z.boolean().default(false),
  readwrite: z.boolean().default(true),
  /**
   * Development VM only (no Xen, no blkfront): the block device the stub domain sees for this
   * disk, e.g. /dev/vda from a virtio-blk disk of the outer VM. dm-argv then names it instead
   * of the /dev/xvdX that xen-blkfront would create; everything else stays as libxl writes it.
   */
  stubdomDevice: z.string().regex(/^\/dev\/[a-z][a-z0-9]{0,31}$/, "a /dev/<name> block device").optional(),
}).strict();

const nic = z.object({
  mac,
  bridge: ident.default("xenbr0"),
  /** xl.cfg `ip=`: space-separated addresses written to the backend's `ip` key. */
  ip: z.string().regex(/^[0-9A-Fa-f.:/ ]{1,256}$/, "addresses separated by spaces").optional(),
  mtu: z.number().int().min(68).max(65535).optional(),
  /** QEMU NIC model; libxl__device_nic_setdefault picks rtl8139. */
  model: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/).default("rtl8139"),
  backendDomid: z.number().int().min(0).max(0x7fef).default(0),
}).strict();

export const guestSchema = z.object({
  name: ident,
  uuid: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, "a lower-case UUID"),
  /** Guest RAM in MiB, video RAM included (xl.cfg `memory=`). */
  memory: z.number().int().min(16).max(1 << 20),
  vcpus: z.number().int().min(1).max(128).default(1),
  vga: z.enum(["stdvga", "cirrus", "none"]).default("stdvga"),
  /** xl.cfg `videoram=` in MiB; libxl's default is 16 for stdvga and 8 for cirrus. */
  videoram: z.number().int().min(1).max(256).optional(),
  boot: z.string().regex(/^[acdn]{1,4}$/).default("cd"),
  disks: z.array(disk).max(26).default([]),
  nics: z.array(nic).max(16).default([]),
  /** xl.cfg `serial=` list; each becomes /dev/hvc3, /dev/hvc4... in the stub domain. */
  serial: z.array(z.string().min(1).max(256)).max(8).default([]),
  /**
   * xl.cfg `on_crash`, applied when the stub domain reports the guest crashed: `destroy` tears
   * both domains down (their keys vanish at once), `preserve` keeps them for inspection.
   */
  onCrash: z.enum(["destroy", "preserve"]).default("destroy"),
  /** Restoring from a saved image (xl restore): adds `-incoming` to the argument list. */
  restore: z.boolean().default(false),
  /** xl.cfg `device_model_args` / `device_model_args_hvm`, passed through. */
  extraArgs: z.array(z.string().max(1024)).max(200).default([]),
  extraArgsHvm: z.array(z.string().max(1024)).max(200).default([]),
  /** stubdomain_memory in MiB (LIBXL_LINUX_STUBDOM_MEM = 128). */
  stubdomMemory: z.number().int().min(32).max(4096).default(128),
  /**
   * Development VM only (no Xen): run this device model with this accelerator. The argument
   * list then drops the Xen-only `-xen-domid` and uses `-machine pc,accel=<accel>`; the binary
   * reaches the stub domain's init through its kernel command line (stubdom.qemu=).
   */
  dm: z.object({
    binary: z.string().regex(/^\/[A-Za-z0-9_./-]{1,255}$/),
    accel: z.enum(["tcg", "kvm"]).default("tcg"),
  }).strict().optional(),
}).strict().superRefine((g, ctx) => {
  const vdevs = new Set<string>();
  g.disks.forEach((d, i) => {
    if (vdevs.has(d.vdev)) ctx.addIssue({ code: "custom", path: ["disks", i, "vdev"], message: `duplicate vdev ${d.vdev}` });
    vdevs.add(d.vdev);
  });
  const macs = new Set<string>();
  g.nics.forEach((n, i) => {
    if (macs.has(n.mac)) ctx.addIssue({ code: "custom", path: ["nics", i, "mac"], message: `duplicate MAC ${n.mac}` });
    macs.add(n.mac);
  });
});

export type GuestDescription = z.output<typeof guestSchema>;

/** Parse a guest description; throws an Error listing every problem with its field path. */
export function parseGuest(data: unknown, source = "guest"): GuestDescription {
  const r = guestSchema.safeParse(data);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => `  ${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`);
  throw new Error(`${source}: invalid guest description:\n${lines.join("\n")}`);
}
