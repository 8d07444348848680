// The FFI socket itself (no root needed: reading links is unprivileged).
import { afterEach, expect, test } from "vitest";
import { Rtnetlink } from "../../ffi/netlink.ts";
import { dumpLinks, getLinkByName } from "../../agent/net/messages.ts";
import { NetlinkError } from "../../agent/net/types.ts";

let nl: Rtnetlink | undefined;
afterEach(() => nl?.close());

test("twenty requests in flight at once each get their own answer (matched by sequence number)", async () => {
  nl = new Rtnetlink();
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => nl!.request(i % 2 ? getLinkByName("lo") : dumpLinks())));
  answers.forEach((a, i) => {
    const names = a.flatMap((m) => (m.kind === "link" ? m.attrs.flatMap((x) => (x.kind === "ifname" ? [x.value] : [])) : []));
    if (i % 2) expect(names).toEqual(["lo"]);
    else expect(names).toContain("lo");
  });
});

test("a request the kernel never answers times out, and the event loop ran meanwhile", async () => {
  nl = new Rtnetlink();
  // Without NLM_F_REQUEST the kernel ignores a message silently.
  const silent = getLinkByName("lo");
  silent.header.flags = 0;
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const t0 = performance.now();
  const err = await nl.request(silent, { timeoutMs: 150 }).catch((e: unknown) => e);
  clearInterval(timer);
  expect(err).toBeInstanceOf(NetlinkError);
  expect((err as NetlinkError).message).toMatch(/ETIMEDOUT .*no answer within 150 ms/);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
  expect(ticks).toBeGreaterThan(5);
  // The socket still works after a timeout.
  expect((await nl.request(getLinkByName("lo"))).length).toBe(1);
});

test("a kernel error rejects with the errno; after close, requests are refused", async () => {
  nl = new Rtnetlink();
  await expect(nl.request(getLinkByName("nosuch-link0"))).rejects.toMatchObject({ errno: 19 });
  nl.close();
  await expect(nl.request(getLinkByName("lo"))).rejects.toThrow(/socket closed/);
});
