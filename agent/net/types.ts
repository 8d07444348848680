// The Netlink interface the pure core talks to. ffi/netlink.ts implements it over an
// AF_NETLINK socket; agent/net/fake.ts implements it in memory for unit tests.
import { errnoText } from "./errno.ts";
import type { LinkAttr, Message } from "./codec.ts";

export interface LinkEvent {
  /** RTM_NEWLINK (created or changed) or RTM_DELLINK. */
  type: "new" | "del";
  index: number;
  name: string;
  up: boolean;
  /** IFF_LOWER_UP: the carrier (for netfront: the backend is connected). */
  lowerUp: boolean;
  attrs: LinkAttr[];
}

export interface Netlink {
  /**
   * Sends one request (the sequence number in msg.header is replaced) and resolves with every
   * reply message once the request is complete: the ack, the end of a dump, or the single
   * reply of a get. Rejects with NetlinkError for a kernel error or a timeout. Never blocks the
   * event loop.
   */
  request(msg: Message, opts?: { timeoutMs?: number }): Promise<Message[]>;
  /**
   * Link notifications (RTNLGRP_LINK). `onLost` hears when notifications were lost (the event
   * socket overflowed: ENOBUFS), after which the listener must read the links again. Returns
   * an unsubscribe function for both.
   */
  onLink(listener: (ev: LinkEvent) => void, onLost?: (error: unknown) => void): () => void;
  close(): void;
}

/** A kernel error, with the kernel's own extended-ack text and what we were doing. */
export class NetlinkError extends Error {
  constructor(
    readonly op: string,
    /** Positive errno (ENODEV = 19, ...). */
    readonly errno: number,
    readonly kernelMessage?: string,
  ) {
    super(`${op}: ${errnoText(errno)}${kernelMessage ? `: ${kernelMessage}` : ""}`);
    this.name = "NetlinkError";
  }
}
