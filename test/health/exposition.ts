// A strict reader of the Prometheus text exposition format (0.0.4) for the tests: what the
// format allows and Prometheus' own parser insists on (names, label escapes, values, one HELP
// and TYPE per family before its samples, families not interleaved, no repeated series).
// Debian's promtool checks the same output too (prometheus.test.ts); this one says which line.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseLabels(s: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf("=", i);
    if (eq < 0) throw new Error(`line ${line}: label without '='`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name ${JSON.stringify(name)}`);
    if (s[eq + 1] !== '"') throw new Error(`line ${line}: label value not quoted`);
    let v = "";
    let j = eq + 2;
    for (;;) {
      const c = s[j];
      if (c === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (c === '"') break;
      if (c === "\\") {
        const n = s[j + 1];
        if (n === "\\") v += "\\";
        else if (n === '"') v += '"';
        else if (n === "n") v += "\n";
        else throw new Error(`line ${line}: bad escape \\${n}`);
        j += 2;
        continue;
      }
      if (c === "\n") throw new Error(`line ${line}: raw newline in a label value`);
      v += c;
      j++;
    }
    if (name in labels) throw new Error(`line ${line}: label ${name} twice`);
    labels[name] = v;
    i = j + 1;
    if (s[i] === ",") i++;
    else if (i < s.length) throw new Error(`line ${line}: junk after label ${name}`);
  }
  return labels;
}

export function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  if (!text.endsWith("\n")) throw new Error("does not end with a newline");
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const closed = new Set<string>();
  const series = new Set<string>();
  let current: string | undefined;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((l, idx) => {
    const n = idx + 1;
    if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(l)) throw new Error(`line ${n}: control character`);
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(l);
    const family = (name: string) => {
      if (!NAME.test(name)) throw new Error(`line ${n}: bad metric name ${JSON.stringify(name)}`);
      if (name !== current) {
        if (current !== undefined) closed.add(current);
        if (closed.has(name)) throw new Error(`line ${n}: family ${name} is split`);
        current = name;
      }
    };
    if (meta) {
      const [, kind, name = "", rest = ""] = meta;
      family(name);
      if (kind === "HELP") {
        if (helps.has(name)) throw new Error(`line ${n}: second HELP for ${name}`);
        helps.add(name);
      } else {
        if (types.has(name)) throw new Error(`line ${n}: second TYPE for ${name}`);
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest)) throw new Error(`line ${n}: bad type ${rest}`);
        types.set(name, rest);
      }
      return;
    }
    if (l.startsWith("#") || l === "") return;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(l);
    if (!m) throw new Error(`line ${n}: not a sample: ${JSON.stringify(l.slice(0, 120))}`);
    const [, name = "", labelText = "", valueText = ""] = m;
    family(name);
    if (!types.has(name)) throw new Error(`line ${n}: sample of ${name} before its TYPE`);
    const value = valueText === "+Inf" ? Infinity : valueText === "-Inf" ? -Infinity : valueText === "NaN" ? NaN : Number(valueText);
    if (!/^(NaN|[+-]Inf|-?[0-9.]+(e[+-]?[0-9]+)?)$/.test(valueText) || (Number.isNaN(value) && valueText !== "NaN")) {
      throw new Error(`line ${n}: bad value ${valueText}`);
    }
    const labels = parseLabels(labelText, n);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (series.has(key)) throw new Error(`line ${n}: repeated series ${key}`);
    series.add(key);
    samples.push({ name, labels, value });
  });
  return { samples, types };
}

/** The one sample of `name` whose labels include `want`; throws when there is not exactly one. */
export function sampleOf(samples: Sample[], name: string, want: Record<string, string> = {}): number {
  const hits = samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
  if (hits.length !== 1) throw new Error(`${hits.length} samples of ${name} ${JSON.stringify(want)}`);
  return hits[0]?.value ?? NaN;
}
