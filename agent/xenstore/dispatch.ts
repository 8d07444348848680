// One request frame in, one reply frame out, over a model Session: what process_message() and
// the do_* functions of C xenstored do, minus the I/O. Pure, so the fuzz test and the socket
// server share it.
import { parsePerm, PAYLOAD_MAX, type Session, XsError } from "./model.ts";
import type { XsErrno, XsPermission } from "./types.ts";
import { type Frame, MsgType, oneArg, splitStrings, strings } from "./wire.ts";

export interface Reply {
  type: number;
  payload: Uint8Array;
}

const OK = strings("OK");
const privilegedOnly = new Set<number>([
  MsgType.CONTROL, MsgType.INTRODUCE, MsgType.RELEASE, MsgType.IS_DOMAIN_INTRODUCED,
  MsgType.RESUME, MsgType.SET_TARGET,
]);
// Watches are not part of transactions: their tx_id is ignored (XS_FLAG_NOTID).
const ignoresTx = new Set<number>([MsgType.WATCH, MsgType.UNWATCH]);

const bad = (errno: XsErrno): never => {
  throw new XsError(errno);
};

function arg(payload: Uint8Array): string {
  return oneArg(payload) ?? bad("EINVAL");
}

function domidArg(s: string | undefined): number {
  if (s === undefined || !/^\d{1,5}$/.test(s)) return bad("EINVAL");
  const n = Number(s);
  return n > 0xffff ? bad("EINVAL") : n;
}

function joinStrings(list: readonly string[]): Uint8Array {
  return list.length === 0 ? new Uint8Array() : strings(...list);
}

export function errorReply(errno: XsErrno): Reply {
  return { type: MsgType.ERROR, payload: strings(errno) };
}

export function dispatch(session: Session, frame: Frame): Reply {
  try {
    return { type: frame.type, payload: handle(session, frame) };
  } catch (e) {
    if (e instanceof XsError) return errorReply(e.errno);
    throw e;
  }
}

function handle(s: Session, f: Frame): Uint8Array {
  if (privilegedOnly.has(f.type) && !s.caller.privileged) bad("EACCES");
  const tx = ignoresTx.has(f.type) ? 0 : f.txId;
  if (tx !== 0 && !s.hasTransaction(tx)) bad("ENOENT");
  const p = f.payload;
  switch (f.type) {
    case MsgType.READ:
      return s.read(arg(p), tx);
    case MsgType.WRITE: {
      const nul = p.indexOf(0);
      if (nul < 0) bad("EINVAL");
      s.write(new TextDecoder().decode(p.subarray(0, nul)), p.slice(nul + 1), tx);
      return OK;
    }
    case MsgType.MKDIR:
      s.mkdir(arg(p), tx);
      return OK;
    case MsgType.RM:
      s.rm(arg(p), tx);
      return OK;
    case MsgType.DIRECTORY: {
      const out = joinStrings(s.directory(arg(p), tx));
      // Too big for one reply: libxenstore then falls back to DIRECTORY_PART.
      if (out.length > PAYLOAD_MAX) bad("E2BIG");
      return out;
    }
    case MsgType.DIRECTORY_PART: {
      const a = splitStrings(p);
      if (a.length !== 2) bad("EINVAL");
      const offset = Number.parseInt(a[1]!, 10);
      const part = s.directoryPart(a[0]!, Number.isFinite(offset) && offset > 0 ? offset : 0, tx);
      const body = [String(part.generation), ...part.children];
      const out = strings(...body);
      if (!part.complete) return out;
      const withEnd = new Uint8Array(out.length + 1);
      withEnd.set(out);
      return withEnd;
    }
    case MsgType.GET_PERMS:
      return strings(...s.getPermissions(arg(p), tx).map((x) => `${x.perm}${x.domid}`));
    case MsgType.SET_PERMS: {
      const a = splitStrings(p);
      if (a.length < 2) bad("EINVAL");
      const perms = a.slice(1).map(parsePerm);
      if (perms.some((x) => x === undefined)) bad("EINVAL");
      s.setPermissions(a[0]!, perms as XsPermission[], tx);
      return OK;
    }
    case MsgType.WATCH:
    case MsgType.UNWATCH: {
      const a = splitStrings(p);
      if (a.length !== 2) bad("EINVAL");
      if (f.type === MsgType.WATCH) s.watch(a[0]!, a[1]!);
      else s.unwatch(a[0]!, a[1]!);
      return OK;
    }
    case MsgType.RESET_WATCHES:
      s.resetWatches();
      return OK;
    case MsgType.TRANSACTION_START:
      if (f.txId !== 0) bad("EBUSY");
      return strings(String(s.transactionStart()));
    case MsgType.TRANSACTION_END: {
      const a = arg(p);
      if (a !== "T" && a !== "F") bad("EINVAL");
      if (f.txId === 0) bad("ENOENT");
      s.transactionEnd(f.txId, a === "T");
      return OK;
    }
    case MsgType.GET_DOMAIN_PATH:
      return strings(s.getDomainPath(domidArg(oneArg(p))));
    case MsgType.IS_DOMAIN_INTRODUCED:
      return strings(s.isIntroduced(domidArg(oneArg(p))) ? "T" : "F");
    case MsgType.INTRODUCE: {
      const a = splitStrings(p);
      if (a.length < 3) bad("EINVAL");
      s.introduce(domidArg(a[0]));
      return OK;
    }
    case MsgType.RELEASE:
      s.release(domidArg(oneArg(p)));
      return OK;
    case MsgType.RESUME:
      if (!s.isIntroduced(domidArg(oneArg(p)))) bad("ENOENT");
      return OK;
    case MsgType.SET_TARGET: {
      const a = splitStrings(p);
      if (a.length !== 2) bad("EINVAL");
      s.setTarget(domidArg(a[0]), domidArg(a[1]));
      return OK;
    }
    default:
      // CONTROL (debug commands of C xenstored), WATCH_EVENT, ERROR and unknown types.
      return bad("ENOSYS");
  }
}
