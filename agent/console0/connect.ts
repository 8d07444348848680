// Console 0 of PV domains whose dom0 QEMU is 8.2 or later (Debian 13's 10.0 beside Xen 4.20).
//
// libxl has dom0's QEMU serve all of a stub domain's consoles, console 0 (its log) included.
// QEMU 8.2 rewrote its Xen console backend (hw/char/xen_console.c): for a primary console it
// maps the ring and binds the event channel at realize, but leaves the backend in InitWait, and
// its event handler ignores every event until the backend is Connected. Only a frontend state
// change moves it there (xen_console_frontend_changed), and nothing writes one: Linux's hvc0
// speaks no xenbus states, and libxl makes console 0's frontend directory read-only for the
// domain (libxl__device_generic_add). So the 2 KiB ring is never drained, and the domain's
// kernel waits in its next console write once it is full: the stub domain stops, and libxl
// destroys it after its 30 s ("startup timed out"). Measured on nested Xen 4.20, 8 of 8 creates.
//
// dom0 may write that state. This writes `Connected` into the frontend of each console 0 whose
// backend is in InitWait; QEMU 10 then connects it and drains the ring, and a kernel that was
// waiting goes on. QEMU 7.2 (Debian 12) shows InitWait too but drains the ring all the same
// (its legacy backend ignores frontend states), so the write changes nothing there: on nested
// Xen 4.17 every check passes with this running. A console xenconsoled serves is left alone.
import { XenStoreError, type XenStore } from "../xenstore/types.ts";
import { readString } from "../xenstore/util.ts";

export const BACKEND_ROOT = "/local/domain/0/backend/console";
const INIT_WAIT = "2";
const CONNECTED = "4";
const DOMID = /^(0|[1-9][0-9]{0,4})$/;
/** Domain ids are below 0x7ff0 (DOMID_FIRST_RESERVED): at most this many backends to look at. */
export const MAX_DOMAINS = 0x7ff0;

export interface Console0Action {
  domid: number;
  /** The frontend directory the action is about. */
  frontend: string;
  /** What was done, or why nothing could be: one line for the log. */
  line: string;
  connected: boolean;
}

/** A backend's state or a console's type: a few bytes; a path: at most this many. */
const SHORT = 16;
const PATH = 256;

/**
 * One pass over dom0's console backends: each console 0 in InitWait whose frontend is the
 * domain's primary console, of type ioemu, gets `state = 4` written into its frontend (once:
 * a frontend that says Connected already is skipped). The paths are checked, not followed:
 * the frontend must be /local/domain/<domid>/console. Values are read bounded (util.ts); one
 * that is too long or not text is reported for its domain, and the pass goes on.
 */
export function connectUndrained(xs: XenStore, root = BACKEND_ROOT): Console0Action[] {
  let ids: string[];
  try {
    ids = xs.directory(root);
  } catch (e) {
    if (e instanceof XenStoreError && e.errno === "ENOENT") return [];
    throw e;
  }
  const out: Console0Action[] = [];
  for (const id of ids.slice(0, MAX_DOMAINS)) {
    if (!DOMID.test(id)) continue;
    const domid = Number(id);
    const be = `${root}/${id}/0`;
    try {
      if (readString(xs, `${be}/state`, SHORT) !== INIT_WAIT) continue;
      const fe = `/local/domain/${domid}/console`;
      const named = readString(xs, `${be}/frontend`, PATH);
      if (named !== undefined && named !== fe) {
        out.push({ domid, frontend: fe, connected: false, line: `domain ${domid}: backend ${be} names frontend ${JSON.stringify(named.slice(0, 80))}, not ${fe}; left alone` });
        continue;
      }
      if (readString(xs, `${fe}/type`, SHORT) !== "ioemu") continue;
      const was = readString(xs, `${fe}/state`, SHORT);
      if (was === CONNECTED) continue;
      xs.write(`${fe}/state`, CONNECTED);
      const before = was === undefined ? "absent" : JSON.stringify(was.slice(0, SHORT));
      out.push({ domid, frontend: fe, connected: true, line: `domain ${domid}: console 0's backend is in InitWait: wrote ${fe}/state = 4 (Connected; it was ${before}), so that dom0's QEMU drains it` });
    } catch (e) {
      // A domain going away mid-pass is normal; anything else is said and the pass goes on.
      if (e instanceof XenStoreError && e.errno === "ENOENT") continue;
      out.push({ domid, frontend: `/local/domain/${domid}/console`, connected: false, line: `domain ${domid}: ${(e as Error).message}` });
    }
  }
  return out;
}

/**
 * The frontend states written, each watched while its backend stays in InitWait. On nested Xen
 * 4.20, 1 create in 7 needed a second write: the frontend state was no longer Connected while the
 * backend still waited, and only consoles 1 and 2 appearing later happened to start the pass that
 * wrote it again. Whoever sets it back (the line says what the state was), the watch on it starts
 * that pass. At most one path per domain id; a path is dropped once its backend has left InitWait
 * or is gone.
 */
export class FrontendWatches {
  readonly #watched = new Map<string, string>(); // frontend state path -> backend state path
  constructor(
    private readonly xs: XenStore,
    private readonly token: string,
    private readonly root = BACKEND_ROOT,
  ) {}

  /** After a pass: watch what it wrote, forget what no longer needs watching. */
  update(actions: Console0Action[]): void {
    for (const a of actions) {
      const path = `${a.frontend}/state`;
      if (!a.connected || this.#watched.has(path) || this.#watched.size >= MAX_DOMAINS) continue;
      this.xs.watch(path, this.token);
      this.#watched.set(path, `${this.root}/${a.domid}/0/state`);
    }
    for (const [path, backendState] of this.#watched) {
      let state: string | undefined;
      try {
        state = readString(this.xs, backendState, SHORT);
      } catch {
        state = undefined; // unreadable: nothing a watch here could fix
      }
      if (state === INIT_WAIT) continue;
      this.#watched.delete(path);
      try {
        this.xs.unwatch(path, this.token);
      } catch {
        // The watch went with its domain.
      }
    }
  }

  get paths(): string[] {
    return [...this.#watched.keys()];
  }
}
