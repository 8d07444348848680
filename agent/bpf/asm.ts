// Classic BPF (struct sock_filter) as data: the opcodes we use, a label assembler and an
// interpreter for unit tests. Two users: the packet filters of agent/net/bpf.ts (cls_bpf and
// SO_ATTACH_FILTER) and QEMU's seccomp filter (agent/qemu/seccomp.ts). Neither needs the bpf()
// syscall or a compiler in the image.

/** One classic BPF instruction (struct sock_filter). */
export interface BpfInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export const LD_W_ABS = 0x20;
export const LD_H_ABS = 0x28;
export const LD_B_ABS = 0x30;
export const LD_H_IND = 0x48;
export const LDX_B_MSH = 0xb1;
export const ALU_AND_K = 0x54;
export const ALU_ADD_K = 0x04;
export const JEQ_K = 0x15;
export const JGE_K = 0x35;
export const JSET_K = 0x45;
export const RET_K = 0x06;
export const RET_A = 0x16;

/** Kernel limit on a classic program (BPF_MAXINSNS). */
export const MAX_INSNS = 4096;

export type Line =
  | { op: number; k: number }
  | { op: number; k: number; jt: string; jf: string }
  | { label: string };

/** Resolves label jumps (forward only, as classic BPF requires) into instructions. */
export function assemble(lines: Line[]): BpfInsn[] {
  const at = new Map<string, number>();
  let n = 0;
  for (const l of lines) {
    if ("label" in l) {
      if (at.has(l.label)) throw new Error(`bpf: label ${l.label} defined twice`);
      at.set(l.label, n);
    } else n++;
  }
  const out: BpfInsn[] = [];
  for (const l of lines) {
    if ("label" in l) continue;
    const pc = out.length;
    const rel = (name: string) => {
      const target = at.get(name);
      if (target === undefined) throw new Error(`bpf: no label ${name}`);
      const d = target - pc - 1;
      if (d < 0 || d > 255) throw new Error(`bpf: jump to ${name} out of range (${d})`);
      return d;
    };
    if ("jt" in l) out.push({ code: l.op, jt: rel(l.jt), jf: rel(l.jf), k: l.k >>> 0 });
    else out.push({ code: l.op, jt: 0, jf: 0, k: l.k >>> 0 });
  }
  if (out.length > MAX_INSNS) throw new Error(`bpf: ${out.length} instructions (limit ${MAX_INSNS})`);
  return out;
}

export interface RunOptions {
  /** Word loads in host order (seccomp's struct seccomp_data) instead of network order (packets). */
  littleEndian?: boolean;
  /** Values of ancillary loads (offsets from SKF_AD_OFF up), by offset. */
  ancillary?: (offset: number) => number | undefined;
}

/** Runs a program over its input the way the kernel would; for unit tests of the verdicts. */
export function runBpf(prog: BpfInsn[], input: Uint8Array, opts: RunOptions = {}): number {
  const dv = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const le = opts.littleEndian ?? false;
  let a = 0;
  let x = 0;
  const load = (off: number, size: number): number | undefined => {
    const anc = off >= 0xfffff000 ? opts.ancillary?.(off) : undefined;
    if (anc !== undefined) return anc;
    if (off < 0 || off + size > input.length) return undefined;
    return size === 4 ? dv.getUint32(off, le) : size === 2 ? dv.getUint16(off, le) : dv.getUint8(off);
  };
  for (let pc = 0; pc < prog.length; pc++) {
    const i = prog[pc]!;
    switch (i.code) {
      case LD_W_ABS: case LD_H_ABS: case LD_B_ABS: case LD_H_IND: {
        const size = i.code === LD_W_ABS ? 4 : i.code === LD_B_ABS ? 1 : 2;
        const v = load(i.code === LD_H_IND ? x + i.k : i.k, size);
        if (v === undefined) return 0; // the kernel ends the program with 0 on an out-of-bounds load
        a = v;
        break;
      }
      case LDX_B_MSH: {
        const v = load(i.k, 1);
        if (v === undefined) return 0;
        x = (v & 0xf) * 4;
        break;
      }
      case ALU_AND_K: a = (a & i.k) >>> 0; break;
      case ALU_ADD_K: a = (a + i.k) >>> 0; break;
      case JEQ_K: pc += a === i.k ? i.jt : i.jf; break;
      case JGE_K: pc += a >= i.k ? i.jt : i.jf; break;
      case JSET_K: pc += (a & i.k) !== 0 ? i.jt : i.jf; break;
      case RET_K: return i.k;
      case RET_A: return a;
      default: throw new Error(`bpf: opcode ${i.code.toString(16)} not interpreted`);
    }
  }
  throw new Error("bpf: fell off the end");
}
