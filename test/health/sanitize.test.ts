import { expect, test } from "vitest";
import { escapeBytes, escapeText, preview, safeJson, truncate } from "../../agent/health/sanitize.ts";

test.each([
  ["plain", "eth0 up", "eth0 up"],
  ["ESC sequence", "\x1b[2J", "\\x1b[2J"],
  ["BEL, DEL, C1 CSI", "\x07\x7f\u009b", "\\x07\\x7f\\x9b"],
  ["newline and tab", "a\nb\tc", "a\\nb\\tc"],
  ["backslash cannot fake an escape", "\\x1b", "\\\\x1b"],
  ["bidi override and zero-width space", "a\u202eb\u200bc", "a\\u{202e}b\\u{200b}c"],
  ["line separator", "a\u2028b", "a\\u{2028}b"],
  ["private use", "\ue000", "\\u{e000}"],
  ["other scripts are kept", "Grüße, 日本, 🙂", "Grüße, 日本, 🙂"],
])("escapeText: %s", (_name, input, out) => {
  expect(escapeText(input)).toBe(out);
});

test("escapeBytes and preview show invalid UTF-8 byte by byte, and say when they cut", () => {
  expect(escapeBytes(new Uint8Array([0x41, 0xff, 0x5c, 0x00]))).toBe("A\\xff\\\\\\x00");
  expect(preview(new Uint8Array([0xc3, 0x28]))).toBe("\\xc3(");
  expect(preview(new TextEncoder().encode("é".repeat(30)), 5)).toBe("\\xc3\\xa9\\xc3\\xa9\\xc3…"); // cut mid-character
  expect(preview(new TextEncoder().encode("abcdef"), 3)).toBe("abc…");
});

test("truncate counts characters, not UTF-16 units", () => {
  expect(truncate("🙂🙂🙂", 3)).toBe("🙂🙂🙂");
  expect(truncate("🙂🙂🙂🙂", 3)).toBe("🙂🙂…");
});

test("safeJson is plain ASCII and still the same JSON", () => {
  const v = { s: "\u009b\u202e\x7fé🙂\x1b" };
  const out = safeJson(v);
  expect(out).toMatch(/^[\x20-\x7e]*$/);
  expect(JSON.parse(out)).toEqual(v);
});
