// QEMU's `-device`/`-netdev`/`-drive` option strings (util/qemu-option.c): comma-separated
// `key=value` pairs where `,,` is a literal comma, and a first item without `=` is the
// option's implied value (the driver or netdev type). Linear in the string's length.

export interface QemuOpts {
  /** The leading item without `=`, e.g. "e1000" in `e1000,netdev=net0`. */
  readonly implied: string | null;
  /** Keys in order; a later duplicate replaces an earlier one, as in QEMU. */
  readonly opts: ReadonlyMap<string, string>;
}

function items(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch !== ",") cur += ch;
    else if (text[i + 1] === ",") {
      cur += ",";
      i++;
    } else {
      out.push(cur);
      cur = "";
    }
  }
  out.push(cur);
  return out;
}

export function parseQemuOpts(text: string): QemuOpts {
  const opts = new Map<string, string>();
  let implied: string | null = null;
  items(text).forEach((item, i) => {
    const eq = item.indexOf("=");
    if (eq >= 0) opts.set(item.slice(0, eq), item.slice(eq + 1));
    else if (i === 0) implied = item;
    // QEMU reads a bare `key` as key=on (e.g. `readonly`).
    else opts.set(item, "on");
  });
  return { implied, opts };
}
