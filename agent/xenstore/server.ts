// The xenstore server for development and tests: the model behind UNIX sockets. Every
// connection on a socket acts as that socket's domain, because in the development VM the
// stub domain's libxenstore reaches us through a virtio-serial port (QEMU's chardev connects
// to our socket), where no first control message could be injected: one byte stream is one
// connection, as one xenbus ring is under Xen.
import { unlinkSync } from "node:fs";
import type { Socket, UnixSocketListener } from "bun";
import { dispatch, errorReply } from "./dispatch.ts";
import type { Session, Store } from "./model.ts";
import { encodeFrame, type Frame, FrameReader, MsgType, msgTypeName, PAYLOAD_MAX, printable, strings } from "./wire.ts";

export interface SocketSpec {
  path: string;
  /** Domain the connections act as. */
  domid: number;
  /** dom0 sockets bypass permissions and quotas, like a tools connection to C xenstored. */
  privileged: boolean;
}

export interface ServerOptions {
  store: Store;
  sockets: SocketSpec[];
  /** Receives one line per frame in and out when set. */
  trace?: (line: string) => void;
}

interface Conn {
  id: number;
  session: Session;
  reader: FrameReader;
  socket: Socket<ConnRef>;
  queue: Uint8Array[];
  /** Events raised while this connection's own request runs go out after its reply. */
  busy: boolean;
  deferred: Uint8Array[];
}

interface ConnRef {
  conn?: Conn;
}

export class XenStoreServer {
  private listeners: UnixSocketListener<ConnRef>[] = [];
  private nextConnId = 1;
  readonly connections = new Set<Conn>();

  constructor(private readonly opts: ServerOptions) {}

  start(): void {
    for (const spec of this.opts.sockets) {
      try {
        unlinkSync(spec.path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
      this.listeners.push(Bun.listen<ConnRef>({
        unix: spec.path,
        socket: {
          open: (socket) => this.open(socket, spec),
          data: (socket, data) => this.data(socket, data),
          drain: (socket) => this.drain(socket),
          close: (socket) => this.close(socket),
          error: (socket) => this.close(socket),
        },
      }));
    }
  }

  stop(): void {
    for (const l of this.listeners) l.stop(true);
    this.listeners = [];
    for (const c of this.connections) c.session.close();
    this.connections.clear();
  }

  private open(socket: Socket<ConnRef>, spec: SocketSpec): void {
    const id = this.nextConnId++;
    const conn: Conn = {
      id,
      reader: new FrameReader(),
      socket,
      queue: [],
      busy: false,
      deferred: [],
      session: this.opts.store.session({ domid: spec.domid, privileged: spec.privileged }, (path, token) => {
        const payload = strings(path, token);
        // send_event(): over-long events are dropped, never sent.
        if (payload.length > PAYLOAD_MAX) return;
        const bytes = encodeFrame({ type: MsgType.WATCH_EVENT, reqId: 0, txId: 0, payload });
        this.traceFrame(conn, "OUT", { type: MsgType.WATCH_EVENT, reqId: 0, txId: 0, payload });
        if (conn.busy) conn.deferred.push(bytes);
        else this.send(conn, bytes);
      }),
    };
    socket.data = { conn };
    this.connections.add(conn);
    this.opts.trace?.(`CONN ${id} open on ${spec.path} as domain ${spec.domid}${spec.privileged ? " (privileged)" : ""}`);
  }

  private data(socket: Socket<ConnRef>, chunk: Uint8Array): void {
    const conn = socket.data?.conn;
    if (!conn) return;
    const frames = conn.reader.push(chunk);
    for (const f of frames) {
      this.traceFrame(conn, "IN ", f);
      conn.busy = true;
      let reply;
      try {
        reply = dispatch(conn.session, f);
      } catch (e) {
        // A bug here must cost one request, not the server: EIO is in libxenstore's list.
        process.stderr.write(`xenstored: internal error on ${msgTypeName(f.type)}: ${(e as Error).stack ?? e}\n`);
        reply = errorReply("EIO");
      } finally {
        conn.busy = false;
      }
      const out: Frame = { type: reply.type, reqId: f.reqId, txId: f.txId, payload: reply.payload };
      this.traceFrame(conn, "OUT", out);
      this.send(conn, encodeFrame(out));
      for (const ev of conn.deferred.splice(0)) this.send(conn, ev);
    }
    if (conn.reader.broken) {
      // A length beyond the protocol's limit: the stream cannot be resynchronised.
      this.opts.trace?.(`CONN ${conn.id} closed: oversized frame`);
      socket.end();
    }
  }

  private send(conn: Conn, bytes: Uint8Array): void {
    if (conn.queue.length > 0) {
      conn.queue.push(bytes);
      return;
    }
    const n = conn.socket.write(bytes);
    if (n < bytes.length) conn.queue.push(bytes.subarray(Math.max(n, 0)));
  }

  private drain(socket: Socket<ConnRef>): void {
    const conn = socket.data?.conn;
    if (!conn) return;
    while (conn.queue.length > 0) {
      const head = conn.queue[0]!;
      const n = socket.write(head);
      if (n < head.length) {
        conn.queue[0] = head.subarray(Math.max(n, 0));
        return;
      }
      conn.queue.shift();
    }
  }

  private close(socket: Socket<ConnRef>): void {
    const conn = socket.data?.conn;
    if (!conn || !this.connections.has(conn)) return;
    this.connections.delete(conn);
    conn.session.close();
    this.opts.trace?.(`CONN ${conn.id} closed`);
  }

  private traceFrame(conn: Conn, dir: string, f: Frame): void {
    this.opts.trace?.(
      `${dir} ${conn.id} ${msgTypeName(f.type)} req=${f.reqId} tx=${f.txId} (${printable(f.payload)})`,
    );
  }
}
