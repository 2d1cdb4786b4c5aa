// One UDP request/response exchange for StunProbe. The socket is connect()ed to the server, so
// the kernel delivers only datagrams from that address; the source address the routing table
// picked is known before the datagram leaves, which lets the caller set up its SNAT rule for
// exactly this socket in between (`beforeSend`).
import { createSocket, type Socket } from "node:dgram";
import { PlexdError } from "../../proto/lib/errors.js";

export interface LocalAddress {
  address: string;
  port: number;
}

export interface UdpExchangeOptions {
  ip: string;
  port: number;
  request: Uint8Array;
  timeoutMs: number;
  /** Local port to bind; 0 (default) for an ephemeral one. EADDRINUSE surfaces as `already_exists`. */
  bindPort?: number;
  signal?: AbortSignal;
  /** Runs after bind+connect, before the datagram is sent. */
  beforeSend?: (local: LocalAddress) => Promise<void>;
}

export interface UdpExchangeResult {
  reply: Buffer;
  local: LocalAddress;
}

export type UdpExchange = (opts: UdpExchangeOptions) => Promise<UdpExchangeResult>;

function once<T>(sock: Socket, start: (cb: (err?: Error | null) => void) => void, value: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    sock.once("error", onError);
    start((err) => {
      sock.off("error", onError);
      if (err) reject(err);
      else resolve(value());
    });
  });
}

export const udpExchange: UdpExchange = async (opts) => {
  const sock = createSocket({ type: "udp4" });
  try {
    await once(
      sock,
      (cb) => sock.bind({ port: opts.bindPort ?? 0, exclusive: true }, () => cb()),
      () => undefined,
    ).catch((err: unknown) => {
      const e = PlexdError.from(err);
      throw (err as NodeJS.ErrnoException).code === "EADDRINUSE" ? new PlexdError("already_exists", `UDP port ${opts.bindPort ?? 0} is in use`, { cause: err }) : e;
    });
    await once(sock, (cb) => sock.connect(opts.port, opts.ip, cb), () => undefined);
    const a = sock.address();
    const local = { address: a.address, port: a.port };
    if (opts.beforeSend) await opts.beforeSend(local);
    opts.signal?.throwIfAborted();
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => finish(new PlexdError("deadline_exceeded", `no STUN answer from ${opts.ip}:${opts.port} within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      const onAbort = (): void => finish(new PlexdError("cancelled", "StunProbe cancelled"));
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      const finish = (err: PlexdError | undefined, msg?: Buffer): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        sock.removeAllListeners("message");
        if (err) reject(err);
        else resolve(msg!);
      };
      // A connected socket only gets datagrams from the server; ICMP errors (port unreachable)
      // arrive as socket errors and end the wait early.
      sock.on("message", (msg) => finish(undefined, msg));
      sock.once("error", (err) => finish(PlexdError.from(err)));
      sock.send(opts.request, (err) => err && finish(PlexdError.from(err)));
    });
    return { reply, local };
  } finally {
    sock.removeAllListeners("error");
    sock.on("error", () => undefined);
    try {
      sock.close();
    } catch {
      // already closed
    }
  }
};
